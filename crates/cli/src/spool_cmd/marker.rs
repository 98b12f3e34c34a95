//! `DIR/dead-letters.replayed`: the progress of `spillway spool replay --dead-letters`.
//!
//! One JSON object per line, appended and fsync'd, never rewritten:
//! `{"id":"<spillway id>","state":"sending","at_ms":…}` before an entry is handed to Kafka, then
//! one of `delivered` (with partition and offset), `in_kafka` (found by the tail check, not
//! sent), `refused` (permanently, again) or `not_delivered` (transient failure or
//! interrupted). The last line for an id is its state. A rerun skips ids that are `delivered`
//! or `in_kafka`; an id left at `sending` (the replay died with it in flight) is resent only
//! if the tail check proves it is not in Kafka. Keyed by id, so entries appended to the
//! dead-letter log later are picked up by the next replay.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The marker's file name in the spool directory.
pub const MARKER_FILE: &str = "dead-letters.replayed";

/// Where one dead letter stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Handed (or about to be handed) to Kafka; the outcome was not recorded.
    Sending,
    /// Kafka acknowledged it.
    Delivered,
    /// Found in Kafka by the tail check; not sent.
    InKafka,
    /// Refused permanently again.
    Refused,
    /// Not delivered (transient failure, or the replay stopped first).
    NotDelivered,
}

impl State {
    /// Whether the entry is in Kafka and must not be sent again.
    pub fn is_done(self) -> bool {
        matches!(self, State::Delivered | State::InKafka)
    }
}

/// One line of the marker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub id: String,
    pub state: State,
    pub at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The marker's path in `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(MARKER_FILE)
}

/// The last state of every id in the marker (empty when there is none). A torn last line is
/// ignored; a garbled line elsewhere is an error.
pub fn read(dir: &Path) -> io::Result<HashMap<String, State>> {
    let text = match std::fs::read_to_string(path(dir)) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(e),
    };
    let mut out = HashMap::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Line>(l) {
            Ok(line) => {
                out.insert(line.id, line.state);
            }
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => break,
            Err(e) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} line {}: {e}", path(dir).display(), i + 1),
                ));
            }
        }
    }
    Ok(out)
}

/// Appends lines durably.
#[derive(Debug)]
pub struct Writer {
    file: File,
}

impl Writer {
    /// Opens (creating, mode 0600) the marker for appending; a torn last line is cut off.
    pub fn open(dir: &Path) -> io::Result<Writer> {
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path(dir))?;
        let mut text = Vec::new();
        file.read_to_end(&mut text)?;
        let keep = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if keep < text.len() {
            file.set_len(keep as u64)?;
            file.sync_data()?;
        }
        file.seek(SeekFrom::Start(keep as u64))?;
        Ok(Writer { file })
    }

    /// Appends `lines` and fsyncs once.
    pub fn append(&mut self, lines: &[Line]) -> io::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for l in lines {
            serde_json::to_writer(&mut buf, l).map_err(io::Error::other)?;
            buf.push(b'\n');
        }
        self.file.write_all(&buf)?;
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: &str, state: State) -> Line {
        Line {
            id: id.into(),
            state,
            at_ms: 1,
            partition: None,
            offset: None,
            error: None,
        }
    }

    #[test]
    fn the_last_state_of_each_id_wins_and_a_torn_tail_is_cut_before_appending() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(read(tmp.path()).unwrap().is_empty());
        let mut w = Writer::open(tmp.path()).unwrap();
        w.append(&[line("a", State::Sending), line("b", State::Sending)])
            .unwrap();
        w.append(&[line("a", State::Delivered)]).unwrap();
        drop(w);
        let mut f = OpenOptions::new()
            .append(true)
            .open(path(tmp.path()))
            .unwrap();
        f.write_all(b"{\"id\":\"c\",\"sta").unwrap();
        let states = read(tmp.path()).unwrap();
        assert_eq!(states["a"], State::Delivered);
        assert_eq!(states["b"], State::Sending);
        assert!(!states.contains_key("c"));
        let mut w = Writer::open(tmp.path()).unwrap();
        w.append(&[line("b", State::InKafka)]).unwrap();
        let states = read(tmp.path()).unwrap();
        assert_eq!(states.len(), 2);
        assert!(states["b"].is_done());
    }

    #[test]
    fn a_garbled_line_in_the_middle_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            path(tmp.path()),
            "garbage\n{\"id\":\"a\",\"state\":\"delivered\",\"at_ms\":1}\n",
        )
        .unwrap();
        assert!(read(tmp.path()).is_err());
    }
}
