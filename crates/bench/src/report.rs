//! What every benchmark shares: medians and ratios, the summary rows of targets, Markdown
//! tables, progress reporting, and the process's CPU time and RSS.

use serde::Serialize;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

/// The median of `values` (the mean of the middle two for an even count); `None` when empty.
/// NaNs sort last and are never chosen unless every value is NaN.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// `a / b`, or `None` when `b` is not a positive number.
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && b.is_finite() && a.is_finite()).then(|| a / b)
}

/// A ratio as printed in tables: `0.97×`, or `—` when there is none.
pub fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "—".to_string(), |r| format!("{r:.2}×"))
}

/// A list of ratios in brackets, as the docs quote per-run values: `(0.97, 1.01, 0.95)`.
pub fn fmt_runs(values: &[f64]) -> String {
    let parts: Vec<String> = values.iter().map(|v| format!("{v:.2}")).collect();
    format!("({})", parts.join(", "))
}

/// Whether a measured value meets a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Met,
    Missed,
    /// Reported without a target, or not measurable in this run.
    Info,
}

impl Verdict {
    /// `Met` if `value >= target`, `Missed` otherwise, `Info` when there is no value.
    pub fn at_least(value: Option<f64>, target: f64) -> Verdict {
        match value {
            Some(v) if v >= target => Verdict::Met,
            Some(_) => Verdict::Missed,
            None => Verdict::Info,
        }
    }

    /// `Met` if `value < target`, `Missed` otherwise, `Info` when there is no value.
    pub fn below(value: Option<f64>, target: f64) -> Verdict {
        match value {
            Some(v) if v < target => Verdict::Met,
            Some(_) => Verdict::Missed,
            None => Verdict::Info,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "MISSED",
            Verdict::Info => "—",
        }
    }
}

/// One line of the summary: a target, what was measured against it, and the verdict.
#[derive(Debug, Clone, Serialize)]
pub struct TargetRow {
    /// The benchmark (`direct`, `modes`, ...).
    pub bench: String,
    /// What is compared, in words.
    pub what: String,
    /// The target, in words (`≥ 0.95× vanilla`).
    pub target: String,
    /// The measured value, as printed (median ratio, seconds, ...).
    pub measured: String,
    pub verdict: Verdict,
}

impl TargetRow {
    pub fn new(
        bench: &str,
        what: impl Into<String>,
        target: impl Into<String>,
        measured: impl Into<String>,
        verdict: Verdict,
    ) -> Self {
        TargetRow {
            bench: bench.to_string(),
            what: what.into(),
            target: target.into(),
            measured: measured.into(),
            verdict,
        }
    }
}

/// The summary table of targets, in Markdown.
pub fn render_targets(rows: &[TargetRow]) -> String {
    let mut t = Table::new(&[
        "benchmark",
        "what",
        "target",
        "measured (median)",
        "verdict",
    ]);
    for r in rows {
        t.row(vec![
            r.bench.clone(),
            r.what.clone(),
            r.target.clone(),
            r.measured.clone(),
            r.verdict.as_str().to_string(),
        ]);
    }
    t.render()
}

/// A Markdown table: a header, then rows of cells. Numbers right-aligned by the caller's
/// choice of `align_right` columns.
#[derive(Debug, Clone)]
pub struct Table {
    header: Vec<String>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column names; columns whose name starts with a lower-case letter and
    /// ends in a unit (`/s`, `×`, ` s`, `µs`, `MB`) are right-aligned.
    pub fn new(header: &[&str]) -> Table {
        let right = header
            .iter()
            .map(|h| {
                [
                    "/s", "×", " s", "µs", "MB", "ms", "records", "lost", "ratio",
                ]
                .iter()
                .any(|u| h.ends_with(u))
            })
            .collect();
        Table {
            header: header.iter().map(|s| s.to_string()).collect(),
            right,
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are left empty, extra cells are dropped.
    pub fn row(&mut self, mut cells: Vec<String>) {
        cells.resize(self.header.len(), String::new());
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(t, "| {} |", self.header.join(" | "));
        let align: Vec<&str> = self
            .right
            .iter()
            .map(|r| if *r { "---:" } else { "---" })
            .collect();
        let _ = writeln!(t, "|{}|", align.join("|"));
        for r in &self.rows {
            let cells: Vec<String> = r.iter().map(|c| c.replace('|', "\\|")).collect();
            let _ = writeln!(t, "| {} |", cells.join(" | "));
        }
        t
    }
}

/// Where a benchmark reports its progress (the CLI shows it with a spinner). Cheap to clone;
/// the default prints nothing.
#[derive(Clone, Default)]
pub struct Progress(Option<Arc<ProgressFn>>);

type ProgressFn = dyn Fn(&str) + Send + Sync;

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Progress(callback)"
        } else {
            "Progress(none)"
        })
    }
}

impl Progress {
    /// Progress going to `f`.
    pub fn new(f: impl Fn(&str) + Send + Sync + 'static) -> Progress {
        Progress(Some(Arc::new(f)))
    }

    /// Progress printed on stdout, one line per step.
    pub fn stdout() -> Progress {
        Progress::new(|m| println!("… {m}"))
    }

    /// Reports a step.
    pub fn step(&self, message: &str) {
        if let Some(f) = &self.0 {
            f(message);
        }
    }
}

/// CPU time (user + system) this process has used so far.
pub fn cpu_time() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let tv = |t: nix::sys::time::TimeVal| {
                Duration::from_secs(t.tv_sec().max(0) as u64)
                    + Duration::from_micros(t.tv_usec().max(0) as u64)
            };
            tv(u.user_time()) + tv(u.system_time())
        }
        Err(_) => Duration::ZERO,
    }
}

/// This process's resident set size in bytes (`VmRSS` of `/proc/self/status`), if readable.
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_rss(&status)
}

/// `VmRSS:   12345 kB` → bytes.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The one-minute load average (`/proc/loadavg`), to note how busy the machine was.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A payload of `size` bytes (a fixed, non-constant pattern, so compression would not flatter).
pub fn payload(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts_and_of_nothing() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[7.0]), Some(7.0));
    }

    #[test]
    fn ratio_refuses_a_zero_or_missing_baseline() {
        assert_eq!(ratio(1.0, 2.0), Some(0.5));
        assert_eq!(ratio(1.0, 0.0), None);
        assert_eq!(ratio(1.0, f64::NAN), None);
        assert_eq!(fmt_ratio(Some(0.954)), "0.95×");
        assert_eq!(fmt_ratio(None), "—");
        assert_eq!(fmt_runs(&[0.951, 1.0]), "(0.95, 1.00)");
    }

    #[test]
    fn verdicts_compare_against_their_target_and_say_info_without_a_value() {
        assert_eq!(Verdict::at_least(Some(0.95), 0.95), Verdict::Met);
        assert_eq!(Verdict::at_least(Some(0.94), 0.95), Verdict::Missed);
        assert_eq!(Verdict::at_least(None, 0.95), Verdict::Info);
        assert_eq!(Verdict::below(Some(1.5), 2.0), Verdict::Met);
        assert_eq!(Verdict::below(Some(2.0), 2.0), Verdict::Missed);
    }

    #[test]
    fn a_table_renders_markdown_with_numeric_columns_right_aligned_and_pipes_escaped() {
        let mut t = Table::new(&["case", "records/s", "vs vanilla ×"]);
        t.row(vec!["a|b".into(), "10".into()]);
        let md = t.render();
        assert_eq!(
            md,
            "| case | records/s | vs vanilla × |\n|---|---:|---:|\n| a\\|b | 10 |  |\n"
        );
    }

    #[test]
    fn the_summary_lists_every_target_with_its_verdict() {
        let rows = vec![
            TargetRow::new("direct", "mock 100 B", "≥ 0.95×", "0.97×", Verdict::Met),
            TargetRow::new("modes", "drain", "≥ 0.80×", "0.50×", Verdict::Missed),
        ];
        let md = render_targets(&rows);
        assert!(md.contains("| direct | mock 100 B | ≥ 0.95× | 0.97× | met |"));
        assert!(md.contains("| modes | drain | ≥ 0.80× | 0.50× | MISSED |"));
    }

    #[test]
    fn vm_rss_is_read_in_kilobytes() {
        let status = "Name:\tx\nVmPeak:\t 999 kB\nVmRSS:\t   2048 kB\nThreads: 3\n";
        assert_eq!(parse_vm_rss(status), Some(2048 * 1024));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
        assert!(rss_bytes().is_some_and(|b| b > 0));
    }
}
