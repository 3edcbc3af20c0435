//! Load for tests: spans made heavy on purpose, and resident memory of a process.

/// `n` spans of about 1 KiB each (mostly one attribute), ids from `first`, 8 to a trace.
pub fn fat_spans(first: u64, n: u64) -> Vec<u8> {
    let pad = "x".repeat(1000);
    let spans: Vec<String> = (first..first + n)
        .map(|id| {
            format!(
                r#"{{"traceId":"{:032x}","spanId":"{:016x}","name":"op","startTimeUnixNano":"1","endTimeUnixNano":"2","attributes":[{{"key":"pad","value":{{"stringValue":"{pad}"}}}}]}}"#,
                id / 8 + 1,
                id + 1
            )
        })
        .collect();
    format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"fat"}}}}]}},"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
        spans.join(",")
    )
    .into_bytes()
}

/// Resident set of a process, in KiB, from /proc.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS for {pid}"))
}
