//! `vanilla_awaited`: the least any library costs whose `send(record)` resolves once Kafka has
//! the record, as issue 5's API does (`send(record) -> Result<Receipt, Rejected>`).
//!
//! It is `vanilla_id` (the `spillway.id` header on every record) with one thing added: each
//! record's delivery report is a future that the sending task awaits, with `window` answers
//! outstanding and awaited in order, exactly as the modes' pump awaits Spillway's. The
//! answer is one allocation shared by the record in librdkafka (its opaque) and the future: a
//! state and a waker, set and woken by the producer's polling thread (a `ThreadedProducer`, as
//! Spillway's sessions have). Nothing of Spillway's own work is in it (no admission, routes,
//! partition health, receipts, spool), so its ratio to vanilla is the ceiling of every mode
//! measured through that API.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::task::AtomicWaker;
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryResult, Producer as _, ProducerContext, ThreadedProducer};
use spillway::IdGenerator;

use super::{Placement, Run, Tally, record, warm_up};
use crate::report::cpu_time;

const PENDING: u8 = 0;
const DELIVERED: u8 = 1;
const FAILED: u8 = 2;

/// One record's answer, shared by librdkafka's opaque and the awaiting future.
#[derive(Debug, Default)]
pub struct Report {
    state: AtomicU8,
    waker: AtomicWaker,
}

/// Resolves to whether Kafka acknowledged the record.
struct Answer(Arc<Report>);

impl Future for Answer {
    type Output = bool;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let r = &self.0;
        if r.state.load(Ordering::Acquire) == PENDING {
            r.waker.register(cx.waker());
            // A report that landed between the load and the registration woke nobody.
            if r.state.load(Ordering::Acquire) == PENDING {
                return Poll::Pending;
            }
        }
        Poll::Ready(r.state.load(Ordering::Acquire) == DELIVERED)
    }
}

/// A producer context that answers each record's future.
#[derive(Debug, Clone, Copy, Default)]
pub struct Answering;

impl ClientContext for Answering {}

impl ProducerContext for Answering {
    type DeliveryOpaque = Arc<Report>;

    fn delivery(&self, result: &DeliveryResult<'_>, report: Arc<Report>) {
        let state = if result.is_ok() { DELIVERED } else { FAILED };
        report.state.store(state, Ordering::Release);
        report.waker.wake();
    }
}

/// Produces `records` keyless records of `size` bytes to `topic`, each with the id header,
/// awaiting each one's answer with at most `window` outstanding; returns when every answer is
/// in.
pub async fn produce_awaited(
    config: &ClientConfig,
    placement: Placement,
    topic: &str,
    records: u64,
    size: usize,
    window: usize,
) -> Result<Run, KafkaError> {
    let value = crate::report::payload(size);
    let ids = IdGenerator::ephemeral();
    let p: ThreadedProducer<Answering> = config.create_with_context(Answering)?;
    warm_up(|| {
        p.client()
            .fetch_metadata(Some(topic), Duration::from_secs(10))
    })?;
    let cpu0 = cpu_time();
    let start = Instant::now();
    let mut outstanding = std::collections::VecDeque::with_capacity(window);
    let mut tally = Tally::default();
    for i in 0..records {
        if outstanding.len() >= window {
            if let Some(d) = outstanding.pop_front() {
                tally.count(d.await);
            }
        }
        let id = ids.next_id().to_text();
        let report = Arc::new(Report::default());
        let mut rec = record(
            topic,
            &value,
            placement.partition(i),
            Some(id.as_bytes()),
            report.clone(),
        );
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    rec = r;
                    match outstanding.pop_front() {
                        Some(d) => tally.count(d.await),
                        None => tokio::time::sleep(Duration::from_micros(100)).await,
                    }
                }
                Err((e, _)) => return Err(e),
            }
        }
        outstanding.push_back(Answer(report));
    }
    while let Some(d) = outstanding.pop_front() {
        tally.count(d.await);
    }
    Ok(tally.run_since(start, cpu0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_reported_before_it_is_polled_is_ready_at_the_first_poll() {
        let report = Arc::new(Report::default());
        report.state.store(FAILED, Ordering::Release);
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut answer = Answer(report);
        assert_eq!(Pin::new(&mut answer).poll(&mut cx), Poll::Ready(false));
    }

    #[test]
    fn an_answer_wakes_its_task_when_the_report_arrives() {
        let report = Arc::new(Report::default());
        let (waker, woken) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let mut answer = Answer(report.clone());
        assert_eq!(Pin::new(&mut answer).poll(&mut cx), Poll::Pending);
        report.state.store(DELIVERED, Ordering::Release);
        report.waker.wake();
        assert_eq!(woken.load(Ordering::SeqCst), 1);
        assert_eq!(Pin::new(&mut answer).poll(&mut cx), Poll::Ready(true));
    }

    fn counting_waker() -> (std::task::Waker, Arc<std::sync::atomic::AtomicUsize>) {
        struct Count(Arc<std::sync::atomic::AtomicUsize>);
        impl futures::task::ArcWake for Count {
            fn wake_by_ref(arc_self: &Arc<Self>) {
                arc_self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let n = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        (futures::task::waker(Arc::new(Count(n.clone()))), n)
    }
}
