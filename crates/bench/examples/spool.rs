//! Runs the spool benchmark and prints its table.
//!
//! ```sh
//! cargo run --release -p spillway-bench --example spool -- [--duration SECS] [--writers 1,8,64,256]
//!     [--sizes 100,1024] [--dir PATH] [--no-redis] [--no-many-streams] [--pipeline 16] [--sync-threads N] [--commits-in-flight N] [--json FILE]
//! ```

use spillway_bench::{SpoolBenchOptions, run_spool_bench};
use std::time::Duration;

fn list(v: &str) -> Vec<usize> {
    v.split(',')
        .map(|x| x.trim().parse().expect("a number"))
        .collect()
}

fn main() {
    let mut opts = SpoolBenchOptions::default();
    let mut json = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--duration" => {
                opts.duration = Duration::from_secs_f64(value().parse().expect("seconds"))
            }
            "--writers" => opts.writers = list(&value()),
            "--sizes" => opts.record_sizes = list(&value()),
            "--dir" => opts.dir = Some(value().into()),
            "--pipeline" => opts.redis_pipeline = value().parse().expect("a number"),
            "--commits-in-flight" => opts.commits_in_flight = value().parse().expect("a number"),
            "--sync-threads" => opts.sync_threads = value().parse().expect("a number"),
            "--redis-server" => opts.redis_server = value().into(),
            "--no-redis" => opts.redis = false,
            "--no-many-streams" => opts.many_streams = false,
            "--json" => json = Some(value()),
            other => panic!("unknown argument {other}"),
        }
    }
    match run_spool_bench(opts) {
        Ok(report) => {
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_vec_pretty(&report).expect("json"))
                    .expect("write json");
            }
        }
        Err(e) => {
            eprintln!("spool benchmark failed: {e}");
            std::process::exit(1);
        }
    }
}
