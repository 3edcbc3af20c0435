//! The `hotspan_ui` page in a real browser (headless Chromium, driven over the DevTools
//! protocol: real mouse clicks and key presses) while hotspan joins live traffic from the Go
//! service in its slowpath scenario (a fifth of "charge card" spans also run
//! `main.slowPath`): a click on a "charge card" span in the list opens its trace's waterfall,
//! whose bars add up to their spans' durations; a click on the span's name there opens the
//! name's views, whose aggregate flame graph has main.chargeCard and whose slow-versus-fast
//! comparison names main.slowPath; typing in the label filter hides the other label sets.
//! Screenshots of each page are kept under target/test-artifacts/.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::{Browser, LaunchOptions, Tab};
use hotspan_tests::browser::{artifacts, chromium, selector, text_of, waterfall_bars};
use hotspan_tests::goservice::{GoOptions, GoService, Scenario};
use hotspan_tests::{free_port, wait_for, Hotspan};
use scraper::Html;

/// The browser's executable, as a path (the DevTools client wants one).
fn executable(name: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").context("no PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("{name} is not on PATH"))
}

fn shot(tab: &Tab, name: &str) -> Result<()> {
    let png = tab
        .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
        .map_err(|e| anyhow!("screenshot: {e}"))?;
    ensure!(png.len() > 1000, "an empty screenshot");
    std::fs::write(artifacts()?.join(name), png)?;
    Ok(())
}

/// The page as the browser has it now, parsed.
fn dom(tab: &Tab) -> Result<Html> {
    Ok(Html::parse_document(
        &tab.get_content().map_err(|e| anyhow!("content: {e}"))?,
    ))
}

#[test]
fn a_span_opens_its_trace_whose_name_opens_slow_versus_fast() -> Result<()> {
    let browser_path = executable(chromium()?)?;
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
  hotspan_ui: {{endpoint: "127.0.0.1:{{port:ui}}", capacity: 2000}}
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
        scenario: Scenario::Slowpath,
        slow_fraction: Some(0.2),
        otlp_endpoint: Some(format!("http://127.0.0.1:{http}/v1/traces")),
        listen_port: Some(go_port),
        ..Default::default()
    })?;

    // Live traffic: wait until the views of "charge card" have enough spans to compare.
    let name_url = format!("{base}/name?service=shop&name=charge%20card");
    wait_for(
        Duration::from_secs(120),
        "slow versus fast for charge card",
        || {
            let body = reqwest::blocking::get(&name_url).ok()?.text().ok()?;
            body.contains("class=\"grew\"").then_some(())
        },
    )
    .with_context(|| hotspan.log())?;

    let profile = tempfile::tempdir()?;
    let options = LaunchOptions {
        path: Some(browser_path),
        headless: true,
        sandbox: false,
        window_size: Some((1280, 1600)),
        user_data_dir: Some(profile.path().to_path_buf()),
        idle_browser_timeout: Duration::from_secs(120),
        args: vec![OsStr::new("--disable-dev-shm-usage"), OsStr::new("--disable-gpu")],
        ..Default::default()
    };
    let browser = Browser::new(options).map_err(|e| anyhow!("starting chromium over DevTools: {e}"))?;
    let tab = browser.new_tab().map_err(|e| anyhow!("{e}"))?;
    tab.set_default_timeout(Duration::from_secs(20));

    // The list: no empty-page note now, the collector's own unjoined count, the names table.
    tab.navigate_to(&format!("{base}/"))
        .and_then(|t| t.wait_until_navigated())
        .map_err(|e| anyhow!("{e}"))?;
    let doc = dom(&tab)?;
    ensure!(
        text_of(&doc, "#empty").is_none(),
        "the empty-page note with spans on the page"
    );
    let outside = text_of(&doc, "#outside + p").context("no outside-spans note")?;
    ensure!(
        outside.contains("found no span") && outside.contains("hotspan_spanprofile_unjoined_samples"),
        "{outside}"
    );
    for css in [
        r#"#names .name-row[data-row-name="charge card"] .bar .seg[data-part="cpu"]"#,
        r#"#breakdown .breakdown-row[data-row-name="checkout"] .bar .seg[data-part="children"]"#,
        r#"#label-table .label-row[data-labels="domain=payment, stage=charge"]"#,
        "#label-chart .label-row .lbar",
        "#hottest a.span",
        "#slowest a.span",
    ] {
        ensure!(
            doc.select(&selector(css)).next().is_some(),
            "no {css} on the page"
        );
    }
    shot(&tab, "hotspan_ui.png")?;

    // Click 1: the hottest "charge card" span opens its trace.
    tab.wait_for_element(r#"#hottest a.span[data-name="charge card"]"#)
        .and_then(|a| a.click().map(|_| ()))
        .map_err(|e| anyhow!("clicking a charge card span: {e}"))?;
    tab.wait_until_navigated().map_err(|e| anyhow!("{e}"))?;
    tab.wait_for_element(".waterfall")
        .map_err(|e| anyhow!("no waterfall after the click: {e}"))?;
    ensure!(
        tab.get_url().contains("/trace/"),
        "the click went to {}",
        tab.get_url()
    );
    let doc = dom(&tab)?;
    let bars = waterfall_bars(&doc, ".waterfall")?;
    ensure!(bars.len() >= 5, "a checkout trace has 5 spans: {bars:#?}");
    for b in &bars {
        ensure!(
            b.sum() == b.duration_ns,
            "parts of {} add up to {} of {}",
            b.span_name,
            b.sum(),
            b.duration_ns
        );
    }
    let charge = bars
        .iter()
        .find(|b| b.span_name == "charge card")
        .context("no charge card bar")?;
    ensure!(
        charge.title.contains("hot path: "),
        "no hot path on hover: {}",
        charge.title
    );
    let root = bars
        .iter()
        .find(|b| b.span_name == "checkout")
        .context("no checkout bar")?;
    ensure!(root.ns("in child spans") > 0, "{root:#?}");
    shot(&tab, "hotspan_ui_trace.png")?;

    // Click 2: the highlighted span's name opens the name's views.
    tab.wait_for_element(".wf-row.hl a.name-link")
        .and_then(|a| a.click().map(|_| ()))
        .map_err(|e| anyhow!("clicking the span's name: {e}"))?;
    tab.wait_until_navigated().map_err(|e| anyhow!("{e}"))?;
    tab.wait_for_element("[data-view=\"differential\"]")
        .map_err(|e| anyhow!("{e}"))?;
    ensure!(
        tab.get_url().contains("/name?") && tab.get_url().contains("charge"),
        "went to {}",
        tab.get_url()
    );
    let doc = dom(&tab)?;
    let aggregate = doc
        .select(&selector("[data-view=\"aggregate\"] svg"))
        .next()
        .context("no aggregate flame graph")?
        .html();
    ensure!(
        aggregate.contains("<title>main.chargeCard ("),
        "no main.chargeCard in the aggregate flame graph"
    );
    let grew = text_of(&doc, ".diff-summary code.grew").context("no slow-versus-fast line")?;
    ensure!(grew == "main.slowPath", "the slow spans grew most in {grew}");
    ensure!(
        doc.select(&selector("[data-view=\"differential\"] svg"))
            .next()
            .is_some(),
        "no differential flame graph"
    );
    shot(&tab, "hotspan_ui_name.png")?;

    // Typing in the label filter hides every label set without "payment".
    tab.navigate_to(&format!("{base}/"))
        .and_then(|t| t.wait_until_navigated())
        .map_err(|e| anyhow!("{e}"))?;
    tab.wait_for_element("#label-filter")
        .and_then(|f| f.click().map(|_| ()))
        .map_err(|e| anyhow!("{e}"))?;
    tab.type_str("payment").map_err(|e| anyhow!("typing: {e}"))?;
    let shown = tab
        .evaluate(
            "Array.from(document.querySelectorAll('#label-table .label-row')).filter(r => r.style.display !== 'none').map(r => r.dataset.labels).join('|')",
            false,
        )
        .map_err(|e| anyhow!("{e}"))?
        .value
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    ensure!(
        !shown.is_empty() && shown.split('|').all(|l| l.contains("payment")),
        "rows shown after filtering: {shown:?}"
    );
    shot(&tab, "hotspan_ui_filtered.png")?;

    drop(tab);
    drop(browser);
    ensure!(go.stop()?.success(), "go service exit");
    ensure!(hotspan.terminate()?.success(), "hotspan exit\n{}", hotspan.log());
    Ok(())
}
