//! The controller and each broker's TCP connect and Kafka round trip.

use super::*;

#[test]
fn no_active_controller_is_critical_and_an_unlisted_one_is_unknown() {
    let mut facts = healthy();
    facts.controller = Controller::Reported { id: -1 };
    let report = evaluate(&facts);
    assert_eq!(
        item(&report, CheckName::Cluster, "no active controller").status,
        Status::Critical
    );
    facts.controller = Controller::Reported { id: 0 };
    let report = evaluate(&facts);
    let c = item(&report, CheckName::Cluster, "not a listed broker");
    assert_eq!(c.status, Status::Unknown);
    facts.controller = Controller::Unknown {
        reason: "TLS".into(),
    };
    assert_eq!(
        item(&evaluate(&facts), CheckName::Cluster, "unknown: TLS").status,
        Status::Unknown
    );
}

#[test]
fn a_broker_that_accepts_tcp_but_never_answers_is_critical_and_named_kafka_3686() {
    let mut facts = healthy();
    facts.probes[0].round_trip = RoundTrip::TimedOut { after_millis: 2000 };
    let report = evaluate(&facts);
    let b1 = item(&report, CheckName::Reachability, "did not answer");
    assert_eq!(b1.status, Status::Critical);
    assert_eq!(b1.subject, "broker 1 (127.0.0.1:9001)");
    assert!(b1.message.contains("KAFKA-3686"));
    // Partitions 0 of RF 3 are led by broker 1 in `healthy`.
    assert!(
        b1.message.contains("1 partition it leads"),
        "{}",
        b1.message
    );
    assert_eq!(report.exit_code, 2);
}

#[test]
fn a_refused_or_silent_tcp_connect_is_critical() {
    let mut facts = healthy();
    facts.probes[1].tcp = TcpOutcome::Failed {
        error: "Connection refused".into(),
    };
    facts.probes[2].tcp = TcpOutcome::TimedOut { after_millis: 2000 };
    let report = evaluate(&facts);
    assert_eq!(
        item(&report, CheckName::Reachability, "Connection refused").status,
        Status::Critical
    );
    assert_eq!(
        item(&report, CheckName::Reachability, "timed out after 2000 ms").status,
        Status::Critical
    );
}

#[test]
fn a_slow_round_trip_is_a_warning() {
    let mut facts = healthy();
    facts.probes[0].round_trip = RoundTrip::ApiVersions {
        millis: 1500.0,
        api_count: 60,
        describe_configs: true,
    };
    let report = evaluate(&facts);
    assert_eq!(
        item(&report, CheckName::Reachability, "(slow)").status,
        Status::Warning
    );
}
