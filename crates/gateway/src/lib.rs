//! # spillway-gateway: HTTP intake
//!
//! The service most users meet: applications POST records (native `/v1` API, Confluent REST Proxy
//! v2 and v3 shapes), the gateway authenticates, routes, admits by priority and capacity, and hands
//! each record to the `spillway` library, answering 200 (delivered), 202 (durably spooled) or
//! 429/503 with `Retry-After`. Nothing is implemented yet; see the issue "The gateway".

mod engine;

pub use engine::{Engine, Readiness, TopicKnown};
