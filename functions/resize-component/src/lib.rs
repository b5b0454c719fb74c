//! The built-in `resize` function as a `transform` component: adapts WIT
//! types around [`sluice_resize::transform`]. The library is a crate of its
//! own so the host (natively) and other guests (the benchmark's stage
//! probe) can link it without this crate's exports.

use bindings::{Error, Guest, Request, Response};
use sluice_resize::{ResizeError, ResizeParams};

mod bindings {
    #![allow(missing_docs)]
    wit_bindgen::generate!({
        path: "../../wit",
        world: "transform",
    });
}

struct Resize;

impl Guest for Resize {
    fn handle(req: Request) -> Result<Response, Error> {
        let params = ResizeParams::parse(&req.params).map_err(into_wit_error)?;
        let encoded = sluice_resize::transform(&req.body, &params).map_err(into_wit_error)?;
        Ok(Response { body: encoded.bytes, content_type: encoded.content_type.to_owned() })
    }
}

fn into_wit_error(err: ResizeError) -> Error {
    if err.is_invalid_input() { Error::InvalidInput(err.to_string()) } else { Error::Internal(err.to_string()) }
}

bindings::export!(Resize with_types_in bindings);
