//! Identifiers and record types shared by every layer.

use bytes::Bytes;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A record's sequence number within its stream: from 0, strictly increasing in append order,
/// continued across restarts, never handed out twice. Consecutive unless appends failed or
/// damaged records were quarantined (readers skip such gaps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize)]
pub struct Seq(pub u64);

impl Seq {
    /// The next sequence number.
    pub fn next(self) -> Seq {
        Seq(self.0 + 1)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Identifies a segment within a stream: the sequence number of its first record (and its file
/// name, `{first_seq:020}.seg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct SegmentId(pub u64);

impl SegmentId {
    /// The file name of this segment.
    pub fn file_name(self) -> String {
        format!("{:020}.seg", self.0)
    }

    /// Parses a segment file name.
    pub fn parse(name: &str) -> Option<SegmentId> {
        let digits = name.strip_suffix(".seg")?;
        if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok().map(SegmentId)
    }
}

/// Maximum length of a stream name in bytes (a file name on Linux).
pub const MAX_STREAM_NAME_LEN: usize = 255;

/// A validated stream name, e.g. `orders.3` (a topic-partition) or `orders.keyless`.
///
/// Allowed: 1 to 255 bytes of `A-Z a-z 0-9 . _ -`, not starting with `.`. The set is Kafka's topic
/// alphabet, so every topic-partition name fits, and the name is used as the stream's directory
/// name unchanged (readable in `ls`, and no escaping to get wrong). Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamName(Arc<str>);

/// Why a string is not a valid [`StreamName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid stream name {name:?}: {reason}")]
pub struct InvalidStreamName {
    /// The rejected name.
    pub name: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl StreamName {
    /// Validates `name`.
    pub fn new(name: &str) -> Result<StreamName, InvalidStreamName> {
        let reason = if name.is_empty() {
            Some("empty")
        } else if name.len() > MAX_STREAM_NAME_LEN {
            Some("longer than 255 bytes")
        } else if name.starts_with('.') {
            Some("starts with '.'")
        } else if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            Some("only A-Z a-z 0-9 . _ - are allowed")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(InvalidStreamName {
                name: name.to_string(),
                reason,
            }),
            None => Ok(StreamName(name.into())),
        }
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for StreamName {
    type Err = InvalidStreamName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StreamName::new(s)
    }
}

impl serde::Serialize for StreamName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Where a record lives: its stream and sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    /// The stream.
    pub stream: StreamName,
    /// The record's sequence number in it.
    pub seq: Seq,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.stream, self.seq)
    }
}

/// A record to append: opaque payload plus a caller tag. The spool stamps the append time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordIn {
    /// Opaque bytes (the library encodes key, headers and value in here).
    pub payload: Bytes,
    /// Caller-defined flags or tag, stored and returned as is.
    pub tag: u32,
}

impl RecordIn {
    /// A record with tag 0.
    pub fn new(payload: impl Into<Bytes>) -> RecordIn {
        RecordIn {
            payload: payload.into(),
            tag: 0,
        }
    }

    /// Sets the tag.
    pub fn with_tag(mut self, tag: u32) -> RecordIn {
        self.tag = tag;
        self
    }
}

/// A record read back from the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Where it is; pass it to `ack`.
    pub position: Position,
    /// When it was appended, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The caller's tag.
    pub tag: u32,
    /// The payload.
    pub payload: Bytes,
}

impl Record {
    /// The append time as a `SystemTime`.
    pub fn appended_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.timestamp_ms)
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_accept_kafka_topic_partitions() {
        for ok in [
            "orders.3",
            "orders.keyless",
            "a",
            "A_b-c.9",
            &"x".repeat(255),
        ] {
            assert!(StreamName::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn stream_names_reject_paths_and_odd_bytes() {
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "a b",
            "ü",
            "a\0",
            &"x".repeat(256),
        ] {
            assert!(StreamName::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn segment_file_names_round_trip_and_sort_by_sequence() {
        let a = SegmentId(9).file_name();
        let b = SegmentId(10).file_name();
        assert!(a < b);
        assert_eq!(SegmentId::parse(&a), Some(SegmentId(9)));
        assert_eq!(SegmentId::parse("9.seg"), None);
        assert_eq!(SegmentId::parse("0000000000000000000x.seg"), None);
    }
}
