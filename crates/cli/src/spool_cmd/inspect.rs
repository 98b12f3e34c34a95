//! `spillway spool inspect DIR [--json]`: what a spool holds.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;
use spillway_spool::inspect::{self, Inspection};
use spillway_spool::{RecoveryReport, Severity};

use super::{lock, marker, render};

/// Name of the dead-letter log in the spool directory (the library writes it there).
pub const DEAD_LETTER_LOG: &str = "dead-letters.jsonl";

/// Arguments of `spillway spool inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The spool directory (`spool.dir` of the Spillway that wrote it).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// The dead-letter log at a glance.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeadLetterSummary {
    pub path: PathBuf,
    pub exists: bool,
    /// Entries in the log.
    pub entries: usize,
    /// Entries per reason.
    pub by_reason: BTreeMap<String, usize>,
    /// Entries `spillway spool replay --dead-letters` delivered (or found in Kafka) already.
    pub replayed: usize,
    /// Why the log (or the replay marker) could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Reads the dead-letter log and the replay marker of a spool.
pub fn dead_letters(dir: &Path) -> DeadLetterSummary {
    let path = dir.join(DEAD_LETTER_LOG);
    let mut out = DeadLetterSummary {
        exists: path.exists(),
        path,
        ..DeadLetterSummary::default()
    };
    if !out.exists {
        return out;
    }
    match spillway::deadletter::read_log(&out.path) {
        Ok(entries) => {
            out.entries = entries.len();
            for e in &entries {
                *out.by_reason.entry(e.reason.clone()).or_default() += 1;
            }
            match marker::read(dir) {
                Ok(states) => {
                    out.replayed = entries
                        .iter()
                        .filter(|e| states.get(&e.id).is_some_and(|s| s.is_done()))
                        .count();
                }
                Err(e) => out.error = Some(format!("replay marker: {e}")),
            }
        }
        Err(e) => out.error = Some(e.to_string()),
    }
    out
}

/// The instance that wrote the spool, from `instance.id` ("<hex id> <boot>").
#[derive(Debug, Clone, Serialize)]
pub struct Instance {
    pub id: String,
    pub boot: u64,
}

pub fn instance(dir: &Path) -> Option<Instance> {
    let text = std::fs::read_to_string(dir.join("instance.id")).ok()?;
    let mut parts = text.split_whitespace();
    Some(Instance {
        id: parts.next()?.to_string(),
        boot: parts.next()?.parse().ok()?,
    })
}

/// The worst severity of a recovery report (`None` when it is empty).
pub fn worst(report: &RecoveryReport) -> Option<Severity> {
    report.actions.iter().map(|a| a.severity()).max()
}

#[derive(Debug, Serialize)]
struct Output<'a> {
    #[serde(flatten)]
    inspection: &'a Inspection,
    instance: Option<Instance>,
    /// Undelivered records, all streams.
    records: u64,
    /// Worst problem found: ok, warning or error (see `spillway spool verify`).
    problems_status: &'static str,
    dead_letters: DeadLetterSummary,
}

pub fn run(args: InspectArgs) -> anyhow::Result<u8> {
    let held = lock::hold_shared(&args.dir)?;
    let inspection = inspect::inspect(&args.dir)?;
    let output = Output {
        records: inspection.streams.iter().map(|s| s.records).sum(),
        problems_status: render::status_word(worst(&inspection.problems)),
        instance: instance(&args.dir),
        dead_letters: dead_letters(&args.dir),
        inspection: &inspection,
    };
    drop(held);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&output)?);
    } else {
        print!("{}", text(&output));
    }
    Ok(super::OK)
}

fn text(o: &Output<'_>) -> String {
    let i = o.inspection;
    let mut out = String::new();
    let segments: usize = i.streams.iter().map(|s| s.segments.len()).sum();
    let _ = writeln!(out, "spool {}", i.dir.display());
    let who = o
        .instance
        .as_ref()
        .map_or("unknown instance".to_string(), |x| {
            format!("instance {} (boot {})", x.id, x.boot)
        });
    let _ = writeln!(
        out,
        "  {who}; {} streams; {} records not yet delivered; {} in {segments} segments\n",
        i.streams.len(),
        o.records,
        render::bytes(i.used_bytes),
    );
    if i.streams.is_empty() {
        out.push_str("streams: none\n");
    } else {
        let rows: Vec<Vec<String>> = i
            .streams
            .iter()
            .map(|s| {
                vec![
                    s.name.clone(),
                    s.records.to_string(),
                    render::bytes(s.bytes),
                    s.segments.len().to_string(),
                    s.oldest_record_ms.map_or("-".into(), render::time),
                    s.oldest_record_age_ms.map_or("-".into(), render::age),
                    s.acked_upto.to_string(),
                    s.next_seq.to_string(),
                ]
            })
            .collect();
        out.push_str(&render::table(
            &[
                "STREAM",
                "RECORDS",
                "BYTES",
                "SEGMENTS",
                "OLDEST RECORD",
                "AGE",
                "DELIVERED UPTO",
                "NEXT SEQ",
            ],
            &rows,
            &[1, 2, 3, 5, 6, 7],
        ));
    }
    out.push('\n');
    if i.quarantine.is_empty() {
        out.push_str("quarantine: empty\n");
    } else {
        let _ = writeln!(out, "quarantine: {} damaged segments", i.quarantine.len());
        for q in &i.quarantine {
            let name = q.file.file_name().map_or_else(
                || q.file.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            let _ = writeln!(out, "  {name}  {}", render::bytes(q.bytes));
            let _ = writeln!(out, "    {}", quarantine_report(q.report.as_ref()));
        }
    }
    out.push('\n');
    out.push_str(&dead_letter_text(&o.dead_letters));
    out.push('\n');
    if i.problems.actions.is_empty() {
        out.push_str("problems: none\n");
    } else {
        out.push_str(
            "problems (what `spillway spool repair` would do; see `spillway spool verify`):\n",
        );
        for a in &i.problems.actions {
            let _ = writeln!(
                out,
                "  {}  {}",
                render::severity(a.severity()),
                super::verify::would(a)
            );
        }
    }
    out
}

/// One line summing up a quarantine report.
fn quarantine_report(report: Option<&serde_json::Value>) -> String {
    let Some(r) = report else {
        return "no readable report beside it".into();
    };
    let lost: Vec<String> = r["damage"]
        .as_array()
        .map(|d| {
            d.iter()
                .filter_map(|d| {
                    let (s, e) = (
                        d["lost_seqs"]["start"].as_u64()?,
                        d["lost_seqs"]["end"].as_u64()?,
                    );
                    (e > s).then(|| format!("{s}..{e}"))
                })
                .collect()
        })
        .unwrap_or_default();
    format!(
        "stream {}, quarantined {}: {} records kept, lost sequence numbers [{}], {} valid records dropped{}",
        r["stream"].as_str().unwrap_or("?"),
        r["quarantined_at_ms"]
            .as_u64()
            .map_or("?".into(), render::time),
        r["records_kept"].as_u64().unwrap_or(0),
        lost.join(", "),
        r["dropped_valid_records"].as_u64().unwrap_or(0),
        r["header_error"]
            .as_str()
            .map_or(String::new(), |e| format!(", header: {e}")),
    )
}

pub fn dead_letter_text(d: &DeadLetterSummary) -> String {
    if !d.exists {
        return format!("dead letters: none ({} does not exist)\n", d.path.display());
    }
    if let Some(e) = &d.error {
        return format!("dead letters: unreadable: {e}\n");
    }
    if d.entries == 0 {
        return format!("dead letters: none ({} is empty)\n", d.path.display());
    }
    let reasons: Vec<String> = d
        .by_reason
        .iter()
        .map(|(r, n)| format!("{r} {n}"))
        .collect();
    let mut line = format!("dead letters: {} in {}", d.entries, d.path.display());
    if !reasons.is_empty() {
        let _ = write!(line, " ({})", reasons.join(", "));
    }
    if d.replayed > 0 {
        let _ = write!(line, "; {} already replayed", d.replayed);
    }
    line.push('\n');
    line
}
