//! The mask search of docs/ALGORITHM.md replayed with f64 scores. Two implementations whose f32 scores are summed
//! in different orders may select differently only where two candidates' scores are closer than the rounding; the
//! replay finds the smallest such gap (the margin) so that a check can tell a near-tie from a bug.

/// A branch's f64 score: the largest dot product between `queries` sampled query rows and the keys
/// a, a + sk, ... < b of its representative block; `dot(i, t)` is the product of query i and key t.
pub fn branch_score(
    queries: usize,
    (a, b): (usize, usize),
    sk: usize,
    mut dot: impl FnMut(usize, usize) -> f64,
) -> f64 {
    let mut best = f64::NEG_INFINITY;
    for i in 0..queries {
        for t in (a..b).step_by(sk.max(1)) {
            best = best.max(dot(i, t));
        }
    }
    best
}

/// TREE selection (docs/ALGORITHM.md §4) of `kb` of `nb` blocks with `score(representative block)`: returns the
/// selected blocks (ascending) and the smallest gap between the last kept and the first dropped candidate over
/// all iterations (infinite when no iteration had to drop one).
pub fn tree_replay(nb: usize, kb: usize, mut score: impl FnMut(usize) -> f64) -> (Vec<i32>, f64) {
    if kb == 0 {
        return (vec![], f64::INFINITY);
    }
    if nb <= kb {
        return ((0..nb as i32).collect(), f64::INFINITY);
    }
    let mut chunks: Vec<(usize, usize)> = (0..kb).map(|c| (c * nb / kb, (c + 1) * nb / kb)).collect();
    let mut margin = f64::INFINITY;
    while chunks.iter().any(|&(f, l)| l - f > 1) {
        let mut cands: Vec<(f64, usize, (usize, usize))> = Vec::with_capacity(2 * kb);
        for &(f, l) in &chunks {
            let mid = f + (l - f).div_ceil(2);
            let halves = if l - f >= 2 { [(f, mid), (mid, l)].to_vec() } else { [(f, l)].to_vec() };
            for (a, b) in halves {
                let rep = (a + b - 1) / 2;
                cands.push((score(rep), rep, (a, b)));
            }
        }
        // Higher score first; equal scores keep the lower block, as the definition breaks ties.
        cands.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
        if cands.len() > kb {
            margin = margin.min(cands[kb - 1].0 - cands[kb].0);
        }
        cands.truncate(kb);
        chunks = cands.iter().map(|c| c.2).collect();
    }
    let mut sel: Vec<i32> = chunks.iter().map(|c| c.0 as i32).collect();
    sel.sort_unstable();
    (sel, margin)
}

/// SCAN selection's margin: the gap between the kb-th and the (kb+1)-th best of all `nb` block scores (infinite
/// when every block is selected).
pub fn scan_margin(nb: usize, kb: usize, score: impl FnMut(usize) -> f64) -> f64 {
    if kb == 0 || nb <= kb {
        return f64::INFINITY;
    }
    let mut s: Vec<f64> = (0..nb).map(score).collect();
    s.sort_by(|a, b| b.total_cmp(a));
    s[kb - 1] - s[kb]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_keeps_the_best_blocks_and_reports_the_closest_cut() {
        // Scores rise with the block index: the search must end on the last kb blocks.
        let (sel, margin) = tree_replay(16, 4, |j| j as f64);
        assert_eq!(sel, vec![12, 13, 14, 15]);
        assert!(margin > 0.0 && margin.is_finite());
        assert_eq!(tree_replay(3, 4, |_| 0.0), (vec![0, 1, 2], f64::INFINITY));
        assert_eq!(tree_replay(9, 0, |_| 0.0).0, Vec::<i32>::new());
        // A tie at the cut has margin zero.
        assert_eq!(tree_replay(8, 2, |_| 1.0).1, 0.0);
    }

    #[test]
    fn scan_margin_is_the_gap_at_the_cut() {
        let s = [1.0, 5.0, 3.0, 4.5, 2.0];
        assert_eq!(scan_margin(5, 1, |j| s[j]), 0.5);
        assert_eq!(scan_margin(5, 2, |j| s[j]), 1.5);
        assert_eq!(scan_margin(5, 3, |j| s[j]), 1.0);
        assert_eq!(scan_margin(5, 5, |j| s[j]), f64::INFINITY);
        assert_eq!(scan_margin(5, 0, |j| s[j]), f64::INFINITY);
    }

    #[test]
    fn branch_score_takes_every_sk_th_key_of_every_query() {
        let s = branch_score(2, (0, 6), 2, |i, t| (10 * i + t) as f64);
        assert_eq!(s, 14.0);
    }
}
