//! Body compression for OTLP exporters and receivers, with otelcol's names and levels
//! (`compression: gzip | zstd | snappy | none`, and over HTTP also `zlib | deflate | lz4 |
//! x-snappy-framed`; `compression_params.level`).
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
    /// HTTP only, as in otelcol; `deflate` is zlib's format too, as HTTP and otelcol have it.
    Zlib,
    Deflate,
    /// HTTP only: lz4's frame format, as otelcol's exporters write it.
    Lz4,
    /// HTTP only: snappy's framed (streaming) format.
    #[serde(rename = "x-snappy-framed")]
    SnappyFramed,
}

impl Compression {
    /// The `grpc-encoding` / `Content-Encoding` name; `None` for no compression.
    pub fn header(self) -> Option<&'static str> {
        match self {
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
            Compression::Snappy => Some("snappy"),
            Compression::None => None,
            Compression::Zlib => Some("zlib"),
            Compression::Deflate => Some("deflate"),
            Compression::Lz4 => Some("lz4"),
            Compression::SnappyFramed => Some("x-snappy-framed"),
        }
    }

    /// The name otelcol's config gives it.
    pub fn name(self) -> &'static str {
        self.header().unwrap_or("none")
    }

    /// Whether gRPC carries it: otelcol's gRPC client and server know gzip, zstd and snappy.
    pub fn over_grpc(self) -> bool {
        matches!(
            self,
            Compression::Gzip | Compression::Zstd | Compression::Snappy | Compression::None
        )
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
/// gzip, zlib and deflate -1 or 1-9, zstd 1-22 (negative levels are zstd's fast modes, also
/// allowed), no level for snappy, lz4 or none).
pub fn level(compression: Compression, params: CompressionParams) -> Result<i32, CompressionError> {
    let level = params.level;
    match compression {
        Compression::Gzip | Compression::Zlib | Compression::Deflate => match level {
            0 | -1 => Ok(GZIP_DEFAULT_LEVEL),
            1..=9 => Ok(level),
            _ => Err(CompressionError::Level {
                level,
                codec: compression.name(),
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
        Compression::Snappy | Compression::SnappyFramed | Compression::Lz4 | Compression::None => match level
        {
            0 => Ok(0),
            _ => Err(CompressionError::Level {
                level,
                codec: compression.name(),
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
        Compression::SnappyFramed => snappy_framed(body),
        Compression::Zlib | Compression::Deflate => zlib(level, body),
        Compression::Lz4 => {
            let mut w = lz4_flex::frame::FrameEncoder::new(Vec::with_capacity(body.len() / 2));
            std::io::Write::write_all(&mut w, body)
                .map_err(|e| CompressionError::Codec("lz4", e.to_string()))?;
            w.finish()
                .map_err(|e| CompressionError::Codec("lz4", e.to_string()))
        }
    }
}

/// `body` compressed for a gRPC message: as [`compress`], but snappy in its framed
/// (streaming) format, which is what grpc-go's snappy codec in otelcol reads and writes.
pub fn compress_grpc(compression: Compression, level: i32, body: &[u8]) -> Result<Vec<u8>, CompressionError> {
    if compression != Compression::Snappy {
        return compress(compression, level, body);
    }
    let mut out = snappy_framed(body)?;
    out.shrink_to_fit();
    Ok(out)
}

fn snappy_framed(body: &[u8]) -> Result<Vec<u8>, CompressionError> {
    let mut w = snap::write::FrameEncoder::new(Vec::with_capacity(body.len() / 2));
    std::io::Write::write_all(&mut w, body).map_err(|e| CompressionError::Codec("snappy", e.to_string()))?;
    w.into_inner()
        .map_err(|e| CompressionError::Codec("snappy", e.to_string()))
}

/// A gRPC message decompressed, refusing to grow past `limit` bytes (snappy framed).
pub fn decompress_grpc(
    compression: Compression,
    body: &[u8],
    limit: usize,
) -> Result<Vec<u8>, CompressionError> {
    let mut out = Vec::new();
    inflate_into(compression, true, body, limit, &mut out)?;
    Ok(out)
}

/// A gRPC message decompressed as [`decompress_grpc`] does, as a whole uncompressed gRPC
/// frame (flag 0, then the length): what a server's decoder reads, without a second copy of
/// the message to put the header in front.
pub fn decompress_grpc_frame(
    compression: Compression,
    body: &[u8],
    limit: usize,
) -> Result<Vec<u8>, CompressionError> {
    const HEADER: usize = 5;
    let mut frame = vec![0; HEADER];
    // A gRPC length is 32 bits.
    let limit = limit.min(u32::MAX as usize);
    inflate_into(compression, true, body, limit, &mut frame)?;
    let len = u32::try_from(frame.len() - HEADER).map_err(|_| CompressionError::TooLarge(limit))?;
    if let Some(at) = frame.get_mut(1..HEADER) {
        at.copy_from_slice(&len.to_be_bytes());
    }
    Ok(frame)
}

/// gzip with libdeflate, in a buffer sized for the worst case ([`compress`] shrinks it).
pub fn gzip(level: i32, body: &[u8]) -> Result<Vec<u8>, CompressionError> {
    libdeflate(
        "gzip",
        level,
        body,
        libdeflater::Compressor::gzip_compress_bound,
        libdeflater::Compressor::gzip_compress,
    )
}

/// zlib's format with libdeflate, as [`gzip`].
fn zlib(level: i32, body: &[u8]) -> Result<Vec<u8>, CompressionError> {
    libdeflate(
        "zlib",
        level,
        body,
        libdeflater::Compressor::zlib_compress_bound,
        libdeflater::Compressor::zlib_compress,
    )
}

type Bound = fn(&mut libdeflater::Compressor, usize) -> usize;
type Deflate =
    fn(&mut libdeflater::Compressor, &[u8], &mut [u8]) -> Result<usize, libdeflater::CompressionError>;

fn libdeflate(
    codec: &'static str,
    level: i32,
    body: &[u8],
    bound: Bound,
    deflate: Deflate,
) -> Result<Vec<u8>, CompressionError> {
    let lvl = libdeflater::CompressionLvl::new(level)
        .map_err(|_| CompressionError::Codec(codec, format!("level {level}")))?;
    let mut c = libdeflater::Compressor::new(lvl);
    let mut out = vec![0; bound(&mut c, body.len())];
    let n = deflate(&mut c, body, &mut out).map_err(|e| CompressionError::Codec(codec, e.to_string()))?;
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
    let mut out = Vec::new();
    inflate_into(compression, false, body, limit, &mut out)?;
    Ok(out)
}

/// Appends `body` decompressed to `out`, refusing to append more than `limit` bytes; snappy in
/// its framed format for gRPC, its block format otherwise (otelcol's choices). Sized up front
/// where the body tells its size: grown by doubling, the buffer would be copied on the way and
/// keep up to twice the message's memory for as long as its spans are held.
fn inflate_into(
    compression: Compression,
    grpc: bool,
    body: &[u8],
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    match compression {
        Compression::None => {
            if body.len() > limit {
                return Err(CompressionError::TooLarge(limit));
            }
            out.extend_from_slice(body);
            Ok(())
        }
        // Every member, as Go's gzip reader (otelcol's) reads them: a body of several members
        // is one body, and bytes after a member that are not another are an error, not
        // ignored.
        Compression::Gzip => {
            // The last member's ISIZE: the whole size of the usual body of one member.
            let hint = body
                .len()
                .checked_sub(4)
                .and_then(|at| body.get(at..))
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map_or(0, |b| u32::from_le_bytes(b) as usize);
            out.reserve(hint.min(limit));
            bounded("gzip", flate2::read::MultiGzDecoder::new(body), limit, out)
        }
        Compression::Zstd => {
            // The first frame's size, when its writer put it in (otelcol's does).
            if let Ok(Some(n)) = zstd::zstd_safe::get_frame_content_size(body) {
                out.reserve(usize::try_from(n).unwrap_or(usize::MAX).min(limit));
            }
            let d = zstd::stream::read::Decoder::new(body)
                .map_err(|e| CompressionError::Codec("zstd", e.to_string()))?;
            bounded("zstd", d, limit, out)
        }
        Compression::Snappy if grpc => bounded("snappy", snap::read::FrameDecoder::new(body), limit, out),
        Compression::SnappyFramed => bounded("snappy", snap::read::FrameDecoder::new(body), limit, out),
        Compression::Zlib | Compression::Deflate => {
            bounded("zlib", flate2::read::ZlibDecoder::new(body), limit, out)
        }
        Compression::Lz4 => bounded("lz4", lz4_flex::frame::FrameDecoder::new(body), limit, out),
        Compression::Snappy => {
            let n = snap::raw::decompress_len(body)
                .map_err(|e| CompressionError::Codec("snappy", e.to_string()))?;
            if n > limit {
                return Err(CompressionError::TooLarge(limit));
            }
            let from = out.len();
            out.resize(from + n, 0);
            let written = snap::raw::Decoder::new()
                .decompress(body, out.get_mut(from..).unwrap_or_default())
                .map_err(|e| CompressionError::Codec("snappy", e.to_string()))?;
            out.truncate(from + written);
            Ok(())
        }
    }
}

/// Appends what `reader` gives to `out`, up to `limit` bytes; more is an error.
fn bounded(
    codec: &'static str,
    reader: impl Read,
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    let from = out.len();
    reader
        .take(limit as u64 + 1)
        .read_to_end(out)
        .map_err(|e| CompressionError::Codec(codec, e.to_string()))?;
    if out.len() - from > limit {
        return Err(CompressionError::TooLarge(limit));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODECS: [Compression; 8] = [
        Compression::Gzip,
        Compression::Zstd,
        Compression::Snappy,
        Compression::None,
        Compression::Zlib,
        Compression::Deflate,
        Compression::Lz4,
        Compression::SnappyFramed,
    ];

    #[test]
    fn every_codec_round_trips_and_bounds_hold() {
        let body: Vec<u8> = (0..50_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        for c in CODECS {
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
        assert_eq!(level(Compression::Zlib, p(-1)).ok(), Some(6));
        assert_eq!(level(Compression::Deflate, p(1)).ok(), Some(1));
        assert!(level(Compression::Deflate, p(10)).is_err());
        assert!(level(Compression::Lz4, p(1)).is_err());
        assert!(level(Compression::SnappyFramed, p(1)).is_err());
        assert!(decompress(Compression::Gzip, b"not gzip", 100).is_err());
    }

    #[test]
    fn a_gzip_body_is_read_to_its_last_member_and_trailing_bytes_are_refused() {
        let (a, b) = (b"first member ".repeat(50), b"second member".repeat(70));
        let two = [gzip(6, &a).expect("gzip"), gzip(1, &b).expect("gzip")].concat();
        let whole = [&a[..], &b[..]].concat();
        assert_eq!(
            decompress(Compression::Gzip, &two, whole.len()).expect("inflates"),
            whole
        );
        assert!(matches!(
            decompress(Compression::Gzip, &two, whole.len() - 1),
            Err(CompressionError::TooLarge(_))
        ));
        let trailing = [&gzip(6, &a).expect("gzip")[..], b"junk"].concat();
        assert!(matches!(
            decompress(Compression::Gzip, &trailing, 1 << 20),
            Err(CompressionError::Codec("gzip", _))
        ));
    }

    #[test]
    fn a_zstd_body_of_several_frames_is_read_whole() {
        let (a, b) = (b"first frame ".repeat(50), b"second frame".repeat(70));
        let lvl = ZSTD_DEFAULT_LEVEL;
        let two = [
            compress(Compression::Zstd, lvl, &a).expect("zstd"),
            compress(Compression::Zstd, lvl, &b).expect("zstd"),
        ]
        .concat();
        let whole = [&a[..], &b[..]].concat();
        let got = decompress(Compression::Zstd, &two, whole.len()).expect("inflates");
        assert!(got == whole, "{} bytes of {}", got.len(), whole.len());
    }

    #[test]
    fn a_grpc_frame_holds_the_whole_message_after_its_header() {
        let plain = b"a message, a little repeated, repeated".repeat(40);
        for c in CODECS {
            let lvl = level(c, CompressionParams::default()).expect("default level");
            let body = compress_grpc(c, lvl, &plain).expect("compresses");
            let frame = decompress_grpc_frame(c, &body, plain.len()).expect("inflates");
            assert_eq!(frame[0], 0, "{c:?}: not compressed any more");
            assert_eq!(frame[1..5], (plain.len() as u32).to_be_bytes(), "{c:?}");
            assert_eq!(frame[5..], plain[..], "{c:?}");
            assert!(decompress_grpc_frame(c, &body, plain.len() - 1).is_err(), "{c:?}");
        }
    }
}
