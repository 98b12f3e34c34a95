//! The only `unsafe` in the library: reading a message's persistence status, which the `rdkafka`
//! crate does not expose (`rd_kafka_message_status`).
//!
//! Soundness: the pointer comes from a `BorrowedMessage` that lives for the whole call (we hold
//! the borrow), and `rd_kafka_message_status` only reads the message.
#![allow(unsafe_code)]

use rdkafka::bindings as rdsys;
use rdkafka::message::BorrowedMessage;

/// Whether a message that failed may still be in Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Persistence {
    /// Never sent, or the broker said no: safe to resend.
    NotPersisted,
    /// Sent, but no answer: it may be in Kafka. Deduplicate before resending.
    PossiblyPersisted,
    /// The broker acknowledged it.
    Persisted,
}

pub(crate) fn persistence(message: &BorrowedMessage<'_>) -> Persistence {
    // SAFETY: see module docs; `message` is borrowed for the duration of the call.
    let status = unsafe { rdsys::rd_kafka_message_status(message.ptr()) };
    match status {
        rdsys::rd_kafka_msg_status_t::RD_KAFKA_MSG_STATUS_NOT_PERSISTED => {
            Persistence::NotPersisted
        }
        rdsys::rd_kafka_msg_status_t::RD_KAFKA_MSG_STATUS_PERSISTED => Persistence::Persisted,
        _ => Persistence::PossiblyPersisted,
    }
}
