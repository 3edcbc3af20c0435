//! The `hotspan_ui` page in a real browser (headless Chromium) while hotspan joins live
//! traffic from the Go service: the list links each span to its page, and following the link
//! of a "charge card" span shows a flame graph with main.chargeCard; a screenshot of the list
//! is kept under target/test-artifacts/.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use hotspan_tests::goservice::{GoOptions, GoService};
use hotspan_tests::{free_port, wait_for, Hotspan};

/// Chromium's name on Debian, or another one on PATH.
fn chromium() -> Result<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        })
        .context("no chromium on PATH (scripts/test.sh installs it)")
}

fn headless(profile: &Path) -> Vec<String> {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect()
}

/// The DOM Chromium built from `url`, after its scripts ran.
fn dump_dom(browser: &str, profile: &Path, url: &str) -> Result<String> {
    let out = Command::new(browser)
        .args(headless(profile))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .context("running chromium")?;
    ensure!(
        out.status.success(),
        "chromium --dump-dom {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The href of the first link on the list for a span named `name` (the hottest one).
fn span_link(dom: &str, name: &str) -> Option<String> {
    let marker = format!("data-name=\"{name}\"");
    dom.split("<a ").find(|a| a.contains(&marker)).and_then(|a| {
        let start = a.find("href=\"")? + 6;
        Some(a[start..start + a[start..].find('"')?].to_string())
    })
}

fn artifacts() -> PathBuf {
    // tests/ is the package; target/ is the workspace's.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("test-artifacts")
}

#[test]
fn clicking_a_span_shows_its_own_flame_graph() -> Result<()> {
    let browser = chromium()?;
    let http = free_port();
    let go_port = free_port();
    let mut hotspan = Hotspan::start(&format!(
        r#"
receivers:
  otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:{http}"}}}}}}
  pprof_scrape:
    scrape_interval: 1s
    targets: [{{endpoint: "http://127.0.0.1:{go_port}", service_name: shop}}]
connectors:
  spanprofile: {{wait: 3s}}
exporters:
  file/traces: {{path: "{{dir}}/traces.jsonl", flush_interval: 50ms}}
  hotspan_ui: {{}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
  hotspan_ui: {{endpoint: "127.0.0.1:{{port:ui}}", capacity: 500}}
service:
  extensions: [health_check, hotspan_ui]
  pipelines:
    traces/in: {{receivers: [otlp], exporters: [spanprofile]}}
    profiles/in: {{receivers: [pprof_scrape], exporters: [spanprofile]}}
    traces/out: {{receivers: [spanprofile], exporters: [file/traces, hotspan_ui]}}
"#
    ))?;
    let base = format!("http://127.0.0.1:{}", hotspan.port("ui"));
    let mut go = GoService::start(GoOptions {
        otlp_endpoint: Some(format!("http://127.0.0.1:{http}/v1/traces")),
        listen_port: Some(go_port),
        ..Default::default()
    })?;
    let profile = tempfile::tempdir()?;

    // Live traffic: wait until the page (as the browser sees it) lists an annotated
    // "charge card" span.
    let (dom, href) = wait_for(Duration::from_secs(60), "a charge card span on the page", || {
        let body = reqwest::blocking::get(format!("{base}/")).ok()?.text().ok()?;
        span_link(&body, "charge card")?;
        let dom = dump_dom(browser, profile.path(), &format!("{base}/")).ok()?;
        let href = span_link(&dom, "charge card")?;
        Some((dom, href))
    })?;
    ensure!(
        dom.contains("Hottest") && dom.contains("Slowest"),
        "list page:\n{dom}"
    );
    ensure!(
        dom.contains("domain=payment, stage=charge"),
        "no label breakdown:\n{dom}"
    );
    ensure!(href.starts_with("/span/"), "link {href}");

    // The click: follow the link the list gives.
    let span_dom = dump_dom(browser, profile.path(), &format!("{base}{href}"))?;
    let svg = span_dom.find("<svg").context("span page has no flame graph")?;
    ensure!(
        span_dom[svg..].contains("main.chargeCard"),
        "the flame graph of {href} has no main.chargeCard frame:\n{}",
        &span_dom[svg..]
    );
    ensure!(span_dom.contains("Hot paths"), "no hot paths on {href}");

    // The artifact: the list as a person sees it.
    let dir = artifacts();
    std::fs::create_dir_all(&dir)?;
    let shot = dir.join("hotspan_ui.png");
    let _ = std::fs::remove_file(&shot);
    let status = Command::new(browser)
        .args(headless(profile.path()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1280,900")
        .arg(format!("{base}/"))
        .output()?;
    ensure!(status.status.success(), "screenshot failed");
    let span_shot = dir.join("hotspan_ui_span.png");
    Command::new(browser)
        .args(headless(profile.path()))
        .arg(format!("--screenshot={}", span_shot.display()))
        .arg("--window-size=1280,900")
        .arg(format!("{base}{href}"))
        .output()?;
    ensure!(
        std::fs::metadata(&shot).map(|m| m.len() > 1000).unwrap_or(false),
        "no screenshot at {}",
        shot.display()
    );

    ensure!(go.stop()?.success(), "go service exit");
    ensure!(hotspan.terminate()?.success(), "hotspan exit\n{}", hotspan.log());
    Ok(())
}
