//! The Go ground-truth service (`tests/goservice`): build it, run it, read the spans it says it
//! made, and read pprof files through Go's own `go tool pprof`, so hotspan's answers can be
//! compared with what the Go runtime and Go's pprof tool say.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde::Deserialize;

use crate::{http_status, signal, wait_for};

/// The cargo target profile dir (`target/debug`), where the hotspan binary also lives.
fn target_profile_dir() -> PathBuf {
    // Test executables live in target/<profile>/deps.
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

/// Where Go is on the project's machines, also when it is not on PATH (CI's PATH).
const GO_FALLBACK: &str = "/usr/local/go/bin/go";

/// The `go` program: the one on PATH, else [`GO_FALLBACK`]. Panics when there is neither: the
/// tests need it and must not be skipped quietly.
fn go_program() -> PathBuf {
    static GO: OnceLock<PathBuf> = OnceLock::new();
    GO.get_or_init(|| {
        let on_path = std::env::var_os("PATH")
            .map(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join("go"))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
            .into_iter()
            .find(|p| p.is_file());
        on_path
            .or_else(|| Some(PathBuf::from(GO_FALLBACK)).filter(|p| p.is_file()))
            .unwrap_or_else(|| {
                panic!(
                    "no `go` on PATH nor at {GO_FALLBACK}: install Go 1.26 or newer (the project's \
                     machines have it at /usr/local/go), then run scripts/go-modules.sh"
                )
            })
    })
    .clone()
}

/// A `go` command that builds offline: modules only from Go's module cache (filled by
/// `scripts/go-modules.sh`, GOPROXY=off so a missing one is an error, not a download in the
/// middle of a test), go.mod and go.sum as committed (`-mod=readonly`), the build cache under
/// the target dir, no cgo (no C compiler needed), no workspace and no toolchain switching.
fn go_command() -> Command {
    let mut cmd = Command::new(go_program());
    cmd.env("GOCACHE", target_profile_dir().join("go-cache"))
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=readonly -buildvcs=false")
        .env("GOPROXY", "off")
        .env("GOWORK", "off")
        .env("GO111MODULE", "on")
        .env("CGO_ENABLED", "0");
    cmd
}

/// `$GOROOT` of the `go` the tests use (its `src/` holds Go's own test data).
pub fn goroot() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let output = go_command()
            .args(["env", "GOROOT"])
            .output()
            .expect("running `go env GOROOT`");
        assert!(output.status.success(), "go env GOROOT failed");
        PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
    })
    .clone()
}

/// Builds the Go service once per test process (`target/<profile>/goservice`) and returns its
/// path. Panics when it does not build: the tests need it and must not be skipped quietly.
pub fn go_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_go_program("goservice")).clone()
}

/// Builds the Go program in `tests/<dir>` to `target/<profile>/<dir>` and returns its path.
/// Panics when it does not build.
pub fn build_go_program(dir: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let out = target_profile_dir().join(dir);
    // Other test processes may build at the same time: build to a private name, then rename,
    // which replaces the file atomically.
    let tmp = out.with_file_name(format!("{dir}.{}.tmp", std::process::id()));
    let output = go_command()
        .args(["build", "-o"])
        .arg(&tmp)
        .arg(".")
        .current_dir(&src)
        .output()
        .unwrap_or_else(|e| panic!("running `go build` in {}: {e}", src.display()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let hint = if stderr.contains("GOPROXY=off") || stderr.contains("missing go.sum entry") {
        "\na Go module is not in the module cache: run scripts/go-modules.sh (scripts/test.sh does)"
    } else {
        ""
    };
    assert!(
        output.status.success(),
        "go build in {} failed ({}):\n{stderr}{hint}",
        src.display(),
        output.status,
    );
    std::fs::rename(&tmp, &out).unwrap_or_else(|e| panic!("moving the built {dir} into place: {e}"));
    out
}

/// Which spans put pprof labels on their work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelStyle {
    /// Every span runs inside `pprof.Do` with its own trace_id, span_id, span_name, domain,
    /// stage labels.
    All,
    /// The tracer provider wrapped by otel-profiling-go with its defaults: the local root sets
    /// trace_id, span_id and span_name; children run under the root's labels.
    Root,
    /// otel-profiling-go with its all-spans scope for span ids and names: every span sets its
    /// own span_id and span_name; trace_id comes from the local root; no domain or stage.
    OtelprofAll,
}

impl LabelStyle {
    fn as_str(self) -> &'static str {
        match self {
            LabelStyle::All => "all",
            LabelStyle::Root => "root",
            LabelStyle::OtelprofAll => "otelprof-all",
        }
    }
}

/// How the Go SDK's OTLP exporter sends spans (`-otlp-protocol`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// `otlptracegrpc`.
    Grpc,
    /// `otlptracehttp`, protobuf bodies.
    HttpProtobuf,
    /// `otlptracehttp` with `EncodingJSON`.
    HttpJson,
}

impl OtlpProtocol {
    fn as_str(self) -> &'static str {
        match self {
            OtlpProtocol::Grpc => "grpc",
            OtlpProtocol::HttpProtobuf => "http/protobuf",
            OtlpProtocol::HttpJson => "http/json",
        }
    }
}

/// What the service's requests do (`-scenario`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// checkout -> validate cart, price items (-> apply discounts), charge card: each burns CPU
    /// in its own function.
    Checkout,
    /// handle order -> lock inventory (`sync.Mutex`), await quote (channel receive), call
    /// warehouse (slow TCP peer), back off (`time.Sleep`), each blocking 20-60 ms (`wait_ms`) in its own
    /// function, and total order, which only burns CPU.
    Wait,
    /// build report -> 3 x render rows, each allocating 8-32 MiB in small objects (many GC
    /// cycles and stop-the-world pauses).
    Alloc,
    /// Checkout, where `slow_fraction` of each worker's "charge card" spans also run
    /// `main.slowPath` (60 ms of CPU by default).
    Slowpath,
    /// run job -> 3 x job step, each sleeping 10 ms in `main.napStep`, then burning 5-30 ms in
    /// `main.crunchStep`.
    Sleep,
}

impl Scenario {
    fn as_str(self) -> &'static str {
        match self {
            Scenario::Checkout => "checkout",
            Scenario::Wait => "wait",
            Scenario::Alloc => "alloc",
            Scenario::Slowpath => "slowpath",
            Scenario::Sleep => "sleep",
        }
    }
}

/// How to run the Go service.
#[derive(Clone, Debug)]
pub struct GoOptions {
    pub scenario: Scenario,
    /// Slowpath: the fraction of charges that take `main.slowPath` (the service's 0.1 when
    /// `None`).
    pub slow_fraction: Option<f64>,
    /// Wait: the range each block time is drawn from, in ms (the service's 20..=60 when
    /// `None`).
    pub wait_ms: Option<(u32, u32)>,
    /// Extra goroutines parked on a channel in `main.idle`.
    pub idle_goroutines: u32,
    /// OTLP endpoint URL (`http://127.0.0.1:PORT`; for HTTP a URL without a path gets
    /// `/v1/traces`); `None`: no export.
    pub otlp_endpoint: Option<String>,
    pub otlp_protocol: OtlpProtocol,
    /// `service.name` of the exported spans.
    pub service_name: String,
    pub label_style: LabelStyle,
    /// Goroutines running requests concurrently.
    pub workers: u32,
    /// Exit by itself after this long; `None`: run until stopped.
    pub duration: Option<Duration>,
    /// Write the truth file (every finished span with its hot function and labels).
    pub truth: bool,
    /// Write a CPU profile of the first N seconds with `runtime/pprof.StartCPUProfile`.
    pub cpu_profile_seconds: Option<u32>,
    /// Port for `/debug/pprof` (a free one when `None`), for scrapers configured before it runs.
    pub listen_port: Option<u16>,
    /// Push CPU profiles with pyroscope-go to this server URL (it POSTs to `URL/ingest`).
    /// Excludes `cpu_profile_seconds` (one CPU profiler per process).
    pub pyroscope_endpoint: Option<String>,
    /// How often pyroscope-go pushes (its default, 15 s, when `None`).
    pub pyroscope_upload_rate: Option<Duration>,
    /// `cgroup.procs` files the service joins before it runs a single instruction of its own:
    /// it starts as a shell that writes its pid into each, then execs the service (same pid).
    pub cgroup_procs: Vec<PathBuf>,
    /// Also serve `/debug/pprof/*` and `/stats` over TLS (`-tls-listen`).
    pub tls: Option<GoTls>,
    /// More environment for the process, e.g. `GODEBUG=gctrace=1` (its output lands in
    /// [`GoService::log`]).
    pub env: Vec<(String, String)>,
}

/// The service's TLS listener: PEM files, and what it requires of clients.
#[derive(Clone, Debug, Default)]
pub struct GoTls {
    /// Port on 127.0.0.1 (a free one when 0).
    pub port: u16,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Require client certificates signed by this CA (mTLS).
    pub client_ca_file: Option<PathBuf>,
    /// Headers a request must carry, else 401: `("Authorization", "Bearer s3cret")`.
    pub require_headers: Vec<(String, String)>,
}

impl Default for GoOptions {
    fn default() -> Self {
        GoOptions {
            scenario: Scenario::Checkout,
            slow_fraction: None,
            wait_ms: None,
            idle_goroutines: 0,
            otlp_endpoint: None,
            otlp_protocol: OtlpProtocol::HttpProtobuf,
            service_name: "shop".into(),
            label_style: LabelStyle::All,
            workers: 2,
            duration: None,
            truth: true,
            cpu_profile_seconds: None,
            listen_port: None,
            pyroscope_endpoint: None,
            pyroscope_upload_rate: None,
            cgroup_procs: Vec::new(),
            tls: None,
            env: Vec::new(),
        }
    }
}

/// One line of the truth file: a span the Go service finished.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TruthSpan {
    /// 32 lower-case hex digits.
    pub trace_id: String,
    /// 16 lower-case hex digits.
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    /// The function that burned CPU in this span, as pprof names it (`main.validateCart`).
    pub hot_function: String,
    /// The pprof labels the runtime had on the goroutine while the span ran.
    pub labels: BTreeMap<String, String>,
    /// Wait scenarios: wall time inside the blocking call, in ns (0: the span does not block).
    #[serde(default)]
    pub wait_ns: u64,
    /// The goroutine's wait reason as Go names it in goroutine dumps: `sync.Mutex.Lock`,
    /// `chan receive`, `IO wait`, `sleep`.
    #[serde(default)]
    pub wait_reason: String,
    /// The service's function on the blocked stack (`main.lockInventory`).
    #[serde(default)]
    pub wait_function: String,
    /// Slowpath: the span ran `main.slowPath`.
    #[serde(default)]
    pub slow_path: bool,
    /// Alloc: bytes the span allocated on purpose.
    #[serde(default)]
    pub alloc_bytes: u64,
    /// Alloc: GC cycles the runtime completed while the span ran.
    #[serde(default)]
    pub gc_cycles: u64,
}

impl TruthSpan {
    pub fn duration_ns(&self) -> u64 {
        self.end_unix_nano.saturating_sub(self.start_unix_nano)
    }
}

/// What the service's `/stats` serves.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceStats {
    /// Requests completed since start.
    pub requests: u64,
    /// Spans finished since start.
    pub spans: u64,
    pub uptime_seconds: f64,
    pub requests_per_second: f64,
    /// Errors the OpenTelemetry SDK reported (failed exports).
    pub sdk_errors: u64,
    /// Errors pyroscope-go reported (failed pushes).
    pub push_errors: u64,
}

/// A running Go service. Killed on drop if still running.
pub struct GoService {
    pub child: Child,
    /// Port of its `/debug/pprof/*` server on 127.0.0.1.
    pub port: u16,
    /// Port of its TLS listener, when it has one.
    pub tls_port: Option<u16>,
    /// Holds the truth file, the CPU profile and its stderr log.
    pub dir: tempfile::TempDir,
    pub opts: GoOptions,
    /// The exit status, once seen (a reaped pid must never be signalled again).
    status: Option<ExitStatus>,
}

impl GoService {
    /// Starts the service and waits until `/debug/pprof/` answers 200.
    pub fn start(opts: GoOptions) -> Result<GoService> {
        let bin = go_binary();
        let dir = tempfile::tempdir()?;
        let port = opts.listen_port.unwrap_or_else(crate::free_port);
        let mut cmd = Command::new(bin);
        cmd.envs(opts.env.iter().map(|(k, v)| (k, v)));
        let mut tls_port = None;
        if let Some(tls) = &opts.tls {
            let port = if tls.port == 0 {
                crate::free_port()
            } else {
                tls.port
            };
            tls_port = Some(port);
            cmd.arg("-tls-listen")
                .arg(format!("127.0.0.1:{port}"))
                .arg("-tls-cert")
                .arg(&tls.cert_file)
                .arg("-tls-key")
                .arg(&tls.key_file);
            if let Some(ca) = &tls.client_ca_file {
                cmd.arg("-tls-client-ca").arg(ca);
            }
            for (name, value) in &tls.require_headers {
                cmd.arg("-tls-require-header").arg(format!("{name}: {value}"));
            }
        }
        cmd.arg("-listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("-service-name")
            .arg(&opts.service_name)
            .arg("-label-style")
            .arg(opts.label_style.as_str())
            .arg("-workers")
            .arg(opts.workers.to_string());
        if let Some(endpoint) = &opts.otlp_endpoint {
            cmd.arg("-otlp-endpoint")
                .arg(endpoint)
                .arg("-otlp-protocol")
                .arg(opts.otlp_protocol.as_str());
        }
        if let Some(d) = opts.duration {
            cmd.arg("-duration").arg(format!("{}ms", d.as_millis()));
        }
        cmd.arg("-scenario")
            .arg(opts.scenario.as_str())
            .arg("-idle-goroutines")
            .arg(opts.idle_goroutines.to_string());
        if let Some((lo, hi)) = opts.wait_ms {
            cmd.arg("-wait-min-ms")
                .arg(lo.to_string())
                .arg("-wait-max-ms")
                .arg(hi.to_string());
        }
        if let Some(f) = opts.slow_fraction {
            cmd.arg("-slow-fraction").arg(f.to_string());
        }
        if let Some(endpoint) = &opts.pyroscope_endpoint {
            cmd.arg("-pyroscope-endpoint").arg(endpoint);
        }
        if let Some(rate) = opts.pyroscope_upload_rate {
            cmd.arg("-pyroscope-upload-rate")
                .arg(format!("{}ms", rate.as_millis()));
        }
        if opts.truth {
            cmd.arg("-truth").arg(dir.path().join("truth.jsonl"));
        }
        if let Some(seconds) = opts.cpu_profile_seconds {
            cmd.arg("-cpu-profile")
                .arg(dir.path().join("cpu.pprof"))
                .arg("-cpu-profile-seconds")
                .arg(seconds.to_string());
        }
        if !opts.cgroup_procs.is_empty() {
            // `sh -c SCRIPT sh PROCS... -- PROGRAM ARGS...`: a write that fails ends the shell
            // with the reason on stderr, which `start` reports with the log.
            let mut wrapped = Command::new("sh");
            wrapped
                .arg("-c")
                .arg(
                    r#"while [ "$1" != "--" ]; do echo $$ > "$1" || { echo "joining cgroup: $1" >&2; exit 97; }; shift; done; shift; exec "$@""#,
                )
                .arg("sh")
                .args(&opts.cgroup_procs)
                .arg("--")
                .arg(cmd.get_program())
                .args(cmd.get_args());
            cmd = wrapped;
        }
        let log = std::fs::File::create(dir.path().join("goservice.log"))?;
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting goservice")?;
        let mut service = GoService {
            child,
            port,
            tls_port,
            dir,
            opts,
            status: None,
        };
        let ready = wait_for(
            Duration::from_secs(30),
            "goservice to serve /debug/pprof/",
            || {
                if let Ok(Some(status)) = service.child.try_wait() {
                    return Some(Err(anyhow::anyhow!("goservice exited early with {status}")));
                }
                let ok = http_status(port, "/debug/pprof/")
                    .map(|c| c == 200)
                    .unwrap_or(false);
                ok.then_some(Ok(()))
            },
        );
        if let Err(e) = ready.and_then(|r| r) {
            bail!("{e}\n--- goservice log ---\n{}", service.log());
        }
        Ok(service)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// What it wrote to stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("goservice.log")).unwrap_or_default()
    }

    /// Sends SIGTERM (unless it already exited) and waits for the exit: it finishes the
    /// requests in flight and flushes spans first.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        if self.status.is_none() && self.child.try_wait()?.is_none() {
            signal(self.child.id(), "TERM")?;
        }
        self.wait_exit(Duration::from_secs(30))
    }

    /// Waits for the service to exit by itself (`duration`).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let status = wait_for(timeout, "goservice to exit", || {
            self.child.try_wait().ok().flatten()
        })
        .with_context(|| format!("--- goservice log ---\n{}", self.log()))?;
        self.status = Some(status);
        Ok(status)
    }

    /// Its `/stats`: requests and spans completed, requests per second.
    pub fn stats(&self) -> Result<ServiceStats> {
        let body = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?
            .get(self.url("/stats"))
            .send()?
            .error_for_status()?
            .text()?;
        serde_json::from_str(&body).with_context(|| format!("/stats answered {body:?}"))
    }

    pub fn truth_path(&self) -> PathBuf {
        self.dir.path().join("truth.jsonl")
    }

    /// Where `-cpu-profile` writes (complete once `cpu_profile_seconds` passed or it exited).
    pub fn cpu_profile_path(&self) -> PathBuf {
        self.dir.path().join("cpu.pprof")
    }

    /// The spans in the truth file. Complete after the service exited; while it runs, the
    /// spans of the complete lines written so far.
    pub fn truth(&self) -> Result<Vec<TruthSpan>> {
        ensure!(self.opts.truth, "goservice was started without a truth file");
        let text = std::fs::read_to_string(self.truth_path()).context("reading the truth file")?;
        text.split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .map(|l| serde_json::from_str(l).with_context(|| format!("truth line {l:?}")))
            .collect()
    }
}

impl Drop for GoService {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One sample of a profile as `go tool pprof -raw` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawSample {
    /// One value per sample type.
    pub values: Vec<i64>,
    /// Function names, leaf first; inlined frames expanded; `??` for a frame with no function.
    pub stack: Vec<String>,
    /// Labels (string and numeric) as `key -> value`; see [`parse_raw`] for multi-valued ones.
    pub labels: BTreeMap<String, String>,
}

impl RawSample {
    /// The leaf-most function (`??` when unknown).
    pub fn leaf(&self) -> &str {
        self.stack.first().map(String::as_str).unwrap_or("??")
    }

    /// The leaf-most function outside Go's runtime package. Samples of a busy loop often have
    /// `runtime.asyncPreempt` as their leaf (about a tenth of them on Go 1.19: the scheduler
    /// injects it when preempting a goroutine that ran 10 ms), with the loop's function next.
    pub fn leaf_outside_runtime(&self) -> &str {
        self.stack
            .iter()
            .map(String::as_str)
            .find(|f| !f.starts_with("runtime.") && !f.starts_with("runtime/internal/"))
            .unwrap_or("??")
    }
}

/// Totals of one function.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FunctionTotals {
    /// Samples where it is the leaf, per sample type.
    pub flat: Vec<i64>,
    /// Samples where it is anywhere on the stack (once per sample), per sample type.
    pub cum: Vec<i64>,
}

/// A profile as Go's own pprof tool reads it, with the totals tests compare against.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawProfile {
    /// `PeriodType: <type> <unit>`, e.g. `cpu nanoseconds`.
    pub period_type: Option<String>,
    pub period: i64,
    /// `type/unit` per value, e.g. `["samples/count", "cpu/nanoseconds"]` (`[dflt]` removed).
    pub sample_types: Vec<String>,
    pub samples: Vec<RawSample>,
    /// Sum over all samples, per sample type.
    pub total: Vec<i64>,
    pub functions: BTreeMap<String, FunctionTotals>,
    /// `key -> value -> sum` per sample type.
    pub labels: BTreeMap<String, BTreeMap<String, Vec<i64>>>,
}

impl RawProfile {
    /// Index of a sample type, by `type/unit` or just `type` (`"samples"`, `"cpu"`).
    pub fn value_index(&self, sample_type: &str) -> Option<usize> {
        self.sample_types
            .iter()
            .position(|t| t == sample_type || t.split('/').next() == Some(sample_type))
    }

    fn value(&self, values: Option<&Vec<i64>>, sample_type: &str) -> i64 {
        let i = self
            .value_index(sample_type)
            .unwrap_or_else(|| panic!("no sample type {sample_type} in {:?}", self.sample_types));
        values.map(|v| v[i]).unwrap_or(0)
    }

    pub fn total_of(&self, sample_type: &str) -> i64 {
        self.value(Some(&self.total), sample_type)
    }

    pub fn flat(&self, function: &str, sample_type: &str) -> i64 {
        self.value(self.functions.get(function).map(|f| &f.flat), sample_type)
    }

    pub fn cum(&self, function: &str, sample_type: &str) -> i64 {
        self.value(self.functions.get(function).map(|f| &f.cum), sample_type)
    }

    pub fn label(&self, key: &str, value: &str, sample_type: &str) -> i64 {
        self.value(self.labels.get(key).and_then(|v| v.get(value)), sample_type)
    }
}

/// Runs `go tool pprof -raw <profile>` and parses what it prints (see [`parse_raw`]).
pub fn go_tool_pprof_raw(profile: &Path) -> Result<RawProfile> {
    go_tool_pprof_raw_with(profile, &[])
}

/// `go tool pprof -raw` with more options first, e.g. `-tagfocus=span_id=<id>`.
pub fn go_tool_pprof_raw_with(profile: &Path, options: &[&str]) -> Result<RawProfile> {
    go_binary(); // panics with the install hint when `go` is missing
    let output = go_command()
        .args(["tool", "pprof", "-raw"])
        .args(options)
        .arg(profile)
        // Keep pprof from looking for binaries or writing ~/pprof.
        .env("PPROF_TMPDIR", std::env::temp_dir())
        .env("PPROF_BINARY_PATH", "/nonexistent")
        .stdin(Stdio::null())
        .output()
        .context("running go tool pprof")?;
    ensure!(
        output.status.success(),
        "go tool pprof -raw {} failed ({}): {}",
        profile.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).context("go tool pprof output is not UTF-8")?;
    parse_raw(&text).with_context(|| format!("parsing `go tool pprof -raw {}`", profile.display()))
}

/// `go tool trace -d=parsed <trace>`: the events of a Go execution trace as Go's own reader
/// parses them, one per line (e.g. `... RangeBegin Time=... Name="stop-the-world (GC mark
/// termination)" ...`).
pub fn go_tool_trace_parsed(trace: &Path) -> Result<String> {
    go_binary(); // panics with the install hint when `go` is missing
    let output = go_command()
        .args(["tool", "trace", "-d=parsed"])
        .arg(trace)
        .stdin(Stdio::null())
        .output()
        .context("running go tool trace")?;
    ensure!(
        output.status.success(),
        "go tool trace -d=parsed {} failed ({}): {}",
        trace.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).context("go tool trace output is not UTF-8")
}

/// Parses `go tool pprof -raw` output: google/pprof's `Profile.String()`, which looks like
///
/// ```text
/// PeriodType: cpu nanoseconds
/// Period: 10000000
/// Time: 2024-01-01 12:00:00.123 +0000 UTC
/// Duration: 2.01
/// Samples:
/// samples/count cpu/nanoseconds
///           3   30000000: 1 2 3 4
///                 domain:[cart] span_id:[3a0e77c59c5db2f8] span_name:[validate cart]
/// Locations
///      1: 0x6bcb24 M=1 main.validateCart /src/work.go:22 s=0
///      2: 0x6bb724 M=1 main.inlined /src/a.go:9 s=0
///                  main.caller /src/a.go:60 s=0
/// Mappings
/// 1: 0x400000/0x6be000/0x0 /tmp/goservice  [FN]
/// ```
///
/// (`Comment:` lines may come first.) A sample line has one value per sample type, then the
/// location ids leaf first. The lines after it that start with 16 spaces are its string
/// labels and then its numeric labels, `key:[values]` sorted and space-joined; the text format
/// cannot tell one value with a space (`span_name:[validate cart]`) from two values, so the
/// bracket content is taken as one value (Go's `pprof.Do` labels have one value per key). A
/// location line is `id: addr M=mapping [F] function file:line s=startline[(system name)]`,
/// continued by lines of 13 spaces for frames inlined into it (innermost first); a frame with
/// no function prints `??`. A function name is the text before the ` file:line s=N` that
/// follows it: names of generic instantiations hold spaces
/// (`pkg.F[go.shape.func(*T, reflect.Value)]`), file paths are taken to have none. Any other
/// line is an error.
pub fn parse_raw(text: &str) -> Result<RawProfile> {
    #[derive(PartialEq)]
    enum Section {
        Header,
        SampleTypes,
        Samples,
        Locations,
        Mappings,
    }
    let mut p = RawProfile::default();
    let mut section = Section::Header;
    // A sample as read, resolved once all locations are known.
    struct Pending {
        values: Vec<i64>,
        ids: Vec<u64>,
        labels: BTreeMap<String, String>,
        label_lines: usize,
    }
    let mut raw_samples: Vec<Pending> = Vec::new();
    let mut locations: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut last_location: Option<u64> = None;
    let mut seen_samples_header = false;
    let mut seen_locations = false;
    let mut seen_mappings = false;

    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        let bad = |why: &str| anyhow::anyhow!("line {n}: {why}: {line:?}");
        match section {
            Section::Header => {
                if line == "Samples:" {
                    section = Section::SampleTypes;
                    seen_samples_header = true;
                } else if line.starts_with("Comment: ")
                    || line.starts_with("Time: ")
                    || line.starts_with("Duration: ")
                {
                } else if let Some(t) = line.strip_prefix("PeriodType: ") {
                    p.period_type = Some(t.to_string());
                } else if let Some(v) = line.strip_prefix("Period: ") {
                    p.period = v.parse().map_err(|_| bad("bad period"))?;
                } else {
                    return Err(bad("unexpected header line"));
                }
            }
            Section::SampleTypes => {
                for t in line.split_whitespace() {
                    let t = t.strip_suffix("[dflt]").unwrap_or(t);
                    ensure!(t.contains('/'), bad("a sample type is not type/unit"));
                    p.sample_types.push(t.to_string());
                }
                section = Section::Samples;
            }
            Section::Samples => {
                if line == "Locations" {
                    section = Section::Locations;
                    seen_locations = true;
                } else if let Some(labels) = line.strip_prefix("                ") {
                    let sample = raw_samples
                        .last_mut()
                        .ok_or_else(|| bad("labels before any sample"))?;
                    sample.label_lines += 1;
                    ensure!(
                        sample.label_lines <= 2,
                        bad("more than two label lines for a sample")
                    );
                    for (k, v) in parse_labels(labels).map_err(|e| bad(&e))? {
                        ensure!(sample.labels.insert(k, v).is_none(), bad("a label key twice"));
                    }
                } else {
                    let (values, ids) = line.split_once(':').ok_or_else(|| bad("not a sample line"))?;
                    let values: Vec<i64> = values
                        .split_whitespace()
                        .map(str::parse)
                        .collect::<Result<_, _>>()
                        .map_err(|_| bad("bad sample value"))?;
                    ensure!(
                        values.len() == p.sample_types.len(),
                        bad("sample values do not match the sample types")
                    );
                    let ids: Vec<u64> = ids
                        .split_whitespace()
                        .map(str::parse)
                        .collect::<Result<_, _>>()
                        .map_err(|_| bad("bad location id"))?;
                    raw_samples.push(Pending {
                        values,
                        ids,
                        labels: BTreeMap::new(),
                        label_lines: 0,
                    });
                }
            }
            Section::Locations => {
                if line == "Mappings" {
                    section = Section::Mappings;
                    seen_mappings = true;
                } else if let Some(frame) = line.strip_prefix("             ").filter(|f| !f.starts_with(' '))
                {
                    // A frame inlined into the previous location.
                    let id = last_location.ok_or_else(|| bad("inlined frame before any location"))?;
                    let name = frame_function(frame).ok_or_else(|| bad("bad inlined frame"))?;
                    locations.get_mut(&id).expect("inserted").push(name);
                } else {
                    let (id, rest) = line
                        .trim_start()
                        .split_once(": ")
                        .ok_or_else(|| bad("not a location"))?;
                    let id: u64 = id.parse().map_err(|_| bad("bad location id"))?;
                    let mut rest = rest
                        .strip_prefix("0x")
                        .and_then(|r| r.split_once(' '))
                        .filter(|(addr, _)| u64::from_str_radix(addr, 16).is_ok())
                        .ok_or_else(|| bad("bad location address"))?
                        .1;
                    if let Some(r) = rest.strip_prefix("M=") {
                        let (m, r) = r.split_once(' ').unwrap_or((r, ""));
                        m.parse::<u64>().map_err(|_| bad("bad mapping id"))?;
                        rest = r;
                    }
                    rest = rest.strip_prefix("[F] ").unwrap_or(rest);
                    let frames = if rest.is_empty() {
                        Vec::new() // a location with no line information
                    } else {
                        vec![frame_function(rest).ok_or_else(|| bad("bad location frame"))?]
                    };
                    ensure!(locations.insert(id, frames).is_none(), bad("location id twice"));
                    last_location = Some(id);
                }
            }
            Section::Mappings => {
                let ok = line
                    .split_once(": 0x")
                    .is_some_and(|(id, rest)| id.parse::<u64>().is_ok() && rest.contains('/'));
                ensure!(ok, bad("not a mapping"));
            }
        }
    }
    ensure!(
        seen_samples_header && seen_locations && seen_mappings,
        "output lacks the Samples:, Locations or Mappings section"
    );

    p.total = vec![0; p.sample_types.len()];
    for Pending {
        values, ids, labels, ..
    } in raw_samples
    {
        let mut stack = Vec::new();
        for id in &ids {
            let frames = locations
                .get(id)
                .with_context(|| format!("sample names unknown location {id}"))?;
            if frames.is_empty() {
                stack.push("??".to_string());
            }
            stack.extend(frames.iter().cloned());
        }
        add(&mut p.total, &values);
        let mut on_stack: Vec<&String> = stack.iter().collect();
        on_stack.sort();
        on_stack.dedup();
        for f in on_stack {
            let totals = p.functions.entry(f.clone()).or_insert_with(|| FunctionTotals {
                flat: vec![0; values.len()],
                cum: vec![0; values.len()],
            });
            add(&mut totals.cum, &values);
        }
        if let Some(leaf) = stack.first() {
            add(
                &mut p.functions.get_mut(leaf).expect("counted above").flat,
                &values,
            );
        }
        for (k, v) in &labels {
            let sums = p
                .labels
                .entry(k.clone())
                .or_default()
                .entry(v.clone())
                .or_default();
            if sums.is_empty() {
                *sums = vec![0; values.len()];
            }
            add(sums, &values);
        }
        p.samples.push(RawSample {
            values,
            stack,
            labels,
        });
    }
    Ok(p)
}

fn add(sum: &mut [i64], values: &[i64]) {
    for (s, v) in sum.iter_mut().zip(values) {
        *s += v;
    }
}

/// The function of `name file:line s=N[(system name)]`, or of `??`. The name may hold spaces
/// and so may the system name; the first ` s=<digits>` ending the text or followed by `(`
/// marks the end of `file:line`. The system name, when given, is the one the profile holds
/// (what hotspan keeps): pprof shortens the other, e.g. a generic instantiation's
/// `OnceValue[go.shape.func(*T, reflect.Value)].func3` to `OnceValue[go.shape.func].func3`.
fn frame_function(frame: &str) -> Option<String> {
    if frame == "??" {
        return Some("??".into());
    }
    let (at, digits) = frame.match_indices(" s=").find_map(|(i, _)| {
        let rest = &frame[i + 3..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        (digits > 0 && (rest.len() == digits || rest[digits..].starts_with('('))).then_some((i, digits))
    })?;
    let (name, file_line) = frame[..at].rsplit_once(' ')?;
    let (_, line) = file_line.rsplit_once(':')?;
    line.parse::<u64>().ok()?;
    let system = frame[at + 3 + digits..]
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .filter(|s| !s.is_empty());
    let name = system.unwrap_or(name);
    (!name.is_empty()).then(|| name.to_string())
}

/// `a:[x] b:[y z] c:[1 bytes]` -> pairs; values are the bracket contents.
fn parse_labels(text: &str) -> std::result::Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (key, after) = rest.split_once(":[").ok_or("a label is not key:[value]")?;
        if key.is_empty() || key.contains([' ', ']']) {
            return Err(format!("bad label key {key:?}"));
        }
        // The value ends at the `]` that ends the line or is followed by ` key:[`.
        let mut end = None;
        for (i, _) in after.match_indices(']') {
            let next = &after[i + 1..];
            if next.is_empty() {
                end = Some((i, ""));
                break;
            }
            if let Some(n) = next.strip_prefix(' ') {
                if n.split_once(":[")
                    .is_some_and(|(k, _)| !k.is_empty() && !k.contains([' ', ']']))
                {
                    end = Some((i, n));
                    break;
                }
            }
        }
        let (i, next) = end.ok_or_else(|| format!("unterminated value of label {key:?}"))?;
        out.push((key.to_string(), after[..i].to_string()));
        rest = next;
    }
    Ok(out)
}

/// Where a joined run's CPU profiles come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProfileSource {
    /// hotspan's `pprof_scrape` takes the service's `/debug/pprof/profile` back to back, 1 s each.
    Scrape,
    /// The service's pyroscope-go pushes a CPU profile every second to hotspan's `pprof`
    /// receiver (`POST /ingest`, multipart).
    Push,
}

/// How a joined run is wired.
#[derive(Clone, Copy, Debug)]
pub struct JoinSetup {
    pub label_style: LabelStyle,
    /// How the Go SDK sends spans to hotspan's `otlp` receiver.
    pub protocol: OtlpProtocol,
    pub profiles: ProfileSource,
}

/// The real Go service joined by one hotspan: its OTLP spans and its CPU profiles (original
/// payloads kept) go through `spanprofile` into `traces.jsonl` and `profiles.jsonl` in the
/// hotspan's directory. Both processes have stopped, hotspan gracefully, once three profiles
/// (or as many as asked for) were written.
pub struct JoinedRun {
    pub hotspan: crate::Hotspan,
    pub truth: Vec<TruthSpan>,
}

/// [`joined_run_with`] over OTLP/HTTP protobuf with scraped profiles.
pub fn joined_run(label_style: LabelStyle) -> Result<JoinedRun> {
    joined_run_with(JoinSetup {
        label_style,
        protocol: OtlpProtocol::HttpProtobuf,
        profiles: ProfileSource::Scrape,
    })
}

pub fn joined_run_with(setup: JoinSetup) -> Result<JoinedRun> {
    joined_run_of(setup, Scenario::Checkout, 3)
}

/// [`joined_run`] with the "all" label style, of `scenario`, until `profiles` CPU profiles
/// were written.
pub fn joined_scenario(scenario: Scenario, profiles: usize) -> Result<JoinedRun> {
    joined_run_of(
        JoinSetup {
            label_style: LabelStyle::All,
            protocol: OtlpProtocol::HttpProtobuf,
            profiles: ProfileSource::Scrape,
        },
        scenario,
        profiles,
    )
}

fn joined_run_of(setup: JoinSetup, scenario: Scenario, profiles_wanted: usize) -> Result<JoinedRun> {
    // The first build can take a while on a busy machine: not while hotspan waits.
    go_binary();
    let otlp = crate::free_port();
    let go_port = crate::free_port();
    let push = crate::free_port();
    let otlp_receiver = match setup.protocol {
        OtlpProtocol::Grpc => format!(r#"{{protocols: {{grpc: {{endpoint: "127.0.0.1:{otlp}"}}}}}}"#),
        OtlpProtocol::HttpProtobuf | OtlpProtocol::HttpJson => {
            format!(r#"{{protocols: {{http: {{endpoint: "127.0.0.1:{otlp}"}}}}}}"#)
        }
    };
    let (profile_receiver, receiver_name) = match setup.profiles {
        ProfileSource::Scrape => (
            format!(
                r#"pprof_scrape:
    scrape_interval: 1s
    include_original_payload: true
    targets: [{{endpoint: "http://127.0.0.1:{go_port}", service_name: shop}}]"#
            ),
            "pprof_scrape",
        ),
        ProfileSource::Push => (
            format!(r#"pprof: {{endpoint: "127.0.0.1:{push}", include_original_payload: true}}"#),
            "pprof",
        ),
    };
    let mut hotspan = crate::Hotspan::start(&format!(
        r#"
receivers:
  otlp: {otlp_receiver}
  {profile_receiver}
connectors:
  spanprofile: {{wait: 4s}}
exporters:
  file/traces: {{path: "{{dir}}/traces.jsonl", flush_interval: 50ms}}
  file/profiles: {{path: "{{dir}}/profiles.jsonl", flush_interval: 50ms}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  pipelines:
    traces/in: {{receivers: [otlp], exporters: [spanprofile]}}
    profiles/in: {{receivers: [{receiver_name}], exporters: [spanprofile]}}
    traces/out: {{receivers: [spanprofile], exporters: [file/traces]}}
    profiles/out: {{receivers: [spanprofile], exporters: [file/profiles]}}
"#
    ))?;
    let pushing = setup.profiles == ProfileSource::Push;
    let mut go = GoService::start(GoOptions {
        scenario,
        otlp_endpoint: Some(format!("http://127.0.0.1:{otlp}")),
        otlp_protocol: setup.protocol,
        label_style: setup.label_style,
        workers: 2,
        listen_port: Some(go_port),
        pyroscope_endpoint: pushing.then(|| format!("http://127.0.0.1:{push}")),
        pyroscope_upload_rate: pushing.then_some(Duration::from_secs(1)),
        ..Default::default()
    })?;
    let profiles = hotspan.path("profiles.jsonl");
    wait_for(
        Duration::from_secs(40),
        &format!("{profiles_wanted} CPU profiles"),
        || (crate::profiles::read_profiles(&profiles).ok()?.len() >= profiles_wanted).then_some(()),
    )
    .with_context(|| {
        format!(
            "--- goservice log ---\n{}\n--- hotspan log ---\n{}",
            go.log(),
            hotspan.log()
        )
    })?;
    // A pushing service sends its last profile and waits for it before it exits.
    ensure!(go.stop()?.success(), "go service exit\n{}", go.log());
    // A graceful stop ends the scrapes and flushes every held span; whatever profile made it
    // in was joined and written, so both files describe the same input.
    ensure!(hotspan.terminate()?.success(), "hotspan exit\n{}", hotspan.log());
    let log = go.log();
    ensure!(
        !log.contains("errors"),
        "the service saw export or push errors:\n{log}"
    );
    Ok(JoinedRun {
        truth: go.truth()?,
        hotspan,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAW: &str = "\
PeriodType: cpu nanoseconds
Period: 10000000
Time: 2024-01-01 12:00:00.123 +0000 UTC
Duration: 2.01
Samples:
samples/count cpu/nanoseconds[dflt]
          3   30000000: 1 2 3 
                domain:[cart] span_id:[3a0e77c59c5db2f8] span_name:[validate cart]
          1   10000000: 4 3 
          2   20000000: 5 
                span_id:[b]
                bytes:[1024 bytes]
          1   10000000: 6 3 
Locations
     1: 0x6bcb24 M=1 main.validateCart /src/work.go:22 s=0
     2: 0x6bb724 M=1 main.inlined /src/a.go:9 s=0
             main.caller /src/a.go:60 s=0(main.caller)
     3: 0x6bb725 M=1 main.main /src/main.go:1 s=0
     4: 0x6bb726 M=1 [F] ??
     5: 0x6bb727 
     6: 0x6bb728 M=1 encoding/json.typeEncoder.OnceValue[go.shape.func].func3 /go/src/sync/oncefunc.go:95:0 s=0(encoding/json.typeEncoder.OnceValue[go.shape.func(*encoding/json.encodeState, reflect.Value, encoding/json.encOpts)].func3)
Mappings
1: 0x400000/0x6be000/0x0 /tmp/goservice  [FN]
";

    #[test]
    fn parses_samples_stacks_and_labels() {
        let p = parse_raw(RAW).unwrap();
        assert_eq!(p.sample_types, ["samples/count", "cpu/nanoseconds"]);
        assert_eq!(p.total, [7, 70_000_000]);
        assert_eq!(
            p.samples[0].stack,
            ["main.validateCart", "main.inlined", "main.caller", "main.main"]
        );
        assert_eq!(p.samples[0].labels["span_name"], "validate cart");
        assert_eq!(p.samples[1].leaf(), "??");
        assert_eq!(p.samples[2].stack, ["??"]);
        assert_eq!(p.samples[2].labels["bytes"], "1024 bytes");
        assert_eq!(p.flat("main.validateCart", "samples"), 3);
        assert_eq!(p.cum("main.main", "samples"), 5);
        assert_eq!(p.flat("main.main", "cpu"), 0);
        assert_eq!(p.label("domain", "cart", "cpu/nanoseconds"), 30_000_000);
        assert_eq!(p.label("span_id", "b", "samples"), 2);
        // A generic instantiation's name holds spaces; pprof prints it shortened, and whole
        // as the system name.
        let generic = "encoding/json.typeEncoder.OnceValue[go.shape.func(*encoding/json.encodeState, \
                       reflect.Value, encoding/json.encOpts)].func3";
        assert_eq!(p.samples[3].stack, [generic, "main.main"]);
        assert_eq!(p.flat(generic, "samples"), 1);
    }

    #[test]
    fn rejects_what_it_does_not_know() {
        for (from, to) in [
            ("Period: 10000000", "Perod: 10000000"),
            ("   30000000: 1 2 3 ", "   30000000 1 2 3 "),
            ("          1   10000000: 4 3 ", "          1: 4 3 "),
            (
                "[dflt]\n          3",
                "[dflt]\n                x:[y]\n          3",
            ),
            ("span_id:[b]", "span_id:[b"),
            ("     3: 0x6bb725", "     3: 6bb725"),
            (
                ": 0x6bb725 M=1 main.main /src/main.go:1 s=0",
                ": 0x6bb725 M=1 main.main",
            ),
            ("1: 0x400000", "one: 0x400000"),
            ("     5: 0x6bb727 \n", ""),
            ("Mappings\n", ""),
        ] {
            assert!(RAW.contains(from), "{from}");
            let text = RAW.replace(from, to);
            assert!(parse_raw(&text).is_err(), "accepted {from:?} -> {to:?}");
        }
    }
}
