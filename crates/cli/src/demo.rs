//! `spillway demo`: what happens to a plain Kafka producer when a partition leader is listed in
//! the metadata but cannot be reached (KAFKA-3686), on an in-process 3-broker mock cluster.
//!
//! Honest scope: the gateway and the delivery modes are not built yet, so this demo shows the
//! problem with a vanilla rdkafka producer (acks=all, idempotence). It grows into the full
//! Spillway demo as those land.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use spillway_test_support::MockKafka;
use spillway_test_support::mock::Unreachable;

const TOPIC: &str = "demo";

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Records to send while the leader of partition 0 is unreachable.
    #[arg(long, default_value_t = 300)]
    records: usize,
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(demo(args))
}

async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    println!(
        "Starting an in-process Kafka mock cluster: 3 brokers, topic '{TOPIC}' with 3 partitions"
    );
    let kafka = MockKafka::with_proxies(3).context("starting the mock cluster")?;
    kafka.create_topic(TOPIC, 3)?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap())
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "5000")
        .create()?;

    let healthy = send_all(&producer, "healthy", args.records, None).await;
    println!(
        "Healthy cluster: {} of {} records acknowledged",
        healthy.delivered, args.records
    );

    println!(
        "\nBroker 1 (leader of partition 0) becomes unreachable from here but stays in the metadata (KAFKA-3686)"
    );
    kafka.make_unreachable(1, Unreachable::Blackhole)?;
    let started = Instant::now();
    let keyless = send_all(&producer, "keyless", args.records, None).await;
    let pinned = send_all(&producer, "partition-0", args.records / 10, Some(0)).await;
    println!(
        "Vanilla producer, keyless records:    {} acknowledged, {} LOST (failed after up to {:.1}s)",
        keyless.delivered,
        keyless.failed,
        started.elapsed().as_secs_f64()
    );
    println!(
        "Vanilla producer, records for p0:     {} acknowledged, {} LOST",
        pinned.delivered, pinned.failed
    );
    println!(
        "\nEvery lost record above was a write the application had to handle itself. Spillway's\n\
         library (in progress) routes keyless records to reachable partitions and spools the rest."
    );
    kafka.make_reachable(1)?;
    Ok(())
}

#[derive(Debug, Default)]
struct Tally {
    delivered: usize,
    failed: usize,
}

async fn send_all(
    producer: &FutureProducer,
    label: &str,
    count: usize,
    partition: Option<i32>,
) -> Tally {
    let mut pending = Vec::with_capacity(count);
    for i in 0..count {
        let payload = format!("{label}-{i}");
        let mut record = FutureRecord::<(), _>::to(TOPIC).payload(&payload);
        if let Some(p) = partition {
            record = record.partition(p);
        }
        match producer.send_result(record) {
            Ok(delivery) => pending.push(delivery),
            Err(_) => continue,
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut tally = Tally::default();
    for delivery in pending {
        match delivery.await {
            Ok(Ok(_)) => tally.delivered += 1,
            _ => tally.failed += 1,
        }
    }
    tally
}
