//! Auth (401/403 on every write route, nothing written), admission (in-flight bytes 429,
//! concurrency 503, counted as sheds), the metrics endpoint, and OpenAPI coverage.

mod support;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, header};
use serde_json::json;
use spillway_gateway::Config;
use spillway_gateway::auth::token_sha256_hex;
use spillway_gateway::config::TokenConfig;
use support::*;

/// Every POST route of the OpenAPI document, with parameters filled and a valid body.
fn write_requests() -> Vec<(String, &'static str, String)> {
    let doc = serde_json::to_value(spillway_gateway::openapi()).unwrap();
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if item.get("post").is_none() {
            continue;
        }
        let uri = path
            .replace("{topic}", "orders")
            .replace("{cluster_id}", "lkc-1")
            .replace("{partition}", "0");
        let (ct, body) = if path.starts_with("/v1/") {
            ("application/json", json!({"records": [{"value": 1}]}))
        } else if path.ends_with("records:batch") {
            (
                "application/json",
                json!({"entries": [{"id": "a", "value": {"type": "JSON", "data": 1}}]}),
            )
        } else if path.starts_with("/v3/") {
            (
                "application/json",
                json!({"value": {"type": "JSON", "data": 1}}),
            )
        } else if path.starts_with("/topics/") {
            (
                "application/vnd.kafka.json.v2+json",
                json!({"records": [{"value": 1}]}),
            )
        } else {
            panic!("a new write route {path}: add a valid body for it here");
        };
        out.push((uri, ct, body.to_string()));
    }
    assert_eq!(out.len(), 5, "{out:?}");
    out
}

fn auth_config() -> Config {
    let mut c = Config::default();
    c.auth.tokens = vec![
        TokenConfig {
            name: "orders-writer".into(),
            sha256: token_sha256_hex("w-token"),
            topics: vec!["orders*".into()],
        },
        TokenConfig {
            name: "logs-writer".into(),
            sha256: token_sha256_hex("l-token"),
            topics: vec!["logs".into()],
        },
    ];
    c
}

fn bearer(r: Request<Body>, token: &str) -> Request<Body> {
    with_header(r, "authorization", &format!("Bearer {token}"))
}

#[tokio::test]
async fn every_write_route_refuses_without_a_valid_token_and_writes_nothing() {
    let engine = ScriptedEngine::new();
    let app = spillway_gateway::app(state_with(&engine, auth_config()));
    for (uri, ct, body) in write_requests() {
        let r = call(&app, post(&uri, ct, body.clone())).await;
        r.assert_error(401);
        assert!(r.headers.contains_key(header::WWW_AUTHENTICATE), "{uri}");
        call(&app, bearer(post(&uri, ct, body.clone()), "wrong"))
            .await
            .assert_error(401);
        call(
            &app,
            with_header(
                post(&uri, ct, body.clone()),
                "authorization",
                "Basic dzp0b2tlbg==",
            ),
        )
        .await
        .assert_error(401);
        let r = call(&app, bearer(post(&uri, ct, body.clone()), "l-token")).await;
        r.assert_error(403);
        assert!(
            r.text.contains("logs-writer") && !r.text.contains("l-token"),
            "{}",
            r.text
        );
        assert_eq!(
            engine.sent_count(),
            0,
            "{uri}: refused requests must write nothing"
        );
    }
    for (uri, ct, body) in write_requests() {
        let r = call(&app, bearer(post(&uri, ct, body), "w-token")).await;
        assert!(r.status.is_success(), "{uri}: {} {}", r.status, r.text);
    }
    assert_eq!(engine.sent_count(), 5);
}

#[tokio::test]
async fn auth_is_checked_before_the_body_so_garbage_from_strangers_is_401() {
    let engine = ScriptedEngine::new();
    let app = spillway_gateway::app(state_with(&engine, auth_config()));
    call(
        &app,
        post("/v1/topics/orders/records", "text/plain", "garbage"),
    )
    .await
    .assert_error(401);
    call(
        &app,
        bearer(
            post("/v1/topics/payments/records", "text/plain", "garbage"),
            "w-token",
        ),
    )
    .await
    .assert_error(403);
}

#[tokio::test]
async fn reads_need_a_token_but_probes_and_the_api_document_do_not() {
    let engine = ScriptedEngine::new();
    let app = spillway_gateway::app(state_with(&engine, auth_config()));
    call(&app, get("/status")).await.assert_error(401);
    call(&app, get("/v1/receipts/0000000000000abc:1:1"))
        .await
        .assert_error(401);
    assert_eq!(
        call(&app, bearer(get("/status"), "l-token")).await.status,
        200
    );
    for open in ["/healthz", "/readyz", "/openapi.json"] {
        assert_eq!(call(&app, get(open)).await.status, 200, "{open}");
    }
}

async fn wait_for_sends(engine: &ScriptedEngine, n: usize) {
    for _ in 0..200 {
        if engine.sent_count() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("engine never received {n} records");
}

#[tokio::test]
async fn the_in_flight_byte_budget_refuses_fast_with_429_and_counts_a_shed() {
    let engine = ScriptedEngine::new();
    let mut config = Config::default();
    config.limits.max_body_bytes = 1000;
    config.limits.max_inflight_bytes = 1000;
    let state = state_with(&engine, config);
    let app = spillway_gateway::app(state.clone());
    let release = engine.hold_sends();
    let big = json!({"records": [{"value": "x".repeat(900)}]}).to_string();
    let first = tokio::spawn({
        let app = app.clone();
        async move {
            call(
                &app,
                post("/v1/topics/orders/records", "application/json", big),
            )
            .await
        }
    });
    wait_for_sends(&engine, 1).await;
    let small = json!({"records": [{"value": "y".repeat(150)}]}).to_string();
    let r = call(
        &app,
        with_header(
            post("/v1/topics/orders/records", "application/json", small),
            "spillway-priority",
            "bulk",
        ),
    )
    .await;
    r.assert_error(429);
    assert!(r.retry_after().is_some());
    assert_eq!(engine.sent_count(), 1);
    release.add_permits(10);
    assert_eq!(first.await.unwrap().status, 200);
    assert_eq!(state.inflight().used(), 0, "reservations are returned");
    let metrics = call(&spillway_gateway::metrics_app(state), get("/metrics"))
        .await
        .text;
    assert!(metrics.contains(r#"spillway_sheds_total{route="/v1/topics/{topic}/records",priority="bulk",reason="inflight_bytes"} 1"#), "{metrics}");
}

#[tokio::test]
async fn past_the_concurrency_limit_requests_get_503_at_once() {
    let engine = ScriptedEngine::new();
    let mut config = Config::default();
    config.limits.max_concurrent_requests = 1;
    let state = state_with(&engine, config);
    let app = spillway_gateway::app(state.clone());
    let release = engine.hold_sends();
    let body = json!({"records": [{"value": 1}]}).to_string();
    let first = tokio::spawn({
        let (app, body) = (app.clone(), body.clone());
        async move {
            call(
                &app,
                post("/v1/topics/orders/records", "application/json", body),
            )
            .await
        }
    });
    wait_for_sends(&engine, 1).await;
    let r = tokio::time::timeout(
        Duration::from_secs(2),
        call(
            &app,
            post(
                "/v3/clusters/c/topics/orders/records",
                "application/json",
                json!({"value": {"type": "JSON", "data": 1}}).to_string(),
            ),
        ),
    )
    .await
    .expect("refused at once, not queued");
    r.assert_error(503);
    assert!(r.retry_after().is_some());
    // Probes are not subject to the limit.
    assert_eq!(call(&app, get("/healthz")).await.status, 200);
    release.add_permits(10);
    assert_eq!(first.await.unwrap().status, 200);
    let metrics = call(&spillway_gateway::metrics_app(state), get("/metrics"))
        .await
        .text;
    assert!(metrics.contains(r#"reason="concurrency""#), "{metrics}");
}

#[tokio::test]
async fn the_metrics_endpoint_serves_http_metrics_and_the_engines() {
    let engine = ScriptedEngine::new();
    let state = state(&engine);
    let app = spillway_gateway::app(state.clone());
    call(
        &app,
        post(
            "/v1/topics/orders/records",
            "application/json",
            json!({"records": [{"value": 1}]}).to_string(),
        ),
    )
    .await;
    call(&app, get("/nope")).await;
    let r = call(&spillway_gateway::metrics_app(state), get("/metrics")).await;
    assert_eq!(r.status, 200);
    for name in [
        r#"spillway_http_requests_total{route="/v1/topics/{topic}/records",status="200"} 1"#,
        r#"spillway_http_requests_total{route="unmatched",status="404"} 1"#,
        "spillway_http_request_duration_seconds_bucket{",
        "spillway_http_request_duration_seconds_count{",
        "# TYPE spillway_sheds counter",
        "spillway_test_engine_records_total",
    ] {
        assert!(r.text.contains(name), "missing {name} in\n{}", r.text);
    }
    let types: Vec<&str> = r
        .text
        .lines()
        .filter(|l| l.starts_with("# TYPE "))
        .collect();
    let unique: std::collections::HashSet<_> = types.iter().collect();
    assert_eq!(
        types.len(),
        unique.len(),
        "a metric family registered twice"
    );
}

#[tokio::test]
async fn when_the_engine_exports_sheds_the_gateway_does_not_register_a_second_family() {
    let engine = ScriptedEngine::exporting_sheds();
    let state = state(&engine);
    let text = call(&spillway_gateway::metrics_app(state), get("/metrics"))
        .await
        .text;
    let type_lines = text
        .lines()
        .filter(|l| l.starts_with("# TYPE spillway_sheds "))
        .count();
    assert_eq!(type_lines, 1, "{text}");
    assert!(text.contains(r#"reason="full""#));
    assert!(text.contains("# TYPE spillway_http_requests counter"));
}

#[tokio::test]
async fn openapi_documents_every_route_and_every_documented_route_is_served() {
    let doc = serde_json::to_value(spillway_gateway::openapi()).unwrap();
    let mut documented: Vec<String> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                documented.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    documented.sort();
    let expected = [
        "GET /healthz",
        "GET /openapi.json",
        "GET /readyz",
        "GET /status",
        "GET /v1/receipts/{id}",
        "POST /topics/{topic}",
        "POST /topics/{topic}/partitions/{partition}",
        "POST /v1/topics/{topic}/records",
        "POST /v3/clusters/{cluster_id}/topics/{topic}/records",
        "POST /v3/clusters/{cluster_id}/topics/{topic}/records:batch",
    ];
    assert_eq!(documented, expected);
    // Each documented route is served (not the 404/405 fallbacks).
    let engine = ScriptedEngine::new();
    let app = app(&engine);
    for entry in &documented {
        let (method, path) = entry.split_once(' ').unwrap();
        let uri = path
            .replace("{topic}", "orders")
            .replace("{cluster_id}", "c")
            .replace("{partition}", "0")
            .replace("{id}", "x");
        let req = Request::builder()
            .method(method)
            .uri(&uri)
            .body(Body::empty())
            .unwrap();
        let r = call(&app, req).await;
        assert!(
            r.status != 405 && !r.text.contains("no route for"),
            "{entry}: {} {}",
            r.status,
            r.text
        );
    }
    // The served document is the same document.
    let served = call(&app, get("/openapi.json")).await.json();
    assert_eq!(served, doc);
}

/// Routes can only be added through `utoipa-axum`'s `routes!` (documented by construction);
/// a plain `.route(` in the API sources would serve something the document does not show.
#[test]
fn no_api_route_bypasses_the_openapi_router() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offenders = Vec::new();
    let mut stack = vec![src];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            // metrics.rs builds the separate metrics listener's router, not the API.
            if path.file_name().unwrap() == "metrics.rs" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for needle in [".route(", ".route_service(", ".nest(", ".nest_service("] {
                if text.contains(needle) {
                    offenders.push(format!("{}: {needle}", path.display()));
                }
            }
        }
    }
    assert!(offenders.is_empty(), "{offenders:?}");
}
