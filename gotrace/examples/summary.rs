//! Prints what hotspan-gotrace finds in a trace file: `cargo run -p hotspan-gotrace --example
//! summary -- trace.out`.

use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: summary TRACE_FILE"))?;
    let file = std::io::BufReader::new(std::fs::File::open(&path)?);
    let started = Instant::now();
    let s = hotspan_gotrace::parse(file, &hotspan_gotrace::Limits::default())?;
    let took = started.elapsed();
    println!(
        "{} {} bytes, {} generations, {} events, {} ticks/s, {}..{} ns (traced until {}), parsed in {took:?} ({:.0} MB/s)",
        s.version,
        s.bytes,
        s.generations,
        s.events,
        s.ticks_per_sec,
        s.start_ns,
        s.end_ns,
        s.covered_until_ns,
        s.bytes as f64 / took.as_secs_f64() / 1e6
    );
    let paused: u64 = s
        .stw
        .iter()
        .map(|p| p.end_ns.unwrap_or(s.end_ns) - p.start_ns)
        .sum();
    println!(
        "{} stop-the-world pauses, {paused} ns in all; {} GC cycles",
        s.stw.len(),
        s.gc.len()
    );
    for p in s.stw.iter().take(5) {
        println!("  {p:?}");
    }
    for c in &s.clock_snapshots {
        println!("  {c:?}");
    }
    Ok(())
}
