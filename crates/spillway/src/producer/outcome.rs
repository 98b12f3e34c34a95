//! What became of a record: the outcome types, the future that yields them, and send errors.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rdkafka::types::RDKafkaErrorCode;

use super::ticket::Waiter;
use crate::ErrorClass;
use crate::record::OutRecord;

/// A delivery error: the librdkafka code (if any), its class, and a message for humans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryError {
    pub code: Option<RDKafkaErrorCode>,
    pub class: ErrorClass,
    pub message: String,
}

impl DeliveryError {
    pub(crate) fn from_code(code: RDKafkaErrorCode) -> Self {
        Self {
            code: Some(code),
            class: crate::classify(code),
            message: code.to_string(),
        }
    }

    pub(crate) fn local(class: ErrorClass, message: impl Into<String>) -> Self {
        Self {
            code: None,
            class,
            message: message.into(),
        }
    }

    /// A short name for metrics and dead-letter reasons (`MessageSizeTooLarge`, ...).
    pub fn reason(&self) -> String {
        match self.code {
            Some(code) => format!("{code:?}"),
            None => self.message.clone(),
        }
    }
}

impl fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:?})", self.message, self.class)
    }
}

/// What Kafka did with a record, as far as anyone can know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Kafka acknowledged it (acks=all) in this partition, at this offset when the broker said
    /// (librdkafka reports some acknowledgements, such as a retried batch the broker already
    /// had, without an offset).
    Delivered { partition: i32, offset: Option<i64> },
    /// Surely not in Kafka: never sent, or refused with nothing written. Safe to resend.
    NotPersisted {
        partition: Option<i32>,
        error: DeliveryError,
    },
    /// Sent without an answer: it may be in Kafka. Check the partition's tail for its
    /// `spillway.id`, from after `known_before` (the last offset known delivered to that
    /// partition before it was sent), before resending.
    PossiblyPersisted {
        partition: i32,
        error: DeliveryError,
        known_before: Option<i64>,
    },
    /// Kafka refuses this record for what it is; it went to the dead-letter channel.
    Permanent {
        partition: Option<i32>,
        error: DeliveryError,
        dead_lettered: bool,
    },
}

impl Outcome {
    pub fn is_delivered(&self) -> bool {
        matches!(self, Outcome::Delivered { .. })
    }
}

/// A record's final report.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub record: Arc<OutRecord>,
    pub outcome: Outcome,
    /// How many times the record was handed to librdkafka (re-placements count).
    pub attempts: u32,
    /// The producer session of the last attempt (a session ends when the producer is cut).
    pub session: u64,
    /// When the last attempt was handed to librdkafka.
    pub sent_at: std::time::Instant,
}

/// Resolves to the record's [`Delivery`]. Works in async code (`.await`) and sync code
/// ([`DeliveryFuture::wait`]).
#[derive(Debug)]
pub struct DeliveryFuture {
    pub(super) waiter: Waiter,
    fallback: Option<Arc<OutRecord>>,
}

impl DeliveryFuture {
    pub(crate) fn new(waiter: Waiter, record: Arc<OutRecord>) -> Self {
        Self {
            waiter,
            fallback: Some(record),
        }
    }

    /// Whether the record is in librdkafka right now, waiting for Kafka. False while the
    /// producer holds it itself: waiting to be re-placed, or for the tail check that decides
    /// whether a possibly persisted record is in Kafka. Cutting the session helps only the first.
    pub fn in_librdkafka(&self) -> bool {
        self.waiter.in_librdkafka()
    }

    /// Blocks until the delivery report. Do not call from inside an async runtime (it would
    /// block a worker thread).
    pub fn wait(mut self) -> Delivery {
        match self.waiter.wait() {
            Some(d) => d,
            None => lost_reply(self.fallback.take()),
        }
    }
}

impl Future for DeliveryFuture {
    type Output = Delivery;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Delivery> {
        match self.waiter.poll(cx) {
            Poll::Ready(Some(d)) => Poll::Ready(d),
            Poll::Ready(None) => Poll::Ready(lost_reply(self.fallback.take())),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The reply channel closed without a report: only possible if the producer was torn down
/// mid-flight. The record was not confirmed, so report it as possibly persisted (the caller
/// keeps it and deduplicates), never as delivered.
fn lost_reply(record: Option<Arc<OutRecord>>) -> Delivery {
    let record = record.expect("a delivery future resolves once");
    Delivery {
        outcome: Outcome::PossiblyPersisted {
            partition: record.partition.unwrap_or(-1),
            error: DeliveryError::local(
                ErrorClass::Transient,
                "producer shut down before reporting",
            ),
            known_before: None,
        },
        // Unknown: taken as now.
        sent_at: std::time::Instant::now(),
        record,
        attempts: 0,
        session: 0,
    }
}

/// Why a record was not handed to Kafka at all. Nothing was written; the caller keeps it.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The record's partition (by key or explicit) is unhealthy; resending to it now would
    /// stall. Transient: spool it, or retry after the partition recovers.
    #[error("partition {topic}/{partition} is unhealthy: {reason}")]
    PartitionUnhealthy {
        topic: String,
        partition: i32,
        reason: String,
    },
    /// No partition of the topic is healthy (keyless record). Transient.
    #[error("no healthy partition for topic {0}")]
    NoHealthyPartition(String),
    /// The topic's metadata could not be fetched (cluster unreachable?). Transient.
    #[error("metadata for topic {topic} unavailable: {reason}")]
    MetadataUnavailable { topic: String, reason: String },
    /// The explicit partition does not exist. Permanent for this record.
    #[error("topic {topic} has no partition {partition} (it has {partitions})")]
    NoSuchPartition {
        topic: String,
        partition: i32,
        partitions: i32,
    },
    /// The in-flight limit (records or bytes) is reached: backpressure. Transient.
    #[error("in-flight limit reached ({0}); retry shortly")]
    Backpressure(String),
    /// librdkafka refused the record when it was enqueued.
    #[error("librdkafka refused the record: {0}")]
    Kafka(DeliveryError),
    /// The producer is shutting down. Not retriable on this producer.
    #[error("producer is closed")]
    Closed,
}

impl SendError {
    /// Whether trying again later can succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            SendError::NoSuchPartition { .. } | SendError::Closed => false,
            SendError::Kafka(e) => e.class != ErrorClass::Permanent,
            _ => true,
        }
    }
}
