//! Offline, unlisted-leader, under-replicated and under-min-ISR partitions; missing topics.

use super::*;

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
