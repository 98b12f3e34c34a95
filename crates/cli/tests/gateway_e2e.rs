//! The service end to end: `spillway run` as a real process in front of the real Tansu broker,
//! records POSTed over HTTP through a kill -9 of the broker. Every record answered 2xx arrives
//! in Kafka once and in order per key (the oracle); SIGTERM stops the gateway cleanly.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use spillway_test_support::{TansuBroker, free_port, oracle, read_topic_until};

const TOPIC: &str = "e2e";

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn write_config(
    dir: &std::path::Path,
    bootstrap: &str,
    port: u16,
    metrics: u16,
) -> std::path::PathBuf {
    let spool = dir.join("spool");
    let text = format!(
        r#"
[http]
listen = "127.0.0.1:{port}"
metrics_listen = "127.0.0.1:{metrics}"

[library.kafka]
bootstrap_servers = "{bootstrap}"
message_timeout = "5s"

[library.spool]
dir = "{spool}"

[library.default_route]
topic = "*"
mode = "failover"

[[library.topics]]
name = "{TOPIC}"
partitions = 3

[library.health]
probe_interval = "250ms"

[library.breaker]
cooldown = "500ms"

[library.drain]
settle = "500ms"
"#,
        spool = spool.display()
    );
    let path = dir.join("spillway.toml");
    std::fs::write(&path, text).unwrap();
    path
}

struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_posted_through_a_broker_kill9_arrive_once_and_in_order() {
    let mut broker = TansuBroker::start().unwrap();
    broker
        .create_topics(&[(TOPIC, 3), ("__spillway_canary", 1)])
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (port, metrics) = (free_port(), free_port());
    let config = write_config(dir.path(), &broker.bootstrap(), port, metrics);
    let log = std::fs::File::create(dir.path().join("gateway.log")).unwrap();
    let mut gateway = Gateway(
        Command::new(env!("CARGO_BIN_EXE_spillway"))
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info,librdkafka=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(
            Instant::now() < deadline,
            "the gateway did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let started = Instant::now();
    let (mut killed, mut restarted) = (false, false);
    let mut acked = Vec::new();
    let (mut statuses, mut n) = (std::collections::BTreeMap::<u16, usize>::new(), 0usize);
    while started.elapsed() < Duration::from_secs(16) {
        if !killed && started.elapsed() >= Duration::from_secs(3) {
            killed = true;
            broker.kill9();
        }
        if !restarted && started.elapsed() >= Duration::from_secs(10) {
            restarted = true;
            broker.restart().unwrap();
        }
        let batch: Vec<(Option<String>, String)> = (0..3)
            .map(|_| {
                n += 1;
                (
                    (n % 5 != 0).then(|| format!("k{}", n % 7)),
                    format!("value {n}"),
                )
            })
            .collect();
        let records: Vec<Value> = batch
            .iter()
            .map(|(k, v)| match k {
                Some(k) => json!({"key": k, "value": v}),
                None => json!({"value": v}),
            })
            .collect();
        let sent = now_ns();
        let response = client
            .post(format!("{base}/v1/topics/{TOPIC}/records"))
            .json(&json!({"format": "string", "records": records}))
            .send()
            .await
            .unwrap();
        *statuses.entry(response.status().as_u16()).or_default() += 1;
        let at = now_ns();
        let body: Value = response.json().await.unwrap();
        for (r, (key, value)) in body["records"].as_array().unwrap().iter().zip(&batch) {
            if matches!(r["status"].as_str(), Some("delivered" | "spooled")) {
                acked.push(oracle::Acked {
                    id: r["id"].as_str().unwrap().to_string(),
                    order_key: key.clone().map(String::into_bytes),
                    digest: oracle::digest(
                        key.as_deref().map(str::as_bytes),
                        Some(value.as_bytes()),
                    ),
                    sent,
                    acked: at,
                });
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "HTTP statuses: {statuses:?}; {} records acknowledged",
        acked.len()
    );
    assert!(
        statuses.contains_key(&200) && statuses.contains_key(&202),
        "both direct and spooled answers"
    );

    // Drain, then stop the gateway with SIGTERM.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let status: Value = client
            .get(format!("{base}/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if status["engine"]["spool"]["records"].as_u64() == Some(0) {
            break;
        }
        assert!(Instant::now() < deadline, "spool did not drain: {status}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(gateway.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let stop = Instant::now();
    let code = loop {
        if let Some(status) = gateway.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            stop.elapsed() < Duration::from_secs(30),
            "the gateway did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(code.success(), "clean exit on SIGTERM: {code}");

    broker.check_not_wedged().unwrap();
    let bootstrap = broker.bootstrap();
    let expected = acked.len();
    let records = tokio::task::spawn_blocking(move || {
        read_topic_until(&bootstrap, TOPIC, expected, Duration::from_secs(60))
    })
    .await
    .unwrap()
    .unwrap();
    let delivered = oracle::Delivered::from_records(&records, |r| {
        r.header("spillway.id")
            .map(|v| String::from_utf8_lossy(v).into_owned())
    });
    let verdict = oracle::check(&acked, &delivered);
    eprintln!("oracle: {verdict}");
    assert!(verdict.is_clean(), "{verdict}");
}
