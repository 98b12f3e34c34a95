//! `spillway spool replay --dead-letters` against the mock cluster: every entry of a
//! dead-letter log (written by the library's `DeadLetterLog`) reaches its topic once, entries
//! already in Kafka are skipped, a rerun sends nothing, and an entry still refused is reported
//! and tried again next time.

mod spool_common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use spillway::deadletter::{DeadLetter, DeadLetterLog};
use spillway::record::ID_HEADER;
use spillway::{IdGenerator, KafkaSettings, OutRecord, Producer, ProducerOptions};
use spillway_test_support::{MockKafka, TopicRecord, read_topic};
use spool_common::*;

const DLQ_TOPIC: &str = "payments";

fn cluster() -> MockKafka {
    let kafka = MockKafka::new(3).unwrap();
    kafka.create_topic(DLQ_TOPIC, 3).unwrap();
    kafka
}

/// Writes `n` dead letters for `payments` into the spool directory's log, as the library
/// would after Kafka refused them; returns their records.
fn dead_letters(dir: &Path, n: usize, big: &[usize]) -> Vec<OutRecord> {
    std::fs::create_dir_all(dir.join("streams")).unwrap();
    let ids = IdGenerator::open(dir).unwrap();
    let log = DeadLetterLog::open(dir.join("dead-letters.jsonl")).unwrap();
    let mut records = Vec::new();
    let mut entries = Vec::new();
    for i in 0..n {
        let value = if big.contains(&i) {
            vec![b'x'; 2 << 20] // larger than any broker takes
        } else {
            format!("payment-{i}").into_bytes()
        };
        let r = OutRecord::new(DLQ_TOPIC, ids.next_id())
            .key(format!("account-{}", i % 4))
            .value(value)
            .header("origin", format!("o{i}"));
        let partition = (i % 3) as i32;
        entries.push(DeadLetter::new(
            &r,
            Some(partition),
            "MessageSizeTooLarge",
            "Broker: Message size too large",
        ));
        records.push(r.partition(partition));
    }
    log.append(&entries).unwrap();
    records
}

fn topic(kafka: &MockKafka) -> Vec<TopicRecord> {
    read_topic(kafka.bootstrap(), DLQ_TOPIC, Duration::from_secs(30)).unwrap()
}

/// Ids in Kafka and how often each is there.
fn id_counts(records: &[TopicRecord]) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for r in records {
        let id = String::from_utf8_lossy(r.header(ID_HEADER).unwrap()).into_owned();
        *out.entry(id).or_default() += 1;
    }
    out
}

fn replay(dir: &str, kafka: &MockKafka) -> Run {
    spool(&[
        "replay",
        dir,
        "--bootstrap",
        kafka.bootstrap(),
        "--dead-letters",
    ])
}

#[test]
fn dead_letters_are_replayed_to_their_partitions_once_and_a_rerun_sends_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let records = dead_letters(tmp.path(), 40, &[]);
    let kafka = cluster();
    let run = replay(dir, &kafka);
    eprintln!("{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(summary_count(&run.stdout, "delivered"), 40);
    let in_kafka = topic(&kafka);
    let counts = id_counts(&in_kafka);
    assert_eq!(counts.len(), 40);
    assert!(counts.values().all(|n| *n == 1));
    for r in &records {
        let found = in_kafka
            .iter()
            .find(|k| k.header(ID_HEADER) == Some(r.id.to_string().as_bytes()))
            .unwrap();
        assert_eq!(Some(found.partition), r.partition, "original partition");
        assert_eq!(found.value, r.value);
        assert_eq!(found.key, r.key);
        assert_eq!(found.header("origin"), Some(&r.headers[0].1[..]));
    }
    // In log order per partition.
    for p in 0..3 {
        let ids: Vec<&[u8]> = in_kafka
            .iter()
            .filter(|k| k.partition == p)
            .map(|k| k.header(ID_HEADER).unwrap())
            .collect();
        let expected: Vec<String> = records
            .iter()
            .filter(|r| r.partition == Some(p))
            .map(|r| r.id.to_string())
            .collect();
        let expected: Vec<&[u8]> = expected.iter().map(|s| s.as_bytes()).collect();
        assert_eq!(ids, expected);
    }
    let inspect = spool(&["inspect", dir, "--json"]).json();
    assert_eq!(inspect["dead_letters"]["entries"], 40);
    assert_eq!(inspect["dead_letters"]["replayed"], 40);

    let again = replay(dir, &kafka);
    eprintln!("{}", again.stdout);
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    assert_eq!(
        summary_count(&again.stdout, "replayed before (skipped)"),
        40
    );
    assert_eq!(summary_count(&again.stdout, "delivered"), 0);
    assert_eq!(topic(&kafka).len(), 40, "nothing sent twice");
}

#[test]
fn dead_letters_already_in_kafka_are_found_by_id_and_not_sent_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let records = dead_letters(tmp.path(), 20, &[]);
    let kafka = cluster();
    // Some reached Kafka by another way (an earlier replay that died before its marker said so).
    let producer =
        Producer::start(ProducerOptions::new(KafkaSettings::new(kafka.bootstrap()))).unwrap();
    for r in records.iter().step_by(4) {
        assert!(
            producer
                .send(r.clone())
                .unwrap()
                .wait()
                .outcome
                .is_delivered()
        );
    }
    producer.shutdown(Duration::from_secs(5));
    // And the marker says some were being sent when a replay died: those not in Kafka are sent.
    let marker: String = records[1..3]
        .iter()
        .chain(std::iter::once(&records[4]))
        .map(|r| {
            format!(
                "{{\"id\":\"{}\",\"state\":\"sending\",\"at_ms\":1}}\n",
                r.id
            )
        })
        .collect();
    std::fs::write(tmp.path().join("dead-letters.replayed"), marker).unwrap();

    let run = replay(dir, &kafka);
    eprintln!("{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        summary_count(&run.stdout, "already in Kafka (not sent again)"),
        5
    );
    assert_eq!(summary_count(&run.stdout, "delivered"), 15);
    let counts = id_counts(&topic(&kafka));
    assert_eq!(counts.len(), 20);
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
}

#[test]
fn a_dead_letter_still_refused_is_reported_and_tried_again_by_the_next_replay() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    dead_letters(tmp.path(), 6, &[2]);
    let kafka = cluster();
    let run = replay(dir, &kafka);
    eprintln!("{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert_eq!(summary_count(&run.stdout, "delivered"), 5);
    assert_eq!(summary_count(&run.stdout, "refused again"), 1);
    assert!(run.stdout.contains("refused: "), "{}", run.stdout);
    let again = replay(dir, &kafka);
    assert_eq!(again.code, 1);
    assert_eq!(summary_count(&again.stdout, "replayed before (skipped)"), 5);
    assert_eq!(summary_count(&again.stdout, "refused again"), 1);
    assert_eq!(topic(&kafka).len(), 5);
}

#[test]
fn a_spool_without_dead_letters_has_nothing_to_replay() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    std::fs::create_dir_all(tmp.path().join("streams")).unwrap();
    let kafka = cluster();
    let run = replay(dir, &kafka);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("no dead letters to replay"));
}
