//! How a record is handed over, and who hears of its delivery on the delivery thread.

use std::time::Instant;

use crate::record::OutRecord;

/// How [`super::Producer::send_with`] hands a record over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendOptions {
    /// A keyless record's failures may be handled by the producer (re-placed on another
    /// partition; resolved by a tail check when its delivery is unknown) rather than reported
    /// at once. A caller that retries and deduplicates by itself (a forwarder) says `false`.
    pub replace: bool,
    /// Tell the producer's [`DeliveryObserver`] of the record's delivery, with this tag.
    pub observe: Option<u32>,
}

impl Default for SendOptions {
    fn default() -> Self {
        SendOptions {
            replace: true,
            observe: None,
        }
    }
}

/// Hears of every delivery of a record sent with [`SendOptions::observe`], on the thread that
/// reports deliveries, *before* the record's [`super::DeliveryFuture`] resolves, and whether
/// or not anyone still waits for it. The sender's thread is then left with only the answer:
/// what every delivery costs (metrics, receipts, the breaker's window) runs beside it.
///
/// It runs inside librdkafka's delivery callback: it must be quick and must not block on the
/// producer (no cut, no send, no flush).
pub trait DeliveryObserver: Send + Sync {
    /// `record` was acknowledged at `partition`/`offset`; it was last handed over at `sent_at`.
    fn delivered(
        &self,
        tag: u32,
        record: &OutRecord,
        partition: i32,
        offset: Option<i64>,
        sent_at: Instant,
    );
}
