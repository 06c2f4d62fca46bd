//! Buffer layouts shared by both backends: the prefill and decode workspaces and the persistent mask state.
//! Sizes depend only on the configuration and the host-side scalars of a call, never on the backend, so an
//! engine sized against the CPU backend is sized right for CUDA. Layouts mirror cuda/hip_params.h.

use crate::config::Config;
use crate::status::{checked_add, checked_mul, Result};

/// Mask-state record header (see cuda/hip_params.h): magic, step counter, e, count; then Kb block indices.
pub const STATE_MAGIC: i32 = 0x4869_5031;
pub const STATE_MAGIC_IDX: usize = 0;
pub const STATE_STEP_IDX: usize = 1;
pub const STATE_E_IDX: usize = 2;
pub const STATE_COUNT_IDX: usize = 3;
pub const STATE_HEADER: usize = 4;

/// Largest number of key-list chunks a decode step splits one (sequence, head) into.
pub const DECODE_MAX_SPLITS: usize = 32;

/// Every sub-buffer of a workspace starts on this boundary (relative to the workspace base).
const SUB_ALIGN: usize = 256;

fn align_up(x: usize) -> Result<usize> {
    Ok(checked_add(x, SUB_ALIGN - 1, "workspace")? / SUB_ALIGN * SUB_ALIGN)
}

/// i32s per mask-state record, padded so that every record starts 16-byte aligned.
pub fn state_ints(cfg: &Config) -> usize {
    (STATE_HEADER + cfg.kb()).div_ceil(4) * 4
}

/// Offset (in i32s) of the record of (sequence b, mask head mh).
pub fn state_record(cfg: &Config, b: usize, mh: usize) -> usize {
    (b * cfg.mask_heads() + mh) * state_ints(cfg)
}

pub fn mask_state_bytes(cfg: &Config, batch: usize) -> Result<usize> {
    let records = checked_mul(batch, cfg.mask_heads(), "mask state")?;
    checked_mul(checked_mul(records, state_ints(cfg), "mask state")?, 4, "mask state")
}

/// Prefill workspace: the selected blocks of every query block (i32 [slots][mask_heads][Kb]) and their counts
/// (i32 [slots][mask_heads]). Query block j of sequence b owns slot cu_seqlens_q[b] / bq + b + j: a bound that
/// needs no prefix sum over the batch, so kernels can find their slot from cu_seqlens alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefillWorkspace {
    pub slots: usize,
    pub idx_offset: usize,
    pub cnt_offset: usize,
    /// With `prefill_scan_tail` (see `with_tail`): the most tail query blocks of one sequence, and where the tail
    /// scan's candidates start (cnt_offset + the counts rounded up to 256 bytes, which the kernel derives).
    pub tail_blocks: usize,
    pub tail_offset: usize,
    pub bytes: usize,
}

impl PrefillWorkspace {
    pub fn new(cfg: &Config, batch: usize, total_q: usize) -> Result<Self> {
        let slots = checked_add(total_q / cfg.bq, batch, "prefill workspace")?;
        let per_slot = checked_mul(cfg.mask_heads(), cfg.kb(), "prefill workspace")?;
        let idx_bytes = checked_mul(checked_mul(slots, per_slot, "prefill workspace")?, 4, "prefill workspace")?;
        let cnt_offset = align_up(idx_bytes)?;
        let cnt_bytes = checked_mul(checked_mul(slots, cfg.mask_heads(), "prefill workspace")?, 4, "workspace")?;
        let bytes = align_up(checked_add(cnt_offset, cnt_bytes, "prefill workspace")?)?;
        Ok(PrefillWorkspace { slots, idx_offset: 0, cnt_offset, tail_blocks: 0, tail_offset: bytes, bytes })
    }

    /// The layout of a call with at most `max_q` queries per sequence: with `prefill_scan_tail`, the tail scan's
    /// region follows the counts: (key, block) pairs [batch][tail_blocks][mask heads][3 * max(Kb, 1)] (the Kb
    /// best so far and a chunk of 2 * Kb new blocks per query block).
    pub fn with_tail(cfg: &Config, batch: usize, total_q: usize, max_q: usize) -> Result<Self> {
        let mut w = Self::new(cfg, batch, total_q)?;
        if cfg.prefill_scan_tail == 0 {
            return Ok(w);
        }
        w.tail_blocks = max_q.div_ceil(cfg.bq).min(cfg.prefill_scan_tail.div_ceil(cfg.bq) + 1);
        let per = checked_mul(cfg.mask_heads(), 3 * cfg.kb().max(1) * 8, "prefill workspace")?;
        let tail = checked_mul(checked_mul(batch, w.tail_blocks, "prefill workspace")?, per, "prefill workspace")?;
        w.bytes = align_up(checked_add(w.tail_offset, tail, "prefill workspace")?)?;
        Ok(w)
    }

    pub fn slot(cfg: &Config, cu_q_b: usize, b: usize, j: usize) -> usize {
        cu_q_b / cfg.bq + b + j
    }
}

/// True when every sequence of a prefill with at most `max_seqlen_k` keys has the search select every block of
/// every query block (cuda/attention.cuh, prefill_seq_dense, decides per sequence; this bound implies it): the
/// block-sparse attention kernel then has nothing to do and the CUDA backend runs only the dense one.
pub fn prefill_all_dense(cfg: &Config, max_seqlen_k: usize) -> bool {
    // The largest e of any query block: its first query sits before Tk, so e <= max(sink, Tk - window).
    let e = if cfg.causal { max_seqlen_k.saturating_sub(cfg.window) } else { max_seqlen_k };
    e.max(cfg.sink).saturating_sub(cfg.sink).div_ceil(cfg.bk) <= cfg.kb()
}

/// Most CTAs of the decode SCAN per (sequence, mask head) (HIP_ATTN_SCAN_MAX_SPLITS).
pub const SCAN_MAX_SPLITS: usize = 64;

/// Bytes of the decode SCAN workspace region of one (sequence, mask head) for at most `max_k` keys
/// (HIP_ATTN_SCAN_REGION_BYTES): a status per split, then a score key and a block index per key block.
pub fn scan_region_bytes(cfg: &Config, max_k: usize) -> Result<usize> {
    let nbmax = max_k.div_ceil(cfg.bk);
    let b = checked_add(4 * SCAN_MAX_SPLITS, checked_mul(nbmax, 8, "decode workspace")?, "decode workspace")?;
    Ok(checked_add(b, 15, "decode workspace")? / 16 * 16)
}

/// Decode workspace: split-K partial outputs (f32 [batch][Hq][DECODE_MAX_SPLITS][D]) and their LSEs
/// (f32 [batch][Hq][DECODE_MAX_SPLITS]); with SCAN selection, then the scan's regions ([batch][mask heads] of
/// `scan_region_bytes`), O(max_seqlen_k).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeWorkspace {
    pub part_o_offset: usize,
    pub part_lse_offset: usize,
    /// 0 without SCAN selection.
    pub scan_offset: usize,
    pub bytes: usize,
}

impl DecodeWorkspace {
    pub fn new(cfg: &Config, batch: usize, max_k: usize) -> Result<Self> {
        let rows = checked_mul(checked_mul(batch, cfg.num_q_heads, "decode workspace")?, DECODE_MAX_SPLITS, "decode workspace")?;
        let o_bytes = checked_mul(checked_mul(rows, cfg.head_dim, "decode workspace")?, 4, "decode workspace")?;
        let part_lse_offset = align_up(o_bytes)?;
        let mut bytes = align_up(checked_add(part_lse_offset, checked_mul(rows, 4, "decode workspace")?, "decode workspace")?)?;
        let mut scan_offset = 0;
        if cfg.decode_selection == crate::config::Selection::Scan {
            let regions = checked_mul(batch, cfg.mask_heads(), "decode workspace")?;
            let scan = checked_mul(regions, scan_region_bytes(cfg, max_k)?, "decode workspace")?;
            scan_offset = bytes;
            bytes = align_up(checked_add(bytes, scan, "decode workspace")?)?;
        }
        Ok(DecodeWorkspace { part_o_offset: 0, part_lse_offset, scan_offset, bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::prefill_all_dense;
    use crate::config::{default_config, validate};
    use crate::spec::BlockKeys;

    /// The host's bound never claims a sequence dense that HIP-SPEC's key sets say is not: for every length up
    /// to the bound and every query block, the search domain holds at most Kb blocks. And it is tight: one more
    /// key of max_seqlen_k makes the longest prefill sparse.
    #[test]
    fn all_dense_bound_implies_every_block_is_dense() {
        for (k, bk, sink, window, causal) in
            [(512, 2, 4, 128, 1), (64, 3, 0, 0, 1), (0, 2, 4, 32, 1), (40, 4, 4, 8, 0), (16, 1, 5, 7, 0)]
        {
            let mut raw = default_config();
            (raw.k, raw.bk, raw.sink, raw.window, raw.causal, raw.bq) = (k, bk, sink, window, causal, 16);
            (raw.num_q_heads, raw.num_kv_heads) = (1, 1);
            // SAFETY: default_config leaves kernel_cache_dir NULL, which validate accepts.
            let (c, _) = unsafe { validate(&raw) }.unwrap();
            let dense_to = (0..4000).take_while(|&t| prefill_all_dense(&c, t)).last().unwrap();
            for tk in 1..=dense_to {
                for tq in [1, tk / 2 + 1, tk] {
                    for first in (0..tq).step_by(c.bq) {
                        let keys = BlockKeys::new(tk - tq + first, tk, c.sink, c.window, c.bk, c.causal);
                        assert!(keys.nb <= c.kb(), "k {k} bk {bk} tk {tk} tq {tq}: {} blocks", keys.nb);
                    }
                }
            }
            let tk = dense_to + 1;
            assert!(BlockKeys::new(tk - 1, tk, c.sink, c.window, c.bk, c.causal).nb > c.kb(), "k {k}: bound not tight");
        }
    }
}
