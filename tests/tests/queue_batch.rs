//! `sending_queue.batch`: the exporter merges queued requests into bigger ones as it sends
//! them. The same requests go through hotspan and through the OpenTelemetry Collector with the
//! same `sending_queue`, each to a sink of its own that notes every request it is sent; both
//! must send the same batches.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::Response;
use hotspan_tests::peers::{start_otelcol, Peer};
use hotspan_tests::wire::count_spans;
use hotspan_tests::{json_spans, post, wait_for, Hotspan, Served};
use http::{HeaderMap, HeaderValue};
use http_body_util::{BodyExt, Full};

/// An OTLP/gRPC traces backend that notes each request's span count and arrival.
struct Sink {
    seen: Mutex<Vec<(usize, Instant)>>,
    served: Mutex<Option<Served>>,
}

impl Sink {
    fn start() -> Result<Arc<Sink>> {
        let sink = Arc::new(Sink {
            seen: Mutex::new(Vec::new()),
            served: Mutex::new(None),
        });
        let app = axum::Router::new().fallback(export).with_state(sink.clone());
        *sink.served.lock().unwrap_or_else(|p| p.into_inner()) = Some(Served::start(app)?);
        Ok(sink)
    }

    fn port(&self) -> u16 {
        self.served
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or(0, |s| s.port)
    }

    fn seen(&self) -> Vec<(usize, Instant)> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn spans(&self) -> usize {
        self.seen().iter().map(|(n, _)| n).sum()
    }
}

async fn export(State(sink): State<Arc<Sink>>, body: Bytes) -> Response {
    // One uncompressed gRPC message: a flag byte, a 4-byte length, the request.
    let spans = body.get(5..).map(count_spans);
    let mut trailers = HeaderMap::new();
    let status = match spans {
        Some(Ok(n)) if body[0] == 0 => {
            sink.seen
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((n, Instant::now()));
            "0"
        }
        _ => "3",
    };
    trailers.insert("grpc-status", HeaderValue::from_static(status));
    let message = Full::new(Bytes::from_static(&[0, 0, 0, 0, 0]));
    let mut response =
        Response::new(Body::new(message.with_trailers(async move {
            Some(Ok::<_, std::convert::Infallible>(trailers))
        })));
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    response
}

/// One collector's config: OTLP/HTTP in, the otlp exporter with `queue` out to `sink`.
fn config(receiver: &str, sink: u16, queue: &str, exporter: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      http: {{endpoint: "127.0.0.1:{{port:{receiver}}}"}}
exporters:
  {exporter}:
    endpoint: "127.0.0.1:{sink}"
    tls: {{insecure: true}}
    compression: none
    sending_queue: {queue}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  pipelines:
    traces: {{receivers: [otlp], exporters: [{exporter}]}}
"#
    )
}

struct Pair {
    hotspan: Hotspan,
    otelcol: Peer,
    sinks: [Arc<Sink>; 2],
}

impl Pair {
    fn start(queue: &str) -> Result<Pair> {
        let sinks = [Sink::start()?, Sink::start()?];
        let hotspan = Hotspan::start(&config("http", sinks[0].port(), queue, "otlp"))?;
        let otelcol = start_otelcol(&config("http", sinks[1].port(), queue, "otlp_grpc"))?;
        Ok(Pair {
            hotspan,
            otelcol,
            sinks,
        })
    }

    /// POSTs one request of `n` spans to each collector; both must take it.
    fn send(&self, first_id: u64, n: u64) -> Result<()> {
        let body = json_spans("shop", first_id, n).into_bytes();
        for port in [self.hotspan.port("http"), self.otelcol.port("http")] {
            let answer = post(
                &format!("http://127.0.0.1:{port}/v1/traces"),
                "application/json",
                None,
                body.clone(),
            )?;
            ensure!(answer.status == 200, "{port} answered {answer:?}");
        }
        Ok(())
    }

    /// Waits until each sink has `spans`, then gives each one's batch sizes, in order.
    fn batches(&self, spans: usize) -> Result<[Vec<usize>; 2]> {
        wait_for(Duration::from_secs(15), "both sinks to get every span", || {
            self.sinks.iter().all(|s| s.spans() >= spans).then_some(())
        })?;
        let sizes = |s: &Sink| s.seen().iter().map(|(n, _)| *n).collect::<Vec<_>>();
        Ok([sizes(&self.sinks[0]), sizes(&self.sinks[1])])
    }
}

#[test]
fn queued_requests_go_in_the_batches_otelcol_makes() -> Result<()> {
    // A long flush_timeout, so that only sizes decide until the end.
    let pair = Pair::start("{batch: {flush_timeout: 2s, min_size: 1000, max_size: 1000}}")?;
    let requests = [300, 300, 300, 300, 250, 450, 700, 100, 1500, 2, 398];
    let mut first = 0;
    for n in requests {
        pair.send(first, n)?;
        first += n;
    }
    let sent = first as usize;
    let [hotspan, otelcol] = pair.batches(sent)?;
    let (mut h, mut o) = (hotspan.clone(), otelcol.clone());
    // Up to num_consumers send at once, so arrival order may differ.
    h.sort_unstable();
    o.sort_unstable();
    ensure!(h == o, "hotspan sent {hotspan:?}, otelcol {otelcol:?}");
    // 4600 spans: four full batches, and 600 sent by the flush timeout.
    ensure!(h == [600, 1000, 1000, 1000, 1000], "{hotspan:?}");
    ensure!(pair.sinks.iter().all(|s| s.spans() == sent), "a span went twice");
    Ok(())
}

#[test]
fn a_lone_request_waits_for_the_flush_timeout_as_in_otelcol() -> Result<()> {
    let pair = Pair::start("{batch: {flush_timeout: 1500ms, min_size: 100}}")?;
    let sent = Instant::now();
    pair.send(0, 10)?;
    pair.batches(10)?;
    for (name, sink) in ["hotspan", "otelcol"].iter().zip(&pair.sinks) {
        let (n, at) = *sink.seen().first().context("no request")?;
        let waited = at.duration_since(sent);
        ensure!(n == 10, "{name} sent {n}");
        ensure!(
            waited >= Duration::from_millis(1400) && waited < Duration::from_secs(5),
            "{name} sent it after {waited:?}"
        );
    }
    // Without batch, each request goes as it came.
    let plain = Pair::start("{num_consumers: 1}")?;
    let sent = Instant::now();
    plain.send(0, 10)?;
    plain.send(10, 20)?;
    let [h, o] = plain.batches(30)?;
    ensure!(h == [10, 20] && o == [10, 20], "hotspan {h:?}, otelcol {o:?}");
    let waited = plain.sinks[0].seen()[0].1.duration_since(sent);
    ensure!(waited < Duration::from_secs(1), "unbatched waited {waited:?}");
    Ok(())
}

#[test]
fn a_client_waiting_for_the_result_hears_once_its_batch_is_sent() -> Result<()> {
    let sink = Sink::start()?;
    let queue = "{wait_for_result: true, batch: {flush_timeout: 1s, min_size: 50}}";
    let hotspan = Hotspan::start(&config("http", sink.port(), queue, "otlp"))?;
    let url = format!("http://127.0.0.1:{}/v1/traces", hotspan.port("http"));
    // Two clients of 30 spans: the second fills the batch, and both hear when it is sent.
    let first = {
        let url = url.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            post(
                &url,
                "application/json",
                None,
                json_spans("a", 0, 30).into_bytes(),
            )
            .map(|a| (a.status, started.elapsed()))
        })
    };
    wait_for(Duration::from_secs(5), "the first request to be queued", || {
        hotspan_tests::scrape(hotspan.port("metrics"))
            .ok()
            .and_then(|t| hotspan_tests::metric(&t, r#"otelcol_exporter_queue_size{exporter="otlp"}"#))
            .filter(|&n| n >= 1.0)
    })?;
    ensure!(sink.seen().is_empty(), "sent before the batch was full");
    let started = Instant::now();
    let second = post(
        &url,
        "application/json",
        None,
        json_spans("b", 30, 30).into_bytes(),
    )?;
    let second_took = started.elapsed();
    let (status, first_took) = first.join().map_err(|_| anyhow::anyhow!("client panicked"))??;
    ensure!(second.status == 200 && status == 200, "{second:?} {status}");
    ensure!(
        sink.seen().iter().map(|(n, _)| *n).collect::<Vec<_>>() == [60],
        "{:?}",
        sink.seen()
    );
    // The first waited for the second (not its flush timeout), the second not at all.
    ensure!(
        second_took < Duration::from_millis(900),
        "the second waited {second_took:?}"
    );
    ensure!(
        first_took < Duration::from_secs(5),
        "the first waited {first_took:?}"
    );
    Ok(())
}
