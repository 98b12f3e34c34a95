//! # spillway-bench: benchmarks that measure their own baseline
//!
//! Every benchmark here measures a baseline in the same run (plain sequential write + fdatasync,
//! Redis AOF `appendfsync always`, vanilla rdkafka with Spillway's librdkafka settings, the
//! library without HTTP) and prints ratios against it, because this machine is noisy and
//! absolute numbers alone mislead. Each runs its cases in several rounds and reports the median
//! of the per-round ratios. `spillway bench` runs them ([`suite::run_suite`]); results and
//! commands are recorded in `docs/benchmarks.md`. Speed is never asserted in tests.
//!
//! | module | compares | issue |
//! |---|---|---|
//! | [`spool`] | spool vs the disk's fdatasync limit vs Redis AOF | 3 |
//! | [`direct`] | `spillway::Producer` vs vanilla rdkafka (mock cluster, Tansu) | 4 |
//! | [`kafka3686`] | detection time and records lost, leader blackholed while listed | 4, 7 |
//! | [`modes`] | spool_first, failover, drain vs vanilla, vanilla with the id header, and that awaited per record; RSS during an outage | 5 |
//! | [`http`] | HTTP intake vs the library alone and vs the spool's limit | 6 |
//!
//! [`plot::line_chart`] draws SVG line charts for any report.

pub mod direct;
pub mod http;
pub mod kafka3686;
pub mod modes;
pub mod plot;
pub mod report;
pub mod spool;
pub mod suite;
pub mod vanilla;

pub use spool::{
    CaseResult, SpoolBenchError, SpoolBenchOptions, SpoolBenchReport, run_spool_bench,
};
