//! Confluent REST Proxy v2 produce: `POST /topics/{topic}` and
//! `POST /topics/{topic}/partitions/{partition}`.
//!
//! - Content types: `application/vnd.kafka.json.v2+json` (key and value are JSON) and
//!   `application/vnd.kafka.binary.v2+json` (base64). Schema formats (avro, jsonschema,
//!   protobuf) need a schema registry: 415; schema fields in the body: 422.
//! - Response: `{"key_schema_id": null, "value_schema_id": null, "offsets": [...]}`, one offset
//!   entry per record in order, as REST Proxy. A spooled record has `offset: -1` (and
//!   `partition: -1` when not yet chosen) plus the Spillway extras `spillway_status: "spooled"`
//!   and `spillway_receipt`; a refused record in a mixed batch has `error_code` and `error`.

use axum::Extension;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use spillway::Record;
use utoipa::ToSchema;

use crate::admission::priority_from_headers;
use crate::api::PathParam;
use crate::auth::Principal;
use crate::body::{read_body, require_media_type};
use crate::codec::{Format, check_record, encode, parse_json};
use crate::error::{ApiError, ErrorBody};
use crate::produce::{Outcome, deliver, overall_status, preflight};
use crate::state::AppState;

pub const JSON_V2: &str = "application/vnd.kafka.json.v2+json";
pub const BINARY_V2: &str = "application/vnd.kafka.binary.v2+json";

/// A REST Proxy v2 produce request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct V2ProduceRequest {
    /// Must be absent or null: schemas are not supported.
    #[serde(default)]
    pub key_schema: Value,
    #[serde(default)]
    pub key_schema_id: Value,
    #[serde(default)]
    pub value_schema: Value,
    #[serde(default)]
    pub value_schema_id: Value,
    pub records: Vec<V2Record>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct V2Record {
    /// JSON (json.v2) or a base64 string (binary.v2); absent or null: null.
    #[serde(default)]
    pub key: Value,
    #[serde(default)]
    pub value: Value,
    pub partition: Option<i32>,
}

/// A REST Proxy v2 produce response.
#[derive(Debug, Serialize, ToSchema)]
pub struct V2ProduceResponse {
    /// Always null (no schemas).
    pub key_schema_id: Option<i32>,
    /// Always null (no schemas).
    pub value_schema_id: Option<i32>,
    pub offsets: Vec<V2Offset>,
}

/// One record's result. Spooled: `offset` -1 and the `spillway_*` fields.
#[derive(Debug, Serialize, ToSchema)]
pub struct V2Offset {
    pub partition: Option<i32>,
    pub offset: Option<i64>,
    pub error_code: Option<u16>,
    pub error: Option<String>,
    /// Spillway extension: `delivered` or `spooled` (absent for errors).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spillway_status: Option<String>,
    /// Spillway extension: the receipt id of an accepted record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spillway_receipt: Option<String>,
}

impl V2Offset {
    fn from_outcome(o: &Outcome) -> Self {
        let receipt = o.id().map(ToString::to_string);
        match o {
            Outcome::Delivered {
                partition, offset, ..
            } => V2Offset {
                partition: Some(*partition),
                offset: Some(offset.unwrap_or(-1)),
                error_code: None,
                error: None,
                spillway_status: Some("delivered".into()),
                spillway_receipt: receipt,
            },
            Outcome::Spooled { partition, .. } => V2Offset {
                partition: Some(partition.unwrap_or(-1)),
                offset: Some(-1),
                error_code: None,
                error: None,
                spillway_status: Some("spooled".into()),
                spillway_receipt: receipt,
            },
            Outcome::DeadLettered { reason, .. } => V2Offset {
                partition: None,
                offset: None,
                error_code: Some(422),
                error: Some(format!("dead-lettered: {reason}")),
                spillway_status: None,
                spillway_receipt: receipt,
            },
            Outcome::Refused(e) => V2Offset {
                partition: None,
                offset: None,
                error_code: Some(e.status().as_u16()),
                error: Some(e.public_message()),
                spillway_status: None,
                spillway_receipt: None,
            },
        }
    }
}

/// Produce records to a topic (REST Proxy v2).
#[utoipa::path(
    post,
    path = "/topics/{topic}",
    tag = "rest-proxy-v2",
    params(
        ("topic" = String, Path, description = "Kafka topic"),
        ("Spillway-Priority" = Option<String>, Header, description = "critical, normal or bulk"),
    ),
    request_body(content(
        (V2ProduceRequest = "application/vnd.kafka.json.v2+json"),
        (V2ProduceRequest = "application/vnd.kafka.binary.v2+json"),
    )),
    responses(
        (status = 200, description = "All delivered", body = V2ProduceResponse),
        (status = 202, description = "All accepted, some spooled (offset -1)", body = V2ProduceResponse),
        (status = 207, description = "Mixed; see error_code per offset", body = V2ProduceResponse),
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
    PathParam(topic): PathParam<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    produce_v2(state, principal, topic, None, headers, body).await
}

/// Produce records to one partition (REST Proxy v2).
#[utoipa::path(
    post,
    path = "/topics/{topic}/partitions/{partition}",
    tag = "rest-proxy-v2",
    params(
        ("topic" = String, Path, description = "Kafka topic"),
        ("partition" = i32, Path, description = "Partition id"),
        ("Spillway-Priority" = Option<String>, Header, description = "critical, normal or bulk"),
    ),
    request_body(content(
        (V2ProduceRequest = "application/vnd.kafka.json.v2+json"),
        (V2ProduceRequest = "application/vnd.kafka.binary.v2+json"),
    )),
    responses(
        (status = 200, body = V2ProduceResponse), (status = 202, body = V2ProduceResponse),
        (status = 207, body = V2ProduceResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody),
    )
)]
pub async fn produce_to_partition(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    PathParam((topic, partition)): PathParam<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let p = partition
        .parse::<i32>()
        .ok()
        .filter(|p| *p >= 0)
        .ok_or_else(|| ApiError::UnknownPartition(partition.clone()))?;
    produce_v2(state, principal, topic, Some(p), headers, body).await
}

async fn produce_v2(
    state: AppState,
    principal: Principal,
    topic: String,
    path_partition: Option<i32>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    preflight(&state, &principal, &topic)?;
    let format = match require_media_type(&headers, &[JSON_V2, BINARY_V2])?.as_str() {
        BINARY_V2 => Format::Binary,
        _ => Format::Json,
    };
    let priority = priority_from_headers(&headers)?;
    let body = read_body(&state, &headers, body).await?;
    let request: V2ProduceRequest = parse_json(&body.bytes)?;
    let limits = &state.config().limits;
    for (name, v) in [
        ("key_schema", &request.key_schema),
        ("key_schema_id", &request.key_schema_id),
        ("value_schema", &request.value_schema),
        ("value_schema_id", &request.value_schema_id),
    ] {
        if !v.is_null() {
            return Err(ApiError::Unprocessable(format!(
                "{name}: schemas are not supported; use the json or binary embedded format"
            )));
        }
    }
    if request.records.is_empty() {
        return Err(ApiError::Unprocessable("records must not be empty".into()));
    }
    if request.records.len() > limits.max_records_per_request {
        return Err(ApiError::TooManyRecords {
            count: request.records.len(),
            limit: limits.max_records_per_request,
        });
    }
    let mut records = Vec::with_capacity(request.records.len());
    for (i, r) in request.records.iter().enumerate() {
        let partition = match (path_partition, r.partition) {
            (Some(p), Some(q)) if p != q => {
                return Err(ApiError::Unprocessable(format!(
                    "record {i}: partition {q} differs from the path's {p}"
                )));
            }
            (Some(p), _) => Some(p),
            (None, q) => q,
        };
        let record = Record {
            topic: topic.clone(),
            key: encode(format, &r.key, &format!("record {i} key"))?,
            value: encode(format, &r.value, &format!("record {i} value"))?,
            headers: Vec::new(),
            partition,
            timestamp_ms: None,
            priority,
        };
        check_record(&record, i, limits.max_record_bytes)?;
        records.push(Ok(record));
    }
    let outcomes = deliver(&state, records, state.config().rest_proxy.wait).await;
    drop(body);
    let status = overall_status(&outcomes)?;
    let response = V2ProduceResponse {
        key_schema_id: None,
        value_schema_id: None,
        offsets: outcomes.iter().map(V2Offset::from_outcome).collect(),
    };
    Ok((status, Json(response)).into_response())
}
