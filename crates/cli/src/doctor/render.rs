//! Printing a [`Report`] as readable text: the summary first (Nagios reads the first line), then
//! each check with its items. `--json` is the report's `serde` form.

use std::fmt::Write as _;

use super::report::Report;

/// The text report: the one-line summary, then each check with its items.
pub fn text(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", report.summary);
    if let Some(reason) = &report.could_not_run {
        let _ = writeln!(out, "\nNo check of the cluster could run: {reason}");
    }
    for check in &report.checks {
        let _ = writeln!(out, "\n{} {}", check.status.marker(), check.title);
        for item in &check.items {
            let _ = writeln!(
                out,
                "  {} {}: {}",
                item.status.marker(),
                item.subject,
                item.message
            );
        }
    }
    if !report.checks.is_empty() {
        let _ = writeln!(
            out,
            "\nExit code {} ({}): 0 OK, 1 warning (unknown counts as warning), 2 critical, 3 could not run.",
            report.exit_code,
            report.verdict.word()
        );
    }
    out
}
