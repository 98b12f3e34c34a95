//! `spillway spool replay` against a real broker (Tansu): a spool written while Kafka was away
//! is delivered once and in order, a second replay sends nothing, and a replay killed with
//! SIGKILL midway is finished by a rerun without duplicates. Needs `SPILLWAY_TANSU_BIN`.

mod spool_common;

use std::time::{Duration, Instant};

use spillway_test_support::{TansuBroker, read_topic};
use spool_common::*;

fn broker() -> TansuBroker {
    let broker = TansuBroker::start().expect("tansu (set SPILLWAY_TANSU_BIN)");
    broker
        .create_topics(&[(TOPIC, PARTITIONS), ("__spillway_canary", 1)])
        .unwrap();
    broker
}

fn topic(broker: &TansuBroker) -> Vec<spillway_test_support::TopicRecord> {
    read_topic(&broker.bootstrap(), TOPIC, Duration::from_secs(30)).unwrap()
}

#[test]
fn replay_delivers_a_spool_to_tansu_once_and_in_order_and_a_second_replay_sends_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let sent = make_spool(tmp.path(), 300, 11);
    let broker = broker();
    let bootstrap = broker.bootstrap();
    let run = spool(&["replay", dir, "--bootstrap", &bootstrap]);
    eprintln!("{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(summary_count(&run.stdout, "delivered"), 300);
    assert_delivered_once_in_order(&sent, &topic(&broker));
    let again = spool(&["replay", dir, "--bootstrap", &bootstrap]);
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    assert_eq!(
        summary_count(&again.stdout, "records to deliver at start"),
        0
    );
    assert_delivered_once_in_order(&sent, &topic(&broker));
    broker.check_not_wedged().unwrap();
}

#[test]
fn replay_to_tansu_killed_midway_then_rerun_duplicates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let sent = make_spool(tmp.path(), 300, 5);
    let broker = broker();
    let bootstrap = broker.bootstrap();
    let mut child = spawn_spool(&["replay", dir, "--bootstrap", &bootstrap, "--rate", "100"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while topic(&broker).len() < 60 {
        assert!(Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(200));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let rerun = spool(&["replay", dir, "--bootstrap", &bootstrap]);
    eprintln!("{}\n{}", rerun.stdout, rerun.stderr);
    assert_eq!(rerun.code, 0, "{}{}", rerun.stdout, rerun.stderr);
    assert_delivered_once_in_order(&sent, &topic(&broker));
    broker.check_not_wedged().unwrap();
}
