//! One producer *session*: a librdkafka producer instance and the context that turns its
//! delivery reports into [`Outcome`]s.
//!
//! A session ends when it is *cut* (see `Producer::cut`): everything still in librdkafka is
//! purged at once, so each record gets a definite outcome and no later record of a partition
//! can be acknowledged after an earlier one failed. The old instance is then dropped, never
//! reused: an idempotent producer that purged in-flight records bumps its epoch, and we want a
//! fresh producer id instead (which also avoids Tansu 0.6.0's epoch-bump wedge).

use std::sync::{Arc, Weak};
use std::time::Instant;

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryResult, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

use super::ffi::{Persistence, persistence};
use super::outcome::{Delivery, DeliveryError, Outcome};
use super::ticket::{InFlight, Reply};
use super::{Shared, stats};
use crate::ErrorClass;
use crate::health::TopicPartition;
use crate::record::OutRecord;

/// A record inside librdkafka: what we need to report on it, resend it, or re-place it.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) record: Arc<OutRecord>,
    pub(crate) partition: i32,
    /// Spillway chose the partition (keyless record) and the caller leaves its failures to the
    /// producer: it may be re-placed elsewhere, and resolved by a tail check when its delivery
    /// is unknown.
    pub(crate) replaceable: bool,
    /// Tag for the producer's delivery observer ([`super::SendOptions::observe`]).
    pub(crate) observe: Option<u32>,
    /// Last offset known delivered to `partition` when this record was handed over.
    pub(crate) known_before: Option<i64>,
    pub(crate) attempts: u32,
    pub(crate) session: u64,
    pub(crate) sent_at: Instant,
    /// Where the report goes. Also carries whether the record is in librdkafka: true while it
    /// is handed over and not yet reported, false while it waits for re-placement or a tail
    /// check (its [`super::DeliveryFuture`] reads it).
    pub(crate) reply: Reply,
}

impl Pending {
    pub(crate) fn tp(&self) -> TopicPartition {
        TopicPartition::new(self.record.topic.clone(), self.partition)
    }

    /// Sends the final report to whoever waits for it.
    pub(crate) fn finish(self, outcome: Outcome) {
        let delivery = Delivery {
            record: self.record,
            outcome,
            attempts: self.attempts,
            session: self.session,
            sent_at: self.sent_at,
        };
        // The caller may have stopped waiting; the outcome was still accounted for.
        self.reply.send(delivery);
    }
}

/// The librdkafka context of one session.
pub(crate) struct SessionContext {
    pub(crate) shared: Weak<Shared>,
    pub(crate) session: u64,
}

impl ClientContext for SessionContext {
    fn stats_raw(&self, statistics: &[u8]) {
        if let Some(shared) = self.shared.upgrade() {
            match stats::parse(statistics) {
                Ok(brokers) => shared.on_broker_stats(self.session, &brokers),
                Err(e) => tracing::debug!("unparsable librdkafka statistics: {e}"),
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let fatal = matches!(error.rdkafka_error_code(), Some(RDKafkaErrorCode::Fatal));
        if fatal {
            tracing::error!(session = self.session, %reason, "fatal producer error; the session will be cut");
            if let Some(shared) = self.shared.upgrade() {
                shared.request_cut(self.session, format!("fatal producer error: {reason}"));
            }
        } else if matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown)
        ) {
            // librdkafka logs these itself; the health tracker acts on them.
            tracing::debug!(session = self.session, %reason, "librdkafka: {error}");
        } else {
            tracing::warn!(session = self.session, %reason, "librdkafka error: {error}");
        }
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        match level {
            // Connection failures: expected during an outage, which Spillway handles.
            L::Error if fac == "FAIL" => tracing::warn!(target: "librdkafka", fac, "{log_message}"),
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::error!(target: "librdkafka", fac, "{log_message}")
            }
            L::Warning => tracing::warn!(target: "librdkafka", fac, "{log_message}"),
            L::Notice | L::Info => tracing::info!(target: "librdkafka", fac, "{log_message}"),
            L::Debug => tracing::debug!(target: "librdkafka", fac, "{log_message}"),
        }
    }
}

impl ProducerContext for SessionContext {
    type DeliveryOpaque = InFlight;

    fn delivery(&self, result: &DeliveryResult<'_>, ticket: InFlight) {
        let Some(pending) = ticket.unpark() else {
            // Every record is parked before the hand-over and taken out once, here.
            tracing::error!(
                session = self.session,
                "a delivery report for no parked record"
            );
            return;
        };
        let Some(shared) = self.shared.upgrade() else {
            // The producer is gone; nobody waits any more, but never claim delivery.
            let error = DeliveryError::local(ErrorClass::Transient, "producer dropped");
            let partition = pending.partition;
            pending.finish(Outcome::PossiblyPersisted {
                partition,
                error,
                known_before: None,
            });
            return;
        };
        match result {
            Ok(message) => shared.on_delivered(pending, message.partition(), message.offset()),
            Err((error, message)) => {
                let code = error.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail);
                let persisted = persistence(message);
                shared.on_failed(pending, code, persisted);
            }
        }
    }
}

/// A live librdkafka producer of one session.
pub(crate) struct Session {
    pub(crate) id: u64,
    pub(crate) producer: ThreadedProducer<SessionContext>,
}

impl Session {
    pub(crate) fn start(
        config: &ClientConfig,
        shared: Weak<Shared>,
        id: u64,
    ) -> Result<Self, KafkaError> {
        let producer = config.create_with_context(SessionContext {
            shared,
            session: id,
        })?;
        Ok(Self { id, producer })
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Whether a failed record may be in Kafka, in outcome terms. librdkafka's status is the truth:
/// a record purged from the queue after an earlier attempt was sent is still possibly
/// persisted, whatever the purge code says.
pub(crate) fn may_be_in_kafka(persisted: Persistence) -> bool {
    persisted != Persistence::NotPersisted
}
