//! The delivery modes against vanilla rdkafka (issue 5), in one run on the same mock cluster.
//!
//! - **vanilla** = 1.0: a `BaseProducer` with Spillway's librdkafka settings produces N keyless
//!   records and waits for every acks=all report.
//! - **vanilla_id**: the same, each record carrying a `spillway.id` header formatted as
//!   Spillway formats its own. Every mode sends that header (DESIGN G4), so this ratio is the
//!   ceiling of every mode's: what the header alone costs librdkafka and the broker. Each mode
//!   is reported against it too.
//! - **vanilla_awaited**: `vanilla_id` whose every report is a future the sending task awaits,
//!   `window` outstanding as in the modes' pump: the least a `send(record)` that resolves per
//!   record costs (`crate::vanilla::produce_awaited`), so the ceiling of every mode measured
//!   through Spillway's API.
//! - **spool_first end-to-end**: `Spillway::send` of the same N records on a `spool_first`
//!   route (fsync per `fsync`, default `always`), `window` answers outstanding; the clock stops
//!   when the last record is *delivered to Kafka* (`backlog()` back to 0), not when it is
//!   accepted. The accept rate (all answers in) is reported beside it. Target ≥ 0.80.
//! - **failover, healthy**: the default mode while Kafka is up: each answer is a Kafka ack.
//!   Keyless records (straight to the producer) and keyed records (through the per-partition
//!   lanes that keep order) are measured separately. Target ≥ 0.95.
//! - **drain**: on a mock cluster behind fault proxies, every broker blackholed, a
//!   `spool_first` Spillway spools N records; the brokers are healed, and the drain is timed
//!   from the first record delivered to the backlog's end (the time from the heal to the first
//!   delivery — breaker cooldown and canary — is reported apart). Baseline: vanilla producing N
//!   records through the same proxies. Target ≥ 0.80. The backlog over time is kept for a plot.
//! - **RSS during a long outage**: `failover` route, keyed records at a steady `outage_rate`,
//!   every broker blackholed for `outage` after a healthy warm-up; `VmRSS` sampled each second.
//!   Flat means: growth over the second half of the outage under 5 %.
//!
//! Every throughput case runs `rounds` times, alternating systems; ratios are medians of the
//! per-round ratios.

mod outage;
mod render;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use spillway::settings::{Fsync, TopicSettings};
use spillway::{Mode, Record, Route, Spillway, SpillwayConfig};
use spillway_test_support::MockKafka;
use spillway_test_support::mock::Unreachable;

pub use self::outage::drain_run;
pub use self::outage::outage_rss;
pub use self::outage::{rate_from_backlog, thin};
pub use self::render::render;
use self::render::summarise;
use crate::report::{
    Progress, Table, TargetRow, Verdict, fmt_ratio, fmt_runs, load_average, median, payload, ratio,
    rss_bytes,
};
use crate::vanilla::{
    Placement, Run, Vanilla, produce_awaited, produce_vanilla, producer_options, vanilla_config,
};

/// The topic every case produces to (3 partitions).
pub const TOPIC: &str = "bench-modes";

/// The throughput cases, in the order of the first round (each round starts one further).
pub const SYSTEMS: [&str; 6] = [
    "vanilla",
    "vanilla_id",
    "vanilla_awaited",
    "spool_first",
    "failover_keyless",
    "failover_keyed",
];

/// What to measure.
#[derive(Debug, Clone)]
pub struct ModesBenchOptions {
    /// Records per throughput run and in the drain backlog.
    pub records: u64,
    pub record_bytes: usize,
    /// Answers outstanding at most while pumping records into Spillway.
    pub window: usize,
    pub rounds: usize,
    pub fsync: Fsync,
    /// Distinct keys of keyed records.
    pub keys: u32,
    /// Run the drain case.
    pub drain: bool,
    /// Length of the outage of the RSS case (zero: skip it).
    pub outage: Duration,
    /// Records per second during that outage.
    pub outage_rate: u32,
    /// Parent of the spool directories (default: the system temp dir).
    pub dir: Option<std::path::PathBuf>,
    pub progress: Progress,
}

impl Default for ModesBenchOptions {
    fn default() -> Self {
        ModesBenchOptions {
            records: 1_000_000,
            record_bytes: 100,
            window: 10_000,
            rounds: 3,
            fsync: Fsync::Always,
            keys: 1000,
            drain: true,
            outage: Duration::from_secs(5 * 60),
            outage_rate: 2000,
            dir: None,
            progress: Progress::default(),
        }
    }
}

impl ModesBenchOptions {
    pub fn quick() -> Self {
        ModesBenchOptions {
            records: 100_000,
            outage: Duration::from_secs(30),
            ..Self::default()
        }
    }
}

/// One throughput run.
#[derive(Debug, Clone, Serialize)]
pub struct ModeRun {
    /// One of [`SYSTEMS`].
    pub system: String,
    pub round: usize,
    pub records: u64,
    /// Records that were not accepted (or not delivered, for vanilla).
    pub rejected: u64,
    /// Seconds until every answer was in.
    pub accept_secs: f64,
    /// Seconds until every record was in Kafka.
    pub delivered_secs: f64,
    /// Records per second, end to end (delivered).
    pub records_per_s: f64,
    /// Records per second accepted.
    pub accepted_per_s: f64,
    pub cpu_us_per_record: f64,
}

/// One drain round.
#[derive(Debug, Clone, Serialize)]
pub struct DrainRun {
    pub round: usize,
    pub records: u64,
    /// Spooling the backlog while Kafka was unreachable, records/s accepted.
    pub spool_per_s: f64,
    /// Heal → first record delivered, seconds.
    pub first_delivery_s: f64,
    /// First delivery → backlog 0, seconds.
    pub drain_secs: f64,
    pub drain_per_s: f64,
    /// Process CPU time from the heal to the end of the drain, per record drained, µs.
    pub cpu_us_per_record: f64,
    /// Vanilla through the same proxies, records/s.
    pub vanilla_per_s: f64,
    pub ratio: Option<f64>,
    /// (seconds since the heal, backlog) samples.
    pub backlog: Vec<(f64, f64)>,
}

/// The RSS case.
#[derive(Debug, Clone, Serialize)]
pub struct OutageRss {
    pub outage_s: f64,
    pub rate: u32,
    pub accepted: u64,
    pub rejected: u64,
    pub backlog_at_end: u64,
    pub rss_start_mb: f64,
    pub rss_mid_mb: f64,
    pub rss_end_mb: f64,
    pub rss_max_mb: f64,
    /// (seconds since the outage began, RSS MB).
    pub samples: Vec<(f64, f64)>,
}

impl OutageRss {
    /// Growth over the second half of the outage, as a fraction.
    pub fn second_half_growth(&self) -> Option<f64> {
        ratio(self.rss_end_mb, self.rss_mid_mb).map(|r| r - 1.0)
    }
}

/// Medians of one system.
#[derive(Debug, Clone, Serialize)]
pub struct ModeSummary {
    pub system: String,
    pub records_per_s: f64,
    pub accepted_per_s: f64,
    pub cpu_us_per_record: f64,
    pub ratio: Option<f64>,
    pub ratios: Vec<f64>,
    /// Median of the per-round ratios against `vanilla_id`.
    pub ratio_vs_id: Option<f64>,
    /// Median of the per-round ratios against `vanilla_awaited`: what is Spillway's own.
    pub ratio_vs_awaited: Option<f64>,
}

/// Everything measured.
#[derive(Debug, Clone, Serialize)]
pub struct ModesBenchReport {
    pub records: u64,
    pub record_bytes: usize,
    pub fsync: Fsync,
    pub runs: Vec<ModeRun>,
    pub summary: Vec<ModeSummary>,
    pub drains: Vec<DrainRun>,
    pub drain_ratio: Option<f64>,
    pub rss: Option<OutageRss>,
    pub load_before: Option<f64>,
    pub load_after: Option<f64>,
    pub table: String,
}

impl ModesBenchReport {
    pub fn targets(&self) -> Vec<TargetRow> {
        let mut rows = Vec::new();
        let target = |s: &str| match s {
            "spool_first" => Some(0.80),
            "failover_keyless" | "failover_keyed" => Some(0.95),
            _ => None,
        };
        for s in &self.summary {
            let ceiling = match s.system.as_str() {
                "vanilla_id" => Some("vanilla with the spillway.id header"),
                "vanilla_awaited" => Some("the same, each report awaited as a future"),
                _ => None,
            };
            if let Some(ceiling) = ceiling {
                rows.push(TargetRow::new(
                    "modes",
                    format!(
                        "ceiling of every mode: {ceiling} vs vanilla, {} B",
                        self.record_bytes
                    ),
                    "(reported)",
                    format!("{} {}", fmt_ratio(s.ratio), fmt_runs(&s.ratios)),
                    Verdict::Info,
                ));
            }
            let Some(t) = target(&s.system) else {
                continue;
            };
            let what = match s.system.as_str() {
                "spool_first" => "spool_first end to end (accept → in Kafka) vs vanilla",
                "failover_keyless" => "failover while healthy, keyless, vs vanilla",
                _ => "failover while healthy, keyed (lanes), vs vanilla",
            };
            rows.push(TargetRow::new(
                "modes",
                format!("{what}, {} B", self.record_bytes),
                format!("≥ {t:.2}×"),
                format!(
                    "{} {}; {} of vanilla with the id header, {} of it awaited",
                    fmt_ratio(s.ratio),
                    fmt_runs(&s.ratios),
                    fmt_ratio(s.ratio_vs_id),
                    fmt_ratio(s.ratio_vs_awaited)
                ),
                Verdict::at_least(s.ratio, t),
            ));
        }
        if !self.drains.is_empty() {
            let rs: Vec<f64> = self.drains.iter().filter_map(|d| d.ratio).collect();
            rows.push(TargetRow::new(
                "modes",
                format!(
                    "drain rate after a {}-record outage backlog vs vanilla, {} B",
                    self.records, self.record_bytes
                ),
                "≥ 0.80×",
                format!("{} {}", fmt_ratio(self.drain_ratio), fmt_runs(&rs)),
                Verdict::at_least(self.drain_ratio, 0.80),
            ));
        }
        if let Some(r) = &self.rss {
            let growth = r.second_half_growth();
            rows.push(TargetRow::new(
                "modes",
                format!(
                    "RSS during a {:.1}-minute outage at {} records/s",
                    r.outage_s / 60.0,
                    r.rate
                ),
                "flat (< 5 % growth over the second half)",
                format!(
                    "{:.0} MB at start, {:.0} MB halfway, {:.0} MB at end ({:+.1} %)",
                    r.rss_start_mb,
                    r.rss_mid_mb,
                    r.rss_end_mb,
                    growth.unwrap_or(0.0) * 100.0
                ),
                match growth {
                    Some(g) if g < 0.05 => Verdict::Met,
                    Some(_) => Verdict::Missed,
                    None => Verdict::Info,
                },
            ));
        }
        rows
    }
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum ModesBenchError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("mock cluster: {0}")]
    Mock(String),
    #[error("spillway: {0}")]
    Spillway(String),
    #[error("vanilla producer: {0}")]
    Vanilla(String),
}

fn mock_err(e: spillway_test_support::HarnessError) -> ModesBenchError {
    ModesBenchError::Mock(e.to_string())
}

/// Runs the benchmark. Creates its own tokio runtime: call it from a plain thread.
pub fn run_modes_bench(opts: ModesBenchOptions) -> Result<ModesBenchReport, ModesBenchError> {
    let load_before = load_average();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let base = opts.dir.clone().unwrap_or_else(std::env::temp_dir);
    let mut runs = Vec::new();
    {
        let kafka = MockKafka::new(3).map_err(mock_err)?;
        kafka.create_topic(TOPIC, 3).map_err(mock_err)?;
        for round in 0..opts.rounds {
            let mut systems = SYSTEMS.to_vec();
            let turn = round % systems.len();
            systems.rotate_left(turn);
            for system in systems {
                opts.progress.step(&format!(
                    "modes round {}/{}: {system} ({} records)",
                    round + 1,
                    opts.rounds,
                    opts.records
                ));
                let run = run_system(&rt, &opts, &base, kafka.bootstrap(), system, round)?;
                opts.progress.step(&format!(
                    "modes {system}: {:.0} records/s end to end ({:.0} accepted/s)",
                    run.records_per_s, run.accepted_per_s
                ));
                runs.push(run);
            }
        }
    }
    let summary = summarise(&runs);
    let mut drains = Vec::new();
    if opts.drain {
        for round in 0..opts.rounds {
            opts.progress.step(&format!(
                "modes drain round {}/{}: {} records spooled while Kafka is blackholed",
                round + 1,
                opts.rounds,
                opts.records
            ));
            let d = rt.block_on(drain_run(&opts, &base, round))?;
            opts.progress.step(&format!(
                "modes drain: {:.0} records/s (vanilla {:.0}); first delivery {:.1} s after the heal",
                d.drain_per_s, d.vanilla_per_s, d.first_delivery_s
            ));
            drains.push(d);
        }
    }
    let drain_ratio = median(&drains.iter().filter_map(|d| d.ratio).collect::<Vec<_>>());
    let rss = if opts.outage > Duration::ZERO {
        opts.progress.step(&format!(
            "modes: RSS during a {:.1}-minute outage at {} records/s",
            opts.outage.as_secs_f64() / 60.0,
            opts.outage_rate
        ));
        Some(rt.block_on(outage_rss(&opts, &base))?)
    } else {
        None
    };
    let table = render(&summary, &drains, rss.as_ref());
    Ok(ModesBenchReport {
        records: opts.records,
        record_bytes: opts.record_bytes,
        fsync: opts.fsync,
        runs,
        summary,
        drains,
        drain_ratio,
        rss,
        load_before,
        load_after: load_average(),
        table,
    })
}

/// One run of `system` (any of [`SYSTEMS`]) against the broker at `bootstrap`, whose topic
/// [`TOPIC`] has 3 partitions; Spillway's spool directory goes under `base`.
pub fn run_system(
    rt: &tokio::runtime::Runtime,
    opts: &ModesBenchOptions,
    base: &std::path::Path,
    bootstrap: &str,
    system: &str,
    round: usize,
) -> Result<ModeRun, ModesBenchError> {
    let (records, size) = (opts.records, opts.record_bytes);
    match system {
        "vanilla" | "vanilla_id" => vanilla_run(bootstrap, system, records, size, round),
        "vanilla_awaited" => {
            let config =
                vanilla_config(&producer_options(bootstrap)).map_err(ModesBenchError::Vanilla)?;
            let run = rt
                .block_on(produce_awaited(
                    &config,
                    Placement::like_spillway(3),
                    TOPIC,
                    records,
                    size,
                    opts.window,
                ))
                .map_err(|e| ModesBenchError::Vanilla(e.to_string()))?;
            Ok(mode_run_of(system, round, records, &run))
        }
        _ => rt.block_on(spillway_run(opts, base, bootstrap, system, round)),
    }
}

/// One run of `vanilla` or `vanilla_id` (with the id header) against the broker at
/// `bootstrap`, whose topic `bench-modes` has 3 partitions.
pub fn vanilla_run(
    bootstrap: &str,
    system: &str,
    records: u64,
    size: usize,
    round: usize,
) -> Result<ModeRun, ModesBenchError> {
    let kind = if system == "vanilla_id" {
        Vanilla::BaseWithIdHeader
    } else {
        Vanilla::Base
    };
    let config = vanilla_config(&producer_options(bootstrap)).map_err(ModesBenchError::Vanilla)?;
    let run = produce_vanilla(
        &config,
        kind,
        Placement::like_spillway(3),
        TOPIC,
        records,
        size,
        Duration::from_secs(600),
    )
    .map_err(|e| ModesBenchError::Vanilla(e.to_string()))?;
    Ok(mode_run_of(system, round, records, &run))
}

fn mode_run_of(system: &str, round: usize, records: u64, run: &Run) -> ModeRun {
    ModeRun {
        system: system.into(),
        round,
        records,
        rejected: run.failed,
        accept_secs: run.secs,
        delivered_secs: run.secs,
        records_per_s: run.records_per_s(),
        accepted_per_s: run.records_per_s(),
        cpu_us_per_record: run.cpu_us_per_record(),
    }
}

fn config(
    opts: &ModesBenchOptions,
    bootstrap: &str,
    dir: &std::path::Path,
    mode: Mode,
) -> SpillwayConfig {
    let mut c = SpillwayConfig::new(bootstrap, dir);
    c.default_route = Route::new("*", mode);
    c.spool.fsync = opts.fsync;
    c.topics = vec![TopicSettings {
        name: TOPIC.into(),
        partitions: Some(3),
    }];
    c
}

fn record(i: u64, keys: Option<u32>, value: &[u8]) -> Record {
    let r = Record::new(TOPIC).value(value.to_vec());
    match keys {
        Some(k) => r.key(format!("key-{}", i % u64::from(k.max(1)))),
        None => r,
    }
}

/// Sends `n` records with at most `window` answers outstanding; returns (accepted, rejected).
///
/// Answers are awaited in the order sent: the cheapest way for one task to keep many (only
/// the oldest is polled, and only its completion wakes the task), and how an ordered intake
/// awaits its acknowledgements. `Spillway::send` places and hands over each record before its
/// future is polled, so the records behind the oldest are in flight all the same.
async fn pump(sw: &Spillway, n: u64, size: usize, keys: Option<u32>, window: usize) -> (u64, u64) {
    let value = payload(size);
    let mut inflight = std::collections::VecDeque::with_capacity(window);
    let (mut ok, mut rejected) = (0u64, 0u64);
    let mut tally = |r: Option<Result<spillway::Accepted, spillway::Rejected>>| match r {
        Some(Ok(_)) => ok += 1,
        Some(Err(_)) => rejected += 1,
        None => {}
    };
    for i in 0..n {
        if inflight.len() >= window {
            let f = inflight.pop_front().expect("full");
            tally(Some(f.await));
        }
        inflight.push_back(sw.send(record(i, keys, &value)));
    }
    while let Some(f) = inflight.pop_front() {
        tally(Some(f.await));
    }
    (ok, rejected)
}

async fn wait_backlog_empty(sw: &Spillway, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    while sw.backlog() > 0 {
        if Instant::now() > until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

/// One throughput run of `system` (`spool_first`, `failover_keyless`, `failover_keyed`) on a
/// fresh Spillway with its spool under `base`, against the cluster at `bootstrap`.
pub async fn spillway_run(
    opts: &ModesBenchOptions,
    base: &std::path::Path,
    bootstrap: &str,
    system: &str,
    round: usize,
) -> Result<ModeRun, ModesBenchError> {
    let dir = tempfile::Builder::new()
        .prefix("spillway-bench-modes")
        .tempdir_in(base)?;
    let (mode, keys) = match system {
        "spool_first" => (Mode::SpoolFirst, None),
        "failover_keyless" => (Mode::Failover, None),
        _ => (Mode::Failover, Some(opts.keys)),
    };
    let sw = Spillway::start(config(opts, bootstrap, dir.path(), mode))
        .map_err(|e| ModesBenchError::Spillway(e.to_string()))?;
    // Warm up: metadata, connections, the first forwarder.
    let _ = pump(&sw, 100, opts.record_bytes, keys, 100).await;
    wait_backlog_empty(&sw, Duration::from_secs(30)).await;
    let cpu0 = crate::report::cpu_time();
    let start = Instant::now();
    let (ok, rejected) = pump(&sw, opts.records, opts.record_bytes, keys, opts.window).await;
    let accept_secs = start.elapsed().as_secs_f64();
    if !wait_backlog_empty(&sw, Duration::from_secs(600)).await {
        return Err(ModesBenchError::Spillway(format!(
            "{system}: the backlog did not drain in 10 minutes ({} left)",
            sw.backlog()
        )));
    }
    let delivered_secs = start.elapsed().as_secs_f64();
    let cpu = (crate::report::cpu_time() - cpu0).as_secs_f64();
    sw.shutdown(Duration::from_secs(10)).await;
    Ok(ModeRun {
        system: system.into(),
        round,
        records: opts.records,
        rejected,
        accept_secs,
        delivered_secs,
        records_per_s: ok as f64 / delivered_secs,
        accepted_per_s: ok as f64 / accept_secs,
        cpu_us_per_record: cpu * 1e6 / ok.max(1) as f64,
    })
}
