//! One stream's share of a group commit: encode and write (with rollover), undo a failure,
//! publish a success.

use super::{Active, AppendRequest, WriterStream};
use crate::format::{RecordHeader, SEGMENT_HEADER_LEN, SegmentHeader, encode_record, encoded_len};
use crate::fs::{FileHandle, FileSystem, write_all_at};
use crate::segment::{self, SegmentMeta};
use crate::spool::Shared;
use crate::stream::Stream;
use crate::{AppendError, SegmentId, Seq};
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// What one stream's part of a batch did, pending its sync.
#[derive(Default)]
pub(super) struct Staged {
    /// Per request, the sequence number of its first record (the others follow it).
    pub firsts: Vec<Seq>,
    /// Files written (to fdatasync).
    pub files: Vec<Arc<dyn FileHandle>>,
    /// Whether a segment was created (its directory must be fsync'd).
    pub sync_dir: bool,
    /// Segments created by this batch.
    pub created: Vec<SegmentId>,
    pub written: u64,
    /// The active segment before the batch: what a rollback cuts back to.
    pub before: Option<Before>,
    /// What to publish on success: metadata of the segments touched, as of the end of this
    /// batch (the writer may already be encoding the next one), and the next sequence number.
    pub metas: Vec<SegmentMeta>,
    pub next_seq: Seq,
}

pub(super) struct Before {
    pub id: SegmentId,
    pub committed_len: u64,
    pub file: Option<Arc<dyn FileHandle>>,
}

/// Encodes and writes one stream's requests. On error the caller rolls back.
pub(super) fn write_group(
    shared: &Shared,
    ws: &mut WriterStream,
    reqs: &[AppendRequest],
    out: &mut Staged,
) -> io::Result<()> {
    let fs = shared.fs.as_ref();
    let cfg = &shared.config;
    out.before = ws.active.as_ref().map(|a| Before {
        id: a.meta.id,
        committed_len: a.meta.len,
        file: a.file.clone(),
    });
    if !ws.dir_ready {
        fs.create_dir_all(&ws.stream.dir)?;
        fs.sync_dir(&shared.streams_dir)?;
        ws.dir_ready = true;
    }
    if ws.active.is_none() {
        roll(shared, ws, out)?;
    }
    let now = crate::types::now_ms();
    let mut buf = Vec::with_capacity(reqs.iter().map(|r| r.bytes as usize).sum());
    for req in reqs {
        out.firsts.push(ws.next_seq);
        for rec in &req.records {
            let total = encoded_len(rec.payload.len()) as u64;
            let active = ws.active.as_mut().expect("active segment");
            if active.meta.len + total > cfg.segment_bytes && active.meta.records > 0 {
                flush_buf(fs, &ws.stream, active, &mut buf, out)?;
                roll(shared, ws, out)?;
            }
            let active = ws.active.as_mut().expect("active segment");
            let seq = ws.next_seq;
            let offset = active.meta.len;
            let header = RecordHeader {
                seq,
                timestamp_ms: now,
                tag: rec.tag,
            };
            encode_record(&mut buf, &header, &rec.payload);
            active
                .meta
                .note_record(seq, now, offset, total, cfg.index_interval_bytes);
            ws.next_seq = seq.next();
        }
    }
    let active = ws.active.as_mut().expect("active segment");
    flush_buf(fs, &ws.stream, active, &mut buf, out)?;
    out.metas.push(active.meta.clone());
    out.next_seq = ws.next_seq;
    Ok(())
}

fn flush_buf(
    fs: &dyn FileSystem,
    stream: &Stream,
    active: &mut Active,
    buf: &mut Vec<u8>,
    out: &mut Staged,
) -> io::Result<()> {
    if buf.is_empty() {
        return Ok(());
    }
    let file = match &active.file {
        Some(f) => Arc::clone(f),
        None => {
            let f = fs.open_rw(&stream.dir.join(active.meta.id.file_name()))?;
            active.file = Some(Arc::clone(&f));
            f
        }
    };
    write_all_at(file.as_ref(), buf, active.flushed_len)?;
    active.flushed_len += buf.len() as u64;
    out.written += buf.len() as u64;
    if !out.files.iter().any(|f| Arc::ptr_eq(f, &file)) {
        out.files.push(file);
    }
    buf.clear();
    Ok(())
}

/// Seals the active segment (if any) and starts a new one at the next sequence number.
fn roll(shared: &Shared, ws: &mut WriterStream, out: &mut Staged) -> io::Result<()> {
    let fs = shared.fs.as_ref();
    let id = SegmentId(ws.next_seq.0);
    let file = match segment::create(fs, &ws.stream.dir, id) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            // Left by a failed batch whose cleanup failed: it holds nothing acknowledged.
            let f = fs.create_truncate(&ws.stream.dir.join(id.file_name()))?;
            let header = SegmentHeader {
                first_seq: Seq(id.0),
                created_ms: 0,
            };
            write_all_at(f.as_ref(), &header.encode(), 0)?;
            f
        }
        other => other?,
    };
    out.created.push(id);
    out.sync_dir = true;
    out.written += SEGMENT_HEADER_LEN as u64;
    out.files.push(Arc::clone(&file));
    if let Some(old) = ws.active.take() {
        out.metas.push(old.meta);
    }
    ws.active = Some(Active {
        meta: SegmentMeta::new(id),
        file: Some(file),
        flushed_len: SEGMENT_HEADER_LEN as u64,
    });
    Ok(())
}

/// Undoes a failed batch as far as possible: cut the active segment back to its length before
/// the batch, remove segments the batch created, and start a fresh segment at the next append
/// (sequence numbers of the failed records are not reused).
pub(super) fn rollback(shared: &Shared, ws: &mut WriterStream, st: &mut Staged) {
    let fs = shared.fs.as_ref();
    shared
        .counters
        .failed_commits
        .fetch_add(1, Ordering::Relaxed);
    if let Some(Before {
        id,
        committed_len,
        file,
    }) = st.before.take()
    {
        let path = ws.stream.dir.join(id.file_name());
        let file = file.map(Ok).unwrap_or_else(|| fs.open_rw(&path));
        if let Err(e) = file.and_then(|f| f.set_len(committed_len).and_then(|_| f.sync_data())) {
            tracing::warn!(stream = %ws.stream.name, "spool: truncate after failure failed: {e}");
        }
    }
    remove_created(shared, ws, st);
    ws.active = None;
}

/// Removes the segments a failed batch created.
pub(super) fn remove_created(shared: &Shared, ws: &WriterStream, st: &Staged) {
    let fs = shared.fs.as_ref();
    for id in &st.created {
        let _ = fs.remove_file(&ws.stream.dir.join(id.file_name()));
    }
    if !st.created.is_empty() {
        let _ = fs.sync_dir(&ws.stream.dir);
    }
}

/// Completes the requests with the error.
pub(super) fn fail(shared: &Shared, reqs: Vec<AppendRequest>, e: &io::Error) {
    for r in reqs {
        shared.pending_bytes.fetch_sub(r.bytes, Ordering::AcqRel);
        let copy = match e.raw_os_error() {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::new(e.kind(), e.to_string()),
        };
        let _ = r.reply.send(Err(AppendError::from_io(copy)));
    }
}

/// Makes a committed batch visible to readers and completes its waiters.
pub(super) fn publish(shared: &Shared, stream: &Stream, reqs: Vec<AppendRequest>, st: Staged) {
    {
        let mut state = stream.state.lock();
        for meta in st.metas {
            match state.segments.back_mut() {
                Some(last) if last.id == meta.id => *last = meta,
                _ => state.segments.push_back(meta),
            }
        }
        state.next_seq = st.next_seq;
    }
    stream.notify.notify_one();
    shared.used_bytes.fetch_add(st.written, Ordering::AcqRel);
    let mut records = 0;
    for (r, first) in reqs.into_iter().zip(st.firsts) {
        shared.pending_bytes.fetch_sub(r.bytes, Ordering::AcqRel);
        records += r.records.len() as u64;
        let _ = r.reply.send(Ok(first));
    }
    shared
        .counters
        .appended_records
        .fetch_add(records, Ordering::Relaxed);
}
