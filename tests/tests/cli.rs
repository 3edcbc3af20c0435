//! The command line: `validate` on good and broken configs, `components`, and running the
//! embedded default config.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use hotspan_tests::{hotspan_bin, json_spans, post, signal, wait_for, Hotspan};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    Ok(files)
}

#[test]
fn every_example_config_validates() -> Result<()> {
    let examples = yaml_files(&repo().join("config/examples"))?;
    ensure!(
        examples.len() >= 3,
        "expected example configs, found {examples:?}"
    );
    for file in examples {
        let out = Command::new(hotspan_bin())
            .args(["validate", "--config"])
            .arg(&file)
            .env("BACKEND", "127.0.0.1:4317")
            .output()?;
        ensure!(
            out.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Each file under tests/configs/broken starts with `# expect:` lines; validate must fail and
/// print each of them, and so must `run`, before it starts anything: one checker for both.
#[test]
fn broken_configs_print_every_expected_problem() -> Result<()> {
    let broken = yaml_files(&repo().join("tests/configs/broken"))?;
    ensure!(broken.len() >= 5, "expected broken configs, found {broken:?}");
    for file in broken {
        let text = std::fs::read_to_string(&file)?;
        let expected: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        ensure!(!expected.is_empty(), "{} has no # expect: lines", file.display());
        // `validate FILE`, `validate --config FILE` and `run --config FILE` all refuse it.
        let runs = [
            vec!["validate".as_ref(), file.as_os_str()],
            vec!["validate".as_ref(), "--config".as_ref(), file.as_os_str()],
            vec!["run".as_ref(), "--config".as_ref(), file.as_os_str()],
        ];
        for args in runs {
            let out = Command::new(hotspan_bin())
                .args(&args)
                .env_remove("HOTSPAN_TEST_UNSET_BACKEND")
                .output()?;
            let stderr = String::from_utf8_lossy(&out.stderr);
            ensure!(!out.status.success(), "{args:?} accepted it");
            for want in &expected {
                ensure!(stderr.contains(want), "{args:?}: missing {want:?} in:\n{stderr}");
            }
        }
    }
    Ok(())
}

#[test]
fn components_lists_every_kind_with_signals() -> Result<()> {
    let out = Command::new(hotspan_bin()).arg("components").output()?;
    let text = String::from_utf8(out.stdout)?;
    for want in [
        "otlp: traces",
        "batch: traces",
        "otlp_grpc (alias otlp)",
        "otlp_http (alias otlphttp)",
        "forward: traces -> traces",
        "health_check",
    ] {
        ensure!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    Ok(())
}

/// `hotspan` with no arguments runs the embedded config on 127.0.0.1:4317/4318, says so, takes
/// spans, and exits 0 on SIGINT.
#[test]
fn no_arguments_runs_the_embedded_default() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let log_path = dir.path().join("log");
    let mut child = Command::new(hotspan_bin())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path)?)
        .spawn()
        .context("starting hotspan")?;
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let ready = wait_for(Duration::from_secs(20), "the default config to listen", || {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(Err(anyhow::anyhow!("exited early: {status}")));
        }
        log().contains("hotspan is running").then_some(Ok(()))
    });
    let result = (|| -> Result<()> {
        ready??;
        ensure!(
            log().contains("embedded default config"),
            "no word of the default config:\n{}",
            log()
        );
        let answer = post(
            "http://127.0.0.1:4318/v1/traces",
            "application/json",
            None,
            json_spans("default", 0, 3).into_bytes(),
        )?;
        ensure!(answer.status == 200, "{} {}", answer.status, answer.body);
        signal(child.id(), "INT")?;
        let status = wait_for(Duration::from_secs(20), "exit", || {
            child.try_wait().ok().flatten()
        })?;
        ensure!(status.success(), "exit {status}");
        // The debug exporter logged the batch before exiting.
        ensure!(
            log().contains("spans=3"),
            "debug exporter did not log the spans:\n{}",
            log()
        );
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// `--config` as otelcol takes it: `file:PATH` or a path, `env:VAR`, `yaml:` with `::` between
/// nested keys; given several times, merged in order (maps key by key, the later value winning).
#[test]
fn config_uris_are_otelcols_and_several_merge_in_order() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let base = dir.path().join("base.yaml");
    let (health, http) = (hotspan_tests::free_port(), hotspan_tests::free_port());
    std::fs::write(
        &base,
        format!(
            r#"
receivers:
  otlp:
    protocols:
      http: {{endpoint: "127.0.0.1:1"}}
exporters:
  debug: {{verbosity: basic}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{health}"}}
service:
  extensions: [health_check]
  telemetry: {{metrics: {{level: none}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [debug]}}
"#
        ),
    )?;
    let validate = |args: &[String], env: Option<&str>| -> Result<(bool, String)> {
        let mut command = Command::new(hotspan_bin());
        command
            .arg("validate")
            .args(args.iter().flat_map(|a| ["--config", a]));
        if let Some(text) = env {
            command.env("HOTSPAN_TEST_CONFIG", text);
        }
        let out = command.output()?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        ))
    };
    let path = base.display().to_string();
    for uri in [path.clone(), format!("file:{path}")] {
        let (ok, out) = validate(std::slice::from_ref(&uri), None)?;
        ensure!(ok, "{uri}: {out}");
    }
    let text = std::fs::read_to_string(&base)?;
    let (ok, out) = validate(&["env:HOTSPAN_TEST_CONFIG".into()], Some(&text))?;
    ensure!(ok, "env: {out}");
    let (ok, out) = validate(&["env:HOTSPAN_TEST_CONFIG".into()], None)?;
    ensure!(!ok && out.contains("HOTSPAN_TEST_CONFIG is not set"), "{out}");
    // A later source's mistake is found in the merged config.
    let (ok, out) = validate(
        &[path.clone(), "yaml:exporters::debug::verbosity: loud".into()],
        None,
    )?;
    ensure!(!ok && out.contains("exporters.debug.verbosity"), "{out}");
    let (ok, out) = validate(&["https://example.com/c.yaml".into()], None)?;
    ensure!(!ok && out.contains("not supported"), "{out}");

    // Run on the file with its receiver moved by a yaml: source: it listens where the last says.
    let log_path = dir.path().join("log");
    let moved = format!("yaml:receivers::otlp::protocols::http::endpoint: 127.0.0.1:{http}");
    let mut child = Command::new(hotspan_bin())
        .args(["--config", &format!("file:{path}"), "--config", &moved])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path)?)
        .spawn()
        .context("starting hotspan")?;
    let result = (|| -> Result<()> {
        wait_for(Duration::from_secs(20), "hotspan to be healthy", || {
            hotspan_tests::http_status(health, "/").ok().filter(|&s| s == 200)
        })?;
        let answer = post(
            &format!("http://127.0.0.1:{http}/v1/traces"),
            "application/json",
            None,
            json_spans("merged", 0, 2).into_bytes(),
        )?;
        ensure!(answer.status == 200, "{} {}", answer.status, answer.body);
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    result.with_context(|| std::fs::read_to_string(&log_path).unwrap_or_default())
}

/// `${file:}` and `${yaml:}` in values, as otelcol expands them: a secret file's token (its
/// newline dropped) guards the receiver, a whole section comes from a file and a port from
/// inline YAML. (A path holding `${env:}` is covered by the unit tests.)
#[test]
fn file_and_yaml_references_in_values_are_read_as_otelcol_reads_them() -> Result<()> {
    let secrets = tempfile::tempdir()?;
    let token = secrets.path().join("token");
    let exporters = secrets.path().join("exporters.yaml");
    std::fs::write(&token, "s3cr3t\n")?;
    std::fs::write(&exporters, "debug:\n  verbosity: basic\n")?;
    let config = |token: &Path| {
        format!(
            r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: "127.0.0.1:${{yaml:{{port:http}}}}"
        auth: {{authenticator: bearertokenauth}}
exporters: ${{file:{exporters}}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
  bearertokenauth: {{token: "${{file:{token}}}"}}
service:
  extensions: [health_check, bearertokenauth]
  pipelines:
    traces: {{receivers: [otlp], exporters: [debug]}}
"#,
            exporters = exporters.display(),
            token = token.display(),
        )
    };

    // A file that is not there is named in the error, at the value that refers to it.
    let missing = secrets.path().join("missing");
    let bad = secrets.path().join("bad.yaml");
    std::fs::write(
        &bad,
        config(&missing)
            .replace("{port:http}", "1")
            .replace("{port:health}", "1"),
    )?;
    let out = Command::new(hotspan_bin())
        .args(["validate", "--config"])
        .arg(&bad)
        .output()?;
    let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    ensure!(
        !out.status.success()
            && text.contains("extensions.bearertokenauth.token")
            && text.contains(&format!("cannot read {:?}", missing.display().to_string())),
        "{text}"
    );

    let hotspan = Hotspan::start(&config(&token))?;
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()?;
    let send = |token: Option<&str>| -> Result<u16> {
        let mut request = client
            .post(format!("http://127.0.0.1:{}/v1/traces", hotspan.port("http")))
            .header("content-type", "application/json")
            .body(json_spans("from-file", 0, 2));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        Ok(request.send()?.status().as_u16())
    };
    ensure!(send(None)? == 401, "a request without the token was let in");
    // Had the file's newline stayed in the token, this would be refused.
    let status = send(Some("s3cr3t"))?;
    ensure!(
        status == 200,
        "the file's token was refused: {status}\n{}",
        hotspan.log()
    );
    Ok(())
}
