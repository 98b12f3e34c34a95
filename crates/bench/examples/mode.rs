//! One run of one delivery mode on the mock cluster, for profiling; `spillway bench modes`
//! runs the real comparison.
//!
//! ```sh
//! cargo run --release -p spillway-bench --example mode -- [spool_first|failover_keyless|failover_keyed|vanilla|vanilla_id|vanilla_awaited|drain|tansu] [RECORDS] [RECORD_BYTES]
//! ```
//!
//! `drain` spools RECORDS while every broker is blackholed, heals them and times the drain
//! (after a vanilla run through the same proxies, as in `spillway bench modes`).
//!
//! `tansu` runs the baselines (vanilla, vanilla_id, vanilla_awaited) and every mode alternately, three rounds, against a Tansu
//! broker (SQLite; `SPILLWAY_TANSU_BIN` or the cached build) instead of the mock cluster, and
//! prints each run's rate and its ratio to the round's vanilla.

use spillway_bench::modes::{ModesBenchOptions, SYSTEMS, TOPIC, drain_run, run_system};
use spillway_test_support::{MockKafka, TansuBroker};

/// The same allocator as the `spillway` binary (it also replaces `malloc` for librdkafka).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let mut args = std::env::args().skip(1);
    let system = args.next().unwrap_or_else(|| "failover_keyless".into());
    let records: u64 = args.next().map_or(300_000, |a| a.parse().expect("records"));
    let defaults = ModesBenchOptions::default();
    let record_bytes = args
        .next()
        .map_or(defaults.record_bytes, |a| a.parse().expect("record bytes"));
    let opts = ModesBenchOptions {
        records,
        record_bytes,
        ..defaults
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let base = std::env::temp_dir();
    if system == "drain" {
        let d = rt.block_on(drain_run(&opts, &base, 0)).expect("drain");
        println!(
            "drain: {:.0} records/s (vanilla {:.0}, ratio {:.2}), {:.2} µs CPU/record, first delivery {:.2} s after the heal",
            d.drain_per_s,
            d.vanilla_per_s,
            d.ratio.unwrap_or(0.0),
            d.cpu_us_per_record,
            d.first_delivery_s
        );
        return;
    }
    if system == "tansu" {
        tansu(&rt, &opts, &base);
        return;
    }
    let kafka = MockKafka::new(3).expect("mock cluster");
    kafka.create_topic("bench-modes", 3).expect("topic");
    let run = run_system(&rt, &opts, &base, kafka.bootstrap(), &system, 0).expect("run");
    println!(
        "{system}: {:.0} records/s end to end, {:.0} accepted/s, {:.2} µs CPU/record",
        run.records_per_s, run.accepted_per_s, run.cpu_us_per_record
    );
}

fn tansu(rt: &tokio::runtime::Runtime, opts: &ModesBenchOptions, base: &std::path::Path) {
    let broker = TansuBroker::start().expect("tansu");
    broker.create_topics(&[(TOPIC, 3)]).expect("topic");
    let bootstrap = broker.bootstrap();
    for round in 0..3 {
        let mut vanilla = None;
        for system in SYSTEMS {
            let run = run_system(rt, opts, base, &bootstrap, system, round).expect("run");
            let v = *vanilla.get_or_insert(run.records_per_s);
            println!(
                "round {round} {system}: {:.0} records/s, {:.2} µs CPU/record, {:.2}× vanilla",
                run.records_per_s,
                run.cpu_us_per_record,
                run.records_per_s / v
            );
        }
    }
}
