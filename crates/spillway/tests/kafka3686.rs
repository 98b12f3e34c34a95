//! KAFKA-3686 on the 3-broker mock cluster: the leader of partition 0 stays in the metadata while
//! we cannot reach it. The vanilla producer (baseline, in this file too) loses records; Spillway
//! re-places keyless records on reachable partitions and loses none, and never claims a record
//! delivered that Kafka does not hold.

mod common;

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use spillway::{IdGenerator, OutRecord, Outcome, Producer};
use spillway_test_support::mock::Unreachable;
use spillway_test_support::{MockKafka, oracle, read_topic};

const TOPIC: &str = "kafka3686";

struct Tally {
    sent: usize,
    lost: usize,
}

async fn vanilla_under_kafka3686(how: Unreachable) -> (Tally, Tally) {
    let kafka = MockKafka::with_proxies(3).unwrap();
    kafka.create_topic(TOPIC, 3).unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap())
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "5000")
        .create()
        .unwrap();
    for p in 0..3 {
        let warm = FutureRecord::<(), _>::to(TOPIC)
            .partition(p)
            .payload("warm");
        producer.send(warm, Duration::from_secs(5)).await.unwrap();
    }
    kafka.make_unreachable(1, how).unwrap();
    let (mut keyless, mut explicit) = (Vec::new(), Vec::new());
    for i in 0..150 {
        let v = format!("keyless-{i}");
        keyless.push(
            producer
                .send_result(FutureRecord::<(), _>::to(TOPIC).payload(&v))
                .unwrap(),
        );
        if i % 7 == 0 {
            let r = FutureRecord::<(), _>::to(TOPIC).partition(0).payload(&v);
            explicit.push(producer.send_result(r).unwrap());
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    let mut k = Tally {
        sent: keyless.len(),
        lost: 0,
    };
    for f in keyless {
        k.lost += usize::from(f.await.unwrap().is_err());
    }
    let mut e = Tally {
        sent: explicit.len(),
        lost: 0,
    };
    for f in explicit {
        e.lost += usize::from(f.await.unwrap().is_err());
    }
    (k, e)
}

async fn spillway_under_kafka3686(how: Unreachable) {
    spillway_test_support::init_test_logging();
    let kafka = MockKafka::with_proxies(3).unwrap();
    kafka.create_topic(TOPIC, 3).unwrap();
    let producer = Producer::start(common::options(kafka.bootstrap())).unwrap();
    let ids = IdGenerator::ephemeral();
    let clock = common::Clock::default();
    for p in 0..3 {
        let warm = OutRecord::new(TOPIC, ids.next_id())
            .partition(p)
            .value("warm");
        assert!(producer.send(warm).unwrap().await.outcome.is_delivered());
    }

    kafka.make_unreachable(1, how).unwrap();
    let broken_at = Instant::now();
    let mut detected = None;
    let (mut keyless, mut explicit, mut refused_explicit) = (Vec::new(), Vec::new(), 0);
    for i in 0..150 {
        let record = OutRecord::new(TOPIC, ids.next_id()).value(format!("keyless-{i}"));
        let sent = clock.tick();
        let f = producer
            .send(record)
            .expect("a keyless record always has a partition");
        assert!(f.in_librdkafka(), "a record just sent is in librdkafka");
        keyless.push((sent, f));
        if i % 7 == 0 {
            let record = OutRecord::new(TOPIC, ids.next_id())
                .partition(0)
                .value(format!("p0-{i}"));
            match producer.send(record) {
                Ok(f) => explicit.push((clock.tick(), f)),
                Err(e) => {
                    assert!(e.is_transient(), "{e}");
                    refused_explicit += 1;
                }
            }
        }
        if detected.is_none() && !producer.is_healthy(TOPIC, 0) {
            detected = Some(broken_at.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    eprintln!("{how:?}: partition 0 found unhealthy after {detected:?}");
    assert!(detected.is_some(), "the unreachable leader was noticed");

    tokio::time::sleep(Duration::from_secs(1)).await;
    // Records caught behind a blackholed leader may be in Kafka: the producer holds them for
    // their tail check, out of librdkafka (so cutting the session again would not help them).
    let held = keyless.iter().filter(|(_, f)| !f.in_librdkafka()).count();
    eprintln!("{how:?}: {held} keyless records held by the producer before the heal");
    if how == Unreachable::Blackhole {
        assert!(
            held > 0,
            "possibly persisted records wait out of librdkafka"
        );
    }
    kafka.make_reachable(1).unwrap();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        eprintln!("after heal: unhealthy {:?}", producer.unhealthy());
    }

    let mut acked = Vec::new();
    let mut deliveries = Vec::new();
    let mut keyless_lost = 0;
    for (sent, f) in keyless {
        let d = f.await;
        let at = clock.tick();
        if !d.outcome.is_delivered() {
            keyless_lost += 1;
            eprintln!("keyless not delivered: {:?}", d.outcome);
        }
        acked.extend(common::acked(&d, sent, at));
        deliveries.push(d);
    }
    let mut explicit_outcomes = (0, 0, 0);
    for (sent, f) in explicit {
        let d = f.await;
        match &d.outcome {
            Outcome::Delivered { .. } => explicit_outcomes.0 += 1,
            Outcome::NotPersisted { error, .. } | Outcome::PossiblyPersisted { error, .. } => {
                assert_eq!(error.class, spillway::ErrorClass::Transient, "{error}");
                explicit_outcomes.1 += 1;
            }
            Outcome::Permanent { .. } => explicit_outcomes.2 += 1,
        }
        acked.extend(common::acked(&d, sent, clock.tick()));
        deliveries.push(d);
    }
    eprintln!(
        "{how:?}: Spillway keyless lost {keyless_lost}/150; explicit p0: {} delivered (sent before detection), {} transient outcomes, {refused_explicit} refused at send; counters {:?}",
        explicit_outcomes.0,
        explicit_outcomes.1,
        producer.counters()
    );
    assert_eq!(keyless_lost, 0, "no keyless record is lost");
    let c = producer.counters();
    assert!(
        c.replaced + c.resolved_found > 0,
        "keyless records caught behind the leader were re-placed or resolved: {c:?}"
    );
    assert_eq!(
        explicit_outcomes.2, 0,
        "an unreachable leader is never a permanent failure"
    );

    let records = read_topic(kafka.bootstrap(), TOPIC, Duration::from_secs(20)).unwrap();
    common::check_offsets(&deliveries, &records);
    let verdict = oracle::check(&acked, &common::delivered(&records));
    eprintln!("{how:?}: oracle {verdict}");
    common::assert_clean(&verdict);
    producer.close(Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanilla_rdkafka_loses_records_behind_a_blackholed_leader() {
    let (keyless, explicit) = vanilla_under_kafka3686(Unreachable::Blackhole).await;
    eprintln!(
        "vanilla: keyless lost {}/{}, explicit p0 lost {}/{}",
        keyless.lost, keyless.sent, explicit.lost, explicit.sent
    );
    assert_eq!(explicit.lost, explicit.sent);
    assert!(keyless.lost > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spillway_loses_no_keyless_record_behind_a_blackholed_leader() {
    spillway_under_kafka3686(Unreachable::Blackhole).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spillway_loses_no_keyless_record_behind_a_refusing_leader() {
    spillway_under_kafka3686(Unreachable::Refused).await;
}
