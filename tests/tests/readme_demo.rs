//! The README's "Try it" demo, run as written: the lines between `<!-- demo -->` and
//! `<!-- /demo -->` are taken from the README itself (so they cannot drift) and run by bash in
//! a scratch directory that sees the repository's `tests/` and `config/`, with the hotspan the
//! tests built first on PATH. The report it prints names the test service's spans and the
//! functions that burned their CPU.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use hotspan_tests::goservice::go_binary;
use hotspan_tests::{hotspan_bin, read_spans, wait_for};

fn demo_script(readme: &str) -> Result<String> {
    let start = readme
        .find("<!-- demo -->")
        .context("no <!-- demo --> in the README")?;
    let end = readme
        .find("<!-- /demo -->")
        .context("no <!-- /demo --> in the README")?;
    let block = readme.get(start..end).context("demo markers out of order")?;
    let body = block
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .context("no ```sh block between the demo markers")?
        .0;
    Ok(body.to_string())
}

#[test]
fn the_readme_demo_runs_as_written() -> Result<()> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let script = demo_script(&std::fs::read_to_string(repo.join("README.md"))?)?;
    let scratch = tempfile::tempdir()?;
    for dir in ["tests", "config"] {
        std::os::unix::fs::symlink(repo.join(dir).canonicalize()?, scratch.path().join(dir))?;
    }
    let bin_dir = hotspan_bin()
        .parent()
        .context("hotspan's directory")?
        .to_path_buf();
    let go_dir = go_binary().parent().context("go's directory")?.to_path_buf();
    let path = std::env::join_paths([bin_dir, go_dir].into_iter().chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))?;
    let stdout = std::fs::File::create(scratch.path().join("stdout"))?;
    let stderr = std::fs::File::create(scratch.path().join("stderr"))?;
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(scratch.path())
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        // Its own process group: on a timeout the test ends the demo's background jobs too.
        .process_group(0)
        .spawn()?;
    let pgid = child.id();
    let status = wait_for(Duration::from_secs(240), "the demo to finish", || {
        child.try_wait().ok().flatten()
    });
    let read = |name: &str| std::fs::read_to_string(scratch.path().join(name)).unwrap_or_default();
    let Ok(status) = status else {
        let _ = Command::new("kill").arg("--").arg(format!("-{pgid}")).status();
        let _ = child.wait();
        anyhow::bail!("the demo did not finish\n{}\n{}", read("stdout"), read("stderr"));
    };
    let (out, err) = (read("stdout"), read("stderr"));
    // `kill $(jobs -p)` ends the demo; the script's own status is that of kill.
    ensure!(status.success(), "the demo failed: {status}\n{out}\n{err}");

    // The gateway wrote annotated spans; the report names the spans and their functions.
    let spans = read_spans(&scratch.path().join("annotated.jsonl"))?;
    let annotated = spans
        .values()
        .filter(|f| f.span.attributes.iter().any(|a| a.key == "profile.cpu_ns"))
        .count();
    ensure!(annotated > 0, "none of {} spans annotated\n{err}", spans.len());
    for (name, function) in [
        ("charge card", "main.chargeCard"),
        ("validate cart", "main.validateCart"),
    ] {
        ensure!(
            out.lines().any(|l| l.starts_with(name)) && out.contains(function),
            "the report does not show {name} with {function}:\n{out}"
        );
    }
    // Nothing the demo started outlives it. `kill` stops the sidecar and the gateway together, so
    // the sidecar may retry its last spans until its 20 s `--shutdown-timeout`; the Go service
    // flushes within 10 s.
    let leftover = wait_for(Duration::from_secs(40), "the demo's jobs to end", || {
        let alive = Command::new("pgrep")
            .arg("-g")
            .arg(pgid.to_string())
            .stdout(Stdio::null())
            .status()
            .ok()?;
        (!alive.success()).then_some(())
    });
    if leftover.is_err() {
        let alive = Command::new("pgrep")
            .args(["-a", "-g", &pgid.to_string()])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let _ = Command::new("kill").arg("--").arg(format!("-{pgid}")).status();
        let err = read("stderr");
        let tail = err.get(err.len().saturating_sub(4000)..).unwrap_or(&err);
        anyhow::bail!("processes of the demo still run:\n{alive}\n{tail}");
    }
    Ok(())
}
