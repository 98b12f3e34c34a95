//! `spillway spool ...`: the operator's tools for a spool directory.
//!
//! | command | what it does | changes the spool | exit code |
//! |---|---|---|---|
//! | `inspect DIR` | streams (depth in records and bytes, oldest record and its age, segments), quarantine and its reports, dead-letter log | no | 0, or 3 |
//! | `verify DIR` | full scan: recovery's analysis (torn tails, damaged segments, checkpoints), every record's envelope, quarantine left from earlier repairs, dead-letter log | no | 0 clean, 1 warning, 2 error, 3 could not run |
//! | `repair DIR` | applies recovery and prints every action | yes | by what it had to do: 0 nothing, 1 repaired without loss, 2 records set aside in quarantine; 3 could not run |
//! | `export DIR --stream S` | one JSON line per record | no | 0, 1 if some records are undecodable, 3 |
//! | `replay DIR --bootstrap B` | delivers the spool (or, with `--dead-letters`, the dead-letter log) to Kafka, in order, once | yes | 0 all delivered, 1 not all (rerun), 3 could not run, 130 interrupted |
//!
//! ## The lock
//! A spool is open in at most one process: `Spool::open` holds an exclusive `flock` on
//! `DIR/LOCK` for as long as it runs. Every command here refuses a spool whose lock is held,
//! naming the holder when `/proc/locks` tells. The read-only commands (`inspect`, `verify`,
//! `export`) hold a *shared* lock on it while they read, so that no Spillway opens the spool
//! (and appends, acknowledges or deletes segments) under them; they never create the lock file
//! (a spool without one is not open anywhere). `repair` and `replay` open the spool themselves,
//! which takes the exclusive lock; the dead-letter replay takes it explicitly.
//!
//! Exit codes follow `spillway doctor` (Nagios): 0 OK, 1 warning, 2 error, 3 could not run
//! (locked, not a spool directory, I/O error, bad arguments).

mod deadletters;
mod export;
mod inspect;
mod lock;
mod marker;
mod render;
mod replay;
mod verify;

use std::process::ExitCode;

use clap::{Args, Subcommand};

/// Exit code: everything is fine.
pub const OK: u8 = 0;
/// Exit code: a warning (verify, repair), or a run that did not finish everything (replay).
pub const WARNING: u8 = 1;
/// Exit code: an error (verify: records lost or undeliverable).
pub const ERROR: u8 = 2;
/// Exit code: the command could not run (locked, not a spool, I/O error, bad arguments).
pub const COULD_NOT_RUN: u8 = 3;
/// Exit code: interrupted by SIGINT/SIGTERM (replay stopped cleanly; rerun continues).
pub const INTERRUPTED: u8 = 130;

/// Arguments of `spillway spool`.
#[derive(Debug, Args)]
pub struct SpoolArgs {
    #[command(subcommand)]
    pub command: SpoolCommand,
}

/// The spool tools.
#[derive(Debug, Subcommand)]
pub enum SpoolCommand {
    /// Show what a spool holds: streams with depth (records, bytes), oldest record and its age,
    /// segments, quarantine contents with their reports, and the dead-letter log.
    ///
    /// Read-only. Refuses a spool another process has open (its LOCK is held), and holds a
    /// shared lock while it reads. Exit code 0, or 3 if it could not run.
    Inspect(inspect::InspectArgs),
    /// Scan a spool completely and report what is wrong with it, changing nothing.
    ///
    /// Checks every segment as recovery would (torn tails, damaged records, torn segment
    /// creations, checkpoints), decodes every undelivered record, and reports quarantined
    /// segments left by earlier repairs and an unreadable dead-letter log. Read-only; refuses
    /// a spool another process has open (its LOCK is held).
    ///
    /// Exit code (Nagios, like `spillway doctor`): 0 clean, 1 warnings (repairable without
    /// losing records, or quarantine to review), 2 errors (records lost or undeliverable), 3
    /// could not run.
    Verify(verify::VerifyArgs),
    /// Apply recovery to a spool and print every action taken: truncate torn tails, move
    /// damaged segments to quarantine/ (with a JSON report) keeping their valid records,
    /// rebuild garbled checkpoints, finish interrupted operations.
    ///
    /// Spillway does the same at every start; this runs it on a stopped spool. Refuses a spool
    /// another process has open (its LOCK is held). Exit code: 0 nothing to do, 1 repaired
    /// without losing records, 2 records set aside in quarantine, 3 could not run.
    Repair(verify::RepairArgs),
    /// Print the records of one stream, one JSON object per line: position, append time,
    /// topic, partition, key, value and headers (base64, plus `utf8` when the bytes are valid
    /// UTF-8), spillway id, priority, possibly-persisted mark.
    ///
    /// Starts at the first record not yet delivered (`--from-seq` to choose). Read-only;
    /// damaged regions are skipped as a repair would skip them. Refuses a spool another process
    /// has open (its LOCK is held). Exit code 0, 1 if some records could not be decoded (they
    /// are printed with their raw payload and the error), 3 could not run.
    Export(export::ExportArgs),
    /// Deliver a spool to Kafka: in order per stream, without duplicates, with a progress bar
    /// and a final summary. Safe to interrupt (Ctrl-C stops cleanly) and to rerun.
    ///
    /// Starts Spillway's engine on the directory in drain-only `spool_first` mode: forwarders
    /// send every stream in order and check partition tails for the `spillway.id` of records a
    /// previous process may have delivered already (the instance id comes from
    /// DIR/instance.id, so a spool moved from a dead host is deduplicated against what that
    /// host sent). Acknowledged records leave the spool as they are delivered. Records Kafka
    /// refuses permanently go to DIR/dead-letters.jsonl.
    ///
    /// With --dead-letters, replays DIR/dead-letters.jsonl instead (after the cause of the
    /// refusals was fixed): each entry to its original topic and partition, skipping entries
    /// already in Kafka (tail check by id) and those a previous replay delivered (progress is
    /// kept in DIR/dead-letters.replayed).
    ///
    /// Refuses a spool another process has open (its LOCK is held), and holds the lock while
    /// it runs. Exit code: 0 everything delivered, 1 not everything (refused, timed out: see
    /// the summary; rerun to continue), 3 could not run, 130 interrupted.
    Replay(replay::ReplayArgs),
}

/// Runs a spool command. Errors that keep it from running print on stderr and exit with 3.
pub fn run(args: SpoolArgs) -> ExitCode {
    let (name, result) = match args.command {
        SpoolCommand::Inspect(a) => ("inspect", inspect::run(a)),
        SpoolCommand::Verify(a) => ("verify", verify::run_verify(a)),
        SpoolCommand::Repair(a) => ("repair", verify::run_repair(a)),
        SpoolCommand::Export(a) => ("export", export::run(a)),
        SpoolCommand::Replay(a) => ("replay", replay::run(a)),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("spillway spool {name}: {e:#}");
            ExitCode::from(COULD_NOT_RUN)
        }
    }
}

/// Whether the command line is a `spillway spool ...` one.
pub fn is_spool_invocation() -> bool {
    std::env::args().nth(1).as_deref() == Some("spool")
}

/// Exits on a command-line error of `spillway spool ...`: a usage error is "could not run" (3),
/// not clap's 2, which Nagios would read as an error found by `verify`. Help exits 0.
pub fn exit_on_parse_error(error: clap::Error) -> ! {
    if error.use_stderr() {
        let _ = error.print();
        std::process::exit(COULD_NOT_RUN.into());
    }
    error.exit()
}
