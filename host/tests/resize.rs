//! The built-in resize, run as a real component on the shared photos and
//! malformed files.

mod common;

use std::path::Path;
use std::process::Command;

use common::{call, files_in, photo, resize};
use image::{DynamicImage, GenericImageView};
use sluice::runtime::InvokeError;

/// Displayed (post-EXIF) size of a photo, read independently of the guest.
fn display_size(path: &Path) -> (u32, u32) {
    use image::ImageDecoder;
    let mut decoder = image::ImageReader::open(path)
        .expect("photo opens")
        .with_guessed_format()
        .expect("format sniffed")
        .into_decoder()
        .expect("photo decodes");
    let (w, h) = decoder.dimensions();
    let orientation = decoder.orientation().expect("orientation readable");
    use image::metadata::Orientation::*;
    match orientation {
        Rotate90 | Rotate270 | Rotate90FlipH | Rotate270FlipH => (h, w),
        _ => (w, h),
    }
}

fn decode(bytes: &[u8]) -> DynamicImage {
    image::load_from_memory(bytes).expect("the output decodes")
}

#[tokio::test]
async fn every_photo_resizes_to_the_box_for_each_fit_mode() {
    let resize = resize();
    for path in files_in("photos") {
        let name = path.file_name().expect("file name").to_string_lossy().into_owned();
        let (src_w, src_h) = display_size(&path);
        let body = std::fs::read(&path).expect("photo readable");
        for fit in ["contain", "cover", "fill"] {
            let invocation = call(&resize, body.clone(), &[("width", "160"), ("height", "120"), ("fit", fit)]).await;
            let output = invocation.result.unwrap_or_else(|err| panic!("{name} fit={fit}: {err}"));
            let (w, h) = decode(&output.body).dimensions();
            match fit {
                "contain" => {
                    assert!(w <= 160 && h <= 120 && (w == 160 || h == 120), "{name} contain gave {w}x{h}");
                    let skew = (i64::from(w) * i64::from(src_h) - i64::from(h) * i64::from(src_w)).abs();
                    assert!(
                        skew <= i64::from(src_w.max(src_h)),
                        "{name} contain {w}x{h} lost the aspect ratio of {src_w}x{src_h}"
                    );
                }
                _ => assert_eq!((w, h), (160, 120), "{name} fit={fit}"),
            }
        }
    }
}

#[tokio::test]
async fn exif_orientation_is_applied_before_resizing() {
    let resize = resize();
    for name in ["Landscape_5.jpg", "Landscape_6.jpg"] {
        // Stored 1200x1800; EXIF says to display it 1800x1200.
        let invocation = call(&resize, photo(name), &[("width", "300")]).await;
        let output = invocation.result.expect("resizes");
        assert_eq!(output.content_type, "image/jpeg");
        assert_eq!(decode(&output.body).dimensions(), (300, 200), "{name}");
    }
}

#[tokio::test]
async fn each_output_format_has_its_content_type_and_decodes() {
    let resize = resize();
    for (format, content_type, expected) in [
        ("jpeg", "image/jpeg", image::ImageFormat::Jpeg),
        ("png", "image/png", image::ImageFormat::Png),
        ("webp", "image/webp", image::ImageFormat::WebP),
    ] {
        let invocation = call(&resize, photo("harvesters.jpeg"), &[("width", "200"), ("format", format)]).await;
        let output = invocation.result.expect("resizes");
        assert_eq!(output.content_type, content_type);
        assert_eq!(image::guess_format(&output.body).expect("sniffable"), expected);
        assert_eq!(decode(&output.body).dimensions(), (200, 147));
    }
}

#[tokio::test]
async fn format_same_keeps_each_input_format() {
    let resize = resize();
    for (name, content_type) in [
        ("hibiscus.regular.png", "image/png"),
        ("hibiscus.regular.gif", "image/gif"),
        ("hibiscus.regular.lossy.webp", "image/webp"),
        ("hibiscus.regular.bmp", "image/bmp"),
        ("hibiscus.regular.tiff", "image/tiff"),
        ("peacock.progressive.jpeg", "image/jpeg"),
    ] {
        let invocation = call(&resize, photo(name), &[("height", "50")]).await;
        let output = invocation.result.unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(output.content_type, content_type, "{name}");
        assert_eq!(decode(&output.body).height(), 50, "{name}");
    }
}

#[tokio::test]
async fn lower_quality_gives_smaller_jpegs() {
    let resize = resize();
    let mut sizes = Vec::new();
    for quality in ["20", "85", "100"] {
        let params = [("width", "400"), ("format", "jpeg"), ("quality", quality)];
        sizes.push(call(&resize, photo("kodim23.png"), &params).await.result.expect("resizes").body.len());
    }
    assert!(sizes[0] < sizes[1] && sizes[1] < sizes[2], "sizes by quality 20/85/100: {sizes:?}");
}

#[tokio::test]
async fn every_filter_produces_the_requested_size() {
    let resize = resize();
    for filter in ["lanczos3", "catmull-rom", "bilinear", "nearest"] {
        let invocation = call(&resize, photo("kodim17.png"), &[("width", "100"), ("filter", filter)]).await;
        assert_eq!(decode(&invocation.result.expect("resizes").body).dimensions(), (100, 150), "{filter}");
    }
}

#[tokio::test]
async fn bad_parameters_are_invalid_input_with_a_precise_message() {
    let resize = resize();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[], "give `width`, `height` or both"),
        (&[("width", "0")], "`width` must be a whole number from 1 to 16384, got `0`"),
        (&[("width", "10"), ("fit", "squash")], "`fit` must be contain, cover or fill, got `squash`"),
        (&[("width", "10"), ("quality", "0")], "`quality` must be a whole number from 1 to 100, got `0`"),
        (
            &[("width", "10"), ("colour", "red")],
            "unknown parameter `colour` (expected width, height, fit, format, quality, filter)",
        ),
        (
            &[("width", "16384"), ("height", "16384"), ("fit", "fill")],
            "the output would be 16384x16384 (268435456 pixels), over the pixel budget of 50000000",
        ),
    ];
    for (params, message) in cases {
        let invocation = call(&resize, photo("kodim23.png"), params).await;
        assert_eq!(invocation.result.expect_err("refused"), InvokeError::InvalidInput((*message).to_owned()));
        assert_eq!(invocation.usage.outcome.as_str(), "invalid_input");
    }
}

#[tokio::test]
async fn non_images_are_invalid_input() {
    let resize = resize();
    let cases: &[(&[u8], &str)] = &[
        (b"", "the body is empty; send an encoded image"),
        (b"hello, world", "unrecognised image format; send JPEG, PNG, GIF, WebP, BMP or TIFF"),
    ];
    for (body, message) in cases {
        let invocation = call(&resize, body.to_vec(), &[("width", "10")]).await;
        assert_eq!(invocation.result.expect_err("refused"), InvokeError::InvalidInput((*message).to_owned()));
    }
}

/// Malformed files that are nonetheless decodable: the first frame of a GIF
/// whose later frames are bad, files Pillow and libwebp also decode, a PNG
/// whose bomb sits in text chunks the decoder skips, and a PNG whose only
/// fault is in its (ancillary) colour-profile chunk.
const DECODABLE_MALFORMED: &[&str] = &[
    "dc-predictor-overflow.jpg",
    "decompression_bomb_extents.gif",
    "frame-out-of-bounds.gif",
    "hippopotamus-sof-dht-swap.jpeg",
    "invalid_multiframe.gif",
    "panic.webp",
    "png_decompression_dos.png",
    "subtract-with-overflow.jpg",
    "unknown_compression_method.png",
];

#[tokio::test]
async fn every_malformed_file_is_refused_cleanly_within_limits() {
    let resize = resize();
    let runtime = common::runtime();
    for path in files_in("malformed") {
        let name = path.file_name().expect("file name").to_string_lossy().into_owned();
        let body = std::fs::read(&path).expect("readable");
        let invocation = call(&resize, body, &[("width", "64")]).await;
        // Refused or decoded, the guest never traps, times out or runs out
        // of memory: bombs are stopped by the header check, not the sandbox.
        assert!(
            invocation.usage.wall_us < runtime.config().timeout.as_micros() as u64 / 4,
            "{name} took {} µs",
            invocation.usage.wall_us
        );
        assert!(
            invocation.usage.peak_memory_bytes < 64 * 1024 * 1024,
            "{name} used {} bytes",
            invocation.usage.peak_memory_bytes
        );
        if DECODABLE_MALFORMED.contains(&name.as_str()) {
            let output = invocation.result.unwrap_or_else(|err| panic!("{name} should decode: {err}"));
            assert_eq!(decode(&output.body).width(), 64, "{name}");
        } else {
            match invocation.result {
                Err(InvokeError::InvalidInput(message)) => assert!(!message.is_empty(), "{name}"),
                other => panic!("{name}: expected invalid_input, got {:?}", other.map(|o| o.content_type)),
            }
        }
    }
}

#[tokio::test]
async fn bombs_are_refused_from_the_header_with_their_dimensions() {
    let resize = resize();
    let cases = [
        (
            "65536-uint32-limit.png",
            "the PNG image is 65536x65536 (4294967296 pixels), over the pixel budget of 50000000",
        ),
        ("giant-image.jpg", "the JPEG image is 20000x14000 (280000000 pixels), over the pixel budget of 50000000"),
        ("max_size.jpg", "the JPEG image is 65535x65535 (4294836225 pixels), over the pixel budget of 50000000"),
    ];
    for (name, message) in cases {
        let body = std::fs::read(common::testdata().join("malformed").join(name)).expect("readable");
        let invocation = call(&resize, body, &[("width", "64")]).await;
        assert_eq!(invocation.result.expect_err("refused"), InvokeError::InvalidInput(message.to_owned()), "{name}");
    }
    let body = std::fs::read(common::testdata().join("malformed/Bad_reallybig.bmp")).expect("readable");
    let invocation = call(&resize, body, &[("width", "64")]).await;
    let message = invocation.result.expect_err("refused").to_string();
    assert!(message.contains("3000000, 2000000"), "{message}");
}

/// Pillow's Lanczos resample of `path` to `width`x`height` as RGBA pixels.
fn pillow_reference(path: &Path, width: u32, height: u32, out: &Path) -> DynamicImage {
    const SCRIPT: &str = "
import sys
from PIL import Image, ImageOps
src, dst, w, h = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
im = ImageOps.exif_transpose(Image.open(src))
im.convert('RGBA').resize((w, h), Image.LANCZOS).save(dst)
";
    let status = Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(path)
        .arg(out)
        .args([width.to_string(), height.to_string()])
        .status()
        .expect("python3 runs (the test command installs it with Pillow)");
    assert!(
        status.success(),
        "Pillow failed on {} (is Pillow installed? `python3 -m pip install pillow`)",
        path.display()
    );
    image::open(out).expect("reference decodes")
}

/// PSNR over premultiplied RGBA: the colour of a fully transparent pixel is
/// invisible, so it must not count.
fn psnr(a: &DynamicImage, b: &DynamicImage) -> f64 {
    let (a, b) = (a.to_rgba8(), b.to_rgba8());
    assert_eq!(a.dimensions(), b.dimensions());
    let premultiplied = |px: &image::Rgba<u8>| {
        let alpha = f64::from(px[3]) / 255.0;
        [f64::from(px[0]) * alpha, f64::from(px[1]) * alpha, f64::from(px[2]) * alpha, f64::from(px[3])]
    };
    let squared: f64 = a
        .pixels()
        .zip(b.pixels())
        .flat_map(|(x, y)| {
            let (x, y) = (premultiplied(x), premultiplied(y));
            (0..4).map(move |c| (x[c] - y[c]).powi(2))
        })
        .sum();
    let mse = squared / (a.as_raw().len()) as f64;
    if mse == 0.0 { f64::INFINITY } else { 10.0 * (255.0f64 * 255.0 / mse).log10() }
}

#[tokio::test]
async fn quality_matches_pillow_lanczos_within_30_db() {
    let resize = resize();
    let scratch = tempfile::tempdir().expect("temp dir");
    let mut report = Vec::new();
    for path in files_in("photos") {
        let name = path.file_name().expect("file name").to_string_lossy().into_owned();
        let body = std::fs::read(&path).expect("readable");
        let invocation = call(&resize, body, &[("width", "256"), ("format", "png")]).await;
        let ours = decode(&invocation.result.unwrap_or_else(|err| panic!("{name}: {err}")).body);
        let reference =
            pillow_reference(&path, ours.width(), ours.height(), &scratch.path().join(format!("{name}.png")));
        let db = psnr(&ours, &reference);
        report.push(format!("{name}: {db:.1} dB"));
        assert!(db >= 30.0, "{name}: PSNR {db:.1} dB against Pillow is below 30 dB\n{}", report.join("\n"));
    }
    eprintln!("{}", report.join("\n"));
}
