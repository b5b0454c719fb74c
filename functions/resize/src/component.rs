//! The `transform` export: adapts WIT types around [`crate::transform`].

use crate::{ResizeError, ResizeParams};
use bindings::{Error, Guest, Request, Response};

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
        let encoded = crate::transform(&req.body, &params).map_err(into_wit_error)?;
        Ok(Response { body: encoded.bytes, content_type: encoded.content_type.to_owned() })
    }
}

fn into_wit_error(err: ResizeError) -> Error {
    if err.is_invalid_input() { Error::InvalidInput(err.to_string()) } else { Error::Internal(err.to_string()) }
}

bindings::export!(Resize with_types_in bindings);
