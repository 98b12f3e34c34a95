//! Unit tests of recovery on the simulated filesystem.

use super::*;
use crate::format::{RecordHeader, encode_record};
use crate::fs::sim::SimFs;

const ROOT: &str = "/spool";

fn segment_bytes(first: u64, seqs: std::ops::Range<u64>) -> Vec<u8> {
    let mut out = SegmentHeader {
        first_seq: Seq(first),
        created_ms: 0,
    }
    .encode()
    .to_vec();
    for seq in seqs {
        let header = RecordHeader {
            seq: Seq(seq),
            timestamp_ms: 1,
            tag: 0,
        };
        encode_record(&mut out, &header, format!("record {seq}").as_bytes());
    }
    out
}

fn stream_dir(fs: &SimFs) -> PathBuf {
    let dir = Path::new(ROOT).join(STREAMS_DIR).join("s");
    fs.create_dir_all(&dir).unwrap();
    fs.create_dir_all(&Path::new(ROOT).join(QUARANTINE_DIR))
        .unwrap();
    dir
}

fn run(fs: &SimFs, apply: bool) -> (Vec<RecoveredStream>, RecoveryReport) {
    recover(fs, Path::new(ROOT), RecoveryMode::default(), 64, apply).unwrap()
}

#[test]
fn a_leftover_rewrite_whose_original_is_in_place_is_discarded_and_redone() {
    let fs = SimFs::new();
    let dir = stream_dir(&fs);
    let seg = dir.join(SegmentId(0).file_name());
    fs.write_file(&seg, &segment_bytes(0, 0..3)).unwrap();
    fs.write_file(
        &dir.join(format!("{}{REWRITE_SUFFIX}", SegmentId(0).file_name())),
        b"half",
    )
    .unwrap();
    let (streams, report) = run(&fs, true);
    assert!(matches!(
        report.actions[..],
        [RecoveryAction::CleanedUpTempFile { .. }]
    ));
    assert_eq!(streams[0].segments[0].records, 3);
    assert_eq!(fs.list_files(), vec![seg]);
}

#[test]
fn a_leftover_rewrite_whose_original_was_already_quarantined_is_put_in_place() {
    let fs = SimFs::new();
    let dir = stream_dir(&fs);
    let rewrite = dir.join(format!("{}{REWRITE_SUFFIX}", SegmentId(5).file_name()));
    fs.write_file(&rewrite, &segment_bytes(5, 5..8)).unwrap();
    let (streams, _) = run(&fs, true);
    assert_eq!(streams[0].segments[0].id, SegmentId(5));
    assert_eq!(streams[0].segments[0].records, 3);
    assert!(fs.exists(&dir.join(SegmentId(5).file_name())));
    assert!(!fs.exists(&rewrite));
}

#[test]
fn a_leftover_checkpoint_temp_file_is_removed() {
    let fs = SimFs::new();
    let dir = stream_dir(&fs);
    fs.write_file(&dir.join(SegmentId(0).file_name()), &segment_bytes(0, 0..1))
        .unwrap();
    fs.write_file(&dir.join(CHECKPOINT_TMP_FILE), b"partial")
        .unwrap();
    let (_, report) = run(&fs, true);
    assert_eq!(report.actions.len(), 1);
    assert!(!fs.exists(&dir.join(CHECKPOINT_TMP_FILE)));
}

#[test]
fn segments_below_the_checkpoint_are_deleted_but_never_the_last_one() {
    let fs = SimFs::new();
    let dir = stream_dir(&fs);
    fs.write_file(&dir.join(SegmentId(0).file_name()), &segment_bytes(0, 0..3))
        .unwrap();
    fs.write_file(&dir.join(SegmentId(3).file_name()), &segment_bytes(3, 3..6))
        .unwrap();
    let ckpt = Checkpoint {
        acked_upto: Seq(6),
        meta: b"m".to_vec(),
    };
    checkpoint::write_durable(&fs, &dir, &ckpt).unwrap();
    let (streams, report) = run(&fs, true);
    assert_eq!(report.actions.len(), 1, "{:?}", report.actions);
    assert_eq!(streams[0].segments.len(), 1);
    assert_eq!(streams[0].next_seq, Seq(6));
    assert_eq!(streams[0].checkpoint, ckpt);
}

#[test]
fn a_dry_run_reports_the_same_actions_and_changes_nothing() {
    let fs = SimFs::new();
    let dir = stream_dir(&fs);
    let mut bytes = segment_bytes(0, 0..4);
    let damaged = bytes.len() - 40;
    bytes[damaged] ^= 0xFF;
    bytes.extend_from_slice(b"torn");
    fs.write_file(&dir.join(SegmentId(0).file_name()), &bytes)
        .unwrap();
    let before = fs.list_files();
    let (_, dry) = run(&fs, false);
    assert_eq!(fs.list_files(), before);
    assert_eq!(
        fs.read_file(&dir.join(SegmentId(0).file_name())).unwrap(),
        bytes
    );
    let (_, applied) = run(&fs, true);
    assert_eq!(dry.actions.len(), applied.actions.len());
    assert!(run(&fs, false).1.is_clean());
}
