//! The envelope: how a record is stored in a spool record's payload.
//!
//! The spool stores opaque bytes; this is what the library puts in them. Ours, little-endian,
//! no serialisation crate (the spool's CRC-32C covers it):
//!
//! ```text
//!  size  field
//!     1  version = 1
//!     1  flags: bit 0 key present, bit 1 value present, bit 2 explicit partition,
//!               bit 3 timestamp present, bit 4 possibly persisted (see below)
//!     1  priority: 0 bulk, 1 normal, 2 critical
//!     8  id.instance
//!     4  id.boot
//!     8  id.seq
//!     4  partition (i32; -1 when Spillway chooses at delivery: keyless)
//!     8  timestamp_ms (i64; 0 when absent)
//!     8  known_before (i64; last offset known delivered to `partition` before an earlier
//!        attempt that may have reached Kafka; -1 when none)
//!     2  topic length, then the topic (UTF-8)
//!     4  key length, then the key        (only when flag bit 0)
//!     4  value length, then the value    (only when flag bit 1)
//!     2  header count, then per header: 2 name length, name (UTF-8), 4 value length, value
//! ```
//!
//! *Possibly persisted*: the record was handed to Kafka before it was spooled and may be there
//! already (its outcome was `PossiblyPersisted`). The forwarder checks the partition's tail for
//! its id, after `known_before`, before sending it again (DESIGN G4).

use crate::api::Priority;
use crate::record::{OutRecord, SpillwayId};

const VERSION: u8 = 1;
const F_KEY: u8 = 1;
const F_VALUE: u8 = 2;
const F_PARTITION: u8 = 4;
const F_TIMESTAMP: u8 = 8;
const F_POSSIBLY: u8 = 16;

/// A record as stored in the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub record: OutRecord,
    pub priority: Priority,
    /// The partition Spillway chose at admission (keyed or explicit); `None` for keyless.
    pub partition: Option<i32>,
    /// `Some(known_before)` when an earlier attempt may have reached Kafka.
    pub possibly_persisted: Option<Option<i64>>,
}

/// A payload that is not an envelope this version can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("envelope ends early: {0}")]
    Truncated(&'static str),
    #[error("unknown envelope version {0}")]
    Version(u8),
    #[error("envelope field {0} is not valid UTF-8")]
    Utf8(&'static str),
    #[error("unknown priority code {0}")]
    Priority(u8),
    #[error("{0} trailing bytes after the envelope")]
    Trailing(usize),
}

impl Envelope {
    /// The encoded bytes.
    pub fn encode(&self) -> Vec<u8> {
        let r = &self.record;
        let mut out = Vec::with_capacity(r.size() + 64);
        let mut flags = 0u8;
        if r.key.is_some() {
            flags |= F_KEY;
        }
        if r.value.is_some() {
            flags |= F_VALUE;
        }
        if r.partition.is_some() {
            flags |= F_PARTITION;
        }
        if r.timestamp_ms.is_some() {
            flags |= F_TIMESTAMP;
        }
        if self.possibly_persisted.is_some() {
            flags |= F_POSSIBLY;
        }
        out.push(VERSION);
        out.push(flags);
        out.push(match self.priority {
            Priority::Bulk => 0,
            Priority::Normal => 1,
            Priority::Critical => 2,
        });
        out.extend_from_slice(&r.id.instance.to_le_bytes());
        out.extend_from_slice(&r.id.boot.to_le_bytes());
        out.extend_from_slice(&r.id.seq.to_le_bytes());
        out.extend_from_slice(&self.partition.unwrap_or(-1).to_le_bytes());
        out.extend_from_slice(&r.timestamp_ms.unwrap_or(0).to_le_bytes());
        let known = self.possibly_persisted.flatten().unwrap_or(-1);
        out.extend_from_slice(&known.to_le_bytes());
        put_u16_bytes(&mut out, r.topic.as_bytes());
        if let Some(k) = &r.key {
            put_u32_bytes(&mut out, k);
        }
        if let Some(v) = &r.value {
            put_u32_bytes(&mut out, v);
        }
        out.extend_from_slice(&(r.headers.len() as u16).to_le_bytes());
        for (name, value) in &r.headers {
            put_u16_bytes(&mut out, name.as_bytes());
            put_u32_bytes(&mut out, value);
        }
        out
    }

    /// Decodes bytes written by [`Envelope::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut c = Cursor { bytes, at: 0 };
        let version = c.u8("version")?;
        if version != VERSION {
            return Err(DecodeError::Version(version));
        }
        let flags = c.u8("flags")?;
        let priority = match c.u8("priority")? {
            0 => Priority::Bulk,
            1 => Priority::Normal,
            2 => Priority::Critical,
            p => return Err(DecodeError::Priority(p)),
        };
        let id = SpillwayId {
            instance: u64::from_le_bytes(c.array("id")?),
            boot: u32::from_le_bytes(c.array("id")?),
            seq: u64::from_le_bytes(c.array("id")?),
        };
        let partition = i32::from_le_bytes(c.array("partition")?);
        let timestamp = i64::from_le_bytes(c.array("timestamp")?);
        let known = i64::from_le_bytes(c.array("known_before")?);
        let topic = c.string16("topic")?;
        let key = (flags & F_KEY != 0).then(|| c.bytes32("key")).transpose()?;
        let value = (flags & F_VALUE != 0)
            .then(|| c.bytes32("value"))
            .transpose()?;
        let count = u16::from_le_bytes(c.array("header count")?);
        let mut headers = Vec::with_capacity(count.min(64) as usize);
        for _ in 0..count {
            let name = c.string16("header name")?;
            let value = c.bytes32("header value")?.to_vec();
            headers.push((name, value));
        }
        if c.at != bytes.len() {
            return Err(DecodeError::Trailing(bytes.len() - c.at));
        }
        let partition = (partition >= 0).then_some(partition);
        Ok(Envelope {
            record: OutRecord {
                topic,
                key: key.map(<[u8]>::to_vec),
                value: value.map(<[u8]>::to_vec),
                headers,
                partition: if flags & F_PARTITION != 0 {
                    partition
                } else {
                    None
                },
                timestamp_ms: (flags & F_TIMESTAMP != 0).then_some(timestamp),
                id,
            },
            priority,
            partition,
            possibly_persisted: (flags & F_POSSIBLY != 0).then_some((known >= 0).then_some(known)),
        })
    }
}

fn put_u16_bytes(out: &mut Vec<u8>, b: &[u8]) {
    let len = u16::try_from(b.len()).expect("topic and header names are under 64 KiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(b);
}

fn put_u32_bytes(out: &mut Vec<u8>, b: &[u8]) {
    let len = u32::try_from(b.len()).expect("keys and values are under 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(b);
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len());
        let end = end.ok_or(DecodeError::Truncated(what))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        Ok(self.take(N, what)?.try_into().expect("took N bytes"))
    }
    fn string16(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let len = u16::from_le_bytes(self.array(what)?) as usize;
        let b = self.take(len, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError::Utf8(what))
    }
    fn bytes32(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = u32::from_le_bytes(self.array(what)?) as usize;
        self.take(len, what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Envelope {
        let id = SpillwayId {
            instance: 0x0123_4567_89ab_cdef,
            boot: 3,
            seq: 99,
        };
        let mut record = OutRecord::new("orders", id)
            .key("k-1")
            .value(vec![0u8, 1, 255]);
        record.headers.push(("trace".into(), b"abc".to_vec()));
        record.timestamp_ms = Some(1_700_000_000_000);
        Envelope {
            record,
            priority: Priority::Critical,
            partition: Some(4),
            possibly_persisted: Some(Some(41)),
        }
    }

    #[test]
    fn an_envelope_survives_encoding() {
        let e = sample();
        assert_eq!(Envelope::decode(&e.encode()).unwrap(), e);
    }

    #[test]
    fn the_layout_is_pinned() {
        let bytes = sample().encode();
        assert_eq!(
            &bytes[..3],
            &[1, F_KEY | F_VALUE | F_TIMESTAMP | F_POSSIBLY, 2]
        );
        assert_eq!(&bytes[3..11], &0x0123_4567_89ab_cdef_u64.to_le_bytes());
        assert_eq!(&bytes[23..27], &4i32.to_le_bytes());
        assert_eq!(&bytes[35..43], &41i64.to_le_bytes());
        assert_eq!(&bytes[43..51], b"\x06\x00orders");
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = sample().encode();
        for n in 0..bytes.len() {
            assert!(Envelope::decode(&bytes[..n]).is_err(), "truncated at {n}");
        }
    }

    #[test]
    fn trailing_bytes_and_unknown_versions_are_refused() {
        let mut bytes = sample().encode();
        bytes.push(0);
        assert_eq!(Envelope::decode(&bytes), Err(DecodeError::Trailing(1)));
        let mut bytes = sample().encode();
        bytes[0] = 9;
        assert_eq!(Envelope::decode(&bytes), Err(DecodeError::Version(9)));
    }

    #[test]
    fn absent_fields_stay_absent() {
        let id = SpillwayId {
            instance: 1,
            boot: 1,
            seq: 1,
        };
        let e = Envelope {
            record: OutRecord::new("t", id),
            priority: Priority::Bulk,
            partition: None,
            possibly_persisted: Some(None),
        };
        let back = Envelope::decode(&e.encode()).unwrap();
        assert_eq!(back, e);
        assert!(back.record.key.is_none() && back.record.value.is_none());
    }

    proptest! {
        #[test]
        fn any_record_round_trips(
            key in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
            value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
            topic in "[a-z._-]{1,30}",
            partition in proptest::option::of(0i32..1000),
            headers in proptest::collection::vec(("[a-z]{0,8}", proptest::collection::vec(any::<u8>(), 0..10)), 0..4),
            seq in any::<u64>(),
        ) {
            let id = SpillwayId { instance: 7, boot: 2, seq };
            let mut record = OutRecord::new(topic, id);
            record.key = key;
            record.value = value;
            record.partition = partition;
            record.headers = headers;
            let e = Envelope { record, priority: Priority::Normal, partition, possibly_persisted: None };
            prop_assert_eq!(Envelope::decode(&e.encode()).unwrap(), e);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Envelope::decode(&bytes);
        }
    }
}
