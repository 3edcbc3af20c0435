//! The consistent-hash ring of otelcol's `load_balancing` exporter (contrib v0.160 and on),
//! point for point, so a routing tier that mixes otelcol and hotspan instances (a migration)
//! sends each trace to the same backend from either. Each backend stands at [`VIRTUAL_NODES`]
//! of [`POSITIONS`] positions; a key belongs to the first position at or after its own,
//! wrapping. Adding or removing a backend moves about 1/n of the keys, and every instance
//! that knows the same backends computes the same owners, with no coordination.

/// Points per backend (otelcol's `defaultWeight`).
pub const VIRTUAL_NODES: u32 = 200;
/// Positions on the ring (otelcol's `maxPositions`).
pub const POSITIONS: u32 = 131_071;
/// A point whose position is taken moves to the next free one, at most this many steps;
/// one that finds none is left out (otelcol's `linearProbeLimit`).
const PROBES: u32 = 10;

#[derive(Debug, Default)]
pub struct Ring {
    /// Backends, sorted.
    backends: Vec<String>,
    /// (position, index into `backends`), sorted; positions are distinct.
    points: Vec<(u32, usize)>,
}

impl Ring {
    pub fn new(mut backends: Vec<String>) -> Ring {
        backends.sort();
        backends.dedup();
        // Every backend's points: crc32 (IEEE) of its endpoint and the point's number
        // (little-endian u32), at that modulo the ring. Points that fall on one position are
        // placed in order of hash, then endpoint, so placing them depends on nothing else.
        let mut candidates: Vec<(u32, u32, usize)> =
            Vec::with_capacity(backends.len() * VIRTUAL_NODES as usize);
        for (i, b) in backends.iter().enumerate() {
            for v in 0..VIRTUAL_NODES {
                let mut hasher = crc32fast::Hasher::new();
                hasher.update(b.as_bytes());
                hasher.update(&v.to_le_bytes());
                let hash = hasher.finalize();
                candidates.push((hash % POSITIONS, hash, i));
            }
        }
        // Backends are sorted, so their indexes order as their endpoints do.
        candidates.sort_unstable();
        let mut taken = vec![false; POSITIONS as usize];
        let mut points = Vec::with_capacity(candidates.len());
        for (at, _, i) in candidates {
            let mut at = at;
            let mut probed = 0;
            while taken[at as usize] && probed < PROBES {
                at = (at + 1) % POSITIONS;
                probed += 1;
            }
            // As otelcol: ten steps taken is a point left out, even if the tenth was free.
            if probed >= PROBES {
                continue;
            }
            taken[at as usize] = true;
            points.push((at, i));
        }
        points.sort_unstable();
        Ring { backends, points }
    }

    pub fn backends(&self) -> &[String] {
        &self.backends
    }

    pub fn is_empty(&self) -> bool {
        self.backends.is_empty()
    }

    /// Index into [`Ring::backends`] of the owner of `key` (a trace id's 16 bytes); `None`
    /// on an empty ring.
    pub fn owner(&self, key: &[u8]) -> Option<usize> {
        self.owner_of_hash(crc32fast::hash(key))
    }

    /// The owner by service, whose key otelcol writes as `service.name=NAME|` (an attribute
    /// routing key of one attribute).
    pub fn service_owner(&self, service: &str) -> Option<usize> {
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(b"service.name=");
        hasher.update(service.as_bytes());
        hasher.update(b"|");
        self.owner_of_hash(hasher.finalize())
    }

    fn owner_of_hash(&self, hash: u32) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let at = hash % POSITIONS;
        let next = self.points.partition_point(|(p, _)| *p < at);
        Some(self.points[next % self.points.len()].1)
    }
}
