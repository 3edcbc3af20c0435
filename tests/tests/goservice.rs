//! The Go ground-truth service itself: it serves pprof, its truth file is consistent, its
//! OTLP/JSON export carries exactly the spans of the truth file, and the CPU profiles the Go
//! runtime writes for it put each span's samples in that span's own function, under that
//! span's labels. hotspan's join tests lean on all of this.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use hotspan_proto::otlp::common::v1::any_value::Value;
use hotspan_proto::otlp::common::v1::KeyValue;
use hotspan_proto::{Encoding, TracesBatch};
use hotspan_tests::goservice::{
    go_binary, go_tool_pprof_raw, GoOptions, GoService, LabelStyle, OtlpProtocol, RawProfile, TruthSpan,
};
use hotspan_tests::{hex, wait_for};

/// What a span of one name must look like.
struct Kind {
    name: &'static str,
    /// The function that burns its CPU.
    hot: &'static str,
    /// Name of its parent; `None` for the root.
    parent: Option<&'static str>,
    /// Its `domain` and `stage` attributes and labels.
    domain_stage: Option<(&'static str, &'static str)>,
}

const KINDS: [Kind; 5] = [
    Kind {
        name: "checkout",
        hot: "main.checkout",
        parent: None,
        domain_stage: None,
    },
    Kind {
        name: "validate cart",
        hot: "main.validateCart",
        parent: Some("checkout"),
        domain_stage: Some(("cart", "validation")),
    },
    Kind {
        name: "price items",
        hot: "main.computePrices",
        parent: Some("checkout"),
        domain_stage: Some(("catalog", "pricing")),
    },
    Kind {
        name: "apply discounts",
        hot: "main.applyDiscounts",
        parent: Some("price items"),
        domain_stage: Some(("catalog", "discounts")),
    },
    Kind {
        name: "charge card",
        hot: "main.chargeCard",
        parent: Some("checkout"),
        domain_stage: Some(("payment", "charge")),
    },
];

fn kind(name: &str) -> Result<&'static Kind> {
    KINDS
        .iter()
        .find(|k| k.name == name)
        .with_context(|| format!("unexpected span name {name:?}"))
}

fn hot_functions() -> BTreeSet<&'static str> {
    KINDS.iter().map(|k| k.hot).collect()
}

fn by_id(truth: &[TruthSpan]) -> BTreeMap<&str, &TruthSpan> {
    truth.iter().map(|s| (s.span_id.as_str(), s)).collect()
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Every trace is a complete request: five spans of the five kinds, parents in the same trace
/// with the right names, children inside their parent's time, hot functions as designed.
fn check_truth(truth: &[TruthSpan], style: LabelStyle) -> Result<()> {
    ensure!(!truth.is_empty(), "the truth file is empty");
    let spans = by_id(truth);
    ensure!(
        spans.len() == truth.len(),
        "a span id appears twice in the truth file"
    );
    let mut traces: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for s in truth {
        ensure!(
            is_hex(&s.trace_id, 32) && is_hex(&s.span_id, 16),
            "bad ids in {s:?}"
        );
        ensure!(
            s.start_unix_nano <= s.end_unix_nano,
            "span ends before it starts: {s:?}"
        );
        let Kind {
            hot,
            parent: parent_name,
            domain_stage,
            ..
        } = *kind(&s.name)?;
        ensure!(
            s.hot_function == hot,
            "{} has hot function {}",
            s.name,
            s.hot_function
        );
        traces.entry(&s.trace_id).or_default().push(&s.name);
        match parent_name {
            None => ensure!(s.parent_span_id.is_empty(), "root span with a parent: {s:?}"),
            Some(want) => {
                let parent = spans
                    .get(s.parent_span_id.as_str())
                    .with_context(|| format!("parent of {s:?} is not in the truth file"))?;
                ensure!(parent.trace_id == s.trace_id, "parent in another trace: {s:?}");
                ensure!(parent.name == want, "{} has parent {}", s.name, parent.name);
                ensure!(
                    parent.start_unix_nano <= s.start_unix_nano && s.end_unix_nano <= parent.end_unix_nano,
                    "{s:?} is not inside its parent's time {parent:?}"
                );
            }
        }
        // The labels the runtime had while the span ran.
        let labelled = match style {
            LabelStyle::All | LabelStyle::OtelprofAll => s,
            LabelStyle::Root => {
                let mut root = s;
                while !root.parent_span_id.is_empty() {
                    root = spans[root.parent_span_id.as_str()];
                }
                root
            }
        };
        // otel-profiling-go sets trace_id on the local root; children inherit it, same value.
        let mut want = BTreeMap::from([
            ("trace_id".to_string(), labelled.trace_id.clone()),
            ("span_id".to_string(), labelled.span_id.clone()),
            ("span_name".to_string(), labelled.name.clone()),
        ]);
        if let (LabelStyle::All, Some((domain, stage))) = (style, domain_stage) {
            want.insert("domain".into(), domain.into());
            want.insert("stage".into(), stage.into());
        }
        ensure!(
            s.labels == want,
            "{} ran with labels {:?}, not {want:?}",
            s.name,
            s.labels
        );
    }
    for (trace, mut names) in traces {
        names.sort();
        let mut all: Vec<&str> = KINDS.iter().map(|k| k.name).collect();
        all.sort();
        ensure!(names == all, "trace {trace} is not one whole request: {names:?}");
    }
    Ok(())
}

fn get(url: &str) -> Result<Vec<u8>> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()?;
    let response = client.get(url).send()?;
    ensure!(response.status() == 200, "GET {url}: {}", response.status());
    Ok(response.bytes()?.to_vec())
}

#[test]
fn serves_pprof_and_writes_a_consistent_truth_file() -> Result<()> {
    let mut service = GoService::start(GoOptions::default())?;

    let cpu = get(&service.url("/debug/pprof/profile?seconds=1"))?;
    ensure!(cpu.starts_with(&[0x1f, 0x8b]), "the CPU profile is not gzipped");
    let goroutine = get(&service.url("/debug/pprof/goroutine"))?;
    ensure!(
        goroutine.starts_with(&[0x1f, 0x8b]),
        "the goroutine profile is not gzipped"
    );

    let status = service.stop()?;
    ensure!(status.success(), "exit {status}; log:\n{}", service.log());
    let truth = service.truth()?;
    check_truth(&truth, LabelStyle::All)?;

    // Go's own pprof reads what the service served.
    let dir = tempfile::tempdir()?;
    let (cpu_path, goroutine_path) = (dir.path().join("cpu.pb.gz"), dir.path().join("goroutine.pb.gz"));
    std::fs::write(&cpu_path, cpu)?;
    std::fs::write(&goroutine_path, goroutine)?;
    let cpu = go_tool_pprof_raw(&cpu_path)?;
    ensure!(
        cpu.sample_types == ["samples/count", "cpu/nanoseconds"],
        "{:?}",
        cpu.sample_types
    );
    ensure!(cpu.total_of("samples") > 0, "no CPU samples in one second");
    let spans = by_id(&truth);
    for id in cpu.labels.get("span_id").into_iter().flat_map(|v| v.keys()) {
        ensure!(
            spans.contains_key(id.as_str()),
            "profile label span_id {id} is no span"
        );
    }
    let goroutine = go_tool_pprof_raw(&goroutine_path)?;
    ensure!(
        goroutine.sample_types == ["goroutine/count"],
        "{:?}",
        goroutine.sample_types
    );
    ensure!(
        goroutine.cum("main.main", "goroutine") == 1,
        "main.main is not running"
    );
    Ok(())
}

/// A body an OTLP sink received.
struct Received {
    path: String,
    content_type: String,
    body: Vec<u8>,
}

/// A tiny OTLP/HTTP endpoint: answers every request `200 {}` and keeps the bodies. Its accept
/// loop ends on `finish` or after a minute; each connection thread ends on EOF or after 5 s
/// without data.
struct Sink {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    errors: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    fn start() -> Result<Sink> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, e, s) = (received.clone(), errors.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !s.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (r, e) = (r.clone(), e.clone());
                        std::thread::spawn(move || {
                            if let Err(err) = serve(stream, &r) {
                                e.lock().unwrap().push(format!("{err:#}"));
                            }
                        });
                    }
                    Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Err(err) => e.lock().unwrap().push(format!("accept: {err}")),
                }
            }
        });
        Ok(Sink {
            port,
            received,
            errors,
            stop,
            thread: Some(thread),
        })
    }

    fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    fn finish(mut self) -> Result<Vec<Received>> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("sink thread");
        }
        let errors = self.errors.lock().unwrap();
        ensure!(errors.is_empty(), "the sink saw errors: {errors:?}");
        Ok(std::mem::take(&mut *self.received.lock().unwrap()))
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Serves HTTP/1.1 requests with a Content-Length body on one keep-alive connection.
fn serve(stream: TcpStream, received: &Mutex<Vec<Received>>) -> Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        match reader.read_line(&mut request_line) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            // An idle keep-alive connection: the client is done with it.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(())
            }
            Err(e) => return Err(e.into()),
        }
        let mut parts = request_line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("").to_string());
        ensure!(method == "POST", "unexpected request {request_line:?}");
        let mut length = None;
        let mut content_type = String::new();
        loop {
            let mut header = String::new();
            reader.read_line(&mut header)?;
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').context("bad header")?;
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = Some(value.trim().parse::<usize>()?),
                "content-type" => content_type = value.trim().to_string(),
                "transfer-encoding" => bail!("unexpected transfer-encoding {value}"),
                _ => {}
            }
        }
        let length = length.context("a request without content-length")?;
        ensure!(length <= 16 << 20, "a {length} byte body");
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        received.lock().unwrap().push(Received {
            path,
            content_type,
            body,
        });
        writer
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")?;
    }
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()
}

fn string_attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    match attr(attrs, key)? {
        Value::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

/// Runs the service against the sink with the SDK's OTLP/HTTP exporter and checks that what
/// arrived is exactly the truth file: every span once, with the SDK's resource.
fn exports_exactly_the_truth(protocol: OtlpProtocol) -> Result<()> {
    let (content_type, encoding) = match protocol {
        OtlpProtocol::HttpJson => ("application/json", Encoding::Json),
        OtlpProtocol::HttpProtobuf => ("application/x-protobuf", Encoding::Protobuf),
        OtlpProtocol::Grpc => bail!("the sink speaks HTTP only"),
    };
    // The first build can take a minute on a busy machine, longer than the sink waits.
    go_binary();
    let sink = Sink::start()?;
    let mut service = GoService::start(GoOptions {
        // No path: the exporter adds /v1/traces.
        otlp_endpoint: Some(format!("http://127.0.0.1:{}", sink.port)),
        otlp_protocol: protocol,
        service_name: "shop-otlp".into(),
        ..GoOptions::default()
    })?;
    // Batches leave while it runs, not only at exit.
    wait_for(Duration::from_secs(20), "two OTLP exports", || {
        (sink.count() >= 2).then_some(())
    })?;
    let status = service.stop()?;
    ensure!(status.success(), "exit {status}; log:\n{}", service.log());
    let truth = service.truth()?;
    check_truth(&truth, LabelStyle::All)?;
    let received = sink.finish()?;

    let pid = service.pid() as i64;
    let mut exported = BTreeMap::new();
    for r in &received {
        ensure!(r.path == "/v1/traces", "POST to {}", r.path);
        ensure!(r.content_type == content_type, "content-type {}", r.content_type);
        let batch = TracesBatch::decode(&r.body, encoding)
            .with_context(|| format!("decoding {}", String::from_utf8_lossy(&r.body)))?;
        // The batch span processor's default largest batch.
        ensure!(
            batch.span_count() <= 512,
            "a batch of {} spans",
            batch.span_count()
        );
        for rs in batch.resource_spans() {
            let attrs = &rs.resource.as_ref().context("no resource")?.attributes;
            ensure!(string_attr(attrs, "service.name").as_deref() == Some("shop-otlp"));
            // The real SDK says so itself.
            ensure!(string_attr(attrs, "telemetry.sdk.language").as_deref() == Some("go"));
            ensure!(string_attr(attrs, "telemetry.sdk.name").as_deref() == Some("opentelemetry"));
            ensure!(
                string_attr(attrs, "telemetry.sdk.version").as_deref() == Some("1.47.0"),
                "telemetry.sdk.version {:?}",
                string_attr(attrs, "telemetry.sdk.version")
            );
            ensure!(string_attr(attrs, "host.name").is_some_and(|h| !h.is_empty()));
            ensure!(matches!(attr(attrs, "process.pid"), Some(Value::IntValue(p)) if *p == pid));
            let instance = string_attr(attrs, "service.instance.id").context("no service.instance.id")?;
            ensure!(
                instance.ends_with(&format!("-{pid}")),
                "service.instance.id {instance}"
            );
            for ss in &rs.scope_spans {
                let scope = ss.scope.as_ref().context("no scope")?;
                ensure!(scope.name == "hotspan.test/goservice", "scope {}", scope.name);
                for span in &ss.spans {
                    ensure!(
                        exported.insert(hex(&span.span_id), span.clone()).is_none(),
                        "span {} exported twice",
                        hex(&span.span_id)
                    );
                }
            }
        }
    }

    ensure!(
        exported.len() == truth.len(),
        "{} spans exported, {} in the truth file",
        exported.len(),
        truth.len()
    );
    for t in &truth {
        let s = exported
            .get(&t.span_id)
            .with_context(|| format!("{t:?} was not exported"))?;
        let Kind {
            parent, domain_stage, ..
        } = *kind(&t.name)?;
        ensure!(hex(&s.trace_id) == t.trace_id, "trace id of {t:?}");
        ensure!(hex(&s.parent_span_id) == t.parent_span_id, "parent of {t:?}");
        ensure!(s.name == t.name, "name of {t:?}: {}", s.name);
        ensure!(s.start_time_unix_nano == t.start_unix_nano, "start of {t:?}");
        ensure!(s.end_time_unix_nano == t.end_unix_nano, "end of {t:?}");
        let want_kind = if parent.is_none() { 2 } else { 1 };
        ensure!(s.kind == want_kind, "{} has kind {}", t.name, s.kind);
        let (domain, stage) = domain_stage.unzip();
        ensure!(
            string_attr(&s.attributes, "domain").as_deref() == domain,
            "domain of {t:?}"
        );
        ensure!(
            string_attr(&s.attributes, "stage").as_deref() == stage,
            "stage of {t:?}"
        );
    }
    Ok(())
}

#[test]
fn exports_exactly_the_truth_over_otlp_http_protobuf() -> Result<()> {
    exports_exactly_the_truth(OtlpProtocol::HttpProtobuf)
}

#[test]
fn exports_exactly_the_truth_over_otlp_http_json() -> Result<()> {
    exports_exactly_the_truth(OtlpProtocol::HttpJson)
}

/// Runs the service with a 2 s CPU profile and returns it with the truth.
fn profiled_run(style: LabelStyle) -> Result<(RawProfile, Vec<TruthSpan>)> {
    let mut service = GoService::start(GoOptions {
        label_style: style,
        duration: Some(Duration::from_secs(2)),
        cpu_profile_seconds: Some(2),
        ..GoOptions::default()
    })?;
    let status = service.wait_exit(Duration::from_secs(30))?;
    ensure!(status.success(), "exit {status}; log:\n{}", service.log());
    let truth = service.truth()?;
    check_truth(&truth, style)?;
    let profile = go_tool_pprof_raw(&service.cpu_profile_path())?;
    ensure!(
        profile.sample_types == ["samples/count", "cpu/nanoseconds"],
        "{:?}",
        profile.sample_types
    );
    for f in hot_functions() {
        // Busy loops are interrupted by preemption, whose frame is then the leaf: count the
        // samples whose leaf outside the runtime is `f`.
        let own: i64 = profile
            .samples
            .iter()
            .filter(|s| s.leaf_outside_runtime() == f)
            .map(|s| s.values[0])
            .sum();
        ensure!(own > 0, "no samples in {f}");
        ensure!(profile.cum(f, "samples") >= own, "{f}: cum below its own samples");
    }
    // computePrices runs "apply discounts" inside it.
    ensure!(
        profile.cum("main.computePrices", "samples")
            >= profile.flat("main.computePrices", "samples") + profile.flat("main.applyDiscounts", "samples"),
        "applyDiscounts is not under computePrices"
    );
    Ok((profile, truth))
}

#[test]
fn cpu_profile_puts_each_spans_samples_in_its_hot_function() -> Result<()> {
    samples_in_each_spans_hot_function(LabelStyle::All)
}

#[test]
fn otel_profiling_go_all_spans_scope_labels_each_spans_own_samples() -> Result<()> {
    samples_in_each_spans_hot_function(LabelStyle::OtelprofAll)
}

/// Every labelled sample names a span of the truth file, carries exactly that span's labels,
/// and was taken (nearly always) in that span's own function.
fn samples_in_each_spans_hot_function(style: LabelStyle) -> Result<()> {
    let (profile, truth) = profiled_run(style)?;
    let spans = by_id(&truth);
    let hot = hot_functions();
    let (mut labelled, mut in_hot) = (0, 0);
    for sample in &profile.samples {
        let Some(id) = sample.labels.get("span_id") else {
            continue;
        };
        let span = spans
            .get(id.as_str())
            .with_context(|| format!("label span_id {id} is no span in the truth file"))?;
        ensure!(
            sample.labels == span.labels,
            "sample labels {:?} for {span:?}",
            sample.labels
        );
        let n = sample.values[0];
        labelled += n;
        let leaf = sample.leaf_outside_runtime();
        if leaf == span.hot_function {
            in_hot += n;
        } else {
            // Id generation, label setup, clock reads: fine. Another span's function: never.
            ensure!(
                !hot.contains(leaf),
                "{leaf} ran under the labels of {} ({})",
                span.name,
                span.span_id
            );
        }
    }
    ensure!(labelled > 0, "no labelled samples");
    ensure!(
        in_hot * 10 >= labelled * 9,
        "only {in_hot} of {labelled} labelled samples are in their span's hot function"
    );
    // Label totals agree with function totals: each span kind's label holds its function's
    // flat samples.
    for Kind {
        name, hot: function, ..
    } in KINDS
    {
        let by_label = profile.label("span_name", name, "samples");
        let flat = profile.flat(function, "samples");
        ensure!(
            by_label >= flat,
            "span_name={name}: {by_label} samples, {function} alone has {flat}"
        );
    }
    Ok(())
}

#[test]
fn root_labels_name_only_the_local_root_span() -> Result<()> {
    let (profile, truth) = profiled_run(LabelStyle::Root)?;
    let spans = by_id(&truth);
    let mut leaves_under_roots = BTreeSet::new();
    for sample in &profile.samples {
        if sample.labels.is_empty() {
            continue;
        }
        let id = sample.labels.get("span_id").context("labels without span_id")?;
        let span = spans
            .get(id.as_str())
            .with_context(|| format!("label span_id {id} is no span in the truth file"))?;
        ensure!(
            span.name == "checkout",
            "span_id label {id} names a {}",
            span.name
        );
        ensure!(
            sample.labels == span.labels,
            "sample labels {:?} for {span:?}",
            sample.labels
        );
        leaves_under_roots.insert(sample.leaf_outside_runtime().to_string());
    }
    for f in hot_functions() {
        ensure!(
            leaves_under_roots.contains(f),
            "{f} never ran under a root's labels"
        );
    }
    Ok(())
}
