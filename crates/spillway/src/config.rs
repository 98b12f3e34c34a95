//! Producer settings: safe defaults, a lint that says what a setting can lose, and redaction.
//!
//! Spillway's guarantees (DESIGN G1, G3, G4) need `acks=all` and idempotence. The settings below
//! are applied over whatever librdkafka properties the operator passes through (security,
//! SASL, TLS, tuning). [`lint`] judges a full property map: a `Critical` finding can lose or
//! reorder acknowledged records and makes [`KafkaSettings::client_config`] refuse, unless the
//! operator sets `allow_unsafe` (for example for a `drop`-mode route of low-value data).
//!
//! ## Defaults we choose, and why
//! | property | value | why |
//! |---|---|---|
//! | `acks` | `all` | G1(a): a record Kafka acknowledged survives the loss of its leader |
//! | `enable.idempotence` | `true` | G3/G4: librdkafka's retries neither duplicate nor reorder |
//! | `max.in.flight.requests.per.connection` | `5` | the most idempotence allows while keeping order |
//! | `message.timeout.ms` | `30000` | long enough to ride out a leader election (seconds) without giving up, short enough that a record stuck behind an unreachable leader comes back to us (and to the spool) within half a minute. librdkafka's own default is 300000 |
//! | `linger.ms` | `5` | librdkafka's default; batches well at high rates |
//! | `statistics.interval.ms` | `500` | feeds the partition-health tracker |
//! | `compression.type` | `none` | configurable: `gzip`, `snappy`, `lz4`, `zstd` |
//!
//! Secrets (`*password*`, `*secret*`, `*.pem`, `*token*`, ...) never leave through `Debug`,
//! logs or [`KafkaSettings::redacted`].

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

/// How bad a finding of the lint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; loses nothing.
    Info,
    /// Weakens availability or costs failovers, but loses no acknowledged record.
    Warning,
    /// Can lose, duplicate or reorder acknowledged records.
    Critical,
}

/// One finding of the lint: which property, its value (redacted if secret), and what it can lose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub severity: Severity,
    pub key: String,
    pub value: String,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "CRITICAL",
        };
        write!(f, "{sev}: {}={}: {}", self.key, self.value, self.message)
    }
}

/// Compression codec for produced batches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// Why settings could not become a client configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Some settings can lose acknowledged records; the findings say which. Fix them, or set
    /// `allow_unsafe` knowingly.
    #[error("unsafe producer settings refused:\n{}", .0.iter().map(|f| format!("  {f}")).collect::<Vec<_>>().join("\n"))]
    Unsafe(Vec<Finding>),
    /// No bootstrap servers were given.
    #[error("no Kafka bootstrap servers configured")]
    NoBootstrap,
}

/// The Kafka side's settings.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSettings {
    /// `bootstrap.servers`.
    pub bootstrap_servers: String,
    /// librdkafka's `message.timeout.ms`: how long librdkafka keeps trying one record.
    #[serde(with = "humantime_serde")]
    pub message_timeout: Duration,
    /// `linger.ms`.
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
    /// `compression.type`.
    pub compression: Compression,
    /// `statistics.interval.ms` (health tracking needs it; zero disables stats-based health).
    #[serde(with = "humantime_serde")]
    pub statistics_interval: Duration,
    /// Passed through to librdkafka as is (security, SASL, TLS, tuning). Our safe defaults are
    /// applied first, so a value here overrides them, and the lint judges the result.
    pub properties: BTreeMap<String, String>,
    /// Accept settings the lint finds critical. Off by default.
    pub allow_unsafe: bool,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            bootstrap_servers: String::new(),
            message_timeout: Duration::from_secs(30),
            linger: Duration::from_millis(5),
            compression: Compression::None,
            statistics_interval: Duration::from_millis(500),
            properties: BTreeMap::new(),
            allow_unsafe: false,
        }
    }
}

impl fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaSettings")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("message_timeout", &self.message_timeout)
            .field("linger", &self.linger)
            .field("compression", &self.compression)
            .field("statistics_interval", &self.statistics_interval)
            .field("properties", &redact_map(&self.properties))
            .field("allow_unsafe", &self.allow_unsafe)
            .finish()
    }
}

impl KafkaSettings {
    /// Settings for `bootstrap` with every default.
    pub fn new(bootstrap: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap.into(),
            ..Self::default()
        }
    }

    /// Sets one pass-through librdkafka property.
    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// The full librdkafka property map: safe defaults, then our typed settings, then the
    /// pass-through properties.
    pub fn effective_properties(&self) -> BTreeMap<String, String> {
        let mut props: BTreeMap<String, String> = [
            ("acks", "all".to_string()),
            ("enable.idempotence", "true".to_string()),
            ("max.in.flight.requests.per.connection", "5".to_string()),
            (
                "message.timeout.ms",
                self.message_timeout.as_millis().to_string(),
            ),
            ("linger.ms", self.linger.as_millis().to_string()),
            ("compression.type", self.compression.as_str().to_string()),
            (
                "statistics.interval.ms",
                self.statistics_interval.as_millis().to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if !self.bootstrap_servers.is_empty() {
            props.insert("bootstrap.servers".into(), self.bootstrap_servers.clone());
        }
        props.extend(self.properties.clone());
        props
    }

    /// The lint of [`Self::effective_properties`].
    pub fn lint(&self) -> Vec<Finding> {
        lint(&self.effective_properties())
    }

    /// Every effective property, secrets replaced by `[redacted]`: safe to print or log.
    pub fn redacted(&self) -> BTreeMap<String, String> {
        redact_map(&self.effective_properties())
    }

    /// A librdkafka client configuration, refused if the lint finds something critical (unless
    /// `allow_unsafe`). Warnings are returned for the caller to log.
    pub fn client_config(&self) -> Result<(ClientConfig, Vec<Finding>), ConfigError> {
        let props = self.effective_properties();
        if props
            .get("bootstrap.servers")
            .is_none_or(|b| b.trim().is_empty())
            && !props.contains_key("test.mock.num.brokers")
        {
            return Err(ConfigError::NoBootstrap);
        }
        let findings = lint(&props);
        let critical: Vec<Finding> = findings
            .iter()
            .filter(|f| f.severity == Severity::Critical)
            .cloned()
            .collect();
        if !critical.is_empty() && !self.allow_unsafe {
            return Err(ConfigError::Unsafe(critical));
        }
        let mut config = ClientConfig::new();
        for (k, v) in &props {
            config.set(k, v);
        }
        Ok((config, findings))
    }
}

/// Whether a librdkafka property holds a secret.
pub fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "credential",
        ".pem",
        "sasl.oauthbearer.config",
        "sasl.jaas",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// `map` with every secret value replaced by `[redacted]`.
pub fn redact_map(map: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    map.iter()
        .map(|(k, v)| {
            (
                k.clone(),
                if is_secret(k) {
                    "[redacted]".into()
                } else {
                    v.clone()
                },
            )
        })
        .collect()
}

/// Judges a librdkafka producer property map: what each risky setting can lose.
pub fn lint(props: &BTreeMap<String, String>) -> Vec<Finding> {
    fn first<'a>(
        props: &'a BTreeMap<String, String>,
        keys: &[&'static str],
    ) -> Option<(&'static str, &'a str)> {
        keys.iter()
            .find_map(|k| props.get(*k).map(|v| (*k, v.trim())))
    }
    let get = |keys: &[&'static str]| first(props, keys);
    let mut out = Vec::new();
    let mut push = |severity, key: &str, value: &str, message: &str| {
        let value = if is_secret(key) { "[redacted]" } else { value };
        out.push(Finding {
            severity,
            key: key.into(),
            value: value.into(),
            message: message.into(),
        });
    };

    match get(&["acks", "request.required.acks"]) {
        Some((k, v @ "0")) => push(
            Severity::Critical,
            k,
            v,
            "acks=0: records are never confirmed; any broker failure or network fault loses them, and nobody is told they were lost",
        ),
        Some((k, v @ "1")) => push(
            Severity::Critical,
            k,
            v,
            "acks=1: a record confirmed by the leader alone is lost if the leader fails before a follower copies it",
        ),
        Some((k, v)) if v != "all" && v != "-1" => push(
            Severity::Critical,
            k,
            v,
            "acks below all: a record confirmed by fewer than the in-sync replicas can be lost with its broker",
        ),
        None => push(
            Severity::Critical,
            "acks",
            "(librdkafka default)",
            "acks not set: Spillway requires acks=all",
        ),
        _ => {}
    }
    let idempotent = get(&["enable.idempotence"]).is_some_and(|(_, v)| v == "true");
    if !idempotent {
        push(
            Severity::Critical,
            "enable.idempotence",
            get(&["enable.idempotence"]).map_or("false", |(_, v)| v),
            "idempotence off: a retried batch can be written twice, and with several requests in flight records can be reordered",
        );
    }
    if let Some((k, v)) = get(&["max.in.flight.requests.per.connection", "max.in.flight"]) {
        match v.parse::<u32>() {
            Ok(n) if n > 5 && idempotent => push(
                Severity::Critical,
                k,
                v,
                "more than 5 requests in flight: librdkafka refuses it with idempotence, and without idempotence retries reorder records",
            ),
            Ok(n) if n > 1 && !idempotent => push(
                Severity::Critical,
                k,
                v,
                "several requests in flight without idempotence: a retry can overtake a later batch and reorder records",
            ),
            _ => {}
        }
    }
    if let Some((k, v)) = get(&["retries", "message.send.max.retries"]) {
        if v == "0" {
            push(
                Severity::Warning,
                k,
                v,
                "retries=0: every transient error (a leader election) fails the record at once; Spillway keeps it, but each blip becomes a failover to the spool",
            );
        }
    }
    if let Some((k, v)) = get(&["message.timeout.ms", "delivery.timeout.ms"]) {
        match v.parse::<u64>() {
            Ok(0) => push(
                Severity::Warning,
                k,
                v,
                "infinite message timeout: a record stuck behind an unreachable leader never comes back to Spillway to be spooled or re-placed, and memory grows with the outage",
            ),
            Ok(ms) if ms < 5_000 => push(
                Severity::Warning,
                k,
                v,
                "message timeout under 5 s: ordinary leader elections will time records out and trigger failovers",
            ),
            _ => {}
        }
    }
    if let Some((k, v)) = get(&["enable.gapless.guarantee"]) {
        if v == "true" {
            push(
                Severity::Info,
                k,
                v,
                "gapless guarantee on: a single failed record makes the producer fatal; Spillway recreates it, at the cost of a pause",
            );
        }
    }
    let protocol = get(&["security.protocol"]).map(|(_, v)| v.to_ascii_lowercase());
    let mechanism =
        get(&["sasl.mechanism", "sasl.mechanisms"]).map(|(_, v)| v.to_ascii_uppercase());
    if protocol.as_deref() == Some("sasl_plaintext") && mechanism.as_deref() == Some("PLAIN") {
        push(
            Severity::Warning,
            "security.protocol",
            "sasl_plaintext",
            "SASL PLAIN over plaintext sends the password in clear; use sasl_ssl",
        );
    }
    if let Some((k, v)) = get(&["ssl.endpoint.identification.algorithm"]) {
        if v == "none" {
            push(
                Severity::Warning,
                k,
                v,
                "broker certificates are not checked against their host names: a man in the middle can read and refuse records",
            );
        }
    }
    out.sort_by_key(|f| std::cmp::Reverse(f.severity));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut p = KafkaSettings::new("localhost:9092").effective_properties();
        for (k, v) in pairs {
            p.insert((*k).into(), (*v).into());
        }
        p
    }

    fn severities(findings: &[Finding]) -> Vec<(Severity, &str)> {
        findings
            .iter()
            .map(|f| (f.severity, f.key.as_str()))
            .collect()
    }

    #[test]
    fn the_defaults_pass_the_lint_without_findings() {
        assert_eq!(KafkaSettings::new("b:9092").lint(), vec![]);
    }

    #[test]
    fn acks_one_or_zero_is_critical_and_says_what_can_be_lost() {
        for acks in ["0", "1"] {
            let f = lint(&props(&[("acks", acks)]));
            assert_eq!(severities(&f), vec![(Severity::Critical, "acks")]);
            assert!(f[0].message.contains("lost"), "{}", f[0]);
        }
    }

    #[test]
    fn idempotence_off_is_critical() {
        let f = lint(&props(&[("enable.idempotence", "false")]));
        assert!(severities(&f).contains(&(Severity::Critical, "enable.idempotence")));
    }

    #[test]
    fn zero_retries_is_a_warning_not_a_refusal() {
        let f = lint(&props(&[("retries", "0")]));
        assert_eq!(severities(&f), vec![(Severity::Warning, "retries")]);
    }

    #[test]
    fn critical_settings_are_refused_unless_allowed() {
        let mut s = KafkaSettings::new("b:9092").property("acks", "1");
        let err = s.client_config().unwrap_err();
        assert!(
            matches!(err, ConfigError::Unsafe(ref f) if f.len() == 1),
            "{err}"
        );
        s.allow_unsafe = true;
        let (_, findings) = s.client_config().unwrap();
        assert_eq!(findings.len(), 1);
    }

    #[test]
    fn settings_without_bootstrap_servers_are_refused() {
        assert!(matches!(
            KafkaSettings::default().client_config(),
            Err(ConfigError::NoBootstrap)
        ));
    }

    #[test]
    fn secrets_never_appear_in_debug_redacted_or_findings() {
        let s = KafkaSettings::new("b:9092")
            .property("sasl.password", "hunter2")
            .property("ssl.key.password", "hunter3")
            .property("sasl.oauthbearer.client.secret", "hunter4")
            .property("security.protocol", "sasl_plaintext")
            .property("sasl.mechanism", "PLAIN");
        let debug = format!("{s:?}");
        let redacted = format!("{:?}", s.redacted());
        let findings = format!("{:?}", s.lint());
        for text in [&debug, &redacted, &findings] {
            assert!(!text.contains("hunter"), "secret leaked: {text}");
        }
        assert!(redacted.contains("[redacted]"));
    }

    #[test]
    fn tls_and_sasl_settings_pass_through_to_librdkafka_and_stay_secret() {
        for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] {
            let s = KafkaSettings::new("b:9093")
                .property("security.protocol", "sasl_ssl")
                .property("sasl.mechanism", mechanism)
                .property("sasl.username", "spillway")
                .property("sasl.password", "s3cr3t-pw")
                .property("ssl.endpoint.identification.algorithm", "https");
            let (config, findings) = s.client_config().unwrap();
            assert!(findings.is_empty(), "{findings:?}");
            // librdkafka itself accepts the combination (the `ssl` feature is built in).
            let producer: Result<rdkafka::producer::BaseProducer, _> = config.create();
            assert!(producer.is_ok(), "{mechanism}: {:?}", producer.err());
            assert!(!format!("{s:?}").contains("s3cr3t"));
        }
    }

    #[test]
    fn passed_through_properties_override_defaults_and_are_judged() {
        let s = KafkaSettings::new("b:9092").property("message.timeout.ms", "1000");
        assert_eq!(s.effective_properties()["message.timeout.ms"], "1000");
        assert_eq!(
            severities(&s.lint()),
            vec![(Severity::Warning, "message.timeout.ms")]
        );
    }
}
