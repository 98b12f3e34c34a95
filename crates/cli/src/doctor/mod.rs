//! `spillway doctor`: can this cluster, reached from this host, with these producer settings,
//! lose or refuse acknowledged records? The checks of a Kafka fault-tolerance runbook in one
//! command, with Nagios exit codes (0 OK, 1 warning, 2 critical, 3 could not run).
//!
//! ## Checks
//! - **Cluster**: brokers listed in the metadata, and the controller the cluster reports.
//! - **Partitions**: offline (no leader), under-replicated (ISR < replicas), under min ISR
//!   (ISR < `min.insync.replicas`, so acks=all writes are refused).
//! - **Durability settings**: per topic, replication factor ≥ 3, `min.insync.replicas` ≥ 2 and
//!   < RF, `unclean.leader.election.enable=false`, and the broker failures the topic survives
//!   (see `durability` for the arithmetic); the brokers' defaults for new topics.
//! - **Reachability**: from this host, TCP connect and a Kafka round trip to every listed broker.
//!   Listed but unreachable (KAFKA-3686) is critical.
//! - **Producer settings**: `spillway::lint` over the `--property` values, as Spillway would run.
//!
//! ## Honesty rules
//! Whatever could not be learned is reported as "unknown" with the reason, never guessed, and
//! counts as a warning. Secrets given with `--property` are never printed: the lint redacts them,
//! and the finished output is scrubbed of every secret value as a second line of defence.
//!
//! ## Layout
//! `facts` (what was learned) ← `gather` (librdkafka: metadata, DescribeConfigs) and `probe` +
//! `wire` (our own TCP and Kafka requests); `evaluate` + `durability` (pure judgement) →
//! `report` (verdicts, exit code) → `render` (text, JSON).

mod durability;
mod evaluate;
mod facts;
mod gather;
mod probe;
mod properties;
mod render;
mod report;
#[cfg(test)]
mod tests;
mod wire;

use std::collections::BTreeMap;
use std::fmt;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use spillway::KafkaSettings;
use spillway::config::is_secret;

use properties::{connection_properties, parse_properties, scrub, scrub_json, secret_values};

use facts::{Facts, Lookup};
use report::Report;

/// Arguments of `spillway doctor`.
#[derive(Args)]
pub struct DoctorArgs {
    /// Kafka bootstrap servers (HOST:PORT, comma-separated for several).
    #[arg(long, value_name = "HOST:PORT")]
    pub bootstrap: String,
    /// A topic to check; repeat for several. Default: every topic not starting with "__".
    #[arg(long = "topic", value_name = "T")]
    pub topics: Vec<String>,
    /// Print the report as JSON instead of text (same verdicts, same exit code).
    #[arg(long)]
    pub json: bool,
    /// A librdkafka property of Spillway's producer, KEY=VALUE; repeat for several. All are
    /// linted; the connection ones (security.protocol, sasl.*, ssl.*, socket.*, client.*) are
    /// also used by the doctor's own connections. Secret values are never printed.
    #[arg(long = "property", value_name = "KEY=VALUE")]
    pub properties: Vec<String>,
    /// Time limit of each network step (metadata, DescribeConfigs, each broker probe).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// A Kafka round trip slower than this is a warning.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = humantime::parse_duration)]
    pub slow: Duration,
}

impl fmt::Debug for DoctorArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let properties: Vec<String> = self
            .properties
            .iter()
            .map(|p| match p.split_once('=') {
                Some((k, _)) if is_secret(k) => format!("{k}=[redacted]"),
                Some(_) => p.clone(),
                None => "[unparsed]".into(),
            })
            .collect();
        f.debug_struct("DoctorArgs")
            .field("bootstrap", &self.bootstrap)
            .field("topics", &self.topics)
            .field("json", &self.json)
            .field("properties", &properties)
            .field("timeout", &self.timeout)
            .field("slow", &self.slow)
            .finish()
    }
}

/// Runs the doctor, prints its report, and returns the Nagios exit code. Failing to reach the
/// cluster is a report (exit code 3), not an error.
pub fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let report = diagnose(&args);
    let secrets = secret_values(&args);
    let output = if args.json {
        let mut value = serde_json::to_value(&report)?;
        scrub_json(&mut value, &secrets);
        serde_json::to_string_pretty(&value)? + "\n"
    } else {
        scrub(&render::text(&report), &secrets)
    };
    print!("{output}");
    Ok(report.process_exit_code())
}

/// Exits on a command-line error. clap exits with 2, which Nagios reads as "critical"; for
/// `spillway doctor` a usage error is "could not run" (3). Help and version exit 0 as usual.
pub fn exit_on_parse_error(error: clap::Error) -> ! {
    let is_doctor = std::env::args().nth(1).as_deref() == Some("doctor");
    if is_doctor && error.use_stderr() {
        let _ = error.print();
        std::process::exit(3);
    }
    error.exit()
}

/// Everything but the printing: gathers the facts and judges them.
pub fn diagnose(args: &DoctorArgs) -> Report {
    let properties = match parse_properties(&args.properties) {
        Ok(p) => p,
        Err(e) => return Report::could_not_run(&args.bootstrap, e),
    };
    let producer_findings = properties
        .iter()
        .fold(KafkaSettings::new(&args.bootstrap), |s, (k, v)| {
            s.property(k, v)
        })
        .lint();
    let could_not_run = |reason: String| {
        let mut report = Report::could_not_run(&args.bootstrap, reason);
        report.checks = vec![evaluate::producer_check(&producer_findings)];
        report.producer_findings = producer_findings.clone();
        report
    };
    let connection = connection_properties(&properties);
    let admin = match gather::admin_client(&args.bootstrap, &connection) {
        Ok(a) => a,
        Err(e) => return could_not_run(format!("cannot create a Kafka client: {e}")),
    };
    let metadata = match gather::metadata(&admin, &args.topics, args.timeout) {
        Ok(m) => m,
        Err(e) => {
            return could_not_run(format!(
                "no broker answered a metadata request for {} within {:?}: {e}",
                args.bootstrap, args.timeout
            ));
        }
    };
    let protocol = properties
        .iter()
        .rev()
        .find(|(k, _)| k == "security.protocol")
        .map_or("plaintext".to_string(), |(_, v)| v.to_ascii_lowercase());
    let probe_settings = probe::ProbeSettings {
        timeout: args.timeout,
        plaintext: matches!(protocol.as_str(), "plaintext" | "sasl_plaintext"),
        connection_properties: connection.clone(),
    };
    let topic_names: Vec<String> = metadata.topics.iter().map(|t| t.name.clone()).collect();
    let broker_ids: Vec<i32> = metadata.brokers.iter().map(|b| b.id).collect();
    let ((probes, (controller, cluster_id)), (topic_configs, broker_configs)) =
        std::thread::scope(|scope| {
            let network = scope.spawn(|| {
                let probes = probe::probe_all(&metadata.brokers, &probe_settings);
                let controller = probe::controller(
                    &metadata.brokers,
                    &probe_settings,
                    protocol.starts_with("sasl"),
                );
                (probes, controller)
            });
            let configs = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|rt| {
                    rt.block_on(async {
                        tokio::join!(
                            gather::topic_configs(&admin, &topic_names, args.timeout),
                            gather::broker_configs(&admin, &broker_ids, args.timeout),
                        )
                    })
                });
            let network = network.join().expect("probe thread does not panic");
            let configs = configs.unwrap_or_else(|e| {
                let why = format!("no async runtime for DescribeConfigs: {e}");
                (
                    topic_names
                        .iter()
                        .map(|t| (t.clone(), Lookup::Unknown(why.clone())))
                        .collect(),
                    broker_ids
                        .iter()
                        .map(|b| (*b, Lookup::Unknown(why.clone())))
                        .collect(),
                )
            });
            (network, configs)
        });
    let (topic_configs, broker_configs) =
        explain_unknown_configs(&probes, topic_configs, broker_configs);
    evaluate::evaluate(&Facts {
        cluster_id,
        brokers: metadata.brokers,
        controller,
        topics: metadata.topics,
        missing_topics: metadata.missing_topics,
        topic_configs,
        broker_configs,
        probes,
        producer_findings,
        ..empty_facts(args)
    })
}

/// When no broker that answered ApiVersions offers DescribeConfigs, librdkafka's error (often a
/// timeout) hides the real reason: say it.
fn explain_unknown_configs(
    probes: &[facts::BrokerProbe],
    topics: BTreeMap<String, Lookup<facts::DurabilityConfig>>,
    brokers: BTreeMap<i32, Lookup<facts::DurabilityConfig>>,
) -> (
    BTreeMap<String, Lookup<facts::DurabilityConfig>>,
    BTreeMap<i32, Lookup<facts::DurabilityConfig>>,
) {
    let offers: Vec<bool> = probes
        .iter()
        .filter_map(|p| match p.round_trip {
            facts::RoundTrip::ApiVersions {
                describe_configs, ..
            } => Some(describe_configs),
            _ => None,
        })
        .collect();
    if offers.is_empty() || offers.iter().any(|&o| o) {
        return (topics, brokers);
    }
    fn explain<K: Ord>(
        map: BTreeMap<K, Lookup<facts::DurabilityConfig>>,
    ) -> BTreeMap<K, Lookup<facts::DurabilityConfig>> {
        map.into_iter()
            .map(|(k, l)| match l {
                Lookup::Unknown(why) => (
                    k,
                    Lookup::Unknown(format!(
                        "no broker offers the DescribeConfigs API (per ApiVersions); {why}"
                    )),
                ),
                known => (k, known),
            })
            .collect()
    }
    (explain(topics), explain(brokers))
}

fn empty_facts(args: &DoctorArgs) -> Facts {
    Facts {
        bootstrap: args.bootstrap.clone(),
        cluster_id: None,
        brokers: Vec::new(),
        controller: facts::Controller::Unknown {
            reason: "not asked".into(),
        },
        topics: Vec::new(),
        missing_topics: Vec::new(),
        topic_configs: Default::default(),
        broker_configs: Default::default(),
        probes: Vec::new(),
        producer_findings: Vec::new(),
        slow_round_trip: args.slow,
    }
}
