//! The router: every route is registered through `utoipa-axum`'s `routes!`, from the same
//! `#[utoipa::path]` attribute that documents it, so `/openapi.json` cannot drift from what is
//! served. Layers, outermost first:
//! 1. metrics and error logging (every route and the fallbacks);
//! 2. auth (write routes, receipts, status): 401 before anything else;
//! 3. admission (write routes): load shed + a global concurrency limit, 503 at once.

use std::sync::LazyLock;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::http::Uri;
use axum::middleware;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::{ops, v1, v2, v3};
use crate::error::ApiError;
use crate::state::AppState;
use crate::{auth, metrics};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Spillway gateway",
        description = "Accepts records for Kafka and keeps accepting them when Kafka cannot: 200 \
            when delivered (acks=all), 202 when durably spooled, 429/503 with Retry-After when \
            shedding. Native /v1 API plus Confluent REST Proxy v2 and v3 produce."
    ),
    tags(
        (name = "native", description = "Spillway's own API"),
        (name = "rest-proxy-v3", description = "Confluent REST Proxy v3 produce"),
        (name = "rest-proxy-v2", description = "Confluent REST Proxy v2 produce"),
        (name = "operations", description = "Health, readiness, status, this document"),
    ),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Routes that write records: auth and admission apply.
fn write_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(v1::produce))
        .routes(routes!(v3::produce))
        .routes(routes!(v3::produce_batch))
        .routes(routes!(v2::produce))
        .routes(routes!(v2::produce_to_partition))
}

/// Routes that read: auth applies (any valid token).
fn read_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(v1::receipt))
        .routes(routes!(ops::status))
}

/// Routes open to anyone: probes and the API document.
fn open_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::openapi_json))
}

/// The OpenAPI document of every route [`app`] serves.
pub fn openapi() -> utoipa::openapi::OpenApi {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(write_routes())
        .merge(read_routes())
        .merge(open_routes())
        .into_openapi()
}

/// [`openapi`] as JSON text, built once.
pub fn openapi_text() -> String {
    static TEXT: LazyLock<String> = LazyLock::new(|| {
        openapi()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    });
    TEXT.clone()
}

/// The API router (everything but `/metrics`); tests drive it with `oneshot`.
pub fn app(state: AppState) -> Router {
    let admission = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
            ApiError::Overloaded
        }))
        .layer(LoadShedLayer::new())
        .layer(GlobalConcurrencyLimitLayer::new(
            state.config().limits.max_concurrent_requests,
        ));
    let auth = middleware::from_fn_with_state(state.clone(), auth::require_token);
    let writes = write_routes()
        .route_layer(admission)
        .route_layer(auth.clone());
    let reads = read_routes().route_layer(auth);
    let (router, _) = OpenApiRouter::new()
        .merge(writes)
        .merge(reads)
        .merge(open_routes())
        .split_for_parts();
    router
        .fallback(|uri: Uri| async move { ApiError::NoRoute(uri.path().to_string()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .with_state(state)
}
