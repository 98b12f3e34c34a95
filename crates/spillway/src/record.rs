//! Records, their `spillway.id`, and the instance identity that makes ids unique.
//!
//! Every record Spillway produces carries the header `spillway.id` (DESIGN G4) with the value
//! `<instance>:<boot>:<seq>` in ASCII:
//! - `instance`: 16 hex digits, random once per spool directory and kept in `instance.id`;
//! - `boot`: how many times this directory has been opened, kept in the same file and fsync'd
//!   before any id of the new boot is handed out, so ids never repeat across restarts;
//! - `seq`: a counter within the boot.
//!
//! The id lets recovery tell, by reading a partition's tail, whether a record whose delivery was
//! unknown is already in Kafka.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// The header that carries a record's [`SpillwayId`].
pub const ID_HEADER: &str = "spillway.id";

/// A record's unique id: instance, boot and sequence. Serialised as its header text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpillwayId {
    pub instance: u64,
    pub boot: u32,
    pub seq: u64,
}

impl fmt::Display for SpillwayId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}:{}:{}", self.instance, self.boot, self.seq)
    }
}

impl Serialize for SpillwayId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SpillwayId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        SpillwayId::parse(text.as_bytes())
            .ok_or_else(|| serde::de::Error::custom(format!("not a spillway id: {text:?}")))
    }
}

impl SpillwayId {
    /// Parses the header value written by [`fmt::Display`].
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut parts = text.split(':');
        let instance = u64::from_str_radix(parts.next()?, 16).ok()?;
        let boot = parts.next()?.parse().ok()?;
        let seq = parts.next()?.parse().ok()?;
        parts.next().is_none().then_some(Self {
            instance,
            boot,
            seq,
        })
    }
}

/// The longest header text of an id: 16 hex digits, a `u32` and a `u64` in decimal, two colons.
const ID_TEXT_MAX: usize = 16 + 1 + 10 + 1 + 20;

/// An id's header text, formatted on the stack: the producer writes one for every record, and
/// going through `to_string` (the formatting machinery and an allocation) cost more than the
/// rest of building the header.
/// The id's header text, formatted on the stack.
#[derive(Debug, Clone, Copy)]
pub struct IdText {
    buf: [u8; ID_TEXT_MAX],
    len: usize,
}

impl IdText {
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl SpillwayId {
    /// The header text exactly as [`fmt::Display`] writes it.
    pub fn to_text(&self) -> IdText {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut buf = [0u8; ID_TEXT_MAX];
        for (i, b) in buf[..16].iter_mut().enumerate() {
            *b = HEX[((self.instance >> (60 - 4 * i)) & 0xf) as usize];
        }
        buf[16] = b':';
        let mut len = 17;
        len += write_decimal(&mut buf[len..], u64::from(self.boot));
        buf[len] = b':';
        len += 1;
        len += write_decimal(&mut buf[len..], self.seq);
        IdText { buf, len }
    }
}

/// Writes `n` in decimal at the start of `out`; returns how many bytes it took.
fn write_decimal(out: &mut [u8], mut n: u64) -> usize {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let len = digits.len() - i;
    out[..len].copy_from_slice(&digits[i..]);
    len
}

/// Why the instance identity could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Reading or writing `instance.id` failed; the caller cannot hand out ids safely.
    #[error("instance identity file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Hands out [`SpillwayId`]s for one boot of one instance. Cheap to clone.
#[derive(Debug, Clone)]
pub struct IdGenerator {
    instance: u64,
    boot: u32,
    next: Arc<AtomicU64>,
}

impl IdGenerator {
    /// Loads (or creates) `dir/instance.id`, increments and fsyncs the boot counter, and returns
    /// a generator for this boot.
    pub fn open(dir: &Path) -> Result<Self, IdentityError> {
        let path = dir.join("instance.id");
        let err = |source| IdentityError::Io {
            path: path.display().to_string(),
            source,
        };
        fs::create_dir_all(dir).map_err(err)?;
        let (instance, boot) = match fs::read_to_string(&path) {
            Ok(text) => parse_identity(&text).unwrap_or_else(|| {
                tracing::warn!(path = %path.display(), "garbled instance.id; starting a new identity");
                (rand::random(), 0)
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (rand::random(), 0),
            Err(e) => return Err(err(e)),
        };
        let boot = boot.wrapping_add(1);
        let tmp = dir.join("instance.id.tmp");
        {
            let mut f = fs::File::create(&tmp).map_err(err)?;
            writeln!(f, "{instance:016x} {boot}").map_err(err)?;
            f.sync_all().map_err(err)?;
        }
        fs::rename(&tmp, &path).map_err(err)?;
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(err)?;
        Ok(Self {
            instance,
            boot,
            next: Arc::new(AtomicU64::new(0)),
        })
    }

    /// A generator that persists nothing: for tests and tools whose ids need not survive.
    pub fn ephemeral() -> Self {
        Self {
            instance: rand::random(),
            boot: 0,
            next: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The next id of this boot.
    pub fn next_id(&self) -> SpillwayId {
        SpillwayId {
            instance: self.instance,
            boot: self.boot,
            seq: self.next.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// This instance's id.
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// This boot's number.
    pub fn boot(&self) -> u32 {
        self.boot
    }
}

fn parse_identity(text: &str) -> Option<(u64, u32)> {
    let mut parts = text.split_whitespace();
    let instance = u64::from_str_radix(parts.next()?, 16).ok()?;
    let boot = parts.next()?.parse().ok()?;
    Some((instance, boot))
}

/// One record on its way to Kafka.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutRecord {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    /// An explicit partition chosen by the client; `None` lets Spillway choose.
    pub partition: Option<i32>,
    /// Milliseconds since the epoch; `None` lets the producer stamp it.
    pub timestamp_ms: Option<i64>,
    pub id: SpillwayId,
}

impl OutRecord {
    /// A record for `topic` with the given id and nothing else.
    pub fn new(topic: impl Into<String>, id: SpillwayId) -> Self {
        Self {
            topic: topic.into(),
            key: None,
            value: None,
            headers: Vec::new(),
            partition: None,
            timestamp_ms: None,
            id,
        }
    }

    pub fn key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn value(mut self, value: impl Into<Vec<u8>>) -> Self {
        self.value = Some(value.into());
        self
    }

    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Bytes this record occupies in memory, for admission limits.
    pub fn size(&self) -> usize {
        self.topic.len()
            + self.key.as_ref().map_or(0, Vec::len)
            + self.value.as_ref().map_or(0, Vec::len)
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
            + 64
    }

    /// Whether the order of this record matters (it has a key or an explicit partition).
    pub fn is_ordered(&self) -> bool {
        self.key.is_some() || self.partition.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_survives_its_header_encoding() {
        let id = SpillwayId {
            instance: 0xdead_beef_0000_0001,
            boot: 7,
            seq: 42,
        };
        let text = id.to_string();
        assert_eq!(text, "deadbeef00000001:7:42");
        assert_eq!(SpillwayId::parse(text.as_bytes()), Some(id));
    }

    #[test]
    fn the_stack_formatted_header_text_matches_display() {
        let ids = [
            (0, 0, 0),
            (0xdead_beef_0000_0001, 7, 42),
            (u64::MAX, u32::MAX, u64::MAX),
            (1, 10, 1_000_000_000),
            (0x0123_4567_89ab_cdef, 99, 9),
        ];
        for (instance, boot, seq) in ids {
            let id = SpillwayId {
                instance,
                boot,
                seq,
            };
            assert_eq!(id.to_text().as_bytes(), id.to_string().as_bytes());
        }
    }

    #[test]
    fn garbage_is_not_an_id() {
        for bad in ["", "x:1:2", "01:1", "01:1:2:3", "01:-1:2"] {
            assert_eq!(SpillwayId::parse(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn the_instance_is_stable_and_the_boot_advances_across_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let first = IdGenerator::open(dir.path()).unwrap();
        let second = IdGenerator::open(dir.path()).unwrap();
        assert_eq!(first.instance(), second.instance());
        assert_eq!(second.boot(), first.boot() + 1);
        assert_ne!(first.next_id(), second.next_id());
    }

    #[test]
    fn a_garbled_identity_file_starts_a_new_identity_instead_of_failing() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("instance.id"), b"\0\0garbage").unwrap();
        let ids = IdGenerator::open(dir.path()).unwrap();
        assert_eq!(ids.boot(), 1);
    }

    #[test]
    fn ids_within_a_boot_are_unique_and_increasing() {
        let ids = IdGenerator::ephemeral();
        let a = ids.next_id();
        let b = ids.next_id();
        assert!(b > a);
    }
}
