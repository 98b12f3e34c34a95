//! One direct-mode run of one system on the mock cluster, for profiling (`perf record`,
//! `valgrind --tool=callgrind`); `spillway bench direct` runs the real comparison.
//!
//! ```sh
//! cargo run --release -p spillway-bench --example direct -- [spillway|vanilla|vanilla-threaded|vanilla-id] [RECORDS] [SIZE]
//! ```

use spillway::IdGenerator;
use spillway_bench::vanilla::{
    Placement, Vanilla, produce_spillway, produce_vanilla, producer_options, vanilla_config,
};
use spillway_test_support::MockKafka;
use std::time::Duration;

/// The same allocator as the `spillway` binary, for both systems.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args = std::env::args().skip(1);
    let system = args.next().unwrap_or_else(|| "spillway".into());
    let records: u64 = args
        .next()
        .map_or(1_000_000, |a| a.parse().expect("records"));
    let size: usize = args.next().map_or(100, |a| a.parse().expect("size"));
    let kafka = MockKafka::new(3).expect("mock cluster");
    kafka.create_topic("bench", 3).expect("topic");
    let opts = producer_options(kafka.bootstrap());
    let run = match system.as_str() {
        "spillway" => {
            let producer = spillway::Producer::start(opts).expect("producer");
            let ids = IdGenerator::ephemeral();
            let run = produce_spillway(&producer, &ids, "bench", records, size, 100_000)
                .expect("produce");
            producer.close(Duration::from_secs(10));
            run
        }
        other => {
            let kind = match other {
                "vanilla" => Vanilla::Base,
                "vanilla-id" => Vanilla::BaseWithIdHeader,
                _ => Vanilla::Threaded,
            };
            let config = vanilla_config(&opts).expect("config");
            let placement = Placement::like_spillway(3);
            produce_vanilla(
                &config,
                kind,
                placement,
                "bench",
                records,
                size,
                Duration::from_secs(300),
            )
            .expect("produce")
        }
    };
    println!(
        "{system}: {} delivered, {} failed, {:.0} records/s, {:.2} µs CPU/record",
        run.delivered,
        run.failed,
        run.records_per_s(),
        run.cpu_us_per_record()
    );
}
