//! REST Proxy v3 streaming mode: concatenated JSON records in, one delivery report per record
//! out, in order, on one long-lived request.
//!
//! - A reader task parses records as their bytes arrive. For each record it calls
//!   `Engine::send` at once (fixing its order, G3) and queues the pending report; the response
//!   body yields the queued reports in order as they resolve, up to [`REPORTS_IN_FLIGHT`]
//!   awaited at a time. The bounded queue is the backpressure: a client that does not read its
//!   reports stops being read.
//! - Each report is a JSON object followed by `\n`: `{"error_code": 200, ...}` for an accepted
//!   record, `{"error_code": <4xx/5xx>, "message"}` for one that was not.
//! - The bytes of the record being received, and of each record until its report is out, count
//!   against the global in-flight budget.
//! - A record that is not valid for its shape (422), too large (413) or over the in-flight
//!   budget (429) gets its error report and the stream goes on. Text that is not JSON (400), a
//!   record's text longer than `limits.max_body_bytes` (413), no budget left for the record
//!   being received (429), a pause longer than `timeouts.body_read` (408) or shutdown (503) end
//!   the stream after a last error report.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Buf, Bytes, BytesMut};
use futures::channel::mpsc;
use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use spillway::Priority;

use crate::api::v3::{V3ProduceRequest, V3ProduceResponse, prepare, report};
use crate::codec::json_error;
use crate::error::ApiError;
use crate::produce::{Prepared, send_in_order, settle};
use crate::state::AppState;

/// Reports awaited concurrently (and records queued) per stream.
pub const REPORTS_IN_FLIGHT: usize = 64;

/// Splits concatenated JSON values out of bytes that arrive in pieces.
#[derive(Debug, Default)]
pub struct ConcatJson {
    buf: BytesMut,
}

impl ConcatJson {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Whether only whitespace is left.
    pub fn is_blank(&self) -> bool {
        self.buf.iter().all(u8::is_ascii_whitespace)
    }

    /// Bytes of the incomplete value held.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next complete value and its length in bytes; `None` until more bytes arrive; an
    /// error when the text cannot be JSON (the stream cannot be resynchronised after that).
    pub fn next_value(&mut self) -> Result<Option<(Value, usize)>, ApiError> {
        let Some(start) = self.buf.iter().position(|b| !b.is_ascii_whitespace()) else {
            self.buf.clear();
            return Ok(None);
        };
        self.buf.advance(start);
        let mut values = serde_json::Deserializer::from_slice(&self.buf).into_iter::<Value>();
        match values.next() {
            Some(Ok(v)) => {
                let used = values.byte_offset();
                self.buf.advance(used);
                Ok(Some((v, used)))
            }
            Some(Err(e)) if e.is_eof() => Ok(None),
            Some(Err(e)) => Err(ApiError::MalformedJson(e.to_string())),
            None => Ok(None),
        }
    }
}

type Report = BoxFuture<'static, Bytes>;

fn error_report(e: &ApiError) -> Bytes {
    let mut text = serde_json::to_vec(&e.body()).unwrap_or_default();
    text.push(b'\n');
    Bytes::from(text)
}

fn ready(e: ApiError) -> Report {
    Box::pin(async move { error_report(&e) })
}

/// Answers 200 at once and streams one report per record of `body`.
pub fn stream_reports(
    state: AppState,
    cluster_id: String,
    topic: String,
    priority: Option<Priority>,
    body: Body,
) -> Response {
    let (tx, rx) = mpsc::channel::<Report>(REPORTS_IN_FLIGHT);
    tokio::spawn(read_records(state, cluster_id, topic, priority, body, tx));
    let reports = rx
        .buffered(REPORTS_IN_FLIGHT)
        .map(Ok::<Bytes, std::convert::Infallible>);
    let mut response = (StatusCode::OK, Body::from_stream(reports)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

async fn read_records(
    state: AppState,
    cluster_id: String,
    topic: String,
    priority: Option<Priority>,
    body: Body,
    mut tx: mpsc::Sender<Report>,
) {
    let max_text = state.config().limits.max_body_bytes as usize;
    let idle: Duration = state.config().timeouts.body_read;
    let mut shutdown = state.shutdown_started();
    let mut chunks = body.into_data_stream();
    let mut parser = ConcatJson::default();
    // The bytes of the record being received count against the in-flight budget too.
    let mut held = match state.inflight().reserve(0) {
        Ok(r) => r,
        Err(e) => {
            let _ = tx.send(ready(e)).await;
            return;
        }
    };
    let mut index = 0usize;
    let last: ApiError = loop {
        // Send every complete record held, in order.
        loop {
            match parser.next_value() {
                Ok(Some((value, size))) => {
                    let report =
                        one_record(&state, &cluster_id, &topic, priority, index, value, size);
                    index += 1;
                    if tx.send(report).await.is_err() {
                        return; // the client went away
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(ready(e)).await;
                    return;
                }
            }
        }
        if parser.pending() > max_text {
            break ApiError::BodyTooLarge {
                limit: max_text as u64,
            };
        }
        if let Err(e) = held.resize(parser.pending() as u64) {
            break e;
        }
        let next = tokio::select! {
            next = tokio::time::timeout(idle, chunks.next()) => next,
            _ = crate::state::until_true(&mut shutdown) => {
                break ApiError::Rejected(spillway::Rejected::new(
                    spillway::RejectReason::ShuttingDown,
                    "Spillway is shutting down; send the rest to another instance",
                ));
            }
        };
        match next {
            Err(_) => break ApiError::BodyTimeout(idle),
            Ok(None) if parser.is_blank() => return,
            Ok(None) => break ApiError::MalformedJson("the stream ended inside a record".into()),
            Ok(Some(Err(e))) => break crate::body::body_error(&e),
            Ok(Some(Ok(chunk))) => parser.push(&chunk),
        }
    };
    let _ = tx.send(ready(last)).await;
}

/// Checks and sends one record; returns its pending report. `Engine::send` is called here,
/// before returning, so records keep the order they arrived in.
fn one_record(
    state: &AppState,
    cluster_id: &str,
    topic: &str,
    priority: Option<Priority>,
    index: usize,
    value: Value,
    size: usize,
) -> Report {
    let reservation = match state.inflight().reserve(size as u64) {
        Ok(r) => r,
        Err(e) => return ready(e),
    };
    let request: V3ProduceRequest = match serde_json::from_value(value) {
        Ok(r) => r,
        Err(e) => return ready(json_error(e)),
    };
    let max = state.config().limits.max_record_bytes;
    let prepared = match prepare(topic, &request, priority, index, max) {
        Ok(p) => p,
        Err(e) => return ready(e),
    };
    let timestamp = prepared.record.timestamp_ms;
    let engine = state.engine().clone();
    let mut pending = send_in_order(&engine, vec![Prepared::Ok(prepared.record)]);
    let sent = pending.pop().expect("one record");
    let wait = state.config().rest_proxy.wait;
    let (cluster_id, topic) = (cluster_id.to_string(), topic.to_string());
    let (key, value) = (prepared.key, prepared.value);
    Box::pin(async move {
        let outcome = settle(engine, sent.await, wait).await;
        drop(reservation);
        match report(&cluster_id, key, value, &topic, timestamp, outcome) {
            Ok(report) => {
                let mut text = serde_json::to_vec(&V3ProduceResponse {
                    error_code: 200,
                    report,
                })
                .unwrap_or_default();
                text.push(b'\n');
                Bytes::from(text)
            }
            Err(e) => error_report(&e),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concatenated_values_split_at_any_chunk_boundary() {
        let text = br#" {"a":1}{"b":[1,2]}
  {"c":"x y"} "#;
        for cut in 0..text.len() {
            let mut p = ConcatJson::default();
            let mut got = Vec::new();
            for part in [&text[..cut], &text[cut..]] {
                p.push(part);
                while let Some((v, _)) = p.next_value().unwrap() {
                    got.push(v);
                }
            }
            assert_eq!(got.len(), 3, "cut at {cut}");
            assert!(p.is_blank());
        }
    }

    #[test]
    fn garbage_between_values_is_an_error() {
        let mut p = ConcatJson::default();
        p.push(br#"{"a":1} nope {"b":2}"#);
        assert!(p.next_value().unwrap().is_some());
        assert!(matches!(p.next_value(), Err(ApiError::MalformedJson(_))));
    }
}
