//! Prefill on the CPU: for each sequence, mask head and query block, the tree search (or SCAN for the blocks
//! of the prompt's tail), then exact attention.

use super::{attend, block_score, read_i32, read_row, write_lse, write_row, KvRows, Scratch};
use crate::args::{Buffer, PrefillArgs};
use crate::config::Config;
use crate::config::Selection;
use crate::plan::{self, PrefillPlan, PrefillWorkspace};
use crate::spec::{e4m3_scale, e4m3_to_f32, quantize_e4m3, scan_select_in, tree_search_in, BlockKeys};
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

/// Reads and checks cu_seqlens: starts at 0, never decreases, ends at the declared totals (total_q, total_k),
/// keeps every sequence within the max lengths, and Tq <= Tk for every sequence. Nothing is kept: the compute
/// pass reads each sequence again (`read_seq`).
///
/// # Safety
/// `a.cu_seqlens_q` and `a.cu_seqlens_k` point to `batch + 1` readable i32s in host memory.
pub(crate) unsafe fn read_seqs(a: &PrefillArgs) -> Result<()> {
    for (name, addr, total, max) in [
        ("cu_seqlens_q", a.cu_seqlens_q, a.total_q, a.max_seqlen_q),
        ("cu_seqlens_k", a.cu_seqlens_k, a.total_k, a.max_seqlen_k),
    ] {
        // SAFETY: every index read below is at most batch (caller's contract).
        let cu = |i: usize| unsafe { read_i32(addr, i) };
        if cu(0) != 0 {
            return Err(Error::bad_index(format!("{name}[0] ({}) must be 0", cu(0))));
        }
        for b in 0..a.batch {
            let (lo, hi) = (cu(b), cu(b + 1));
            if hi < lo {
                return Err(Error::bad_index(format!(
                    "{name} is not increasing: {name}[{}] ({hi}) < {name}[{b}] ({lo})",
                    b + 1
                )));
            }
            // lo >= 0: every earlier entry passed these checks, starting from cu[0] = 0.
            let len = (hi as i64 - lo as i64) as usize;
            if len > max {
                return Err(Error::bad_index(format!(
                    "sequence {b} has {len} rows in {name}, more than its max_seqlen ({max})"
                )));
            }
        }
        // Not just <= total: a total that disagrees with the sequences means one of them is wrong, and the CUDA
        // kernels size the workspace and launch grid from the totals.
        if cu(a.batch) as usize != total {
            let tf = if name == "cu_seqlens_q" { "total_q" } else { "total_k" };
            return Err(Error::bad_index(format!(
                "{name}[{}] ({}) must equal {tf} ({total}): the sequences must cover the {tf} rows exactly",
                a.batch,
                cu(a.batch)
            )));
        }
    }
    for b in 0..a.batch {
        // SAFETY: forwarded from the caller's contract.
        let s = unsafe { read_seq(a, b)? };
        if s.tq > s.tk {
            return Err(Error::bad_index(format!("sequence {b} has Tq ({}) > Tk ({})", s.tq, s.tk)));
        }
    }
    Ok(())
}

/// Sequence b as cu_seqlens says now. Checked again whenever it is read, because an output that overlaps
/// cu_seqlens may have changed them since `read_seqs`: the geometry returned always lies inside the tensors.
/// (Tq <= Tk is `read_seqs`'s check, with its own message.)
///
/// # Safety
/// As for `read_seqs`, and b < batch.
unsafe fn read_seq(a: &PrefillArgs, b: usize) -> Result<Seq> {
    // SAFETY: b + 1 <= batch (caller's contract).
    let cu = |addr: usize, i: usize| unsafe { read_i32(addr, i) } as i64;
    let (q0, q1, k0, k1) =
        (cu(a.cu_seqlens_q, b), cu(a.cu_seqlens_q, b + 1), cu(a.cu_seqlens_k, b), cu(a.cu_seqlens_k, b + 1));
    let inside = |lo: i64, hi: i64, total: usize, max: usize| {
        0 <= lo && lo <= hi && hi as usize <= total && (hi - lo) as usize <= max
    };
    if !inside(q0, q1, a.total_q, a.max_seqlen_q) || !inside(k0, k1, a.total_k, a.max_seqlen_k) {
        return Err(Error::bad_index(format!(
            "cu_seqlens of sequence {b} changed during the call (an output or the workspace overlaps them)"
        )));
    }
    Ok(Seq { q0: q0 as usize, tq: (q1 - q0) as usize, k0: k0 as usize, tk: (k1 - k0) as usize })
}

/// Keys and values of one sequence and kv head of a prefill: rows [k0, k0 + len) of the k and v views.
struct SeqRows<'a> {
    k: &'a TensorView,
    v: &'a TensorView,
    k0: usize,
    len: usize,
    g: usize,
}

impl KvRows for SeqRows<'_> {
    unsafe fn read(&self, t: usize, value: bool, out: &mut [f32]) {
        assert!(t < self.len, "key {t} read in a sequence of {} keys", self.len);
        // SAFETY: k0 + t < k0 + len <= total_k (read_seq) and g < num_kv_heads: inside the validated view.
        unsafe { read_row(if value { self.v } else { self.k }, self.k0 + t, self.g, out) };
    }
}

/// Runs a prefill. `ws` holds the masks afterwards, in the plan's layout, which the CUDA kernels use too.
///
/// # Safety
/// Every pointer in `a` and `ws` is host memory spanning its validated extent, and `ws` spans the plan's
/// workspace.
pub unsafe fn prefill(cfg: &Config, plan: &PrefillPlan, a: &PrefillArgs, ws: Buffer) -> Result<()> {
    // SAFETY: forwarded from the caller's contract.
    unsafe { read_seqs(a)? };
    let layout = &plan.workspace;
    let (d, kb) = (cfg.head_dim, cfg.kb());
    // A query block holds at most min(bq, max_seqlen_q) queries; the search samples every sq-th.
    let per_head = cfg.bq.min(a.max_seqlen_q).div_ceil(cfg.sq);
    let mut scratch = Scratch::try_new(cfg, cfg.mask_head_q_heads(0).len() * per_head)?;
    let (mut qbuf, mut obuf) = ([0f32; super::MAX_HEAD_DIM], [0f32; super::MAX_HEAD_DIM]);
    let (qrow, orow) = (&mut qbuf[..d], &mut obuf[..d]);
    for b in 0..a.batch {
        // SAFETY: b < batch.
        let s = unsafe { read_seq(a, b)? };
        let nblocks = s.tq.div_ceil(cfg.bq);
        // The FP8-scored search's K scale (section 9) of the last kv head computed: (kv head, scale). The mask
        // heads of one kv head are consecutive, so each kv head's keys are read for it once.
        let mut k8_scale: Option<(usize, f32)> = None;
        for mh in 0..cfg.mask_heads() {
            let heads = cfg.mask_head_q_heads(mh);
            // Every q head of a mask head reads the same kv head.
            let kv = SeqRows { k: &a.k, v: &a.v, k0: s.k0, len: s.tk, g: cfg.kv_head_of(heads.start) };
            if cfg.fp8_search && k8_scale.map(|(g, _)| g) != Some(kv.g) {
                let elements = (0..s.tk).flat_map(|t| {
                    let mut row = [0f32; super::MAX_HEAD_DIM];
                    // SAFETY: t < tk, the sequence's length.
                    unsafe { kv.read(t, false, &mut row[..d]) };
                    row.into_iter().take(d)
                });
                k8_scale = Some((kv.g, e4m3_scale(elements)));
            }
            for j in 0..nblocks {
                let (i0, i1) = (j * cfg.bq, ((j + 1) * cfg.bq).min(s.tq));
                let p0 = s.tk - s.tq + i0;
                let keys = BlockKeys::new(p0, s.tk, cfg.sink, cfg.window, cfg.bk, cfg.causal);
                // The sampled queries of every head that shares this mask.
                let sampled = (i1 - i0).div_ceil(cfg.sq);
                scratch.load_queries(d, heads.len() * sampled, |r, row| {
                    let (h, i) = (heads.start + r / sampled, i0 + (r % sampled) * cfg.sq);
                    // SAFETY: q0 + i < q0 + tq <= total_q (read_seq), h < Hq.
                    unsafe { read_row(&a.q, s.q0 + i, h, row) };
                });
                let selection = cfg.prefill_selection(i1, s.tq);
                // The FP8-scored tree search rounds the block's rows at their one scale (section 9).
                let k8 = k8_scale.filter(|_| selection == Selection::Tree).map(|(_, s)| s);
                if k8.is_some() {
                    let sq = e4m3_scale(scratch.queries.iter().copied());
                    scratch.queries.iter_mut().for_each(|x| *x = e4m3_to_f32(quantize_e4m3(*x, sq)));
                }
                let score = |rep| block_score(cfg, &keys, &scratch.queries, &kv, rep, k8);
                let sel = match selection {
                    Selection::Tree => tree_search_in(keys.nb, kb, score, &mut scratch.search),
                    Selection::Scan => scan_select_in(keys.nb, kb, score, &mut scratch.search),
                };
                // SAFETY: the slot is below layout.slots and ws holds layout.bytes (checked by the context).
                unsafe { store_mask(cfg, layout, ws, PrefillWorkspace::slot(cfg, s.q0, b, j), mh, sel) };
                for h in heads.clone() {
                    for i in i0..i1 {
                        let p = s.tk - s.tq + i;
                        // SAFETY: row inside q / o / lse (read_seq).
                        unsafe { read_row(&a.q, s.q0 + i, h, qrow) };
                        let lse = attend(qrow, cfg.scale, |f| keys.for_each_key(p, cfg.causal, sel, f), &kv, orow);
                        // SAFETY: as above.
                        unsafe {
                            write_row(&a.o, s.q0 + i, h, orow);
                            write_lse(&a.lse, s.q0 + i, h, lse);
                        }
                    }
                }
                if let (Some(state), true) = (a.mask_state_out, j + 1 == nblocks) {
                    // SAFETY: state spans mask_state_bytes(batch) (validated in args).
                    unsafe { store_state(cfg, state, b, mh, 1, keys.e, sel) };
                }
            }
        }
    }
    Ok(())
}

/// # Safety
/// `ws` spans `layout.bytes` of writable host memory and `slot < layout.slots`.
unsafe fn store_mask(cfg: &Config, layout: &PrefillWorkspace, ws: Buffer, slot: usize, mh: usize, sel: &[u32]) {
    let (cnt_at, idx_at) = layout.mask_offsets(cfg, slot, mh);
    let (cnt, idx) = ((ws.addr + cnt_at) as *mut i32, (ws.addr + idx_at) as *mut i32);
    // SAFETY: slot < slots and mh < mask_heads, so the count and the Kb indices (sel.len() <= kb) lie inside the
    // two arrays of the layout.
    unsafe {
        for (i, &blk) in sel.iter().enumerate() {
            idx.add(i).write(blk as i32);
        }
        cnt.write(sel.len() as i32);
    }
}

/// Writes a mask-state record (magic, step, e, count, this configuration's fingerprint, blocks).
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
        rec.add(plan::STATE_FPRINT_IDX).write(plan::state_fingerprint(cfg));
        for (i, &blk) in sel.iter().enumerate() {
            rec.add(plan::STATE_HEADER + i).write(blk as i32);
        }
    }
}
