//! Helpers shared by the library's integration tests.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use spillway::api::Accepted;
use spillway::health::HealthConfig;
use spillway::record::ID_HEADER;
use spillway::{Delivery, KafkaSettings, Outcome, ProducerOptions, Record};
use spillway_test_support::TopicRecord;
use spillway_test_support::oracle::{self, Acked, Delivered, Verdict};

/// Producer options for tests: fast detection, short timeouts.
pub fn options(bootstrap: &str) -> ProducerOptions {
    let mut kafka = KafkaSettings::new(bootstrap);
    kafka.message_timeout = Duration::from_secs(5);
    kafka.linger = Duration::from_millis(2);
    let mut opts = ProducerOptions::new(kafka);
    opts.health = HealthConfig {
        stall_after: Duration::from_millis(1000),
        min_unhealthy: Duration::from_millis(500),
        recover_after: 2,
        session_grace: Duration::from_secs(3),
        ..HealthConfig::default()
    };
    opts.probe_interval = Duration::from_millis(250);
    opts.probe_timeout = Duration::from_millis(500);
    opts.resolve_timeout = Duration::from_secs(30);
    // Short sticky runs spread keyless records over every partition, so some are always in
    // flight to the partition a test breaks.
    opts.sticky_run = 3;
    opts
}

/// A logical clock shared by a test's senders, for the oracle's ordering check.
#[derive(Debug, Default)]
pub struct Clock(AtomicU64);

impl Clock {
    pub fn tick(&self) -> u64 {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
}

/// Oracle input for one delivery reported `Delivered` (others were not acknowledged).
pub fn acked(d: &Delivery, sent: u64, acked: u64) -> Option<Acked> {
    d.outcome.is_delivered().then(|| Acked {
        id: d.record.id.to_string(),
        order_key: d.record.key.clone().or_else(|| {
            d.record
                .partition
                .map(|p| format!("partition:{p}").into_bytes())
        }),
        digest: oracle::digest(d.record.key.as_deref(), d.record.value.as_deref()),
        sent,
        acked,
    })
}

/// Oracle input for a record `Spillway::send` accepted (delivered or spooled).
pub fn accepted(r: &Record, a: &Accepted, sent: u64, acked: u64) -> Acked {
    Acked {
        id: a.id().to_string(),
        order_key: r.key.clone(),
        digest: oracle::digest(r.key.as_deref(), r.value.as_deref()),
        sent,
        acked,
    }
}

/// Oracle input for what Kafka holds: records carrying a `spillway.id`.
pub fn delivered(records: &[TopicRecord]) -> Vec<Delivered> {
    Delivered::from_records(records, |r| {
        r.header(ID_HEADER)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    })
}

/// Every `Delivered` outcome names the partition and offset where Kafka holds the record.
pub fn check_offsets(deliveries: &[Delivery], records: &[TopicRecord]) {
    for d in deliveries {
        if let Outcome::Delivered {
            partition,
            offset: Some(offset),
        } = d.outcome
        {
            let found = records
                .iter()
                .find(|r| r.partition == partition && r.offset == offset)
                .unwrap_or_else(|| {
                    panic!("{} claimed at {partition}/{offset}, not there", d.record.id)
                });
            let id = found
                .header(ID_HEADER)
                .map(|v| String::from_utf8_lossy(v).into_owned());
            assert_eq!(id.as_deref(), Some(d.record.id.to_string().as_str()));
        }
    }
}

pub fn assert_clean(verdict: &Verdict) {
    assert!(verdict.is_clean(), "oracle: {verdict}");
}
