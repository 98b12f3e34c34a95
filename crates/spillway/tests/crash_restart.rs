//! Spillway itself killed with SIGKILL at random moments — while Kafka is down (records are
//! being spooled) and while the spool drains after it came back — and restarted on the same
//! spool directory. Every record a worker reported accepted must reach Kafka once, intact, in
//! order per key (the oracle), whatever the kills interrupted.
//!
//! The worker is this test binary run again with `SPILLWAY_CRASH_WORKER` set: it starts the
//! library, sends records one at a time, and prints one `ACK` line per accepted record.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rand::{Rng, SeedableRng};
use spillway::{Mode, Record, Route, Spillway, SpillwayConfig};
use spillway_test_support::{TansuBroker, oracle, read_topic_until};

const TOPIC: &str = "crash";
const KEYS: usize = 13;
const WORKER_ENV: &str = "SPILLWAY_CRASH_WORKER";

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn config(bootstrap: &str, dir: &str, mode: Mode) -> SpillwayConfig {
    let mut c = SpillwayConfig::new(bootstrap, dir);
    c.kafka.message_timeout = Duration::from_secs(5);
    c.default_route = Route::new("*", mode);
    c.health.probe_interval = Duration::from_millis(250);
    c.health.probe_timeout = Duration::from_millis(500);
    c.drain.settle = Duration::from_millis(500);
    c.breaker.cooldown = Duration::from_millis(500);
    c.canary.timeout = Duration::from_secs(3);
    c.topics = vec![spillway::settings::TopicSettings {
        name: TOPIC.into(),
        partitions: Some(3),
    }];
    c
}

/// The worker: `SPILLWAY_CRASH_WORKER="<bootstrap> <dir> <mode> <first index> <drain|send>"`.
#[test]
fn crash_worker() {
    let Ok(spec) = std::env::var(WORKER_ENV) else {
        return;
    };
    let parts: Vec<String> = spec.split(' ').map(str::to_string).collect();
    let mode = if parts[2] == "spool_first" {
        Mode::SpoolFirst
    } else {
        Mode::Failover
    };
    let first: usize = parts[3].parse().unwrap();
    let drain_only = parts[4] == "drain";
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let spillway = Spillway::start(config(&parts[0], &parts[1], mode)).unwrap();
        let mut out = std::io::stdout().lock();
        // libtest prints "test ... " without a newline before our first line.
        writeln!(out).unwrap();
        if drain_only {
            let drained = spillway.flush(Duration::from_secs(120)).await;
            writeln!(out, "DRAINED {drained} {}", spillway.backlog()).unwrap();
            out.flush().unwrap();
            spillway.shutdown(Duration::from_secs(5)).await;
            return;
        }
        for i in first.. {
            let key = (i % 7 != 6).then(|| format!("key-{}", i % KEYS));
            let value = format!("value-{i}-{}", "x".repeat(i % 50));
            let mut r = Record::new(TOPIC).value(value.clone());
            if let Some(k) = &key {
                r = r.key(k.clone());
            }
            let sent = now_ns();
            if let Ok(a) = spillway.send(r).await {
                let digest =
                    oracle::digest(key.as_deref().map(str::as_bytes), Some(value.as_bytes()));
                writeln!(
                    out,
                    "ACK {} {} {digest} {sent} {}",
                    a.id(),
                    key.as_deref().unwrap_or("-"),
                    now_ns()
                )
                .unwrap();
                out.flush().unwrap();
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
}

struct Worker {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

fn spawn_worker(bootstrap: &str, dir: &str, mode: &str, first: usize, what: &str) -> Worker {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "crash_worker",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(
            WORKER_ENV,
            format!("{bootstrap} {dir} {mode} {first} {what}"),
        )
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    Worker { child, lines }
}

impl Worker {
    /// SIGKILL, then the lines it managed to print.
    fn kill9(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(100));
        self.lines.lock().unwrap().clone()
    }
}

fn parse_acks(lines: &[String]) -> Vec<oracle::Acked> {
    lines
        .iter()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() == 6 && f[0] == "ACK").then(|| oracle::Acked {
                id: f[1].to_string(),
                order_key: (f[2] != "-").then(|| f[2].as_bytes().to_vec()),
                digest: f[3].parse().unwrap(),
                sent: f[4].parse().unwrap(),
                acked: f[5].parse().unwrap(),
            })
        })
        .collect()
}

fn crash_rounds(mode: &str) {
    if std::env::var(WORKER_ENV).is_ok() {
        return;
    }
    let long = std::env::var("SPILLWAY_LONG").is_ok();
    let seed: u64 = std::env::var("SPILLWAY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("{mode}: seed {seed} (set SPILLWAY_SEED to repeat)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut broker = TansuBroker::start().unwrap();
    broker
        .create_topics(&[(TOPIC, 3), ("__spillway_canary", 1)])
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dir_s = dir.path().to_str().unwrap().to_string();
    let bootstrap = broker.bootstrap();
    let mut acked = Vec::new();
    let mut next = 0usize;
    let rounds = if long { 24 } else { 6 };
    // The broker is down during rounds 1..=2 (and 4k+1..=4k+2 in the long run): the worker spools,
    // and is killed; the next round restarts the broker and the worker drains, and is killed.
    for round in 0..rounds {
        let phase = round % 4;
        match phase {
            1 => broker.kill9(),
            3 if broker.pid().is_none() => broker.restart().unwrap(),
            _ => {}
        }
        if phase == 0 && broker.pid().is_none() {
            broker.restart().unwrap();
        }
        let worker = spawn_worker(&bootstrap, &dir_s, mode, next, "send");
        let alive = Duration::from_millis(rng.random_range(1500..4000));
        std::thread::sleep(alive);
        let lines = worker.kill9();
        let acks = parse_acks(&lines);
        eprintln!(
            "round {round} (phase {phase}): worker killed after {alive:?} with {} records accepted",
            acks.len()
        );
        next += lines.len() + 100_000;
        acked.extend(acks);
    }
    if broker.pid().is_none() {
        broker.restart().unwrap();
    }
    let drainer = spawn_worker(&bootstrap, &dir_s, mode, next, "drain");
    let deadline = Instant::now() + Duration::from_secs(150);
    let done = loop {
        if let Some(l) = drainer
            .lines
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.starts_with("DRAINED"))
        {
            break l.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the final worker did not drain the spool"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    drainer.kill9();
    broker.check_not_wedged().unwrap();
    assert!(done.starts_with("DRAINED true"), "{done}");
    let records = read_topic_until(
        &broker.bootstrap(),
        TOPIC,
        acked.len(),
        Duration::from_secs(60),
    )
    .unwrap();
    let verdict = oracle::check(&acked, &common::delivered(&records));
    eprintln!("{mode}: oracle {verdict}");
    common::assert_clean(&verdict);
    assert!(acked.len() > 100, "the workers accepted records");
}

#[test]
fn failover_killed_during_outage_and_drain_loses_and_duplicates_nothing() {
    crash_rounds("failover");
}

#[test]
fn spool_first_killed_during_outage_and_drain_loses_and_duplicates_nothing() {
    crash_rounds("spool_first");
}
