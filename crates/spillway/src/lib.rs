//! # spillway: keep accepting writes when Kafka cannot
//!
//! The library an intake service embeds (and the gateway's engine). A record accepted by
//! Spillway is either acknowledged by Kafka with `acks=all` or fsync'd to the spool
//! (`spillway-spool`), and reaches Kafka once and in order per key when the cluster returns.
//!
//! This crate will hold the Kafka side (producer wrapper over librdkafka's `BaseProducer` with our
//! own `ProducerContext`, error classes, dead letters, partition health for KAFKA-3686), the
//! delivery modes (spool-first, failover with breaker and canary, spool-on-failure, direct), and
//! recovery-time deduplication by the `spillway.id` header. Nothing is implemented yet; see the
//! issues "Kafka side of the library" and "Delivery modes".
