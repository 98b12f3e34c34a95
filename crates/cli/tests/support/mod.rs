//! Running the real `spillway` binary from tests, against clusters the test process owns (the
//! librdkafka mock cluster listens on loopback, so a child process can reach it).

#![allow(dead_code)]

use std::process::Command;

use serde_json::Value;

/// One finished `spillway doctor` run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The `--json` report (panics with the output when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("not JSON ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr)
        })
    }
}

/// Runs `spillway doctor --bootstrap <bootstrap> <extra...>`, with `--timeout 2s` unless `extra`
/// sets one.
pub fn doctor(bootstrap: &str, extra: &[&str]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_spillway"));
    command.args(["doctor", "--bootstrap", bootstrap]);
    if !extra.contains(&"--timeout") {
        command.args(["--timeout", "2s"]);
    }
    let out = command
        .args(extra)
        .output()
        .expect("running the spillway binary");
    Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The status of check `name` in a JSON report.
pub fn check_status(report: &Value, name: &str) -> String {
    check(report, name)["status"]
        .as_str()
        .expect("status is a string")
        .to_string()
}

/// The check `name` of a JSON report.
pub fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .expect("checks is an array")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report:#}"))
}

/// The items of check `name` whose subject is `subject` and whose message contains `needle`.
pub fn items<'a>(report: &'a Value, name: &str, subject: &str, needle: &str) -> Vec<&'a Value> {
    check(report, name)["items"]
        .as_array()
        .expect("items is an array")
        .iter()
        .filter(|i| i["subject"] == subject && i["message"].as_str().unwrap_or("").contains(needle))
        .collect()
}
