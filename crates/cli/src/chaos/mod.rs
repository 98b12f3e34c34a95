//! `spillway chaos`: the proof that Spillway loses nothing, on the user's own machine.
//!
//! Real processes: the Tansu broker (SQLite storage, durable across kill -9) behind a fault
//! proxy, the gateway as a child process (`spillway run`, real HTTP, `fsync = "always"`), a load
//! generator posting records over a few connections, and a fault scheduler driven by a seed
//! that is printed so any run can be repeated. At the end every fault is healed, the spool
//! drains, the topic is read back with a real consumer and the oracle judges: every record the
//! gateway acknowledged (2xx) must be in Kafka once, intact, in order per key. Any violation
//! makes the command exit non-zero.
//!
//! `--mock` runs the same harness on librdkafka's 3-broker mock cluster (in this process, each
//! broker behind a fault proxy; the gateway is still a child process) for the faults a
//! single-broker Tansu cannot show: a leader unreachable while the metadata still names it
//! (KAFKA-3686) and leadership moving between brokers.
//!
//! Files: `schedule` (seeded plan), `load` (HTTP clients), `process` (the gateway child),
//! `cluster` (Tansu or mock), `disk` (tmpfs and disk full), `torn` (torn writes), `faults`
//! (injecting them), `report`, `plot`.

mod cluster;
mod disk;
mod faults;
mod load;
mod netns;
mod plot;
mod process;
mod report;
mod schedule;
mod torn;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use spillway_test_support::{free_port, oracle, read_topic_until};

use cluster::Cluster;
use disk::SpoolDisk;
use faults::Harness;
use process::{Gateway, GatewaySpec};
use report::{Report, Sample};
use schedule::{FaultKind, Pace, Scheduler};

const TOPIC: &str = "chaos";
/// Partitions of the chaos topic on Tansu (one broker: more would only slow it).
const TANSU_PARTITIONS: i32 = 3;
/// On the mock cluster: librdkafka's mock broker keeps only the last 5 MiB of each partition,
/// so a long run needs its records spread thin (about 1 MB per partition per 10 minutes at the
/// default rate).
const MOCK_PARTITIONS: i32 = 12;
/// The longest wait for the final drain...
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1800);
/// ...and the longest time without progress in it.
const DRAIN_STALL: Duration = Duration::from_secs(120);
/// After this long without progress, the drain asks whether the broker still answers.
const HANG_CHECK_AFTER: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    Failover,
    SpoolFirst,
}

#[derive(Debug, Args)]
pub struct ChaosArgs {
    /// How long faults are injected under load (then: heal, drain, verify).
    #[arg(long, default_value = "3m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// The seed of the fault schedule and the load (printed; default: random).
    #[arg(long)]
    seed: Option<u64>,
    /// Records per second offered, all connections together.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Faults the schedule is paced to fit in `--duration` (at least).
    #[arg(long, default_value_t = 20)]
    faults_min: usize,
    /// The delivery mode of the topic's route.
    #[arg(long, value_enum, default_value = "failover")]
    mode: ModeArg,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Directory for the report, the plot, the gateway's configuration and log, and the spool
    /// (default: a new directory under the system's temp dir).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Use librdkafka's in-process 3-broker mock cluster instead of Tansu (multi-broker
    /// faults: leader unreachable while listed, leader moves).
    #[arg(long)]
    mock: bool,
    /// Only these fault kinds (comma-separated; default: every kind the cluster supports).
    #[arg(long, value_enum, value_delimiter = ',')]
    faults: Vec<FaultKind>,
    /// HTTP connections of the load generator (each sequential, with its own keys).
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Partitions of the chaos topic (default: 12 on the mock cluster, whose brokers keep only
    /// the last 5 MiB of each partition; 3 on Tansu).
    #[arg(long)]
    partitions: Option<i32>,
    /// Drain rate limit (records/s) of the gateway; default unlimited.
    #[arg(long)]
    drain_rate: Option<u32>,
    /// PLANTS A BUG: turns off the drain's duplicate check (`[library.drain] dedup = false`),
    /// to show the oracle catches the duplicates that follow. The run must then fail.
    #[arg(long)]
    no_drain_dedup: bool,
}

pub fn run(args: ChaosArgs) -> anyhow::Result<ExitCode> {
    if let Some(code) = netns::run_inside_namespace() {
        return code;
    }
    if netns::inside() {
        netns::bring_loopback_up()?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = runtime.block_on(chaos(args))?;
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn seed_from_clock() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    schedule::Rng::new(nanos ^ u64::from(std::process::id())).next_u64() % 1_000_000_000
}

/// The gateway's raw samples, every half second.
#[derive(Debug, Default)]
struct Sampled {
    points: Vec<(f64, Option<u64>, Option<u64>)>,
    max_rss_kib: u64,
    spool_high_records: u64,
    spool_high_bytes: u64,
}

async fn sample(
    client: reqwest::Client,
    base: String,
    pid: Arc<AtomicU32>,
    started: Instant,
    stop: Arc<AtomicBool>,
) -> Sampled {
    let mut s = Sampled::default();
    while !stop.load(Ordering::Relaxed) {
        let status = faults::status(&client, &base).await;
        let spool = status.as_ref().map(|v| &v["engine"]["spool"]);
        let records = spool.and_then(|v| v["records"].as_u64());
        let bytes = spool.and_then(|v| v["used_bytes"].as_u64());
        let rss = match pid.load(Ordering::Relaxed) {
            0 => None,
            p => process::memory_kib(p),
        };
        if let Some((hwm, _)) = rss {
            s.max_rss_kib = s.max_rss_kib.max(hwm);
        }
        s.spool_high_records = s.spool_high_records.max(records.unwrap_or(0));
        s.spool_high_bytes = s.spool_high_bytes.max(bytes.unwrap_or(0));
        s.points.push((
            started.elapsed().as_secs_f64(),
            records,
            rss.map(|(_, now)| now),
        ));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    s
}

async fn chaos(args: ChaosArgs) -> anyhow::Result<Report> {
    let seed = args.seed.unwrap_or_else(seed_from_clock);
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    println!("spillway chaos: seed {seed} (repeat this run with --seed {seed})");
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("spillway-chaos-{seed}")));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let out = out.canonicalize()?;
    // A reused --out starts clean: an old spool would drain records of another run.
    let _ = std::fs::remove_dir_all(out.join("spool"));
    let _ = std::fs::remove_file(out.join("gateway.log"));
    let kinds: Vec<FaultKind> = if args.faults.is_empty() {
        let mut kinds = if args.mock {
            FaultKind::MOCK.to_vec()
        } else {
            FaultKind::TANSU.to_vec()
        };
        if netns::inside() {
            kinds.push(FaultKind::NetDrop);
        }
        kinds
    } else {
        args.faults.clone()
    };
    anyhow::ensure!(
        netns::inside() || !kinds.contains(&FaultKind::NetDrop),
        "net-drop needs root, `unshare`, `nft` and `ip` (the run then gets its own network namespace)"
    );
    if let Some(k) = kinds
        .iter()
        .find(|k| k.needs_mock().is_some_and(|m| m != args.mock))
    {
        anyhow::bail!(
            "fault {k} needs {}",
            if args.mock {
                "Tansu (no --mock)"
            } else {
                "--mock"
            }
        );
    }

    let mock = args.mock;
    let partitions = args.partitions.unwrap_or(if mock {
        MOCK_PARTITIONS
    } else {
        TANSU_PARTITIONS
    });
    anyhow::ensure!(partitions >= 1, "--partitions must be at least 1");
    let cluster = tokio::task::spawn_blocking(move || {
        if mock {
            Cluster::mock(TOPIC, partitions)
        } else {
            Cluster::tansu(TOPIC, partitions)
        }
    })
    .await??;
    let disk = SpoolDisk::prepare(&out).context("preparing the spool's disk")?;
    let api = format!("127.0.0.1:{}", free_port()).parse()?;
    let spec = GatewaySpec {
        api,
        metrics: format!("127.0.0.1:{}", free_port()).parse()?,
        bootstrap: cluster.bootstrap(),
        spool_dir: disk.spool_dir(),
        capacity_bytes: disk.capacity(),
        mode: match args.mode {
            ModeArg::Failover => "failover",
            ModeArg::SpoolFirst => "spool_first",
        },
        topic: TOPIC.into(),
        partitions,
        dedup: !args.no_drain_dedup,
        drain_rate: args.drain_rate,
    };
    let config_path = out.join("gateway.toml");
    std::fs::write(&config_path, spec.toml())?;
    let gateway = Gateway::new(config_path, out.join("gateway.log"))?;
    let base = format!("http://{api}");
    println!(
        "cluster {} | gateway {base} | spool {} | out {}",
        cluster.name(),
        disk.spool_dir().display(),
        out.display()
    );
    let started = Instant::now();
    let pid = Arc::new(AtomicU32::new(0));
    let mut harness = Harness {
        cluster,
        gateway,
        disk,
        topic: TOPIC.into(),
        partitions,
        base: base.clone(),
        client: reqwest::Client::new(),
        rt: tokio::runtime::Handle::current(),
        started,
        pid: pid.clone(),
        events: Vec::new(),
        wedges: Vec::new(),
        torn: Vec::new(),
        gateway_crashes: Vec::new(),
        net_drop: None,
    };
    harness.net_drop = netns::NetDrop::new(harness.cluster.gateway_ports());
    let mut harness =
        tokio::task::spawn_blocking(move || harness.start_gateway().map(|()| harness)).await??;

    let stop_load = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(load::run(
        load::LoadSpec {
            base: base.clone(),
            topic: TOPIC.into(),
            connections: args.connections.max(1),
            rate: args.rate,
            seed,
            keys_per_connection: 6,
        },
        started,
        stop_load.clone(),
    ));
    let stop_sampler = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(sample(
        reqwest::Client::new(),
        base.clone(),
        pid.clone(),
        started,
        stop_sampler.clone(),
    ));

    // The fault phase, on a blocking thread: faults sleep and wait for processes.
    let duration = args.duration;
    let pace = Pace::new(duration, args.faults_min);
    let faults_min = args.faults_min;
    let (mut harness, fault_result) = tokio::task::spawn_blocking(move || {
        let result = fault_phase(&mut harness, seed, &kinds, pace, duration);
        (harness, result)
    })
    .await?;
    stop_load.store(true, Ordering::Relaxed);
    let tally = load.await?;
    let load_end = started.elapsed().as_secs_f64();
    if let Err(e) = &fault_result {
        eprintln!("!! the fault phase stopped early: {e:#}");
    }
    println!(
        "{load_end:>7.1}s  load stopped: {} records attempted, {} acknowledged; healing and draining",
        tally.attempted,
        tally.delivered + tally.spooled
    );

    // Heal, drain, verify.
    let (mut harness, drain) = tokio::task::spawn_blocking(move || {
        let drain = heal_and_drain(&mut harness);
        (harness, drain)
    })
    .await?;
    let (drained, time_to_drain) = drain.unwrap_or_else(|e| {
        eprintln!("!! healing failed: {e:#}");
        (false, DRAIN_TIMEOUT.as_secs_f64())
    });
    println!(
        "{:>7.1}s  spool {} after {time_to_drain:.1}s; reading the topic back",
        started.elapsed().as_secs_f64(),
        if drained { "drained" } else { "NOT drained" }
    );
    let torn_ids: HashSet<String> = harness.torn.iter().filter_map(|t| t.id.clone()).collect();
    let bootstrap = harness.cluster.verify_bootstrap();
    let expected = tally.acked.len().saturating_sub(torn_ids.len());
    let read = move || read_topic_until(&bootstrap, TOPIC, expected, Duration::from_secs(120));
    let first = tokio::task::spawn_blocking(read.clone()).await?;
    let mut read_back_error = None;
    let records = match first {
        Ok(records) => records,
        // The broker may have hung after the drain: restart it once and read again.
        Err(e) => {
            eprintln!("!! reading the topic back failed: {e}");
            let (h, restarted) = tokio::task::spawn_blocking(move || {
                let r = harness.restart_if_hung();
                (harness, r)
            })
            .await?;
            harness = h;
            let again = match restarted {
                Ok(true) => tokio::task::spawn_blocking(read)
                    .await?
                    .map_err(|e2| format!("{e}; again after restarting the hung broker: {e2}")),
                Ok(false) => Err(e.to_string()),
                Err(r) => Err(format!("{e}; restarting the broker: {r:#}")),
            };
            again.unwrap_or_else(|why| {
                eprintln!("!! the topic could not be read back: {why}");
                read_back_error = Some(why);
                Vec::new()
            })
        }
    };
    let pruned = report::pruned_partitions(&records);
    let delivered = oracle::Delivered::from_records(&records, |r| {
        r.header(spillway::record::ID_HEADER)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    });
    let verdict = oracle::check(&tally.acked, &delivered);
    stop_sampler.store(true, Ordering::Relaxed);
    let sampled = sampler.await?;
    harness.kill_gateway();

    let secs = started.elapsed().as_secs_f64().ceil() as usize;
    let acks = report::acks_per_second(&tally.ack_times, secs);
    let timeline = (0..secs)
        .map(|i| {
            let last = sampled
                .points
                .iter()
                .rev()
                .find(|p| p.0 < (i + 1) as f64 && p.0 >= i as f64);
            Sample {
                t: i as f64,
                acks_per_s: acks[i] as f64,
                spool_records: last.and_then(|p| p.1),
                gateway_rss_kib: last.and_then(|p| p.2),
            }
        })
        .collect();
    let mut faults_by_kind: BTreeMap<String, u64> = BTreeMap::new();
    for e in &harness.events {
        *faults_by_kind.entry(e.kind.name().to_string()).or_default() += 1;
    }
    let mut warnings = Vec::new();
    if harness.events.len() < faults_min {
        warnings.push(format!(
            "only {} faults injected (asked for at least {faults_min}): lengthen --duration",
            harness.events.len()
        ));
    }
    if let Err(e) = &fault_result {
        warnings.push(format!("the fault phase stopped early: {e:#}"));
    }
    let mut report = Report {
        seed,
        command,
        cluster: harness.cluster.name().into(),
        mode: spec.mode.into(),
        duration_s: duration.as_secs_f64(),
        rate: args.rate,
        connections: args.connections,
        drain_dedup: !args.no_drain_dedup,
        records: report::record_counts(&tally, &verdict),
        oracle: report::oracle_counts(&verdict, &torn_ids),
        faults_total: harness.events.len() as u64,
        faults_by_kind,
        broker_wedges: harness.wedges.len() as u64,
        gateway_starts: harness.gateway.starts(),
        gateway_crashes: harness.gateway_crashes.clone(),
        drained,
        time_to_drain_s: time_to_drain,
        gateway_max_rss_kib: sampled.max_rss_kib,
        spool_high_water_records: sampled.spool_high_records,
        spool_high_water_bytes: sampled.spool_high_bytes,
        disk_full_method: harness.disk.method().into(),
        network_fault_method: if harness.net_drop.is_some() {
            "fault proxy between gateway and Kafka (blackhole), and an nftables DROP of the proxied ports in the run's own network namespace (net-drop)"
        } else {
            "fault proxy between gateway and Kafka (blackhole); no nftables DROP (needs root, unshare, nft, ip)"
        }
        .into(),
        warnings,
        pruned_partitions: pruned,
        read_back_error,
        violations: Vec::new(),
        verdict: String::new(),
        events: harness.events.clone(),
        timeline,
    };
    if fault_result.is_err() {
        report
            .violations
            .push("the fault phase stopped early".into());
    }
    report.judge();
    if let Err(e) = &fault_result {
        report.violations.push(format!("fault phase: {e:#}"));
        report.verdict = "FAIL".into();
    }
    let text = report.render();
    println!("{text}");
    std::fs::write(out.join("report.md"), &text)?;
    let json = serde_json::to_string_pretty(&report)?;
    std::fs::write(out.join("report.json"), &json)?;
    if let Some(path) = &args.json {
        std::fs::write(path, &json).with_context(|| format!("writing {}", path.display()))?;
    }
    let title = format!(
        "spillway chaos — seed {seed}, {}, {}, {} faults, {}",
        report.cluster, report.mode, report.faults_total, report.verdict
    );
    std::fs::write(
        out.join("chaos.svg"),
        plot::svg(&title, &report.timeline, &report.events),
    )?;
    println!(
        "report: {0}/report.md, {0}/report.json; plot: {0}/chaos.svg; gateway log: {0}/gateway.log",
        out.display()
    );
    if !report.passed() {
        eprintln!(
            "chaos run FAILED (seed {seed}); the gateway log is {}",
            harness.gateway.log_path().display()
        );
        if harness.disk.is_tmpfs() {
            // The tmpfs goes with the run: keep the spool for a post-mortem.
            let kept = out.join("spool-kept");
            let copied = std::process::Command::new("cp")
                .arg("-a")
                .arg(harness.disk.spool_dir())
                .arg(&kept)
                .status()
                .is_ok_and(|s| s.success());
            if copied {
                eprintln!("the spool as it was at the end: {}", kept.display());
            }
        }
    }
    drop(harness);
    Ok(report)
}

/// Injects faults from the seed's schedule until `duration` has passed.
fn fault_phase(
    harness: &mut Harness,
    seed: u64,
    kinds: &[FaultKind],
    pace: Pace,
    duration: Duration,
) -> anyhow::Result<()> {
    let deadline = harness.started + duration;
    // A calm start: the load reaches steady state first.
    std::thread::sleep(pace.slot.mul_f64(0.2).min(Duration::from_secs(3)));
    for fault in Scheduler::new(seed, kinds, pace) {
        if Instant::now() >= deadline {
            break;
        }
        harness.check_health()?;
        harness.inject(&fault)?;
        harness.check_health()?;
        std::thread::sleep(fault.gap);
    }
    Ok(())
}

/// Heals everything and waits until the spool is empty (and stays so). Returns whether it
/// drained and how long that took. Gives up when the spool has not shrunk to a new low for
/// [`DRAIN_STALL`], or after [`DRAIN_TIMEOUT`] in all.
fn heal_and_drain(harness: &mut Harness) -> anyhow::Result<(bool, f64)> {
    harness.heal_all()?;
    let from = Instant::now();
    let mut empty_polls = 0;
    let mut last_check = Instant::now();
    let (mut low, mut low_at) = (u64::MAX, Instant::now());
    let mut last_print = Instant::now();
    let mut last_hang_check = Instant::now();
    while from.elapsed() < DRAIN_TIMEOUT && low_at.elapsed() < DRAIN_STALL {
        let records = harness.spool_records();
        match records {
            Some(0) => empty_polls += 1,
            _ => empty_polls = 0,
        }
        if let Some(n) = records.filter(|n| *n < low) {
            (low, low_at) = (n, Instant::now());
        }
        if empty_polls >= 4 {
            let took = from.elapsed().as_secs_f64() - 0.75;
            return Ok((true, took.max(0.0)));
        }
        if last_print.elapsed() > Duration::from_secs(10) {
            println!(
                "{:>7.1}s  draining: {} records left",
                harness.started.elapsed().as_secs_f64(),
                records.map_or("?".to_string(), |n| n.to_string())
            );
            last_print = Instant::now();
        }
        if last_check.elapsed() > Duration::from_secs(2) {
            harness.check_health()?;
            last_check = Instant::now();
        }
        if low_at.elapsed() > HANG_CHECK_AFTER && last_hang_check.elapsed() > HANG_CHECK_AFTER {
            last_hang_check = Instant::now();
            if harness.restart_if_hung()? {
                low_at = Instant::now();
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Ok((false, from.elapsed().as_secs_f64()))
}
