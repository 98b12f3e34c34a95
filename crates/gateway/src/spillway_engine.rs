//! The production [`Engine`]: the `spillway` library.

use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use spillway::record::SpillwayId;
use spillway::{Accepted, ReceiptStatus, Record, Rejected, Spillway};

use crate::engine::{Engine, Readiness, TopicKnown};

/// The library behind the gateway.
#[derive(Debug, Clone)]
pub struct SpillwayEngine {
    spillway: Spillway,
}

impl SpillwayEngine {
    pub fn new(spillway: Spillway) -> Self {
        Self { spillway }
    }

    pub fn spillway(&self) -> &Spillway {
        &self.spillway
    }
}

impl Engine for SpillwayEngine {
    fn send(&self, record: Record) -> BoxFuture<'static, Result<Accepted, Rejected>> {
        self.spillway.send(record)
    }

    fn wait_final(&self, id: &SpillwayId, timeout: Duration) -> BoxFuture<'static, ReceiptStatus> {
        let (spillway, id) = (self.spillway.clone(), id.clone());
        async move { spillway.wait_final(&id, timeout).await }.boxed()
    }

    fn receipt(&self, id: &str) -> ReceiptStatus {
        match SpillwayId::parse(id.as_bytes()) {
            Some(id) => self.spillway.receipt(&id),
            None => ReceiptStatus::Unknown,
        }
    }

    fn topic_known(&self, topic: &str) -> TopicKnown {
        if self.spillway.topic_known(topic) {
            TopicKnown::Known
        } else {
            TopicKnown::Unknown
        }
    }

    fn readiness(&self) -> Readiness {
        let (ready, reason) = self.spillway.readiness();
        Readiness { ready, reason }
    }

    fn status(&self) -> serde_json::Value {
        serde_json::to_value(self.spillway.status()).unwrap_or(serde_json::Value::Null)
    }

    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.spillway.register_metrics(registry);
    }

    fn shed_family(&self) -> Option<crate::metrics::ShedFamily> {
        Some(self.spillway.shed_family())
    }

    fn shutdown(&self, deadline: Duration) -> BoxFuture<'static, ()> {
        let spillway = self.spillway.clone();
        async move { spillway.shutdown(deadline).await }.boxed()
    }
}
