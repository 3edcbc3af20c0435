//! Compressing an export body of realistic spans (`hotspan_proto::synthetic`, 8192 spans as
//! the batch processor sends them): gzip from zlib-rs (flate2) and from libdeflate at otelcol's
//! default level, zstd and snappy at theirs, otlp_http's zlib, lz4 and framed snappy, and decoding and re-encoding the same request
//! (the receive and export paths). Prints each codec's bytes per span.
//! Run: `cargo bench -p hotspan-proto --bench compression`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hotspan_proto::compression::{self, Compression};
use hotspan_proto::synthetic::{Rng, Shape, Template};
use hotspan_proto::{Encoding, TracesBatch};

const SPANS: usize = 8192;

fn bench(c: &mut Criterion) {
    let template = Template::new(Shape::Realistic, 0, SPANS, 5).expect("template");
    let (body, _) = template.fill(&mut Rng::new(9), 1, 1_700_000_000_000_000_000);
    let mut g = c.benchmark_group("export_8192_realistic");
    g.throughput(Throughput::Elements(SPANS as u64));
    g.sample_size(20);
    let per_span = |n: usize| n as f64 / SPANS as f64;
    eprintln!("uncompressed: {:.1} bytes a span", per_span(body.len()));
    g.bench_function("gzip6_zlib_rs", |b| b.iter(|| compression::gzip_flate2(6, &body)));
    g.bench_function("gzip6_libdeflate", |b| b.iter(|| compression::gzip(6, &body)));
    g.bench_function("gzip1_libdeflate", |b| b.iter(|| compression::gzip(1, &body)));
    g.bench_function("zstd3", |b| {
        b.iter(|| compression::compress(Compression::Zstd, 3, &body))
    });
    g.bench_function("snappy", |b| {
        b.iter(|| compression::compress(Compression::Snappy, 0, &body))
    });
    // otlp_http's other codecs, as otelcol's HTTP exporters have them.
    g.bench_function("zlib6_libdeflate", |b| {
        b.iter(|| compression::compress(Compression::Zlib, 6, &body))
    });
    g.bench_function("lz4", |b| {
        b.iter(|| compression::compress(Compression::Lz4, 0, &body))
    });
    g.bench_function("snappy_framed", |b| {
        b.iter(|| compression::compress(Compression::SnappyFramed, 0, &body))
    });
    for (name, bytes) in [
        ("gzip 6, zlib-rs", compression::gzip_flate2(6, &body)),
        ("gzip 6, libdeflate", compression::gzip(6, &body)),
        ("gzip 1, libdeflate", compression::gzip(1, &body)),
        ("zstd 3", compression::compress(Compression::Zstd, 3, &body)),
        ("snappy", compression::compress(Compression::Snappy, 0, &body)),
        ("zlib 6", compression::compress(Compression::Zlib, 6, &body)),
        ("lz4", compression::compress(Compression::Lz4, 0, &body)),
        (
            "x-snappy-framed",
            compression::compress(Compression::SnappyFramed, 0, &body),
        ),
    ] {
        let n = bytes.map(|b| b.len()).unwrap_or(0);
        eprintln!("{name}: {:.1} bytes a span", per_span(n));
    }
    let gz = compression::gzip(6, &body).expect("gzip");
    g.bench_function("gunzip", |b| {
        b.iter(|| compression::decompress(Compression::Gzip, &gz, 64 << 20))
    });
    g.bench_function("receive_decode", |b| {
        b.iter(|| TracesBatch::decode(&body, Encoding::Protobuf))
    });
    let batch = TracesBatch::decode(&body, Encoding::Protobuf).expect("decodes");
    g.bench_function("export_encode", |b| b.iter(|| batch.encode(Encoding::Protobuf)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
