//! The load generator: a few HTTP connections posting records to the gateway's native API.
//!
//! Each connection sends one request at a time (so the order of its records is defined), owns
//! its own keys (`c<conn>-k<j>`; no other connection writes them), and mixes single records with
//! batches, three priorities, and a share of keyless records. Every record's value carries a
//! unique client id (`c<conn>-<n>`); the oracle identifies records by the `spillway.id` the
//! gateway answered with, which is also the record's header in Kafka.
//!
//! Logical time: one counter shared by every connection is read before a request is sent and
//! after its answer arrives, so the oracle can tell which requests did not overlap.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use spillway_test_support::oracle::{self, Acked};

use super::schedule::Rng;

/// What one connection (or all, merged) saw.
#[derive(Debug, Default, Clone)]
pub struct LoadTally {
    pub requests: u64,
    pub single_requests: u64,
    pub batch_requests: u64,
    pub attempted: u64,
    /// Acknowledged with status `delivered` (200 or within a 207).
    pub delivered: u64,
    /// Acknowledged with status `spooled` (202 or within a 207).
    pub spooled: u64,
    /// Not accepted, by HTTP status (per record in a 207) or `connection` / `timeout`.
    pub rejected: BTreeMap<String, u64>,
    pub acked: Vec<Acked>,
    /// Seconds since the start of the run at which each acknowledgement arrived.
    pub ack_times: Vec<f32>,
}

impl LoadTally {
    pub fn merge(&mut self, other: LoadTally) {
        self.requests += other.requests;
        self.single_requests += other.single_requests;
        self.batch_requests += other.batch_requests;
        self.attempted += other.attempted;
        self.delivered += other.delivered;
        self.spooled += other.spooled;
        for (k, v) in other.rejected {
            *self.rejected.entry(k).or_default() += v;
        }
        self.acked.extend(other.acked);
        self.ack_times.extend(other.ack_times);
    }

    fn reject(&mut self, why: impl Into<String>, n: u64) {
        *self.rejected.entry(why.into()).or_default() += n;
    }
}

/// Settings of the load.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub base: String,
    pub topic: String,
    pub connections: usize,
    /// Records per second offered, all connections together.
    pub rate: u32,
    pub seed: u64,
    pub keys_per_connection: usize,
}

/// Runs the load until `stop` is set; returns the merged tally.
pub async fn run(spec: LoadSpec, started: Instant, stop: Arc<AtomicBool>) -> LoadTally {
    let clock = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for conn in 0..spec.connections {
        let spec = spec.clone();
        let clock = clock.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            connection(conn, spec, started, clock, stop).await
        }));
    }
    let mut tally = LoadTally::default();
    for t in tasks {
        if let Ok(t) = t.await {
            tally.merge(t);
        }
    }
    tally
}

struct Outgoing {
    key: Option<String>,
    value: String,
}

async fn connection(
    conn: usize,
    spec: LoadSpec,
    started: Instant,
    clock: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> LoadTally {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(1)
        .build()
        .expect("an HTTP client");
    let mut rng = Rng::new(spec.seed ^ (0xC0FFEE + conn as u64).wrapping_mul(0x9e37_79b9));
    let per_conn = f64::from(spec.rate.max(1)) / spec.connections.max(1) as f64;
    let url = format!("{}/v1/topics/{}/records", spec.base, spec.topic);
    let mut tally = LoadTally::default();
    let mut n = 0u64;
    let mut due = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let batch = if rng.below(10) < 6 {
            1
        } else {
            2 + rng.below(7) as usize
        };
        let priority = match rng.below(10) {
            0..=2 => "critical",
            3..=7 => "normal",
            _ => "bulk",
        };
        let outgoing: Vec<Outgoing> = (0..batch)
            .map(|_| {
                n += 1;
                let key = (rng.below(8) != 0).then(|| {
                    format!(
                        "c{conn}-k{}",
                        rng.below(spec.keys_per_connection.max(1) as u64)
                    )
                });
                let pad = "x".repeat(rng.below(200) as usize);
                Outgoing {
                    key,
                    value: format!("c{conn}-{n} {priority} {pad}"),
                }
            })
            .collect();
        let records: Vec<Value> = outgoing
            .iter()
            .map(|o| match &o.key {
                Some(k) => json!({"key": k, "value": o.value, "priority": priority}),
                None => json!({"value": o.value, "priority": priority}),
            })
            .collect();
        let body = json!({"format": "string", "records": records});
        tally.requests += 1;
        if batch == 1 {
            tally.single_requests += 1;
        } else {
            tally.batch_requests += 1;
        }
        tally.attempted += batch as u64;
        let sent = clock.fetch_add(1, Ordering::SeqCst) + 1;
        let response = client.post(&url).json(&body).send().await;
        match response {
            Err(e) => {
                let why = if e.is_timeout() {
                    "timeout"
                } else {
                    "connection"
                };
                tally.reject(why, batch as u64);
                // The gateway is down or restarting: do not spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(response) => {
                let status = response.status().as_u16();
                let reply: Value = match response.json().await {
                    Ok(v) => v,
                    Err(_) => {
                        // Body lost (gateway killed mid-answer): not acknowledged.
                        tally.reject("connection", batch as u64);
                        continue;
                    }
                };
                let acked = clock.fetch_add(1, Ordering::SeqCst) + 1;
                let at = started.elapsed().as_secs_f32();
                judge(&mut tally, status, &reply, &outgoing, sent, acked, at);
                if status == 503 || status == 429 {
                    // Refused: back off a little, as a client honouring Retry-After would.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        due += Duration::from_secs_f64(batch as f64 / per_conn);
        let now = Instant::now();
        if due > now {
            tokio::time::sleep(due - now).await;
        } else if now - due > Duration::from_secs(1) {
            // Far behind (a long refusal): do not burst to catch up.
            due = now;
        }
    }
    tally
}

/// Books one answer: acknowledged records become oracle input, the others are counted by why.
pub fn judge(
    tally: &mut LoadTally,
    status: u16,
    reply: &Value,
    outgoing: &[impl OutgoingRecord],
    sent: u64,
    acked: u64,
    at: f32,
) {
    let results = reply["records"].as_array();
    let Some(results) =
        results.filter(|r| (200..300).contains(&status) && r.len() == outgoing.len())
    else {
        tally.reject(status.to_string(), outgoing.len() as u64);
        return;
    };
    for (result, o) in results.iter().zip(outgoing) {
        match result["status"].as_str() {
            Some(s @ ("delivered" | "spooled")) => {
                if s == "delivered" {
                    tally.delivered += 1;
                } else {
                    tally.spooled += 1;
                }
                tally.acked.push(Acked {
                    id: result["id"].as_str().unwrap_or_default().to_string(),
                    order_key: o.key().map(|k| k.as_bytes().to_vec()),
                    digest: oracle::digest(o.key().map(str::as_bytes), Some(o.value().as_bytes())),
                    sent,
                    acked,
                });
                tally.ack_times.push(at);
            }
            Some("dead_lettered") => tally.reject("dead_lettered", 1),
            _ => {
                let code = result["error_code"]
                    .as_u64()
                    .map_or_else(|| "rejected".to_string(), |c| c.to_string());
                tally.reject(code, 1);
            }
        }
    }
}

/// A record as sent, for [`judge`].
pub trait OutgoingRecord {
    fn key(&self) -> Option<&str>;
    fn value(&self) -> &str;
}

impl OutgoingRecord for Outgoing {
    fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }
    fn value(&self) -> &str {
        &self.value
    }
}

impl OutgoingRecord for (Option<&str>, &str) {
    fn key(&self) -> Option<&str> {
        self.0
    }
    fn value(&self) -> &str {
        self.1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mixed_answer_books_each_record_by_its_own_status() {
        let mut tally = LoadTally::default();
        let reply = json!({"records": [
            {"status": "delivered", "id": "a:1:1", "partition": 0, "offset": 5},
            {"status": "spooled", "id": "a:1:2"},
            {"status": "rejected", "error_code": 503, "message": "full"},
        ]});
        let sent = [(Some("k"), "v1"), (None, "v2"), (Some("k"), "v3")];
        judge(&mut tally, 207, &reply, &sent, 1, 2, 0.5);
        assert_eq!((tally.delivered, tally.spooled), (1, 1));
        assert_eq!(tally.rejected.get("503"), Some(&1));
        assert_eq!(tally.acked.len(), 2);
        assert_eq!(tally.acked[0].order_key.as_deref(), Some(&b"k"[..]));
        assert_eq!(tally.acked[1].order_key, None);
        assert_eq!(
            tally.acked[0].digest,
            oracle::digest(Some(b"k"), Some(b"v1"))
        );
    }

    #[test]
    fn a_refused_request_rejects_every_record_under_its_status() {
        let mut tally = LoadTally::default();
        let reply = json!({"error_code": 503, "message": "shed"});
        let sent = [(Some("k"), "v1"), (Some("k"), "v2")];
        judge(&mut tally, 503, &reply, &sent, 1, 2, 0.5);
        assert_eq!(tally.rejected.get("503"), Some(&2));
        assert!(tally.acked.is_empty());
    }
}
