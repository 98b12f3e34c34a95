//! Shared state of the router: the engine, the configuration, auth, admission and metrics.

use std::fmt;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::admission::InflightBytes;
use crate::auth::Authenticator;
use crate::config::Config;
use crate::engine::Engine;
use crate::metrics::{GatewayMetrics, registry_has};

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    engine: Arc<dyn Engine>,
    config: Config,
    auth: Authenticator,
    inflight: InflightBytes,
    metrics: GatewayMetrics,
    registry: Registry,
    shutting_down: watch::Sender<bool>,
}

impl AppState {
    /// Builds the state: registers the engine's metrics, then the gateway's, in one registry.
    /// `config` should have passed [`Config::validate`].
    pub fn new(engine: Arc<dyn Engine>, config: Config) -> Self {
        let mut registry = Registry::default();
        engine.register_metrics(&mut registry);
        let engine_counts_sheds = registry_has(&registry, "spillway_sheds");
        let shared = engine_counts_sheds.then(|| engine.shed_family()).flatten();
        if engine_counts_sheds && shared.is_none() {
            tracing::warn!(
                "the engine exports spillway_sheds_total: the gateway's own sheds \
                 (inflight_bytes, concurrency) are logged but not exported"
            );
        }
        let metrics = GatewayMetrics::register_with(&mut registry, !engine_counts_sheds, shared);
        let auth = Authenticator::new(&config.auth);
        let inflight = InflightBytes::new(config.limits.max_inflight_bytes);
        Self(Arc::new(Inner {
            engine,
            config,
            auth,
            inflight,
            metrics,
            registry,
            shutting_down: watch::Sender::new(false),
        }))
    }

    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.0.engine
    }

    pub fn config(&self) -> &Config {
        &self.0.config
    }

    pub fn auth(&self) -> &Authenticator {
        &self.0.auth
    }

    pub fn inflight(&self) -> &InflightBytes {
        &self.0.inflight
    }

    pub fn metrics(&self) -> &GatewayMetrics {
        &self.0.metrics
    }

    pub fn registry(&self) -> &Registry {
        &self.0.registry
    }

    /// Tells long-lived requests (v3 streaming) to stop taking new records.
    pub fn begin_shutdown(&self) {
        self.0.shutting_down.send_replace(true);
    }

    /// Resolves once [`AppState::begin_shutdown`] was called.
    pub fn shutdown_started(&self) -> watch::Receiver<bool> {
        self.0.shutting_down.subscribe()
    }
}

impl fmt::Debug for AppState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppState")
            .field("auth_enabled", &self.0.auth.enabled())
            .field("inflight_bytes", &self.0.inflight.used())
            .finish_non_exhaustive()
    }
}

/// Resolves once the watched flag is true (or its sender is gone).
pub async fn until_true(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}
