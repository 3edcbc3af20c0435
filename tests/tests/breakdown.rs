//! The latency breakdown and the trace waterfall, from planted annotated spans: OTLP spans
//! carrying the join's wait, GC pause and throttling attributes are sent to a hotspan whose
//! traces pipeline goes straight to the `hotspan_ui` exporter and a `file` exporter (no join:
//! the answers are known). The live page, in headless Chromium, and `hotspan report --html`
//! must draw each span's bar with the planted parts, adding up to its duration, with
//! estimates that exceed a span scaled to fit, a parent's children as "in child spans", and
//! the per-name breakdown splitting waiting by reason.

use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use hotspan_tests::browser::{chromium, dump_dom, screenshot, selector, text_of, waterfall_bars, Bar};
use hotspan_tests::{hotspan_bin, post, wait_for, wait_for_spans, Hotspan};
use scraper::Html;

const MS: u64 = 1_000_000;
const T0: u64 = 1_800_000_000_000_000_000;
const TRACES: u64 = 30;

fn int(key: &str, v: u64) -> String {
    format!(r#"{{"key":"{key}","value":{{"intValue":"{v}"}}}}"#)
}

fn string(key: &str, v: &str) -> String {
    format!(r#"{{"key":"{key}","value":{{"stringValue":"{v}"}}}}"#)
}

fn strings(key: &str, vs: &[&str]) -> String {
    let values: Vec<String> = vs.iter().map(|v| format!(r#"{{"stringValue":"{v}"}}"#)).collect();
    format!(
        r#"{{"key":"{key}","value":{{"arrayValue":{{"values":[{}]}}}}}}"#,
        values.join(",")
    )
}

/// A span of trace `t`: `n` is its number in the trace (1 is the root), times in ms from the
/// trace's start, the attributes as given plus a `profile.hot_path` event when it has CPU.
fn span(
    t: u64,
    n: u64,
    name: &str,
    from_ms: u64,
    to_ms: u64,
    attrs: &[String],
    stack: Option<(&str, u64)>,
) -> String {
    let base = T0 + t * 1_000 * MS;
    let parent = if n == 1 {
        String::new()
    } else {
        format!(r#""parentSpanId":"{:016x}","#, t * 100 + 1)
    };
    let events = match stack {
        Some((stack, cpu)) => format!(
            r#","events":[{{"timeUnixNano":"{base}","name":"profile.hot_path","attributes":[{},{},{}]}}]"#,
            string("stack", stack),
            int("samples", (cpu / (10 * MS)).max(1)),
            int("cpu_ns", cpu)
        ),
        None => String::new(),
    };
    format!(
        r#"{{"traceId":"{:032x}","spanId":"{:016x}",{parent}"name":"{name}","kind":1,"startTimeUnixNano":"{}","endTimeUnixNano":"{}","attributes":[{}]{events}}}"#,
        t,
        t * 100 + n,
        base + from_ms * MS,
        base + to_ms * MS,
        attrs.join(",")
    )
}

fn cpu(ns: u64) -> Vec<String> {
    vec![
        int("profile.samples", (ns / (10 * MS)).max(1)),
        int("profile.cpu_ns", ns),
    ]
}

/// Trace `t`: handle order (200 + t ms) -> lock inventory, await quote, render rows,
/// estimate heavy, one after the other over its first 190 ms.
fn trace(t: u64) -> Vec<String> {
    let with = |mut a: Vec<String>, more: &[String]| {
        a.extend(more.iter().cloned());
        a
    };
    vec![
        span(
            t,
            1,
            "handle order",
            0,
            200 + t,
            &cpu(5 * MS),
            Some(("main.main;main.handleOrder", 5 * MS)),
        ),
        span(
            t,
            2,
            "lock inventory",
            0,
            50,
            &with(
                cpu(5 * MS),
                &[
                    int("profile.wait_ns", 40 * MS),
                    strings("profile.wait_reasons", &["sync.Mutex.Lock 100.0%"]),
                ],
            ),
            Some(("main.main;main.handleOrder;main.lockInventory", 5 * MS)),
        ),
        span(
            t,
            3,
            "await quote",
            50,
            100,
            &[
                int("profile.wait_ns", 45 * MS),
                strings("profile.wait_reasons", &["chan receive 80.0%", "select 20.0%"]),
            ],
            None,
        ),
        span(
            t,
            4,
            "render rows",
            100,
            160,
            &with(
                cpu(30 * MS),
                &[
                    int("profile.gc.pause_ns", 10 * MS),
                    int("profile.cpu.throttled_ns", 5 * MS),
                    string("profile.labels.domain", "reporting"),
                    string("profile.labels.stage", "render"),
                ],
            ),
            Some(("main.main;main.handleOrder;main.renderRows", 30 * MS)),
        ),
        // 50 ms of CPU and 10 ms of waiting in a 30 ms span: estimates past the span.
        span(
            t,
            5,
            "estimate heavy",
            160,
            190,
            &with(
                cpu(50 * MS),
                &[
                    int("profile.wait_ns", 10 * MS),
                    strings("profile.wait_reasons", &["sleep 100.0%"]),
                ],
            ),
            Some(("main.main;main.handleOrder;main.estimate", 50 * MS)),
        ),
    ]
}

fn request(traces: impl Iterator<Item = u64>) -> String {
    let spans: Vec<String> = traces.flat_map(trace).collect();
    format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{}]}},"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
        string("service.name", "shop"),
        spans.join(",")
    )
}

/// Checks trace `t`'s bars (the same on the page and in the report).
fn check_trace(t: u64, bars: &[Bar], where_: &str) -> Result<()> {
    ensure!(bars.len() == 5, "{where_}: {} bars: {bars:#?}", bars.len());
    for b in bars {
        ensure!(
            b.sum() == b.duration_ns,
            "{where_}: the parts of {} add up to {} of {}: {b:#?}",
            b.span_name,
            b.sum(),
            b.duration_ns
        );
    }
    let bar = |name: &str| {
        bars.iter()
            .find(|b| b.span_name == name)
            .with_context(|| format!("{where_}: no bar for {name}"))
    };
    let root = bar("handle order")?;
    ensure!(
        root.duration_ns == (200 + t) * MS && root.start_offset_ns == 0,
        "{where_}: {root:#?}"
    );
    ensure!(
        (root.ns("in child spans"), root.ns("CPU"), root.ns("unexplained"))
            == (190 * MS, 5 * MS, (5 + t) * MS),
        "{where_}: root {root:#?}"
    );
    ensure!(
        root.title.contains("hot path: main.main;main.handleOrder"),
        "{where_}: title {}",
        root.title
    );
    let lock = bar("lock inventory")?;
    ensure!(
        (
            lock.ns("CPU"),
            lock.ns("waiting: sync.Mutex.Lock"),
            lock.ns("unexplained")
        ) == (5 * MS, 40 * MS, 5 * MS),
        "{where_}: {lock:#?}"
    );
    let quote = bar("await quote")?;
    ensure!(
        (
            quote.ns("waiting: chan receive"),
            quote.ns("waiting: select"),
            quote.start_offset_ns
        ) == (36 * MS, 9 * MS, 50 * MS),
        "{where_}: {quote:#?}"
    );
    ensure!(
        quote.title.contains("no CPU samples"),
        "{where_}: {}",
        quote.title
    );
    let render = bar("render rows")?;
    ensure!(
        (
            render.ns("CPU"),
            render.ns("GC pause"),
            render.ns("throttled"),
            render.ns("unexplained")
        ) == (30 * MS, 10 * MS, 5 * MS, 15 * MS),
        "{where_}: {render:#?}"
    );
    // 60 ms of estimates in 30 ms: scaled by a half, never past the span.
    let heavy = bar("estimate heavy")?;
    ensure!(
        (
            heavy.ns("CPU"),
            heavy.ns("waiting: sleep"),
            heavy.ns("unexplained")
        ) == (25 * MS, 5 * MS, 0),
        "{where_}: {heavy:#?}"
    );
    ensure!(
        heavy.title.contains("scaled by 0.50"),
        "{where_}: {}",
        heavy.title
    );
    Ok(())
}

/// The per-name breakdown: the mean "await quote" waits 36 ms on a channel, 9 ms in select.
fn check_breakdown(doc: &Html, where_: &str) -> Result<()> {
    let row = doc
        .select(&selector(
            r#"#breakdown .breakdown-row[data-row-name="await quote"] .bar"#,
        ))
        .next()
        .with_context(|| format!("{where_}: no breakdown row for await quote"))?;
    let segs = hotspan_tests::browser::segments(&row)?;
    let ns = |label: &str| {
        segs.iter()
            .filter(|s| s.label == label)
            .map(|s| s.ns)
            .sum::<u64>()
    };
    ensure!(
        (
            ns("waiting: chan receive"),
            ns("waiting: select"),
            ns("unexplained")
        ) == (36 * MS, 9 * MS, 5 * MS),
        "{where_}: {segs:#?}"
    );
    let root = doc
        .select(&selector(
            r#"#breakdown .breakdown-row[data-row-name="handle order"] .bar"#,
        ))
        .next()
        .with_context(|| format!("{where_}: no breakdown row for handle order"))?;
    let segs = hotspan_tests::browser::segments(&root)?;
    ensure!(
        segs.iter()
            .any(|s| s.label == "in child spans" && s.ns == 190 * MS),
        "{where_}: {segs:#?}"
    );
    // The label breakdown names the planted labels.
    let labels: Vec<String> = doc
        .select(&selector("#label-table .label-row"))
        .filter_map(|r| r.value().attr("data-labels").map(str::to_string))
        .collect();
    ensure!(
        labels.contains(&"domain=reporting, stage=render".to_string()),
        "{where_}: labels {labels:?}"
    );
    ensure!(
        text_of(doc, "#outside").is_some(),
        "{where_}: no outside-spans section"
    );
    Ok(())
}

#[test]
fn planted_breakdowns_on_the_page_and_in_the_report() -> Result<()> {
    let browser = chromium()?;
    let http = hotspan_tests::free_port();
    let mut hotspan = Hotspan::start(&format!(
        r#"
receivers:
  otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:{http}"}}}}}}
exporters:
  file: {{path: "{{dir}}/traces.jsonl", flush_interval: 50ms}}
  hotspan_ui: {{}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{port:health}}"}}
  hotspan_ui: {{endpoint: "127.0.0.1:{{port:ui}}", capacity: 1000}}
service:
  extensions: [health_check, hotspan_ui]
  pipelines:
    traces: {{receivers: [otlp], exporters: [hotspan_ui, file]}}
"#
    ))?;
    let base = format!("http://127.0.0.1:{}", hotspan.port("ui"));
    let profile = tempfile::tempdir()?;

    // Before any span: the page says why it is empty.
    let empty = dump_dom(browser, profile.path(), &format!("{base}/"))?;
    let doc = Html::parse_document(&empty);
    let note = text_of(&doc, "#empty").context("no empty-page note")?;
    ensure!(note.contains("wait"), "{note}");
    // No join in this process: the page explains CPU outside spans instead of counting it.
    let outside = text_of(&doc, "#outside + p").context("no outside-spans note")?;
    ensure!(outside.contains("background goroutines"), "{outside}");

    // Two export requests, each holding whole traces (as the join releases them).
    for range in [1..=TRACES / 2, TRACES / 2 + 1..=TRACES] {
        let answer = post(
            &format!("http://127.0.0.1:{http}/v1/traces"),
            "application/json",
            None,
            request(range).into_bytes(),
        )?;
        ensure!(answer.status == 200, "export: {} {}", answer.status, answer.body);
    }
    wait_for_spans(
        &hotspan.path("traces.jsonl"),
        (TRACES * 5) as usize,
        Duration::from_secs(20),
    )?;

    // The page, as Chromium renders it.
    let dom = wait_for(Duration::from_secs(20), "the planted spans on the page", || {
        let dom = dump_dom(browser, profile.path(), &format!("{base}/")).ok()?;
        dom.contains("estimate heavy").then_some(dom)
    })?;
    let doc = Html::parse_document(&dom);
    ensure!(text_of(&doc, "#empty").is_none(), "the empty note stays");
    check_breakdown(&doc, "page /")?;
    let trace_7 = format!("{:032x}", 7);
    let dom = dump_dom(
        browser,
        profile.path(),
        &format!("{base}/trace/{trace_7}?span={:016x}", 702),
    )?;
    let doc = Html::parse_document(&dom);
    check_trace(7, &waterfall_bars(&doc, ".waterfall")?, "page /trace")?;
    ensure!(
        doc.select(&selector("#span-00000000000002be.hl"))
            .next()
            .is_some(),
        "the span asked for is not highlighted"
    );
    screenshot(
        browser,
        profile.path(),
        &format!("{base}/trace/{trace_7}"),
        "breakdown_trace.png",
    )?;
    screenshot(
        browser,
        profile.path(),
        &format!("{base}/"),
        "breakdown_index.png",
    )?;
    let name = dump_dom(
        browser,
        profile.path(),
        &format!("{base}/name?service=shop&name=await%20quote"),
    )?;
    let doc = Html::parse_document(&name);
    let segs = hotspan_tests::browser::segments(
        &doc.select(&selector(r#".bar[data-view="name-breakdown"]"#))
            .next()
            .context("no breakdown on the name page")?,
    )?;
    ensure!(
        segs.iter()
            .any(|s| s.label == "waiting: chan receive" && s.ns == 36 * MS),
        "{segs:#?}"
    );
    ensure!(hotspan.terminate()?.success(), "hotspan exit\n{}", hotspan.log());

    // The report of the same spans.
    let html = hotspan.path("report.html");
    let out = Command::new(hotspan_bin())
        .arg("report")
        .arg(hotspan.path("traces.jsonl"))
        .arg("--html")
        .arg(&html)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    ensure!(
        out.status.success(),
        "report: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The text says where the time goes and what its columns mean.
    ensure!(
        text.lines().any(|l| l.starts_with("    time: ")
            && l.contains("waiting: chan receive 72%")
            && l.contains("waiting: select 18%")),
        "{text}"
    );
    ensure!(
        text.contains("CPU UTIL is the mean") && text.contains("CPU% is the name's share"),
        "{text}"
    );
    let page = std::fs::read_to_string(&html)?;
    let _ = std::fs::copy(
        &html,
        hotspan_tests::browser::artifacts()?.join("breakdown_report.html"),
    );
    let doc = Html::parse_document(&page);
    check_breakdown(&doc, "report")?;
    // The report draws example traces (the slowest and a median one per name): every bar
    // adds up, and the slowest trace (the last) is drawn with its planted parts.
    let all = waterfall_bars(&doc, ".waterfall")?;
    ensure!(!all.is_empty(), "no waterfall in the report");
    for b in &all {
        ensure!(b.sum() == b.duration_ns, "report bar {b:#?}");
    }
    let slowest = waterfall_bars(&doc, &format!(r#".waterfall[data-trace-id="{:032x}"]"#, TRACES))?;
    check_trace(TRACES, &slowest, "report")?;
    ensure!(
        page.contains("CPU UTIL is the mean"),
        "the report's HTML does not explain its columns"
    );
    Ok(())
}
