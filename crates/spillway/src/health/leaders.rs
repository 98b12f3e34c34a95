//! Leaders and brokers: which broker leads each partition (from metadata), what librdkafka's
//! statistics say of each broker (signal 2 of the module documentation), and the questions the
//! supervisor's probes ask per leader.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::{HealthTracker, Reason, TopicPartition};

/// A broker as librdkafka's statistics describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerStat {
    pub id: i32,
    /// librdkafka's broker state: `INIT`, `DOWN`, `CONNECT`, `UP`, ...
    pub state: String,
    /// Requests sent and waiting for a response.
    pub waitresp_cnt: i64,
    /// Requests waiting to be sent.
    pub outbuf_cnt: i64,
    /// Microseconds since the last byte was received, or -1.
    pub rxidle_us: i64,
    /// Microseconds since the broker's state last changed, or -1.
    pub stateage_us: i64,
}

/// librdkafka's states of a connection being set up.
const CONNECTING: [&str; 7] = [
    "CONNECT",
    "SSL_HANDSHAKE",
    "AUTH_LEGACY",
    "APIVERSION_QUERY",
    "AUTH_HANDSHAKE",
    "AUTH_REQ",
    "REAUTH",
];

#[derive(Debug, Clone, Default)]
pub(super) struct BrokerState {
    pub(super) last_up: Option<Instant>,
    /// When the broker last sent us anything, as far as the statistics tell.
    pub(super) last_rx: Option<Instant>,
    pub(super) bad: Option<Reason>,
}

impl HealthTracker {
    /// The current leaders of a topic's partitions, from metadata.
    pub fn on_leaders(&mut self, topic: &str, leaders: &[(i32, i32)]) {
        for (partition, leader) in leaders {
            self.leaders
                .insert(TopicPartition::new(topic, *partition), *leader);
        }
    }

    /// The leader of `tp`, if known.
    pub fn leader(&self, tp: &TopicPartition) -> Option<i32> {
        self.leaders.get(tp).copied()
    }

    /// Broker statistics from librdkafka.
    pub fn on_broker_stats(&mut self, brokers: &[BrokerStat], now: Instant) {
        let stall = self.config.stall_after;
        for b in brokers.iter().filter(|b| b.id >= 0) {
            let state = self.brokers.entry(b.id).or_default();
            let silent = b.waitresp_cnt > 0
                && b.rxidle_us >= 0
                && Duration::from_micros(b.rxidle_us as u64) >= stall;
            // librdkafka connects only to brokers it needs: a broker that is down while nothing
            // waits for it says nothing about its partitions (probes decide those).
            let wanted = b.waitresp_cnt > 0 || b.outbuf_cnt > 0;
            // A connection being set up for less than the stall time is not a broker down: a
            // fresh session after an outage meets every broker this way, with records queued.
            // One stuck in it (a blackhole holds the handshake) is, once it has been that long.
            let setting_up = CONNECTING.contains(&b.state.as_str())
                && b.stateage_us >= 0
                && Duration::from_micros(b.stateage_us as u64) < stall;
            if b.state == "UP" && b.rxidle_us >= 0 {
                let rx = now.checked_sub(Duration::from_micros(b.rxidle_us as u64));
                state.last_rx = state.last_rx.max(rx);
            }
            state.bad = if b.state == "UP" {
                state.last_up = Some(now);
                silent.then_some(Reason::BrokerSilent { broker: b.id })
            } else {
                match state.last_up {
                    Some(up) if wanted && !setting_up && now.duration_since(up) >= stall => {
                        Some(Reason::BrokerDown {
                            broker: b.id,
                            state: b.state.clone(),
                        })
                    }
                    _ => None,
                }
            };
        }
        let bad: Vec<(TopicPartition, Reason)> = self
            .leaders
            .iter()
            .filter_map(|(tp, leader)| {
                self.brokers
                    .get(leader)
                    .and_then(|s| s.bad.clone())
                    .map(|r| (tp.clone(), r))
            })
            .collect();
        for (tp, reason) in bad {
            self.mark(&tp, reason, now);
        }
    }

    /// Whether a partition led by `leader` had a record acknowledged in the last `within`.
    pub fn leader_acked_within(&self, leader: i32, within: Duration, now: Instant) -> bool {
        self.leaders
            .iter()
            .filter(|(_, l)| **l == leader)
            .filter_map(|(tp, _)| self.partitions.get(tp)?.last_ack)
            .any(|t| now.saturating_duration_since(t) <= within)
    }

    /// One partition of every leader none of whose partitions is unhealthy (probe targets).
    pub fn healthy_leaders(&self) -> Vec<(i32, TopicPartition)> {
        let mut bad = HashSet::new();
        for (tp, leader) in &self.leaders {
            if !self.is_healthy(tp) {
                bad.insert(*leader);
            }
        }
        let mut out: HashMap<i32, TopicPartition> = HashMap::new();
        for (tp, leader) in &self.leaders {
            if *leader >= 0 && !bad.contains(leader) {
                out.entry(*leader).or_insert_with(|| tp.clone());
            }
        }
        let mut out: Vec<_> = out.into_iter().collect();
        out.sort();
        out
    }

    /// Marks every partition `leader` leads unhealthy.
    pub fn mark_leader(&mut self, leader: i32, why: &str, now: Instant) {
        let led: Vec<TopicPartition> = self
            .leaders
            .iter()
            .filter(|(_, l)| **l == leader)
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in led {
            self.mark(&tp, Reason::Forced(why.to_string()), now);
        }
    }
}
