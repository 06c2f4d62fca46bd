//! Prefill on the CPU: for each sequence, mask head and query block, the tree search, then exact attention.

use super::{attend, read_i32s, read_row, write_lse, write_row, Rows};
use crate::args::{Buffer, PrefillArgs};
use crate::config::Config;
use crate::plan::{self, PrefillWorkspace};
use crate::config::Selection;
use crate::spec::{query_block_score, scan_select, tree_search, BlockKeys};
use crate::status::{Error, Result};
use crate::tensor::TensorView;

/// One sequence of the batch, validated.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Seq {
    pub q0: usize,
    pub tq: usize,
    pub k0: usize,
    pub tk: usize,
}

/// Reads and checks cu_seqlens: starts at 0, never decreases, stays inside the tensors and the max lengths,
/// and Tq <= Tk for every sequence.
///
/// # Safety
/// `a.cu_seqlens_q` and `a.cu_seqlens_k` point to `batch + 1` readable i32s in host memory.
pub(crate) unsafe fn read_seqs(a: &PrefillArgs) -> Result<Vec<Seq>> {
    // SAFETY: forwarded from the caller's contract.
    let (cq, ck) = unsafe { (read_i32s(a.cu_seqlens_q, a.batch + 1), read_i32s(a.cu_seqlens_k, a.batch + 1)) };
    for (name, cu, total, max) in
        [("cu_seqlens_q", &cq, a.total_q, a.max_seqlen_q), ("cu_seqlens_k", &ck, a.total_k, a.max_seqlen_k)]
    {
        if cu[0] != 0 {
            return Err(Error::bad_index(format!("{name}[0] ({}) must be 0", cu[0])));
        }
        for b in 0..a.batch {
            if cu[b + 1] < cu[b] {
                return Err(Error::bad_index(format!(
                    "{name} is not increasing: {name}[{}] ({}) < {name}[{b}] ({})",
                    b + 1,
                    cu[b + 1],
                    cu[b]
                )));
            }
            let len = (cu[b + 1] - cu[b]) as usize;
            if len > max {
                return Err(Error::bad_index(format!(
                    "sequence {b} has {len} rows in {name}, more than its max_seqlen ({max})"
                )));
            }
        }
        if cu[a.batch] as usize > total {
            return Err(Error::bad_index(format!("{name}[{}] ({}) exceeds its total ({total})", a.batch, cu[a.batch])));
        }
    }
    let seqs: Vec<Seq> = (0..a.batch)
        .map(|b| Seq {
            q0: cq[b] as usize,
            tq: (cq[b + 1] - cq[b]) as usize,
            k0: ck[b] as usize,
            tk: (ck[b + 1] - ck[b]) as usize,
        })
        .collect();
    if let Some((b, s)) = seqs.iter().enumerate().find(|(_, s)| s.tq > s.tk) {
        return Err(Error::bad_index(format!("sequence {b} has Tq ({}) > Tk ({})", s.tq, s.tk)));
    }
    Ok(seqs)
}

/// f32 copies of kv head `g`'s rows [k0, k0 + tk) of a key or value tensor.
///
/// # Safety
/// The view was validated; rows are inside it.
pub(crate) unsafe fn load_rows(view: &TensorView, k0: usize, tk: usize, g: usize) -> Rows {
    let dim = view.head_dim;
    let mut data = vec![0f32; tk * dim];
    for t in 0..tk {
        // SAFETY: k0 + t < total_k (read_seqs checked cu_seqlens_k[batch] <= total_k).
        unsafe { read_row(view, k0 + t, g, &mut data[t * dim..(t + 1) * dim]) };
    }
    Rows { dim, data }
}

/// Branch score of docs/ALGORITHM.md: max over the sampled queries and the sampled keys of representative block `rep`.
pub(crate) fn block_score(cfg: &Config, keys: &BlockKeys, queries: &[Vec<f32>], krows: &[&Rows], rep: usize) -> f32 {
    let block = keys.block_range(rep);
    let per_query = queries.iter().zip(krows).map(|(q, kr)| query_block_score(q, block, cfg.sk, |t| kr.row(t)));
    per_query.fold(f32::NEG_INFINITY, f32::max)
}

/// Runs a prefill. `ws` holds the masks afterwards, in the layout the CUDA kernels use.
///
/// # Safety
/// Every pointer in `a` and `ws` is host memory spanning its validated extent.
pub unsafe fn prefill(cfg: &Config, a: &PrefillArgs, ws: Buffer) -> Result<()> {
    // SAFETY: forwarded from the caller's contract.
    let seqs = unsafe { read_seqs(a)? };
    let layout = PrefillWorkspace::new(cfg, a.batch, a.total_q)?;
    let (d, kb) = (cfg.head_dim, cfg.kb());
    let mut qrow = vec![0f32; d];
    let mut orow = vec![0f32; d];
    for (b, s) in seqs.iter().enumerate() {
        // SAFETY: rows of this sequence lie inside k and v (read_seqs).
        let kv: Vec<(Rows, Rows)> = (0..cfg.num_kv_heads)
            .map(|g| unsafe { (load_rows(&a.k, s.k0, s.tk, g), load_rows(&a.v, s.k0, s.tk, g)) })
            .collect();
        let nblocks = s.tq.div_ceil(cfg.bq);
        for mh in 0..cfg.mask_heads() {
            let heads = cfg.mask_head_q_heads(mh);
            for j in 0..nblocks {
                let (i0, i1) = (j * cfg.bq, ((j + 1) * cfg.bq).min(s.tq));
                let p0 = s.tk - s.tq + i0;
                let keys = BlockKeys::new(p0, s.tk, cfg.sink, cfg.window, cfg.bk, cfg.causal);
                // The sampled queries of every head that shares this mask, each with its kv head's keys.
                let mut queries = Vec::new();
                let mut krows = Vec::new();
                for h in heads.clone() {
                    for i in (i0..i1).step_by(cfg.sq) {
                        let mut q = vec![0f32; d];
                        // SAFETY: q0 + i < total_q (read_seqs).
                        unsafe { read_row(&a.q, s.q0 + i, h, &mut q) };
                        queries.push(q);
                        krows.push(&kv[cfg.kv_head_of(h)].0);
                    }
                }
                let score = |rep| block_score(cfg, &keys, &queries, &krows, rep);
                let sel = match cfg.prefill_selection(i1, s.tq) {
                    Selection::Tree => tree_search(keys.nb, kb, score),
                    Selection::Scan => scan_select(keys.nb, kb, score),
                };
                // SAFETY: the slot is below layout.slots and ws holds layout.bytes (checked by the context).
                unsafe { store_mask(cfg, &layout, ws, PrefillWorkspace::slot(cfg, s.q0, b, j), mh, &sel) };
                for h in heads.clone() {
                    let (kr, vr) = &kv[cfg.kv_head_of(h)];
                    for i in i0..i1 {
                        let p = s.tk - s.tq + i;
                        // SAFETY: row inside q / o / lse (read_seqs).
                        unsafe { read_row(&a.q, s.q0 + i, h, &mut qrow) };
                        let lse = attend(
                            &qrow,
                            cfg.scale,
                            |f| keys.for_each_key(p, cfg.causal, &sel, f),
                            |t| kr.row(t),
                            |t| vr.row(t),
                            &mut orow,
                        );
                        // SAFETY: as above.
                        unsafe {
                            write_row(&a.o, s.q0 + i, h, &orow);
                            write_lse(&a.lse, s.q0 + i, h, lse);
                        }
                    }
                }
                if let (Some(state), true) = (a.mask_state_out, j + 1 == nblocks) {
                    // SAFETY: state spans mask_state_bytes(batch) (validated in args).
                    unsafe { store_state(cfg, state, b, mh, 1, keys.e, &sel) };
                }
            }
        }
    }
    Ok(())
}

/// # Safety
/// `ws` spans `layout.bytes` of writable host memory and `slot < layout.slots`.
unsafe fn store_mask(cfg: &Config, layout: &PrefillWorkspace, ws: Buffer, slot: usize, mh: usize, sel: &[u32]) {
    let idx = (ws.addr + layout.idx_offset) as *mut i32;
    let cnt = (ws.addr + layout.cnt_offset) as *mut i32;
    let rec = slot * cfg.mask_heads() + mh;
    // SAFETY: rec < slots * mask_heads, sel.len() <= kb: inside the two arrays of the layout.
    unsafe {
        for (i, &blk) in sel.iter().enumerate() {
            idx.add(rec * cfg.kb() + i).write(blk as i32);
        }
        cnt.add(rec).write(sel.len() as i32);
    }
}

/// Writes a mask-state record (magic, step, e, count, blocks).
///
/// # Safety
/// `state` spans `mask_state_bytes(batch)` of writable host memory with b < batch, mh < mask_heads.
pub(crate) unsafe fn store_state(cfg: &Config, state: Buffer, b: usize, mh: usize, step: u32, e: usize, sel: &[u32]) {
    let rec = (state.addr as *mut i32).wrapping_add(plan::state_record(cfg, b, mh));
    // SAFETY: the record has state_ints >= STATE_HEADER + kb i32s and sel.len() <= kb.
    unsafe {
        rec.add(plan::STATE_MAGIC_IDX).write(plan::STATE_MAGIC);
        rec.add(plan::STATE_STEP_IDX).write(step as i32);
        rec.add(plan::STATE_E_IDX).write(e as i32);
        rec.add(plan::STATE_COUNT_IDX).write(sel.len() as i32);
        for (i, &blk) in sel.iter().enumerate() {
            rec.add(plan::STATE_HEADER + i).write(blk as i32);
        }
    }
}
