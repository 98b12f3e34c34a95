//! Reading request bodies within the limits: size, in-flight budget and time.
//!
//! A body is read only after the request was authenticated, authorised and its topic found, so
//! a refused request costs no body read. Then:
//! - a `Content-Length` over `limits.max_body_bytes` is 413 before any byte is read;
//! - the declared length is reserved from the in-flight budget up front (429 if it does not
//!   fit); a chunked body grows its reservation chunk by chunk;
//! - the whole body must arrive within `timeouts.body_read` (408 otherwise).

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use crate::admission::Reservation;
use crate::error::ApiError;
use crate::state::AppState;

/// The media type of the request (`type/subtype`, lower case, parameters dropped).
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next()?.trim().to_ascii_lowercase();
    (!essence.is_empty()).then_some(essence)
}

/// The declared body length, if any (and parseable).
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// 415 unless the request's media type is one of `accepted`.
pub fn require_media_type(headers: &HeaderMap, accepted: &[&str]) -> Result<String, ApiError> {
    match media_type(headers) {
        Some(m) if accepted.contains(&m.as_str()) => Ok(m),
        Some(m) => Err(ApiError::UnsupportedMediaType(m)),
        None => Err(ApiError::UnsupportedMediaType("<none>".into())),
    }
}

/// A body read in full, with the budget it holds.
#[derive(Debug)]
pub struct ReadBody {
    pub bytes: Bytes,
    pub reservation: Reservation,
}

/// Reads the whole body under the size, budget and time limits.
pub async fn read_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<ReadBody, ApiError> {
    let limit = state.config().limits.max_body_bytes;
    let declared = content_length(headers);
    if let Some(n) = declared.filter(|&n| n > limit) {
        tracing::debug!(declared = n, limit, "body over limit");
        return Err(ApiError::BodyTooLarge { limit });
    }
    let mut reservation = state.inflight().reserve(declared.unwrap_or(0))?;
    let deadline = state.config().timeouts.body_read;
    let collect = async {
        let mut buf = BytesMut::with_capacity(declared.unwrap_or(0) as usize);
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| body_error(&e))?;
            let total = (buf.len() + chunk.len()) as u64;
            if total > limit {
                return Err(ApiError::BodyTooLarge { limit });
            }
            if total > reservation.bytes() {
                reservation.grow(total - reservation.bytes())?;
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    };
    let bytes = with_deadline(deadline, collect).await?;
    Ok(ReadBody { bytes, reservation })
}

/// Runs `f`, or answers 408 when `deadline` passes first.
pub async fn with_deadline<T>(
    deadline: Duration,
    f: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    tokio::time::timeout(deadline, f)
        .await
        .map_err(|_| ApiError::BodyTimeout(deadline))?
}

/// A body stream error: the client broke the framing or went away. Its fault, so 400.
pub fn body_error(e: &axum::Error) -> ApiError {
    ApiError::BadRequest(format!("reading request body: {e}"))
}
