//! The pages as a person's browser sees them: the installed Chromium, headless, run by its
//! command line (`--dump-dom`, `--screenshot`) or driven over the DevTools protocol for real
//! clicks; and what tests read from the HTML, parsed as a browser parses it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};
use scraper::{ElementRef, Html, Selector};

/// Chromium's name on Debian, or another one on PATH.
pub fn chromium() -> Result<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        })
        .context("no chromium on PATH (scripts/test.sh installs it: apt-get install chromium)")
}

/// The flags that run it here: as root in a container, without a GPU, shared memory or
/// network chatter.
pub fn headless(profile: &Path) -> Vec<String> {
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
pub fn dump_dom(browser: &str, profile: &Path, url: &str) -> Result<String> {
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

/// `target/test-artifacts/`, made if missing: what tests keep for a person to look at.
pub fn artifacts() -> Result<PathBuf> {
    // tests/ is the package; target/ is the workspace's.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("test-artifacts");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A screenshot of `url` by `chromium --screenshot`, at least a few KiB of PNG.
pub fn screenshot(browser: &str, profile: &Path, url: &str, name: &str) -> Result<PathBuf> {
    let shot = artifacts()?.join(name);
    let _ = std::fs::remove_file(&shot);
    let out = Command::new(browser)
        .args(headless(profile))
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1280,1600")
        .arg(url)
        .output()?;
    ensure!(out.status.success(), "screenshot of {url} failed");
    ensure!(
        std::fs::metadata(&shot).map(|m| m.len() > 1000).unwrap_or(false),
        "no screenshot at {}",
        shot.display()
    );
    Ok(shot)
}

pub fn selector(css: &str) -> Selector {
    Selector::parse(css).unwrap_or_else(|e| panic!("selector {css:?}: {e}"))
}

/// One segment of a stacked bar: `data-part`, `data-label`, `data-ns`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seg {
    pub part: String,
    pub label: String,
    pub ns: u64,
}

/// One bar of a trace waterfall.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bar {
    pub span_name: String,
    pub duration_ns: u64,
    pub start_offset_ns: u64,
    /// The bar's `title`: its parts and hot path, shown on hover.
    pub title: String,
    pub segs: Vec<Seg>,
}

impl Bar {
    pub fn sum(&self) -> u64 {
        self.segs.iter().map(|s| s.ns).sum()
    }

    /// ns of the segment with this label (0 when absent).
    pub fn ns(&self, label: &str) -> u64 {
        self.segs.iter().filter(|s| s.label == label).map(|s| s.ns).sum()
    }
}

fn attr_u64(e: &ElementRef, name: &str) -> Result<u64> {
    e.value()
        .attr(name)
        .with_context(|| format!("no {name} on {}", e.html()))?
        .parse()
        .with_context(|| format!("{name} is not a number"))
}

/// The segments of a `.bar` element.
pub fn segments(bar: &ElementRef) -> Result<Vec<Seg>> {
    bar.select(&selector(".seg"))
        .map(|s| {
            Ok(Seg {
                part: s.value().attr("data-part").unwrap_or_default().to_string(),
                label: s.value().attr("data-label").unwrap_or_default().to_string(),
                ns: attr_u64(&s, "data-ns")?,
            })
        })
        .collect()
}

/// Every bar of every waterfall under `scope` (CSS, e.g. `.waterfall[data-trace-id="..."]`).
pub fn waterfall_bars(doc: &Html, scope: &str) -> Result<Vec<Bar>> {
    doc.select(&selector(&format!("{scope} .bar[data-duration-ns]")))
        .map(|b| {
            Ok(Bar {
                span_name: b.value().attr("data-name").unwrap_or_default().to_string(),
                duration_ns: attr_u64(&b, "data-duration-ns")?,
                start_offset_ns: attr_u64(&b, "data-start-offset-ns")?,
                title: b.value().attr("title").unwrap_or_default().to_string(),
                segs: segments(&b)?,
            })
        })
        .collect()
}

/// The text of the first element matching `css`.
pub fn text_of(doc: &Html, css: &str) -> Option<String> {
    doc.select(&selector(css)).next().map(|e| e.text().collect())
}
