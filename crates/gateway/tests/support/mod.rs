//! A scripted [`Engine`] for router tests, and request helpers.
//!
//! The engine records every record it was sent (in call order) and answers each `send` from a
//! queue of programmed outcomes (then from a default). It can hold sends until released, to
//! test concurrency limits.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use serde_json::Value;
use spillway::record::SpillwayId;
use spillway::{Accepted, ReceiptStatus, Record, RejectReason, Rejected};
use spillway_gateway::{AppState, Config, Engine, Readiness, TopicKnown};
use tower::ServiceExt;

/// What one `send` answers.
#[derive(Debug, Clone)]
pub enum Script {
    Deliver,
    Spool,
    Reject(RejectReason, Option<Duration>),
}

#[derive(Debug)]
pub struct ScriptedEngine {
    pub sent: Mutex<Vec<Record>>,
    script: Mutex<VecDeque<Script>>,
    default: Mutex<Script>,
    known: HashSet<String>,
    pub receipts: Mutex<HashMap<String, ReceiptStatus>>,
    pub final_status: Mutex<Option<ReceiptStatus>>,
    pub ready: Mutex<Readiness>,
    pub shutdowns: Mutex<Vec<Duration>>,
    hold: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
    seq: AtomicU64,
    /// Registers its own `spillway_sheds` family, as the library does.
    exports_sheds: bool,
}

impl ScriptedEngine {
    /// Knows the topics `orders`, `logs` and `orders.eu`; delivers everything by default.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::build(false))
    }

    /// Like [`ScriptedEngine::new`], and it exports `spillway_sheds_total` itself.
    pub fn exporting_sheds() -> Arc<Self> {
        Arc::new(Self::build(true))
    }

    fn build(exports_sheds: bool) -> Self {
        Self {
            sent: Mutex::new(Vec::new()),
            script: Mutex::new(VecDeque::new()),
            default: Mutex::new(Script::Deliver),
            known: ["orders", "logs", "orders.eu"]
                .into_iter()
                .map(String::from)
                .collect(),
            receipts: Mutex::new(HashMap::new()),
            final_status: Mutex::new(None),
            ready: Mutex::new(Readiness {
                ready: true,
                reason: "spool has room".into(),
            }),
            shutdowns: Mutex::new(Vec::new()),
            hold: Mutex::new(None),
            seq: AtomicU64::new(1),
            exports_sheds,
        }
    }

    /// The next sends answer these, in order.
    pub fn then(&self, outcomes: impl IntoIterator<Item = Script>) {
        self.script.lock().extend(outcomes);
    }

    /// Sends answer this once the queue is empty.
    pub fn always(&self, outcome: Script) {
        *self.default.lock() = outcome;
    }

    /// Sends block until [`ScriptedEngine::release`].
    pub fn hold_sends(&self) -> Arc<tokio::sync::Semaphore> {
        let s = Arc::new(tokio::sync::Semaphore::new(0));
        *self.hold.lock() = Some(s.clone());
        s
    }

    pub fn sent_count(&self) -> usize {
        self.sent.lock().len()
    }

    pub fn sent_values(&self) -> Vec<Option<Vec<u8>>> {
        self.sent.lock().iter().map(|r| r.value.clone()).collect()
    }

    pub fn id(seq: u64) -> SpillwayId {
        SpillwayId {
            instance: 0xabc,
            boot: 1,
            seq,
        }
    }
}

impl Engine for ScriptedEngine {
    fn send(&self, record: Record) -> BoxFuture<'static, Result<Accepted, Rejected>> {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst);
        let id = Self::id(seq);
        let partition = record.partition.unwrap_or(0);
        self.sent.lock().push(record);
        let script = self
            .script
            .lock()
            .pop_front()
            .unwrap_or_else(|| self.default.lock().clone());
        let outcome = match script {
            Script::Deliver => Ok(Accepted::Delivered {
                id,
                partition,
                offset: Some(seq as i64 + 99),
            }),
            Script::Spool => Ok(Accepted::Spooled {
                id,
                partition: None,
            }),
            Script::Reject(reason, after) => {
                let mut r = Rejected::new(reason, format!("scripted {}", reason.as_str()));
                r.retry_after = after;
                Err(r)
            }
        };
        let hold = self.hold.lock().clone();
        Box::pin(async move {
            if let Some(h) = hold {
                h.acquire().await.expect("not closed").forget();
            }
            outcome
        })
    }

    fn wait_final(&self, id: &SpillwayId, _timeout: Duration) -> BoxFuture<'static, ReceiptStatus> {
        let status = self
            .final_status
            .lock()
            .clone()
            .unwrap_or(ReceiptStatus::Pending {
                topic: "orders".into(),
                partition: None,
            });
        let _ = id;
        Box::pin(async move { status })
    }

    fn receipt(&self, id: &str) -> ReceiptStatus {
        self.receipts
            .lock()
            .get(id)
            .cloned()
            .unwrap_or(ReceiptStatus::Unknown)
    }

    fn topic_known(&self, topic: &str) -> TopicKnown {
        if self.known.contains(topic) {
            TopicKnown::Known
        } else {
            TopicKnown::Unknown
        }
    }

    fn readiness(&self) -> Readiness {
        self.ready.lock().clone()
    }

    fn status(&self) -> Value {
        serde_json::json!({"breaker": "closed", "spool": {"records": 0}})
    }

    fn register_metrics(&self, registry: &mut Registry) {
        let records = prometheus_client::metrics::counter::Counter::<u64>::default();
        registry.register("spillway_test_engine_records", "scripted engine", records);
        if self.exports_sheds {
            let sheds = prometheus_client::metrics::family::Family::<
                Vec<(&'static str, String)>,
                prometheus_client::metrics::counter::Counter,
            >::default();
            sheds
                .get_or_create(&vec![
                    ("route", "orders".into()),
                    ("priority", "bulk".into()),
                    ("reason", "full".into()),
                ])
                .inc();
            registry.register("spillway_sheds", "engine sheds", sheds);
        }
    }

    fn shutdown(&self, deadline: Duration) -> BoxFuture<'static, ()> {
        self.shutdowns.lock().push(deadline);
        Box::pin(async {})
    }
}

/// A state over `engine` with the default configuration.
pub fn state(engine: &Arc<ScriptedEngine>) -> AppState {
    state_with(engine, Config::default())
}

pub fn state_with(engine: &Arc<ScriptedEngine>, config: Config) -> AppState {
    config.validate().expect("test config valid");
    AppState::new(engine.clone(), config)
}

pub fn app(engine: &Arc<ScriptedEngine>) -> Router {
    spillway_gateway::app(state(engine))
}

/// A response, read in full.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    /// Concatenated JSON reports, one per line.
    pub fn reports(&self) -> Vec<Value> {
        serde_json::Deserializer::from_str(&self.text)
            .into_iter::<Value>()
            .map(|v| v.expect("report JSON"))
            .collect()
    }

    pub fn retry_after(&self) -> Option<u64> {
        self.headers
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().parse().unwrap())
    }

    /// Asserts the one error shape: `{"error_code": status, "message": "..."}`.
    pub fn assert_error(&self, status: u16) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        let j = self.json();
        assert_eq!(j["error_code"], status, "{j}");
        assert!(j["message"].is_string(), "{j}");
    }
}

pub async fn call(app: &Router, request: Request<Body>) -> Reply {
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Reply {
        status,
        headers,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// A POST with a sized body (`Content-Length` set, as a real client would).
pub fn post(uri: &str, content_type: &str, body: impl Into<String>) -> Request<Body> {
    let body = body.into();
    Request::post(uri)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, body.len())
        .body(Body::from(body))
        .unwrap()
}

/// A POST whose body arrives in `chunks`, without `Content-Length` (streaming mode).
pub fn post_chunked(uri: &str, content_type: &str, chunks: Vec<String>) -> Request<Body> {
    let stream = futures::stream::iter(
        chunks
            .into_iter()
            .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::from(c))),
    );
    Request::post(uri)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from_stream(stream))
        .unwrap()
}

pub fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

pub fn with_header(mut r: Request<Body>, name: &'static str, value: &str) -> Request<Body> {
    r.headers_mut().insert(name, value.parse().unwrap());
    r
}
