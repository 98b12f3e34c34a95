//! `spillway spool export DIR --stream S`: one JSON line per record.
//!
//! ```text
//! {"stream":"orders.p0","seq":12,"appended_ms":1714560000123,"appended_at":"2024-05-01T10:40:00.123Z",
//!  "topic":"orders","partition":0,"explicit_partition":null,"timestamp_ms":null,
//!  "key":{"base64":"dXNlci00Mg==","utf8":"user-42"},"value":{"base64":"…","utf8":"…"},
//!  "headers":[{"name":"trace","base64":"…","utf8":"…"}],
//!  "id":"3f2a9c1d00e4b7a1:3:17","priority":"normal","possibly_persisted":false,"known_before":null}
//! ```
//! `partition` is where Spillway will deliver the record (`null` for a keyless stream: chosen
//! at delivery); `explicit_partition` is the one the client asked for, if any. `key` and `value`
//! are `null` when absent. A payload that is not an envelope is printed as
//! `{"stream","seq","appended_ms","appended_at","error","payload":{"base64"}}`.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use clap::{Args, ValueEnum};
use serde::Serialize;
use spillway::envelope::Envelope;
use spillway_spool::inspect;
use spillway_spool::{Record, Seq, StreamName};

use super::{lock, render};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
}

/// Arguments of `spillway spool export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The spool directory.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// The stream to export, e.g. `orders.p3` or `orders.keyless` (see `spillway spool inspect`).
    #[arg(long, value_name = "S")]
    pub stream: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: Format,
    /// First sequence number to print. Default: the first record not yet delivered; a lower
    /// one also prints delivered records whose segment is not deleted yet.
    #[arg(long, value_name = "N")]
    pub from_seq: Option<u64>,
    /// Print at most N records.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
}

/// Bytes as base64 plus, when valid UTF-8, the text.
#[derive(Debug, Serialize)]
struct Bytes {
    base64: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    utf8: Option<String>,
}

fn bytes(b: &[u8]) -> Bytes {
    Bytes {
        base64: B64.encode(b),
        utf8: std::str::from_utf8(b).ok().map(str::to_string),
    }
}

/// A header: its name, and its value like a key's.
#[derive(Debug, Serialize)]
struct Header<'a> {
    name: &'a str,
    #[serde(flatten)]
    value: Bytes,
}

/// One exported record, fields in this order.
#[derive(Debug, Serialize)]
struct Line<'a> {
    stream: &'a str,
    seq: u64,
    appended_ms: u64,
    appended_at: String,
    #[serde(flatten)]
    body: Body<'a>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Body<'a> {
    Record {
        topic: &'a str,
        partition: Option<i32>,
        explicit_partition: Option<i32>,
        timestamp_ms: Option<i64>,
        key: Option<Bytes>,
        value: Option<Bytes>,
        headers: Vec<Header<'a>>,
        id: String,
        priority: &'static str,
        possibly_persisted: bool,
        known_before: Option<i64>,
    },
    Undecodable {
        error: String,
        payload: Raw,
    },
}

#[derive(Debug, Serialize)]
struct Raw {
    base64: String,
}

/// The JSON line of one record; `Err` carries the line of an undecodable one.
pub fn line(record: &Record) -> Result<String, String> {
    let envelope = Envelope::decode(&record.payload);
    let body = match &envelope {
        Ok(env) => {
            let r = &env.record;
            Body::Record {
                topic: &r.topic,
                partition: env.partition,
                explicit_partition: r.partition,
                timestamp_ms: r.timestamp_ms,
                key: r.key.as_deref().map(bytes),
                value: r.value.as_deref().map(bytes),
                headers: r
                    .headers
                    .iter()
                    .map(|(name, value)| Header {
                        name,
                        value: bytes(value),
                    })
                    .collect(),
                id: r.id.to_string(),
                priority: env.priority.as_str(),
                possibly_persisted: env.possibly_persisted.is_some(),
                known_before: env.possibly_persisted.flatten(),
            }
        }
        Err(e) => Body::Undecodable {
            error: e.to_string(),
            payload: Raw {
                base64: B64.encode(&record.payload),
            },
        },
    };
    let line = Line {
        stream: record.position.stream.as_str(),
        seq: record.position.seq.0,
        appended_ms: record.timestamp_ms,
        appended_at: render::time(record.timestamp_ms),
        body,
    };
    let text = serde_json::to_string(&line).expect("an export line serialises");
    if envelope.is_ok() {
        Ok(text)
    } else {
        Err(text)
    }
}

pub fn run(args: ExportArgs) -> anyhow::Result<u8> {
    let Format::Jsonl = args.format;
    let name = StreamName::new(&args.stream)?;
    let held = lock::hold_shared(&args.dir)?;
    let records = inspect::read_stream(&args.dir, &name, args.from_seq.map(Seq))?;
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let (mut printed, mut undecodable) = (0u64, 0u64);
    for record in records {
        if args.limit.is_some_and(|l| printed >= l) {
            break;
        }
        let text = match line(&record?) {
            Ok(t) => t,
            Err(t) => {
                undecodable += 1;
                t
            }
        };
        let written = out
            .write_all(text.as_bytes())
            .and_then(|()| out.write_all(b"\n"));
        if let Err(e) = written {
            if e.kind() == io::ErrorKind::BrokenPipe {
                return Ok(super::OK); // `| head`: the reader has what it wanted
            }
            return Err(e.into());
        }
        printed += 1;
    }
    match out.flush() {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => return Err(e.into()),
        _ => {}
    }
    drop(held);
    if undecodable > 0 {
        eprintln!(
            "spillway spool export: {undecodable} of {printed} records are not envelopes this \
             version can read (printed with their raw payload and the error)"
        );
        return Ok(super::WARNING);
    }
    Ok(super::OK)
}
