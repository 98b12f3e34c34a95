//! What the doctor learned from the cluster, before judging it. Gathering fills these in
//! (`gather`, `probe`); evaluation (`evaluate`, `durability`) reads them and nothing else, so the
//! judgement is tested on hand-made facts.
//!
//! Everything that can fail to be learned is a [`Lookup`]: either the value, or the reason we do
//! not know it. Evaluation turns an unknown into an "unknown" item, never into a guess.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use spillway::Finding;

/// A value we learned, or why we could not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "state", content = "value")]
pub enum Lookup<T> {
    Known(T),
    Unknown(String),
}

impl<T> Lookup<T> {
    pub fn known(&self) -> Option<&T> {
        match self {
            Lookup::Known(v) => Some(v),
            Lookup::Unknown(_) => None,
        }
    }
}

/// A broker as the metadata lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Broker {
    pub id: i32,
    pub host: String,
    pub port: u16,
}

impl Broker {
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    pub fn label(&self) -> String {
        format!("broker {} ({})", self.id, self.address())
    }
}

/// One partition as the metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub id: i32,
    /// `None` when the metadata names no leader (-1).
    pub leader: Option<i32>,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// The partition-level error the metadata carried, if any (e.g. `LEADER_NOT_AVAILABLE`).
    pub error: Option<String>,
}

/// One topic as the metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    pub name: String,
    /// The topic-level error the metadata carried, if any.
    pub error: Option<String>,
    pub partitions: Vec<Partition>,
}

/// A configuration value and where the broker said it came from (`topic`, `broker default`...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Setting<T> {
    pub value: T,
    pub source: String,
}

/// The durability-relevant part of a topic's or broker's configuration. A `None` field means the
/// broker answered but did not include that entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DurabilityConfig {
    pub min_insync_replicas: Option<Setting<u32>>,
    pub unclean_leader_election: Option<Setting<bool>>,
    /// Only meaningful for brokers (`default.replication.factor`).
    pub default_replication_factor: Option<Setting<u32>>,
}

/// What the metadata names as controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Controller {
    /// The Metadata response's `controller_id`. -1 means the cluster has no active controller.
    Reported { id: i32 },
    /// We could not ask (see the reason).
    Unknown { reason: String },
}

/// How a TCP connect to a broker went.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum TcpOutcome {
    Connected { millis: f64 },
    Failed { error: String },
    TimedOut { after_millis: u64 },
}

/// How a Kafka request/response round trip to a broker went.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum RoundTrip {
    /// ApiVersions answered. `describe_configs` says whether the broker offers DescribeConfigs.
    ApiVersions {
        millis: f64,
        api_count: usize,
        describe_configs: bool,
    },
    /// A librdkafka Metadata request through this broker alone succeeded (used on TLS/SASL
    /// listeners, where our plaintext ApiVersions probe cannot speak).
    Metadata {
        millis: f64,
    },
    Failed {
        error: String,
    },
    TimedOut {
        after_millis: u64,
    },
    /// Not attempted (for example because TCP failed).
    Skipped {
        reason: String,
    },
}

/// Reachability of one listed broker from this host.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BrokerProbe {
    pub broker: Broker,
    pub tcp: TcpOutcome,
    pub round_trip: RoundTrip,
}

/// Everything the doctor learned, ready for evaluation.
#[derive(Debug, Clone)]
pub struct Facts {
    pub bootstrap: String,
    pub cluster_id: Option<String>,
    pub brokers: Vec<Broker>,
    pub controller: Controller,
    /// The topics to judge, in name order (the ones asked for, or all non-internal ones).
    pub topics: Vec<Topic>,
    /// Topics asked for with `--topic` that the metadata does not list.
    pub missing_topics: Vec<String>,
    pub topic_configs: BTreeMap<String, Lookup<DurabilityConfig>>,
    pub broker_configs: BTreeMap<i32, Lookup<DurabilityConfig>>,
    pub probes: Vec<BrokerProbe>,
    pub producer_findings: Vec<Finding>,
    /// A round trip slower than this is a warning.
    pub slow_round_trip: Duration,
}
