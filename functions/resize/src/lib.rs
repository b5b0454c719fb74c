//! Sluice's built-in `resize` function.
//!
//! A plain library: the benchmark and the host's tests call [`transform`]
//! natively, and `sluice-resize-component` (beside this crate) exports it
//! as the `transform` component. Both run exactly the same
//! decode → resize → encode code, so a native-vs-WASM ratio measures the
//! sandbox and nothing else.
//!
//! Layout: [`params`] parses caller parameters, [`decode`] turns bytes into
//! pixels (format sniffing, pixel budget, EXIF orientation), [`geometry`]
//! works out output sizes, [`encode`] writes the result.

pub mod decode;
pub mod encode;
pub mod geometry;
pub mod params;

use fast_image_resize as fir;
use image::DynamicImage;

pub use decode::{DEFAULT_MAX_PIXELS, Decoded, decode, decode_for};
pub use encode::Encoded;
pub use params::{Filter, Fit, Format, ResizeParams};

/// Why a resize was refused or failed. Every variant but [`ResizeError::Encode`]
/// and [`ResizeError::Resample`] is the caller's to fix.
#[derive(Debug, thiserror::Error)]
pub enum ResizeError {
    /// A parameter is unknown, repeated, missing or out of range.
    #[error("{0}")]
    InvalidParam(String),
    /// The body was empty.
    #[error("the body is empty; send an encoded image")]
    EmptyInput,
    /// The bytes are not an image format we know.
    #[error("unrecognised image format; send JPEG, PNG, GIF, WebP, BMP or TIFF")]
    UnknownFormat,
    /// The bytes are an image format we do not decode.
    #[error("{0} images are not supported; send JPEG, PNG, GIF, WebP, BMP or TIFF")]
    UnsupportedFormat(String),
    /// The header declares a width or height of zero.
    #[error("the {format} header declares a {width}x{height} image; both sides must be at least 1")]
    ZeroSize {
        /// Input format name.
        format: &'static str,
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
    },
    /// The header declares more pixels than the budget allows; nothing was decoded.
    #[error("the {format} image is {width}x{height} ({pixels} pixels), over the pixel budget of {budget}")]
    TooManyPixels {
        /// Input format name.
        format: &'static str,
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// width × height.
        pixels: u64,
        /// The budget in pixels.
        budget: u64,
    },
    /// The data is corrupt, truncated or uses a feature the decoder lacks.
    #[error("cannot decode the {format} image: {reason}")]
    Decode {
        /// Input format name.
        format: &'static str,
        /// The decoder's explanation.
        reason: String,
    },
    /// The requested output exceeds the pixel budget.
    #[error("the output would be {width}x{height} ({pixels} pixels), over the pixel budget of {budget}")]
    OutputTooLarge {
        /// Computed output width.
        width: u32,
        /// Computed output height.
        height: u32,
        /// width × height.
        pixels: u64,
        /// The budget in pixels.
        budget: u64,
    },
    /// Resampling failed (an internal fault, not the caller's).
    #[error("resampling failed: {0}")]
    Resample(String),
    /// Encoding failed (an internal fault, not the caller's).
    #[error("cannot encode {format}: {reason}")]
    Encode {
        /// Output format name.
        format: &'static str,
        /// The encoder's explanation.
        reason: String,
    },
}

impl ResizeError {
    /// True when the caller's input or parameters caused the failure.
    pub fn is_invalid_input(&self) -> bool {
        !matches!(self, Self::Resample(_) | Self::Encode { .. })
    }
}

/// Decodes `input`, resizes it as `params` asks and encodes the result.
/// This is the whole function; the component only adapts types around it.
pub fn transform(input: &[u8], params: &ResizeParams) -> Result<Encoded, ResizeError> {
    transform_in_stages(input, params, |_| {})
}

/// A stage of [`transform`], as [`transform_in_stages`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The input is decoded to pixels.
    Decoded,
    /// The pixels are resampled to the output size.
    Resized,
    /// The output is encoded.
    Encoded,
}

impl Stage {
    /// The stage's place in the pipeline, from 0: where a caller timing
    /// the stages keeps its clock reading.
    pub const fn index(self) -> usize {
        match self {
            Self::Decoded => 0,
            Self::Resized => 1,
            Self::Encoded => 2,
        }
    }
}

/// [`transform`], calling `finished` as each stage ends, so a benchmark
/// can time decode, resize and encode of the very code callers run.
pub fn transform_in_stages(
    input: &[u8],
    params: &ResizeParams,
    mut finished: impl FnMut(Stage),
) -> Result<Encoded, ResizeError> {
    let decoded = decode_for(input, DEFAULT_MAX_PIXELS, |w, h| geometry::output_size(w, h, params))?;
    finished(Stage::Decoded);
    let (width, height) = geometry::output_size(decoded.source_size.0, decoded.source_size.1, params);
    geometry::check_budget(width, height, DEFAULT_MAX_PIXELS)?;
    let resized = resample(&decoded.image, width, height, params)?;
    finished(Stage::Resized);
    let encoded = encode::encode(&resized, params.format, decoded.format, params.quality)?;
    finished(Stage::Encoded);
    Ok(encoded)
}

/// Resamples `src` to exactly `width`×`height`, cropping to the output's
/// aspect ratio first when fitting with `cover`.
pub fn resample(
    src: &DynamicImage,
    width: u32,
    height: u32,
    params: &ResizeParams,
) -> Result<DynamicImage, ResizeError> {
    let mut dst = DynamicImage::new(width, height, src.color());
    let algorithm = match params.filter {
        Filter::Nearest => fir::ResizeAlg::Nearest,
        Filter::Bilinear => fir::ResizeAlg::Convolution(fir::FilterType::Bilinear),
        Filter::CatmullRom => fir::ResizeAlg::Convolution(fir::FilterType::CatmullRom),
        Filter::Lanczos3 => fir::ResizeAlg::Convolution(fir::FilterType::Lanczos3),
    };
    let mut options = fir::ResizeOptions::new().resize_alg(algorithm);
    if params.fit == Fit::Cover {
        options = options.fit_into_destination(Some((0.5, 0.5)));
    }
    fir::Resizer::new().resize(src, &mut dst, &options).map_err(|err| ResizeError::Resample(err.to_string()))?;
    Ok(dst)
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    #[test]
    fn stages_are_reported_in_order_and_the_output_is_the_plain_transforms() {
        let mut png = Cursor::new(Vec::new());
        DynamicImage::new_rgb8(40, 20).write_to(&mut png, image::ImageFormat::Png).expect("encodes");
        let params = ResizeParams::parse(&[("width".to_owned(), "10".to_owned())]).expect("params");
        let mut seen = Vec::new();
        let staged = transform_in_stages(png.get_ref(), &params, |stage| seen.push(stage)).expect("staged");
        let plain = transform(png.get_ref(), &params).expect("plain");
        assert_eq!(seen, [Stage::Decoded, Stage::Resized, Stage::Encoded]);
        assert_eq!(staged.bytes, plain.bytes);
    }

    #[test]
    fn a_refused_input_reports_no_stage() {
        let params = ResizeParams::parse(&[("width".to_owned(), "10".to_owned())]).expect("params");
        let mut seen = Vec::new();
        assert!(transform_in_stages(b"not an image", &params, |stage| seen.push(stage)).is_err());
        assert!(seen.is_empty());
    }
}
