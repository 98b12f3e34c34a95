//! `spillway demo`: the whole product on one screen, with no Kafka to install.
//!
//! An in-process 3-broker Kafka mock cluster (librdkafka's), Spillway's gateway on a local port,
//! and a client posting keyed and keyless records over HTTP, one request at a time. Then:
//! 1. healthy: records go straight to Kafka (HTTP 200);
//! 2. partition 0's leader becomes unreachable but stays in the metadata (KAFKA-3686): keyless
//!    records go to the other partitions, keyed records of partition 0 are spooled (202);
//! 3. the whole cluster becomes unreachable: the breaker opens, everything is spooled (202);
//! 4. the cluster comes back: a canary closes the breaker, the spool drains in order.
//!
//! Every second a line shows what happened. At the end, the topic is read back and the oracle
//! checks that every record the client was told "accepted" is in Kafka, once, in order per key.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use clap::Args;
use serde_json::{Value, json};
use spillway::{Mode, Route, Spillway, SpillwayConfig};
use spillway_gateway::{Config, Server, SpillwayEngine};
use spillway_test_support::mock::Unreachable;
use spillway_test_support::{MockKafka, oracle, read_topic_until};

const TOPIC: &str = "demo";

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Seconds of each phase (healthy, leader unreachable, cluster down, recovery).
    #[arg(long, default_value_t = 8)]
    phase_secs: u64,
    /// Records per HTTP request.
    #[arg(long, default_value_t = 5)]
    batch: usize,
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(demo(args))
}

#[derive(Default)]
struct Tally {
    delivered: usize,
    spooled: usize,
    rejected: usize,
    acked: Vec<oracle::Acked>,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    println!(
        "Spillway demo: a 3-broker Kafka mock cluster in this process, Spillway's HTTP gateway in front."
    );
    let kafka = MockKafka::with_proxies(3).context("starting the mock cluster")?;
    kafka.create_topic(TOPIC, 3)?;
    kafka.create_topic("__spillway_canary", 3)?;
    let spool = tempfile::tempdir()?;
    let mut library = SpillwayConfig::new(kafka.bootstrap(), spool.path());
    library.default_route = Route::new("*", Mode::Failover);
    library.kafka.message_timeout = Duration::from_secs(5);
    library.breaker.cooldown = Duration::from_secs(1);
    library.health.probe_interval = Duration::from_millis(250);
    library.drain.settle = Duration::from_millis(500);
    let spillway = Spillway::start(library).context("starting Spillway")?;
    let mut config = Config::default();
    config.http.listen = "127.0.0.1:0".parse()?;
    config.http.metrics_listen = "127.0.0.1:0".parse()?;
    let server = Server::bind(config, Arc::new(SpillwayEngine::new(spillway.clone()))).await?;
    let base = format!("http://{}", server.api_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    println!(
        "Gateway listening on {base} (POST {base}/v1/topics/{TOPIC}/records, GET {base}/status)\n"
    );

    let phase = Duration::from_secs(args.phase_secs);
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut tally = Tally::default();
    let mut last_print = Instant::now();
    let mut n = 0usize;
    let mut stage = 0;
    let names = [
        "healthy: records go straight to Kafka",
        "partition 0's leader unreachable but listed (KAFKA-3686)",
        "the whole cluster unreachable",
        "the cluster is back: the spool drains",
    ];
    println!(
        "{:>4}  {:<58} {:>9} {:>9} {:>8} {:>9} {:>7}",
        "t", "phase", "200 sent", "202 spool", "refused", "breaker", "spooled"
    );
    while started.elapsed() < phase * 4 {
        let now_stage = (started.elapsed().as_secs() / phase.as_secs().max(1)).min(3) as usize;
        if now_stage != stage {
            stage = now_stage;
            match stage {
                1 => kafka.make_unreachable(1, Unreachable::Blackhole)?,
                2 => {
                    kafka.make_unreachable(2, Unreachable::Blackhole)?;
                    kafka.make_unreachable(3, Unreachable::Blackhole)?;
                }
                3 => {
                    for b in 1..=3 {
                        kafka.make_reachable(b)?;
                    }
                }
                _ => {}
            }
        }
        post_batch(&client, &base, args.batch, &mut n, &mut tally).await;
        if last_print.elapsed() >= Duration::from_secs(1) {
            last_print = Instant::now();
            let status: Value = client
                .get(format!("{base}/status"))
                .send()
                .await?
                .json()
                .await
                .unwrap_or(Value::Null);
            let engine = &status["engine"];
            println!(
                "{:>3}s  {:<58} {:>9} {:>9} {:>8} {:>9} {:>7}",
                started.elapsed().as_secs(),
                names[stage],
                tally.delivered,
                tally.spooled,
                tally.rejected,
                engine["routes"][0]["breaker"].as_str().unwrap_or("?"),
                engine["spool"]["records"].as_u64().unwrap_or(0),
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("\nLoad stopped. Waiting for the spool to drain...");
    let drained = spillway.flush(Duration::from_secs(60)).await;
    println!(
        "Spool drained: {drained} ({} records left)",
        spillway.backlog()
    );
    let bootstrap = kafka.bootstrap().to_string();
    let expected = tally.acked.len();
    let records = tokio::task::spawn_blocking(move || {
        read_topic_until(&bootstrap, TOPIC, expected, Duration::from_secs(30))
    })
    .await??;
    let delivered = oracle::Delivered::from_records(&records, |r| {
        r.header(spillway::record::ID_HEADER)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    });
    let verdict = oracle::check(&tally.acked, &delivered);
    println!(
        "\nThe client was told \"accepted\" {} times: {} delivered at once (200), {} spooled (202); {} refused.",
        tally.acked.len(),
        tally.delivered,
        tally.spooled,
        tally.rejected
    );
    println!("Oracle: {verdict}");
    let _ = stop.send(());
    let _ = serving.await;
    if verdict.is_clean() {
        println!("\nNothing accepted was lost, duplicated, corrupted or reordered.");
        Ok(())
    } else {
        anyhow::bail!("the oracle found violations: {verdict}")
    }
}

async fn post_batch(
    client: &reqwest::Client,
    base: &str,
    batch: usize,
    n: &mut usize,
    tally: &mut Tally,
) {
    let mut sent_records = Vec::new();
    let records: Vec<Value> = (0..batch)
        .map(|_| {
            *n += 1;
            let key = (*n % 6 != 0).then(|| format!("customer-{}", *n % 9));
            let value = format!("order {} for {}", *n, key.as_deref().unwrap_or("anyone"));
            sent_records.push((key.clone(), value.clone()));
            match key {
                Some(k) => json!({"key": k, "value": value}),
                None => json!({"value": value}),
            }
        })
        .collect();
    let body = json!({"format": "string", "records": records});
    let sent = now_ns();
    let response = client
        .post(format!("{base}/v1/topics/{TOPIC}/records"))
        .json(&body)
        .send()
        .await;
    let Ok(response) = response else {
        tally.rejected += batch;
        return;
    };
    let acked = now_ns();
    let reply: Value = response.json().await.unwrap_or(Value::Null);
    let results = reply["records"].as_array().cloned().unwrap_or_default();
    if results.is_empty() {
        tally.rejected += batch;
        return;
    }
    for (result, (key, value)) in results.iter().zip(sent_records) {
        match result["status"].as_str() {
            Some(s @ ("delivered" | "spooled")) => {
                if s == "delivered" {
                    tally.delivered += 1;
                } else {
                    tally.spooled += 1;
                }
                tally.acked.push(oracle::Acked {
                    id: result["id"].as_str().unwrap_or_default().to_string(),
                    order_key: key.clone().map(String::into_bytes),
                    digest: oracle::digest(
                        key.as_deref().map(str::as_bytes),
                        Some(value.as_bytes()),
                    ),
                    sent,
                    acked,
                });
            }
            _ => tally.rejected += 1,
        }
    }
}
