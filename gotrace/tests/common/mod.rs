//! Shared by the integration tests: building and running `goref` (Go's own trace parser),
//! comparing its answer with ours, and turning Go's text test traces into binary ones.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{bail, ensure, Context, Result};
use hotspan_gotrace::{Summary, TraceError};
use serde::Deserialize;

#[path = "../../src/spec.rs"]
#[allow(dead_code, unused_imports)]
mod spec;

/// The cargo target profile dir (`target/debug`), where test executables live in `deps/`.
pub fn target_profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

/// A scratch directory of this test process under the target dir.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = target_profile_dir()
        .join("gotrace-tests")
        .join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("creating a scratch dir");
    dir
}

/// The `go` command: the machine's own toolchain and module cache (the default proxy fetches
/// golang.org/x/exp on a cold machine; once cached it builds offline), no cgo.
pub fn go_command() -> Command {
    let mut cmd = Command::new("go");
    cmd.env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=readonly -buildvcs=false")
        .env("CGO_ENABLED", "0");
    cmd
}

fn run_go(cmd: &mut Command, what: &str) -> std::process::Output {
    match cmd.output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`go` is not installed or not on PATH: these tests compare with Go's own trace parser. \
             Install Go 1.26 (or run scripts/test.sh, which installs it) and put it on PATH"
        ),
        Err(e) => panic!("running {what}: {e}"),
    }
}

/// Builds `goref` once per test process and returns its path.
pub fn goref() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("goref");
        let out = target_profile_dir().join("goref");
        // Other test processes may build at once: build privately, then rename over.
        let tmp = out.with_file_name(format!("goref.{}.tmp", std::process::id()));
        let output = run_go(
            go_command()
                .args(["build", "-o"])
                .arg(&tmp)
                .arg(".")
                .current_dir(&src),
            "go build",
        );
        assert!(
            output.status.success(),
            "go build in {} failed ({}):\n{}",
            src.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::rename(&tmp, &out).expect("moving goref into place");
        out
    })
    .clone()
}

/// `go env GOROOT`: where Go's own trace test data lives.
pub fn goroot() -> PathBuf {
    let out = run_go(go_command().args(["env", "GOROOT"]), "go env GOROOT");
    assert!(out.status.success(), "go env GOROOT failed");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Runs `goref produce` with `args`, writing a trace to `path`.
pub fn produce(path: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new(goref())
        .arg("produce")
        .arg("-o")
        .arg(path)
        .args(args)
        .output()
        .context("running goref produce")?;
    ensure!(
        out.status.success(),
        "goref produce failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// What `goref read` prints: Go's parser's view of a trace.
#[derive(Debug, Deserialize, PartialEq)]
pub struct GoSummary {
    pub stw: Vec<GoStw>,
    pub gc: Vec<GoGc>,
    pub clock_snapshots: Vec<GoClock>,
    pub start: i64,
    pub end: i64,
    pub traced_until: i64,
    pub events: u64,
    pub syncs: u64,
}

#[derive(Debug, Deserialize, PartialEq)]
pub struct GoStw {
    pub start: i64,
    pub end: Option<i64>,
    pub reason: String,
}

#[derive(Debug, Deserialize, PartialEq)]
pub struct GoGc {
    pub start: Option<i64>,
    pub end: Option<i64>,
}

#[derive(Debug, Deserialize, PartialEq)]
pub struct GoClock {
    pub trace: i64,
    pub wall: i64,
    pub mono: u64,
}

/// Go's parser on `path`: its summary, or the error it printed.
pub fn go_read(path: &Path) -> Result<std::result::Result<GoSummary, String>> {
    let out = Command::new(goref())
        .arg("read")
        .arg(path)
        .output()
        .context("running goref read")?;
    if !out.status.success() {
        return Ok(Err(String::from_utf8_lossy(&out.stderr).into_owned()));
    }
    Ok(Ok(
        serde_json::from_slice(&out.stdout).context("goref read's JSON")?
    ))
}

/// Ours, in Go's shape, for one comparison of everything.
pub fn as_go(s: &Summary) -> GoSummary {
    GoSummary {
        stw: s
            .stw
            .iter()
            .map(|p| GoStw {
                start: p.start_ns as i64,
                end: p.end_ns.map(|e| e as i64),
                reason: p.reason.clone(),
            })
            .collect(),
        gc: s
            .gc
            .iter()
            .map(|c| GoGc {
                start: c.start_ns.map(|t| t as i64),
                end: c.end_ns.map(|t| t as i64),
            })
            .collect(),
        clock_snapshots: s
            .clock_snapshots
            .iter()
            .map(|c| GoClock {
                trace: c.trace_ns as i64,
                wall: c.wall_unix_ns as i64,
                mono: c.mono_ns,
            })
            .collect(),
        start: s.start_ns as i64,
        end: s.end_ns as i64,
        traced_until: s.covered_until_ns as i64,
        events: s.events,
        // One Sync per generation and the closing one.
        syncs: s.generations + 1,
    }
}

/// Asserts our summary equals Go's, naming the first difference.
pub fn assert_same(ours: &Summary, go: &GoSummary, what: &str) {
    let ours = as_go(ours);
    assert_eq!(ours.stw.len(), go.stw.len(), "{what}: number of pauses");
    for (i, (a, b)) in ours.stw.iter().zip(&go.stw).enumerate() {
        assert_eq!(a, b, "{what}: pause {i} (ours, then Go's)");
    }
    assert_eq!(ours.gc.len(), go.gc.len(), "{what}: number of GC cycles");
    for (i, (a, b)) in ours.gc.iter().zip(&go.gc).enumerate() {
        assert_eq!(a, b, "{what}: GC cycle {i} (ours, then Go's)");
    }
    assert_eq!(
        ours.clock_snapshots, go.clock_snapshots,
        "{what}: clock snapshots"
    );
    assert_eq!(
        (ours.start, ours.end, ours.events, ours.syncs),
        (go.start, go.end, go.events, go.syncs),
        "{what}: first and last event times, event and sync counts"
    );
    assert_eq!(
        ours.traced_until, go.traced_until,
        "{what}: the last event but goroutine statuses and the closing Sync"
    );
}

pub fn parse_file(path: &Path) -> std::result::Result<Summary, TraceError> {
    let f = std::fs::File::open(path).expect("opening a trace");
    hotspan_gotrace::parse(f, &hotspan_gotrace::Limits::default())
}

/// A test from Go's `internal/trace/testdata/tests`: the trace in binary, and whether Go's
/// test expects its parser to accept it.
pub struct GoTextTest {
    pub version: u32,
    pub binary: Vec<u8>,
    pub expect_success: bool,
}

/// Turns Go's text trace format (`internal/trace/raw`'s) into the wire format.
pub fn text_to_binary(text: &str) -> Result<GoTextTest> {
    let (_, rest) = text.split_once("-- expect --").context("no expect section")?;
    let (expect, trace) = rest.split_once("-- trace --").context("no trace section")?;
    let expect_success = expect.trim() == "SUCCESS";
    let mut lines = trace
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim_end())
        .filter(|l| !l.trim().is_empty());
    let header = lines.next().context("no header")?;
    let version: u32 = header
        .trim()
        .strip_prefix("Trace Go1.")
        .context("bad header")?
        .parse()
        .context("bad header version")?;
    let names: std::collections::HashMap<&str, u8> = (0..=255u8)
        .filter_map(|t| spec::spec(t).map(|s| (s.name, t)))
        .collect();
    let mut out = format!("go 1.{version} trace\0\0\0").into_bytes();
    // The batch being written: its header, then its events. Sizes are recomputed, so
    // hand-written traces need not count bytes (Go's tests' sizes are right anyway).
    let mut batch: Option<(Vec<u8>, Vec<u8>)> = None;
    let flush = |batch: &mut Option<(Vec<u8>, Vec<u8>)>, out: &mut Vec<u8>| {
        if let Some((header, data)) = batch.take() {
            out.extend_from_slice(&header);
            put_uvarint(out, data.len() as u64);
            out.extend_from_slice(&data);
        }
    };
    while let Some(line) = lines.next() {
        let mut toks = line.split_whitespace();
        let name = toks.next().context("empty line")?;
        let &typ = names.get(name).with_context(|| format!("unknown event {name}"))?;
        let args: Vec<u64> = toks.map(arg_value).collect::<Result<_>>()?;
        if name == "EventBatch" {
            flush(&mut batch, &mut out);
            let mut header = vec![typ];
            for &a in args.iter().take(3) {
                put_uvarint(&mut header, a);
            }
            batch = Some((header, Vec::new()));
            continue;
        }
        if name == "ExperimentalBatch" || name == "EndOfGeneration" {
            flush(&mut batch, &mut out);
        }
        let w = match &mut batch {
            Some((_, data)) => data,
            None => &mut out,
        };
        w.push(typ);
        for &a in &args {
            put_uvarint(w, a);
        }
        match name {
            "Stack" => {
                let frames = *args.get(1).context("Stack without nframes")?;
                for _ in 0..frames {
                    let frame = lines.next().context("missing frame")?;
                    for v in frame.split_whitespace().map(arg_value) {
                        put_uvarint(w, v?);
                    }
                }
            }
            "String" | "ExperimentalBatch" => {
                let data = lines.next().context("missing data")?;
                let quoted = data.trim().strip_prefix("data=").context("bad data line")?;
                let bytes = go_unquote(quoted)?;
                put_uvarint(w, bytes.len() as u64);
                w.extend_from_slice(&bytes);
            }
            _ => {}
        }
    }
    flush(&mut batch, &mut out);
    Ok(GoTextTest {
        version,
        binary: out,
        expect_success,
    })
}

fn arg_value(tok: &str) -> Result<u64> {
    let (_, v) = tok
        .split_once('=')
        .with_context(|| format!("bad argument {tok}"))?;
    v.parse().with_context(|| format!("bad argument {tok}"))
}

fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Go's `strconv.Unquote` for the escapes `strconv.Quote` writes.
fn go_unquote(q: &str) -> Result<Vec<u8>> {
    let inner = q
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .context("unquoted data")?;
    let mut out = Vec::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next() {
            Some('n') => out.push(b'\n'),
            Some('t') => out.push(b'\t'),
            Some('r') => out.push(b'\r'),
            Some('\\') => out.push(b'\\'),
            Some('"') => out.push(b'"'),
            Some('x') => {
                let h: String = chars.by_ref().take(2).collect();
                out.push(u8::from_str_radix(&h, 16)?);
            }
            Some(u @ ('u' | 'U')) => {
                let n = if u == 'u' { 4 } else { 8 };
                let h: String = chars.by_ref().take(n).collect();
                let c = char::from_u32(u32::from_str_radix(&h, 16)?).context("bad \\u escape")?;
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            other => bail!("unsupported escape \\{other:?}"),
        }
    }
    Ok(out)
}
