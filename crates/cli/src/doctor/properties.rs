//! The `--property KEY=VALUE` arguments: parsing them without echoing them, choosing the ones our
//! own connections need, and keeping secret values out of the output.
//!
//! The lint already redacts secret values in its findings. Scrubbing the finished output of every
//! secret value is the second line of defence, against an error message from a library that
//! might quote one.

use spillway::config::is_secret;

use super::DoctorArgs;

/// Splits `KEY=VALUE` arguments. The error never quotes the argument: it may hold a secret.
pub fn parse_properties(raw: &[String]) -> Result<Vec<(String, String)>, String> {
    raw.iter()
        .enumerate()
        .map(|(i, p)| match p.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => Err(format!(
                "--property number {} is not KEY=VALUE (its text is not shown: it may hold a secret)",
                i + 1
            )),
        })
        .collect()
}

/// The properties that shape a connection (not the producer's behaviour), for our own clients.
pub fn connection_properties(properties: &[(String, String)]) -> Vec<(String, String)> {
    const PREFIXES: &[&str] = &[
        "security.protocol",
        "sasl.",
        "ssl.",
        "ssl_",
        "enable.ssl.",
        "enable.sasl.",
        "socket.",
        "broker.address.",
        "client.",
        "api.version.",
        "broker.version.fallback",
    ];
    properties
        .iter()
        .filter(|(k, _)| PREFIXES.iter().any(|p| k.starts_with(p)))
        .cloned()
        .collect()
}

/// The values of secret properties, to scrub from the output. Values shorter than 4 characters
/// are left out: scrubbing them would mangle the report, and nothing of ours echoes them.
pub fn secret_values(args: &DoctorArgs) -> Vec<String> {
    let mut secrets: Vec<String> = args
        .properties
        .iter()
        .filter_map(|p| p.split_once('='))
        .filter(|(k, v)| is_secret(k) && v.len() >= 4)
        .map(|(_, v)| v.to_string())
        .collect();
    // Longest first, so a secret that contains another is removed whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets
}

/// `text` with every occurrence of a secret value replaced by `[redacted]`.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .fold(text.to_string(), |t, s| t.replace(s.as_str(), "[redacted]"))
}

/// [`scrub`] applied to every string (keys included) of a JSON value, so the JSON stays valid.
pub fn scrub_json(value: &mut serde_json::Value, secrets: &[String]) {
    use serde_json::Value;
    match value {
        Value::String(s) => *s = scrub(s, secrets),
        Value::Array(items) => items.iter_mut().for_each(|v| scrub_json(v, secrets)),
        Value::Object(map) => {
            let entries = std::mem::take(map);
            for (k, mut v) in entries {
                scrub_json(&mut v, secrets);
                map.insert(scrub(&k, secrets), v);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}
