//! The training curves as an SVG: loss on the left, validation exact match
//! and character error rate on the right.

use crate::error::Result;
use crate::fsutil::write_atomic;
use std::fmt::Write;
use std::path::Path;

const W: f64 = 960.0;
const H: f64 = 360.0;
const PANEL_W: f64 = 420.0;
const PANEL_H: f64 = 260.0;
const TOP: f64 = 50.0;

/// One line of a panel: (x, y) points, a colour and a legend label.
struct Series<'a> {
    points: Vec<(f64, f64)>,
    colour: &'a str,
    label: &'a str,
}

/// Writes `training.svg`-style curves: `loss` as (step, training loss) and
/// `val` as (step, exact match, CER).
pub fn write_training_plot(
    path: &Path,
    loss: &[(u64, f32)],
    val: &[(u64, f64, f64)],
) -> Result<()> {
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>"#
    );
    let loss_series = Series {
        points: loss
            .iter()
            .map(|&(s, l)| (s as f64, l as f64))
            .filter(|p| p.1.is_finite())
            .collect(),
        colour: "#1f77b4",
        label: "training loss (CTC)",
    };
    panel(&mut svg, 60.0, "training loss", &[loss_series], None);
    let exact = Series {
        points: val.iter().map(|&(s, e, _)| (s as f64, e)).collect(),
        colour: "#2ca02c",
        label: "validation exact match",
    };
    let cer = Series {
        points: val.iter().map(|&(s, _, c)| (s as f64, c)).collect(),
        colour: "#d62728",
        label: "validation CER",
    };
    panel(
        &mut svg,
        60.0 + PANEL_W + 60.0,
        "validation",
        &[exact, cer],
        Some((0.0, 1.0)),
    );
    svg.push_str("</svg>\n");
    write_atomic(path, svg.as_bytes())
}

fn panel(svg: &mut String, left: f64, title: &str, series: &[Series], y_range: Option<(f64, f64)>) {
    let all = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in all {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if let Some((lo, hi)) = y_range {
        y0 = lo;
        y1 = hi;
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 - x0 < 1e-9 {
        x1 = x0 + 1.0;
    }
    if y1 - y0 < 1e-9 {
        y1 = y0 + 1.0;
    }
    let sx = |x: f64| left + (x - x0) / (x1 - x0) * PANEL_W;
    let sy = |y: f64| TOP + PANEL_H - (y - y0) / (y1 - y0) * PANEL_H;
    let _ = write!(
        svg,
        r##"<text x="{}" y="{}" font-size="14">{title}</text><rect x="{left}" y="{TOP}" width="{PANEL_W}" height="{PANEL_H}" fill="none" stroke="#888"/>"##,
        left,
        TOP - 10.0
    );
    for i in 0..=4 {
        let f = i as f64 / 4.0;
        let (yv, xv) = (y0 + f * (y1 - y0), x0 + f * (x1 - x0));
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text><text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            left - 4.0,
            sy(yv) + 4.0,
            fmt_num(yv),
            sx(xv),
            TOP + PANEL_H + 16.0,
            fmt_num(xv)
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">step</text>"#,
        left + PANEL_W / 2.0,
        TOP + PANEL_H + 32.0
    );
    for (i, s) in series.iter().enumerate() {
        if !s.points.is_empty() {
            let pts: Vec<String> = s
                .points
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
                .collect();
            let _ = write!(
                svg,
                r#"<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/>"#,
                s.colour,
                pts.join(" ")
            );
        }
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" fill="{}">{}</text>"#,
            left + 8.0,
            TOP + 16.0 + 14.0 * i as f64,
            s.colour,
            s.label
        );
    }
}

fn fmt_num(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}
