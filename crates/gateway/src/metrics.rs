//! The gateway's own metrics, the middleware that records them (and logs errors), and the
//! `/metrics` router served on its own listener.
//!
//! The gateway exports, in the same registry the engine adds its metrics to:
//! - `spillway_http_requests_total{route,status}`: responses by route template and status;
//! - `spillway_http_request_duration_seconds{route}`: time to the response head;
//! - `spillway_sheds_total{route,priority,reason}`: refusals the *gateway* makes to protect
//!   itself (`inflight_bytes` 429, `concurrency` 503). Sheds the engine decides (degraded, full)
//!   are counted by the engine. One name may have one family: when the engine registers
//!   `spillway_sheds` itself, the gateway does not register a second one and only logs its own
//!   sheds (until the engine lends its family to the gateway; see `docs/http-api.md`).
//!
//! `route` is the matched route template (`/v1/topics/{topic}/records`), or `unmatched`, so
//! label cardinality stays bounded whatever clients send.

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::admission::priority_label;
use crate::error::{ApiError, LoggedError};
use crate::state::AppState;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteStatus {
    pub route: String,
    pub status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: String,
}

/// `spillway_sheds_total` labels (`route`, `priority`, `reason`), the same label type as the
/// library's family of that name, so that one family can serve both.
pub type ShedFamily = Family<Vec<(&'static str, String)>, Counter>;

type HistogramFamily = Family<RouteLabel, Histogram, fn() -> Histogram>;

/// The gateway's metric families (cheap to clone: each family is shared).
#[derive(Debug, Clone)]
pub struct GatewayMetrics {
    pub requests: Family<RouteStatus, Counter>,
    pub duration: HistogramFamily,
    /// Exported only when the engine does not export `spillway_sheds_total` itself (one
    /// family per name, or the exposition is invalid); otherwise gateway sheds are only logged.
    pub sheds: ShedFamily,
}

fn duration_histogram() -> Histogram {
    // 0.5 ms .. ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl GatewayMetrics {
    /// Registers the gateway's families in `registry`; `spillway_sheds` only when
    /// `export_sheds` (false when the engine already registered that name).
    pub fn register(registry: &mut Registry, export_sheds: bool) -> Self {
        Self::register_with(registry, export_sheds, None)
    }

    /// Like [`GatewayMetrics::register`], counting sheds in `shared` (the engine's own
    /// `spillway_sheds` family, already registered) when given.
    pub fn register_with(
        registry: &mut Registry,
        export_sheds: bool,
        shared: Option<ShedFamily>,
    ) -> Self {
        let export_sheds = export_sheds && shared.is_none();
        let metrics = Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
            sheds: shared.unwrap_or_default(),
        };
        registry.register(
            "spillway_http_requests",
            "HTTP responses by route template and status code",
            metrics.requests.clone(),
        );
        registry.register(
            "spillway_http_request_duration_seconds",
            "Time from request to response head, by route template",
            metrics.duration.clone(),
        );
        if export_sheds {
            registry.register(
                "spillway_sheds",
                "Records refused to protect the service (429/503 with Retry-After), by reason",
                metrics.sheds.clone(),
            );
        }
        metrics
    }
}

/// Middleware: counts and times every response, counts the gateway's sheds, and logs errors
/// (the [`LoggedError`] left in the response) without their request bodies or tokens.
pub async fn track(
    State(state): State<AppState>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let route = matched.map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let priority = priority_label(request.headers());
    let method = request.method().clone();
    let start = Instant::now();
    let response = next.run(request).await;
    let status = response.status();
    let m = state.metrics();
    m.duration
        .get_or_create(&RouteLabel {
            route: route.clone(),
        })
        .observe(start.elapsed().as_secs_f64());
    m.requests
        .get_or_create(&RouteStatus {
            route: route.clone(),
            status: status.as_u16().to_string(),
        })
        .inc();
    if let Some(LoggedError(error)) = response.extensions().get::<LoggedError>() {
        let reason = match error.as_ref() {
            ApiError::InflightBytesExhausted => Some("inflight_bytes"),
            ApiError::Overloaded => Some("concurrency"),
            _ => None,
        };
        if let Some(reason) = reason {
            m.sheds
                .get_or_create(&vec![
                    ("route", route.clone()),
                    ("priority", priority.to_string()),
                    ("reason", reason.to_string()),
                ])
                .inc();
            tracing::info!(%route, priority, reason, "shed by the gateway");
        }
        if matches!(error.as_ref(), ApiError::Internal(_)) {
            tracing::error!(%method, %route, status = status.as_u16(), %error, "request failed");
        } else {
            tracing::debug!(%method, %route, status = status.as_u16(), %error, "request refused");
        }
    }
    response
}

/// Whether a metric family named `name` (as registered, without `_total`) is in `registry`.
pub fn registry_has(registry: &Registry, name: &str) -> bool {
    let mut text = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut text, registry);
    let type_line = format!("# TYPE {name} ");
    text.lines().any(|l| l.starts_with(&type_line))
}

/// The router of the metrics listener: `GET /metrics` in Prometheus text format.
pub fn metrics_app(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .with_state(state)
}

async fn render(State(state): State<AppState>) -> Response {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, state.registry()) {
        Ok(()) => {
            let mut response = (StatusCode::OK, text).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            response
        }
        Err(e) => ApiError::Internal(format!("encoding metrics: {e}")).into_response(),
    }
}
