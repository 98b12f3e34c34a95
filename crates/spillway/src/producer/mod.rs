//! The Kafka side: a producer that knows, for every record, whether Kafka has it.
//!
//! ## librdkafka semantics we rely on
//! - `ThreadedProducer` with our own `ProducerContext` (not `FutureProducer`, which cannot take
//!   a partition chosen by us per record and hides the persistence status). Its thread calls
//!   `poll`, which runs our delivery callback once per record, success or failure.
//! - With `enable.idempotence=true` librdkafka retries transient errors internally and keeps
//!   per-partition order, until `message.timeout.ms`. A delivery error therefore arrives only
//!   after librdkafka gave up, and carries no "retriable" flag: we classify codes ourselves
//!   ([`mod@crate::classify`]).
//! - `rd_kafka_message_status` says whether a failed record was never sent (`NOT_PERSISTED`),
//!   sent without an answer (`POSSIBLY_PERSISTED`), or acknowledged.
//! - When a record times out, an idempotent producer bumps its epoch and carries on, so a
//!   *later* record of the same partition can still be acknowledged after an earlier one failed.
//!   That would break order (G3). So Spillway never lets librdkafka give up on its own: it
//!   watches progress itself and *cuts* the session first (below). librdkafka's own
//!   `message.timeout.ms` is set to a backstop well beyond our detection.
//! - `rd_kafka_purge(QUEUE | INFLIGHT)` fails every record still in librdkafka at once, with
//!   `PurgeQueue` (never sent) or `PurgeInflight` (possibly sent).
//! - Statistics (`statistics.interval.ms`) report each broker's state, requests waiting for a
//!   response, and time since the last byte received ([`crate::health`]).
//!
//! ## Sessions and cuts
//! A *session* is one librdkafka producer instance. It is cut when a partition with records
//! outstanding stalls (its leader answers nothing for `stall_after`), when a broker leading such
//! a partition is down or silent, or on a fatal error. A cut creates a fresh producer (a new
//! producer id), swaps it in, purges the old one and drops it. Every record of the old session
//! gets a definite outcome, at once, and nothing of it can be acknowledged later.
//!
//! ## Outcomes
//! - `Delivered { partition, offset }`: acknowledged with acks=all.
//! - `NotPersisted`: surely not in Kafka. Keyless records are re-placed on a healthy partition
//!   automatically (up to `max_attempts`); ordered records (key or explicit partition) are
//!   returned to the caller, who keeps them (the delivery modes spool them).
//! - `PossiblyPersisted`: may be in Kafka. Keyless ones are resolved by a tail check
//!   ([`crate::tail`]) once their partition is healthy: found means delivered, not found means
//!   re-placed. Ordered ones are returned with `known_before` for the caller's own check.
//!   A caller with retries of its own (a forwarder) sends with
//!   [`Producer::send_with`] and `replace: false` ([`SendOptions`]), and gets keyless failures
//!   as ordered ones.
//! - `Permanent`: refused for what it is; written to the dead-letter log (fsync'd) before the
//!   outcome is reported.
//!
//! A sender may also ask ([`SendOptions::observe`]) that a delivery be told to the producer's
//! [`DeliveryObserver`] on the delivery thread, before the answer: the engine does what every
//! direct delivery costs there (`crate::direct`).
//!
//! ## Partitions
//! Chosen at admission ([`crate::partitioner`]): murmur2 for keys, explicit honoured, keyless
//! sticky among healthy partitions. A keyed or explicit record whose partition is unhealthy is
//! not sent (it would stall) and not rerouted (order): `send` fails fast with
//! [`SendError::PartitionUnhealthy`].

mod dispatch;
mod ffi;
mod handlers;
mod observe;
mod outcome;
mod session;
mod stats;
mod supervisor;
mod ticket;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};
use rdkafka::ClientConfig;
use rdkafka::producer::Producer as _;

pub use observe::{DeliveryObserver, SendOptions};
pub use outcome::{Delivery, DeliveryError, DeliveryFuture, Outcome, SendError};

/// A record the producer did not take, with why (boxed: the path is rare, and the success
/// path stays small).
pub type Refused = Box<(SendError, OutRecord)>;

use self::session::{Pending, Session};
use crate::config::{ConfigError, Finding, KafkaSettings};
use crate::deadletter::{DeadLetterError, DeadLetterLog};
use crate::health::{FastMap, HealthConfig, HealthEvent, HealthTracker, Reason, TopicPartition};
use crate::partitioner::StickyChooser;
use crate::record::OutRecord;

/// How the producer behaves. `ProducerOptions::new(settings)` gives the defaults.
#[derive(Debug, Clone)]
pub struct ProducerOptions {
    pub kafka: KafkaSettings,
    pub health: HealthConfig,
    /// How often unhealthy partitions' leaders are probed.
    pub probe_interval: Duration,
    /// How long one probe may take.
    pub probe_timeout: Duration,
    /// Records handed to librdkafka and not yet reported, at most.
    pub max_in_flight_records: usize,
    /// Bytes of such records, at most.
    pub max_in_flight_bytes: usize,
    /// Keyless records stay on one partition for this many records.
    pub sticky_run: u32,
    /// Re-place keyless records that failed (and resolve possibly persisted ones).
    pub replace_keyless: bool,
    /// Attempts per keyless record before its failure is returned.
    pub max_attempts: u32,
    /// How long a possibly persisted keyless record may wait for its tail check before the
    /// caller gets `PossiblyPersisted`.
    pub resolve_timeout: Duration,
    /// A tail check waits until its partition has been healthy this long, so that requests
    /// stuck in a healed network partition have landed first.
    pub resolve_settle: Duration,
    /// Most records a tail check may scan.
    pub max_tail_scan: i64,
    /// How long topic metadata is cached.
    pub metadata_ttl: Duration,
    /// The local dead-letter log (JSON lines); `None` keeps no log (then permanent failures
    /// are only reported, with `dead_lettered: false`).
    pub dead_letter_log: Option<PathBuf>,
    /// Also produce dead letters to this topic (best effort).
    pub dead_letter_topic: Option<String>,
    /// Counts tail checks that could read only part of their range.
    pub partial_tail_checks: prometheus_client::metrics::counter::Counter,
}

impl ProducerOptions {
    pub fn new(kafka: KafkaSettings) -> Self {
        Self {
            kafka,
            health: HealthConfig::default(),
            probe_interval: Duration::from_millis(500),
            probe_timeout: Duration::from_secs(1),
            max_in_flight_records: 100_000,
            max_in_flight_bytes: 256 << 20,
            sticky_run: 100,
            replace_keyless: true,
            max_attempts: 5,
            resolve_timeout: Duration::from_secs(60),
            resolve_settle: Duration::from_secs(2),
            max_tail_scan: 1_000_000,
            metadata_ttl: Duration::from_secs(10),
            dead_letter_log: None,
            dead_letter_topic: None,
            partial_tail_checks: Default::default(),
        }
    }
}

/// Why the producer could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("creating the librdkafka producer: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    DeadLetters(#[from] DeadLetterError),
    #[error("starting a producer thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Counters of what the producer did (monotonic since start).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProducerCounters {
    pub sent: u64,
    pub delivered: u64,
    pub not_persisted: u64,
    pub possibly_persisted: u64,
    pub permanent: u64,
    pub dead_lettered: u64,
    pub replaced: u64,
    pub resolved_found: u64,
    pub cuts: u64,
    pub failovers: u64,
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    delivered: AtomicU64,
    not_persisted: AtomicU64,
    possibly_persisted: AtomicU64,
    permanent: AtomicU64,
    dead_lettered: AtomicU64,
    replaced: AtomicU64,
    resolved_found: AtomicU64,
    cuts: AtomicU64,
    failovers: AtomicU64,
}

#[derive(Debug, Clone)]
struct TopicMeta {
    partitions: i32,
    fetched: Instant,
}

/// State shared by the producer handle, its sessions' callbacks and its threads.
pub(crate) struct Shared {
    me: std::sync::Weak<Shared>,
    opts: ProducerOptions,
    config: ClientConfig,
    /// librdkafka's `message.timeout.ms` as we set it: a backstop beyond our own detection.
    backstop: Duration,
    session: RwLock<Option<Arc<Session>>>,
    next_session: AtomicU64,
    health: Mutex<HealthTracker>,
    meta: Mutex<FastMap<String, TopicMeta>>,
    meta_misses: Mutex<HashMap<String, Instant>>,
    sticky: StickyChooser,
    in_flight_records: AtomicUsize,
    in_flight_bytes: AtomicUsize,
    cut_request: Mutex<Option<(u64, String)>>,
    last_cut: Mutex<Instant>,
    requeue: Mutex<VecDeque<Pending>>,
    unresolved: Mutex<Vec<Pending>>,
    dead_queue: Mutex<Vec<(Pending, DeliveryError)>>,
    dead_log: Option<DeadLetterLog>,
    events: Mutex<Vec<HealthEvent>>,
    counters: Counters,
    wake: (Mutex<bool>, Condvar),
    closed: AtomicBool,
    observer: OnceLock<Arc<dyn DeliveryObserver>>,
}

/// The Kafka-side producer. See the module documentation. Cheap to share behind an `Arc`.
pub struct Producer {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    warnings: Vec<Finding>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("kafka", &self.shared.opts.kafka)
            .finish_non_exhaustive()
    }
}

impl Producer {
    /// Starts a producer: validates the settings (refusing unsafe ones), opens the dead-letter
    /// log, creates the first session and the supervisor and prober threads.
    pub fn start(opts: ProducerOptions) -> Result<Self, StartError> {
        let (mut config, warnings) = opts.kafka.client_config()?;
        for w in &warnings {
            tracing::warn!("producer setting: {w}");
        }
        // Our own detection cuts long before this; librdkafka's timeout is only a backstop.
        let backstop = opts.kafka.message_timeout.max(Duration::from_secs(5)) * 2;
        config.set("message.timeout.ms", backstop.as_millis().to_string());
        config.set(
            "queue.buffering.max.messages",
            (opts.max_in_flight_records.saturating_mul(2))
                .min(10_000_000)
                .to_string(),
        );
        let dead_log = opts
            .dead_letter_log
            .as_ref()
            .map(DeadLetterLog::open)
            .transpose()?;
        let shared = Arc::new_cyclic(|me| Shared {
            me: me.clone(),
            health: Mutex::new(HealthTracker::new(opts.health)),
            sticky: StickyChooser::new(opts.sticky_run),
            config,
            backstop,
            session: RwLock::new(None),
            next_session: AtomicU64::new(1),
            meta: Mutex::new(FastMap::default()),
            meta_misses: Mutex::new(HashMap::new()),
            in_flight_records: AtomicUsize::new(0),
            in_flight_bytes: AtomicUsize::new(0),
            cut_request: Mutex::new(None),
            last_cut: Mutex::new(Instant::now() - Duration::from_secs(3600)),
            requeue: Mutex::new(VecDeque::new()),
            unresolved: Mutex::new(Vec::new()),
            dead_queue: Mutex::new(Vec::new()),
            dead_log,
            events: Mutex::new(Vec::new()),
            counters: Counters::default(),
            wake: (Mutex::new(false), Condvar::new()),
            closed: AtomicBool::new(false),
            observer: OnceLock::new(),
            opts,
        });
        let first = Session::start(&shared.config, shared.me.clone(), 0)?;
        *shared.session.write() = Some(Arc::new(first));
        shared.health.lock().on_session_start(0, Instant::now());
        let threads = supervisor::spawn(&shared)?;
        Ok(Self {
            shared,
            threads: Mutex::new(threads),
            warnings,
        })
    }

    /// Lint warnings of the settings this producer runs with.
    pub fn warnings(&self) -> &[Finding] {
        &self.warnings
    }

    /// Hands a record to Kafka. The partition is chosen here (see module docs). Returns a
    /// future of its delivery report, or why it was not handed over (nothing written).
    pub fn send(&self, record: OutRecord) -> Result<DeliveryFuture, SendError> {
        self.send_with(record, SendOptions::default())
            .map_err(|refused| refused.0)
    }

    /// Hands a record over as `options` say; a refused record comes back with why.
    pub fn send_with(
        &self,
        record: OutRecord,
        options: SendOptions,
    ) -> Result<DeliveryFuture, Refused> {
        self.shared.send(record, options)
    }

    /// Sets who hears of the deliveries of records sent with [`SendOptions::observe`] (once;
    /// false if one was set already).
    pub fn set_observer(&self, observer: Arc<dyn DeliveryObserver>) -> bool {
        self.shared.observer.set(observer).is_ok()
    }

    /// [`Producer::send`] that hands a refused record back with why, so that a caller with
    /// somewhere else to put it need not keep a copy of every record it sends.
    pub fn send_or_return(&self, record: OutRecord) -> Result<DeliveryFuture, Refused> {
        self.send_with(record, SendOptions::default())
    }

    /// The number of partitions of `topic` (from cached metadata; fetched on first use).
    pub fn partitions(&self, topic: &str) -> Result<i32, SendError> {
        self.shared.partitions(topic)
    }

    /// Tells the producer a topic's partition count known from elsewhere (configuration, or a
    /// previous run), so that sending to it never waits for metadata; leaders are fetched in
    /// the background.
    pub fn seed_partitions(&self, topic: &str, partitions: i32) {
        let mut meta = self.shared.meta.lock();
        meta.entry(topic.to_string()).or_insert(TopicMeta {
            partitions,
            fetched: Instant::now() - self.shared.opts.metadata_ttl,
        });
    }

    /// Whether `topic`/`partition` is healthy.
    pub fn is_healthy(&self, topic: &str, partition: i32) -> bool {
        self.shared.health.lock().is_healthy(&(topic, partition))
    }

    /// Whether `topic`/`partition` has been healthy for at least `settle`.
    pub fn healthy_for(&self, topic: &str, partition: i32, settle: Duration) -> bool {
        self.shared.health.lock().healthy_for(
            &TopicPartition::new(topic, partition),
            settle,
            Instant::now(),
        )
    }

    /// The longest time a partition with records in flight has gone without progress.
    pub fn longest_stall(&self) -> Option<Duration> {
        self.shared.health.lock().longest_stall(Instant::now())
    }

    /// Whether some broker looks reachable: false only when every known partition is
    /// unhealthy (and at least one is known).
    pub fn any_broker_reachable(&self) -> bool {
        let (known, unhealthy) = self.shared.health.lock().known_and_unhealthy();
        if known == 0 {
            // Nothing known from metadata: unreachable if fetching it failed lately.
            let misses = self.shared.meta_misses.lock();
            return !misses
                .values()
                .any(|t| t.elapsed() < Duration::from_secs(10));
        }
        unhealthy < known
    }

    /// Every unhealthy partition, why, and since when.
    pub fn unhealthy(&self) -> Vec<(TopicPartition, Reason, Instant)> {
        self.shared.health.lock().unhealthy()
    }

    /// Health changes since the last call (for logs and metrics).
    pub fn take_health_events(&self) -> Vec<HealthEvent> {
        std::mem::take(&mut *self.shared.events.lock())
    }

    /// Marks a partition unhealthy (for example from an external signal) and cuts the session
    /// if records are outstanding for it.
    pub fn mark_unhealthy(&self, topic: &str, partition: i32, why: &str) {
        let tp = TopicPartition::new(topic, partition);
        let outstanding = {
            let mut h = self.shared.health.lock();
            let now = Instant::now();
            h.mark(&tp, Reason::Forced(why.to_string()), now);
            // Its leader is the one not answering: its other partitions go with it. With no
            // leader known (no metadata since start), the whole topic does.
            match h.leader(&tp) {
                Some(leader) => h.mark_leader(
                    leader,
                    &format!("leader broker {leader} failed {tp}: {why}"),
                    now,
                ),
                None => {
                    let n = self
                        .shared
                        .meta
                        .lock()
                        .get(topic)
                        .map_or(0, |m| m.partitions);
                    for p in 0..n {
                        let other = TopicPartition::new(topic, p);
                        let reason = Reason::Forced(format!("no leader known; {tp} failed: {why}"));
                        h.mark(&other, reason, now);
                    }
                }
            }
            h.outstanding(&tp)
        };
        self.shared.collect_events();
        if outstanding > 0 {
            self.cut_unless_recent(&format!("{tp} marked unhealthy: {why}"));
        }
    }

    /// Cuts the session unless one was cut moments ago (a fresh session holds none of the
    /// records a burst of such requests is about).
    pub fn cut_unless_recent(&self, reason: &str) {
        if self.shared.last_cut.lock().elapsed() >= Duration::from_millis(250) {
            self.cut(reason);
        }
    }

    /// Hands a possibly persisted keyless record that waits for its tail check back to its
    /// caller now, as `PossiblyPersisted` (with its partition and the last offset known
    /// delivered before it), rather than when the check can run or `resolve_timeout` ends. For
    /// a caller that can keep the record durably and check the tail itself before resending
    /// it (a spool). Returns whether the record was waiting for its check.
    pub fn hand_back_unresolved(&self, fut: &DeliveryFuture) -> bool {
        let pending = {
            let mut unresolved = self.shared.unresolved.lock();
            let at = unresolved.iter().position(|p| p.reply.is_for(&fut.waiter));
            at.map(|i| unresolved.remove(i))
        };
        match pending {
            Some(p) => {
                self.shared
                    .give_up_resolving(p, "handed back before its tail check");
                true
            }
            None => false,
        }
    }

    /// Ends the current session now: every record in librdkafka gets a definite outcome, and a
    /// fresh producer takes over.
    pub fn cut(&self, reason: &str) {
        self.shared.cut(reason);
    }

    /// What the producer did so far.
    pub fn counters(&self) -> ProducerCounters {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ProducerCounters {
            sent: get(&c.sent),
            delivered: get(&c.delivered),
            not_persisted: get(&c.not_persisted),
            possibly_persisted: get(&c.possibly_persisted),
            permanent: get(&c.permanent),
            dead_lettered: get(&c.dead_lettered),
            replaced: get(&c.replaced),
            resolved_found: get(&c.resolved_found),
            cuts: get(&c.cuts),
            failovers: get(&c.failovers),
        }
    }

    /// Dead letters written by this process, per reason.
    pub fn dead_letter_counts(&self) -> std::collections::BTreeMap<String, u64> {
        self.shared
            .dead_log
            .as_ref()
            .map(DeadLetterLog::counts)
            .unwrap_or_default()
    }

    /// Records handed over and not yet reported.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight_records.load(Ordering::Relaxed)
    }

    /// Whether a drain may hand over another record. Drains (the spool's forwarders) may fill
    /// at most half of the in-flight limits, records and bytes, so records sent live always
    /// find room: a large backlog draining after an outage does not turn live traffic away.
    pub fn has_room_for_drain(&self) -> bool {
        let opts = &self.shared.opts;
        self.in_flight() < (opts.max_in_flight_records / 2).max(1)
            && self.shared.in_flight_bytes.load(Ordering::Relaxed)
                < (opts.max_in_flight_bytes / 2).max(1)
    }

    /// Waits up to `timeout` for every record handed over to be reported.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.in_flight() > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            if let Some(s) = self.shared.session.read().clone() {
                let _ = s.producer.flush(Duration::from_millis(50));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// Stops accepting records, waits up to `timeout` for outstanding ones, then cuts whatever
    /// is left (so each gets an outcome) and stops the threads.
    pub fn close(self, timeout: Duration) {
        self.shutdown(timeout);
    }

    /// [`Producer::close`] through a shared reference (later calls do nothing).
    pub fn shutdown(&self, timeout: Duration) {
        if self.shared.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        self.flush(timeout);
        let last = self.shared.session.write().take();
        if let Some(session) = last {
            handlers::drain_and_drop(session, self.shared.retire_patience());
        }
        self.shared.wake();
        let threads: Vec<JoinHandle<()>> = self.threads.lock().drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
        // Anything left waiting for a re-placement or a tail check gets its outcome now.
        self.shared.drain_on_close();
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.shutdown(Duration::from_secs(1));
    }
}

impl Producer {
    /// The librdkafka client configuration the producer was built from (for companion clients:
    /// tail readers, canaries).
    pub fn client_config(&self) -> &ClientConfig {
        &self.shared.config
    }
}
