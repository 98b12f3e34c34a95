//! Partition health: is the leader of a partition reachable from *us*?
//!
//! librdkafka's `is_partition_available` only checks that the partition has a leader in the
//! metadata, which stays true under KAFKA-3686 (the leader is listed, we cannot reach it), so it
//! cannot drive failover. This tracker combines three signals, each cheap:
//! 1. **Progress.** For each partition we count records handed to librdkafka and not yet
//!    reported. A partition with outstanding records and no acknowledgement for `stall_after`
//!    (default 1 s) is *stalled*: its leader does not answer. This catches a blackholed leader,
//!    which librdkafka itself reports as `UP` for as long as the TCP connection lives. A leader
//!    that is merely slow still sends us bytes (responses to earlier requests); while the
//!    statistics say it did within `stall_after`, a quiet partition is given up to
//!    `stall_while_answering` (default 10 s) before it counts as stalled, so a busy broker does
//!    not cost a session cut and the tail checks that follow.
//! 2. **Broker statistics** (`statistics.interval.ms`): a broker with requests to send or waiting
//!    that is not `UP` for longer than `stall_after`, or that is `UP` with requests waiting for
//!    a response while nothing was received for `stall_after` (`waitresp_cnt > 0`, `rxidle`),
//!    makes every partition it leads unhealthy. A broker that is down while nothing waits for
//!    it says nothing: librdkafka only connects to brokers it needs.
//! 3. **Delivery errors**: a transient error reported for a partition makes it unhealthy.
//!
//! Recovery has hysteresis: an unhealthy partition turns healthy only after `min_unhealthy` and
//! `recover_after` consecutive successful probes of its leader (a ListOffsets request answered by
//! the leader itself, see `producer::probe`). A failed probe resets the count.
//!
//! The tracker is a pure state machine: every input carries the time, so tests drive it with a
//! made-up clock.

mod key;
mod leaders;

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

pub use key::{FastMap, PartitionKey, TopicPartition};
pub use leaders::BrokerStat;
use leaders::BrokerState;

/// Tuning of the tracker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthConfig {
    /// Outstanding records without progress for this long mean the leader does not answer.
    pub stall_after: Duration,
    /// ... unless the leader sent us bytes within `stall_after` (it is slow, not gone): then
    /// only this long without progress is a stall.
    pub stall_while_answering: Duration,
    /// An unhealthy partition stays unhealthy at least this long.
    pub min_unhealthy: Duration,
    /// Consecutive successful probes needed to turn healthy again.
    pub recover_after: u32,
    /// After a session cut, the fresh producer has this long to connect and get a producer id
    /// before any of its partitions can be declared stalled.
    pub session_grace: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            stall_after: Duration::from_secs(1),
            stall_while_answering: Duration::from_secs(10),
            min_unhealthy: Duration::from_secs(1),
            recover_after: 2,
            session_grace: Duration::from_secs(3),
        }
    }
}

/// Why a partition is unhealthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Records outstanding, no acknowledgement for this long.
    Stalled(Duration),
    /// The leader broker has not been `UP` for a while (its librdkafka state is given).
    BrokerDown { broker: i32, state: String },
    /// The leader broker has requests waiting and has sent nothing for a while.
    BrokerSilent { broker: i32 },
    /// A transient delivery error was reported for the partition.
    DeliveryError(String),
    /// Marked by the caller.
    Forced(String),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Stalled(d) => write!(f, "no acknowledgement for {} ms", d.as_millis()),
            Reason::BrokerDown { broker, state } => write!(f, "leader broker {broker} is {state}"),
            Reason::BrokerSilent { broker } => {
                write!(
                    f,
                    "leader broker {broker} has requests waiting and answers nothing"
                )
            }
            Reason::DeliveryError(e) => write!(f, "delivery error {e}"),
            Reason::Forced(why) => write!(f, "{why}"),
        }
    }
}

/// A change of a partition's health, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthEvent {
    pub partition: TopicPartition,
    /// `None`: the partition turned healthy; `Some`: it turned unhealthy, and why.
    pub unhealthy: Option<Reason>,
}

#[derive(Debug, Clone)]
struct Unhealthy {
    since: Instant,
    reason: Reason,
    probes_ok: u32,
}

#[derive(Debug, Clone)]
struct PartitionState {
    outstanding: u64,
    last_progress: Instant,
    /// When a record of it was last acknowledged.
    last_ack: Option<Instant>,
    /// The highest offset acknowledged so far (the `known_before` of the next record sent).
    last_offset: Option<i64>,
    unhealthy: Option<Unhealthy>,
    /// When it last turned healthy again, if it ever was unhealthy.
    recovered_at: Option<Instant>,
}

/// The health of every partition we produce to. See the module documentation.
#[derive(Debug)]
pub struct HealthTracker {
    config: HealthConfig,
    partitions: FastMap<TopicPartition, PartitionState>,
    leaders: FastMap<TopicPartition, i32>,
    brokers: HashMap<i32, BrokerState>,
    events: Vec<HealthEvent>,
    /// No stall is declared before this instant (a fresh producer session is still connecting).
    grace_until: Option<Instant>,
    /// The current producer session: only its acknowledgements end the grace.
    session: u64,
}

impl HealthTracker {
    pub fn new(config: HealthConfig) -> Self {
        Self {
            config,
            partitions: FastMap::default(),
            leaders: FastMap::default(),
            brokers: HashMap::new(),
            events: Vec::new(),
            grace_until: None,
            session: 0,
        }
    }

    pub fn config(&self) -> HealthConfig {
        self.config
    }

    /// The state of `tp`, created on first use. Looked up by borrowed parts: this runs twice
    /// per record, and a `TopicPartition` key is built (allocated) only for a new partition.
    fn state(&mut self, tp: &(impl PartitionKey + ?Sized), now: Instant) -> &mut PartitionState {
        let (topic, partition) = tp.parts();
        let key: &dyn PartitionKey = &(topic, partition);
        if !self.partitions.contains_key(key) {
            let fresh = PartitionState {
                outstanding: 0,
                last_progress: now,
                last_ack: None,
                last_offset: None,
                unhealthy: None,
                recovered_at: None,
            };
            self.partitions
                .insert(TopicPartition::new(topic, partition), fresh);
        }
        self.partitions.get_mut(key).expect("inserted above")
    }

    /// Applies `f` to the state of `tp` with a single lookup when the partition is known (the
    /// per-record case). [`Self::state`] looks up twice: handing out the borrow of a first
    /// `get_mut` is what the borrow checker refuses; applying `f` in place is not.
    fn update<R>(
        &mut self,
        tp: &(impl PartitionKey + ?Sized),
        now: Instant,
        f: impl FnOnce(&mut PartitionState) -> R,
    ) -> R {
        if let Some(s) = self.partitions.get_mut(&tp.parts() as &dyn PartitionKey) {
            return f(s);
        }
        f(self.state(tp, now))
    }

    /// A record was handed to librdkafka for `tp`. Returns the highest offset acknowledged for
    /// `tp` so far: a tail check for this record need not look before it.
    pub fn on_send(&mut self, tp: &(impl PartitionKey + ?Sized), now: Instant) -> Option<i64> {
        self.update(tp, now, |s| {
            if s.outstanding == 0 {
                s.last_progress = now;
            }
            s.outstanding += 1;
            s.last_offset
        })
    }

    /// Kafka acknowledged a record of `tp` sent in producer session `session`. The first
    /// acknowledgement of the current session ends its grace: the producer is connected and has
    /// its id. (A retired session's late acknowledgements are progress, but say nothing of
    /// whether the fresh one is connected yet.)
    /// `offset` is where it landed, when the broker said.
    pub fn on_delivered(
        &mut self,
        tp: &(impl PartitionKey + ?Sized),
        session: u64,
        offset: Option<i64>,
        now: Instant,
    ) {
        if session >= self.session {
            self.grace_until = None;
        }
        self.update(tp, now, |s| {
            s.outstanding = s.outstanding.saturating_sub(1);
            s.last_progress = now;
            s.last_ack = Some(now);
            s.last_offset = s.last_offset.max(offset);
        });
    }

    /// A record of `tp` failed with a transient error (the partition's fault, as far as we know).
    pub fn on_transient_error(&mut self, tp: &TopicPartition, error: &str, now: Instant) {
        let s = self.state(tp, now);
        s.outstanding = s.outstanding.saturating_sub(1);
        self.mark(tp, Reason::DeliveryError(error.to_string()), now);
    }

    /// A record of `tp` left librdkafka without saying anything about the partition (purged by
    /// us, or refused for its own content).
    pub fn on_settled(&mut self, tp: &(impl PartitionKey + ?Sized), now: Instant) {
        let s = self.state(tp, now);
        s.outstanding = s.outstanding.saturating_sub(1);
    }

    /// A fresh producer session starts: it needs time to connect, fetch metadata and get a
    /// producer id before its first acknowledgement, so no partition is declared stalled for
    /// `session_grace` from now, or until the session's first acknowledgement (a stall is then
    /// measured from the end of the grace).
    pub fn on_session_start(&mut self, session: u64, now: Instant) {
        self.session = session;
        self.grace_until = Some(now + self.config.session_grace);
    }

    /// Marks stalled partitions unhealthy, and with each every other partition its leader
    /// leads: a leader that does not answer for one partition does not answer for any (and
    /// the others may just not have had traffic yet). Returns the partitions that had records
    /// outstanding and turned unhealthy now (the ones worth cutting the session for).
    pub fn tick(&mut self, now: Instant) -> Vec<TopicPartition> {
        let grace = self.grace_until;
        if grace.is_some_and(|g| now < g) {
            return Vec::new();
        }
        let stall = self.config.stall_after;
        let answering = |tp: &TopicPartition| {
            self.leaders
                .get(tp)
                .and_then(|l| self.brokers.get(l))
                .and_then(|b| b.last_rx)
                .is_some_and(|rx| now.saturating_duration_since(rx) < stall)
        };
        let stalled: Vec<(TopicPartition, Duration)> = self
            .partitions
            .iter()
            .filter(|(_, s)| s.unhealthy.is_none() && s.outstanding > 0)
            .filter_map(|(tp, s)| {
                let since = grace.map_or(s.last_progress, |g| s.last_progress.max(g));
                let quiet = now.saturating_duration_since(since);
                let limit = if answering(tp) {
                    self.config.stall_while_answering.max(stall)
                } else {
                    stall
                };
                (quiet >= limit).then(|| (tp.clone(), quiet))
            })
            .collect();
        let mut newly = Vec::new();
        for (tp, quiet) in stalled {
            if self.mark(&tp, Reason::Stalled(quiet), now) {
                newly.push(tp.clone());
            }
            let Some(leader) = self.leader(&tp) else {
                continue;
            };
            let led: Vec<TopicPartition> = self
                .leaders
                .iter()
                .filter(|(other, l)| **l == leader && **other != tp)
                .map(|(other, _)| other.clone())
                .collect();
            for other in led {
                let why = Reason::Forced(format!("leader broker {leader} stalled on {tp}"));
                if self.mark(&other, why, now) && self.outstanding(&other) > 0 {
                    newly.push(other);
                }
            }
        }
        newly
    }

    /// Marks `tp` unhealthy for `reason`; returns whether it was healthy before.
    pub fn mark(&mut self, tp: &TopicPartition, reason: Reason, now: Instant) -> bool {
        let s = self.state(tp, now);
        match &mut s.unhealthy {
            Some(u) => {
                u.probes_ok = 0;
                false
            }
            None => {
                s.unhealthy = Some(Unhealthy {
                    since: now,
                    reason: reason.clone(),
                    probes_ok: 0,
                });
                self.events.push(HealthEvent {
                    partition: tp.clone(),
                    unhealthy: Some(reason),
                });
                true
            }
        }
    }

    /// The result of probing the leader of `tp`. Returns true if `tp` turned healthy now.
    pub fn on_probe(&mut self, tp: &TopicPartition, ok: bool, now: Instant) -> bool {
        let config = self.config;
        let broker_bad = self
            .leader(tp)
            .and_then(|l| self.brokers.get(&l))
            .is_some_and(|b| b.bad.is_some());
        let s = self.state(tp, now);
        let Some(u) = &mut s.unhealthy else {
            return false;
        };
        if !ok || broker_bad {
            u.probes_ok = 0;
            return false;
        }
        u.probes_ok += 1;
        if u.probes_ok >= config.recover_after
            && now.saturating_duration_since(u.since) >= config.min_unhealthy
        {
            s.unhealthy = None;
            s.last_progress = now;
            s.recovered_at = Some(now);
            self.events.push(HealthEvent {
                partition: tp.clone(),
                unhealthy: None,
            });
            return true;
        }
        false
    }

    /// Whether `tp` is healthy (a partition never seen is).
    pub fn is_healthy(&self, tp: &(impl PartitionKey + ?Sized)) -> bool {
        self.partitions
            .get(&tp.parts() as &dyn PartitionKey)
            .is_none_or(|s| s.unhealthy.is_none())
    }

    /// Every unhealthy partition with its reason and since when.
    pub fn unhealthy(&self) -> Vec<(TopicPartition, Reason, Instant)> {
        let mut out: Vec<_> = self
            .partitions
            .iter()
            .filter_map(|(tp, s)| {
                s.unhealthy
                    .as_ref()
                    .map(|u| (tp.clone(), u.reason.clone(), u.since))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Whether `tp` is healthy and has been for at least `settle` (a partition never unhealthy
    /// has been healthy forever).
    pub fn healthy_for(&self, tp: &TopicPartition, settle: Duration, now: Instant) -> bool {
        self.partitions.get(tp).is_none_or(|s| {
            s.unhealthy.is_none()
                && s.recovered_at
                    .is_none_or(|r| now.saturating_duration_since(r) >= settle)
        })
    }

    /// The longest time a partition with records outstanding has gone without progress.
    pub fn longest_stall(&self, now: Instant) -> Option<Duration> {
        let grace = self.grace_until;
        self.partitions
            .values()
            .filter(|s| s.outstanding > 0)
            .map(|s| {
                let since = grace.map_or(s.last_progress, |g| s.last_progress.max(g));
                now.saturating_duration_since(since)
            })
            .max()
    }

    /// Partitions known (with a leader in the metadata) and how many of them are unhealthy.
    pub fn known_and_unhealthy(&self) -> (usize, usize) {
        let known = self.leaders.len();
        let unhealthy = self
            .leaders
            .keys()
            .filter(|tp| {
                self.partitions
                    .get(*tp)
                    .is_some_and(|s| s.unhealthy.is_some())
            })
            .count();
        (known, unhealthy)
    }

    /// Records outstanding for `tp`.
    pub fn outstanding(&self, tp: &TopicPartition) -> u64 {
        self.partitions.get(tp).map_or(0, |s| s.outstanding)
    }

    /// Health changes since the last call.
    pub fn take_events(&mut self) -> Vec<HealthEvent> {
        std::mem::take(&mut self.events)
    }
}

#[cfg(test)]
mod tests;
