//! # spillway: keep accepting writes when Kafka cannot
//!
//! The library an intake service embeds, and the engine behind the HTTP gateway. A record
//! [`Spillway::send`] accepts is either acknowledged by Kafka with `acks=all` or fsync'd to the
//! spool (`spillway-spool`), and reaches Kafka once and in order per key when the cluster returns.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use spillway::{Accepted, Mode, Record, Route, Spillway, SpillwayConfig};
//! let mut config = SpillwayConfig::new("kafka-1:9092,kafka-2:9092", "/var/lib/spillway");
//! config.default_route = Route::new("*", Mode::Failover);
//! let spillway = Spillway::start(config)?;
//! match spillway.send(Record::new("orders").key("customer-42").value("{...}")).await {
//!     Ok(Accepted::Delivered { partition, offset, .. }) => { /* in Kafka (200) */ }
//!     Ok(Accepted::Spooled { id, .. }) => { /* durable in the spool, will follow (202) */ }
//!     Err(rejected) => { /* not accepted: keep the record, retry after rejected.retry_after */ }
//! }
//! # Ok(()) }
//! ```
//!
//! ## The path of one record
//! [`Spillway::send`] (`admission`): validate (topic name, partition) → route by topic
//! ([`route`]) → refuse when the spool is full, shed priorities below the route's threshold
//! while degraded (breaker open, or spool above its high watermark) → assign a
//! [`record::SpillwayId`] → choose the partition ([`partitioner`]: murmur2 for keys, like the
//! Java client; explicit honoured; keyless chosen at delivery) → then, per the route's [`Mode`]:
//! - **spool_first**: append to the stream of its partition (or the topic's keyless stream),
//!   answer [`Accepted::Spooled`] after the group-commit fsync; a *forwarder* drains each
//!   stream in order (`forwarder`).
//! - **failover** / **spool_on_failure**: ordered records enter their partition's *lane*
//!   (`lane`): straight to Kafka while the route's breaker is closed, the partition is healthy
//!   and nothing of the partition is in the spool; otherwise, and from the first failure on,
//!   into the spool in send order, until the forwarder has delivered that backlog. Keyless
//!   records go straight to Kafka (the producer places them on healthy partitions) and are
//!   spooled if Kafka cannot take them. `spool_on_failure` ignores the breaker and, without
//!   `auto_replay`, drains only on [`Spillway::replay`].
//! - **direct**: Kafka or nothing — `backpressure` rejects with Retry-After (optionally after
//!   blocking), `drop` rejects at once and counts the record as dropped.
//!
//! Whatever a delivery to Kafka costs besides its answer — the topic's counters, the receipt,
//! the route's breaker window — is done on the producer's delivery thread as the report
//! arrives (`direct`, [`producer::DeliveryObserver`]), not by the task awaiting the answer:
//! a single sending task (or a forwarder) keeps only the send and, for a forwarder, the
//! spool's acknowledgement.
//!
//! ## How the guarantees are kept
//! - **G1 (acknowledgement).** An answer is `Accepted` only from a Kafka delivery report with
//!   `acks=all` (enforced by [`config::KafkaSettings`], whose lint refuses unsafe settings) or
//!   from a completed spool append (fsync per the policy, `Always` by default).
//! - **G2 (delivery).** Spooled records stay until their forwarder has Kafka's acknowledgement
//!   (or a permanent refusal, which goes to the dead-letter log with its reason, [`mod@classify`]).
//! - **G3 (order).** Per partition, one lane fixes the order at `send`; the forwarder sends a
//!   stream in order and retries from the first failure. The producer never lets librdkafka
//!   give up on a record by itself: it detects stalls and *cuts* the session (purge, fresh
//!   producer), so when a record fails no later record of its partition can still succeed
//!   ([`producer`]). The rare exception (a record acknowledged after an earlier one failed) is
//!   counted in `spillway_order_breaks_total`.
//! - **G4 (once).** Every record carries `spillway.id`. Records whose fate is unknown (an
//!   attempt without an answer, or the head of a stream after a restart) are looked for in
//!   their partition's tail after the last offset known delivered (kept in the spool
//!   checkpoint) before they are sent again ([`tail`]).
//! - **G5 (bounded resources).** In-flight bytes are bounded in the producer; the spool is
//!   bounded by capacity (then [`RejectReason::Full`]); nothing grows with an outage's length
//!   but the spool.
//! - **G6 (visibility).** Every shed, drop, dead letter, fsync, breaker transition and failover
//!   is counted in [`metrics`] and logged with its reason.
//!
//! ## Health, breaker, canary
//! [`health`] decides whether a partition's leader is reachable from here (progress of records
//! in flight, broker statistics, probes of the leader) — librdkafka's own notion stays true
//! under KAFKA-3686. [`breaker`] opens a route on a high error rate, a long stall or no
//! reachable broker; a [`canary`] that produces to and consumes from `__spillway_canary` closes
//! it. A record never waits on Kafka longer than twice `health.stall_after`: then its
//! partition (and its leader's other partitions) fail over.
//!
//! ## Modules
//! [`api`] (what callers see), [`settings`] (configuration), [`producer`] (the Kafka side),
//! [`health`], [`partitioner`], [`mod@classify`], [`deadletter`], [`tail`], [`envelope`] (the spool
//! payload format), [`streams`] (stream names), [`breaker`], [`canary`], [`metrics`], [`route`],
//! [`limiter`]; internal: `engine` ([`Spillway`], supervisor), `core`, `admission`, `lane`,
//! `forwarder`, `direct`, `receipts`.
//!
//! ## Limits worth knowing
//! - A keyed record needs its topic's partition count: from metadata, the configuration
//!   (`[[topics]]`), or a previous run (`partitions.json` in the spool). With none of them and
//!   Kafka unreachable, it is refused as unavailable.
//! - Receipts are kept in memory (bounded) and do not survive a restart.
//! - A tail check reads at most `drain.max_tail_scan` records: of a longer tail, the part where
//!   the record most likely is. A record not found there is sent again and may be duplicated
//!   (logged, and counted in `spillway_tail_checks_partial_total`); it is never held back.

mod admission;
pub mod api;
pub mod breaker;
pub mod canary;
pub mod classify;
pub mod config;
mod core;
pub mod deadletter;
mod direct;
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
pub use producer::StartError as ProducerStartError;
pub use producer::{
    Delivery, DeliveryError, DeliveryFuture, DeliveryObserver, Outcome, Producer, ProducerOptions,
    SendError, SendOptions,
};
pub use record::{IdGenerator, OutRecord, SpillwayId};
pub use route::{FailurePolicy, Mode, Route};
pub use settings::SpillwayConfig;
