//! Routes: for each topic (exact name or a `*` pattern), a delivery mode and its policy.
//!
//! | mode | accepted when | on Kafka failure |
//! |---|---|---|
//! | `spool_first` | in the spool (fsync per policy) | a forwarder drains each stream in order |
//! | `failover` | Kafka acknowledged it, or it is spooled | breaker opens; records spool; drain in order, then direct again |
//! | `spool_on_failure` | Kafka acknowledged it, or it is spooled | the failed record and its stream spool; replayed when the partition is healthy (or on demand) |
//! | `direct` + `backpressure` | Kafka acknowledged it | rejected (429/503, Retry-After), optionally after blocking up to `block_for` |
//! | `direct` + `drop` | Kafka acknowledged it | dropped: rejected at once and counted |
//!
//! Priority classes: while the route is *degraded* (breaker open, or the spool above its high
//! watermark), records below `shed_below` are rejected with a jittered Retry-After and the rest
//! are spooled (or, for direct routes, rejected as unavailable). At capacity everything is
//! rejected.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::api::Priority;

/// How a route delivers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Everything is spooled first; forwarders drain to Kafka in order.
    SpoolFirst,
    /// Direct while healthy; spool while the breaker is open or the partition is unhealthy.
    #[default]
    Failover,
    /// Direct; failed records (and what follows them in their stream) go to the spool and are
    /// replayed.
    SpoolOnFailure,
    /// Direct only, with a failure policy.
    Direct,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::SpoolFirst => "spool_first",
            Mode::Failover => "failover",
            Mode::SpoolOnFailure => "spool_on_failure",
            Mode::Direct => "direct",
        }
    }

    /// Whether the mode may put records in the spool.
    pub fn spools(self) -> bool {
        self != Mode::Direct
    }
}

/// What a `direct` route does when Kafka cannot take a record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// Reject with Retry-After (the client keeps the record).
    #[default]
    Backpressure,
    /// Reject at once and count the record as dropped (low-value data).
    Drop,
}

/// One route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Route {
    /// The topic, or a pattern with `*` (any characters).
    pub topic: String,
    pub mode: Mode,
    /// For `direct` routes.
    pub on_failure: FailurePolicy,
    /// For `direct` + `backpressure`: wait up to this long for Kafka before rejecting.
    #[serde(with = "humantime_serde")]
    pub block_for: Duration,
    /// The priority of records that do not say.
    pub default_priority: Priority,
    /// While degraded, records below this priority are shed.
    pub shed_below: Priority,
    /// For `spool_on_failure`: replay automatically when the partition is healthy (otherwise
    /// only on demand; the stream keeps spooling until then, to keep order).
    pub auto_replay: bool,
}

impl Default for Route {
    fn default() -> Self {
        Self {
            topic: "*".into(),
            mode: Mode::Failover,
            on_failure: FailurePolicy::Backpressure,
            block_for: Duration::ZERO,
            default_priority: Priority::Normal,
            shed_below: Priority::Normal,
            auto_replay: true,
        }
    }
}

impl Route {
    pub fn new(topic: impl Into<String>, mode: Mode) -> Self {
        Self {
            topic: topic.into(),
            mode,
            ..Self::default()
        }
    }

    /// Whether this route covers `topic`.
    pub fn matches(&self, topic: &str) -> bool {
        glob_match(&self.topic, topic)
    }
}

/// `*` matches any run of characters; everything else matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// The routes of a Spillway instance: the first match wins; a topic no route matches takes the
/// default route.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Routes {
    routes: Vec<Route>,
    default: Route,
}

impl Routes {
    pub fn new(routes: Vec<Route>, default: Route) -> Self {
        Self { routes, default }
    }

    /// The route for `topic` and its index (`routes.len()` for the default).
    pub fn lookup(&self, topic: &str) -> (usize, &Route) {
        self.routes
            .iter()
            .enumerate()
            .find(|(_, r)| r.matches(topic))
            .unwrap_or((self.routes.len(), &self.default))
    }

    /// Every route, the default last.
    pub fn all(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter().chain(std::iter::once(&self.default))
    }

    /// Whether `topic` is configured by a route other than a catch-all pattern.
    pub fn names(&self, topic: &str) -> bool {
        self.routes
            .iter()
            .any(|r| r.topic != "*" && r.matches(topic))
    }
}

/// Whether `name` is a valid Kafka topic name: 1-249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn valid_topic(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_globs() {
        assert!(glob_match("orders", "orders"));
        assert!(!glob_match("orders", "orders2"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("pay.*", "pay.eu"));
        assert!(!glob_match("pay.*", "payments"));
        assert!(glob_match("*.dlq", "orders.dlq"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXcYYb"));
        assert!(
            !glob_match("ab*ba", "aba"),
            "prefix and suffix may not overlap"
        );
    }

    #[test]
    fn the_first_matching_route_wins_and_the_default_catches_the_rest() {
        let routes = Routes::new(
            vec![
                Route::new("pay.critical", Mode::SpoolFirst),
                Route::new("pay.*", Mode::Direct),
            ],
            Route::new("*", Mode::Failover),
        );
        assert_eq!(routes.lookup("pay.critical").1.mode, Mode::SpoolFirst);
        assert_eq!(routes.lookup("pay.eu").1.mode, Mode::Direct);
        assert_eq!(
            routes.lookup("other"),
            (2, &Route::new("*", Mode::Failover))
        );
        assert!(routes.names("pay.eu") && !routes.names("other"));
    }

    #[test]
    fn kafka_topic_names_are_validated() {
        for ok in ["a", "orders.v1", "A_b-c", &"x".repeat(249)] {
            assert!(valid_topic(ok), "{ok}");
        }
        for bad in ["", ".", "..", "a b", "a/b", "ü", &"x".repeat(250)] {
            assert!(!valid_topic(bad), "{bad}");
        }
    }

    #[test]
    fn a_route_reads_from_toml_with_defaults() {
        let r: Route =
            toml::from_str("topic = 'x'\nmode = 'spool_first'\nshed_below = 'critical'").unwrap();
        assert_eq!(
            (r.mode, r.shed_below, r.default_priority),
            (Mode::SpoolFirst, Priority::Critical, Priority::Normal)
        );
        assert!(toml::from_str::<Route>("topic = 'x'\nbogus = 1").is_err());
    }
}
