//! Durability judgement: how many broker failures a topic survives.
//!
//! With `acks=all` the leader acknowledges a record once every member of the in-sync replica set
//! (ISR) has it, and refuses the write (`NOT_ENOUGH_REPLICAS`) while the ISR is smaller than
//! `min.insync.replicas`. The ISR may legitimately shrink to `min.insync.replicas` members, so an
//! acknowledged record is guaranteed to exist on only that many brokers. Hence, for replication
//! factor `RF` and `min.insync.replicas` `M` (with unclean leader election off):
//! - **failures survived without losing an acknowledged record**: `min(M, RF) − 1`. `M = 1`
//!   makes acks=all no stronger than acks=1 once the ISR has shrunk to the leader;
//! - **failures survived while acks=all writes still succeed**: `RF − M` (none when `M > RF`:
//!   every write is refused).
//!
//! `RF − M` is often quoted as the durability figure; it is the availability figure. The two are
//! equal for the recommended RF 3 / M 2, and differ exactly where it matters (RF 3 / M 1 keeps
//! accepting writes through 2 failures, but loses acknowledged records on 1).
//!
//! With `unclean.leader.election.enable=true` an out-of-sync replica may become leader and
//! truncate acknowledged records; the count is the same, but temporary failures (a restart)
//! then lose data too, so it is critical on its own.
//!
//! `min.insync.replicas` comes from the topic's DescribeConfigs (its effective value). When that
//! cannot be read we fall back to the brokers' defaults, say so in the source, and take the
//! weakest value among brokers. When neither can be read, it is unknown, and so are the figures,
//! except for RF 1, which survives no failure whatever `M` is.

use super::facts::{DurabilityConfig, Facts, Lookup, Setting, Topic};
use super::report::{Item, Status, TopicDurability};

/// The topic's effective `min.insync.replicas`, or why it is unknown.
pub fn min_insync(facts: &Facts, topic: &str) -> Lookup<Setting<u32>> {
    let fallback = |why: &str| {
        let defaults = broker_defaults(facts, |c| c.min_insync_replicas.as_ref());
        match defaults.iter().min_by_key(|s| s.value) {
            Some(weakest) => Lookup::Known(Setting {
                value: weakest.value,
                source: format!("broker default; the topic's own setting could not be read: {why}"),
            }),
            None => Lookup::Unknown(format!("{why}; no broker reported a default either")),
        }
    };
    match facts.topic_configs.get(topic) {
        Some(Lookup::Known(c)) => match &c.min_insync_replicas {
            Some(s) => Lookup::Known(s.clone()),
            None => fallback("the topic's configuration has no min.insync.replicas entry"),
        },
        Some(Lookup::Unknown(why)) => fallback(why),
        None => fallback("the topic's configuration was not read"),
    }
}

/// The topic's effective `unclean.leader.election.enable`, or why it is unknown.
pub fn unclean_election(facts: &Facts, topic: &str) -> Lookup<Setting<bool>> {
    let fallback = |why: &str| {
        let defaults = broker_defaults(facts, |c| c.unclean_leader_election.as_ref());
        match defaults.iter().max_by_key(|s| s.value) {
            Some(weakest) => Lookup::Known(Setting {
                value: weakest.value,
                source: format!("broker default; the topic's own setting could not be read: {why}"),
            }),
            None => Lookup::Unknown(format!("{why}; no broker reported a default either")),
        }
    };
    match facts.topic_configs.get(topic) {
        Some(Lookup::Known(c)) => match &c.unclean_leader_election {
            Some(s) => Lookup::Known(s.clone()),
            None => {
                fallback("the topic's configuration has no unclean.leader.election.enable entry")
            }
        },
        Some(Lookup::Unknown(why)) => fallback(why),
        None => fallback("the topic's configuration was not read"),
    }
}

fn broker_defaults<'a, T: Clone + 'a>(
    facts: &'a Facts,
    pick: impl Fn(&'a DurabilityConfig) -> Option<&'a Setting<T>>,
) -> Vec<Setting<T>> {
    facts
        .broker_configs
        .values()
        .filter_map(|l| l.known())
        .filter_map(pick)
        .cloned()
        .collect()
}

/// The figures for one topic.
pub fn figures(facts: &Facts, topic: &Topic) -> TopicDurability {
    let rf = topic.partitions.iter().map(|p| p.replicas.len()).min();
    let min_isr = min_insync(facts, &topic.name);
    let m = min_isr.known().map(|s| s.value);
    let (without_loss, writable) = match (rf, m) {
        (Some(rf), Some(m)) => {
            let rf = rf as u32;
            (
                Some(m.min(rf).saturating_sub(1)),
                Some(rf.saturating_sub(m)),
            )
        }
        // One replica survives no failure, whatever min.insync.replicas says.
        (Some(rf), None) if rf <= 1 => (Some(0), Some(0)),
        _ => (None, None),
    };
    TopicDurability {
        topic: topic.name.clone(),
        partitions: topic.partitions.len(),
        replication_factor: rf,
        min_insync_replicas: m,
        min_insync_replicas_source: min_isr.known().map(|s| s.source.clone()),
        unclean_leader_election: unclean_election(facts, &topic.name)
            .known()
            .map(|s| s.value),
        failures_without_data_loss: without_loss,
        failures_while_writable: writable,
    }
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The durability items for one topic.
pub fn topic_items(facts: &Facts, topic: &Topic, fig: &TopicDurability) -> Vec<Item> {
    let subject = format!("topic {}", topic.name);
    let mut items = Vec::new();
    let Some(rf) = fig.replication_factor else {
        items.push(Item::new(
            Status::Unknown,
            &subject,
            "no partitions in the metadata: replication factor unknown",
        ));
        return items;
    };
    let varied = topic.partitions.iter().any(|p| p.replicas.len() != rf);
    let lowest = if varied {
        " (lowest among its partitions)"
    } else {
        ""
    };
    items.push(match rf {
        0 | 1 => Item::new(
            Status::Critical,
            &subject,
            format!("replication factor {rf}{lowest}, want at least 3: losing its one broker loses every acknowledged record on it"),
        ),
        2 => Item::new(
            Status::Warning,
            &subject,
            format!("replication factor 2{lowest}, want at least 3: one broker failure either stops acks=all writes or leaves a single copy"),
        ),
        _ => Item::new(Status::Ok, &subject, format!("replication factor {rf}{lowest}")),
    });
    let rf32 = rf as u32;
    items.push(match min_insync(facts, &topic.name) {
        Lookup::Known(Setting { value: m, source }) if m > rf32 => Item::new(
            Status::Critical,
            &subject,
            format!("min.insync.replicas={m} ({source}) exceeds the replication factor {rf}: every acks=all write is refused (NOT_ENOUGH_REPLICAS)"),
        ),
        Lookup::Known(Setting { value: m, source }) if m < 2 => Item::new(
            Status::Critical,
            &subject,
            format!("min.insync.replicas={m} ({source}), want at least 2: once the ISR shrinks to the leader, acks=all waits for the leader alone and one broker failure loses acknowledged records"),
        ),
        Lookup::Known(Setting { value: m, source }) if m == rf32 => Item::new(
            Status::Warning,
            &subject,
            format!("min.insync.replicas={m} ({source}) equals the replication factor: any one broker failure stops acks=all writes (Spillway then spools or refuses them)"),
        ),
        Lookup::Known(Setting { value: m, source }) => Item::new(
            Status::Ok,
            &subject,
            format!("min.insync.replicas={m} ({source})"),
        ),
        Lookup::Unknown(why) => Item::new(
            Status::Unknown,
            &subject,
            format!("min.insync.replicas unknown: {why}"),
        ),
    });
    items.push(match unclean_election(facts, &topic.name) {
        Lookup::Known(Setting { value: true, source }) => Item::new(
            Status::Critical,
            &subject,
            format!("unclean.leader.election.enable=true ({source}): an out-of-sync replica can become leader and truncate acknowledged records, even after a mere restart"),
        ),
        Lookup::Known(Setting { value: false, source }) => Item::new(
            Status::Ok,
            &subject,
            format!("unclean.leader.election.enable=false ({source})"),
        ),
        Lookup::Unknown(why) => Item::new(
            Status::Unknown,
            &subject,
            format!("unclean.leader.election.enable unknown: {why}"),
        ),
    });
    items.push(match (fig.failures_without_data_loss, fig.failures_while_writable) {
        (Some(loss), Some(writable)) => {
            let status = if loss == 0 {
                Status::Critical
            } else if writable == 0 {
                Status::Warning
            } else {
                Status::Ok
            };
            Item::new(
                status,
                &subject,
                format!(
                    "survives {loss} broker failure{} without losing acknowledged records (acks=all), and {writable} without refusing acks=all writes",
                    plural(loss),
                ),
            )
        }
        _ => Item::new(
            Status::Unknown,
            &subject,
            format!(
                "broker failures survived unknown (at most {} without losing acknowledged records): min.insync.replicas is unknown",
                rf.saturating_sub(1)
            ),
        ),
    });
    items
}

/// The items for the brokers' own defaults (for topics created later). Identical findings on
/// several brokers are merged into one item.
pub fn broker_default_items(facts: &Facts) -> Vec<Item> {
    let mut found: Vec<(Status, String, Vec<i32>)> = Vec::new();
    for (&id, lookup) in &facts.broker_configs {
        let (status, message) = match lookup {
            Lookup::Unknown(why) => (
                Status::Unknown,
                format!("defaults for new topics unknown: {why}"),
            ),
            Lookup::Known(c) => judge_defaults(c),
        };
        match found
            .iter_mut()
            .find(|(s, m, _)| *s == status && *m == message)
        {
            Some((_, _, ids)) => ids.push(id),
            None => found.push((status, message, vec![id])),
        }
    }
    found
        .into_iter()
        .map(|(status, message, ids)| {
            let list: Vec<String> = ids.iter().map(i32::to_string).collect();
            let subject = if ids.len() == 1 {
                format!("broker {}", list[0])
            } else {
                format!("brokers {}", list.join(", "))
            };
            Item::new(status, subject, message)
        })
        .collect()
}

fn judge_defaults(c: &DurabilityConfig) -> (Status, String) {
    let mut status = Status::Ok;
    let mut parts = Vec::new();
    let mut note = |name: &str, value: Option<String>, weak: bool| match value {
        Some(v) => {
            if weak {
                status = status.max(Status::Warning);
                parts.push(format!("{name}={v} (weak)"));
            } else {
                parts.push(format!("{name}={v}"));
            }
        }
        None => {
            status = status.max(Status::Unknown);
            parts.push(format!("{name} not reported"));
        }
    };
    let rf = c.default_replication_factor.as_ref().map(|s| s.value);
    note(
        "default.replication.factor",
        rf.map(|v| v.to_string()),
        rf.is_some_and(|v| v < 3),
    );
    let m = c.min_insync_replicas.as_ref().map(|s| s.value);
    note(
        "min.insync.replicas",
        m.map(|v| v.to_string()),
        m.is_some_and(|v| v < 2),
    );
    let u = c.unclean_leader_election.as_ref().map(|s| s.value);
    note(
        "unclean.leader.election.enable",
        u.map(|v| v.to_string()),
        u == Some(true),
    );
    (
        status,
        format!("defaults for new topics: {}", parts.join(", ")),
    )
}
