//! The `file` exporter against otelcol's own (contrib v0.165, scripts/peers.sh):
//! - `format: proto` writes each request as otelcol does, protobuf behind a 4-byte big-endian
//!   length: hotspan's file and otelcol's, of the same spans, read back the same way;
//! - the file is truncated at start unless `append: true`, as in otelcol, but not when a
//!   reload rebuilds its exporter (the old one may still be writing it);
//! - `create_directory` makes the missing directories with `directory_permissions`;
//! - `rotation` names its backups as otelcol does and keeps `max_backups` of them.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use hotspan_config::Signal;
use hotspan_proto::synthetic::{Rng, Shape, Template};
use hotspan_proto::{Encoding, TracesBatch};
use hotspan_tests::peers::start_otelcol;
use hotspan_tests::{grpc_export, read_spans, signal, wait_for, Hotspan};

const SPANS: usize = 64;

/// 64 realistic spans (8 traces), ids fresh for each seed.
fn spans(seed: u64) -> Result<Vec<u8>> {
    let t = Template::new(Shape::Realistic, 0, SPANS, seed)?;
    Ok(t.fill(&mut Rng::new(seed), 1, 1_700_000_000_000_000_000).0)
}

/// The span ids of every whole record in a `format: proto` file; a record still being
/// written at the end is left for the next read.
fn proto_span_ids(path: &Path) -> Result<BTreeSet<Vec<u8>>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let mut ids = BTreeSet::new();
    let mut rest = &bytes[..];
    while let Some((len, after)) = rest.split_first_chunk::<4>() {
        let len = u32::from_be_bytes(*len) as usize;
        let Some(message) = after.get(..len) else { break };
        let batch = TracesBatch::decode(message, Encoding::Protobuf)
            .with_context(|| format!("a record of {}", path.display()))?;
        for rs in batch.resource_spans() {
            for span in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
                if !ids.insert(span.span_id.clone()) {
                    bail!("a span twice in {}", path.display());
                }
            }
        }
        rest = &after[len..];
    }
    Ok(ids)
}

fn wait_for_ids(path: &Path, n: usize) -> Result<BTreeSet<Vec<u8>>> {
    wait_for(
        Duration::from_secs(30),
        &format!("{n} spans in {}", path.display()),
        || proto_span_ids(path).ok().filter(|ids| ids.len() >= n),
    )
}

fn json_span_ids(path: &Path) -> Result<BTreeSet<Vec<u8>>> {
    Ok(read_spans(path)?.into_keys().collect())
}

#[test]
fn proto_files_are_otelcols_and_only_append_keeps_what_was_there() -> Result<()> {
    let out = tempfile::tempdir()?;
    let ours = out.path().join("made/by/hotspan/spans.pb");
    let lines = out.path().join("spans.jsonl");
    let mut otelcol = start_otelcol(
        r#"
receivers:
  otlp: {protocols: {grpc: {endpoint: "127.0.0.1:{port:grpc}"}}}
exporters:
  file: {path: "{dir}/spans.pb", format: proto, flush_interval: 50ms}
extensions:
  health_check: {endpoint: "127.0.0.1:{port:health}"}
service:
  extensions: [health_check]
  pipelines:
    traces: {receivers: [otlp], exporters: [file]}
"#,
    )?;
    let config = format!(
        r#"
receivers:
  otlp: {{protocols: {{grpc: {{endpoint: "127.0.0.1:{{port:grpc}}"}}}}}}
exporters:
  file/proto: {{path: "{ours}", format: proto, flush_interval: 50ms, create_directory: true, directory_permissions: "0750"}}
  file/json: {{path: "{lines}", append: true, flush_interval: 50ms}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  pipelines:
    traces: {{receivers: [otlp], exporters: [file/proto, file/json]}}
"#,
        ours = ours.display(),
        lines = lines.display()
    );

    let first = spans(1)?;
    grpc_export(otelcol.port("grpc"), Signal::Traces, first.clone())?
        .map_err(|s| anyhow::anyhow!("otelcol refused the spans: {s:?}"))?;
    let mut hotspan = Hotspan::start(&config)?;
    grpc_export(hotspan.port("grpc"), Signal::Traces, first)?
        .map_err(|s| anyhow::anyhow!("hotspan refused the spans: {s:?}"))?;
    let theirs = wait_for_ids(&otelcol.path("spans.pb"), SPANS).with_context(|| otelcol.log())?;
    let first_ids = wait_for_ids(&ours, SPANS).with_context(|| hotspan.log())?;
    ensure!(
        theirs == first_ids,
        "otelcol's file holds {} spans, hotspan's {}, not the same",
        theirs.len(),
        first_ids.len()
    );
    ensure!(hotspan.terminate()?.success(), "{}", hotspan.log());
    ensure!(otelcol.terminate()?.success(), "otelcol: {}", otelcol.log());
    ensure!(
        json_span_ids(&lines)? == first_ids,
        "the JSON file holds other spans"
    );

    // The directories made: the mode asked for, less the umask, and nothing more.
    for dir in ["made", "made/by", "made/by/hotspan"] {
        let mode = std::fs::metadata(out.path().join(dir))?.permissions().mode() & 0o777;
        ensure!(mode & !0o750 == 0, "{dir} has mode {mode:o}, not within 0750");
    }

    // Run again on other spans: the proto file starts over, the appended one keeps both.
    let second = spans(2)?;
    let mut hotspan = Hotspan::start(&config)?;
    grpc_export(hotspan.port("grpc"), Signal::Traces, second)?
        .map_err(|s| anyhow::anyhow!("hotspan refused the spans: {s:?}"))?;
    let second_ids = wait_for_ids(&ours, SPANS).with_context(|| hotspan.log())?;
    ensure!(
        second_ids.is_disjoint(&first_ids) && proto_span_ids(&ours)? == second_ids,
        "the proto file kept the first run's spans"
    );
    // A reload that changes the proto exporter rebuilds it on the same file: nothing is lost.
    std::fs::write(
        hotspan.path("config.yaml"),
        std::fs::read_to_string(hotspan.path("config.yaml"))?
            .replace("flush_interval: 50ms, create", "flush_interval: 60ms, create"),
    )?;
    signal(hotspan.child.id(), "HUP")?;
    wait_for(Duration::from_secs(20), "the reload", || {
        hotspan.log().contains("config reloaded").then_some(())
    })?;
    let third = spans(3)?;
    grpc_export(hotspan.port("grpc"), Signal::Traces, third)?
        .map_err(|s| anyhow::anyhow!("hotspan refused the spans: {s:?}"))?;
    let after_reload = wait_for_ids(&ours, 2 * SPANS).with_context(|| hotspan.log())?;
    ensure!(hotspan.terminate()?.success(), "{}", hotspan.log());
    ensure!(
        after_reload.is_superset(&second_ids) && after_reload.len() == 2 * SPANS,
        "the reload lost the spans written before it"
    );
    let both: BTreeSet<Vec<u8>> = first_ids.union(&after_reload).cloned().collect();
    ensure!(
        json_span_ids(&lines)? == both,
        "the appended file does not hold both runs' spans"
    );
    Ok(())
}

/// The files in `dir`: the one written (`spans.jsonl`) and backups as otelcol names them,
/// `spans-<UTC time>-size.jsonl`; anything else is an error.
fn rotated_files(dir: &Path) -> Result<(u64, Vec<(String, u64)>)> {
    let mut current = None;
    let mut backups = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let len = entry.metadata()?.len();
        if name == "spans.jsonl" {
            current = Some(len);
            continue;
        }
        let stamp = name
            .strip_prefix("spans-")
            .and_then(|n| n.strip_suffix("-size.jsonl"))
            .with_context(|| format!("{name} is not a backup's name"))?;
        let shape: String = stamp
            .chars()
            .map(|c| if c.is_ascii_digit() { '9' } else { c })
            .collect();
        ensure!(
            shape == "9999-99-99T99-99-99.999",
            "{name}: the time is not timberjack's"
        );
        backups.push((name, len));
    }
    backups.sort();
    Ok((current.context("no spans.jsonl")?, backups))
}

/// `rotation` as otelcol's: past `max_megabytes` the file is renamed with the time and begun
/// anew, and only `max_backups` backups stay. Both collectors get the same 4.5 MiB of JSON.
#[test]
fn rotation_names_and_keeps_backups_as_otelcol_does() -> Result<()> {
    const EXPORTER: &str = "file: {path: \"{dir}/out/spans.jsonl\", rotation: {max_megabytes: 1, max_backups: 2}, flush_interval: 50ms}";
    let config = format!(
        r#"
receivers:
  otlp: {{protocols: {{grpc: {{endpoint: "127.0.0.1:{{port:grpc}}"}}}}}}
exporters:
  {EXPORTER}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  pipelines:
    traces: {{receivers: [otlp], exporters: [file]}}
"#
    );
    // Enough requests for 4.5 MiB of JSON lines: four rotations at least.
    let line = TracesBatch::decode(&spans(10)?, Encoding::Protobuf)?
        .encode(Encoding::Json)
        .len();
    let n = (9 << 19) / line + 1;
    let requests: Vec<Vec<u8>> = (10..10 + n as u64).map(spans).collect::<Result<_>>()?;

    let mut written = Vec::new();
    for peer in ["otelcol", "hotspan"] {
        let out = tempfile::tempdir()?;
        std::fs::create_dir(out.path().join("out"))?;
        let config = config.replace("{dir}", &out.path().display().to_string());
        let (port, mut stop): (u16, Box<dyn FnMut() -> Result<String>>) = if peer == "otelcol" {
            let mut otelcol = start_otelcol(&config)?;
            (
                otelcol.port("grpc"),
                Box::new(move || {
                    ensure!(otelcol.terminate()?.success(), "otelcol: {}", otelcol.log());
                    Ok(otelcol.log())
                }),
            )
        } else {
            let mut hotspan = Hotspan::start(&config)?;
            (
                hotspan.port("grpc"),
                Box::new(move || {
                    ensure!(hotspan.terminate()?.success(), "{}", hotspan.log());
                    Ok(hotspan.log())
                }),
            )
        };
        for request in &requests {
            grpc_export(port, Signal::Traces, request.clone())?
                .map_err(|s| anyhow::anyhow!("{peer} refused the spans: {s:?}"))?;
        }
        let log = stop()?;
        let (current, backups) = rotated_files(&out.path().join("out")).with_context(|| log.clone())?;
        ensure!(
            backups.len() == 2,
            "{peer} kept {} backups, not max_backups 2: {backups:?}",
            backups.len()
        );
        for (name, len) in &backups {
            ensure!(*len <= 1 << 20, "{peer}'s {name} is {len} bytes, past 1 MiB");
        }
        ensure!(current <= 1 << 20, "{peer}'s file is {current} bytes");
        if peer == "hotspan" {
            // Every file holds whole requests: each line reads as one.
            for (name, _) in &backups {
                let spans = read_spans(&out.path().join("out").join(name))?;
                ensure!(
                    spans.len() % SPANS == 0 && !spans.is_empty(),
                    "{name} holds {} spans",
                    spans.len()
                );
            }
        }
        written.push((peer, backups.len()));
    }
    ensure!(written[0].1 == written[1].1, "{written:?}");
    Ok(())
}
