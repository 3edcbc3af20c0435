//! `tail_sampling` after the join, on one thread: the same spans and samples through the join
//! alone, and through the join and then tail_sampling (the spans held by trace, each trace
//! decided by four policies that read the join's attributes, the kept ones passed on). Run:
//! `cargo bench -p hotspan-processors --bench tail_sampling`; compare each `join_then_sampling`
//! with its `join_alone` of the same run, as a ratio of spans/s.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use hotspan_config::parse_yaml;
use hotspan_processors::spanprofile::fixtures::{profiles, span_in, traces, Plant};
use hotspan_processors::spanprofile::{Join, SpanProfileConfig};
use hotspan_processors::tailsampling::{TailSamplingConfig, TailSamplingProcessor};
use hotspan_processors::Processor;
use hotspan_proto::{Batch, TracesBatch};

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const DECISION_WAIT: Duration = Duration::from_secs(5);

/// 512 spans: 64 traces of a root and 7 children, like an SDK's export batch; every fourth
/// trace's root is slow.
fn span_batch(round: u64) -> TracesBatch {
    let mut spans = Vec::with_capacity(512);
    for t in 0..64u64 {
        let trace = (round * 64 + t + 1) as u128;
        let root = (round * 64 + t) * 8 + 1;
        let end = if t % 4 == 0 { 300 } else { 100 };
        spans.push(span_in(trace, root, None, 0, end));
        for c in 1..8 {
            spans.push(span_in(trace, root + c, Some(root), c * 10, c * 10 + 9));
        }
    }
    traces("shop", spans)
}

/// 1024 samples on the spans of `span_batch(round)`, by span id: some spans get a lot of CPU.
fn sample_batch(round: u64) -> hotspan_proto::ProfilesBatch {
    let stacks: [&[&str]; 2] = [
        &["main.computePrices", "main.handle", "runtime.goexit"],
        &[
            "crypto/sha256.block",
            "main.chargeCard",
            "main.handle",
            "runtime.goexit",
        ],
    ];
    let plants: Vec<Plant> = (0..1024u64)
        .map(|i| Plant {
            stack: stacks[(i % 2) as usize].to_vec(),
            count: 1 + i % 3,
            span: Some((round * 64) * 8 + 1 + (i * 7 % 512)),
            ..Default::default()
        })
        .collect();
    profiles("shop", &plants, false)
}

fn join_config(max_buffered_spans: usize) -> SpanProfileConfig {
    SpanProfileConfig {
        wait: Duration::from_secs(3600),
        max_buffered_spans,
        max_buffered_bytes: usize::MAX / 2,
        ..Default::default()
    }
}

/// The gateway example's policies: CPU the join found, latency, errors, a hashed share.
fn sampler(num_traces: u64) -> TailSamplingProcessor {
    let yaml = format!(
        "decision_wait: {}s
num_traces: {num_traces}
policies:
  - {{name: hot, type: numeric_attribute, numeric_attribute: {{key: profile.cpu_ns, min_value: 50000000}}}}
  - {{name: slow, type: latency, latency: {{threshold_ms: 200}}}}
  - {{name: errors, type: status_code, status_code: {{status_codes: [ERROR]}}}}
  - {{name: some, type: probabilistic, probabilistic: {{sampling_percentage: 5}}}}
",
        DECISION_WAIT.as_secs()
    );
    let config: TailSamplingConfig = parse_yaml(&yaml).expect("the bench's config parses");
    TailSamplingProcessor::new(&config).expect("the bench's policies build")
}

/// The join's output through `sampler`, decided at `decide_at` if given.
fn sample(
    sampler: &mut TailSamplingProcessor,
    released: Vec<TracesBatch>,
    now: Instant,
    decide_at: Option<Instant>,
) -> Vec<Batch> {
    let mut out = Vec::new();
    for b in released {
        sampler.process_at(Batch::Traces(b), now, &mut out);
    }
    if let Some(at) = decide_at {
        sampler.on_deadline(at, &mut out);
    }
    out
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("tail_sampling");
    g.throughput(Throughput::Elements(512));

    // A round: 512 spans and their samples in, every span out of the join, every trace decided.
    let fresh = || {
        let join = Join::new(join_config(100_000));
        join.add_spans(span_batch(0), Instant::now());
        join.add_profiles(&sample_batch(0), Instant::now());
        join
    };
    g.bench_function("join_alone_512", |b| {
        b.iter_batched(fresh, |join| join.drain(Instant::now()), BatchSize::SmallInput)
    });
    g.bench_function("join_then_sampling_512", |b| {
        b.iter_batched(
            || (fresh(), sampler(50_000)),
            |(join, mut sampler)| {
                let now = Instant::now();
                let released = join.drain(now);
                sample(&mut sampler, released, now, Some(now + DECISION_WAIT))
            },
            BatchSize::SmallInput,
        )
    });

    // Steady state: the join holds 100k spans, each new batch pushing the oldest out, and the
    // sampler holds 50k traces (400k spans), each new trace deciding the oldest early. Maps
    // this big miss the cache on every lookup, which the round above never shows.
    let held = 100_000;
    let rounds = (held / 512) as u64 + 1;
    let now = Instant::now();
    let join = Join::new(join_config(held));
    for round in 0..rounds {
        join.add_spans(span_batch(round), now);
    }
    let round = std::cell::Cell::new(rounds);
    let next = || {
        round.set(round.get() + 1);
        span_batch(round.get())
    };
    g.bench_function("join_alone_steady_100k_held_512", |b| {
        b.iter_batched(next, |batch| join.add_spans(batch, now), BatchSize::SmallInput)
    });
    let mut sampler = sampler(50_000);
    // Traces of rounds far from the join's, so the two never meet.
    for r in 0..50_000 / 64 {
        sample(&mut sampler, vec![span_batch(1 << 40 | r)], now, None);
    }
    let sampler = std::cell::RefCell::new(sampler);
    g.bench_function("join_then_sampling_steady_100k_held_50k_traces_512", |b| {
        b.iter_batched(
            next,
            |batch| {
                let released = join.add_spans(batch, now);
                sample(&mut sampler.borrow_mut(), released, now, None)
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
    let s = sampler.borrow();
    assert!(
        s.stats().decided_early > 0 && s.stats().waiting_traces == 50_000,
        "the steady bench ran at its bound: {:?}",
        (s.stats().decided_early, s.stats().waiting_traces)
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
