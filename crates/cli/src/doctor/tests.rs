//! The doctor's judgement on hand-made facts: every verdict without a cluster.

use std::collections::BTreeMap;
use std::time::Duration;

use spillway::KafkaSettings;

use super::evaluate::evaluate;
use super::facts::{
    Broker, BrokerProbe, Controller, DurabilityConfig, Facts, Lookup, Partition, RoundTrip,
    Setting, TcpOutcome, Topic,
};
use super::properties::{parse_properties, scrub, scrub_json};
use super::report::{CheckName, Item, Report, Status, Verdict};

fn broker(id: i32) -> Broker {
    Broker {
        id,
        host: "127.0.0.1".into(),
        port: 9000 + id as u16,
    }
}

fn healthy_probe(id: i32) -> BrokerProbe {
    BrokerProbe {
        broker: broker(id),
        tcp: TcpOutcome::Connected { millis: 0.2 },
        round_trip: RoundTrip::ApiVersions {
            millis: 0.5,
            api_count: 60,
            describe_configs: true,
        },
    }
}

/// Partition `id` led by broker `id % 3 + 1`, replicas 1..=rf, ISR the first `isr` replicas.
fn partition(id: i32, rf: i32, isr: i32) -> Partition {
    Partition {
        id,
        leader: Some(id % rf.max(1) + 1),
        replicas: (1..=rf).collect(),
        isr: (1..=isr).collect(),
        error: None,
    }
}

fn setting<T>(value: T, source: &str) -> Option<Setting<T>> {
    Some(Setting {
        value,
        source: source.into(),
    })
}

fn config(min_isr: u32, unclean: bool) -> Lookup<DurabilityConfig> {
    Lookup::Known(DurabilityConfig {
        min_insync_replicas: setting(min_isr, "topic"),
        unclean_leader_election: setting(unclean, "Kafka default"),
        default_replication_factor: setting(3, "broker (server.properties)"),
    })
}

/// A healthy 3-broker cluster with topic `orders` (3 partitions, RF 3, min ISR 2).
fn healthy() -> Facts {
    Facts {
        bootstrap: "127.0.0.1:9001".into(),
        cluster_id: Some("c1".into()),
        brokers: (1..=3).map(broker).collect(),
        controller: Controller::Reported { id: 2 },
        topics: vec![Topic {
            name: "orders".into(),
            error: None,
            partitions: (0..3).map(|p| partition(p, 3, 3)).collect(),
        }],
        missing_topics: Vec::new(),
        topic_configs: BTreeMap::from([("orders".to_string(), config(2, false))]),
        broker_configs: (1..=3).map(|b| (b, config(2, false))).collect(),
        probes: (1..=3).map(healthy_probe).collect(),
        producer_findings: Vec::new(),
        slow_round_trip: Duration::from_secs(1),
    }
}

fn items_of(report: &Report, check: CheckName) -> &[Item] {
    &report.check(check).expect("check present").items
}

/// The one item of `check` whose message contains `needle`.
fn item<'a>(report: &'a Report, check: CheckName, needle: &str) -> &'a Item {
    let found: Vec<&Item> = items_of(report, check)
        .iter()
        .filter(|i| i.message.contains(needle))
        .collect();
    assert_eq!(found.len(), 1, "want one item with {needle:?}: {found:#?}");
    found[0]
}

fn with_topic(mut facts: Facts, partitions: Vec<Partition>, min_isr: u32, unclean: bool) -> Facts {
    facts.topics[0].partitions = partitions;
    facts
        .topic_configs
        .insert("orders".into(), config(min_isr, unclean));
    facts
}

#[test]
fn a_healthy_cluster_is_ok_everywhere_and_exits_0() {
    let report = evaluate(&healthy());
    for check in &report.checks {
        assert_eq!(check.status, Status::Ok, "{check:#?}");
    }
    assert_eq!(report.verdict, Verdict::Ok);
    assert_eq!(report.exit_code, 0);
    assert!(report.summary.starts_with("spillway doctor OK: 0 critical"));
    assert_eq!(report.topics[0].failures_without_data_loss, Some(1));
    assert_eq!(report.topics[0].failures_while_writable, Some(1));
}

#[test]
fn a_partition_without_a_leader_is_offline_and_critical() {
    let mut facts = healthy();
    facts.topics[0].partitions[1].leader = None;
    facts.topics[0].partitions[1].error = Some("LeaderNotAvailable".into());
    let report = evaluate(&facts);
    let offline = item(&report, CheckName::Partitions, "offline (no leader)");
    assert_eq!(offline.status, Status::Critical);
    assert!(offline.message.contains("partition 1 (LeaderNotAvailable)"));
    assert_eq!(report.exit_code, 2);
}

#[test]
fn a_partition_led_by_an_unlisted_broker_is_critical() {
    let mut facts = healthy();
    facts.topics[0].partitions[0].leader = Some(7);
    let report = evaluate(&facts);
    let unlisted = item(&report, CheckName::Partitions, "does not list");
    assert_eq!(unlisted.status, Status::Critical);
    assert!(unlisted.message.contains("0 (leader 7)"));
}

#[test]
fn an_isr_smaller_than_the_replica_set_is_under_replicated_and_a_warning() {
    let facts = with_topic(
        healthy(),
        vec![partition(0, 3, 3), partition(1, 3, 2)],
        2,
        false,
    );
    let report = evaluate(&facts);
    let under = item(&report, CheckName::Partitions, "under-replicated");
    assert_eq!(under.status, Status::Warning);
    assert!(
        under.message.contains("partition 1 (ISR 2/3)"),
        "{}",
        under.message
    );
    assert_eq!(report.exit_code, 1);
}

#[test]
fn an_isr_below_min_insync_replicas_is_critical_because_acks_all_writes_are_refused() {
    let facts = with_topic(
        healthy(),
        vec![partition(0, 3, 1), partition(1, 3, 3)],
        2,
        false,
    );
    let report = evaluate(&facts);
    let below = item(&report, CheckName::Partitions, "under min ISR");
    assert_eq!(below.status, Status::Critical);
    assert!(
        below.message.contains("partition 0 (ISR 1)"),
        "{}",
        below.message
    );
    assert!(below.message.contains("NOT_ENOUGH_REPLICAS"));
    assert_eq!(report.exit_code, 2);
}

#[test]
fn failures_survived_are_min_isr_minus_one_for_data_and_rf_minus_min_isr_for_writes() {
    // (replication factor, min.insync.replicas) -> (without data loss, while writable)
    let table = [
        ((3, 2), (1, 1)),
        ((3, 1), (0, 2)),
        ((5, 2), (1, 3)),
        ((5, 3), (2, 2)),
        ((3, 3), (2, 0)),
        ((3, 4), (2, 0)),
        ((1, 1), (0, 0)),
    ];
    for ((rf, m), (loss, writable)) in table {
        let facts = with_topic(healthy(), vec![partition(0, rf, rf)], m, false);
        let fig = &evaluate(&facts).topics[0];
        assert_eq!(
            (fig.failures_without_data_loss, fig.failures_while_writable),
            (Some(loss), Some(writable)),
            "RF {rf}, min ISR {m}"
        );
    }
}

#[test]
fn min_isr_of_one_is_critical_even_though_writes_survive_two_failures() {
    let report = evaluate(&with_topic(healthy(), vec![partition(0, 3, 3)], 1, false));
    let m = item(&report, CheckName::Durability, "min.insync.replicas=1");
    assert_eq!(m.status, Status::Critical);
    let survives = item(&report, CheckName::Durability, "survives 0 broker failures");
    assert_eq!(survives.status, Status::Critical);
    assert!(survives.message.contains("and 2 without refusing"));
}

#[test]
fn min_isr_equal_to_rf_warns_that_one_failure_stops_writes() {
    let report = evaluate(&with_topic(healthy(), vec![partition(0, 3, 3)], 3, false));
    let m = item(
        &report,
        CheckName::Durability,
        "equals the replication factor",
    );
    assert_eq!(m.status, Status::Warning);
    let survives = item(&report, CheckName::Durability, "survives 2 broker failures");
    assert_eq!(survives.status, Status::Warning);
    assert_eq!(report.verdict, Verdict::Warning);
}

#[test]
fn min_isr_above_rf_is_critical_because_every_write_is_refused() {
    let report = evaluate(&with_topic(healthy(), vec![partition(0, 3, 3)], 4, false));
    let m = item(
        &report,
        CheckName::Durability,
        "exceeds the replication factor",
    );
    assert_eq!(m.status, Status::Critical);
}

#[test]
fn replication_factor_two_is_a_warning_and_one_is_critical() {
    let two = evaluate(&with_topic(healthy(), vec![partition(0, 2, 2)], 1, false));
    let rf = item(&two, CheckName::Durability, "replication factor 2");
    assert_eq!(rf.status, Status::Warning);
    let one = evaluate(&with_topic(healthy(), vec![partition(0, 1, 1)], 1, false));
    let rf = item(&one, CheckName::Durability, "replication factor 1");
    assert_eq!(rf.status, Status::Critical);
}

#[test]
fn unclean_leader_election_enabled_is_critical() {
    let report = evaluate(&with_topic(healthy(), vec![partition(0, 3, 3)], 2, true));
    let unclean = item(
        &report,
        CheckName::Durability,
        "unclean.leader.election.enable=true",
    );
    assert_eq!(unclean.status, Status::Critical);
    assert_eq!(report.exit_code, 2);
}

#[test]
fn replication_factor_one_survives_no_failure_even_when_min_isr_is_unknown() {
    let mut facts = with_topic(healthy(), vec![partition(0, 1, 1)], 1, false);
    facts.topic_configs.insert(
        "orders".into(),
        Lookup::Unknown("DescribeConfigs unsupported".into()),
    );
    facts.broker_configs.clear();
    let report = evaluate(&facts);
    assert_eq!(report.topics[0].failures_without_data_loss, Some(0));
    assert_eq!(report.topics[0].min_insync_replicas, None);
    let survives = item(&report, CheckName::Durability, "survives 0 broker failures");
    assert_eq!(survives.status, Status::Critical);
}

#[test]
fn unknown_configuration_is_reported_unknown_with_its_reason_and_counts_as_a_warning() {
    let mut facts = healthy();
    let why = "DescribeConfigs failed: UnsupportedFeature";
    facts
        .topic_configs
        .insert("orders".into(), Lookup::Unknown(why.into()));
    facts.broker_configs = (1..=3).map(|b| (b, Lookup::Unknown(why.into()))).collect();
    let report = evaluate(&facts);
    let m = item(
        &report,
        CheckName::Durability,
        "min.insync.replicas unknown:",
    );
    assert_eq!(m.status, Status::Unknown);
    assert!(m.message.contains(why));
    let survives = item(
        &report,
        CheckName::Durability,
        "broker failures survived unknown",
    );
    assert!(survives.message.contains("at most 2"));
    assert_eq!(report.topics[0].failures_without_data_loss, None);
    let isr = item(&report, CheckName::Partitions, "cannot tell");
    assert_eq!(isr.status, Status::Unknown);
    // The three brokers' identical unknowns are one item.
    let defaults = item(
        &report,
        CheckName::Durability,
        "defaults for new topics unknown",
    );
    assert_eq!(defaults.subject, "brokers 1, 2, 3");
    assert_eq!(report.verdict, Verdict::Warning);
    assert_eq!(report.exit_code, 1);
}

#[test]
fn an_unreadable_topic_config_falls_back_to_the_weakest_broker_default_and_says_so() {
    let mut facts = healthy();
    facts
        .topic_configs
        .insert("orders".into(), Lookup::Unknown("denied".into()));
    facts.broker_configs.insert(3, config(1, false));
    let report = evaluate(&facts);
    assert_eq!(report.topics[0].min_insync_replicas, Some(1));
    let m = item(
        &report,
        CheckName::Durability,
        "min.insync.replicas=1 (broker default",
    );
    assert_eq!(m.status, Status::Critical);
    assert!(m.message.contains("denied"), "{}", m.message);
    let weak = item(
        &report,
        CheckName::Durability,
        "min.insync.replicas=1 (weak)",
    );
    assert_eq!(
        (weak.status, weak.subject.as_str()),
        (Status::Warning, "broker 3")
    );
}

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

#[test]
fn lint_findings_become_items_with_the_lint_severity_and_no_secret() {
    let mut facts = healthy();
    facts.producer_findings = KafkaSettings::new("b:9092")
        .property("acks", "1")
        .property("retries", "0")
        .property("sasl.password", "hunter2")
        .property("security.protocol", "sasl_plaintext")
        .property("sasl.mechanism", "PLAIN")
        .lint();
    let report = evaluate(&facts);
    assert_eq!(
        item(&report, CheckName::ProducerSettings, "acks=1").status,
        Status::Critical
    );
    assert_eq!(
        item(&report, CheckName::ProducerSettings, "retries=0").status,
        Status::Warning
    );
    let json = serde_json::to_string(&report).unwrap();
    assert!(!json.contains("hunter2"));
    assert_eq!(report.exit_code, 2);
}

#[test]
fn a_missing_topic_is_critical() {
    let mut facts = healthy();
    facts.missing_topics = vec!["nope".into()];
    let report = evaluate(&facts);
    let missing = item(
        &report,
        CheckName::Partitions,
        "not in the cluster's metadata",
    );
    assert_eq!(
        (missing.status, missing.subject.as_str()),
        (Status::Critical, "topic nope")
    );
}

#[test]
fn a_report_that_could_not_run_exits_3_whatever_its_checks_say() {
    let report = Report::could_not_run("b:9092", "no broker answered");
    assert_eq!((report.verdict, report.exit_code), (Verdict::Unknown, 3));
    assert!(report.summary.contains("could not run: no broker answered"));
}

#[test]
fn malformed_properties_are_refused_without_quoting_them() {
    let err = parse_properties(&["acks=all".into(), "sasl.password:hunter2".into()]).unwrap_err();
    assert!(
        err.contains("number 2") && !err.contains("hunter2"),
        "{err}"
    );
    let ok = parse_properties(&["sasl.jaas.config=a=b".into()]).unwrap();
    assert_eq!(ok, vec![("sasl.jaas.config".into(), "a=b".into())]);
}

#[test]
fn scrubbing_removes_secrets_and_keeps_json_valid() {
    let secrets = vec!["hunter2-long".to_string(), "hunter2".to_string()];
    assert_eq!(
        scrub("x hunter2-long y hunter2", &secrets),
        "x [redacted] y [redacted]"
    );
    let mut v = serde_json::json!({"a": ["pw hunter2"], "hunter2": 1, "n": 7});
    scrub_json(&mut v, &secrets);
    let text = serde_json::to_string(&v).unwrap();
    assert!(!text.contains("hunter2"), "{text}");
    assert_eq!(v["n"], 7);
}

#[test]
fn doctor_args_debug_output_redacts_secret_properties() {
    use clap::Parser;
    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: super::DoctorArgs,
    }
    let w = Wrapper::parse_from([
        "x",
        "--bootstrap",
        "b:1",
        "--property",
        "sasl.password=hunter2",
        "--property",
        "acks=all",
    ]);
    let debug = format!("{:?}", w.args);
    assert!(
        !debug.contains("hunter2") && debug.contains("acks=all"),
        "{debug}"
    );
}
