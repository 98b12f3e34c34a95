//! The send path: placing a record on a partition, admission against the in-flight limits, and
//! handing it to the current session's librdkafka producer.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;

use super::session::Pending;
use super::ticket::{InFlight, park, ticket};
use super::{DeliveryError, DeliveryFuture, Refused, SendError, SendOptions, Shared, TopicMeta};
use crate::health::{HealthTracker, TopicPartition};
use crate::partitioner::partition_for_key;
use crate::record::{ID_HEADER, OutRecord};

impl Shared {
    pub(super) fn wake(&self) {
        let (lock, cv) = &self.wake;
        *lock.lock() = true;
        cv.notify_all();
    }

    pub(super) fn partitions(&self, topic: &str) -> Result<i32, SendError> {
        if let Some(m) = self.meta.lock().get(topic) {
            return Ok(m.partitions);
        }
        // A fetch that just failed is not repeated for every record (each would block).
        if let Some(t) = self.meta_misses.lock().get(topic) {
            if t.elapsed() < Duration::from_secs(5) {
                return Err(SendError::MetadataUnavailable {
                    topic: topic.into(),
                    reason: "the last metadata fetch failed moments ago".into(),
                });
            }
        }
        self.refresh_metadata(topic).inspect_err(|_| {
            self.meta_misses
                .lock()
                .insert(topic.to_string(), Instant::now());
        })
    }

    /// Fetches a topic's metadata (blocking, bounded) and updates leaders in the tracker.
    pub(super) fn refresh_metadata(&self, topic: &str) -> Result<i32, SendError> {
        let unavailable = |reason: String| SendError::MetadataUnavailable {
            topic: topic.into(),
            reason,
        };
        let session = self.session.read().clone().ok_or(SendError::Closed)?;
        let md = session
            .producer
            .client()
            .fetch_metadata(Some(topic), Duration::from_secs(2))
            .map_err(|e| unavailable(e.to_string()))?;
        let t = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .ok_or_else(|| unavailable("not in metadata".into()))?;
        if let Some(err) = t.error() {
            return Err(unavailable(format!("{:?}", RDKafkaErrorCode::from(err))));
        }
        let leaders: Vec<(i32, i32)> = t
            .partitions()
            .iter()
            .map(|p| (p.id(), p.leader()))
            .collect();
        let partitions = leaders.len() as i32;
        if partitions == 0 {
            return Err(unavailable("topic has no partitions".into()));
        }
        self.health.lock().on_leaders(topic, &leaders);
        self.meta.lock().insert(
            topic.to_string(),
            TopicMeta {
                partitions,
                fetched: Instant::now(),
            },
        );
        Ok(partitions)
    }

    /// A healthy partition of `topic` for a keyless record (sticky).
    pub(super) fn healthy_choice(
        &self,
        topic: &str,
        partitions: i32,
        health: &HealthTracker,
    ) -> Option<i32> {
        self.sticky
            .choose(topic, partitions, |p| health.is_healthy(&(topic, p)))
    }

    /// Hands `record` over as `options` say.
    pub(super) fn send(
        &self,
        record: OutRecord,
        options: SendOptions,
    ) -> Result<DeliveryFuture, Refused> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(Box::new((SendError::Closed, record)));
        }
        let now = Instant::now();
        let (partition, placed_by_us, known_before) = match self.place_and_track(&record, now) {
            Ok(placed) => placed,
            Err(e) => return Err(Box::new((e, record))),
        };
        let (reply, waiter) = ticket();
        let record = Arc::new(record);
        let pending = Pending {
            record: record.clone(),
            partition,
            replaceable: placed_by_us && options.replace,
            observe: options.observe,
            known_before,
            attempts: 0,
            session: 0,
            sent_at: now,
            reply,
        };
        match self.hand_over(pending, now, true) {
            Ok(()) => Ok(DeliveryFuture::new(waiter, record)),
            Err(refused) => {
                let (e, pending) = *refused;
                self.release(&pending);
                drop(record);
                let record = Arc::unwrap_or_clone(pending.record);
                Err(Box::new((e, record)))
            }
        }
    }

    /// Chooses the partition (the key's or the explicit one; for a keyless record a healthy
    /// one, sticky), checks it and the in-flight limits, and counts the record as outstanding
    /// on it, under one lock of the health tracker (the delivery thread takes it for every
    /// report too). Returns the partition, whether Spillway chose it, and the highest offset
    /// known delivered there.
    fn place_and_track(
        &self,
        record: &OutRecord,
        now: Instant,
    ) -> Result<(i32, bool, Option<i64>), SendError> {
        let topic = record.topic.as_str();
        let partitions = self.partitions(topic)?;
        let fixed = fixed_partition(record, partitions)?;
        let mut health = self.health.lock();
        let (partition, placed_by_us) = match fixed {
            Some(p) if health.is_healthy(&(topic, p)) => (p, false),
            Some(p) => return Err(unhealthy(&health, topic, p)),
            None => match self.healthy_choice(topic, partitions, &health) {
                Some(p) => (p, true),
                None => return Err(SendError::NoHealthyPartition(topic.to_string())),
            },
        };
        self.admit(record.size())?;
        let known_before = health.on_send(&(topic, partition), now);
        Ok((partition, placed_by_us, known_before))
    }

    pub(super) fn admit(&self, bytes: usize) -> Result<(), SendError> {
        let records = self.in_flight_records.fetch_add(1, Ordering::AcqRel);
        let total = self.in_flight_bytes.fetch_add(bytes, Ordering::AcqRel);
        if records >= self.opts.max_in_flight_records
            || total + bytes > self.opts.max_in_flight_bytes
        {
            self.in_flight_records.fetch_sub(1, Ordering::AcqRel);
            self.in_flight_bytes.fetch_sub(bytes, Ordering::AcqRel);
            return Err(SendError::Backpressure(format!(
                "{records} records, {total} bytes in flight"
            )));
        }
        Ok(())
    }

    pub(super) fn release(&self, pending: &Pending) {
        self.in_flight_records.fetch_sub(1, Ordering::AcqRel);
        self.in_flight_bytes
            .fetch_sub(pending.record.size(), Ordering::AcqRel);
    }

    /// Hands a pending record to the current session; `now` is the time of the hand-over
    /// (one clock read per record serves both the caller and this). A refused record comes
    /// back with why (boxed: that path is rare, and the success path stays small).
    pub(super) fn dispatch(
        &self,
        pending: Pending,
        now: Instant,
    ) -> Result<(), Box<(SendError, Pending)>> {
        self.hand_over(pending, now, false)
    }

    /// [`Shared::dispatch`]; `tracked`: the caller already counted the record as outstanding
    /// on its partition (and set `known_before`).
    fn hand_over(
        &self,
        mut pending: Pending,
        now: Instant,
        tracked: bool,
    ) -> Result<(), Box<(SendError, Pending)>> {
        // The read guard is held through the hand-over rather than cloning the session's Arc
        // (two atomic operations on a counter every sender shares); a cut waits for it, and
        // nothing below takes the session lock again.
        let current = self.session.read();
        let Some(session) = current.as_ref() else {
            if tracked {
                let tp = (pending.record.topic.as_str(), pending.partition);
                self.health.lock().on_settled(&tp, now);
            }
            return Err(Box::new((SendError::Closed, pending)));
        };
        pending.session = session.id;
        pending.sent_at = now;
        pending.attempts += 1;
        let record = pending.record.clone();
        let partition = pending.partition;
        if !tracked {
            pending.known_before = self
                .health
                .lock()
                .on_send(&(record.topic.as_str(), partition), now);
        }
        let id = record.id.to_text();
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len() + 1);
        for (k, v) in &record.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v),
            });
        }
        headers = headers.insert(Header {
            key: ID_HEADER,
            value: Some(id.as_bytes()),
        });
        // Set before the hand-over: the report may arrive before `send` returns.
        pending.reply.set_in_librdkafka(true);
        let mut base: BaseRecord<'_, [u8], [u8], InFlight> =
            BaseRecord::with_opaque_to(&record.topic, park(pending))
                .partition(partition)
                .headers(headers);
        if let Some(k) = &record.key {
            base = base.key(k.as_slice());
        }
        if let Some(v) = &record.value {
            base = base.payload(v.as_slice());
        }
        if let Some(ts) = record.timestamp_ms {
            base = base.timestamp(ts);
        }
        match session.producer.send(base) {
            Ok(()) => {
                self.counters.sent.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err((e, base)) => {
                let pending = base
                    .delivery_opaque
                    .unpark()
                    .expect("a refused record gets no report, so it is still parked");
                pending.reply.set_in_librdkafka(false);
                self.health
                    .lock()
                    .on_settled(&(record.topic.as_str(), partition), Instant::now());
                let code = e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail);
                Err(Box::new((
                    SendError::Kafka(DeliveryError::from_code(code)),
                    pending,
                )))
            }
        }
    }
}

/// The partition an ordered record must go to (explicit, or its key's); `None` for a keyless
/// one, which Spillway places.
fn fixed_partition(record: &OutRecord, partitions: i32) -> Result<Option<i32>, SendError> {
    match (record.partition, &record.key) {
        (Some(p), _) if p < 0 || p >= partitions => Err(SendError::NoSuchPartition {
            topic: record.topic.clone(),
            partition: p,
            partitions,
        }),
        (Some(p), _) => Ok(Some(p)),
        (None, Some(key)) => Ok(Some(partition_for_key(key, partitions))),
        (None, None) => Ok(None),
    }
}

/// Why a record may not go to partition `partition` of `topic`, which the caller chose.
fn unhealthy(health: &HealthTracker, topic: &str, partition: i32) -> SendError {
    let tp = TopicPartition::new(topic, partition);
    let reason = health
        .unhealthy()
        .into_iter()
        .find(|(u, _, _)| *u == tp)
        .map_or_else(String::new, |(_, r, _)| r.to_string());
    SendError::PartitionUnhealthy {
        topic: topic.to_string(),
        partition,
        reason,
    }
}
