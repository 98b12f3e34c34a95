//! The dead-letter channel: records Kafka refuses for what they are (DESIGN G2's one exception).
//!
//! Each entry keeps the original record (topic, partition, key, value, headers, id), the error
//! (code, class, message) and the time. Entries go to a local append-only log, one JSON object
//! per line with bytes in base64, fsync'd before the record's outcome is reported; and, if
//! configured, to a dead-letter topic (best effort: the local log is the record of truth).
//! Counts per reason are kept for metrics. `read_log` reads the log back (the CLI uses it).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::record::OutRecord;

/// One dead letter as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Milliseconds since the epoch when it was dead-lettered.
    pub time_ms: i64,
    pub topic: String,
    pub partition: Option<i32>,
    /// base64
    pub key: Option<String>,
    /// base64
    pub value: Option<String>,
    /// (name, base64 value)
    pub headers: Vec<(String, String)>,
    pub id: String,
    /// The short reason used for counting (`MessageSizeTooLarge`, ...).
    pub reason: String,
    /// The error as librdkafka described it.
    pub error: String,
}

impl DeadLetter {
    /// The entry for `record`, refused with `reason` / `error`.
    pub fn new(record: &OutRecord, partition: Option<i32>, reason: &str, error: &str) -> Self {
        Self {
            time_ms: now_ms(),
            topic: record.topic.clone(),
            partition,
            key: record.key.as_ref().map(|k| B64.encode(k)),
            value: record.value.as_ref().map(|v| B64.encode(v)),
            headers: record
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), B64.encode(v)))
                .collect(),
            id: record.id.to_string(),
            reason: reason.to_string(),
            error: error.to_string(),
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Why the dead-letter log could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("dead-letter log {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("dead-letter log {path} line {line}: {source}")]
    Parse {
        path: String,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
}

/// The local dead-letter log.
#[derive(Debug)]
pub struct DeadLetterLog {
    path: PathBuf,
    file: Mutex<File>,
    counts: Mutex<BTreeMap<String, u64>>,
}

impl DeadLetterLog {
    /// Opens (or creates, mode 0600) the log at `path`.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, DeadLetterError> {
        let path = path.into();
        let err = |source| DeadLetterError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let mut options = OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&path).map_err(err)?;
        Ok(Self {
            path,
            file: Mutex::new(file),
            counts: Mutex::new(BTreeMap::new()),
        })
    }

    /// Appends entries and fsyncs once for all of them.
    pub fn append(&self, entries: &[DeadLetter]) -> Result<(), DeadLetterError> {
        if entries.is_empty() {
            return Ok(());
        }
        let err = |source| DeadLetterError::Io {
            path: self.path.display().to_string(),
            source,
        };
        let mut buf = Vec::new();
        for e in entries {
            serde_json::to_writer(&mut buf, e).expect("a dead letter serialises");
            buf.push(b'\n');
        }
        let mut file = self.file.lock();
        file.write_all(&buf).map_err(err)?;
        file.sync_data().map_err(err)?;
        drop(file);
        let mut counts = self.counts.lock();
        for e in entries {
            *counts.entry(e.reason.clone()).or_default() += 1;
        }
        Ok(())
    }

    /// Dead letters written by this process, per reason.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.counts.lock().clone()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads every entry of a dead-letter log. A torn last line (a crash mid-write, before the
/// fsync that would have acknowledged it) is skipped; a garbled line elsewhere is an error.
pub fn read_log(path: &Path) -> Result<Vec<DeadLetter>, DeadLetterError> {
    let err = |source| DeadLetterError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = File::open(path).map_err(err)?;
    let lines: Vec<String> = BufReader::new(file)
        .lines()
        .collect::<Result<_, _>>()
        .map_err(err)?;
    let last = lines.len().saturating_sub(1);
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(entry) => out.push(entry),
            Err(_) if i == last => break,
            Err(source) => {
                return Err(DeadLetterError::Parse {
                    path: path.display().to_string(),
                    line: i + 1,
                    source,
                });
            }
        }
    }
    Ok(out)
}

/// Decodes a base64 field of a [`DeadLetter`].
pub fn decode(field: &str) -> Option<Vec<u8>> {
    B64.decode(field).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::IdGenerator;

    #[test]
    fn dead_letters_keep_the_record_and_the_reason_and_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let log = DeadLetterLog::open(dir.path().join("dead/letters.jsonl")).unwrap();
        let ids = IdGenerator::ephemeral();
        let record = OutRecord::new("t", ids.next_id())
            .key("k")
            .value(vec![0u8, 255])
            .header("h", "v");
        log.append(&[DeadLetter::new(
            &record,
            Some(2),
            "MessageSizeTooLarge",
            "too large",
        )])
        .unwrap();
        let back = read_log(log.path()).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(
            decode(back[0].value.as_ref().unwrap()).unwrap(),
            vec![0u8, 255]
        );
        assert_eq!(back[0].id, record.id.to_string());
        assert_eq!(back[0].reason, "MessageSizeTooLarge");
        assert_eq!(log.counts()["MessageSizeTooLarge"], 1);
    }

    #[test]
    fn a_torn_last_line_is_skipped_but_a_garbled_middle_line_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dl.jsonl");
        let log = DeadLetterLog::open(&path).unwrap();
        let record = OutRecord::new("t", IdGenerator::ephemeral().next_id());
        log.append(&[DeadLetter::new(&record, None, "InvalidRecord", "x")])
            .unwrap();
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"time_ms\":1,\"top");
        std::fs::write(&path, &text).unwrap();
        assert_eq!(read_log(&path).unwrap().len(), 1);
        std::fs::write(&path, format!("garbage\n{text}")).unwrap();
        assert!(matches!(
            read_log(&path),
            Err(DeadLetterError::Parse { line: 1, .. })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn the_log_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let log = DeadLetterLog::open(dir.path().join("dl.jsonl")).unwrap();
        let mode = std::fs::metadata(log.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
