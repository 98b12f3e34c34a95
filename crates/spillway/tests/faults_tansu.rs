//! The producer against the real Tansu broker: a network blackhole and a kill -9 + restart while
//! producing. Every `Delivered` outcome is in Kafka once; `PossiblyPersisted` ones are counted
//! as found or not; nothing is duplicated; the broker is not wedged by our producer sessions.

mod common;

use std::time::{Duration, Instant};

use spillway::{IdGenerator, OutRecord, Outcome, Producer};
use spillway_test_support::{FaultMode, TansuBroker, oracle, read_topic};

const TOPIC: &str = "tansu-faults";

enum Fault {
    Blackhole,
    Kill9,
}

async fn produce_through(fault: Fault) {
    spillway_test_support::init_test_logging();
    let mut broker = match fault {
        Fault::Blackhole => TansuBroker::start_proxied(),
        Fault::Kill9 => TansuBroker::start(),
    }
    .unwrap();
    broker.create_topics(&[(TOPIC, 3)]).unwrap();
    let producer = Producer::start(common::options(&broker.bootstrap())).unwrap();
    let ids = IdGenerator::ephemeral();
    let clock = common::Clock::default();
    let started = Instant::now();
    let (mut futures, mut refused) = (Vec::new(), 0usize);
    let (mut broken, mut healed) = (false, false);
    let mut i = 0usize;
    while started.elapsed() < Duration::from_secs(7) {
        let t = started.elapsed();
        if !broken && t >= Duration::from_secs(1) {
            broken = true;
            match fault {
                Fault::Blackhole => broker.proxy().unwrap().set_mode(FaultMode::Blackhole),
                Fault::Kill9 => broker.kill9(),
            }
        }
        if !healed && t >= Duration::from_secs(4) {
            healed = true;
            match fault {
                Fault::Blackhole => broker.proxy().unwrap().set_mode(FaultMode::Pass),
                Fault::Kill9 => broker.restart().unwrap(),
            }
        }
        let mut r = OutRecord::new(TOPIC, ids.next_id()).value(format!("v{i}"));
        if i % 2 == 0 {
            r = r.key(format!("k{}", i % 10));
        }
        let sent = clock.tick();
        match producer.send(r) {
            Ok(f) => futures.push((sent, f)),
            Err(e) => {
                assert!(e.is_transient(), "{e}");
                refused += 1;
            }
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut acked = Vec::new();
    let mut deliveries = Vec::new();
    for (sent, f) in futures {
        let d = f.await;
        acked.extend(common::acked(&d, sent, clock.tick()));
        deliveries.push(d);
    }
    broker.check_not_wedged().unwrap();
    let records = read_topic(&broker.direct_bootstrap(), TOPIC, Duration::from_secs(30)).unwrap();
    common::check_offsets(&deliveries, &records);
    let in_kafka: std::collections::HashSet<String> = common::delivered(&records)
        .into_iter()
        .map(|d| d.id)
        .collect();
    let (mut possibly_found, mut possibly_absent, mut not_persisted_found) = (0, 0, 0);
    for d in &deliveries {
        let found = in_kafka.contains(&d.record.id.to_string());
        match d.outcome {
            Outcome::PossiblyPersisted { .. } if found => possibly_found += 1,
            Outcome::PossiblyPersisted { .. } => possibly_absent += 1,
            Outcome::NotPersisted { .. } if found => {
                eprintln!(
                    "not persisted yet in Kafka: {} {:?} attempts {} session {}",
                    d.record.id, d.outcome, d.attempts, d.session
                );
                not_persisted_found += 1
            }
            _ => {}
        }
    }
    let verdict = oracle::check(&acked, &common::delivered(&records));
    eprintln!(
        "sent {}, refused at send {refused}; possibly persisted: {possibly_found} in Kafka, {possibly_absent} not; {:?}; oracle {verdict}",
        deliveries.len(),
        producer.counters()
    );
    common::assert_clean(&verdict);
    assert_eq!(
        not_persisted_found, 0,
        "a record reported not persisted must not be in Kafka"
    );
    assert!(
        acked.len() > deliveries.len() / 3,
        "records flowed before and after the fault"
    );
    producer.close(Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackhole_between_producer_and_broker_loses_and_duplicates_nothing() {
    produce_through(Fault::Blackhole).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_kill9_and_restart_loses_and_duplicates_nothing() {
    produce_through(Fault::Kill9).await;
}
