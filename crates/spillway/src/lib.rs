//! # spillway: keep accepting writes when Kafka cannot
//!
//! The library an intake service embeds (and the gateway's engine). A record accepted by
//! Spillway is either acknowledged by Kafka with `acks=all` or fsync'd to the spool
//! (`spillway-spool`), and reaches Kafka once and in order per key when the cluster returns.
//! The design is written here as it is built.

pub mod api;
pub mod classify;
pub mod config;
pub mod deadletter;
pub mod envelope;
pub mod health;
pub mod partitioner;
pub mod producer;
pub mod record;
pub mod tail;

pub use api::{Accepted, Priority, ReceiptStatus, Record, RejectReason, Rejected};
pub use classify::{ErrorClass, classify};
pub use config::{Compression, ConfigError, Finding, KafkaSettings, Severity, lint};
pub use producer::{
    Delivery, DeliveryError, DeliveryFuture, Outcome, Producer, ProducerOptions, SendError,
};
pub use record::{IdGenerator, OutRecord, SpillwayId};
