//! `{{name}}`: a Sluice function. Sluice calls `handle` once per request,
//! in a fresh sandbox, with the request's body, media type and parameters.
//! Return the output bytes and their media type, or an error: an
//! `invalid-input` error reaches the caller as 422 `invalid_input`, an
//! `internal` one as 500 `function_error`. What it prints to stdout and
//! stderr becomes the job's log (`sluice logs JOB`).

mod bindings {
    // The contract's types and the `Guest` trait, from `wit/transform.wit`.
    wit_bindgen::generate!({ path: "wit", world: "transform" });
}

use bindings::{Error, Guest, Request, Response};

struct Function;

impl Guest for Function {
    fn handle(req: Request) -> Result<Response, Error> {
        let body = greet(&req.body, &req.content_type, &req.params).map_err(Error::InvalidInput)?;
        eprintln!("{{name}}: answered {} bytes", body.len());
        Ok(Response { body, content_type: "text/plain; charset=utf-8".to_owned() })
    }
}

bindings::export!(Function with_types_in bindings);

/// The function's work, apart from the bindings so `cargo test` runs it
/// natively: says how many bytes of what arrived, with the `greeting`
/// parameter (default `hello`), and refuses parameters it does not know.
pub fn greet(body: &[u8], content_type: &str, params: &[(String, String)]) -> Result<Vec<u8>, String> {
    let mut greeting = "hello";
    for (key, value) in params {
        match key.as_str() {
            "greeting" => greeting = value,
            other => return Err(format!("unknown parameter `{other}`; this function takes `greeting`")),
        }
    }
    let kind = if content_type.is_empty() { "unknown type" } else { content_type };
    Ok(format!("{greeting}: {} bytes of {kind}\n", body.len()).into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greets_with_the_size_and_type_of_the_body() {
        let params = [("greeting".to_owned(), "hi".to_owned())];
        assert_eq!(greet(b"abc", "image/png", &params), Ok(b"hi: 3 bytes of image/png\n".to_vec()));
        assert_eq!(greet(b"", "", &[]), Ok(b"hello: 0 bytes of unknown type\n".to_vec()));
    }

    #[test]
    fn refuses_an_unknown_parameter() {
        let params = [("colour".to_owned(), "red".to_owned())];
        assert_eq!(
            greet(b"", "", &params),
            Err("unknown parameter `colour`; this function takes `greeting`".to_owned())
        );
    }
}
