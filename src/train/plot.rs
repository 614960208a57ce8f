//! Minimal hand-written SVG line charts for the run's `lr.svg` and `curves.svg`.

use std::fmt::Write as _;

/// One line of a chart.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// Stroke colour (any SVG colour).
    pub color: String,
    /// (x, y) points; non-finite values are skipped.
    pub points: Vec<(f64, f64)>,
    /// Draw a circle at each point instead of a line.
    pub markers_only: bool,
}

impl Series {
    /// A series from its label, colour and points.
    pub fn new(label: &str, color: &str, points: Vec<(f64, f64)>) -> Series {
        Series {
            label: label.into(),
            color: color.into(),
            points,
            markers_only: false,
        }
    }
}

/// One chart panel.
#[derive(Clone, Debug)]
pub struct Panel {
    /// Title above the panel.
    pub title: String,
    /// X-axis label.
    pub x_label: String,
    /// Y-axis label.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
}

const W: f64 = 720.0;
const H: f64 = 300.0;
const ML: f64 = 80.0;
const MR: f64 = 150.0;
const MT: f64 = 36.0;
const MB: f64 = 48.0;

/// A "nice" tick step (1, 2 or 5 × 10^k) giving about `n` ticks over `range`.
pub fn nice_step(range: f64, n: usize) -> f64 {
    if !(range > 0.0 && range.is_finite()) {
        return 1.0;
    }
    let raw = range / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let m = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    m * mag
}

fn fmt_tick(v: f64, step: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    if v.abs() < 1e-3 || v.abs() >= 1e6 {
        return format!("{v:.1e}");
    }
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    format!("{v:.decimals$}")
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn bounds(panel: &Panel) -> (f64, f64, f64, f64) {
    let pts = panel
        .series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|(x, y)| x.is_finite() && y.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        return (0.0, 1.0, 0.0, 1.0);
    }
    if x1 == x0 {
        x1 = x0 + 1.0;
    }
    if y1 == y0 {
        let pad = if y0 == 0.0 { 1.0 } else { y0.abs() * 0.1 };
        y0 -= pad;
        y1 += pad;
    }
    if y0 > 0.0 && y0 < 0.25 * y1 {
        y0 = 0.0; // include the origin when it costs little
    } else {
        let pad = 0.04 * (y1 - y0);
        y0 -= pad;
    }
    y1 += 0.04 * (y1 - y0);
    (x0, x1, y0, y1)
}

/// Where a panel's data range lands on the page.
struct Frame {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
    /// Plot area width and height.
    pw: f64,
    ph: f64,
    /// Top of the panel.
    top: f64,
}

impl Frame {
    fn new(panel: &Panel, top: f64) -> Frame {
        let (x0, x1, y0, y1) = bounds(panel);
        Frame {
            x0,
            x1,
            y0,
            y1,
            pw: W - ML - MR,
            ph: H - MT - MB,
            top,
        }
    }

    fn sx(&self, x: f64) -> f64 {
        ML + (x - self.x0) / (self.x1 - self.x0) * self.pw
    }

    fn sy(&self, y: f64) -> f64 {
        self.top + MT + self.ph - (y - self.y0) / (self.y1 - self.y0) * self.ph
    }
}

fn draw_panel(out: &mut String, panel: &Panel, top: f64) {
    let fr = Frame::new(panel, top);
    let (pw, ph) = (fr.pw, fr.ph);
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" font-size="15" font-weight="bold" text-anchor="middle">{}</text>"#,
        ML + pw / 2.0,
        top + 22.0,
        escape(&panel.title)
    );
    let _ = writeln!(
        out,
        r##"<rect x="{ML}" y="{:.1}" width="{pw:.1}" height="{ph:.1}" fill="none" stroke="#444"/>"##,
        top + MT
    );
    draw_y_ticks(out, &fr);
    draw_x_ticks(out, &fr, panel);
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text>"#,
        ML + pw / 2.0,
        top + H - 10.0,
        escape(&panel.x_label)
    );
    let (lx, ly) = (18.0, top + MT + ph / 2.0);
    let _ = writeln!(
        out,
        r#"<text x="{lx}" y="{ly:.1}" font-size="12" text-anchor="middle" transform="rotate(-90 {lx} {ly:.1})">{}</text>"#,
        escape(&panel.y_label)
    );
    for (i, s) in panel.series.iter().enumerate() {
        draw_series(out, &fr, s);
        draw_legend_entry(out, &fr, s, i, panel.series.len());
    }
}

/// Y ticks with their labels and horizontal grid lines.
fn draw_y_ticks(out: &mut String, fr: &Frame) {
    let ys = nice_step(fr.y1 - fr.y0, 5);
    let mut t = (fr.y0 / ys).ceil() * ys;
    while t <= fr.y1 + ys * 1e-9 {
        let y = fr.sy(t);
        let _ = writeln!(
            out,
            r##"<line x1="{ML}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
            ML + fr.pw,
            ML - 6.0,
            y + 4.0,
            fmt_tick(t, ys)
        );
        t += ys;
    }
}

/// X ticks with their labels (whole steps when every x is an integer).
fn draw_x_ticks(out: &mut String, fr: &Frame, panel: &Panel) {
    let integral_x = panel
        .series
        .iter()
        .flat_map(|s| s.points.iter())
        .all(|(x, _)| x.fract() == 0.0);
    let mut xs = nice_step(fr.x1 - fr.x0, 8);
    if integral_x {
        xs = xs.max(1.0);
    }
    let bottom = fr.top + MT + fr.ph;
    let mut t = (fr.x0 / xs).ceil() * xs;
    while t <= fr.x1 + xs * 1e-9 {
        let x = fr.sx(t);
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#444"/><text x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"##,
            bottom,
            bottom + 5.0,
            bottom + 18.0,
            fmt_tick(t, xs)
        );
        t += xs;
    }
}

/// One series: a polyline, or circles for a single point or a markers-only series.
fn draw_series(out: &mut String, fr: &Frame, s: &Series) {
    let pts: Vec<String> = s
        .points
        .iter()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .map(|&(x, y)| format!("{:.2},{:.2}", fr.sx(x), fr.sy(y)))
        .collect();
    if pts.len() == 1 || s.markers_only {
        for p in &pts {
            let _ = writeln!(
                out,
                r#"<circle cx="{}" cy="{}" r="3" fill="{}"/>"#,
                p.split(',').next().unwrap_or("0"),
                p.split(',').nth(1).unwrap_or("0"),
                s.color
            );
        }
    } else if !pts.is_empty() {
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{}" stroke-width="1.8" points="{}"/>"#,
            s.color,
            pts.join(" ")
        );
    }
}

/// Legend line `i` of `n`, right of the plot area.
fn draw_legend_entry(out: &mut String, fr: &Frame, s: &Series, i: usize, n: usize) {
    // Crowded legends (one line per layer) shrink their spacing to fit the panel.
    let gap = ((fr.ph - 14.0) / n as f64).min(18.0);
    let ly = fr.top + MT + 14.0 + i as f64 * gap;
    let lx = ML + fr.pw + 12.0;
    let _ = writeln!(
        out,
        r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{}" stroke-width="3"/><text x="{:.1}" y="{:.1}" font-size="{:.0}">{}</text>"#,
        lx + 20.0,
        s.color,
        lx + 26.0,
        ly + 4.0,
        (gap - 3.0).clamp(8.0, 12.0),
        escape(&s.label)
    );
}

/// Renders panels stacked vertically into one SVG document.
pub fn render(panels: &[Panel]) -> String {
    let total_h = H * panels.len().max(1) as f64;
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{total_h}" viewBox="0 0 {W} {total_h}" font-family="sans-serif">"#
    );
    out.push('\n');
    out.push_str(r#"<rect width="100%" height="100%" fill="white"/>"#);
    out.push('\n');
    for (i, p) in panels.iter().enumerate() {
        draw_panel(&mut out, p, i as f64 * H);
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_steps() {
        assert_eq!(nice_step(1.0, 5), 0.2);
        assert_eq!(nice_step(100.0, 5), 20.0);
        assert_eq!(nice_step(0.09, 5), 0.02);
        assert_eq!(nice_step(0.0, 5), 1.0);
    }

    #[test]
    fn renders_valid_looking_svg() {
        let p = Panel {
            title: "a < b".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            series: vec![
                Series::new("one", "red", vec![(0.0, 1.0), (1.0, 2.0), (2.0, f64::NAN)]),
                Series::new("single", "blue", vec![(0.5, 1.5)]),
                Series::new("empty", "green", vec![]),
            ],
        };
        let s = render(&[p.clone(), p]);
        assert!(s.starts_with("<svg"));
        assert!(s.trim_end().ends_with("</svg>"));
        assert!(s.contains("<polyline"));
        assert!(s.contains("a &lt; b"));
        assert!(!s.contains("NaN"));
    }
}
