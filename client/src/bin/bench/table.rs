//! `midge-bench table`: results side by side, one row per case and
//! figure, with the ratio of each broker to the baseline (the first label,
//! or `--baseline`).
//!
//! The figure of a case follows from its report: deliveries/s for a "max"
//! load (and the broker's CPU per delivery, with a pid), p99 latency for a
//! fixed rate, delivered/s and peak RSS for a fan-in, connects/s, CONNACK
//! p99 and RSS per connection for `conns`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::cli::TableArgs;
use super::report::{micros, read_reports, si, Report};

/// One figure of one report.
struct Figure {
    name: &'static str,
    value: f64,
    text: String,
    higher_is_better: bool,
}

fn figure(name: &'static str, value: f64, text: String, higher_is_better: bool) -> Figure {
    Figure {
        name,
        value,
        text,
        higher_is_better,
    }
}

/// The figures that matter for `r`'s kind of case.
fn figures(r: &Report) -> Vec<Figure> {
    let mut out = Vec::new();
    let broker = r.broker.as_ref();
    if let Some(l) = &r.load {
        let p99 = l.latency_us.as_ref().map(|p| p.p99);
        let rate = figure(
            "deliveries/s",
            l.deliveries_per_s,
            si(l.deliveries_per_s),
            true,
        );
        match (l.mode.as_str(), r.scenario.as_str()) {
            ("rate", _) => {
                if let Some(p99) = p99 {
                    out.push(figure("p99 latency", p99, micros(p99), false));
                }
            }
            (_, "fanin") => {
                out.push(rate);
                // How much the broker took in: with publishers flat out, the
                // rest was held back by TCP (or dropped, if this is high).
                let p = l.publish_per_s;
                out.push(figure("publishes/s", p, si(p), true));
                if let Some(kib) = broker.and_then(|b| b.rss_peak_kib) {
                    let mb = kib as f64 * 1024.0 / 1e6;
                    out.push(figure("broker peak RSS", mb, format!("{mb:.1} MB"), false));
                }
                let d = l.disconnects as f64;
                out.push(figure("disconnects", d, format!("{d}"), false));
            }
            _ => {
                out.push(rate);
                if let Some(p99) = p99 {
                    out.push(figure("p99 latency", p99, micros(p99), false));
                }
            }
        }
        if l.mode == "max" {
            if let Some(ns) = broker.and_then(|b| b.usage.ns_per_delivery) {
                out.push(figure(
                    "broker CPU/delivery",
                    ns,
                    format!("{ns:.0} ns"),
                    false,
                ));
            }
        }
    }
    if let Some(c) = &r.conns {
        out.push(figure(
            "connects/s",
            c.connects_per_s,
            si(c.connects_per_s),
            true,
        ));
        if let Some(p) = &c.connack_us {
            out.push(figure("CONNACK p99", p.p99, micros(p.p99), false));
        }
        if let Some(b) = c.rss_per_conn_bytes {
            out.push(figure("RSS/connection", b, format!("{b:.0} B"), false));
        }
    }
    out
}

/// A marker for a report whose figures are suspect.
fn marks(r: &Report) -> &'static str {
    match (r.bench_bound, r.warnings.is_empty()) {
        (true, true) => "*",
        (true, false) => "*!",
        (false, false) => "!",
        (false, true) => "",
    }
}

/// The reports by case and label, with the case names and labels in
/// order of first appearance (the baseline first). A case run several
/// times on one broker is represented by its median run (by the case's
/// first figure), so one noisy run does not decide a latency comparison.
struct Results<'a> {
    labels: Vec<String>,
    cases: Vec<String>,
    by_case: BTreeMap<(String, String), Vec<&'a Report>>,
}

impl<'a> Results<'a> {
    fn new(reports: &'a [Report], baseline: Option<&str>) -> Result<Results<'a>, String> {
        let mut r = Results {
            labels: Vec::new(),
            cases: Vec::new(),
            by_case: BTreeMap::new(),
        };
        for report in reports {
            let label = report.label.clone().unwrap_or_else(|| "broker".to_owned());
            let case = report
                .case
                .clone()
                .unwrap_or_else(|| report.scenario.clone());
            if !r.labels.contains(&label) {
                r.labels.push(label.clone());
            }
            if !r.cases.contains(&case) {
                r.cases.push(case.clone());
            }
            r.by_case.entry((case, label)).or_default().push(report);
        }
        if let Some(base) = baseline {
            let pos = r
                .labels
                .iter()
                .position(|l| l == base)
                .ok_or_else(|| format!("no results labelled {base}"))?;
            let base = r.labels.remove(pos);
            r.labels.insert(0, base);
        }
        Ok(r)
    }

    /// Each label's report of `case` (the median of several runs).
    fn of(&self, case: &str) -> Vec<Option<&'a Report>> {
        self.labels
            .iter()
            .map(|l| {
                let runs = self.by_case.get(&(case.to_owned(), l.clone()))?;
                median(runs)
            })
            .collect()
    }

    /// The most runs any broker had of `case`.
    fn runs(&self, case: &str) -> usize {
        self.labels
            .iter()
            .filter_map(|l| self.by_case.get(&(case.to_owned(), l.clone())))
            .map(Vec::len)
            .max()
            .unwrap_or(0)
    }

    fn header(&self) -> Vec<String> {
        let mut header = vec!["case".to_owned(), "figure".to_owned()];
        header.extend(self.labels.iter().cloned());
        for other in self.labels.iter().skip(1) {
            header.push(format!("{other}/{}", self.labels[0]));
        }
        header.push("goal".to_owned());
        header
    }
}

/// The rows of one case: one per figure of its kind.
fn case_rows(case: &str, reports: &[Option<&Report>]) -> Vec<Vec<String>> {
    let Some(first) = reports.iter().flatten().next() else {
        return Vec::new();
    };
    let mut rows = Vec::new();
    for (k, fig) in figures(first).iter().enumerate() {
        let values: Vec<Option<Figure>> = reports
            .iter()
            .map(|r| r.and_then(|r| figures(r).into_iter().find(|f| f.name == fig.name)))
            .collect();
        let mut row = vec![
            if k == 0 {
                case.to_owned()
            } else {
                String::new()
            },
            fig.name.to_owned(),
        ];
        for (v, r) in values.iter().zip(reports) {
            row.push(match (v, r) {
                (Some(v), Some(r)) => format!("{}{}", v.text, marks(r)),
                _ => "-".to_owned(),
            });
        }
        for v in values.iter().skip(1) {
            row.push(ratio(values[0].as_ref(), v.as_ref()));
        }
        row.push(first.goal.clone().filter(|_| k == 0).unwrap_or_default());
        rows.push(row);
    }
    rows
}

/// Renders the table of the reports in `args.results`.
pub fn render(args: &TableArgs) -> Result<String, String> {
    let reports = read_reports(&args.results)?;
    let results = Results::new(&reports, args.baseline.as_deref())?;
    let mut rows = vec![results.header()];
    let mut notes = Vec::new();
    for case in &results.cases {
        let runs = results.runs(case);
        if runs > 1 {
            notes.push(format!(
                "{case}: run {runs} times on each broker; the median run (by its first figure) is shown"
            ));
        }
        let reports = results.of(case);
        rows.extend(case_rows(case, &reports));
        for r in reports.iter().flatten() {
            let label = r.label.as_deref().unwrap_or("broker");
            for w in &r.warnings {
                notes.push(format!("{case} on {label}: {w}"));
            }
        }
    }
    let mut out = layout(&rows);
    out.push_str("\n*: midge-bench used most of its core, the broker may be faster than shown\n");
    out.push_str("!: see the warnings below\n");
    for n in notes {
        let _ = writeln!(out, "  {n}");
    }
    Ok(out)
}

/// The run whose first figure is the median of `runs` (the upper middle
/// one of an even count).
fn median<'a>(runs: &[&'a Report]) -> Option<&'a Report> {
    let mut keyed: Vec<(f64, &Report)> = runs
        .iter()
        .map(|r| (figures(r).first().map_or(0.0, |f| f.value), *r))
        .collect();
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
    keyed.get(keyed.len() / 2).map(|(_, r)| *r)
}

/// `other / base`, said so that "better" reads as better.
fn ratio(base: Option<&Figure>, other: Option<&Figure>) -> String {
    let (Some(b), Some(o)) = (base, other) else {
        return "-".to_owned();
    };
    if b.value <= 0.0 || o.value <= 0.0 {
        return "-".to_owned();
    }
    let r = o.value / b.value;
    let better = (r > 1.0) == b.higher_is_better;
    let word = if (r - 1.0).abs() < 0.005 {
        "same"
    } else if better {
        "better"
    } else {
        "worse"
    };
    format!("{r:.2}x {word}")
}

/// Aligns rows into columns under a rule.
fn layout(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(s, w)| format!("{s:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            let _ = writeln!(out, "{}", rule.join("  "));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::report::{LoadReport, Report};

    fn fanout(label: &str, rate: f64) -> Report {
        Report {
            label: Some(label.into()),
            case: Some("fanout-100-q0".into()),
            goal: Some(">= 5.5M".into()),
            scenario: "fanout".into(),
            load: Some(LoadReport {
                mode: "max".into(),
                deliveries_per_s: rate,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The table of `reports` written as a results file, and its
    /// fanout-100-q0 row.
    fn table_of(reports: &[Report]) -> (String, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.json");
        let lines: Vec<String> = reports
            .iter()
            .map(|r| serde_json::to_string(r).expect("json"))
            .collect();
        std::fs::write(&path, lines.join("\n")).expect("write");
        let args = TableArgs {
            results: path,
            baseline: None,
        };
        let table = render(&args).expect("table");
        let row = table
            .lines()
            .find(|l| l.starts_with("fanout-100-q0"))
            .expect("row")
            .to_owned();
        (table, row)
    }

    #[test]
    fn the_table_puts_brokers_side_by_side_with_their_ratio() {
        let (table, row) = table_of(&[fanout("mosquitto", 333_000.0), fanout("midge", 999_000.0)]);
        assert!(row.contains("333.0k"), "{table}");
        assert!(row.contains("999.0k"), "{table}");
        assert!(row.contains("3.00x better"), "{table}");
        assert!(row.contains(">= 5.5M"), "{table}");
    }

    #[test]
    fn a_case_run_several_times_shows_its_median_run() {
        let (table, row) = table_of(&[
            fanout("mosquitto", 300_000.0),
            fanout("midge", 900_000.0),
            fanout("mosquitto", 100_000.0),
            fanout("midge", 500_000.0),
            fanout("mosquitto", 200_000.0),
            fanout("midge", 700_000.0),
        ]);
        assert!(row.contains("200.0k") && row.contains("700.0k"), "{table}");
        assert!(row.contains("3.50x better"), "{table}");
        assert!(table.contains("run 3 times on each broker"), "{table}");
    }

    #[test]
    fn lower_latency_is_better() {
        let f = |v| figure("p99 latency", v, String::new(), false);
        assert_eq!(ratio(Some(&f(200.0)), Some(&f(100.0))), "0.50x better");
    }
}
