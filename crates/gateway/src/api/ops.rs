//! Operations endpoints on the API listener: `/healthz`, `/readyz`, `/status`, `/openapi.json`.
//! (`/metrics` is on its own listener; see [`crate::metrics`].)

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`: the process answers.
    pub status: String,
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    pub ready: bool,
    pub reason: String,
}

/// Whether records can be accepted durably now (stays ready during a Kafka outage while the
/// spool has room).
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Ready), (status = 503, body = ErrorBody)))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Ready>, ApiError> {
    let r = state.engine().readiness();
    if r.ready {
        Ok(Json(Ready {
            ready: true,
            reason: r.reason,
        }))
    } else {
        Err(ApiError::NotReady(r.reason))
    }
}

/// The engine's full picture (Kafka, breakers, spool, sheds, dead letters) and the gateway's.
#[utoipa::path(get, path = "/status", tag = "operations",
    responses((status = 200, description = "{\"gateway\": {...}, \"engine\": {...}}", body = Object),
        (status = 401, body = ErrorBody)))]
pub async fn status(State(state): State<AppState>) -> Json<Value> {
    let c = state.config();
    Json(json!({
        "gateway": {
            "version": env!("CARGO_PKG_VERSION"),
            "listen": c.http.listen.to_string(),
            "tls": c.tls.is_some(),
            "mtls": c.tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
            "auth": state.auth().enabled(),
            "inflight_bytes": state.inflight().used(),
            "max_inflight_bytes": state.inflight().limit(),
            "max_concurrent_requests": c.limits.max_concurrent_requests,
        },
        "engine": state.engine().status(),
    }))
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1 document", body = Object)))]
pub async fn openapi_json() -> Response {
    let mut response = crate::router::openapi_text().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
