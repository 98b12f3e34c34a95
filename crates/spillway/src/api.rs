//! The types an application (or the gateway) uses to hand records to Spillway and hear back.
//!
//! - [`Record`]: what the application sends.
//! - `send` answers [`Accepted`] (delivered to Kafka, or durably spooled) or [`Rejected`] (not
//!   accepted: the caller keeps the record; [`Rejected::retry_after`] says when to try again).
//! - A spooled record's [`ReceiptStatus`] can be looked up by its id until it is delivered or
//!   dead-lettered (and for a while after).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::record::SpillwayId;

/// Priority class of a record (DESIGN § Priority and shedding). Ordered: `Bulk < Normal <
/// Critical`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Bulk,
    #[default]
    Normal,
    Critical,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Bulk => "bulk",
            Priority::Normal => "normal",
            Priority::Critical => "critical",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown priority name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown priority {0:?} (expected critical, normal or bulk)")]
pub struct UnknownPriority(pub String);

impl FromStr for Priority {
    type Err = UnknownPriority;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "critical" => Ok(Priority::Critical),
            "normal" => Ok(Priority::Normal),
            "bulk" => Ok(Priority::Bulk),
            other => Err(UnknownPriority(other.to_string())),
        }
    }
}

/// A record as an application hands it to Spillway.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    /// An explicit partition; `None` lets Spillway choose (by key, or sticky for keyless).
    pub partition: Option<i32>,
    /// Milliseconds since the epoch; `None` lets Spillway stamp it.
    pub timestamp_ms: Option<i64>,
    /// `None` takes the route's default.
    pub priority: Option<Priority>,
}

impl Record {
    pub fn new(topic: impl Into<String>) -> Self {
        Self {
            topic: topic.into(),
            ..Self::default()
        }
    }

    pub fn key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn value(mut self, value: impl Into<Vec<u8>>) -> Self {
        self.value = Some(value.into());
        self
    }

    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = Some(priority);
        self
    }
}

/// How a record was accepted (DESIGN G1: either holds before Spillway says yes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Accepted {
    /// Kafka acknowledged it with acks=all. HTTP 200.
    Delivered {
        id: SpillwayId,
        partition: i32,
        /// `None` when librdkafka acknowledged it without an offset.
        offset: Option<i64>,
    },
    /// It is in the spool, durable per the fsync policy, and will be delivered in order.
    /// HTTP 202; `id` is the receipt id.
    Spooled {
        id: SpillwayId,
        partition: Option<i32>,
    },
}

impl Accepted {
    pub fn id(&self) -> &SpillwayId {
        match self {
            Accepted::Delivered { id, .. } | Accepted::Spooled { id, .. } => id,
        }
    }
}

/// Why a record was not accepted. Nothing about it is stored; the caller keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The record is malformed for Kafka (empty topic, invalid partition...). HTTP 422.
    Invalid,
    /// The topic is not configured and not in the cluster's metadata. HTTP 404.
    UnknownTopic,
    /// Degraded and the record's priority is below the route's threshold. HTTP 503.
    Shed,
    /// The spool is at capacity: nothing can be accepted durably. HTTP 503.
    Full,
    /// Too much in flight (bounded memory). HTTP 429.
    Backpressure,
    /// Kafka is unavailable and the route does not spool. HTTP 503.
    Unavailable,
    /// A `drop`-mode route shed the record while Kafka is unavailable. HTTP 503.
    Dropped,
    /// Kafka refuses this record for what it is (too large, not authorised...); it was
    /// dead-lettered. HTTP 422.
    Permanent,
    /// Spillway is shutting down. HTTP 503.
    ShuttingDown,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Invalid => "invalid",
            RejectReason::UnknownTopic => "unknown_topic",
            RejectReason::Shed => "shed",
            RejectReason::Full => "full",
            RejectReason::Backpressure => "backpressure",
            RejectReason::Unavailable => "unavailable",
            RejectReason::Dropped => "dropped",
            RejectReason::Permanent => "permanent",
            RejectReason::ShuttingDown => "shutting_down",
        }
    }
}

/// A refusal, with whether and when to retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("{}: {message}", reason.as_str())]
pub struct Rejected {
    pub reason: RejectReason,
    /// When retrying makes sense (jittered for shedding); `None`: do not retry as is.
    #[serde(serialize_with = "serialize_opt_secs")]
    pub retry_after: Option<Duration>,
    pub message: String,
}

fn serialize_opt_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

impl Rejected {
    pub fn new(reason: RejectReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            retry_after: None,
            message: message.into(),
        }
    }

    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// Whether sending the same record again later can succeed.
    pub fn is_retriable(&self) -> bool {
        !matches!(
            self.reason,
            RejectReason::Invalid | RejectReason::UnknownTopic | RejectReason::Permanent
        )
    }
}

/// The fate of an accepted record, by receipt id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ReceiptStatus {
    /// Accepted into the spool; not yet acknowledged by Kafka.
    Pending {
        topic: String,
        partition: Option<i32>,
    },
    /// In Kafka.
    Delivered {
        topic: String,
        partition: i32,
        offset: Option<i64>,
    },
    /// Refused by Kafka for what it is; in the dead-letter log with this reason.
    DeadLettered { topic: String, reason: String },
    /// Not known to this instance (never accepted here, or forgotten: receipts are kept in
    /// memory for a bounded number of recent records and do not survive a restart).
    Unknown,
}
