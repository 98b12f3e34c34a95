//! The Tansu broker harness is faithful: acknowledged records survive kill -9, a paused broker
//! answers nothing, and a restarted broker serves the same data on the same port.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use spillway_test_support::{TansuBroker, read_topic, read_topic_until};

fn producer(bootstrap: &str, timeout_ms: u32) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", timeout_ms.to_string())
        .create()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_acknowledged_with_acks_all_survives_kill9_and_restart() {
    let mut broker = TansuBroker::start().unwrap();
    broker.create_topics(&[("durable", 3)]).unwrap();
    let p = producer(&broker.bootstrap(), 10_000);
    let headers = OwnedHeaders::new().insert(Header {
        key: "spillway.id",
        value: Some("t-1"),
    });
    let rdkafka::producer::future_producer::Delivery {
        partition, offset, ..
    } = p
        .send(
            FutureRecord::to("durable")
                .key("k1")
                .payload("payload-1")
                .headers(headers),
            Duration::from_secs(10),
        )
        .await
        .expect("acknowledged");
    drop(p);

    broker.kill9();
    assert!(broker.pid().is_none());
    broker.restart().unwrap();

    let records = read_topic(&broker.bootstrap(), "durable", Duration::from_secs(20)).unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    let r = &records[0];
    assert_eq!((r.partition, r.offset), (partition, offset));
    assert_eq!(r.key.as_deref(), Some(&b"k1"[..]));
    assert_eq!(r.value.as_deref(), Some(&b"payload-1"[..]));
    assert_eq!(r.header("spillway.id"), Some(&b"t-1"[..]));
    assert!(!broker.wedged());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_broker_answers_nothing_until_resumed() {
    let mut broker = TansuBroker::start().unwrap();
    broker.create_topics(&[("paused", 1)]).unwrap();
    let p = producer(&broker.bootstrap(), 2_000);
    p.send(
        FutureRecord::<(), _>::to("paused").payload("a"),
        Duration::from_secs(5),
    )
    .await
    .unwrap();

    // Stopped alone: the broker has a process group of its own, so stopping it can never stop
    // or hang up this test's group.
    let pid = nix::unistd::Pid::from_raw(broker.pid().unwrap() as i32);
    assert_eq!(nix::unistd::getpgid(Some(pid)).unwrap(), pid);
    assert_ne!(nix::unistd::getpgid(None).unwrap(), pid);
    broker.pause().unwrap();
    let err = p
        .send(
            FutureRecord::<(), _>::to("paused").payload("b"),
            Duration::from_secs(5),
        )
        .await
        .expect_err("a stopped broker cannot acknowledge");
    drop(err);
    broker.resume().unwrap();
    drop(p);

    // A fresh producer (new producer id) writes again once the broker runs.
    let p = producer(&broker.bootstrap(), 10_000);
    p.send(
        FutureRecord::<(), _>::to("paused").payload("c"),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    p.flush(Duration::from_secs(5)).unwrap();
    let records =
        read_topic_until(&broker.bootstrap(), "paused", 2, Duration::from_secs(20)).unwrap();
    let values: Vec<_> = records.iter().filter_map(|r| r.value.clone()).collect();
    assert!(
        values.contains(&b"a".to_vec()) && values.contains(&b"c".to_vec()),
        "{values:?}"
    );
}

#[test]
fn topics_are_created_through_the_admin_api_and_creating_again_is_harmless() {
    let broker = TansuBroker::start().unwrap();
    broker.create_topics(&[("created", 4)]).unwrap();
    broker.create_topics(&[("created", 4)]).unwrap();
    let consumer: rdkafka::consumer::BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .unwrap();
    use rdkafka::consumer::Consumer;
    let md = consumer
        .fetch_metadata(Some("created"), Duration::from_secs(10))
        .unwrap();
    assert_eq!(md.topics()[0].partitions().len(), 4);
    assert_eq!(md.brokers().len(), 1, "tansu always lists one broker");
}
