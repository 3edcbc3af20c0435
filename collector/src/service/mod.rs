//! The running service: the pipeline graph built from a config, started downstream first and
//! stopped upstream first so every stage drains into a consumer that is still running. A
//! reload replaces one service with the next without closing a listening socket and without
//! dropping what the old one holds.

mod graph;
mod inline;
mod stage;

use std::sync::Arc;
use std::time::Instant;

use hotspan_config::{Config, MetricsLevel};
use tracing::{error, info, Instrument};

use crate::component::{BoxError, Lifecycle};
use crate::consumer::{SharedConsumer, Switch};
use crate::net::{self, bind, serve_http, ServerHandle};
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
    /// Taken over from the service this one replaces: already running, not started again.
    kept: bool,
}

impl Node {
    fn new(kind: &str, name: String, component: Arc<dyn Lifecycle>) -> Self {
        Node {
            span: tracing::info_span!("component", kind, id = %name),
            name,
            component,
            kept: false,
        }
    }

    async fn start(&self) -> Result<(), BoxError> {
        // Tasks the component spawns inside `start` keep its span (`in_current_span`).
        self.component
            .start()
            .instrument(self.span.clone())
            .await
            .map_err(|e| format!("{}: {e}", self.name).into())
    }

    async fn stop(&self, deadline: Instant) {
        self.component
            .shutdown(deadline)
            .instrument(self.span.clone())
            .await;
        if Instant::now() > deadline {
            error!(component = %self.name, "shutdown deadline passed");
        }
    }
}

pub struct Service {
    /// Shared with the services that replace this one, so counters carry on across reloads.
    pub telemetry: Arc<Telemetry>,
    extensions: Vec<Node>,
    receivers: Vec<Node>,
    /// Processor stages and connectors, upstream before downstream.
    middle: Vec<Node>,
    exporters: Vec<Node>,
    /// What a reload may take over.
    parts: graph::Reusable,
    /// Switches of receivers taken over, and where each leads once this service runs.
    repoint: Vec<(Arc<Switch>, SharedConsumer)>,
    metrics_address: Option<String>,
    metrics_server: Option<ServerHandle>,
}

impl Service {
    /// Builds every component the pipelines use. Nothing listens or runs yet.
    pub fn build(config: &Config, registry: &Registry) -> Result<Service, BoxError> {
        Self::assemble(config, registry, Arc::new(Telemetry::default()), None)
    }

    /// Builds the service that is to replace this one on a reload: extensions, exporters and
    /// receivers whose config is unchanged are this one's, taken over running.
    pub fn build_next(&self, config: &Config, registry: &Registry) -> Result<Service, BoxError> {
        Self::assemble(config, registry, self.telemetry.clone(), Some(&self.parts))
    }

    fn assemble(
        config: &Config,
        registry: &Registry,
        telemetry: Arc<Telemetry>,
        previous: Option<&graph::Reusable>,
    ) -> Result<Service, BoxError> {
        let graph = graph::build(config, registry, &telemetry, previous)?;
        Ok(Service {
            telemetry,
            extensions: graph.extensions,
            receivers: graph.receivers,
            middle: graph.middle,
            exporters: graph.exporters,
            parts: graph.parts,
            repoint: graph.repoint,
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
        self.start_backends().await?;
        self.start_frontends().await?;
        self.telemetry.set_status(Status::Running);
        Ok(())
    }

    /// Extensions and exporters, but those taken over (already running).
    async fn start_backends(&self) -> Result<(), BoxError> {
        for node in self.extensions.iter().chain(&self.exporters) {
            if !node.kept {
                node.start().await?;
            }
        }
        Ok(())
    }

    /// Self metrics, stages and connectors downstream first, then receivers.
    async fn start_frontends(&mut self) -> Result<(), BoxError> {
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
        for node in self.middle.iter().rev().chain(&self.receivers) {
            if !node.kept {
                node.start().await?;
            }
        }
        // Receivers taken over lead into this service's pipelines from now on.
        for (switch, head) in self.repoint.drain(..) {
            switch.point_to(head);
        }
        Ok(())
    }

    /// Stops receivers first, then lets every stage drain downstream, all by `deadline`.
    pub async fn shutdown(mut self, deadline: Instant) {
        self.telemetry.set_status(Status::Stopping);
        self.stop_frontends(deadline, |_| false).await;
        for node in self.exporters.iter().chain(&self.extensions) {
            node.stop(deadline).await;
        }
    }

    /// Receivers but those `kept` (their sockets stay open in `net`'s pool), then stages and
    /// connectors, which drain what they hold into the exporters; then self metrics.
    async fn stop_frontends(&mut self, deadline: Instant, kept: impl Fn(&Node) -> bool) {
        for node in self.receivers.iter().filter(|n| !kept(n)).chain(&self.middle) {
            node.stop(deadline).await;
        }
        if let Some(server) = self.metrics_server.take() {
            server.stop(deadline).await;
        }
    }

    /// Reload: hands over to `next` (built by [`Service::build_next`]) and starts it. No
    /// listening socket closes (connections wait in its backlog meanwhile); receivers,
    /// exporters and extensions `next` took over keep running (a kept receiver's requests wait
    /// in its switch while the pipelines change); an exporter that changed hands what it still
    /// holds to the one of the same id in `next` rather than dropping it at `deadline`.
    pub async fn replace_with(mut self, next: &mut Service, deadline: Instant) -> Result<(), BoxError> {
        for (switch, _) in &next.repoint {
            switch.pause();
        }
        let kept = |node: &Node| {
            next.exporters
                .iter()
                .chain(&next.extensions)
                .chain(&next.receivers)
                .any(|n| n.kept && Arc::ptr_eq(&n.component, &node.component))
        };
        self.stop_frontends(deadline, kept).await;
        let successor = |name: &str| -> Option<SharedConsumer> {
            let part = next
                .parts
                .exporters
                .iter()
                .find(|(id, _)| id.to_string() == name)?
                .1;
            Some(part.runtime.clone() as SharedConsumer)
        };
        // A queue on disk is stopped first: its successor opens the same directory at start.
        let retiring: Vec<&Node> = self.exporters.iter().filter(|n| !kept(n)).collect();
        let mut in_memory = Vec::new();
        for node in retiring {
            let runtime = self
                .parts
                .exporters
                .values()
                .find(|p| Arc::ptr_eq(&(p.runtime.clone() as Arc<dyn Lifecycle>), &node.component));
            match runtime {
                Some(part) if !part.runtime.is_persistent() => in_memory.push((node, part.runtime.clone())),
                _ => node.stop(deadline).await,
            }
        }
        next.start_backends().await?;
        for (node, runtime) in in_memory {
            match successor(&node.name) {
                Some(next) => {
                    info!(exporter = %node.name, "config changed: handing what it holds to the reloaded exporter");
                    runtime
                        .hand_off(next, deadline)
                        .instrument(node.span.clone())
                        .await;
                }
                None => node.stop(deadline).await,
            }
        }
        for node in self.extensions.iter().filter(|n| !kept(n)) {
            node.stop(deadline).await;
        }
        next.start_frontends().await?;
        net::close_unused();
        next.telemetry.set_status(Status::Running);
        Ok(())
    }
}
