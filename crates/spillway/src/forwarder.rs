//! The forwarder of one spool stream: drains it to Kafka in order, once.
//!
//! Rounds: take up to `drain.window` records (those to retry first, then new ones from the
//! reader), send them in order, await their outcomes in order:
//! - delivered: acknowledge in the spool, with the last offset delivered per partition as the
//!   checkpoint's blob (the start of the next tail check), receipt `Delivered`;
//! - refused for what it is: the producer dead-lettered it; acknowledge, receipt `DeadLettered`;
//! - not (or possibly) persisted: it and everything after it in the round are retried next
//!   round, in order (a failure cuts the producer session, so nothing after it was delivered;
//!   if something was anyway, it is counted in `spillway_order_breaks` and not sent again).
//!
//! Before sending, a record that may already be in Kafka is looked for in its partition's tail
//! (G4): records marked *possibly persisted* (an attempt that got no answer), and, at the first
//! round after the spool was opened, every record read (the process may have died with them
//! in flight): the partition is scanned after the offsets in the checkpoint's blob.
//!
//! Draining waits while the route's breaker is not closed, while the partition is unhealthy,
//! for the shared drain rate limit, and (`spool_on_failure` without `auto_replay`) for a replay,
//! which lasts until the stream is empty (not one attempt). Drains together may fill half of the
//! producer's in-flight limit; the other half is kept for live records. A round cut short by
//! that limit alone is not a failure: it goes on after a short pause, without backoff.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use spillway_spool::{Position, StreamName, StreamReader};

use crate::api::ReceiptStatus;
use crate::core::{Backlog, Core};
use crate::envelope::Envelope;
use crate::metrics::Counted;
use crate::producer::{Outcome, SendError};
use crate::record::SpillwayId;
use crate::route::Mode;
use crate::streams::StreamKind;

const IDLE: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Pause after a round cut short by the producer's in-flight limit alone.
const BACKPRESSURE_PAUSE: Duration = Duration::from_millis(5);

/// How a round ended.
#[derive(Debug, PartialEq, Eq)]
enum RoundEnd {
    /// Every record was answered for good (delivered or dead-lettered).
    Done,
    /// Kafka failed a record, or the producer refused one for another reason than its
    /// in-flight limit: retry after a growing backoff.
    Failed,
    /// Only the in-flight limit (or the drains' half of it) stopped the round: go on after a
    /// short pause.
    Backpressure,
}

struct Item {
    position: Position,
    envelope: Envelope,
}

struct Forwarder {
    core: Arc<Core>,
    kind: StreamKind,
    stream: StreamName,
    reader: StreamReader,
    backlog: Arc<Backlog>,
    route: usize,
    mode: Mode,
    auto_replay: bool,
    retry: VecDeque<Item>,
    offsets: BTreeMap<i32, i64>,
    /// Ids already in Kafka found by the start-up scan, per partition scanned.
    startup: Option<HashMap<SpillwayId, (i32, i64)>>,
    reachable_since: HashMap<i32, Instant>,
    backoff: Duration,
    replays_seen: u64,
    /// A replay was asked and the stream has not been empty since (`spool_on_failure` without
    /// `auto_replay`): a replay lasts until the backlog is drained, not one attempt.
    replaying: bool,
}

pub(crate) async fn run(core: Arc<Core>, kind: StreamKind, stream: StreamName) {
    let reader = match core.spool.reader(&stream) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(%stream, "cannot read the stream: {e}");
            return;
        }
    };
    let (route, r) = core.routes.lookup(kind.topic());
    let (mode, auto_replay) = (r.mode, r.auto_replay);
    let offsets = core
        .spool
        .checkpoint(&stream)
        .map(|c| decode_offsets(&c.meta))
        .unwrap_or_default();
    let replays_seen = *core.replay.borrow();
    // Only streams that held records when the spool was opened can hold records a previous
    // process sent without hearing back.
    let startup =
        (!core.recovered.contains(&stream) || !core.config.drain.dedup).then(HashMap::new);
    let mut f = Forwarder {
        backlog: core.backlog(&stream),
        core,
        kind,
        stream,
        reader,
        route,
        mode,
        auto_replay,
        retry: VecDeque::new(),
        offsets,
        startup,
        reachable_since: HashMap::new(),
        backoff: Duration::from_millis(100),
        replays_seen,
        replaying: false,
    };
    f.run().await;
}

impl Forwarder {
    async fn run(&mut self) {
        let mut shutdown = self.core.shutdown.subscribe();
        loop {
            if *shutdown.borrow() || self.core.is_stopping() {
                return;
            }
            if !self.may_drain() {
                self.idle(&mut shutdown).await;
                continue;
            }
            let round = match self.next_round() {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(stream = %self.stream, "reading the spool: {e}");
                    self.idle(&mut shutdown).await;
                    continue;
                }
            };
            if round.is_empty() {
                tokio::select! {
                    _ = self.backlog.notify.notified() => {}
                    _ = tokio::time::sleep(IDLE) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let round = match self.deduplicate(round).await {
                Ok(r) => r,
                Err(round) => {
                    // Not checkable yet: keep the round, in order, for the next try.
                    for item in round.into_iter().rev() {
                        self.retry.push_front(item);
                    }
                    self.idle(&mut shutdown).await;
                    continue;
                }
            };
            if round.is_empty() {
                continue;
            }
            if let Some(limiter) = &self.core.drain_limiter {
                limiter.acquire(round.len() as u64).await;
            }
            match self.send_round(round).await {
                RoundEnd::Done => self.backoff = Duration::from_millis(100),
                RoundEnd::Backpressure => {
                    // The producer's in-flight limit, shared with live traffic and the other
                    // forwarders (drains may fill half of it): not a failure of Kafka, so no
                    // growing backoff; what was sent has been answered, so room is being made.
                    tokio::select! {
                        _ = tokio::time::sleep(BACKPRESSURE_PAUSE) => {}
                        _ = shutdown.changed() => {}
                    }
                }
                RoundEnd::Failed => {
                    tokio::select! {
                        _ = tokio::time::sleep(self.backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn idle(&self, shutdown: &mut tokio::sync::watch::Receiver<bool>) {
        tokio::select! {
            _ = tokio::time::sleep(IDLE) => {}
            _ = self.backlog.notify.notified() => {}
            _ = shutdown.changed() => {}
        }
    }

    fn may_drain(&mut self) -> bool {
        if self.mode == Mode::SpoolOnFailure && !self.auto_replay {
            let asked = *self.core.replay.borrow();
            if asked != self.replays_seen {
                self.replays_seen = asked;
                self.replaying = true;
            }
            let empty =
                self.backlog.unresolved.load(Ordering::Acquire) == 0 && self.retry.is_empty();
            if empty {
                self.replaying = false;
            } else if !self.replaying {
                return false;
            }
        }
        if !self.core.route_open_for_direct(self.route) {
            return false;
        }
        match &self.kind {
            StreamKind::Partition(tp) => self.core.producer.is_healthy(&tp.topic, tp.partition),
            StreamKind::Keyless(_) => true,
        }
    }

    fn next_round(&mut self) -> Result<Vec<Item>, spillway_spool::ReadError> {
        let window = self.core.config.drain.window.max(1);
        let mut round: Vec<Item> = Vec::new();
        while round.len() < window {
            match self.retry.pop_front() {
                Some(item) => round.push(item),
                None => break,
            }
        }
        if round.len() < window {
            for record in self.reader.read_batch(window - round.len(), 8 << 20)? {
                match Envelope::decode(&record.payload) {
                    Ok(envelope) => round.push(Item {
                        position: record.position,
                        envelope,
                    }),
                    Err(e) => {
                        // Undecodable (written by a newer version, or damaged past the CRC): it
                        // cannot be delivered. Its bytes go to `undecodable.jsonl` (fsync'd)
                        // before it leaves the stream, so nothing disappears unseen.
                        tracing::error!(position = %record.position, "undecodable spooled record set aside: {e}");
                        match set_aside(self.core.spool.dir(), &record, &e.to_string()) {
                            Ok(()) => {
                                self.core
                                    .metrics
                                    .record(self.kind.topic(), Counted::DeadLettered);
                                self.resolve(&record.position);
                            }
                            Err(io) => {
                                tracing::error!(
                                    "cannot write undecodable.jsonl ({io}); the record stays in the spool"
                                );
                                return Ok(round);
                            }
                        }
                    }
                }
            }
        }
        Ok(round)
    }

    /// Drops records already in Kafka from the round (acknowledging them), and clears the
    /// *possibly persisted* mark of those that are not. `Err(round)`: a needed tail cannot be
    /// read yet (partition unreachable or not settled); the round comes back untouched.
    async fn deduplicate(&mut self, round: Vec<Item>) -> Result<Vec<Item>, Vec<Item>> {
        if self.startup.is_none() {
            match self.startup_scan().await {
                Some(found) => self.startup = Some(found),
                None => return Err(round),
            }
        }
        let mut pending: HashMap<i32, (Option<i64>, HashSet<SpillwayId>)> = HashMap::new();
        for item in round.iter().filter(|_| self.core.config.drain.dedup) {
            if let Some(known) = item.envelope.possibly_persisted {
                let p = item.envelope.partition.unwrap_or(-1);
                let entry = pending.entry(p).or_insert((known, HashSet::new()));
                entry.0 = match (entry.0, known) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    _ => None,
                };
                entry.1.insert(item.envelope.record.id.clone());
            }
        }
        let mut found: HashMap<SpillwayId, (i32, i64)> = HashMap::new();
        for (p, (after, ids)) in pending {
            if p < 0 {
                continue;
            }
            if !self.settled(p) {
                return Err(round);
            }
            let topic = self.kind.topic().to_string();
            let timeout = self.core.config.health.probe_timeout * 10;
            let core = self.core.clone();
            let result = tokio::task::spawn_blocking(move || {
                core.tail.lock().find(&topic, p, after, &ids, timeout)
            })
            .await;
            match result {
                Ok(Ok(map)) => found.extend(map.into_iter().map(|(id, o)| (id, (p, o)))),
                Ok(Err(e)) => {
                    tracing::warn!(stream = %self.stream, partition = p, "tail check failed, will retry: {e}");
                    return Err(round);
                }
                Err(e) => {
                    tracing::error!("tail check task: {e}");
                    return Err(round);
                }
            }
        }
        let mut keep = Vec::with_capacity(round.len());
        for mut item in round {
            let id = &item.envelope.record.id;
            let startup = self.startup.as_ref().and_then(|s| s.get(id)).copied();
            if let Some((p, o)) = found.get(id).copied().or(startup) {
                self.core.metrics.dedup_found.inc();
                self.delivered(&item, p, Some(o));
                continue;
            }
            item.envelope.possibly_persisted = None;
            keep.push(item);
        }
        Ok(keep)
    }

    /// After a restart, records at the head of the stream may be in Kafka already: collect the
    /// ids in the partitions' tails after the checkpoint's offsets.
    async fn startup_scan(&mut self) -> Option<HashMap<SpillwayId, (i32, i64)>> {
        let topic = self.kind.topic().to_string();
        let partitions: Vec<i32> = match &self.kind {
            StreamKind::Partition(tp) => vec![tp.partition],
            StreamKind::Keyless(t) => {
                let n = self.core.partition_count(t).ok()?;
                (0..n).collect()
            }
        };
        let mut all = HashMap::new();
        for p in partitions {
            if !self.settled(p) {
                return None;
            }
            let after = self.offsets.get(&p).copied();
            let (core, topic2) = (self.core.clone(), topic.clone());
            let timeout = self.core.config.health.probe_timeout * 30;
            let result = tokio::task::spawn_blocking(move || {
                core.tail.lock().collect(&topic2, p, after, timeout)
            })
            .await
            .ok()?;
            match result {
                Ok(ids) => all.extend(ids.into_iter().map(|(id, o)| (id, (p, o)))),
                Err(crate::tail::TailError::TooLong { len, limit, .. }) => {
                    tracing::warn!(stream = %self.stream, partition = p, len, limit,
                        "tail too long to check after restart: records re-read may be sent twice");
                }
                Err(e) => {
                    tracing::warn!(stream = %self.stream, partition = p, "start-up tail scan failed, will retry: {e}");
                    return None;
                }
            }
        }
        // Only our own ids matter.
        let instance = self.core.ids.instance();
        all.retain(|id, _| id.instance == instance);
        Some(all)
    }

    /// Whether partition `p`'s leader has answered for the settle time.
    fn settled(&mut self, p: i32) -> bool {
        let topic = self.kind.topic();
        if !self.core.producer.is_healthy(topic, p) {
            self.reachable_since.remove(&p);
            return false;
        }
        let since = *self.reachable_since.entry(p).or_insert_with(Instant::now);
        since.elapsed() >= self.core.config.drain.settle
            || self
                .core
                .producer
                .healthy_for(topic, p, self.core.config.drain.settle)
    }

    /// Sends a round in order and handles the outcomes in order. On failure or backpressure,
    /// the records not delivered and all after them are queued to retry.
    async fn send_round(&mut self, round: Vec<Item>) -> RoundEnd {
        let mut sent = Vec::with_capacity(round.len());
        let mut unsent = Vec::new();
        let mut only_backpressure = true;
        for item in round {
            if !unsent.is_empty() {
                unsent.push(item);
                continue;
            }
            if !self.core.producer.has_room_for_drain() {
                // Half the in-flight limit is kept for live records; the rest waits for room.
                unsent.push(item);
                continue;
            }
            let mut out = item.envelope.record.clone();
            if let StreamKind::Partition(tp) = &self.kind {
                out.partition = Some(tp.partition);
            }
            match self.core.producer.send(out) {
                Ok(fut) => sent.push((item, fut)),
                Err(SendError::NoSuchPartition { .. }) => {
                    tracing::error!(id = %item.envelope.record.id, "spooled for a partition that no longer exists; dead-lettered");
                    self.dead_lettered(&item, "NoSuchPartition");
                }
                Err(e) => {
                    tracing::debug!(stream = %self.stream, "drain paused: {e}");
                    only_backpressure &= matches!(e, SendError::Backpressure(_));
                    unsent.push(item);
                }
            }
        }
        let mut failed = Vec::new();
        for (mut item, fut) in sent {
            let delivery = fut.await;
            match delivery.outcome {
                Outcome::Delivered { partition, offset } => {
                    if !failed.is_empty() {
                        self.core.metrics.order_breaks.inc();
                        tracing::error!(id = %item.envelope.record.id, "delivered after an earlier record of its stream failed");
                    }
                    self.core.breaker_outcome(self.route, true);
                    self.delivered(&item, partition, offset);
                }
                Outcome::Permanent {
                    error,
                    dead_lettered,
                    ..
                } => {
                    self.core.on_dead_lettered(
                        &item.envelope.record,
                        &error.reason(),
                        dead_lettered,
                    );
                    self.resolve(&item.position);
                }
                Outcome::NotPersisted { error, .. } => {
                    self.core.breaker_outcome(self.route, false);
                    self.core.count_delivery_error(self.kind.topic(), &error);
                    failed.push(item);
                }
                Outcome::PossiblyPersisted {
                    partition,
                    error,
                    known_before,
                } => {
                    self.core.breaker_outcome(self.route, false);
                    self.core.count_delivery_error(self.kind.topic(), &error);
                    item.envelope.possibly_persisted = Some(known_before);
                    item.envelope.partition = Some(partition);
                    failed.push(item);
                }
            }
        }
        let end = if !failed.is_empty() {
            RoundEnd::Failed
        } else if unsent.is_empty() {
            RoundEnd::Done
        } else if only_backpressure {
            RoundEnd::Backpressure
        } else {
            RoundEnd::Failed
        };
        for item in failed.into_iter().chain(unsent).rev() {
            self.retry.push_front(item);
        }
        end
    }

    fn delivered(&mut self, item: &Item, partition: i32, offset: Option<i64>) {
        if let Some(o) = offset {
            let e = self.offsets.entry(partition).or_insert(o);
            *e = (*e).max(o);
        }
        let record = &item.envelope.record;
        self.core.metrics.delivered(&record.topic);
        self.core.receipts.set(
            &record.id,
            ReceiptStatus::Delivered {
                topic: record.topic.clone(),
                partition,
                offset,
            },
        );
        self.resolve(&item.position);
    }

    fn dead_lettered(&mut self, item: &Item, reason: &str) {
        self.core
            .on_dead_lettered(&item.envelope.record, reason, false);
        self.resolve(&item.position);
    }

    /// Acknowledges in the spool and leaves the backlog.
    fn resolve(&mut self, position: &Position) {
        self.ack(position);
        let left = self
            .backlog
            .unresolved
            .fetch_sub(1, Ordering::AcqRel)
            .saturating_sub(1);
        if left == 0 {
            // A lane waiting to go direct again may now.
            self.backlog.notify.notify_waiters();
        }
    }

    fn ack(&self, position: &Position) {
        if let Err(e) = self
            .reader
            .ack_with_meta(position.seq, &encode_offsets(&self.offsets))
        {
            tracing::error!(%position, "acknowledging in the spool: {e}");
        }
    }
}

/// Appends an undecodable record's raw bytes to `<spool>/undecodable.jsonl`, fsync'd.
fn set_aside(
    dir: &std::path::Path,
    record: &spillway_spool::Record,
    error: &str,
) -> std::io::Result<()> {
    use base64::Engine as _;
    use std::io::Write;
    let line = serde_json::json!({
        "stream": record.position.stream.as_str(),
        "seq": record.position.seq.0,
        "appended_ms": record.timestamp_ms,
        "error": error,
        "payload_base64": base64::engine::general_purpose::STANDARD.encode(&record.payload),
    });
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("undecodable.jsonl"))?;
    writeln!(f, "{line}")?;
    f.sync_data()
}

/// The checkpoint blob: `u16 count`, then per partition `i32 partition, i64 offset` (LE). At
/// most 80 partitions fit the spool's 1 KiB; the highest offsets are kept.
pub(crate) fn encode_offsets(offsets: &BTreeMap<i32, i64>) -> Vec<u8> {
    let mut entries: Vec<(i32, i64)> = offsets.iter().map(|(p, o)| (*p, *o)).collect();
    if entries.len() > 80 {
        entries.sort_by_key(|(_, o)| std::cmp::Reverse(*o));
        entries.truncate(80);
    }
    let mut out = Vec::with_capacity(2 + entries.len() * 12);
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for (p, o) in entries {
        out.extend_from_slice(&p.to_le_bytes());
        out.extend_from_slice(&o.to_le_bytes());
    }
    out
}

pub(crate) fn decode_offsets(meta: &[u8]) -> BTreeMap<i32, i64> {
    let mut out = BTreeMap::new();
    let Some(count) = meta
        .get(..2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    else {
        return out;
    };
    for i in 0..count {
        let at = 2 + i * 12;
        let Some(entry) = meta.get(at..at + 12) else {
            break;
        };
        let p = i32::from_le_bytes(entry[..4].try_into().expect("4 bytes"));
        let o = i64::from_le_bytes(entry[4..].try_into().expect("8 bytes"));
        out.insert(p, o);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_offsets_survive_their_encoding_and_garbage_gives_none() {
        let map: BTreeMap<i32, i64> = [(0, 5), (7, 1_000_000_000_000)].into_iter().collect();
        assert_eq!(decode_offsets(&encode_offsets(&map)), map);
        assert!(decode_offsets(&[]).is_empty());
        assert!(decode_offsets(&[5]).is_empty());
        assert_eq!(
            decode_offsets(&[2, 0, 1, 0, 0, 0]).len(),
            0,
            "a torn entry is ignored"
        );
    }

    #[test]
    fn at_most_80_partitions_are_kept_in_the_blob() {
        let map: BTreeMap<i32, i64> = (0..200).map(|p| (p, i64::from(p))).collect();
        let bytes = encode_offsets(&map);
        assert!(bytes.len() <= spillway_spool::MAX_ACK_META_BYTES);
        let back = decode_offsets(&bytes);
        assert_eq!(back.len(), 80);
        assert!(back.contains_key(&199), "the highest offsets are kept");
    }
}
