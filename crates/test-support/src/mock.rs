//! librdkafka's in-process mock cluster, with faithful multi-broker faults.
//!
//! Tansu always shows one broker, so faults that need several (a partition leader we cannot
//! reach, a leader that moves) use librdkafka's mock cluster. Its `broker_down` removes the broker
//! from the metadata, so clients simply stop using it; that is not KAFKA-3686. The faithful case
//! keeps the broker listed as leader while we cannot reach it. [`MockKafka`] offers two ways:
//! - [`Unreachable::Blackhole`] / [`Unreachable::Reset`] / [`Unreachable::Refused`]: with
//!   [`MockKafka::with_proxies`], every broker advertises a [`FaultProxy`] in front of it, so
//!   the fault applies at once to existing and new connections.
//! - [`MockKafka::advertise_dead_port`]: the broker advertises a port where nothing listens
//!   (`rd_kafka_mock_broker_set_host_port`); clients notice at their next metadata refresh.

mod ffi;

use std::net::SocketAddr;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, DefaultProducerContext, Producer};

use crate::{FaultMode, FaultProxy, HarnessError, dead_port};

/// How a broker is made unreachable while it stays in the metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreachable {
    /// Connections hang: nothing is answered (a silent network partition).
    Blackhole,
    /// Connections are reset.
    Reset,
    /// Connections are refused.
    Refused,
}

#[derive(Debug)]
struct MockBroker {
    id: i32,
    listen: SocketAddr,
    proxy: Option<FaultProxy>,
}

/// A librdkafka mock cluster of several brokers, owned by a host client that produces nothing.
pub struct MockKafka {
    brokers: Vec<MockBroker>,
    bootstrap: String,
    // Declared last so it drops last: the mock cluster lives as long as this client.
    host: BaseProducer<DefaultProducerContext>,
}

impl std::fmt::Debug for MockKafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockKafka")
            .field("brokers", &self.brokers)
            .field("bootstrap", &self.bootstrap)
            .finish_non_exhaustive()
    }
}

impl MockKafka {
    /// A mock cluster of `brokers` brokers (ids 1..=n), clients connecting to them directly.
    pub fn new(brokers: usize) -> Result<Self, HarnessError> {
        Self::build(brokers, false)
    }

    /// A mock cluster whose every broker advertises a [`FaultProxy`] in front of it, so any
    /// broker can be made unreachable while staying in the metadata.
    pub fn with_proxies(brokers: usize) -> Result<Self, HarnessError> {
        Self::build(brokers, true)
    }

    fn build(count: usize, proxied: bool) -> Result<Self, HarnessError> {
        let host: BaseProducer<DefaultProducerContext> = ClientConfig::new()
            .set("test.mock.num.brokers", count.to_string())
            .create()
            .map_err(HarnessError::kafka("creating the mock cluster"))?;
        let listen_addrs: Vec<SocketAddr> = {
            let cluster = host.client().mock_cluster().ok_or_else(|| {
                HarnessError::Mock("client was created without a mock cluster".into())
            })?;
            // The mock cluster lists its brokers in id order, ids 1..=n.
            cluster
                .bootstrap_servers()
                .split(',')
                .map(|a| a.parse::<SocketAddr>())
                .collect::<Result<_, _>>()
                .map_err(|e| HarnessError::Mock(format!("unparsable mock bootstrap: {e}")))?
        };
        let mut brokers = Vec::new();
        for (i, listen) in listen_addrs.into_iter().enumerate() {
            let id = i as i32 + 1;
            let proxy = if proxied {
                let proxy = FaultProxy::start(listen)?;
                let handle =
                    ffi::MockHandle::of(host.client()).expect("mock cluster checked above");
                handle.set_advertised_address(id, "127.0.0.1", proxy.addr().port());
                Some(proxy)
            } else {
                None
            };
            brokers.push(MockBroker { id, listen, proxy });
        }
        let bootstrap = brokers
            .iter()
            .map(|b| {
                b.proxy
                    .as_ref()
                    .map_or(b.listen, FaultProxy::addr)
                    .to_string()
            })
            .collect::<Vec<_>>()
            .join(",");
        Ok(Self {
            brokers,
            bootstrap,
            host,
        })
    }

    /// `bootstrap.servers` for clients of this cluster (the proxies, when proxied).
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Broker ids, 1..=n.
    pub fn broker_ids(&self) -> Vec<i32> {
        self.brokers.iter().map(|b| b.id).collect()
    }

    /// rdkafka's typed mock-cluster API (request errors, leaders, up/down, round-trip time).
    pub fn cluster(&self) -> MockCluster<'_, DefaultProducerContext> {
        self.host
            .client()
            .mock_cluster()
            .expect("the host client owns a mock cluster")
    }

    /// Creates a topic whose partition `p` is led by broker `(p mod n) + 1`, with replication
    /// factor min(3, n).
    pub fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), HarnessError> {
        let n = self.brokers.len() as i32;
        let cluster = self.cluster();
        cluster
            .create_topic(topic, partitions, n.min(3))
            .map_err(HarnessError::kafka(format!("creating mock topic {topic}")))?;
        for p in 0..partitions {
            cluster
                .partition_leader(topic, p, Some(p % n + 1))
                .map_err(HarnessError::kafka(format!(
                    "setting leader of {topic}/{p}"
                )))?;
        }
        Ok(())
    }

    /// Moves the leadership of `topic`/`partition` to `broker`.
    pub fn set_leader(&self, topic: &str, partition: i32, broker: i32) -> Result<(), HarnessError> {
        self.cluster()
            .partition_leader(topic, partition, Some(broker))
            .map_err(HarnessError::kafka(format!(
                "moving leader of {topic}/{partition}"
            )))
    }

    /// The fault proxy in front of `broker`, when built [`with_proxies`](Self::with_proxies).
    pub fn proxy(&self, broker: i32) -> Option<&FaultProxy> {
        self.brokers
            .iter()
            .find(|b| b.id == broker)
            .and_then(|b| b.proxy.as_ref())
    }

    /// Makes `broker` unreachable from clients while it stays in the metadata (KAFKA-3686).
    /// Needs [`with_proxies`](Self::with_proxies). Takes effect at once.
    pub fn make_unreachable(&self, broker: i32, how: Unreachable) -> Result<(), HarnessError> {
        let proxy = self.proxy(broker).ok_or_else(|| {
            HarnessError::Mock(format!(
                "broker {broker} has no proxy: use MockKafka::with_proxies"
            ))
        })?;
        proxy.set_mode(match how {
            Unreachable::Blackhole => FaultMode::Blackhole,
            Unreachable::Reset => FaultMode::Reset,
            Unreachable::Refused => FaultMode::Refuse,
        });
        Ok(())
    }

    /// Makes `broker` reachable again (proxy back to `Pass`, advertised address restored).
    pub fn make_reachable(&self, broker: i32) -> Result<(), HarnessError> {
        let b = self
            .brokers
            .iter()
            .find(|b| b.id == broker)
            .ok_or_else(|| HarnessError::Mock(format!("no broker {broker}")))?;
        let addr = b.proxy.as_ref().map_or(b.listen, |p| {
            p.set_mode(FaultMode::Pass);
            p.addr()
        });
        self.handle()
            .set_advertised_address(broker, "127.0.0.1", addr.port());
        Ok(())
    }

    /// Makes `broker` advertise a loopback port where nothing listens, while it stays leader in
    /// the metadata. Clients connect there (and are refused) from their next metadata refresh.
    pub fn advertise_dead_port(&self, broker: i32) -> SocketAddr {
        let dead = dead_port();
        self.handle()
            .set_advertised_address(broker, "127.0.0.1", dead.port());
        dead
    }

    /// Adds a fixed round-trip time to every request `broker` serves.
    pub fn set_round_trip_time(&self, broker: i32, rtt: Duration) -> Result<(), HarnessError> {
        self.cluster()
            .broker_round_trip_time(broker, rtt)
            .map_err(HarnessError::kafka(format!(
                "setting rtt of broker {broker}"
            )))
    }

    fn handle(&self) -> ffi::MockHandle<'_> {
        ffi::MockHandle::of(self.host.client()).expect("the host client owns a mock cluster")
    }
}
