//! `spillway spool verify DIR` (full scan, changes nothing, exit code by severity) and
//! `spillway spool repair DIR` (applies recovery, prints every action).

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use spillway::envelope::Envelope;
use spillway::streams::StreamKind;
use spillway_spool::inspect::{self, Inspection};
use spillway_spool::{OpenError, RecoveryAction, Severity, SpoolConfig, StreamName};

use super::inspect::{DeadLetterSummary, dead_letters, worst};
use super::{lock, render};

/// Arguments of `spillway spool verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The spool directory.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Print the findings as JSON (same exit code).
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `spillway spool repair`.
#[derive(Debug, Args)]
pub struct RepairArgs {
    /// The spool directory.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Print the actions as JSON (same exit code).
    #[arg(long)]
    pub json: bool,
}

/// One thing verify found.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub message: String,
    /// What repair does about it, for recovery findings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repair: Option<RecoveryAction>,
}

#[derive(Debug, Serialize)]
struct VerifyOutput {
    dir: PathBuf,
    status: &'static str,
    exit_code: u8,
    streams: usize,
    segments: usize,
    records: u64,
    bytes: u64,
    findings: Vec<Finding>,
    dead_letters: DeadLetterSummary,
}

pub fn run_verify(args: VerifyArgs) -> anyhow::Result<u8> {
    let held = lock::hold_shared(&args.dir)?;
    let inspection = inspect::inspect(&args.dir)?;
    let mut findings: Vec<Finding> = inspection
        .problems
        .actions
        .iter()
        .map(|a| Finding {
            severity: a.severity(),
            message: would(a),
            repair: Some(a.clone()),
        })
        .collect();
    findings.extend(quarantine_findings(&inspection));
    findings.extend(record_findings(&args.dir, &inspection)?);
    let dead = dead_letters(&args.dir);
    if let Some(e) = &dead.error {
        findings.push(Finding {
            severity: Severity::Warning,
            message: format!("dead-letter log cannot be read: {e}"),
            repair: None,
        });
    }
    drop(held);
    let worst = findings.iter().map(|f| f.severity).max();
    let report = &inspection.problems;
    let output = VerifyOutput {
        dir: args.dir.clone(),
        status: render::status_word(worst),
        exit_code: render::exit_code(worst),
        streams: report.streams,
        segments: report.segments,
        records: inspection.streams.iter().map(|s| s.records).sum(),
        bytes: report.bytes,
        findings,
        dead_letters: dead,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&output)?);
    } else {
        print!("{}", verify_text(&output));
    }
    Ok(output.exit_code)
}

/// A recovery finding as verify (and inspect) words it: what is wrong, and what repair does.
pub fn would(action: &RecoveryAction) -> String {
    use RecoveryAction::*;
    match action {
        TruncatedTornTail {
            stream,
            segment,
            offset,
            bytes,
        } => format!(
            "{stream}/{segment}: torn tail of {bytes} bytes at offset {offset}, an unfinished \
             write never acknowledged (repair cuts it)"
        ),
        QuarantinedSegment {
            stream,
            segment,
            records_kept,
            lost_seqs,
            dropped_valid_records,
            lost_bytes,
            ..
        } => {
            let lost: Vec<String> = lost_seqs
                .iter()
                .map(|r| format!("{}..{}", r.start, r.end))
                .collect();
            format!(
                "{stream}/{segment}: damaged: {lost_bytes} bytes unreadable, sequence numbers \
                 [{}] lost, {dropped_valid_records} valid records after the damage dropped, \
                 {records_kept} records intact (repair moves the file to quarantine/ with a \
                 report and keeps the intact records)",
                lost.join(", ")
            )
        }
        RepairedSegmentHeader {
            stream,
            segment,
            removed,
        } => format!(
            "{stream}/{segment}: torn segment creation, no record in it (repair {})",
            if *removed {
                "removes it"
            } else {
                "rewrites its header"
            }
        ),
        RebuiltCheckpoint {
            stream,
            reason,
            acked_upto,
        } => format!(
            "{stream}: checkpoint unusable ({reason}); repair rebuilds it at {acked_upto}, so \
             records from there are delivered again (the tail check drops those in Kafka)"
        ),
        CleanedUpTempFile { path } => format!(
            "{}: leftover of an interrupted operation (repair finishes it)",
            path.display()
        ),
        DeletedAckedSegment { stream, segment } => format!(
            "{stream}/{segment}: fully delivered; its deletion was interrupted (repair deletes it)"
        ),
        CheckpointAheadOfData {
            stream,
            acked_upto,
            next_seq,
        } => format!(
            "{stream}: checkpoint {acked_upto} is past the end of the data ({next_seq}): \
             delivered records written without fsync were lost in a crash"
        ),
        IgnoredUnknownEntry { path } => {
            format!("{}: not part of a spool; left alone", path.display())
        }
    }
}

/// Damaged segments set aside by earlier repairs: their records were lost and someone should
/// look (then delete them). A warning until then.
fn quarantine_findings(inspection: &Inspection) -> Vec<Finding> {
    inspection
        .quarantine
        .iter()
        .map(|q| Finding {
            severity: Severity::Warning,
            message: format!(
                "{}: damaged segment kept in quarantine by an earlier repair (its report is \
                 beside it); records were lost there. Review, then delete it",
                q.file.display()
            ),
            repair: None,
        })
        .collect()
}

/// Every undelivered record must decode as an envelope of its stream's topic, or the engine
/// skips it; streams whose names are not Spillway's are left alone by the engine.
fn record_findings(dir: &std::path::Path, inspection: &Inspection) -> anyhow::Result<Vec<Finding>> {
    let mut out = Vec::new();
    for s in inspection.streams.iter().filter(|s| s.records > 0) {
        let Some(kind) = StreamKind::parse(&s.name) else {
            out.push(Finding {
                severity: Severity::Warning,
                message: format!(
                    "stream {}: not a stream name Spillway writes (<topic>.p<N> or \
                     <topic>.keyless); `spillway spool replay` leaves its {} records alone",
                    s.name, s.records
                ),
                repair: None,
            });
            continue;
        };
        let name = StreamName::new(&s.name)?;
        let mut bad = 0u64;
        let mut first: Option<String> = None;
        for record in inspect::read_stream(dir, &name, None)? {
            let record = record.with_context(|| format!("reading stream {}", s.name))?;
            let problem = match Envelope::decode(&record.payload) {
                Err(e) => Some(e.to_string()),
                Ok(env) if env.record.topic != kind.topic() => Some(format!(
                    "topic {} does not match the stream's {}",
                    env.record.topic,
                    kind.topic()
                )),
                Ok(_) => None,
            };
            if let Some(p) = problem {
                bad += 1;
                first.get_or_insert(format!("seq {}: {p}", record.position.seq));
            }
        }
        if bad > 0 {
            out.push(Finding {
                severity: Severity::Error,
                message: format!(
                    "stream {}: {bad} records cannot be delivered (first at {}); the engine \
                     skips them. `spillway spool export` shows their raw payload",
                    s.name,
                    first.unwrap_or_default()
                ),
                repair: None,
            });
        }
    }
    Ok(out)
}

fn verify_text(o: &VerifyOutput) -> String {
    let mut out = format!(
        "verified {}: {} streams, {} segments, {} records not yet delivered, {}\n",
        o.dir.display(),
        o.streams,
        o.segments,
        o.records,
        render::bytes(o.bytes)
    );
    for f in &o.findings {
        let _ = writeln!(out, "  {}  {}", render::severity(f.severity), f.message);
    }
    let count = |s| o.findings.iter().filter(|f| f.severity == s).count();
    let (errors, warnings) = (count(Severity::Error), count(Severity::Warning));
    let _ = writeln!(
        out,
        "{}: {errors} errors, {warnings} warnings",
        o.status.to_uppercase()
    );
    if o.findings
        .iter()
        .any(|f| f.repair.is_some() && f.severity > Severity::Info)
    {
        let _ = writeln!(
            out,
            "`spillway spool repair {}` applies the repairs (Spillway also does at start).",
            o.dir.display()
        );
    }
    out
}

#[derive(Debug, Serialize)]
struct RepairOutput {
    dir: PathBuf,
    status: &'static str,
    exit_code: u8,
    streams: usize,
    segments: usize,
    records: u64,
    actions: Vec<RepairAction>,
}

#[derive(Debug, Serialize)]
struct RepairAction {
    severity: Severity,
    message: String,
    #[serde(flatten)]
    action: RecoveryAction,
}

pub fn run_repair(args: RepairArgs) -> anyhow::Result<u8> {
    lock::ensure_free(&args.dir)?;
    let report = match inspect::repair(&args.dir, SpoolConfig::default()) {
        Ok(r) => r,
        Err(OpenError::Locked { dir, lock }) => return Err(lock::locked(&dir, &lock).into()),
        Err(e) => return Err(e.into()),
    };
    let worst = worst(&report);
    let output = RepairOutput {
        dir: args.dir.clone(),
        status: render::status_word(worst),
        exit_code: render::exit_code(worst),
        streams: report.streams,
        segments: report.segments,
        records: report.records,
        actions: report
            .actions
            .iter()
            .map(|a| RepairAction {
                severity: a.severity(),
                message: a.to_string(),
                action: a.clone(),
            })
            .collect(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&output)?);
        return Ok(output.exit_code);
    }
    if output.actions.is_empty() {
        println!(
            "nothing to repair in {}: {} streams, {} segments, {} records",
            args.dir.display(),
            report.streams,
            report.segments,
            report.records
        );
        return Ok(output.exit_code);
    }
    println!("repaired {}:", args.dir.display());
    for a in &output.actions {
        println!("  {}  {}", render::severity(a.severity), a.message);
    }
    let lost = report.quarantined();
    println!(
        "done: {} actions; now {} streams, {} segments, {} records.{}",
        output.actions.len(),
        report.streams,
        report.segments,
        report.records,
        if lost > 0 {
            format!(
                " {lost} damaged segments were moved to quarantine/ with a report of the records \
                 lost; review them with `spillway spool inspect`."
            )
        } else {
            String::new()
        }
    );
    Ok(output.exit_code)
}
