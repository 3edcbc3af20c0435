//! `tail_sampling` after the join, on one thread: the same spans and samples through the join
//! alone, and through the join and then tail_sampling (the spans held by trace, each trace
//! decided by four policies that read the join's attributes, the kept ones passed on). Run:
//! `cargo bench -p hotspan-processors --bench tail_sampling`; compare each `join_then_sampling`
//! with its `join_alone` of the same run, as a ratio of spans/s. Apart from those,
//! `sampling_then_export_realistic_requests_8192`: tail_sampling alone on realistic SDK
//! requests, what it keeps encoded and gzipped as the exporter would, with the bytes a span
//! printed (kept traces of one service leave under one resource); and
//! `gateway_policies_realistic_requests_8192`, those requests decided by the four policies.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use hotspan_config::parse_yaml;
use hotspan_processors::spanprofile::fixtures::{profiles, span_in, traces, Plant};
use hotspan_processors::spanprofile::{Join, SpanProfileConfig};
use hotspan_processors::tailsampling::{TailSamplingConfig, TailSamplingProcessor};
use hotspan_processors::Processor;
use hotspan_proto::compression;
use hotspan_proto::synthetic::{Rng, Shape, Template};
use hotspan_proto::{Batch, Encoding, TracesBatch};

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

/// Every trace kept, decided after [`DECISION_WAIT`].
fn keep_all() -> TailSamplingProcessor {
    let yaml = format!(
        "decision_wait: {}s\npolicies: [{{name: all, type: always_sample}}]",
        DECISION_WAIT.as_secs()
    );
    let config: TailSamplingConfig = parse_yaml(&yaml).expect("the bench's config parses");
    TailSamplingProcessor::new(&config).expect("the bench's policy builds")
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

    // Without the join in front, on realistic spans: 256 SDK requests of 32 spans (a few
    // traces each), every trace kept and decided together, so an output batch gathers the
    // pieces of hundreds of requests; then encoded and gzipped, as the exporter does.
    let template = Template::new(Shape::Realistic, 0, 32, 5).expect("the realistic template builds");
    let mut rng = Rng::new(7);
    let requests: Vec<TracesBatch> = (0..256u64)
        .map(|seq| {
            let (body, _) = template.fill(&mut rng, seq * 32 + 1, 1_700_000_000_000_000_000 + seq);
            TracesBatch::decode(&body, Encoding::Protobuf).expect("a synthetic request decodes")
        })
        .collect();
    let traces: std::collections::HashSet<u128> = requests
        .iter()
        .flat_map(|t| {
            t.raw()
                .iter()
                .flat_map(|r| r.scopes().iter().flat_map(|s| s.spans()))
        })
        .map(|s| s.index.trace_id)
        .collect();
    let now = Instant::now();
    let out = sample(&mut keep_all(), requests.clone(), now, Some(now + DECISION_WAIT));
    let (plain, gz) = out.iter().fold((0, 0), |(p, z), b| match b {
        Batch::Traces(t) => {
            let body = t.encode(Encoding::Protobuf);
            (
                p + body.len(),
                z + compression::gzip(6, &body).map_or(0, |g| g.len()),
            )
        }
        _ => (p, z),
    });
    eprintln!(
        "realistic requests: {} traces in 256 requests; kept, {:.1} bytes a span encoded, {:.1} gzipped",
        traces.len(),
        plain as f64 / 8192.0,
        gz as f64 / 8192.0
    );
    g.throughput(Throughput::Elements(8192));
    g.bench_function("sampling_then_export_realistic_requests_8192", |b| {
        b.iter_batched(
            || (requests.clone(), keep_all()),
            |(requests, mut sampler)| {
                let now = Instant::now();
                let out = sample(&mut sampler, requests, now, Some(now + DECISION_WAIT));
                assert_eq!(
                    out.iter().map(Batch::item_count).sum::<usize>(),
                    8192,
                    "every trace kept"
                );
                out.iter()
                    .filter_map(|b| match b {
                        Batch::Traces(t) => compression::gzip(6, &t.encode(Encoding::Protobuf)).ok(),
                        _ => None,
                    })
                    .map(|gz| gz.len())
                    .sum::<usize>()
            },
            BatchSize::SmallInput,
        )
    });

    // The same requests decided by the gateway's four policies (`sampler`): the attribute and
    // status policies read every span (none has `profile.cpu_ns` without the join in front).
    g.bench_function("gateway_policies_realistic_requests_8192", |b| {
        b.iter_batched(
            || (requests.clone(), sampler(50_000)),
            |(requests, mut sampler)| {
                let now = Instant::now();
                sample(&mut sampler, requests, now, Some(now + DECISION_WAIT))
            },
            BatchSize::SmallInput,
        )
    });
    g.throughput(Throughput::Elements(512));

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
    let steady_ran = std::cell::Cell::new(false);
    g.bench_function("join_then_sampling_steady_100k_held_50k_traces_512", |b| {
        steady_ran.set(true);
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
        !steady_ran.get() || (s.stats().decided_early > 0 && s.stats().waiting_traces == 50_000),
        "the steady bench ran at its bound: {:?}",
        (s.stats().decided_early, s.stats().waiting_traces)
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
