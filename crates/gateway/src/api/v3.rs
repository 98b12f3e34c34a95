//! Confluent REST Proxy v3 produce: `POST /v3/clusters/{cluster_id}/topics/{topic}/records`
//! and `POST .../records:batch`.
//!
//! - **Request** (one record): `{"partition_id", "headers": [{"name", "value": base64}], "key":
//!   {"type": "JSON"|"STRING"|"BINARY", "data"}, "value": {...}, "timestamp": RFC 3339}`. A
//!   `type` left out means `BINARY` (REST Proxy's choice when no schema applies); schema fields
//!   (`schema`, `schema_id`, `schema_version`, `subject`, `subject_name_strategy`) are 422.
//! - **Modes.** A body with a `Content-Length` that holds one record is answered like a plain
//!   request: the status is the record's (200 delivered, 202 spooled, or the error). A body
//!   without `Content-Length` (chunked, streaming mode), or a sized body with several
//!   concatenated records, is answered 200 with one delivery report per record, in order, each
//!   with its own `error_code` (see [`super::v3_stream`]).
//! - **Report:** `{"error_code": 200, "cluster_id", "topic_name", "partition_id", "offset",
//!   "timestamp"?, "key": {"type", "size"}?, "value": {...}?}` plus the Spillway extras
//!   `spillway_status` (`delivered`/`spooled`) and `spillway_receipt`. A spooled record reports
//!   `error_code` 200 (it is accepted: REST Proxy clients treat anything else as failed and
//!   would resend it), `offset: -1`, and `partition_id: -1` when the partition is not chosen
//!   yet.
//! - **Batch:** `{"entries": [{"id", ...record}]}` answers 207 with `{"successes": [{"id",
//!   ...report without error_code}], "failures": [{"id", "error_code", "message"}]}`. Ids are
//!   1–80 characters of `[0-9a-zA-Z_-]`, distinct; an invalid entry fails alone (it is not
//!   sent) while the others go on.

use std::collections::HashSet;

use axum::Extension;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use spillway::{Priority, Record};
use utoipa::ToSchema;

use crate::admission::priority_from_headers;
use crate::api::PathParam;
use crate::api::v3_stream::{ConcatJson, stream_reports};
use crate::auth::Principal;
use crate::body::{content_length, read_body, require_media_type};
use crate::codec::parse_timestamp;
use crate::codec::{Format, check_record, decode_base64, encode, format_timestamp, parse_json};
use crate::error::{ApiError, ErrorBody};
use crate::produce::{Outcome, Prepared, deliver, preflight};
use crate::state::AppState;

/// One record, as REST Proxy v3 takes it.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct V3ProduceRequest {
    pub partition_id: Option<i32>,
    #[serde(default)]
    pub headers: Option<Vec<V3Header>>,
    pub key: Option<V3Data>,
    pub value: Option<V3Data>,
    /// RFC 3339; otherwise stamped by Spillway.
    pub timestamp: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct V3Header {
    pub name: String,
    /// base64; null for an empty value.
    pub value: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct V3Data {
    /// `JSON`, `STRING` or `BINARY` (default).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub data: Value,
    #[serde(default)]
    pub subject: Value,
    #[serde(default)]
    pub subject_name_strategy: Value,
    #[serde(default)]
    pub schema_id: Value,
    #[serde(default)]
    pub schema_version: Value,
    #[serde(default)]
    pub schema: Value,
}

/// `{"type", "size"}` of a produced key or value.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct V3DataInfo {
    #[serde(rename = "type")]
    pub kind: String,
    pub size: usize,
}

/// A delivery report, without `error_code` (as in batch successes).
#[derive(Debug, Serialize, ToSchema)]
pub struct V3Report {
    pub cluster_id: String,
    pub topic_name: String,
    /// -1 while a spooled record's partition is not chosen yet.
    pub partition_id: i32,
    /// -1 for a spooled record (not in Kafka yet).
    pub offset: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<V3DataInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<V3DataInfo>,
    /// Spillway extension: `delivered` or `spooled`.
    pub spillway_status: String,
    /// Spillway extension: the receipt id (`GET /v1/receipts/{id}`).
    pub spillway_receipt: String,
}

/// The report of one record: `error_code` 200 and the report fields.
#[derive(Debug, Serialize, ToSchema)]
pub struct V3ProduceResponse {
    pub error_code: u16,
    #[serde(flatten)]
    pub report: V3Report,
}

/// A record checked and ready to send, with what its report will echo.
#[derive(Debug)]
pub struct V3Prepared {
    pub record: Record,
    pub key: Option<V3DataInfo>,
    pub value: Option<V3DataInfo>,
}

/// Checks one v3 record and builds it (422/413 on bad input).
pub fn prepare(
    topic: &str,
    request: &V3ProduceRequest,
    priority: Option<Priority>,
    index: usize,
    max_record_bytes: u64,
) -> Result<V3Prepared, ApiError> {
    let data = |d: &Option<V3Data>,
                what: &str|
     -> Result<(Option<Vec<u8>>, Option<V3DataInfo>), ApiError> {
        let Some(d) = d else { return Ok((None, None)) };
        for (name, v) in [
            ("subject", &d.subject),
            ("subject_name_strategy", &d.subject_name_strategy),
            ("schema_id", &d.schema_id),
            ("schema_version", &d.schema_version),
            ("schema", &d.schema),
        ] {
            if !v.is_null() {
                return Err(ApiError::Unprocessable(format!(
                    "record {index} {what}.{name}: schemas are not supported"
                )));
            }
        }
        let format = Format::parse(d.kind.as_deref().unwrap_or("BINARY"))?;
        let bytes = encode(format, &d.data, &format!("record {index} {what}"))?;
        let info = V3DataInfo {
            kind: format.v3_name().to_string(),
            size: bytes.as_ref().map_or(0, Vec::len),
        };
        Ok((bytes, Some(info)))
    };
    let (key, key_info) = data(&request.key, "key")?;
    let (value, value_info) = data(&request.value, "value")?;
    let headers = request
        .headers
        .iter()
        .flatten()
        .map(|h| {
            let v = match &h.value {
                Some(v) => decode_base64(v, &format!("record {index} header {}", h.name))?,
                None => Vec::new(),
            };
            Ok((h.name.clone(), v))
        })
        .collect::<Result<_, ApiError>>()?;
    let timestamp_ms = request
        .timestamp
        .as_deref()
        .map(parse_timestamp)
        .transpose()?;
    let record = Record {
        topic: topic.to_string(),
        key,
        value,
        headers,
        partition: request.partition_id,
        timestamp_ms,
        priority,
    };
    check_record(&record, index, max_record_bytes)?;
    Ok(V3Prepared {
        record,
        key: key_info,
        value: value_info,
    })
}

/// The report of an accepted record; `Err` with the error for the others.
pub fn report(
    cluster_id: &str,
    prepared_key: Option<V3DataInfo>,
    prepared_value: Option<V3DataInfo>,
    record_topic: &str,
    timestamp_ms: Option<i64>,
    outcome: Outcome,
) -> Result<V3Report, ApiError> {
    let (status, partition_id, offset) = match &outcome {
        Outcome::Delivered {
            partition, offset, ..
        } => ("delivered", *partition, offset.unwrap_or(-1)),
        Outcome::Spooled { partition, .. } => ("spooled", partition.unwrap_or(-1), -1),
        Outcome::DeadLettered { reason, .. } => {
            return Err(ApiError::Unprocessable(format!("dead-lettered: {reason}")));
        }
        Outcome::Refused(e) => return Err(e.clone()),
    };
    Ok(V3Report {
        cluster_id: cluster_id.to_string(),
        topic_name: record_topic.to_string(),
        partition_id,
        offset,
        timestamp: timestamp_ms.and_then(format_timestamp),
        key: prepared_key,
        value: prepared_value,
        spillway_status: status.to_string(),
        spillway_receipt: outcome.id().map(ToString::to_string).unwrap_or_default(),
    })
}

/// Produce one record, or a stream of records (REST Proxy v3).
#[utoipa::path(
    post,
    path = "/v3/clusters/{cluster_id}/topics/{topic}/records",
    tag = "rest-proxy-v3",
    params(
        ("cluster_id" = String, Path, description = "Echoed in reports; not checked"),
        ("topic" = String, Path, description = "Kafka topic"),
        ("Spillway-Priority" = Option<String>, Header, description = "critical, normal or bulk"),
    ),
    request_body(content = V3ProduceRequest, content_type = "application/json",
        description = "One record; without Content-Length (chunked), concatenated JSON records"),
    responses(
        (status = 200, description = "Delivered; or, streaming, one report per record", body = V3ProduceResponse),
        (status = 202, description = "Durably spooled (offset -1)", body = V3ProduceResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn produce(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    PathParam((cluster_id, topic)): PathParam<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    preflight(&state, &principal, &topic)?;
    require_media_type(&headers, &["application/json"])?;
    let priority = priority_from_headers(&headers)?;
    if content_length(&headers).is_none() {
        return Ok(stream_reports(state, cluster_id, topic, priority, body));
    }
    let body = read_body(&state, &headers, body).await?;
    let mut parser = ConcatJson::default();
    parser.push(&body.bytes);
    let Some((value, _)) = parser.next_value()? else {
        let why = if parser.is_blank() {
            "empty body"
        } else {
            "the body ends inside a record"
        };
        return Err(ApiError::MalformedJson(why.into()));
    };
    if !parser.is_blank() {
        // Several records in one sized body: answer as a stream of reports.
        let bytes = body.bytes.clone();
        drop(body);
        return Ok(stream_reports(
            state,
            cluster_id,
            topic,
            priority,
            Body::from(bytes),
        ));
    }
    let request: V3ProduceRequest =
        serde_json::from_value(value).map_err(crate::codec::json_error)?;
    let prepared = prepare(
        &topic,
        &request,
        priority,
        0,
        state.config().limits.max_record_bytes,
    )?;
    let timestamp = prepared.record.timestamp_ms;
    let mut outcomes = deliver(
        &state,
        vec![Prepared::Ok(prepared.record)],
        state.config().rest_proxy.wait,
    )
    .await;
    drop(body);
    let outcome = outcomes.pop().expect("one record, one outcome");
    let status = outcome.status();
    let report = report(
        &cluster_id,
        prepared.key,
        prepared.value,
        &topic,
        timestamp,
        outcome,
    )?;
    let response = V3ProduceResponse {
        error_code: 200,
        report,
    };
    Ok((status, Json(response)).into_response())
}

/// A batch of records for one topic.
#[derive(Debug, Deserialize, ToSchema)]
pub struct V3BatchRequest {
    pub entries: Vec<V3BatchEntry>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct V3BatchEntry {
    /// 1–80 characters of `[0-9a-zA-Z_-]`, distinct within the batch.
    #[schema(value_type = String)]
    pub id: Value,
    #[serde(flatten)]
    pub record: V3ProduceRequest,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct V3BatchResponse {
    pub successes: Vec<V3BatchSuccess>,
    pub failures: Vec<V3BatchFailure>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct V3BatchSuccess {
    pub id: String,
    #[serde(flatten)]
    pub report: V3Report,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct V3BatchFailure {
    pub id: String,
    pub error_code: u16,
    pub message: String,
}

fn valid_entry_id(id: &Value) -> Option<&str> {
    let s = id.as_str()?;
    let ok = (1..=80).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then_some(s)
}

/// Produce a batch of records (REST Proxy v3); always 207 once the batch itself is valid.
#[utoipa::path(
    post,
    path = "/v3/clusters/{cluster_id}/topics/{topic}/records:batch",
    tag = "rest-proxy-v3",
    params(
        ("cluster_id" = String, Path, description = "Echoed in reports; not checked"),
        ("topic" = String, Path, description = "Kafka topic"),
        ("Spillway-Priority" = Option<String>, Header, description = "critical, normal or bulk"),
    ),
    request_body(content = V3BatchRequest, content_type = "application/json"),
    responses(
        (status = 207, description = "Per-entry successes and failures", body = V3BatchResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
    )
)]
pub async fn produce_batch(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    PathParam((cluster_id, topic)): PathParam<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    preflight(&state, &principal, &topic)?;
    require_media_type(&headers, &["application/json"])?;
    let priority = priority_from_headers(&headers)?;
    let body = read_body(&state, &headers, body).await?;
    let batch: V3BatchRequest = parse_json(&body.bytes)?;
    let limits = &state.config().limits;
    if batch.entries.is_empty() {
        return Err(ApiError::BadRequest("the batch has no entries".into()));
    }
    if batch.entries.len() > limits.max_records_per_request {
        return Err(ApiError::TooManyRecords {
            count: batch.entries.len(),
            limit: limits.max_records_per_request,
        });
    }
    let mut ids = Vec::with_capacity(batch.entries.len());
    let mut seen = HashSet::new();
    for entry in &batch.entries {
        let id = valid_entry_id(&entry.id).ok_or_else(|| {
            ApiError::Unprocessable("batch entry id: 1 to 80 characters of [0-9a-zA-Z_-]".into())
        })?;
        if !seen.insert(id) {
            return Err(ApiError::BadRequest(format!(
                "batch entry id {id:?} repeated"
            )));
        }
        ids.push(id.to_string());
    }
    let mut echoes = Vec::with_capacity(ids.len());
    let prepared: Vec<Prepared> = batch
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let p = prepare(&topic, &e.record, priority, i, limits.max_record_bytes);
            match p {
                Ok(p) => {
                    echoes.push((p.key, p.value, p.record.timestamp_ms));
                    Ok(p.record)
                }
                Err(err) => {
                    echoes.push((None, None, None));
                    Err(err)
                }
            }
        })
        .collect();
    let outcomes = deliver(&state, prepared, state.config().rest_proxy.wait).await;
    drop(body);
    let mut response = V3BatchResponse {
        successes: Vec::new(),
        failures: Vec::new(),
    };
    for ((id, outcome), (key, value, ts)) in ids.into_iter().zip(outcomes).zip(echoes) {
        match report(&cluster_id, key, value, &topic, ts, outcome) {
            Ok(report) => response.successes.push(V3BatchSuccess { id, report }),
            Err(e) => response.failures.push(V3BatchFailure {
                id,
                error_code: e.status().as_u16(),
                message: e.public_message(),
            }),
        }
    }
    Ok((StatusCode::MULTI_STATUS, Json(response)).into_response())
}
