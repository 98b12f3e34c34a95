//! Helpers of the `spillway spool` tests: real spools written by the library while Kafka is
//! unreachable, damage made by hand, and runs of the built binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use spillway::record::ID_HEADER;
use spillway::settings::TopicSettings;
use spillway::{Mode, Record, Route, Spillway, SpillwayConfig};
use spillway_test_support::oracle::{self, Acked, Delivered};
use spillway_test_support::{TopicRecord, dead_port};

pub const TOPIC: &str = "orders";
pub const PARTITIONS: i32 = 3;

/// One record a test sent and Spillway accepted into the spool.
#[derive(Debug, Clone)]
pub struct Sent {
    pub id: String,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub acked: Acked,
}

/// The `i`-th test record: keyed over `keys` keys except every fifth (keyless); every third
/// has headers; every seventh has a value that is not UTF-8.
pub fn record(i: usize, keys: usize) -> Record {
    let mut r = Record::new(TOPIC);
    if i % 5 != 4 {
        r = r.key(format!("key-{}", i % keys));
    }
    r = if i % 7 == 6 {
        r.value(vec![0xff, 0xfe, i as u8, 0x00])
    } else {
        r.value(format!("value-{i}"))
    };
    if i % 3 == 0 {
        r = r
            .header("trace", format!("t-{i}"))
            .header("bin", vec![0x80u8, 1]);
    }
    r
}

/// Writes `n` records into a spool at `dir` with Spillway (`spool_first`, Kafka unreachable),
/// then shuts it down: a real spool holding every record, in order.
pub fn make_spool(dir: &Path, n: usize, keys: usize) -> Vec<Sent> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut config = SpillwayConfig::new(dead_port().to_string(), dir);
        config.default_route = Route::new("*", Mode::SpoolFirst);
        config.kafka.message_timeout = Duration::from_secs(5);
        config.topics = vec![TopicSettings {
            name: TOPIC.into(),
            partitions: Some(PARTITIONS),
        }];
        let spillway = Spillway::start(config).unwrap();
        let mut sent = Vec::new();
        for i in 0..n {
            let r = record(i, keys);
            let before = 2 * i as u64 + 1;
            let accepted = spillway.send(r.clone()).await.expect("spooled");
            sent.push(Sent {
                id: accepted.id().to_string(),
                key: r.key.clone(),
                value: r.value.clone().unwrap(),
                headers: r.headers.clone(),
                acked: Acked {
                    id: accepted.id().to_string(),
                    order_key: r.key.clone(),
                    digest: oracle::digest(r.key.as_deref(), r.value.as_deref()),
                    sent: before,
                    acked: before + 1,
                },
            });
        }
        spillway.shutdown(Duration::from_secs(5)).await;
        sent
    })
}

/// The segment files of `stream`, oldest first.
pub fn segments(dir: &Path, stream: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir.join("streams").join(stream))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    out.sort();
    out
}

/// A stream of the spool holding records (the busiest keyed one).
pub fn busiest_stream(dir: &Path) -> String {
    let mut best = (0u64, String::new());
    for e in std::fs::read_dir(dir.join("streams")).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".keyless") {
            continue;
        }
        let len: u64 = segments(dir, &name)
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum();
        if len > best.0 {
            best = (len, name);
        }
    }
    best.1
}

/// Cuts the last `bytes` bytes off the stream's last segment (a torn tail).
pub fn truncate_tail(dir: &Path, stream: &str, bytes: u64) -> PathBuf {
    let seg = segments(dir, stream).pop().unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - bytes).unwrap();
    seg
}

/// Flips one byte in the middle of the stream's first segment (damage with valid records after).
pub fn flip_middle_byte(dir: &Path, stream: &str) -> PathBuf {
    let seg = segments(dir, stream).remove(0);
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x5a;
    std::fs::write(&seg, &bytes).unwrap();
    seg
}

/// One finished run of the binary.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("not JSON ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr)
        })
    }

    pub fn lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("line {l:?}: {e}")))
            .collect()
    }
}

/// `spillway spool <args...>`.
pub fn spool(args: &[&str]) -> Run {
    let out = command(args).output().expect("running the spillway binary");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `spillway spool <args...>` as a child process, output piped.
pub fn spawn_spool(args: &[&str]) -> Child {
    command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the spillway binary")
}

fn command(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_spillway"));
    c.arg("spool").args(args).env_remove("RUST_LOG");
    c
}

/// Oracle input for what Kafka holds.
pub fn delivered(records: &[TopicRecord]) -> Vec<Delivered> {
    Delivered::from_records(records, |r| {
        r.header(ID_HEADER)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    })
}

/// Asserts Kafka holds every sent record once, intact, in order per key.
pub fn assert_delivered_once_in_order(sent: &[Sent], records: &[TopicRecord]) {
    let acked: Vec<Acked> = sent.iter().map(|s| s.acked.clone()).collect();
    let verdict = oracle::check(&acked, &delivered(records));
    assert!(verdict.is_clean(), "oracle: {verdict}");
    assert_eq!(verdict.delivered, sent.len(), "oracle: {verdict}");
}

/// The number of a summary row (`  what    N`) in a replay's output.
pub fn summary_count(stdout: &str, what: &str) -> u64 {
    stdout
        .lines()
        .find(|l| l.trim_start().starts_with(what))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
        .unwrap_or_else(|| panic!("no row {what:?} in:\n{stdout}"))
}
