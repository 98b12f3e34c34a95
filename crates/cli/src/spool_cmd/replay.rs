//! `spillway spool replay DIR --bootstrap B`: deliver a spool to Kafka with the library's own
//! engine, in order and once, with a progress bar; or (`--dead-letters`) the dead-letter log.
//!
//! ## How a spool is replayed
//! Spillway's engine is started on the directory with every topic routed `spool_first` and
//! nothing sent to it: it only drains. At start it recovers the spool (repairing damage as
//! `spillway spool repair` would) and starts one forwarder per stream holding records. Each
//! forwarder sends its stream in order; before its first round it reads the partition's tail
//! after the offsets recorded in the stream's checkpoint and drops the records whose
//! `spillway.id` is there already (a previous process, or an interrupted replay, delivered them
//! without the checkpoint knowing). The instance id in the ids is the one in
//! `DIR/instance.id`, so a spool carried over from a dead host is checked against what that host
//! sent. Delivered records are acknowledged in the spool and their segments deleted.
//!
//! We wait until the backlog (`Spillway::backlog`) is zero, drawing it as a progress bar, then
//! shut the engine down (the checkpoint is made durable). Ctrl-C or SIGTERM stops the same way
//! at any moment: records in flight finish, the rest stay in the spool, and a rerun continues;
//! a kill -9 loses nothing either, the start-up tail check covers what the checkpoint missed.

use std::fmt;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use spillway::config::is_secret;
use spillway::streams::StreamKind;
use spillway::{Mode, Route, Spillway, SpillwayConfig, StartError};
use spillway_spool::OpenError;

use super::{INTERRUPTED, OK, WARNING, deadletters, lock};

/// Arguments of `spillway spool replay`.
#[derive(Args)]
pub struct ReplayArgs {
    /// The spool directory.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Kafka bootstrap servers (HOST:PORT, comma-separated for several).
    #[arg(long, value_name = "HOST:PORT")]
    pub bootstrap: String,
    /// A librdkafka property of the producer, KEY=VALUE (security, SASL, TLS, tuning); repeat
    /// for several. Secret values are never printed.
    #[arg(long = "property", value_name = "KEY=VALUE")]
    pub properties: Vec<String>,
    /// Replay DIR/dead-letters.jsonl instead of the spool, once the cause of the refusals is
    /// fixed. Progress is kept in DIR/dead-letters.replayed.
    #[arg(long)]
    pub dead_letters: bool,
    /// Send at most this many records per second (all streams together; not with
    /// --dead-letters). Default: no limit.
    #[arg(long, value_name = "N")]
    pub rate: Option<u32>,
    /// Give up after this long, leaving the rest in the spool for a rerun (exit code 1).
    /// Default: wait until everything is delivered or the replay is interrupted.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// Most records one partition-tail check may read. A longer tail cannot be checked: the
    /// engine then warns that records may be sent twice, and a dead-letter entry whose earlier
    /// replay is unknown is not resent.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub max_tail_scan: i64,
    /// No progress bar (the summary is still printed).
    #[arg(long)]
    pub no_progress: bool,
}

impl fmt::Debug for ReplayArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayArgs")
            .field("dir", &self.dir)
            .field("bootstrap", &self.bootstrap)
            .field("properties", &redacted(&self.properties))
            .field("dead_letters", &self.dead_letters)
            .field("rate", &self.rate)
            .field("timeout", &self.timeout)
            .field("max_tail_scan", &self.max_tail_scan)
            .finish_non_exhaustive()
    }
}

fn redacted(properties: &[String]) -> Vec<String> {
    properties
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, _)) if is_secret(k) => format!("{k}=[redacted]"),
            Some(_) => p.clone(),
            None => "[unparsed]".into(),
        })
        .collect()
}

/// `KEY=VALUE` pairs.
pub fn parse_properties(properties: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    properties
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => anyhow::bail!(
                "--property wants KEY=VALUE, got {:?}",
                redacted(std::slice::from_ref(p))[0]
            ),
        })
        .collect()
}

pub fn run(args: ReplayArgs) -> anyhow::Result<u8> {
    init_logging();
    let properties = parse_properties(&args.properties)?;
    lock::ensure_free(&args.dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let stop = Arc::new(AtomicBool::new(false));
    runtime.spawn(watch_signals(Arc::clone(&stop)));
    let result = if args.dead_letters {
        let stop = Arc::clone(&stop);
        runtime.block_on(async move {
            tokio::task::spawn_blocking(move || deadletters::replay(&args, &properties, &stop))
                .await?
        })
    } else {
        runtime.block_on(replay_spool(&args, &properties, &stop))
    };
    runtime.shutdown_timeout(Duration::from_secs(5));
    result
}

/// Sets `stop` on SIGINT or SIGTERM.
async fn watch_signals(stop: Arc<AtomicBool>) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let terminated = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminated => {}
    }
    stop.store(true, Ordering::SeqCst);
}

/// Engine warnings (recovery actions, tail checks too long to make) on stderr; librdkafka's
/// own connection chatter is off (the progress bar says what the replay waits for). `RUST_LOG`
/// overrides this.
fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,librdkafka=off,rdkafka=off".into()),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// A progress bar over `total` on stderr, or a hidden one.
pub fn progress(total: u64, unit: &str, hidden: bool) -> ProgressBar {
    if hidden || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let template = format!(
        "{{spinner}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {unit} (eta {{eta}}) {{msg}}"
    );
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

async fn replay_spool(
    args: &ReplayArgs,
    properties: &[(String, String)],
    stop: &AtomicBool,
) -> anyhow::Result<u8> {
    let mut config = SpillwayConfig::new(&args.bootstrap, &args.dir);
    config.kafka.properties.extend(properties.iter().cloned());
    config.default_route = Route::new("*", Mode::SpoolFirst);
    config.drain.rate = args.rate;
    config.drain.max_tail_scan = args.max_tail_scan;
    let started = Instant::now();
    let spillway = match Spillway::start(config) {
        Ok(s) => s,
        Err(StartError::Spool(OpenError::Locked { dir, lock })) => {
            return Err(lock::locked(&dir, &lock).into());
        }
        Err(e) => return Err(e.into()),
    };
    // Streams whose names are not ours get no forwarder: their records never leave.
    let foreign: u64 = spillway
        .status()
        .spool
        .streams
        .iter()
        .filter(|s| StreamKind::parse(&s.name).is_none())
        .map(|s| s.records)
        .sum();
    let total = spillway.backlog();
    let deliverable = total - foreign.min(total);
    eprintln!(
        "replaying {deliverable} records from {} to {} (instance {})",
        args.dir.display(),
        args.bootstrap,
        spillway.instance()
    );
    if foreign > 0 {
        eprintln!(
            "warning: {foreign} records are in streams whose names Spillway does not write; \
             they are left in the spool"
        );
    }
    let bar = progress(deliverable, "records", args.no_progress);
    let deadline = args.timeout.map(|t| started + t);
    let mut last_line = Instant::now();
    let mut waiting = String::new();
    let mut last_status: Option<Instant> = None;
    let outcome = loop {
        let left = spillway.backlog().saturating_sub(foreign);
        bar.set_position(deliverable.saturating_sub(left));
        // `status()` reads every stream's statistics: once a second is enough.
        if last_status.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            last_status = Some(Instant::now());
            waiting = waiting_for(&spillway);
        }
        let done = deliverable.saturating_sub(left);
        let rate = done as f64 / started.elapsed().as_secs_f64().max(0.001);
        bar.set_message(format!("{rate:.0}/s {waiting}"));
        if left == 0 {
            break Outcome::Done;
        }
        if stop.load(Ordering::SeqCst) {
            break Outcome::Interrupted;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break Outcome::TimedOut;
        }
        if bar.is_hidden() && !args.no_progress && last_line.elapsed() >= Duration::from_secs(5) {
            last_line = Instant::now();
            eprintln!(
                "replay: {} of {deliverable} records done",
                deliverable - left
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    bar.finish_and_clear();
    if outcome == Outcome::Interrupted {
        eprintln!(
            "interrupted: stopping cleanly (records in flight finish, the rest stay in the spool)"
        );
    }
    spillway.shutdown(Duration::from_secs(10)).await;
    let counts = Counts::of(&spillway);
    let left = spillway.backlog().saturating_sub(foreign);
    drop(spillway);
    let report = Report {
        outcome,
        took: started.elapsed(),
        total: deliverable,
        left,
        foreign,
        waiting,
    };
    print_summary(args, &report, &counts);
    Ok(match outcome {
        Outcome::Interrupted => INTERRUPTED,
        Outcome::Done if counts.dead_lettered == 0 => OK,
        _ => WARNING,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Done,
    Interrupted,
    TimedOut,
}

/// Why the replay is not moving, if it is not: breakers and unhealthy partitions.
fn waiting_for(spillway: &Spillway) -> String {
    let status = spillway.status();
    if let Some(r) = status
        .routes
        .iter()
        .find(|r| r.breaker != spillway::breaker::BreakerState::Closed)
    {
        return format!(
            "waiting: breaker {} ({})",
            r.breaker.as_str(),
            r.last_open_reason.as_deref().unwrap_or("")
        );
    }
    match status.unhealthy_partitions.len() {
        0 => String::new(),
        n => format!("waiting for {n} unhealthy partitions"),
    }
}

/// What the engine did, from its metrics.
#[derive(Debug, Default)]
struct Counts {
    /// Acknowledged by Kafka, deduplicated ones included.
    deliveries: u64,
    deduplicated: u64,
    dead_lettered: u64,
}

impl Counts {
    fn of(spillway: &Spillway) -> Counts {
        let mut registry = prometheus_client::registry::Registry::default();
        spillway.register_metrics(&mut registry);
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &registry).is_err() {
            return Counts::default();
        }
        Counts {
            deliveries: sum(&text, "spillway_deliveries_total", None),
            deduplicated: sum(&text, "spillway_dedup_found_total", None),
            dead_lettered: sum(
                &text,
                "spillway_records_total",
                Some("outcome=\"dead_lettered\""),
            ),
        }
    }
}

/// The sum of the samples of `metric` (whose labels contain `label`, if given).
fn sum(text: &str, metric: &str, label: Option<&str>) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| label.is_none_or(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// How a spool replay ended.
#[derive(Debug)]
struct Report {
    outcome: Outcome,
    took: Duration,
    total: u64,
    left: u64,
    foreign: u64,
    /// What it was waiting for last, if anything.
    waiting: String,
}

fn print_summary(args: &ReplayArgs, r: &Report, c: &Counts) {
    let (outcome, took, total, left, foreign) = (r.outcome, r.took, r.total, r.left, r.foreign);
    let took = humantime::format_duration(Duration::from_millis(took.as_millis() as u64));
    let head = match outcome {
        Outcome::Done => format!("done in {took}"),
        Outcome::Interrupted => format!("interrupted after {took}"),
        Outcome::TimedOut => format!("gave up after {took} (--timeout)"),
    };
    println!(
        "replay of {} to {}: {head}",
        args.dir.display(),
        args.bootstrap
    );
    let rows = [
        ("records to deliver at start", total),
        ("delivered", c.deliveries.saturating_sub(c.deduplicated)),
        ("already in Kafka (not sent again)", c.deduplicated),
        ("dead-lettered (see dead-letters.jsonl)", c.dead_lettered),
        ("left in the spool", left),
    ];
    for (what, n) in rows {
        println!("  {what:<40} {n:>10}");
    }
    if foreign > 0 {
        println!(
            "  {:<40} {foreign:>10}",
            "in streams not Spillway's (left alone)"
        );
    }
    if left > 0 && !r.waiting.is_empty() {
        println!("last state: {}", r.waiting);
    }
    if left > 0 {
        println!("rerun the same command to deliver the rest: nothing delivered is sent again.");
    }
    if c.dead_lettered > 0 {
        println!(
            "Kafka refused {} records permanently; fix the cause, then `spillway spool replay {} \
             --bootstrap {} --dead-letters`.",
            c.dead_lettered,
            args.dir.display(),
            args.bootstrap
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sums_pick_the_right_series() {
        let text = "# HELP x\n\
                    spillway_deliveries_total{topic=\"a\"} 5\n\
                    spillway_deliveries_total{topic=\"b\"} 7\n\
                    spillway_deliveries_totally 100\n\
                    spillway_records_total{topic=\"a\",outcome=\"dead_lettered\"} 2\n\
                    spillway_records_total{topic=\"a\",outcome=\"delivered\"} 12\n\
                    spillway_dedup_found_total 3\n";
        assert_eq!(sum(text, "spillway_deliveries_total", None), 12);
        assert_eq!(sum(text, "spillway_dedup_found_total", None), 3);
        assert_eq!(
            sum(
                text,
                "spillway_records_total",
                Some("outcome=\"dead_lettered\"")
            ),
            2
        );
    }

    #[test]
    fn properties_are_key_value_and_secrets_are_never_echoed() {
        let ok = parse_properties(&["security.protocol=SSL".into(), "a=b=c".into()]).unwrap();
        assert_eq!(ok[1], ("a".into(), "b=c".into()));
        let err = parse_properties(&["nonsense".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("KEY=VALUE"));
        let shown = redacted(&["sasl.password=hunter2".into()]);
        assert!(!shown[0].contains("hunter2"));
    }
}
