//! The problem Spillway solves, reproduced faithfully (KAFKA-3686): partition 0's leader stays in
//! the metadata while we cannot reach it. A vanilla rdkafka producer (acks=all, idempotence,
//! message.timeout.ms=5000) loses every record sent explicitly to partition 0 and some keyless
//! records. The library's tests show Spillway losing none in the same situation.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use spillway_test_support::MockKafka;
use spillway_test_support::mock::Unreachable;

const TOPIC: &str = "kafka3686";

fn vanilla_producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "5000")
        .create()
        .unwrap()
}

fn leader_of(bootstrap: &str, partition: i32) -> (i32, Vec<i32>) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let md = c
        .fetch_metadata(Some(TOPIC), Duration::from_secs(10))
        .unwrap();
    let leader = md.topics()[0]
        .partitions()
        .iter()
        .find(|p| p.id() == partition)
        .unwrap()
        .leader();
    (leader, md.brokers().iter().map(|b| b.id()).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanilla_producer_loses_records_when_a_listed_leader_is_unreachable() {
    let kafka = MockKafka::with_proxies(3).unwrap();
    kafka.create_topic(TOPIC, 3).unwrap();
    let producer = vanilla_producer(kafka.bootstrap());
    // Warm up: every partition reachable, connections to all three brokers established.
    for p in 0..3 {
        producer
            .send(
                FutureRecord::<(), _>::to(TOPIC)
                    .partition(p)
                    .payload("warm"),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
    }

    kafka.make_unreachable(1, Unreachable::Blackhole).unwrap();
    let (leader, brokers) = leader_of(kafka.bootstrap(), 0);
    assert_eq!(
        leader, 1,
        "partition 0 is still led by broker 1 in the metadata"
    );
    assert!(brokers.contains(&1), "broker 1 is still listed");

    let mut explicit = Vec::new();
    for i in 0..20 {
        let payload = format!("explicit-{i}");
        let record = FutureRecord::<(), _>::to(TOPIC)
            .partition(0)
            .payload(&payload);
        explicit.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
    }
    let mut keyless = Vec::new();
    for i in 0..150 {
        let payload = format!("keyless-{i}");
        keyless.push(
            producer
                .send_result(FutureRecord::<(), _>::to(TOPIC).payload(&payload))
                .map_err(|(e, _)| e)
                .unwrap(),
        );
        tokio::time::sleep(Duration::from_millis(15)).await;
    }

    let mut explicit_lost = 0;
    for f in explicit {
        if f.await.expect("delivery report").is_err() {
            explicit_lost += 1;
        }
    }
    let mut keyless_lost = 0;
    let keyless_sent = keyless.len();
    for f in keyless {
        if f.await.expect("delivery report").is_err() {
            keyless_lost += 1;
        }
    }
    eprintln!(
        "vanilla under KAFKA-3686: explicit to p0 lost {explicit_lost}/20, keyless lost {keyless_lost}/{keyless_sent}"
    );
    assert_eq!(
        explicit_lost, 20,
        "every record sent to the unreachable leader is lost"
    );
    assert!(keyless_lost > 0, "some keyless records are lost too");
    assert!(
        keyless_lost < keyless_sent,
        "records to reachable partitions are delivered"
    );
}

#[test]
fn advertising_a_dead_port_keeps_the_broker_listed_as_leader() {
    let kafka = MockKafka::new(3).unwrap();
    kafka.create_topic(TOPIC, 3).unwrap();
    let dead = kafka.advertise_dead_port(1);
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap())
        .create()
        .unwrap();
    let md = c
        .fetch_metadata(Some(TOPIC), Duration::from_secs(10))
        .unwrap();
    let b1 = md
        .brokers()
        .iter()
        .find(|b| b.id() == 1)
        .expect("broker 1 still listed");
    assert_eq!((b1.host(), b1.port() as u16), ("127.0.0.1", dead.port()));
    let p0 = md.topics()[0]
        .partitions()
        .iter()
        .find(|p| p.id() == 0)
        .unwrap();
    assert_eq!(p0.leader(), 1);
    assert!(
        std::net::TcpStream::connect(dead).is_err(),
        "nothing listens at the advertised port"
    );
}

#[test]
fn the_mock_cluster_spreads_leaders_and_moves_them_on_demand() {
    let kafka = MockKafka::new(3).unwrap();
    kafka.create_topic(TOPIC, 6).unwrap();
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap())
        .create()
        .unwrap();
    let leaders = |c: &BaseConsumer| -> Vec<i32> {
        let md = c
            .fetch_metadata(Some(TOPIC), Duration::from_secs(10))
            .unwrap();
        let mut ps: Vec<_> = md.topics()[0]
            .partitions()
            .iter()
            .map(|p| (p.id(), p.leader()))
            .collect();
        ps.sort();
        ps.into_iter().map(|(_, l)| l).collect()
    };
    assert_eq!(leaders(&c), vec![1, 2, 3, 1, 2, 3]);
    kafka.set_leader(TOPIC, 0, 3).unwrap();
    assert_eq!(leaders(&c)[0], 3);
}
