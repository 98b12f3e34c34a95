//! The canary: can we produce to *and* consume from the cluster right now? A half-open breaker
//! closes only on a canary that went all the way round.
//!
//! It writes one record to every partition of a dedicated topic (`__spillway_canary` by
//! default, created on first use with one partition per broker where the cluster allows, so
//! every broker leads one), then reads each back from the offset Kafka gave it. A fresh pair
//! of clients per check: a canary must not inherit a connection state from before the outage.
//! The canary producer is not idempotent (one record per partition, no retries matter), so it
//! never carries a bumped producer epoch across an outage.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// Runs canary checks against one cluster.
#[derive(Debug, Clone)]
pub struct Canary {
    base: ClientConfig,
    topic: String,
    timeout: Duration,
}

impl Canary {
    /// `base` carries the connection settings (bootstrap, security); the rest is the canary's.
    pub fn new(base: &ClientConfig, topic: impl Into<String>, timeout: Duration) -> Self {
        let mut cfg = ClientConfig::new();
        for (k, v) in base.config_map() {
            if k == "bootstrap.servers"
                || k.starts_with("security.")
                || k.starts_with("sasl.")
                || k.starts_with("ssl.")
            {
                cfg.set(k, v);
            }
        }
        Self {
            base: cfg,
            topic: topic.into(),
            timeout,
        }
    }

    /// One round trip through every partition of the canary topic. Blocking.
    pub fn check(&self) -> Result<(), String> {
        let deadline = Instant::now() + self.timeout;
        let left = || {
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(100))
        };
        let producer: BaseProducer = self
            .base
            .clone()
            .set("acks", "all")
            .set("enable.idempotence", "false")
            .set("message.timeout.ms", self.timeout.as_millis().to_string())
            .set("linger.ms", "0")
            .create()
            .map_err(|e| format!("canary producer: {e}"))?;
        let partitions = self.partitions(&producer, left())?;
        let token = format!("{:016x}", rand::random::<u64>());
        for p in &partitions {
            let record = BaseRecord::<(), _>::to(&self.topic)
                .partition(*p)
                .payload(&token);
            producer
                .send(record)
                .map_err(|(e, _)| format!("canary send: {e}"))?;
        }
        producer
            .flush(left())
            .map_err(|e| format!("canary produce: {e}"))?;
        // Where did they land? Read each partition from its end minus what we just wrote.
        let consumer: BaseConsumer = self
            .base
            .clone()
            .set("group.id", "spillway-canary")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create()
            .map_err(|e| format!("canary consumer: {e}"))?;
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            let (low, high) = consumer
                .fetch_watermarks(&self.topic, *p, left())
                .map_err(|e| format!("canary watermarks of partition {p}: {e}"))?;
            let from = (high - 100).max(low);
            tpl.add_partition_offset(&self.topic, *p, Offset::Offset(from))
                .map_err(|e| format!("canary assignment: {e}"))?;
        }
        consumer
            .assign(&tpl)
            .map_err(|e| format!("canary assign: {e}"))?;
        let mut seen: HashSet<i32> = HashSet::new();
        while seen.len() < partitions.len() {
            if Instant::now() >= deadline {
                return Err(format!(
                    "canary read back {} of {} partitions in time",
                    seen.len(),
                    partitions.len()
                ));
            }
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                if m.payload() == Some(token.as_bytes()) {
                    seen.insert(m.partition());
                }
            }
        }
        Ok(())
    }

    /// The canary topic's partitions, creating the topic if it is missing.
    fn partitions(&self, producer: &BaseProducer, timeout: Duration) -> Result<Vec<i32>, String> {
        let md = producer
            .client()
            .fetch_metadata(Some(&self.topic), timeout)
            .map_err(|e| format!("canary metadata: {e}"))?;
        let brokers = md.brokers().len().max(1) as i32;
        if let Some(t) = md
            .topics()
            .iter()
            .find(|t| t.name() == self.topic && t.error().is_none())
        {
            if !t.partitions().is_empty() {
                return Ok(t.partitions().iter().map(|p| p.id()).collect());
            }
        }
        let admin: AdminClient<DefaultClientContext> = self
            .base
            .create()
            .map_err(|e| format!("canary admin client: {e}"))?;
        let topic = NewTopic::new(
            &self.topic,
            brokers,
            TopicReplication::Fixed(brokers.min(3)),
        );
        let opts = AdminOptions::new().operation_timeout(Some(timeout));
        let result = futures::executor::block_on(admin.create_topics([&topic], &opts))
            .map_err(|e| format!("creating the canary topic: {e}"))?;
        for r in result {
            if let Err((t, code)) = r {
                if code != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists {
                    return Err(format!("creating canary topic {t}: {code}"));
                }
            }
        }
        Ok((0..brokers).collect())
    }
}
