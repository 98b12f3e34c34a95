//! The oracle: did every acknowledged record reach Kafka intact, once, and in order?
//!
//! Input is two histories:
//! - what clients were told: every acknowledged record with its id, its ordering group (the key,
//!   or the explicit partition), a digest of what was sent, and two logical times from one
//!   clock shared by all clients: when the request was sent and when the acknowledgement came;
//! - what Kafka holds: every record read back with its id, digest, partition and offset.
//!
//! Verdicts:
//! - **lost**: acknowledged, not in Kafka;
//! - **duplicated**: an id present more than once (for any record, acknowledged or not);
//! - **corrupted**: an acknowledged id whose copy in Kafka has another digest;
//! - **reordered**: two records of one ordering group where B was acknowledged before A was even
//!   sent, yet A sits before B in Kafka. Records whose requests overlapped in time carry no
//!   order, because no client could have relied on one;
//! - **split**: one ordering group spread over several partitions (its order is then undefined).
//!
//! Records delivered but never acknowledged are allowed (a client told "no" may still find its
//! record in Kafka) and only counted.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use sha2::{Digest as _, Sha256};

use crate::TopicRecord;

/// A short digest of a record's key and value.
pub type Digest = u64;

/// The digest of a key and value, as the load generator and the verifier both compute it.
pub fn digest(key: Option<&[u8]>, value: Option<&[u8]>) -> Digest {
    let mut h = Sha256::new();
    for part in [key, value] {
        match part {
            Some(bytes) => {
                h.update([1u8]);
                h.update((bytes.len() as u64).to_le_bytes());
                h.update(bytes);
            }
            None => h.update([0u8]),
        }
    }
    u64::from_le_bytes(h.finalize()[..8].try_into().expect("8 bytes"))
}

/// A record a client was told is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acked {
    /// The record's unique id (as carried in Kafka, e.g. in a header).
    pub id: String,
    /// The ordering group: the key, or the explicit partition; `None` for no order promise.
    pub order_key: Option<Vec<u8>>,
    /// [`digest`] of what was sent.
    pub digest: Digest,
    /// Logical time the request was sent.
    pub sent: u64,
    /// Logical time the acknowledgement was received (`> sent`).
    pub acked: u64,
}

/// A record found in Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub id: String,
    pub digest: Digest,
    pub partition: i32,
    pub offset: i64,
}

impl Delivered {
    /// Turns records read back from a topic into oracle input; records for which `id_of`
    /// returns `None` (not ours) are skipped.
    pub fn from_records(
        records: &[TopicRecord],
        id_of: impl Fn(&TopicRecord) -> Option<String>,
    ) -> Vec<Delivered> {
        records
            .iter()
            .filter_map(|r| {
                Some(Delivered {
                    id: id_of(r)?,
                    digest: digest(r.key.as_deref(), r.value.as_deref()),
                    partition: r.partition,
                    offset: r.offset,
                })
            })
            .collect()
    }
}

/// Two records of one ordering group found in the wrong order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reordering {
    pub order_key: Vec<u8>,
    /// Acknowledged before `second` was sent...
    pub first: String,
    /// ...yet `second` sits before `first` in Kafka.
    pub second: String,
}

/// The oracle's findings. [`Verdict::is_clean`] is the pass/fail answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    pub acknowledged: usize,
    pub delivered: usize,
    pub lost: Vec<String>,
    pub duplicated: Vec<(String, usize)>,
    pub corrupted: Vec<String>,
    pub reordered: Vec<Reordering>,
    pub split: Vec<Vec<u8>>,
    /// Delivered records that were never acknowledged: allowed, only counted.
    pub delivered_unacknowledged: usize,
}

impl Verdict {
    /// No acknowledged record lost, duplicated, corrupted or reordered.
    pub fn is_clean(&self) -> bool {
        self.lost.is_empty()
            && self.duplicated.is_empty()
            && self.corrupted.is_empty()
            && self.reordered.is_empty()
            && self.split.is_empty()
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "acknowledged {}, delivered {} ({} not acknowledged); lost {}, duplicated {}, corrupted {}, reordered {}, split keys {}",
            self.acknowledged,
            self.delivered,
            self.delivered_unacknowledged,
            self.lost.len(),
            self.duplicated.len(),
            self.corrupted.len(),
            self.reordered.len(),
            self.split.len()
        )?;
        let sample = |ids: &[String]| ids.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
        if !self.lost.is_empty() {
            write!(f, "\n  lost e.g. {}", sample(&self.lost))?;
        }
        if !self.corrupted.is_empty() {
            write!(f, "\n  corrupted e.g. {}", sample(&self.corrupted))?;
        }
        if let Some((id, n)) = self.duplicated.first() {
            write!(f, "\n  duplicated e.g. {id} x{n}")?;
        }
        if let Some(r) = self.reordered.first() {
            write!(
                f,
                "\n  reordered e.g. {} acknowledged before {} was sent, but after it in Kafka",
                r.first, r.second
            )?;
        }
        Ok(())
    }
}

/// Judges a run: see the module documentation.
pub fn check(acked: &[Acked], delivered: &[Delivered]) -> Verdict {
    let mut copies: HashMap<&str, Vec<&Delivered>> = HashMap::new();
    for d in delivered {
        copies.entry(d.id.as_str()).or_default().push(d);
    }
    let mut verdict = Verdict {
        acknowledged: acked.len(),
        delivered: delivered.len(),
        ..Verdict::default()
    };

    let mut duplicated: Vec<(String, usize)> = copies
        .iter()
        .filter(|(_, c)| c.len() > 1)
        .map(|(id, c)| (id.to_string(), c.len()))
        .collect();
    duplicated.sort();
    verdict.duplicated = duplicated;

    let acked_ids: std::collections::HashSet<&str> = acked.iter().map(|a| a.id.as_str()).collect();
    verdict.delivered_unacknowledged = copies.keys().filter(|id| !acked_ids.contains(*id)).count();

    // Per ordering group: the acknowledged records found intact, at their first copy.
    let mut groups: BTreeMap<&[u8], Vec<(&Acked, &Delivered)>> = BTreeMap::new();
    for a in acked {
        let Some(found) = copies.get(a.id.as_str()) else {
            verdict.lost.push(a.id.clone());
            continue;
        };
        if found.iter().any(|d| d.digest != a.digest) {
            verdict.corrupted.push(a.id.clone());
            continue;
        }
        if let Some(key) = a.order_key.as_deref() {
            let first = found
                .iter()
                .min_by_key(|d| (d.partition, d.offset))
                .expect("non-empty");
            groups.entry(key).or_default().push((a, first));
        }
    }

    for (key, mut members) in groups {
        let partition = members[0].1.partition;
        if members.iter().any(|(_, d)| d.partition != partition) {
            verdict.split.push(key.to_vec());
            continue;
        }
        members.sort_by_key(|(_, d)| d.offset);
        // Walk from the end, remembering the earliest acknowledgement among later records.
        let mut earliest_later: Option<&Acked> = None;
        for (a, _) in members.iter().rev() {
            if let Some(later) = earliest_later {
                if later.acked < a.sent {
                    verdict.reordered.push(Reordering {
                        order_key: key.to_vec(),
                        first: later.id.clone(),
                        second: a.id.clone(),
                    });
                }
            }
            if earliest_later.is_none_or(|l| a.acked < l.acked) {
                earliest_later = Some(a);
            }
        }
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acked(id: &str, key: Option<&str>, value: &str, sent: u64, ack: u64) -> Acked {
        Acked {
            id: id.into(),
            order_key: key.map(|k| k.as_bytes().to_vec()),
            digest: digest(key.map(str::as_bytes), Some(value.as_bytes())),
            sent,
            acked: ack,
        }
    }

    fn delivered(
        id: &str,
        key: Option<&str>,
        value: &str,
        partition: i32,
        offset: i64,
    ) -> Delivered {
        Delivered {
            id: id.into(),
            digest: digest(key.map(str::as_bytes), Some(value.as_bytes())),
            partition,
            offset,
        }
    }

    #[test]
    fn a_faithful_history_is_clean() {
        let a = [
            acked("a", Some("k"), "1", 1, 2),
            acked("b", Some("k"), "2", 3, 4),
        ];
        let d = [
            delivered("a", Some("k"), "1", 0, 0),
            delivered("b", Some("k"), "2", 0, 1),
        ];
        let v = check(&a, &d);
        assert!(v.is_clean(), "{v}");
        assert_eq!((v.acknowledged, v.delivered), (2, 2));
    }

    #[test]
    fn an_acknowledged_record_missing_from_kafka_is_lost() {
        let a = [acked("a", None, "1", 1, 2), acked("b", None, "2", 1, 2)];
        let d = [delivered("a", None, "1", 0, 0)];
        let v = check(&a, &d);
        assert_eq!(v.lost, vec!["b".to_string()]);
        assert!(!v.is_clean());
    }

    #[test]
    fn a_record_present_twice_is_duplicated() {
        let a = [acked("a", None, "1", 1, 2)];
        let d = [
            delivered("a", None, "1", 0, 0),
            delivered("a", None, "1", 1, 7),
        ];
        let v = check(&a, &d);
        assert_eq!(v.duplicated, vec![("a".to_string(), 2)]);
        assert!(!v.is_clean());
    }

    #[test]
    fn a_record_whose_bytes_changed_is_corrupted() {
        let a = [acked("a", Some("k"), "original", 1, 2)];
        let d = [delivered("a", Some("k"), "tampered", 0, 0)];
        let v = check(&a, &d);
        assert_eq!(v.corrupted, vec!["a".to_string()]);
        assert!(v.lost.is_empty());
        assert!(!v.is_clean());
    }

    #[test]
    fn a_later_acknowledged_record_before_an_earlier_one_is_reordered() {
        let a = [
            acked("a", Some("k"), "1", 1, 2),
            acked("b", Some("k"), "2", 3, 4),
        ];
        let d = [
            delivered("b", Some("k"), "2", 0, 0),
            delivered("a", Some("k"), "1", 0, 1),
        ];
        let v = check(&a, &d);
        assert_eq!(
            v.reordered,
            vec![Reordering {
                order_key: b"k".to_vec(),
                first: "a".into(),
                second: "b".into()
            }]
        );
        assert!(!v.is_clean());
    }

    #[test]
    fn records_whose_requests_overlapped_may_land_in_either_order() {
        // b was sent before a was acknowledged: no client could rely on their order.
        let a = [
            acked("a", Some("k"), "1", 1, 4),
            acked("b", Some("k"), "2", 2, 3),
        ];
        let d = [
            delivered("b", Some("k"), "2", 0, 0),
            delivered("a", Some("k"), "1", 0, 1),
        ];
        assert!(check(&a, &d).is_clean());
    }

    #[test]
    fn records_of_different_keys_have_no_mutual_order() {
        let a = [
            acked("a", Some("x"), "1", 1, 2),
            acked("b", Some("y"), "2", 3, 4),
        ];
        let d = [
            delivered("b", Some("y"), "2", 0, 0),
            delivered("a", Some("x"), "1", 0, 1),
        ];
        assert!(check(&a, &d).is_clean());
    }

    #[test]
    fn one_key_spread_over_two_partitions_is_split() {
        let a = [
            acked("a", Some("k"), "1", 1, 2),
            acked("b", Some("k"), "2", 3, 4),
        ];
        let d = [
            delivered("a", Some("k"), "1", 0, 0),
            delivered("b", Some("k"), "2", 1, 0),
        ];
        let v = check(&a, &d);
        assert_eq!(v.split, vec![b"k".to_vec()]);
        assert!(!v.is_clean());
    }

    #[test]
    fn delivered_records_never_acknowledged_are_allowed_and_counted() {
        let a = [acked("a", None, "1", 1, 2)];
        let d = [
            delivered("a", None, "1", 0, 0),
            delivered("rejected", None, "x", 0, 1),
        ];
        let v = check(&a, &d);
        assert!(v.is_clean(), "{v}");
        assert_eq!(v.delivered_unacknowledged, 1);
    }

    #[test]
    fn reordering_is_found_far_apart_in_a_long_run() {
        let mut a: Vec<Acked> = (0..100)
            .map(|i| acked(&format!("r{i}"), Some("k"), "v", 2 * i, 2 * i + 1))
            .collect();
        a[0].acked = 1;
        let mut d: Vec<Delivered> = (0..100)
            .map(|i| delivered(&format!("r{i}"), Some("k"), "v", 0, i as i64))
            .collect();
        // r0 (acknowledged first) ends up at the very end of the partition.
        d[0].offset = 1000;
        let v = check(&a, &d);
        assert!(v.reordered.iter().any(|r| r.first == "r0"), "{v}");
    }

    #[test]
    fn digest_tells_key_from_value() {
        assert_ne!(
            digest(Some(b"ab"), Some(b"c")),
            digest(Some(b"a"), Some(b"bc"))
        );
        assert_ne!(digest(None, Some(b"")), digest(Some(b""), None));
    }
}
