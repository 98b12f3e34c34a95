//! The canary goes all the way round (produce, then consume back) on both brokers we test
//! with, and fails — within its timeout — when the cluster cannot be reached.

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use spillway::canary::Canary;
use spillway_test_support::mock::Unreachable;
use spillway_test_support::{MockKafka, TansuBroker};

fn canary(bootstrap: &str, timeout: Duration) -> Canary {
    let mut base = ClientConfig::new();
    base.set("bootstrap.servers", bootstrap);
    Canary::new(&base, "__spillway_canary", timeout)
}

#[test]
fn the_canary_round_trips_through_every_partition_of_the_mock_cluster() {
    let kafka = MockKafka::with_proxies(3).unwrap();
    kafka.create_topic("__spillway_canary", 3).unwrap();
    canary(kafka.bootstrap(), Duration::from_secs(10))
        .check()
        .unwrap();
}

#[test]
fn the_canary_fails_in_time_when_one_leader_is_unreachable() {
    let kafka = MockKafka::with_proxies(3).unwrap();
    kafka.create_topic("__spillway_canary", 3).unwrap();
    kafka.make_unreachable(2, Unreachable::Blackhole).unwrap();
    let started = Instant::now();
    let err = canary(kafka.bootstrap(), Duration::from_secs(3))
        .check()
        .unwrap_err();
    eprintln!("canary: {err} after {:?}", started.elapsed());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "bounded by its timeout, not hung"
    );
}

#[test]
fn the_canary_creates_its_topic_on_the_real_broker_and_round_trips() {
    let broker = TansuBroker::start().unwrap();
    canary(&broker.bootstrap(), Duration::from_secs(10))
        .check()
        .unwrap();
    // And again, now that the topic exists.
    canary(&broker.bootstrap(), Duration::from_secs(10))
        .check()
        .unwrap();
}

#[test]
fn the_canary_fails_when_the_real_broker_is_down() {
    let mut broker = TansuBroker::start().unwrap();
    canary(&broker.bootstrap(), Duration::from_secs(10))
        .check()
        .unwrap();
    broker.kill9();
    assert!(
        canary(&broker.bootstrap(), Duration::from_secs(2))
            .check()
            .is_err()
    );
}
