//! The live page under a stream of spans with more names and stacks than it keeps: it goes on
//! answering, keeps at most its bound of span names, counts exactly the spans of the names it
//! did not keep, and sums stacks past its bound under one frame.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use hotspan_tests::browser::{selector, text_of};
use hotspan_tests::{free_port, post, wait_for, Hotspan};
use scraper::Html;

/// Span names sent, round robin; the page keeps 200.
const NAMES: u64 = 300;
const REQUESTS: u64 = 40;
const SPANS_PER_REQUEST: u64 = 1500;

/// One export request of `SPANS_PER_REQUEST` spans, each with a stack of its own.
fn request(r: u64) -> String {
    let spans: Vec<String> = (0..SPANS_PER_REQUEST)
        .map(|i| {
            let n = r * SPANS_PER_REQUEST + i;
            format!(
                r#"{{"traceId":"{:032x}","spanId":"{:016x}","name":"op {}","kind":1,"startTimeUnixNano":"{}","endTimeUnixNano":"{}","attributes":[{{"key":"profile.samples","value":{{"intValue":"1"}}}},{{"key":"profile.cpu_ns","value":{{"intValue":"10000000"}}}}],"events":[{{"timeUnixNano":"1","name":"profile.hot_path","attributes":[{{"key":"stack","value":{{"stringValue":"main.main;main.work;main.f{n}"}}}},{{"key":"cpu_ns","value":{{"intValue":"10000000"}}}},{{"key":"samples","value":{{"intValue":"1"}}}}]}}]}}"#,
                n + 1,
                n + 1,
                n % NAMES,
                1_800_000_000_000_000_000u64 + n * 1000,
                1_800_000_000_000_000_000u64 + n * 1000 + 20_000_000
            )
        })
        .collect();
    format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"load"}}}}]}},"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
        spans.join(",")
    )
}

#[test]
fn the_page_stays_bounded_under_many_names_and_stacks() -> Result<()> {
    let http = free_port();
    let mut hotspan = Hotspan::start(&format!(
        r#"
receivers:
  otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:{http}"}}}}}}
exporters:
  hotspan_ui: {{}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
  hotspan_ui: {{endpoint: "127.0.0.1:{{port:ui}}", capacity: 2000, window: 10m}}
service:
  extensions: [health_check, hotspan_ui]
  pipelines:
    traces: {{receivers: [otlp], exporters: [hotspan_ui]}}
"#
    ))?;
    let base = format!("http://127.0.0.1:{}", hotspan.port("ui"));
    let url = format!("http://127.0.0.1:{http}/v1/traces");
    let started = Instant::now();
    for r in 0..REQUESTS {
        let answer = post(&url, "application/json", None, request(r).into_bytes())?;
        ensure!(
            answer.status == 200,
            "export {r}: {} {}",
            answer.status,
            answer.body
        );
        // The page answers while spans stream in.
        if r % 10 == 5 {
            let t = Instant::now();
            let body = reqwest::blocking::get(format!("{base}/"))?.text()?;
            ensure!(body.contains("Span names"), "{body}");
            ensure!(
                t.elapsed() < Duration::from_secs(10),
                "the page took {:?}",
                t.elapsed()
            );
        }
    }
    let total = REQUESTS * SPANS_PER_REQUEST;
    eprintln!("{total} spans sent in {:?}", started.elapsed());
    let mut last = String::new();
    let body = wait_for(Duration::from_secs(20), "every span on the page", || {
        let body = reqwest::blocking::get(format!("{base}/")).ok()?.text().ok()?;
        last = text_of(&Html::parse_document(&body), "p.muted").unwrap_or_default();
        body.contains(&format!("{total} spans in the last"))
            .then_some(body)
    })
    .with_context(|| format!("the page says: {last}"))?;
    let doc = Html::parse_document(&body);
    let rows = doc.select(&selector("#names .name-row")).count();
    ensure!(rows == 200, "{rows} names listed");
    // Names op 200..op 299 came after the bound: a third of the spans, counted.
    let bounds = doc
        .select(&selector("p.muted"))
        .map(|p| p.text().collect::<String>())
        .find(|t| t.starts_with("Bounds: ") && t.contains("counted only"))
        .with_context(|| format!("no bounds note: {}", text_of(&doc, "body").unwrap_or_default()))?;
    ensure!(
        bounds.contains(&format!("{} spans of names past the 200 kept", total / 3)),
        "{bounds}"
    );
    // Every span had its own stack: far more than a name keeps.
    let name = reqwest::blocking::get(format!("{base}/name?service=load&name=op%207"))?.text()?;
    ensure!(
        name.contains("more distinct stacks than kept") || name.contains("stacks past the page"),
        "{name}"
    );
    ensure!(hotspan.terminate()?.success(), "hotspan exit\n{}", hotspan.log());
    Ok(())
}
