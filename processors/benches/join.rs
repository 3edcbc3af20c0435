//! The join alone, on one thread: spans in and out (hold, annotate, release) and samples in
//! (resolve stacks, find the span, accumulate). Run: `cargo bench -p hotspan-processors`.
//! Figures are per core; compare runs on the same machine, as ratios.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use hotspan_processors::spanprofile::fixtures::{profiles, span_in, traces, Plant};
use hotspan_processors::spanprofile::{HeldCompression, Join, SpanProfileConfig};
use hotspan_proto::synthetic::{Rng, Shape, Template};
use hotspan_proto::{Encoding, TracesBatch};

/// 512 spans: 64 traces of a root and 7 children, like an SDK's export batch.
fn span_batch(round: u64) -> TracesBatch {
    let mut spans = Vec::with_capacity(512);
    for t in 0..64u64 {
        let trace = (round * 64 + t + 1) as u128;
        let root = (round * 64 + t) * 8 + 1;
        spans.push(span_in(trace, root, None, 0, 100));
        for c in 1..8 {
            spans.push(span_in(trace, root + c, Some(root), c * 10, c * 10 + 9));
        }
    }
    traces("shop", spans)
}

const STACKS: [&[&str]; 4] = [
    &[
        "main.validateCart",
        "main.handle",
        "net/http.(*conn).serve",
        "runtime.goexit",
    ],
    &[
        "main.computePrices",
        "main.handle",
        "net/http.(*conn).serve",
        "runtime.goexit",
    ],
    &[
        "crypto/sha256.block",
        "main.chargeCard",
        "main.handle",
        "net/http.(*conn).serve",
        "runtime.goexit",
    ],
    &[
        "runtime.mallocgc",
        "main.applyDiscounts",
        "main.computePrices",
        "main.handle",
        "runtime.goexit",
    ],
];

/// 1024 pprof-style samples naming the spans of `span_batch(round)` by span id.
fn sample_batch(round: u64) -> hotspan_proto::ProfilesBatch {
    let plants: Vec<Plant> = (0..1024u64)
        .map(|i| Plant {
            stack: STACKS[(i % 4) as usize].to_vec(),
            count: 1 + i % 3,
            span: Some((round * 64) * 8 + 1 + (i % 512)),
            labels: vec![("domain", "payment")],
            ..Default::default()
        })
        .collect();
    profiles("shop", &plants, false)
}

fn config() -> SpanProfileConfig {
    SpanProfileConfig {
        wait: Duration::from_secs(3600),
        ..Default::default()
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("join");
    g.throughput(Throughput::Elements(512));
    // Baseline in the same run: what any collector does with these spans at the least.
    let encoded = span_batch(0).encode(Encoding::Protobuf);
    g.bench_function("baseline_decode_encode_512", |b| {
        b.iter(|| {
            let batch = TracesBatch::decode(&encoded, Encoding::Protobuf).expect("decodes");
            batch.encode(Encoding::Protobuf)
        })
    });
    g.bench_function("spans_in_and_out_512", |b| {
        b.iter_batched(
            || (Join::new(config()), span_batch(0)),
            |(join, batch)| {
                let now = Instant::now();
                join.add_spans(batch, now);
                join.drain(now)
            },
            BatchSize::SmallInput,
        )
    });
    g.throughput(Throughput::Elements(1024));
    g.bench_function("samples_in_1024", |b| {
        b.iter_batched(
            || {
                let join = Join::new(config());
                join.add_spans(span_batch(0), Instant::now());
                (join, sample_batch(0))
            },
            |(join, batch)| {
                join.add_profiles(&batch, Instant::now());
                join
            },
            BatchSize::SmallInput,
        )
    });
    g.throughput(Throughput::Elements(512));
    g.bench_function("annotated_release_512", |b| {
        b.iter_batched(
            || {
                let join = Join::new(config());
                let now = Instant::now();
                join.add_spans(span_batch(0), now);
                join.add_profiles(&sample_batch(0), now);
                join
            },
            |join| join.drain(Instant::now()),
            BatchSize::SmallInput,
        )
    });
    // One trace of `n` spans (a root, a chain of 64 and a fan of the rest): releasing it walks
    // the tree once, so the cost per span should stay flat as `n` grows (it was quadratic).
    for n in [512u64, 8192] {
        g.throughput(Throughput::Elements(n));
        g.bench_function(format!("release_one_trace_of_{n}"), |b| {
            b.iter_batched(
                || {
                    let join = Join::new(config());
                    let mut spans = vec![span_in(1, 1, None, 0, 1_000_000)];
                    spans.extend((2..=64).map(|id| span_in(1, id, Some(id - 1), id, 1_000_000 - id)));
                    spans.extend((65..=n).map(|id| span_in(1, id, Some(1 + id % 64), id, id + 1)));
                    join.add_spans(traces("shop", spans), Instant::now());
                    join
                },
                |join| join.drain(Instant::now()),
                BatchSize::SmallInput,
            )
        });
    }
    g.throughput(Throughput::Elements(512));
    // Steady state at the default bound: 100k spans held,
    // each new batch pushing the oldest out. Maps this big miss the cache on every lookup,
    // which the small benches above never show.
    let held = 100_000;
    let join = Join::new(SpanProfileConfig {
        max_buffered_spans: held,
        max_buffered_bytes: usize::MAX / 2,
        ..config()
    });
    let now = Instant::now();
    let rounds = (held / 512) as u64 + 1;
    for round in 0..rounds {
        join.add_spans(span_batch(round), now);
    }
    let round = std::cell::Cell::new(rounds);
    g.bench_function("steady_state_100k_held_512", |b| {
        b.iter_batched(
            || {
                round.set(round.get() + 1);
                span_batch(round.get())
            },
            |batch| join.add_spans(batch, now),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// Realistic spans (`hotspan_proto::synthetic`, 512 a request) held and released, with held
/// spans packed (snappy, the default) and as received, against decoding and encoding the same
/// request.
fn realistic(c: &mut Criterion) {
    let template = Template::new(Shape::Realistic, 0, 512, 5).expect("template");
    let mut rng = Rng::new(11);
    let bodies: Vec<Vec<u8>> = (0..16)
        .map(|i| template.fill(&mut rng, i, 1_700_000_000_000_000_000).0)
        .collect();
    let next = std::cell::Cell::new(0);
    let body = || {
        next.set((next.get() + 1) % bodies.len());
        &bodies[next.get()]
    };
    let mut g = c.benchmark_group("join_realistic");
    g.throughput(Throughput::Elements(512));
    g.bench_function("baseline_decode_encode_512", |b| {
        b.iter(|| {
            let batch = TracesBatch::decode(body(), Encoding::Protobuf).expect("decodes");
            batch.encode(Encoding::Protobuf)
        })
    });
    for (name, held_compression) in [
        ("snappy", HeldCompression::Snappy),
        ("none", HeldCompression::None),
    ] {
        g.bench_function(format!("spans_in_and_out_512_{name}"), |b| {
            b.iter_batched(
                || {
                    let join = Join::new(SpanProfileConfig {
                        held_compression,
                        ..config()
                    });
                    let batch = TracesBatch::decode(body(), Encoding::Protobuf).expect("decodes");
                    (join, batch)
                },
                |(join, batch)| {
                    let now = Instant::now();
                    join.add_spans(batch, now);
                    let out = join.drain(now);
                    out.iter()
                        .map(|b| b.encode(Encoding::Protobuf))
                        .collect::<Vec<_>>()
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench, realistic);
criterion_main!(benches);
