//! The native API: `POST /v1/topics/{topic}/records` and `GET /v1/receipts/{id}`.
//!
//! A batch names its embedded format once, by the `format` field (`json` by default) or by the
//! content type `application/vnd.spillway.{json,string,binary}.v1+json`; each record's key and
//! value are in that format and header values are strings (base64 in `binary`).
//! `?wait=<duration>` (e.g. `2s`, capped by `limits.max_wait`) waits that long for spooled
//! records to reach Kafka, so a client that wants offsets can get 200 during normal operation.

use std::time::Duration;

use axum::Extension;
use axum::Json;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use spillway::record::SpillwayId;
use spillway::{ReceiptStatus, Record};
use utoipa::ToSchema;

use crate::admission::priority_from_headers;
use crate::api::PathParam;
use crate::auth::Principal;
use crate::body::{read_body, require_media_type};
use crate::codec::{Format, check_record, encode, parse_json};
use crate::error::{ApiError, ErrorBody};
use crate::produce::{Outcome, Prepared, deliver, overall_status, preflight};
use crate::state::AppState;

const MEDIA_TYPES: &[&str] = &[
    "application/json",
    "application/vnd.spillway.json.v1+json",
    "application/vnd.spillway.string.v1+json",
    "application/vnd.spillway.binary.v1+json",
];

/// A batch of records for one topic.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProduceRequest {
    /// `json` (default), `string` or `binary` (base64); or given by the content type.
    #[serde(default)]
    #[schema(example = "json")]
    pub format: Option<String>,
    pub records: Vec<ProduceRecord>,
}

/// One record. Absent or null key/value: null in Kafka.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProduceRecord {
    #[serde(default)]
    pub key: Value,
    #[serde(default)]
    pub value: Value,
    #[serde(default)]
    pub headers: Vec<Header>,
    /// An explicit partition; otherwise by key (murmur2), or sticky among healthy partitions.
    pub partition: Option<i32>,
    /// Milliseconds since the epoch; otherwise stamped by Spillway.
    pub timestamp_ms: Option<i64>,
    /// `critical`, `normal` or `bulk`; overrides the `Spillway-Priority` header.
    pub priority: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub name: String,
    /// A string (base64 when the batch format is `binary`); null for an empty value.
    pub value: Option<String>,
}

/// One result per request record, in request order.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProduceResponse {
    pub records: Vec<RecordResult>,
}

/// What became of one record: `delivered` (partition, offset), `spooled` (receipt),
/// `dead_lettered` (reason) or `rejected` (error_code, message, retry_after).
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordResult {
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    /// Where to ask for this record's fate later: `/v1/receipts/{id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Seconds after which retrying this record makes sense.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl RecordResult {
    fn from_outcome(o: &Outcome) -> Self {
        let mut r = RecordResult {
            status: String::new(),
            id: o.id().map(ToString::to_string),
            partition: None,
            offset: None,
            receipt: o.id().map(|id| format!("/v1/receipts/{id}")),
            error_code: None,
            message: None,
            retry_after: None,
        };
        match o {
            Outcome::Delivered {
                partition, offset, ..
            } => {
                r.status = "delivered".into();
                r.partition = Some(*partition);
                r.offset = *offset;
            }
            Outcome::Spooled { partition, .. } => {
                r.status = "spooled".into();
                r.partition = *partition;
            }
            Outcome::DeadLettered { reason, .. } => {
                r.status = "dead_lettered".into();
                r.error_code = Some(422);
                r.message = Some(reason.clone());
            }
            Outcome::Refused(e) => {
                r.status = "rejected".into();
                r.error_code = Some(e.status().as_u16());
                r.message = Some(e.public_message());
                r.retry_after = e.retry_after();
            }
        }
        r
    }
}

/// Parses `wait=<humantime duration>` from the query string, capped by `max`.
pub fn parse_wait(query: Option<&str>, max: Duration) -> Result<Duration, ApiError> {
    let Some(query) = query else {
        return Ok(Duration::ZERO);
    };
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name == "wait" {
            let d = humantime::parse_duration(value)
                .map_err(|e| ApiError::BadRequest(format!("wait={value}: {e}")))?;
            return Ok(d.min(max));
        }
    }
    Ok(Duration::ZERO)
}

/// Produce records to a topic.
#[utoipa::path(
    post,
    path = "/v1/topics/{topic}/records",
    tag = "native",
    params(
        ("topic" = String, Path, description = "Kafka topic"),
        ("wait" = Option<String>, Query, description = "Wait this long (e.g. `2s`) for spooled records to reach Kafka"),
        ("Spillway-Priority" = Option<String>, Header, description = "critical, normal or bulk"),
    ),
    request_body(content = ProduceRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "All records delivered to Kafka", body = ProduceResponse),
        (status = 202, description = "All records accepted, some durably spooled", body = ProduceResponse),
        (status = 207, description = "Mixed outcomes; see each record", body = ProduceResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 408, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, description = "Backpressure; see Retry-After", body = ErrorBody),
        (status = 503, description = "Shed, full or unavailable; see Retry-After", body = ErrorBody),
    )
)]
pub async fn produce(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    PathParam(topic): PathParam<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    preflight(&state, &principal, &topic)?;
    let media = require_media_type(&headers, MEDIA_TYPES)?;
    let header_priority = priority_from_headers(&headers)?;
    let wait = parse_wait(query.as_deref(), state.config().limits.max_wait)?;
    let body = read_body(&state, &headers, body).await?;
    let request: ProduceRequest = parse_json(&body.bytes)?;
    let format = batch_format(&media, request.format.as_deref())?;
    let limits = &state.config().limits;
    if request.records.is_empty() {
        return Err(ApiError::Unprocessable("records must not be empty".into()));
    }
    if request.records.len() > limits.max_records_per_request {
        return Err(ApiError::TooManyRecords {
            count: request.records.len(),
            limit: limits.max_records_per_request,
        });
    }
    // Every record is checked before any is sent: a bad batch writes nothing.
    let records = request
        .records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            to_record(
                &topic,
                format,
                header_priority,
                i,
                r,
                limits.max_record_bytes,
            )
        })
        .collect::<Result<Vec<Record>, ApiError>>()?;
    let outcomes = deliver(
        &state,
        records.into_iter().map(Prepared::Ok).collect(),
        wait,
    )
    .await;
    drop(body);
    let status = overall_status(&outcomes)?;
    let response = ProduceResponse {
        records: outcomes.iter().map(RecordResult::from_outcome).collect(),
    };
    Ok((status, Json(response)).into_response())
}

fn batch_format(media: &str, field: Option<&str>) -> Result<Format, ApiError> {
    let from_media = media
        .strip_prefix("application/vnd.spillway.")
        .and_then(|rest| rest.strip_suffix(".v1+json"))
        .map(Format::parse)
        .transpose()?;
    let from_field = field.map(Format::parse).transpose()?;
    match (from_media, from_field) {
        (Some(a), Some(b)) if a != b => Err(ApiError::Unprocessable(format!(
            "format field ({b:?}) contradicts the content type {media}"
        ))),
        (Some(f), _) | (None, Some(f)) => Ok(f),
        (None, None) => Ok(Format::Json),
    }
}

fn to_record(
    topic: &str,
    format: Format,
    header_priority: Option<spillway::Priority>,
    index: usize,
    r: &ProduceRecord,
    max_bytes: u64,
) -> Result<Record, ApiError> {
    let priority = match &r.priority {
        Some(p) => Some(
            p.parse()
                .map_err(|e| ApiError::Unprocessable(format!("record {index}: {e}")))?,
        ),
        None => header_priority,
    };
    let headers = r
        .headers
        .iter()
        .map(|h| {
            let value = match (&h.value, format) {
                (None, _) => Vec::new(),
                (Some(v), Format::Binary) => {
                    crate::codec::decode_base64(v, &format!("record {index} header {}", h.name))?
                }
                (Some(v), _) => v.clone().into_bytes(),
            };
            Ok((h.name.clone(), value))
        })
        .collect::<Result<_, ApiError>>()?;
    let record = Record {
        topic: topic.to_string(),
        key: encode(format, &r.key, &format!("record {index} key"))?,
        value: encode(format, &r.value, &format!("record {index} value"))?,
        headers,
        partition: r.partition,
        timestamp_ms: r.timestamp_ms,
        priority,
    };
    check_record(&record, index, max_bytes)?;
    Ok(record)
}

/// The fate of an accepted record.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReceiptResponse {
    pub id: String,
    /// `pending`, `delivered` or `dead_lettered`.
    pub status: String,
    pub topic: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Look up a receipt.
#[utoipa::path(
    get,
    path = "/v1/receipts/{id}",
    tag = "native",
    params(("id" = String, Path, description = "The receipt id returned for a spooled record")),
    responses(
        (status = 200, body = ReceiptResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, description = "Unknown to this instance (or forgotten)", body = ErrorBody),
    )
)]
pub async fn receipt(
    State(state): State<AppState>,
    PathParam(id): PathParam<String>,
) -> Result<Json<ReceiptResponse>, ApiError> {
    if SpillwayId::parse(id.as_bytes()).is_none() {
        return Err(ApiError::BadRequest(format!("{id:?} is not a receipt id")));
    }
    let mut r = ReceiptResponse {
        id: id.clone(),
        status: String::new(),
        topic: String::new(),
        partition: None,
        offset: None,
        reason: None,
    };
    match state.engine().receipt(&id) {
        ReceiptStatus::Pending { topic, partition } => {
            (r.status, r.topic, r.partition) = ("pending".into(), topic, partition);
        }
        ReceiptStatus::Delivered {
            topic,
            partition,
            offset,
        } => {
            (r.status, r.topic, r.partition, r.offset) =
                ("delivered".into(), topic, Some(partition), offset);
        }
        ReceiptStatus::DeadLettered { topic, reason } => {
            (r.status, r.topic, r.reason) = ("dead_lettered".into(), topic, Some(reason));
        }
        ReceiptStatus::Unknown => return Err(ApiError::ReceiptNotFound(id)),
    }
    Ok(Json(r))
}
