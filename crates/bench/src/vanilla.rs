//! The baselines: a vanilla rdkafka producer with exactly the librdkafka settings Spillway's
//! producer runs with, and the matching loop through `spillway::Producer`.
//!
//! Settings: [`vanilla_config`] starts from the same [`KafkaSettings::client_config`]
//! (`acks=all`, idempotence, `max.in.flight=5`, `linger.ms`, compression, statistics interval)
//! and applies the two overrides `Producer::start` applies (`message.timeout.ms` = the backstop,
//! `queue.buffering.max.messages` = 2 × the in-flight limit), so both sides hand librdkafka the
//! same configuration. Records are keyless, with the same payloads. Spillway's sticky chooser
//! places its own on one partition for 100 records, then another; the vanilla producer is given
//! the same placement ([`Placement::Runs`]: explicit partitions, changing every 100 records), so
//! the comparison is of the clients, not of two partitioners. (librdkafka's own sticky
//! partitioner, [`Placement::Librdkafka`], keeps a partition for `sticky.partitioning.linger.ms`
//! instead, so one partition at a time takes the traffic.)
//!
//! A run counts records from the first send to the last delivery report: acks=all throughput,
//! not enqueue speed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer,
};
use rdkafka::util::IntoOpaque;
use serde::Serialize;
use spillway::{IdGenerator, KafkaSettings, OutRecord, Producer, ProducerOptions, SendError};

use crate::report::cpu_time;

mod awaited;

pub use self::awaited::produce_awaited;

/// The librdkafka configuration a vanilla producer gets: Spillway's, overrides included.
pub fn vanilla_config(opts: &ProducerOptions) -> Result<ClientConfig, String> {
    let (mut config, _) = opts.kafka.client_config().map_err(|e| e.to_string())?;
    let backstop = opts.kafka.message_timeout.max(Duration::from_secs(5)) * 2;
    config.set("message.timeout.ms", backstop.as_millis().to_string());
    config.set(
        "queue.buffering.max.messages",
        (opts.max_in_flight_records.saturating_mul(2))
            .min(10_000_000)
            .to_string(),
    );
    Ok(config)
}

/// Default producer options for `bootstrap` (what `Spillway::start` would use for its
/// producer, minus the dead-letter log).
pub fn producer_options(bootstrap: &str) -> ProducerOptions {
    ProducerOptions::new(KafkaSettings::new(bootstrap))
}

/// What one producing run did.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Run {
    /// Records acknowledged by Kafka.
    pub delivered: u64,
    /// Records that failed (any outcome but delivered).
    pub failed: u64,
    /// Wall time from the first send to the last report, seconds.
    pub secs: f64,
    /// CPU time of the whole process during the run, seconds (with the in-process mock
    /// cluster, this includes the brokers' threads).
    pub cpu_secs: f64,
}

impl Run {
    /// A run that started at `start`, when the process had used `cpu0` of CPU.
    fn since(delivered: u64, failed: u64, start: Instant, cpu0: Duration) -> Run {
        Run {
            delivered,
            failed,
            secs: start.elapsed().as_secs_f64(),
            cpu_secs: (cpu_time() - cpu0).as_secs_f64(),
        }
    }

    pub fn records_per_s(&self) -> f64 {
        if self.secs > 0.0 {
            self.delivered as f64 / self.secs
        } else {
            0.0
        }
    }

    /// Payload megabytes (10^6 bytes) per second.
    pub fn mb_per_s(&self, size: usize) -> f64 {
        self.records_per_s() * size as f64 / 1e6
    }

    /// CPU microseconds per delivered record.
    pub fn cpu_us_per_record(&self) -> f64 {
        if self.delivered > 0 {
            self.cpu_secs * 1e6 / self.delivered as f64
        } else {
            0.0
        }
    }
}

/// Counts the answers one sending loop awaits itself.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    delivered: u64,
    failed: u64,
}

impl Tally {
    fn count(&mut self, delivered: bool) {
        if delivered {
            self.delivered += 1;
        } else {
            self.failed += 1;
        }
    }

    fn run_since(self, start: Instant, cpu0: Duration) -> Run {
        Run::since(self.delivered, self.failed, start, cpu0)
    }
}

/// Counts delivery reports.
#[derive(Debug, Default)]
pub struct Counting {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
}

/// A producer context that counts delivery reports and nothing else.
#[derive(Debug, Clone, Default)]
pub struct CountingContext(pub Arc<Counting>);

impl ClientContext for CountingContext {}

impl ProducerContext for CountingContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let c = if result.is_ok() {
            &self.0.ok
        } else {
            &self.0.failed
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Which vanilla producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Vanilla {
    /// `BaseProducer`, polled by the sending thread.
    Base,
    /// `ThreadedProducer` (its own polling thread, like Spillway's sessions).
    Threaded,
    /// `BaseProducer` whose records each carry a `spillway.id` header, formatted per record
    /// as Spillway formats its own: what the header the design requires (G4) costs librdkafka
    /// and the broker, apart from the wrapper.
    BaseWithIdHeader,
}

/// How the vanilla producer's records are placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// librdkafka's partitioner (sticky for keyless records).
    Librdkafka,
    /// Explicit partitions: `run` records on each, cycling through `partitions`.
    Runs { partitions: i32, run: u64 },
}

impl Placement {
    /// The placement Spillway's default sticky chooser makes (runs of 100).
    pub fn like_spillway(partitions: i32) -> Placement {
        Placement::Runs {
            partitions,
            run: 100,
        }
    }

    fn partition(self, i: u64) -> Option<i32> {
        match self {
            Placement::Librdkafka => None,
            Placement::Runs { partitions, run } => {
                Some(((i / run.max(1)) % partitions.max(1) as u64) as i32)
            }
        }
    }
}

/// Produces `records` keyless records of `size` bytes to `topic` with a vanilla producer and
/// waits for every delivery report (up to `timeout`).
pub fn produce_vanilla(
    config: &ClientConfig,
    kind: Vanilla,
    placement: Placement,
    topic: &str,
    records: u64,
    size: usize,
    timeout: Duration,
) -> Result<Run, KafkaError> {
    let value = crate::report::payload(size);
    let ctx = CountingContext::default();
    let counts = ctx.0.clone();
    let cpu0 = cpu_time();
    let start;
    let ids = IdGenerator::ephemeral();
    let with_id = kind == Vanilla::BaseWithIdHeader;
    match kind {
        Vanilla::Base | Vanilla::BaseWithIdHeader => {
            let p: BaseProducer<CountingContext> = config.create_with_context(ctx)?;
            warm_up(|| {
                p.client()
                    .fetch_metadata(Some(topic), Duration::from_secs(10))
            })?;
            start = Instant::now();
            for i in 0..records {
                let id = with_id.then(|| ids.next_id().to_text());
                let id = id.as_ref().map(spillway::record::IdText::as_bytes);
                let mut rec = record(topic, &value, placement.partition(i), id, ());
                loop {
                    match p.send(rec) {
                        Ok(()) => break,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                            rec = r;
                            // poll(timeout) spins through the end of its timeout: poll(0),
                            // then our own short wait.
                            p.poll(Duration::ZERO);
                            std::thread::sleep(Duration::from_micros(100));
                        }
                        Err((e, _)) => return Err(e),
                    }
                }
                if i % 64 == 0 {
                    p.poll(Duration::ZERO);
                }
            }
            wait_reports(&counts, records, timeout, || {
                p.poll(Duration::ZERO);
                std::thread::sleep(Duration::from_micros(100));
            });
        }
        Vanilla::Threaded => {
            let p: ThreadedProducer<CountingContext> = config.create_with_context(ctx)?;
            warm_up(|| {
                p.client()
                    .fetch_metadata(Some(topic), Duration::from_secs(10))
            })?;
            start = Instant::now();
            for i in 0..records {
                let mut rec = record(topic, &value, placement.partition(i), None, ());
                loop {
                    match p.send(rec) {
                        Ok(()) => break,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                            rec = r;
                            std::thread::sleep(Duration::from_micros(100));
                        }
                        Err((e, _)) => return Err(e),
                    }
                }
            }
            wait_reports(&counts, records, timeout, || {
                std::thread::sleep(Duration::from_micros(100));
            });
        }
    }
    Ok(Run::since(
        counts.ok.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
        start,
        cpu0,
    ))
}

fn record<'a, D: IntoOpaque>(
    topic: &'a str,
    value: &'a [u8],
    partition: Option<i32>,
    id: Option<&'a [u8]>,
    opaque: D,
) -> BaseRecord<'a, (), [u8], D> {
    let mut r = BaseRecord::with_opaque_to(topic, opaque).payload(value);
    if let Some(id) = id {
        r = r.headers(OwnedHeaders::new_with_capacity(1).insert(Header {
            key: spillway::record::ID_HEADER,
            value: Some(id),
        }));
    }
    match partition {
        Some(p) => r.partition(p),
        None => r,
    }
}

fn warm_up<T>(f: impl Fn() -> Result<T, KafkaError>) -> Result<(), KafkaError> {
    let mut last = None;
    for _ in 0..5 {
        match f() {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("tried"))
}

fn wait_reports(counts: &Counting, records: u64, timeout: Duration, mut step: impl FnMut()) {
    let deadline = Instant::now() + timeout;
    while counts.ok.load(Ordering::Relaxed) + counts.failed.load(Ordering::Relaxed) < records
        && Instant::now() < deadline
    {
        step();
    }
}

/// Produces `records` keyless records through a started `spillway::Producer`, keeping at most
/// `window` reports outstanding (the producer's in-flight limit answers `Backpressure` past
/// its own bound; this loop then waits for the oldest report), and waits for every report.
pub fn produce_spillway(
    producer: &Producer,
    ids: &IdGenerator,
    topic: &str,
    records: u64,
    size: usize,
    window: usize,
) -> Result<Run, SendError> {
    let value = crate::report::payload(size);
    producer.partitions(topic)?;
    let cpu0 = cpu_time();
    let start = Instant::now();
    let mut outstanding: std::collections::VecDeque<spillway::DeliveryFuture> =
        std::collections::VecDeque::with_capacity(window);
    let mut tally = Tally::default();
    let mut settle = |d: spillway::Delivery| tally.count(d.outcome.is_delivered());
    for _ in 0..records {
        if outstanding.len() >= window {
            settle(outstanding.pop_front().expect("non-empty").wait());
        }
        let mut record = OutRecord::new(topic, ids.next_id()).value(value.clone());
        loop {
            match producer.send(record) {
                Ok(f) => {
                    outstanding.push_back(f);
                    break;
                }
                Err(SendError::Backpressure(_)) => {
                    match outstanding.pop_front() {
                        Some(f) => settle(f.wait()),
                        None => std::thread::sleep(Duration::from_micros(200)),
                    }
                    record = OutRecord::new(topic, ids.next_id()).value(value.clone());
                }
                Err(e) => return Err(e),
            }
        }
    }
    for f in outstanding {
        settle(f.wait());
    }
    Ok(tally.run_since(start, cpu0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_placement_cycles_partitions_every_run_of_records() {
        let p = Placement::like_spillway(3);
        let got: Vec<Option<i32>> = [0, 99, 100, 199, 200, 300]
            .iter()
            .map(|i| p.partition(*i))
            .collect();
        assert_eq!(
            got,
            vec![Some(0), Some(0), Some(1), Some(1), Some(2), Some(0)]
        );
        assert_eq!(Placement::Librdkafka.partition(5), None);
    }

    #[test]
    fn the_vanilla_config_carries_spillways_overrides() {
        let opts = producer_options("127.0.0.1:9092");
        let c = vanilla_config(&opts).unwrap();
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("linger.ms"), Some("5"));
        assert_eq!(c.get("message.timeout.ms"), Some("60000"));
        assert_eq!(c.get("queue.buffering.max.messages"), Some("200000"));
    }
}
