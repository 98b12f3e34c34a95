//! `spillway spool replay DIR --dead-letters`: send the dead-letter log's records to their
//! topics again, once the cause of the refusals was fixed.
//!
//! 1. The exclusive lock is held throughout: no Spillway appends to the log meanwhile.
//! 2. Entries whose id the marker (`DIR/dead-letters.replayed`, see [`super::marker`]) records
//!    as delivered or found in Kafka are skipped. An id appearing twice in the log is one entry.
//! 3. The tail check: for each partition concerned (every partition of the topic for an entry
//!    without one), the partition is read from its start, up to `--max-tail-scan` records, for
//!    the ids still pending; entries found are recorded `in_kafka` and not sent. When a tail is
//!    too long to read, entries a previous replay may have sent (marker state `sending`) are
//!    not resent (reported "unverified"); the others are sent: Kafka refused them once, and only
//!    a replay, which always writes `sending` first, could have put them there since.
//! 4. Entries are sent in log order, to their original topic and partition (by key or sticky
//!    when that partition no longer exists), with their original `spillway.id`, key, value and
//!    headers, in windows of 500: `sending` lines are fsync'd before a window is handed to
//!    Kafka, and each outcome after.
//!
//! A record refused again stays in the log (and is tried again by the next replay). Nothing is
//! ever removed from the dead-letter log.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use spillway::deadletter::{DeadLetter, decode, read_log};
use spillway::tail::{TailError, TailReader};
use spillway::{
    KafkaSettings, OutRecord, Outcome, Producer, ProducerOptions, SendError, SpillwayId,
};

use super::inspect::DEAD_LETTER_LOG;
use super::marker::{self, Line, State};
use super::replay::{ReplayArgs, progress};
use super::{INTERRUPTED, OK, WARNING, lock, render};

const WINDOW: usize = 500;
const TAIL_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
struct Summary {
    entries: usize,
    already_replayed: usize,
    in_kafka: usize,
    delivered: usize,
    refused: Vec<(String, String)>,
    not_delivered: usize,
    unknown: usize,
    unverified: usize,
    invalid: usize,
}

/// Runs the dead-letter replay (blocking). See the module documentation.
pub fn replay(
    args: &ReplayArgs,
    properties: &[(String, String)],
    stop: &AtomicBool,
) -> anyhow::Result<u8> {
    let started = Instant::now();
    let _held = lock::hold_exclusive(&args.dir)?;
    let log = args.dir.join(DEAD_LETTER_LOG);
    if !log.exists() {
        println!(
            "no dead letters to replay: {} does not exist",
            log.display()
        );
        return Ok(OK);
    }
    let entries = read_log(&log)?;
    let states = marker::read(&args.dir).context("reading the replay marker")?;
    let mut summary = Summary {
        entries: entries.len(),
        ..Summary::default()
    };
    let mut seen = HashSet::new();
    let mut pending: Vec<(DeadLetter, OutRecord)> = Vec::new();
    for e in entries {
        if !seen.insert(e.id.clone()) {
            continue;
        }
        if states.get(&e.id).is_some_and(|s| s.is_done()) {
            summary.already_replayed += 1;
            continue;
        }
        match record_of(&e) {
            Some(r) => pending.push((e, r)),
            None => summary.invalid += 1,
        }
    }
    eprintln!(
        "replaying {} of {} dead letters from {} to {}",
        pending.len(),
        summary.entries,
        log.display(),
        args.bootstrap
    );
    let kafka = properties
        .iter()
        .fold(KafkaSettings::new(&args.bootstrap), |s, (k, v)| {
            s.property(k, v)
        });
    let producer = Producer::start(ProducerOptions::new(kafka))?;
    let mut writer = marker::Writer::open(&args.dir)?;
    let tail = TailReader::new(producer.client_config(), args.max_tail_scan)?;
    let found = tail_check(&producer, &tail, &pending, &states);
    let now = render::now_ms();
    let mut lines = Vec::new();
    pending.retain(|(e, _)| match found.get(&e.id) {
        Some(Found::InKafka(p, o)) => {
            lines.push(line(&e.id, State::InKafka, Some(*p), Some(*o), None, now));
            summary.in_kafka += 1;
            false
        }
        Some(Found::Unverified) => {
            summary.unverified += 1;
            false
        }
        None => true,
    });
    writer.append(&lines)?;
    let bar = progress(pending.len() as u64, "dead letters", args.no_progress);
    let deadline = args.timeout.map(|t| started + t);
    let mut interrupted = false;
    let mut rest = pending.as_slice();
    while !rest.is_empty() {
        if stop.load(Ordering::SeqCst) || deadline.is_some_and(|d| Instant::now() >= d) {
            interrupted = stop.load(Ordering::SeqCst);
            summary.not_delivered += rest.len();
            break;
        }
        let (window, later) = rest.split_at(rest.len().min(WINDOW));
        rest = later;
        send_window(&producer, window, &mut writer, &mut summary, deadline)?;
        bar.inc(window.len() as u64);
    }
    bar.finish_and_clear();
    producer.shutdown(Duration::from_secs(10));
    print_summary(args, &summary, started.elapsed(), interrupted);
    Ok(if interrupted {
        INTERRUPTED
    } else if summary.refused.is_empty()
        && summary.not_delivered + summary.unknown + summary.unverified + summary.invalid == 0
    {
        OK
    } else {
        WARNING
    })
}

/// The record a dead letter holds, with its original id.
fn record_of(e: &DeadLetter) -> Option<OutRecord> {
    let id = SpillwayId::parse(e.id.as_bytes())?;
    let mut r = OutRecord::new(e.topic.clone(), id);
    r.key = match &e.key {
        Some(k) => Some(decode(k)?),
        None => None,
    };
    r.value = match &e.value {
        Some(v) => Some(decode(v)?),
        None => None,
    };
    for (name, value) in &e.headers {
        r.headers.push((name.clone(), decode(value)?));
    }
    r.partition = e.partition;
    Some(r)
}

enum Found {
    InKafka(i32, i64),
    /// The tail was too long (or unreadable) and a previous replay may have sent it.
    Unverified,
}

/// Which pending entries are in Kafka already (see the module documentation, step 3).
fn tail_check(
    producer: &Producer,
    tail: &TailReader,
    pending: &[(DeadLetter, OutRecord)],
    states: &HashMap<String, State>,
) -> HashMap<String, Found> {
    let mut groups: HashMap<(String, i32), HashSet<SpillwayId>> = HashMap::new();
    for (e, r) in pending {
        let partitions: Vec<i32> = match e.partition {
            Some(p) => vec![p],
            None => match producer.partitions(&e.topic) {
                Ok(n) => (0..n).collect(),
                Err(_) => Vec::new(), // the send reports the topic's problem
            },
        };
        for p in partitions {
            groups
                .entry((e.topic.clone(), p))
                .or_default()
                .insert(r.id.clone());
        }
    }
    let mut found = HashMap::new();
    let mut unchecked: HashSet<SpillwayId> = HashSet::new();
    for ((topic, p), ids) in groups {
        match tail.find(&topic, p, None, &ids, TAIL_TIMEOUT) {
            Ok(checked) => {
                if checked.unread > 0 {
                    eprintln!(
                        "warning: {topic}/{p} is longer than the scan limit: {} records left unchecked for replayed entries",
                        checked.unread
                    );
                    unchecked.extend(
                        ids.iter()
                            .filter(|id| !checked.found.contains_key(*id))
                            .cloned(),
                    );
                }
                for (id, offset) in checked.found {
                    found.insert(id.to_string(), Found::InKafka(p, offset));
                }
            }
            Err(e @ TailError::Timeout { .. }) => {
                eprintln!("warning: cannot check {topic}/{p} for replayed entries: {e}");
                unchecked.extend(ids);
            }
            Err(TailError::Kafka(e)) => {
                eprintln!("warning: cannot read {topic}/{p}: {e}");
                unchecked.extend(ids);
            }
        }
    }
    for (e, r) in pending {
        let maybe_sent = states.get(&e.id) == Some(&State::Sending);
        if maybe_sent && unchecked.contains(&r.id) && !found.contains_key(&e.id) {
            found.insert(e.id.clone(), Found::Unverified);
        }
    }
    found
}

fn line(
    id: &str,
    state: State,
    partition: Option<i32>,
    offset: Option<i64>,
    error: Option<String>,
    at_ms: u64,
) -> Line {
    Line {
        id: id.to_string(),
        state,
        at_ms,
        partition,
        offset,
        error,
    }
}

/// Sends one window in order: `sending` lines first (durable), then the outcomes.
fn send_window(
    producer: &Producer,
    window: &[(DeadLetter, OutRecord)],
    writer: &mut marker::Writer,
    summary: &mut Summary,
    deadline: Option<Instant>,
) -> anyhow::Result<()> {
    let now = render::now_ms();
    let sending: Vec<Line> = window
        .iter()
        .map(|(e, _)| line(&e.id, State::Sending, None, None, None, now))
        .collect();
    writer.append(&sending)?;
    let mut futures = Vec::new();
    let mut outcomes = Vec::new();
    for (e, r) in window {
        match send(producer, r.clone(), deadline) {
            Ok(f) => futures.push((e, f)),
            Err(err) => {
                let state = if err.is_transient() {
                    summary.not_delivered += 1;
                    State::NotDelivered
                } else {
                    summary.refused.push((e.id.clone(), err.to_string()));
                    State::Refused
                };
                outcomes.push(line(&e.id, state, None, None, Some(err.to_string()), now));
            }
        }
    }
    for (e, f) in futures {
        let d = f.wait();
        let at = render::now_ms();
        let l = match d.outcome {
            Outcome::Delivered { partition, offset } => {
                summary.delivered += 1;
                line(&e.id, State::Delivered, Some(partition), offset, None, at)
            }
            Outcome::Permanent { error, .. } => {
                summary.refused.push((e.id.clone(), error.reason()));
                line(
                    &e.id,
                    State::Refused,
                    None,
                    None,
                    Some(error.to_string()),
                    at,
                )
            }
            Outcome::NotPersisted { error, .. } => {
                summary.not_delivered += 1;
                line(
                    &e.id,
                    State::NotDelivered,
                    None,
                    None,
                    Some(error.to_string()),
                    at,
                )
            }
            Outcome::PossiblyPersisted { .. } => {
                // Stays `sending`: the next replay's tail check decides.
                summary.unknown += 1;
                continue;
            }
        };
        outcomes.push(l);
    }
    writer.append(&outcomes)?;
    Ok(())
}

/// Hands one record to the producer, retrying transient refusals until `deadline` (or 60 s),
/// and placing it by key (or sticky) when its original partition no longer exists.
fn send(
    producer: &Producer,
    mut record: OutRecord,
    deadline: Option<Instant>,
) -> Result<spillway::DeliveryFuture, SendError> {
    let until = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(60));
    loop {
        match producer.send(record.clone()) {
            Ok(f) => return Ok(f),
            Err(SendError::NoSuchPartition { .. }) if record.partition.is_some() => {
                record.partition = None;
            }
            Err(e) if e.is_transient() && Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(e),
        }
    }
}

fn print_summary(args: &ReplayArgs, s: &Summary, took: Duration, interrupted: bool) {
    let took = humantime::format_duration(Duration::from_millis(took.as_millis() as u64));
    let head = if interrupted {
        format!("interrupted after {took}")
    } else {
        format!("done in {took}")
    };
    println!(
        "dead-letter replay of {} to {}: {head}",
        args.dir.join(DEAD_LETTER_LOG).display(),
        args.bootstrap
    );
    let rows = [
        ("entries in the log", s.entries),
        ("replayed before (skipped)", s.already_replayed),
        ("already in Kafka (not sent again)", s.in_kafka),
        ("delivered", s.delivered),
        ("refused again", s.refused.len()),
        ("not delivered (rerun)", s.not_delivered),
        ("outcome unknown (rerun checks)", s.unknown),
        ("unverified, not resent", s.unverified),
        ("unreadable entries", s.invalid),
    ];
    for (what, n) in rows {
        if n > 0 || matches!(what, "entries in the log" | "delivered") {
            println!("  {what:<40} {n:>10}");
        }
    }
    for (id, why) in s.refused.iter().take(10) {
        println!("  refused: {id}: {why}");
    }
    println!(
        "progress is kept in {}; a rerun sends nothing twice.",
        marker::path(&args.dir).display()
    );
}
