//! Parsing throughput on one core over the committed fixture (`testdata/pressure.trace`: a Go
//! 1.26 trace of a program under allocation pressure, 1.8 MB, two generations, CPU profile
//! samples included). Run: `cargo bench -p hotspan-gotrace`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hotspan_gotrace::{parse, Limits};

fn bench(c: &mut Criterion) {
    let trace = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/pressure.trace"))
        .expect("the committed fixture");
    let limits = Limits::default();
    let mut g = c.benchmark_group("gotrace");
    g.throughput(Throughput::Bytes(trace.len() as u64));
    g.bench_function("parse_fixture", |b| {
        b.iter(|| {
            let s = parse(&trace[..], &limits).expect("the fixture parses");
            assert!(!s.stw.is_empty());
            s
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
