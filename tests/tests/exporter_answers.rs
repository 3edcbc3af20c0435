//! How the OTLP exporters read a backend's answer, as otelcol (grpc-go, Go's HTTP client)
//! does: a gRPC answer without a verdict is a failure, not a success; RESOURCE_EXHAUSTED is
//! retried only when the server says when (RetryInfo), and RetryInfo's delay is honoured; a
//! malformed status detail is an error, not a crash; a server's Retry-After (seconds or an
//! HTTP date) lengthens the backoff but never shortens it.
//!
//! The backend here is scripted (a proxy or server misbehaving on purpose), except in the
//! last test, where the OpenTelemetry Collector refuses an oversized message itself.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{ensure, Context, Result};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use hotspan_tests::peers::start_otelcol;
use hotspan_tests::{json_spans, metric, post, scrape, Answer, Hotspan, Served};
use http::{HeaderMap, HeaderValue};
use http_body_util::{BodyExt, Full};
use tonic_types::{ErrorDetails, StatusExt};

/// What the scripted backend answers one request with.
#[derive(Clone)]
enum Reply {
    /// gRPC OK with an empty export response.
    GrpcOk,
    /// A gRPC answer whose verdict is in these trailers.
    GrpcTrailers(HeaderMap),
    /// HTTP 200 `application/grpc`, no message and no trailers: a stream cut short.
    GrpcNoStatus,
    /// Any HTTP answer.
    Http {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: bytes::Bytes,
    },
}

impl Reply {
    fn grpc_status(status: tonic::Status) -> Result<Reply> {
        let mut headers = HeaderMap::new();
        status
            .add_header(&mut headers)
            .map_err(|s| anyhow::anyhow!("encoding {s:?}"))?;
        Ok(Reply::GrpcTrailers(headers))
    }

    fn into_response(self) -> Response {
        let grpc = |body: Vec<u8>, trailers: Option<HeaderMap>| {
            let body = Full::new(bytes::Bytes::from(body));
            let body = match trailers {
                Some(t) => Body::new(body.with_trailers(async move { Some(Ok::<_, Infallible>(t)) })),
                None => Body::new(body),
            };
            let mut response = Response::new(body);
            response
                .headers_mut()
                .insert("content-type", HeaderValue::from_static("application/grpc"));
            response
        };
        match self {
            Reply::GrpcOk => {
                let mut ok = HeaderMap::new();
                ok.insert("grpc-status", HeaderValue::from_static("0"));
                grpc(vec![0; 5], Some(ok))
            }
            Reply::GrpcTrailers(trailers) => grpc(Vec::new(), Some(trailers)),
            Reply::GrpcNoStatus => grpc(Vec::new(), None),
            Reply::Http {
                status,
                headers,
                body,
            } => {
                let mut response = Response::new(Body::from(body));
                *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or_default();
                for (name, value) in headers {
                    if let Ok(v) = HeaderValue::from_str(&value) {
                        response.headers_mut().insert(name, v);
                    }
                }
                response
            }
        }
    }
}

/// A backend that answers from a script, then with its default, and notes when each request
/// came.
struct Backend {
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Reply>,
    seen: Mutex<Vec<Instant>>,
    /// Each request's path, and whether it carried an Authorization header.
    asked: Mutex<Vec<(String, bool)>>,
    served: OnceLock<Served>,
}

impl Backend {
    fn start() -> Result<Arc<Backend>> {
        let backend = Arc::new(Backend {
            script: Mutex::new(VecDeque::new()),
            default: Mutex::new(Reply::GrpcOk),
            seen: Mutex::new(Vec::new()),
            asked: Mutex::new(Vec::new()),
            served: OnceLock::new(),
        });
        let app = axum::Router::new().fallback(answer).with_state(backend.clone());
        let _ = backend.served.set(Served::start(app)?);
        Ok(backend)
    }

    fn port(&self) -> u16 {
        self.served.get().map_or(0, |s| s.port)
    }

    /// Answers the next requests with `replies`, then with `default`; forgets what it saw.
    fn expect(&self, replies: Vec<Reply>, default: Reply) {
        *self.script.lock().unwrap_or_else(|p| p.into_inner()) = replies.into();
        *self.default.lock().unwrap_or_else(|p| p.into_inner()) = default;
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.asked.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn seen(&self) -> Vec<Instant> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

async fn answer(State(backend): State<Arc<Backend>>, request: Request) -> Response {
    let asked = (
        request.uri().path().to_string(),
        request.headers().contains_key("authorization"),
    );
    backend
        .asked
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(asked);
    // The whole request first, as a server would, before answering.
    let _ = request.into_body().collect().await;
    backend
        .seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Instant::now());
    let next = backend
        .script
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .pop_front();
    let reply = next.unwrap_or_else(|| backend.default.lock().unwrap_or_else(|p| p.into_inner()).clone());
    reply.into_response()
}

/// Sends four spans into the receiver on port `port` and returns hotspan's answer: with no
/// sending queue, the export's own outcome (200, 503 retryable, 400 permanent).
fn send(hotspan: &Hotspan, port: &str, first_id: u64) -> Result<Answer> {
    post(
        &format!("http://127.0.0.1:{}/v1/traces", hotspan.port(port)),
        "application/json",
        None,
        json_spans("answers", first_id, 4).into_bytes(),
    )
}

fn gaps(seen: &[Instant]) -> Vec<Duration> {
    seen.windows(2).map(|w| w[1] - w[0]).collect()
}

#[test]
fn exporters_read_the_backends_answer_as_otelcol_does() -> Result<()> {
    let backend = Backend::start()?;
    let b = backend.port();
    let hotspan = Hotspan::start(&format!(
        r#"
receivers:
  otlp/once: {{protocols: {{http: {{endpoint: "127.0.0.1:{{port:once}}"}}}}}}
  otlp/retry: {{protocols: {{http: {{endpoint: "127.0.0.1:{{port:retry}}"}}}}}}
  otlp/floor: {{protocols: {{http: {{endpoint: "127.0.0.1:{{port:floor}}"}}}}}}
  otlp/date: {{protocols: {{http: {{endpoint: "127.0.0.1:{{port:date}}"}}}}}}
exporters:
  otlp/once:
    endpoint: "127.0.0.1:{b}"
    tls: {{insecure: true}}
    sending_queue: {{enabled: false}}
    retry_on_failure: {{enabled: false}}
  otlp/retry:
    endpoint: "127.0.0.1:{b}"
    tls: {{insecure: true}}
    sending_queue: {{enabled: false}}
    retry_on_failure: {{initial_interval: 10ms, randomization_factor: 0, max_elapsed_time: 10s}}
  otlphttp/floor:
    endpoint: "http://127.0.0.1:{b}"
    sending_queue: {{enabled: false}}
    retry_on_failure: {{initial_interval: 300ms, randomization_factor: 0, multiplier: 1, max_elapsed_time: 1500ms}}
  otlphttp/date:
    endpoint: "http://127.0.0.1:{b}"
    sending_queue: {{enabled: false}}
    retry_on_failure: {{initial_interval: 10ms, randomization_factor: 0, max_elapsed_time: 10s}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  telemetry: {{metrics: {{address: "127.0.0.1:{{port:metrics}}"}}}}
  pipelines:
    traces/once: {{receivers: [otlp/once], exporters: [otlp/once]}}
    traces/retry: {{receivers: [otlp/retry], exporters: [otlp/retry]}}
    traces/floor: {{receivers: [otlp/floor], exporters: [otlphttp/floor]}}
    traces/date: {{receivers: [otlp/date], exporters: [otlphttp/date]}}
"#
    ))?;
    let log = || hotspan.log();

    // A stream that ends without a verdict (a proxy cut it) is no proof of delivery.
    backend.expect(vec![Reply::GrpcNoStatus], Reply::GrpcOk);
    let a = send(&hotspan, "once", 0)?;
    ensure!(
        a.status == 400,
        "no grpc-status: {} {}\n{}",
        a.status,
        a.body,
        log()
    );
    // Nor is a 200 from something that does not speak gRPC.
    let html = Reply::Http {
        status: 200,
        headers: vec![("content-type", "text/html".into())],
        body: bytes::Bytes::from_static(b"<html><body>a login page</body></html>"),
    };
    backend.expect(vec![html], Reply::GrpcOk);
    let a = send(&hotspan, "once", 10)?;
    ensure!(a.status == 400, "an HTML 200: {} {}", a.status, a.body);
    let metrics = scrape(hotspan.port("metrics"))?;
    let failed = metric(
        &metrics,
        r#"otelcol_exporter_send_failed_spans{exporter="otlp/once"}"#,
    );
    ensure!(failed == Some(8.0), "failed spans {failed:?}\n{metrics}");

    // A status detail that is not base64: an UNAVAILABLE like any other, and the exporter goes
    // on working (tonic's own reader panics on it).
    let mut garbled = HeaderMap::new();
    garbled.insert("grpc-status", HeaderValue::from_static("14"));
    garbled.insert("grpc-message", HeaderValue::from_static("busy"));
    garbled.insert(
        "grpc-status-details-bin",
        HeaderValue::from_static("!!not base64!!"),
    );
    backend.expect(vec![Reply::GrpcTrailers(garbled)], Reply::GrpcOk);
    let a = send(&hotspan, "once", 20)?;
    ensure!(
        a.status == 503,
        "garbled details: {} {}\n{}",
        a.status,
        a.body,
        log()
    );
    let a = send(&hotspan, "once", 30)?;
    ensure!(
        a.status == 200,
        "after garbled details: {} {}\n{}",
        a.status,
        a.body,
        log()
    );

    // RESOURCE_EXHAUSTED without RetryInfo is permanent (grpc-go's answer to a message over
    // its size limit would never pass): one attempt only, though retry is on.
    let exhausted = Reply::grpc_status(tonic::Status::resource_exhausted("message larger than max"))?;
    backend.expect(Vec::new(), exhausted.clone());
    let a = send(&hotspan, "once", 40)?;
    ensure!(a.status == 400, "RESOURCE_EXHAUSTED: {} {}", a.status, a.body);
    backend.expect(Vec::new(), exhausted);
    let a = send(&hotspan, "retry", 50)?;
    let seen = backend.seen();
    ensure!(
        a.status == 400 && seen.len() == 1,
        "RESOURCE_EXHAUSTED with retry on: {} after {} attempts",
        a.status,
        seen.len()
    );

    // With RetryInfo it is retried, no sooner than the server asked.
    let throttled = |code, delay| {
        Reply::grpc_status(tonic::Status::with_error_details(
            code,
            "slow down",
            ErrorDetails::with_retry_info(Some(delay)),
        ))
    };
    for code in [tonic::Code::ResourceExhausted, tonic::Code::Unavailable] {
        let delay = Duration::from_millis(1500);
        backend.expect(vec![throttled(code, delay)?], Reply::GrpcOk);
        let a = send(&hotspan, "retry", 60)?;
        let seen = backend.seen();
        ensure!(
            a.status == 200 && seen.len() == 2,
            "{code:?} with RetryInfo: {} after {} attempts",
            a.status,
            seen.len()
        );
        let gap = gaps(&seen)[0];
        ensure!(
            gap >= delay - Duration::from_millis(100),
            "{code:?}: retried {gap:?} after, the server asked for {delay:?}"
        );
    }

    // `Retry-After: 0` is a floor, not the wait: the backoff (300 ms here) still applies, so
    // 1.5 s of retrying is a handful of attempts, not a tight loop.
    backend.expect(
        Vec::new(),
        Reply::Http {
            status: 503,
            headers: vec![("retry-after", "0".into())],
            body: bytes::Bytes::from_static(b""),
        },
    );
    let a = send(&hotspan, "floor", 70)?;
    let seen = backend.seen();
    ensure!(
        a.status == 503,
        "503s until retrying ends: {} {}",
        a.status,
        a.body
    );
    ensure!(
        (2..=8).contains(&seen.len()),
        "{} attempts in 1.5 s of retrying with a 300 ms backoff: {:?}",
        seen.len(),
        gaps(&seen)
    );

    // An error body is the server's google.rpc.Status: its message is what reaches the log
    // and the client, not the protobuf bytes read as text.
    let status = hotspan_proto::rpc::Status::new(3, "span 7 has no name");
    backend.expect(
        vec![Reply::Http {
            status: 400,
            headers: vec![("content-type", "application/x-protobuf".into())],
            body: status.encode(hotspan_proto::Encoding::Protobuf).into(),
        }],
        Reply::GrpcOk,
    );
    let a = send(&hotspan, "floor", 75)?;
    let message: serde_json::Value = serde_json::from_str(&a.body)?;
    let message = message["message"].as_str().unwrap_or_default();
    ensure!(
        a.status == 400 && message.ends_with("400 Bad Request: span 7 has no name"),
        "a 400 with a Status: {} {message:?}",
        a.status
    );

    // Retry-After as an HTTP date.
    let when = SystemTime::now() + Duration::from_secs(3);
    backend.expect(
        vec![Reply::Http {
            status: 503,
            headers: vec![("retry-after", httpdate::fmt_http_date(when))],
            body: bytes::Bytes::from_static(b""),
        }],
        Reply::Http {
            status: 200,
            headers: Vec::new(),
            body: bytes::Bytes::from_static(b""),
        },
    );
    let a = send(&hotspan, "date", 80)?;
    let seen = backend.seen();
    ensure!(
        a.status == 200 && seen.len() == 2,
        "after a dated Retry-After: {} after {} attempts",
        a.status,
        seen.len()
    );
    // The date has whole seconds, so it is 2 to 3 s after it was written.
    let gap = gaps(&seen)[0];
    ensure!(
        gap >= Duration::from_millis(1500),
        "retried {gap:?} after a Retry-After 3 s ahead"
    );
    Ok(())
}

/// The OpenTelemetry Collector refuses a message over its `max_recv_msg_size_mib` with
/// RESOURCE_EXHAUSTED and no RetryInfo: retrying cannot help, so the export fails at once and
/// the client hears so, instead of the batch being re-sent until `max_elapsed_time`.
#[test]
fn a_message_too_big_for_otelcol_fails_at_once() -> Result<()> {
    let mut otelcol = start_otelcol(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {endpoint: "127.0.0.1:{port:grpc}", max_recv_msg_size_mib: 1}
exporters:
  debug: {}
extensions:
  health_check: {endpoint: "127.0.0.1:{port:health}"}
service:
  extensions: [health_check]
  pipelines:
    traces: {receivers: [otlp], exporters: [debug]}
"#,
    )?;
    let hotspan = Hotspan::start(&format!(
        r#"
receivers:
  otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:{{port:http}}"}}}}}}
exporters:
  otlp:
    endpoint: "127.0.0.1:{}"
    tls: {{insecure: true}}
    sending_queue: {{enabled: false}}
    retry_on_failure: {{initial_interval: 10ms, max_elapsed_time: 60s}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  telemetry: {{metrics: {{address: "127.0.0.1:{{port:metrics}}"}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [otlp]}}
"#,
        otelcol.port("grpc")
    ))?;
    // About 2 MiB of spans once decoded, over otelcol's 1 MiB limit; gzip cannot hide that,
    // as grpc-go checks the size after decompression.
    let spans = 24_000;
    let started = Instant::now();
    let a = post(
        &format!("http://127.0.0.1:{}/v1/traces", hotspan.port("http")),
        "application/json",
        None,
        json_spans("big", 0, spans).into_bytes(),
    )
    .with_context(|| format!("no answer in time\n{}", hotspan.log()))?;
    ensure!(
        a.status == 400,
        "a message otelcol refuses as too big: {} {}\n{}\n--- otelcol ---\n{}",
        a.status,
        a.body,
        hotspan.log(),
        otelcol.log()
    );
    ensure!(
        a.body.contains("larger than max"),
        "the answer names otelcol's reason: {}",
        a.body
    );
    let metrics = scrape(hotspan.port("metrics"))?;
    let failed = metric(&metrics, r#"otelcol_exporter_send_failed_spans{exporter="otlp"}"#);
    ensure!(
        failed == Some(spans as f64),
        "failed spans {failed:?} after {:?}",
        started.elapsed()
    );
    otelcol.terminate()?;
    Ok(())
}

/// `memory_limiter` holds nothing, so as in otelcol it passes the exporter's answer back: with
/// no sending queue, a backend's refusal reaches the client (it ran as an asynchronous stage,
/// which answered "ok" once the batch was queued, and the data was then dropped).
#[test]
fn a_processor_that_holds_nothing_passes_the_exporters_answer_back() -> Result<()> {
    let backend = Backend::start()?;
    let hotspan = Hotspan::start(&format!(
        r#"
receivers:
  otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:{{port:http}}"}}}}}}
processors:
  memory_limiter: {{check_interval: 1s, limit_mib: 4000}}
exporters:
  otlp:
    endpoint: "127.0.0.1:{}"
    tls: {{insecure: true}}
    sending_queue: {{enabled: false}}
    retry_on_failure: {{enabled: false}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  telemetry: {{metrics: {{address: "127.0.0.1:{{port:metrics}}"}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [memory_limiter], exporters: [otlp]}}
"#,
        backend.port()
    ))?;
    let cases = [
        (tonic::Status::invalid_argument("span 3 is malformed"), 400),
        (tonic::Status::unavailable("backend restarting"), 503),
    ];
    for (i, (status, expected)) in cases.into_iter().enumerate() {
        backend.expect(vec![Reply::grpc_status(status)?], Reply::GrpcOk);
        let a = send(&hotspan, "http", 100 * i as u64)?;
        ensure!(
            a.status == expected,
            "the client heard {} {}, the backend said {expected}\n{}",
            a.status,
            a.body,
            hotspan.log()
        );
    }
    backend.expect(Vec::new(), Reply::GrpcOk);
    let a = send(&hotspan, "http", 1000)?;
    ensure!(a.status == 200, "{} {}", a.status, a.body);
    Ok(())
}

/// With `sending_queue.wait_for_result`, as in otelcol, the queue's workers send and the
/// client still hears the exporter's answer. Without it, the client hears 200 once its batch
/// is queued, whatever the backend says after.
#[test]
fn a_queue_that_waits_for_the_result_passes_the_exporters_answer_back() -> Result<()> {
    let backend = Backend::start()?;
    let b = backend.port();
    let hotspan = Hotspan::start(&format!(
        r#"
receivers:
  otlp/waits: {{protocols: {{http: {{endpoint: "127.0.0.1:{{port:waits}}"}}}}}}
  otlp/queues: {{protocols: {{http: {{endpoint: "127.0.0.1:{{port:queues}}"}}}}}}
exporters:
  otlp/waits:
    endpoint: "127.0.0.1:{b}"
    tls: {{insecure: true}}
    sending_queue: {{wait_for_result: true, num_consumers: 2}}
    retry_on_failure: {{enabled: false}}
  otlp/queues:
    endpoint: "127.0.0.1:{b}"
    tls: {{insecure: true}}
    sending_queue: {{num_consumers: 2}}
    retry_on_failure: {{enabled: false}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  telemetry: {{metrics: {{address: "127.0.0.1:{{port:metrics}}"}}}}
  pipelines:
    traces/waits: {{receivers: [otlp/waits], exporters: [otlp/waits]}}
    traces/queues: {{receivers: [otlp/queues], exporters: [otlp/queues]}}
"#
    ))?;
    let cases = [
        (Some(tonic::Status::invalid_argument("span 3 is malformed")), 400),
        (Some(tonic::Status::unavailable("backend restarting")), 503),
        (None, 200),
    ];
    for (i, (status, expected)) in cases.into_iter().enumerate() {
        let script = status.map(Reply::grpc_status).transpose()?;
        backend.expect(script.into_iter().collect(), Reply::GrpcOk);
        let a = send(&hotspan, "waits", 100 * i as u64)?;
        ensure!(
            a.status == expected,
            "the client heard {} {}, the backend said {expected}\n{}",
            a.status,
            a.body,
            hotspan.log()
        );
    }
    backend.expect(
        vec![Reply::grpc_status(tonic::Status::invalid_argument(
            "span 3 is malformed",
        ))?],
        Reply::GrpcOk,
    );
    let a = send(&hotspan, "queues", 1000)?;
    ensure!(
        a.status == 200,
        "without wait_for_result: {} {}",
        a.status,
        a.body
    );
    let failed = hotspan_tests::wait_for(Duration::from_secs(10), "the queued batch to fail", || {
        let text = scrape(hotspan.port("metrics")).ok()?;
        metric(
            &text,
            r#"otelcol_exporter_send_failed_spans{exporter="otlp/queues"}"#,
        )
        .filter(|n| *n > 0.0)
    })?;
    ensure!(failed == 4.0, "{failed} spans failed");
    Ok(())
}

/// As Go's client (otelcol's), the HTTP exporter follows a 307 or 308 with the same body, and
/// takes its credentials only to the same host; it did not follow them, so the batch was
/// dropped. A partial success in a JSON answer is logged, as otelcol logs it.
#[test]
fn the_http_exporter_follows_redirects_and_reads_json_partial_success() -> Result<()> {
    let backend = Backend::start()?;
    let b = backend.port();
    let hotspan = Hotspan::start(&format!(
        r#"
receivers:
  otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:{{port:http}}"}}}}}}
exporters:
  otlphttp:
    endpoint: "http://127.0.0.1:{b}"
    encoding: json
    headers: {{authorization: "Bearer s3cret"}}
    sending_queue: {{enabled: false}}
    retry_on_failure: {{enabled: false}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  pipelines:
    traces: {{receivers: [otlp], exporters: [otlphttp]}}
"#
    ))?;
    let redirect = |status: u16, to: String| Reply::Http {
        status,
        headers: vec![("location", to)],
        body: bytes::Bytes::new(),
    };
    let partial = Reply::Http {
        status: 200,
        headers: vec![("content-type", "application/json".into())],
        body: bytes::Bytes::from_static(
            br#"{"partialSuccess":{"rejectedSpans":"3","errorMessage":"3 spans are too old"}}"#,
        ),
    };
    // A relative 307, then a 308 to another host name (localhost): the same bytes each time.
    backend.expect(
        vec![
            redirect(307, "/v1/moved".into()),
            redirect(308, format!("http://localhost:{b}/v1/elsewhere")),
            partial,
        ],
        Reply::GrpcOk,
    );
    let a = send(&hotspan, "http", 0)?;
    ensure!(
        a.status == 200,
        "through two redirects: {} {}\n{}",
        a.status,
        a.body,
        hotspan.log()
    );
    let asked = backend.asked.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let expected = [
        ("/v1/traces".to_string(), true),
        ("/v1/moved".to_string(), true),
        ("/v1/elsewhere".to_string(), false),
    ];
    ensure!(asked == expected, "requests: {asked:?}");
    let logged = || {
        hotspan.log().lines().any(|l| {
            l.contains("backend rejected part of an export")
                && l.contains("rejected=3")
                && l.contains("too old")
        })
    };
    hotspan_tests::wait_for(Duration::from_secs(5), "the partial success in the log", || {
        logged().then_some(())
    })
    .with_context(|| hotspan.log())?;
    // A 301 would turn the POST into a GET (Go's rule): not followed, the batch fails.
    backend.expect(vec![redirect(301, "/v1/moved".into())], Reply::GrpcOk);
    let a = send(&hotspan, "http", 10)?;
    ensure!(a.status == 400, "a 301: {} {}", a.status, a.body);
    Ok(())
}
