//! Tail checks against librdkafka's mock cluster: a scan that runs out of time is resumed by
//! the next check, not started over.

use std::collections::HashSet;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use spillway::record::{ID_HEADER, SpillwayId};
use spillway::tail::{TailError, TailReader};
use spillway_test_support::MockKafka;

const TOPIC: &str = "tail";

fn id(n: u64) -> SpillwayId {
    SpillwayId::parse(format!("abc:1:{n}").as_bytes()).expect("id")
}

/// Produces records `from..to`, each in its own batch (the mock broker serves one batch per
/// fetch, so every record costs a round trip to read).
fn produce(kafka: &MockKafka, from: u64, to: u64) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap())
        .set("linger.ms", "0")
        .create()
        .unwrap();
    for n in from..to {
        let value = id(n).to_string();
        let headers = OwnedHeaders::new().insert(Header {
            key: ID_HEADER,
            value: Some(value.as_bytes()),
        });
        producer
            .send(
                BaseRecord::<(), _>::to(TOPIC)
                    .partition(0)
                    .payload("x")
                    .headers(headers),
            )
            .map_err(|(e, _)| e)
            .unwrap();
        producer.flush(Duration::from_secs(10)).unwrap();
    }
}

fn reader(kafka: &MockKafka) -> TailReader {
    limited_reader(kafka, 100_000)
}

fn limited_reader(kafka: &MockKafka, max_scan: i64) -> TailReader {
    let mut base = ClientConfig::new();
    base.set("bootstrap.servers", kafka.bootstrap());
    TailReader::new(&base, max_scan).unwrap()
}

#[test]
fn a_tail_too_slow_to_read_in_one_check_is_read_across_several() {
    let kafka = MockKafka::new(1).unwrap();
    kafka.create_topic(TOPIC, 1).unwrap();
    produce(&kafka, 0, 20);
    // 20 fetches of at least 150 ms each cannot fit in one 1.5 s check.
    kafka
        .set_round_trip_time(1, Duration::from_millis(150))
        .unwrap();
    let tail = reader(&kafka);
    let wanted: HashSet<SpillwayId> = [id(19)].into();
    let mut timeouts = 0;
    let found = loop {
        match tail.find(TOPIC, 0, None, &wanted, Duration::from_millis(1500)) {
            Ok(checked) => break checked.found,
            Err(TailError::Timeout { .. }) if timeouts < 30 => timeouts += 1,
            Err(e) => panic!("after {timeouts} timeouts: {e}"),
        }
    };
    assert!(timeouts >= 1, "one check could not have read it all");
    assert_eq!(found.get(&id(19)), Some(&19));
}

#[test]
fn a_second_check_reads_only_what_was_appended_and_still_sees_the_rest() {
    let kafka = MockKafka::new(1).unwrap();
    kafka.create_topic(TOPIC, 1).unwrap();
    produce(&kafka, 0, 5);
    let tail = reader(&kafka);
    let all = tail
        .collect(TOPIC, 0, None, Duration::from_secs(10))
        .unwrap()
        .found;
    assert_eq!(all.len(), 5);
    produce(&kafka, 5, 8);
    let wanted: HashSet<SpillwayId> = [id(2), id(7), id(99)].into();
    let found = tail
        .find(TOPIC, 0, Some(1), &wanted, Duration::from_secs(10))
        .unwrap()
        .found;
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!((found[&id(2)], found[&id(7)]), (2, 7));
    let after_three = tail
        .collect(TOPIC, 0, Some(3), Duration::from_secs(10))
        .unwrap()
        .found;
    assert_eq!(after_three.len(), 4, "offsets 4..8 only: {after_three:?}");
}

#[test]
fn errors_left_over_from_an_outage_do_not_fail_the_first_check_after_it() {
    let kafka = MockKafka::with_proxies(1).unwrap();
    kafka.create_topic(TOPIC, 1).unwrap();
    produce(&kafka, 0, 5);
    let tail = reader(&kafka);
    assert_eq!(
        tail.collect(TOPIC, 0, None, Duration::from_secs(10))
            .unwrap()
            .found
            .len(),
        5
    );
    // The broker refuses connections for a while (a killed broker), and checks fail meanwhile;
    // the consumer's connection errors pile up in its queue.
    kafka
        .make_unreachable(1, spillway_test_support::mock::Unreachable::Refused)
        .unwrap();
    for _ in 0..3 {
        assert!(
            tail.collect(TOPIC, 0, Some(4), Duration::from_secs(1))
                .is_err()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    kafka.make_reachable(1).unwrap();
    produce(&kafka, 5, 8);
    let wanted: HashSet<SpillwayId> = [id(6)].into();
    let found = tail
        .find(TOPIC, 0, Some(4), &wanted, Duration::from_secs(10))
        .expect("the first check after the outage reads the tail");
    assert_eq!(found.found.get(&id(6)), Some(&6));
}

#[test]
fn a_tail_longer_than_the_limit_is_read_after_the_known_offset_or_else_at_its_newest() {
    let kafka = MockKafka::new(1).unwrap();
    kafka.create_topic(TOPIC, 1).unwrap();
    produce(&kafka, 0, 20);
    let tail = limited_reader(&kafka, 5);
    let wanted: HashSet<SpillwayId> = [id(3), id(9), id(18)].into();
    let timeout = Duration::from_secs(10);
    let newest = tail.find(TOPIC, 0, None, &wanted, timeout).unwrap();
    assert_eq!(newest.found, [(id(18), 18)].into(), "offsets 15..20 only");
    assert_eq!(newest.unread, 15);
    let after = tail.find(TOPIC, 0, Some(1), &wanted, timeout).unwrap();
    assert_eq!(after.found, [(id(3), 3)].into(), "offsets 2..7 only");
    assert_eq!(after.unread, 13);
    let whole = tail.find(TOPIC, 0, Some(14), &wanted, timeout).unwrap();
    assert_eq!(
        (whole.found.len(), whole.unread),
        (1, 0),
        "15..20 is within the limit"
    );
}
