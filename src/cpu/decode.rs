//! Decode on the CPU: per sequence and mask head, search or reuse the stored mask (docs/ALGORITHM.md §7), then
//! attend S ∪ M ∪ [e, p] with the single new query. A shard of a sequence (§"Sharded sequences") runs the same
//! steps with its range's sink and window.

use std::cell::Cell;

use super::prefill::store_state;
use super::{attend, block_score, read_i32, read_row, write_lse, write_row, KvRows, Scratch};
use crate::args::DecodeArgs;
use crate::config::Config;
use crate::config::Selection;
use crate::plan;
use crate::spec::{scan_select_in, tree_search_in, BlockKeys};
use crate::status::{Error, Result};

/// A validated mask-state record (its blocks are in the buffer `read_record` filled).
struct Stored {
    /// The refresh counter as the kernels read it (a signed int): below 1 means "search", as on CUDA.
    step: i32,
    e: usize,
}

/// Reads and checks the record of (b, mh) for a query at position p; `blocks` receives its blocks (at most Kb,
/// within the capacity reserved for them). None when the record holds no mask yet.
///
/// # Safety
/// The mask state spans mask_state_bytes(batch) of readable host memory.
unsafe fn read_record(
    cfg: &Config,
    a: &DecodeArgs,
    b: usize,
    mh: usize,
    p: usize,
    blocks: &mut Vec<u32>,
) -> Result<Option<Stored>> {
    let at = a.mask_state.addr + 4 * plan::state_record(cfg, b, mh);
    // SAFETY: the record's state_ints i32s lie inside the validated mask state, and every index read below is
    // under STATE_HEADER + Kb <= state_ints.
    let rec = |i: usize| unsafe { read_i32(at, i) };
    if rec(plan::STATE_MAGIC_IDX) != plan::STATE_MAGIC {
        return Ok(None);
    }
    let (fp, ours) = (rec(plan::STATE_FPRINT_IDX), plan::state_fingerprint(cfg));
    if fp != ours {
        return Err(Error::bad_index(format!(
            "mask_state record of sequence {b}, mask head {mh} was written by a context of another configuration \
             (fingerprint {:#010x}, this context's {:#010x}): give each configuration its own mask state",
            fp as u32, ours as u32
        )));
    }
    let bad = |what: String| {
        Error::bad_index(format!(
            "mask_state record of sequence {b}, mask head {mh}: {what} (stale? zero the sequence's mask-state \
             records after truncating its cache)"
        ))
    };
    let e = rec(plan::STATE_E_IDX);
    // e was max(sink, p' + 1 - window) or max(sink, Tk') at an earlier step p' <= p.
    if e < cfg.sink as i32 || e as i64 > (cfg.sink as i64).max(p as i64 + 1) {
        return Err(bad(format!("e ({e}) outside [{}, {}]", cfg.sink, cfg.sink.max(p + 1))));
    }
    let keys = BlockKeys::with_e(e as usize, p + 1, cfg.sink, cfg.bk);
    let count = rec(plan::STATE_COUNT_IDX);
    if count < 0 || count as usize > cfg.kb().min(keys.nb) {
        return Err(bad(format!("count ({count}) outside [0, {}]", cfg.kb().min(keys.nb))));
    }
    blocks.clear();
    for i in 0..count as usize {
        let blk = rec(plan::STATE_HEADER + i) as u32;
        if blk as usize >= keys.nb || (i > 0 && blk <= blocks[i - 1]) {
            return Err(bad(format!("block {i} ({}) is out of order or outside [0, {})", blk as i32, keys.nb)));
        }
        blocks.push(blk);
    }
    Ok(Some(Stored { step: rec(plan::STATE_STEP_IDX), e: e as usize }))
}

/// seqlens_k[b], checked.
///
/// # Safety
/// seqlens_k holds batch readable i32s and b < batch.
unsafe fn read_len(a: &DecodeArgs, b: usize) -> Result<usize> {
    // SAFETY: forwarded from the caller's contract.
    let len = unsafe { read_i32(a.seqlens_k, b) };
    if len < 1 || len as usize > a.max_seqlen_k {
        return Err(Error::bad_index(format!("seqlens_k[{b}] ({len}) outside [1, {}]", a.max_seqlen_k)));
    }
    Ok(len as usize)
}

/// Keys and values of sequence b and kv head g in the cache, located token by token (through the page table
/// when paged).
struct CacheRows<'a> {
    a: &'a DecodeArgs,
    b: usize,
    len: usize,
    g: usize,
    /// Set when a page index read here is out of range although the first pass found it valid: an output
    /// overlaps the page table. The caller checks it before each write.
    bad_page: &'a Cell<bool>,
}

impl KvRows for CacheRows<'_> {
    unsafe fn read(&self, t: usize, value: bool, out: &mut [f32]) {
        assert!(t < self.len, "token {t} read in a cache of {} tokens", self.len);
        let kv = &self.a.kv;
        let token = match &self.a.paging {
            None => self.b * kv.outer_stride + t * kv.token_stride,
            Some(pg) => {
                // SAFETY: b < batch and t / page_size < ceil(len / page_size) <= pt_stride: inside the page table.
                let page = unsafe { read_i32(pg.page_table, self.b * pg.pt_stride + t / pg.page_size) };
                if page < 0 || page as usize >= pg.num_pages {
                    self.bad_page.set(true);
                    out.iter_mut().for_each(|x| *x = 0.0);
                    return;
                }
                page as usize * kv.outer_stride + (t % pg.page_size) * kv.token_stride
            }
        };
        let (base, off) = ((if value { kv.v } else { kv.k }) as *const u8, token + self.g * kv.head_stride);
        for (i, x) in out.iter_mut().enumerate() {
            // SAFETY: sequence b < batch (or a page < num_pages), token t < max_seqlen_k (or its offset in the
            // page < page_size), g < num_kv_heads and i < head_dim: inside the validated KV extent.
            *x = unsafe { kv.dtype.read(base, off + i) };
        }
    }
}

/// Runs a decode step, updating the mask state.
///
/// # Safety
/// Every pointer in `a` is host memory spanning its validated extent.
pub unsafe fn decode(cfg: &Config, a: &DecodeArgs) -> Result<()> {
    // A shard of a sequence is an ordinary step over its own cache with its sink and window roles
    // (docs/ALGORITHM.md, "Sharded sequences").
    let shard_cfg;
    let cfg = if a.range.is_shard() {
        shard_cfg = cfg.for_range(a.range);
        &shard_cfg
    } else {
        cfg
    };
    let mut scratch = Scratch::try_new(cfg, cfg.mask_head_q_heads(0).len())?;
    // First pass: every length, page index and stored record is checked before anything is written.
    for b in 0..a.batch {
        // SAFETY: b < batch.
        unsafe { read_len(a, b)? };
    }
    if let Some(pg) = &a.paging {
        for b in 0..a.batch {
            // SAFETY: b < batch; checked just above.
            let len = unsafe { read_len(a, b)? };
            for i in 0..len.div_ceil(pg.page_size) {
                // SAFETY: the page table holds batch * pt_stride i32s and ceil(len / page_size) <= pt_stride.
                let page = unsafe { read_i32(pg.page_table, b * pg.pt_stride + i) };
                if page < 0 || page as usize >= pg.num_pages {
                    return Err(Error::bad_index(format!(
                        "page_table[{b}][{i}] ({page}) outside [0, {})",
                        pg.num_pages
                    )));
                }
            }
        }
    }
    for b in 0..a.batch {
        // SAFETY: as above.
        let len = unsafe { read_len(a, b)? };
        for mh in 0..cfg.mask_heads() {
            // SAFETY: the mask state spans mask_state_bytes(batch) (validated in args).
            unsafe { read_record(cfg, a, b, mh, len - 1, &mut scratch.blocks)? };
        }
    }

    // Second pass. Index data is read again where it is used and checked again: it can only have changed if an
    // output overlaps it, and then the call stops with an error instead of reading outside the cache.
    let d = cfg.head_dim;
    let bad_page = Cell::new(false);
    let page_changed = |b: usize| {
        Error::bad_index(format!("the page table of sequence {b} changed during the call (an output overlaps it)"))
    };
    let mut obuf = [0f32; super::MAX_HEAD_DIM];
    let orow = &mut obuf[..d];
    for b in 0..a.batch {
        // SAFETY: b < batch.
        let len = unsafe { read_len(a, b)? };
        let (tk, p) = (len, len - 1);
        for mh in 0..cfg.mask_heads() {
            let heads = cfg.mask_head_q_heads(mh);
            let kv = CacheRows { a, b, len, g: cfg.kv_head_of(heads.start), bad_page: &bad_page };
            scratch.load_queries(d, heads.len(), |r, row| {
                // SAFETY: b < batch, h < Hq: inside the validated q view.
                unsafe { read_row(&a.q, b, heads.start + r, row) };
            });
            // SAFETY: the mask state spans mask_state_bytes(batch).
            let stored = unsafe { read_record(cfg, a, b, mh, p, &mut scratch.blocks)? };
            let (keys, sel, step) = match stored {
                // (a counter that wrapped past 2^31 - 1 turns negative and searches, as on CUDA)
                Some(s) if s.step >= 1 && !(s.step as u32).is_multiple_of(cfg.refresh as u32) => {
                    (BlockKeys::with_e(s.e, tk, cfg.sink, cfg.bk), &scratch.blocks[..], s.step.wrapping_add(1) as u32)
                }
                _ => {
                    let keys = BlockKeys::new(p, tk, cfg.sink, cfg.window, cfg.bk, cfg.causal);
                    let score = |rep| block_score(cfg, &keys, &scratch.queries, &kv, rep, None);
                    let sel = match cfg.decode_selection {
                        Selection::Tree => tree_search_in(keys.nb, cfg.kb(), score, &mut scratch.search),
                        Selection::Scan => scan_select_in(keys.nb, cfg.kb(), score, &mut scratch.search),
                    };
                    (keys, sel, 1)
                }
            };
            if bad_page.get() {
                return Err(page_changed(b));
            }
            // SAFETY: the record lies inside the validated mask state.
            unsafe { store_state(cfg, a.mask_state, b, mh, step, keys.e, sel) };
            for (qi, h) in heads.enumerate() {
                let q = &scratch.queries[qi * d..(qi + 1) * d];
                // Decode always sees the local set [e, p]: tokens appended since the search (docs/ALGORITHM.md).
                let lse = attend(q, cfg.scale, |f| keys.for_each_key(p, true, sel, f), &kv, orow);
                if bad_page.get() {
                    return Err(page_changed(b));
                }
                // SAFETY: b < batch, h < Hq: inside the validated o and lse views.
                unsafe {
                    write_row(&a.o, b, h, orow);
                    write_lse(&a.lse, b, h, lse);
                }
            }
        }
    }
    Ok(())
}
