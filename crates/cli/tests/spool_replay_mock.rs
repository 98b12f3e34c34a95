//! `spillway spool replay` against librdkafka's mock cluster (in this process; the binary
//! reaches it over loopback): a spool is delivered once and in order (the oracle), a second
//! replay sends nothing, and interrupted replays (SIGINT, SIGKILL) lose and duplicate nothing.

mod spool_common;

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use spillway_test_support::{MockKafka, read_topic};
use spool_common::*;

fn cluster() -> MockKafka {
    let kafka = MockKafka::new(3).unwrap();
    kafka.create_topic(TOPIC, PARTITIONS).unwrap();
    kafka.create_topic("__spillway_canary", 3).unwrap();
    kafka
}

fn replay(dir: &str, kafka: &MockKafka, extra: &[&str]) -> Run {
    let mut args = vec!["replay", dir, "--bootstrap", kafka.bootstrap()];
    args.extend_from_slice(extra);
    spool(&args)
}

fn topic(kafka: &MockKafka) -> Vec<spillway_test_support::TopicRecord> {
    read_topic(kafka.bootstrap(), TOPIC, Duration::from_secs(30)).unwrap()
}

/// Runs a rate-limited replay and stops it with `signal` once some records are in Kafka.
fn interrupted_replay(dir: &str, kafka: &MockKafka, signal: Signal) -> std::process::Output {
    let child = spawn_spool(&[
        "replay",
        dir,
        "--bootstrap",
        kafka.bootstrap(),
        "--rate",
        "100",
    ]);
    let pid = Pid::from_raw(child.id() as i32);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let n = topic(kafka).len();
        if n >= 60 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replay made no progress ({n})"
        );
    }
    kill(pid, signal).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn replay_delivers_a_spool_once_and_in_order_and_a_second_replay_sends_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let sent = make_spool(tmp.path(), 400, 9);
    let kafka = cluster();
    let run = replay(dir, &kafka, &[]);
    eprintln!("{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("done in"));
    assert_eq!(
        summary_count(&run.stdout, "records to deliver at start"),
        400
    );
    assert_eq!(summary_count(&run.stdout, "delivered"), 400);
    assert_eq!(summary_count(&run.stdout, "left in the spool"), 0);
    assert_delivered_once_in_order(&sent, &topic(&kafka));

    let inspect = spool(&["inspect", dir, "--json"]).json();
    assert_eq!(inspect["records"], 0, "the spool is empty");

    let again = replay(dir, &kafka, &[]);
    eprintln!("{}", again.stdout);
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    assert_eq!(
        summary_count(&again.stdout, "records to deliver at start"),
        0
    );
    assert_delivered_once_in_order(&sent, &topic(&kafka));
}

#[test]
fn replay_interrupted_by_ctrl_c_stops_cleanly_and_a_rerun_delivers_the_rest_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let sent = make_spool(tmp.path(), 300, 7);
    let kafka = cluster();
    let out = interrupted_replay(dir, &kafka, Signal::SIGINT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}\n{stderr}");
    assert_eq!(out.status.code(), Some(130), "{stdout}{stderr}");
    assert!(stdout.contains("interrupted after"));
    let left = summary_count(&stdout, "left in the spool");
    assert!(left > 0 && left < 300, "{stdout}");
    assert!(stdout.contains("rerun the same command"));
    let in_kafka = topic(&kafka).len() as u64;
    assert_eq!(in_kafka + left, 300, "what left the spool is in Kafka");

    let rerun = replay(dir, &kafka, &[]);
    eprintln!("{}", rerun.stdout);
    assert_eq!(rerun.code, 0, "{}{}", rerun.stdout, rerun.stderr);
    assert_delivered_once_in_order(&sent, &topic(&kafka));
}

#[test]
fn replay_killed_with_sigkill_midway_then_rerun_duplicates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let sent = make_spool(tmp.path(), 300, 5);
    let kafka = cluster();
    let out = interrupted_replay(dir, &kafka, Signal::SIGKILL);
    assert_eq!(out.status.code(), None, "killed");
    let rerun = replay(dir, &kafka, &[]);
    eprintln!("{}\n{}", rerun.stdout, rerun.stderr);
    assert_eq!(rerun.code, 0, "{}{}", rerun.stdout, rerun.stderr);
    // What Kafka got before the kill but the checkpoint did not record is found by the tail
    // check and not sent again.
    assert_delivered_once_in_order(&sent, &topic(&kafka));
}

#[test]
fn replay_of_a_spool_with_a_torn_tail_repairs_it_and_delivers_every_intact_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let sent = make_spool(tmp.path(), 120, 4);
    let stream = busiest_stream(tmp.path());
    truncate_tail(tmp.path(), &stream, 3);
    let kafka = cluster();
    let run = replay(dir, &kafka, &[]);
    eprintln!("{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("torn tail"),
        "recovery is reported: {}",
        run.stderr
    );
    let records = topic(&kafka);
    assert_eq!(records.len(), 119, "the torn record was never complete");
    let delivered_ids: std::collections::HashSet<String> =
        delivered(&records).into_iter().map(|d| d.id).collect();
    let intact: Vec<Sent> = sent
        .into_iter()
        .filter(|s| delivered_ids.contains(&s.id))
        .collect();
    assert_delivered_once_in_order(&intact, &records);
}

#[test]
fn replay_to_an_unreachable_cluster_gives_up_at_the_timeout_and_keeps_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    make_spool(tmp.path(), 20, 2);
    let dead = spillway_test_support::dead_port().to_string();
    let run = spool(&["replay", dir, "--bootstrap", &dead, "--timeout", "3s"]);
    eprintln!("{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("gave up after"));
    assert_eq!(summary_count(&run.stdout, "left in the spool"), 20);
    assert_eq!(spool(&["inspect", dir, "--json"]).json()["records"], 20);
}
