//! `hotspan report` on what hotspan wrote while joining the real Go service (the slowpath
//! scenario: a tenth of "charge card" spans also run `main.slowPath`): every span name shows
//! its own code as top function, with the share the joined spans in the file give, the label
//! breakdown names the payment stage, and `--html` holds per span name an aggregate flame
//! graph and a differential one naming `main.slowPath` for "charge card", the latency
//! breakdown, the label table with its filter, and example traces whose bars add up.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use hotspan_proto::otlp::common::v1::any_value;
use hotspan_proto::otlp::trace::v1::Span;
use hotspan_tests::browser::{selector, text_of, waterfall_bars};
use hotspan_tests::goservice::{joined_scenario, JoinedRun, Scenario};
use hotspan_tests::{hotspan_bin, read_spans};
use scraper::Html;

const EXPECTED: &[(&str, &str)] = &[
    ("validate cart", "main.validateCart"),
    ("price items", "main.computePrices"),
    ("apply discounts", "main.applyDiscounts"),
    ("charge card", "main.chargeCard"),
];

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a any_value::Value> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn int_attr(span: &Span, key: &str) -> u64 {
    match attr(span, key) {
        Some(any_value::Value::IntValue(i)) => u64::try_from(*i).unwrap_or(0),
        _ => 0,
    }
}

/// Per span name, each function's share of the name's CPU, recomputed from the file the way
/// the report says it weighs: each span's top-function shares times its cpu_ns.
fn expected_shares(traces: &Path) -> Result<BTreeMap<String, BTreeMap<String, f64>>> {
    let mut weights: BTreeMap<String, (f64, BTreeMap<String, f64>)> = BTreeMap::new();
    for found in read_spans(traces)?.into_values() {
        let span = found.span;
        let samples = int_attr(&span, "profile.samples");
        if samples == 0 {
            continue;
        }
        let cpu = int_attr(&span, "profile.cpu_ns");
        let w = if cpu > 0 { cpu } else { samples } as f64;
        let entry = weights.entry(span.name.clone()).or_default();
        entry.0 += w;
        if let Some(any_value::Value::ArrayValue(a)) = attr(&span, "profile.top_functions") {
            for v in &a.values {
                if let Some(any_value::Value::StringValue(s)) = &v.value {
                    let (f, pct) = s.rsplit_once(' ').context("function share")?;
                    let pct: f64 = pct.trim_end_matches('%').parse()?;
                    *entry.1.entry(f.to_string()).or_default() += pct / 100.0 * w;
                }
            }
        }
    }
    Ok(weights
        .into_iter()
        .map(|(name, (total, fs))| (name, fs.into_iter().map(|(f, w)| (f, w / total)).collect()))
        .collect())
}

/// The report's top functions per span name: the `top:` line under the name's row.
fn reported_functions(report: &str) -> BTreeMap<String, Vec<(String, f64)>> {
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in report.lines() {
        if let Some(top) = line.strip_prefix("    top: ") {
            if let Some(name) = &current {
                let fs = top
                    .split(", ")
                    .filter_map(|f| {
                        let (name, pct) = f.rsplit_once(' ')?;
                        Some((
                            name.to_string(),
                            pct.trim_end_matches('%').parse::<f64>().ok()? / 100.0,
                        ))
                    })
                    .collect();
                out.insert(name.clone(), fs);
            }
        } else if !line.starts_with(' ') {
            // A table row: the name column is followed by at least two spaces.
            current = line.split("  ").next().map(|n| n.trim().to_string());
        }
    }
    out
}

#[test]
fn report_names_each_spans_code_with_the_joined_shares() -> Result<()> {
    // Six 1 s profiles: enough "charge card" spans that a tenth of them is several.
    let JoinedRun { hotspan, .. } = joined_scenario(Scenario::Slowpath, 6)?;

    let traces = hotspan.path("traces.jsonl");
    // A damaged line is counted, not fatal.
    let bad = hotspan.path("bad.jsonl");
    std::fs::write(&bad, "{\"resourceSpans\": [oops\nnot json at all\n")?;
    let html = hotspan.path("report.html");
    let out = Command::new(hotspan_bin())
        .arg("report")
        .arg(&traces)
        .arg(hotspan.path("profiles.jsonl"))
        .arg(&bad)
        .arg("--html")
        .arg(&html)
        .output()?;
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    ensure!(
        out.status.success(),
        "report failed: {}\n{report}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Kept for a person to look at.
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    std::fs::create_dir_all(&artifacts)?;
    std::fs::write(artifacts.join("report.txt"), &report)?;
    let _ = std::fs::copy(&html, artifacts.join("report.html"));
    ensure!(
        report.contains(", 2 bad lines"),
        "bad lines not counted:\n{report}"
    );
    ensure!(
        !report.contains(" 0 profiles lines skipped"),
        "profiles lines:\n{report}"
    );

    let want = expected_shares(&traces)?;
    let got = reported_functions(&report);
    for (name, function) in EXPECTED {
        let fs = got
            .get(*name)
            .with_context(|| format!("no top line for {name:?}:\n{report}"))?;
        let (top, share) = fs.first().with_context(|| format!("{name}: no functions"))?;
        ensure!(top == function, "{name}: top is {top}, want {function}\n{report}");
        let expected = want
            .get(*name)
            .and_then(|fs| fs.get(*function))
            .copied()
            .with_context(|| format!("{name}: nothing joined in the file"))?;
        // The report prints one decimal of a percentage.
        ensure!(
            (share - expected).abs() <= 0.0006,
            "{name}: {function} {share} in the report, {expected} from the file"
        );
        // The span name's row and its hot path, ending in its own function.
        ensure!(
            report
                .lines()
                .any(|l| l.starts_with("    hot path ") && l.ends_with(function)),
            "{name}: no hot path ending in {function}\n{report}"
        );
    }
    ensure!(
        report
            .lines()
            .any(|l| l.starts_with("  domain=payment, stage=charge: ") && l.ends_with("top: main.chargeCard")),
        "label breakdown:\n{report}"
    );

    let page = std::fs::read_to_string(&html)?;
    ensure!(
        !page.contains("src=\"http") && !page.contains("href=\"http"),
        "page fetches from the network"
    );
    for (name, function) in EXPECTED {
        let start = page
            .find(&format!("data-span-name=\"{name}\""))
            .with_context(|| format!("no section for {name}"))?;
        let section = &page[start..];
        let section = &section[..section.find("</section>").context("unclosed section")?];
        let Some(svg) = section.find("<svg") else {
            bail!("{name}: no flame graph");
        };
        ensure!(
            section[svg..].contains(&format!("<title>{function} (")),
            "{name}: flame graph has no frame for {function}"
        );
    }
    check_views(&page, &report)
}

/// The views of `--html`, and the text's slow-versus-fast line and column notes.
fn check_views(page: &str, report: &str) -> Result<()> {
    ensure!(
        report.contains("CPU UTIL is the mean") && report.contains("hotspan_spanprofile_unjoined_samples"),
        "the text does not explain its columns and the CPU outside spans:\n{report}"
    );
    ensure!(
        report
            .lines()
            .any(|l| l.starts_with("    slowest 10% vs middle: main.slowPath +")),
        "the text does not name main.slowPath for the slow spans:\n{report}"
    );
    let doc = Html::parse_document(page);
    for css in [
        "#names .name-row",
        "#breakdown .breakdown-row .bar",
        "#label-filter",
        "#label-table .label-row",
        "#label-chart .label-row .lbar",
        "#outside",
        "section.name-section [data-view=\"aggregate\"] svg",
        "section.name-section [data-view=\"differential\"]",
        ".waterfall .bar",
    ] {
        ensure!(
            doc.select(&selector(css)).next().is_some(),
            "no {css} in the report"
        );
    }
    let charge = r#"section.name-section[data-span-name="charge card"]"#;
    let grew = text_of(&doc, &format!("{charge} .diff-summary code.grew"))
        .context("no slow-versus-fast line for charge card")?;
    ensure!(
        grew == "main.slowPath",
        "charge card's slow spans grew most in {grew}"
    );
    let diff = doc
        .select(&selector(&format!("{charge} [data-view=\"differential\"] svg")))
        .next()
        .context("no differential flame graph for charge card")?
        .html();
    // inferno's differential titles: the frame, its per-span ns and its change, positive.
    ensure!(
        diff.contains("<title>main.slowPath ("),
        "no main.slowPath frame in the differential"
    );
    ensure!(
        diff.split("<title>main.slowPath (")
            .nth(1)
            .and_then(|t| t.split(')').next())
            .is_some_and(|t| t.contains("; +")),
        "main.slowPath did not grow in the differential"
    );
    let bars = waterfall_bars(&doc, ".waterfall")?;
    ensure!(
        bars.iter().any(|b| b.span_name == "charge card"),
        "no charge card bar in the example traces"
    );
    for b in &bars {
        ensure!(b.sum() == b.duration_ns, "bar parts do not add up: {b:#?}");
        ensure!(b.segs.iter().all(|s| s.ns <= b.duration_ns), "{b:#?}");
    }
    // Checkout runs its children one after the other: they cover part of it.
    let root = bars
        .iter()
        .find(|b| b.span_name == "checkout")
        .context("no checkout bar")?;
    ensure!(root.ns("in child spans") > 0, "{root:#?}");
    Ok(())
}
