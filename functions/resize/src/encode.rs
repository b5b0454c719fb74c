//! Pixels to bytes in the requested format.

use std::io::Cursor;

use image::codecs::{
    bmp::BmpEncoder,
    gif::GifEncoder,
    jpeg::JpegEncoder,
    png::{CompressionType, FilterType as PngFilter, PngEncoder},
    tiff::TiffEncoder,
    webp::WebPEncoder,
};
use image::{DynamicImage, ImageEncoder, ImageFormat, RgbImage};

use crate::{Format, ResizeError};

/// An encoded image and its media type.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// The encoded bytes.
    pub bytes: Vec<u8>,
    /// Media type of `bytes`, e.g. `image/jpeg`.
    pub content_type: &'static str,
}

/// Encodes `image` as `format` (`Same` meaning `input_format`).
pub fn encode(
    image: &DynamicImage,
    format: Format,
    input_format: ImageFormat,
    quality: u8,
) -> Result<Encoded, ResizeError> {
    let target = match format {
        Format::Jpeg => ImageFormat::Jpeg,
        Format::Png => ImageFormat::Png,
        Format::Webp => ImageFormat::WebP,
        Format::Same => input_format,
    };
    let mut out = Cursor::new(Vec::new());
    let (name, content_type, result) = match target {
        ImageFormat::Jpeg => {
            let pixels = opaque_8bit(image);
            let encoder = JpegEncoder::new_with_quality(&mut out, quality);
            ("JPEG", "image/jpeg", pixels.write_with_encoder(encoder))
        }
        ImageFormat::WebP => {
            let pixels = eight_bit(image);
            ("WebP", "image/webp", pixels.write_with_encoder(WebPEncoder::new_lossless(&mut out)))
        }
        ImageFormat::Gif => {
            let rgba = image.to_rgba8();
            let mut encoder = GifEncoder::new(&mut out);
            let result = encoder.encode(rgba.as_raw(), rgba.width(), rgba.height(), image::ExtendedColorType::Rgba8);
            ("GIF", "image/gif", result)
        }
        ImageFormat::Bmp => {
            let pixels = eight_bit(image);
            ("BMP", "image/bmp", pixels.write_with_encoder(BmpEncoder::new(&mut out)))
        }
        ImageFormat::Tiff => {
            let pixels = eight_bit(image);
            ("TIFF", "image/tiff", pixels.write_with_encoder(TiffEncoder::new(&mut out)))
        }
        // PNG, and the fallback for any other input format.
        _ => {
            let encoder = PngEncoder::new_with_quality(&mut out, CompressionType::Fast, PngFilter::Adaptive);
            let result = encoder.write_image(image.as_bytes(), image.width(), image.height(), image.color().into());
            ("PNG", "image/png", result)
        }
    };
    result.map_err(|err| ResizeError::Encode { format: name, reason: err.to_string() })?;
    Ok(Encoded { bytes: out.into_inner(), content_type })
}

/// The image as 8-bit samples, keeping its channels (encoders other than
/// PNG take only 8-bit data).
fn eight_bit(image: &DynamicImage) -> DynamicImage {
    match image {
        DynamicImage::ImageLuma8(_)
        | DynamicImage::ImageLumaA8(_)
        | DynamicImage::ImageRgb8(_)
        | DynamicImage::ImageRgba8(_) => image.clone(),
        DynamicImage::ImageLuma16(_) => DynamicImage::ImageLuma8(image.to_luma8()),
        DynamicImage::ImageLumaA16(_) => DynamicImage::ImageLumaA8(image.to_luma_alpha8()),
        _ if image.color().has_alpha() => DynamicImage::ImageRgba8(image.to_rgba8()),
        _ => DynamicImage::ImageRgb8(image.to_rgb8()),
    }
}

/// The image without alpha, composited onto white (JPEG has no alpha, and
/// dropping the channel would turn transparent areas black).
fn opaque_8bit(image: &DynamicImage) -> DynamicImage {
    if !image.color().has_alpha() {
        return match image {
            DynamicImage::ImageLuma8(_) | DynamicImage::ImageRgb8(_) => image.clone(),
            DynamicImage::ImageLuma16(_) => DynamicImage::ImageLuma8(image.to_luma8()),
            _ => DynamicImage::ImageRgb8(image.to_rgb8()),
        };
    }
    let rgba = image.to_rgba8();
    let mut rgb = RgbImage::new(rgba.width(), rgba.height());
    for (out, px) in rgb.pixels_mut().zip(rgba.pixels()) {
        let alpha = u16::from(px[3]);
        for channel in 0..3 {
            let blended = (u16::from(px[channel]) * alpha + 255 * (255 - alpha) + 127) / 255;
            // (c·a + 255·(255−a)) / 255 ≤ 255 for c, a ≤ 255.
            out[channel] = blended as u8;
        }
    }
    DynamicImage::ImageRgb8(rgb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgba, RgbaImage};

    #[test]
    fn jpeg_composites_transparency_onto_white() {
        let mut img = RgbaImage::new(2, 1);
        img.put_pixel(0, 0, Rgba([0, 0, 0, 0]));
        img.put_pixel(1, 0, Rgba([0, 0, 0, 255]));
        let flat = opaque_8bit(&DynamicImage::ImageRgba8(img)).to_rgb8();
        assert_eq!(flat.get_pixel(0, 0).0, [255, 255, 255]);
        assert_eq!(flat.get_pixel(1, 0).0, [0, 0, 0]);
    }

    #[test]
    fn same_keeps_the_input_format() {
        let img = DynamicImage::ImageRgb8(RgbImage::new(4, 4));
        for (input, content_type) in [
            (ImageFormat::Png, "image/png"),
            (ImageFormat::Jpeg, "image/jpeg"),
            (ImageFormat::Gif, "image/gif"),
            (ImageFormat::WebP, "image/webp"),
            (ImageFormat::Bmp, "image/bmp"),
            (ImageFormat::Tiff, "image/tiff"),
        ] {
            let encoded = encode(&img, Format::Same, input, 85).expect("encodes");
            assert_eq!(encoded.content_type, content_type);
            assert_eq!(image::guess_format(&encoded.bytes).expect("sniffable"), input);
        }
    }
}
