//! `Spillway`: the library's front door (issue "Delivery modes"). See the crate documentation
//! for the design; this module wires the pieces together and runs the supervisor (breakers,
//! canary, gauges).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use serde::Serialize;
use spillway_spool::{FsyncPolicy, OpenError, Spool, SpoolConfig, SyncObserver};
use tokio::sync::watch;

use crate::api::{Accepted, ReceiptStatus, Record, Rejected};
use crate::breaker::{Breaker, BreakerState};
use crate::canary::Canary;
use crate::core::{Backlog, Core, Usage};
use crate::deadletter::DeadLetterError;
use crate::direct::DirectDeliveries;
use crate::health::FastMap;
use crate::limiter::RateLimiter;
use crate::metrics::Metrics;
use crate::producer::{
    Producer, ProducerCounters, ProducerOptions, StartError as ProducerStartError,
};
use crate::receipts::Receipts;
use crate::record::{IdGenerator, IdentityError, SpillwayId};
use crate::route::Routes;
use crate::settings::{Fsync, SpillwayConfig};
use crate::streams::StreamKind;
use crate::tail::TailReader;

/// Why Spillway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("instance identity: {0}")]
    Identity(#[from] IdentityError),
    #[error("opening the spool: {0}")]
    Spool(#[from] OpenError),
    #[error("starting the Kafka producer: {0}")]
    Producer(#[from] ProducerStartError),
    #[error("dead-letter log: {0}")]
    DeadLetters(#[from] DeadLetterError),
    #[error("creating a Kafka client: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// What `status()` reports (served as `/status`).
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub instance: String,
    pub ready: bool,
    pub routes: Vec<RouteStatus>,
    pub unhealthy_partitions: Vec<PartitionStatus>,
    pub spool: SpoolStatus,
    pub producer: CountersStatus,
    pub dead_letters: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteStatus {
    pub topic: String,
    pub mode: &'static str,
    pub breaker: BreakerState,
    pub breaker_for_ms: u64,
    pub last_open_reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionStatus {
    pub topic: String,
    pub partition: i32,
    pub reason: String,
    pub for_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SpoolStatus {
    pub dir: String,
    pub used_bytes: u64,
    pub capacity_bytes: u64,
    pub records: u64,
    pub streams: Vec<StreamStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StreamStatus {
    pub name: String,
    pub records: u64,
    pub bytes: u64,
    pub oldest_record_age_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CountersStatus {
    pub sent: u64,
    pub delivered: u64,
    pub not_persisted: u64,
    pub possibly_persisted: u64,
    pub dead_lettered: u64,
    pub session_cuts: u64,
    pub partition_failovers: u64,
}

impl From<ProducerCounters> for CountersStatus {
    fn from(c: ProducerCounters) -> Self {
        Self {
            sent: c.sent,
            delivered: c.delivered,
            not_persisted: c.not_persisted,
            possibly_persisted: c.possibly_persisted,
            dead_lettered: c.dead_lettered,
            session_cuts: c.cuts,
            partition_failovers: c.failovers,
        }
    }
}

/// Spillway, embedded. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Spillway {
    core: Arc<Core>,
}

impl Spillway {
    #[cfg(test)]
    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// Opens the spool (recovering it), starts the Kafka producer, the forwarders of whatever
    /// the spool holds, and the supervisor. Call from within a multi-threaded tokio runtime.
    pub fn start(config: SpillwayConfig) -> Result<Spillway, StartError> {
        let dir = config.spool.dir.clone();
        std::fs::create_dir_all(&dir)
            .map_err(|e| StartError::Config(format!("spool directory {}: {e}", dir.display())))?;
        let metrics = Metrics::default();
        // The spool's lock first: a second process must not touch the identity file either.
        let (spool, report) = Spool::open(&dir, spool_config(&config, &metrics))?;
        let ids = IdGenerator::open(&dir)?;
        for action in &report.actions {
            tracing::warn!("spool recovery: {action:?}");
        }
        let mut popts = ProducerOptions::new(config.kafka.clone());
        popts.health = config.health.config();
        popts.probe_interval = config.health.probe_interval;
        popts.probe_timeout = config.health.probe_timeout;
        popts.max_in_flight_bytes = config.max_in_flight_bytes;
        popts.resolve_settle = config.drain.settle;
        popts.max_tail_scan = config.drain.max_tail_scan;
        popts.dead_letter_log = Some(dir.join("dead-letters.jsonl"));
        popts.dead_letter_topic = config.dead_letter_topic.clone();
        popts.partial_tail_checks = metrics.tail_partial.clone();
        let producer = Producer::start(popts)?;
        let tail = TailReader::new(producer.client_config(), config.drain.max_tail_scan)?;
        let routes = Routes::new(config.routes.clone(), config.default_route.clone());
        let now = Instant::now();
        let breakers = routes
            .all()
            .map(|_| Mutex::new(Breaker::new(config.breaker.config(), now)))
            .collect();
        let partitions_file = dir.join("partitions.json");
        let mut partitions: HashMap<String, i32> = std::fs::read(&partitions_file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        for t in &config.topics {
            if let Some(n) = t.partitions {
                partitions.insert(t.name.clone(), n);
            }
        }
        let stats = spool.stats();
        let mut backlogs = FastMap::default();
        let mut recovered = HashSet::new();
        for s in &stats.streams {
            if s.records == 0 {
                continue;
            }
            let Ok(name) = spillway_spool::StreamName::new(&s.name) else {
                continue;
            };
            if StreamKind::parse(name.as_str()).is_none() {
                tracing::warn!(stream = %name, "a stream not named by Spillway: left alone");
                continue;
            }
            let b = Backlog::default();
            b.unresolved.store(s.records, Ordering::Release);
            backlogs.insert(name.clone(), Arc::new(b));
            recovered.insert(name);
        }
        let (shutdown, _) = watch::channel(false);
        let (replay, _) = watch::channel(0u64);
        let receipts = Arc::new(Receipts::new(config.receipts, ids.instance(), ids.boot()));
        let core = Arc::new(Core {
            producer,
            ids,
            routes,
            breakers,
            lanes: Mutex::new(FastMap::default()),
            stream_names: Default::default(),
            backlogs: Mutex::new(backlogs),
            forwarders: Mutex::new(FastMap::default()),
            receipts,
            metrics,
            tail: Mutex::new(tail),
            partitions: Mutex::new(partitions),
            partition_misses: Mutex::new(HashMap::new()),
            partitions_file,
            usage: Mutex::new(Usage {
                used: stats.used_bytes,
                capacity: stats.capacity_bytes,
            }),
            replay,
            stopping: AtomicBool::new(false),
            shutdown,
            drain_limiter: config.drain.rate.map(RateLimiter::new),
            recovered: recovered.clone(),
            recovery: report.clone(),
            canary: Canary::new(
                &config_client(&config)?,
                config.canary.topic.clone(),
                config.canary.timeout,
            ),
            spool,
            config,
        });
        for (topic, n) in core.partitions.lock().iter() {
            core.producer.seed_partitions(topic, *n);
        }
        core.producer
            .set_observer(Arc::new(DirectDeliveries::new(&core)));
        for stream in &recovered {
            tracing::info!(%stream, "draining what the spool holds from before");
            core.ensure_forwarder(stream);
        }
        tokio::spawn(supervise(core.clone()));
        Ok(Spillway { core })
    }

    /// Hands a record over. Resolves to [`Accepted`] once Kafka acknowledged it or it is in
    /// the spool (durable per the fsync policy), or to [`Rejected`]. The record's place in
    /// its partition's order is fixed by this call, before the future is polled.
    pub fn send(&self, record: Record) -> BoxFuture<'static, Result<Accepted, Rejected>> {
        match self.core.admit(record) {
            Ok(fut) => fut,
            Err(rejected) => futures::future::ready(Err(rejected)).boxed(),
        }
    }

    /// Sends records in order and returns their answers in order.
    pub async fn send_batch(&self, records: Vec<Record>) -> Vec<Result<Accepted, Rejected>> {
        let futures: Vec<_> = records.into_iter().map(|r| self.send(r)).collect();
        futures::future::join_all(futures).await
    }

    /// The status of a receipt.
    pub fn receipt(&self, id: &SpillwayId) -> ReceiptStatus {
        self.core.receipts.get(id)
    }

    /// Waits up to `timeout` for a record to reach its final state, and returns its status.
    pub async fn wait_final(&self, id: &SpillwayId, timeout: Duration) -> ReceiptStatus {
        let rx = self.core.receipts.wait(id);
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(status)) => status,
            _ => self.core.receipts.get(id),
        }
    }

    /// Whether a topic may be written: configured, or in the cluster's metadata (asked once,
    /// bounded; a topic seen once stays known through outages).
    pub fn topic_known(&self, topic: &str) -> bool {
        let core = &self.core;
        core.routes.names(topic)
            || core.config.topics.iter().any(|t| t.name == topic)
            || core.partitions.lock().contains_key(topic)
            || core.partition_count(topic).is_ok()
    }

    /// Whether records can be accepted durably now (`/readyz`), and why not.
    pub fn readiness(&self) -> (bool, String) {
        let core = &self.core;
        if core.is_stopping() {
            return (false, "shutting down".into());
        }
        let u = core.usage();
        if u.capacity > 0 && u.used >= u.capacity {
            return (
                false,
                format!("spool full ({} of {} bytes)", u.used, u.capacity),
            );
        }
        (true, "spool has room".into())
    }

    /// The full picture.
    pub fn status(&self) -> Status {
        self.core.status()
    }

    /// Adds the library's metrics to a registry.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.core.metrics.register(registry);
    }

    /// The `spillway_sheds_total` family, for a front end (the gateway) that sheds too.
    pub fn shed_family(
        &self,
    ) -> prometheus_client::metrics::family::Family<
        Vec<(&'static str, String)>,
        prometheus_client::metrics::counter::Counter,
    > {
        self.core.metrics.sheds.clone()
    }

    /// For `spool_on_failure` routes without automatic replay: drain their spools now.
    pub fn replay(&self) {
        self.core.replay.send_modify(|n| *n += 1);
        for b in self.core.backlogs.lock().values() {
            b.notify.notify_one();
        }
    }

    /// Records in the spool not yet delivered.
    pub fn backlog(&self) -> u64 {
        self.core
            .backlogs
            .lock()
            .values()
            .map(|b| b.unresolved.load(Ordering::Acquire))
            .sum()
    }

    /// Waits until the spool is drained or `deadline` passes; true if drained.
    pub async fn flush(&self, deadline: Duration) -> bool {
        let until = Instant::now() + deadline;
        while self.backlog() > 0 {
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        true
    }

    /// Stops accepting records, lets records in flight finish (up to `deadline`), and stops.
    /// Undelivered records stay in the spool for the next start.
    pub async fn shutdown(&self, deadline: Duration) {
        let core = self.core.clone();
        if core.stopping.swap(true, Ordering::AcqRel) {
            return;
        }
        let _ = core.shutdown.send(true);
        let producer_wait = deadline.mul_f64(0.5);
        let c = core.clone();
        let _ = tokio::task::spawn_blocking(move || c.producer.shutdown(producer_wait)).await;
        if let Err(e) = core.spool.flush().await {
            tracing::error!("flushing the spool at shutdown: {e}");
        }
        let forwarders: Vec<_> = core.forwarders.lock().drain().map(|(_, h)| h).collect();
        for h in forwarders {
            h.abort();
        }
    }

    /// What the spool's recovery found and did when this instance opened it.
    pub fn recovery_report(&self) -> &spillway_spool::RecoveryReport {
        &self.core.recovery
    }

    /// Records found already in Kafka by tail checks (not sent again), since start.
    pub fn deduplicated(&self) -> u64 {
        self.core.metrics.dedup_found.get() + self.core.producer.counters().resolved_found
    }

    /// The directory of the spool.
    pub fn spool_dir(&self) -> &Path {
        self.core.spool.dir()
    }

    /// This instance's id (hex), as in `spillway.id` headers.
    pub fn instance(&self) -> String {
        format!("{:016x}", self.core.ids.instance())
    }
}

fn spool_config(config: &SpillwayConfig, metrics: &Metrics) -> SpoolConfig {
    let fsync = metrics.spool_fsync.clone();
    SpoolConfig {
        on_sync: Some(SyncObserver::new(move |event| {
            fsync.observe(event.duration.as_secs_f64())
        })),
        fsync: match config.spool.fsync {
            Fsync::Always => FsyncPolicy::Always,
            Fsync::Interval => FsyncPolicy::Interval(config.spool.fsync_interval),
            Fsync::Never => FsyncPolicy::Never,
        },
        capacity_bytes: config.spool.capacity_bytes,
        segment_bytes: config.spool.segment_bytes,
        ..SpoolConfig::default()
    }
}

fn config_client(config: &SpillwayConfig) -> Result<rdkafka::ClientConfig, StartError> {
    config
        .kafka
        .client_config()
        .map(|(c, _)| c)
        .map_err(|e| StartError::Config(e.to_string()))
}

/// Breakers, canary and gauges, until shutdown.
async fn supervise(core: Arc<Core>) {
    let mut shutdown = core.shutdown.subscribe();
    let mut last_gauges = Instant::now() - Duration::from_secs(10);
    let canary_busy = Arc::new(AtomicBool::new(false));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = shutdown.changed() => return,
        }
        let now = Instant::now();
        let stall = core.producer.longest_stall();
        let any = core.producer.any_broker_reachable();
        let mut want_canary = false;
        for (i, b) in core.breakers.iter().enumerate() {
            let t = {
                let mut b = b.lock();
                let t = b.observe(stall, any, now).or_else(|| {
                    if canary_busy.load(Ordering::Acquire) {
                        None
                    } else {
                        b.start_canary(now)
                    }
                });
                want_canary |= b.wants_canary();
                t
            };
            if let Some(t) = t {
                core.on_transition(i, &t);
            }
        }
        if want_canary && !canary_busy.swap(true, Ordering::AcqRel) {
            let (c, busy) = (core.clone(), canary_busy.clone());
            tokio::spawn(async move {
                let canary = c.canary.clone();
                let result = tokio::task::spawn_blocking(move || canary.check())
                    .await
                    .unwrap_or_else(|e| Err(format!("canary task: {e}")));
                if let Err(e) = &result {
                    tracing::info!("canary failed: {e}");
                }
                let now = Instant::now();
                let any = c.producer.any_broker_reachable();
                for (i, b) in c.breakers.iter().enumerate() {
                    let t = b.lock().canary_result(result.clone(), any, now);
                    if let Some(t) = t {
                        c.on_transition(i, &t);
                    }
                }
                busy.store(false, Ordering::Release);
            });
        }
        for e in core.producer.take_health_events() {
            if e.unhealthy.is_some() {
                let labels = vec![
                    ("topic", e.partition.topic.clone()),
                    ("kind", "partition".to_string()),
                ];
                core.metrics.failovers.get_or_create(&labels).inc();
            } else {
                // A partition came back: its lanes and forwarders may move.
                for b in core.backlogs.lock().values() {
                    b.notify.notify_one();
                }
            }
        }
        if last_gauges.elapsed() >= Duration::from_secs(1) {
            last_gauges = Instant::now();
            let c = core.clone();
            let _ = tokio::task::spawn_blocking(move || c.refresh_gauges()).await;
        }
    }
}

impl Core {
    fn refresh_gauges(&self) {
        let stats = self.spool.stats();
        *self.usage.lock() = Usage {
            used: stats.used_bytes + stats.pending_bytes,
            capacity: stats.capacity_bytes,
        };
        let m = &self.metrics;
        m.spool_bytes.set(stats.used_bytes as i64);
        m.spool_capacity_bytes.set(stats.capacity_bytes as i64);
        for s in &stats.streams {
            let labels = vec![("stream", s.name.clone())];
            m.spool_records.get_or_create(&labels).set(s.records as i64);
            let age = s.oldest_record_age_ms.map_or(0.0, |ms| ms as f64 / 1000.0);
            m.spool_oldest_age.get_or_create(&labels).set(age);
        }
        for (i, route) in self.routes.all().enumerate() {
            let state = self.breaker_state(i);
            m.breaker_state
                .get_or_create(&vec![("route", route.topic.clone())])
                .set(state.gauge());
        }
        for (tp, _, _) in self.producer.unhealthy() {
            let labels = vec![
                ("topic", tp.topic.clone()),
                ("partition", tp.partition.to_string()),
            ];
            m.partition_healthy.get_or_create(&labels).set(0);
        }
        m.inflight_bytes.set(self.producer.in_flight() as i64);
    }

    fn status(&self) -> Status {
        let stats = self.spool.stats();
        let now = Instant::now();
        let routes = self
            .routes
            .all()
            .enumerate()
            .map(|(i, r)| {
                let b = self.breakers[i].lock();
                RouteStatus {
                    topic: r.topic.clone(),
                    mode: r.mode.as_str(),
                    breaker: b.state(),
                    breaker_for_ms: now.saturating_duration_since(b.since()).as_millis() as u64,
                    last_open_reason: b.last_reason().map(ToString::to_string),
                }
            })
            .collect();
        let unhealthy_partitions = self
            .producer
            .unhealthy()
            .into_iter()
            .map(|(tp, reason, since)| PartitionStatus {
                topic: tp.topic,
                partition: tp.partition,
                reason: reason.to_string(),
                for_ms: now.saturating_duration_since(since).as_millis() as u64,
            })
            .collect();
        let u = self.usage();
        Status {
            instance: format!("{:016x}", self.ids.instance()),
            ready: !self.is_stopping() && (u.capacity == 0 || u.used < u.capacity),
            routes,
            unhealthy_partitions,
            spool: SpoolStatus {
                dir: self.spool.dir().display().to_string(),
                used_bytes: stats.used_bytes,
                capacity_bytes: stats.capacity_bytes,
                records: stats.records,
                streams: stats
                    .streams
                    .iter()
                    .filter(|s| s.records > 0)
                    .map(|s| StreamStatus {
                        name: s.name.clone(),
                        records: s.records,
                        bytes: s.bytes,
                        oldest_record_age_ms: s.oldest_record_age_ms,
                    })
                    .collect(),
            },
            producer: self.producer.counters().into(),
            dead_letters: self.producer.dead_letter_counts(),
        }
    }
}
