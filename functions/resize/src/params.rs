//! Caller parameters: parsed strictly, so a typo is an error the caller sees
//! rather than a default they did not ask for.

use crate::ResizeError;

/// Largest width or height a caller may ask for; far above any thumbnail and
/// small enough that the output buffer cannot be absurd.
pub const MAX_OUTPUT_SIDE: u32 = 16_384;

/// How the image is fitted into the requested box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// Keep the aspect ratio and fit inside the box (one side may be shorter).
    Contain,
    /// Keep the aspect ratio, fill the box and crop the overflow, centred.
    Cover,
    /// Stretch to exactly the box.
    Fill,
}

/// Encoding of the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Baseline JPEG at the requested quality.
    Jpeg,
    /// PNG with fast compression.
    Png,
    /// Lossless WebP (the pure-Rust encoder has no lossy mode).
    Webp,
    /// Whatever format the input was in.
    Same,
}

/// Resampling filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Sharpest; the default, and what Pillow and libvips use for downscaling.
    Lanczos3,
    /// Bicubic (Catmull-Rom spline).
    CatmullRom,
    /// Bilinear.
    Bilinear,
    /// Nearest neighbour: fastest, blocky.
    Nearest,
}

/// Everything a caller can ask of `resize`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResizeParams {
    /// Requested width in pixels; `None` derives it from the aspect ratio.
    pub width: Option<u32>,
    /// Requested height in pixels; `None` derives it from the aspect ratio.
    pub height: Option<u32>,
    /// How to fit the image into the box.
    pub fit: Fit,
    /// Output encoding.
    pub format: Format,
    /// JPEG quality, 1..=100.
    pub quality: u8,
    /// Resampling filter.
    pub filter: Filter,
}

impl ResizeParams {
    /// Parameters with the given box and every other setting at its default.
    pub fn new(width: Option<u32>, height: Option<u32>) -> Self {
        Self { width, height, fit: Fit::Contain, format: Format::Same, quality: 85, filter: Filter::Lanczos3 }
    }

    /// Parses query-string style pairs. Unknown or repeated keys are refused.
    pub fn parse<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Result<Self, ResizeError> {
        let mut params = Self::new(None, None);
        let mut seen: Vec<&str> = Vec::new();
        for (key, value) in pairs {
            let (key, value) = (key.as_ref(), value.as_ref());
            if seen.contains(&key) {
                return Err(ResizeError::InvalidParam(format!("parameter `{key}` is given more than once")));
            }
            match key {
                "width" => params.width = Some(parse_side(key, value)?),
                "height" => params.height = Some(parse_side(key, value)?),
                "fit" => params.fit = parse_fit(value)?,
                "format" => params.format = parse_format(value)?,
                "quality" => params.quality = parse_quality(value)?,
                "filter" => params.filter = parse_filter(value)?,
                _ => {
                    return Err(ResizeError::InvalidParam(format!(
                        "unknown parameter `{key}` (expected width, height, fit, format, quality, filter)"
                    )));
                }
            }
            seen.push(key);
        }
        if params.width.is_none() && params.height.is_none() {
            return Err(ResizeError::InvalidParam("give `width`, `height` or both".to_owned()));
        }
        Ok(params)
    }
}

fn parse_side(key: &str, value: &str) -> Result<u32, ResizeError> {
    match value.parse::<u32>() {
        Ok(n) if (1..=MAX_OUTPUT_SIDE).contains(&n) => Ok(n),
        _ => Err(ResizeError::InvalidParam(format!(
            "`{key}` must be a whole number from 1 to {MAX_OUTPUT_SIDE}, got `{value}`"
        ))),
    }
}

fn parse_fit(value: &str) -> Result<Fit, ResizeError> {
    match value {
        "contain" => Ok(Fit::Contain),
        "cover" => Ok(Fit::Cover),
        "fill" => Ok(Fit::Fill),
        _ => Err(ResizeError::InvalidParam(format!("`fit` must be contain, cover or fill, got `{value}`"))),
    }
}

fn parse_format(value: &str) -> Result<Format, ResizeError> {
    match value {
        "jpeg" | "jpg" => Ok(Format::Jpeg),
        "png" => Ok(Format::Png),
        "webp" => Ok(Format::Webp),
        "same" => Ok(Format::Same),
        _ => Err(ResizeError::InvalidParam(format!("`format` must be jpeg, png, webp or same, got `{value}`"))),
    }
}

fn parse_quality(value: &str) -> Result<u8, ResizeError> {
    match value.parse::<u8>() {
        Ok(q) if (1..=100).contains(&q) => Ok(q),
        _ => Err(ResizeError::InvalidParam(format!("`quality` must be a whole number from 1 to 100, got `{value}`"))),
    }
}

fn parse_filter(value: &str) -> Result<Filter, ResizeError> {
    match value {
        "lanczos3" => Ok(Filter::Lanczos3),
        "catmull-rom" => Ok(Filter::CatmullRom),
        "bilinear" => Ok(Filter::Bilinear),
        "nearest" => Ok(Filter::Nearest),
        _ => Err(ResizeError::InvalidParam(format!(
            "`filter` must be lanczos3, catmull-rom, bilinear or nearest, got `{value}`"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_when_only_width_is_given() {
        let params = ResizeParams::parse(&[("width", "400")]).expect("valid");
        assert_eq!(params, ResizeParams::new(Some(400), None));
    }

    #[test]
    fn every_option_parses() {
        let params = ResizeParams::parse(&[
            ("width", "10"),
            ("height", "20"),
            ("fit", "cover"),
            ("format", "webp"),
            ("quality", "1"),
            ("filter", "catmull-rom"),
        ])
        .expect("valid");
        assert_eq!(params.fit, Fit::Cover);
        assert_eq!(params.format, Format::Webp);
        assert_eq!(params.quality, 1);
        assert_eq!(params.filter, Filter::CatmullRom);
    }

    #[test]
    fn bad_values_name_the_parameter() {
        let cases: &[(&str, &str, &str)] = &[
            ("width", "0", "`width` must be a whole number from 1 to 16384, got `0`"),
            ("height", "abc", "`height` must be a whole number from 1 to 16384, got `abc`"),
            ("width", "16385", "`width` must be a whole number from 1 to 16384, got `16385`"),
            ("quality", "101", "`quality` must be a whole number from 1 to 100, got `101`"),
            ("fit", "zoom", "`fit` must be contain, cover or fill, got `zoom`"),
            ("format", "avif", "`format` must be jpeg, png, webp or same, got `avif`"),
            ("filter", "box", "`filter` must be lanczos3, catmull-rom, bilinear or nearest, got `box`"),
        ];
        for (key, value, message) in cases {
            let err = ResizeParams::parse(&[("width", "5"), (*key, *value)])
                .or_else(|_| ResizeParams::parse(&[(*key, *value)]))
                .expect_err("must be refused");
            assert_eq!(err.to_string(), *message, "{key}={value}");
        }
    }

    #[test]
    fn unknown_repeated_and_missing_box_are_refused() {
        let unknown = ResizeParams::parse(&[("widht", "5")]).expect_err("unknown");
        assert!(unknown.to_string().starts_with("unknown parameter `widht`"));
        let repeated = ResizeParams::parse(&[("width", "5"), ("width", "6")]).expect_err("twice");
        assert_eq!(repeated.to_string(), "parameter `width` is given more than once");
        let none = ResizeParams::parse::<&str, &str>(&[]).expect_err("no box");
        assert_eq!(none.to_string(), "give `width`, `height` or both");
    }
}
