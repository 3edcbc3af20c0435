//! otelcol's `probabilistic` policy, bit for bit: FNV-1a (64-bit) over the salt and then the
//! trace id's 16 bytes, sampled when the hash is at most `(2^64 - 1) × ratio`, that product
//! taken as Go's `big.Float` takes it (rounded to 64 significant bits, nearest even, then
//! truncated to an integer). Two collectors with the same salt keep the same traces.

/// The salt otelcol uses when none is set.
pub const DEFAULT_SALT: &str = "default-hash-seed";

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a over `salt` then `id`.
pub fn hash(salt: &[u8], id: &[u8]) -> u64 {
    salt.iter()
        .chain(id)
        .fold(FNV_OFFSET, |h, b| (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME))
}

/// The largest hash sampled at `ratio` (a fraction: percentage / 100).
pub fn threshold(ratio: f64) -> u64 {
    // Negative, zero and NaN ratios sample nothing (Go gives 0 for a negative product).
    if ratio.is_nan() || ratio <= 0.0 {
        return 0;
    }
    if ratio.is_infinite() {
        return u64::MAX;
    }
    // ratio = mantissa × 2^exp exactly.
    let bits = ratio.to_bits();
    let raw_exp = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1 << 52) - 1);
    let (mantissa, exp) = if raw_exp == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1 << 52), raw_exp - 1075)
    };
    // The exact product (2^64 - 1) × mantissa fits in 117 bits.
    let product = u128::from(u64::MAX) * u128::from(mantissa);
    let (significand, shift) = round_to_64_bits(product);
    // Value = significand × 2^(shift + exp), truncated toward zero, saturating at 2^64 - 1.
    let scale = shift + exp;
    if scale >= 0 {
        if scale >= 64 || significand.leading_zeros() < scale as u32 {
            return u64::MAX;
        }
        significand << scale
    } else if -scale >= 64 {
        0
    } else {
        significand >> -scale
    }
}

/// `n` rounded to 64 significant bits, nearest even: (significand, power of two it scales by).
fn round_to_64_bits(n: u128) -> (u64, i32) {
    let width = 128 - n.leading_zeros() as i32;
    if width <= 64 {
        return (n as u64, 0);
    }
    let shift = width - 64;
    let kept = n >> shift;
    let rest = n & ((1u128 << shift) - 1);
    let half = 1u128 << (shift - 1);
    let up = rest > half || (rest == half && kept & 1 == 1);
    let kept = kept + u128::from(up);
    if kept >> 64 != 0 {
        // Rounding carried into a 65th bit: 2^64 is 2^63 × 2.
        ((kept >> 1) as u64, shift + 1)
    } else {
        (kept as u64, shift)
    }
}
