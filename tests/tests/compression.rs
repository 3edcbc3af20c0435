//! otelcol's compression codecs and levels between hotspan and the real OpenTelemetry
//! Collector (v0.165, scripts/peers.sh), both ways, over gRPC and HTTP:
//! - hotspan's `otlp_grpc` and `otlp_http` exporters with `compression` gzip (at level 9),
//!   zstd (at level 7), snappy and none, and `otlp_http`'s also with zlib (at level 1),
//!   deflate, lz4 and x-snappy-framed, each into its own otelcol receiver and file: otelcol
//!   reads every codec and writes every span;
//! - otelcol's exporters with every codec they write (zstd and snappy over gRPC; those,
//!   `x-snappy-framed`, `zlib`, `deflate` and `lz4` over HTTP) into hotspan's receivers:
//!   hotspan reads them all, and framed snappy sent as `snappy`, as older otelcol sent it;
//! - a level a codec does not take, and an HTTP-only codec over gRPC, are refused at start
//!   with the field named;
//! - big bodies are compressed on threads of their own at the lowest priority, not on the
//!   threads that answer receivers.

use std::time::Duration;

use anyhow::{ensure, Result};
use hotspan_config::Signal;
use hotspan_proto::synthetic::{Rng, Shape, Template};
use hotspan_tests::peers::start_otelcol;
use hotspan_tests::{grpc_export, gzip, json_spans, post, wait_for_spans, Hotspan};

const SPANS: usize = 64;

/// 64 realistic spans (8 traces) with fresh ids.
fn spans(seed: u64) -> Result<Vec<u8>> {
    let t = Template::new(Shape::Realistic, 0, SPANS, seed)?;
    Ok(t.fill(&mut Rng::new(seed), 1, 1_700_000_000_000_000_000).0)
}

/// hotspan taking OTLP/gRPC into `exporters` (YAML under `exporters:`), all of `names`.
fn start_hotspan(exporters: &str, names: &[String]) -> Result<Hotspan> {
    Hotspan::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{{port:grpc}}"}}
exporters:
{exporters}extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  pipelines:
    traces: {{receivers: [otlp], exporters: [{}]}}
"#,
        names.join(", ")
    ))
}

/// Each codec hotspan's exporters write: name, config, and whether gRPC carries it (otelcol's
/// gRPC knows gzip, zstd and snappy; its HTTP also zlib, deflate, lz4 and framed snappy).
const CODECS: &[(&str, &str, bool)] = &[
    ("gzip9", "compression: gzip, compression_params: {level: 9}", true),
    ("zstd7", "compression: zstd, compression_params: {level: 7}", true),
    ("snappy", "compression: snappy", true),
    ("none", "compression: none", true),
    (
        "zlib1",
        "compression: zlib, compression_params: {level: 1}",
        false,
    ),
    ("deflate", "compression: deflate", false),
    ("lz4", "compression: lz4", false),
    ("snappy_framed", "compression: x-snappy-framed", false),
];

/// The protocols `CODECS`' entry goes over.
fn protocols(grpc: bool) -> &'static [&'static str] {
    if grpc {
        &["grpc", "http"]
    } else {
        &["http"]
    }
}

#[test]
fn hotspan_exports_with_every_otelcol_codec_and_otelcol_reads_each() -> Result<()> {
    let (mut receivers, mut exporters, mut pipelines) = (String::new(), String::new(), String::new());
    for (name, _, grpc) in CODECS {
        for proto in protocols(*grpc) {
            receivers.push_str(&format!(
                "  otlp/{proto}_{name}:\n    protocols:\n      {proto}: {{endpoint: \"127.0.0.1:{{port:{proto}_{name}}}\"}}\n"
            ));
            exporters.push_str(&format!(
                "  file/{proto}_{name}: {{path: \"{{dir}}/{proto}_{name}.jsonl\", flush_interval: 50ms}}\n"
            ));
            pipelines.push_str(&format!(
                "    traces/{proto}_{name}: {{receivers: [otlp/{proto}_{name}], exporters: [file/{proto}_{name}]}}\n"
            ));
        }
    }
    let mut otelcol = start_otelcol(&format!(
        "receivers:\n{receivers}exporters:\n{exporters}extensions:\n  health_check: {{endpoint: \"127.0.0.1:{{port:health}}\"}}\nservice:\n  extensions: [health_check]\n  pipelines:\n{pipelines}"
    ))?;

    let mut out = String::new();
    let mut names = Vec::new();
    for (name, codec, grpc) in CODECS {
        if *grpc {
            out.push_str(&format!(
                "  otlp_grpc/{name}: {{endpoint: \"127.0.0.1:{}\", tls: {{insecure: true}}, {codec}}}\n",
                otelcol.port(&format!("grpc_{name}"))
            ));
            names.push(format!("otlp_grpc/{name}"));
        }
        out.push_str(&format!(
            "  otlp_http/{name}: {{endpoint: \"http://127.0.0.1:{}\", {codec}}}\n",
            otelcol.port(&format!("http_{name}"))
        ));
        names.push(format!("otlp_http/{name}"));
    }
    let mut hotspan = start_hotspan(&out, &names)?;
    grpc_export(hotspan.port("grpc"), Signal::Traces, spans(1)?)?
        .map_err(|s| anyhow::anyhow!("hotspan refused the spans: {s:?}"))?;
    for (name, _, grpc) in CODECS {
        for proto in protocols(*grpc) {
            let got = wait_for_spans(
                &otelcol.path(&format!("{proto}_{name}.jsonl")),
                SPANS,
                Duration::from_secs(30),
            )
            .map_err(|e| {
                anyhow::anyhow!(
                    "{proto} {name}: {e}\n--- otelcol ---\n{}\n--- hotspan ---\n{}",
                    otelcol.log(),
                    hotspan.log()
                )
            })?;
            ensure!(got.len() == SPANS, "{proto} {name}: {} spans", got.len());
        }
    }
    ensure!(hotspan.terminate()?.success());
    ensure!(otelcol.terminate()?.success(), "otelcol: {}", otelcol.log());
    Ok(())
}

/// otelcol's codecs over gRPC (zstd, snappy) and over HTTP (those and every other one its
/// exporters write: `x-snappy-framed`, `zlib`, `deflate`, `lz4`), each its own spans.
const OTELCOL_CODECS: &[(&str, bool)] = &[
    ("zstd", true),
    ("snappy", true),
    ("x-snappy-framed", false),
    ("zlib", false),
    ("deflate", false),
    ("lz4", false),
];

#[test]
fn otelcol_exports_with_each_of_its_codecs_and_hotspan_reads_them() -> Result<()> {
    let mut hotspan = Hotspan::start(
        r#"
receivers:
  otlp/grpc:
    protocols:
      grpc: {endpoint: "127.0.0.1:{port:grpc}"}
  otlp/http:
    protocols:
      http: {endpoint: "127.0.0.1:{port:http}"}
exporters:
  file/grpc: {path: "{dir}/grpc.jsonl", flush_interval: 50ms}
  file/http: {path: "{dir}/http.jsonl", flush_interval: 50ms}
extensions:
  health_check: {endpoint: "127.0.0.1:{port:health}"}
service:
  extensions: [health_check]
  pipelines:
    traces/grpc: {receivers: [otlp/grpc], exporters: [file/grpc]}
    traces/http: {receivers: [otlp/http], exporters: [file/http]}
"#,
    )?;
    let (g, h) = (hotspan.port("grpc"), hotspan.port("http"));
    let (mut receivers, mut exporters, mut pipelines) = (String::new(), String::new(), String::new());
    for (i, (codec, grpc)) in OTELCOL_CODECS.iter().enumerate() {
        receivers +=
            &format!("  otlp/c{i}:\n    protocols:\n      grpc: {{endpoint: \"127.0.0.1:{{port:c{i}}}\"}}\n");
        exporters +=
            &format!("  otlp_http/c{i}: {{endpoint: \"http://127.0.0.1:{h}\", compression: {codec}}}\n");
        let mut to = format!("otlp_http/c{i}");
        if *grpc {
            exporters += &format!(
                "  otlp_grpc/c{i}: {{endpoint: \"127.0.0.1:{g}\", tls: {{insecure: true}}, compression: {codec}}}\n"
            );
            to += &format!(", otlp_grpc/c{i}");
        }
        pipelines += &format!("    traces/c{i}: {{receivers: [otlp/c{i}], exporters: [{to}]}}\n");
    }
    let mut otelcol = start_otelcol(&format!(
        r#"
receivers:
{receivers}exporters:
{exporters}extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
service:
  extensions: [health_check]
  pipelines:
{pipelines}"#
    ))?;
    for (i, (codec, _)) in OTELCOL_CODECS.iter().enumerate() {
        grpc_export(
            otelcol.port(&format!("c{i}")),
            Signal::Traces,
            spans(2 + i as u64)?,
        )?
        .map_err(|s| anyhow::anyhow!("otelcol refused the spans for {codec}: {s:?}"))?;
    }
    let over_grpc = OTELCOL_CODECS.iter().filter(|(_, grpc)| *grpc).count();
    for (via, sets) in [("grpc", over_grpc), ("http", OTELCOL_CODECS.len())] {
        let got = wait_for_spans(
            &hotspan.path(&format!("{via}.jsonl")),
            sets * SPANS,
            Duration::from_secs(30),
        )
        .map_err(|e| {
            anyhow::anyhow!(
                "{via}: {e}\n--- otelcol ---\n{}\n--- hotspan ---\n{}",
                otelcol.log(),
                hotspan.log()
            )
        })?;
        ensure!(got.len() == sets * SPANS, "{via}: {} spans", got.len());
    }

    // otelcol before v0.131 wrote the framed format under `Content-Encoding: snappy`; its
    // receivers tell the two apart by the stream's first bytes, and so does hotspan.
    let mut framed = snap::write::FrameEncoder::new(Vec::new());
    std::io::Write::write_all(&mut framed, &spans(40)?)?;
    let framed = framed.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    let answer = hotspan_tests::post(
        &format!("http://127.0.0.1:{h}/v1/traces"),
        "application/x-protobuf",
        Some("snappy"),
        framed,
    )?;
    ensure!(
        answer.status == 200,
        "framed snappy as `snappy`: {} {}",
        answer.status,
        answer.body
    );
    let all = (OTELCOL_CODECS.len() + 1) * SPANS;
    wait_for_spans(&hotspan.path("http.jsonl"), all, Duration::from_secs(30))?;

    ensure!(otelcol.terminate()?.success(), "otelcol: {}", otelcol.log());
    ensure!(hotspan.terminate()?.success());
    Ok(())
}

#[test]
fn a_level_the_codec_does_not_take_is_refused_at_start() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("config.yaml");
    let validate = |exporter: &str| -> Result<(bool, String)> {
        std::fs::write(
            &config,
            format!(
                r#"
receivers:
  otlp: {{protocols: {{grpc: {{endpoint: "127.0.0.1:0"}}}}}}
exporters:
  {exporter}
service:
  pipelines:
    traces: {{receivers: [otlp], exporters: [otlp]}}
"#
            ),
        )?;
        let out = std::process::Command::new(hotspan_tests::hotspan_bin())
            .args(["validate", "--config"])
            .arg(&config)
            .output()?;
        let text = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
        Ok((out.status.success(), text))
    };
    let (ok, text) = validate(
        r#"otlp: {endpoint: "127.0.0.1:4317", compression: snappy, compression_params: {level: 3}}"#,
    )?;
    ensure!(!ok, "a snappy level was taken: {text}");
    ensure!(
        text.contains("compression_params.level") && text.contains("snappy"),
        "the error names the field and the codec: {text}"
    );
    let (ok, text) = validate(r#"otlp: {endpoint: "127.0.0.1:4317", compression: lz4}"#)?;
    ensure!(!ok, "lz4 over gRPC was taken: {text}");
    ensure!(
        text.contains("exporters.otlp.compression") && text.contains("not a gRPC codec"),
        "the error names the field: {text}"
    );
    let (ok, text) =
        validate(r#"otlp: {endpoint: "127.0.0.1:4317", compression: gzip, compression_params: {level: 9}}"#)?;
    ensure!(ok, "a good config was refused: {text}");
    Ok(())
}

/// Each of the process's threads named `name`, with its nice value (field 19 of
/// `/proc/<pid>/task/<tid>/stat`, after the parenthesised name).
fn nice_of_threads(pid: u32, name: &str) -> Result<Vec<i32>> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let dir = task?.path();
        if std::fs::read_to_string(dir.join("comm"))?.trim_end() != name {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat"))?;
        let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
        // After the name: state is field 3, nice field 19.
        let nice = after
            .split_whitespace()
            .nth(16)
            .ok_or_else(|| anyhow::anyhow!("short stat: {stat}"))?;
        out.push(nice.parse()?);
    }
    Ok(out)
}

#[test]
fn big_bodies_are_compressed_at_the_lowest_priority_and_delivered() -> Result<()> {
    let mut otelcol = start_otelcol(concat!(
        "receivers:\n",
        "  otlp/grpc: {protocols: {grpc: {endpoint: \"127.0.0.1:{port:grpc}\"}}}\n",
        "  otlp/http: {protocols: {http: {endpoint: \"127.0.0.1:{port:http}\"}}}\n",
        "exporters:\n",
        "  file/grpc: {path: \"{dir}/grpc.jsonl\", flush_interval: 50ms}\n",
        "  file/http: {path: \"{dir}/http.jsonl\", flush_interval: 50ms}\n",
        "extensions:\n  health_check: {endpoint: \"127.0.0.1:{port:health}\"}\n",
        "service:\n  extensions: [health_check]\n  pipelines:\n",
        "    traces/grpc: {receivers: [otlp/grpc], exporters: [file/grpc]}\n",
        "    traces/http: {receivers: [otlp/http], exporters: [file/http]}\n",
    ))?;
    let mut hotspan = start_hotspan(
        &format!(
            "  otlp_grpc: {{endpoint: \"127.0.0.1:{}\", tls: {{insecure: true}}, compression: gzip}}\n  otlp_http: {{endpoint: \"http://127.0.0.1:{}\", compression: gzip}}\n",
            otelcol.port("grpc"),
            otelcol.port("http")
        ),
        &["otlp_grpc".to_string(), "otlp_http".to_string()],
    )?;
    // 512 realistic spans: about 200 KB, past what is compressed inline.
    let t = Template::new(Shape::Realistic, 0, 512, 4)?;
    let (body, _) = t.fill(&mut Rng::new(4), 1, 1_700_000_000_000_000_000);
    ensure!(body.len() > 64 * 1024, "{} bytes", body.len());
    grpc_export(hotspan.port("grpc"), Signal::Traces, body)?
        .map_err(|s| anyhow::anyhow!("hotspan refused the spans: {s:?}"))?;
    // Each exporter's copy arrives.
    for proto in ["grpc", "http"] {
        let got = wait_for_spans(
            &otelcol.path(&format!("{proto}.jsonl")),
            512,
            Duration::from_secs(30),
        )
        .map_err(|e| {
            anyhow::anyhow!(
                "{proto}: {e}\n--- otelcol ---\n{}\n--- hotspan ---\n{}",
                otelcol.log(),
                hotspan.log()
            )
        })?;
        ensure!(got.len() == 512, "{proto}: {} spans", got.len());
    }

    let pid = hotspan.child.id();
    let compressors = nice_of_threads(pid, hotspan::exporterhelper::COMPRESSION_THREAD)?;
    ensure!(!compressors.is_empty(), "no compression threads");
    ensure!(
        compressors
            .iter()
            .all(|n| *n == hotspan::exporterhelper::COMPRESSION_NICE),
        "compression threads' nice values: {compressors:?}"
    );
    // tokio's worker threads, which answer the receivers.
    let workers = nice_of_threads(pid, "tokio-rt-worker")?;
    ensure!(
        !workers.is_empty() && workers.iter().all(|n| *n == 0),
        "the async workers' nice values: {workers:?}"
    );
    ensure!(hotspan.terminate()?.success());
    ensure!(otelcol.terminate()?.success(), "otelcol: {}", otelcol.log());
    Ok(())
}

/// `compression_algorithms` limits the encodings an HTTP receiver takes, as otelcol's does:
/// gzip is refused with 400 where only "" (none) and zstd are listed, and taken by default.
#[test]
fn an_http_receiver_takes_only_its_compression_algorithms() -> Result<()> {
    let hotspan = Hotspan::start(
        r#"
receivers:
  otlp/strict:
    protocols:
      http: {endpoint: "127.0.0.1:{port:strict}", compression_algorithms: ["", zstd]}
  otlp/default:
    protocols:
      http: {endpoint: "127.0.0.1:{port:default}"}
exporters:
  file: {path: "{dir}/traces.jsonl", flush_interval: 50ms}
extensions:
  health_check: {endpoint: "127.0.0.1:{port:health}"}
service:
  extensions: [health_check]
  pipelines:
    traces: {receivers: [otlp/strict, otlp/default], exporters: [file]}
"#,
    )?;
    let send = |port: &str, first: u64, encoding: Option<&str>| {
        let body = json_spans("enc", first, 2).into_bytes();
        let body = if encoding.is_some() { gzip(&body) } else { body };
        let url = format!("http://127.0.0.1:{}/v1/traces", hotspan.port(port));
        post(&url, "application/json", encoding, body)
    };
    let refused = send("strict", 0, Some("gzip"))?;
    ensure!(
        refused.status == 400 && refused.body.contains("compression_algorithms"),
        "gzip where it is not listed: {} {}",
        refused.status,
        refused.body
    );
    for (port, first, encoding) in [("strict", 10, None), ("default", 20, Some("gzip"))] {
        let a = send(port, first, encoding)?;
        ensure!(a.status == 200, "{port} {encoding:?}: {} {}", a.status, a.body);
    }
    let spans = wait_for_spans(&hotspan.path("traces.jsonl"), 4, Duration::from_secs(20))?;
    ensure!(
        spans.len() == 4,
        "{} spans arrived, expected the 4 taken",
        spans.len()
    );
    Ok(())
}
