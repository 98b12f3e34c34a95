//! A lane: the ordered path of one partition's records in `failover` and `spool_on_failure`.
//!
//! Every ordered record (keyed, or with an explicit partition) of a partition enters its lane
//! in the order `send` was called (a channel). The lane's task sends each record straight to
//! Kafka while it may (breaker closed, partition healthy, nothing of the partition in the
//! spool), and otherwise appends it to the partition's spool stream. Its queue is resolved
//! strictly in order:
//!
//! - a record sent to Kafka is answered when Kafka answers: delivered (200), or, if the
//!   delivery failed, it is appended to the spool *then*, at its place in the order (202);
//! - a record for the spool is appended only when every record before it in the lane has been
//!   either delivered or appended, so spool order is send order.
//!
//! Once anything of the partition is in the spool, the lane keeps spooling until the forwarder
//! has delivered the whole backlog (G3: the backlog drains before new records go direct).
//! A failure of one record in flight comes with a session cut (see `producer`), so the records
//! after it fail too and follow it into the spool, in order.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::FutureExt;
use futures::future::BoxFuture;
use spillway_spool::{AppendError, RecordIn, Seq, StreamName};
use tokio::sync::{mpsc, oneshot};

use crate::api::{Accepted, Priority, ReceiptStatus, RejectReason, Rejected};
use crate::core::{Backlog, Core};
use crate::direct::{accepted, observed};
use crate::envelope::Envelope;
use crate::health::TopicPartition;
use crate::producer::{Delivery, DeliveryFuture, Outcome, SendError};
use crate::record::OutRecord;

pub(crate) type Reply = oneshot::Sender<Result<Accepted, Rejected>>;

/// A record entering a lane.
pub(crate) struct Submission {
    pub record: OutRecord,
    pub priority: Priority,
    pub reply: Reply,
}

/// The handle of a lane: submit records in order.
#[derive(Debug)]
pub(crate) struct Lane {
    tx: mpsc::UnboundedSender<Submission>,
}

impl Lane {
    pub(crate) fn start(
        core: &Arc<Core>,
        tp: TopicPartition,
        stream: StreamName,
        route: usize,
    ) -> Lane {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = LaneTask {
            core: core.clone(),
            backlog: core.backlog(&stream),
            tp,
            stream,
            route,
            queue: VecDeque::new(),
            direct: 0,
            queued: 0,
            spooling: false,
        };
        tokio::spawn(task.run(rx));
        Lane { tx }
    }

    /// Places the record in the lane's order now; the answer comes on `reply`. False if the
    /// lane stopped (shutdown).
    pub(crate) fn submit(&self, submission: Submission) -> bool {
        self.tx.send(submission).is_ok()
    }
}

enum Entry {
    /// Sent to Kafka, waiting for its outcome.
    Direct {
        fut: DeliveryFuture,
        priority: Priority,
        reply: Reply,
    },
    /// Waiting for earlier records before it can be appended.
    Queued { envelope: Envelope, reply: Reply },
    /// Appended, waiting for the fsync.
    Appending {
        fut: BoxFuture<'static, Result<Seq, AppendError>>,
        envelope: Envelope,
        reply: Reply,
    },
}

enum Resolved {
    Direct(Delivery),
    Appended(Result<Seq, AppendError>),
}

struct LaneTask {
    core: Arc<Core>,
    /// The stream's backlog (the core never drops one).
    backlog: Arc<Backlog>,
    tp: TopicPartition,
    stream: StreamName,
    route: usize,
    queue: VecDeque<Entry>,
    /// `Direct` entries in `queue`, and `Queued` ones: so that no question about the queue
    /// needs a walk through it (it holds up to the whole in-flight window).
    direct: usize,
    queued: usize,
    /// Once set, records go to the spool until the backlog is delivered.
    spooling: bool,
}

impl LaneTask {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Submission>) {
        let mut open = true;
        // A record waits on Kafka at most this long before its partition is declared unhealthy
        // (which cuts the session: it comes back and goes to the spool). This bounds the wait
        // also when the producer cannot tell yet (a fresh session's grace, a cluster never
        // reached since start).
        let patience = self.core.config.health.stall_after * 2;
        let mut front_since: Option<Instant> = None;
        // One timer for the lane's life, set again only when it fires before the real
        // deadline (the front moved on meanwhile): not once per record.
        let alarm = tokio::time::sleep(patience);
        tokio::pin!(alarm);
        let mut armed = false;
        while open || !self.queue.is_empty() {
            let waiting_direct = matches!(self.queue.front(), Some(Entry::Direct { .. }));
            if !waiting_direct {
                front_since = None;
            } else if front_since.is_none() {
                front_since = Some(Instant::now());
            }
            let deadline = front_since.map(|t| t + patience);
            if let (Some(d), false) = (deadline, armed) {
                alarm.as_mut().reset(d.into());
                armed = true;
            }
            tokio::select! {
                biased;
                resolved = std::future::poll_fn(|cx| poll_front(&mut self.queue, cx)),
                    if !self.queue.is_empty() => {
                    front_since = None;
                    self.on_resolved(resolved);
                }
                () = &mut alarm, if armed => {
                    armed = false;
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        tracing::warn!(partition = %self.tp, "a record waited {patience:?} on Kafka; failing the partition over");
                        self.core.producer.mark_unhealthy(&self.tp.topic, self.tp.partition, "a record waited too long on Kafka");
                        front_since = Some(Instant::now());
                    }
                }
                sub = rx.recv(), if open => match sub {
                    Some(s) => self.admit(s),
                    None => open = false,
                },
            }
        }
    }

    fn may_go_direct(&mut self) -> bool {
        let core = &self.core;
        if self.queue.len() > self.direct {
            return false;
        }
        let clear = core.route_open_for_direct(self.route)
            && core.producer.is_healthy(&self.tp.topic, self.tp.partition)
            && self.backlog.unresolved.load(Ordering::Acquire) == 0;
        if self.spooling && clear {
            tracing::info!(partition = %self.tp, "backlog delivered; records go straight to Kafka again");
            self.spooling = false;
        }
        !self.spooling && clear
    }

    fn admit(&mut self, s: Submission) {
        let Submission {
            record,
            priority,
            reply,
        } = s;
        if self.may_go_direct() {
            // Sent to the partition chosen at admission; the envelope keeps the client's own
            // (explicit or not) partition field.
            let mut out = record;
            let client_partition = out.partition.replace(self.tp.partition);
            let sent = self.core.producer.send_with(out, observed(self.route));
            let (e, mut record) = match sent {
                Ok(fut) => {
                    self.queue.push_back(Entry::Direct {
                        fut,
                        priority,
                        reply,
                    });
                    self.direct += 1;
                    return;
                }
                Err(refused) => *refused,
            };
            record.partition = client_partition;
            match e {
                SendError::NoSuchPartition { .. } => {
                    let _ = reply.send(Err(Rejected::new(
                        RejectReason::Invalid,
                        "no such partition",
                    )));
                    return;
                }
                e => {
                    tracing::debug!(partition = %self.tp, "not sent directly ({e}); spooling");
                    self.spooling = true;
                    self.push_for_spool(self.envelope(record, priority, None), reply);
                    return;
                }
            }
        }
        self.spooling = true;
        let envelope = self.envelope(record, priority, None);
        self.push_for_spool(envelope, reply);
    }

    fn envelope(
        &self,
        record: OutRecord,
        priority: Priority,
        possibly: Option<Option<i64>>,
    ) -> Envelope {
        Envelope {
            record,
            priority,
            partition: Some(self.tp.partition),
            possibly_persisted: possibly,
        }
    }

    /// Queues a record for the spool behind any record still in flight to Kafka.
    fn push_for_spool(&mut self, envelope: Envelope, reply: Reply) {
        if self.direct > 0 {
            self.queue.push_back(Entry::Queued { envelope, reply });
            self.queued += 1;
        } else {
            let entry = self.append(envelope, reply);
            self.queue.push_back(entry);
        }
    }

    fn append(&self, envelope: Envelope, reply: Reply) -> Entry {
        let fut = self.core.append(&self.stream, &envelope);
        Entry::Appending {
            fut,
            envelope,
            reply,
        }
    }

    /// Appends queued records up to the next record still in flight to Kafka.
    fn advance(&mut self) {
        if self.queued == 0 {
            return;
        }
        for i in 0..self.queue.len() {
            match &self.queue[i] {
                Entry::Direct { .. } => return,
                Entry::Appending { .. } => continue,
                Entry::Queued { .. } => {
                    let Entry::Queued { envelope, reply } =
                        self.queue.remove(i).expect("index in range")
                    else {
                        unreachable!()
                    };
                    let entry = self.append(envelope, reply);
                    self.queue.insert(i, entry);
                    self.queued -= 1;
                }
            }
        }
    }

    fn on_resolved(&mut self, resolved: Resolved) {
        let entry = self.queue.pop_front().expect("resolved the front");
        if matches!(entry, Entry::Direct { .. }) {
            self.direct -= 1;
        }
        match (entry, resolved) {
            (
                Entry::Direct {
                    priority, reply, ..
                },
                Resolved::Direct(delivery),
            ) => {
                self.on_delivery(delivery, priority, reply);
            }
            (
                Entry::Appending {
                    envelope, reply, ..
                },
                Resolved::Appended(result),
            ) => {
                let answer = self.core.on_appended(&self.stream, &envelope, result);
                let _ = reply.send(answer);
            }
            _ => unreachable!("front() resolves the front entry's own future"),
        }
        self.advance();
    }

    fn on_delivery(&mut self, delivery: Delivery, priority: Priority, reply: Reply) {
        let core = &self.core;
        if let Outcome::Delivered { partition, offset } = delivery.outcome {
            let _ = reply.send(Ok(accepted(&delivery.record, partition, offset)));
            return;
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
                let _ = reply.send(Err(Rejected::new(
                    RejectReason::Permanent,
                    error.to_string(),
                )));
            }
            Outcome::NotPersisted { error, .. } => {
                core.breaker_outcome(self.route, false, delivery.sent_at);
                core.count_delivery_error(&record.topic, &error);
                self.spooling = true;
                let envelope = self.envelope(record, priority, None);
                let entry = self.append(envelope, reply);
                self.queue.push_front(entry);
            }
            Outcome::PossiblyPersisted {
                error,
                known_before,
                ..
            } => {
                core.breaker_outcome(self.route, false, delivery.sent_at);
                core.count_delivery_error(&record.topic, &error);
                self.spooling = true;
                let envelope = self.envelope(record, priority, Some(known_before));
                let entry = self.append(envelope, reply);
                self.queue.push_front(entry);
            }
        }
    }
}

/// Polls the front entry's future (a `Queued` front never resolves: `advance` turns those
/// into appends first).
fn poll_front(queue: &mut VecDeque<Entry>, cx: &mut Context<'_>) -> Poll<Resolved> {
    match queue.front_mut() {
        Some(Entry::Direct { fut, .. }) => fut.poll_unpin(cx).map(Resolved::Direct),
        Some(Entry::Appending { fut, .. }) => fut.as_mut().poll(cx).map(Resolved::Appended),
        _ => Poll::Pending,
    }
}

/// The receipt of a record appended to the spool.
pub(crate) fn pending_receipt(envelope: &Envelope) -> ReceiptStatus {
    ReceiptStatus::Pending {
        topic: envelope.record.topic.clone(),
        partition: envelope.partition,
    }
}

pub(crate) fn record_in(envelope: &Envelope) -> RecordIn {
    RecordIn::new(envelope.encode())
}
