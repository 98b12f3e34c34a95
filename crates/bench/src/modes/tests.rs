use super::*;

fn run(system: &str, round: usize, per_s: f64) -> ModeRun {
    ModeRun {
        system: system.into(),
        round,
        records: 10,
        rejected: 0,
        accept_secs: 1.0,
        delivered_secs: 1.0,
        records_per_s: per_s,
        accepted_per_s: per_s,
        cpu_us_per_record: 1.0,
    }
}

/// A report of throughput runs only (no drain, no RSS), 100-byte records.
fn throughput_report(runs: Vec<ModeRun>, summary: Vec<ModeSummary>) -> ModesBenchReport {
    ModesBenchReport {
        records: 10,
        record_bytes: 100,
        fsync: Fsync::Always,
        table: render(&summary, &[], None),
        runs,
        summary,
        drains: vec![],
        drain_ratio: None,
        rss: None,
        load_before: None,
        load_after: None,
    }
}

#[test]
fn each_mode_is_compared_with_the_vanilla_run_of_its_own_round() {
    let runs = vec![
        run("vanilla", 0, 100.0),
        run("spool_first", 0, 80.0),
        run("vanilla", 1, 50.0),
        run("spool_first", 1, 50.0),
        run("vanilla", 2, 100.0),
        run("spool_first", 2, 70.0),
    ];
    let s = summarise(&runs);
    assert_eq!(s[0].system, "vanilla");
    assert_eq!(s[0].ratio, Some(1.0));
    assert_eq!(s[1].ratios, vec![0.8, 1.0, 0.7]);
    assert_eq!(s[1].ratio, Some(0.8));
    let report = throughput_report(runs, s);
    let t = report.targets();
    assert_eq!(t.len(), 1, "vanilla has no target; no drain, no RSS");
    assert_eq!(t[0].verdict, Verdict::Met);
    assert!(
        report.table.contains("| spool_first | 70 | 70 |"),
        "{}",
        report.table
    );
}

#[test]
fn every_mode_is_also_compared_with_vanilla_carrying_the_id_header_and_with_it_awaited_which_are_reported_as_ceilings()
 {
    let runs = vec![
        run("vanilla", 0, 100.0),
        run("vanilla_id", 0, 80.0),
        run("vanilla_awaited", 0, 64.0),
        run("failover_keyless", 0, 40.0),
        run("vanilla", 1, 100.0),
        run("vanilla_id", 1, 50.0),
        run("vanilla_awaited", 1, 40.0),
        run("failover_keyless", 1, 40.0),
    ];
    let s = summarise(&runs);
    let id = s
        .iter()
        .find(|s| s.system == "vanilla_id")
        .expect("vanilla_id");
    assert_eq!(id.ratios, vec![0.8, 0.5]);
    let keyless = s
        .iter()
        .find(|s| s.system == "failover_keyless")
        .expect("keyless");
    assert_eq!(keyless.ratio, Some(0.4));
    assert_eq!(keyless.ratio_vs_id, Some(0.65), "median of 0.5 and 0.8");
    assert_eq!(
        keyless.ratio_vs_awaited,
        Some(0.8125),
        "median of 0.625 and 1.0"
    );
    let report = throughput_report(runs, s);
    let t = report.targets();
    assert_eq!(t.len(), 3, "the two ceilings, then the keyless target");
    assert_eq!(t[0].verdict, Verdict::Info);
    assert!(t[0].what.contains("spillway.id header"), "{}", t[0].what);
    assert_eq!(t[1].verdict, Verdict::Info);
    assert!(t[1].what.contains("awaited"), "{}", t[1].what);
    assert_eq!(t[2].verdict, Verdict::Missed);
    assert!(
        t[2].measured
            .contains("0.65× of vanilla with the id header, 0.81× of it awaited"),
        "{}",
        t[2].measured
    );
}

#[test]
fn rss_is_flat_when_the_second_half_grows_under_five_percent() {
    let mut r = OutageRss {
        outage_s: 60.0,
        rate: 10,
        accepted: 1,
        rejected: 0,
        backlog_at_end: 1,
        rss_start_mb: 50.0,
        rss_mid_mb: 100.0,
        rss_end_mb: 104.0,
        rss_max_mb: 104.0,
        samples: vec![],
    };
    let report = |r: &OutageRss| ModesBenchReport {
        records: 1,
        record_bytes: 1,
        fsync: Fsync::Always,
        runs: vec![],
        summary: vec![],
        drains: vec![],
        drain_ratio: None,
        rss: Some(r.clone()),
        load_before: None,
        load_after: None,
        table: String::new(),
    };
    assert_eq!(report(&r).targets()[0].verdict, Verdict::Met);
    r.rss_end_mb = 110.0;
    assert_eq!(report(&r).targets()[0].verdict, Verdict::Missed);
}

#[test]
fn thinning_keeps_the_ends_and_rates_come_from_the_backlog_falling() {
    let samples: Vec<(f64, f64)> = (0..1000)
        .map(|i| (i as f64 * 0.01, 1000.0 - i as f64))
        .collect();
    let thin = thin(samples.clone(), 100);
    assert!(thin.len() <= 101);
    assert_eq!(thin.first(), samples.first());
    assert_eq!(thin.last(), samples.last());
    let rates = rate_from_backlog(&samples, 1.0);
    assert!(!rates.is_empty());
    for (_, r) in rates {
        assert!((r - 100.0).abs() < 1.0, "{r}");
    }
}
