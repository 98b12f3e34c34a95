//! `spillway bench`: runs the benchmarks of `spillway-bench` in this process, shows progress,
//! prints the table of targets and ratios at the end, and writes `report.md`, `report.json` and
//! the charts into `--out` (default `bench-out/`). Each benchmark measures its own baseline in
//! the same run; see docs/benchmarks.md for what each compares and the recorded results.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use spillway_bench::report::{Progress, render_targets};
use spillway_bench::suite::{Bench, SuiteOptions, run_suite};

/// Which benchmark to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Which {
    /// Every benchmark below, one after the other.
    All,
    /// Spool vs the disk's fdatasync limit vs Redis AOF `appendfsync always`.
    Spool,
    /// Spillway's producer vs vanilla rdkafka, same settings (mock cluster and Tansu).
    Direct,
    /// A partition leader blackholed while listed: detection time and records lost.
    Kafka3686,
    /// spool_first, failover and drain vs vanilla; RSS during a long outage.
    Modes,
    /// HTTP intake vs the library alone and vs the spool's limit.
    Http,
}

impl Which {
    fn benches(self) -> Vec<Bench> {
        match self {
            Which::All => Bench::ALL.to_vec(),
            Which::Spool => vec![Bench::Spool],
            Which::Direct => vec![Bench::Direct],
            Which::Kafka3686 => vec![Bench::Kafka3686],
            Which::Modes => vec![Bench::Modes],
            Which::Http => vec![Bench::Http],
        }
    }
}

/// Arguments of `spillway bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The benchmark to run.
    #[arg(value_enum, default_value_t = Which::All)]
    pub which: Which,
    /// Short runs (fewer records, shorter cases, a 30 s outage): minutes, not tens of minutes.
    #[arg(long)]
    pub quick: bool,
    /// Also write the JSON report to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Directory for report.md, report.json and the charts.
    #[arg(long, value_name = "DIR", default_value = "bench-out")]
    pub out: PathBuf,
    /// Records per throughput run and in the drain backlog of `modes` (default 1,000,000;
    /// 100,000 with --quick).
    #[arg(long, value_name = "N")]
    pub records: Option<u64>,
    /// Bytes of each record's value in `modes` (default 100).
    #[arg(long, value_name = "BYTES")]
    pub record_bytes: Option<usize>,
    /// Minutes of the outage during which `modes` samples RSS (default 5; 0.5 with --quick;
    /// 0 skips it).
    #[arg(long, value_name = "MIN")]
    pub outage_minutes: Option<f64>,
    /// Rounds of every case (the report gives medians of per-round ratios; default 3).
    #[arg(long, value_name = "N")]
    pub rounds: Option<usize>,
    /// Skip the Tansu rows of `direct` (they need the cached Tansu binary).
    #[arg(long)]
    pub no_tansu: bool,
}

impl BenchArgs {
    fn suite_options(&self, progress: Progress) -> anyhow::Result<SuiteOptions> {
        let outage = match self.outage_minutes {
            Some(m) if !(m.is_finite() && m >= 0.0) => {
                anyhow::bail!("--outage-minutes must be a number of minutes ≥ 0, not {m}")
            }
            Some(m) => Some(Duration::from_secs_f64(m * 60.0)),
            None => None,
        };
        if self.rounds == Some(0) {
            anyhow::bail!("--rounds must be at least 1");
        }
        if self.records == Some(0) {
            anyhow::bail!("--records must be at least 1");
        }
        if self.record_bytes == Some(0) {
            anyhow::bail!("--record-bytes must be at least 1");
        }
        Ok(SuiteOptions {
            benches: self.which.benches(),
            quick: self.quick,
            out: self.out.clone(),
            records: self.records,
            record_bytes: self.record_bytes,
            outage,
            rounds: self.rounds,
            no_tansu: self.no_tansu,
            progress,
        })
    }
}

/// Runs `spillway bench`. Exit code 0 when every selected benchmark ran (a missed target is a
/// result, not a failure), 1 when one could not run.
pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let log = log_to_file(&args.out);
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                .expect("a valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        Some(bar)
    } else {
        None
    };
    let progress = match &bar {
        Some(bar) => {
            let bar = bar.clone();
            Progress::new(move |m| {
                bar.println(format!("  {m}"));
                bar.set_message(m.to_string());
            })
        }
        None => Progress::new(|m| eprintln!("  {m}")),
    };
    let opts = args.suite_options(progress)?;
    let report = run_suite(opts)?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    println!(
        "\nSpillway benchmarks{} — {} CPUs, load {} → {}, {:.0} s\n",
        if report.quick { " (quick)" } else { "" },
        report.machine.cpus,
        report
            .machine
            .load_before
            .map_or("?".into(), |l| format!("{l:.2}")),
        report
            .machine
            .load_after
            .map_or("?".into(), |l| format!("{l:.2}")),
        report.secs
    );
    println!("{}", render_targets(&report.targets));
    for (name, why) in &report.failed {
        println!("{name} failed: {why}");
    }
    println!("written:");
    for f in &report.files {
        println!("  {}", f.display());
    }
    if let Some(path) = &args.json {
        println!("  {}", path.display());
    }
    if let Some(path) = log {
        println!(
            "  {} (the library's warnings and errors; RUST_LOG sets the level)",
            path.display()
        );
    }
    Ok(if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Sends the library's logs (warnings by default, `RUST_LOG` to change) to `out/bench.log`,
/// so they neither garble the progress display nor get lost.
fn log_to_file(out: &std::path::Path) -> Option<PathBuf> {
    std::fs::create_dir_all(out).ok()?;
    let path = out.join("bench.log");
    let file = std::fs::File::create(&path).ok()?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .try_init()
        .ok()?;
    Some(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(args: &[&str]) -> Result<BenchArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied())).map(|c| c.bench)
    }

    #[test]
    fn with_no_arguments_every_benchmark_runs_in_full_into_bench_out() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.which, Which::All);
        assert!(!a.quick);
        assert_eq!(a.out, PathBuf::from("bench-out"));
        let o = a.suite_options(Progress::default()).unwrap();
        assert_eq!(o.benches, Bench::ALL.to_vec());
        assert_eq!(o.records, None);
        assert_eq!(o.record_bytes, None);
        assert_eq!(o.outage, None);
    }

    #[test]
    fn one_benchmark_with_its_options() {
        let a = parse(&[
            "modes",
            "--quick",
            "--records",
            "5000",
            "--outage-minutes",
            "0.5",
            "--json",
            "r.json",
            "--out",
            "/tmp/x",
            "--rounds",
            "5",
            "--record-bytes",
            "1024",
        ])
        .unwrap();
        assert_eq!(a.which, Which::Modes);
        let o = a.suite_options(Progress::default()).unwrap();
        assert_eq!(o.benches, vec![Bench::Modes]);
        assert!(o.quick);
        assert_eq!(o.records, Some(5000));
        assert_eq!(o.outage, Some(Duration::from_secs(30)));
        assert_eq!(o.rounds, Some(5));
        assert_eq!(o.record_bytes, Some(1024));
        assert_eq!(o.out, PathBuf::from("/tmp/x"));
        assert_eq!(a.json, Some(PathBuf::from("r.json")));
        assert_eq!(parse(&["kafka3686"]).unwrap().which, Which::Kafka3686);
    }

    #[test]
    fn nonsense_is_refused() {
        assert!(parse(&["everything"]).is_err());
        assert!(parse(&["--records", "many"]).is_err());
        let zero = parse(&["--rounds", "0"]).unwrap();
        assert!(zero.suite_options(Progress::default()).is_err());
        let empty = parse(&["--record-bytes", "0"]).unwrap();
        assert!(empty.suite_options(Progress::default()).is_err());
        let negative = parse(&["--outage-minutes=-1"]).unwrap();
        assert!(negative.suite_options(Progress::default()).is_err());
    }
}
