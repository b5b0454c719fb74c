//! Bytes to pixels, refusing anything unusable before it costs memory.
//!
//! Order matters: the format is sniffed from the bytes (the caller's content
//! type is only a hint), the header's dimensions are checked against the pixel
//! budget *before* any pixel is decoded, and the decoder itself runs under an
//! allocation limit so a header that lies cannot make it allocate more.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, metadata::Orientation};

use crate::ResizeError;

/// The default pixel budget: 50 megapixels.
pub const DEFAULT_MAX_PIXELS: u64 = 50_000_000;

/// Most any decoder may allocate at once. A 50 MP RGBA image is 200 MB; the
/// sandbox's memory limit stops anything beyond this anyway, but a clean
/// `invalid-input` beats a memory trap.
const MAX_DECODER_ALLOC: u64 = 224 * 1024 * 1024;

/// A decoded image, already turned upright.
#[derive(Debug)]
pub struct Decoded {
    /// Pixels after EXIF orientation was applied.
    pub image: DynamicImage,
    /// The format the bytes were in (what `format=same` writes).
    pub format: ImageFormat,
    /// The orientation that was applied.
    pub orientation: Orientation,
}

/// Decodes `input` if it is a supported image within `max_pixels`.
pub fn decode(input: &[u8], max_pixels: u64) -> Result<Decoded, ResizeError> {
    if input.is_empty() {
        return Err(ResizeError::EmptyInput);
    }
    let format = image::guess_format(input).map_err(|_| ResizeError::UnknownFormat)?;
    let name = format_name(format).ok_or_else(|| ResizeError::UnsupportedFormat(format!("{format:?}")))?;
    let decode_error = |err: image::ImageError| ResizeError::Decode { format: name, reason: err.to_string() };

    check_structure(format, input).map_err(|reason| ResizeError::Decode { format: name, reason })?;

    let mut reader = ImageReader::with_format(Cursor::new(input), format);
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_DECODER_ALLOC);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(decode_error)?;

    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(ResizeError::ZeroSize { format: name, width, height });
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(ResizeError::TooManyPixels { format: name, width, height, pixels, budget: max_pixels });
    }

    // A malformed EXIF block must not sink an otherwise good image.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(decode_error)?;
    image.apply_orientation(orientation);
    Ok(Decoded { image, format, orientation })
}

/// The name callers see for each format we decode; `None` for the rest.
pub fn format_name(format: ImageFormat) -> Option<&'static str> {
    Some(match format {
        ImageFormat::Jpeg => "JPEG",
        ImageFormat::Png => "PNG",
        ImageFormat::Gif => "GIF",
        ImageFormat::WebP => "WebP",
        ImageFormat::Bmp => "BMP",
        ImageFormat::Tiff => "TIFF",
        _ => return None,
    })
}

/// Structural checks the decoders are lenient about. The JPEG decoder would
/// return a half-grey picture for a truncated upload, and the PNG decoder
/// ignores IHDR methods the specification reserves; a caller is better served
/// by an error than by a broken thumbnail.
fn check_structure(format: ImageFormat, input: &[u8]) -> Result<(), String> {
    match format {
        ImageFormat::Jpeg if !has_jpeg_end(input) => {
            Err("the data ends before the end-of-image marker (truncated file?)".to_owned())
        }
        ImageFormat::Png => check_png_methods(input),
        _ => Ok(()),
    }
}

/// PNG defines exactly one compression method (0), one filter method (0)
/// and two interlace methods (0, 1); anything else is not a PNG we can trust.
fn check_png_methods(input: &[u8]) -> Result<(), String> {
    // Signature (8) + chunk length (4) + "IHDR" (4) + width (4) + height (4)
    // + bit depth (1) + colour type (1) = 26.
    let Some(&[compression, filter, interlace]) = input.get(26..29) else {
        return Ok(()); // Too short for an IHDR: the decoder reports it precisely.
    };
    if input.get(12..16) != Some(b"IHDR".as_slice()) {
        return Ok(());
    }
    match (compression, filter, interlace) {
        (0, 0, 0 | 1) => Ok(()),
        (0, 0, other) => Err(format!("unknown interlace method {other} in the IHDR chunk")),
        (0, other, _) => Err(format!("unknown filter method {other} in the IHDR chunk")),
        (other, _, _) => Err(format!("unknown compression method {other} in the IHDR chunk")),
    }
}

/// True when an EOI marker (FF D9) ends the file, allowing trailing padding
/// some cameras append after it.
fn has_jpeg_end(input: &[u8]) -> bool {
    let tail_start = input.len().saturating_sub(4096);
    input[tail_start..].windows(2).any(|pair| pair == [0xFF, 0xD9])
}
