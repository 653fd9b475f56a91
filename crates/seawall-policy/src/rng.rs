//! Injected randomness: policies draw from a [`Random`], never from a global.
//!
//! [`SplitMix64`] is the default source: tiny, fast, and good enough for
//! jitter, balancing and sampling (it is not for secrets). Tests use
//! [`Sequence`] to script exact draws, as the conformance corpus does.

/// A source of uniform random numbers.
pub trait Random {
    /// A uniform draw in `[0, 1)`.
    fn next_f64(&mut self) -> f64;

    /// A uniform integer in `[0, n)`; `n` must be at least 1.
    fn below(&mut self, n: usize) -> usize {
        // (n as f64) * [0,1) is below n; the min guards the rounding edge.
        ((self.next_f64() * n as f64) as usize).min(n.saturating_sub(1))
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): one 64-bit state, one multiply-xorshift chain.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator seeded with `seed` (the same seed gives the same draws).
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A generator seeded from the process's hasher keys and the time (distinct per call).
    pub fn from_entropy() -> Self {
        use std::collections::hash_map::RandomState;
        use std::hash::{BuildHasher, Hasher};
        let mut h = RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        Self::new(h.finish())
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl Random for SplitMix64 {
    fn next_f64(&mut self) -> f64 {
        // The top 53 bits, scaled: every value in [0, 1) with 2^-53 spacing.
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Scripted draws, for tests: returns the given values in order, then repeats the last.
#[derive(Debug, Clone)]
pub struct Sequence {
    values: Vec<f64>,
    next: usize,
}

impl Sequence {
    /// Draws `values` in order (each in `[0, 1)`); an empty list draws 0.0.
    pub fn new(values: Vec<f64>) -> Self {
        Self { values, next: 0 }
    }
}

impl Random for Sequence {
    fn next_f64(&mut self) -> f64 {
        let v = match self.values.get(self.next) {
            Some(v) => *v,
            None => self.values.last().copied().unwrap_or(0.0),
        };
        self.next += 1;
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_in_range_and_cover_it() {
        let mut r = SplitMix64::new(7);
        let mut buckets = [0u32; 10];
        for _ in 0..100_000 {
            let x = r.next_f64();
            assert!((0.0..1.0).contains(&x));
            buckets[(x * 10.0) as usize] += 1;
        }
        for b in buckets {
            assert!((9_000..11_000).contains(&b), "{buckets:?}");
        }
    }

    #[test]
    fn below_stays_below() {
        let mut r = Sequence::new(vec![0.0, 0.999_999_999_999, 0.5]);
        assert_eq!(r.below(3), 0);
        assert_eq!(r.below(3), 2);
        assert_eq!(r.below(4), 2);
    }
}
