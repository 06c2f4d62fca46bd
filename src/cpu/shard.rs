//! docs/ALGORITHM.md §8 computed directly: the key set `A` of a decode step over a sequence split into shards at
//! given boundaries, from the whole sequence's keys and values, and one softmax over it. It shares nothing with
//! the per-shard path (`cpu::decode` with `Config::for_range`) except the search functions of `spec`, so the
//! tests can hold the merged partials of the shard calls against it.

use crate::config::{Config, Selection};
use crate::spec::{dot, scan_select, tree_search};

/// One sequence in f32: `q` is the step's query rows [num_q_heads, head_dim], `k` and `v` are [T, num_kv_heads,
/// head_dim], token-major.
#[derive(Clone, Copy, Debug)]
pub struct Sequence<'a> {
    pub q: &'a [f32],
    pub k: &'a [f32],
    pub v: &'a [f32],
}

/// The shard boundaries `starts` (`c_0 = 0 < c_1 < ... < c_(n-1)`, each shard ending where the next starts and the
/// last at T) checked against the rules of §8.
fn check(cfg: &Config, starts: &[usize], t: usize) -> Result<(), String> {
    if starts.first() != Some(&0) {
        return Err(format!("the first shard must start at 0 (starts {starts:?})"));
    }
    if starts.windows(2).any(|w| w[0] >= w[1]) || *starts.last().unwrap() >= t {
        return Err(format!("shard starts {starts:?} must increase and stay below T = {t}"));
    }
    if let Some(&c1) = starts.get(1) {
        if c1 < cfg.sink {
            return Err(format!("the second shard starts at {c1}, inside the sink tokens [0, {})", cfg.sink));
        }
    }
    Ok(())
}

/// Global positions of the keys a decode step's query attends for mask head `mh` when the sequence is split at
/// `starts` (§8): sinks, each shard's selection over its own domain, the last shard's local set.
pub fn attended_keys(cfg: &Config, s: &Sequence, starts: &[usize], mh: usize) -> Result<Vec<usize>, String> {
    let (d, hkv) = (cfg.head_dim, cfg.num_kv_heads);
    let t = s.k.len() / (hkv * d);
    check(cfg, starts, t)?;
    let p = t - 1;
    let heads = cfg.mask_head_q_heads(mh);
    let g = cfg.kv_head_of(heads.start);
    let key = |j: usize| &s.k[(j * hkv + g) * d..][..d];
    let ends: Vec<usize> = starts[1..].iter().copied().chain([t]).collect();
    let mut keys: Vec<usize> = (0..cfg.sink.min(ends[0])).collect();
    let mut e = t;
    for (i, (&c, &end)) in starts.iter().zip(&ends).enumerate() {
        let lo = cfg.sink.max(c);
        let hi = if i + 1 < starts.len() {
            lo.max(end)
        } else if cfg.causal {
            lo.max((p + 1).saturating_sub(cfg.window))
        } else {
            lo.max(t)
        };
        if i + 1 == starts.len() {
            e = hi;
        }
        let nb = (hi - lo).div_ceil(cfg.bk);
        let block = |b: usize| (lo + b * cfg.bk, (lo + (b + 1) * cfg.bk).min(hi));
        let score = |b: usize| {
            let (a, z) = block(b);
            let mut best = f32::NEG_INFINITY;
            for j in (a..z).step_by(cfg.sk) {
                for h in heads.clone() {
                    best = best.max(dot(&s.q[h * d..][..d], key(j)));
                }
            }
            best
        };
        let sel = match cfg.decode_selection {
            Selection::Tree => tree_search(nb, cfg.kb(), score),
            Selection::Scan => scan_select(nb, cfg.kb(), score),
        };
        for b in sel {
            let (a, z) = block(b as usize);
            keys.extend(a..z);
        }
    }
    if cfg.causal {
        keys.extend(e..=p);
    }
    Ok(keys)
}

/// The output rows [num_q_heads, head_dim] and LSEs [num_q_heads] of a decode step over a sequence split at
/// `starts`: one softmax over §8's key set (f32 logits, f64 sums, as the CPU backend), not a merge of partials.
pub fn sharded_decode(cfg: &Config, s: &Sequence, starts: &[usize]) -> Result<(Vec<f32>, Vec<f32>), String> {
    let (d, hkv) = (cfg.head_dim, cfg.num_kv_heads);
    let mut o = vec![0f32; cfg.num_q_heads * d];
    let mut lse = vec![f32::NEG_INFINITY; cfg.num_q_heads];
    for mh in 0..cfg.mask_heads() {
        let keys = attended_keys(cfg, s, starts, mh)?;
        for h in cfg.mask_head_q_heads(mh) {
            let g = cfg.kv_head_of(h);
            let q = &s.q[h * d..][..d];
            let logits: Vec<f32> = keys.iter().map(|&j| cfg.scale * dot(q, &s.k[(j * hkv + g) * d..][..d])).collect();
            let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            if m == f32::NEG_INFINITY {
                continue;
            }
            let mut acc = vec![0f64; d];
            let mut sum = 0f64;
            for (&j, &l) in keys.iter().zip(&logits) {
                let w = ((l - m) as f64).exp();
                sum += w;
                for (a, &x) in acc.iter_mut().zip(&s.v[(j * hkv + g) * d..][..d]) {
                    *a += w * x as f64;
                }
            }
            for (out, a) in o[h * d..][..d].iter_mut().zip(&acc) {
                *out = (a / sum) as f32;
            }
            lse[h] = (m as f64 + sum.ln()) as f32;
        }
    }
    Ok((o, lse))
}
