//! The configuration file (`spillway.toml`) and its environment overrides.
//!
//! One TOML file holds the gateway's sections (`[http]`, `[limits]`, `[timeouts]`, `[rest_proxy]`,
//! `[auth]`, `[tls]`) and the library's (`[library]`, passed through untouched as a
//! [`toml::Table`] for the `spillway` crate to read). Unknown keys in the gateway's sections are
//! errors (`deny_unknown_fields`), so a typo does not silently fall back to a default.
//!
//! **Environment overrides.** Every key can be set by a variable named `SPILLWAY_` + the key's
//! path in upper case, sections joined by a double underscore: `SPILLWAY_HTTP__LISTEN=0.0.0.0:80`
//! sets `[http] listen`, `SPILLWAY_LIBRARY__KAFKA__BOOTSTRAP_SERVERS=...` sets
//! `[library.kafka] bootstrap_servers`. The value is read as a TOML value when it parses as one
//! (`8`, `true`, `["a","b"]`, `[{name="x", sha256="..."}]`) and as a string otherwise (`10s`,
//! `0.0.0.0:80`). Variables without a `__` (such as `SPILLWAY_CONFIG`, `SPILLWAY_LOG`) are not
//! configuration keys and are ignored. Environment wins over the file.
//!
//! **Secrets.** [`Config::redacted`] prints the effective configuration with token hashes and
//! any library key whose name contains `password`, `secret`, `token` or `sasl` replaced by
//! `"<redacted>"`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Why a configuration could not be loaded. None are recoverable without fixing the input.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub http: HttpConfig,
    pub limits: LimitsConfig,
    pub timeouts: TimeoutsConfig,
    pub rest_proxy: RestProxyConfig,
    pub auth: AuthConfig,
    pub tls: Option<TlsConfig>,
    /// The library's own sections, defined by the `spillway` crate; passed through as is.
    pub library: toml::Table,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// The API listener (plain HTTP, or HTTPS when `[tls]` is set).
    pub listen: SocketAddr,
    /// The Prometheus listener (`/metrics` only), separate from the API.
    pub metrics_listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest request body; larger is 413 before it is read.
    pub max_body_bytes: u64,
    /// Largest record (key + value + headers); larger is 413.
    pub max_record_bytes: u64,
    /// Most records in one native or v2 request, and entries in one v3 batch; more is 413.
    pub max_records_per_request: usize,
    /// Bytes of request bodies held by the gateway at once, over all requests; past it 429.
    pub max_inflight_bytes: u64,
    /// Requests being handled at once on the write routes; past it 503 at once (no queue).
    pub max_concurrent_requests: usize,
    /// Cap on `?wait=` (how long a client may ask to wait for Kafka after spooling).
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 8 << 20,
            max_record_bytes: 1 << 20,
            max_records_per_request: 1000,
            max_inflight_bytes: 256 << 20,
            max_concurrent_requests: 1024,
            max_wait: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutsConfig {
    /// A connection must send a request's complete headers within this (slowloris guard).
    #[serde(with = "humantime_serde")]
    pub header_read: Duration,
    /// A request body must arrive within this; in v3 streaming mode, the longest pause between
    /// two chunks.
    #[serde(with = "humantime_serde")]
    pub body_read: Duration,
    /// TLS handshakes must finish within this.
    #[serde(with = "humantime_serde")]
    pub tls_handshake: Duration,
    /// On SIGTERM/SIGINT, how long in-flight requests get to finish before they are cut.
    #[serde(with = "humantime_serde")]
    pub drain: Duration,
    /// The whole shutdown (drain, then the engine's flush) ends within this.
    #[serde(with = "humantime_serde")]
    pub shutdown: Duration,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(10),
            body_read: Duration::from_secs(30),
            tls_handshake: Duration::from_secs(10),
            drain: Duration::from_secs(10),
            shutdown: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestProxyConfig {
    /// How long a REST Proxy request waits for a spooled record to reach Kafka before it is
    /// answered without an offset (`offset: -1`). Zero answers at once.
    #[serde(with = "humantime_serde")]
    pub wait: Duration,
}

impl Default for RestProxyConfig {
    fn default() -> Self {
        Self {
            wait: Duration::ZERO,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Bearer tokens. None configured: auth is off and every request may write every topic.
    pub tokens: Vec<TokenConfig>,
}

/// One bearer token, stored as the SHA-256 of the token text.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it; used in logs and 403 messages (never the token).
    pub name: String,
    /// `sha256sum` of the token, 64 hex digits (`printf %s "$TOKEN" | sha256sum`).
    pub sha256: String,
    /// Topic patterns this token may write; `*` matches any run of characters.
    pub topics: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain for the API listener.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA bundle; when set, clients must present a certificate it signed (mTLS).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

const ENV_PREFIX: &str = "SPILLWAY_";
const REDACTED: &str = "<redacted>";

impl Config {
    /// Reads `path` (if given), applies the process environment, and validates.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_path_buf(),
                source,
            })?,
            None => String::new(),
        };
        let origin = path.map_or("<defaults>".to_string(), |p| p.display().to_string());
        Self::from_toml_and_env(&text, &origin, std::env::vars())
    }

    /// Parses `text`, applies the `SPILLWAY_...` pairs among `env`, and validates.
    pub fn from_toml_and_env(
        text: &str,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    origin: origin.to_string(),
                    message: e.to_string(),
                })?;
        let mut vars: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k.contains("__"))
            .collect();
        vars.sort();
        for (name, value) in &vars {
            apply_env(&mut table, &name[ENV_PREFIX.len()..], value).map_err(|message| {
                ConfigError::Parse {
                    origin: format!("environment variable {name}"),
                    message,
                }
            })?;
        }
        let config: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    origin: format!("{origin} (with environment overrides)"),
                    message: e.to_string(),
                })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: limits that contradict each other, malformed token hashes.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if l.max_body_bytes == 0 || l.max_record_bytes == 0 || l.max_records_per_request == 0 {
            return bad("limits must be positive".into());
        }
        if l.max_inflight_bytes < l.max_body_bytes {
            return bad(format!(
                "limits.max_inflight_bytes ({}) is below limits.max_body_bytes ({}): no full-size request could ever be admitted",
                l.max_inflight_bytes, l.max_body_bytes
            ));
        }
        if l.max_concurrent_requests == 0 {
            return bad("limits.max_concurrent_requests must be positive".into());
        }
        if self.timeouts.drain > self.timeouts.shutdown {
            return bad("timeouts.drain must not exceed timeouts.shutdown".into());
        }
        for t in &self.auth.tokens {
            if t.sha256.len() != 64 || hex::decode(&t.sha256).is_err() {
                return bad(format!(
                    "auth token {:?}: sha256 must be 64 hex digits (the token's SHA-256, not the token)",
                    t.name
                ));
            }
            if t.topics.is_empty() {
                return bad(format!("auth token {:?} may write no topic", t.name));
            }
        }
        Ok(())
    }

    /// The effective configuration as TOML, secrets replaced by `"<redacted>"`.
    pub fn redacted(&self) -> String {
        let mut copy = self.clone();
        for t in &mut copy.auth.tokens {
            t.sha256 = REDACTED.to_string();
        }
        redact_table(&mut copy.library);
        toml::to_string_pretty(&copy).unwrap_or_else(|e| format!("# cannot print: {e}"))
    }
}

fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "secret", "token", "sasl"]
        .iter()
        .any(|s| k.contains(s))
}

fn redact_table(table: &mut toml::Table) {
    for (key, value) in table.iter_mut() {
        match value {
            toml::Value::Table(t) => redact_table(t),
            _ if is_secret_key(key) => *value = toml::Value::String(REDACTED.into()),
            toml::Value::Array(items) => items.iter_mut().for_each(|v| {
                if let toml::Value::Table(t) = v {
                    redact_table(t)
                }
            }),
            _ => {}
        }
    }
}

/// Sets the key named by `path` (`HTTP__LISTEN`) in `table` to `raw`.
fn apply_env(table: &mut toml::Table, path: &str, raw: &str) -> Result<(), String> {
    let keys: Vec<String> = path.split("__").map(|k| k.to_ascii_lowercase()).collect();
    if keys.iter().any(String::is_empty) {
        return Err("empty key segment".into());
    }
    let (last, parents) = keys.split_last().expect("split yields at least one key");
    let mut current = table;
    for key in parents {
        let entry = current
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = match entry {
            toml::Value::Table(t) => t,
            _ => return Err(format!("{key} is not a table")),
        };
    }
    current.insert(last.clone(), parse_env_value(raw));
    Ok(())
}

fn parse_env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn an_empty_file_gives_the_defaults() {
        let c = Config::from_toml_and_env("", "t", env(&[])).unwrap();
        assert_eq!(c.http.listen.port(), 8080);
        assert!(c.auth.tokens.is_empty());
        assert!(c.tls.is_none());
    }

    #[test]
    fn environment_variables_override_file_keys_by_path() {
        let text = "[http]\nlisten = \"127.0.0.1:1\"\n[limits]\nmax_body_bytes = 100\nmax_inflight_bytes = 1000\n";
        let c = Config::from_toml_and_env(
            text,
            "t",
            env(&[
                ("SPILLWAY_HTTP__LISTEN", "127.0.0.1:2"),
                ("SPILLWAY_LIMITS__MAX_BODY_BYTES", "200"),
                ("SPILLWAY_TIMEOUTS__BODY_READ", "3s"),
                ("SPILLWAY_LIBRARY__KAFKA__BOOTSTRAP", "k:9092"),
                ("SPILLWAY_CONFIG", "/ignored/because/no/double/underscore"),
                ("OTHER__THING", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.http.listen.port(), 2);
        assert_eq!(c.limits.max_body_bytes, 200);
        assert_eq!(c.timeouts.body_read, Duration::from_secs(3));
        assert_eq!(c.library["kafka"]["bootstrap"].as_str(), Some("k:9092"));
    }

    #[test]
    fn tokens_can_come_from_the_environment_as_a_toml_array() {
        let hash = "a".repeat(64);
        let c = Config::from_toml_and_env(
            "",
            "t",
            env(&[(
                "SPILLWAY_AUTH__TOKENS",
                &format!("[{{name = \"ci\", sha256 = \"{hash}\", topics = [\"logs.*\"]}}]"),
            )]),
        )
        .unwrap();
        assert_eq!(c.auth.tokens[0].topics, vec!["logs.*"]);
    }

    #[test]
    fn unknown_keys_are_errors_and_name_their_origin() {
        let err = Config::from_toml_and_env("[http]\nlisten_on = \"x\"\n", "f.toml", env(&[]))
            .unwrap_err();
        assert!(err.to_string().contains("listen_on"), "{err}");
        let err = Config::from_toml_and_env("", "f.toml", env(&[("SPILLWAY_HTTP__NOPE", "1")]))
            .unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn a_token_given_in_clear_instead_of_its_hash_is_refused() {
        let text = "[[auth.tokens]]\nname = \"a\"\nsha256 = \"hunter2\"\ntopics = [\"*\"]\n";
        let err = Config::from_toml_and_env(text, "t", env(&[])).unwrap_err();
        assert!(err.to_string().contains("64 hex digits"));
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn redacted_output_hides_token_hashes_and_library_secrets() {
        let hash = "b".repeat(64);
        let text = format!(
            "[[auth.tokens]]\nname = \"a\"\nsha256 = \"{hash}\"\ntopics = [\"*\"]\n\
             [library.kafka]\nbootstrap = \"k:9092\"\nsasl_password = \"pw\"\n"
        );
        let c = Config::from_toml_and_env(&text, "t", env(&[])).unwrap();
        let out = c.redacted();
        assert!(!out.contains(&hash) && !out.contains("\"pw\""), "{out}");
        assert!(out.contains("k:9092") && out.contains(REDACTED));
    }

    #[test]
    fn the_example_config_parses_and_states_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/spillway.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let example = Config::from_toml_and_env(&text, "deploy/spillway.toml", env(&[])).unwrap();
        let mut example = example;
        example.library = toml::Table::new();
        assert_eq!(
            toml::to_string(&example).unwrap(),
            toml::to_string(&Config::default()).unwrap(),
            "deploy/spillway.toml and the defaults disagree"
        );
    }

    #[test]
    fn contradictory_limits_are_refused() {
        let text = "[limits]\nmax_body_bytes = 100\nmax_inflight_bytes = 10\n";
        assert!(matches!(
            Config::from_toml_and_env(text, "t", env(&[])),
            Err(ConfigError::Invalid(_))
        ));
    }
}
