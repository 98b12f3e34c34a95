//! The doctor's verdicts: one [`Status`] per item, items grouped into [`Check`]s, and a
//! [`Report`] that knows its Nagios exit code. Pure data; `render` prints it and `serde`
//! serialises it for `--json`.

use std::process::ExitCode;

use serde::Serialize;
use spillway::Finding;

use super::facts::{BrokerProbe, Controller};

/// How one item stands. Ordered from best to worst for the purpose of picking a check's status;
/// [`Status::Unknown`] sits between OK and warning because "we could not tell" must not pass as OK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Checked and fine.
    Ok,
    /// Could not be checked (a broker did not answer an API, or answered something we cannot
    /// interpret). Counts as a warning for the exit code.
    Unknown,
    /// Weakens availability, or will lose data if something else also goes wrong.
    Warning,
    /// Can lose or refuse acknowledged records now, or on the next single failure.
    Critical,
}

impl Status {
    /// The fixed-width marker the text report prints.
    pub fn marker(self) -> &'static str {
        match self {
            Status::Ok => "[ OK ]",
            Status::Unknown => "[UNKN]",
            Status::Warning => "[WARN]",
            Status::Critical => "[CRIT]",
        }
    }

    /// The Nagios exit code this status contributes: unknown counts as a warning.
    pub fn exit_code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Unknown | Status::Warning => 1,
            Status::Critical => 2,
        }
    }
}

/// One line of a check: what it is about, how it stands, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    pub status: Status,
    /// What the item is about: `broker 2 (127.0.0.1:9092)`, `topic orders`, `acks`.
    pub subject: String,
    /// What was found and what it means, in one sentence or two.
    pub message: String,
}

impl Item {
    pub fn new(status: Status, subject: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            subject: subject.into(),
            message: message.into(),
        }
    }
}

/// Which check a group of items belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckName {
    /// Brokers listed and the controller.
    Cluster,
    /// Offline, under-replicated and under-min-ISR partitions.
    Partitions,
    /// Replication factor, min.insync.replicas, unclean election, failures survived.
    Durability,
    /// TCP connect and a Kafka round trip to every listed broker, from this host.
    Reachability,
    /// Spillway's own producer settings, judged by `spillway::lint`.
    ProducerSettings,
}

impl CheckName {
    pub fn title(self) -> &'static str {
        match self {
            CheckName::Cluster => "Cluster",
            CheckName::Partitions => "Partitions",
            CheckName::Durability => "Durability settings",
            CheckName::Reachability => "Broker reachability from this host",
            CheckName::ProducerSettings => "Spillway producer settings",
        }
    }
}

/// A group of items; its status is the worst of them (OK when empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: CheckName,
    pub title: &'static str,
    pub status: Status,
    pub items: Vec<Item>,
}

impl Check {
    pub fn new(name: CheckName, items: Vec<Item>) -> Self {
        let status = items.iter().map(|i| i.status).max().unwrap_or(Status::Ok);
        Self {
            name,
            title: name.title(),
            status,
            items,
        }
    }
}

/// Durability figures for one topic, for `--json` readers who want numbers, not sentences.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicDurability {
    pub topic: String,
    pub partitions: usize,
    /// The smallest replica count among the topic's partitions.
    pub replication_factor: Option<usize>,
    /// Effective `min.insync.replicas`, `None` when unknown.
    pub min_insync_replicas: Option<u32>,
    /// Where `min_insync_replicas` came from: `topic`, `broker default`, ...
    pub min_insync_replicas_source: Option<String>,
    pub unclean_leader_election: Option<bool>,
    /// Broker failures survived without losing an acknowledged record (acks=all):
    /// min(min.insync.replicas, RF) − 1. `None` when unknown.
    pub failures_without_data_loss: Option<u32>,
    /// Broker failures survived while acks=all writes still succeed: RF − min.insync.replicas.
    pub failures_while_writable: Option<u32>,
}

/// The overall verdict, as Nagios names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    Warning,
    Critical,
    /// The doctor could not run (no broker answered for the bootstrap servers): exit code 3.
    Unknown,
}

impl Verdict {
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Ok => 0,
            Verdict::Warning => 1,
            Verdict::Critical => 2,
            Verdict::Unknown => 3,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Verdict::Ok => "OK",
            Verdict::Warning => "WARNING",
            Verdict::Critical => "CRITICAL",
            Verdict::Unknown => "UNKNOWN",
        }
    }

    fn of(worst: Status) -> Self {
        match worst.exit_code() {
            0 => Verdict::Ok,
            1 => Verdict::Warning,
            _ => Verdict::Critical,
        }
    }
}

/// Everything `spillway doctor` found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub verdict: Verdict,
    pub exit_code: u8,
    /// The one-line summary, also the first line of the text report.
    pub summary: String,
    pub bootstrap: String,
    /// Set when the doctor could not run at all (verdict `unknown`, exit code 3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub could_not_run: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub controller: Option<Controller>,
    pub checks: Vec<Check>,
    pub topics: Vec<TopicDurability>,
    pub brokers: Vec<BrokerProbe>,
    /// The lint's findings (values of secret properties are already redacted).
    pub producer_findings: Vec<Finding>,
}

impl Report {
    /// A report from finished checks: verdict, exit code and summary follow from the items.
    pub fn new(bootstrap: &str, checks: Vec<Check>) -> Self {
        let worst = checks.iter().map(|c| c.status).max().unwrap_or(Status::Ok);
        let verdict = Verdict::of(worst);
        let count = |s: Status| {
            checks
                .iter()
                .flat_map(|c| &c.items)
                .filter(|i| i.status == s)
                .count()
        };
        let summary = format!(
            "spillway doctor {}: {} critical, {} warning, {} unknown, {} ok ({})",
            verdict.word(),
            count(Status::Critical),
            count(Status::Warning),
            count(Status::Unknown),
            count(Status::Ok),
            bootstrap,
        );
        Self {
            verdict,
            exit_code: verdict.exit_code(),
            summary,
            bootstrap: bootstrap.to_string(),
            could_not_run: None,
            cluster_id: None,
            controller: None,
            checks,
            topics: Vec::new(),
            brokers: Vec::new(),
            producer_findings: Vec::new(),
        }
    }

    /// The report when nothing could be checked: exit code 3, with the reason. Checks that need
    /// no broker (the producer lint) may still be attached by the caller.
    pub fn could_not_run(bootstrap: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        let mut report = Self::new(bootstrap, Vec::new());
        report.verdict = Verdict::Unknown;
        report.exit_code = Verdict::Unknown.exit_code();
        report.summary = format!("spillway doctor UNKNOWN: could not run: {reason}");
        report.could_not_run = Some(reason);
        report
    }

    #[cfg(test)]
    pub fn check(&self, name: CheckName) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    pub fn process_exit_code(&self) -> ExitCode {
        ExitCode::from(self.exit_code)
    }
}
