//! The partition a record key goes to: otelcol's default (franz-go's Sarama-compatible hasher,
//! FNV-1a 32), which librdkafka's `fnv1a_random` partitioner computes the same way. Keyed by
//! the trace id in hex, spans from otelcol and spans or samples from hotspan of one trace land
//! in the same partition of topics with the same partition count.

/// FNV-1a (32 bit) of `key`, read as a signed number, modulo `partitions`, made non-negative.
pub fn sarama_partition(key: &[u8], partitions: i32) -> i32 {
    if partitions <= 0 {
        return 0;
    }
    let hash = key.iter().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    });
    // Sarama: int32(hash) % n, negated when negative (Go's % keeps the dividend's sign).
    ((hash as i32) % partitions).abs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_fnv1a_and_saramas_sign_handling() {
        // FNV-1a 32 of "" is the offset basis 0x811c9dc5 (negative as i32: -2128831035).
        assert_eq!(sarama_partition(b"", 7), (-2128831035i32 % 7).abs());
        // Published FNV-1a 32 test vectors: "a" -> 0xe40c292c, "foobar" -> 0xbf9cf968.
        assert_eq!(sarama_partition(b"a", 1000), (0xe40c292c_u32 as i32 % 1000).abs());
        assert_eq!(
            sarama_partition(b"foobar", 12),
            (0xbf9cf968_u32 as i32 % 12).abs()
        );
        for n in 1..40 {
            let p = sarama_partition(b"4bf92f3577b34da6a3ce929d0e0e4736", n);
            assert!((0..n).contains(&p));
        }
        assert_eq!(sarama_partition(b"x", 0), 0);
    }
}
