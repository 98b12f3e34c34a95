//! Replication factor, min.insync.replicas, unclean election, failures survived, fallbacks.

use super::*;

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
