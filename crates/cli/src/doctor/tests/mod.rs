//! The doctor's judgement on hand-made facts: every verdict without a cluster. Helpers here;
//! the tests by check in the submodules.

mod durability;
mod partitions;
mod reachability;
mod report;

use std::collections::BTreeMap;
use std::time::Duration;

use spillway::KafkaSettings;

use super::evaluate::evaluate;
use super::facts::{
    Broker, BrokerProbe, Controller, DurabilityConfig, Facts, Lookup, Partition, RoundTrip,
    Setting, TcpOutcome, Topic,
};
use super::properties::{parse_properties, scrub, scrub_json};
use super::report::{CheckName, Item, Report, Status, Verdict};

fn broker(id: i32) -> Broker {
    Broker {
        id,
        host: "127.0.0.1".into(),
        port: 9000 + id as u16,
    }
}

fn healthy_probe(id: i32) -> BrokerProbe {
    BrokerProbe {
        broker: broker(id),
        tcp: TcpOutcome::Connected { millis: 0.2 },
        round_trip: RoundTrip::ApiVersions {
            millis: 0.5,
            api_count: 60,
            describe_configs: true,
        },
    }
}

/// Partition `id` led by broker `id % 3 + 1`, replicas 1..=rf, ISR the first `isr` replicas.
fn partition(id: i32, rf: i32, isr: i32) -> Partition {
    Partition {
        id,
        leader: Some(id % rf.max(1) + 1),
        replicas: (1..=rf).collect(),
        isr: (1..=isr).collect(),
        error: None,
    }
}

fn setting<T>(value: T, source: &str) -> Option<Setting<T>> {
    Some(Setting {
        value,
        source: source.into(),
    })
}

fn config(min_isr: u32, unclean: bool) -> Lookup<DurabilityConfig> {
    Lookup::Known(DurabilityConfig {
        min_insync_replicas: setting(min_isr, "topic"),
        unclean_leader_election: setting(unclean, "Kafka default"),
        default_replication_factor: setting(3, "broker (server.properties)"),
    })
}

/// A healthy 3-broker cluster with topic `orders` (3 partitions, RF 3, min ISR 2).
fn healthy() -> Facts {
    Facts {
        bootstrap: "127.0.0.1:9001".into(),
        cluster_id: Some("c1".into()),
        brokers: (1..=3).map(broker).collect(),
        controller: Controller::Reported { id: 2 },
        topics: vec![Topic {
            name: "orders".into(),
            error: None,
            partitions: (0..3).map(|p| partition(p, 3, 3)).collect(),
        }],
        missing_topics: Vec::new(),
        topic_configs: BTreeMap::from([("orders".to_string(), config(2, false))]),
        broker_configs: (1..=3).map(|b| (b, config(2, false))).collect(),
        probes: (1..=3).map(healthy_probe).collect(),
        producer_findings: Vec::new(),
        slow_round_trip: Duration::from_secs(1),
    }
}

fn items_of(report: &Report, check: CheckName) -> &[Item] {
    &report.check(check).expect("check present").items
}

/// The one item of `check` whose message contains `needle`.
fn item<'a>(report: &'a Report, check: CheckName, needle: &str) -> &'a Item {
    let found: Vec<&Item> = items_of(report, check)
        .iter()
        .filter(|i| i.message.contains(needle))
        .collect();
    assert_eq!(found.len(), 1, "want one item with {needle:?}: {found:#?}");
    found[0]
}

fn with_topic(mut facts: Facts, partitions: Vec<Partition>, min_isr: u32, unclean: bool) -> Facts {
    facts.topics[0].partitions = partitions;
    facts
        .topic_configs
        .insert("orders".into(), config(min_isr, unclean));
    facts
}
