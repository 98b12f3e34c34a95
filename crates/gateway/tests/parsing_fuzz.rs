//! Property test on request parsing: random and mutated bodies under random content types, sized
//! or chunked, on every write route, never give a 5xx, and a refused request never reaches the
//! engine. (`PROPTEST_CASES` raises the case count.)

mod support;

use proptest::prelude::*;
use serde_json::{Value, json};
use support::*;

const ROUTES: &[&str] = &[
    "/v1/topics/orders/records",
    "/v3/clusters/c/topics/orders/records",
    "/v3/clusters/c/topics/orders/records:batch",
    "/topics/orders",
    "/topics/orders/partitions/1",
];

const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/json; charset=utf-8",
    "application/vnd.kafka.json.v2+json",
    "application/vnd.kafka.binary.v2+json",
    "application/vnd.kafka.avro.v2+json",
    "application/vnd.spillway.binary.v1+json",
    "application/vnd.spillway.string.v1+json",
    "text/plain",
    "",
    "application/x-www-form-urlencoded",
];

/// Valid bodies of each shape, to mutate.
fn seeds() -> Vec<String> {
    vec![
        json!({"records": [{"key": "k", "value": {"a": 1}, "headers": [{"name": "h", "value": "v"}]}]}).to_string(),
        json!({"format": "binary", "records": [{"value": "AAE="}, {"value": null, "partition": 2}]}).to_string(),
        json!({"value": {"type": "JSON", "data": [1, 2]}, "key": {"type": "STRING", "data": "k"}}).to_string(),
        format!("{}{}", json!({"value": {"type": "BINARY", "data": "aGk="}}), json!({"partition_id": 0})),
        json!({"entries": [{"id": "a", "value": {"type": "JSON", "data": 1}}, {"id": "b"}]}).to_string(),
        json!({"records": [{"value": "aGk=", "key": "a2V5"}], "value_schema_id": null}).to_string(),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Truncate(usize),
    Flip(usize, u8),
    Insert(usize, String),
}

fn body_strategy() -> impl Strategy<Value = Vec<u8>> {
    let random = proptest::collection::vec(any::<u8>(), 0..200);
    let mutated = (
        0..seeds().len(),
        proptest::collection::vec(
            prop_oneof![
                any::<usize>().prop_map(Mutation::Truncate),
                (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
                (any::<usize>(), "[{}\\[\\]\",:0-9a-z=]{1,6}")
                    .prop_map(|(i, s)| Mutation::Insert(i, s)),
            ],
            0..4,
        ),
    )
        .prop_map(|(seed, mutations)| {
            let mut bytes = seeds()[seed].clone().into_bytes();
            for m in mutations {
                let n = bytes.len().max(1);
                match m {
                    Mutation::Truncate(i) => bytes.truncate(i % n),
                    Mutation::Flip(i, b) => {
                        if !bytes.is_empty() {
                            bytes[i % n] = b;
                        }
                    }
                    Mutation::Insert(i, s) => {
                        let at = i % (bytes.len() + 1);
                        bytes.splice(at..at, s.into_bytes());
                    }
                }
            }
            bytes
        });
    prop_oneof![random, mutated]
}

fn request(
    route: &str,
    content_type: &str,
    body: Vec<u8>,
    chunked: Option<usize>,
) -> axum::http::Request<axum::body::Body> {
    let mut builder = axum::http::Request::post(route);
    if !content_type.is_empty() {
        builder = builder.header("content-type", content_type);
    }
    match chunked {
        None => builder
            .header("content-length", body.len())
            .body(axum::body::Body::from(body))
            .unwrap(),
        Some(size) => {
            let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = body
                .chunks(size.max(1))
                .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
                .collect();
            builder
                .body(axum::body::Body::from_stream(futures::stream::iter(chunks)))
                .unwrap()
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(512)
    ))]

    #[test]
    fn random_requests_never_give_5xx_and_refused_ones_write_nothing(
        route in 0..ROUTES.len(),
        content_type in 0..CONTENT_TYPES.len(),
        body in body_strategy(),
        chunked in proptest::option::of(1usize..16),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let engine = ScriptedEngine::new();
            let app = app(&engine);
            let reply = call(&app, request(ROUTES[route], CONTENT_TYPES[content_type], body, chunked)).await;
            prop_assert!(!reply.status.is_server_error(), "{} {}", reply.status, reply.text);
            if reply.status.is_client_error() {
                reply.assert_error(reply.status.as_u16());
                prop_assert_eq!(engine.sent_count(), 0, "refused with {} but sent", reply.status);
            }
            // Streaming reports: one 200 per record sent, and no 5xx report.
            let is_stream = reply.status == 200 && reply.text.ends_with('\n');
            if is_stream {
                let reports: Vec<Value> = reply.reports();
                prop_assert!(reports.iter().all(|r| r["error_code"].as_u64().unwrap() < 500));
                let accepted = reports.iter().filter(|r| r["error_code"] == 200).count();
                prop_assert_eq!(accepted, engine.sent_count());
            }
            Ok(())
        })?;
    }
}
