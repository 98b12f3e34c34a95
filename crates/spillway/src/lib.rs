//! # spillway: keep accepting writes when Kafka cannot
//!
//! The library an intake service embeds (and the gateway's engine). A record accepted by
//! Spillway is either acknowledged by Kafka with `acks=all` or fsync'd to the spool
//! (`spillway-spool`), and reaches Kafka once and in order per key when the cluster returns.
//! The design is written here as it is built.

mod admission;
pub mod api;
pub mod breaker;
pub mod canary;
pub mod classify;
pub mod config;
mod core;
pub mod deadletter;
mod engine;
pub mod envelope;
mod forwarder;
pub mod health;
mod lane;
pub mod limiter;
pub mod metrics;
pub mod partitioner;
pub mod producer;
mod receipts;
pub mod record;
pub mod route;
pub mod settings;
pub mod streams;
pub mod tail;

pub use api::{Accepted, Priority, ReceiptStatus, Record, RejectReason, Rejected};
pub use classify::{ErrorClass, classify};
pub use config::{Compression, ConfigError, Finding, KafkaSettings, Severity, lint};
pub use engine::{Spillway, StartError, Status};
pub use producer::{
    Delivery, DeliveryError, DeliveryFuture, Outcome, Producer, ProducerOptions, SendError,
};
pub use record::{IdGenerator, OutRecord, SpillwayId};
pub use route::{FailurePolicy, Mode, Route};
pub use settings::SpillwayConfig;
