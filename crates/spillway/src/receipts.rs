//! Receipts: the fate of recently accepted records, by id, with waiters.
//!
//! Bounded: the oldest entries are forgotten past `capacity` (then `Unknown`). Kept in memory
//! only, so a restart forgets them (the records themselves are safe in the spool).

use std::collections::{HashMap, VecDeque};

use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::api::ReceiptStatus;
use crate::record::SpillwayId;

#[derive(Debug, Default)]
struct Inner {
    status: HashMap<SpillwayId, ReceiptStatus>,
    order: VecDeque<SpillwayId>,
    waiters: HashMap<SpillwayId, Vec<oneshot::Sender<ReceiptStatus>>>,
}

/// The receipt store.
#[derive(Debug)]
pub struct Receipts {
    capacity: usize,
    inner: Mutex<Inner>,
}

impl Receipts {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Records `status` for `id`; wakes waiters when it is final.
    pub fn set(&self, id: &SpillwayId, status: ReceiptStatus) {
        let mut inner = self.inner.lock();
        if !inner.status.contains_key(id) {
            inner.order.push_back(id.clone());
            while inner.order.len() > self.capacity {
                if let Some(old) = inner.order.pop_front() {
                    inner.status.remove(&old);
                    // Its waiters hear "unknown" (their channel closes) rather than staying
                    // here for good.
                    inner.waiters.remove(&old);
                }
            }
        }
        let is_final = !matches!(status, ReceiptStatus::Pending { .. });
        if is_final {
            for w in inner.waiters.remove(id).unwrap_or_default() {
                let _ = w.send(status.clone());
            }
        }
        inner.status.insert(id.clone(), status);
    }

    /// The status of `id`.
    pub fn get(&self, id: &SpillwayId) -> ReceiptStatus {
        self.inner
            .lock()
            .status
            .get(id)
            .cloned()
            .unwrap_or(ReceiptStatus::Unknown)
    }

    /// Resolves once `id` is final (or immediately if it is, or is unknown).
    pub fn wait(&self, id: &SpillwayId) -> oneshot::Receiver<ReceiptStatus> {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.inner.lock();
        match inner.status.get(id) {
            Some(ReceiptStatus::Pending { .. }) => {
                inner.waiters.entry(id.clone()).or_default().push(tx)
            }
            Some(s) => {
                let _ = tx.send(s.clone());
            }
            None => {
                let _ = tx.send(ReceiptStatus::Unknown);
            }
        }
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(seq: u64) -> SpillwayId {
        SpillwayId {
            instance: 1,
            boot: 1,
            seq,
        }
    }

    #[tokio::test]
    async fn a_waiter_hears_the_final_status() {
        let r = Receipts::new(10);
        r.set(
            &id(1),
            ReceiptStatus::Pending {
                topic: "t".into(),
                partition: None,
            },
        );
        let w = r.wait(&id(1));
        let done = ReceiptStatus::Delivered {
            topic: "t".into(),
            partition: 0,
            offset: Some(5),
        };
        r.set(&id(1), done.clone());
        assert_eq!(w.await.unwrap(), done);
        assert_eq!(r.get(&id(1)), done);
    }

    #[tokio::test]
    async fn a_waiter_for_a_forgotten_receipt_is_let_go() {
        let r = Receipts::new(1);
        let pending = ReceiptStatus::Pending {
            topic: "t".into(),
            partition: None,
        };
        r.set(&id(1), pending.clone());
        let w = r.wait(&id(1));
        r.set(&id(2), pending);
        assert!(w.await.is_err(), "the waiter is dropped with the receipt");
        assert!(r.inner.lock().waiters.is_empty());
    }

    #[test]
    fn the_oldest_receipts_are_forgotten_past_capacity() {
        let r = Receipts::new(2);
        for s in 0..3 {
            r.set(
                &id(s),
                ReceiptStatus::Pending {
                    topic: "t".into(),
                    partition: None,
                },
            );
        }
        assert_eq!(r.get(&id(0)), ReceiptStatus::Unknown);
        assert!(matches!(r.get(&id(2)), ReceiptStatus::Pending { .. }));
    }
}
