//! Test support: start the real `hotspan` binary with a config, wait until it is healthy, talk
//! to it over loopback, read what its file exporter wrote, stop it with a signal.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

// Also compiled into the collector's own tests (config_numbers), which cannot depend on this crate.
mod ports;
use hotspan_proto::otlp::common::v1::KeyValue;
use hotspan_proto::otlp::trace::v1::Span;
use hotspan_proto::{Encoding, LogsBatch, TracesBatch};
pub use ports::free_port;

/// Builds the binary once per test process and returns its path.
pub fn hotspan_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        // With the features the tests' build unifies in (the join's fixtures, Kafka), so this
        // build and `cargo test`'s share their artifacts instead of rebuilding each other's.
        // Without the test's CARGO_MANIFEST_DIR: build scripts that watch it (ring's) would
        // otherwise see it change between this build and `cargo test`'s, and each would rebuild
        // the TLS stack and everything above it.
        let status = Command::new(cargo)
            .env_remove("CARGO_MANIFEST_DIR")
            .args(["build", "-q", "-p", "hotspan", "--bin", "hotspan"])
            .args(["--features", "hotspan-processors/fixtures,hotspan/kafka"])
            .status()
            .expect("cargo build runs");
        assert!(status.success(), "building hotspan failed");
        // Test executables live in target/<profile>/deps; the binary one level up.
        let exe = std::env::current_exe().expect("test executable path");
        let dir = exe.parent().and_then(Path::parent).expect("target dir");
        dir.join("hotspan")
    })
    .clone()
}

/// Nanoseconds since the Unix epoch, as OTLP times are.
pub fn unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Polls `check` until it returns `Some`, or fails after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running hotspan process. Killed on drop if still running.
pub struct Hotspan {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub health_port: u16,
    /// Ports picked for `{port:NAME}` placeholders in the config.
    pub ports: BTreeMap<String, u16>,
}

impl Hotspan {
    /// Writes `config` to a file and runs hotspan on it. In the config, `{dir}` becomes a
    /// fresh temporary directory and each `{port:NAME}` a free port; a `health_check`
    /// extension on `{port:health}` is expected, and start waits for it to answer 200.
    pub fn start(config: &str) -> Result<Hotspan> {
        Self::start_in(config, &[])
    }

    /// As [`Hotspan::start`], in the cgroups whose `cgroup.procs` files are given, joined before
    /// hotspan runs a single instruction: a shell writes its pid into each, then execs hotspan.
    pub fn start_in(config: &str, cgroup_procs: &[PathBuf]) -> Result<Hotspan> {
        let dir = tempfile::tempdir()?;
        let mut ports = BTreeMap::new();
        let mut config = config.replace("{dir}", &dir.path().display().to_string());
        while let Some(start) = config.find("{port:") {
            let end = start + config[start..].find('}').context("unclosed {port:")?;
            let name = config[start + 6..end].to_string();
            let port = *ports.entry(name).or_insert_with(free_port);
            config.replace_range(start..=end, &port.to_string());
        }
        // Self metrics default to 127.0.0.1:8888, which parallel tests would fight over: give
        // each instance its own port unless the config chose one.
        if !config.contains("telemetry") {
            let port = *ports.entry("metrics".into()).or_insert_with(free_port);
            config = config.replacen(
                "\nservice:\n",
                &format!("\nservice:\n  telemetry: {{metrics: {{address: \"127.0.0.1:{port}\"}}}}\n"),
                1,
            );
        }
        let health_port = *ports.get("health").context("config has no {port:health}")?;
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, config)?;
        let log = std::fs::File::create(dir.path().join("hotspan.log"))?;
        let mut command = Command::new(hotspan_bin());
        if !cgroup_procs.is_empty() {
            // `sh -c SCRIPT sh PROCS... -- PROGRAM`: a write that fails ends the shell with the
            // reason in the log.
            command = Command::new("sh");
            command
                .arg("-c")
                .arg(r#"while [ "$1" != "--" ]; do echo $$ > "$1" || { echo "joining cgroup: $1" >&2; exit 97; }; shift; done; shift; exec "$@""#)
                .arg("sh")
                .args(cgroup_procs)
                .arg("--")
                .arg(hotspan_bin());
        }
        let child = command
            .arg("--config")
            .arg(&path)
            .arg("--shutdown-timeout")
            .arg("15s")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting hotspan")?;
        let mut h = Hotspan {
            child,
            dir,
            health_port,
            ports,
        };
        h.wait_healthy()?;
        Ok(h)
    }

    pub fn port(&self, name: &str) -> u16 {
        self.ports[name]
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("hotspan.log")).unwrap_or_default()
    }

    fn wait_healthy(&mut self) -> Result<()> {
        let port = self.health_port;
        let result = wait_for(Duration::from_secs(30), "hotspan to report healthy", || {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(Err(anyhow::anyhow!("hotspan exited early with {status}")));
            }
            let ok = http_status(port, "/").map(|code| code == 200).unwrap_or(false);
            ok.then_some(Ok(()))
        });
        match result.and_then(|r| r) {
            Ok(()) => Ok(()),
            Err(e) => bail!("{e}\n--- hotspan log ---\n{}", self.log()),
        }
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self) -> Result<ExitStatus> {
        signal(self.child.id(), "TERM")?;
        let status = wait_for(Duration::from_secs(30), "hotspan to exit", || {
            self.child.try_wait().ok().flatten()
        })?;
        Ok(status)
    }
}

impl Drop for Hotspan {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends a signal to a process this test started.
pub fn signal(pid: u32, name: &str) -> Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()?;
    if !status.success() {
        bail!("kill -{name} {pid} failed");
    }
    Ok(())
}

/// The status code of a plain `GET` on 127.0.0.1, with no runtime needed (health polling).
pub fn http_status(port: u16, path: &str) -> std::io::Result<u16> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    Ok(buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0))
}

/// A span as found in output, with its resource's attributes.
#[derive(Clone, Debug, PartialEq)]
pub struct FoundSpan {
    pub resource: Vec<KeyValue>,
    pub scope_name: String,
    pub span: Span,
}

/// Every span in a file exporter's output (one OTLP/JSON export request per line), by span id.
pub fn read_spans(path: &Path) -> Result<BTreeMap<Vec<u8>, FoundSpan>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e.into()),
    };
    let mut out = BTreeMap::new();
    // The last line may be half written while hotspan runs; complete lines end in '\n'.
    for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
        let batch = TracesBatch::decode(line.trim_end().as_bytes(), Encoding::Json)
            .context("a file exporter line")?;
        for rs in batch.resource_spans() {
            let resource = rs
                .resource
                .as_ref()
                .map(|r| r.attributes.clone())
                .unwrap_or_default();
            for ss in &rs.scope_spans {
                let scope_name = ss.scope.as_ref().map(|s| s.name.clone()).unwrap_or_default();
                for span in &ss.spans {
                    if out
                        .insert(
                            span.span_id.clone(),
                            FoundSpan {
                                resource: resource.clone(),
                                scope_name: scope_name.clone(),
                                span: span.clone(),
                            },
                        )
                        .is_some()
                    {
                        bail!("span {} appears twice in {}", hex(&span.span_id), path.display());
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Every logs batch a file exporter wrote (one OTLP/JSON export request per complete line).
pub fn read_logs(path: &Path) -> Result<Vec<LogsBatch>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e.into()),
    };
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .map(|l| LogsBatch::decode(l.trim_end().as_bytes(), Encoding::Json).context("a logs line"))
        .collect()
}

/// Waits until the file holds at least `n` spans, then returns them.
pub fn wait_for_spans(path: &Path, n: usize, timeout: Duration) -> Result<BTreeMap<Vec<u8>, FoundSpan>> {
    let mut last = 0;
    wait_for(timeout, &format!("{n} spans in {}", path.display()), || {
        let spans = read_spans(path).ok()?;
        last = spans.len();
        (spans.len() >= n).then_some(spans)
    })
    .with_context(|| format!("only {last} spans arrived"))
}

/// Lower-case hex, how OTLP/JSON and hotspan's output spell ids.
pub fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Writes `bytes` gzipped.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).expect("in-memory write");
    gz.finish().expect("in-memory write")
}

/// An axum app served on 127.0.0.1 from a thread of its own, until dropped: the backends,
/// sinks and pages tests script.
pub struct Served {
    pub port: u16,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Served {
    pub fn start(app: axum::Router) -> Result<Served> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await;
            })
        });
        Ok(Served { port, _stop: stop })
    }
}

pub mod sdk;

/// An HTTP answer: status, headers, body text.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub bytes: Vec<u8>,
    /// `bytes` as text, lossily.
    pub body: String,
}

/// POSTs `body` to `url` with the given content type and, optionally, content encoding.
pub fn post(url: &str, content_type: &str, content_encoding: Option<&str>, body: Vec<u8>) -> Result<Answer> {
    static CLIENT: OnceLock<reqwest::blocking::Client> = OnceLock::new();
    let client = CLIENT.get_or_init(|| {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("http client")
    });
    let mut request = client.post(url).header("content-type", content_type).body(body);
    if let Some(enc) = content_encoding {
        request = request.header("content-encoding", enc);
    }
    let response = request.send()?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes()?.to_vec();
    Ok(Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        bytes,
    })
}

/// An OTLP/JSON export request with `n` spans of one trace; span ids start at `first_id`.
pub fn json_spans(service: &str, first_id: u64, n: u64) -> String {
    let spans: Vec<String> = (first_id..first_id + n)
        .map(|id| {
            format!(
                r#"{{"traceId":"{:032x}","spanId":"{:016x}","name":"op {id}","kind":2,"startTimeUnixNano":"{}","endTimeUnixNano":"{}","attributes":[{{"key":"n","value":{{"intValue":"{id}"}}}}]}}"#,
                first_id as u128 + 1,
                id + 1,
                1_700_000_000_000_000_000u64 + id,
                1_700_000_000_000_000_000u64 + id + 1000
            )
        })
        .collect();
    format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"{service}"}}}}]}},"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
        spans.join(",")
    )
}

/// The span id `json_spans` gives to number `id`.
pub fn json_span_id(id: u64) -> Vec<u8> {
    (id + 1).to_be_bytes().to_vec()
}

/// The value of a metric series in Prometheus text, e.g. `name{a="b"}`.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Established TCP connections to `port` on this host, counting both ends: the server's
/// (local port `port`) and the client's (remote port `port`), as the kernel lists them.
pub fn tcp_connections(port: u16) -> Result<usize> {
    let table = std::fs::read_to_string("/proc/net/tcp")?;
    let port = format!(":{port:04X}");
    Ok(table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (local, remote, state) = (f.get(1), f.get(2), f.get(3));
            state == Some(&"01")
                && (local.is_some_and(|a| a.ends_with(&port)) || remote.is_some_and(|a| a.ends_with(&port)))
        })
        .count())
}

/// A tonic channel (HTTP/2 without TLS) to 127.0.0.1:`port`, connected now, run by `rt`.
pub fn h2c_channel(rt: &tokio::runtime::Runtime, port: u16) -> Result<tonic::transport::Channel> {
    rt.block_on(async move {
        let endpoint = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))?;
        endpoint
            .timeout(Duration::from_secs(20))
            .connect()
            .await
            .context("connecting over h2c")
    })
}

/// One OTLP/gRPC traces export of `message` on a bare HTTP/2 connection, which (unlike
/// tonic's channel) never reconnects; `gzipped`: the message is sent as given with its
/// compressed flag set and `grpc-encoding: gzip`. Returns the server's `grpc-status`.
pub async fn grpc_export_on(
    sender: &mut hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>,
    port: u16,
    message: &[u8],
    gzipped: bool,
) -> Result<String> {
    use http_body_util::BodyExt;
    let mut frame = vec![u8::from(gzipped)];
    frame.extend_from_slice(&u32::try_from(message.len())?.to_be_bytes());
    frame.extend_from_slice(message);
    let mut request = http::Request::post(format!(
        "http://127.0.0.1:{port}{}",
        hotspan::grpc::export_path(hotspan_config::Signal::Traces)
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers");
    if gzipped {
        request = request.header("grpc-encoding", "gzip");
    }
    let request = request.body(http_body_util::Full::new(bytes::Bytes::from(frame)))?;
    let response = sender.send_request(request).await?;
    let (parts, body) = response.into_parts();
    let trailers = body.collect().await?.trailers().cloned();
    // A status alone comes in the headers ("trailers-only"), else in the trailers.
    let status = parts
        .headers
        .get("grpc-status")
        .or_else(|| trailers.as_ref().and_then(|t| t.get("grpc-status")))
        .context("no grpc-status")?;
    Ok(status.to_str()?.to_string())
}

/// Waits until no TCP connection to `port` is established at either end, running `rt` meanwhile:
/// a client on it must run to see the server's GOAWAY and close its side.
pub fn wait_for_closed(rt: &tokio::runtime::Runtime, port: u16, timeout: Duration, what: &str) -> Result<()> {
    wait_for(timeout, what, || {
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(50)).await });
        (tcp_connections(port).ok()? == 0).then_some(())
    })
}

/// Self metrics of a hotspan whose config has `metrics.address: 127.0.0.1:{port:metrics}`.
pub fn scrape(port: u16) -> Result<String> {
    Ok(reqwest::blocking::get(format!("http://127.0.0.1:{port}/metrics"))?.text()?)
}
pub mod attrs;
pub mod browser;
pub mod cgroup;
pub mod goservice;
pub mod kafka;
pub mod load;
pub mod profiles;
pub mod restart;

/// One OTLP `Export` call over plaintext gRPC, with the message bytes as given (so tests can
/// send malformed ones). The outer error is the test's own trouble; the inner one is the
/// server's refusal.
pub fn grpc_export(
    port: u16,
    signal: hotspan_config::Signal,
    body: Vec<u8>,
) -> Result<Result<bytes::Bytes, tonic::Status>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        // Bounded like `post`: a server that never answers fails the test, not hangs it.
        let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))?
            .connect_timeout(Duration::from_secs(20))
            .timeout(Duration::from_secs(20))
            .connect()
            .await?;
        let mut client = tonic::client::Grpc::new(channel);
        client.ready().await?;
        let path = http::uri::PathAndQuery::from_static(hotspan::grpc::export_path(signal));
        let request = tonic::Request::new(bytes::Bytes::from(body));
        Ok(client
            .unary::<bytes::Bytes, bytes::Bytes, _>(request, path, hotspan::grpc::RawCodec)
            .await
            .map(|r| r.into_inner()))
    })
}
pub mod peers;
pub mod wire;
