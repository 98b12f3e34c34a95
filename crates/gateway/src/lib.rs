//! # spillway-gateway: HTTP intake
//!
//! The service most users meet: applications POST records; the gateway authenticates, checks,
//! admits and hands each record to the engine (the `spillway` library behind the [`Engine`]
//! trait), and answers only once the record is in Kafka (acks=all) or durably spooled (G1).
//!
//! ## The path of a request
//! 1. **Connection.** hyper closes a connection whose request head is not complete within
//!    `timeouts.header_read` (slowloris); TLS (rustls, optional mTLS) if configured.
//! 2. **Metrics middleware** (outermost): counts and times the response by route template,
//!    counts the gateway's own sheds, logs the error left in the response.
//! 3. **Auth middleware** (write routes, receipts, status): bearer token → [`auth::Principal`],
//!    or 401.
//! 4. **Admission** (write routes): load shed in front of a global concurrency limit; 503 at
//!    once past `limits.max_concurrent_requests`.
//! 5. **Handler preflight**, before the body is read: token may write the topic (403), topic
//!    legal and known to the engine (404), content type (415), `Spillway-Priority` (400).
//! 6. **Body**: `Content-Length` over the limit → 413; bytes reserved from the global in-flight
//!    budget (429); whole body within `timeouts.body_read` (408).
//! 7. **Parse and check every record** (400 not JSON, 422 wrong shape or base64, 413 too big)
//!    — a request with any invalid record sends nothing (native and v2); v3 batch and
//!    streaming report invalid entries one by one and send the valid ones.
//! 8. **Send** with `Engine::send`, called in request order (the order is fixed at the call),
//!    futures awaited together; optionally wait for spooled records to reach Kafka.
//! 9. **Answer**: per-record outcomes sum into one status.
//!
//! ## Status codes
//! | status | when |
//! |---|---|
//! | 200 | every record delivered to Kafka (acks=all); v3 streaming: the stream was accepted |
//! | 202 | every record accepted, some durably spooled (receipt per record) |
//! | 207 | mixed outcomes (native, v2); always for v3 `records:batch` |
//! | 400 | not JSON, bad header or query, broken body framing |
//! | 401 / 403 | no valid token / token may not write this topic (nothing written) |
//! | 404 | unknown topic, partition, receipt or route |
//! | 405 | method not allowed |
//! | 408 | body not received within `timeouts.body_read` |
//! | 413 | body, record or record count over the limit |
//! | 415 | content type not taken by the route |
//! | 422 | schema violation, invalid base64, engine `Invalid`/`Permanent` |
//! | 429 | engine `Backpressure`, or the gateway's in-flight byte budget; `Retry-After` |
//! | 503 | engine `Shed`/`Full`/`Unavailable`/`Dropped`/`ShuttingDown`, or the concurrency limit; `Retry-After` |
//!
//! Engine refusals map in [`error::reject_status`] only. Every error body is
//! `{"error_code": <status>, "message": ...}` from [`ApiError`]; `Retry-After` is in whole
//! seconds, the engine's hint (or 1 s) stretched by a random factor in [1, 1.5).
//! When no record of a request was accepted, the request answers with the first refusal's
//! status and body, so one refused record answers exactly like a refused request.
//!
//! ## Limits (bounded memory, G5)
//! `limits.max_body_bytes`, `max_record_bytes`, `max_records_per_request`,
//! `max_inflight_bytes` (sum of bodies held), `max_concurrent_requests`; v3 streams hold at most
//! [`api::v3_stream::REPORTS_IN_FLIGHT`] records each.
//!
//! ## Auth
//! Bearer tokens configured by SHA-256 (never in clear, never logged), each with topic patterns
//! (`*` wildcard). No tokens: auth off. `/healthz`, `/readyz`, `/openapi.json` stay open;
//! `/status` and receipts need any valid token; writes need a token allowed on the topic.
//! mTLS, when configured, is checked in the TLS handshake, before HTTP.
//!
//! ## Shutdown
//! [`serve`] on SIGTERM/SIGINT: stop accepting, stop v3 streams reading, give in-flight
//! requests `timeouts.drain`, then `Engine::shutdown` with the rest of `timeouts.shutdown`.
//! Undelivered records stay in the spool.
//!
//! ## Metrics
//! On a separate listener (`http.metrics_listen`): `spillway_http_requests_total{route,status}`,
//! `spillway_http_request_duration_seconds{route}`, `spillway_sheds_total{route,priority,reason}`
//! (gateway sheds only) and whatever the engine registers in the same registry.
//!
//! See `docs/http-api.md` for the wire formats and REST Proxy compatibility notes.

pub mod admission;
pub mod api;
pub mod auth;
pub mod body;
pub mod codec;
pub mod config;
mod engine;
pub mod error;
pub mod metrics;
pub mod produce;
pub mod router;
pub mod server;
pub mod spillway_engine;
pub mod state;

pub use config::{Config, ConfigError};
pub use engine::{Engine, Readiness, TopicKnown};
pub use error::ApiError;
pub use metrics::metrics_app;
pub use router::{app, openapi};
pub use server::{ServeError, Server, serve};
pub use spillway_engine::SpillwayEngine;
pub use state::AppState;
