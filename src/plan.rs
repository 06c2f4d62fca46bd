//! Buffer layouts shared by both backends: the prefill and decode workspaces and the persistent mask state.
//! Sizes depend only on the configuration and the host-side scalars of a call, never on the backend, so an
//! engine sized against the CPU backend is sized right for CUDA. The record layout and the SCAN region are those
//! of src/contract.rs, which the kernels' header is generated from.

use crate::config::{Config, MaskSharing};
use crate::status::{checked_add, checked_mul, Result};
use crate::tensor::DType;

/// Mask-state record header (src/contract.rs): magic, step counter, e, count, fingerprint of the writing
/// context's configuration; then Kb block indices.
pub use crate::contract::{
    SCAN_MAX_SPLITS, STATE_COUNT_IDX, STATE_E_IDX, STATE_FPRINT_IDX, STATE_HEADER, STATE_MAGIC, STATE_MAGIC_IDX,
    STATE_STEP_IDX,
};

/// Largest number of key-list chunks a decode step splits one (sequence, head) into.
pub const DECODE_MAX_SPLITS: usize = 32;

/// Every sub-buffer of a workspace starts on this boundary (relative to the workspace base).
const SUB_ALIGN: usize = 256;

fn align_up(x: usize) -> Result<usize> {
    Ok(checked_add(x, SUB_ALIGN - 1, "workspace")? / SUB_ALIGN * SUB_ALIGN)
}

/// i32s per mask-state record, padded so that every record starts 16-byte aligned.
pub fn state_ints(cfg: &Config) -> usize {
    state_ints_for(cfg.kb())
}

/// i32s per mask-state record of a configuration that selects `kb` key blocks.
pub fn state_ints_for(kb: usize) -> usize {
    (STATE_HEADER + kb).div_ceil(4) * 4
}

/// The fingerprint every record carries (STATE_FPRINT_IDX): which configuration wrote it, so that a context never
/// reuses a record of another one (a mask state shared between layers of different shapes, say) as its own.
///
/// It covers what gives a record its meaning or decides which blocks the definition selects: the dtype, head_dim,
/// the head counts and mask sharing (which head a record belongs to), Kb and bk (what a block index names), bq,
/// sink, window, sq, sk and causal. It leaves out what only decides when or how a search runs: `refresh`, the
/// selection modes (`decode_selection`, `prefill_scan_tail`: the definition has decode reuse a SCAN mask that a prefill
/// left, whatever mode decode searches with), the softmax scale (it does not change the order of scores), flags
/// and the backend (CPU and CUDA records are interchangeable).
///
/// FNV-1a (32-bit) over the little-endian bytes of the words [1 (version of this list), dtype (1 bf16, 2 f16,
/// 3 f32), head_dim, num_q_heads, num_kv_heads, sharing (0 per q head, 1 per kv head), Kb, bk, bq, sink, window,
/// sq, sk, causal]; a hash of 0 becomes 1, so the fingerprint is never 0 (the value of a zeroed record).
pub fn state_fingerprint(cfg: &Config) -> i32 {
    let dtype = match cfg.dtype {
        DType::Bf16 => 1,
        DType::F16 => 2,
        DType::F32 => 3,
    };
    let sharing = (cfg.sharing == MaskSharing::PerKvHead) as u32;
    let words = [
        1,
        dtype,
        cfg.head_dim as u32,
        cfg.num_q_heads as u32,
        cfg.num_kv_heads as u32,
        sharing,
        cfg.kb() as u32,
        cfg.bk as u32,
        cfg.bq as u32,
        cfg.sink as u32,
        cfg.window as u32,
        cfg.sq as u32,
        cfg.sk as u32,
        cfg.causal as u32,
    ];
    let mut h: u32 = 0x811c_9dc5;
    for byte in words.iter().flat_map(|w| w.to_le_bytes()) {
        h = (h ^ byte as u32).wrapping_mul(0x0100_0193);
    }
    h.max(1) as i32
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
/// every query block (the kernels decide it per sequence with the same contract::all_blocks_selected; this bound
/// implies it): the block-sparse attention kernel then has nothing to do and the CUDA backend runs only the dense
/// one.
pub fn prefill_all_dense(cfg: &Config, max_seqlen_k: usize) -> bool {
    // The largest e of any query block: its first query sits before Tk, so e <= max(sink, Tk - window).
    let e = if cfg.causal { max_seqlen_k.saturating_sub(cfg.window) } else { max_seqlen_k };
    // Validated configurations and lengths stay far below i64::MAX.
    crate::contract::all_blocks_selected(cfg.sink as i64, e as i64, cfg.bk as i64, cfg.kb() as i64)
}

/// Bytes of the decode SCAN workspace region of one (sequence, mask head) for at most `max_k` keys
/// (contract::scan_region_bytes): a status per split, then a score key and a block index per key block.
pub fn scan_region_bytes(cfg: &Config, max_k: usize) -> Result<usize> {
    let nbmax = max_k.div_ceil(cfg.bk);
    // The contract's arithmetic in i64; a length whose region could overflow it is a size overflow.
    if nbmax > (i64::MAX as usize - 4 * SCAN_MAX_SPLITS - 15) / 8 {
        return Err(crate::status::Error::overflow("decode workspace"));
    }
    let bytes = crate::contract::scan_region_bytes(SCAN_MAX_SPLITS as i64, nbmax as i64);
    usize::try_from(bytes).map_err(|_| crate::status::Error::internal("negative SCAN region size"))
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
        let rows = checked_mul(
            checked_mul(batch, cfg.num_q_heads, "decode workspace")?,
            DECODE_MAX_SPLITS,
            "decode workspace",
        )?;
        let o_bytes = checked_mul(checked_mul(rows, cfg.head_dim, "decode workspace")?, 4, "decode workspace")?;
        let part_lse_offset = align_up(o_bytes)?;
        let mut bytes =
            align_up(checked_add(part_lse_offset, checked_mul(rows, 4, "decode workspace")?, "decode workspace")?)?;
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
    use super::{prefill_all_dense, state_fingerprint};
    use crate::config::{default_config, validate};
    use crate::spec::BlockKeys;

    /// The fingerprint changes with every parameter that gives a record its meaning and with none of the others,
    /// is never 0, and is the documented FNV-1a of the word list (the value of the defaults is pinned, so that a
    /// change of the list or the hash cannot go unnoticed: records written by older builds would stop matching).
    #[test]
    fn fingerprint_covers_the_record_defining_parameters_only() {
        let mut base = default_config();
        (base.num_q_heads, base.num_kv_heads) = (8, 4);
        let fp = |raw: &crate::ffi::types::hip_config| {
            // SAFETY: default_config leaves kernel_cache_dir NULL, which validate accepts.
            state_fingerprint(&unsafe { validate(raw) }.unwrap().0)
        };
        let f0 = fp(&base);
        assert_ne!(f0, 0);
        type Edit = fn(&mut crate::ffi::types::hip_config);
        let meaningful: [(&str, Edit); 13] = [
            ("dtype", |c| c.dtype = crate::ffi::types::hip_dtype::HIP_ATTN_DTYPE_F16 as u32),
            ("head_dim", |c| c.head_dim = 64),
            ("num_q_heads", |c| c.num_q_heads *= 2),
            ("num_kv_heads", |c| c.num_kv_heads /= 2),
            ("mask_sharing", |c| c.mask_sharing = 2),
            ("k", |c| c.k = 256),
            ("bk", |c| c.bk = 4),
            ("bq", |c| c.bq = 64),
            ("sink", |c| c.sink = 8),
            ("window", |c| c.window = 64),
            ("sq", |c| c.sq = 2),
            ("sk", |c| c.sk = 2),
            ("causal", |c| c.causal = 0),
        ];
        for (what, edit) in meaningful {
            let mut c = base;
            edit(&mut c);
            assert_ne!(fp(&c), f0, "{what} changes the fingerprint");
        }
        let neutral: [(&str, Edit); 5] = [
            ("refresh", |c| c.refresh = 1),
            ("k within the same block count", |c| c.k -= 1),
            ("flags", |c| c.flags = crate::ffi::types::HIP_ATTN_FLAG_BATCH_INVARIANT),
            ("softmax_scale", |c| c.softmax_scale = 0.5),
            ("decode_selection", |c| c.decode_selection = 1),
        ];
        for (what, edit) in neutral {
            let mut c = base;
            edit(&mut c);
            assert_eq!(fp(&c), f0, "{what} leaves the fingerprint");
        }
        // FNV-1a over the default configuration's words, computed independently of the function.
        let d = (base.head_dim, base.num_q_heads, base.num_kv_heads, base.k.div_ceil(base.bk));
        let words = [1, 1, d.0, d.1, d.2, 0, d.3, base.bk, base.bq, base.sink, base.window, base.sq, base.sk, 1];
        let mut h = 0x811c_9dc5u32;
        for b in words.iter().flat_map(|w: &u32| w.to_le_bytes()) {
            h = (h ^ b as u32).wrapping_mul(16_777_619);
        }
        assert_eq!(f0, h as i32);
    }

    /// The host's bound never claims a sequence dense that the definition's key sets say is not: for every length up
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
