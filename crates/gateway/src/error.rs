//! The one error type every handler returns, and the one place where outcomes become status codes.
//!
//! Every error response has the same body, shaped like REST Proxy's:
//! `{"error_code": <HTTP status>, "message": "<human text>"}`. Internal details (an I/O error, a
//! panic message) never reach the client: [`ApiError::Internal`] answers "internal error" and
//! the full error rides along in the response extensions ([`LoggedError`]) where the metrics
//! middleware logs it.
//!
//! Engine refusals ([`Rejected`]) map to statuses in [`reject_status`], and nowhere else; the
//! per-record results of batch responses use the same function.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde::Serialize;
use spillway::{RejectReason, Rejected};
use utoipa::ToSchema;

/// Used for `Retry-After` when a refusal does not say when to retry.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Why a request was not accepted. Each variant names its status in [`ApiError::status`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON (or not the concatenated JSON the route takes). 400; fix the body.
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// A header or query parameter is invalid. 400.
    #[error("{0}")]
    BadRequest(String),
    /// Auth is on and the request has no valid bearer token. 401; nothing was written.
    #[error("missing or invalid bearer token")]
    Unauthenticated,
    /// The token is valid but may not write this topic. 403; nothing was written.
    #[error("token {token:?} may not write to topic {topic:?}")]
    Forbidden { token: String, topic: String },
    /// The topic is neither configured nor in the cluster's metadata. 404.
    #[error("topic {0:?} not found")]
    UnknownTopic(String),
    /// No such partition (REST Proxy v2 partition path). 404.
    #[error("partition {0:?} not found")]
    UnknownPartition(String),
    /// The receipt id is unknown to this instance. 404.
    #[error("receipt {0:?} not found")]
    ReceiptNotFound(String),
    /// No route matches the path. 404.
    #[error("no route for {0}")]
    NoRoute(String),
    /// The route exists but not for this method. 405.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The client sent the body too slowly. 408; retry.
    #[error("request body not received within {0:?}")]
    BodyTimeout(Duration),
    /// The body is larger than `limits.max_body_bytes`. 413.
    #[error("request body exceeds the limit of {limit} bytes")]
    BodyTooLarge { limit: u64 },
    /// One record is larger than `limits.max_record_bytes`. 413.
    #[error("record {index} is {size} bytes, over the limit of {limit} bytes")]
    RecordTooLarge { index: usize, size: u64, limit: u64 },
    /// More records in one request than `limits.max_records_per_request`. 413.
    #[error("{count} records in one request, over the limit of {limit}")]
    TooManyRecords { count: usize, limit: usize },
    /// The content type is not one this route takes. 415.
    #[error("unsupported content type {0:?}")]
    UnsupportedMediaType(String),
    /// Well-formed JSON that breaks the schema (invalid base64, wrong types, schemas asked
    /// for). 422; fix the record.
    #[error("{0}")]
    Unprocessable(String),
    /// The gateway's in-flight byte budget is spent. 429; retry after `Retry-After`.
    #[error("too many bytes in flight; retry later")]
    InflightBytesExhausted,
    /// The gateway's concurrency limit is reached. 503; retry after `Retry-After`.
    #[error("too many concurrent requests; retry later")]
    Overloaded,
    /// `/readyz`: the engine cannot accept durably now. 503.
    #[error("not ready: {0}")]
    NotReady(String),
    /// The engine refused the record; see [`reject_status`].
    #[error(transparent)]
    Rejected(Rejected),
    /// A bug or an unexpected failure in the gateway. 500; the message is not shown.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The status an engine refusal answers with. The only place this mapping lives.
pub fn reject_status(reason: RejectReason) -> StatusCode {
    match reason {
        RejectReason::Shed
        | RejectReason::Full
        | RejectReason::Unavailable
        | RejectReason::Dropped
        | RejectReason::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        RejectReason::Backpressure => StatusCode::TOO_MANY_REQUESTS,
        RejectReason::Invalid | RejectReason::Permanent => StatusCode::UNPROCESSABLE_ENTITY,
        RejectReason::UnknownTopic => StatusCode::NOT_FOUND,
    }
}

/// `Retry-After` seconds for a refusal: `base` (or [`DEFAULT_RETRY_AFTER`]) stretched by a random
/// factor in [1, 1.5) so that refused clients do not come back in step; at least 1.
pub fn jittered_retry_after(base: Option<Duration>) -> u64 {
    let base = base.unwrap_or(DEFAULT_RETRY_AFTER).as_secs_f64();
    let factor = rand::rng().random_range(1.0..1.5);
    ((base * factor).ceil() as u64).max(1)
}

/// The body of every error response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The HTTP status code, repeated (REST Proxy v3 style).
    pub error_code: u16,
    pub message: String,
}

/// The error behind a response, left in its extensions for the logging middleware.
#[derive(Debug, Clone)]
pub struct LoggedError(pub Arc<ApiError>);

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::UnknownTopic(_)
            | ApiError::UnknownPartition(_)
            | ApiError::ReceiptNotFound(_)
            | ApiError::NoRoute(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::BodyTooLarge { .. }
            | ApiError::RecordTooLarge { .. }
            | ApiError::TooManyRecords { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::InflightBytesExhausted => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Overloaded | ApiError::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Rejected(r) => reject_status(r.reason),
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Seconds for `Retry-After`, for the errors that are worth retrying as they are.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::InflightBytesExhausted | ApiError::Overloaded => {
                Some(jittered_retry_after(None))
            }
            ApiError::Rejected(r) if r.is_retriable() => Some(jittered_retry_after(r.retry_after)),
            _ => None,
        }
    }

    /// What the client is told: the `Display` text, except for internal errors.
    pub fn public_message(&self) -> String {
        match self {
            ApiError::Internal(_) => "internal error".to_string(),
            ApiError::Rejected(r) => format!("{}: {}", r.reason.as_str(), r.message),
            other => other.to_string(),
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error_code: self.status().as_u16(),
            message: self.public_message(),
        }
    }
}

impl From<Rejected> for ApiError {
    fn from(r: Rejected) -> Self {
        ApiError::Rejected(r)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(self.body())).into_response();
        if let Some(secs) = self.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if matches!(self, ApiError::Unauthenticated) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"spillway\""),
            );
        }
        response
            .extensions_mut()
            .insert(LoggedError(Arc::new(self)));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_jittered_above_the_base_and_never_zero() {
        for _ in 0..200 {
            let s = jittered_retry_after(Some(Duration::from_secs(4)));
            assert!((4..=6).contains(&s), "{s}");
            assert!(jittered_retry_after(Some(Duration::ZERO)) >= 1);
        }
    }

    #[test]
    fn internal_errors_hide_their_details() {
        let e = ApiError::Internal("disk /secret/path exploded".into());
        assert_eq!(e.body().message, "internal error");
        assert_eq!(e.body().error_code, 500);
    }

    #[test]
    fn non_retriable_rejections_carry_no_retry_after() {
        let e = ApiError::Rejected(Rejected::new(RejectReason::Permanent, "too large"));
        assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.retry_after(), None);
        let e = ApiError::Rejected(Rejected::new(RejectReason::Shed, "degraded"));
        assert!(e.retry_after().is_some());
    }
}
