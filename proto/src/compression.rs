//! Body compression for OTLP exporters and receivers, with otelcol's names and levels
//! (`compression: gzip | zstd | snappy | none`, `compression_params.level`).
//!
//! gzip is libdeflate's: at otelcol's default level (6) it deflated an 8192-span batch of
//! realistic spans in 24.4 ms against zlib-rs's 28.3 ms (one core, `cargo bench -p
//! hotspan-proto --bench compression`), for 2.5% more bytes; export bodies are whole
//! buffers, which is what libdeflate takes. Inflating stays streaming (flate2), so a receiver
//! can stop at its size bound.

use std::io::Read;

use serde::Deserialize;

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
    Snappy,
    None,
}

impl Compression {
    /// The `grpc-encoding` / `Content-Encoding` name; `None` for no compression.
    pub fn header(self) -> Option<&'static str> {
        match self {
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
            Compression::Snappy => Some("snappy"),
            Compression::None => None,
        }
    }
}

/// otelcol's `compression_params`: `level` 0 (unset) means the codec's default.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionParams {
    pub level: i32,
}

/// gzip's level when none is given: otelcol's (Go's DefaultCompression) and zlib's.
pub const GZIP_DEFAULT_LEVEL: i32 = 6;
/// zstd's own default, which otelcol's zstd encoder also uses.
pub const ZSTD_DEFAULT_LEVEL: i32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum CompressionError {
    #[error("compression_params.level {level} is not valid for {codec}: {allowed}")]
    Level {
        level: i32,
        codec: &'static str,
        allowed: &'static str,
    },
    #[error("{0}: {1}")]
    Codec(&'static str, String),
    #[error("the body inflates past {0} bytes")]
    TooLarge(usize),
}

/// The level to use, or why `level` does not fit `compression` (as otelcol validates it:
/// gzip -1 or 1-9, zstd 1-22 (negative levels are zstd's fast modes, also allowed), no
/// level for snappy or none).
pub fn level(compression: Compression, params: CompressionParams) -> Result<i32, CompressionError> {
    let level = params.level;
    match compression {
        Compression::Gzip => match level {
            0 | -1 => Ok(GZIP_DEFAULT_LEVEL),
            1..=9 => Ok(level),
            _ => Err(CompressionError::Level {
                level,
                codec: "gzip",
                allowed: "1 (fastest) to 9 (smallest), or -1 for the default (6)",
            }),
        },
        Compression::Zstd => match level {
            0 => Ok(ZSTD_DEFAULT_LEVEL),
            -7..=22 => Ok(level),
            _ => Err(CompressionError::Level {
                level,
                codec: "zstd",
                allowed: "-7 (fastest) to 22 (smallest); default 3",
            }),
        },
        Compression::Snappy | Compression::None => match level {
            0 => Ok(0),
            _ => Err(CompressionError::Level {
                level,
                codec: if compression == Compression::Snappy {
                    "snappy"
                } else {
                    "none"
                },
                allowed: "it takes no level",
            }),
        },
    }
}

/// `body` compressed; `level` as returned by [`level`]. Shrunk to the compressed bytes: the
/// codecs write into a buffer sized for the worst case (about the body's size), and a body
/// kept for retries would otherwise hold several times the memory it needs.
pub fn compress(compression: Compression, level: i32, body: &[u8]) -> Result<Vec<u8>, CompressionError> {
    compress_into_worst_case(compression, level, body).map(|mut out| {
        out.shrink_to_fit();
        out
    })
}

fn compress_into_worst_case(
    compression: Compression,
    level: i32,
    body: &[u8],
) -> Result<Vec<u8>, CompressionError> {
    match compression {
        Compression::None => Ok(body.to_vec()),
        Compression::Gzip => gzip(level, body),
        Compression::Zstd => {
            zstd::bulk::compress(body, level).map_err(|e| CompressionError::Codec("zstd", e.to_string()))
        }
        // The block format, as otelcol's `snappy` (grpc-go's and confighttp's) writes it.
        Compression::Snappy => snap::raw::Encoder::new()
            .compress_vec(body)
            .map_err(|e| CompressionError::Codec("snappy", e.to_string())),
    }
}

/// `body` compressed for a gRPC message: as [`compress`], but snappy in its framed
/// (streaming) format, which is what grpc-go's snappy codec in otelcol reads and writes.
pub fn compress_grpc(compression: Compression, level: i32, body: &[u8]) -> Result<Vec<u8>, CompressionError> {
    if compression != Compression::Snappy {
        return compress(compression, level, body);
    }
    use std::io::Write;
    let mut w = snap::write::FrameEncoder::new(Vec::with_capacity(body.len() / 2));
    w.write_all(body)
        .map_err(|e| CompressionError::Codec("snappy", e.to_string()))?;
    let mut out = w
        .into_inner()
        .map_err(|e| CompressionError::Codec("snappy", e.to_string()))?;
    out.shrink_to_fit();
    Ok(out)
}

/// A gRPC message decompressed, refusing to grow past `limit` bytes (snappy framed).
pub fn decompress_grpc(
    compression: Compression,
    body: &[u8],
    limit: usize,
) -> Result<Vec<u8>, CompressionError> {
    if compression != Compression::Snappy {
        return decompress(compression, body, limit);
    }
    bounded("snappy", snap::read::FrameDecoder::new(body), limit)
}

/// gzip with libdeflate, in a buffer sized for the worst case ([`compress`] shrinks it).
pub fn gzip(level: i32, body: &[u8]) -> Result<Vec<u8>, CompressionError> {
    let lvl = libdeflater::CompressionLvl::new(level)
        .map_err(|_| CompressionError::Codec("gzip", format!("level {level}")))?;
    let mut c = libdeflater::Compressor::new(lvl);
    let mut out = vec![0; c.gzip_compress_bound(body.len())];
    let n = c
        .gzip_compress(body, &mut out)
        .map_err(|e| CompressionError::Codec("gzip", e.to_string()))?;
    out.truncate(n);
    Ok(out)
}

/// gzip with flate2 (zlib-rs), kept for the benchmark that chose libdeflate.
pub fn gzip_flate2(level: i32, body: &[u8]) -> Result<Vec<u8>, CompressionError> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 3),
        flate2::Compression::new(level.clamp(0, 9) as u32),
    );
    enc.write_all(body)
        .map_err(|e| CompressionError::Codec("gzip", e.to_string()))?;
    enc.finish()
        .map_err(|e| CompressionError::Codec("gzip", e.to_string()))
}

/// `body` decompressed, refusing to grow past `limit` bytes.
pub fn decompress(compression: Compression, body: &[u8], limit: usize) -> Result<Vec<u8>, CompressionError> {
    match compression {
        Compression::None => {
            if body.len() > limit {
                return Err(CompressionError::TooLarge(limit));
            }
            Ok(body.to_vec())
        }
        Compression::Gzip => bounded("gzip", flate2::read::GzDecoder::new(body), limit),
        Compression::Zstd => {
            let d = zstd::stream::read::Decoder::new(body)
                .map_err(|e| CompressionError::Codec("zstd", e.to_string()))?;
            bounded("zstd", d, limit)
        }
        Compression::Snappy => {
            let n = snap::raw::decompress_len(body)
                .map_err(|e| CompressionError::Codec("snappy", e.to_string()))?;
            if n > limit {
                return Err(CompressionError::TooLarge(limit));
            }
            snap::raw::Decoder::new()
                .decompress_vec(body)
                .map_err(|e| CompressionError::Codec("snappy", e.to_string()))
        }
    }
}

fn bounded(codec: &'static str, reader: impl Read, limit: usize) -> Result<Vec<u8>, CompressionError> {
    let mut out = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| CompressionError::Codec(codec, e.to_string()))?;
    if out.len() > limit {
        return Err(CompressionError::TooLarge(limit));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_round_trips_and_bounds_hold() {
        let body: Vec<u8> = (0..50_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        for c in [
            Compression::Gzip,
            Compression::Zstd,
            Compression::Snappy,
            Compression::None,
        ] {
            let lvl = level(c, CompressionParams::default()).expect("default level");
            let packed = compress(c, lvl, &body).expect("compresses");
            if c != Compression::None {
                assert!(packed.len() < body.len() / 2, "{c:?}");
            }
            assert_eq!(decompress(c, &packed, body.len()).expect("inflates"), body);
            assert!(matches!(
                decompress(c, &packed, body.len() - 1),
                Err(CompressionError::TooLarge(_))
            ));
        }
        let framed = compress_grpc(Compression::Snappy, 0, &body).expect("framed snappy");
        assert_eq!(
            decompress_grpc(Compression::Snappy, &framed, body.len()).expect("inflates"),
            body
        );
        assert!(decompress_grpc(Compression::Snappy, &framed, body.len() - 1).is_err());
        let flate = gzip_flate2(6, &body).expect("flate2");
        assert_eq!(
            decompress(Compression::Gzip, &flate, body.len()).expect("inflates"),
            body
        );
    }

    /// A compressed body holds its own bytes only, not the worst-case buffer it was
    /// written into, whatever its codec and size.
    #[test]
    fn compressed_bodies_hold_only_their_bytes() {
        let body = |n: usize, seed: u32| -> Vec<u8> {
            (0..n as u32).map(|i| (i.wrapping_mul(seed) >> 7) as u8).collect()
        };
        for c in [Compression::Gzip, Compression::Zstd, Compression::Snappy] {
            for (n, seed) in [(200_000, 7), (10, 3), (3 << 20, 11), (0, 1)] {
                let plain = body(n, seed);
                let lvl = level(c, CompressionParams::default()).expect("default level");
                let packed = compress(c, lvl, &plain).expect("compresses");
                let framed = compress_grpc(c, lvl, &plain).expect("compresses");
                for body in [&packed, &framed] {
                    assert_eq!(body.capacity(), body.len(), "{c:?}, {n} bytes");
                }
                assert_eq!(decompress(c, &packed, n).expect("inflates"), plain);
                assert_eq!(decompress_grpc(c, &framed, n).expect("inflates"), plain);
            }
        }
    }

    #[test]
    fn levels_are_checked_as_otelcol_checks_them() {
        let p = |level| CompressionParams { level };
        assert_eq!(level(Compression::Gzip, p(0)).ok(), Some(6));
        assert_eq!(level(Compression::Gzip, p(9)).ok(), Some(9));
        assert!(level(Compression::Gzip, p(10)).is_err());
        assert_eq!(level(Compression::Zstd, p(0)).ok(), Some(3));
        assert_eq!(level(Compression::Zstd, p(19)).ok(), Some(19));
        assert!(level(Compression::Snappy, p(1)).is_err());
        assert!(level(Compression::None, p(1)).is_err());
        assert!(decompress(Compression::Gzip, b"not gzip", 100).is_err());
    }
}
