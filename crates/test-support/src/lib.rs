//! # spillway-test-support: real components for tests
//!
//! Spillway's promise ("no acknowledged record is lost when Kafka fails") can only be checked
//! against real brokers and real faults. This crate provides them, and the oracle that judges a
//! run. Nothing here is a mock of Kafka: it is either a real broker process or librdkafka's own
//! in-process mock cluster, with faults injected at the network or the broker.
//!
//! ## Pieces
//! - [`TansuBroker`]: a real Kafka-compatible broker process (Tansu 0.6.0, SQLite storage, which
//!   keeps every acknowledged record across kill -9). It is never built at test time: the binary
//!   comes from `scripts/setup` (cached in `$SPILLWAY_TOOLS`, found through `SPILLWAY_TANSU_BIN`).
//!   Start, create topics, `kill9`, `restart` (same data, same port), `pause`/`resume`
//!   (SIGSTOP/SIGCONT: a hung broker). Every process it starts is killed by pid on drop.
//! - [`FaultProxy`]: a TCP proxy between client and broker, switchable at run time between
//!   [`FaultMode::Pass`], `Blackhole` (accepts, holds every byte, never answers: a network
//!   partition as TCP sees it; healing lets held bytes through like retransmission would), `Reset`
//!   (RST on every connection), `Refuse` (listener closed: ECONNREFUSED) and `Delay(d)`.
//! - [`MockKafka`]: a librdkafka mock cluster (several brokers, topics with spread leaders) with a
//!   faithful KAFKA-3686 switch: a broker stays in the metadata while we cannot reach it, either
//!   through a `FaultProxy` in front of it or by advertising a dead port. The FFI this needs is in
//!   one small module (`mock::ffi`).
//! - [`read_topic`]: a consumer that reads a whole topic back (keys, headers, offsets).
//! - [`oracle`]: given what was acknowledged to clients and what is in Kafka, reports lost,
//!   duplicated, corrupted and reordered records.
//!
//! ## Known broker defects the harness reports as such
//! Tansu 0.6.0 can wedge after a restart when an idempotent producer's messages had timed out
//! (a panic in `idempotent_message_check`, "more or less than one row"; the process stays up and
//! every produce fails). [`TansuBroker::wedged`] detects it from the broker log so a test can say
//! "broker wedged" instead of blaming our code. See `TansuBroker` for the workaround.

mod consume;
mod error;
pub mod mock;
pub mod oracle;
mod ports;
mod proxy;
mod tansu;

pub use consume::{TopicRecord, read_topic, read_topic_until};
pub use error::HarnessError;
pub use mock::MockKafka;
pub use ports::{dead_port, free_port};
pub use proxy::{FaultMode, FaultProxy, ProxyStats};
pub use tansu::{TansuBroker, tansu_binary};

/// Installs a `tracing` subscriber for tests once (respects `RUST_LOG`), so logs of the code under
/// test show up in failing test output.
pub fn init_test_logging() {
    use std::sync::Once;
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
    });
}
