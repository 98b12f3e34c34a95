//! The `spillway` binary: `run` (the service), `config check`, `demo`, `doctor`, and the tools
//! of the other subcommands.

mod bench_cmd;
mod chaos;
mod demo;
mod doctor;
mod run;
mod spool_cmd;

use std::process::ExitCode;

/// mimalloc, not the system allocator, for Rust and (the workspace enables its `override`
/// feature) for librdkafka's C code too: both allocate per record on the caller's thread and
/// free on the delivery thread, which glibc's arenas serialize on a lock (the delivery thread
/// blocked on it ~45,000 times per million records). Without transparent huge pages
/// (`no_thp`): zeroing them cost 14 % of the producer's CPU. See docs/benchmarks.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "spillway",
    version,
    about = "Keeps accepting writes when Kafka cannot."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run Spillway: the HTTP gateway and the library, from a configuration file.
    Run(run::RunArgs),
    /// Benchmarks, each against a baseline measured in the same run; prints the ratios.
    ///
    /// Writes report.md, report.json and charts into --out. See docs/benchmarks.md.
    Bench(bench_cmd::BenchArgs),
    /// Configuration tools.
    #[command(subcommand)]
    Config(run::ConfigCommand),
    /// Chaos run: real broker, gateway and load under seeded faults, judged by the oracle.
    ///
    /// Exit 0 when nothing acknowledged was lost, duplicated, corrupted or reordered, 1 on any
    /// violation. See docs/reliability.md.
    Chaos(chaos::ChaosArgs),
    /// Run the demo on an in-process librdkafka mock cluster (no Kafka needed).
    Demo(demo::DemoArgs),
    /// Check Kafka and Spillway's producer settings for ways to lose or refuse records.
    ///
    /// Exit code (Nagios): 0 OK, 1 warning (an unknown counts as one), 2 critical, 3 could not
    /// run. See docs/operations.md.
    Doctor(doctor::DoctorArgs),
    /// Tools for a spool directory: inspect, verify, repair, export, replay.
    ///
    /// Every one refuses a spool another process has open (its LOCK is held). Exit codes: 0
    /// OK, 1 warning, 2 error, 3 could not run (replay: 130 when interrupted). See
    /// docs/operations.md, "Spool tools".
    Spool(spool_cmd::SpoolArgs),
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::try_parse().unwrap_or_else(|e| {
        if spool_cmd::is_spool_invocation() {
            spool_cmd::exit_on_parse_error(e)
        }
        doctor::exit_on_parse_error(e)
    });
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Bench(args) => bench_cmd::run(args),
        Command::Config(command) => run::config(command),
        Command::Chaos(args) => chaos::run(args),
        Command::Demo(args) => demo::run(args).map(|()| ExitCode::SUCCESS),
        Command::Doctor(args) => doctor::run(args),
        Command::Spool(args) => Ok(spool_cmd::run(args)),
    }
}
