//! The engine behind the HTTP layer: what the gateway needs from the `spillway` library.
//!
//! The gateway talks to this trait, not to `spillway::Spillway` directly, so router tests can run
//! against a scripted engine; production implements it for the library (see `spillway_engine`).
//!
//! Ordering contract: a record's place in its stream's order is fixed when [`Engine::send`] is
//! *called* (before the returned future is polled). The gateway calls `send` for the records of
//! one request in order and may then await the futures concurrently; order is kept.

use std::time::Duration;

use futures::future::BoxFuture;
use spillway::record::SpillwayId;
use spillway::{Accepted, ReceiptStatus, Record, Rejected};

/// Whether a topic may be written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicKnown {
    /// Configured, or present in the cluster's metadata.
    Known,
    /// Not configured and absent from the metadata: 404.
    Unknown,
}

/// Whether the engine can accept records durably right now (`/readyz`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    pub reason: String,
}

/// What the gateway needs from the library.
pub trait Engine: Send + Sync + 'static {
    /// Hands one record over; resolves once it is delivered or durably spooled (G1), or refused.
    fn send(&self, record: Record) -> BoxFuture<'static, Result<Accepted, Rejected>>;

    /// Waits up to `timeout` for an accepted record to reach Kafka (or be dead-lettered), and
    /// returns its status then.
    fn wait_final(&self, id: &SpillwayId, timeout: Duration) -> BoxFuture<'static, ReceiptStatus>;

    /// The status of a receipt, by id (the text of a [`SpillwayId`]).
    fn receipt(&self, id: &str) -> ReceiptStatus;

    /// Whether `topic` may be written (allow-list or metadata; during an outage an allow-listed
    /// topic stays known).
    fn topic_known(&self, topic: &str) -> TopicKnown;

    /// Readiness for `/readyz`.
    fn readiness(&self) -> Readiness;

    /// The full picture for `/status`, as JSON.
    fn status(&self) -> serde_json::Value;

    /// Adds the engine's metrics to the gateway's registry.
    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry);

    /// Flushes and stops within `deadline`; undelivered records stay in the spool.
    fn shutdown(&self, deadline: Duration) -> BoxFuture<'static, ()>;

    /// The engine's `spillway_sheds_total` family, when it registers one: the gateway then
    /// counts its own sheds (in-flight bytes, concurrency) in it instead of a second family.
    fn shed_family(&self) -> Option<crate::metrics::ShedFamily> {
        None
    }
}
