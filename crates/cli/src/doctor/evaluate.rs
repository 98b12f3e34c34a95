//! Judging the facts: pure functions from [`Facts`] to a [`Report`]. No I/O here, so every
//! verdict is unit-tested on hand-made facts (`tests`).

use spillway::{Finding, Severity};

use super::durability;
use super::facts::{BrokerProbe, Controller, Facts, Lookup, RoundTrip, TcpOutcome, Topic};
use super::report::{Check, CheckName, Item, Report, Status};

/// Judges everything the doctor learned.
pub fn evaluate(facts: &Facts) -> Report {
    let figures: Vec<_> = facts
        .topics
        .iter()
        .map(|t| durability::figures(facts, t))
        .collect();
    let mut durability_items: Vec<Item> = facts
        .topics
        .iter()
        .zip(&figures)
        .flat_map(|(t, f)| durability::topic_items(facts, t, f))
        .collect();
    durability_items.extend(durability::broker_default_items(facts));
    let checks = vec![
        Check::new(CheckName::Cluster, cluster_items(facts)),
        Check::new(CheckName::Partitions, partition_items(facts)),
        Check::new(CheckName::Durability, durability_items),
        Check::new(CheckName::Reachability, reachability_items(facts)),
        producer_check(&facts.producer_findings),
    ];
    let mut report = Report::new(&facts.bootstrap, checks);
    report.cluster_id = facts.cluster_id.clone();
    report.controller = Some(facts.controller.clone());
    report.topics = figures;
    report.brokers = facts.probes.clone();
    report.producer_findings = facts.producer_findings.clone();
    report
}

fn cluster_items(facts: &Facts) -> Vec<Item> {
    let mut items = Vec::new();
    if facts.brokers.is_empty() {
        items.push(Item::new(
            Status::Critical,
            "brokers",
            "the metadata lists no brokers",
        ));
    } else {
        let ids: Vec<String> = facts.brokers.iter().map(|b| b.id.to_string()).collect();
        let cluster = facts
            .cluster_id
            .as_deref()
            .map(|c| format!(" in cluster {c}"))
            .unwrap_or_default();
        items.push(Item::new(
            Status::Ok,
            "brokers",
            format!(
                "{} listed in the metadata{cluster}: {}",
                facts.brokers.len(),
                ids.join(", ")
            ),
        ));
    }
    items.push(match &facts.controller {
        Controller::Reported { id: -1 } => Item::new(
            Status::Critical,
            "controller",
            "the cluster reports no active controller (-1): leaders cannot be elected and ISR changes cannot be recorded",
        ),
        Controller::Reported { id } if facts.brokers.iter().any(|b| b.id == *id) => Item::new(
            Status::Ok,
            "controller",
            format!("broker {id} is reported as controller"),
        ),
        Controller::Reported { id } => Item::new(
            Status::Unknown,
            "controller",
            format!("the metadata names controller id {id}, which is not a listed broker: cannot tell whether a controller is active"),
        ),
        Controller::Unknown { reason } => Item::new(
            Status::Unknown,
            "controller",
            format!("unknown: {reason}"),
        ),
    });
    items
}

fn list(ids: &[String]) -> String {
    ids.join(", ")
}

fn partition_items(facts: &Facts) -> Vec<Item> {
    let mut items: Vec<Item> = facts
        .missing_topics
        .iter()
        .map(|t| {
            Item::new(
                Status::Critical,
                format!("topic {t}"),
                "not in the cluster's metadata: every write to it fails (Kafka may not create topics on first use)",
            )
        })
        .collect();
    for topic in &facts.topics {
        items.extend(topic_partition_items(facts, topic));
    }
    items
}

fn topic_partition_items(facts: &Facts, topic: &Topic) -> Vec<Item> {
    let subject = format!("topic {}", topic.name);
    if let Some(error) = &topic.error {
        return vec![Item::new(
            Status::Critical,
            subject,
            format!("the metadata reports an error for the topic: {error}"),
        )];
    }
    let mut items = Vec::new();
    let listed = |id: i32| facts.brokers.iter().any(|b| b.id == id);
    let offline: Vec<String> = topic
        .partitions
        .iter()
        .filter(|p| p.leader.is_none())
        .map(|p| match &p.error {
            Some(e) => format!("{} ({e})", p.id),
            None => p.id.to_string(),
        })
        .collect();
    if !offline.is_empty() {
        items.push(Item::new(
            Status::Critical,
            &subject,
            format!(
                "offline (no leader): partition {}; records for them cannot be written until a leader is elected",
                list(&offline)
            ),
        ));
    }
    let unlisted: Vec<String> = topic
        .partitions
        .iter()
        .filter_map(|p| p.leader.filter(|&l| !listed(l)).map(|l| (p.id, l)))
        .map(|(p, l)| format!("{p} (leader {l})"))
        .collect();
    if !unlisted.is_empty() {
        items.push(Item::new(
            Status::Critical,
            &subject,
            format!(
                "led by a broker the metadata does not list: partition {}",
                list(&unlisted)
            ),
        ));
    }
    let under: Vec<String> = topic
        .partitions
        .iter()
        .filter(|p| p.isr.len() < p.replicas.len())
        .map(|p| format!("{} (ISR {}/{})", p.id, p.isr.len(), p.replicas.len()))
        .collect();
    if !under.is_empty() {
        items.push(Item::new(
            Status::Warning,
            &subject,
            format!("under-replicated: partition {}", list(&under)),
        ));
    }
    match durability::min_insync(facts, &topic.name) {
        Lookup::Known(m) => {
            let below: Vec<String> = topic
                .partitions
                .iter()
                .filter(|p| p.leader.is_some() && (p.isr.len() as u32) < m.value)
                .map(|p| format!("{} (ISR {})", p.id, p.isr.len()))
                .collect();
            if !below.is_empty() {
                items.push(Item::new(
                    Status::Critical,
                    &subject,
                    format!(
                        "under min ISR (min.insync.replicas={}): partition {}; acks=all writes to them are refused (NOT_ENOUGH_REPLICAS)",
                        m.value,
                        list(&below)
                    ),
                ));
            }
        }
        Lookup::Unknown(why) => items.push(Item::new(
            Status::Unknown,
            &subject,
            format!("cannot tell whether any partition is under min ISR: min.insync.replicas unknown ({why})"),
        )),
    }
    if items.is_empty() {
        items.push(Item::new(
            Status::Ok,
            &subject,
            format!(
                "{} partitions, each with a leader and its whole replica set in sync",
                topic.partitions.len()
            ),
        ));
    }
    items
}

fn reachability_items(facts: &Facts) -> Vec<Item> {
    facts.probes.iter().map(|p| probe_item(facts, p)).collect()
}

fn leads(facts: &Facts, broker: i32) -> usize {
    facts
        .topics
        .iter()
        .flat_map(|t| &t.partitions)
        .filter(|p| p.leader == Some(broker))
        .count()
}

fn probe_item(facts: &Facts, probe: &BrokerProbe) -> Item {
    let subject = probe.broker.label();
    let led = leads(facts, probe.broker.id);
    let consequence = format!(
        "listed but unreachable from here (KAFKA-3686): records for the {led} partition{} it leads among the checked topics will time out",
        if led == 1 { "" } else { "s" }
    );
    let connect = match &probe.tcp {
        TcpOutcome::Connected { millis } => *millis,
        TcpOutcome::Failed { error } => {
            return Item::new(
                Status::Critical,
                subject,
                format!("TCP connect failed ({error}); {consequence}"),
            );
        }
        TcpOutcome::TimedOut { after_millis } => {
            return Item::new(
                Status::Critical,
                subject,
                format!("TCP connect timed out after {after_millis} ms; {consequence}"),
            );
        }
    };
    let slow = facts.slow_round_trip.as_secs_f64() * 1e3;
    let answered = |what: &str, millis: f64, extra: String| {
        let status = if millis > slow {
            Status::Warning
        } else {
            Status::Ok
        };
        let note = if millis > slow { " (slow)" } else { "" };
        Item::new(
            status,
            &subject,
            format!("TCP connect {connect:.1} ms, {what} {millis:.1} ms{note}{extra}"),
        )
    };
    match &probe.round_trip {
        RoundTrip::ApiVersions {
            millis,
            api_count,
            describe_configs,
        } => answered(
            "ApiVersions",
            *millis,
            format!(
                " ({api_count} APIs{})",
                if *describe_configs {
                    ""
                } else {
                    ", no DescribeConfigs"
                }
            ),
        ),
        RoundTrip::Metadata { millis } => {
            answered("Metadata through it alone", *millis, String::new())
        }
        RoundTrip::TimedOut { after_millis } => Item::new(
            Status::Critical,
            subject,
            format!(
                "accepts TCP connections ({connect:.1} ms) but did not answer a Kafka request within {after_millis} ms; {consequence}"
            ),
        ),
        RoundTrip::Failed { error } => Item::new(
            Status::Critical,
            subject,
            format!(
                "accepts TCP connections ({connect:.1} ms) but the Kafka request failed ({error}); {consequence}"
            ),
        ),
        RoundTrip::Skipped { reason } => Item::new(
            Status::Unknown,
            subject,
            format!("TCP connect {connect:.1} ms; Kafka round trip not attempted: {reason}"),
        ),
    }
}

/// The producer-settings check alone: it needs no broker, so it also runs when nothing else can.
pub fn producer_check(findings: &[Finding]) -> Check {
    Check::new(CheckName::ProducerSettings, producer_items(findings))
}

fn producer_items(findings: &[Finding]) -> Vec<Item> {
    if findings.is_empty() {
        return vec![Item::new(
            Status::Ok,
            "producer",
            "no findings: acks=all, idempotence on, at most 5 requests in flight, message timeout between 5 s and forever",
        )];
    }
    findings
        .iter()
        .map(|f| {
            let (status, prefix) = match f.severity {
                Severity::Critical => (Status::Critical, ""),
                Severity::Warning => (Status::Warning, ""),
                Severity::Info => (Status::Ok, "info: "),
            };
            Item::new(
                status,
                &f.key,
                format!("{prefix}{}={}: {}", f.key, f.value, f.message),
            )
        })
        .collect()
}
