//! [`TopicPartition`], and searching maps keyed by it without building one.
//!
//! The producer looks a partition up in the health tracker for every record it sends and for
//! every report it gets. Building a `TopicPartition` for each lookup allocates (its topic is a
//! `String`), which at hundreds of thousands of records per second cost more than the lookup.
//! So the maps can also be searched by `(&str, i32)`: both sides are seen as the trait object
//! [`PartitionKey`], and `TopicPartition` borrows as one. Hashing and equality go through the
//! same `(topic, partition)` parts on both sides, so they always agree.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};

/// The maps the producer searches for every record (partition health, topic metadata, sticky
/// placement) hash with foldhash rather than SipHash: their keys are short, and SipHash was a
/// few per cent of the producer's CPU. Seeded per map, so still not predictable from outside.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A topic and a partition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

// By hand, through the parts, so that it agrees with `dyn PartitionKey`'s hash.
impl Hash for TopicPartition {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self as &dyn PartitionKey).hash(state);
    }
}

/// Anything that names a partition: a [`TopicPartition`] or a borrowed `(&str, i32)`.
pub trait PartitionKey {
    fn parts(&self) -> (&str, i32);
}

impl PartitionKey for TopicPartition {
    fn parts(&self) -> (&str, i32) {
        (&self.topic, self.partition)
    }
}

impl PartitionKey for (&str, i32) {
    fn parts(&self) -> (&str, i32) {
        *self
    }
}

impl Hash for dyn PartitionKey + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let (topic, partition) = self.parts();
        topic.hash(state);
        partition.hash(state);
    }
}

impl PartialEq for dyn PartitionKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn PartitionKey + '_ {}

impl<'a> Borrow<dyn PartitionKey + 'a> for TopicPartition {
    fn borrow(&self) -> &(dyn PartitionKey + 'a) {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn a_map_keyed_by_topic_partition_is_found_by_borrowed_parts() {
        let mut map = HashMap::new();
        for p in 0..50 {
            map.insert(TopicPartition::new("orders", p), p);
            map.insert(TopicPartition::new("orders2", p), -p);
        }
        for p in 0..50 {
            assert_eq!(map.get(&("orders", p) as &dyn PartitionKey), Some(&p));
            assert_eq!(map.get(&("orders2", p) as &dyn PartitionKey), Some(&-p));
        }
        assert_eq!(map.get(&("orders", 50) as &dyn PartitionKey), None);
        assert_eq!(map.get(&("order", 1) as &dyn PartitionKey), None);
    }

    #[test]
    fn a_topic_partition_hashes_like_its_borrowed_parts() {
        use std::hash::BuildHasher;
        let s = std::collections::hash_map::RandomState::new();
        let tp = TopicPartition::new("a.b", 7);
        assert_eq!(
            s.hash_one(&tp),
            s.hash_one(&("a.b", 7) as &dyn PartitionKey)
        );
    }
}
