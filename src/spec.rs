//! docs/ALGORITHM.md as plain functions: the key sets of a query block and the tree search.
//! The CPU backend is built from these; the CUDA kernels implement the same rules and are tested against them.

/// The geometry of one query block: which keys its queries attend besides the selected blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockKeys {
    /// Sink set S = [0, sink_end).
    pub sink_end: usize,
    /// Start of the search domain (= the configured sink, even when Tk is shorter).
    pub sink: usize,
    /// e_B: the local set starts here and the search domain [sink, e) ends here.
    pub e: usize,
    /// Key-block size.
    pub bk: usize,
    /// Number of key blocks in the search domain (the last may be partial).
    pub nb: usize,
}

impl BlockKeys {
    /// Keys of a query block whose first query sits at position `p0`, in a sequence of `tk` keys.
    /// Non-causal blocks have no local set: e = Tk (raised to `sink` when Tk < sink, which changes nothing here
    /// since the search domain is empty either way, but keeps e >= sink so that a decode step reusing a stored
    /// e never counts a sink key twice).
    pub fn new(p0: usize, tk: usize, sink: usize, window: usize, bk: usize, causal: bool) -> BlockKeys {
        let e = if causal { (p0 + 1).saturating_sub(window) } else { tk }.max(sink);
        Self::with_e(e, tk, sink, bk)
    }

    /// Keys for a stored `e` (decode reuse), or one just computed.
    pub fn with_e(e: usize, tk: usize, sink: usize, bk: usize) -> BlockKeys {
        let nb = if e > sink { (e - sink).div_ceil(bk) } else { 0 };
        BlockKeys { sink_end: sink.min(tk), sink, e, bk, nb }
    }

    /// Keys [start, end) of search-domain block `j`.
    pub fn block_range(&self, j: usize) -> (usize, usize) {
        let start = self.sink + j * self.bk;
        (start, (start + self.bk).min(self.e))
    }

    /// Calls `f` on every key that query position `p` attends, given the selected blocks: sinks, then the
    /// selected blocks in the order given, then the local set [e, p] (causal) — each key once.
    pub fn for_each_key(&self, p: usize, causal: bool, selected: &[u32], mut f: impl FnMut(usize)) {
        let visible = |j: usize| !causal || j <= p;
        for j in (0..self.sink_end).filter(|&j| visible(j)) {
            f(j);
        }
        for &blk in selected {
            let (a, b) = self.block_range(blk as usize);
            for j in (a..b).filter(|&j| visible(j)) {
                f(j);
            }
        }
        if causal {
            // e >= sink_end, so the local set never repeats a sink key.
            for j in self.e.max(self.sink_end)..=p {
                f(j);
            }
        }
    }
}

/// q.k in f32, summed in index order: the one order the CPU reference uses for scores and logits.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(any(test, feature = "internals"))]
/// One query's part of a branch score (docs/ALGORITHM.md §4): the max of q.k over the keys of `block` (a
/// [start, end) range from `BlockKeys::block_range`) taken with stride `sk`; `key(t)` is key t's row. The branch
/// score is the max of this over the block's sampled queries.
pub fn query_block_score<'a>(q: &[f32], block: (usize, usize), sk: usize, key: impl Fn(usize) -> &'a [f32]) -> f32 {
    (block.0..block.1).step_by(sk).map(|t| dot(q, key(t))).fold(f32::NEG_INFINITY, f32::max)
}

/// Largest finite magnitude of FP8 E4M3 (the OCP "FN" format: no infinities, one NaN pattern per sign).
pub const E4M3_MAX: f32 = 448.0;

/// The E4M3 value of byte `b` (docs/ALGORITHM.md §9): sign, 4 exponent bits (bias 7), 3 mantissa bits; exponent
/// field 0 holds the subnormals m * 2^-9, and S.1111.111 is NaN. Every value is exact in f32.
pub fn e4m3_to_f32(b: u8) -> f32 {
    let sign = if b & 0x80 != 0 { -1.0f32 } else { 1.0 };
    let (exp, man) = ((b >> 3) & 0xF, b & 0x7);
    if exp == 0xF && man == 0x7 {
        return f32::NAN.copysign(sign);
    }
    let magnitude = if exp == 0 {
        man as f32 * pow2(-9)
    } else {
        (8 + man) as f32 * pow2(exp as i32 - 7 - 3)
    };
    sign * magnitude
}

/// 2^e as an f32, for the normal exponents the E4M3 grid needs (-126..=127).
fn pow2(e: i32) -> f32 {
    f32::from_bits(((e + 127) as u32) << 23)
}

/// `x` rounded to E4M3 (docs/ALGORITHM.md §9): to the nearest value, ties to the even mantissa; magnitudes above
/// 448 (infinities too) saturate to +-448, since the format has no infinity and an overflow that became NaN would
/// poison every score of its block; NaN stays NaN; the sign of zero is kept.
pub fn f32_to_e4m3(x: f32) -> u8 {
    let sign = if x.is_sign_negative() { 0x80u8 } else { 0 };
    if x.is_nan() {
        return sign | 0x7F;
    }
    let a = x.abs();
    if a >= E4M3_MAX {
        return sign | 0x7E;
    }
    // The grid's spacing at |x|: 2^-9 among the subnormals (below 2^-6), else 2^(floor(log2 |x|) - 3). Dividing
    // and multiplying by a power of two is exact, so the one rounding is round_ties_even's.
    let e = ((a.to_bits() >> 23) as i32 - 127).max(-6);
    let quantum = pow2(e - 3);
    let r = (a / quantum).round_ties_even() * quantum;
    // r <= 448 here (below 448 the grid's top spacing is 32, so nothing rounds past it), and 448 encodes as
    // an ordinary normal: exponent field 15, mantissa 6.
    let bits = r.to_bits();
    let e = (bits >> 23) as i32 - 127;
    if r == 0.0 {
        sign
    } else if e < -6 {
        sign | (r / pow2(-9)) as u8
    } else {
        sign | (((e + 7) as u8) << 3) | ((bits >> 20) & 0x7) as u8
    }
}

/// The scale of an FP8 copy (docs/ALGORITHM.md §9, "Scoring on an FP8 copy of K"): `amax / 448`, with `amax` the
/// largest magnitude among the finite `values`, so the largest one lands on E4M3's largest value. When that is
/// not a positive finite number (every value zero or non-finite, or so small that the quotient underflows) the
/// scale is 1: every value then rounds to zero or saturates, which keeps the copy defined.
pub fn e4m3_scale(values: impl IntoIterator<Item = f32>) -> f32 {
    let amax = values.into_iter().filter(|x| x.is_finite()).fold(0f32, |m, x| m.max(x.abs()));
    let s = amax / E4M3_MAX;
    if s > 0.0 && s.is_finite() {
        s
    } else {
        1.0
    }
}

/// `x` in an FP8 copy of scale `scale`: `f32_to_e4m3(x / scale)` with the quotient rounded to f32 first (one
/// IEEE division, as a kernel's `__fdiv_rn`).
pub fn quantize_e4m3(x: f32, scale: f32) -> u8 {
    f32_to_e4m3(x / scale)
}

/// Orders branch candidates: higher score first, ties to the lower block index. NaN sorts as -inf so garbage
/// input cannot make the order depend on the sort algorithm.
fn better(a: (f32, usize), b: (f32, usize)) -> std::cmp::Ordering {
    let key = |s: f32| if s.is_nan() { f32::NEG_INFINITY } else { s };
    key(b.0).partial_cmp(&key(a.0)).unwrap_or(std::cmp::Ordering::Equal).then(a.1.cmp(&b.1))
}

/// A scored block in SCAN's bounded heap, ordered by `better`: the heap's greatest element is the worst kept.
#[derive(Clone, Copy, Debug)]
struct Candidate(f32, usize);

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        better((self.0, self.1), (other.0, other.1))
    }
}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}
impl Eq for Candidate {}

/// The working arrays of one search, sized for `kb` once: `tree_search_in` and `scan_select_in` never grow
/// them, so a caller that reserves them up front (fallibly) searches without allocating.
#[derive(Debug)]
pub struct SearchScratch {
    kb: usize,
    chunks: Vec<(usize, usize)>,
    branches: Vec<(usize, usize)>,
    scored: Vec<(f32, usize, (usize, usize))>,
    heap: std::collections::BinaryHeap<Candidate>,
    out: Vec<u32>,
}

impl SearchScratch {
    /// Bytes `try_new(kb)` reserves (None on overflow).
    pub fn bytes(kb: usize) -> Option<usize> {
        let per = 3 * std::mem::size_of::<(usize, usize)>()
            + 2 * std::mem::size_of::<(f32, usize, (usize, usize))>()
            + std::mem::size_of::<Candidate>()
            + std::mem::size_of::<u32>();
        kb.checked_mul(per)
    }

    /// Reserves every array for searches of up to `kb` blocks, or says that the host could not provide it.
    pub fn try_new(kb: usize) -> Result<SearchScratch, std::collections::TryReserveError> {
        let mut s = SearchScratch {
            kb,
            chunks: Vec::new(),
            branches: Vec::new(),
            scored: Vec::new(),
            heap: std::collections::BinaryHeap::new(),
            out: Vec::new(),
        };
        s.chunks.try_reserve_exact(kb)?;
        s.branches.try_reserve_exact(2 * kb)?;
        s.scored.try_reserve_exact(2 * kb)?;
        s.heap.try_reserve_exact(kb)?;
        s.out.try_reserve_exact(kb)?;
        Ok(s)
    }
}

#[cfg(any(test, feature = "internals"))]
/// The tree search of docs/ALGORITHM.md: returns the selected block indices of a domain of `nb` blocks, `kb` at most,
/// sorted ascending. `score(rep)` is the branch score of representative block `rep`.
pub fn tree_search(nb: usize, kb: usize, score: impl FnMut(usize) -> f32) -> Vec<u32> {
    let mut s = SearchScratch::try_new(kb).expect("search scratch");
    tree_search_in(nb, kb, score, &mut s).to_vec()
}

/// `tree_search` in the arrays of `s` (reserved for at least `kb`); the selection is valid until the next search.
pub fn tree_search_in(nb: usize, kb: usize, mut score: impl FnMut(usize) -> f32, s: &mut SearchScratch) -> &[u32] {
    debug_assert!(kb <= s.kb, "search scratch reserved for {} blocks, not {kb}", s.kb);
    s.out.clear();
    if kb == 0 {
        return &s.out;
    }
    if nb <= kb {
        s.out.extend(0..nb as u32);
        return &s.out;
    }
    // Chunk c = [floor(c*NB/Kb), floor((c+1)*NB/Kb)); NB > Kb so none is empty.
    let (chunks, branches, scored) = (&mut s.chunks, &mut s.branches, &mut s.scored);
    chunks.clear();
    chunks.extend((0..kb).map(|c| (c * nb / kb, (c + 1) * nb / kb)));
    while chunks.iter().any(|&(f, l)| l - f > 1) {
        branches.clear();
        for &(f, l) in chunks.iter() {
            if l - f >= 2 {
                let mid = f + (l - f).div_ceil(2);
                branches.push((f, mid));
                branches.push((mid, l));
            } else {
                branches.push((f, l));
            }
        }
        scored.clear();
        scored.extend(branches.iter().map(|&(a, b)| {
            let rep = (a + b - 1) / 2;
            (score(rep), rep, (a, b))
        }));
        // Representatives are distinct (branches are disjoint), so the unstable sort (which, unlike the stable
        // one, needs no buffer) gives the one order `better` defines.
        scored.sort_unstable_by(|x, y| better((x.0, x.1), (y.0, y.1)));
        scored.truncate(kb);
        chunks.clear();
        chunks.extend(scored.iter().map(|&(_, _, range)| range));
    }
    s.out.extend(s.chunks.iter().map(|&(f, _)| f as u32));
    s.out.sort_unstable();
    &s.out
}

#[cfg(any(test, feature = "internals"))]
/// SCAN selection (docs/ALGORITHM.md, "Selection modes: TREE and SCAN"): every block of the domain scored as a
/// representative is, the `kb` best kept (ties: lower block index), sorted ascending. k = 0 selects nothing,
/// NB <= Kb all. Equals `brute_force_top`, in O(Kb) memory.
pub fn scan_select(nb: usize, kb: usize, score: impl FnMut(usize) -> f32) -> Vec<u32> {
    let mut s = SearchScratch::try_new(kb).expect("search scratch");
    scan_select_in(nb, kb, score, &mut s).to_vec()
}

/// `scan_select` in the arrays of `s`: a heap of the `kb` best blocks so far, whose top is the worst of them.
pub fn scan_select_in(nb: usize, kb: usize, mut score: impl FnMut(usize) -> f32, s: &mut SearchScratch) -> &[u32] {
    debug_assert!(kb <= s.kb, "search scratch reserved for {} blocks, not {kb}", s.kb);
    s.out.clear();
    if kb == 0 {
        return &s.out;
    }
    if nb <= kb {
        s.out.extend(0..nb as u32);
        return &s.out;
    }
    s.heap.clear();
    for j in 0..nb {
        let c = Candidate(score(j), j);
        if s.heap.len() < kb {
            s.heap.push(c);
        } else if let Some(mut worst) = s.heap.peek_mut() {
            if c < *worst {
                *worst = c;
            }
        }
    }
    s.out.extend(s.heap.drain().map(|c| c.1 as u32));
    s.out.sort_unstable();
    &s.out
}

#[cfg(any(test, feature = "internals"))]
/// The brute-force block top-`kb` (by the same scores and tie rule): what the tree search must equal when
/// NB <= 2*Kb, and the definition of SCAN (the test oracle; it holds all NB scores at once).
pub fn brute_force_top(nb: usize, kb: usize, mut score: impl FnMut(usize) -> f32) -> Vec<u32> {
    let mut all: Vec<(f32, usize)> = (0..nb).map(|j| (score(j), j)).collect();
    all.sort_by(|x, y| better(*x, *y));
    all.truncate(kb);
    let mut out: Vec<u32> = all.iter().map(|&(_, j)| j as u32).collect();
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_and_iterations_match_spec() {
        // With a score that prefers high indices the search must end on the last Kb blocks.
        for (nb, kb) in [(10usize, 3usize), (100, 7), (1000, 256), (513, 256), (4096, 1)] {
            let mut calls = 0;
            let sel = tree_search(nb, kb, |j| {
                calls += 1;
                j as f32
            });
            assert_eq!(sel.len(), kb);
            let expect: Vec<u32> = ((nb - kb) as u32..nb as u32).collect();
            assert_eq!(sel, expect, "nb {nb} kb {kb}");
            let iters = (nb.div_ceil(kb) as f64).log2().ceil() as usize;
            assert!(calls <= iters * 2 * kb, "nb {nb} kb {kb}: {calls} scores for {iters} iterations");
        }
    }

    #[test]
    fn tie_prefers_lower_block() {
        let sel = tree_search(8, 2, |_| 1.0);
        assert_eq!(sel.len(), 2);
        let bf = brute_force_top(8, 2, |_| 1.0);
        assert_eq!(bf, vec![0, 1]);
    }

    /// Scores from a tiny alphabet (many ties, NaN, infinities) drawn by a fixed xorshift.
    fn tied_scores(seed: u64, nb: usize) -> Vec<f32> {
        let alphabet = [0.0, 1.0, 1.0, 2.0, -1.0, f32::NAN, f32::NEG_INFINITY, f32::INFINITY, -0.0, 2.0];
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..nb)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                alphabet[(x % alphabet.len() as u64) as usize]
            })
            .collect()
    }

    #[test]
    fn scan_equals_brute_force_with_ties_and_nan() {
        let mut s = SearchScratch::try_new(64).unwrap();
        for seed in 0..300u64 {
            let nb = (seed as usize * 7) % 200;
            let kb = [0usize, 1, 2, 3, 5, 17, 64][seed as usize % 7];
            let sc = tied_scores(seed, nb);
            let want = brute_force_top(nb, kb, |j| sc[j]);
            assert_eq!(scan_select_in(nb, kb, |j| sc[j], &mut s), &want[..], "seed {seed} nb {nb} kb {kb}");
            assert_eq!(want.len(), kb.min(nb));
        }
        // NaN ranks as -inf: below every number, tied with -inf (lower index first).
        let sc = [f32::NAN, f32::NEG_INFINITY, -5.0, f32::NAN];
        assert_eq!(scan_select(4, 2, |j| sc[j]), vec![0, 2]);
        assert_eq!(brute_force_top(4, 2, |j| sc[j]), vec![0, 2]);
    }

    #[test]
    fn scan_equals_tree_when_nb_at_most_two_kb() {
        for seed in 0..200u64 {
            let kb = 1 + seed as usize % 40;
            let nb = kb + 1 + (seed as usize * 13) % kb;
            assert!(nb <= 2 * kb);
            let sc = tied_scores(seed ^ 0xABCD, nb);
            let tree = tree_search(nb, kb, |j| sc[j]);
            assert_eq!(tree, scan_select(nb, kb, |j| sc[j]), "seed {seed} nb {nb} kb {kb}");
        }
    }

    /// The searches run inside the arrays reserved up front: a run call that reserved them fallibly never
    /// allocates again.
    #[test]
    fn searches_stay_inside_their_reserved_arrays() {
        let kb = 37;
        let mut s = SearchScratch::try_new(kb).unwrap();
        let caps = |s: &SearchScratch| {
            (s.chunks.capacity(), s.branches.capacity(), s.scored.capacity(), s.heap.capacity(), s.out.capacity())
        };
        let before = caps(&s);
        for (nb, seed) in [(10_000usize, 1u64), (38, 2), (74, 3), (5, 4), (100_003, 5)] {
            let sc = tied_scores(seed, nb);
            tree_search_in(nb, kb, |j| sc[j], &mut s);
            scan_select_in(nb, kb, |j| sc[j], &mut s);
        }
        assert_eq!(caps(&s), before);
        assert_eq!(SearchScratch::bytes(kb), Some(kb * (3 * 16 + 2 * 32 + 16 + 4)));
    }

    /// The 126 positive finite E4M3 values in ascending order, with their bytes.
    fn e4m3_grid() -> Vec<(f32, u8)> {
        (0u8..0x7F).map(|b| (e4m3_to_f32(b), b)).collect()
    }

    #[test]
    fn e4m3_decodes_the_format_exactly() {
        assert_eq!(e4m3_to_f32(0x00), 0.0);
        assert!(e4m3_to_f32(0x80) == 0.0 && e4m3_to_f32(0x80).is_sign_negative());
        assert_eq!(e4m3_to_f32(0x01), 2f32.powi(-9)); // smallest subnormal
        assert_eq!(e4m3_to_f32(0x07), 7.0 * 2f32.powi(-9)); // largest subnormal
        assert_eq!(e4m3_to_f32(0x08), 2f32.powi(-6)); // smallest normal
        assert_eq!(e4m3_to_f32(0x38), 1.0);
        assert_eq!(e4m3_to_f32(0x39), 1.125);
        assert_eq!(e4m3_to_f32(0x7E), 448.0);
        assert_eq!(e4m3_to_f32(0xFE), -448.0);
        assert_eq!(e4m3_to_f32(0x77), 240.0); // exponent field 14, mantissa 7
        assert_eq!(e4m3_to_f32(0x78), 256.0); // exponent field 15 is a normal binade but for mantissa 7
        assert!(e4m3_to_f32(0x7F).is_nan() && e4m3_to_f32(0xFF).is_nan());
        let grid = e4m3_grid();
        assert!(grid.windows(2).all(|w| w[0].0 < w[1].0), "ascending, no duplicates");
        for b in 0..=255u8 {
            if b & 0x7F != 0x7F {
                assert_eq!(f32_to_e4m3(e4m3_to_f32(b)), b, "byte {b:#04x} round trip");
            }
        }
    }

    #[test]
    fn e4m3_saturates_and_keeps_nan() {
        for (x, want) in [
            (448.0f32, 0x7Eu8),
            (449.0, 0x7E),
            (464.0, 0x7E),
            (1e30, 0x7E),
            (f32::INFINITY, 0x7E),
            (f32::MAX, 0x7E),
            (-500.0, 0xFE),
            (f32::NEG_INFINITY, 0xFE),
            (447.9, 0x7E),
            (432.0, 0x7E), // the tie between 416 (mantissa 5) and 448 (mantissa 6) goes to the even one
            (431.9, 0x7D),
        ] {
            assert_eq!(f32_to_e4m3(x), want, "{x}");
        }
        assert_eq!(f32_to_e4m3(f32::NAN), 0x7F);
        assert_eq!(f32_to_e4m3(-f32::NAN), 0xFF);
    }

    #[test]
    fn e4m3_rounds_ties_to_even_and_handles_subnormals_and_zeros() {
        for (x, want) in [
            (1.0625f32, 1.0f32), // halfway between 1 and 1.125: mantissa 0 is even
            (1.1875, 1.25),      // halfway between 1.125 and 1.25: mantissa 2 is even
            (1.0626, 1.125),
            (17.0, 16.0), // spacing 2 in [16, 32): 17 ties to 16
            (19.0, 20.0),
            (2f32.powi(-10), 0.0),             // half the smallest subnormal: ties to zero
            (1.5 * 2f32.powi(-9), 2.0 * 2f32.powi(-9)), // between subnormals 1 and 2: to 2
            (2.5 * 2f32.powi(-9), 2.0 * 2f32.powi(-9)),
            (7.5 * 2f32.powi(-9), 2f32.powi(-6)), // the largest subnormal's tie rounds up into the normals
            (1e-4, 0.0),                          // 0.0512 of the smallest subnormal
            (1e-30, 0.0),
            (f32::from_bits(1), 0.0), // an f32 subnormal
            (-0.0, -0.0),
            (0.0, 0.0),
        ] {
            let got = e4m3_to_f32(f32_to_e4m3(x));
            assert!(got == want && got.is_sign_negative() == want.is_sign_negative(), "{x}: {got} want {want}");
            let neg = e4m3_to_f32(f32_to_e4m3(-x));
            assert!(neg == -want && neg.is_sign_negative() == (-want).is_sign_negative(), "{}: {neg} want {}", -x, -want);
        }
        // Against a brute force over the grid: nearest value, ties to the even byte (the even mantissa).
        let grid = e4m3_grid();
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for i in 0..20_000u32 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Magnitudes spread over 2^-12 .. 2^9, and the exact midpoints between neighbours.
            let x = if i % 4 == 0 {
                let j = (state % (grid.len() as u64 - 1)) as usize;
                (grid[j].0 + grid[j + 1].0) / 2.0
            } else {
                2f32.powf((state % 21_000) as f32 / 1000.0 - 12.0)
            };
            let best = grid
                .iter()
                .min_by(|a, b| (a.0 - x).abs().total_cmp(&(b.0 - x).abs()).then((a.1 & 1).cmp(&(b.1 & 1))))
                .unwrap();
            let want = if x >= 448.0 { 0x7E } else { best.1 };
            assert_eq!(f32_to_e4m3(x), want, "{x}");
        }
    }

    #[test]
    fn e4m3_scale_maps_amax_to_448_and_falls_back_to_one() {
        assert_eq!(e4m3_scale([1.0, -896.0, 3.0]), 2.0);
        assert_eq!(quantize_e4m3(-896.0, 2.0), 0xFE);
        assert_eq!(quantize_e4m3(1.0, 2.0), f32_to_e4m3(0.5));
        // Non-finite values do not enter amax (an infinity would make every finite value round to zero).
        assert_eq!(e4m3_scale([f32::NAN, f32::INFINITY, -8.75, f32::NEG_INFINITY]), 8.75 / 448.0);
        for degenerate in [&[0.0f32, -0.0][..], &[], &[f32::NAN, f32::INFINITY], &[f32::from_bits(1)]] {
            assert_eq!(e4m3_scale(degenerate.iter().copied()), 1.0, "{degenerate:?}");
        }
        assert_eq!(quantize_e4m3(f32::INFINITY, 8.75 / 448.0), 0x7E);
        assert_eq!(quantize_e4m3(-8.75, 8.75 / 448.0), 0xFE);
        assert_eq!(quantize_e4m3(f32::NAN, 8.75 / 448.0), 0x7F);
    }

    #[test]
    fn block_keys_sets_are_disjoint() {
        let bkeys = BlockKeys::new(100, 200, 4, 16, 3, true);
        assert_eq!(bkeys.e, 85);
        assert_eq!(bkeys.nb, 27); // [4, 85) in blocks of 3
        assert_eq!(bkeys.block_range(26), (82, 85));
        let mut seen = [0u8; 200];
        bkeys.for_each_key(110, true, &[0, 5, 26], |j| seen[j] += 1);
        assert!(seen.iter().all(|&c| c <= 1));
        assert_eq!(seen.iter().map(|&c| c as usize).sum::<usize>(), 4 + 9 + (110 - 85 + 1));
    }
}
