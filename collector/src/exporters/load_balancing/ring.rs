//! A consistent-hash ring: each backend stands at [`VIRTUAL_NODES`] points; a key belongs to
//! the first point at or after its hash. Adding or removing a backend moves only the keys of
//! the points it gains or loses (about 1/n of them), and every instance that knows the same
//! backends computes the same owners, with no coordination.

/// Points per backend: enough that keys spread within a few percent of evenly.
pub const VIRTUAL_NODES: usize = 100;

#[derive(Debug, Default)]
pub struct Ring {
    /// Backends, sorted, so the ring does not depend on the order they were listed in.
    backends: Vec<String>,
    /// (point, index into `backends`), sorted by point.
    points: Vec<(u64, usize)>,
}

impl Ring {
    pub fn new(mut backends: Vec<String>) -> Ring {
        backends.sort();
        backends.dedup();
        let mut points = Vec::with_capacity(backends.len() * VIRTUAL_NODES);
        for (i, b) in backends.iter().enumerate() {
            for v in 0..VIRTUAL_NODES {
                points.push((hash(format!("{b}#{v}").as_bytes()), i));
            }
        }
        // Ties (vanishingly rare) break by backend name, so every instance agrees.
        points.sort_unstable();
        Ring { backends, points }
    }

    pub fn backends(&self) -> &[String] {
        &self.backends
    }

    pub fn is_empty(&self) -> bool {
        self.backends.is_empty()
    }

    /// Index into [`Ring::backends`] of the owner of `key`; `None` on an empty ring.
    pub fn owner(&self, key: &[u8]) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let h = hash(key);
        let at = self.points.partition_point(|(p, _)| *p < h);
        Some(self.points[at % self.points.len()].1)
    }
}

/// FNV-1a, then a 64-bit finalizer (splitmix64) so nearby keys land far apart. Written out
/// rather than taken from `std`, whose hasher may change between Rust releases: instances
/// built by different compilers must still agree on owners.
pub fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}
