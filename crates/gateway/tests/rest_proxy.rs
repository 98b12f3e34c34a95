//! Confluent REST Proxy shapes: v2 json and binary, v3 single, streaming and batch.

mod support;

use std::time::Duration;

use serde_json::json;
use spillway::RejectReason;
use support::*;

const V3: &str = "/v3/clusters/lkc-1/topics/orders/records";
const V3_BATCH: &str = "/v3/clusters/lkc-1/topics/orders/records:batch";
const JSON_V2: &str = "application/vnd.kafka.json.v2+json";
const BINARY_V2: &str = "application/vnd.kafka.binary.v2+json";

#[tokio::test]
async fn v2_json_answers_offsets_with_null_schema_ids() {
    let engine = ScriptedEngine::new();
    let body =
        json!({"records": [{"key": "k", "value": {"foo": "bar"}}, {"value": 3, "partition": 1}]});
    let r = call(
        &app(&engine),
        post("/topics/orders", JSON_V2, body.to_string()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let j = r.json();
    assert!(j["key_schema_id"].is_null() && j["value_schema_id"].is_null());
    assert!(j.as_object().unwrap().contains_key("key_schema_id"));
    let offsets = j["offsets"].as_array().unwrap();
    assert_eq!(offsets.len(), 2);
    assert_eq!(offsets[1]["partition"], 1);
    assert!(offsets[0]["offset"].as_i64().unwrap() >= 0);
    assert!(offsets[0]["error_code"].is_null() && offsets[0]["error"].is_null());
    assert_eq!(
        engine.sent.lock()[0].value.as_deref(),
        Some(&br#"{"foo":"bar"}"#[..])
    );
}

#[tokio::test]
async fn v2_binary_decodes_base64_and_partition_path_pins_the_partition() {
    let engine = ScriptedEngine::new();
    let body = json!({"records": [{"key": "a2V5", "value": "dmFsdWU="}]});
    let r = call(
        &app(&engine),
        post("/topics/orders/partitions/2", BINARY_V2, body.to_string()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["offsets"][0]["partition"], 2);
    let sent = engine.sent.lock()[0].clone();
    assert_eq!(
        (sent.key.as_deref(), sent.value.as_deref()),
        (Some(&b"key"[..]), Some(&b"value"[..]))
    );
    assert_eq!(sent.partition, Some(2));
}

#[tokio::test]
async fn v2_spooled_records_report_offset_minus_one_and_a_receipt_with_202() {
    let engine = ScriptedEngine::new();
    engine.always(Script::Spool);
    let r = call(
        &app(&engine),
        post(
            "/topics/orders",
            JSON_V2,
            json!({"records": [{"value": 1}]}).to_string(),
        ),
    )
    .await;
    assert_eq!(r.status, 202);
    let o = &r.json()["offsets"][0];
    assert_eq!(
        (o["offset"].as_i64(), o["partition"].as_i64()),
        (Some(-1), Some(-1))
    );
    assert_eq!(o["spillway_status"], "spooled");
    assert!(o["spillway_receipt"].is_string());
    assert!(o["error_code"].is_null());
}

#[tokio::test]
async fn v2_mixed_outcomes_are_207_with_error_codes_per_offset() {
    let engine = ScriptedEngine::new();
    engine.then([
        Script::Deliver,
        Script::Reject(RejectReason::Backpressure, None),
    ]);
    let r = call(
        &app(&engine),
        post(
            "/topics/orders",
            JSON_V2,
            json!({"records": [{"value": 1}, {"value": 2}]}).to_string(),
        ),
    )
    .await;
    assert_eq!(r.status, 207);
    let o = r.json()["offsets"].clone();
    assert!(o[0]["error_code"].is_null());
    assert_eq!(o[1]["error_code"], 429);
    assert!(o[1]["error"].as_str().unwrap().contains("backpressure"));
}

#[tokio::test]
async fn v2_refuses_schemas_other_content_types_bad_base64_and_bad_partitions() {
    let engine = ScriptedEngine::new();
    let app = app(&engine);
    let one = json!({"records": [{"value": "AA=="}]}).to_string();
    call(
        &app,
        post(
            "/topics/orders",
            "application/vnd.kafka.avro.v2+json",
            one.clone(),
        ),
    )
    .await
    .assert_error(415);
    call(
        &app,
        post("/topics/orders", "application/json", one.clone()),
    )
    .await
    .assert_error(415);
    call(
        &app,
        post(
            "/topics/orders",
            BINARY_V2,
            json!({"records": [{"value": "@@"}]}).to_string(),
        ),
    )
    .await
    .assert_error(422);
    call(
        &app,
        post(
            "/topics/orders",
            JSON_V2,
            json!({"value_schema_id": 3, "records": [{"value": 1}]}).to_string(),
        ),
    )
    .await
    .assert_error(422);
    call(
        &app,
        post("/topics/orders/partitions/x", BINARY_V2, one.clone()),
    )
    .await
    .assert_error(404);
    call(
        &app,
        post(
            "/topics/orders/partitions/1",
            BINARY_V2,
            json!({"records": [{"value": "AA==", "partition": 2}]}).to_string(),
        ),
    )
    .await
    .assert_error(422);
    call(&app, post("/topics/missing", BINARY_V2, one))
        .await
        .assert_error(404);
    assert_eq!(engine.sent_count(), 0);
}

#[tokio::test]
async fn v3_single_record_answers_a_delivery_report() {
    let engine = ScriptedEngine::new();
    let body = json!({
        "partition_id": 1,
        "headers": [{"name": "trace", "value": "AQI="}, {"name": "empty", "value": null}],
        "key": {"type": "STRING", "data": "k"},
        "value": {"type": "JSON", "data": {"a": [1]}},
        "timestamp": "2021-02-05T19:14:42.123Z"
    });
    let r = call(
        &app(&engine),
        post(V3, "application/json", body.to_string()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let j = r.json();
    assert_eq!(j["error_code"], 200);
    assert_eq!(j["cluster_id"], "lkc-1");
    assert_eq!(j["topic_name"], "orders");
    assert_eq!(j["partition_id"], 1);
    assert!(j["offset"].as_i64().unwrap() >= 0);
    assert_eq!(j["timestamp"], "2021-02-05T19:14:42.123Z");
    assert_eq!(j["key"], json!({"type": "STRING", "size": 1}));
    assert_eq!(j["value"], json!({"type": "JSON", "size": 9}));
    assert_eq!(j["spillway_status"], "delivered");
    let sent = engine.sent.lock()[0].clone();
    assert_eq!(
        sent.headers,
        vec![("trace".into(), vec![1, 2]), ("empty".into(), vec![])]
    );
    assert_eq!(sent.timestamp_ms, Some(1_612_552_482_123));
}

#[tokio::test]
async fn v3_type_defaults_to_binary_and_spooled_records_report_offset_minus_one() {
    let engine = ScriptedEngine::new();
    engine.always(Script::Spool);
    let r = call(
        &app(&engine),
        post(
            V3,
            "application/json",
            json!({"value": {"data": "aGk="}}).to_string(),
        ),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let j = r.json();
    assert_eq!(
        (
            j["error_code"].as_u64(),
            j["offset"].as_i64(),
            j["partition_id"].as_i64()
        ),
        (Some(200), Some(-1), Some(-1))
    );
    assert_eq!(j["spillway_status"], "spooled");
    assert_eq!(j["value"]["type"], "BINARY");
    assert_eq!(engine.sent.lock()[0].value.as_deref(), Some(&b"hi"[..]));
}

#[tokio::test]
async fn v3_single_record_errors_use_the_http_status() {
    let engine = ScriptedEngine::new();
    let app = app(&engine);
    call(
        &app,
        post(
            V3,
            "application/json",
            json!({"value": {"type": "AVRO", "data": 1}}).to_string(),
        ),
    )
    .await
    .assert_error(422);
    call(
        &app,
        post(
            V3,
            "application/json",
            json!({"value": {"type": "JSON", "data": 1, "schema_id": 4}}).to_string(),
        ),
    )
    .await
    .assert_error(422);
    call(
        &app,
        post(
            V3,
            "application/json",
            json!({"value": {"type": "BINARY", "data": "??"}}).to_string(),
        ),
    )
    .await
    .assert_error(422);
    call(&app, post(V3, "application/json", "{\"value\":"))
        .await
        .assert_error(400);
    call(&app, post(V3, "text/plain", "{}"))
        .await
        .assert_error(415);
    call(
        &app,
        post(
            "/v3/clusters/c/topics/nope/records",
            "application/json",
            "{}",
        ),
    )
    .await
    .assert_error(404);
    assert_eq!(engine.sent_count(), 0);
    engine.always(Script::Reject(
        RejectReason::Shed,
        Some(Duration::from_secs(3)),
    ));
    let r = call(
        &app,
        post(
            V3,
            "application/json",
            json!({"value": {"type": "JSON", "data": 1}}).to_string(),
        ),
    )
    .await;
    r.assert_error(503);
    assert!(r.retry_after().unwrap() >= 3);
}

#[tokio::test]
async fn v3_streaming_answers_one_report_per_record_in_order() {
    let engine = ScriptedEngine::new();
    engine.then([
        Script::Deliver,
        Script::Spool,
        Script::Reject(RejectReason::Full, None),
        Script::Deliver,
    ]);
    // Records split across chunks at awkward places; one invalid record in the middle.
    let text: String = [
        json!({"value": {"type": "JSON", "data": 0}}),
        json!({"value": {"type": "JSON", "data": 1}}),
        json!({"value": {"type": "BINARY", "data": "not base64"}}),
        json!({"value": {"type": "JSON", "data": 2}}),
        json!({"value": {"type": "JSON", "data": 3}}),
    ]
    .iter()
    .map(|v| v.to_string())
    .collect();
    let chunks: Vec<String> = text
        .as_bytes()
        .chunks(7)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    let r = call(&app(&engine), post_chunked(V3, "application/json", chunks)).await;
    assert_eq!(r.status, 200);
    let codes: Vec<u64> = r
        .reports()
        .iter()
        .map(|j| j["error_code"].as_u64().unwrap())
        .collect();
    assert_eq!(codes, vec![200, 200, 422, 503, 200]);
    assert_eq!(r.reports()[1]["offset"], -1);
    let values: Vec<_> = engine
        .sent_values()
        .into_iter()
        .map(|v| v.unwrap())
        .collect();
    assert_eq!(
        values,
        vec![b"0".to_vec(), b"1".to_vec(), b"2".to_vec(), b"3".to_vec()]
    );
}

#[tokio::test]
async fn v3_streaming_ends_with_an_error_report_on_text_that_is_not_json() {
    let engine = ScriptedEngine::new();
    let chunks = vec![
        json!({"value": {"type": "JSON", "data": 0}}).to_string(),
        "}{ nope".to_string(),
    ];
    let r = call(&app(&engine), post_chunked(V3, "application/json", chunks)).await;
    assert_eq!(r.status, 200);
    let reports = r.reports();
    assert_eq!(reports.len(), 2);
    assert_eq!(
        (
            reports[0]["error_code"].as_u64(),
            reports[1]["error_code"].as_u64()
        ),
        (Some(200), Some(400))
    );
    assert_eq!(engine.sent_count(), 1);
}

#[tokio::test]
async fn v3_several_records_in_a_sized_body_are_answered_as_a_stream() {
    let engine = ScriptedEngine::new();
    let text = format!(
        "{}\n{}",
        json!({"value": {"type": "JSON", "data": 1}}),
        json!({"value": {"type": "JSON", "data": 2}})
    );
    let r = call(&app(&engine), post(V3, "application/json", text)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.reports().len(), 2);
    assert_eq!(engine.sent_count(), 2);
}

#[tokio::test]
async fn v3_batch_answers_207_with_successes_and_failures_by_id() {
    let engine = ScriptedEngine::new();
    engine.then([
        Script::Deliver,
        Script::Reject(RejectReason::Backpressure, None),
        Script::Spool,
    ]);
    let body = json!({"entries": [
        {"id": "a", "value": {"type": "JSON", "data": 1}},
        {"id": "b", "value": {"type": "BINARY", "data": "%%"}},
        {"id": "c", "value": {"type": "JSON", "data": 3}},
        {"id": "d-1_x", "value": {"type": "STRING", "data": "s"}},
    ]});
    let r = call(
        &app(&engine),
        post(V3_BATCH, "application/json", body.to_string()),
    )
    .await;
    assert_eq!(r.status, 207, "{}", r.text);
    let j = r.json();
    let ok: Vec<_> = j["successes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ok, vec!["a", "d-1_x"]);
    assert_eq!(j["successes"][0]["topic_name"], "orders");
    assert!(j["successes"][0].get("error_code").is_none());
    assert_eq!(j["successes"][1]["offset"], -1);
    let failures: Vec<_> = j["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["id"].as_str().unwrap(), f["error_code"].as_u64().unwrap()))
        .collect();
    assert_eq!(failures, vec![("b", 422), ("c", 429)]);
    // The invalid entry was never sent; the others were, in order.
    let values: Vec<_> = engine
        .sent_values()
        .into_iter()
        .map(|v| v.unwrap())
        .collect();
    assert_eq!(values, vec![b"1".to_vec(), b"3".to_vec(), b"s".to_vec()]);
}

#[tokio::test]
async fn v3_batch_refuses_bad_ids_duplicates_and_empty_batches_whole() {
    let engine = ScriptedEngine::new();
    let app = app(&engine);
    let entry = |id: serde_json::Value| json!({"id": id, "value": {"type": "JSON", "data": 1}});
    call(
        &app,
        post(
            V3_BATCH,
            "application/json",
            json!({"entries": [entry(json!(1))]}).to_string(),
        ),
    )
    .await
    .assert_error(422);
    call(
        &app,
        post(
            V3_BATCH,
            "application/json",
            json!({"entries": [entry(json!("a b"))]}).to_string(),
        ),
    )
    .await
    .assert_error(422);
    call(
        &app,
        post(
            V3_BATCH,
            "application/json",
            json!({"entries": [entry(json!("x".repeat(81)))]}).to_string(),
        ),
    )
    .await
    .assert_error(422);
    call(
        &app,
        post(
            V3_BATCH,
            "application/json",
            json!({"entries": [entry(json!("a")), entry(json!("a"))]}).to_string(),
        ),
    )
    .await
    .assert_error(400);
    call(
        &app,
        post(
            V3_BATCH,
            "application/json",
            json!({"entries": []}).to_string(),
        ),
    )
    .await
    .assert_error(400);
    assert_eq!(engine.sent_count(), 0);
}
