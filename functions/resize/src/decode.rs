//! Bytes to pixels, refusing anything unusable before it costs memory.
//!
//! Order matters: the format is sniffed from the bytes (the caller's content
//! type is only a hint), the header's dimensions are checked against the pixel
//! budget *before* any pixel is decoded, and the decoder itself runs under an
//! allocation limit so a header that lies cannot make it allocate more.

use std::io::Cursor;

use image::{DynamicImage, GrayImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage, metadata::Orientation};

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
    /// Width and height of the full-resolution upright image. `image` is
    /// smaller when a JPEG was decoded at a reduced scale; output sizes are
    /// computed from this, so they do not depend on how it was decoded.
    pub source_size: (u32, u32),
}

/// Decodes `input` if it is a supported image within `max_pixels`, at full
/// resolution.
pub fn decode(input: &[u8], max_pixels: u64) -> Result<Decoded, ResizeError> {
    decode_for(input, max_pixels, |width, height| (width, height))
}

/// Like [`decode`], for a caller that will resample to `target(width,
/// height)` of the upright source: a JPEG at least four times that size in
/// both axes is decoded at 1/2, 1/4 or 1/8 scale (IDCT scaling), the
/// smallest still at least twice the target, which skips most of the
/// decoding work.
pub fn decode_for(
    input: &[u8],
    max_pixels: u64,
    target: impl Fn(u32, u32) -> (u32, u32),
) -> Result<Decoded, ResizeError> {
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
    let swaps_axes = matches!(
        orientation,
        Orientation::Rotate90 | Orientation::Rotate270 | Orientation::Rotate90FlipH | Orientation::Rotate270FlipH
    );
    let source_size = if swaps_axes { (height, width) } else { (width, height) };
    if format == ImageFormat::Jpeg {
        let (target_width, target_height) = target(source_size.0, source_size.1);
        let needed = if swaps_axes { (target_height, target_width) } else { (target_width, target_height) };
        if let Some(mut image) = decode_jpeg_reduced(input, (width, height), needed) {
            image.apply_orientation(orientation);
            return Ok(Decoded { image, format, orientation, source_size });
        }
    }
    let mut image = DynamicImage::from_decoder(decoder).map_err(decode_error)?;
    image.apply_orientation(orientation);
    Ok(Decoded { image, format, orientation, source_size })
}

/// How much larger than the target a reduced JPEG decode must stay.
const REDUCING_GAP: u32 = 2;

/// A baseline or progressive 8-bit grey or RGB JPEG of `size`, decoded at
/// the smallest IDCT scale (1/8, 1/4, 1/2) that is still at least
/// [`REDUCING_GAP`] × `needed` in both axes. `None` when no reduced scale fits or the file is anything
/// else (CMYK, 12-bit, lossless, or a stream this decoder refuses): the
/// full-resolution decoder then handles it and reports its errors.
fn decode_jpeg_reduced(input: &[u8], size: (u32, u32), needed: (u32, u32)) -> Option<DynamicImage> {
    let (width, height) = size;
    // Keep at least twice the target (as Pillow's `reducing_gap=2` does):
    // the resampler then does the final reduction and the output stays
    // within a hair of a full-resolution decode.
    let floor = (needed.0.max(1).saturating_mul(REDUCING_GAP), needed.1.max(1).saturating_mul(REDUCING_GAP));
    let factor = [8u32, 4, 2].into_iter().find(|&k| width.div_ceil(k) >= floor.0 && height.div_ceil(k) >= floor.1)?;
    let mut decoder = jpeg_decoder::Decoder::new(input);
    decoder.set_max_decoding_buffer_size(usize::try_from(MAX_DECODER_ALLOC).unwrap_or(usize::MAX));
    decoder.read_info().ok()?;
    let pixel_format = decoder.info()?.pixel_format;
    if !matches!(pixel_format, jpeg_decoder::PixelFormat::L8 | jpeg_decoder::PixelFormat::RGB24) {
        return None;
    }
    let request = (u16::try_from(width.div_ceil(factor)).ok()?, u16::try_from(height.div_ceil(factor)).ok()?);
    let (scaled_width, scaled_height) = decoder.scale(request.0, request.1).ok()?;
    let (scaled_width, scaled_height) = (u32::from(scaled_width), u32::from(scaled_height));
    if scaled_width < needed.0 || scaled_height < needed.1 {
        return None;
    }
    let pixels = decoder.decode().ok()?;
    match pixel_format {
        jpeg_decoder::PixelFormat::L8 => {
            GrayImage::from_raw(scaled_width, scaled_height, pixels).map(DynamicImage::ImageLuma8)
        }
        _ => RgbImage::from_raw(scaled_width, scaled_height, pixels).map(DynamicImage::ImageRgb8),
    }
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

    fn gradient_jpeg(width: u32, height: u32) -> Vec<u8> {
        let image = RgbImage::from_fn(width, height, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 128]));
        let mut out = Cursor::new(Vec::new());
        DynamicImage::ImageRgb8(image).write_to(&mut out, ImageFormat::Jpeg).expect("encodes");
        out.into_inner()
    }

    #[test]
    fn a_large_jpeg_is_decoded_at_the_smallest_scale_twice_the_target() {
        let jpeg = gradient_jpeg(1024, 768);
        // 1/4 would give 256×192, under twice 200×150; 1/2 gives 512×384.
        let reduced = decode_for(&jpeg, DEFAULT_MAX_PIXELS, |_, _| (200, 150)).expect("decodes");
        assert_eq!((reduced.image.width(), reduced.image.height()), (512, 384));
        assert_eq!(reduced.source_size, (1024, 768));
        // Too close to the target for any reduction: full resolution.
        let full = decode_for(&jpeg, DEFAULT_MAX_PIXELS, |_, _| (600, 450)).expect("decodes");
        assert_eq!((full.image.width(), full.image.height()), (1024, 768));
        // Pixels agree with a full decode, scaled.
        let reference = decode(&jpeg, DEFAULT_MAX_PIXELS).expect("decodes").image.to_rgb8();
        let reduced = reduced.image.to_rgb8();
        let (at_full, at_half) = (reference.get_pixel(401, 301), reduced.get_pixel(200, 150));
        for channel in 0..3 {
            assert!(at_full[channel].abs_diff(at_half[channel]) <= 6, "{at_full:?} vs {at_half:?}");
        }
    }

    #[test]
    fn transform_sizes_come_from_the_full_resolution_source() {
        let jpeg = gradient_jpeg(1165, 859);
        let params = crate::ResizeParams::parse(&[("width".to_owned(), "100".to_owned())]).expect("params");
        let encoded = crate::transform(&jpeg, &params).expect("resizes");
        let out = image::load_from_memory(&encoded.bytes).expect("decodes");
        // 859 × 100 / 1165 = 73.7: rounded from the full size, not from a reduced one.
        assert_eq!((out.width(), out.height()), (100, 74));
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
