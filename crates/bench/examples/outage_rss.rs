//! The RSS case of `spillway bench modes` alone: a failover route spooling at a steady rate
//! while every broker is blackholed, RSS sampled each second.
//!
//! ```sh
//! cargo run --release -p spillway-bench --example outage_rss -- [SECONDS] [RATE]
//! ```

use std::time::Duration;

use spillway_bench::modes::{ModesBenchOptions, outage_rss};

/// The same allocator as the `spillway` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().map_or(120, |a| a.parse().expect("seconds"));
    let rate: u32 = args.next().map_or(2000, |a| a.parse().expect("rate"));
    let opts = ModesBenchOptions {
        outage: Duration::from_secs(secs),
        outage_rate: rate,
        ..ModesBenchOptions::default()
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let rss = rt
        .block_on(outage_rss(&opts, &std::env::temp_dir()))
        .expect("outage");
    for (t, mb) in rss.samples.iter().step_by(10) {
        println!("{t:6.0} s {mb:8.1} MB");
    }
    println!(
        "start {:.1} MB, half {:.1} MB, end {:.1} MB; accepted {}",
        rss.rss_start_mb, rss.rss_mid_mb, rss.rss_end_mb, rss.accepted
    );
}
