//! Records delivered straight to Kafka (keyless and lane records of `failover` and
//! `spool_on_failure` routes, and `direct` routes): what each delivery costs besides its
//! answer — the topic's counters, the receipt, the route's breaker window — is done on the
//! producer's delivery thread, as the report arrives ([`DeliveryObserver`]), instead of on the
//! thread of whoever awaits the answer. With one task sending, that task was the bottleneck
//! and the delivery thread mostly idle.
//!
//! The observer holds the parts it needs, not the [`Core`]: the last reference to the core
//! (which owns the producer) must never be dropped on the producer's own delivery thread. A
//! breaker transition (rare: an error rate reached) may cut the producer, which must not
//! happen inside a delivery callback either; it is handed to the runtime.

use std::sync::{Arc, Weak};
use std::time::Instant;

use parking_lot::Mutex;

use crate::api::{Accepted, ReceiptStatus};
use crate::breaker::Breaker;
use crate::core::Core;
use crate::metrics::Metrics;
use crate::producer::{DeliveryObserver, SendOptions};
use crate::receipts::Receipts;
use crate::record::OutRecord;

/// How a route's records are sent straight to Kafka: observed, tagged with the route.
pub(crate) fn observed(route: usize) -> SendOptions {
    SendOptions {
        observe: u32::try_from(route).ok(),
        ..SendOptions::default()
    }
}

/// The answer for a record Kafka acknowledged (its delivery was observed already).
pub(crate) fn accepted(record: &OutRecord, partition: i32, offset: Option<i64>) -> Accepted {
    Accepted::Delivered {
        id: record.id.clone(),
        partition,
        offset,
    }
}

/// A record in Kafka: counted on its topic, and its receipt set.
pub(crate) fn count_delivered(
    metrics: &Metrics,
    receipts: &Receipts,
    record: &OutRecord,
    partition: i32,
    offset: Option<i64>,
) {
    metrics.delivered(&record.topic);
    receipts.set(
        &record.id,
        ReceiptStatus::Delivered {
            topic: record.topic.clone(),
            partition,
            offset,
        },
    );
}

/// The producer's observer of direct deliveries; the tag is the route's index.
pub(crate) struct DirectDeliveries {
    metrics: Metrics,
    receipts: Arc<Receipts>,
    breakers: Arc<[Mutex<Breaker>]>,
    core: Weak<Core>,
    runtime: tokio::runtime::Handle,
}

impl DirectDeliveries {
    /// Call from within the runtime that runs `core`.
    pub(crate) fn new(core: &Arc<Core>) -> Self {
        DirectDeliveries {
            metrics: core.metrics.clone(),
            receipts: core.receipts.clone(),
            breakers: core.breakers.clone(),
            core: Arc::downgrade(core),
            runtime: tokio::runtime::Handle::current(),
        }
    }
}

impl DeliveryObserver for DirectDeliveries {
    fn delivered(
        &self,
        tag: u32,
        record: &OutRecord,
        partition: i32,
        offset: Option<i64>,
        sent_at: Instant,
    ) {
        count_delivered(&self.metrics, &self.receipts, record, partition, offset);
        let route = tag as usize;
        let Some(breaker) = self.breakers.get(route) else {
            return;
        };
        let Some(t) = breaker.lock().record(true, sent_at, Instant::now()) else {
            return;
        };
        let core = self.core.clone();
        self.runtime.spawn_blocking(move || {
            if let Some(core) = core.upgrade() {
                core.on_transition(route, &t);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use spillway_test_support::MockKafka;

    use super::*;
    use crate::breaker::BreakerState;
    use crate::{Mode, Record, Route, Spillway, SpillwayConfig};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_delivery_that_tips_the_breaker_open_has_the_transition_carried_out_on_the_runtime() {
        let kafka = MockKafka::new(1).unwrap();
        kafka.create_topic("t", 1).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut c = SpillwayConfig::new(kafka.bootstrap(), dir.path());
        c.default_route = Route::new("*", Mode::Failover);
        c.breaker.min_outcomes = 4;
        c.breaker.error_rate = 0.5;
        let spillway = Spillway::start(c).unwrap();
        // Connected, and one success in the window (observed before the answer).
        let warm = spillway.send(Record::new("t").value("warm")).await;
        assert!(matches!(warm, Ok(Accepted::Delivered { .. })), "{warm:?}");
        let core = spillway.core().clone();
        let now = Instant::now();
        for _ in 0..2 {
            assert!(core.breakers[0].lock().record(false, now, now).is_none());
        }
        let cuts = core.producer.counters().cuts;
        let record = OutRecord::new("t", core.ids.next_id());
        // As the delivery thread would call it: 2 of 4 outcomes failed.
        DirectDeliveries::new(&core).delivered(0, &record, 0, Some(7), now);
        assert_eq!(core.breaker_state(0), BreakerState::Open);
        assert!(
            matches!(
                core.receipts.get(&record.id),
                ReceiptStatus::Delivered {
                    offset: Some(7),
                    ..
                }
            ),
            "the receipt is set before anything else"
        );
        // Opening cuts the producer: done on the runtime, not inside the delivery callback.
        let deadline = Instant::now() + Duration::from_secs(10);
        while core.producer.counters().cuts == cuts && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(core.producer.counters().cuts, cuts + 1);
        spillway.shutdown(Duration::from_secs(5)).await;
    }
}
