use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn tracker() -> (HealthTracker, Instant, TopicPartition) {
    (
        HealthTracker::new(HealthConfig::default()),
        Instant::now(),
        TopicPartition::new("t", 0),
    )
}

#[test]
fn a_partition_with_outstanding_records_and_no_progress_stalls() {
    let (mut h, t0, tp) = tracker();
    h.on_send(&tp, t0);
    assert!(h.tick(t0 + ms(900)).is_empty());
    assert_eq!(h.tick(t0 + ms(1000)), vec![tp.clone()]);
    assert!(!h.is_healthy(&tp));
    assert!(matches!(h.unhealthy()[0].1, Reason::Stalled(_)));
}

#[test]
fn a_fresh_session_gets_a_grace_period_before_any_stall() {
    let (mut h, t0, tp) = tracker();
    h.on_send(&tp, t0);
    h.on_session_start(0, t0 + ms(500));
    h.on_send(&tp, t0 + ms(600));
    assert!(h.tick(t0 + ms(3400)).is_empty(), "within the grace (3 s)");
    assert!(
        h.tick(t0 + ms(4400)).is_empty(),
        "a stall is measured from the grace's end"
    );
    assert_eq!(h.tick(t0 + ms(4500)), vec![tp]);
}

#[test]
fn a_stall_takes_down_every_partition_of_the_same_leader_only() {
    let (mut h, t0, tp) = tracker();
    h.on_leaders("t", &[(0, 1), (1, 1), (2, 2)]);
    h.on_send(&tp, t0);
    assert_eq!(h.tick(t0 + ms(1000)), vec![tp.clone()]);
    assert!(!h.is_healthy(&TopicPartition::new("t", 1)), "same leader");
    assert!(h.is_healthy(&TopicPartition::new("t", 2)), "another leader");
}

#[test]
fn the_first_acknowledgement_of_a_session_ends_its_grace() {
    let (mut h, t0, tp) = tracker();
    let other = TopicPartition::new("t", 1);
    h.on_session_start(0, t0);
    h.on_send(&tp, t0);
    h.on_send(&other, t0);
    h.on_delivered(&other, 0, None, t0 + ms(100));
    assert_eq!(h.tick(t0 + ms(1000)), vec![tp]);
}

#[test]
fn while_one_leader_is_down_the_others_become_probe_targets() {
    let (mut h, t0, tp) = tracker();
    h.on_leaders("t", &[(0, 1), (1, 2), (2, 3), (3, 2)]);
    h.mark(&tp, Reason::Forced("x".into()), t0);
    let targets: Vec<i32> = h.healthy_leaders().into_iter().map(|(l, _)| l).collect();
    assert_eq!(targets, vec![2, 3]);
    h.mark_leader(2, "probe failed", t0);
    assert!(!h.is_healthy(&TopicPartition::new("t", 3)));
    assert_eq!(h.healthy_leaders().len(), 1);
}

#[test]
fn steady_acknowledgements_keep_a_busy_partition_healthy() {
    let (mut h, t0, tp) = tracker();
    for i in 0..100 {
        h.on_send(&tp, t0 + ms(i * 100));
        h.on_send(&tp, t0 + ms(i * 100));
        h.on_delivered(&tp, 0, None, t0 + ms(i * 100 + 50));
        assert!(h.tick(t0 + ms(i * 100 + 99)).is_empty());
    }
    assert!(h.is_healthy(&tp));
}

#[test]
fn a_retired_sessions_late_acknowledgement_does_not_end_the_fresh_sessions_grace() {
    let (mut h, t0, tp) = tracker();
    let other = TopicPartition::new("t", 1);
    h.on_session_start(4, t0);
    h.on_send(&tp, t0);
    h.on_delivered(&other, 3, None, t0 + ms(100));
    assert!(
        h.tick(t0 + ms(1500)).is_empty(),
        "session 4 is still connecting"
    );
    h.on_delivered(&other, 4, None, t0 + ms(1600));
    assert_eq!(h.tick(t0 + ms(1600)), vec![tp]);
}

#[test]
fn an_idle_partition_never_stalls() {
    let (mut h, t0, tp) = tracker();
    h.on_send(&tp, t0);
    h.on_delivered(&tp, 0, None, t0 + ms(5));
    assert!(h.tick(t0 + ms(60_000)).is_empty());
}

#[test]
fn recovery_needs_consecutive_probes_and_the_minimum_time() {
    let (mut h, t0, tp) = tracker();
    h.mark(&tp, Reason::Forced("test".into()), t0);
    assert!(!h.on_probe(&tp, true, t0 + ms(100)));
    assert!(
        !h.on_probe(&tp, false, t0 + ms(200)),
        "a failed probe resets the count"
    );
    assert!(!h.on_probe(&tp, true, t0 + ms(300)));
    assert!(
        !h.on_probe(&tp, true, t0 + ms(400)),
        "too early: min_unhealthy is 1 s"
    );
    assert!(h.on_probe(&tp, true, t0 + ms(1100)));
    assert!(h.is_healthy(&tp));
    let events = h.take_events();
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[1],
        HealthEvent {
            partition: tp,
            unhealthy: None
        }
    );
}

#[test]
fn a_broker_down_for_longer_than_the_stall_time_takes_its_partitions_down() {
    let (mut h, t0, tp) = tracker();
    h.on_leaders("t", &[(0, 1), (1, 2)]);
    let stat = |state: &str| BrokerStat {
        id: 1,
        state: state.into(),
        waitresp_cnt: 0,
        outbuf_cnt: 1,
        rxidle_us: -1,
        stateage_us: -1,
    };
    h.on_broker_stats(&[stat("UP")], t0);
    h.on_broker_stats(&[stat("CONNECT")], t0 + ms(500));
    assert!(h.is_healthy(&tp), "a short reconnect is not an outage");
    h.on_broker_stats(&[stat("DOWN")], t0 + ms(1200));
    assert!(!h.is_healthy(&tp));
    assert!(
        h.is_healthy(&TopicPartition::new("t", 1)),
        "broker 2's partition is fine"
    );
}

#[test]
fn a_broker_down_with_nothing_waiting_for_it_says_nothing_about_its_partitions() {
    let (mut h, t0, tp) = tracker();
    h.on_leaders("t", &[(0, 1)]);
    let stat = |state: &str| BrokerStat {
        id: 1,
        state: state.into(),
        waitresp_cnt: 0,
        outbuf_cnt: 0,
        rxidle_us: -1,
        stateage_us: -1,
    };
    h.on_broker_stats(&[stat("UP")], t0);
    h.on_broker_stats(&[stat("DOWN")], t0 + ms(5_000));
    assert!(h.is_healthy(&tp));
}

#[test]
fn a_silent_broker_with_waiting_requests_is_unhealthy_even_while_up() {
    let (mut h, t0, tp) = tracker();
    h.on_leaders("t", &[(0, 1)]);
    let silent = BrokerStat {
        id: 1,
        state: "UP".into(),
        waitresp_cnt: 3,
        outbuf_cnt: 0,
        rxidle_us: 1_500_000,
        stateage_us: -1,
    };
    h.on_broker_stats(&[silent], t0);
    assert!(!h.is_healthy(&tp));
    assert_eq!(h.unhealthy()[0].1, Reason::BrokerSilent { broker: 1 });
}

#[test]
fn probes_do_not_heal_a_partition_whose_leader_is_still_bad() {
    let (mut h, t0, tp) = tracker();
    h.on_leaders("t", &[(0, 1)]);
    let silent = BrokerStat {
        id: 1,
        state: "UP".into(),
        waitresp_cnt: 3,
        outbuf_cnt: 0,
        rxidle_us: 2_000_000,
        stateage_us: -1,
    };
    h.on_broker_stats(&[silent], t0);
    for i in 1..10 {
        assert!(!h.on_probe(&tp, true, t0 + ms(i * 500)));
    }
}

#[test]
fn a_transient_delivery_error_makes_the_partition_unhealthy() {
    let (mut h, t0, tp) = tracker();
    h.on_send(&tp, t0);
    h.on_transient_error(&tp, "MessageTimedOut", t0);
    assert!(!h.is_healthy(&tp));
    assert_eq!(h.outstanding(&tp), 0);
}

#[test]
fn a_leader_counts_as_acknowledging_only_within_the_window_of_its_last_ack() {
    let (mut h, t0, _) = tracker();
    h.on_leaders("t", &[(0, 1), (1, 2), (2, 3)]);
    h.on_send(&TopicPartition::new("t", 1), t0);
    h.on_delivered(&TopicPartition::new("t", 1), 0, None, t0 + ms(100));
    assert!(h.leader_acked_within(2, ms(1000), t0 + ms(1000)));
    assert!(!h.leader_acked_within(2, ms(1000), t0 + ms(1200)));
    assert!(
        !h.leader_acked_within(3, ms(1000), t0 + ms(200)),
        "never acknowledged"
    );
}

#[test]
fn a_record_sent_learns_the_highest_offset_acknowledged_before_it() {
    let (mut h, t0, tp) = tracker();
    assert_eq!(h.on_send(&tp, t0), None, "nothing acknowledged yet");
    h.on_delivered(&("t", 0), 0, Some(41), t0);
    h.on_delivered(&tp, 0, None, t0);
    assert_eq!(
        h.on_send(&("t", 0), t0),
        Some(41),
        "a report without offset keeps it"
    );
    h.on_delivered(&tp, 0, Some(40), t0);
    assert_eq!(
        h.on_send(&tp, t0),
        Some(41),
        "an older offset does not lower it"
    );
    assert_eq!(
        h.on_send(&("t", 1), t0),
        None,
        "another partition has its own"
    );
}

#[test]
fn a_partition_named_by_borrowed_parts_is_the_same_partition() {
    let (mut h, t0, tp) = tracker();
    h.on_send(&("t", 0), t0);
    assert_eq!(h.outstanding(&tp), 1);
    assert_eq!(h.tick(t0 + ms(1000)), vec![tp.clone()]);
    assert!(!h.is_healthy(&("t", 0)));
    assert!(h.is_healthy(&("t", 1)));
}

fn up_stat(rxidle: Duration) -> BrokerStat {
    BrokerStat {
        id: 1,
        state: "UP".into(),
        waitresp_cnt: 1,
        outbuf_cnt: 0,
        rxidle_us: rxidle.as_micros() as i64,
        stateage_us: -1,
    }
}

#[test]
fn a_slow_leader_that_still_sends_bytes_gets_the_longer_limit_before_a_stall() {
    let (mut h, t0, tp) = tracker();
    h.on_leaders("t", &[(0, 1)]);
    h.on_send(&tp, t0);
    for i in 1..20 {
        // Responses to other requests keep arriving: received 100 ms before each statistics.
        h.on_broker_stats(&[up_stat(ms(100))], t0 + ms(i * 500));
        let now = t0 + ms(i * 500 + 50);
        if now < t0 + ms(10_000) {
            assert!(h.tick(now).is_empty(), "still answering at {i}");
        }
    }
    assert_eq!(h.tick(t0 + ms(10_000)), vec![tp]);
}

#[test]
fn a_leader_that_went_silent_stalls_after_the_short_limit() {
    let (mut h, t0, tp) = tracker();
    h.on_leaders("t", &[(0, 1)]);
    h.on_send(&tp, t0);
    // Last heard from at t0 + 200 ms; every later statistics says the same.
    h.on_broker_stats(&[up_stat(ms(300))], t0 + ms(500));
    h.on_broker_stats(&[up_stat(ms(800))], t0 + ms(1000));
    assert!(h.tick(t0 + ms(1100)).is_empty(), "heard 900 ms ago");
    assert_eq!(h.tick(t0 + ms(1250)), vec![tp]);
}

#[test]
fn a_broker_setting_up_its_connection_is_down_only_once_stuck_in_it_for_the_stall_time() {
    let (mut h, t0, tp) = tracker();
    h.on_leaders("t", &[(0, 1)]);
    let stat = |state: &str, stateage: Duration| BrokerStat {
        id: 1,
        state: state.into(),
        waitresp_cnt: 0,
        outbuf_cnt: 10,
        rxidle_us: -1,
        stateage_us: stateage.as_micros() as i64,
    };
    h.on_broker_stats(&[stat("UP", ms(0))], t0);
    // Long after it was last up (an outage), a fresh session connects to it again.
    h.on_broker_stats(&[stat("APIVERSION_QUERY", ms(5))], t0 + ms(20_000));
    assert!(h.is_healthy(&tp), "a handshake under way is not an outage");
    h.on_broker_stats(&[stat("APIVERSION_QUERY", ms(1_000))], t0 + ms(21_000));
    assert!(!h.is_healthy(&tp), "a handshake held for the stall time is");
}
