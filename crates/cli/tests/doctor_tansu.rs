//! `spillway doctor` against a real broker: Tansu 0.6.0, one broker (node 111) leading every
//! partition, so replication factor 1. Needs `SPILLWAY_TANSU_BIN` (set by `scripts/test`).

mod support;

use spillway_test_support::TansuBroker;
use support::{check_status, doctor, items};

#[test]
fn tansu_with_one_broker_is_critical_and_says_it_survives_no_broker_failure() {
    let broker = TansuBroker::start().expect("tansu (set SPILLWAY_TANSU_BIN)");
    broker.create_topics(&[("t", 3)]).expect("topic");
    let run = doctor(&broker.bootstrap(), &["--json", "--topic", "t"]);
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    let report = run.json();
    assert_eq!(check_status(&report, "reachability"), "ok", "{report:#}");
    assert_eq!(check_status(&report, "durability"), "critical");
    let rf = items(&report, "durability", "topic t", "replication factor 1");
    assert_eq!(rf[0]["status"], "critical", "{report:#}");
    let survived = items(
        &report,
        "durability",
        "topic t",
        "survives 0 broker failures without losing acknowledged records",
    );
    assert_eq!(survived.len(), 1, "{report:#}");
    assert_eq!(survived[0]["status"], "critical");
    let topic = &report["topics"][0];
    assert_eq!(topic["replication_factor"], 1);
    assert_eq!(topic["failures_without_data_loss"], 0);
    assert_eq!(topic["failures_while_writable"], 0);
    let text = doctor(&broker.bootstrap(), &["--topic", "t"]);
    println!("{}", text.stdout);
    assert_eq!(text.code, 2);
}
