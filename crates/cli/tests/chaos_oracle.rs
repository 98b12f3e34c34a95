//! The chaos run's oracle catches a planted bug, and the same run without the bug is clean.
//!
//! The planted bug is `[library.drain] dedup = false` (`--no-drain-dedup`): after a restart the
//! forwarder re-sends the records the spool had not yet checkpointed as delivered, without
//! checking the partition's tail for them. The schedule is only gateway kills right after a
//! drain started (`--faults gateway-kill-drain`), with the drain rate limited so each kill lands
//! mid-drain; the spool checkpoints once a second, so every kill leaves delivered records not
//! yet checkpointed, and those come back as duplicates.
//!
//! The long seeded run with every fault kind is `scripts/test`'s last step (not repeated here).
//! Needs Tansu (`SPILLWAY_TANSU_BIN`, set by `scripts/test`).

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn chaos(out: &Path, extra: &[&str]) -> (Option<i32>, Value, String) {
    let json = out.join("result.json");
    let output = Command::new(env!("CARGO_BIN_EXE_spillway"))
        .args([
            "chaos",
            "--duration",
            "40s",
            "--seed",
            "20261124",
            "--rate",
            "300",
            "--faults",
            "gateway-kill-drain",
            "--faults-min",
            "4",
            "--drain-rate",
            "400",
        ])
        .args(extra)
        .arg("--out")
        .arg(out)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("running spillway chaos");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report = std::fs::read_to_string(&json)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_else(|| panic!("no JSON report\n{stdout}\n{stderr}"));
    (output.status.code(), report, format!("{stdout}\n{stderr}"))
}

#[test]
fn the_oracle_reports_duplicates_when_the_drain_dedup_is_planted_off() {
    let out = tempfile::tempdir().unwrap();
    let (code, report, log) = chaos(out.path(), &["--no-drain-dedup"]);
    println!("{log}");
    assert_eq!(code, Some(1), "a planted bug must fail the run");
    assert_eq!(report["verdict"], "FAIL");
    assert!(
        report["oracle"]["duplicated"].as_u64().unwrap() > 0,
        "the oracle must see the duplicates: {:#}",
        report["oracle"]
    );
    assert!(report["faults_total"].as_u64().unwrap() >= 3, "{log}");
}

#[test]
fn the_same_run_with_the_drain_dedup_on_is_clean() {
    let out = tempfile::tempdir().unwrap();
    let (code, report, log) = chaos(out.path(), &[]);
    println!("{log}");
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(report["verdict"], "PASS");
    for finding in ["lost", "duplicated", "corrupted", "reordered_per_key"] {
        assert_eq!(report["oracle"][finding], 0, "{finding}: {log}");
    }
    assert!(report["records"]["acknowledged"].as_u64().unwrap() > 1000);
    assert!(report["faults_total"].as_u64().unwrap() >= 3, "{log}");
    assert!(out.path().join("chaos.svg").is_file());
}
