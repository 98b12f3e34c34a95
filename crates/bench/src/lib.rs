//! # spillway-bench: benchmarks that measure their own baseline
//!
//! Every benchmark here measures a baseline in the same run (plain sequential write + fdatasync,
//! Redis AOF `appendfsync always`, vanilla rdkafka) and prints ratios against it, because this
//! machine is noisy and absolute numbers alone mislead. `spillway bench` runs them; results and
//! commands are recorded in `docs/benchmarks.md`. Speed is never asserted in tests.

pub mod spool;

pub use spool::{
    CaseResult, SpoolBenchError, SpoolBenchOptions, SpoolBenchReport, run_spool_bench,
};
