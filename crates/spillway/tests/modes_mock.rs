//! The delivery modes on librdkafka's mock cluster, each judged by the oracle: every accepted
//! record is in Kafka, intact, once, in order per key.

mod common;

use std::time::Duration;

use spillway::api::Accepted;
use spillway::{Mode, Priority, Record, RejectReason, Route, Spillway, SpillwayConfig};
use spillway_test_support::mock::Unreachable;
use spillway_test_support::{MockKafka, oracle, read_topic_until};

const TOPIC: &str = "modes";

fn config(kafka: &MockKafka, dir: &std::path::Path, mode: Mode) -> SpillwayConfig {
    let mut c = SpillwayConfig::new(kafka.bootstrap(), dir);
    c.kafka.message_timeout = Duration::from_secs(5);
    c.kafka.linger = Duration::from_millis(2);
    c.default_route = Route::new("*", mode);
    c.health.probe_interval = Duration::from_millis(250);
    c.health.probe_timeout = Duration::from_millis(500);
    c.health.min_unhealthy = Duration::from_millis(500);
    c.drain.settle = Duration::from_millis(500);
    c.breaker.cooldown = Duration::from_millis(500);
    c.canary.timeout = Duration::from_secs(2);
    c
}

fn cluster() -> MockKafka {
    let kafka = MockKafka::with_proxies(3).unwrap();
    kafka.create_topic(TOPIC, 3).unwrap();
    kafka.create_topic("__spillway_canary", 3).unwrap();
    kafka
}

/// Sends `n` records over `keys` keys (and some keyless), sequentially per request, and returns
/// the oracle input of the accepted ones.
async fn load(
    spillway: &Spillway,
    clock: &common::Clock,
    n: usize,
    keys: usize,
    pace: Duration,
    mut during: impl FnMut(usize),
) -> (
    Vec<oracle::Acked>,
    Vec<Result<Accepted, spillway::Rejected>>,
) {
    let mut acked = Vec::new();
    let mut answers = Vec::new();
    for i in 0..n {
        during(i);
        let mut r = Record::new(TOPIC).value(format!("value-{i}"));
        if i % 4 != 3 {
            r = r.key(format!("key-{}", i % keys));
        }
        let sent = clock.tick();
        let answer = spillway.send(r.clone()).await;
        let at = clock.tick();
        if let Ok(a) = &answer {
            acked.push(common::accepted(&r, a, sent, at));
        }
        answers.push(answer);
        tokio::time::sleep(pace).await;
    }
    (acked, answers)
}

async fn judge(kafka: &MockKafka, spillway: &Spillway, acked: &[oracle::Acked]) -> oracle::Verdict {
    // A liveness bound, not a speed check.
    assert!(
        spillway.flush(Duration::from_secs(60)).await,
        "the spool drains: {:?}",
        spillway.status()
    );
    let records = read_topic_until(
        kafka.bootstrap(),
        TOPIC,
        acked.len(),
        Duration::from_secs(30),
    )
    .unwrap();
    let verdict = oracle::check(acked, &common::delivered(&records));
    eprintln!("oracle: {verdict}");
    verdict
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_first_accepts_into_the_spool_and_delivers_everything_in_order_once() {
    spillway_test_support::init_test_logging();
    let kafka = cluster();
    let dir = tempfile::tempdir().unwrap();
    let spillway = Spillway::start(config(&kafka, dir.path(), Mode::SpoolFirst)).unwrap();
    let clock = common::Clock::default();
    let (acked, answers) = load(&spillway, &clock, 300, 7, Duration::ZERO, |_| {}).await;
    assert!(
        answers
            .iter()
            .all(|a| matches!(a, Ok(Accepted::Spooled { .. }))),
        "spool_first answers 202"
    );
    common::assert_clean(&judge(&kafka, &spillway, &acked).await);
    spillway.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_first_keeps_the_order_of_send_calls_whatever_order_their_answers_are_awaited_in() {
    spillway_test_support::init_test_logging();
    let kafka = cluster();
    let dir = tempfile::tempdir().unwrap();
    let spillway = Spillway::start(config(&kafka, dir.path(), Mode::SpoolFirst)).unwrap();
    let send = |i: usize| spillway.send(Record::new(TOPIC).key("k").value(format!("v{i}")));
    let answers: Vec<_> = (0..20).map(send).collect();
    // Dropped unpolled: the call accepted it into the spool's queue, so it is sent all the same,
    // and the backlog does not wait for it forever.
    drop(send(20));
    for answer in answers.into_iter().rev() {
        assert!(matches!(answer.await, Ok(Accepted::Spooled { .. })));
    }
    assert!(
        spillway.flush(Duration::from_secs(60)).await,
        "the backlog drains: {:?}",
        spillway.status()
    );
    let records = read_topic_until(kafka.bootstrap(), TOPIC, 21, Duration::from_secs(30)).unwrap();
    let values: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect();
    let expected: Vec<String> = (0..21).map(|i| format!("v{i}")).collect();
    assert_eq!(values, expected, "in the order of the send calls");
    spillway.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_held_back_by_the_in_flight_limit_still_delivers_everything_in_order_once() {
    spillway_test_support::init_test_logging();
    let kafka = cluster();
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&kafka, dir.path(), Mode::SpoolFirst);
    // A few records' worth of bytes in flight, far below one round: most sends of every round
    // are refused with backpressure and must be retried, in order.
    c.max_in_flight_bytes = 2048;
    let spillway = Spillway::start(c).unwrap();
    let clock = common::Clock::default();
    let (acked, _) = load(&spillway, &clock, 300, 7, Duration::ZERO, |_| {}).await;
    assert_eq!(acked.len(), 300, "spool_first accepts every record");
    common::assert_clean(&judge(&kafka, &spillway, &acked).await);
    let counters = spillway.status().producer;
    assert_eq!(
        (
            counters.sent,
            counters.not_persisted,
            counters.possibly_persisted
        ),
        (300, 0, 0),
        "each record handed to librdkafka once; a refusal for backpressure is not a send"
    );
    spillway.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_goes_direct_while_healthy() {
    let kafka = cluster();
    let dir = tempfile::tempdir().unwrap();
    let spillway = Spillway::start(config(&kafka, dir.path(), Mode::Failover)).unwrap();
    let clock = common::Clock::default();
    let (acked, answers) = load(&spillway, &clock, 100, 5, Duration::ZERO, |_| {}).await;
    assert!(
        answers
            .iter()
            .all(|a| matches!(a, Ok(Accepted::Delivered { .. }))),
        "{answers:?}"
    );
    common::assert_clean(&judge(&kafka, &spillway, &acked).await);
    spillway.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_spools_keyed_records_behind_an_unreachable_leader_and_keeps_their_order() {
    spillway_test_support::init_test_logging();
    let kafka = cluster();
    let dir = tempfile::tempdir().unwrap();
    let spillway = Spillway::start(config(&kafka, dir.path(), Mode::Failover)).unwrap();
    let clock = common::Clock::default();
    let (acked, answers) = load(&spillway, &clock, 400, 12, Duration::from_millis(10), |i| {
        if i == 80 {
            kafka.make_unreachable(1, Unreachable::Blackhole).unwrap();
        }
        if i == 300 {
            kafka.make_reachable(1).unwrap();
        }
    })
    .await;
    let spooled = answers
        .iter()
        .filter(|a| matches!(a, Ok(Accepted::Spooled { .. })))
        .count();
    let rejected = answers.iter().filter(|a| a.is_err()).count();
    eprintln!(
        "KAFKA-3686 failover: {spooled} spooled, {rejected} rejected, status {:?}",
        spillway.status().routes
    );
    assert!(
        spooled > 0,
        "records for the unreachable partition were spooled"
    );
    assert_eq!(rejected, 0, "nothing refused: the spool had room");
    common::assert_clean(&judge(&kafka, &spillway, &acked).await);
    spillway.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_rides_out_a_whole_cluster_outage_then_drains_in_order() {
    spillway_test_support::init_test_logging();
    let kafka = cluster();
    let dir = tempfile::tempdir().unwrap();
    let spillway = Spillway::start(config(&kafka, dir.path(), Mode::Failover)).unwrap();
    let clock = common::Clock::default();
    let (acked, answers) = load(&spillway, &clock, 400, 9, Duration::from_millis(10), |i| {
        if i == 60 {
            for b in 1..=3 {
                kafka.make_unreachable(b, Unreachable::Blackhole).unwrap();
            }
        }
        if i == 280 {
            for b in 1..=3 {
                kafka.make_reachable(b).unwrap();
            }
        }
    })
    .await;
    let spooled = answers
        .iter()
        .filter(|a| matches!(a, Ok(Accepted::Spooled { .. })))
        .count();
    eprintln!(
        "outage: {spooled} spooled; routes {:?}",
        spillway.status().routes
    );
    assert!(spooled > 100);
    assert!(
        answers.iter().all(Result::is_ok),
        "the spool took everything"
    );
    common::assert_clean(&judge(&kafka, &spillway, &acked).await);
    spillway.shutdown(Duration::from_secs(5)).await;
}

/// Keyless records already sent when every broker goes silent may be in Kafka, and no tail can
/// be read until the cluster is back. They are spooled with that mark at once (the forwarder
/// checks the tail before resending), not held for the check: the client of a keyless record
/// got no answer for a minute (the producer's `resolve_timeout`) in a blackhole before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_records_caught_in_a_blackhole_are_spooled_at_once_and_delivered_once() {
    spillway_test_support::init_test_logging();
    let kafka = cluster();
    let dir = tempfile::tempdir().unwrap();
    let spillway = Spillway::start(config(&kafka, dir.path(), Mode::Failover)).unwrap();
    let clock = common::Clock::default();
    let (warm, _) = load(&spillway, &clock, 20, 3, Duration::ZERO, |_| {}).await;
    for b in 1..=3 {
        kafka.make_unreachable(b, Unreachable::Blackhole).unwrap();
    }
    let sends = (0..30).map(|i| {
        let (spillway, clock) = (&spillway, &clock);
        async move {
            let r = Record::new(TOPIC).value(format!("caught-{i}"));
            let sent = clock.tick();
            let answer = spillway.send(r.clone()).await;
            (r, sent, answer, clock.tick())
        }
    });
    // A liveness bound well below the producer's one-minute `resolve_timeout`, with the
    // cluster silent the whole time: not a speed check.
    let answers = tokio::time::timeout(Duration::from_secs(30), futures::future::join_all(sends))
        .await
        .expect("every keyless record is answered while the cluster is still silent");
    let possibly = spillway.status().producer.possibly_persisted;
    for b in 1..=3 {
        kafka.make_reachable(b).unwrap();
    }
    let mut acked = warm;
    for (r, sent, answer, at) in answers {
        let a = answer.expect("spooled, not refused");
        assert!(matches!(a, Accepted::Spooled { .. }), "{a:?}");
        acked.push(common::accepted(&r, &a, sent, at));
    }
    assert!(
        possibly > 0,
        "some records were in flight when the cluster went silent"
    );
    common::assert_clean(&judge(&kafka, &spillway, &acked).await);
    spillway.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_long_drain_hands_its_worker_thread_back_to_the_other_tasks() {
    let kafka = cluster();
    let dir = tempfile::tempdir().unwrap();
    let spillway = Spillway::start(config(&kafka, dir.path(), Mode::SpoolFirst)).unwrap();
    for b in 1..=3 {
        kafka.make_unreachable(b, Unreachable::Blackhole).unwrap();
    }
    const RECORDS: usize = 50_000;
    let sends = (0..RECORDS).map(|i| spillway.send(Record::new(TOPIC).value(format!("v{i}"))));
    let answers = futures::future::join_all(sends).await;
    assert!(answers.iter().all(Result::is_ok), "everything is spooled");
    for b in 1..=3 {
        kafka.make_reachable(b).unwrap();
    }
    // A task that only yields runs whenever the single worker is handed back. Delivery reports
    // arrive from the producer's own thread, so a forwarder that handled every ready outcome
    // before waiting would keep the worker for the whole drain.
    let draining = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let turns = tokio::spawn({
        let draining = draining.clone();
        async move {
            let mut turns = 0u64;
            while draining.load(std::sync::atomic::Ordering::Relaxed) {
                tokio::task::yield_now().await;
                turns += 1;
            }
            turns
        }
    });
    // A liveness bound, not a speed check.
    assert!(
        spillway.flush(Duration::from_secs(120)).await,
        "the backlog drains: {:?}",
        spillway.status()
    );
    draining.store(false, std::sync::atomic::Ordering::Relaxed);
    let turns = turns.await.unwrap();
    eprintln!("turns of the other task during the drain: {turns}");
    assert!(
        turns >= 50,
        "the other task ran {turns} times while {RECORDS} records drained"
    );
    spillway.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_degraded_bulk_is_shed_and_critical_is_spooled() {
    let kafka = cluster();
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&kafka, dir.path(), Mode::Failover);
    c.default_route.shed_below = Priority::Critical;
    let spillway = Spillway::start(c).unwrap();
    let warm = spillway
        .send(Record::new(TOPIC).key("k").value("warm"))
        .await;
    assert!(matches!(warm, Ok(Accepted::Delivered { .. })), "{warm:?}");
    for b in 1..=3 {
        kafka.make_unreachable(b, Unreachable::Blackhole).unwrap();
    }
    // Wait for the breaker to open.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = spillway
            .send(
                Record::new(TOPIC)
                    .key("k")
                    .value("probe")
                    .priority(Priority::Critical),
            )
            .await;
        assert!(
            r.is_ok(),
            "critical records are always accepted while the spool has room: {r:?}"
        );
        if spillway
            .status()
            .routes
            .iter()
            .any(|r| r.breaker != spillway::breaker::BreakerState::Closed)
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "breaker never opened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bulk = spillway
        .send(
            Record::new(TOPIC)
                .key("k")
                .value("b")
                .priority(Priority::Bulk),
        )
        .await;
    let err = bulk.expect_err("bulk is shed while degraded");
    assert_eq!(err.reason, RejectReason::Shed);
    assert!(err.retry_after.is_some());
    let critical = spillway
        .send(
            Record::new(TOPIC)
                .key("k")
                .value("c")
                .priority(Priority::Critical),
        )
        .await;
    assert!(
        matches!(critical, Ok(Accepted::Spooled { .. })),
        "{critical:?}"
    );
    spillway.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_capacity_everything_is_refused_and_nothing_accepted_is_lost() {
    let kafka = cluster();
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&kafka, dir.path(), Mode::SpoolFirst);
    c.spool.capacity_bytes = 64 * 1024;
    c.spool.segment_bytes = 16 * 1024;
    // Declared, so keyed records can be placed although Kafka is down from the start.
    c.topics = vec![spillway::settings::TopicSettings {
        name: TOPIC.into(),
        partitions: Some(3),
    }];
    c.default_route.shed_below = Priority::Bulk;
    let spillway = Spillway::start(c).unwrap();
    for b in 1..=3 {
        kafka.make_unreachable(b, Unreachable::Blackhole).unwrap();
    }
    let clock = common::Clock::default();
    let mut acked = Vec::new();
    let mut full = 0;
    for i in 0..400 {
        let r = Record::new(TOPIC)
            .key(format!("k{}", i % 3))
            .value(vec![b'x'; 400])
            .priority(Priority::Critical);
        let sent = clock.tick();
        match spillway.send(r.clone()).await {
            Ok(a) => acked.push(common::accepted(&r, &a, sent, clock.tick())),
            Err(e) => {
                assert_eq!(e.reason, RejectReason::Full, "{e}");
                assert!(e.retry_after.is_some());
                full += 1;
            }
        }
    }
    eprintln!("capacity: {} accepted, {full} refused as full", acked.len());
    assert!(full > 0 && !acked.is_empty());
    for b in 1..=3 {
        kafka.make_reachable(b).unwrap();
    }
    common::assert_clean(&judge(&kafka, &spillway, &acked).await);
    spillway.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_backpressure_refuses_with_retry_after_and_drop_counts_dropped_records() {
    let kafka = cluster();
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&kafka, dir.path(), Mode::Direct);
    c.routes = vec![{
        let mut r = Route::new("dropped", Mode::Direct);
        r.on_failure = spillway::FailurePolicy::Drop;
        r
    }];
    kafka.create_topic("dropped", 3).unwrap();
    let spillway = Spillway::start(c).unwrap();
    let ok = spillway.send(Record::new(TOPIC).key("k").value("v")).await;
    assert!(matches!(ok, Ok(Accepted::Delivered { .. })), "{ok:?}");
    assert!(matches!(
        spillway.send(Record::new("dropped").value("v")).await,
        Ok(Accepted::Delivered { .. })
    ));
    for b in 1..=3 {
        kafka.make_unreachable(b, Unreachable::Blackhole).unwrap();
    }
    let mut saw_backpressure = false;
    let mut saw_drop = false;
    for _ in 0..60 {
        if let Err(e) = spillway.send(Record::new(TOPIC).key("k").value("v")).await {
            assert_eq!(e.reason, RejectReason::Unavailable, "{e}");
            assert!(e.retry_after.is_some());
            saw_backpressure = true;
        }
        if let Err(e) = spillway.send(Record::new("dropped").value("v")).await {
            assert_eq!(e.reason, RejectReason::Dropped, "{e}");
            saw_drop = true;
        }
        if saw_backpressure && saw_drop {
            break;
        }
    }
    assert!(saw_backpressure && saw_drop);
    assert_eq!(spillway.backlog(), 0, "direct routes never spool");
    spillway.shutdown(Duration::from_secs(5)).await;
}

/// `spool_on_failure` that drains only when asked (`replay()`).
fn start_without_auto_replay(kafka: &MockKafka, dir: &std::path::Path) -> Spillway {
    let mut c = config(kafka, dir, Mode::SpoolOnFailure);
    c.default_route.auto_replay = false;
    Spillway::start(c).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_on_failure_without_auto_replay_waits_for_a_replay_and_keeps_order() {
    let kafka = cluster();
    let dir = tempfile::tempdir().unwrap();
    let spillway = start_without_auto_replay(&kafka, dir.path());
    let clock = common::Clock::default();
    let (acked, answers) = load(&spillway, &clock, 200, 4, Duration::from_millis(10), |i| {
        if i == 30 {
            kafka.make_unreachable(2, Unreachable::Blackhole).unwrap();
        }
        if i == 120 {
            kafka.make_reachable(2).unwrap();
        }
    })
    .await;
    let spooled = answers
        .iter()
        .filter(|a| matches!(a, Ok(Accepted::Spooled { .. })))
        .count();
    assert!(spooled > 0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(spillway.backlog() > 0, "nothing replays before it is asked");
    spillway.replay();
    common::assert_clean(&judge(&kafka, &spillway, &acked).await);
    spillway.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_asked_while_the_leader_is_still_unreachable_drains_once_it_heals() {
    // A replay lasts until the backlog is drained: a first attempt that cannot start (the
    // partition is unhealthy, its tail not settled) must not use the replay up.
    let kafka = cluster();
    let dir = tempfile::tempdir().unwrap();
    let spillway = start_without_auto_replay(&kafka, dir.path());
    let clock = common::Clock::default();
    let (acked, answers) = load(&spillway, &clock, 120, 4, Duration::from_millis(10), |i| {
        if i == 20 {
            kafka.make_unreachable(2, Unreachable::Blackhole).unwrap();
        }
    })
    .await;
    assert!(
        answers
            .iter()
            .any(|a| matches!(a, Ok(Accepted::Spooled { .. })))
    );
    spillway.replay();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(spillway.backlog() > 0, "the leader is still unreachable");
    kafka.make_reachable(2).unwrap();
    common::assert_clean(&judge(&kafka, &spillway, &acked).await);
    spillway.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_spooled_and_delivered_records_and_time_the_fsyncs() {
    let kafka = cluster();
    let dir = tempfile::tempdir().unwrap();
    let spillway = Spillway::start(config(&kafka, dir.path(), Mode::SpoolFirst)).unwrap();
    let clock = common::Clock::default();
    let (acked, _) = load(&spillway, &clock, 50, 3, Duration::ZERO, |_| {}).await;
    common::assert_clean(&judge(&kafka, &spillway, &acked).await);
    let text = metrics_text(&spillway);
    let value = |needle: &str| metric(&text, needle);
    assert_eq!(
        value("spillway_records_total{topic=\"modes\",outcome=\"spooled\"}"),
        50.0
    );
    assert_eq!(
        value("spillway_records_total{topic=\"modes\",outcome=\"delivered\"}"),
        50.0
    );
    assert!(value("spillway_spool_fsync_duration_seconds_count") >= 1.0);
    assert!(text.contains("spillway_breaker_state"), "{text}");
    spillway.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_delivered_straight_to_kafka_are_counted_even_when_their_sender_stopped_waiting() {
    let kafka = cluster();
    let dir = tempfile::tempdir().unwrap();
    let spillway = Spillway::start(config(&kafka, dir.path(), Mode::Failover)).unwrap();
    // Handed over by `send` itself; the answers are dropped unpolled.
    for i in 0..40 {
        let record = Record::new(TOPIC).value(format!("v{i}"));
        let record = if i % 2 == 0 {
            record.key(format!("k{}", i % 4))
        } else {
            record
        };
        drop(spillway.send(record));
    }
    let delivered = "spillway_records_total{topic=\"modes\",outcome=\"delivered\"}";
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut counted = 0.0;
    while std::time::Instant::now() < deadline {
        let text = metrics_text(&spillway);
        counted = if text.contains(delivered) {
            metric(&text, delivered)
        } else {
            0.0
        };
        if counted >= 40.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(counted, 40.0, "keyless and keyed deliveries alike");
    let in_kafka = read_topic_until(kafka.bootstrap(), TOPIC, 40, Duration::from_secs(10)).unwrap();
    assert_eq!(in_kafka.len(), 40);
    spillway.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_record_nothing_else_can_judge_yet_is_spooled_once_it_waited_twice_the_stall_time()
{
    let kafka = cluster();
    for b in kafka.broker_ids() {
        kafka.make_unreachable(b, Unreachable::Blackhole).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&kafka, dir.path(), Mode::Failover);
    // Only the lane can tell: no statistics, a fresh session's grace longer than the test, a
    // breaker that would wait on stalls longer still.
    c.kafka.statistics_interval = Duration::ZERO;
    c.health.session_grace = Duration::from_secs(300);
    c.health.stall_after = Duration::from_millis(500);
    c.breaker.max_stall = Duration::from_secs(300);
    c.topics = vec![spillway::settings::TopicSettings {
        name: TOPIC.into(),
        partitions: Some(3),
    }];
    let spillway = Spillway::start(c).unwrap();
    let clock = common::Clock::default();
    let record = Record::new(TOPIC).key("k").value("v");
    let sent = clock.tick();
    // A liveness bound, not a speed check.
    let answer = tokio::time::timeout(Duration::from_secs(30), spillway.send(record.clone()))
        .await
        .expect("answered");
    assert!(matches!(answer, Ok(Accepted::Spooled { .. })), "{answer:?}");
    let status = spillway.status();
    assert!(
        status
            .unhealthy_partitions
            .iter()
            .any(|p| p.reason.contains("waited too long on Kafka")),
        "{status:?}"
    );
    let acked = vec![common::accepted(
        &record,
        answer.as_ref().unwrap(),
        sent,
        clock.tick(),
    )];
    for b in kafka.broker_ids() {
        kafka.make_reachable(b).unwrap();
    }
    common::assert_clean(&judge(&kafka, &spillway, &acked).await);
    spillway.shutdown(Duration::from_secs(5)).await;
}

/// The library's metrics in Prometheus text form.
fn metrics_text(spillway: &Spillway) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    spillway.register_metrics(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text
}

/// The value of the first line of `text` that starts with `needle` (name and labels).
fn metric(text: &str, needle: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(needle))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{needle} missing in:\n{text}"))
}

/// Appends a record that is not an envelope to `modes.p1` of a spool at `dir`, as if a newer
/// version (or damage past the CRC) had written it.
async fn plant_undecodable(dir: &std::path::Path) {
    let (spool, _) =
        spillway_spool::Spool::open(dir, spillway_spool::SpoolConfig::default()).unwrap();
    let stream = spillway_spool::StreamName::new(&format!("{TOPIC}.p1")).unwrap();
    spool
        .append(
            &stream,
            spillway_spool::RecordIn::new(&b"not an envelope"[..]),
        )
        .await
        .unwrap();
    spool.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_spooled_record_is_set_aside_with_its_bytes_and_the_rest_drains() {
    let kafka = cluster();
    let dir = tempfile::tempdir().unwrap();
    plant_undecodable(dir.path()).await;
    let spillway = Spillway::start(config(&kafka, dir.path(), Mode::SpoolFirst)).unwrap();
    let clock = common::Clock::default();
    let (acked, _) = load(&spillway, &clock, 20, 3, Duration::ZERO, |_| {}).await;
    common::assert_clean(&judge(&kafka, &spillway, &acked).await);
    let aside = std::fs::read_to_string(dir.path().join("undecodable.jsonl")).unwrap();
    assert!(
        aside.contains("\"stream\":\"modes.p1\"") && aside.contains("bm90IGFuIGVudmVsb3Bl"),
        "{aside}"
    );
    spillway.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_record_that_cannot_be_set_aside_yet_is_set_aside_later_and_the_rest_drains()
{
    let kafka = cluster();
    let dir = tempfile::tempdir().unwrap();
    plant_undecodable(dir.path()).await;
    // A directory where the file should be: writing `undecodable.jsonl` fails.
    let aside = dir.path().join("undecodable.jsonl");
    std::fs::create_dir(&aside).unwrap();
    let spillway = Spillway::start(config(&kafka, dir.path(), Mode::SpoolFirst)).unwrap();
    let clock = common::Clock::default();
    let (acked, _) = load(&spillway, &clock, 30, 3, Duration::ZERO, |_| {}).await;
    // Everything but the undecodable record drains, its own stream's records included. A
    // liveness bound, not a speed check.
    let until = std::time::Instant::now() + Duration::from_secs(60);
    while spillway.backlog() > 1 {
        assert!(
            std::time::Instant::now() < until,
            "the rest drains: {:?}",
            spillway.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(spillway.backlog(), 1, "the undecodable record is kept");
    std::fs::remove_dir(&aside).unwrap();
    common::assert_clean(&judge(&kafka, &spillway, &acked).await);
    let text = std::fs::read_to_string(&aside).unwrap();
    assert!(text.contains("bm90IGFuIGVudmVsb3Bl"), "{text}");
    spillway.shutdown(Duration::from_secs(5)).await;
}

/// Writes `n` records without a `spillway.id` to every partition of [`TOPIC`]: history that
/// was there before Spillway.
fn fill_history(kafka: &MockKafka, n: usize) {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let producer: ThreadedProducer<DefaultProducerContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap())
        .create()
        .unwrap();
    for p in 0..3 {
        for i in 0..n {
            let value = format!("history-{i}");
            let record = BaseRecord::<(), _>::to(TOPIC).partition(p).payload(&value);
            producer.send(record).map_err(|(e, _)| e).unwrap();
        }
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_possibly_in_kafka_behind_a_history_longer_than_the_scan_limit_drain_once() {
    spillway_test_support::init_test_logging();
    let kafka = cluster();
    kafka.create_topic("warm", 3).unwrap();
    fill_history(&kafka, 100);
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&kafka, dir.path(), Mode::SpoolFirst);
    // Shorter than each partition's history: no tail check can read it all.
    c.drain.max_tail_scan = 50;
    // Keyed records need the partition count, and Kafka is silent when they come.
    c.topics = vec![spillway::settings::TopicSettings {
        name: TOPIC.into(),
        partitions: Some(3),
    }];
    let spillway = Spillway::start(c).unwrap();
    // Connections to every broker are up (through another topic: nothing of ours is known
    // delivered in `TOPIC`, so a check there has no offset to start after).
    for p in 0..3 {
        spillway
            .send(Record::new("warm").partition(p).value("warm"))
            .await
            .unwrap();
    }
    assert!(spillway.flush(Duration::from_secs(30)).await);
    for b in 1..=3 {
        kafka.make_unreachable(b, Unreachable::Blackhole).unwrap();
    }
    let clock = common::Clock::default();
    let (acked, answers) = load(&spillway, &clock, 30, 3, Duration::ZERO, |_| {}).await;
    assert_eq!(
        acked.len(),
        30,
        "spool_first accepts while Kafka is silent: {answers:?}"
    );
    // Sent into the blackhole, then cut: possibly persisted (the blackhole holds the bytes and
    // lets them through when it heals, so they do land).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while spillway.status().producer.possibly_persisted == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            spillway.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for b in 1..=3 {
        kafka.make_reachable(b).unwrap();
    }
    // A liveness bound, not a speed check.
    assert!(
        spillway.flush(Duration::from_secs(60)).await,
        "the spool drains: {:?}",
        spillway.status()
    );
    let records =
        read_topic_until(kafka.bootstrap(), TOPIC, 300 + 30, Duration::from_secs(30)).unwrap();
    let verdict = oracle::check(&acked, &common::delivered(&records));
    eprintln!("oracle: {verdict}");
    common::assert_clean(&verdict);
    let partial = metric(
        &metrics_text(&spillway),
        "spillway_tail_checks_partial_total ",
    );
    assert!(partial >= 1.0, "the partial checks are counted");
    spillway.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_records_delivered_after_an_earlier_one_failed_are_no_order_break() {
    spillway_test_support::init_test_logging();
    let kafka = cluster();
    let dir = tempfile::tempdir().unwrap();
    let spillway = Spillway::start(config(&kafka, dir.path(), Mode::SpoolFirst)).unwrap();
    let clock = common::Clock::default();
    let (mut acked, _) = load(&spillway, &clock, 20, 3, Duration::ZERO, |_| {}).await;
    assert!(spillway.flush(Duration::from_secs(30)).await);
    // One leader goes silent, then a burst: the keyless stream's flight spans all three
    // partitions, and records behind the silent one's are delivered before it fails.
    kafka.make_unreachable(2, Unreachable::Blackhole).unwrap();
    let sends = (0..2000).map(|i| {
        let (spillway, clock) = (&spillway, &clock);
        async move {
            let r = Record::new(TOPIC).value(format!("keyless-{i}"));
            let sent = clock.tick();
            let a = spillway.send(r.clone()).await.expect("spooled");
            common::accepted(&r, &a, sent, clock.tick())
        }
    });
    acked.extend(futures::future::join_all(sends).await);
    tokio::time::sleep(Duration::from_secs(3)).await;
    kafka.make_reachable(2).unwrap();
    common::assert_clean(&judge(&kafka, &spillway, &acked).await);
    let breaks = metric(&metrics_text(&spillway), "spillway_order_breaks_total ");
    assert_eq!(breaks, 0.0);
    spillway.shutdown(Duration::from_secs(5)).await;
}
