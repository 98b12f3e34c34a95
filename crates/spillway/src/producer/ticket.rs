//! A record's ticket: where its one report goes, shared by the record inside the producer
//! ([`Reply`], in its `Pending`) and the caller waiting for it ([`Waiter`], in its
//! [`super::DeliveryFuture`]).
//!
//! It replaces a `tokio::sync::oneshot` channel plus a separate `Arc<AtomicBool>` for the
//! "in librdkafka" flag: one allocation per record instead of two, and the flag on the same
//! cache line as the slot. Each of those allocations is freed on another thread than the one
//! that made it, which at hundreds of thousands of records per second contends on the
//! allocator's locks.
//!
//! The ticket also carries the record across librdkafka: while librdkafka holds it, the
//! `Pending` record is parked in its own ticket, and librdkafka's per-message opaque is a
//! reference to the ticket (a reference count, where a `Box<Pending>` was one more allocation
//! per record, made by the caller's thread and freed by the poll thread).
//!
//! Protocol:
//! - The producer side reports at most once ([`Reply::send`]). If it is dropped without
//!   reporting (only when the producer is torn down mid-flight), the waiting side reads `None`
//!   and must not claim delivery.
//! - The waiting side is either a task (its waker is kept in the slot and woken) or a blocked
//!   thread (woken through the condvar). A report is taken once; asking again panics, like
//!   polling a finished future.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use parking_lot::{Condvar, Mutex};

use super::outcome::Delivery;
use super::session::Pending;

enum Slot {
    /// No report yet; the waker of the task waiting for it, if any.
    Waiting(Option<Waker>),
    Ready(Delivery),
    /// The producer side went away without reporting.
    Lost,
    /// The report was handed to the waiting side.
    Taken,
}

pub(crate) struct Ticket {
    in_librdkafka: AtomicBool,
    slot: Mutex<Slot>,
    done: Condvar,
    /// The record while librdkafka holds it (see the module docs). It holds this ticket's
    /// `Reply`, a cycle that lasts only until it is taken out again.
    parked: Mutex<Option<Pending>>,
}

/// librdkafka's opaque for a record in flight: its ticket, with the record parked in it.
pub(crate) type InFlight = Arc<Ticket>;

/// The producer's end of a ticket.
pub(crate) struct Reply(Option<Arc<Ticket>>);

/// The caller's end of a ticket.
pub(crate) struct Waiter(Arc<Ticket>);

/// A fresh ticket: the record is not in librdkafka yet.
pub(crate) fn ticket() -> (Reply, Waiter) {
    let t = Arc::new(Ticket {
        in_librdkafka: AtomicBool::new(false),
        slot: Mutex::new(Slot::Waiting(None)),
        done: Condvar::new(),
        parked: Mutex::new(None),
    });
    (Reply(Some(t.clone())), Waiter(t))
}

/// Parks `pending` in its own ticket for the hand-over to librdkafka.
pub(crate) fn park(pending: Pending) -> InFlight {
    let t = pending
        .reply
        .0
        .clone()
        .expect("an unsent reply has its ticket");
    *t.parked.lock() = Some(pending);
    t
}

impl Ticket {
    /// Takes the parked record back (at its report, or when librdkafka refused it).
    pub(crate) fn unpark(&self) -> Option<Pending> {
        self.parked.lock().take()
    }

    fn complete(&self, end: Slot) {
        let before = std::mem::replace(&mut *self.slot.lock(), end);
        if let Slot::Waiting(Some(waker)) = before {
            waker.wake();
        }
        // Cheap when no thread waits (one atomic load). A thread that found the slot waiting
        // registered before releasing the lock we took above, so it cannot miss this.
        self.done.notify_one();
    }
}

impl Reply {
    /// Whether the record is in librdkafka now (see `DeliveryFuture::in_librdkafka`).
    pub(crate) fn set_in_librdkafka(&self, yes: bool) {
        if let Some(t) = &self.0 {
            t.in_librdkafka.store(yes, Ordering::Release);
        }
    }

    /// Whether `waiter` is the other end of this ticket.
    pub(crate) fn is_for(&self, waiter: &Waiter) -> bool {
        self.0.as_ref().is_some_and(|t| Arc::ptr_eq(t, &waiter.0))
    }

    /// Hands the report to whoever waits (or will wait) for it.
    pub(crate) fn send(mut self, delivery: Delivery) {
        if let Some(t) = self.0.take() {
            t.complete(Slot::Ready(delivery));
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            t.complete(Slot::Lost);
        }
    }
}

impl Waiter {
    pub(crate) fn in_librdkafka(&self) -> bool {
        self.0.in_librdkafka.load(Ordering::Acquire)
    }

    /// The report if there is one (`Some(None)`: lost), else keeps `cx`'s waker.
    pub(crate) fn poll(&self, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        let mut slot = self.0.slot.lock();
        if let Slot::Waiting(waker) = &mut *slot {
            match waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *waker = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
        Poll::Ready(take(&mut slot))
    }

    /// Blocks the calling thread until the report (`None`: lost).
    pub(crate) fn wait(&self) -> Option<Delivery> {
        let mut slot = self.0.slot.lock();
        while matches!(*slot, Slot::Waiting(_)) {
            self.0.done.wait(&mut slot);
        }
        take(&mut slot)
    }
}

fn take(slot: &mut Slot) -> Option<Delivery> {
    match std::mem::replace(slot, Slot::Taken) {
        Slot::Ready(d) => Some(d),
        Slot::Lost => None,
        Slot::Taken => panic!("a delivery report is taken once"),
        Slot::Waiting(_) => unreachable!("taken only once completed"),
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Reply")
    }
}

impl fmt::Debug for Waiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiter")
            .field("in_librdkafka", &self.in_librdkafka())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
