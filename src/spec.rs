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

/// The tree search of docs/ALGORITHM.md: returns the selected block indices of a domain of `nb` blocks, `kb` at most,
/// sorted ascending. `score(rep)` is the branch score of representative block `rep`.
pub fn tree_search(nb: usize, kb: usize, mut score: impl FnMut(usize) -> f32) -> Vec<u32> {
    if kb == 0 {
        return Vec::new();
    }
    if nb <= kb {
        return (0..nb as u32).collect();
    }
    // Chunk c = [floor(c*NB/Kb), floor((c+1)*NB/Kb)); NB > Kb so none is empty.
    let mut chunks: Vec<(usize, usize)> = (0..kb).map(|c| (c * nb / kb, (c + 1) * nb / kb)).collect();
    let mut branches: Vec<(usize, usize)> = Vec::with_capacity(2 * kb);
    let mut scored: Vec<(f32, usize, (usize, usize))> = Vec::with_capacity(2 * kb);
    while chunks.iter().any(|&(f, l)| l - f > 1) {
        branches.clear();
        for &(f, l) in &chunks {
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
        scored.sort_by(|x, y| better((x.0, x.1), (y.0, y.1)));
        scored.truncate(kb);
        chunks.clear();
        chunks.extend(scored.iter().map(|&(_, _, range)| range));
    }
    let mut out: Vec<u32> = chunks.iter().map(|&(f, _)| f as u32).collect();
    out.sort_unstable();
    out
}

/// SCAN selection (docs/ALGORITHM.md, "Selection modes"): every block of the domain scored as a representative
/// is, the `kb` best kept (ties: lower block index), sorted ascending. k = 0 selects nothing, NB <= Kb all.
pub fn scan_select(nb: usize, kb: usize, score: impl FnMut(usize) -> f32) -> Vec<u32> {
    brute_force_top(nb, kb, score)
}

/// The brute-force block top-`kb` (by the same scores and tie rule): what the tree search must equal when
/// NB <= 2*Kb, and the definition of SCAN.
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
