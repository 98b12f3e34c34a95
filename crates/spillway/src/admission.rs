//! Admission: from `send(record)` to the path the record takes (DESIGN § The path of one
//! record): validate, route, shed by priority when degraded, refuse when full, choose the
//! partition, then spool, lane, or direct, per the route's mode.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use spillway_spool::StreamName;
use tokio::sync::oneshot;

use crate::api::{Accepted, Priority, Record, RejectReason, Rejected};
use crate::core::{Core, jittered};
use crate::direct::{accepted, observed};
use crate::envelope::Envelope;
use crate::health::TopicPartition;
use crate::lane::{Lane, Submission};
use crate::metrics::Counted;
use crate::partitioner::partition_for_key;
use crate::producer::{Outcome, SendError};
use crate::record::OutRecord;
use crate::route::{FailurePolicy, Mode, Route, valid_topic};
use crate::streams::MAX_SPOOLED_TOPIC;

type Answer = BoxFuture<'static, Result<Accepted, Rejected>>;

impl Core {
    /// Decides, now, what happens to `record`; the returned future carries the answer.
    pub(crate) fn admit(self: &Arc<Self>, record: Record) -> Result<Answer, Rejected> {
        if self.is_stopping() {
            return Err(
                Rejected::new(RejectReason::ShuttingDown, "Spillway is shutting down")
                    .retry_after(Duration::from_secs(5)),
            );
        }
        if !valid_topic(&record.topic) {
            return Err(Rejected::new(
                RejectReason::Invalid,
                format!("invalid topic name {:?}", record.topic),
            ));
        }
        if record.partition.is_some_and(|p| p < 0) {
            return Err(Rejected::new(
                RejectReason::Invalid,
                "partition must not be negative",
            ));
        }
        let (ri, route) = self.routes.lookup(&record.topic);
        if route.mode.spools() && record.topic.len() > MAX_SPOOLED_TOPIC {
            return Err(Rejected::new(
                RejectReason::Invalid,
                format!("topics of spooling routes are limited to {MAX_SPOOLED_TOPIC} characters"),
            ));
        }
        let priority = record.priority.unwrap_or(route.default_priority);
        self.shed(ri, route, priority, &record.topic)?;
        let out = OutRecord {
            topic: record.topic,
            key: record.key,
            value: record.value,
            headers: record.headers,
            partition: record.partition,
            timestamp_ms: record.timestamp_ms,
            id: self.ids.next_id(),
        };
        match route.mode {
            Mode::SpoolFirst => {
                let partition = self.partition_of(&out)?;
                let stream = match partition {
                    Some(p) => self.stream_names.partition(&out.topic, p),
                    None => self.stream_names.keyless(&out.topic),
                };
                let envelope = Envelope {
                    record: out,
                    priority,
                    partition,
                    possibly_persisted: None,
                };
                Ok(self.spool_now(stream, envelope))
            }
            Mode::Failover | Mode::SpoolOnFailure => {
                if out.is_ordered() {
                    let Some(p) = self.partition_of(&out)? else {
                        unreachable!("ordered records have a partition")
                    };
                    Ok(self.through_lane(p, ri, out, priority))
                } else {
                    Ok(self.keyless(ri, out, priority))
                }
            }
            Mode::Direct => Ok(self.direct(ri, route, out)),
        }
    }

    /// Rejects when full, and sheds low priorities when degraded.
    fn shed(
        &self,
        ri: usize,
        route: &Route,
        priority: Priority,
        topic: &str,
    ) -> Result<(), Rejected> {
        let u = self.usage();
        let count = |reason: &str| {
            let labels = vec![
                ("route", route.topic.clone()),
                ("priority", priority.as_str().to_string()),
                ("reason", reason.to_string()),
            ];
            self.metrics.sheds.get_or_create(&labels).inc();
            self.metrics.record(topic, Counted::Shed);
        };
        if route.mode.spools() && u.capacity > 0 && u.used >= u.capacity {
            count("full");
            return Err(
                Rejected::new(RejectReason::Full, "the spool is at capacity")
                    .retry_after(jittered(Duration::from_secs(10))),
            );
        }
        let high = u.capacity > 0
            && (u.used as f64) >= self.config.spool.high_watermark * u.capacity as f64;
        let degraded = !self.breaker_closed(ri) || (route.mode.spools() && high);
        if degraded && priority < route.shed_below {
            count("degraded");
            let why = if high {
                "spool above its high watermark"
            } else {
                "Kafka unavailable (breaker open)"
            };
            return Err(Rejected::new(
                RejectReason::Shed,
                format!("{why}; {priority} records are shed"),
            )
            .retry_after(jittered(Duration::from_secs(5))));
        }
        Ok(())
    }

    /// The partition of an ordered record (explicit, or its key's); `None` for keyless ones.
    fn partition_of(&self, out: &OutRecord) -> Result<Option<i32>, Rejected> {
        if let Some(p) = out.partition {
            if let Some(n) = self.partitions.lock().get(&out.topic).copied() {
                if p >= n {
                    return Err(Rejected::new(
                        RejectReason::Invalid,
                        format!(
                            "topic {} has {n} partitions; there is no partition {p}",
                            out.topic
                        ),
                    ));
                }
            }
            return Ok(Some(p));
        }
        if let Some(key) = &out.key {
            let n = self.partition_count(&out.topic)?;
            return Ok(Some(partition_for_key(key, n)));
        }
        Ok(None)
    }

    fn spool_now(self: &Arc<Self>, stream: StreamName, envelope: Envelope) -> Answer {
        let fut = self.append(&stream, &envelope);
        let core = self.clone();
        async move {
            let result = fut.await;
            core.on_appended(&stream, &envelope, result)
        }
        .boxed()
    }

    fn through_lane(
        self: &Arc<Self>,
        partition: i32,
        route: usize,
        record: OutRecord,
        priority: Priority,
    ) -> Answer {
        let stream = self.stream_names.partition(&record.topic, partition);
        let lane = {
            let mut lanes = self.lanes.lock();
            match lanes.get(&stream) {
                Some(lane) => lane.clone(),
                None => {
                    let tp = TopicPartition::new(record.topic.as_str(), partition);
                    let lane = Arc::new(Lane::start(self, tp, stream.clone(), route));
                    lanes.insert(stream, lane.clone());
                    lane
                }
            }
        };
        let (reply, rx) = oneshot::channel();
        if !lane.submit(Submission {
            record,
            priority,
            reply,
        }) {
            return futures::future::ready(Err(lost())).boxed();
        }
        async move { rx.await.unwrap_or_else(|_| Err(lost())) }.boxed()
    }

    /// Keyless records need no order: straight to Kafka when the breaker allows (the producer
    /// places them on healthy partitions and re-places failures); into the topic's keyless
    /// stream otherwise, or when Kafka could not take them.
    fn keyless(self: &Arc<Self>, route: usize, record: OutRecord, priority: Priority) -> Answer {
        // The stream is named only for a record that goes there (most go straight to Kafka).
        let spool =
            move |core: &Arc<Core>, record: OutRecord, attempt: Option<(i32, Option<i64>)>| {
                let stream = core.stream_names.keyless(&record.topic);
                let envelope = Envelope {
                    record,
                    priority,
                    partition: attempt.map(|(p, _)| p),
                    possibly_persisted: attempt.map(|(_, known)| known),
                };
                core.spool_now(stream, envelope)
            };
        if !self.route_open_for_direct(route) {
            return spool(self, record, None);
        }
        let sent = self.producer.send_with(record, observed(route));
        let core = self.clone();
        async move {
            let delivery = match sent {
                Ok(mut fut) => {
                    // Bounded wait, as in the lanes: then the session is cut and the record
                    // comes back (re-placed, or for the spool). A record waiting for its tail
                    // check gains nothing from a cut (and cuts every few seconds would purge
                    // every healthy partition's records): it is taken back instead, and
                    // spooled with its mark; the forwarder checks the tail before resending.
                    // The check waits for its partition to recover, which can take as long as
                    // the outage: the client must not.
                    let patience = core.config.health.stall_after * 2;
                    loop {
                        match tokio::time::timeout(patience, &mut fut).await {
                            Ok(d) => break d,
                            Err(_) if fut.in_librdkafka() => core
                                .producer
                                .cut_unless_recent("a keyless record waited too long on Kafka"),
                            Err(_) => {
                                core.producer.hand_back_unresolved(&fut);
                            }
                        }
                    }
                }
                Err(refused) => return spool(&core, refused.1, None).await,
            };
            if let Outcome::Delivered { partition, offset } = delivery.outcome {
                return Ok(accepted(&delivery.record, partition, offset));
            }
            let record = Arc::unwrap_or_clone(delivery.record);
            match delivery.outcome {
                Outcome::Delivered { .. } => unreachable!("handled above"),
                Outcome::Permanent {
                    error,
                    dead_lettered,
                    ..
                } => {
                    core.on_dead_lettered(&record, &error.reason(), dead_lettered);
                    Err(Rejected::new(RejectReason::Permanent, error.to_string()))
                }
                Outcome::NotPersisted { error, .. } => {
                    core.breaker_outcome(route, false, delivery.sent_at);
                    core.count_delivery_error(&record.topic, &error);
                    spool(&core, record, None).await
                }
                Outcome::PossiblyPersisted {
                    partition,
                    error,
                    known_before,
                } => {
                    core.breaker_outcome(route, false, delivery.sent_at);
                    core.count_delivery_error(&record.topic, &error);
                    spool(&core, record, Some((partition, known_before))).await
                }
            }
        }
        .boxed()
    }

    /// `direct` routes: Kafka or nothing.
    fn direct(self: &Arc<Self>, route_index: usize, route: &Route, record: OutRecord) -> Answer {
        let core = self.clone();
        let (policy, block_for) = (route.on_failure, route.block_for);
        async move {
            let refuse = |core: &Core, topic: &str, why: String| -> Rejected {
                match policy {
                    FailurePolicy::Drop => {
                        core.metrics.record(topic, Counted::Dropped);
                        tracing::debug!(%topic, "dropped: {why}");
                        Rejected::new(RejectReason::Dropped, why)
                    }
                    FailurePolicy::Backpressure => {
                        core.metrics.record(topic, Counted::Rejected);
                        Rejected::new(RejectReason::Unavailable, why)
                            .retry_after(jittered(Duration::from_secs(2)))
                    }
                }
            };
            let until = Instant::now() + block_for;
            while !core.route_open_for_direct(route_index) {
                if policy == FailurePolicy::Drop || Instant::now() >= until {
                    return Err(refuse(
                        &core,
                        &record.topic,
                        "Kafka unavailable (breaker open)".into(),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let delivery = match core.producer.send_with(record, observed(route_index)) {
                Ok(fut) => fut.await,
                Err(refused) => {
                    let (e, record) = *refused;
                    return Err(match e {
                        SendError::NoSuchPartition { .. } => {
                            Rejected::new(RejectReason::Invalid, "no such partition")
                        }
                        SendError::Backpressure(why) => {
                            core.metrics.record(&record.topic, Counted::Rejected);
                            Rejected::new(RejectReason::Backpressure, why)
                                .retry_after(Duration::from_secs(1))
                        }
                        e => refuse(&core, &record.topic, e.to_string()),
                    });
                }
            };
            let record = &delivery.record;
            match delivery.outcome {
                Outcome::Delivered { partition, offset } => Ok(accepted(record, partition, offset)),
                Outcome::Permanent {
                    error,
                    dead_lettered,
                    ..
                } => {
                    core.on_dead_lettered(record, &error.reason(), dead_lettered);
                    Err(Rejected::new(RejectReason::Permanent, error.to_string()))
                }
                Outcome::NotPersisted { error, .. } | Outcome::PossiblyPersisted { error, .. } => {
                    core.breaker_outcome(route_index, false, delivery.sent_at);
                    core.count_delivery_error(&record.topic, &error);
                    Err(refuse(&core, &record.topic, error.to_string()))
                }
            }
        }
        .boxed()
    }

    /// Whether a route may send straight to Kafka: its breaker is closed (`spool_on_failure`
    /// routes ignore the breaker: they fail over per record).
    pub(crate) fn route_open_for_direct(&self, route: usize) -> bool {
        let mode = self.routes.all().nth(route).map(|r| r.mode);
        mode == Some(Mode::SpoolOnFailure) || self.breaker_closed(route)
    }
}

/// The answer channel closed without an answer: only when Spillway stops mid-request. Nothing
/// was confirmed, so the client must keep the record.
fn lost() -> Rejected {
    Rejected::new(
        RejectReason::ShuttingDown,
        "Spillway stopped before answering",
    )
    .retry_after(Duration::from_secs(5))
}
