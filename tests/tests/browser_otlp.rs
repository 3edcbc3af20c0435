//! A web page's OpenTelemetry exporter as a browser runs it: Chromium, on a page of one
//! origin, POSTs OTLP/JSON (`Content-Type: application/json`, so a CORS preflight first) to
//! hotspan's OTLP/HTTP receivers on another. The receiver whose `cors.allowed_origins` matches
//! the page takes the spans; the one without `cors` is refused by the browser itself, as
//! otelcol's is. The same receiver sets `response_headers` and takes a `traces_url_path`
//! written without its leading slash, as otelcol does.

use std::ffi::OsStr;
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use headless_chrome::{Browser, LaunchOptions};
use hotspan_tests::browser::chromium;
use hotspan_tests::{json_span_id, json_spans, post, wait_for_spans, Hotspan, Served};

#[test]
fn a_browser_on_an_allowed_origin_sends_spans_and_others_are_refused() -> Result<()> {
    let browser_path = chromium()?;
    let hotspan = Hotspan::start(
        r#"
receivers:
  otlp/web:
    protocols:
      http:
        endpoint: "127.0.0.1:{port:web}"
        traces_url_path: v1/web-traces
        cors: {allowed_origins: ["http://127.0.0.1:*"], allowed_headers: ["x-tenant"], exposed_headers: ["x-served-by"], max_age: 600}
        response_headers: {x-served-by: hotspan}
  otlp/closed:
    protocols:
      http: {endpoint: "127.0.0.1:{port:closed}"}
exporters:
  file: {path: "{dir}/traces.jsonl", flush_interval: 50ms}
extensions:
  health_check: {endpoint: "127.0.0.1:{port:health}"}
service:
  extensions: [health_check]
  pipelines:
    traces: {receivers: [otlp/web, otlp/closed], exporters: [file]}
"#,
    )?;
    let (web, closed) = (hotspan.port("web"), hotspan.port("closed"));
    // Each fetch carries a header beyond the simple ones, so the browser asks first.
    let html = format!(
        r#"<!doctype html><html><body><script>
async function send(url, body) {{
  try {{
    const r = await fetch(url, {{method: "POST", headers: {{"Content-Type": "application/json", "X-Tenant": "t1"}}, body}});
    return "status " + r.status + " " + r.headers.get("x-served-by");
  }} catch (e) {{
    return "refused";
  }}
}}
Promise.all([
  send("http://127.0.0.1:{web}/v1/web-traces", {allowed}),
  send("http://127.0.0.1:{closed}/v1/traces", {refused}),
]).then(([a, b]) => {{
  document.body.dataset.allowed = a;
  document.body.dataset.refused = b;
  document.body.dataset.done = "1";
}});
</script></body></html>"#,
        allowed = serde_json::to_string(&json_spans("web", 0, 3))?,
        refused = serde_json::to_string(&json_spans("web", 100, 3))?,
    );
    let page = move || {
        let html = html.clone();
        async move { axum::response::Html(html) }
    };
    let page = Served::start(axum::Router::new().route("/", axum::routing::get(page)))?;

    let profile = tempfile::tempdir()?;
    let options = LaunchOptions {
        path: Some(browser_path.into()),
        headless: true,
        sandbox: false,
        user_data_dir: Some(profile.path().to_path_buf()),
        idle_browser_timeout: Duration::from_secs(60),
        args: vec![OsStr::new("--disable-dev-shm-usage"), OsStr::new("--disable-gpu")],
        ..Default::default()
    };
    let browser = Browser::new(options).map_err(|e| anyhow!("starting chromium over DevTools: {e}"))?;
    let tab = browser.new_tab().map_err(|e| anyhow!("{e}"))?;
    tab.set_default_timeout(Duration::from_secs(20));
    tab.navigate_to(&format!("http://127.0.0.1:{}/", page.port))
        .and_then(|t| t.wait_until_navigated())
        .map_err(|e| anyhow!("{e}"))?;
    tab.wait_for_element("body[data-done]")
        .map_err(|e| anyhow!("the page's fetches never ended: {e}"))?;
    let read = |key: &str| -> Result<String> {
        Ok(tab
            .evaluate(&format!("document.body.dataset.{key}"), false)
            .map_err(|e| anyhow!("{e}"))?
            .value
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default())
    };
    let (allowed, refused) = (read("allowed")?, read("refused")?);
    ensure!(
        allowed == "status 200 hotspan",
        "the allowed origin's fetch: {allowed:?}\n{}",
        hotspan.log()
    );
    ensure!(
        refused == "refused",
        "the fetch to a receiver without cors: {refused:?}"
    );

    let spans = wait_for_spans(&hotspan.path("traces.jsonl"), 3, Duration::from_secs(20))?;
    for id in 0..3 {
        ensure!(
            spans.contains_key(&json_span_id(id)),
            "span {id} from the page is missing"
        );
    }
    // The browser refused to send the second body after its preflight: nothing of it came.
    ensure!(
        !spans.contains_key(&json_span_id(100)),
        "the receiver without cors took the page's spans"
    );
    // Outside a browser the closed receiver still takes OTLP as before.
    let answer = post(
        &format!("http://127.0.0.1:{closed}/v1/traces"),
        "application/json",
        None,
        json_spans("curl", 200, 1).into_bytes(),
    )
    .context("posting without a browser")?;
    ensure!(answer.status == 200, "{} {}", answer.status, answer.body);
    Ok(())
}
