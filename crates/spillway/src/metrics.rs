//! Prometheus metrics of the library (DESIGN G6: every shed, drop, dead letter, fsync, breaker
//! transition and failover is counted). Names follow Prometheus conventions and match the
//! dashboard and alert rules in `deploy/`. Counters get their `_total` suffix from the encoder.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use std::sync::{Arc, OnceLock};

use parking_lot::RwLock;

use crate::health::FastMap;

type Labels = Vec<(&'static str, String)>;

/// What became of a record, as the `outcome` label of `spillway_records`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    Delivered,
    Spooled,
    Shed,
    Rejected,
    DeadLettered,
    Dropped,
}

impl Counted {
    /// How many outcomes there are (`Dropped` is the last).
    const KINDS: usize = Counted::Dropped as usize + 1;

    pub fn as_str(self) -> &'static str {
        match self {
            Counted::Delivered => "delivered",
            Counted::Spooled => "spooled",
            Counted::Shed => "shed",
            Counted::Rejected => "rejected",
            Counted::DeadLettered => "dead_lettered",
            Counted::Dropped => "dropped",
        }
    }
}

/// A topic's per-record counters, taken out of their families once: counting a record is then
/// one map lookup by `&str` and an atomic add, where `Family::get_or_create` would build a label
/// set (a vector and two strings) and hash it for every record. Each series is still created on
/// its first use, as before, so an outcome that never happened is not exported.
#[derive(Debug, Default)]
struct TopicCounters {
    outcomes: [OnceLock<Counter>; Counted::KINDS],
    deliveries: OnceLock<Counter>,
}

fn fsync_histogram() -> Histogram {
    // 50 µs .. ~1.6 s
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// Every metric the library exports. Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct Metrics {
    pub records: Family<Labels, Counter>,
    pub deliveries: Family<Labels, Counter>,
    pub delivery_errors: Family<Labels, Counter>,
    pub spool_records: Family<Labels, Gauge>,
    pub spool_bytes: Gauge,
    pub spool_capacity_bytes: Gauge,
    pub spool_oldest_age: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub spool_fsync: Histogram,
    pub breaker_state: Family<Labels, Gauge>,
    pub breaker_transitions: Family<Labels, Counter>,
    pub sheds: Family<Labels, Counter>,
    pub dead_letters: Family<Labels, Counter>,
    pub failovers: Family<Labels, Counter>,
    pub partition_healthy: Family<Labels, Gauge>,
    pub broker_reachable: Family<Labels, Gauge>,
    pub inflight_bytes: Gauge,
    pub order_breaks: Counter,
    pub dedup_found: Counter,
    pub tail_partial: Counter,
    by_topic: Arc<RwLock<FastMap<Box<str>, TopicCounters>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            records: Family::default(),
            deliveries: Family::default(),
            delivery_errors: Family::default(),
            spool_records: Family::default(),
            spool_bytes: Gauge::default(),
            spool_capacity_bytes: Gauge::default(),
            spool_oldest_age: Family::default(),
            spool_fsync: fsync_histogram(),
            breaker_state: Family::default(),
            breaker_transitions: Family::default(),
            sheds: Family::default(),
            dead_letters: Family::default(),
            failovers: Family::default(),
            partition_healthy: Family::default(),
            broker_reachable: Family::default(),
            inflight_bytes: Gauge::default(),
            order_breaks: Counter::default(),
            dedup_found: Counter::default(),
            tail_partial: Counter::default(),
            by_topic: Arc::default(),
        }
    }
}

impl Metrics {
    /// Adds every metric to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry;
        r.register(
            "spillway_records",
            "Records by outcome (delivered, spooled, shed, rejected, dead_lettered, dropped)",
            self.records.clone(),
        );
        r.register(
            "spillway_deliveries",
            "Records Kafka acknowledged",
            self.deliveries.clone(),
        );
        r.register(
            "spillway_delivery_errors",
            "Delivery failures by error class and code",
            self.delivery_errors.clone(),
        );
        r.register(
            "spillway_spool_records",
            "Records in the spool not yet delivered, per stream",
            self.spool_records.clone(),
        );
        r.register(
            "spillway_spool_bytes",
            "Bytes of spool segment files",
            self.spool_bytes.clone(),
        );
        r.register(
            "spillway_spool_capacity_bytes",
            "Configured spool capacity",
            self.spool_capacity_bytes.clone(),
        );
        r.register(
            "spillway_spool_oldest_record_age_seconds",
            "Age of the oldest undelivered record, per stream",
            self.spool_oldest_age.clone(),
        );
        r.register(
            "spillway_spool_fsync_duration_seconds",
            "Time of the spool's group-commit syncs",
            self.spool_fsync.clone(),
        );
        r.register(
            "spillway_breaker_state",
            "Breaker state per route: 0 closed, 1 half-open, 2 open",
            self.breaker_state.clone(),
        );
        r.register(
            "spillway_breaker_transitions",
            "Breaker transitions per route and target state",
            self.breaker_transitions.clone(),
        );
        r.register(
            "spillway_sheds",
            "Records shed by priority and reason",
            self.sheds.clone(),
        );
        r.register(
            "spillway_dead_letters",
            "Records dead-lettered, by reason",
            self.dead_letters.clone(),
        );
        r.register(
            "spillway_failovers",
            "Partition and breaker failovers",
            self.failovers.clone(),
        );
        r.register(
            "spillway_partition_healthy",
            "1 when the partition's leader is reachable from here",
            self.partition_healthy.clone(),
        );
        r.register(
            "spillway_kafka_broker_reachable",
            "1 when the broker is reachable from here",
            self.broker_reachable.clone(),
        );
        r.register(
            "spillway_inflight_bytes",
            "Bytes of records handed to Kafka and not yet reported",
            self.inflight_bytes.clone(),
        );
        r.register(
            "spillway_order_breaks",
            "Records acknowledged by Kafka after an earlier record of their partition failed",
            self.order_breaks.clone(),
        );
        r.register(
            "spillway_dedup_found",
            "Records found already in Kafka by a tail check (not sent again)",
            self.dedup_found.clone(),
        );
        r.register(
            "spillway_tail_checks_partial",
            "Tail checks that read only part of their range (longer than drain.max_tail_scan); \
             records not found are sent again and may be duplicated",
            self.tail_partial.clone(),
        );
    }

    /// Counts one record of `topic` with `outcome`.
    pub fn record(&self, topic: &str, outcome: Counted) {
        self.with_topic(topic, |counters| {
            self.outcome(counters, topic, outcome).inc();
        });
    }

    /// Counts one record of `topic` that Kafka acknowledged (both its outcome and the
    /// deliveries counter).
    pub fn delivered(&self, topic: &str) {
        self.with_topic(topic, |counters| {
            self.outcome(counters, topic, Counted::Delivered).inc();
            counters
                .deliveries
                .get_or_init(|| {
                    self.deliveries
                        .get_or_create(&vec![("topic", topic.to_string())])
                        .clone()
                })
                .inc();
        });
    }

    fn outcome<'a>(
        &self,
        counters: &'a TopicCounters,
        topic: &str,
        outcome: Counted,
    ) -> &'a Counter {
        counters.outcomes[outcome as usize].get_or_init(|| {
            self.records
                .get_or_create(&vec![
                    ("topic", topic.to_string()),
                    ("outcome", outcome.as_str().to_string()),
                ])
                .clone()
        })
    }

    /// Runs `f` on the counters of `topic`, under the map's read lock once they exist.
    fn with_topic(&self, topic: &str, f: impl FnOnce(&TopicCounters)) {
        if let Some(c) = self.by_topic.read().get(topic) {
            return f(c);
        }
        f(self.by_topic.write().entry(topic.into()).or_default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exported(metrics: &Metrics) -> String {
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        text
    }

    #[test]
    fn records_are_counted_per_topic_and_outcome_and_deliveries_beside_them() {
        let m = Metrics::default();
        m.record("a", Counted::Spooled);
        m.record("a", Counted::Spooled);
        m.delivered("a");
        m.record("b", Counted::Shed);
        let clone = m.clone();
        clone.delivered("a");
        let text = exported(&m);
        for line in [
            "spillway_records_total{topic=\"a\",outcome=\"spooled\"} 2",
            "spillway_records_total{topic=\"a\",outcome=\"delivered\"} 2",
            "spillway_deliveries_total{topic=\"a\"} 2",
            "spillway_records_total{topic=\"b\",outcome=\"shed\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }

    #[test]
    fn an_outcome_that_never_happened_is_not_exported() {
        let m = Metrics::default();
        m.record("a", Counted::Spooled);
        let text = exported(&m);
        assert!(!text.contains("outcome=\"dropped\""), "{text}");
        assert!(!text.contains("spillway_deliveries_total{"), "{text}");
    }
}
