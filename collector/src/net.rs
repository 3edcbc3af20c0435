//! Listening sockets and the servers on them, with graceful stop.

use std::net::SocketAddr;
use std::time::Instant;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, Instrument};

use crate::component::BoxError;

pub async fn bind(endpoint: &str) -> Result<TcpListener, BoxError> {
    TcpListener::bind(endpoint)
        .await
        .map_err(|e| format!("cannot listen on {endpoint}: {e}").into())
}

/// A running server: stop it and wait for in-flight requests, until a deadline.
pub struct ServerHandle {
    pub addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl ServerHandle {
    pub async fn stop(self, deadline: Instant) {
        self.stop.cancel();
        let abort = self.task.abort_handle();
        if tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), self.task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}

/// Serves an axum router over HTTP/1.1 and h2c with TCP_NODELAY (a lone request in flight
/// must not wait on Nagle's algorithm).
pub fn serve_http(
    listener: TcpListener,
    router: axum::Router,
    span: tracing::Span,
) -> Result<ServerHandle, BoxError> {
    use axum::serve::ListenerExt;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let shutdown = stop.clone().cancelled_owned();
    let task = tokio::spawn(
        async move {
            if let Err(e) = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
            {
                error!(error = %e, "http server failed");
            }
        }
        .instrument(span),
    );
    Ok(ServerHandle { addr, stop, task })
}

/// Serves gRPC routes (tonic) with TCP_NODELAY.
pub fn serve_grpc(
    listener: TcpListener,
    routes: tonic::service::Routes,
    span: tracing::Span,
) -> Result<ServerHandle, BoxError> {
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let shutdown = stop.clone().cancelled_owned();
    let task = tokio::spawn(
        async move {
            let result = tonic::transport::Server::builder()
                .add_routes(routes)
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await;
            if let Err(e) = result {
                error!(error = %e, "grpc server failed");
            }
        }
        .instrument(span),
    );
    Ok(ServerHandle { addr, stop, task })
}
