//! `midge-bench chart`: fan-out deliveries per second against subscriber
//! count, one line per broker and QoS, as a self-contained SVG file.
//!
//! Both axes are logarithmic: the subscriber counts span decades, and
//! brokers an order of magnitude apart stay readable on one chart. Only
//! single-publisher `fanout` runs in "max" mode are drawn.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::cli::ChartArgs;
use super::report::{read_reports, si, Report};

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 460.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 180.0;
const TOP: f64 = 70.0;
const BOTTOM: f64 = 60.0;
const COLOURS: [&str; 6] = [
    "#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e", "#e6ab02",
];

/// One line: a broker at one QoS.
type Series = BTreeMap<(usize, u8), Vec<(f64, f64)>>;

/// Draws the chart of `args.results` into `args.out`; returns a summary.
pub fn write(args: &ChartArgs) -> Result<String, String> {
    let reports = read_reports(&args.results)?;
    let (labels, series) = collect(&reports);
    if series.is_empty() {
        return Err(format!(
            "{}: no single-publisher fanout results in max mode to draw",
            args.results.display()
        ));
    }
    let svg = render(&labels, &series, args.note.as_deref());
    std::fs::write(&args.out, svg).map_err(|e| format!("{}: {e}", args.out.display()))?;
    Ok(format!(
        "{}: {} lines, {} points",
        args.out.display(),
        series.len(),
        series.values().map(Vec::len).sum::<usize>()
    ))
}

/// The labels in order of appearance, and the points of each line, by
/// subscriber count.
fn collect(reports: &[Report]) -> (Vec<String>, Series) {
    let mut labels: Vec<String> = Vec::new();
    let mut series = Series::new();
    for r in reports {
        let Some(l) = &r.load else { continue };
        if r.scenario != "fanout" || l.mode != "max" || l.publishers != 1 {
            continue;
        }
        let label = r.label.clone().unwrap_or_else(|| "broker".to_owned());
        let index = match labels.iter().position(|x| *x == label) {
            Some(i) => i,
            None => {
                labels.push(label);
                labels.len() - 1
            }
        };
        let points = series.entry((index, l.qos)).or_default();
        let x = l.subscribers as f64;
        // A case run twice keeps its last figure.
        points.retain(|(px, _)| *px != x);
        points.push((x, l.deliveries_per_s.max(1.0)));
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    (labels, series)
}

/// A logarithmic axis from `10^lo` to `10^hi` over `0..len` pixels.
struct LogAxis {
    lo: i32,
    hi: i32,
    len: f64,
}

impl LogAxis {
    fn fit(values: impl Iterator<Item = f64>, len: f64) -> LogAxis {
        let (mut lo, mut hi) = (f64::MAX, f64::MIN);
        for v in values {
            lo = lo.min(v.log10());
            hi = hi.max(v.log10());
        }
        let lo = lo.floor() as i32;
        let hi = (hi.ceil() as i32).max(lo + 1);
        LogAxis { lo, hi, len }
    }

    fn at(&self, v: f64) -> f64 {
        (v.log10() - f64::from(self.lo)) / f64::from(self.hi - self.lo) * self.len
    }

    fn decades(&self) -> impl Iterator<Item = f64> {
        (self.lo..=self.hi).map(|e| 10f64.powi(e))
    }
}

/// Where points go: both axes and the plot area.
struct Frame {
    x: LogAxis,
    y: LogAxis,
    plot_w: f64,
    plot_h: f64,
}

impl Frame {
    fn fit(series: &Series) -> Frame {
        let plot_w = WIDTH - LEFT - RIGHT;
        let plot_h = HEIGHT - TOP - BOTTOM;
        let points = || series.values().flatten();
        Frame {
            x: LogAxis::fit(points().map(|p| p.0), plot_w),
            y: LogAxis::fit(points().map(|p| p.1), plot_h),
            plot_w,
            plot_h,
        }
    }

    fn px(&self, v: f64) -> f64 {
        LEFT + self.x.at(v)
    }

    fn py(&self, v: f64) -> f64 {
        TOP + self.plot_h - self.y.at(v)
    }
}

fn render(labels: &[String], series: &Series, note: Option<&str>) -> String {
    let frame = Frame::fit(series);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="24" font-size="15" font-weight="bold">Fan-out: deliveries/s by subscriber count (1 publisher, max mode)</text>"#
    );
    if let Some(note) = note {
        let _ = writeln!(
            s,
            r##"<text x="{LEFT}" y="44" fill="#555">{}</text>"##,
            escape(note)
        );
    }
    draw_axes(&mut s, &frame);
    for (n, ((label, qos), pts)) in series.iter().enumerate() {
        draw_series(&mut s, &frame, n, &labels[*label], *label, *qos, pts);
    }
    s.push_str("</svg>\n");
    s
}

/// Grid lines at every decade, their labels, the frame and axis titles.
fn draw_axes(s: &mut String, f: &Frame) {
    let bottom = TOP + f.plot_h;
    for d in f.x.decades() {
        let px = f.px(d);
        let _ = writeln!(
            s,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{bottom:.1}" stroke="#ddd"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            bottom + 18.0,
            decade(d)
        );
    }
    for d in f.y.decades() {
        let py = f.py(d);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + f.plot_w,
            LEFT - 8.0,
            py + 4.0,
            decade(d)
        );
    }
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{:.1}" height="{:.1}" fill="none" stroke="#333"/>"##,
        f.plot_w, f.plot_h
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">subscribers</text>"#,
        LEFT + f.plot_w / 2.0,
        HEIGHT - 16.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">deliveries/s</text>"#,
        TOP + f.plot_h / 2.0
    );
}

/// One line with its points, their values and its legend entry: the
/// colour tells the broker, the dashes the QoS.
fn draw_series(
    s: &mut String,
    f: &Frame,
    n: usize,
    label: &str,
    label_index: usize,
    qos: u8,
    pts: &[(f64, f64)],
) {
    let colour = COLOURS[label_index % COLOURS.len()];
    let dash = match qos {
        0 => "",
        1 => r#" stroke-dasharray="7 4""#,
        _ => r#" stroke-dasharray="2 3""#,
    };
    let path: Vec<String> = pts
        .iter()
        .map(|&(x, y)| format!("{:.1},{:.1}", f.px(x), f.py(y)))
        .collect();
    let _ = writeln!(
        s,
        r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>"#,
        path.join(" ")
    );
    // Values above the points of even lines and below those of odd ones,
    // so two lines close together stay readable; at the right edge they
    // end at the point.
    let dy = if n % 2 == 0 { -6.0 } else { 15.0 };
    let right = f.px(f.x.decades().last().unwrap_or(1.0)) - 1.0;
    for &(x, y) in pts {
        let (px, py) = (f.px(x), f.py(y));
        let (tx, anchor) = if px >= right {
            (px - 5.0, "end")
        } else {
            (px + 5.0, "start")
        };
        let _ = writeln!(
            s,
            r#"<circle cx="{px:.1}" cy="{py:.1}" r="3.5" fill="{colour}"/><text x="{tx:.1}" y="{:.1}" fill="{colour}" font-size="10" text-anchor="{anchor}">{}</text>"#,
            py + dy,
            si(y)
        );
    }
    let ly = TOP + 10.0 + n as f64 * 20.0;
    let lx = LEFT + f.plot_w + 16.0;
    let _ = writeln!(
        s,
        r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{} QoS {qos}</text>"#,
        lx + 26.0,
        lx + 32.0,
        ly + 4.0,
        escape(label)
    );
}

/// A power of ten as an axis label: `1`, `100`, `10k`, `1M`.
fn decade(v: f64) -> String {
    match v {
        v if v >= 1e9 => format!("{:.0}G", v / 1e9),
        v if v >= 1e6 => format!("{:.0}M", v / 1e6),
        v if v >= 1e3 => format!("{:.0}k", v / 1e3),
        v => format!("{v:.0}"),
    }
}

/// Escapes text for XML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::report::LoadReport;

    fn point(label: &str, qos: u8, subscribers: usize, rate: f64) -> Report {
        Report {
            label: Some(label.into()),
            scenario: "fanout".into(),
            load: Some(LoadReport {
                mode: "max".into(),
                qos,
                publishers: 1,
                subscribers,
                deliveries_per_s: rate,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn each_broker_and_qos_is_a_line_over_the_subscriber_counts() {
        let reports = vec![
            point("mosquitto", 1, 100, 232e3),
            point("midge", 1, 100, 3.4e6),
            point("mosquitto", 1, 1000, 131e3),
            point("midge", 1, 1000, 1.0e6),
            point("midge", 0, 100, 5.5e6),
        ];
        let (labels, series) = collect(&reports);
        assert_eq!(labels, ["mosquitto", "midge"]);
        assert_eq!(series.len(), 3);
        assert_eq!(series[&(0, 1)], [(100.0, 232e3), (1000.0, 131e3)]);
        let svg = render(&labels, &series, Some("2 cores & <loopback>"));
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(svg.contains("2 cores &amp; &lt;loopback&gt;"));
        assert!(svg.contains(">1M<") && svg.contains(">100k<"), "{svg}");
    }
}
