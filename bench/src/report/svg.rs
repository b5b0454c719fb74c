//! Small SVG charts for the report: horizontal bars and lines over numeric
//! axes. Plain SVG text (no fonts to embed), so any browser or Markdown
//! viewer renders them.

use std::fmt::Write;

const WIDTH: f64 = 760.0;
const COLORS: &[&str] = &["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Round tick step for a range up to `max`.
fn tick_step(max: f64) -> f64 {
    let raw = (max / 5.0).max(f64::MIN_POSITIVE);
    let magnitude = 10f64.powf(raw.log10().floor());
    let normalized = raw / magnitude;
    let nice = if normalized <= 1.0 {
        1.0
    } else if normalized <= 2.0 {
        2.0
    } else if normalized <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

fn format_tick(value: f64) -> String {
    if value.abs() >= 100.0 || value.fract().abs() < 1e-9 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}").trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// One labelled bar per row, with an optional dashed goal line.
pub fn bar_chart(title: &str, x_label: &str, bars: &[(String, f64)], goal: Option<f64>) -> String {
    let (left, right, top, row) = (250.0, 30.0, 40.0, 22.0);
    let height = top + row * bars.len() as f64 + 50.0;
    let max = bars.iter().map(|(_, v)| *v).chain(goal).fold(0.0, f64::max).max(1e-9) * 1.1;
    let plot_width = WIDTH - left - right;
    let x = |v: f64| left + v / max * plot_width;
    let mut svg = header(height, title);
    let step = tick_step(max);
    let mut tick = 0.0;
    while tick <= max {
        let _ = write!(
            svg,
            r##"<line x1="{0:.1}" y1="{top}" x2="{0:.1}" y2="{1:.1}" stroke="#ddd"/><text x="{0:.1}" y="{2:.1}" text-anchor="middle">{3}</text>"##,
            x(tick),
            height - 40.0,
            height - 25.0,
            format_tick(tick)
        );
        tick += step;
    }
    for (i, (label, value)) in bars.iter().enumerate() {
        let y = top + row * i as f64;
        let _ = write!(
            svg,
            r##"<rect x="{left}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text><text x="{:.1}" y="{:.1}">{:.2}</text>"##,
            y + 3.0,
            (x(*value) - left).max(0.5),
            row - 6.0,
            COLORS[0],
            left - 6.0,
            y + row * 0.7,
            escape(label),
            x(*value) + 4.0,
            y + row * 0.7,
            value
        );
    }
    if let Some(goal) = goal {
        let _ = write!(
            svg,
            r##"<line x1="{0:.1}" y1="{top}" x2="{0:.1}" y2="{1:.1}" stroke="{2}" stroke-dasharray="5,4"/><text x="{0:.1}" y="{3:.1}" fill="{2}" text-anchor="middle">goal {4}</text>"##,
            x(goal),
            height - 40.0,
            COLORS[1],
            top - 6.0,
            format_tick(goal)
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text></svg>"#,
        left + plot_width / 2.0,
        height - 6.0,
        escape(x_label)
    );
    svg
}

/// A named series of (x, y) points.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// Points, in x order.
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed (for reference lines such as "linear").
    pub dashed: bool,
}

/// Lines with markers over numeric x and y axes starting at zero.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    let (left, right, top, bottom, height) = (70.0, 170.0, 40.0, 50.0, 380.0);
    let all = series.iter().flat_map(|s| s.points.iter().copied());
    let (max_x, max_y) = all.fold((0.0f64, 0.0f64), |(mx, my), (x, y)| (mx.max(x), my.max(y)));
    let (max_x, max_y) = (max_x.max(1e-9) * 1.05, max_y.max(1e-9) * 1.1);
    let (plot_w, plot_h) = (WIDTH - left - right, height - top - bottom);
    let px = |x: f64| left + x / max_x * plot_w;
    let py = |y: f64| top + plot_h - y / max_y * plot_h;
    let mut svg = header(height, title);
    let mut tick = 0.0;
    let step = tick_step(max_y);
    while tick <= max_y {
        let _ = write!(
            svg,
            r##"<line x1="{left}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#ddd"/><text x="{2:.1}" y="{3:.1}" text-anchor="end">{4}</text>"##,
            py(tick),
            left + plot_w,
            left - 6.0,
            py(tick) + 4.0,
            format_tick(tick)
        );
        tick += step;
    }
    let mut tick = 0.0;
    let step = tick_step(max_x);
    while tick <= max_x {
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            px(tick),
            top + plot_h + 18.0,
            format_tick(tick)
        );
        tick += step;
    }
    let _ = write!(
        svg,
        r##"<line x1="{left}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#333"/><line x1="{left}" y1="{top}" x2="{left}" y2="{0:.1}" stroke="#333"/>"##,
        top + plot_h,
        left + plot_w
    );
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let path: Vec<String> = s.points.iter().map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y))).collect();
        let dash = if s.dashed { r#" stroke-dasharray="6,4""# } else { "" };
        let _ = write!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#,
            path.join(" ")
        );
        for &(x, y) in &s.points {
            let _ = write!(svg, r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#, px(x), py(y));
        }
        let ly = top + 10.0 + 20.0 * i as f64;
        let _ = write!(
            svg,
            r#"<line x1="{0:.1}" y1="{1:.1}" x2="{2:.1}" y2="{1:.1}" stroke="{color}" stroke-width="2"{dash}/><text x="{3:.1}" y="{4:.1}">{5}</text>"#,
            left + plot_w + 12.0,
            ly,
            left + plot_w + 36.0,
            left + plot_w + 42.0,
            ly + 4.0,
            escape(&s.name)
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">{}</text></svg>"#,
        left + plot_w / 2.0,
        height - 10.0,
        escape(x_label),
        top + plot_h / 2.0,
        top + plot_h / 2.0,
        escape(y_label)
    );
    svg
}

fn header(height: f64, title: &str) -> String {
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0}" viewBox="0 0 {WIDTH} {height:.0}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/><text x="{:.0}" y="20" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_numbers() {
        assert_eq!(tick_step(2.4), 0.5);
        assert_eq!(tick_step(1000.0), 200.0);
        assert_eq!(format_tick(0.5), "0.5");
        assert_eq!(format_tick(200.0), "200");
    }

    #[test]
    fn charts_are_well_formed_svg_with_every_label() {
        let bars = bar_chart("ratio", "x", &[("a<b".to_owned(), 1.5), ("c".to_owned(), 0.7)], Some(1.2));
        assert!(bars.starts_with("<svg") && bars.ends_with("</svg>"));
        assert!(bars.contains("a&lt;b") && bars.contains("goal 1.2"));
        let lines = line_chart(
            "t",
            "x",
            "y",
            &[Series { name: "p99".to_owned(), points: vec![(1.0, 2.0), (2.0, 3.0)], dashed: false }],
        );
        assert!(lines.contains("<polyline") && lines.contains(">p99<") && lines.ends_with("</svg>"));
        assert_eq!(lines.matches("<circle").count(), 2);
    }
}
