//! Whole reports (verdict, exit code), the producer lint, and secret handling.

use super::*;

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
        args: crate::doctor::DoctorArgs,
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
