//! SplitMix64: small, fast, and good enough for test inputs; every stream is reproducible from one u64.

/// The golden-ratio increment of SplitMix64 (2^64 / phi, odd).
pub const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function: a bijection of u64 that spreads nearby seeds far apart. Also used on its own to
/// derive independent seeds and counter-based streams (element i = mix64(key + i * GOLDEN)).
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A sequential SplitMix64 generator.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// The stream of `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ GOLDEN)
    }

    /// The stream whose internal state is `state`: for callers whose recorded seeds name states rather than seeds
    /// (hip-bench's page order and sampled units), so that their streams stay what they were.
    pub fn from_state(state: u64) -> Rng {
        Rng(state)
    }

    /// A fresh seed per run, from HIP_ATTN_TEST_SEED when set (to replay a failure) or else from the clock, and
    /// printed with `tag` so that a failing run can be replayed. docs/ALGORITHM.md's tests want fresh inputs.
    pub fn fresh(tag: &str) -> Rng {
        let seed = std::env::var("HIP_ATTN_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
        });
        eprintln!("[{tag}] HIP_ATTN_TEST_SEED={seed}");
        Rng::new(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix64(self.0)
    }

    /// Uniform in [0, n) (modulo bias is below 2^-40 for the sizes tests use); 0 for n = 0, drawing nothing.
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// Uniform in [lo, hi] (inclusive).
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability percent / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent as usize
    }

    /// One element of a non-empty slice.
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }

    /// Uniform in [-1, 1), on a grid of 2^-23: exactly representable in f32 and, rounded, in every 16-bit float.
    pub fn sym(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_splitmix64() {
        // Reference values of SplitMix64 seeded with 0 (the published test vector's first outputs).
        let mut r = Rng::from_state(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(Rng::new(5).next_u64(), Rng::from_state(5 ^ GOLDEN).next_u64());
    }

    #[test]
    fn below_and_sym_stay_in_range() {
        let mut r = Rng::new(1);
        assert_eq!(r.below(0), 0);
        for _ in 0..10_000 {
            assert!(r.below(7) < 7);
            let x = r.sym();
            assert!((-1.0..1.0).contains(&x));
            assert!((3..=5).contains(&r.range(3, 5)));
        }
    }
}
