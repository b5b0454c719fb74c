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

    // The PNG decoder sizes its buffers while reading the header (and on
    // 32-bit targets fails on an overflow), so read IHDR's size ourselves.
    if let Some((width, height)) = png_dimensions(format, input) {
        check_pixels(name, width, height, max_pixels)?;
    }

    // Header first, without limits, so a bomb is reported by its
    // dimensions; the allocation limit is applied before any pixel data.
    let mut reader = ImageReader::with_format(Cursor::new(input), format);
    reader.no_limits();
    let mut decoder = reader.into_decoder().map_err(decode_error)?;

    let (width, height) = decoder.dimensions();
    check_pixels(name, width, height, max_pixels)?;
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_DECODER_ALLOC);
    decoder.set_limits(limits).map_err(decode_error)?;

    // A malformed EXIF block must not sink an otherwise good image.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(decode_error)?;
    image.apply_orientation(orientation);
    Ok(Decoded { image, format, orientation })
}

fn check_pixels(format: &'static str, width: u32, height: u32, budget: u64) -> Result<(), ResizeError> {
    if width == 0 || height == 0 {
        return Err(ResizeError::ZeroSize { format, width, height });
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > budget {
        return Err(ResizeError::TooManyPixels { format, width, height, pixels, budget });
    }
    Ok(())
}

/// Width and height from a PNG's IHDR chunk, when the file starts with one.
fn png_dimensions(format: ImageFormat, input: &[u8]) -> Option<(u32, u32)> {
    if format != ImageFormat::Png || input.get(12..16)? != b"IHDR" {
        return None;
    }
    let width = u32::from_be_bytes(input.get(16..20)?.try_into().ok()?);
    let height = u32::from_be_bytes(input.get(20..24)?.try_into().ok()?);
    Some((width, height))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_png() -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        DynamicImage::new_rgb8(3, 2).write_to(&mut out, ImageFormat::Png).expect("encodes");
        out.into_inner()
    }

    #[test]
    fn a_valid_png_decodes_upright() {
        let decoded = decode(&tiny_png(), DEFAULT_MAX_PIXELS).expect("decodes");
        assert_eq!((decoded.image.width(), decoded.image.height()), (3, 2));
        assert_eq!(decoded.orientation, Orientation::NoTransforms);
    }

    #[test]
    fn reserved_png_methods_are_refused() {
        for (offset, message) in [
            (26, "cannot decode the PNG image: unknown compression method 1 in the IHDR chunk"),
            (27, "cannot decode the PNG image: unknown filter method 1 in the IHDR chunk"),
        ] {
            let mut png = tiny_png();
            png[offset] = 1;
            let err = decode(&png, DEFAULT_MAX_PIXELS).expect_err("refused");
            assert_eq!(err.to_string(), message);
        }
        let mut png = tiny_png();
        png[28] = 2;
        let err = decode(&png, DEFAULT_MAX_PIXELS).expect_err("refused");
        assert_eq!(err.to_string(), "cannot decode the PNG image: unknown interlace method 2 in the IHDR chunk");
    }

    #[test]
    fn the_pixel_budget_is_checked_from_the_header() {
        let err = decode(&tiny_png(), 5).expect_err("6 pixels > 5");
        assert_eq!(err.to_string(), "the PNG image is 3x2 (6 pixels), over the pixel budget of 5");
    }

    #[test]
    fn a_jpeg_without_its_end_marker_is_truncated() {
        let mut out = Cursor::new(Vec::new());
        DynamicImage::new_rgb8(16, 16).write_to(&mut out, ImageFormat::Jpeg).expect("encodes");
        let jpeg = out.into_inner();
        assert!(decode(&jpeg, DEFAULT_MAX_PIXELS).is_ok());
        let err = decode(&jpeg[..jpeg.len() - 2], DEFAULT_MAX_PIXELS).expect_err("truncated");
        assert_eq!(
            err.to_string(),
            "cannot decode the JPEG image: the data ends before the end-of-image marker (truncated file?)"
        );
    }
}
