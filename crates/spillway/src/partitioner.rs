//! Choosing a partition at admission (DESIGN § Partitioning).
//!
//! - A keyed record goes where Kafka's default partitioner puts it: `toPositive(murmur2(key)) %
//!   partitions`, identical to the Java client (and librdkafka's `murmur2` partitioner), so our
//!   keys land where other producers' keys land.
//! - An explicit partition is honoured.
//! - A keyless record is placed *sticky* among healthy partitions: it stays on one partition for
//!   a run of records (good batching), and moves when the run ends or the partition turns
//!   unhealthy.

use parking_lot::Mutex;
use rand::Rng;

use crate::health::FastMap;

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`): seed `0x9747b28c`.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = SEED ^ data.len() as u32;
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for chunk in chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner chooses for `key` among `partitions`.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    assert!(partitions > 0, "a topic has at least one partition");
    (murmur2(key) & 0x7fff_ffff) % partitions
}

/// Sticky placement of keyless records among healthy partitions, per topic.
#[derive(Debug)]
pub struct StickyChooser {
    run_length: u32,
    current: Mutex<FastMap<String, (i32, u32)>>,
}

impl StickyChooser {
    /// Stays on a partition for `run_length` records before moving on.
    pub fn new(run_length: u32) -> Self {
        Self {
            run_length: run_length.max(1),
            current: Mutex::new(FastMap::default()),
        }
    }

    /// The partition for the next keyless record of `topic`, among the partitions for which
    /// `healthy` is true; `None` if there is none.
    pub fn choose(
        &self,
        topic: &str,
        partitions: i32,
        healthy: impl Fn(i32) -> bool,
    ) -> Option<i32> {
        let mut current = self.current.lock();
        if let Some((p, used)) = current.get_mut(topic) {
            if *p < partitions && *used < self.run_length && healthy(*p) {
                *used += 1;
                return Some(*p);
            }
        }
        let candidates: Vec<i32> = (0..partitions).filter(|p| healthy(*p)).collect();
        if candidates.is_empty() {
            current.remove(topic);
            return None;
        }
        let previous = current.get(topic).map(|(p, _)| *p);
        let mut rng = rand::rng();
        let mut pick = candidates[rng.random_range(0..candidates.len())];
        if Some(pick) == previous && candidates.len() > 1 {
            pick = candidates
                [(candidates.iter().position(|c| *c == pick).unwrap_or(0) + 1) % candidates.len()];
        }
        current.insert(topic.to_string(), (pick, 1));
        Some(pick)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Known outputs of the Java client's `Utils.murmur2` (from Kafka's own unit test).
    #[test]
    fn murmur2_matches_the_java_client() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, expected) in cases {
            assert_eq!(murmur2(key), expected, "{}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn keyed_partitions_are_non_negative_and_in_range() {
        for key in [&b""[..], b"a", b"21", b"foobar"] {
            let p = partition_for_key(key, 7);
            assert!((0..7).contains(&p));
        }
    }

    #[test]
    fn keyless_records_stick_to_one_healthy_partition_for_a_run() {
        let chooser = StickyChooser::new(10);
        let first = chooser.choose("t", 6, |_| true).unwrap();
        for _ in 0..9 {
            assert_eq!(chooser.choose("t", 6, |_| true), Some(first));
        }
        assert_ne!(
            chooser.choose("t", 6, |_| true),
            Some(first),
            "the run ended"
        );
    }

    #[test]
    fn keyless_records_leave_a_partition_the_moment_it_turns_unhealthy() {
        let chooser = StickyChooser::new(1000);
        let first = chooser.choose("t", 3, |_| true).unwrap();
        for _ in 0..100 {
            let p = chooser.choose("t", 3, |p| p != first).unwrap();
            assert_ne!(p, first);
        }
    }

    #[test]
    fn with_no_healthy_partition_there_is_no_choice() {
        let chooser = StickyChooser::new(10);
        assert_eq!(chooser.choose("t", 3, |_| false), None);
    }

    proptest! {
        #[test]
        fn a_choice_is_always_a_healthy_partition(mask in 1u32..64, n in 1i32..6) {
            let chooser = StickyChooser::new(3);
            let healthy = |p: i32| mask & (1 << p) != 0;
            for _ in 0..20 {
                match chooser.choose("t", n, healthy) {
                    Some(p) => prop_assert!(healthy(p) && p < n),
                    None => prop_assert!((0..n).all(|p| !healthy(p))),
                }
            }
        }
    }
}
