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
