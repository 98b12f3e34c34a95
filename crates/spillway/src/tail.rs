//! Tail checks: is a record whose delivery was unknown already in Kafka? (DESIGN G4)
//!
//! A record reported `PossiblyPersisted`, or found in the spool after a crash with an unknown
//! delivery, may or may not be in its partition. Resending blindly can duplicate it; dropping it
//! can lose it. So we read the partition's tail, from just after the last offset known delivered
//! before the record was sent, up to the high watermark, and look for its `spillway.id` header.
//! Found: it is delivered (at that offset). Not found: it is not in Kafka (the high watermark is
//! read after the producer that sent it was cut, so it cannot still arrive), and is safe to
//! resend.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::record::{ID_HEADER, SpillwayId};

/// Why a tail check could not finish. The records stay "possibly persisted".
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// The partition could not be read to its high watermark in time.
    #[error("tail of {topic}/{partition} not read in time (at {at} of {high})")]
    Timeout {
        topic: String,
        partition: i32,
        at: i64,
        high: i64,
    },
    /// The range to scan is longer than the configured limit.
    #[error("tail of {topic}/{partition} has {len} records to scan, over the limit {limit}")]
    TooLong {
        topic: String,
        partition: i32,
        len: i64,
        limit: i64,
    },
}

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeFailure {
    /// The metadata request got no answer. librdkafka sends it to any broker it has a connection
    /// to, possibly one that hangs, so this says nothing about the partition's leader.
    #[error("metadata: {0}")]
    Metadata(KafkaError),
    /// The metadata came back, and the partition's leader did not answer.
    #[error("leader: {0}")]
    Leader(KafkaError),
}

/// Reads partition tails for `spillway.id`s.
pub struct TailReader {
    consumer: BaseConsumer,
    max_scan: i64,
}

impl std::fmt::Debug for TailReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TailReader")
            .field("max_scan", &self.max_scan)
            .finish_non_exhaustive()
    }
}

impl TailReader {
    /// A reader using `base` (the producer's client settings: bootstrap, security) for its
    /// consumer; scans at most `max_scan` records per check.
    pub fn new(base: &ClientConfig, max_scan: i64) -> Result<Self, KafkaError> {
        let mut config = ClientConfig::new();
        for (k, v) in base.config_map().iter() {
            if is_client_wide(k) {
                config.set(*k, *v);
            }
        }
        // librdkafka needs a group id to assign partitions, even with nothing to commit.
        config
            .set("group.id", "spillway-tail-check")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("isolation.level", "read_uncommitted");
        Ok(Self {
            consumer: config.create()?,
            max_scan,
        })
    }

    /// Whether the leader of a partition answers: refreshes the topic's metadata (the client's
    /// cache may be stale after a broker came back) and asks the leader for its watermarks.
    pub fn probe(
        &self,
        topic: &str,
        partition: i32,
        timeout: Duration,
    ) -> Result<(i64, i64), ProbeFailure> {
        self.consumer
            .fetch_metadata(Some(topic), timeout)
            .map_err(ProbeFailure::Metadata)?;
        self.watermarks(topic, partition, timeout)
            .map_err(ProbeFailure::Leader)
    }

    /// The low and high watermarks of a partition, asked of its leader.
    pub fn watermarks(
        &self,
        topic: &str,
        partition: i32,
        timeout: Duration,
    ) -> Result<(i64, i64), KafkaError> {
        self.consumer.fetch_watermarks(topic, partition, timeout)
    }

    /// Which of `ids` are in `topic`/`partition` after offset `after` (exclusive; `None` scans
    /// from the low watermark), with the offset where each was found.
    pub fn find(
        &self,
        topic: &str,
        partition: i32,
        after: Option<i64>,
        ids: &HashSet<SpillwayId>,
        timeout: Duration,
    ) -> Result<HashMap<SpillwayId, i64>, TailError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let mut found = HashMap::new();
        self.scan(topic, partition, after, timeout, |id, offset| {
            if ids.contains(&id) {
                found.insert(id, offset);
            }
            found.len() < ids.len()
        })?;
        Ok(found)
    }

    /// Every `spillway.id` in `topic`/`partition` after offset `after`, with its offset.
    pub fn collect(
        &self,
        topic: &str,
        partition: i32,
        after: Option<i64>,
        timeout: Duration,
    ) -> Result<HashMap<SpillwayId, i64>, TailError> {
        let mut found = HashMap::new();
        self.scan(topic, partition, after, timeout, |id, offset| {
            found.insert(id, offset);
            true
        })?;
        Ok(found)
    }

    /// Calls `visit` with every `spillway.id` after `after` up to the high watermark, until it
    /// returns false.
    fn scan(
        &self,
        topic: &str,
        partition: i32,
        after: Option<i64>,
        timeout: Duration,
        mut visit: impl FnMut(SpillwayId, i64) -> bool,
    ) -> Result<(), TailError> {
        let deadline = Instant::now() + timeout;
        let (low, high) = self.watermarks(topic, partition, timeout)?;
        let start = after.map_or(low, |a| (a + 1).max(low));
        if start >= high {
            return Ok(());
        }
        if high - start > self.max_scan {
            return Err(TailError::TooLong {
                topic: topic.into(),
                partition,
                len: high - start,
                limit: self.max_scan,
            });
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(start))?;
        self.consumer.assign(&tpl)?;
        let mut at = start;
        let result = loop {
            if at >= high {
                break Ok(());
            }
            if Instant::now() >= deadline {
                break Err(TailError::Timeout {
                    topic: topic.into(),
                    partition,
                    at,
                    high,
                });
            }
            let Some(message) = self.consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let message = match message {
                Ok(m) => m,
                Err(e) => break Err(e.into()),
            };
            at = message.offset() + 1;
            let id = message.headers().and_then(|hs| {
                hs.iter()
                    .find(|h| h.key == ID_HEADER)
                    .and_then(|h| h.value)
                    .and_then(SpillwayId::parse)
            });
            if let Some(id) = id {
                if !visit(id, message.offset()) {
                    break Ok(());
                }
            }
        };
        let _ = self.consumer.unassign();
        result
    }
}

/// Properties a consumer can share with the producer it checks for (connection and security).
fn is_client_wide(key: &str) -> bool {
    key == "bootstrap.servers"
        || key.starts_with("security.")
        || key.starts_with("sasl.")
        || key.starts_with("ssl.")
        || key.starts_with("client.")
        || key == "broker.address.family"
        || key == "socket.timeout.ms"
}
