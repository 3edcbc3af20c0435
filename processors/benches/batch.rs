//! The batch processor on one thread: 512-span requests in, 8192-span batches out, as the
//! default config runs it. Run: `cargo bench -p hotspan-processors --bench batch`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use hotspan_processors::batch::{BatchConfig, BatchProcessor};
use hotspan_processors::spanprofile::fixtures::{span_in, traces};
use hotspan_processors::Processor;
use hotspan_proto::Batch;

fn request(round: u64) -> Batch {
    let spans = (0..512u64)
        .map(|i| span_in((round * 64 + i / 8 + 1) as u128, round * 512 + i + 1, None, 0, 10))
        .collect();
    Batch::Traces(traces("shop", spans))
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("batch");
    g.throughput(Throughput::Elements(64 * 512));
    g.bench_function("64_requests_of_512_into_8192s", |b| {
        b.iter_batched(
            || (0..64).map(request).collect::<Vec<_>>(),
            |requests| {
                let mut p = BatchProcessor::new(BatchConfig {
                    send_batch_size: 8192,
                    send_batch_max_size: 0,
                    timeout: Duration::from_millis(200),
                });
                let mut out = Vec::new();
                for r in requests {
                    p.process(r, &mut out);
                }
                p.drain(&mut out);
                out
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
