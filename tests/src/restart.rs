//! Stopping hotspan hard and starting it again on the same config and directory, for tests of
//! what survives (persistent queues), and reading output that may hold a span more than once.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hotspan_proto::otlp::trace::v1::Span;
use hotspan_proto::{Encoding, TracesBatch};

use crate::{hotspan_bin, wait_for, Hotspan};

impl Hotspan {
    /// SIGKILL: no shutdown, no flushing, as a crash or an OOM kill would leave things.
    pub fn kill(&mut self) -> Result<()> {
        self.child.kill().context("kill -9 hotspan")?;
        self.child.wait().context("reaping hotspan")?;
        Ok(())
    }

    /// Starts hotspan again on the same config file, directory and ports, once the previous
    /// process has exited (after `kill` or `terminate`); waits until it reports healthy. The
    /// log file is appended to, so `log()` tells the whole story.
    pub fn restart(&mut self) -> Result<()> {
        let exited = wait_for(Duration::from_secs(30), "the previous hotspan to exit", || {
            self.child.try_wait().ok().flatten()
        });
        if exited.is_err() {
            bail!("hotspan is still running; stop it before a restart");
        }
        let log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.path("hotspan.log"))?;
        self.child = Command::new(hotspan_bin())
            .arg("--config")
            .arg(self.path("config.yaml"))
            .arg("--shutdown-timeout")
            .arg("15s")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("restarting hotspan")?;
        self.wait_healthy()
    }

    /// Writes `config` (its `{dir}` and `{port:NAME}` filled as `start` filled them) over the
    /// running config and sends SIGHUP; returns once the log says it was reloaded once more.
    /// A refused reload is an error, with the end of the log.
    pub fn reload(&self, config: &str) -> Result<()> {
        let mut text = config.replace("{dir}", &self.dir.path().display().to_string());
        for (name, port) in &self.ports {
            text = text.replace(&format!("{{port:{name}}}"), &port.to_string());
        }
        let log = self.log();
        let (reloaded, refused) = (
            log.matches("config reloaded").count(),
            log.matches("config reload refused").count(),
        );
        std::fs::write(self.path("config.yaml"), text)?;
        crate::signal(self.child.id(), "HUP")?;
        wait_for(Duration::from_secs(40), "the reload", || {
            let log = self.log();
            if log.matches("config reload refused").count() > refused {
                return Some(Err(anyhow::anyhow!("reload refused")));
            }
            (log.matches("config reloaded").count() > reloaded).then_some(Ok(()))
        })
        .and_then(|r| r)
        .with_context(|| {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!("--- the log's end ---\n{}", tail.join("\n"))
        })
    }
}

/// A backend for tests of what arrives: a hotspan taking OTLP/gRPC on `port` (chosen by the
/// caller, so senders can be configured before it runs, and kept across its restarts) and
/// appending every span to `{dir}/out.jsonl` within 50 ms (`append`: a restart keeps what the
/// file holds, where otelcol's default truncates it).
pub fn file_backend(port: u16) -> String {
    format!(
        r#"
receivers:
  otlp: {{protocols: {{grpc: {{endpoint: "127.0.0.1:{port}"}}}}}}
exporters:
  file: {{path: "{{dir}}/out.jsonl", append: true, flush_interval: 50ms}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  pipelines:
    traces: {{receivers: [otlp], exporters: [file]}}
"#
    )
}

/// Calls `f` on every span in a file exporter's output (one OTLP/JSON export request per
/// line), a span written twice twice; a missing file has none.
pub fn each_span(path: &Path, mut f: impl FnMut(&Span) -> Result<()>) -> Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e.into()),
    };
    // The last line may be half written while hotspan runs; complete lines end in '\n'.
    for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
        let batch = TracesBatch::decode(line.trim_end().as_bytes(), Encoding::Json)
            .context("a file exporter line")?;
        for span in batch
            .resource_spans()
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
        {
            f(span)?;
        }
    }
    Ok(())
}

/// How many times each span id appears in a file exporter's output; unlike `read_spans`, a
/// span seen twice is counted, not an error.
pub fn count_spans(path: &Path) -> Result<BTreeMap<Vec<u8>, usize>> {
    let mut out = BTreeMap::new();
    each_span(path, |span| {
        *out.entry(span.span_id.clone()).or_insert(0) += 1;
        Ok(())
    })?;
    Ok(out)
}
