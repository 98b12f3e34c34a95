//! The native `/v1` API and the operations endpoints, through the router with `oneshot`.

mod support;

use std::time::Duration;

use serde_json::json;
use spillway::{Priority, ReceiptStatus, RejectReason};
use spillway_gateway::Readiness;
use support::*;

const URI: &str = "/v1/topics/orders/records";

fn batch(records: serde_json::Value) -> String {
    json!({ "records": records }).to_string()
}

#[tokio::test]
async fn delivered_records_answer_200_with_partition_and_offset() {
    let engine = ScriptedEngine::new();
    let r = call(
        &app(&engine),
        post(
            URI,
            "application/json",
            batch(json!([
                {"key": "k1", "value": {"n": 1}},
                {"value": [1, 2], "partition": 3},
            ])),
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let j = r.json();
    assert_eq!(j["records"][0]["status"], "delivered");
    assert_eq!(j["records"][1]["partition"], 3);
    assert!(j["records"][0]["offset"].is_i64());
    let sent = engine.sent.lock().clone();
    assert_eq!(sent[0].key.as_deref(), Some(&b"\"k1\""[..]));
    assert_eq!(sent[0].value.as_deref(), Some(&br#"{"n":1}"#[..]));
    assert_eq!(sent[1].partition, Some(3));
    assert_eq!(
        sent[0].priority, None,
        "no header: the engine applies the route default"
    );
}

#[tokio::test]
async fn spooled_records_answer_202_with_a_receipt_each() {
    let engine = ScriptedEngine::new();
    engine.always(Script::Spool);
    let r = call(
        &app(&engine),
        post(
            URI,
            "application/json",
            batch(json!([{"value": 1}, {"value": 2}])),
        ),
    )
    .await;
    assert_eq!(r.status, 202);
    for rec in r.json()["records"].as_array().unwrap() {
        assert_eq!(rec["status"], "spooled");
        let id = rec["id"].as_str().unwrap();
        assert_eq!(rec["receipt"], format!("/v1/receipts/{id}"));
    }
}

#[tokio::test]
async fn mixed_outcomes_answer_207_with_each_records_result() {
    let engine = ScriptedEngine::new();
    engine.then([
        Script::Deliver,
        Script::Spool,
        Script::Reject(RejectReason::Shed, Some(Duration::from_secs(2))),
    ]);
    let r = call(
        &app(&engine),
        post(
            URI,
            "application/json",
            batch(json!([{"value": 1}, {"value": 2}, {"value": 3}])),
        ),
    )
    .await;
    assert_eq!(r.status, 207);
    let recs = r.json()["records"].clone();
    assert_eq!(recs[0]["status"], "delivered");
    assert_eq!(recs[1]["status"], "spooled");
    assert_eq!(recs[2]["status"], "rejected");
    assert_eq!(recs[2]["error_code"], 503);
    assert!(recs[2]["retry_after"].as_u64().unwrap() >= 2);
}

#[tokio::test]
async fn engine_refusals_map_to_their_status_with_jittered_retry_after() {
    let cases = [
        (RejectReason::Shed, 503, true),
        (RejectReason::Full, 503, true),
        (RejectReason::Unavailable, 503, true),
        (RejectReason::Dropped, 503, true),
        (RejectReason::ShuttingDown, 503, true),
        (RejectReason::Backpressure, 429, true),
        (RejectReason::Invalid, 422, false),
        (RejectReason::Permanent, 422, false),
        (RejectReason::UnknownTopic, 404, false),
    ];
    for (reason, status, retry) in cases {
        let engine = ScriptedEngine::new();
        engine.always(Script::Reject(reason, Some(Duration::from_secs(10))));
        let r = call(
            &app(&engine),
            post(URI, "application/json", batch(json!([{"value": 1}]))),
        )
        .await;
        r.assert_error(status);
        match r.retry_after() {
            Some(s) => assert!(retry && (10..=15).contains(&s), "{reason:?}: {s}"),
            None => assert!(!retry, "{reason:?} should carry Retry-After"),
        }
    }
}

#[tokio::test]
async fn retry_after_defaults_to_about_a_second_when_the_engine_gives_none() {
    let engine = ScriptedEngine::new();
    engine.always(Script::Reject(RejectReason::Full, None));
    let r = call(
        &app(&engine),
        post(URI, "application/json", batch(json!([{"value": 1}]))),
    )
    .await;
    r.assert_error(503);
    assert!((1..=2).contains(&r.retry_after().unwrap()));
}

#[tokio::test]
async fn records_are_sent_in_request_order() {
    let engine = ScriptedEngine::new();
    let records: Vec<_> = (0..50)
        .map(|i| json!({"key": "same", "value": i}))
        .collect();
    let r = call(
        &app(&engine),
        post(URI, "application/json", batch(json!(records))),
    )
    .await;
    assert_eq!(r.status, 200);
    let values: Vec<_> = engine
        .sent_values()
        .into_iter()
        .map(|v| String::from_utf8(v.unwrap()).unwrap())
        .collect();
    let expected: Vec<_> = (0..50).map(|i| i.to_string()).collect();
    assert_eq!(values, expected);
}

#[tokio::test]
async fn string_and_binary_formats_come_from_the_field_or_the_content_type() {
    let engine = ScriptedEngine::new();
    let app = app(&engine);
    let r = call(
        &app,
        post(
            URI,
            "application/json",
            json!({"format": "string", "records": [{"value": "plain"}]}).to_string(),
        ),
    )
    .await;
    assert_eq!(r.status, 200);
    let r = call(&app, post(URI, "application/vnd.spillway.binary.v1+json", batch(json!([{"key": "AAE=", "value": "aGk=", "headers": [{"name": "h", "value": "AA=="}]}])))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = engine.sent.lock().clone();
    assert_eq!(sent[0].value.as_deref(), Some(&b"plain"[..]));
    assert_eq!(sent[1].key.as_deref(), Some(&[0u8, 1][..]));
    assert_eq!(sent[1].value.as_deref(), Some(&b"hi"[..]));
    assert_eq!(sent[1].headers, vec![("h".to_string(), vec![0u8])]);
}

#[tokio::test]
async fn priority_comes_from_the_header_and_a_records_field_overrides_it() {
    let engine = ScriptedEngine::new();
    let req = with_header(
        post(
            URI,
            "application/json",
            batch(json!([{"value": 1}, {"value": 2, "priority": "bulk"}])),
        ),
        "spillway-priority",
        "critical",
    );
    assert_eq!(call(&app(&engine), req).await.status, 200);
    let p: Vec<_> = engine.sent.lock().iter().map(|r| r.priority).collect();
    assert_eq!(p, vec![Some(Priority::Critical), Some(Priority::Bulk)]);
}

#[tokio::test]
async fn an_unknown_priority_header_is_400_and_sends_nothing() {
    let engine = ScriptedEngine::new();
    let req = with_header(
        post(URI, "application/json", batch(json!([{"value": 1}]))),
        "spillway-priority",
        "urgent",
    );
    call(&app(&engine), req).await.assert_error(400);
    assert_eq!(engine.sent_count(), 0);
}

#[tokio::test]
async fn waiting_turns_a_spooled_record_into_a_delivered_200() {
    let engine = ScriptedEngine::new();
    engine.always(Script::Spool);
    *engine.final_status.lock() = Some(ReceiptStatus::Delivered {
        topic: "orders".into(),
        partition: 2,
        offset: Some(7),
    });
    let r = call(
        &app(&engine),
        post(
            &format!("{URI}?wait=2s"),
            "application/json",
            batch(json!([{"value": 1}])),
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["records"][0]["offset"], 7);
    // Without wait the same record is 202.
    let r = call(
        &app(&engine),
        post(URI, "application/json", batch(json!([{"value": 1}]))),
    )
    .await;
    assert_eq!(r.status, 202);
}

#[tokio::test]
async fn bad_input_is_refused_with_its_status_and_never_reaches_the_engine() {
    let engine = ScriptedEngine::new();
    let app = app(&engine);
    let big = "x".repeat((1 << 20) + 1);
    let cases: Vec<(axum::http::Request<axum::body::Body>, u16)> = vec![
        (post(URI, "application/json", "{\"records\": [}"), 400),
        (post(URI, "application/json", ""), 400),
        (post(URI, "text/plain", batch(json!([{"value": 1}]))), 415),
        (
            post(
                URI,
                "application/vnd.kafka.avro.v2+json",
                batch(json!([{"value": 1}])),
            ),
            415,
        ),
        (
            post(
                URI,
                "application/json",
                json!({"format": "binary", "records": [{"value": "%%%"}]}).to_string(),
            ),
            422,
        ),
        (
            post(
                URI,
                "application/json",
                json!({"records": [{"value": 1, "colour": "red"}]}).to_string(),
            ),
            422,
        ),
        (
            post(
                URI,
                "application/json",
                json!({"records": "nope"}).to_string(),
            ),
            422,
        ),
        (
            post(URI, "application/json", json!({"records": []}).to_string()),
            422,
        ),
        (
            post(
                URI,
                "application/json",
                json!({"format": "avro", "records": [{"value": 1}]}).to_string(),
            ),
            422,
        ),
        (
            post(
                URI,
                "application/json",
                batch(json!([{"value": 1, "headers": [{"name": "spillway.id", "value": "x"}]}])),
            ),
            422,
        ),
        (
            post(
                URI,
                "application/json",
                batch(json!([{"value": 1, "partition": -2}])),
            ),
            422,
        ),
        (
            post(URI, "application/json", batch(json!([{"value": big}]))),
            413,
        ),
        (
            post(
                &format!("{URI}?wait=soon"),
                "application/json",
                batch(json!([{"value": 1}])),
            ),
            400,
        ),
        (
            post(
                "/v1/topics/nope/records",
                "application/json",
                batch(json!([{"value": 1}])),
            ),
            404,
        ),
        (
            post(
                "/v1/topics/bad%20name/records",
                "application/json",
                batch(json!([{"value": 1}])),
            ),
            404,
        ),
    ];
    for (req, status) in cases {
        let uri = req.uri().to_string();
        let r = call(&app, req).await;
        assert_eq!(r.status.as_u16(), status, "{uri}: {}", r.text);
        r.assert_error(status);
    }
    assert_eq!(engine.sent_count(), 0);
}

#[tokio::test]
async fn one_bad_record_in_a_batch_sends_none_of_it() {
    let engine = ScriptedEngine::new();
    let r = call(
        &app(&engine),
        post(
            URI,
            "application/json",
            json!({"format": "binary", "records": [{"value": "AA=="}, {"value": "!"}]}).to_string(),
        ),
    )
    .await;
    r.assert_error(422);
    assert!(r.json()["message"].as_str().unwrap().contains("record 1"));
    assert_eq!(engine.sent_count(), 0);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_from_its_content_length_alone() {
    let engine = ScriptedEngine::new();
    let mut config = spillway_gateway::Config::default();
    config.limits.max_body_bytes = 64;
    let app = spillway_gateway::app(state_with(&engine, config));
    let r = call(
        &app,
        post(
            URI,
            "application/json",
            batch(json!([{"value": "x".repeat(100)}])),
        ),
    )
    .await;
    r.assert_error(413);
    // Chunked, no Content-Length: cut off once past the limit.
    let chunks = vec![
        "{\"records\":[{\"value\":\"".to_string(),
        "y".repeat(100),
        "\"}]}".to_string(),
    ];
    call(&app, post_chunked(URI, "application/json", chunks))
        .await
        .assert_error(413);
    assert_eq!(engine.sent_count(), 0);
}

#[tokio::test]
async fn too_many_records_in_one_request_is_413() {
    let engine = ScriptedEngine::new();
    let mut config = spillway_gateway::Config::default();
    config.limits.max_records_per_request = 2;
    let app = spillway_gateway::app(state_with(&engine, config));
    call(
        &app,
        post(
            URI,
            "application/json",
            batch(json!([{"value": 1}, {"value": 2}, {"value": 3}])),
        ),
    )
    .await
    .assert_error(413);
    assert_eq!(engine.sent_count(), 0);
}

#[tokio::test]
async fn receipts_report_pending_delivered_dead_lettered_or_404() {
    let engine = ScriptedEngine::new();
    let ids: Vec<String> = (1..=3).map(|i| ScriptedEngine::id(i).to_string()).collect();
    {
        let mut r = engine.receipts.lock();
        r.insert(
            ids[0].clone(),
            ReceiptStatus::Pending {
                topic: "orders".into(),
                partition: None,
            },
        );
        r.insert(
            ids[1].clone(),
            ReceiptStatus::Delivered {
                topic: "orders".into(),
                partition: 1,
                offset: Some(5),
            },
        );
        r.insert(
            ids[2].clone(),
            ReceiptStatus::DeadLettered {
                topic: "orders".into(),
                reason: "too large".into(),
            },
        );
    }
    let app = app(&engine);
    let j = call(&app, get(&format!("/v1/receipts/{}", ids[0])))
        .await
        .json();
    assert_eq!(j["status"], "pending");
    let j = call(&app, get(&format!("/v1/receipts/{}", ids[1])))
        .await
        .json();
    assert_eq!(
        (j["status"].as_str(), j["offset"].as_i64()),
        (Some("delivered"), Some(5))
    );
    let j = call(&app, get(&format!("/v1/receipts/{}", ids[2])))
        .await
        .json();
    assert_eq!(
        (j["status"].as_str(), j["reason"].as_str()),
        (Some("dead_lettered"), Some("too large"))
    );
    let unknown = ScriptedEngine::id(99).to_string();
    call(&app, get(&format!("/v1/receipts/{unknown}")))
        .await
        .assert_error(404);
    call(&app, get("/v1/receipts/not-an-id"))
        .await
        .assert_error(400);
}

#[tokio::test]
async fn health_readiness_and_status_reflect_the_engine() {
    let engine = ScriptedEngine::new();
    let app = app(&engine);
    assert_eq!(call(&app, get("/healthz")).await.status, 200);
    assert_eq!(call(&app, get("/readyz")).await.status, 200);
    *engine.ready.lock() = Readiness {
        ready: false,
        reason: "spool full".into(),
    };
    let r = call(&app, get("/readyz")).await;
    r.assert_error(503);
    assert!(r.text.contains("spool full"));
    let j = call(&app, get("/status")).await.json();
    assert_eq!(j["engine"]["breaker"], "closed");
    assert_eq!(j["gateway"]["auth"], false);
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_error_shape() {
    let engine = ScriptedEngine::new();
    let app = app(&engine);
    call(&app, get("/nope")).await.assert_error(404);
    call(&app, get(URI)).await.assert_error(405);
}
