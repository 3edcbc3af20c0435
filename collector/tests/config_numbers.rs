//! No number in a config panics hotspan. Every numeric key of every registered component (found
//! by asking the component's own deserializer, so a key added later is covered without touching
//! this file) is given numbers from 0 to u64::MAX, negative, fractional, NaN and infinite where
//! its type allows, and durations from 0 to Go's largest. Each config goes through the real
//! loader and registry; one that validates is built, started on 127.0.0.1 ephemeral ports and
//! shut down. A config either fails validation with an error at the key it set (in the edge
//! test, where one key is set), or builds, starts and takes its request: no number that
//! validates fails later, no panic in the test's thread or in any task the service spawned, no
//! start or shutdown that hangs. `hotspan validate` and start-up load through the same
//! `hotspan_config::load` with the same registry.
//!
//! `PROPTEST_CASES` sets the random test's case count (default 256, a few seconds).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use hotspan::registry::Registry;
use hotspan::service::Service;
use hotspan_config::{Catalog, ComponentInfo, ComponentValue, Kind, Signal};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError};
use yaml_serde::{Mapping, Value};

/// What a numeric key takes, as its deserializer names it ("expected u16").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Number {
    Integer,
    Float,
    Duration,
}

#[derive(Clone, Debug)]
struct Key {
    /// Relative to the component: `sending_queue.queue_size`, `targets[0].pid`.
    path: String,
    number: Number,
}

/// One component to try: its config with everything but numbers filled in so it can run here
/// (`{dir}` is the case's own directory, `{pid}` this process), and the extensions it needs.
struct Template {
    kind: Kind,
    type_name: &'static str,
    config: &'static str,
    extensions: &'static [(&'static str, &'static str)],
    /// Keys under these switch the component to another shape (a second resolver): left alone.
    skip: &'static [&'static str],
    /// When not empty, only keys under these are tried: a second template of one type tries
    /// what it adds (a persistent queue, a resolver), not again what the first one tried.
    only: &'static [&'static str],
    /// Where the case's one request goes, so the numbers are used on the data path too.
    feed: Feed,
}

/// One gzipped OTLP/JSON span, sent while the service runs: it crosses the component (a
/// receiver reads it, a processor, connector or exporter gets it through `otlp/feed`), and
/// shutdown drives it to the end, through an exporter's queue and retries.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Feed {
    /// POST to `otlp/feed` on `{port}`, which feeds the component's pipeline.
    Pipeline,
    /// POST to the component itself, listening on `{port}`, at this path.
    Direct(&'static str),
    None,
}

const STORAGE: (&str, &str) = (
    "file_storage",
    r#"{directory: "{dir}/storage", create_directory: true}"#,
);

const TEMPLATES: &[Template] = &[
    Template {
        kind: Kind::Receiver,
        type_name: "otlp",
        config: r#"protocols: {grpc: {endpoint: 127.0.0.1:0}, http: {endpoint: "127.0.0.1:{port}"}}"#,
        extensions: &[],
        feed: Feed::Direct("/v1/traces"),
        skip: &[],
        only: &[],
    },
    Template {
        kind: Kind::Receiver,
        type_name: "pprof",
        config: r#"endpoint: "127.0.0.1:{port}""#,
        extensions: &[],
        feed: Feed::Direct("/v1/pprof?service.name=probe"),
        skip: &[],
        only: &[],
    },
    Template {
        kind: Kind::Receiver,
        type_name: "pprof_scrape",
        // Port 1: nothing listens, so every scrape fails at once and backs off. Every kind
        // with a number of its own: CPU, goroutine snapshots, execution traces.
        config: r#"{profiles: [cpu, goroutine, trace], targets: [{endpoint: "http://127.0.0.1:1", service_name: probe}]}"#,
        extensions: &[],
        feed: Feed::None,
        skip: &[],
        only: &[],
    },
    Template {
        kind: Kind::Receiver,
        type_name: "cgroup",
        config: "targets: [{pid: {pid}, service_name: probe}]",
        extensions: &[],
        feed: Feed::None,
        skip: &[],
        only: &[],
    },
    Template {
        kind: Kind::Processor,
        type_name: "batch",
        config: "{}",
        extensions: &[],
        feed: Feed::Pipeline,
        skip: &[],
        only: &[],
    },
    Template {
        kind: Kind::Processor,
        type_name: "tail_sampling",
        // The policies nest (`and`, `composite`, `drop` hold policies): discovery would never
        // end under them. Their numbers are bounded by the policies' own checks and their unit
        // tests; here the processor's own.
        config: r#"{decision_wait: 100ms, policies: [{name: all, type: always_sample}]}"#,
        extensions: &[],
        feed: Feed::Pipeline,
        skip: &["policies"],
        only: &[],
    },
    Template {
        kind: Kind::Processor,
        type_name: "memory_limiter",
        config: "limit_mib: 4096",
        extensions: &[],
        feed: Feed::Pipeline,
        skip: &[],
        only: &[],
    },
    Template {
        kind: Kind::Exporter,
        type_name: "otlp_grpc",
        config: r#"{endpoint: "127.0.0.1:{backend}", tls: {insecure: true}}"#,
        extensions: &[],
        feed: Feed::Pipeline,
        skip: &[],
        only: &[],
    },
    Template {
        kind: Kind::Exporter,
        type_name: "otlp_grpc",
        config: r#"{endpoint: "127.0.0.1:{backend}", tls: {insecure: true}, sending_queue: {storage: file_storage}}"#,
        extensions: &[STORAGE],
        feed: Feed::Pipeline,
        skip: &[],
        only: &["sending_queue"],
    },
    Template {
        kind: Kind::Exporter,
        type_name: "otlp_http",
        config: r#"endpoint: "http://127.0.0.1:{backend_http}""#,
        extensions: &[],
        feed: Feed::Pipeline,
        skip: &[],
        only: &[],
    },
    Template {
        kind: Kind::Exporter,
        type_name: "file",
        config: r#"path: "{dir}/out.jsonl""#,
        extensions: &[],
        feed: Feed::Pipeline,
        skip: &[],
        only: &[],
    },
    Template {
        kind: Kind::Exporter,
        type_name: "debug",
        config: "{}",
        extensions: &[],
        feed: Feed::Pipeline,
        skip: &[],
        only: &[],
    },
    Template {
        kind: Kind::Exporter,
        type_name: "load_balancing",
        config: r#"{resolver: {static: {hostnames: ["127.0.0.1:{backend}"]}}, protocol: {otlp: {tls: {insecure: true}}}}"#,
        extensions: &[],
        feed: Feed::Pipeline,
        skip: &["resolver.dns"],
        only: &[],
    },
    Template {
        kind: Kind::Exporter,
        type_name: "load_balancing",
        // localhost resolves from /etc/hosts: no DNS server is asked. No request: `port` takes
        // any number here, and a span must not go to whatever listens on it.
        config: r#"{resolver: {dns: {hostname: localhost, port: {backend}}}, protocol: {otlp: {tls: {insecure: true}}}}"#,
        extensions: &[],
        feed: Feed::None,
        skip: &["resolver.static"],
        only: &["resolver.dns"],
    },
    Template {
        kind: Kind::Exporter,
        type_name: "hotspan_ui",
        config: "{}",
        extensions: &[("hotspan_ui", "endpoint: 127.0.0.1:0")],
        feed: Feed::Pipeline,
        skip: &[],
        only: &[],
    },
    Template {
        kind: Kind::Connector,
        type_name: "forward",
        config: "{}",
        extensions: &[],
        feed: Feed::Pipeline,
        skip: &[],
        only: &[],
    },
    Template {
        kind: Kind::Connector,
        type_name: "spanprofile",
        config: "{}",
        extensions: &[],
        feed: Feed::Pipeline,
        skip: &[],
        only: &[],
    },
    Template {
        kind: Kind::Extension,
        type_name: "bearertokenauth",
        config: "token: probe",
        extensions: &[],
        feed: Feed::None,
        skip: &[],
        only: &[],
    },
    Template {
        kind: Kind::Extension,
        type_name: "health_check",
        config: "endpoint: 127.0.0.1:0",
        extensions: &[],
        feed: Feed::None,
        skip: &[],
        only: &[],
    },
    Template {
        kind: Kind::Extension,
        type_name: "file_storage",
        config: r#"{directory: "{dir}/storage", create_directory: true}"#,
        extensions: &[],
        feed: Feed::None,
        skip: &[],
        only: &[],
    },
    Template {
        kind: Kind::Extension,
        type_name: "hotspan_ui",
        config: "endpoint: 127.0.0.1:0",
        extensions: &[],
        feed: Feed::None,
        skip: &[],
        only: &[],
    },
];

/// A key name no component has: asking for it makes the deserializer list the real ones.
const PROBE: &str = "zz_probe";

fn parse(text: &str) -> Value {
    yaml_serde::from_str(text).unwrap_or_else(|e| panic!("test YAML {text:?}: {e}"))
}

/// Where a case runs: its own directory (removed when dropped) and free ports.
struct Place {
    dir: PathBuf,
    /// Where the case's request goes.
    port: u16,
}

impl Place {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("hotspan-config-numbers-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("case dir");
        Place {
            dir,
            port: free_port(),
        }
    }

    /// A template's text with this case's directory and port, and this process's pid.
    fn fill(&self, text: &str) -> String {
        text.replace("{dir}", &self.dir.display().to_string())
            .replace("{port}", &self.port.to_string())
            .replace("{backend}", &backend().0.to_string())
            .replace("{backend_http}", &backend().1.to_string())
            .replace("{pid}", &std::process::id().to_string())
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[derive(Debug)]
enum Step {
    Key(String),
    Index(usize),
}

fn steps(path: &str) -> Vec<Step> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (name, mut rest) = part.split_once('[').map_or((part, ""), |(n, r)| (n, r));
        if !name.is_empty() {
            out.push(Step::Key(name.to_string()));
        }
        while let Some((index, after)) = rest.split_once(']') {
            out.push(Step::Index(index.parse().expect("an index")));
            rest = after.strip_prefix('[').unwrap_or(after);
        }
    }
    out
}

/// `root` with `value` at `path`, making mappings (and list items) on the way as needed.
fn with(root: &Value, path: &str, value: Value) -> Value {
    let mut root = root.clone();
    let mut at = &mut root;
    for step in steps(path) {
        at = match step {
            Step::Key(k) => {
                if !at.is_mapping() {
                    *at = Value::Mapping(Mapping::new());
                }
                let Value::Mapping(m) = at else { unreachable!() };
                m.entry(Value::String(k)).or_insert(Value::Null)
            }
            Step::Index(i) => {
                if !at.is_sequence() {
                    *at = Value::Sequence(Vec::new());
                }
                let Value::Sequence(items) = at else {
                    unreachable!()
                };
                while items.len() <= i {
                    items.push(Value::Null);
                }
                &mut items[i]
            }
        };
    }
    *at = value;
    root
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The first problem the registry finds in `config` for this component type.
fn first_problem(t: &Template, config: &Value) -> Option<(String, String)> {
    let text = yaml_serde::to_string(config).expect("YAML out");
    let value = ComponentValue::from_yaml(&text).expect("YAML back in");
    let errs = Registry::default().check(t.kind, t.type_name, &value).err()?;
    errs.into_iter().next().map(|e| (e.path, e.message))
}

/// The field names a struct's "unknown field `x`, expected one of `a`, `b`" lists.
fn listed_fields(message: &str) -> Vec<String> {
    let Some((_, expected)) = message.split_once("expected") else {
        return Vec::new();
    };
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// Every numeric key under the mapping at `path`, by giving each field a value of the wrong
/// shape and reading what the deserializer expected instead.
fn discover(t: &Template, base: &Value, path: &str, keys: &mut Vec<Key>) {
    let probe = join(path, PROBE);
    let Some((at, message)) = first_problem(t, &with(base, &probe, Value::from(0))) else {
        return;
    };
    if at != probe || !message.starts_with("unknown field") {
        return;
    }
    for field in listed_fields(&message) {
        let key = join(path, &field);
        let wanted =
            |k: &str| t.only.is_empty() || t.only.iter().any(|o| k.starts_with(o) || o.starts_with(k));
        if t.skip.iter().any(|s| key.starts_with(s)) || !wanted(&key) {
            continue;
        }
        let mut probe_map = Mapping::new();
        probe_map.insert(Value::from(PROBE), Value::from(0));
        let Some((at, message)) = first_problem(t, &with(base, &key, Value::Mapping(probe_map.clone())))
        else {
            continue;
        };
        if at == join(&key, PROBE) && message.starts_with("unknown field") {
            discover(t, base, &key, keys);
            continue;
        }
        if at != key {
            continue;
        }
        let Some(expected) = message.strip_prefix("invalid type: map, expected ") else {
            continue;
        };
        let number = match expected {
            "usize" | "u64" | "u32" | "u16" | "u8" | "isize" | "i64" | "i32" | "i16" | "i8" => {
                Number::Integer
            }
            "f64" | "f32" => Number::Float,
            e if e.starts_with("a duration") => Number::Duration,
            e if e.contains("sequence") => {
                // A list: its first item, when items are structs.
                let item = format!("{key}[0]");
                let list = Value::Sequence(vec![Value::Mapping(probe_map)]);
                if let Some((at, message)) = first_problem(t, &with(base, &key, list)) {
                    if at == join(&item, PROBE) && message.starts_with("unknown field") {
                        discover(t, base, &item, keys);
                    }
                }
                continue;
            }
            _ => continue,
        };
        keys.push(Key { path: key, number });
    }
}

/// Each template's numeric keys, found once.
fn keys() -> &'static [Vec<Key>] {
    static KEYS: OnceLock<Vec<Vec<Key>>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let place = Place::new();
        TEMPLATES
            .iter()
            .map(|t| {
                let base = parse(&place.fill(t.config));
                let mut keys = Vec::new();
                discover(t, &base, "", &mut keys);
                keys
            })
            .collect()
    })
}

/// Numbers that sit on an edge: type limits, tokio's semaphore limit, powers of two.
const INTEGERS: &[&str] = &[
    "0",
    "1",
    "2",
    "65535",
    "65536",
    "1000000",
    "4294967295",
    "4294967296",
    "9007199254740993",
    "2305843009213693951",
    "2305843009213693952",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "-1",
    "-9223372036854775808",
    "1.5",
];

const FLOATS: &[&str] = &[
    "0", "-0.0", "0.5", "1", "1.5", "2", "100", "101", "1e9", "1e300", "-1", "-1e300", ".nan", ".inf",
    "-.inf", "5e-324",
];

const DURATIONS: &[&str] = &[
    "0",
    "1ns",
    "999us",
    "1ms",
    "9ms",
    "10ms",
    "1s",
    "1h",
    "24h",
    "24h0m0.000000001s",
    "8760h",
    "2562047h",
    "2562047h47m16.854775807s",
    "-1s",
    "5",
];

fn edges(number: Number) -> &'static [&'static str] {
    match number {
        Number::Integer => INTEGERS,
        Number::Float => FLOATS,
        Number::Duration => DURATIONS,
    }
}

/// YAML text for a float, as YAML writes the ones Rust prints differently.
fn float_text(f: f64) -> String {
    if f.is_nan() {
        ".nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { ".inf" } else { "-.inf" }.into()
    } else {
        format!("{f:?}")
    }
}

/// An edge value or a random one of the key's kind, as YAML text.
fn value(number: Number) -> BoxedStrategy<String> {
    let edge = prop::sample::select(edges(number)).prop_map(str::to_string);
    match number {
        Number::Integer => prop_oneof![
            3 => edge,
            1 => (0u64..100_000).prop_map(|n| n.to_string()),
            1 => any::<u64>().prop_map(|n| n.to_string()),
            1 => any::<i64>().prop_map(|n| n.to_string()),
        ]
        .boxed(),
        Number::Float => prop_oneof![
            3 => edge,
            1 => (0.0f64..10.0).prop_map(float_text),
            1 => any::<f64>().prop_map(float_text),
        ]
        .boxed(),
        Number::Duration => prop_oneof![
            3 => edge,
            1 => (0u64..100_000).prop_map(|n| format!("{n}ms")),
            1 => (0u64..=i64::MAX as u64).prop_map(|n| format!("{n}ns")),
        ]
        .boxed(),
    }
}

/// A whole config running the template's component with `values` at its keys, and the
/// request that goes through it.
struct Case {
    text: String,
    /// Port and path of the one request, if the template takes one.
    feed: Option<(u16, &'static str)>,
    _place: Place,
}

fn case_for(t: &Template, values: &[(&str, &str)]) -> Case {
    case_with_address(t, values, "127.0.0.1:0")
}

/// A component's section in the config file.
fn section(kind: Kind) -> &'static str {
    match kind {
        Kind::Receiver => "receivers",
        Kind::Processor => "processors",
        Kind::Exporter => "exporters",
        Kind::Connector => "connectors",
        Kind::Extension => "extensions",
    }
}

/// As [`case_for`], with self metrics served at `address`.
fn case_with_address(t: &Template, values: &[(&str, &str)], address: &str) -> Case {
    let place = Place::new();
    let mut component = parse(&place.fill(t.config));
    for (path, text) in values {
        component = with(&component, path, parse(text));
    }
    let registry = Registry::default();
    let (id, info) = registry
        .all()
        .into_iter()
        .find(|(k, f)| *k == t.kind && f.type_name() == t.type_name)
        .map(|(_, f)| (f.type_name(), f.info()))
        .expect("registered");
    let mut root = parse(&place.fill(
        "receivers: {otlp/feed: {protocols: {http: {endpoint: \"127.0.0.1:{port}\"}}}}\n\
         exporters: {debug/sink: {}}",
    ));
    root = with(&root, "service.telemetry.metrics.address", address.into());
    let section = section(t.kind);
    root = with(&root, &format!("{section}.{id}"), component);
    let mut started: Vec<Value> = Vec::new();
    for (ext, text) in t.extensions {
        root = with(&root, &format!("extensions.{ext}"), parse(&place.fill(text)));
        started.push(Value::from(*ext));
    }
    let list = |ids: &[&str]| Value::Sequence(ids.iter().map(|s| Value::from(*s)).collect());
    let pipeline = |receivers: &[&str], processors: &[&str], exporters: &[&str]| {
        let mut p = Mapping::new();
        p.insert("receivers".into(), list(receivers));
        p.insert("processors".into(), list(processors));
        p.insert("exporters".into(), list(exporters));
        Value::Mapping(p)
    };
    // Traces where the component takes them: the request is a span.
    let signal = |signals: &[Signal]| {
        if signals.contains(&Signal::Traces) {
            Signal::Traces
        } else {
            signals.first().copied().unwrap_or(Signal::Traces)
        }
    };
    let pipelines: Vec<(String, Value)> = match (t.kind, info) {
        // Every signal it gives: pprof_scrape's traces need a logs pipeline to start.
        (Kind::Receiver, ComponentInfo::Signals(s)) => s
            .iter()
            .map(|signal| (signal.to_string(), pipeline(&[id], &[], &["debug/sink"])))
            .collect(),
        (Kind::Processor, ComponentInfo::Signals(s)) => vec![(
            signal(&s).to_string(),
            pipeline(&["otlp/feed"], &[id], &["debug/sink"]),
        )],
        (Kind::Exporter, ComponentInfo::Signals(s)) => {
            vec![(signal(&s).to_string(), pipeline(&["otlp/feed"], &[], &[id]))]
        }
        (Kind::Connector, ComponentInfo::Connector(pairs)) => {
            let (from, to) = pairs
                .iter()
                .copied()
                .find(|(from, _)| *from == Signal::Traces)
                .expect("a connector taking traces");
            vec![
                (format!("{from}/in"), pipeline(&["otlp/feed"], &[], &[id])),
                (format!("{to}/out"), pipeline(&[id], &[], &["debug/sink"])),
            ]
        }
        _ => vec![("traces".into(), pipeline(&["otlp/feed"], &[], &["debug/sink"]))],
    };
    if t.kind == Kind::Extension {
        started.push(Value::from(id));
    }
    for (name, p) in pipelines {
        root = with(&root, &format!("service.pipelines.{name}"), p);
    }
    if !started.is_empty() {
        root = with(&root, "service.extensions", Value::Sequence(started));
    }
    // A receiver under test has the port itself; otlp/feed then takes another.
    if t.kind == Kind::Receiver {
        root = with(
            &root,
            "receivers.otlp/feed.protocols.http.endpoint",
            "127.0.0.1:0".into(),
        );
    }
    let feed = match t.feed {
        Feed::Pipeline => Some((place.port, "/v1/traces")),
        Feed::Direct(path) => Some((place.port, path)),
        Feed::None => None,
    };
    Case {
        text: yaml_serde::to_string(&root).expect("YAML out"),
        feed,
        _place: place,
    }
}

/// Panics anywhere in the process (tasks the service spawned included), counted by a hook
/// installed once; tests here take [`serial`] so a count belongs to one case.
static PANICS: AtomicUsize = AtomicUsize::new(0);

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    static HOOK: OnceLock<()> = OnceLock::new();
    HOOK.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

// The tests crate's port choice (below the ephemeral range); that crate depends on this one.
#[path = "../../tests/src/ports.rs"]
mod ports;
use ports::free_port;

/// The OTLP/gRPC and OTLP/HTTP ports of a hotspan that takes whatever exporters send, for the
/// whole run: exports succeed and no case waits out retries (`retry.rs` tests those numbers
/// on its own).
fn backend() -> (u16, u16) {
    static BACKEND: OnceLock<(u16, u16, Service)> = OnceLock::new();
    let (grpc, http, _) = BACKEND.get_or_init(|| {
        let (grpc, http) = (free_port(), free_port());
        let text = format!(
            "receivers: {{otlp: {{protocols: {{grpc: {{endpoint: \"127.0.0.1:{grpc}\"}}, http: {{endpoint: \"127.0.0.1:{http}\"}}}}}}}}\n\
             exporters: {{debug: {{}}}}\n\
             service: {{telemetry: {{metrics: {{level: none}}}}, pipelines: {{traces: {{receivers: [otlp], exporters: [debug]}}}}}}"
        );
        let registry = Registry::default();
        let config = hotspan_config::load(&text, &|_| None, &registry).expect("backend config");
        let service = runtime().block_on(async {
            let mut service = Service::build(&config, &registry).expect("backend builds");
            service.start().await.expect("backend starts");
            service
        });
        (grpc, http, service)
    });
    (*grpc, *http)
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    })
}

/// What became of a config.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Refused by the loader, with these problems (`path: message`).
    Invalid(Vec<String>),
    /// Validated, then failed: only the metrics address (a port taken or privileged) may.
    BuildFailed(String),
    StartFailed(String),
    /// Started, took its request (answered with this HTTP status, if one), and stopped.
    Ran(Option<u16>),
}

/// Shutdown's deadline: enough to drain a span; an exporter whose every export times out
/// (`timeout: 1ns`) retries until it.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(250);

/// Longest a start, a request or a shutdown may take: every one here should be quick.
const STEP_LIMIT: Duration = Duration::from_secs(10);

/// The span every fed case sends.
const SPAN: &str = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"probe"}}]},"scopeSpans":[{"spans":[{"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203331","name":"probe","kind":2,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000100000000"}]}]}]}"#;

/// Posts the span, gzipped, over HTTP/1.1; the status line's code, if an answer came.
async fn post(port: u16, path: &str) -> std::io::Result<Option<u16>> {
    use std::io::Write as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(SPAN.as_bytes())?;
    let body = gz.finish()?;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Encoding: gzip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&body).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let status = String::from_utf8_lossy(&answer)
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok());
    Ok(status)
}

/// [`run`] for a component's numbers: a config the loader takes must also build and start (a
/// number is bounded in validation, not found wrong later), and one it refuses for a number
/// at `key` (the key's whole path, `exporters.otlp_grpc.timeout`) must say so at that key.
fn run_component(case: &Case, key: Option<&str>) -> Result<Outcome, String> {
    match run(case)? {
        Outcome::BuildFailed(e) => Err(format!("validated, but failed to build: {e}")),
        Outcome::StartFailed(e) => Err(format!("validated, but failed to start: {e}")),
        Outcome::Invalid(errs) => match key {
            Some(key) if !errs.iter().any(|e| names_key(e, key)) => {
                Err(format!("refused without naming {key}: {errs:?}"))
            }
            _ => Ok(Outcome::Invalid(errs)),
        },
        ran => Ok(ran),
    }
}

/// Whether a rendered problem (`line 12: exporters.x.key: message`) is at `key`.
fn names_key(problem: &str, key: &str) -> bool {
    problem
        .split_once(": ")
        .map_or(
            problem,
            |(first, rest)| if first.starts_with("line ") { rest } else { problem },
        )
        .strip_prefix(key)
        .is_some_and(|rest| rest.starts_with(": "))
}

/// Loads the case; if it validates, builds, starts, feeds and shuts it down. Errors are
/// allowed; panics and hangs are not.
fn run(case: &Case) -> Result<Outcome, String> {
    let before = PANICS.load(Ordering::SeqCst);
    let result = std::panic::catch_unwind(|| try_run(case)).unwrap_or_else(|_| Err("panicked".into()));
    let panics = PANICS.load(Ordering::SeqCst) - before;
    if panics > 0 {
        return Err(format!("{panics} panic(s) (see the output above)"));
    }
    result
}

fn try_run(case: &Case) -> Result<Outcome, String> {
    let registry = Registry::default();
    let config = match hotspan_config::load(&case.text, &|_| None, &registry) {
        Ok(config) => config,
        Err(errs) if errs.is_empty() => return Err("refused with no error".into()),
        Err(errs) => return Ok(Outcome::Invalid(errs.iter().map(ToString::to_string).collect())),
    };
    runtime().block_on(async {
        // Built inside the runtime, as `hotspan` builds: lazy clients need its reactor.
        let mut service = match Service::build(&config, &registry) {
            Ok(service) => service,
            Err(e) => return Ok(Outcome::BuildFailed(e.to_string())),
        };
        let started = tokio::time::timeout(STEP_LIMIT, service.start())
            .await
            .map_err(|_| format!("start took more than {STEP_LIMIT:?}"))?;
        let mut outcome = Outcome::StartFailed(
            started
                .as_ref()
                .err()
                .map(ToString::to_string)
                .unwrap_or_default(),
        );
        if started.is_ok() {
            let status = match case.feed {
                Some((port, path)) => tokio::time::timeout(STEP_LIMIT, post(port, path))
                    .await
                    .map_err(|_| format!("no answer to the request within {STEP_LIMIT:?}"))?
                    .ok()
                    .flatten(),
                None => None,
            };
            outcome = Outcome::Ran(status);
        }
        let stopping = Instant::now();
        service.shutdown(Instant::now() + SHUTDOWN_GRACE).await;
        if stopping.elapsed() > STEP_LIMIT {
            return Err(format!("shutdown took more than {STEP_LIMIT:?}"));
        }
        Ok(outcome)
    })
}

#[test]
fn every_component_type_has_a_template_and_its_numbers_are_found() {
    let _serial = serial();
    let registry = Registry::default();
    // The kafka receiver and exporter (with the `kafka` feature) need a broker to start
    // against; their numbers are checked by their own validation and tests/tests/kafka*.rs.
    const NEED_A_BROKER: &[&str] = &["kafka"];
    for (kind, factory) in registry.all() {
        if NEED_A_BROKER.contains(&factory.type_name()) {
            continue;
        }
        assert!(
            TEMPLATES
                .iter()
                .any(|t| t.kind == kind && t.type_name == factory.type_name()),
            "{kind} {} has no template here: add one so its numbers are tried",
            factory.type_name()
        );
    }
    let found = |type_name: &str, path: &str, number: Number| {
        TEMPLATES.iter().zip(keys()).any(|(t, keys)| {
            t.type_name == type_name && keys.iter().any(|k| k.path == path && k.number == number)
        })
    };
    // Discovery reaches nested structs, optional sections, list items, every kind of number.
    for (type_name, path, number) in [
        ("otlp", "protocols.grpc.max_recv_msg_size_mib", Number::Integer),
        ("otlp", "protocols.http.max_request_body_size", Number::Integer),
        ("otlp_grpc", "sending_queue.queue_size", Number::Integer),
        ("otlp_grpc", "retry_on_failure.multiplier", Number::Float),
        ("otlp_grpc", "timeout", Number::Duration),
        ("cgroup", "targets[0].pid", Number::Integer),
        ("load_balancing", "resolver.dns.port", Number::Integer),
        (
            "load_balancing",
            "protocol.otlp.sending_queue.num_consumers",
            Number::Integer,
        ),
        ("spanprofile", "clock_skew", Number::Duration),
        ("spanprofile", "max_buffered_bytes", Number::Integer),
        ("spanprofile", "top_functions", Number::Integer),
        ("pprof_scrape", "goroutine_interval", Number::Duration),
        ("pprof_scrape", "trace_interval", Number::Duration),
        ("pprof_scrape", "max_trace_bytes", Number::Integer),
        ("cgroup", "collection_interval", Number::Duration),
        ("file_storage", "timeout", Number::Duration),
        ("batch", "send_batch_max_size", Number::Integer),
        ("batch", "timeout", Number::Duration),
        ("memory_limiter", "spike_limit_percentage", Number::Integer),
        ("hotspan_ui", "window", Number::Duration),
        ("file", "flush_interval", Number::Duration),
    ] {
        assert!(found(type_name, path, number), "{type_name}: {path} not found");
    }
    for (t, keys) in TEMPLATES.iter().zip(keys()) {
        let names: Vec<&str> = keys.iter().map(|k| k.path.as_str()).collect();
        eprintln!("{} {}: {}", t.kind, t.type_name, names.join(", "));
    }
    // And every template, as written, runs and takes its request.
    for t in TEMPLATES {
        let case = case_for(t, &[]);
        let outcome = run(&case);
        let took = match (t.feed, &outcome) {
            (Feed::None, Ok(Outcome::Ran(None))) => true,
            // Not pprof: refused, but read.
            (Feed::Direct(path), Ok(Outcome::Ran(Some(400)))) if path.starts_with("/v1/pprof") => true,
            (_, Ok(Outcome::Ran(status))) => *status == Some(200),
            _ => false,
        };
        assert!(took, "{} {}: {outcome:?}\n{}", t.kind, t.type_name, case.text);
    }
}

#[test]
fn every_numeric_key_at_every_edge() {
    let _serial = serial();
    let started = Instant::now();
    let (mut tried, mut ran, mut failed) = (0, 0, Vec::new());
    for (t, keys) in TEMPLATES.iter().zip(keys()) {
        for key in keys {
            for edge in edges(key.number) {
                let case = case_for(t, &[(&key.path, edge)]);
                tried += 1;
                let whole = format!("{}.{}.{}", section(t.kind), t.type_name, key.path);
                match run_component(&case, Some(&whole)) {
                    Ok(outcome) => ran += usize::from(matches!(outcome, Outcome::Ran(_))),
                    Err(e) => failed.push(format!("{} {}: {} = {edge}: {e}", t.kind, t.type_name, key.path)),
                }
            }
        }
    }
    // `service.telemetry`'s one number: the port of its address.
    let debug = TEMPLATES.iter().find(|t| t.type_name == "debug").expect("debug");
    for port in INTEGERS {
        let case = case_with_address(debug, &[], &format!("127.0.0.1:{port}"));
        tried += 1;
        // A port that is taken or privileged fails at start, as it should.
        let key = "service.telemetry.metrics.address";
        match run(&case) {
            Ok(Outcome::Invalid(errs)) if !errs.iter().any(|e| names_key(e, key)) => failed.push(format!(
                "{key} = 127.0.0.1:{port}: refused without naming it: {errs:?}"
            )),
            Ok(outcome) => ran += usize::from(matches!(outcome, Outcome::Ran(_))),
            Err(e) => failed.push(format!("{key} = 127.0.0.1:{port}: {e}")),
        }
    }
    eprintln!("{tried} configs, {ran} ran, in {:?}", started.elapsed());
    assert!(
        failed.is_empty(),
        "{} failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// A template and a value (or the default) for each of its numeric keys.
fn case() -> impl Strategy<Value = (usize, Vec<Option<String>>)> {
    (0..TEMPLATES.len()).prop_flat_map(|t| {
        let values: Vec<_> = keys()[t]
            .iter()
            .map(|k| proptest::option::of(value(k.number)))
            .collect();
        (Just(t), values)
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        // Each case starts and stops a service: a few milliseconds.
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_numbers_in_every_key((t, values) in case()) {
        let _serial = serial();
        let template = &TEMPLATES[t];
        let set: Vec<(&str, &str)> = keys()[t]
            .iter()
            .zip(&values)
            .filter_map(|(k, v)| Some((k.path.as_str(), v.as_deref()?)))
            .collect();
        let case = case_for(template, &set);
        run_component(&case, None).map_err(|e| TestCaseError::fail(format!("{e}\n{}", case.text)))?;
    }
}
