//! The summary of the mode runs and its Markdown.

use super::*;

pub(super) fn summarise(runs: &[ModeRun]) -> Vec<ModeSummary> {
    let mut out = Vec::new();
    // Each run against the baseline of its own round.
    let per_round = |rs: &[&ModeRun], baseline: &str| -> Vec<f64> {
        rs.iter()
            .filter_map(|r| {
                let v = runs
                    .iter()
                    .find(|v| v.system == baseline && v.round == r.round)?;
                ratio(r.records_per_s, v.records_per_s)
            })
            .collect()
    };
    for system in SYSTEMS {
        let rs: Vec<&ModeRun> = runs.iter().filter(|r| r.system == system).collect();
        if rs.is_empty() {
            continue;
        }
        let ratios = per_round(&rs, "vanilla");
        let ratios_vs_id = per_round(&rs, "vanilla_id");
        let ratios_vs_awaited = per_round(&rs, "vanilla_awaited");
        let med = |f: fn(&ModeRun) -> f64| {
            median(&rs.iter().map(|r| f(r)).collect::<Vec<_>>()).unwrap_or(0.0)
        };
        out.push(ModeSummary {
            system: system.into(),
            records_per_s: med(|r| r.records_per_s),
            accepted_per_s: med(|r| r.accepted_per_s),
            cpu_us_per_record: med(|r| r.cpu_us_per_record),
            ratio: median(&ratios),
            ratios,
            ratio_vs_id: median(&ratios_vs_id),
            ratio_vs_awaited: median(&ratios_vs_awaited),
        });
    }
    out
}

/// The Markdown tables.
pub fn render(summary: &[ModeSummary], drains: &[DrainRun], rss: Option<&OutageRss>) -> String {
    let mut t = Table::new(&[
        "system",
        "end to end records/s",
        "accepted records/s",
        "CPU µs/record",
        "vs vanilla × (per round)",
        "vs vanilla with the id header ×",
        "vs the same, awaited ×",
    ]);
    for s in summary {
        t.row(vec![
            s.system.clone(),
            format!("{:.0}", s.records_per_s),
            format!("{:.0}", s.accepted_per_s),
            format!("{:.2}", s.cpu_us_per_record),
            format!("{} {}", fmt_ratio(s.ratio), fmt_runs(&s.ratios)),
            fmt_ratio(s.ratio_vs_id),
            fmt_ratio(s.ratio_vs_awaited),
        ]);
    }
    let mut out = t.render();
    if !drains.is_empty() {
        let mut d = Table::new(&[
            "drain round",
            "backlog records",
            "spooled during outage records/s",
            "heal → first delivery s",
            "drain s",
            "drain records/s",
            "vanilla (same proxies) records/s",
            "drain ÷ vanilla ×",
        ]);
        for r in drains {
            d.row(vec![
                (r.round + 1).to_string(),
                r.records.to_string(),
                format!("{:.0}", r.spool_per_s),
                format!("{:.2}", r.first_delivery_s),
                format!("{:.2}", r.drain_secs),
                format!("{:.0}", r.drain_per_s),
                format!("{:.0}", r.vanilla_per_s),
                fmt_ratio(r.ratio),
            ]);
        }
        out.push('\n');
        out.push_str(&d.render());
    }
    if let Some(r) = rss {
        let mut m = Table::new(&[
            "outage s",
            "rate records/s",
            "accepted records",
            "rejected records",
            "backlog at end records",
            "RSS start MB",
            "RSS halfway MB",
            "RSS end MB",
            "RSS max MB",
        ]);
        m.row(vec![
            format!("{:.0}", r.outage_s),
            r.rate.to_string(),
            r.accepted.to_string(),
            r.rejected.to_string(),
            r.backlog_at_end.to_string(),
            format!("{:.1}", r.rss_start_mb),
            format!("{:.1}", r.rss_mid_mb),
            format!("{:.1}", r.rss_end_mb),
            format!("{:.1}", r.rss_max_mb),
        ]);
        out.push('\n');
        out.push_str(&m.render());
    }
    out
}
