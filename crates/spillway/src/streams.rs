//! Spool stream names: one stream per topic-partition for ordered records (keyed, or with an
//! explicit partition), and one per topic for keyless records (their partition is chosen at
//! delivery, among healthy ones).
//!
//! `<topic>.p<partition>` and `<topic>.keyless`; parsed from the right, so topics containing
//! dots are unambiguous. The spool limits names to 255 bytes, so spooling topics are limited to
//! 240 characters (Kafka allows 249).

use parking_lot::RwLock;
use spillway_spool::StreamName;

use crate::health::{FastMap, PartitionKey, TopicPartition};

/// Longest topic name whose records can be spooled.
pub const MAX_SPOOLED_TOPIC: usize = 240;

/// Which records a stream holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// Ordered records of one partition.
    Partition(TopicPartition),
    /// Keyless records of a topic.
    Keyless(String),
}

impl StreamKind {
    pub fn topic(&self) -> &str {
        match self {
            StreamKind::Partition(tp) => &tp.topic,
            StreamKind::Keyless(t) => t,
        }
    }

    /// The stream's name.
    pub fn name(&self) -> StreamName {
        let text = match self {
            StreamKind::Partition(tp) => format!("{}.p{}", tp.topic, tp.partition),
            StreamKind::Keyless(t) => format!("{t}.keyless"),
        };
        StreamName::new(&text).expect("topic names are validated before they reach the spool")
    }

    /// Which records a stream name holds, if it is one of ours.
    pub fn parse(name: &str) -> Option<StreamKind> {
        if let Some(topic) = name.strip_suffix(".keyless") {
            return (!topic.is_empty()).then(|| StreamKind::Keyless(topic.to_string()));
        }
        let (topic, p) = name.rsplit_once(".p")?;
        let partition: i32 = p.parse().ok().filter(|p| *p >= 0)?;
        (!topic.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .then(|| StreamKind::Partition(TopicPartition::new(topic, partition)))
    }
}

/// Stream names, formatted and checked once per topic (and partition), not once per record.
#[derive(Debug, Default)]
pub struct StreamNames {
    keyless: RwLock<FastMap<String, StreamName>>,
    partitions: RwLock<FastMap<TopicPartition, StreamName>>,
}

impl StreamNames {
    /// The stream of `topic`'s keyless records.
    pub fn keyless(&self, topic: &str) -> StreamName {
        if let Some(name) = self.keyless.read().get(topic) {
            return name.clone();
        }
        let name = StreamKind::Keyless(topic.to_string()).name();
        self.keyless
            .write()
            .entry(topic.to_string())
            .or_insert(name)
            .clone()
    }

    /// The stream of partition `partition` of `topic`.
    pub fn partition(&self, topic: &str, partition: i32) -> StreamName {
        let key: &dyn PartitionKey = &(topic, partition);
        if let Some(name) = self.partitions.read().get(key) {
            return name.clone();
        }
        let tp = TopicPartition::new(topic, partition);
        let name = StreamKind::Partition(tp.clone()).name();
        self.partitions.write().entry(tp).or_insert(name).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_stream_names_are_the_names_of_their_kinds() {
        let names = StreamNames::default();
        for _ in 0..2 {
            assert_eq!(
                names.keyless("a.b"),
                StreamKind::Keyless("a.b".into()).name()
            );
            assert_eq!(
                names.partition("a.b", 7),
                StreamKind::Partition(TopicPartition::new("a.b", 7)).name()
            );
        }
        assert_eq!(names.partition("a.b", 8).as_str(), "a.b.p8");
        assert_eq!(names.keyless("c").as_str(), "c.keyless");
    }

    #[test]
    fn stream_names_round_trip_even_for_dotted_topics() {
        for kind in [
            StreamKind::Partition(TopicPartition::new("orders", 3)),
            StreamKind::Partition(TopicPartition::new("a.p1", 0)),
            StreamKind::Keyless("a.p1".into()),
            StreamKind::Keyless("x.keyless".into()),
        ] {
            assert_eq!(StreamKind::parse(kind.name().as_str()), Some(kind));
        }
    }

    #[test]
    fn foreign_names_are_not_ours() {
        for name in [
            "orders",
            "orders.p",
            "orders.p-1",
            ".keyless",
            "orders.px",
            "orders.p+1",
        ] {
            assert_eq!(StreamKind::parse(name), None, "{name}");
        }
    }

    #[test]
    fn the_longest_spooled_topic_fits_a_stream_name() {
        let topic = "t".repeat(MAX_SPOOLED_TOPIC);
        let _ = StreamKind::Keyless(topic.clone()).name();
        let _ = StreamKind::Partition(TopicPartition::new(topic, i32::MAX)).name();
    }
}
