//! An example tenant transform: decodes a PNG or JPEG, turns it grey and
//! returns a PNG. Copy this crate to start your own function; README.md
//! beside it walks through building and deploying it.

use std::io::Cursor;

use bindings::{Error, Guest, Request, Response};
use image::ImageFormat;

// Generates the `Guest` trait and the contract's types from the WIT files.
mod bindings {
    #![allow(missing_docs)]
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "transform",
    });
}

/// Refuse inputs that would need more memory than a thumbnail deserves.
const MAX_PIXELS: u64 = 40_000_000;

struct Grayscale;

impl Guest for Grayscale {
    fn handle(req: Request) -> Result<Response, Error> {
        // Refuse parameters we do not understand instead of ignoring them.
        if let Some((key, _)) = req.params.first() {
            return Err(Error::InvalidInput(format!("grayscale takes no parameters, got `{key}`")));
        }
        let format = image::guess_format(&req.body)
            .ok()
            .filter(|f| matches!(f, ImageFormat::Png | ImageFormat::Jpeg))
            .ok_or_else(|| Error::InvalidInput("send a PNG or JPEG image".to_owned()))?;

        let mut reader = image::ImageReader::with_format(Cursor::new(&req.body), format);
        reader.no_limits();
        let (width, height) =
            reader.into_dimensions().map_err(|e| Error::InvalidInput(format!("cannot read the image header: {e}")))?;
        if u64::from(width) * u64::from(height) > MAX_PIXELS {
            return Err(Error::InvalidInput(format!("{width}x{height} is over {MAX_PIXELS} pixels")));
        }

        let image = image::load_from_memory_with_format(&req.body, format)
            .map_err(|e| Error::InvalidInput(format!("cannot decode the image: {e}")))?;
        let mut out = Cursor::new(Vec::new());
        image
            .grayscale()
            .write_to(&mut out, ImageFormat::Png)
            .map_err(|e| Error::Internal(format!("cannot encode PNG: {e}")))?;
        // What a tenant reads back in the job's logs (`GET /v1/jobs/{id}/logs`).
        eprintln!("grayscale: {width}x{height} {format:?} in, {} bytes of PNG out", out.get_ref().len());
        Ok(Response { body: out.into_inner(), content_type: "image/png".to_owned() })
    }
}

bindings::export!(Grayscale with_types_in bindings);
