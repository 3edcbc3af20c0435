//! The running service: the pipeline graph built from a config, started downstream first and
//! stopped upstream first so every stage drains into a consumer that is still running.

mod graph;
mod stage;

use std::sync::Arc;
use std::time::Instant;

use hotspan_config::{Config, MetricsLevel};
use tracing::{error, info, Instrument};

use crate::component::{BoxError, Lifecycle};
use crate::net::{bind, serve_http, ServerHandle};
use crate::registry::Registry;
use crate::telemetry::{Status, Telemetry};

/// Where self metrics are served when the config does not say.
pub const DEFAULT_METRICS_ADDRESS: &str = "127.0.0.1:8888";

/// A built component, the name logs use for it, and the tracing span it runs in: made once
/// here, so every component's logs carry its kind and id without each making its own.
struct Node {
    name: String,
    span: tracing::Span,
    component: Arc<dyn Lifecycle>,
}

impl Node {
    fn new(kind: &str, name: String, component: Arc<dyn Lifecycle>) -> Self {
        Node {
            span: tracing::info_span!("component", kind, id = %name),
            name,
            component,
        }
    }
}

pub struct Service {
    pub telemetry: Arc<Telemetry>,
    extensions: Vec<Node>,
    receivers: Vec<Node>,
    /// Processor stages and connectors, upstream before downstream.
    middle: Vec<Node>,
    exporters: Vec<Node>,
    metrics_address: Option<String>,
    metrics_server: Option<ServerHandle>,
}

impl Service {
    /// Builds every component the pipelines use. Nothing listens or runs yet.
    pub fn build(config: &Config, registry: &Registry) -> Result<Service, BoxError> {
        let telemetry = Arc::new(Telemetry::default());
        let graph = graph::build(config, registry, &telemetry)?;
        Ok(Service {
            telemetry,
            extensions: graph.extensions,
            receivers: graph.receivers,
            middle: graph.middle,
            exporters: graph.exporters,
            // otelcol serves its metrics on 127.0.0.1:8888 unless told otherwise or `level: none`.
            metrics_address: match config.service.telemetry.metrics.level {
                MetricsLevel::None => None,
                _ => Some(
                    config
                        .service
                        .telemetry
                        .metrics
                        .address
                        .clone()
                        .unwrap_or_else(|| DEFAULT_METRICS_ADDRESS.into()),
                ),
            },
            metrics_server: None,
        })
    }

    /// Starts extensions, exporters, stages and connectors, then receivers last.
    pub async fn start(&mut self) -> Result<(), BoxError> {
        if let Some(address) = &self.metrics_address {
            let telemetry = self.telemetry.clone();
            let router = axum::Router::new().route(
                "/metrics",
                axum::routing::get(move || {
                    let telemetry = telemetry.clone();
                    async move { telemetry.render() }
                }),
            );
            let server = serve_http(bind(address).await?, router, tracing::info_span!("telemetry"))?;
            info!(address = %server.addr, "self metrics at /metrics");
            self.metrics_server = Some(server);
        }
        let downstream_first = self
            .extensions
            .iter()
            .chain(&self.exporters)
            .chain(self.middle.iter().rev())
            .chain(&self.receivers);
        for node in downstream_first {
            // Tasks the component spawns inside `start` keep its span (`in_current_span`).
            node.component
                .start()
                .instrument(node.span.clone())
                .await
                .map_err(|e| format!("{}: {e}", node.name))?;
        }
        self.telemetry.set_status(Status::Running);
        Ok(())
    }

    /// Stops receivers first, then lets every stage drain downstream, all by `deadline`.
    pub async fn shutdown(mut self, deadline: Instant) {
        self.telemetry.set_status(Status::Stopping);
        let upstream_first = self
            .receivers
            .iter()
            .chain(&self.middle)
            .chain(&self.exporters)
            .chain(&self.extensions);
        for node in upstream_first {
            node.component
                .shutdown(deadline)
                .instrument(node.span.clone())
                .await;
            if Instant::now() > deadline {
                error!(component = %node.name, "shutdown deadline passed");
            }
        }
        if let Some(server) = self.metrics_server.take() {
            server.stop(deadline).await;
        }
    }
}
