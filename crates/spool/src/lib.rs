//! # spillway-spool: the durable segmented log
//!
//! The spool is where a record lives when Kafka cannot take it. It knows nothing of Kafka or HTTP:
//! it stores opaque records in named streams, makes them durable with group-commit fsync, hands
//! them back in order, and forgets them once the reader acknowledges them.
//!
//! The design (segment format, group commit, checkpoints, recovery, capacity) is written here as
//! the crate is built; see issue "The durable spool" and `DESIGN.md` § Spool.
