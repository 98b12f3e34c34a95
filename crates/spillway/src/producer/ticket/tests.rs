use std::sync::atomic::AtomicUsize;
use std::task::Wake;
use std::time::Duration;

use super::*;
use crate::producer::Outcome;
use crate::record::{OutRecord, SpillwayId};

fn delivery(seq: u64) -> Delivery {
    let id = SpillwayId {
        instance: 1,
        boot: 1,
        seq,
    };
    Delivery {
        record: Arc::new(OutRecord::new("t", id)),
        outcome: Outcome::Delivered {
            partition: 0,
            offset: Some(seq as i64),
        },
        attempts: 1,
        session: 0,
        sent_at: std::time::Instant::now(),
    }
}

/// A waker that counts its wakes.
#[derive(Default)]
struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn offset(d: &Delivery) -> Option<i64> {
    match d.outcome {
        Outcome::Delivered { offset, .. } => offset,
        _ => None,
    }
}

#[test]
fn a_report_sent_before_anyone_waits_is_received() {
    let (reply, waiter) = ticket();
    reply.send(delivery(7));
    assert_eq!(waiter.wait().as_ref().and_then(offset), Some(7));
}

#[test]
fn a_thread_blocked_waiting_is_woken_by_the_report() {
    let (reply, waiter) = ticket();
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        reply.send(delivery(3));
    });
    assert_eq!(waiter.wait().as_ref().and_then(offset), Some(3));
    sender.join().unwrap();
}

#[test]
fn a_task_polling_is_woken_once_by_the_report_and_then_gets_it() {
    let (reply, waiter) = ticket();
    let count = Arc::new(Count::default());
    let waker = Waker::from(count.clone());
    let mut cx = Context::from_waker(&waker);
    assert!(waiter.poll(&mut cx).is_pending());
    assert!(
        waiter.poll(&mut cx).is_pending(),
        "polled twice, one waker kept"
    );
    reply.send(delivery(9));
    assert_eq!(count.0.load(Ordering::SeqCst), 1);
    match waiter.poll(&mut cx) {
        Poll::Ready(d) => assert_eq!(d.as_ref().and_then(offset), Some(9)),
        Poll::Pending => panic!("the report was sent"),
    }
}

#[test]
fn a_reply_dropped_without_a_report_reads_as_lost_and_wakes_the_waiter() {
    let (reply, waiter) = ticket();
    let count = Arc::new(Count::default());
    let waker = Waker::from(count.clone());
    let mut cx = Context::from_waker(&waker);
    assert!(waiter.poll(&mut cx).is_pending());
    drop(reply);
    assert_eq!(count.0.load(Ordering::SeqCst), 1);
    assert!(matches!(waiter.poll(&mut cx), Poll::Ready(None)));

    let (reply, waiter) = ticket();
    let dropper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        drop(reply);
    });
    assert!(
        waiter.wait().is_none(),
        "a blocked thread sees the loss too"
    );
    dropper.join().unwrap();
}

#[test]
fn both_ends_see_the_in_librdkafka_flag() {
    let (reply, waiter) = ticket();
    assert!(!waiter.in_librdkafka());
    reply.set_in_librdkafka(true);
    assert!(waiter.in_librdkafka());
    reply.set_in_librdkafka(false);
    assert!(!waiter.in_librdkafka());
}

#[test]
fn many_reports_across_threads_each_arrive_exactly_once() {
    let (replies, waiters): (Vec<Reply>, Vec<Waiter>) = (0..2000).map(|_| ticket()).unzip();
    let sender = std::thread::spawn(move || {
        for (i, r) in replies.into_iter().enumerate() {
            r.send(delivery(i as u64));
        }
    });
    for (i, w) in waiters.iter().enumerate() {
        assert_eq!(w.wait().as_ref().and_then(offset), Some(i as i64));
    }
    sender.join().unwrap();
}

#[test]
fn a_parked_record_comes_out_once_and_then_reports_through_its_ticket() {
    let (reply, waiter) = ticket();
    let d = delivery(5);
    let pending = Pending {
        record: d.record.clone(),
        partition: 0,
        replaceable: true,
        observe: None,
        known_before: None,
        attempts: 1,
        session: 0,
        sent_at: std::time::Instant::now(),
        reply,
    };
    let in_flight = park(pending);
    assert!(
        waiter
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_pending()
    );
    let pending = in_flight.unpark().expect("parked");
    assert!(in_flight.unpark().is_none(), "taken out once");
    drop(in_flight);
    pending.finish(d.outcome);
    assert_eq!(waiter.wait().as_ref().and_then(offset), Some(5));
}
