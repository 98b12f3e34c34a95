//! The per-stream checkpoint: how far the reader acknowledged, plus the caller's small blob.
//!
//! Written as a whole new file and swapped in atomically: write `checkpoint.tmp`, fdatasync it,
//! rename over `checkpoint`, fsync the directory. Only then may segments it frees be unlinked.

use crate::Seq;
use crate::format::{crc32c, le_u32, le_u64};
use crate::fs::{FileSystem, read_full_at, write_all_at};
use std::io;
use std::path::Path;

/// Magic of a checkpoint file.
pub const CHECKPOINT_MAGIC: [u8; 8] = *b"SPWLCKP\0";
/// Version of the checkpoint format.
pub const CHECKPOINT_VERSION: u16 = 1;
/// Largest caller blob stored with an acknowledgement.
pub const MAX_ACK_META_BYTES: usize = 1024;
/// File name of the checkpoint inside a stream directory.
pub const CHECKPOINT_FILE: &str = "checkpoint";
/// File name of a checkpoint being written.
pub const CHECKPOINT_TMP_FILE: &str = "checkpoint.tmp";

const FIXED_LEN: usize = 20;

/// A stream's durable progress.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Checkpoint {
    /// Every record with a smaller sequence number is acknowledged; reading resumes here.
    pub acked_upto: Seq,
    /// The caller's blob from the latest acknowledgement covered (≤ [`MAX_ACK_META_BYTES`]).
    pub meta: Vec<u8>,
}

/// The state of a checkpoint file on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointRead {
    /// No checkpoint file.
    Missing,
    /// A valid checkpoint.
    Valid(Checkpoint),
    /// The file exists but cannot be trusted (zero-length, torn, checksum, magic).
    Garbled(String),
}

impl Checkpoint {
    /// Encodes the checkpoint file.
    pub fn encode(&self) -> Vec<u8> {
        assert!(self.meta.len() <= MAX_ACK_META_BYTES, "meta checked by ack");
        let mut out = Vec::with_capacity(FIXED_LEN + self.meta.len() + 4);
        out.extend_from_slice(&CHECKPOINT_MAGIC);
        out.extend_from_slice(&CHECKPOINT_VERSION.to_le_bytes());
        out.extend_from_slice(&(self.meta.len() as u16).to_le_bytes());
        out.extend_from_slice(&self.acked_upto.0.to_le_bytes());
        out.extend_from_slice(&self.meta);
        let crc = crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes a checkpoint file, or says why it is not one.
    pub fn decode(bytes: &[u8]) -> Result<Checkpoint, String> {
        if bytes.is_empty() {
            return Err("zero-length checkpoint".into());
        }
        if bytes.len() < FIXED_LEN + 4 {
            return Err(format!("checkpoint too short ({} bytes)", bytes.len()));
        }
        if bytes[0..8] != CHECKPOINT_MAGIC {
            return Err("bad checkpoint magic".into());
        }
        let meta_len = u16::from_le_bytes([bytes[10], bytes[11]]) as usize;
        if meta_len > MAX_ACK_META_BYTES || bytes.len() != FIXED_LEN + meta_len + 4 {
            return Err(format!(
                "checkpoint length {} does not match its header",
                bytes.len()
            ));
        }
        let body = &bytes[..FIXED_LEN + meta_len];
        if crc32c(body) != le_u32(&bytes[FIXED_LEN + meta_len..]) {
            return Err("checkpoint checksum mismatch".into());
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if version != CHECKPOINT_VERSION {
            return Err(format!("unknown checkpoint version {version}"));
        }
        Ok(Checkpoint {
            acked_upto: Seq(le_u64(&bytes[12..20])),
            meta: bytes[FIXED_LEN..FIXED_LEN + meta_len].to_vec(),
        })
    }
}

/// Reads the checkpoint of the stream in `dir`.
pub fn read(fs: &dyn FileSystem, dir: &Path) -> io::Result<CheckpointRead> {
    let path = dir.join(CHECKPOINT_FILE);
    let file = match fs.open_read(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(CheckpointRead::Missing),
        Err(e) => return Err(e),
    };
    let len = file.len()? as usize;
    if len > FIXED_LEN + MAX_ACK_META_BYTES + 4 {
        return Ok(CheckpointRead::Garbled(format!(
            "checkpoint too long ({len} bytes)"
        )));
    }
    let mut buf = vec![0u8; len];
    let n = read_full_at(file.as_ref(), &mut buf, 0)?;
    buf.truncate(n);
    Ok(match Checkpoint::decode(&buf) {
        Ok(c) => CheckpointRead::Valid(c),
        Err(reason) => CheckpointRead::Garbled(reason),
    })
}

/// Writes the checkpoint durably (temp file, fdatasync, rename, directory fsync).
pub fn write_durable(fs: &dyn FileSystem, dir: &Path, checkpoint: &Checkpoint) -> io::Result<()> {
    let tmp = dir.join(CHECKPOINT_TMP_FILE);
    let file = fs.create_truncate(&tmp)?;
    write_all_at(file.as_ref(), &checkpoint.encode(), 0)?;
    file.sync_data()?;
    drop(file);
    fs.rename(&tmp, &dir.join(CHECKPOINT_FILE))?;
    fs.sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::sim::{CrashMode, SimFs};

    fn sample() -> Checkpoint {
        Checkpoint {
            acked_upto: Seq(1234),
            meta: b"kafka-offset=99".to_vec(),
        }
    }

    #[test]
    fn checkpoint_round_trips_with_its_meta_blob() {
        let c = sample();
        assert_eq!(Checkpoint::decode(&c.encode()), Ok(c));
        let empty = Checkpoint::default();
        assert_eq!(Checkpoint::decode(&empty.encode()), Ok(empty));
    }

    #[test]
    fn checkpoint_truncated_at_every_byte_is_garbled() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            assert!(Checkpoint::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn checkpoint_with_any_byte_flipped_is_garbled() {
        let bytes = sample().encode();
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x04;
            assert!(Checkpoint::decode(&damaged).is_err(), "flip at {i}");
        }
    }

    #[test]
    fn durable_write_survives_a_crash_and_replaces_the_old_one() {
        let fs = SimFs::new();
        let dir = Path::new("/s");
        fs.create_dir_all(dir).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        assert_eq!(read(&fs, dir).unwrap(), CheckpointRead::Missing);
        write_durable(
            &fs,
            dir,
            &Checkpoint {
                acked_upto: Seq(1),
                meta: vec![],
            },
        )
        .unwrap();
        write_durable(&fs, dir, &sample()).unwrap();
        fs.restart(CrashMode::DropUnsynced);
        assert_eq!(read(&fs, dir).unwrap(), CheckpointRead::Valid(sample()));
    }

    #[test]
    fn zero_length_checkpoint_reads_as_garbled() {
        let fs = SimFs::new();
        fs.write_file(Path::new("/checkpoint"), b"").unwrap();
        assert!(matches!(
            read(&fs, Path::new("/")).unwrap(),
            CheckpointRead::Garbled(_)
        ));
    }
}
