//! `spillway doctor` against librdkafka's in-process mock cluster: 3 brokers, replication factor
//! 3, leaders spread; faults made with the test-support crate. The mock cluster does not offer
//! DescribeConfigs, so configuration-based verdicts are "unknown" here by design.

mod support;

use spillway_test_support::mock::Unreachable;
use spillway_test_support::{MockKafka, dead_port};
use support::{check_status, doctor, items};

fn cluster_with_topic(proxied: bool) -> MockKafka {
    let kafka = if proxied {
        MockKafka::with_proxies(3)
    } else {
        MockKafka::new(3)
    }
    .expect("mock cluster");
    kafka.create_topic("orders", 6).expect("topic");
    kafka
}

#[test]
fn a_healthy_mock_cluster_with_replication_factor_3_reports_ok_for_reachability() {
    let kafka = cluster_with_topic(false);
    let run = doctor(kafka.bootstrap(), &["--json", "--topic", "orders"]);
    let report = run.json();
    assert_eq!(check_status(&report, "reachability"), "ok", "{report:#}");
    assert_eq!(report["brokers"].as_array().unwrap().len(), 3);
    assert_eq!(
        items(
            &report,
            "durability",
            "topic orders",
            "replication factor 3"
        )[0]["status"],
        "ok"
    );
    assert!(
        items(&report, "partitions", "topic orders", "no leader").is_empty(),
        "{report:#}"
    );
    // The mock cannot answer DescribeConfigs: unknowns make it a warning, never OK or critical.
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert_eq!(report["exit_code"], 1);
}

#[test]
fn a_listed_but_unreachable_broker_is_critical_with_exit_code_2() {
    let kafka = cluster_with_topic(true);
    kafka.make_unreachable(2, Unreachable::Blackhole).unwrap();
    let run = doctor(kafka.bootstrap(), &["--json", "--topic", "orders"]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    let report = run.json();
    assert_eq!(check_status(&report, "reachability"), "critical");
    let broker2: Vec<_> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "reachability")
        .unwrap()["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["subject"].as_str().unwrap().starts_with("broker 2 "))
        .collect();
    assert_eq!(broker2.len(), 1);
    assert_eq!(broker2[0]["status"], "critical");
    let message = broker2[0]["message"].as_str().unwrap();
    assert!(message.contains("KAFKA-3686"), "{message}");
    assert!(message.contains("2 partitions it leads"), "{message}");
    for healthy in ["broker 1 ", "broker 3 "] {
        let item = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "reachability")
            .unwrap()["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["subject"].as_str().unwrap().starts_with(healthy))
            .unwrap();
        assert_eq!(item["status"], "ok", "{item}");
    }
}

#[test]
fn a_broker_advertising_a_port_where_nothing_listens_is_critical() {
    let kafka = cluster_with_topic(false);
    let dead = kafka.advertise_dead_port(3);
    let run = doctor(kafka.bootstrap(), &["--topic", "orders"]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    let line = run
        .stdout
        .lines()
        .find(|l| l.contains(&format!("broker 3 ({dead})")))
        .unwrap_or_else(|| panic!("no line for broker 3:\n{}", run.stdout));
    assert!(line.contains("[CRIT]"), "{line}");
    assert!(line.contains("TCP connect failed"), "{line}");
}

#[test]
fn a_leaderless_partition_is_reported_offline() {
    let kafka = cluster_with_topic(false);
    kafka
        .cluster()
        .partition_leader("orders", 4, None)
        .expect("unset leader");
    let run = doctor(kafka.bootstrap(), &["--json", "--topic", "orders"]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    let report = run.json();
    let offline = items(&report, "partitions", "topic orders", "offline (no leader)");
    assert_eq!(offline.len(), 1, "{report:#}");
    assert_eq!(offline[0]["status"], "critical");
    let message = offline[0]["message"].as_str().unwrap();
    assert!(message.contains("partition 4"), "{message}");
    assert!(!message.contains("partition 0"), "{message}");
}

#[test]
fn describe_configs_unsupported_is_reported_unknown_not_guessed() {
    let kafka = cluster_with_topic(false);
    let run = doctor(kafka.bootstrap(), &["--json", "--topic", "orders"]);
    let report = run.json();
    let min_isr = items(
        &report,
        "durability",
        "topic orders",
        "min.insync.replicas unknown:",
    );
    assert_eq!(min_isr.len(), 1, "{report:#}");
    assert_eq!(min_isr[0]["status"], "unknown");
    assert!(
        min_isr[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("min.insync.replicas unknown"),
        "{}",
        min_isr[0]
    );
    let unclean = items(
        &report,
        "durability",
        "topic orders",
        "unclean.leader.election",
    );
    assert_eq!(unclean[0]["status"], "unknown");
    let partitions = items(&report, "partitions", "topic orders", "under min ISR");
    assert_eq!(partitions[0]["status"], "unknown");
    let topic = &report["topics"][0];
    assert_eq!(topic["replication_factor"], 3);
    assert!(topic["min_insync_replicas"].is_null(), "{topic}");
    assert!(topic["failures_without_data_loss"].is_null(), "{topic}");
    assert!(topic["failures_while_writable"].is_null(), "{topic}");
    assert!(
        !run.stdout.contains("min.insync.replicas="),
        "a value was guessed"
    );
    // The mock names controller 0, which is not a listed broker: unknown, not "present".
    let controller = items(&report, "cluster", "controller", "");
    assert_eq!(controller[0]["status"], "unknown", "{}", controller[0]);
    assert_eq!(run.code, 1);
}

#[test]
fn an_unsafe_acks_1_property_is_reported_critical_by_the_lint() {
    let kafka = cluster_with_topic(false);
    let run = doctor(kafka.bootstrap(), &["--json", "--property", "acks=1"]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    let report = run.json();
    assert_eq!(check_status(&report, "producer_settings"), "critical");
    let acks = items(&report, "producer_settings", "acks", "acks=1");
    assert_eq!(acks.len(), 1, "{report:#}");
    assert_eq!(acks[0]["status"], "critical");
    assert_eq!(report["producer_findings"][0]["key"], "acks");
}

#[test]
fn json_output_parses_and_carries_the_same_verdicts_as_the_text_report() {
    let kafka = cluster_with_topic(true);
    kafka.make_unreachable(1, Unreachable::Refused).unwrap();
    let text = doctor(kafka.bootstrap(), &["--topic", "orders"]);
    let json = doctor(kafka.bootstrap(), &["--json", "--topic", "orders"]);
    assert_eq!(text.code, json.code);
    let report = json.json();
    assert_eq!(report["exit_code"], json.code);
    let first = text.stdout.lines().next().unwrap();
    assert_eq!(first, report["summary"].as_str().unwrap());
    let marker = |status: &str| match status {
        "ok" => "[ OK ]",
        "unknown" => "[UNKN]",
        "warning" => "[WARN]",
        "critical" => "[CRIT]",
        other => panic!("unknown status {other}"),
    };
    // Latencies differ between the two runs; statuses, titles and subjects must not.
    let mut from_json = Vec::new();
    for check in report["checks"].as_array().unwrap() {
        from_json.push(format!(
            "{} {}",
            marker(check["status"].as_str().unwrap()),
            check["title"].as_str().unwrap()
        ));
        for item in check["items"].as_array().unwrap() {
            from_json.push(format!(
                "  {} {}",
                marker(item["status"].as_str().unwrap()),
                item["subject"].as_str().unwrap()
            ));
        }
    }
    let from_text: Vec<String> = text
        .stdout
        .lines()
        .filter(|l| l.starts_with('[') || l.starts_with("  ["))
        .map(|l| match l.strip_prefix("  ") {
            Some(item) => format!("  {}", item.split_once(": ").unwrap().0),
            None => l.to_string(),
        })
        .collect();
    assert_eq!(from_text, from_json, "text:\n{}", text.stdout);
    assert!(
        from_json
            .iter()
            .any(|l| l.starts_with("  [CRIT] broker 1 "))
    );
}

#[test]
fn secrets_passed_as_properties_never_appear_in_any_output() {
    let kafka = cluster_with_topic(false);
    let secret = "hunter2-very-secret";
    for extra in [&[][..], &["--json"][..]] {
        let mut args = vec![
            "--property",
            "sasl.password=hunter2-very-secret",
            "--property",
            "ssl.key.password=hunter2-very-secret",
            "--property",
            "security.protocol=sasl_plaintext",
            "--property",
            "sasl.mechanism=PLAIN",
            "--property",
            "sasl.username=doctor",
        ];
        args.extend_from_slice(extra);
        let run = doctor(kafka.bootstrap(), &args);
        assert!(
            !run.stdout.contains(secret),
            "secret in stdout:\n{}",
            run.stdout
        );
        assert!(
            !run.stderr.contains(secret),
            "secret in stderr:\n{}",
            run.stderr
        );
        // The lint still speaks about the insecure combination, without the password.
        assert!(run.stdout.contains("sasl_plaintext"), "{}", run.stdout);
    }
    let malformed = doctor(
        kafka.bootstrap(),
        &["--property", "sasl.password:hunter2-very-secret"],
    );
    assert_eq!(malformed.code, 3, "{}", malformed.stdout);
    assert!(!malformed.stdout.contains(secret) && !malformed.stderr.contains(secret));
}

#[test]
fn no_broker_answering_for_the_bootstrap_servers_exits_3() {
    let nowhere = dead_port().to_string();
    let run = doctor(&nowhere, &["--json", "--timeout", "1s"]);
    assert_eq!(run.code, 3, "{}", run.stdout);
    let report = run.json();
    assert_eq!(report["verdict"], "unknown");
    assert!(report["could_not_run"].as_str().unwrap().contains(&nowhere));
    // The producer lint needs no broker, so it is still there.
    assert_eq!(check_status(&report, "producer_settings"), "ok");
}

#[test]
fn a_requested_topic_missing_from_the_cluster_is_critical() {
    let kafka = cluster_with_topic(false);
    let run = doctor(
        kafka.bootstrap(),
        &["--json", "--topic", "orders", "--topic", "nope"],
    );
    assert_eq!(run.code, 2, "{}", run.stdout);
    let report = run.json();
    let missing = items(
        &report,
        "partitions",
        "topic nope",
        "not in the cluster's metadata",
    );
    assert_eq!(missing[0]["status"], "critical");
}

#[test]
fn a_command_line_error_exits_3_because_nagios_reads_2_as_critical() {
    let run = doctor("127.0.0.1:1", &["--no-such-flag"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("--no-such-flag"), "{}", run.stderr);
}
