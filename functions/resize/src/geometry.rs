//! Output sizes for each fit mode.

use crate::{Fit, ResizeError, ResizeParams};

/// The output size for a `src_width`×`src_height` image (after orientation).
///
/// With one side given, the other follows the aspect ratio whatever the fit.
/// With both, `contain` scales to fit inside the box, and `cover` and `fill`
/// produce exactly the box (cover crops, fill stretches).
pub fn output_size(src_width: u32, src_height: u32, params: &ResizeParams) -> (u32, u32) {
    let (sw, sh) = (f64::from(src_width), f64::from(src_height));
    match (params.width, params.height) {
        (Some(w), None) => (w, scaled(sh, f64::from(w) / sw)),
        (None, Some(h)) => (scaled(sw, f64::from(h) / sh), h),
        (Some(w), Some(h)) => match params.fit {
            Fit::Cover | Fit::Fill => (w, h),
            Fit::Contain => {
                let scale = (f64::from(w) / sw).min(f64::from(h) / sh);
                (scaled(sw, scale).min(w), scaled(sh, scale).min(h))
            }
        },
        // `ResizeParams::parse` refuses a missing box; keep the source size
        // for callers that build params by hand.
        (None, None) => (src_width, src_height),
    }
}

fn scaled(side: f64, scale: f64) -> u32 {
    let value = (side * scale).round();
    if value < 1.0 {
        1
    } else if value >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        // Rounded, finite and in range: the cast is exact.
        value as u32
    }
}

/// Refuses outputs over the pixel budget (e.g. width=16384 on a 1-pixel-wide
/// strip would otherwise ask for a 16384×16384000 image).
pub fn check_budget(width: u32, height: u32, budget: u64) -> Result<(), ResizeError> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels > budget {
        return Err(ResizeError::OutputTooLarge { width, height, pixels, budget });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(width: Option<u32>, height: Option<u32>, fit: Fit) -> ResizeParams {
        ResizeParams { fit, ..ResizeParams::new(width, height) }
    }

    #[test]
    fn one_side_keeps_aspect_ratio() {
        assert_eq!(output_size(768, 512, &params(Some(400), None, Fit::Fill)), (400, 267));
        assert_eq!(output_size(768, 512, &params(None, Some(100), Fit::Cover)), (150, 100));
    }

    #[test]
    fn contain_fits_inside_the_box() {
        assert_eq!(output_size(768, 512, &params(Some(300), Some(300), Fit::Contain)), (300, 200));
        assert_eq!(output_size(512, 768, &params(Some(300), Some(300), Fit::Contain)), (200, 300));
    }

    #[test]
    fn cover_and_fill_produce_the_box() {
        assert_eq!(output_size(768, 512, &params(Some(300), Some(300), Fit::Cover)), (300, 300));
        assert_eq!(output_size(768, 512, &params(Some(10), Some(900), Fit::Fill)), (10, 900));
    }

    #[test]
    fn tiny_results_are_at_least_one_pixel() {
        assert_eq!(output_size(6000, 2, &params(Some(10), None, Fit::Contain)), (10, 1));
    }

    #[test]
    fn budget_refuses_huge_outputs() {
        let err = check_budget(16_384, 16_384, 50_000_000).expect_err("over budget");
        assert_eq!(
            err.to_string(),
            "the output would be 16384x16384 (268435456 pixels), over the pixel budget of 50000000"
        );
        assert!(check_budget(5000, 5000, 50_000_000).is_ok());
    }
}
