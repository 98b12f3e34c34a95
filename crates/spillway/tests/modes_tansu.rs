//! The delivery modes against the real Tansu broker: a full outage (kill -9, down, restart)
//! under steady load, a network blackhole, and a hung broker (SIGSTOP). Every accepted record
//! arrives after the outage, in order, once.

mod common;

use std::time::{Duration, Instant};

use spillway::api::Accepted;
use spillway::{Mode, Record, Route, Spillway, SpillwayConfig};
use spillway_test_support::{FaultMode, TansuBroker, oracle, read_topic_until};

const TOPIC: &str = "outage";

fn config(broker: &TansuBroker, dir: &std::path::Path, mode: Mode) -> SpillwayConfig {
    let mut c = SpillwayConfig::new(broker.bootstrap(), dir);
    c.kafka.message_timeout = Duration::from_secs(5);
    c.default_route = Route::new("*", mode);
    c.health.probe_interval = Duration::from_millis(250);
    c.health.probe_timeout = Duration::from_millis(500);
    c.drain.settle = Duration::from_millis(500);
    c.breaker.cooldown = Duration::from_millis(500);
    c.canary.timeout = Duration::from_secs(3);
    c.topics = vec![spillway::settings::TopicSettings {
        name: TOPIC.into(),
        partitions: Some(3),
    }];
    c
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    Kill9 { down: Duration },
    Blackhole { down: Duration },
    Pause { down: Duration },
}

async fn steady_load_through(mode: Mode, fault: Fault) {
    spillway_test_support::init_test_logging();
    let mut broker = match fault {
        Fault::Blackhole { .. } => TansuBroker::start_proxied(),
        _ => TansuBroker::start(),
    }
    .unwrap();
    broker
        .create_topics(&[(TOPIC, 3), ("__spillway_canary", 1)])
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spillway = Spillway::start(config(&broker, dir.path(), mode)).unwrap();
    let clock = common::Clock::default();
    let down = match fault {
        Fault::Kill9 { down } | Fault::Blackhole { down } | Fault::Pause { down } => down,
    };
    let (start_fault, end_fault) = (Duration::from_secs(2), Duration::from_secs(2) + down);
    let total = end_fault + Duration::from_secs(4);
    let started = Instant::now();
    let (mut broken, mut healed) = (false, false);
    let mut acked = Vec::new();
    let (mut delivered, mut spooled, mut refused, mut i) = (0, 0, 0, 0usize);
    // The fault and the heal happen on time even while a send is waiting (a send that took a
    // minute once kept the blackhole in place for the rest of the test).
    let at = |d: Duration| tokio::time::Instant::from_std(started + d);
    while started.elapsed() < total {
        let mut r = Record::new(TOPIC).value(format!("v{i}"));
        if i % 5 != 4 {
            r = r.key(format!("k{}", i % 11));
        }
        let sent = clock.tick();
        let t0 = Instant::now();
        let send = spillway.send(r.clone());
        tokio::pin!(send);
        let answer = loop {
            let next = match (broken, healed) {
                (false, _) => Some(start_fault),
                (true, false) => Some(end_fault),
                _ => None,
            };
            tokio::select! {
                answer = &mut send => break answer,
                () = tokio::time::sleep_until(at(next.unwrap_or(total))), if next.is_some() => {
                    if !broken {
                        broken = true;
                        break_it(&mut broker, fault);
                    } else {
                        healed = true;
                        heal(&mut broker, fault);
                    }
                }
            }
        };
        if t0.elapsed() > Duration::from_millis(500) {
            eprintln!(
                "slow send {i} at {:?}: {:?} took {:?}",
                started.elapsed(),
                r.key,
                t0.elapsed()
            );
        }
        match answer {
            Ok(a) => {
                match a {
                    Accepted::Delivered { .. } => delivered += 1,
                    Accepted::Spooled { .. } => spooled += 1,
                }
                acked.push(common::accepted(&r, &a, sent, clock.tick()));
            }
            Err(e) => {
                assert!(e.is_retriable(), "{e}");
                refused += 1;
            }
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!(
        "{mode:?} {fault:?}: {delivered} delivered directly, {spooled} spooled, {refused} refused"
    );
    // A drain takes seconds; 45 s without one means something is stuck.
    let mut drained = spillway.flush(Duration::from_secs(45)).await;
    broker.check_not_wedged().unwrap();
    if !drained && !broker.answers(Duration::from_secs(5)) {
        // Tansu 0.6.0 sometimes stops answering after a fault (it accepts connections and
        // answers no request, even from a fresh client that bypasses the proxy), with nothing
        // in its log. That is the broker's defect; Spillway's promise must hold across the
        // restart that clears it (its storage keeps every acknowledged record), so restart it
        // and judge the drain after that.
        eprintln!(
            "the broker stopped answering; restarting it\n{}",
            broker_diagnosis(&broker)
        );
        broker.restart().unwrap();
        drained = spillway.flush(Duration::from_secs(90)).await;
    }
    assert!(
        drained,
        "not drained: {:?}\n{}",
        spillway.status(),
        broker_diagnosis(&broker)
    );
    let records = read_topic_until(
        &broker.direct_bootstrap(),
        TOPIC,
        acked.len(),
        Duration::from_secs(60),
    )
    .unwrap();
    let verdict = oracle::check(&acked, &common::delivered(&records));
    eprintln!("{mode:?} {fault:?}: oracle {verdict}");
    common::assert_clean(&verdict);
    if mode != Mode::SpoolFirst {
        assert!(spooled > 0, "the outage was ridden out in the spool");
    }
    spillway.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_through_a_30s_broker_kill9_loses_nothing_and_keeps_order() {
    steady_load_through(
        Mode::Failover,
        Fault::Kill9 {
            down: Duration::from_secs(30),
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_first_through_a_broker_kill9_loses_nothing_and_keeps_order() {
    steady_load_through(
        Mode::SpoolFirst,
        Fault::Kill9 {
            down: Duration::from_secs(8),
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_through_a_network_blackhole_loses_nothing_and_keeps_order() {
    steady_load_through(
        Mode::Failover,
        Fault::Blackhole {
            down: Duration::from_secs(8),
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_through_a_hung_broker_loses_nothing_and_keeps_order() {
    steady_load_through(
        Mode::Failover,
        Fault::Pause {
            down: Duration::from_secs(8),
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_first_through_a_network_blackhole_loses_nothing_and_keeps_order() {
    steady_load_through(
        Mode::SpoolFirst,
        Fault::Blackhole {
            down: Duration::from_secs(6),
        },
    )
    .await;
}

fn break_it(broker: &mut TansuBroker, fault: Fault) {
    match fault {
        Fault::Kill9 { .. } => broker.kill9(),
        Fault::Blackhole { .. } => broker.proxy().unwrap().set_mode(FaultMode::Blackhole),
        Fault::Pause { .. } => broker.pause().unwrap(),
    }
}

fn heal(broker: &mut TansuBroker, fault: Fault) {
    match fault {
        Fault::Kill9 { .. } => broker.restart().unwrap(),
        Fault::Blackhole { .. } => broker.proxy().unwrap().set_mode(FaultMode::Pass),
        Fault::Pause { .. } => broker.resume().unwrap(),
    }
}

/// When a drain fails: does the broker answer when asked directly (not through the proxy), what
/// did the proxy see, and what did the broker log.
fn broker_diagnosis(broker: &TansuBroker) -> String {
    let direct = broker
        .direct_metadata(Duration::from_secs(5))
        .map(|n| format!("{n} broker(s)"))
        .map_err(|e| e.to_string());
    format!(
        "broker asked directly: {direct:?}\nproxy: {:?}\nbroker log:\n{}",
        broker.proxy().map(|p| p.stats()),
        broker.log_tail()
    )
}
