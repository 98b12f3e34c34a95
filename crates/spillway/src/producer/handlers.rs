//! What the producer does with each report, and how a session is cut.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use rdkafka::producer::{Producer as _, PurgeConfig};
use rdkafka::types::RDKafkaErrorCode;

use super::Shared;
use super::ffi::Persistence;
use super::outcome::{DeliveryError, Outcome, SendError};
use super::session::{Pending, Session, may_be_in_kafka};
use crate::ErrorClass;
use crate::deadletter::DeadLetter;
use crate::health::BrokerStat;

/// Transient codes that say nothing about the partition's leader.
fn blames_partition(code: RDKafkaErrorCode) -> bool {
    !matches!(
        code,
        RDKafkaErrorCode::PurgeQueue
            | RDKafkaErrorCode::PurgeInflight
            | RDKafkaErrorCode::InvalidDifferentRecord
            | RDKafkaErrorCode::QueueFull
            | RDKafkaErrorCode::BrokerDestroy
            | RDKafkaErrorCode::DestroyBroker
    )
}

impl Shared {
    /// Reports `outcome` for `pending` and releases its in-flight accounting. A delivery the
    /// sender asked to have observed reaches the observer first.
    pub(crate) fn finish(&self, pending: Pending, outcome: Outcome) {
        if let (Outcome::Delivered { partition, offset }, Some(tag)) = (&outcome, pending.observe)
            && let Some(observer) = self.observer.get()
        {
            observer.delivered(tag, &pending.record, *partition, *offset, pending.sent_at);
        }
        let counter = match &outcome {
            Outcome::Delivered { .. } => &self.counters.delivered,
            Outcome::NotPersisted { .. } => &self.counters.not_persisted,
            Outcome::PossiblyPersisted { .. } => &self.counters.possibly_persisted,
            Outcome::Permanent { .. } => &self.counters.permanent,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.release(&pending);
        pending.finish(outcome);
    }

    pub(crate) fn on_delivered(&self, pending: Pending, partition: i32, offset: i64) {
        let offset = (offset >= 0).then_some(offset);
        let key = (pending.record.topic.as_str(), pending.partition);
        self.health
            .lock()
            .on_delivered(&key, pending.session, offset, Instant::now());
        self.finish(pending, Outcome::Delivered { partition, offset });
    }

    pub(crate) fn on_failed(
        &self,
        pending: Pending,
        code: RDKafkaErrorCode,
        persisted: Persistence,
    ) {
        pending.reply.set_in_librdkafka(false);
        let error = DeliveryError::from_code(code);
        let tp = pending.tp();
        let now = Instant::now();
        tracing::debug!(id = %pending.record.id, partition = %tp, session = pending.session, ?persisted, "delivery failed: {code:?}");
        match error.class {
            ErrorClass::Transient if blames_partition(code) => {
                self.health
                    .lock()
                    .on_transient_error(&tp, &error.reason(), now);
                // A partition failing under us: cut, so no later record overtakes this one.
                self.request_cut(pending.session, format!("{tp}: {}", error.reason()));
            }
            ErrorClass::Fatal => {
                self.health.lock().on_settled(&tp, now);
                self.request_cut(pending.session, format!("fatal error {}", error.reason()));
            }
            _ => self.health.lock().on_settled(&tp, now),
        }
        if error.class == ErrorClass::Permanent {
            self.dead_queue.lock().push((pending, error));
            self.wake();
            return;
        }
        let maybe = may_be_in_kafka(persisted);
        let replaceable = pending.replaceable && self.opts.replace_keyless;
        if replaceable && !self.closed.load(Ordering::Relaxed) {
            if maybe {
                self.unresolved.lock().push(pending);
            } else if pending.attempts < self.opts.max_attempts {
                self.requeue.lock().push_back(pending);
            } else {
                let partition = Some(pending.partition);
                self.finish(pending, Outcome::NotPersisted { partition, error });
                return;
            }
            self.wake();
            return;
        }
        let partition = pending.partition;
        let outcome = if maybe {
            Outcome::PossiblyPersisted {
                partition,
                error,
                known_before: pending.known_before,
            }
        } else {
            Outcome::NotPersisted {
                partition: Some(partition),
                error,
            }
        };
        self.finish(pending, outcome);
    }

    pub(crate) fn on_broker_stats(&self, session: u64, brokers: &[BrokerStat]) {
        let needs_cut = {
            let mut health = self.health.lock();
            health.on_broker_stats(brokers, Instant::now());
            health
                .unhealthy()
                .iter()
                .any(|(tp, _, _)| health.outstanding(tp) > 0)
        };
        self.collect_events();
        if needs_cut {
            self.request_cut(
                session,
                "a broker leading partitions with records in flight is down".into(),
            );
        }
    }

    /// Asks the supervisor to cut `session` (ignored if that session is already gone).
    pub(crate) fn request_cut(&self, session: u64, reason: String) {
        let mut request = self.cut_request.lock();
        if request.is_none() {
            *request = Some((session, reason));
        }
        drop(request);
        self.wake();
    }

    /// Cuts the current session: a fresh producer takes over, the old one is purged (every
    /// record in it reports at once) and dropped.
    pub(crate) fn cut(&self, reason: &str) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        let id = self.next_session.fetch_add(1, Ordering::Relaxed);
        let fresh = match Session::start(&self.config, self.me.clone(), id) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot create a new producer session ({e}); keeping the old one");
                return;
            }
        };
        let old = self.session.write().replace(Arc::new(fresh));
        *self.last_cut.lock() = Instant::now();
        self.health.lock().on_session_start(id, Instant::now());
        self.counters.cuts.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(session = id, "producer session cut: {reason}");
        if let Some(old) = old {
            retire(old, self.retire_patience());
        }
    }

    /// How long a retired session may take to report its last records: librdkafka's own
    /// timeout backstop plus a margin.
    pub(crate) fn retire_patience(&self) -> std::time::Duration {
        self.backstop + std::time::Duration::from_secs(5)
    }

    /// Moves health changes from the tracker to the event list (and counts failovers).
    pub(crate) fn collect_events(&self) {
        let events = self.health.lock().take_events();
        if events.is_empty() {
            return;
        }
        for e in &events {
            match &e.unhealthy {
                Some(reason) => {
                    self.counters.failovers.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(partition = %e.partition, "partition unhealthy: {reason}");
                }
                None => tracing::info!(partition = %e.partition, "partition healthy again"),
            }
        }
        self.events.lock().extend(events);
    }

    /// Writes queued dead letters with one fsync, then reports them.
    pub(crate) fn flush_dead_letters(&self) {
        let batch: Vec<(Pending, DeliveryError)> = std::mem::take(&mut *self.dead_queue.lock());
        if batch.is_empty() {
            return;
        }
        let entries: Vec<DeadLetter> = batch
            .iter()
            .map(|(p, e)| DeadLetter::new(&p.record, Some(p.partition), &e.reason(), &e.message))
            .collect();
        let written = match &self.dead_log {
            Some(log) => match log.append(&entries) {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!("dead-letter log write failed: {e}");
                    false
                }
            },
            None => false,
        };
        for (pending, error) in batch {
            tracing::warn!(id = %pending.record.id, topic = %pending.record.topic, "dead letter: {error}");
            if written {
                self.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(topic) = self.opts.dead_letter_topic.clone() {
                self.send_dead_letter_copy(&pending, &topic, &error);
            }
            let partition = Some(pending.partition);
            self.finish(
                pending,
                Outcome::Permanent {
                    partition,
                    error,
                    dead_lettered: written,
                },
            );
        }
    }

    /// Best effort: a copy of the refused record to the dead-letter topic, with the reason.
    fn send_dead_letter_copy(&self, pending: &Pending, topic: &str, error: &DeliveryError) {
        if pending.record.topic == topic {
            return;
        }
        let mut copy = (*pending.record).clone();
        copy.topic = topic.to_string();
        copy.partition = None;
        copy.headers.push((
            "spillway.dlq.topic".into(),
            pending.record.topic.clone().into_bytes(),
        ));
        copy.headers
            .push(("spillway.dlq.reason".into(), error.reason().into_bytes()));
        copy.headers.push((
            "spillway.dlq.error".into(),
            error.message.clone().into_bytes(),
        ));
        if let Err(refused) = self.send(copy, super::SendOptions::default()) {
            tracing::warn!("dead-letter topic {topic}: {}", refused.0);
        }
    }

    /// Re-places keyless records that surely are not in Kafka.
    pub(crate) fn replace_requeued(&self) {
        loop {
            let Some(pending) = self.requeue.lock().pop_front() else {
                return;
            };
            let tp_before = pending.partition;
            let placed = {
                let partitions = self
                    .meta
                    .lock()
                    .get(&pending.record.topic)
                    .map(|m| m.partitions);
                partitions.and_then(|n| {
                    self.healthy_choice(&pending.record.topic, n, &self.health.lock())
                })
            };
            let Some(partition) = placed else {
                let error = DeliveryError::local(
                    ErrorClass::Transient,
                    "no healthy partition to re-place on",
                );
                self.finish(
                    pending,
                    Outcome::NotPersisted {
                        partition: Some(tp_before),
                        error,
                    },
                );
                continue;
            };
            let mut pending = pending;
            pending.partition = partition;
            self.counters.replaced.fetch_add(1, Ordering::Relaxed);
            match self
                .dispatch(pending, Instant::now())
                .map_err(|refused| *refused)
            {
                Ok(()) => {}
                // The session went fatal (or its queue is full): the record is fine. Keep it
                // for the next round, after the cut this error asks for.
                Err((SendError::Kafka(e), pending))
                    if e.class == ErrorClass::Fatal
                        || e.code == Some(RDKafkaErrorCode::QueueFull) =>
                {
                    let session = pending.session;
                    self.requeue.lock().push_front(pending);
                    if e.class == ErrorClass::Fatal {
                        self.request_cut(session, format!("fatal producer: {e}"));
                    }
                    return;
                }
                Err((e, pending)) => {
                    let error = DeliveryError::local(ErrorClass::Transient, e.to_string());
                    self.finish(
                        pending,
                        Outcome::NotPersisted {
                            partition: Some(partition),
                            error,
                        },
                    );
                }
            }
        }
    }

    /// Gives every record still waiting inside the producer its outcome (at close).
    pub(crate) fn drain_on_close(&self) {
        self.flush_dead_letters();
        let waiting: Vec<Pending> = self.requeue.lock().drain(..).collect();
        for pending in waiting {
            let error = DeliveryError::local(ErrorClass::Transient, "producer closed");
            let partition = Some(pending.partition);
            self.finish(pending, Outcome::NotPersisted { partition, error });
        }
        let unresolved: Vec<Pending> = std::mem::take(&mut *self.unresolved.lock());
        for pending in unresolved {
            self.give_up_resolving(pending, "producer closed");
        }
    }

    /// A possibly persisted keyless record whose tail check cannot happen: report it as such.
    pub(crate) fn give_up_resolving(&self, pending: Pending, why: &str) {
        let error = DeliveryError::local(ErrorClass::Transient, why);
        let (partition, known_before) = (pending.partition, pending.known_before);
        self.finish(
            pending,
            Outcome::PossiblyPersisted {
                partition,
                error,
                known_before,
            },
        );
    }
}

/// Retires a cut session on its own thread (so the supervisor carries on with the fresh one):
/// purges it and waits until librdkafka has reported every one of its records (the session's
/// poll thread runs our delivery callback for each), then drops it. Dropping earlier would
/// leave reports unsent and their callers waiting.
///
/// The purge repeats while waiting: a `send` that took the session just before it was swapped
/// out may still enqueue into it, and such a record must fail with the rest rather than be
/// delivered after an earlier record of its partition failed. After a fatal error librdkafka
/// can hold a retried batch where purge does not reach it; those records are reported when
/// librdkafka's own `message.timeout.ms` backstop expires, so the wait lasts that long.
pub(crate) fn retire(old: Arc<Session>, patience: std::time::Duration) {
    let id = old.id;
    let spawned = std::thread::Builder::new()
        .name(format!("spillway-retire-{id}"))
        .spawn(move || drain_and_drop(old, patience));
    if let Err(e) = spawned {
        tracing::error!(
            session = id,
            "cannot start a thread to retire the session: {e}"
        );
    }
}

/// [`retire`] in the calling thread (at shutdown).
pub(crate) fn drain_and_drop(old: Arc<Session>, patience: std::time::Duration) {
    let deadline = Instant::now() + patience;
    loop {
        old.producer
            .purge(PurgeConfig::default().queue().inflight());
        if old.producer.in_flight_count() == 0 || Instant::now() >= deadline {
            break;
        }
        old.producer.poll(std::time::Duration::from_millis(10));
    }
    let left = old.producer.in_flight_count();
    if left > 0 {
        tracing::error!(
            session = old.id,
            left,
            "records still unreported after a purge; their callers get no outcome"
        );
    }
    drop(old);
}
