//! Profiles in tests: synthetic pprof payloads with known answers, reading profiles back from a
//! file exporter, and a stand-in `/debug/pprof` target for scrape tests.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hotspan_proto::otlp::common::v1::any_value;
use hotspan_proto::pprof::pb;
use hotspan_proto::{Encoding, ProfilesBatch};
use prost::Message;

use crate::{gzip, hex};

/// A CPU-profile-shaped pprof: `samples/count` and `cpu/nanoseconds`, one sample per
/// (stack, span) pair with the given count, labelled with `span_id`/`trace_id` in hex and a
/// `stage` label. Stacks are leaf first, by function name.
pub fn synthetic_pprof(samples: &[(&[&str], u64, u64)], trace_id: u128) -> Vec<u8> {
    let mut strings = vec![String::new()];
    let mut intern = |s: &str| -> i64 {
        if let Some(i) = strings.iter().position(|x| x == s) {
            return i as i64;
        }
        strings.push(s.to_string());
        (strings.len() - 1) as i64
    };
    let mut functions = Vec::new();
    let mut locations = Vec::new();
    let mut location_of = BTreeMap::new();
    let mut pb_samples = Vec::new();
    let (samples_s, count_s, cpu_s, ns_s) = (
        intern("samples"),
        intern("count"),
        intern("cpu"),
        intern("nanoseconds"),
    );
    let (span_key, trace_key, stage_key, file) = (
        intern("span_id"),
        intern("trace_id"),
        intern("stage"),
        intern("main.go"),
    );
    for (stack, count, span) in samples {
        let mut ids = Vec::new();
        for name in stack.iter() {
            let next_id = location_of.len() as u64 + 1;
            let id = *location_of.entry(name.to_string()).or_insert_with(|| {
                let name_s = intern(name);
                functions.push(pb::Function {
                    id: next_id,
                    name: name_s,
                    system_name: name_s,
                    filename: file,
                    start_line: 10,
                });
                locations.push(pb::Location {
                    id: next_id,
                    address: 0x1000 + next_id,
                    line: vec![pb::Line {
                        function_id: next_id,
                        line: 10 + next_id as i64,
                        column: 0,
                    }],
                    ..Default::default()
                });
                next_id
            });
            ids.push(id);
        }
        let stage = intern(&format!("stage-{}", stack[0]));
        pb_samples.push(pb::Sample {
            location_id: ids,
            value: vec![*count as i64, *count as i64 * 10_000_000],
            label: vec![
                pb::Label {
                    key: span_key,
                    str: intern(&format!("{span:016x}")),
                    ..Default::default()
                },
                pb::Label {
                    key: trace_key,
                    str: intern(&format!("{trace_id:032x}")),
                    ..Default::default()
                },
                pb::Label {
                    key: stage_key,
                    str: stage,
                    ..Default::default()
                },
            ],
        });
    }
    let profile = pb::Profile {
        sample_type: vec![
            pb::ValueType {
                r#type: samples_s,
                unit: count_s,
            },
            pb::ValueType {
                r#type: cpu_s,
                unit: ns_s,
            },
        ],
        sample: pb_samples,
        location: locations,
        function: functions,
        string_table: strings,
        time_nanos: 1_700_000_000_000_000_000,
        duration_nanos: 10_000_000_000,
        period_type: Some(pb::ValueType {
            r#type: cpu_s,
            unit: ns_s,
        }),
        period: 10_000_000,
        ..Default::default()
    };
    gzip(&profile.encode_to_vec())
}

/// A sample as the tests compare them: stack (leaf first), value, linked span and trace (hex),
/// and string attributes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FlatSample {
    pub sample_type: String,
    pub stack: Vec<String>,
    pub value: i64,
    pub span_id: String,
    pub trace_id: String,
    pub attributes: BTreeMap<String, String>,
}

/// Every sample in a batch, resolved through its dictionary.
pub fn flatten(batch: &ProfilesBatch) -> Vec<FlatSample> {
    let empty = Default::default();
    let d = batch.dictionary().unwrap_or(&empty);
    let s = |i: i32| d.string_table.get(i as usize).cloned().unwrap_or_default();
    let mut out = Vec::new();
    for p in batch
        .resource_profiles()
        .iter()
        .flat_map(|r| &r.scope_profiles)
        .flat_map(|s| &s.profiles)
    {
        let sample_type = p
            .sample_type
            .map(|t| format!("{}/{}", s(t.type_strindex), s(t.unit_strindex)))
            .unwrap_or_default();
        for sample in &p.samples {
            let stack = d
                .stack_table
                .get(sample.stack_index as usize)
                .map(|st| {
                    st.location_indices
                        .iter()
                        .filter_map(|l| d.location_table.get(*l as usize))
                        .flat_map(|l| &l.lines)
                        .filter_map(|line| d.function_table.get(line.function_index as usize))
                        .map(|f| s(f.name_strindex))
                        .collect()
                })
                .unwrap_or_default();
            let link = d.link_table.get(sample.link_index as usize);
            let attributes = sample
                .attribute_indices
                .iter()
                .filter_map(|a| d.attribute_table.get(*a as usize))
                .filter_map(|kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::StringValue(v)) => Some((s(kv.key_strindex), v.clone())),
                    _ => None,
                })
                .collect();
            out.push(FlatSample {
                sample_type: sample_type.clone(),
                stack,
                value: sample.values.first().copied().unwrap_or(0),
                span_id: link.map(|l| hex(&l.span_id)).unwrap_or_default(),
                trace_id: link.map(|l| hex(&l.trace_id)).unwrap_or_default(),
                attributes,
            });
        }
    }
    out
}

/// Every profiles batch a file exporter wrote (complete lines only).
pub fn read_profiles(path: &Path) -> Result<Vec<ProfilesBatch>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e.into()),
    };
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .map(|l| ProfilesBatch::decode(l.trim_end().as_bytes(), Encoding::Json).context("a profiles line"))
        .collect()
}

/// Resource attribute `key` of every resource in the batch.
pub fn resource_values(batch: &ProfilesBatch, key: &str) -> Vec<String> {
    batch
        .resource_profiles()
        .iter()
        .filter_map(|r| r.resource.as_ref())
        .flat_map(|r| &r.attributes)
        .filter(|kv| kv.key == key)
        .filter_map(|kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(v)) => Some(v.clone()),
            _ => None,
        })
        .collect()
}

/// What a [`FakeTarget`] answers on `/debug/pprof/*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum TargetMode {
    /// A pprof profile (CPU requests wait `seconds` first, like Go's handler).
    Pprof = 0,
    /// An HTML error page with status 200, as a misconfigured proxy gives.
    Html = 1,
    /// HTTP 500.
    Error = 2,
}

/// A stand-in for a Go service's `/debug/pprof`, on 127.0.0.1, stopped on drop.
pub struct FakeTarget {
    pub port: u16,
    mode: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeTarget {
    /// Serves `profile` on a given port (0 for any).
    pub fn start(port: u16, profile: Vec<u8>) -> Result<FakeTarget> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let mode = Arc::new(AtomicU8::new(TargetMode::Pprof as u8));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, s) = (mode.clone(), stop.clone());
        let profile = Arc::new(profile);
        let thread = std::thread::spawn(move || {
            // Bounded: ends when dropped, or after five minutes at the most.
            let give_up = Instant::now() + Duration::from_secs(300);
            while !s.load(Ordering::Relaxed) && Instant::now() < give_up {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (m, s, profile) = (m.clone(), s.clone(), profile.clone());
                        std::thread::spawn(move || serve(stream, &m, &s, &profile));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(FakeTarget {
            port,
            mode,
            stop,
            thread: Some(thread),
        })
    }

    pub fn set_mode(&self, mode: TargetMode) {
        self.mode.store(mode as u8, Ordering::Relaxed);
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for FakeTarget {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut stream: std::net::TcpStream, mode: &AtomicU8, stop: &AtomicBool, profile: &[u8]) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf).unwrap_or(0);
    let request = String::from_utf8_lossy(&buf[..n]);
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
    if let Some(seconds) = path.split("seconds=").nth(1).and_then(|s| s.parse::<u64>().ok()) {
        let until = Instant::now() + Duration::from_secs(seconds.min(30));
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let (status, content_type, body): (&str, &str, Vec<u8>) = match mode.load(Ordering::Relaxed) {
        0 => ("200 OK", "application/octet-stream", profile.to_vec()),
        1 => (
            "200 OK",
            "text/html",
            b"<html><body>Bad gateway</body></html>".to_vec(),
        ),
        _ => ("500 Internal Server Error", "text/plain", b"boom".to_vec()),
    };
    let head = format!("HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|_| stream.write_all(&body));
}
