//! Receipts: the fate of recently accepted records, by id, with waiters.
//!
//! Bounded: the oldest entries are forgotten past `capacity` (then `Unknown`). Kept in memory
//! only, so a restart forgets them (the records themselves are safe in the spool).
//!
//! Every accepted record is set here twice (pending, then final), so this is on the hot path of
//! every mode. This boot's ids are sequential, so their receipts live in a ring indexed by
//! sequence: slot `seq % capacity`, no hashing, and the slots written together sit together in
//! memory. A newer sequence overwrites an older one in its slot, which is how the oldest are
//! forgotten; a receipt older than the one in its slot is already forgotten and is not stored.
//! Records of earlier boots (delivered after a restart) are few and go to a small map with the
//! same bound, forgotten in insertion order.

use std::collections::VecDeque;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::api::ReceiptStatus;
use crate::health::FastMap;
use crate::record::SpillwayId;

#[derive(Debug)]
struct Slot {
    seq: u64,
    status: ReceiptStatus,
}

#[derive(Debug, Default)]
struct Inner {
    /// This boot's receipts; grows up to `capacity` slots.
    ring: Vec<Slot>,
    /// Receipts of other boots (and instances), with their insertion order.
    others: FastMap<SpillwayId, ReceiptStatus>,
    order: VecDeque<SpillwayId>,
    waiters: FastMap<SpillwayId, Vec<oneshot::Sender<ReceiptStatus>>>,
}

/// The receipt store.
#[derive(Debug)]
pub struct Receipts {
    capacity: usize,
    /// The instance and boot whose sequential ids go to the ring.
    instance: u64,
    boot: u32,
    inner: Mutex<Inner>,
}

impl Receipts {
    /// A store for the `capacity` most recent receipts, for ids made by `instance` in `boot`
    /// (others are kept too, in a slower map).
    pub fn new(capacity: usize, instance: u64, boot: u32) -> Self {
        Self {
            capacity: capacity.max(1),
            instance,
            boot,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn is_own(&self, id: &SpillwayId) -> bool {
        id.instance == self.instance && id.boot == self.boot
    }

    fn slot_of(&self, seq: u64) -> usize {
        // The remainder is below `capacity`, a usize.
        (seq % self.capacity as u64) as usize
    }

    /// Records `status` for `id`; wakes waiters when it is final.
    pub fn set(&self, id: &SpillwayId, status: ReceiptStatus) {
        let mut inner = self.inner.lock();
        let is_final = !matches!(status, ReceiptStatus::Pending { .. });
        // Waiters get copies; the store keeps the status itself.
        if is_final && !inner.waiters.is_empty() {
            for w in inner.waiters.remove(id).unwrap_or_default() {
                let _ = w.send(status.clone());
            }
        }
        if self.is_own(id) {
            self.set_own(&mut inner, id.seq, status);
        } else {
            self.set_other(&mut inner, id, status);
        }
    }

    /// Stores an own receipt in its slot, unless it is older than the slot's (forgotten).
    fn set_own(&self, inner: &mut Inner, seq: u64, status: ReceiptStatus) {
        let at = self.slot_of(seq);
        if at >= inner.ring.len() {
            // Sequences arrive nearly in order, and some never get a receipt (shed records):
            // fill the gap with slots that hold nothing yet.
            inner.ring.resize_with(at + 1, || Slot {
                seq: u64::MAX,
                status: ReceiptStatus::Unknown,
            });
        }
        let slot = &mut inner.ring[at];
        let empty = slot.seq == u64::MAX;
        if !empty && slot.seq > seq {
            return;
        }
        let evicted = (!empty && slot.seq != seq).then_some(slot.seq);
        slot.seq = seq;
        slot.status = status;
        if let Some(old) = evicted
            && !inner.waiters.is_empty()
        {
            // Its waiters hear "unknown" (their channel closes) rather than staying here for good.
            inner.waiters.remove(&self.own_id(old));
        }
    }

    fn set_other(&self, inner: &mut Inner, id: &SpillwayId, status: ReceiptStatus) {
        if inner.others.insert(id.clone(), status).is_none() {
            inner.order.push_back(id.clone());
            while inner.order.len() > self.capacity {
                if let Some(old) = inner.order.pop_front() {
                    inner.others.remove(&old);
                    inner.waiters.remove(&old);
                }
            }
        }
    }

    fn own_id(&self, seq: u64) -> SpillwayId {
        SpillwayId {
            instance: self.instance,
            boot: self.boot,
            seq,
        }
    }

    fn lookup(&self, inner: &Inner, id: &SpillwayId) -> Option<ReceiptStatus> {
        if self.is_own(id) {
            inner
                .ring
                .get(self.slot_of(id.seq))
                .filter(|slot| slot.seq == id.seq)
                .map(|slot| slot.status.clone())
        } else {
            inner.others.get(id).cloned()
        }
    }

    /// The status of `id`.
    pub fn get(&self, id: &SpillwayId) -> ReceiptStatus {
        let inner = self.inner.lock();
        self.lookup(&inner, id).unwrap_or(ReceiptStatus::Unknown)
    }

    /// Resolves once `id` is final (or immediately if it is, or is unknown).
    pub fn wait(&self, id: &SpillwayId) -> oneshot::Receiver<ReceiptStatus> {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.inner.lock();
        match self.lookup(&inner, id) {
            Some(ReceiptStatus::Pending { .. }) => {
                inner.waiters.entry(id.clone()).or_default().push(tx)
            }
            Some(s) => {
                let _ = tx.send(s);
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
        let r = Receipts::new(10, 1, 1);
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
        let r = Receipts::new(1, 1, 1);
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
        let r = Receipts::new(2, 1, 1);
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

    fn pending() -> ReceiptStatus {
        ReceiptStatus::Pending {
            topic: "t".into(),
            partition: None,
        }
    }

    fn delivered(offset: i64) -> ReceiptStatus {
        ReceiptStatus::Delivered {
            topic: "t".into(),
            partition: 0,
            offset: Some(offset),
        }
    }

    #[test]
    fn a_late_receipt_older_than_the_window_does_not_evict_a_newer_one() {
        let r = Receipts::new(2, 1, 1);
        r.set(&id(0), pending());
        r.set(&id(2), pending());
        r.set(&id(0), delivered(0));
        assert_eq!(r.get(&id(0)), ReceiptStatus::Unknown);
        assert_eq!(r.get(&id(2)), pending());
    }

    #[test]
    fn sequences_without_a_receipt_leave_nothing_behind() {
        let r = Receipts::new(100, 1, 1);
        r.set(&id(7), pending());
        for seq in 0..7 {
            assert_eq!(r.get(&id(seq)), ReceiptStatus::Unknown);
        }
        r.set(&id(7), delivered(3));
        assert_eq!(r.get(&id(7)), delivered(3));
    }

    #[test]
    fn receipts_of_an_earlier_boot_are_kept_beside_this_boots() {
        let r = Receipts::new(2, 1, 2);
        let old = |seq| SpillwayId {
            instance: 1,
            boot: 1,
            seq,
        };
        r.set(&old(0), delivered(1));
        r.set(&id2(0), pending());
        assert_eq!(r.get(&old(0)), delivered(1));
        assert_eq!(r.get(&id2(0)), pending());
        for seq in 1..3 {
            r.set(&old(seq), delivered(2));
        }
        assert_eq!(r.get(&old(0)), ReceiptStatus::Unknown, "bounded too");
        assert_eq!(r.get(&id2(0)), pending());
    }

    fn id2(seq: u64) -> SpillwayId {
        SpillwayId {
            instance: 1,
            boot: 2,
            seq,
        }
    }
}
