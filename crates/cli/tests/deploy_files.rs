//! The deploy files are part of the product: `deploy/prometheus/alerts.yml`,
//! `deploy/grafana/spillway.json` and the runbooks in `docs/operations.md` must agree with each
//! other and with the metrics the gateway exports. `promtool` (from Debian's `prometheus` package)
//! checks PromQL and runs the rules' unit tests when it is on PATH (or named by `$PROMTOOL`);
//! otherwise that test says it skipped.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value as Json;
use serde_norway::Value as Yaml;

/// Every metric the gateway exports (names fixed; see docs/operations.md).
const METRICS: &[&str] = &[
    "spillway_http_requests_total",
    "spillway_http_request_duration_seconds",
    "spillway_records_total",
    "spillway_deliveries_total",
    "spillway_delivery_errors_total",
    "spillway_spool_records",
    "spillway_spool_bytes",
    "spillway_spool_capacity_bytes",
    "spillway_spool_oldest_record_age_seconds",
    "spillway_spool_fsync_duration_seconds",
    "spillway_breaker_state",
    "spillway_breaker_transitions_total",
    "spillway_sheds_total",
    "spillway_dead_letters_total",
    "spillway_failovers_total",
    "spillway_partition_healthy",
    "spillway_kafka_broker_reachable",
    "spillway_inflight_bytes",
    "spillway_dedup_found_total",
    "spillway_tail_checks_partial_total",
    "spillway_order_breaks_total",
];

/// The histograms among [`METRICS`]: queries read them as `_bucket`, `_sum`, `_count`.
const HISTOGRAMS: &[&str] = &[
    "spillway_http_request_duration_seconds",
    "spillway_spool_fsync_duration_seconds",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(relative: &str) -> String {
    let path = repo().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn alerts() -> Vec<Yaml> {
    let doc: Yaml = serde_norway::from_str(&read("deploy/prometheus/alerts.yml")).expect("YAML");
    doc["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("rules").clone())
        .collect()
}

fn dashboard() -> Json {
    serde_json::from_str(&read("deploy/grafana/spillway.json")).expect("dashboard JSON")
}

/// Panels, rows excluded.
fn panels(dashboard: &Json) -> Vec<&Json> {
    dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .filter(|p| p["type"] != "row")
        .collect()
}

fn panel_exprs(dashboard: &Json) -> Vec<String> {
    panels(dashboard)
        .iter()
        .flat_map(|p| p["targets"].as_array().expect("targets"))
        .map(|t| t["expr"].as_str().expect("expr").to_string())
        .collect()
}

/// The `spillway_*` metric names a PromQL expression reads, histogram suffixes removed.
fn metrics_in(expr: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("spillway_") {
        let start = i + at;
        let before_ok =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = expr[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .map_or(expr.len(), |e| start + e);
        if before_ok {
            let name = &expr[start..end];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|b| HISTOGRAMS.contains(b)))
                .unwrap_or(name);
            found.insert(base.to_string());
        }
        i = end;
    }
    found
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// (level, text) of every Markdown heading outside code fences.
fn headings(markdown: &str) -> Vec<(usize, String)> {
    let mut in_fence = false;
    let mut out = Vec::new();
    for line in markdown.lines() {
        if line.starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        let level = line.chars().take_while(|c| *c == '#').count();
        if (1..=6).contains(&level) && line[level..].starts_with(' ') {
            out.push((level, line[level..].trim().to_string()));
        }
    }
    out
}

fn anchors() -> BTreeSet<String> {
    headings(&read("docs/operations.md"))
        .iter()
        .map(|(_, h)| slug(h))
        .collect()
}

#[test]
fn every_alert_rule_has_an_expression_a_duration_a_severity_and_annotations() {
    let rules = alerts();
    assert!(rules.len() >= 7, "{} rules", rules.len());
    let mut names = BTreeSet::new();
    for rule in &rules {
        let name = rule["alert"].as_str().expect("every rule is an alert");
        assert!(names.insert(name.to_string()), "{name} twice");
        assert!(
            rule["expr"].as_str().is_some_and(|e| !e.trim().is_empty()),
            "{name}: expr"
        );
        assert!(rule["for"].as_str().is_some(), "{name}: for");
        let severity = rule["labels"]["severity"].as_str();
        assert!(
            matches!(severity, Some("warning" | "critical")),
            "{name}: severity {severity:?}"
        );
        for key in ["summary", "description", "runbook_url"] {
            assert!(
                rule["annotations"][key]
                    .as_str()
                    .is_some_and(|v| !v.is_empty()),
                "{name}: annotation {key}"
            );
        }
    }
    for wanted in [
        "SpillwayBreakerOpen",
        "SpillwaySpoolOldestRecordOld",
        "SpillwaySpoolNearlyFull",
        "SpillwayDeadLettersIncreasing",
        "SpillwayDeliveryErrorRateHigh",
        "SpillwayKafkaBrokerUnreachable",
        "SpillwayPartitionUnhealthy",
        "SpillwayOrderBroken",
        "SpillwayTailCheckPartial",
    ] {
        assert!(names.contains(wanted), "missing alert {wanted}");
    }
    let breaker = rules
        .iter()
        .find(|r| r["alert"] == "SpillwayBreakerOpen")
        .unwrap();
    assert_eq!(breaker["for"].as_str(), Some("1m"));
}

#[test]
fn every_metric_an_alert_or_a_panel_reads_is_one_the_gateway_exports() {
    let known: BTreeSet<&str> = METRICS.iter().copied().collect();
    let exprs = alerts()
        .iter()
        .map(|r| r["expr"].as_str().unwrap().to_string())
        .chain(panel_exprs(&dashboard()))
        .collect::<Vec<_>>();
    for expr in &exprs {
        let used = metrics_in(expr);
        assert!(!used.is_empty(), "reads no spillway metric: {expr}");
        for metric in used {
            assert!(
                known.contains(metric.as_str()),
                "unknown metric {metric} in {expr}"
            );
        }
    }
}

#[test]
fn the_dashboard_covers_every_exported_metric() {
    let used: BTreeSet<String> = panel_exprs(&dashboard())
        .iter()
        .flat_map(|e| metrics_in(e))
        .collect();
    for metric in METRICS {
        assert!(used.contains(*metric), "no panel shows {metric}");
    }
}

#[test]
fn every_runbook_link_resolves_to_a_heading_of_the_operations_guide() {
    let anchors = anchors();
    for rule in alerts() {
        let name = rule["alert"].as_str().unwrap();
        let link = rule["annotations"]["runbook_url"].as_str().unwrap();
        let (path, anchor) = link.split_once('#').expect("runbook link has an anchor");
        assert_eq!(path, "docs/operations.md", "{name}");
        assert!(anchors.contains(anchor), "{name}: no heading for #{anchor}");
        assert_eq!(
            anchor,
            slug(name),
            "{name}: the runbook heading is the alert's name"
        );
    }
}

#[test]
fn every_alert_section_of_the_operations_guide_belongs_to_an_alert_and_links_resolve() {
    let guide = read("docs/operations.md");
    let names: BTreeSet<String> = alerts()
        .iter()
        .map(|r| r["alert"].as_str().unwrap().to_string())
        .collect();
    let sections: Vec<String> = headings(&guide)
        .into_iter()
        .filter(|(level, h)| *level == 3 && h.starts_with("Spillway"))
        .map(|(_, h)| h)
        .collect();
    assert_eq!(sections.iter().cloned().collect::<BTreeSet<_>>(), names);
    let anchors = anchors();
    for (i, _) in guide.match_indices("](#") {
        let rest = &guide[i + 3..];
        let anchor = &rest[..rest.find(')').expect("closed link")];
        assert!(anchors.contains(anchor), "dangling link #{anchor}");
    }
}

#[test]
fn the_dashboard_is_grafana_json_with_a_prometheus_datasource_variable_and_the_panels_asked_for() {
    let d = dashboard();
    assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 36));
    assert!(d["uid"].as_str().is_some() && d["title"].as_str().is_some());
    let vars = d["templating"]["list"].as_array().expect("templating");
    let ds = vars
        .iter()
        .find(|v| v["name"] == "datasource")
        .expect("a datasource variable");
    assert_eq!(
        (&ds["type"], &ds["query"]),
        (&"datasource".into(), &"prometheus".into())
    );
    let mut ids = BTreeSet::new();
    for p in d["panels"].as_array().unwrap() {
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate id"
        );
        let grid = &p["gridPos"];
        for k in ["h", "w", "x", "y"] {
            assert!(grid[k].as_u64().is_some(), "gridPos.{k} of {}", p["title"]);
        }
        assert!(grid["x"].as_u64().unwrap() + grid["w"].as_u64().unwrap() <= 24);
    }
    for p in panels(&d) {
        let title = p["title"].as_str().unwrap();
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
        }
    }
    let titles: Vec<String> = panels(&d)
        .iter()
        .map(|p| p["title"].as_str().unwrap().to_lowercase())
        .collect();
    for wanted in [
        "intake by outcome",
        "delivery error rate",
        "breaker state",
        "spool depth",
        "spool oldest record age",
        "spool fill",
        "fsync latency p50 / p99",
        "sheds",
        "dead letters by reason",
        "failovers",
        "partition health",
        "broker reachability",
    ] {
        assert!(
            titles.iter().any(|t| t.contains(wanted)),
            "no panel for {wanted}"
        );
    }
}

fn promtool() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PROMTOOL") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("promtool"))
            .find(|p| p.is_file())
    })
}

fn run_promtool(promtool: &Path, args: &[&str], dir: &Path) {
    let out = Command::new(promtool)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running promtool");
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_accepts_the_rules_their_unit_tests_and_the_dashboard_queries() {
    let Some(promtool) = promtool() else {
        eprintln!(
            "note: promtool is not on PATH (Debian package `prometheus`); skipped `promtool check rules` and `promtool test rules`. The YAML, metric and runbook checks above still ran."
        );
        return;
    };
    let dir = repo().join("deploy/prometheus");
    run_promtool(&promtool, &["check", "rules", "alerts.yml"], &dir);
    run_promtool(&promtool, &["test", "rules", "alerts_test.yml"], &dir);
    // Dashboard queries as recording rules, Grafana's variables replaced by what they expand to.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in panel_exprs(&dashboard()).iter().enumerate() {
        let expr = expr
            .replace("$__rate_interval", "5m")
            .replace("$instance", ".*");
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {}\n",
            serde_json::to_string(&expr).unwrap()
        ));
    }
    let tmp = std::env::temp_dir().join(format!(
        "spillway-dashboard-rules-{}.yml",
        std::process::id()
    ));
    std::fs::write(&tmp, rules).unwrap();
    let result = std::panic::catch_unwind(|| {
        run_promtool(&promtool, &["check", "rules", tmp.to_str().unwrap()], &dir)
    });
    let _ = std::fs::remove_file(&tmp);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
