//! Recovery at open (and its dry run, `verify`): every stream directory is scanned, damage is
//! repaired, and every action is reported. Damage never makes opening fail.

use crate::checkpoint::{self, CHECKPOINT_FILE, CHECKPOINT_TMP_FILE, Checkpoint, CheckpointRead};
use crate::format::{SEGMENT_HEADER_LEN, SegmentHeader};
use crate::fs::{FileSystem, read_full_at, write_all_at};
use crate::segment::{self, ScanResult, SegmentMeta};
use crate::{RecoveryMode, SegmentId, Seq, StreamName};
use std::collections::VecDeque;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

mod report;

pub use report::{QuarantineReport, RecoveryAction, RecoveryReport, Severity};

/// Name of the directory holding one directory per stream.
pub const STREAMS_DIR: &str = "streams";
/// Name of the directory damaged segments are moved to.
pub const QUARANTINE_DIR: &str = "quarantine";
/// Suffix of a segment being rewritten during quarantine.
pub const REWRITE_SUFFIX: &str = ".rewrite";

/// A stream as recovered from disk.
#[derive(Debug)]
pub(crate) struct RecoveredStream {
    pub name: StreamName,
    pub dir: PathBuf,
    pub segments: VecDeque<SegmentMeta>,
    pub next_seq: Seq,
    pub checkpoint: Checkpoint,
}

/// Recovery of the whole spool at `root`. With `apply == false` nothing is changed (verify).
pub(crate) fn recover(
    fs: &dyn FileSystem,
    root: &Path,
    mode: RecoveryMode,
    index_interval: u64,
    apply: bool,
) -> io::Result<(Vec<RecoveredStream>, RecoveryReport)> {
    let mut report = RecoveryReport::default();
    let streams_dir = root.join(STREAMS_DIR);
    let mut out = Vec::new();
    if !fs.exists(&streams_dir) {
        return Ok((out, report));
    }
    for entry in fs.read_dir(&streams_dir)? {
        let path = streams_dir.join(&entry.name);
        let name = match StreamName::new(&entry.name) {
            Ok(n) if entry.is_dir => n,
            _ => {
                report
                    .actions
                    .push(RecoveryAction::IgnoredUnknownEntry { path });
                continue;
            }
        };
        let mut ctx = Ctx {
            fs,
            root,
            mode,
            index_interval,
            apply,
            name,
            dir: path,
            report: &mut report,
        };
        let stream = ctx.recover_stream()?;
        report.streams += 1;
        report.segments += stream.segments.len();
        report.records += stream.segments.iter().map(|s| s.records).sum::<u64>();
        report.bytes += stream.segments.iter().map(|s| s.len).sum::<u64>();
        out.push(stream);
    }
    Ok((out, report))
}

struct Ctx<'a> {
    fs: &'a dyn FileSystem,
    root: &'a Path,
    mode: RecoveryMode,
    index_interval: u64,
    apply: bool,
    name: StreamName,
    dir: PathBuf,
    report: &'a mut RecoveryReport,
}

impl Ctx<'_> {
    fn act(&mut self, action: RecoveryAction) {
        tracing::warn!(severity = ?action.severity(), "spool recovery: {action}");
        self.report.actions.push(action);
    }

    fn recover_stream(&mut self) -> io::Result<RecoveredStream> {
        let entries = self.fs.read_dir(&self.dir)?;
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        let mut ids = Vec::new();
        for entry in &entries {
            let path = self.dir.join(&entry.name);
            if let Some(id) = SegmentId::parse(&entry.name).filter(|_| !entry.is_dir) {
                ids.push(id);
            } else if entry.name == CHECKPOINT_FILE {
            } else if entry.name == CHECKPOINT_TMP_FILE {
                if self.apply {
                    self.fs.remove_file(&path)?;
                }
                self.act(RecoveryAction::CleanedUpTempFile { path });
            } else if let Some(seg) = entry.name.strip_suffix(REWRITE_SUFFIX) {
                // An interrupted quarantine: if the original is still in place, redo it from
                // scratch; if it was already moved away, the rewrite is complete: put it in place.
                let original = self.dir.join(seg);
                let in_place = names.contains(&seg);
                if self.apply {
                    if in_place {
                        self.fs.remove_file(&path)?;
                    } else {
                        self.fs.rename(&path, &original)?;
                        self.fs.sync_dir(&self.dir)?;
                    }
                }
                if !in_place {
                    ids.extend(SegmentId::parse(seg));
                }
                self.act(RecoveryAction::CleanedUpTempFile { path });
            } else {
                self.act(RecoveryAction::IgnoredUnknownEntry { path });
            }
        }
        ids.sort();
        ids.dedup();

        let mut segments = VecDeque::new();
        let count = ids.len();
        for (i, id) in ids.into_iter().enumerate() {
            if let Some(meta) = self.recover_segment(id, i + 1 == count)? {
                segments.push_back(meta);
            }
        }

        let first = segments.front().map_or(0, |s: &SegmentMeta| s.id.0);
        let checkpoint = match checkpoint::read(self.fs, &self.dir)? {
            CheckpointRead::Valid(c) => c,
            CheckpointRead::Missing if first == 0 && !segments.is_empty() => Checkpoint::default(),
            other => {
                let reason = match other {
                    CheckpointRead::Garbled(r) => r,
                    _ => "missing".to_string(),
                };
                let rebuilt = Checkpoint {
                    acked_upto: Seq(first),
                    meta: Vec::new(),
                };
                if self.apply {
                    checkpoint::write_durable(self.fs, &self.dir, &rebuilt)?;
                }
                let stream = self.name.to_string();
                self.act(RecoveryAction::RebuiltCheckpoint {
                    stream,
                    reason,
                    acked_upto: first,
                });
                rebuilt
            }
        };

        // Finish deletions interrupted after the checkpoint was made durable.
        while segments.len() > 1 && segments[0].next_seq <= checkpoint.acked_upto {
            let seg = segments.pop_front().expect("len > 1");
            if self.apply {
                self.fs.remove_file(&self.dir.join(seg.id.file_name()))?;
            }
            let (stream, segment) = (self.name.to_string(), seg.id.file_name());
            self.act(RecoveryAction::DeletedAckedSegment { stream, segment });
        }

        let data_end = segments.back().map_or(Seq(0), |s| s.next_seq);
        if checkpoint.acked_upto > data_end && !segments.is_empty() {
            self.act(RecoveryAction::CheckpointAheadOfData {
                stream: self.name.to_string(),
                acked_upto: checkpoint.acked_upto.0,
                next_seq: data_end.0,
            });
        }
        let next_seq = data_end.max(checkpoint.acked_upto);
        Ok(RecoveredStream {
            name: self.name.clone(),
            dir: self.dir.clone(),
            segments,
            next_seq,
            checkpoint,
        })
    }

    fn recover_segment(&mut self, id: SegmentId, is_last: bool) -> io::Result<Option<SegmentMeta>> {
        let path = self.dir.join(id.file_name());
        let file = self.fs.open_read(&path)?;
        let scan = segment::scan(file.as_ref(), id, self.mode, self.index_interval)?;
        let (stream, seg_name) = (self.name.to_string(), id.file_name());
        let header_bad = scan.header.is_err();
        if header_bad && scan.meta.records == 0 && scan.damage.is_empty() {
            // Torn creation: nothing was ever acknowledged in it.
            if self.apply {
                if is_last {
                    let f = self.fs.open_rw(&path)?;
                    f.set_len(0)?;
                    let header = SegmentHeader {
                        first_seq: Seq(id.0),
                        created_ms: crate::types::now_ms(),
                    };
                    write_all_at(f.as_ref(), &header.encode(), 0)?;
                    f.sync_data()?;
                } else {
                    self.fs.remove_file(&path)?;
                }
            }
            let removed = !is_last;
            self.act(RecoveryAction::RepairedSegmentHeader {
                stream,
                segment: seg_name,
                removed,
            });
            return Ok((!removed).then(|| SegmentMeta::new(id)));
        }
        if !scan.is_damaged() {
            if let Some(torn) = &scan.torn_tail {
                if self.apply {
                    let f = self.fs.open_rw(&path)?;
                    f.set_len(torn.start)?;
                    f.sync_data()?;
                }
                let (offset, bytes) = (torn.start, torn.end - torn.start);
                self.act(RecoveryAction::TruncatedTornTail {
                    stream,
                    segment: seg_name,
                    offset,
                    bytes,
                });
            }
            return Ok(Some(scan.meta));
        }
        self.quarantine(id, &path, file.as_ref(), scan).map(Some)
    }

    fn quarantine(
        &mut self,
        id: SegmentId,
        path: &Path,
        file: &dyn crate::fs::FileHandle,
        scan: ScanResult,
    ) -> io::Result<SegmentMeta> {
        let seg_name = id.file_name();
        let qdir = self.root.join(QUARANTINE_DIR);
        let mut qpath = qdir.join(format!("{}.{}", self.name, seg_name));
        let mut n = 1;
        while self.fs.exists(&qpath) || self.fs.exists(&json_path(&qpath)) {
            qpath = qdir.join(format!("{}.{}.{n}", self.name, seg_name));
            n += 1;
        }
        let kept_bytes: u64 = scan.kept.iter().map(|r| r.end - r.start).sum();
        let lost_bytes = scan
            .file_len
            .saturating_sub(SEGMENT_HEADER_LEN as u64 + kept_bytes);
        let report = QuarantineReport {
            stream: self.name.to_string(),
            original: path.to_path_buf(),
            quarantined_at_ms: crate::types::now_ms(),
            mode: format!("{:?}", self.mode),
            file_len: scan.file_len,
            header_error: scan.header.as_ref().err().map(|e| format!("{e:?}")),
            records_kept: scan.meta.records,
            damage: scan.damage.clone(),
            dropped_valid_records: scan.dropped_valid_records,
            torn_tail_bytes: scan.torn_tail.as_ref().map_or(0, |t| t.end - t.start),
        };
        let mut meta = scan.meta.clone();
        if self.apply {
            let rewrite = self.dir.join(format!("{seg_name}{REWRITE_SUFFIX}"));
            let out = self.fs.create_truncate(&rewrite)?;
            let header = SegmentHeader {
                first_seq: Seq(id.0),
                created_ms: crate::types::now_ms(),
            };
            write_all_at(out.as_ref(), &header.encode(), 0)?;
            let mut at = SEGMENT_HEADER_LEN as u64;
            let mut buf = vec![0u8; 256 * 1024];
            for range in &scan.kept {
                let mut from = range.start;
                while from < range.end {
                    let n = ((range.end - from) as usize).min(buf.len());
                    let got = read_full_at(file, &mut buf[..n], from)?;
                    if got < n {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "segment shrank",
                        ));
                    }
                    write_all_at(out.as_ref(), &buf[..n], at)?;
                    from += n as u64;
                    at += n as u64;
                }
            }
            out.sync_data()?;
            self.fs.rename(path, &qpath)?;
            self.fs.sync_dir(&qdir)?;
            self.fs.rename(&rewrite, path)?;
            self.fs.sync_dir(&self.dir)?;
            let json = serde_json::to_vec_pretty(&report).map_err(io::Error::other)?;
            let jf = self.fs.create_truncate(&json_path(&qpath))?;
            write_all_at(jf.as_ref(), &json, 0)?;
            jf.sync_data()?;
            self.fs.sync_dir(&qdir)?;
            let rescanned = segment::scan(out.as_ref(), id, self.mode, self.index_interval)?;
            meta = SegmentMeta {
                next_seq: scan.meta.next_seq,
                ..rescanned.meta
            };
        }
        let mut lost_seqs: Vec<Range<u64>> =
            scan.damage.iter().map(|d| d.lost_seqs.clone()).collect();
        lost_seqs.retain(|r| !r.is_empty());
        self.act(RecoveryAction::QuarantinedSegment {
            stream: self.name.to_string(),
            segment: seg_name,
            quarantine_file: qpath,
            records_kept: meta.records,
            lost_seqs,
            dropped_valid_records: scan.dropped_valid_records,
            lost_bytes,
        });
        Ok(meta)
    }
}

/// The JSON report path beside a quarantined file.
pub fn json_path(quarantined: &Path) -> PathBuf {
    let mut s = quarantined.as_os_str().to_owned();
    s.push(".json");
    PathBuf::from(s)
}

#[cfg(test)]
mod tests;
