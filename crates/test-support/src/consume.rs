//! Reading a whole topic back, for verification.
//!
//! Uses a plain `BaseConsumer` with manual assignment (no consumer group, no commits): for each
//! partition it reads from the beginning up to the high watermark measured at the start.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::HarnessError;

/// One record as read back from Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub timestamp_ms: Option<i64>,
}

impl TopicRecord {
    /// The value of the first header called `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// Reads every record of `topic` present when the call starts, ordered by partition then offset.
pub fn read_topic(
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<TopicRecord>, HarnessError> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "spillway-verify")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_uncommitted")
        .create()
        .map_err(HarnessError::kafka("creating the verification consumer"))?;
    let deadline = Instant::now() + timeout;
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(HarnessError::kafka(format!("metadata of {topic}")))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    let mut ends = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for p in partitions {
        let left = deadline.saturating_duration_since(Instant::now());
        let (low, high) = consumer
            .fetch_watermarks(topic, p, left.max(Duration::from_secs(1)))
            .map_err(HarnessError::kafka(format!("watermarks of {topic}/{p}")))?;
        if high > low {
            ends.insert(p, high);
            assignment
                .add_partition_offset(topic, p, Offset::Offset(low))
                .map_err(HarnessError::kafka("building the assignment"))?;
        }
    }
    let mut records = Vec::new();
    if ends.is_empty() {
        return Ok(records);
    }
    consumer
        .assign(&assignment)
        .map_err(HarnessError::kafka("assigning partitions"))?;
    let mut next: HashMap<i32, i64> = HashMap::new();
    while ends
        .iter()
        .any(|(p, end)| next.get(p).copied().unwrap_or(0) < *end)
    {
        if Instant::now() >= deadline {
            let detail = ends
                .iter()
                .map(|(p, end)| format!("p{p} at {} of {end}", next.get(p).copied().unwrap_or(0)))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(HarnessError::ReadTimeout {
                topic: topic.into(),
                detail,
            });
        }
        let Some(msg) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let msg = msg.map_err(HarnessError::kafka(format!("reading {topic}")))?;
        next.insert(msg.partition(), msg.offset() + 1);
        if msg.offset() >= ends.get(&msg.partition()).copied().unwrap_or(0) {
            continue;
        }
        records.push(TopicRecord {
            partition: msg.partition(),
            offset: msg.offset(),
            key: msg.key().map(<[u8]>::to_vec),
            value: msg.payload().map(<[u8]>::to_vec),
            headers: msg
                .headers()
                .map(|hs| {
                    hs.iter()
                        .map(|h| {
                            (
                                h.key.to_owned(),
                                h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            timestamp_ms: msg.timestamp().to_millis(),
        });
    }
    records.sort_by_key(|r| (r.partition, r.offset));
    Ok(records)
}

/// Reads `topic` again and again until it holds at least `expected` records or `timeout`
/// passes, and returns the last read (possibly short: the oracle then reports what is lost).
pub fn read_topic_until(
    bootstrap: &str,
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> Result<Vec<TopicRecord>, HarnessError> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let records = read_topic(bootstrap, topic, left.max(Duration::from_secs(5)))?;
        if records.len() >= expected || Instant::now() >= deadline {
            return Ok(records);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
