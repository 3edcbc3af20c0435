//! Listening sockets and the servers on them, with graceful stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn, Instrument};

use crate::component::BoxError;
use crate::sleep_until;

/// An error with its causes, which hyper keeps out of its own message ("client error
/// (Connect)"): what a log needs to say why a request failed.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// Listening sockets kept open across a config reload: a server that stops leaves its socket
/// here, so connections queue in its backlog (not refused) until the next server on the same
/// endpoint takes it over. Ephemeral ports (`:0`) are not kept: each bind is a fresh port.
#[derive(Default)]
struct Pool {
    /// endpoint as configured -> the socket, its address, and the servers using it now.
    sockets: std::collections::HashMap<String, Kept>,
}

struct Kept {
    socket: std::net::TcpListener,
    addr: SocketAddr,
    users: usize,
}

static POOL: std::sync::Mutex<Option<Pool>> = std::sync::Mutex::new(None);

fn with_pool<T>(f: impl FnOnce(&mut Pool) -> T) -> T {
    let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
    f(pool.get_or_insert_with(Pool::default))
}

/// A server on `addr` stopped: its socket stays kept until [`close_unused`].
fn release(addr: SocketAddr) {
    with_pool(|pool| {
        if let Some(k) = pool.sockets.values_mut().find(|k| k.addr == addr) {
            k.users = k.users.saturating_sub(1);
        }
    });
}

/// Closes the kept sockets no server uses any more: endpoints a reloaded config dropped.
pub fn close_unused() {
    with_pool(|pool| pool.sockets.retain(|_, k| k.users > 0));
}

/// A listener on `endpoint`: the socket kept from before a reload when there is one, else a
/// new one (kept for the next reload).
pub async fn bind(endpoint: &str) -> Result<TcpListener, BoxError> {
    let fail = |e: std::io::Error| -> BoxError { format!("cannot listen on {endpoint}: {e}").into() };
    let kept = with_pool(|pool| match pool.sockets.get_mut(endpoint) {
        Some(k) => {
            k.users += 1;
            Some(k.socket.try_clone())
        }
        None => None,
    });
    if let Some(socket) = kept {
        let socket = socket.map_err(fail)?;
        socket.set_nonblocking(true).map_err(fail)?;
        return TcpListener::from_std(socket).map_err(fail);
    }
    let listener = TcpListener::bind(endpoint).await.map_err(fail)?;
    let ephemeral = endpoint.rsplit_once(':').is_some_and(|(_, port)| port == "0");
    if ephemeral {
        return Ok(listener);
    }
    let addr = listener.local_addr().map_err(fail)?;
    let std = listener.into_std().map_err(fail)?;
    let socket = std.try_clone().map_err(fail)?;
    with_pool(|pool| {
        pool.sockets.insert(
            endpoint.to_owned(),
            Kept {
                socket,
                addr,
                users: 1,
            },
        )
    });
    TcpListener::from_std(std).map_err(fail)
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
        release(self.addr);
        let abort = self.task.abort_handle();
        if tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), self.task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}

/// How an HTTP server treats its connections (otelcol's confighttp server timeouts); `None`
/// leaves a setting off.
#[derive(Clone, Debug)]
pub struct HttpConnections {
    /// An HTTP/1 request's header must have arrived this long after the server began waiting
    /// for it, or the connection is closed: a client cannot hold a connection by sending
    /// nothing, or a header a byte at a time.
    pub header_read: Option<Duration>,
    /// A connection with no request in flight for this long is closed (HTTP/2: GOAWAY first).
    pub idle: Option<Duration>,
}

impl Default for HttpConnections {
    /// otelcol's confighttp defaults.
    fn default() -> Self {
        HttpConnections {
            header_read: Some(Duration::from_secs(60)),
            idle: Some(Duration::from_secs(60)),
        }
    }
}

/// Serves an axum router over HTTP/1.1 and h2c with TCP_NODELAY (a lone request in flight
/// must not wait on Nagle's algorithm), with otelcol's default connection timeouts.
pub fn serve_http(
    listener: TcpListener,
    router: axum::Router,
    span: tracing::Span,
) -> Result<ServerHandle, BoxError> {
    serve_http_tls(listener, router, None, &HttpConnections::default(), span)
}

/// [`serve_http`], over TLS (HTTP/1.1 or h2 by ALPN) when given a server config.
pub fn serve_http_tls(
    listener: TcpListener,
    router: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    connections: &HttpConnections,
    span: tracing::Span,
) -> Result<ServerHandle, BoxError> {
    let rules = Rules {
        header_read: connections.header_read,
        idle: connections.idle,
        grpc: None,
    };
    serve(listener, router, tls, rules, span)
}

/// How one connection is served: HTTP's settings, or gRPC's (HTTP/2 only).
#[derive(Clone, Debug)]
struct Rules {
    header_read: Option<Duration>,
    idle: Option<Duration>,
    grpc: Option<GrpcConnections>,
}

/// Serves `router` on every connection `listener` accepts (TCP_NODELAY on; over TLS when
/// given a server config) until stopped.
fn serve(
    listener: TcpListener,
    router: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    rules: Rules,
    span: tracing::Span,
) -> Result<ServerHandle, BoxError> {
    use axum::serve::ListenerExt;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let task = match tls {
        Some(tls) => {
            let incoming = TlsListener {
                connections: accept_tls(listener, tls, stop.clone(), span.clone()),
                addr,
            };
            tokio::spawn(serve_connections(incoming, router, rules, stop.clone()).instrument(span))
        }
        None => {
            let incoming = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            tokio::spawn(serve_connections(incoming, router, rules, stop.clone()).instrument(span))
        }
    };
    Ok(ServerHandle { addr, stop, task })
}

/// Accepts connections until `stop`, each served in its own task; then waits for them to
/// finish their requests (they are told to close on `stop`).
async fn serve_connections<L: axum::serve::Listener>(
    mut listener: L,
    router: axum::Router,
    rules: Rules,
    stop: CancellationToken,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let io = tokio::select! {
            _ = stop.cancelled() => break,
            (io, _) = listener.accept() => io,
            // Reaps finished connections, so the set holds only live ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let connection = serve_connection(io, router.clone(), rules.clone(), stop.clone());
        connections.spawn(connection.in_current_span());
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Serves one connection (HTTP/1.1, or HTTP/2 by its preface; gRPC: HTTP/2 only) until the
/// client closes it, it is idle past `rules.idle`, past gRPC's `max_age`, or `stop`; those
/// close it gracefully (HTTP/2: GOAWAY, then the calls in flight finish), gRPC's age within
/// `max_age_grace` if set.
async fn serve_connection<I>(io: I, router: axum::Router, rules: Rules, stop: CancellationToken)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use http_body_util::BodyExt;
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use tower::ServiceExt;
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(rules.header_read);
    let (mut max_age, mut grace) = (None, None);
    if let Some(grpc) = &rules.grpc {
        builder = builder.http2_only();
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(grpc.max_concurrent_streams)
            .keep_alive_interval(grpc.ping_every)
            .keep_alive_timeout(grpc.ping_timeout.unwrap_or(DEFAULT_PING_TIMEOUT));
        max_age = grpc.max_age.map(|age| Instant::now() + age);
        grace = grpc.max_age_grace;
    }
    let (activity, mut watched) = tokio::sync::watch::channel(Activity {
        in_flight: 0,
        since: tokio::time::Instant::now(),
    });
    let activity = Arc::new(activity);
    let track = rules.idle.is_some();
    let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        // Held until the response's body is dropped: a streamed answer is not idleness.
        let in_flight = track.then(|| InFlight::start(activity.clone()));
        let call = router.clone().oneshot(request.map(axum::body::Body::new));
        async move {
            let response = call.await?;
            Ok::<_, std::convert::Infallible>(match in_flight {
                Some(guard) => response.map(|body| {
                    axum::body::Body::new(body.map_frame(move |frame| {
                        let _held = &guard;
                        frame
                    }))
                }),
                None => response,
            })
        }
    });
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let (mut closing, mut aged) = (false, false);
    // Once told to go for its age, the connection has `grace` to finish its calls.
    let mut cut_off: Option<Instant> = None;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    debug!(error = %error_chain(&*e), "connection ended");
                }
                return;
            }
            _ = stop.cancelled(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = idle_past(&mut watched, rules.idle), if !closing => {
                debug!("closing an idle connection");
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = sleep_until(max_age), if !aged => {
                debug!("closing a connection past its max_connection_age");
                (closing, aged) = (true, true);
                connection.as_mut().graceful_shutdown();
                cut_off = grace.map(|g| Instant::now() + g);
            }
            _ = sleep_until(cut_off), if cut_off.is_some() => {
                debug!("closed a connection past its max_connection_age_grace");
                return;
            }
        }
    }
}

/// grpc-go's and tonic's: a ping unanswered this long closes the connection.
const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// A connection's requests in flight, and since when it has had none.
#[derive(Clone, Copy)]
struct Activity {
    in_flight: usize,
    since: tokio::time::Instant,
}

/// One request in flight on a connection, from its start until its response is done.
struct InFlight(Arc<tokio::sync::watch::Sender<Activity>>);

impl InFlight {
    fn start(activity: Arc<tokio::sync::watch::Sender<Activity>>) -> Self {
        activity.send_modify(|a| a.in_flight += 1);
        InFlight(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|a| {
            a.in_flight = a.in_flight.saturating_sub(1);
            a.since = tokio::time::Instant::now();
        });
    }
}

/// Returns once the connection has had no request in flight for `idle`; never when `idle`
/// is `None`.
async fn idle_past(activity: &mut tokio::sync::watch::Receiver<Activity>, idle: Option<Duration>) {
    let Some(idle) = idle else {
        return std::future::pending().await;
    };
    loop {
        let now = *activity.borrow_and_update();
        if now.in_flight == 0 {
            tokio::select! {
                _ = tokio::time::sleep_until(now.since + idle) => return,
                changed = activity.changed() => if changed.is_err() {
                    return std::future::pending().await;
                },
            }
        } else if activity.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// Serves gRPC routes (tonic) over HTTP/2 with TCP_NODELAY, over TLS when given a server
/// config (whose ALPN should offer `h2`), in the same connection loop as HTTP, which gives
/// gRPC `max_connection_idle` too (tonic's own server has no idle limit).
pub fn serve_grpc(
    listener: TcpListener,
    routes: tonic::service::Routes,
    tls: Option<Arc<rustls::ServerConfig>>,
    connections: &GrpcConnections,
    span: tracing::Span,
) -> Result<ServerHandle, BoxError> {
    let rules = Rules {
        header_read: None,
        idle: connections.max_idle,
        grpc: Some(connections.clone()),
    };
    serve(listener, routes.prepare().into_axum_router(), tls, rules, span)
}

/// grpc-go's server keepalive, as hotspan applies it to each gRPC connection; `None` leaves
/// a setting off.
#[derive(Clone, Debug, Default)]
pub struct GrpcConnections {
    pub max_concurrent_streams: Option<u32>,
    pub ping_every: Option<Duration>,
    pub ping_timeout: Option<Duration>,
    /// No call in flight for this long: the connection is closed (GOAWAY first).
    pub max_idle: Option<Duration>,
    pub max_age: Option<Duration>,
    pub max_age_grace: Option<Duration>,
}

/// TLS handshakes one listener runs at once; past that, new connections wait in the kernel's
/// accept backlog, so slow or hostile handshakes cannot take unbounded memory.
const MAX_HANDSHAKES: usize = 256;
/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

type TlsConnection = (TlsStream<TcpStream>, SocketAddr);

/// Accepts TCP connections (TCP_NODELAY on) and runs each TLS handshake in its own task, so a
/// slow or failed handshake holds up no other client; finished connections come out of the
/// returned channel. Stops accepting when `stop` is cancelled.
fn accept_tls(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    stop: CancellationToken,
    span: tracing::Span,
) -> mpsc::Receiver<TlsConnection> {
    let acceptor = TlsAcceptor::from(config);
    // Bounded: when the server does not take connections as fast as handshakes finish, the
    // handshake tasks wait here, hold their permits, and accepting pauses.
    let (tx, rx) = mpsc::channel::<TlsConnection>(64);
    let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(
        async move {
            loop {
                let permit = tokio::select! {
                    _ = stop.cancelled() => return,
                    permit = permits.clone().acquire_owned() => match permit {
                        Ok(p) => p,
                        Err(_) => return,
                    },
                };
                let (tcp, peer) = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            accept_error(e).await;
                            continue;
                        }
                    },
                };
                let _ = tcp.set_nodelay(true);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(
                    async move {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(stream)) => {
                                // Only fails when the server is gone; the connection just closes.
                                let _ = tx.send((stream, peer)).await;
                            }
                            Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                            Err(_) => debug!(%peer, "TLS handshake timed out"),
                        }
                        drop(permit);
                    }
                    .in_current_span(),
                );
            }
        }
        .instrument(span),
    );
    rx
}

/// Connection-level accept errors concern one client; others (out of file descriptors) get
/// a pause so the loop does not spin, as axum's own listener does.
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    warn!(error = %e, "accept failed; pausing 1s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// TLS connections as an axum listener.
struct TlsListener {
    connections: mpsc::Receiver<TlsConnection>,
    addr: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.connections.recv().await {
            Some(connection) => connection,
            // The accept loop only ends on stop, when graceful shutdown stops asking.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.addr)
    }
}
