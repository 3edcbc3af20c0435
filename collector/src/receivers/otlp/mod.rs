//! The `otlp` receiver: OTLP over gRPC and HTTP.

mod config;
mod cors;
mod grpc;
mod http;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use hotspan_config::Signal;
use tracing::info;

pub(crate) use config::check_endpoint;
pub use config::{GrpcConfig, HttpConfig, OtlpReceiverConfig};

use crate::component::{BoxError, BuildContext, ComponentType, Lifecycle, ReceiverType};
use crate::consumer::SignalConsumers;
use crate::extensions::bearertokenauth::{Protocol, ServerAuth};
use crate::net::{bind, serve_grpc, serve_http_tls, ServerHandle};
use crate::receivers::ingest::Ingest;
use crate::telemetry::Telemetry;
use crate::tls::{load_server, ALPN_GRPC, ALPN_HTTP};

/// Compressed bodies up to this size are inflated where they are read: a hop to the blocking
/// pool costs more than inflating them. Bigger ones are inflated there, so one client's big
/// body does not hold an async worker every other request needs.
const INFLATE_INLINE_BYTES: usize = 64 * 1024;

impl ComponentType for OtlpReceiver {
    const TYPE_NAME: &'static str = "otlp";
    type Config = OtlpReceiverConfig;
}

impl ReceiverType for OtlpReceiver {
    const SIGNALS: &'static [Signal] = &Signal::ALL;

    fn build(
        ctx: &BuildContext,
        config: OtlpReceiverConfig,
        next: SignalConsumers,
    ) -> Result<Arc<dyn Lifecycle>, BoxError> {
        let (grpc, http) = (&config.protocols.grpc, &config.protocols.http);
        let grpc_security = match grpc {
            None => Security::default(),
            Some(g) => Security {
                tls: load_server(&g.tls, ALPN_GRPC, "protocols.grpc.tls")?,
                auth: ServerAuth::build(&g.auth, ctx, "protocols.grpc.auth", Protocol::Grpc, "grpc")?,
            },
        };
        let http_security = match http {
            None => Security::default(),
            Some(h) => Security {
                tls: load_server(&h.tls, ALPN_HTTP, "protocols.http.tls")?,
                auth: ServerAuth::build(&h.auth, ctx, "protocols.http.auth", Protocol::Http, "http")?,
            },
        };
        Ok(Arc::new(OtlpReceiver {
            name: ctx.name(),
            config,
            next,
            telemetry: ctx.telemetry.clone(),
            grpc_security,
            http_security,
            servers: Mutex::new(Vec::new()),
        }))
    }
}

/// A listener's TLS and authenticator, loaded when the receiver is built.
#[derive(Default)]
struct Security {
    tls: Option<Arc<rustls::ServerConfig>>,
    auth: Option<ServerAuth>,
}

pub struct OtlpReceiver {
    name: String,
    config: OtlpReceiverConfig,
    next: SignalConsumers,
    telemetry: Arc<Telemetry>,
    grpc_security: Security,
    http_security: Security,
    /// The running listeners, stopped on shutdown.
    servers: Mutex<Vec<ServerHandle>>,
}

#[async_trait]
impl Lifecycle for OtlpReceiver {
    async fn start(&self) -> Result<(), BoxError> {
        let span = tracing::Span::current;
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
            let security = &self.grpc_security;
            let routes = grpc::routes(
                ingest,
                g.max_recv_msg_size_mib * 1024 * 1024,
                security.auth.clone(),
            );
            let connections = g.connections();
            let server = serve_grpc(
                bind(&g.endpoint).await?,
                routes,
                security.tls.clone(),
                &connections,
                span(),
            )?;
            info!(receiver = %self.name, address = %server.addr, tls = security.tls.is_some(), "OTLP/gRPC listening");
            record(server);
        }
        if let Some(h) = &self.config.protocols.http {
            let ingest = Ingest::new(&self.name, "http", self.next.clone(), &self.telemetry);
            // Go's write_timeout: the client's answer must be written by then.
            let ingest = Arc::new(match h.write_timeout.is_zero() {
                true => ingest,
                false => ingest.with_pipeline_wait_at_most(h.write_timeout),
            });
            let security = &self.http_security;
            let router = ServerAuth::guard(security.auth.clone(), http::router(ingest, h));
            let router = http::outer_layers(router, h);
            let server = serve_http_tls(
                bind(&h.endpoint).await?,
                router,
                security.tls.clone(),
                &h.connections(),
                span(),
            )?;
            info!(receiver = %self.name, address = %server.addr, tls = security.tls.is_some(), "OTLP/HTTP listening");
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
