//! The process's own figures, read at scrape time and named as otelcol names them.

use std::fmt::Write;
use std::time::Instant;

/// Clock ticks per second for /proc/self/stat; 100 on every Linux this runs on.
const TICKS_PER_SECOND: f64 = 100.0;

fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

fn heap_bytes() -> Option<u64> {
    tikv_jemalloc_ctl::epoch::advance().ok()?;
    tikv_jemalloc_ctl::stats::allocated::read().ok().map(|b| b as u64)
}

/// Appends the process metrics in Prometheus text.
pub fn render(out: &mut String, started: Instant) {
    let mut metric = |name: &str, kind: &str, help: &str, value: Option<String>| {
        if let Some(v) = value {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        }
    };
    metric(
        "otelcol_process_uptime",
        "counter",
        "Seconds since the process started.",
        Some(format!("{:.3}", started.elapsed().as_secs_f64())),
    );
    metric(
        "otelcol_process_cpu_seconds",
        "counter",
        "CPU time the process used, user and system.",
        cpu_seconds().map(|s| format!("{s:.2}")),
    );
    metric(
        "otelcol_process_memory_rss",
        "gauge",
        "Resident memory of the process, in bytes.",
        rss_bytes().map(|b| b.to_string()),
    );
    metric(
        "otelcol_process_runtime_heap_alloc_bytes",
        "gauge",
        "Bytes live on the heap (what memory_limiter measures).",
        heap_bytes().map(|b| b.to_string()),
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        let mut out = String::new();
        super::render(&mut out, std::time::Instant::now());
        for name in [
            "otelcol_process_uptime",
            "otelcol_process_cpu_seconds",
            "otelcol_process_memory_rss",
        ] {
            assert!(out.contains(&format!("\n{name} ")), "{name} missing in {out}");
        }
        let rss: u64 = out
            .lines()
            .find_map(|l| l.strip_prefix("otelcol_process_memory_rss "))
            .and_then(|v| v.parse().ok())
            .expect("rss");
        assert!(rss > 1024 * 1024, "rss {rss}");
    }
}
