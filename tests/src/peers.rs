//! Peers the tests run against as real programs: the OpenTelemetry Collector (a minimal build,
//! tests/peers/otelcol) and Jaeger (tests/peers/jaeger). `scripts/peers.sh` builds each once per
//! version and module contents into `${XDG_CACHE_HOME:-~/.cache}/hotspan/<peer>-<version>-<key>/`;
//! the version is the one the module's go.mod requires and the key a hash of the module's files,
//! so the script and the tests agree without a second list.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::{free_port, http_status, signal, wait_for};

/// Where scripts/peers.sh puts its builds.
fn cache_dir() -> Result<PathBuf> {
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(xdg).join("hotspan"));
    }
    let home = std::env::var_os("HOME").context("neither XDG_CACHE_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cache/hotspan"))
}

/// The version of `module` that tests/peers/`dir`/go.mod requires, without the `v`.
pub fn peer_version(dir: &str, module: &str) -> Result<String> {
    let go_mod = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("peers")
        .join(dir)
        .join("go.mod");
    let text = std::fs::read_to_string(&go_mod).with_context(|| format!("reading {}", go_mod.display()))?;
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let first = words.next()?;
            // `require x v1` on one line, or `x v1` inside a require block.
            let (name, version) = if first == "require" {
                (words.next()?, words.next()?)
            } else {
                (first, words.next()?)
            };
            (name == module).then(|| version.strip_prefix('v').map(str::to_string))?
        })
        .next()
        .with_context(|| format!("{} does not require {module}", go_mod.display()))
}

/// The key scripts/peers.sh puts in a build's directory name: the first 16 hex digits of the
/// sha256 of the module's go.mod, go.sum and .go files, concatenated in name order.
fn module_key(dir: &str) -> Result<String> {
    let module = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers").join(dir);
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&module).with_context(|| format!("reading {}", module.display()))? {
        let entry = entry?;
        let name = entry.file_name().into_string().unwrap_or_default();
        if entry.file_type()?.is_file() && (name == "go.mod" || name == "go.sum" || name.ends_with(".go")) {
            files.push(name);
        }
    }
    files.sort();
    let mut hash = Sha256::new();
    for name in &files {
        let path = module.join(name);
        hash.update(std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?);
    }
    let hex = hex::encode(hash.finalize());
    Ok(hex[..16].to_string())
}

/// The path of a peer binary, or an error that says how to build it.
fn peer_bin(name: &str, dir: &str, module: &str) -> Result<PathBuf> {
    let version = peer_version(dir, module)?;
    let bin = cache_dir()?
        .join(format!("{name}-{version}-{}", module_key(dir)?))
        .join(name);
    if !bin.is_file() {
        bail!(
            "{name} {version} of tests/peers/{dir} as it is now is not built ({} is missing): run \
             scripts/peers.sh (scripts/test.sh runs it before the tests)",
            bin.display()
        );
    }
    Ok(bin)
}

/// The minimal OpenTelemetry Collector build.
pub fn otelcol_bin() -> Result<PathBuf> {
    peer_bin("otelcol", "otelcol", "go.opentelemetry.io/collector/otelcol")
}

/// Jaeger (the v2 binary, an otelcol distribution configured by YAML).
pub fn jaeger_bin() -> Result<PathBuf> {
    peer_bin("jaeger", "jaeger", "github.com/jaegertracing/jaeger")
}

/// `config` with `{dir}` replaced by `dir` and each `{port:NAME}` by a free port (the same
/// port for the same name), and the ports picked.
pub fn fill_placeholders(config: &str, dir: &Path) -> Result<(String, BTreeMap<String, u16>)> {
    let mut ports = BTreeMap::new();
    let mut config = config.replace("{dir}", &dir.display().to_string());
    while let Some(start) = config.find("{port:") {
        let end = start + config[start..].find('}').context("unclosed {port:")?;
        let name = config[start + 6..end].to_string();
        let port = *ports.entry(name).or_insert_with(free_port);
        config.replace_range(start..=end, &port.to_string());
    }
    Ok((config, ports))
}

/// A peer process this test started. Killed on drop if still running.
pub struct Peer {
    pub name: &'static str,
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub ports: BTreeMap<String, u16>,
}

impl Peer {
    pub fn port(&self, name: &str) -> u16 {
        self.ports[name]
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("peer.log")).unwrap_or_default()
    }

    /// Waits until `GET path` on 127.0.0.1:`port` answers 200, failing early if the process
    /// exits.
    pub fn wait_ready(&mut self, port: u16, path: &str) -> Result<()> {
        let name = self.name;
        let result = wait_for(Duration::from_secs(60), &format!("{name} to be ready"), || {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(Err(anyhow::anyhow!("{name} exited early with {status}")));
            }
            let ok = http_status(port, path).map(|c| c == 200).unwrap_or(false);
            ok.then_some(Ok(()))
        });
        match result.and_then(|r| r) {
            Ok(()) => Ok(()),
            Err(e) => bail!("{e}\n--- {name} log ---\n{}", self.log()),
        }
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self) -> Result<ExitStatus> {
        signal(self.child.id(), "TERM")?;
        wait_for(Duration::from_secs(30), &format!("{} to exit", self.name), || {
            self.child.try_wait().ok().flatten()
        })
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `bin` with `args` and `env` in a fresh directory, its output to `peer.log` there.
pub fn spawn(name: &'static str, bin: &Path, args: &[String], env: &[(&str, String)]) -> Result<Peer> {
    spawn_in(name, bin, args, env, tempfile::tempdir()?, BTreeMap::new())
}

fn spawn_in(
    name: &'static str,
    bin: &Path,
    args: &[String],
    env: &[(&str, String)],
    dir: tempfile::TempDir,
    ports: BTreeMap<String, u16>,
) -> Result<Peer> {
    let log = std::fs::File::create(dir.path().join("peer.log"))?;
    let child = Command::new(bin)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    Ok(Peer {
        name,
        child,
        dir,
        ports,
    })
}

/// Starts the OpenTelemetry Collector on `config` (placeholders as in
/// [`fill_placeholders`]), with profiles enabled, and waits for its `health_check` extension,
/// which the config must put on `{port:health}` (path `/`).
pub fn start_otelcol(config: &str) -> Result<Peer> {
    let bin = otelcol_bin()?;
    let dir = tempfile::tempdir()?;
    let (mut config, ports) = fill_placeholders(config, dir.path())?;
    if !ports.contains_key("health") {
        bail!("the otelcol config has no health_check on {{port:health}}");
    }
    // Its own metrics default to localhost:8888, which parallel tests (and hotspan) would
    // fight over.
    if !config.contains("telemetry") {
        config = config.replacen(
            "\nservice:\n",
            "\nservice:\n  telemetry: {metrics: {level: none}}\n",
            1,
        );
    }
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config)?;
    let args = vec![
        format!("--config=file:{}", path.display()),
        // Profiles pipelines are behind this gate in v0.165 (service/internal/metadata).
        "--feature-gates=service.profilesSupport".to_string(),
    ];
    let mut peer = spawn_in("otelcol", &bin, &args, &[], dir, ports)?;
    peer.wait_ready(peer.port("health"), "/")?;
    Ok(peer)
}

/// Jaeger all-in-one (v2) with in-memory storage: OTLP on `otlp_grpc` and `otlp_http`, the
/// query API (HTTP) on `query`, all on 127.0.0.1. Ready once its health check says so and the
/// query API answers.
pub fn start_jaeger() -> Result<Peer> {
    let bin = jaeger_bin()?;
    let dir = tempfile::tempdir()?;
    // Jaeger v2 is an otelcol distribution: the all-in-one it runs without a config listens on
    // fixed ports on localhost, so the tests give it this config instead.
    let (config, ports) = fill_placeholders(
        r#"
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics: {level: none}
    logs: {level: info}
extensions:
  healthcheckv2:
    use_v2: true
    http: {endpoint: "127.0.0.1:{port:health}"}
  jaeger_query:
    enable_tracing: false
    storage: {traces: memstore}
    http: {endpoint: "127.0.0.1:{port:query}"}
    grpc: {endpoint: "127.0.0.1:{port:query_grpc}"}
  jaeger_storage:
    backends:
      memstore:
        memory: {max_traces: 10000}
receivers:
  otlp:
    protocols:
      grpc: {endpoint: "127.0.0.1:{port:otlp_grpc}"}
      http: {endpoint: "127.0.0.1:{port:otlp_http}"}
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"#,
        dir.path(),
    )?;
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config)?;
    let args = vec![format!("--config=file:{}", path.display())];
    let mut peer = spawn_in("jaeger", &bin, &args, &[], dir, ports)?;
    peer.wait_ready(peer.port("health"), "/status")?;
    peer.wait_ready(peer.port("query"), "/api/services")?;
    Ok(peer)
}
