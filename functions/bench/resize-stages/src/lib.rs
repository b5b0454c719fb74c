//! The built-in resize's very code, timed stage by stage inside the
//! sandbox: answers `{"decode_ns":…,"resize_ns":…,"encode_ns":…,"bytes":…}`
//! instead of the image, so the report can show where the WASM/native gap
//! is (the native side times the same stages with the same hook).

use std::time::Instant;

use bindings::{Error, Guest, Request, Response};
use sluice_resize::{ResizeParams, Stage};

mod bindings {
    #![allow(missing_docs)]
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "transform",
    });
}

struct ResizeStages;

impl Guest for ResizeStages {
    fn handle(req: Request) -> Result<Response, Error> {
        let params = ResizeParams::parse(&req.params).map_err(|err| Error::InvalidInput(err.to_string()))?;
        let mut ends = [0u128; 3];
        let started = Instant::now();
        let encoded = sluice_resize::transform_in_stages(&req.body, &params, |stage: Stage| {
            ends[stage.index()] = started.elapsed().as_nanos();
        })
        .map_err(|err| Error::InvalidInput(err.to_string()))?;
        let body = format!(
            r#"{{"decode_ns":{},"resize_ns":{},"encode_ns":{},"bytes":{}}}"#,
            ends[0],
            ends[1] - ends[0],
            ends[2] - ends[1],
            encoded.bytes.len()
        );
        Ok(Response { body: body.into_bytes(), content_type: "application/json".to_owned() })
    }
}

bindings::export!(ResizeStages with_types_in bindings);
