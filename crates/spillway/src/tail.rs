//! Tail checks: is a record whose delivery was unknown already in Kafka? (DESIGN G4)
//!
//! A record reported `PossiblyPersisted`, or found in the spool after a crash with an unknown
//! delivery, may or may not be in its partition. Resending blindly can duplicate it; dropping it
//! can lose it. So we read the partition's tail, from just after the last offset known delivered
//! before the record was sent, up to the high watermark, and look for its `spillway.id` header.
//! Found: it is delivered (at that offset). Not found: it is not in Kafka (the high watermark is
//! read after the producer that sent it was cut, so it cannot still arrive), and is safe to
//! resend.
//!
//! Scans resume. A slow broker may not serve a long tail within one check's timeout; what was
//! read is kept per partition (the ids seen in a contiguous offset range), so the next check of
//! that partition goes on from where the last one stopped instead of starting over, and a check
//! whose range was read before only reads what was appended since. Offsets below the high
//! watermark are immutable, so what was read stays true; a high watermark below the kept range
//! (the topic was recreated) drops it. Ranges are bounded by `max_scan`, and only the
//! [`KEPT_PARTITIONS`] most recently scanned partitions are kept.
//!
//! A check reads at most `max_scan` records. When the range is longer (a busy topic, or no
//! offset known delivered, so the range is the partition's whole history), it reads the part
//! where the record most likely is, and says how much it left unread
//! ([`Checked::unread`]): after a known offset, the records right after it (the record was sent
//! when that was the newest we knew of); with none, the newest records (it was sent by this
//! process, so lately). A record not found there is sent again: it may then be in Kafka twice,
//! which is counted and logged by the caller, where waiting for a check that can never finish
//! would keep it from Kafka for good (G2 before G4).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;

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
}

/// What a tail check found, and how much of the range it could not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked<T> {
    pub found: T,
    /// Records of the range left unread because it is longer than the scan limit (0: the whole
    /// range was read, and what was not found is not there).
    pub unread: i64,
}

impl<T> Checked<T> {
    /// If the check left part of its range unread, says so (at warn) and counts it in
    /// `partial` (`spillway_tail_checks_partial_total`).
    pub fn report_partial(&self, topic: &str, partition: i32, partial: &Counter) {
        if self.unread > 0 {
            tracing::warn!(%topic, partition, unread = self.unread,
                "tail longer than the scan limit (drain.max_tail_scan): only part of it was \
                 checked; records not found there are sent again and may be duplicated");
            partial.inc();
        }
    }
}

/// The offsets a check of `first..high` reads, within `max_scan` records: all of them, or the
/// part where a record sent after the offset known before `first` (`after_known`) most likely
/// is, or else the newest.
fn window(first: i64, high: i64, after_known: bool, max_scan: i64) -> (i64, i64) {
    let max_scan = max_scan.max(1);
    if high - first <= max_scan {
        (first, high.max(first))
    } else if after_known {
        (first, first + max_scan)
    } else {
        (high - max_scan, high)
    }
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

/// How many partitions' scanned ranges are kept.
pub const KEPT_PARTITIONS: usize = 16;

/// The ids read from one partition, over the offsets `start..end`.
#[derive(Debug)]
struct Scanned {
    start: i64,
    end: i64,
    ids: HashMap<SpillwayId, i64>,
    used: Instant,
}

impl Scanned {
    fn new(start: i64) -> Self {
        Self {
            start,
            end: start,
            ids: HashMap::new(),
            used: Instant::now(),
        }
    }

    /// Whether a scan of `start..high` can use this range and go on from its end.
    fn serves(&self, start: i64, high: i64) -> bool {
        self.start <= start && start <= self.end && self.end <= high
    }

    /// Forgets what lies before `start` (to stay within the scan limit).
    fn trim(&mut self, start: i64) {
        if start > self.start {
            self.ids.retain(|_, o| *o >= start);
            self.start = start;
        }
    }

    /// The kept ids at or after `start`.
    fn from(&self, start: i64) -> impl Iterator<Item = (&SpillwayId, i64)> {
        self.ids
            .iter()
            .filter(move |(_, o)| **o >= start)
            .map(|(id, o)| (id, *o))
    }
}

/// Reads partition tails for `spillway.id`s.
pub struct TailReader {
    consumer: BaseConsumer,
    max_scan: i64,
    scanned: Mutex<HashMap<(String, i32), Scanned>>,
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
            scanned: Mutex::new(HashMap::new()),
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
    ) -> Result<Checked<HashMap<SpillwayId, i64>>, TailError> {
        if ids.is_empty() {
            return Ok(Checked {
                found: HashMap::new(),
                unread: 0,
            });
        }
        self.scan(topic, partition, after, timeout, |kept, start| {
            kept.from(start)
                .filter(|(id, _)| ids.contains(*id))
                .map(|(id, o)| (id.clone(), o))
                .collect()
        })
    }

    /// Every `spillway.id` in `topic`/`partition` after offset `after`, with its offset.
    pub fn collect(
        &self,
        topic: &str,
        partition: i32,
        after: Option<i64>,
        timeout: Duration,
    ) -> Result<Checked<HashMap<SpillwayId, i64>>, TailError> {
        self.scan(topic, partition, after, timeout, |kept, start| {
            kept.from(start).map(|(id, o)| (id.clone(), o)).collect()
        })
    }

    /// Reads the partition from after `after` up to its high watermark, or the part of that
    /// range [`window`] picks (resuming a kept range where one serves), then answers with
    /// `answer` over the kept range.
    fn scan<T>(
        &self,
        topic: &str,
        partition: i32,
        after: Option<i64>,
        timeout: Duration,
        answer: impl FnOnce(&Scanned, i64) -> T,
    ) -> Result<Checked<T>, TailError> {
        let deadline = Instant::now() + timeout;
        let (low, high) = self.watermarks(topic, partition, timeout)?;
        let first = after.map_or(low, |a| (a + 1).max(low));
        let (start, end) = window(first, high, after.is_some(), self.max_scan);
        let unread = (high - first).max(0) - (end - start);
        let key = (topic.to_string(), partition);
        let mut all = self.scanned.lock();
        let mut kept = match all.remove(&key) {
            Some(k) if k.serves(start, end) => k,
            _ => Scanned::new(start),
        };
        kept.used = Instant::now();
        if end - kept.start > self.max_scan {
            kept.trim(start);
        }
        let result = if kept.end >= end {
            Ok(())
        } else {
            self.read(topic, partition, &mut kept, end, deadline)
        };
        let answered = result.map(|()| Checked {
            found: answer(&kept, start),
            unread,
        });
        if all.len() >= KEPT_PARTITIONS {
            let oldest = all
                .iter()
                .min_by_key(|(_, k)| k.used)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                all.remove(&oldest);
            }
        }
        all.insert(key, kept);
        answered
    }

    /// Reads `kept.end..high` into `kept` (`high`: where this read stops), until `deadline`.
    fn read(
        &self,
        topic: &str,
        partition: i32,
        kept: &mut Scanned,
        high: i64,
        deadline: Instant,
    ) -> Result<(), TailError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(kept.end))?;
        self.consumer.assign(&tpl)?;
        let mut skipped = false;
        let result = loop {
            if kept.end >= high {
                break Ok(());
            }
            if Instant::now() >= deadline {
                break Err(TailError::Timeout {
                    topic: topic.into(),
                    partition,
                    at: kept.end,
                    high,
                });
            }
            let Some(message) = self.consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let message = match message {
                Ok(m) => m,
                // The consumer's queue also carries client-wide errors, among them those left
                // from an outage (one per failed connection attempt: a 30 s broker outage left
                // enough that every check after it failed on the next stale one for a minute).
                // A transient one says nothing about this read; the deadline bounds the wait.
                Err(KafkaError::MessageConsumption(code))
                    if crate::classify(code) == crate::ErrorClass::Transient =>
                {
                    // Said once per read, so that a scan stuck on one offset shows why.
                    if !skipped {
                        tracing::warn!(%topic, partition, at = kept.end, "tail read goes on past a transient error: {code:?}");
                        skipped = true;
                    }
                    continue;
                }
                Err(e) => break Err(e.into()),
            };
            if message.offset() < kept.end {
                continue;
            }
            kept.end = message.offset() + 1;
            let id = message.headers().and_then(|hs| {
                hs.iter()
                    .find(|h| h.key == ID_HEADER)
                    .and_then(|h| h.value)
                    .and_then(SpillwayId::parse)
            });
            if let Some(id) = id {
                kept.ids.insert(id, message.offset());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> SpillwayId {
        SpillwayId::parse(format!("abc:1:{n}").as_bytes()).expect("id")
    }

    #[test]
    fn a_kept_range_serves_a_scan_that_starts_inside_it_and_ends_at_or_after_it() {
        let mut kept = Scanned::new(10);
        kept.end = 20;
        assert!(kept.serves(10, 20));
        assert!(kept.serves(15, 30), "resumes at 20");
        assert!(kept.serves(20, 25), "starts at its end");
        assert!(!kept.serves(5, 30), "needs offsets before it");
        assert!(!kept.serves(21, 30), "a gap after it");
        assert!(!kept.serves(12, 18), "the partition shrank below it");
    }

    #[test]
    fn a_range_within_the_limit_is_read_whole() {
        assert_eq!(window(10, 60, true, 50), (10, 60));
        assert_eq!(window(10, 60, false, 50), (10, 60));
        assert_eq!(window(10, 10, true, 50), (10, 10), "nothing to read");
        assert_eq!(
            window(10, 5, false, 50),
            (10, 10),
            "a partition below the start"
        );
    }

    #[test]
    fn a_longer_range_is_read_after_the_known_offset_or_else_at_its_newest() {
        assert_eq!(window(10, 1_000, true, 50), (10, 60));
        assert_eq!(window(0, 1_000, false, 50), (950, 1_000));
    }

    #[test]
    fn trimming_forgets_ids_before_the_new_start_only() {
        let mut kept = Scanned::new(0);
        kept.end = 3;
        for n in 0..3 {
            kept.ids.insert(id(n), n as i64);
        }
        kept.trim(2);
        assert_eq!(kept.start, 2);
        assert_eq!(kept.from(0).count(), 1);
        kept.trim(1);
        assert_eq!(kept.start, 2, "never grows back");
    }
}
