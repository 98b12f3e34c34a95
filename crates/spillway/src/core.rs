//! The engine's shared state and the bookkeeping every path uses: appends (with their backlog
//! count and forwarder), receipts, metrics, breakers.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use spillway_spool::{AppendError, Seq, Spool, StreamName};
use tokio::sync::{Notify, watch};

use crate::api::{Accepted, ReceiptStatus, RejectReason, Rejected};
use crate::breaker::{Breaker, BreakerState, Transition};
use crate::envelope::Envelope;
use crate::health::FastMap;
use crate::lane::{Lane, pending_receipt, record_in};
use crate::metrics::{Counted, Metrics};
use crate::producer::{DeliveryError, Producer};
use crate::receipts::Receipts;
use crate::record::{IdGenerator, OutRecord};
use crate::route::Routes;
use crate::settings::SpillwayConfig;
use crate::streams::{StreamKind, StreamNames};
use crate::tail::TailReader;

/// Per stream: records appended and not yet delivered (or dead-lettered), and a wake-up for
/// its forwarder.
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    pub unresolved: AtomicU64,
    pub notify: Notify,
}

/// Cached spool usage, refreshed by the supervisor.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Usage {
    pub used: u64,
    pub capacity: u64,
}

pub(crate) struct Core {
    pub config: SpillwayConfig,
    pub producer: Producer,
    pub spool: Spool,
    pub stream_names: StreamNames,
    pub ids: IdGenerator,
    pub routes: Routes,
    pub breakers: Arc<[Mutex<Breaker>]>,
    pub lanes: Mutex<FastMap<StreamName, Arc<Lane>>>,
    pub backlogs: Mutex<FastMap<StreamName, Arc<Backlog>>>,
    pub forwarders: Mutex<FastMap<StreamName, tokio::task::JoinHandle<()>>>,
    pub receipts: Arc<Receipts>,
    pub metrics: Metrics,
    pub tail: Mutex<TailReader>,
    pub partitions: Mutex<HashMap<String, i32>>,
    pub partition_misses: Mutex<HashMap<String, Instant>>,
    pub partitions_file: PathBuf,
    pub usage: Mutex<Usage>,
    pub replay: watch::Sender<u64>,
    pub stopping: AtomicBool,
    pub shutdown: watch::Sender<bool>,
    pub drain_limiter: Option<crate::limiter::RateLimiter>,
    /// Streams that held records when the spool was opened.
    pub recovered: std::collections::HashSet<StreamName>,
    pub canary: crate::canary::Canary,
    /// What the spool's recovery did at open.
    pub recovery: spillway_spool::RecoveryReport,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("spool", &self.spool.dir())
            .finish_non_exhaustive()
    }
}

impl Core {
    pub(crate) fn backlog(&self, stream: &StreamName) -> Arc<Backlog> {
        let mut backlogs = self.backlogs.lock();
        if let Some(b) = backlogs.get(stream) {
            return b.clone();
        }
        backlogs.entry(stream.clone()).or_default().clone()
    }

    pub(crate) fn breaker_closed(&self, route: usize) -> bool {
        self.breakers[route].lock().is_closed()
    }

    pub(crate) fn breaker_state(&self, route: usize) -> BreakerState {
        self.breakers[route].lock().state()
    }

    /// One outcome of a record sent straight to Kafka (last handed over at `sent_at`), for the
    /// route's breaker.
    pub(crate) fn breaker_outcome(&self, route: usize, ok: bool, sent_at: Instant) {
        let t = self.breakers[route]
            .lock()
            .record(ok, sent_at, Instant::now());
        if let Some(t) = t {
            self.on_transition(route, &t);
        }
    }

    pub(crate) fn on_transition(&self, route: usize, t: &Transition) {
        let name = self
            .routes
            .all()
            .nth(route)
            .map_or("?", |r| r.topic.as_str())
            .to_string();
        match t.to {
            BreakerState::Open => tracing::warn!(route = %name, "breaker open: {}", t.reason),
            _ => tracing::info!(route = %name, "breaker {}: {}", t.to.as_str(), t.reason),
        }
        let labels = vec![("route", name.clone()), ("to", t.to.as_str().to_string())];
        self.metrics
            .breaker_transitions
            .get_or_create(&labels)
            .inc();
        self.metrics
            .breaker_state
            .get_or_create(&vec![("route", name.clone())])
            .set(t.to.gauge());
        if t.to == BreakerState::Open {
            self.metrics
                .failovers
                .get_or_create(&vec![("topic", name), ("kind", "breaker".into())])
                .inc();
            // Records in flight get their outcomes now and follow their lanes into the spool.
            self.producer.cut(&format!("breaker opened: {}", t.reason));
        }
        if t.to == BreakerState::Closed {
            for backlog in self.backlogs.lock().values() {
                backlog.notify.notify_one();
            }
        }
    }

    /// Appends an envelope to a stream: counts it in the stream's backlog at once (so its lane
    /// will not go direct past it) and makes sure a forwarder drains the stream.
    pub(crate) fn append(
        self: &Arc<Self>,
        stream: &StreamName,
        envelope: &Envelope,
    ) -> BoxFuture<'static, Result<Seq, AppendError>> {
        self.backlog(stream)
            .unresolved
            .fetch_add(1, Ordering::AcqRel);
        self.ensure_forwarder(stream);
        // Queued now, so that appends are in call order (and a dropped answer does not leave
        // the backlog counting a record that never reaches the spool).
        self.spool
            .append_detached(stream, record_in(envelope))
            .boxed()
    }

    /// Finishes an append: receipt on success; on failure the record was not accepted, and
    /// leaves the backlog count. Returns the client's answer.
    pub(crate) fn on_appended(
        &self,
        stream: &StreamName,
        envelope: &Envelope,
        result: Result<Seq, AppendError>,
    ) -> Result<Accepted, Rejected> {
        let topic = &envelope.record.topic;
        match result {
            Ok(_) => {
                self.receipts
                    .set(&envelope.record.id, pending_receipt(envelope));
                self.metrics.record(topic, Counted::Spooled);
                Ok(Accepted::Spooled {
                    id: envelope.record.id.clone(),
                    partition: envelope.partition,
                })
            }
            Err(e) => {
                let backlog = self.backlog(stream);
                backlog.unresolved.fetch_sub(1, Ordering::AcqRel);
                self.metrics.record(topic, Counted::Rejected);
                Err(append_rejection(&e))
            }
        }
    }

    pub(crate) fn on_dead_lettered(&self, record: &OutRecord, reason: &str, logged: bool) {
        self.metrics.record(&record.topic, Counted::DeadLettered);
        let labels = vec![
            ("topic", record.topic.clone()),
            ("reason", reason.to_string()),
        ];
        self.metrics.dead_letters.get_or_create(&labels).inc();
        if !logged {
            tracing::error!(id = %record.id, "permanent refusal could not be written to the dead-letter log");
        }
        self.receipts.set(
            &record.id,
            ReceiptStatus::DeadLettered {
                topic: record.topic.clone(),
                reason: reason.to_string(),
            },
        );
    }

    pub(crate) fn count_delivery_error(&self, topic: &str, error: &DeliveryError) {
        let class = match error.class {
            crate::ErrorClass::Transient => "transient",
            crate::ErrorClass::Permanent => "permanent",
            crate::ErrorClass::Fatal => "fatal",
        };
        let labels = vec![
            ("topic", topic.to_string()),
            ("class", class.to_string()),
            ("code", error.reason()),
        ];
        self.metrics.delivery_errors.get_or_create(&labels).inc();
    }

    /// Starts the stream's forwarder if it does not run.
    pub(crate) fn ensure_forwarder(self: &Arc<Self>, stream: &StreamName) {
        let mut forwarders = self.forwarders.lock();
        if forwarders.get(stream).is_some_and(|h| !h.is_finished()) {
            return;
        }
        let Some(kind) = StreamKind::parse(stream.as_str()) else {
            tracing::warn!(%stream, "not a stream name of ours; left alone");
            return;
        };
        let handle = tokio::spawn(crate::forwarder::run(self.clone(), kind, stream.clone()));
        forwarders.insert(stream.clone(), handle);
    }

    /// The partition count of `topic`: cached, else from metadata (blocking, bounded).
    pub(crate) fn partition_count(&self, topic: &str) -> Result<i32, Rejected> {
        if let Some(n) = self.partitions.lock().get(topic) {
            return Ok(*n);
        }
        let unavailable = |why: String| {
            Rejected::new(
                RejectReason::Unavailable,
                format!("partition count of {topic} unknown (Kafka unreachable since it was first used): {why}"),
            )
            .retry_after(Duration::from_secs(5))
        };
        // A recent failure is not retried for a few seconds: every record would block on it.
        if let Some(when) = self.partition_misses.lock().get(topic) {
            if when.elapsed() < Duration::from_secs(5) {
                return Err(unavailable("metadata fetch failed moments ago".into()));
            }
        }
        let fetch = || self.producer.partitions(topic);
        let fetched = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(fetch)
            }
            _ => fetch(),
        };
        match fetched {
            Ok(n) => {
                self.partitions.lock().insert(topic.to_string(), n);
                self.producer.seed_partitions(topic, n);
                self.save_partitions();
                Ok(n)
            }
            Err(e) => {
                self.partition_misses
                    .lock()
                    .insert(topic.to_string(), Instant::now());
                Err(unavailable(e.to_string()))
            }
        }
    }

    /// Keeps partition counts across restarts, so keyed records can be placed during an outage
    /// that began before this process started.
    fn save_partitions(&self) {
        let map = self.partitions.lock().clone();
        let tmp = self.partitions_file.with_extension("tmp");
        let result = serde_json::to_vec_pretty(&map)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, &self.partitions_file));
        if let Err(e) = result {
            tracing::warn!("saving partition counts: {e}");
        }
    }

    pub(crate) fn usage(&self) -> Usage {
        *self.usage.lock()
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }
}

/// What a failed append means for the client.
pub(crate) fn append_rejection(e: &AppendError) -> Rejected {
    match e {
        AppendError::Full { .. } | AppendError::NoSpace { .. } => {
            Rejected::new(RejectReason::Full, e.to_string()).retry_after(Duration::from_secs(10))
        }
        AppendError::Overloaded { .. } => Rejected::new(RejectReason::Backpressure, e.to_string())
            .retry_after(Duration::from_secs(1)),
        AppendError::RecordTooLarge { .. } => Rejected::new(RejectReason::Invalid, e.to_string()),
        AppendError::Closed => Rejected::new(RejectReason::ShuttingDown, e.to_string()),
        _ => Rejected::new(RejectReason::Unavailable, e.to_string())
            .retry_after(Duration::from_secs(2)),
    }
}

/// A `Retry-After` with ±50 % jitter around `base`, so shed clients do not return together.
pub(crate) fn jittered(base: Duration) -> Duration {
    let factor = 0.5 + rand::random::<f64>();
    base.mul_f64(factor).max(Duration::from_secs(1))
}
