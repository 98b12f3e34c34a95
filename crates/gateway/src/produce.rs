//! The path every write takes after parsing: check the caller and topic, hand records to the
//! engine in order, optionally wait for Kafka, and sum per-record outcomes into one status.
//!
//! Ordering (G3): [`send_in_order`] calls `Engine::send` for a request's records one after the
//! other, before any future is awaited; the engine fixes each record's place at that call, so
//! awaiting the futures together keeps the order.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use futures::future::{BoxFuture, join_all};
use spillway::record::SpillwayId;
use spillway::{Accepted, ReceiptStatus, Record, Rejected};

use crate::auth::Principal;
use crate::codec::check_topic_name;
use crate::engine::{Engine, TopicKnown};
use crate::error::ApiError;
use crate::state::AppState;

/// Checks, in this order, before any body is read: the caller may write `topic` (403), the
/// topic name is legal and known (404).
pub fn preflight(state: &AppState, principal: &Principal, topic: &str) -> Result<(), ApiError> {
    principal.authorize(topic)?;
    check_topic_name(topic)?;
    match state.engine().topic_known(topic) {
        TopicKnown::Known => Ok(()),
        TopicKnown::Unknown => Err(ApiError::UnknownTopic(topic.to_string())),
    }
}

/// What became of one record.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// In Kafka (acks=all), directly or after waiting.
    Delivered {
        id: SpillwayId,
        partition: i32,
        offset: Option<i64>,
    },
    /// Durably spooled; `id` is the receipt.
    Spooled {
        id: SpillwayId,
        partition: Option<i32>,
    },
    /// Accepted, then refused by Kafka for what it is while the client waited.
    DeadLettered { id: SpillwayId, reason: String },
    /// Not accepted: invalid, or refused by the engine. The client keeps it.
    Refused(ApiError),
}

impl Outcome {
    /// The status this record alone would answer with.
    pub fn status(&self) -> StatusCode {
        match self {
            Outcome::Delivered { .. } => StatusCode::OK,
            Outcome::Spooled { .. } => StatusCode::ACCEPTED,
            Outcome::DeadLettered { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Outcome::Refused(e) => e.status(),
        }
    }

    pub fn is_accepted(&self) -> bool {
        matches!(self, Outcome::Delivered { .. } | Outcome::Spooled { .. })
    }

    pub fn id(&self) -> Option<&SpillwayId> {
        match self {
            Outcome::Delivered { id, .. }
            | Outcome::Spooled { id, .. }
            | Outcome::DeadLettered { id, .. } => Some(id),
            Outcome::Refused(_) => None,
        }
    }
}

/// The status of a whole request from its records' outcomes:
/// all delivered 200; all accepted, some spooled 202; none accepted: the first refusal's
/// error (so a single refused record answers exactly like a refused request); otherwise 207.
pub fn overall_status(outcomes: &[Outcome]) -> Result<StatusCode, ApiError> {
    if outcomes
        .iter()
        .all(|o| matches!(o, Outcome::Delivered { .. }))
    {
        return Ok(StatusCode::OK);
    }
    if outcomes.iter().all(Outcome::is_accepted) {
        return Ok(StatusCode::ACCEPTED);
    }
    if !outcomes.iter().any(Outcome::is_accepted) {
        return Err(match &outcomes[0] {
            Outcome::Refused(e) => e.clone(),
            Outcome::DeadLettered { reason, .. } => {
                ApiError::Unprocessable(format!("dead-lettered: {reason}"))
            }
            _ => unreachable!("not accepted"),
        });
    }
    Ok(StatusCode::MULTI_STATUS)
}

/// A record ready to send, or why it will not be.
pub type Prepared = Result<Record, ApiError>;

/// Calls `Engine::send` for each valid record, in order, and returns one pending outcome per
/// input (invalid records resolve to their error at once and are never sent).
pub fn send_in_order(
    engine: &Arc<dyn Engine>,
    records: Vec<Prepared>,
) -> Vec<BoxFuture<'static, Result<Accepted, ApiError>>> {
    records
        .into_iter()
        .map(
            |prepared| -> BoxFuture<'static, Result<Accepted, ApiError>> {
                match prepared {
                    Ok(record) => {
                        let sent = engine.send(record);
                        Box::pin(async move { sent.await.map_err(ApiError::from) })
                    }
                    Err(e) => Box::pin(async move { Err(e) }),
                }
            },
        )
        .collect()
}

/// The outcome of one send, after waiting up to `wait` for a spooled record to reach Kafka.
pub async fn settle(
    engine: Arc<dyn Engine>,
    sent: Result<Accepted, ApiError>,
    wait: Duration,
) -> Outcome {
    match sent {
        Ok(Accepted::Delivered {
            id,
            partition,
            offset,
        }) => Outcome::Delivered {
            id,
            partition,
            offset,
        },
        Ok(Accepted::Spooled { id, partition }) if wait.is_zero() => {
            Outcome::Spooled { id, partition }
        }
        Ok(Accepted::Spooled { id, partition }) => match engine.wait_final(&id, wait).await {
            ReceiptStatus::Delivered {
                partition, offset, ..
            } => Outcome::Delivered {
                id,
                partition,
                offset,
            },
            ReceiptStatus::DeadLettered { reason, .. } => Outcome::DeadLettered { id, reason },
            ReceiptStatus::Pending { .. } | ReceiptStatus::Unknown => {
                Outcome::Spooled { id, partition }
            }
        },
        Err(e) => Outcome::Refused(e),
    }
}

/// Sends `records` in order, awaits them together, and settles each (waiting up to `wait`).
pub async fn deliver(state: &AppState, records: Vec<Prepared>, wait: Duration) -> Vec<Outcome> {
    let engine = state.engine().clone();
    let pending = send_in_order(&engine, records);
    join_all(pending.into_iter().map(|fut| {
        let engine = engine.clone();
        async move { settle(engine, fut.await, wait).await }
    }))
    .await
}

/// The REST Proxy error text for a refusal, for per-record reports.
pub fn refusal_text(e: &ApiError) -> String {
    e.public_message()
}

/// A refusal from the engine as an outcome (tests and streaming use this).
pub fn refused(r: Rejected) -> Outcome {
    Outcome::Refused(ApiError::Rejected(r))
}
