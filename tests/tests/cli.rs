//! The command line: `validate` on good and broken configs, `components`, and running the
//! embedded default config.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use hotspan_tests::{hotspan_bin, json_spans, post, signal, wait_for};

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
