//! Decode on the CPU: per sequence and mask head, search or reuse the stored mask (docs/ALGORITHM.md §7), then
//! attend S ∪ M ∪ [e, p] with the single new query.

use super::prefill::{block_score, store_state};
use super::{attend, read_i32s, read_row, write_lse, write_row, Rows};
use crate::args::DecodeArgs;
use crate::config::Config;
use crate::plan;
use crate::config::Selection;
use crate::spec::{scan_select, tree_search, BlockKeys};
use crate::status::{Error, Result};

/// A validated mask-state record, or None when it holds no mask yet.
struct Stored {
    step: u32,
    e: usize,
    blocks: Vec<u32>,
}

/// Reads and checks the record of (b, mh) for a query at position p.
///
/// # Safety
/// The mask state spans mask_state_bytes(batch) of readable host memory.
unsafe fn read_record(cfg: &Config, a: &DecodeArgs, b: usize, mh: usize, p: usize) -> Result<Option<Stored>> {
    let at = a.mask_state.addr + 4 * plan::state_record(cfg, b, mh);
    // SAFETY: the record lies inside the validated mask state.
    let rec = unsafe { read_i32s(at, plan::state_ints(cfg)) };
    if rec[plan::STATE_MAGIC_IDX] != plan::STATE_MAGIC {
        return Ok(None);
    }
    let bad = |what: String| Error::bad_index(format!("mask_state record of sequence {b}, mask head {mh}: {what}"));
    let e = rec[plan::STATE_E_IDX];
    // e was max(sink, p' + 1 - window) or max(sink, Tk') at an earlier step p' <= p.
    if e < cfg.sink as i32 || e as i64 > (cfg.sink as i64).max(p as i64 + 1) {
        return Err(bad(format!("e ({e}) outside [{}, {}]", cfg.sink, cfg.sink.max(p + 1))));
    }
    let keys = BlockKeys::with_e(e as usize, p + 1, cfg.sink, cfg.bk);
    let count = rec[plan::STATE_COUNT_IDX];
    if count < 0 || count as usize > cfg.kb().min(keys.nb) {
        return Err(bad(format!("count ({count}) outside [0, {}]", cfg.kb().min(keys.nb))));
    }
    let blocks: Vec<u32> = rec[plan::STATE_HEADER..plan::STATE_HEADER + count as usize].iter().map(|&x| x as u32).collect();
    for (i, &blk) in blocks.iter().enumerate() {
        if blk as usize >= keys.nb || (i > 0 && blk <= blocks[i - 1]) {
            return Err(bad(format!("block {i} ({}) is out of order or outside [0, {})", blk as i32, keys.nb)));
        }
    }
    Ok(Some(Stored { step: rec[plan::STATE_STEP_IDX] as u32, e: e as usize, blocks }))
}

/// Runs a decode step, updating the mask state.
///
/// # Safety
/// Every pointer in `a` is host memory spanning its validated extent.
pub unsafe fn decode(cfg: &Config, a: &DecodeArgs) -> Result<()> {
    // SAFETY: seqlens_k holds batch i32s (caller's contract).
    let lens = unsafe { read_i32s(a.seqlens_k, a.batch) };
    for (b, &len) in lens.iter().enumerate() {
        if len < 1 || len as usize > a.max_seqlen_k {
            return Err(Error::bad_index(format!("seqlens_k[{b}] ({len}) outside [1, {}]", a.max_seqlen_k)));
        }
    }
    // Element offset of (sequence b, token t, kv head g) in k and v, with every page index checked up front.
    let mut token_base: Vec<Vec<usize>> = Vec::with_capacity(a.batch);
    for (b, &len) in lens.iter().enumerate() {
        let len = len as usize;
        let bases = match &a.paging {
            None => (0..len).map(|t| b * a.kv.outer_stride + t * a.kv.token_stride).collect(),
            Some(pg) => {
                // SAFETY: the page table holds batch * pt_stride i32s and ceil(len / page_size) <= pt_stride.
                let row = unsafe { read_i32s(pg.page_table + 4 * b * pg.pt_stride, len.div_ceil(pg.page_size)) };
                if let Some((i, &page)) = row.iter().enumerate().find(|(_, &pg_)| pg_ < 0 || pg_ as usize >= pg.num_pages) {
                    return Err(Error::bad_index(format!(
                        "page_table[{b}][{i}] ({page}) outside [0, {})",
                        pg.num_pages
                    )));
                }
                (0..len)
                    .map(|t| row[t / pg.page_size] as usize * a.kv.outer_stride + (t % pg.page_size) * a.kv.token_stride)
                    .collect()
            }
        };
        token_base.push(bases);
    }
    // Check every stored record before anything is written.
    let mut stored = Vec::with_capacity(a.batch * cfg.mask_heads());
    for (b, &len) in lens.iter().enumerate() {
        for mh in 0..cfg.mask_heads() {
            // SAFETY: the mask state spans mask_state_bytes(batch) (validated in args).
            stored.push(unsafe { read_record(cfg, a, b, mh, len as usize - 1)? });
        }
    }

    let d = cfg.head_dim;
    let load = |base: usize, bases: &[usize], g: usize| {
        let mut data = vec![0f32; bases.len() * d];
        for (t, &off) in bases.iter().enumerate() {
            for i in 0..d {
                // SAFETY: off + g*head_stride + i lies inside the validated KV extent (page indices checked).
                data[t * d + i] = unsafe { a.kv.dtype.read(base as *const u8, off + g * a.kv.head_stride + i) };
            }
        }
        Rows { dim: d, data }
    };
    let mut orow = vec![0f32; d];
    for (b, &len) in lens.iter().enumerate() {
        let (tk, p) = (len as usize, len as usize - 1);
        let kv: Vec<(Rows, Rows)> =
            (0..cfg.num_kv_heads).map(|g| (load(a.kv.k, &token_base[b], g), load(a.kv.v, &token_base[b], g))).collect();
        for mh in 0..cfg.mask_heads() {
            let heads = cfg.mask_head_q_heads(mh);
            let queries: Vec<Vec<f32>> = heads
                .clone()
                .map(|h| {
                    let mut q = vec![0f32; d];
                    // SAFETY: b < batch, h < Hq: inside the validated q view.
                    unsafe { read_row(&a.q, b, h, &mut q) };
                    q
                })
                .collect();
            let krows: Vec<&Rows> = heads.clone().map(|h| &kv[cfg.kv_head_of(h)].0).collect();
            let (keys, sel) = match stored[b * cfg.mask_heads() + mh].take() {
                Some(s) if s.step % cfg.refresh as u32 != 0 => {
                    // SAFETY: the record lies inside the validated mask state.
                    unsafe { store_state(cfg, a.mask_state, b, mh, s.step.wrapping_add(1), s.e, &s.blocks) };
                    (BlockKeys::with_e(s.e, tk, cfg.sink, cfg.bk), s.blocks)
                }
                _ => {
                    let keys = BlockKeys::new(p, tk, cfg.sink, cfg.window, cfg.bk, cfg.causal);
                    let score = |rep| block_score(cfg, &keys, &queries, &krows, rep);
                    let sel = match cfg.decode_selection {
                        Selection::Tree => tree_search(keys.nb, cfg.kb(), score),
                        Selection::Scan => scan_select(keys.nb, cfg.kb(), score),
                    };
                    // SAFETY: as above.
                    unsafe { store_state(cfg, a.mask_state, b, mh, 1, keys.e, &sel) };
                    (keys, sel)
                }
            };
            for (qi, h) in heads.enumerate() {
                let (kr, vr) = &kv[cfg.kv_head_of(h)];
                // Decode always sees the local set [e, p]: tokens appended since the search (docs/ALGORITHM.md).
                let lse = attend(
                    &queries[qi],
                    cfg.scale,
                    |f| keys.for_each_key(p, true, &sel, f),
                    |t| kr.row(t),
                    |t| vr.row(t),
                    &mut orow,
                );
                // SAFETY: b < batch, h < Hq: inside the validated o and lse views.
                unsafe {
                    write_row(&a.o, b, h, &orow);
                    write_lse(&a.lse, b, h, lse);
                }
            }
        }
    }
    Ok(())
}
