//! The library's configuration: one serde structure, read from the `[library]` table of
//! `spillway.toml` (or built in code). Every field has a default; see each field.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::breaker::BreakerConfig;
use crate::config::KafkaSettings;
use crate::health::HealthConfig;
use crate::route::Route;

/// How the spool makes appends durable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fsync {
    /// fdatasync before an append is acknowledged, shared by concurrent appends (G1(b)).
    #[default]
    Always,
    /// fdatasync every `fsync_interval`: an acknowledged record can be lost with the machine
    /// (not with the process) within that interval.
    Interval,
    /// Never fsync (tests, benchmarks): acknowledged records can be lost with the machine.
    Never,
}

/// Spool settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpoolSettings {
    /// The spool directory (also holds the instance identity and the dead-letter log).
    pub dir: PathBuf,
    /// Disk bytes the spool may use.
    pub capacity_bytes: u64,
    /// Segment size.
    pub segment_bytes: u64,
    pub fsync: Fsync,
    #[serde(with = "humantime_serde")]
    pub fsync_interval: Duration,
    /// Share of capacity above which the instance is degraded (shedding below the threshold).
    pub high_watermark: f64,
}

impl Default for SpoolSettings {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("spillway-spool"),
            capacity_bytes: 10 << 30,
            segment_bytes: 64 << 20,
            fsync: Fsync::Always,
            fsync_interval: Duration::from_millis(10),
            high_watermark: 0.8,
        }
    }
}

/// Breaker settings (one breaker per route, all alike).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerSettings {
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    pub min_outcomes: usize,
    pub error_rate: f64,
    #[serde(with = "humantime_serde")]
    pub max_stall: Duration,
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        let d = BreakerConfig::default();
        Self {
            window: d.window,
            min_outcomes: d.min_outcomes,
            error_rate: d.error_rate,
            max_stall: d.max_stall,
            cooldown: d.cooldown,
        }
    }
}

impl BreakerSettings {
    pub fn config(&self) -> BreakerConfig {
        BreakerConfig {
            window: self.window,
            min_outcomes: self.min_outcomes,
            error_rate: self.error_rate,
            max_stall: self.max_stall,
            cooldown: self.cooldown,
        }
    }
}

/// Partition-health settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthSettings {
    #[serde(with = "humantime_serde")]
    pub stall_after: Duration,
    #[serde(with = "humantime_serde")]
    pub stall_while_answering: Duration,
    #[serde(with = "humantime_serde")]
    pub min_unhealthy: Duration,
    pub recover_after: u32,
    #[serde(with = "humantime_serde")]
    pub session_grace: Duration,
    #[serde(with = "humantime_serde")]
    pub probe_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub probe_timeout: Duration,
}

impl Default for HealthSettings {
    fn default() -> Self {
        let d = HealthConfig::default();
        Self {
            stall_after: d.stall_after,
            stall_while_answering: d.stall_while_answering,
            min_unhealthy: d.min_unhealthy,
            recover_after: d.recover_after,
            session_grace: d.session_grace,
            probe_interval: Duration::from_millis(500),
            probe_timeout: Duration::from_secs(1),
        }
    }
}

impl HealthSettings {
    pub fn config(&self) -> HealthConfig {
        HealthConfig {
            stall_after: self.stall_after,
            stall_while_answering: self.stall_while_answering,
            min_unhealthy: self.min_unhealthy,
            recover_after: self.recover_after,
            session_grace: self.session_grace,
        }
    }
}

/// Canary settings (half-open breakers probe with it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CanarySettings {
    pub topic: String,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for CanarySettings {
    fn default() -> Self {
        Self {
            topic: "__spillway_canary".into(),
            timeout: Duration::from_secs(5),
        }
    }
}

/// Drain settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DrainSettings {
    /// Records per second all forwarders may send together; `None`: unlimited.
    pub rate: Option<u32>,
    /// Records one forwarder keeps in flight (sent, not answered). It tops the flight up each
    /// time half of it is answered, reading at most 8 MiB of new records at a time.
    pub window: usize,
    /// A tail check waits until the partition has been reachable this long.
    #[serde(with = "humantime_serde")]
    pub settle: Duration,
    /// Most records one tail check may scan.
    pub max_tail_scan: i64,
    /// Check partition tails before sending records that may already be in Kafka (G4). Only
    /// ever turned off to prove that the chaos oracle catches the duplicates that follow.
    pub dedup: bool,
}

impl Default for DrainSettings {
    fn default() -> Self {
        Self {
            rate: None,
            window: 20_000,
            settle: Duration::from_secs(2),
            max_tail_scan: 1_000_000,
            dedup: true,
        }
    }
}

/// Everything the library needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpillwayConfig {
    pub kafka: KafkaSettings,
    pub spool: SpoolSettings,
    /// Routes, first match wins.
    pub routes: Vec<Route>,
    /// The route of topics no route matches.
    pub default_route: Route,
    /// Topics known without asking the cluster (accepted during an outage that began before
    /// they were first seen), with their partition count when keyed records must be placed.
    pub topics: Vec<TopicSettings>,
    pub breaker: BreakerSettings,
    pub health: HealthSettings,
    pub canary: CanarySettings,
    pub drain: DrainSettings,
    /// Also produce dead letters to this topic.
    pub dead_letter_topic: Option<String>,
    /// Recent receipts kept for lookups.
    pub receipts: usize,
    /// Bytes of records in flight to Kafka at most (bounded memory, G5).
    pub max_in_flight_bytes: usize,
}

/// A topic declared in the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSettings {
    pub name: String,
    pub partitions: Option<i32>,
}

impl Default for SpillwayConfig {
    fn default() -> Self {
        Self {
            kafka: KafkaSettings::default(),
            spool: SpoolSettings::default(),
            routes: Vec::new(),
            default_route: Route::default(),
            topics: Vec::new(),
            breaker: BreakerSettings::default(),
            health: HealthSettings::default(),
            canary: CanarySettings::default(),
            drain: DrainSettings::default(),
            dead_letter_topic: None,
            receipts: 100_000,
            max_in_flight_bytes: 256 << 20,
        }
    }
}

impl SpillwayConfig {
    /// A configuration for `bootstrap` with its spool in `dir`, every other setting default.
    pub fn new(bootstrap: impl Into<String>, dir: impl Into<PathBuf>) -> Self {
        let mut c = Self::default();
        c.kafka.bootstrap_servers = bootstrap.into();
        c.spool.dir = dir.into();
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_toml_table_gives_the_defaults() {
        let c: SpillwayConfig = toml::from_str(
            "[kafka]\nbootstrap_servers = 'k:9092'\n[spool]\ndir = '/var/lib/spillway'\n",
        )
        .unwrap();
        assert_eq!(c.spool.fsync, Fsync::Always);
        assert_eq!(c.kafka.bootstrap_servers, "k:9092");
        assert_eq!(c.default_route.mode, crate::route::Mode::Failover);
    }

    #[test]
    fn routes_and_durations_read_from_toml() {
        let c: SpillwayConfig = toml::from_str(
            "[[routes]]\ntopic = 'payments'\nmode = 'spool_first'\n[breaker]\ncooldown = '5s'\n[drain]\nrate = 1000\n",
        )
        .unwrap();
        assert_eq!(c.routes[0].mode, crate::route::Mode::SpoolFirst);
        assert_eq!(c.breaker.cooldown, Duration::from_secs(5));
        assert_eq!(c.drain.rate, Some(1000));
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<SpillwayConfig>("[spool]\ndri = 'x'\n").is_err());
    }
}

#[cfg(test)]
mod example {
    use super::*;

    #[test]
    fn the_example_configuration_s_library_section_is_valid() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/spillway.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let file: toml::Table = toml::from_str(&text).unwrap();
        let library = file["library"].clone();
        let c: SpillwayConfig = library.try_into().unwrap();
        assert_eq!(c.kafka.bootstrap_servers, "localhost:9092");
        assert_eq!(c.routes.len(), 2);
        let d = SpillwayConfig::default();
        assert_eq!(c.breaker, d.breaker);
        assert_eq!(c.health, d.health);
        assert_eq!(c.drain, d.drain);
        assert_eq!(c.canary, d.canary);
        assert_eq!(c.default_route, d.default_route);
        assert_eq!(
            (c.spool.capacity_bytes, c.spool.fsync),
            (d.spool.capacity_bytes, d.spool.fsync)
        );
        assert!(c.kafka.lint().is_empty());
    }
}
