//! The Kafka side of a chaos run: the real Tansu broker behind a fault proxy, or librdkafka's
//! 3-broker mock cluster with a fault proxy in front of every broker. Either way the gateway (a
//! child process) connects through the proxies, so network faults hit only its traffic.

use std::time::Duration;

use anyhow::Context;
use spillway_test_support::mock::Unreachable;
use spillway_test_support::{FaultMode, MockKafka, TansuBroker};

pub const CANARY_TOPIC: &str = "__spillway_canary";

/// The cluster under the gateway.
#[derive(Debug)]
pub enum Cluster {
    Tansu {
        broker: TansuBroker,
        paused: bool,
        down: bool,
    },
    Mock(MockKafka),
}

impl Cluster {
    /// Tansu (SQLite storage, durable across kill -9) advertising its fault proxy.
    pub fn tansu(topic: &str, partitions: i32) -> anyhow::Result<Self> {
        let broker = TansuBroker::start_proxied().context("starting Tansu")?;
        broker
            .create_topics(&[(topic, partitions), (CANARY_TOPIC, 1)])
            .context("creating topics")?;
        Ok(Cluster::Tansu {
            broker,
            paused: false,
            down: false,
        })
    }

    /// The mock cluster, 3 brokers, partition p led by broker p mod 3 + 1.
    pub fn mock(topic: &str, partitions: i32) -> anyhow::Result<Self> {
        let kafka = MockKafka::with_proxies(3).context("starting the mock cluster")?;
        kafka.create_topic(topic, partitions)?;
        kafka.create_topic(CANARY_TOPIC, 3)?;
        Ok(Cluster::Mock(kafka))
    }

    pub fn name(&self) -> &'static str {
        match self {
            Cluster::Tansu { .. } => "tansu",
            Cluster::Mock(_) => "mock",
        }
    }

    /// `bootstrap.servers` for the gateway (through the proxies).
    pub fn bootstrap(&self) -> String {
        match self {
            Cluster::Tansu { broker, .. } => broker.bootstrap(),
            Cluster::Mock(kafka) => kafka.bootstrap().to_string(),
        }
    }

    /// The local ports the gateway reaches Kafka on (the fault proxies').
    pub fn gateway_ports(&self) -> Vec<u16> {
        match self {
            Cluster::Tansu { broker, .. } => broker
                .proxy()
                .map(|p| p.addr().port())
                .into_iter()
                .collect(),
            Cluster::Mock(kafka) => kafka
                .broker_ids()
                .into_iter()
                .filter_map(|b| kafka.proxy(b).map(|p| p.addr().port()))
                .collect(),
        }
    }

    /// `bootstrap.servers` for reading the topic back.
    pub fn verify_bootstrap(&self) -> String {
        match self {
            Cluster::Tansu { broker, .. } => broker.direct_bootstrap(),
            Cluster::Mock(kafka) => kafka.bootstrap().to_string(),
        }
    }

    /// Cuts (or restores) the gateway's whole path to Kafka: the proxy blackholes.
    pub fn blackhole(&self, on: bool) -> anyhow::Result<()> {
        match self {
            Cluster::Tansu { broker, .. } => {
                let proxy = broker
                    .proxy()
                    .context("Tansu was started without a proxy")?;
                proxy.set_mode(if on {
                    FaultMode::Blackhole
                } else {
                    FaultMode::Pass
                });
            }
            Cluster::Mock(kafka) => {
                for b in kafka.broker_ids() {
                    if on {
                        kafka.make_unreachable(b, Unreachable::Blackhole)?;
                    } else {
                        kafka.make_reachable(b)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Tansu: SIGKILL the broker.
    pub fn kill_broker(&mut self) -> anyhow::Result<()> {
        let Cluster::Tansu {
            broker,
            down,
            paused,
        } = self
        else {
            anyhow::bail!("broker kill needs Tansu");
        };
        broker.kill9();
        *down = true;
        *paused = false;
        Ok(())
    }

    /// Tansu: start the broker again on the same data.
    pub fn restart_broker(&mut self) -> anyhow::Result<()> {
        let Cluster::Tansu {
            broker,
            down,
            paused,
        } = self
        else {
            anyhow::bail!("broker restart needs Tansu");
        };
        broker.restart().context("restarting Tansu")?;
        *down = false;
        *paused = false;
        Ok(())
    }

    /// Tansu: SIGSTOP (true) or SIGCONT (false).
    pub fn pause_broker(&mut self, on: bool) -> anyhow::Result<()> {
        let Cluster::Tansu { broker, paused, .. } = self else {
            anyhow::bail!("broker pause needs Tansu");
        };
        if on {
            broker.pause()?;
        } else {
            broker.resume()?;
        }
        *paused = on;
        Ok(())
    }

    /// Mock: make one broker unreachable while it stays in the metadata (or reachable again).
    pub fn broker_unreachable(&self, id: i32, on: bool) -> anyhow::Result<()> {
        let Cluster::Mock(kafka) = self else {
            anyhow::bail!("leader faults need the mock cluster");
        };
        if on {
            kafka.make_unreachable(id, Unreachable::Blackhole)?;
        } else {
            kafka.make_reachable(id)?;
        }
        Ok(())
    }

    /// Mock: move a partition's leadership.
    pub fn move_leader(&self, topic: &str, partition: i32, to: i32) -> anyhow::Result<()> {
        let Cluster::Mock(kafka) = self else {
            anyhow::bail!("leader faults need the mock cluster");
        };
        kafka.set_leader(topic, partition, to)?;
        Ok(())
    }

    pub fn is_tansu(&self) -> bool {
        matches!(self, Cluster::Tansu { .. })
    }

    /// Whether Tansu shows its known epoch-bump wedge (a broker defect, not ours).
    pub fn wedged(&self) -> bool {
        match self {
            Cluster::Tansu { broker, down, .. } => !*down && broker.wedged(),
            Cluster::Mock(_) => false,
        }
    }

    /// Whether Tansu, running and not stopped, has stopped answering (its silent hang: a broker
    /// defect, not ours; a restart clears it).
    pub fn hung(&self) -> bool {
        match self {
            Cluster::Tansu {
                broker,
                down,
                paused,
                ..
            } => !*down && !*paused && !broker.answers(Duration::from_secs(5)),
            Cluster::Mock(_) => false,
        }
    }

    /// Everything healthy again: proxies pass, the broker runs and is not stopped.
    pub fn heal(&mut self) -> anyhow::Result<()> {
        self.blackhole(false)?;
        if let Cluster::Tansu { paused, down, .. } = *self {
            if paused {
                self.pause_broker(false)?;
            } else if down {
                self.restart_broker()?;
            }
        }
        Ok(())
    }

    /// Sleeps `d` (a helper so fault code reads as a script).
    pub fn hold(d: Duration) {
        std::thread::sleep(d);
    }
}
