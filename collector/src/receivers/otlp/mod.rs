//! The `otlp` receiver: OTLP over gRPC and HTTP.

mod config;
mod grpc;
mod http;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use hotspan_config::{check_component, parse_component, FieldError, Signal};
use tracing::info;

pub(crate) use config::check_endpoint;
pub use config::{GrpcConfig, HttpConfig, OtlpReceiverConfig};

use crate::component::{BoxError, BuildContext, Lifecycle, ReceiverFactory};
use crate::consumer::SignalConsumers;
use crate::net::{bind, serve_grpc, serve_http, ServerHandle};
use crate::receivers::ingest::Ingest;
use crate::telemetry::Telemetry;

pub struct Factory;

impl ReceiverFactory for Factory {
    fn type_name(&self) -> &'static str {
        "otlp"
    }
    fn signals(&self) -> &'static [Signal] {
        &[Signal::Traces, Signal::Profiles]
    }
    fn check(&self, config: &serde_yaml::Value) -> Vec<FieldError> {
        check_component::<OtlpReceiverConfig>(config)
    }
    fn build(
        &self,
        ctx: &BuildContext,
        config: &serde_yaml::Value,
        next: SignalConsumers,
    ) -> Result<Arc<dyn Lifecycle>, BoxError> {
        Ok(Arc::new(OtlpReceiver {
            name: ctx.name(),
            config: parse_component(config)?,
            next,
            telemetry: ctx.telemetry.clone(),
            servers: Mutex::new(Vec::new()),
        }))
    }
}

pub struct OtlpReceiver {
    name: String,
    config: OtlpReceiverConfig,
    next: SignalConsumers,
    telemetry: Arc<Telemetry>,
    /// The running listeners, stopped on shutdown.
    servers: Mutex<Vec<ServerHandle>>,
}

#[async_trait]
impl Lifecycle for OtlpReceiver {
    async fn start(&self) -> Result<(), BoxError> {
        let span = || tracing::info_span!("component", kind = "receiver", id = %self.name);
        // Each server is recorded as soon as it runs, so a later failure still stops it.
        let record = |server: ServerHandle| {
            self.servers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(server)
        };
        if let Some(g) = &self.config.protocols.grpc {
            let ingest = Arc::new(Ingest::new(
                &self.name,
                "grpc",
                self.next.clone(),
                &self.telemetry,
            ));
            let routes = grpc::routes(ingest, g.max_recv_msg_size_mib * 1024 * 1024);
            let server = serve_grpc(bind(&g.endpoint).await?, routes, span())?;
            info!(receiver = %self.name, address = %server.addr, "OTLP/gRPC listening");
            record(server);
        }
        if let Some(h) = &self.config.protocols.http {
            let ingest = Arc::new(Ingest::new(
                &self.name,
                "http",
                self.next.clone(),
                &self.telemetry,
            ));
            let server = serve_http(bind(&h.endpoint).await?, http::router(ingest, h), span())?;
            info!(receiver = %self.name, address = %server.addr, "OTLP/HTTP listening");
            record(server);
        }
        Ok(())
    }

    async fn shutdown(&self, deadline: Instant) {
        let servers = std::mem::take(&mut *self.servers.lock().unwrap_or_else(|p| p.into_inner()));
        for server in servers {
            server.stop(deadline).await;
        }
    }
}
