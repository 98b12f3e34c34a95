//! The forwarder of one spool stream: drains it to Kafka in order, once.
//!
//! A flight of up to `drain.window` records, sent in stream order: whenever half of it is
//! answered, it is topped up (records to retry first, then new ones from the reader, at most
//! 8 MiB read at a time), so that reading, Kafka's round trip and the outcomes overlap. The
//! outcomes are handled in order:
//! - delivered: acknowledge in the spool, with the last offset delivered per partition as the
//!   checkpoint's blob (the start of the next tail check), receipt `Delivered`;
//! - refused for what it is: the producer dead-lettered it; acknowledge, receipt `DeadLettered`;
//! - not (or possibly) persisted: nothing more is sent; once the flight is answered, it and
//!   every record after it that was not delivered are retried after a backoff, in order (a
//!   failure cuts the producer session, so nothing after it was delivered; if something was
//!   anyway, it is not sent again, and on an ordered stream it is counted in
//!   `spillway_order_breaks`: a keyless stream spans partitions and has no order to break).
//!
//! Before sending, a record that may already be in Kafka is looked for in its partition's tail
//! (G4): records marked *possibly persisted* (an attempt that got no answer), and, at the first
//! batch after the spool was opened, every record read (the process may have died with them
//! in flight): the partition is scanned after the offsets in the checkpoint's blob.
//!
//! Draining waits while the route's breaker is not closed, while the partition is unhealthy,
//! for the shared drain rate limit, and (`spool_on_failure` without `auto_replay`) for a replay,
//! which lasts until the stream is empty (not one attempt). Drains together may fill half of the
//! producer's in-flight limit; the other half is kept for live records. Reaching that limit is
//! not a failure: the forwarder goes on as answers make room, without backoff.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use spillway_spool::{Position, StreamName, StreamReader};

use crate::api::Priority;
use crate::core::{Backlog, Core};
use crate::direct::count_delivered;
use crate::envelope::Envelope;
use crate::metrics::Counted;
use crate::producer::{Delivery, DeliveryFuture, Outcome, SendError, SendOptions};
use crate::record::{OutRecord, SpillwayId};
use crate::route::Mode;
use crate::streams::StreamKind;

const IDLE: Duration = Duration::from_millis(200);
const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Pause when the producer's in-flight limit (or the drains' half of it) stops the flight.
const BACKPRESSURE_PAUSE: Duration = Duration::from_millis(5);

/// What topping up the flight did.
#[derive(Debug, PartialEq, Eq)]
enum TopUp {
    /// Records were taken from the stream (sent, or found in Kafka already).
    Sent,
    /// The stream has nothing to send.
    Empty,
    /// Not now: the breaker, the partition's health, a tail check, a replay or the spool.
    Wait,
    /// The producer's in-flight limit (or the drains' half of it) is reached.
    Backpressure,
    /// The producer refused for another reason.
    Refused,
}

struct Item {
    position: Position,
    envelope: Envelope,
}

/// A record sent and not answered yet. The producer holds the record itself and hands it back
/// with the outcome; this is the rest of what a retry needs.
struct Flying {
    position: Position,
    priority: Priority,
    partition: Option<i32>,
    delivery: DeliveryFuture,
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
    /// Records to send next, before any new one is read: after everything in flight, in order.
    retry: VecDeque<Item>,
    /// Sent and not answered yet, in stream order.
    flight: VecDeque<Flying>,
    /// A record in flight failed: nothing more is sent until the flight is answered; then the
    /// failed records and all after them are retried, in order.
    failing: bool,
    /// Records of the flight that failed, in order, while `failing`.
    failed: Vec<Item>,
    /// The checkpoint blob, re-encoded in place for each acknowledgement.
    meta: Vec<u8>,
    /// Undecodable records that could not be set aside yet, with why they are undecodable.
    unset: VecDeque<(spillway_spool::Record, String)>,
    /// The last attempt to set one aside.
    unset_tried: Instant,
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
        flight: VecDeque::new(),
        failing: false,
        failed: Vec::new(),
        meta: Vec::new(),
        unset: VecDeque::new(),
        unset_tried: Instant::now(),
        offsets,
        startup,
        reachable_since: HashMap::new(),
        backoff: INITIAL_BACKOFF,
        replays_seen,
        replaying: false,
    };
    f.run().await;
}

impl Forwarder {
    async fn run(&mut self) {
        let mut shutdown = self.core.shutdown.subscribe();
        let window = self.core.config.drain.window.max(1);
        loop {
            let stopping = *shutdown.borrow() || self.core.is_stopping();
            if stopping && self.flight.is_empty() {
                return;
            }
            // Top up when half the window is answered, so that sending, Kafka's round trip and
            // the outcomes overlap instead of taking turns.
            let topped = if !stopping && !self.failing && self.flight.len() <= window / 2 {
                Some(self.top_up(window).await)
            } else {
                None
            };
            if let Some(mut flying) = self.flight.pop_front() {
                // Outcomes can be ready faster than they are handled, and then nothing here
                // waits: give the runtime back its thread now and then (tokio's task budget),
                // or the other tasks on this worker starve for the whole drain.
                tokio::task::consume_budget().await;
                let delivery = (&mut flying.delivery).await;
                self.answered(flying, delivery);
                if self.failing && self.flight.is_empty() {
                    self.failing = false;
                    for item in std::mem::take(&mut self.failed).into_iter().rev() {
                        self.retry.push_front(item);
                    }
                    self.pause(&mut shutdown, self.backoff).await;
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
                continue;
            }
            match topped {
                None | Some(TopUp::Sent) => {}
                Some(TopUp::Empty) => {
                    tokio::select! {
                        _ = self.backlog.notify.notified() => {}
                        _ = tokio::time::sleep(IDLE) => {}
                        _ = shutdown.changed() => {}
                    }
                }
                Some(TopUp::Wait) => self.idle(&mut shutdown).await,
                // The producer's in-flight limit, shared with live traffic and the other
                // forwarders: not a failure of Kafka, so no growing backoff.
                Some(TopUp::Backpressure) => self.pause(&mut shutdown, BACKPRESSURE_PAUSE).await,
                Some(TopUp::Refused) => {
                    self.pause(&mut shutdown, self.backoff).await;
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn pause(&self, shutdown: &mut tokio::sync::watch::Receiver<bool>, d: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = shutdown.changed() => {}
        }
    }

    /// Reads (retries first), checks and sends up to the window's free room.
    async fn top_up(&mut self, window: usize) -> TopUp {
        if !self.may_drain() {
            return TopUp::Wait;
        }
        if !self.core.producer.has_room_for_drain() {
            return TopUp::Backpressure;
        }
        let batch = match self.next_batch(window - self.flight.len()) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(stream = %self.stream, "reading the spool: {e}");
                return TopUp::Wait;
            }
        };
        if batch.is_empty() {
            return TopUp::Empty;
        }
        let batch = match self.deduplicate(batch).await {
            Ok(b) => b,
            Err(batch) => {
                // Not checkable yet: keep the batch, in order, for the next try.
                for item in batch.into_iter().rev() {
                    self.retry.push_front(item);
                }
                return TopUp::Wait;
            }
        };
        if let Some(limiter) = &self.core.drain_limiter {
            limiter.acquire(batch.len() as u64).await;
        }
        self.send(batch)
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

    /// Up to `limit` records: those to retry first, then new ones from the reader (at most
    /// 8 MiB of them).
    fn next_batch(&mut self, limit: usize) -> Result<Vec<Item>, spillway_spool::ReadError> {
        if !self.unset.is_empty() && self.unset_tried.elapsed() >= IDLE {
            for (record, why) in std::mem::take(&mut self.unset) {
                self.set_aside_or_keep(record, why);
            }
        }
        let window = limit.max(1);
        let mut batch: Vec<Item> = Vec::new();
        while batch.len() < window {
            match self.retry.pop_front() {
                Some(item) => batch.push(item),
                None => break,
            }
        }
        if batch.len() < window {
            let records = self.reader.read_batch(window - batch.len(), 8 << 20)?;
            // Sized once: the items are large, and growing would move them again and again.
            batch.reserve(records.len());
            for record in records {
                match Envelope::decode(&record.payload) {
                    Ok(envelope) => batch.push(Item {
                        position: record.position,
                        envelope,
                    }),
                    Err(e) => {
                        // Undecodable (written by a newer version, or damaged past the CRC): it
                        // cannot be delivered. Its bytes go to `undecodable.jsonl` (fsync'd)
                        // before it leaves the stream, so nothing disappears unseen.
                        tracing::error!(position = %record.position, "undecodable spooled record: {e}");
                        self.set_aside_or_keep(record, e.to_string());
                    }
                }
            }
        }
        Ok(batch)
    }

    /// Sets an undecodable record aside and resolves it; if `undecodable.jsonl` cannot be
    /// written, keeps it (unacknowledged, so it holds the stream's checkpoint) and tries again
    /// at a later batch. The records after it go on meanwhile: it can never be delivered, so
    /// there is no order to keep with it.
    fn set_aside_or_keep(&mut self, record: spillway_spool::Record, why: String) {
        self.unset_tried = Instant::now();
        match set_aside(self.core.spool.dir(), &record, &why) {
            Ok(()) => {
                tracing::warn!(position = %record.position, "undecodable record set aside in undecodable.jsonl");
                self.core
                    .metrics
                    .record(self.kind.topic(), Counted::DeadLettered);
                self.resolve(&record.position);
            }
            Err(io) => {
                tracing::error!(position = %record.position,
                    "cannot write undecodable.jsonl ({io}); the record stays in the spool, tried again later");
                self.unset.push_back((record, why));
            }
        }
    }

    /// Drops records already in Kafka from the batch (acknowledging them), and clears the
    /// *possibly persisted* mark of those that are not. `Err(batch)`: a needed tail cannot be
    /// read yet (partition unreachable or not settled); the batch comes back untouched.
    async fn deduplicate(&mut self, batch: Vec<Item>) -> Result<Vec<Item>, Vec<Item>> {
        if self.startup.is_none() {
            match self.startup_scan().await {
                Some(found) => self.startup = Some(found),
                None => return Err(batch),
            }
        }
        let mut pending: HashMap<i32, (Option<i64>, HashSet<SpillwayId>)> = HashMap::new();
        for item in batch.iter().filter(|_| self.core.config.drain.dedup) {
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
                return Err(batch);
            }
            let topic = self.kind.topic().to_string();
            let timeout = self.core.config.health.probe_timeout * 10;
            let core = self.core.clone();
            let result = tokio::task::spawn_blocking(move || {
                core.tail.lock().find(&topic, p, after, &ids, timeout)
            })
            .await;
            match result {
                Ok(Ok(checked)) => {
                    checked.report_partial(self.kind.topic(), p, &self.core.metrics.tail_partial);
                    found.extend(checked.found.into_iter().map(|(id, o)| (id, (p, o))));
                }
                Ok(Err(e)) => {
                    tracing::warn!(stream = %self.stream, partition = p, "tail check failed, will retry: {e}");
                    return Err(batch);
                }
                Err(e) => {
                    tracing::error!("tail check task: {e}");
                    return Err(batch);
                }
            }
        }
        // In place: the batch is mostly kept, and its items are large.
        let mut batch = batch;
        batch.retain_mut(|item| {
            let id = &item.envelope.record.id;
            let startup = self.startup.as_ref().and_then(|s| s.get(id)).copied();
            if let Some((p, o)) = found.get(id).copied().or(startup) {
                self.core.metrics.dedup_found.inc();
                self.delivered(&item.envelope.record, &item.position, p, Some(o));
                return false;
            }
            item.envelope.possibly_persisted = None;
            true
        });
        Ok(batch)
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
                Ok(checked) => {
                    checked.report_partial(&topic, p, &self.core.metrics.tail_partial);
                    all.extend(checked.found.into_iter().map(|(id, o)| (id, (p, o))));
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

    /// Sends `batch` in order behind the flight. What the producer does not take goes back to
    /// the front of the retry queue, in order.
    fn send(&mut self, batch: Vec<Item>) -> TopUp {
        let mut unsent = Vec::new();
        let mut end = TopUp::Sent;
        for item in batch {
            if end != TopUp::Sent {
                unsent.push(item);
                continue;
            }
            if !self.core.producer.has_room_for_drain() {
                // Half the in-flight limit is kept for live records; the rest waits for room.
                end = TopUp::Backpressure;
                unsent.push(item);
                continue;
            }
            let Item { position, envelope } = item;
            let Envelope {
                mut record,
                priority,
                partition,
                ..
            } = envelope;
            if let StreamKind::Partition(tp) = &self.kind {
                record.partition = Some(tp.partition);
            }
            // Its own retries keep the stream's order and check tails in batches; the
            // producer's would hold a record of the flight (and all behind it) for up to its
            // `resolve_timeout`. A delivery is counted, receipted and fed to the breaker on
            // the delivery thread (`crate::direct`); this task is left with the spool.
            let options = SendOptions {
                replace: false,
                ..crate::direct::observed(self.route)
            };
            let (e, record) = match self.core.producer.send_with(record, options) {
                Ok(delivery) => {
                    self.flight.push_back(Flying {
                        position,
                        priority,
                        partition,
                        delivery,
                    });
                    continue;
                }
                Err(refused) => *refused,
            };
            let item = Item {
                position,
                envelope: Envelope {
                    record,
                    priority,
                    partition,
                    possibly_persisted: None,
                },
            };
            match e {
                SendError::NoSuchPartition { .. } => {
                    tracing::error!(id = %item.envelope.record.id, "spooled for a partition that no longer exists; dead-lettered");
                    self.dead_lettered(&item, "NoSuchPartition");
                }
                e => {
                    tracing::debug!(stream = %self.stream, "drain paused: {e}");
                    end = if matches!(e, SendError::Backpressure(_)) {
                        TopUp::Backpressure
                    } else {
                        TopUp::Refused
                    };
                    unsent.push(item);
                }
            }
        }
        for item in unsent.into_iter().rev() {
            self.retry.push_front(item);
        }
        end
    }

    /// Handles the outcome of the oldest record in flight. A failure stops sending until the
    /// flight is answered (it cut the producer session, so nothing after it should have been
    /// delivered; what was anyway is not sent again, and counted in `spillway_order_breaks` on
    /// an ordered stream).
    fn answered(&mut self, flying: Flying, delivery: Delivery) {
        let Flying {
            position,
            priority,
            partition,
            ..
        } = flying;
        let retry = |position, record: Arc<OutRecord>, partition, possibly_persisted| Item {
            position,
            envelope: Envelope {
                record: Arc::unwrap_or_clone(record),
                priority,
                partition,
                possibly_persisted,
            },
        };
        match delivery.outcome {
            Outcome::Delivered {
                partition: p,
                offset,
            } => {
                if self.failing {
                    // Keyless records have no order to break (G3 is per key and per partition).
                    if matches!(self.kind, StreamKind::Partition(_)) {
                        self.core.metrics.order_breaks.inc();
                        tracing::error!(id = %delivery.record.id, "delivered after an earlier record of its stream failed");
                    }
                } else {
                    self.backoff = INITIAL_BACKOFF;
                }
                self.settle_delivered(&position, p, offset);
            }
            Outcome::Permanent {
                error,
                dead_lettered,
                ..
            } => {
                self.core
                    .on_dead_lettered(&delivery.record, &error.reason(), dead_lettered);
                self.resolve(&position);
            }
            Outcome::NotPersisted { error, .. } => {
                self.core
                    .breaker_outcome(self.route, false, delivery.sent_at);
                self.core.count_delivery_error(self.kind.topic(), &error);
                self.failing = true;
                self.failed
                    .push(retry(position, delivery.record, partition, None));
            }
            Outcome::PossiblyPersisted {
                partition: p,
                error,
                known_before,
            } => {
                self.core
                    .breaker_outcome(self.route, false, delivery.sent_at);
                self.core.count_delivery_error(self.kind.topic(), &error);
                self.failing = true;
                self.failed.push(retry(
                    position,
                    delivery.record,
                    Some(p),
                    Some(known_before),
                ));
            }
        }
    }

    /// A record found in Kafka by a tail check: counted and receipted here.
    fn delivered(
        &mut self,
        record: &OutRecord,
        position: &Position,
        partition: i32,
        offset: Option<i64>,
    ) {
        let core = &self.core;
        count_delivered(&core.metrics, &core.receipts, record, partition, offset);
        self.settle_delivered(position, partition, offset);
    }

    /// A record in Kafka leaves the stream; its offset is the partition's newest known.
    fn settle_delivered(&mut self, position: &Position, partition: i32, offset: Option<i64>) {
        if let Some(o) = offset {
            let e = self.offsets.entry(partition).or_insert(o);
            *e = (*e).max(o);
        }
        self.resolve(position);
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

    fn ack(&mut self, position: &Position) {
        encode_offsets_into(&self.offsets, &mut self.meta);
        if let Err(e) = self.reader.ack_with_meta(position.seq, &self.meta) {
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
/// most 80 partitions fit the spool's 1 KiB; the highest offsets are kept. Written into `out`
/// (cleared first), which allocates nothing once `out` is big enough.
fn encode_offsets_into(offsets: &BTreeMap<i32, i64>, out: &mut Vec<u8>) {
    let put = |out: &mut Vec<u8>, (p, o): (i32, i64)| {
        out.extend_from_slice(&p.to_le_bytes());
        out.extend_from_slice(&o.to_le_bytes());
    };
    out.clear();
    if offsets.len() <= 80 {
        out.extend_from_slice(&(offsets.len() as u16).to_le_bytes());
        offsets.iter().for_each(|(p, o)| put(out, (*p, *o)));
        return;
    }
    let mut entries: Vec<(i32, i64)> = offsets.iter().map(|(p, o)| (*p, *o)).collect();
    entries.sort_by_key(|(_, o)| std::cmp::Reverse(*o));
    entries.truncate(80);
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    entries.into_iter().for_each(|e| put(out, e));
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

    fn encode_offsets(offsets: &BTreeMap<i32, i64>) -> Vec<u8> {
        let mut out = vec![9; 3];
        encode_offsets_into(offsets, &mut out);
        out
    }

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
