//! KAFKA-3686 detection and loss (issues 4 and 7): the leader of partition 0 stays in the
//! metadata while we cannot reach it (a blackhole: connections hang, nothing is refused).
//!
//! On a 3-broker mock cluster behind fault proxies (`MockKafka::with_proxies(3)`, partition p
//! led by broker p+1), keyless records of `record_bytes` bytes flow at a steady `rate`. After
//! `warmup`, broker 1 is blackholed for `outage`; then it is healed, the traffic stops, and
//! every report is awaited. The same schedule runs for:
//! - **vanilla**: an rdkafka `ThreadedProducer` with the same librdkafka settings as Spillway's
//!   (`message.timeout.ms` = `message_timeout` on both; librdkafka's own partitioner);
//! - **spillway**: `spillway::Producer` with its default health settings.
//!
//! Measured per round:
//! - **detection**: from the blackhole to keyless traffic flowing only to healthy partitions.
//!   Spillway: the first moment partition 0 is unhealthy (the sticky chooser skips it from
//!   then on; polled at every send). Vanilla: librdkafka places keyless records on every
//!   partition that has a leader, so it never stops; the report says "never" when records
//!   sent in the last second of the outage still went to partition 0.
//! - **lost**: records sent and not in Kafka when the topic is read back after the heal (each
//!   value starts with its sequence number), and records reported delivered that Kafka does
//!   not hold (must be 0).
//!
//! Issue 4's target: detection < 2 s with default settings, and no keyless record lost.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};
use serde::Serialize;
use spillway::{IdGenerator, OutRecord, Outcome, Producer};
use spillway_test_support::mock::Unreachable;
use spillway_test_support::{MockKafka, read_topic};

use crate::report::{Progress, Table, TargetRow, Verdict, median};
use crate::vanilla::producer_options;

const TOPIC: &str = "bench-kafka3686";

/// What to measure.
#[derive(Debug, Clone)]
pub struct Kafka3686Options {
    /// Keyless records per second.
    pub rate: u32,
    pub record_bytes: usize,
    /// Healthy traffic before the blackhole.
    pub warmup: Duration,
    /// How long broker 1 stays blackholed (longer than `message_timeout`, so that vanilla's
    /// records time out).
    pub outage: Duration,
    /// librdkafka's `message.timeout.ms`, both sides. Spillway's default is 30 s; shortened so
    /// the outage outlasts it in a short run. Spillway's detection does not depend on it.
    pub message_timeout: Duration,
    pub rounds: usize,
    pub progress: Progress,
}

impl Default for Kafka3686Options {
    fn default() -> Self {
        Kafka3686Options {
            rate: 1000,
            record_bytes: 100,
            warmup: Duration::from_secs(2),
            outage: Duration::from_secs(15),
            message_timeout: Duration::from_secs(10),
            rounds: 3,
            progress: Progress::default(),
        }
    }
}

impl Kafka3686Options {
    pub fn quick() -> Self {
        Kafka3686Options {
            outage: Duration::from_secs(8),
            message_timeout: Duration::from_secs(5),
            rounds: 1,
            ..Self::default()
        }
    }
}

/// One system's round.
#[derive(Debug, Clone, Serialize)]
pub struct Kafka3686Run {
    /// `vanilla` or `spillway`.
    pub system: String,
    pub round: usize,
    pub sent: u64,
    /// Sent during the outage.
    pub sent_during_outage: u64,
    pub reported_delivered: u64,
    pub reported_failed: u64,
    /// No report by the end of the wait.
    pub unreported: u64,
    /// Distinct records found in the topic.
    pub in_kafka: u64,
    /// Sent and not in Kafka.
    pub lost: u64,
    /// Reported delivered but not in Kafka (must be 0).
    pub claimed_not_in_kafka: u64,
    /// Copies beyond the first in Kafka.
    pub duplicates: u64,
    /// Seconds from the blackhole to keyless traffic avoiding partition 0; `None`: never.
    pub detection_s: Option<f64>,
    /// Seconds from the blackhole to the last record sent to partition 0 during the outage.
    pub last_p0_send_s: Option<f64>,
    /// Seconds from the blackhole to the first failure report (vanilla).
    pub first_failure_s: Option<f64>,
    /// Seconds from the heal until every record had its report.
    pub settle_after_heal_s: f64,
}

/// Everything measured.
#[derive(Debug, Clone, Serialize)]
pub struct Kafka3686Report {
    pub rate: u32,
    pub outage_s: f64,
    pub message_timeout_s: f64,
    pub runs: Vec<Kafka3686Run>,
    /// Median detection (s) of Spillway's rounds; `None` if a round never detected.
    pub spillway_detection_s: Option<f64>,
    pub table: String,
}

impl Kafka3686Report {
    pub fn targets(&self) -> Vec<TargetRow> {
        let of = |s: &'static str| self.runs.iter().filter(move |r| r.system == s);
        let lost = |s: &'static str| {
            let v: Vec<String> = of(s).map(|r| format!("{}/{}", r.lost, r.sent)).collect();
            v.join(", ")
        };
        let spill_lost: u64 = of("spillway")
            .map(|r| r.lost + r.claimed_not_in_kafka)
            .sum();
        let detections: Vec<String> = of("spillway")
            .map(|r| r.detection_s.map_or("never".into(), |d| format!("{d:.2}")))
            .collect();
        let vanilla_det: Vec<String> = of("vanilla")
            .map(|r| {
                r.detection_s
                    .map_or("never".into(), |d| format!("{d:.2} s"))
            })
            .collect();
        vec![
            TargetRow::new(
                "kafka3686",
                "detection: blackhole → keyless traffic only to healthy partitions (spillway)",
                "< 2 s",
                format!(
                    "{} s ({}); vanilla: {}",
                    self.spillway_detection_s
                        .map_or("never".into(), |d| format!("{d:.2}")),
                    detections.join(", "),
                    vanilla_det.join(", ")
                ),
                Verdict::below(self.spillway_detection_s, 2.0),
            ),
            TargetRow::new(
                "kafka3686",
                "keyless records lost (spillway vs vanilla)",
                "0",
                format!("spillway {}; vanilla {}", lost("spillway"), lost("vanilla")),
                if of("spillway").count() == 0 {
                    Verdict::Info
                } else if spill_lost == 0 {
                    Verdict::Met
                } else {
                    Verdict::Missed
                },
            ),
        ]
    }
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum Kafka3686Error {
    #[error("mock cluster: {0}")]
    Mock(String),
    #[error("producer: {0}")]
    Producer(String),
}

/// Runs the benchmark (blocking).
pub fn run_kafka3686_bench(opts: Kafka3686Options) -> Result<Kafka3686Report, Kafka3686Error> {
    let mut runs = Vec::new();
    for round in 0..opts.rounds {
        for system in ["vanilla", "spillway"] {
            opts.progress.step(&format!(
                "kafka3686 round {}/{}: {system} ({} s outage at {} records/s)",
                round + 1,
                opts.rounds,
                opts.outage.as_secs_f64(),
                opts.rate
            ));
            let run = run_round(&opts, system, round)?;
            opts.progress.step(&format!(
                "kafka3686 {system}: detection {}, lost {}/{}",
                run.detection_s
                    .map_or("never".into(), |d| format!("{d:.2} s")),
                run.lost,
                run.sent
            ));
            runs.push(run);
        }
    }
    let det: Vec<Option<f64>> = runs
        .iter()
        .filter(|r| r.system == "spillway")
        .map(|r| r.detection_s)
        .collect();
    let spillway_detection_s = if det.iter().all(Option::is_some) {
        median(&det.iter().flatten().copied().collect::<Vec<_>>())
    } else {
        None
    };
    let table = render(&runs);
    Ok(Kafka3686Report {
        rate: opts.rate,
        outage_s: opts.outage.as_secs_f64(),
        message_timeout_s: opts.message_timeout.as_secs_f64(),
        runs,
        spillway_detection_s,
        table,
    })
}

/// A value whose first 8 bytes are the record's sequence number in decimal.
fn value(seq: u64, size: usize) -> Vec<u8> {
    let mut v = format!("{seq:08}").into_bytes();
    v.resize(size.max(8), b'.');
    v
}

fn seq_of(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value.get(..8)?).ok()?.parse().ok()
}

#[derive(Default)]
struct Reports {
    /// (seq, partition, delivered, at)
    list: Mutex<Vec<(u64, i32, bool, Instant)>>,
}

#[derive(Clone, Default)]
struct TrackingContext(Arc<Reports>);

impl ClientContext for TrackingContext {}

impl ProducerContext for TrackingContext {
    type DeliveryOpaque = Box<u64>;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: Box<u64>) {
        let (partition, ok) = match result {
            Ok(m) => (m.partition(), true),
            Err((_, m)) => (m.partition(), false),
        };
        if let Ok(mut l) = self.0.list.lock() {
            l.push((*seq, partition, ok, Instant::now()));
        }
    }
}

/// The traffic schedule: calls `send(seq, now)` at `rate` from now until `warmup + outage`,
/// blackholing broker 1 after `warmup`. Returns the blackhole instant and the heal instant.
fn drive(
    opts: &Kafka3686Options,
    kafka: &MockKafka,
    mut send: impl FnMut(u64, Instant, Option<Instant>),
) -> Result<(Instant, Instant), Kafka3686Error> {
    let start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / f64::from(opts.rate.max(1)));
    let mut broken: Option<Instant> = None;
    let mut seq = 0u64;
    loop {
        let now = Instant::now();
        if broken.is_none() && now >= start + opts.warmup {
            kafka
                .make_unreachable(1, Unreachable::Blackhole)
                .map_err(|e| Kafka3686Error::Mock(e.to_string()))?;
            broken = Some(Instant::now());
        }
        if broken.is_some_and(|b| now >= b + opts.outage) {
            break;
        }
        send(seq, now, broken);
        seq += 1;
        let next = start + interval.mul_f64(seq as f64);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    kafka
        .make_reachable(1)
        .map_err(|e| Kafka3686Error::Mock(e.to_string()))?;
    Ok((broken.expect("blackholed"), Instant::now()))
}

fn run_round(
    opts: &Kafka3686Options,
    system: &str,
    round: usize,
) -> Result<Kafka3686Run, Kafka3686Error> {
    let mock_err = |e: spillway_test_support::HarnessError| Kafka3686Error::Mock(e.to_string());
    let kafka = MockKafka::with_proxies(3).map_err(mock_err)?;
    kafka.create_topic(TOPIC, 3).map_err(mock_err)?;
    let mut popts = producer_options(kafka.bootstrap());
    popts.kafka.message_timeout = opts.message_timeout;
    let wait_limit = opts.message_timeout * 3 + Duration::from_secs(60);
    let mut sent_at: Vec<Instant> = Vec::new();
    let mut run = Kafka3686Run {
        system: system.to_string(),
        round,
        sent: 0,
        sent_during_outage: 0,
        reported_delivered: 0,
        reported_failed: 0,
        unreported: 0,
        in_kafka: 0,
        lost: 0,
        claimed_not_in_kafka: 0,
        duplicates: 0,
        detection_s: None,
        last_p0_send_s: None,
        first_failure_s: None,
        settle_after_heal_s: 0.0,
    };
    // (seq, delivered) of every report.
    let mut reports: Vec<(u64, i32, bool)> = Vec::new();
    let broken;
    if system == "vanilla" {
        let (config, _) = popts
            .kafka
            .client_config()
            .map_err(|e| Kafka3686Error::Producer(e.to_string()))?;
        let ctx = TrackingContext::default();
        let tracked = ctx.0.clone();
        let p: ThreadedProducer<TrackingContext> = config
            .create_with_context(ctx)
            .map_err(|e| Kafka3686Error::Producer(e.to_string()))?;
        let v = |seq| value(seq, opts.record_bytes);
        let (b, healed) = drive(opts, &kafka, |seq, now, _| {
            sent_at.push(now);
            let payload = v(seq);
            let rec = BaseRecord::<(), [u8], Box<u64>>::with_opaque_to(TOPIC, Box::new(seq))
                .payload(&payload[..]);
            if p.send(rec).is_err() {
                // Refused at once (queue full): counts as sent and failed.
                if let Ok(mut l) = tracked.list.lock() {
                    l.push((seq, -1, false, Instant::now()));
                }
            }
        })?;
        broken = b;
        let n = sent_at.len();
        let deadline = Instant::now() + wait_limit;
        while tracked.list.lock().map_or(0, |l| l.len()) < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        run.settle_after_heal_s = healed.elapsed().as_secs_f64();
        let list = tracked.list.lock().map(|l| l.clone()).unwrap_or_default();
        run.first_failure_s = list
            .iter()
            .filter(|r| !r.2)
            .map(|r| r.3.saturating_duration_since(broken).as_secs_f64())
            .reduce(f64::min);
        reports = list.iter().map(|r| (r.0, r.1, r.2)).collect();
        drop(p);
    } else {
        let producer =
            Producer::start(popts).map_err(|e| Kafka3686Error::Producer(e.to_string()))?;
        producer
            .partitions(TOPIC)
            .map_err(|e| Kafka3686Error::Producer(e.to_string()))?;
        let ids = IdGenerator::ephemeral();
        let mut futures = Vec::new();
        let mut detected: Option<Instant> = None;
        let (b, healed) = drive(opts, &kafka, |seq, now, broken| {
            sent_at.push(now);
            if broken.is_some() && detected.is_none() && !producer.is_healthy(TOPIC, 0) {
                detected = Some(Instant::now());
            }
            let record = OutRecord::new(TOPIC, ids.next_id()).value(value(seq, opts.record_bytes));
            match producer.send(record) {
                Ok(f) => futures.push((seq, Some(f))),
                Err(_) => futures.push((seq, None)),
            }
        })?;
        broken = b;
        run.detection_s = detected.map(|d| d.saturating_duration_since(broken).as_secs_f64());
        let deadline = Instant::now() + wait_limit;
        for (seq, f) in futures {
            match f {
                None => reports.push((seq, -1, false)),
                Some(f) => {
                    // Reports come in order of resolution; waiting in send order is bounded
                    // by the producer's own timeouts (resolve_timeout, the backstop).
                    if Instant::now() > deadline {
                        continue;
                    }
                    let d = f.wait();
                    let partition = match d.outcome {
                        Outcome::Delivered { partition, .. } => partition,
                        Outcome::NotPersisted { partition, .. }
                        | Outcome::Permanent { partition, .. } => partition.unwrap_or(-1),
                        Outcome::PossiblyPersisted { partition, .. } => partition,
                    };
                    reports.push((seq, partition, d.outcome.is_delivered()));
                }
            }
        }
        run.settle_after_heal_s = healed.elapsed().as_secs_f64();
        producer.close(Duration::from_secs(10));
    }
    let outage_end = broken + opts.outage;
    run.sent = sent_at.len() as u64;
    run.sent_during_outage = sent_at.iter().filter(|t| **t >= broken).count() as u64;
    run.reported_delivered = reports.iter().filter(|r| r.2).count() as u64;
    run.reported_failed = reports.iter().filter(|r| !r.2).count() as u64;
    run.unreported = run.sent.saturating_sub(reports.len() as u64);
    // The last record sent to partition 0 while it was unreachable (by its final placement;
    // a vanilla record never moves).
    run.last_p0_send_s = reports
        .iter()
        .filter(|r| r.1 == 0)
        .filter_map(|r| sent_at.get(r.0 as usize))
        .filter(|t| **t >= broken && **t < outage_end)
        .map(|t| t.saturating_duration_since(broken).as_secs_f64())
        .reduce(f64::max);
    if system == "vanilla" {
        // librdkafka never stops placing keyless records on partition 0: "never" when it
        // still did in the last second of the outage, else the last such send.
        let tail = opts.outage.as_secs_f64() - 1.0;
        run.detection_s = match run.last_p0_send_s {
            Some(t) if t >= tail => None,
            Some(t) => Some(t),
            None => Some(0.0),
        };
    }
    let records = read_topic(kafka.bootstrap(), TOPIC, Duration::from_secs(60))
        .map_err(|e| Kafka3686Error::Mock(e.to_string()))?;
    let mut seen = HashSet::new();
    for r in &records {
        if let Some(seq) = r.value.as_deref().and_then(seq_of) {
            if !seen.insert(seq) {
                run.duplicates += 1;
            }
        }
    }
    run.in_kafka = seen.len() as u64;
    run.lost = (0..run.sent).filter(|s| !seen.contains(s)).count() as u64;
    run.claimed_not_in_kafka = reports
        .iter()
        .filter(|r| r.2 && !seen.contains(&r.0))
        .count() as u64;
    Ok(run)
}

/// The Markdown table of every round.
pub fn render(runs: &[Kafka3686Run]) -> String {
    let mut t = Table::new(&[
        "system",
        "round",
        "sent records",
        "during outage records",
        "reported delivered records",
        "reported failed records",
        "in Kafka records",
        "lost",
        "claimed but not in Kafka",
        "duplicates",
        "detection s",
        "last p0 send s",
        "first failure s",
    ]);
    let s = |v: Option<f64>| v.map_or_else(|| "never".to_string(), |v| format!("{v:.2}"));
    for r in runs {
        t.row(vec![
            r.system.clone(),
            (r.round + 1).to_string(),
            r.sent.to_string(),
            r.sent_during_outage.to_string(),
            r.reported_delivered.to_string(),
            r.reported_failed.to_string(),
            r.in_kafka.to_string(),
            r.lost.to_string(),
            r.claimed_not_in_kafka.to_string(),
            r.duplicates.to_string(),
            s(r.detection_s),
            r.last_p0_send_s
                .map_or_else(|| "—".into(), |v| format!("{v:.2}")),
            r.first_failure_s
                .map_or_else(|| "—".into(), |v| format!("{v:.2}")),
        ]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_carries_its_sequence_number_in_its_first_eight_bytes() {
        let v = value(42, 100);
        assert_eq!(v.len(), 100);
        assert_eq!(seq_of(&v), Some(42));
        assert_eq!(seq_of(b"short"), None);
        assert_eq!(value(7, 3).len(), 8, "never shorter than the sequence");
    }

    #[test]
    fn the_summary_judges_spillway_detection_and_loss() {
        let run = |system: &str, det: Option<f64>, lost: u64| Kafka3686Run {
            system: system.into(),
            round: 0,
            sent: 100,
            sent_during_outage: 80,
            reported_delivered: 100 - lost,
            reported_failed: lost,
            unreported: 0,
            in_kafka: 100 - lost,
            lost,
            claimed_not_in_kafka: 0,
            duplicates: 0,
            detection_s: det,
            last_p0_send_s: None,
            first_failure_s: None,
            settle_after_heal_s: 1.0,
        };
        let runs = vec![run("vanilla", None, 20), run("spillway", Some(1.2), 0)];
        let report = Kafka3686Report {
            rate: 1000,
            outage_s: 10.0,
            message_timeout_s: 5.0,
            table: render(&runs),
            runs,
            spillway_detection_s: Some(1.2),
        };
        let t = report.targets();
        assert_eq!(t[0].verdict, Verdict::Met);
        assert!(
            t[0].measured.contains("vanilla: never"),
            "{}",
            t[0].measured
        );
        assert_eq!(t[1].verdict, Verdict::Met);
        assert_eq!(t[1].measured, "spillway 0/100; vanilla 20/100");
        assert!(report.table.contains("| vanilla | 1 | 100 | 80 |"));
    }
}
