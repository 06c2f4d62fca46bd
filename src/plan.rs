//! Plans: everything decided per call shape, each in exactly one function, as FlashInfer's plan/run split does.
//! A `PrefillPlan` or `DecodePlan` is built once from the configuration and a call's host-side scalars; the
//! workspace-size queries return its sizes and both backends run from it: the workspace layouts and their
//! offsets, the mask-state record size, the dense-only decision, the decode and SCAN split counts, the decode
//! search kernel and every launch grid.
//!
//! Sizes depend only on the configuration and the host-side scalars of a call, never on the backend, so an
//! engine sized against the CPU backend is sized right for CUDA. What depends on the device (split counts and
//! the kernel choice of a decode step) is planned only for the CUDA backend, from its `DeviceTraits`. The record
//! layout and the SCAN region are those of src/contract.rs, which the kernels' header is generated from.

use crate::config::{Config, MaskSharing, Selection};
use crate::status::{checked_add, checked_mul, Result};
use crate::tensor::DType;

/// A CUDA launch grid (x, y, z).
pub type Grid = (u32, u32, u32);

/// The host-side scalars of a prefill call that its plan depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefillShape {
    pub batch: usize,
    pub total_q: usize,
    pub max_seqlen_q: usize,
    pub max_seqlen_k: usize,
}

/// A prefill call's plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefillPlan {
    pub shape: PrefillShape,
    /// The workspace layout; `workspace.bytes` is what `hip_prefill_workspace_size` returns.
    pub workspace: PrefillWorkspace,
    /// i32s per mask-state record.
    pub state_ints: usize,
    /// Every query block selects all of its key blocks (`prefill_all_dense`): only the dense attention runs.
    pub dense_only: bool,
    /// hip_prefill_search: (query blocks of the longest sequence, mask heads, batch).
    pub search_grid: Grid,
    /// With HIP_ATTN_FLAG_FP8_SEARCH_SCORES where some block searches: the grid of hip_prefill_k8_amax and
    /// hip_prefill_k8_copy, which make the search's copy of K before it.
    pub k8_grid: Option<Grid>,
    /// hip_prefill_scan over the tail query blocks; None without `prefill_scan_tail`.
    pub scan_grid: Option<Grid>,
    /// hip_prefill_attn_dense: (row tiles of the longest sequence, q heads, batch).
    pub dense_grid: Grid,
    /// hip_prefill_attn (block-sparse), or hip_prefill_attn_hopper_sparse in its place where the context has it
    /// (the backend's choice, made once at context creation: compiled in the module, not turned off by
    /// HIP_ATTN_SPARSE_KERNEL=classic, its shared memory granted): (query blocks, q heads, batch); None when
    /// `dense_only`.
    pub sparse_grid: Option<Grid>,
    /// Which kernel runs the dense attention: Classic from `new` (what the workspace query sees); the CUDA backend
    /// decides per call with `choose_dense_kernel`, which needs the device and the tensors.
    pub dense_kernel: DenseKernel,
}

/// The two implementations of the dense prefill attention (hip_prefill_attn_dense's job). Both compute the same
/// outputs; Hopper is the bulk-copy/wgmma pipeline of cuda/hopper/dense.cuh, which only some calls can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenseKernel {
    /// hip_prefill_attn_dense: every device, dtype, head_dim and layout.
    Classic,
    /// hip_prefill_attn_hopper, grid (128-row tiles of the longest sequence, q heads, batch).
    Hopper { grid: Grid },
}

/// What the bulk tensor copies need of one operand (q, k, v; o for its stores): a 16-byte aligned base and token
/// and head strides that are whole 16-byte units (8 bf16 elements).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DenseOperand {
    pub addr: usize,
    pub row_stride: usize,
    pub head_stride: usize,
}

impl DenseOperand {
    fn copyable(&self) -> bool {
        self.addr.is_multiple_of(16) && self.row_stride.is_multiple_of(8) && self.head_stride.is_multiple_of(8)
    }
}

impl PrefillPlan {
    /// The dense kernel for a call: Hopper when the module has it (`hopper_compiled`: sm_90a with bf16 and
    /// head_dim 128 compiled in, and its shared memory granted), the call has tokens on both sides (a tensor map
    /// cannot have an empty dimension) and every operand suits the bulk copies; Classic otherwise, so that every
    /// valid call still runs.
    pub fn choose_dense_kernel(&mut self, cfg: &Config, hopper_compiled: bool, total_k: usize, ops: [DenseOperand; 4]) {
        // One sequence only: a tile that reaches past its sequence's keys masks the next sequence's keys to zero
        // weight, but their V rows still enter the P V product, so a NaN or Inf there would reach this sequence's
        // rows (docs/ALGORITHM.md promises NaN/Inf only reach the rows they touch). Batches keep the classic kernel.
        let fits = hopper_compiled
            && self.shape.batch == 1
            && cfg.dtype == DType::Bf16
            && cfg.head_dim == crate::contract::HOPPER_HEAD_DIM
            && self.shape.total_q > 0
            && total_k > 0
            && ops.iter().all(DenseOperand::copyable);
        self.dense_kernel = if fits {
            let (_, hq, batch) = self.dense_grid;
            let rows = crate::contract::HOPPER_ROWS;
            DenseKernel::Hopper { grid: (self.shape.max_seqlen_q.div_ceil(rows) as u32, hq, batch) }
        } else {
            DenseKernel::Classic
        };
    }
}

impl PrefillPlan {
    pub fn new(cfg: &Config, shape: PrefillShape) -> Result<Self> {
        let mut workspace = PrefillWorkspace::with_tail(cfg, shape.batch, shape.total_q, shape.max_seqlen_q)?;
        let dense_only = prefill_all_dense(cfg, shape.max_seqlen_k);
        // The FP8-scored search needs its copy of K only where some block searches.
        if cfg.fp8_search && !dense_only {
            workspace = workspace.with_k8(cfg, shape.batch, shape.max_seqlen_k)?;
        }
        let (mh, hq, batch) = (cfg.mask_heads() as u32, cfg.num_q_heads as u32, shape.batch as u32);
        let blocks = shape.max_seqlen_q.div_ceil(cfg.bq) as u32;
        let rows = crate::contract::dense_rows(cfg.head_dim as i64) as usize;
        Ok(PrefillPlan {
            shape,
            workspace,
            state_ints: state_ints(cfg),
            dense_only,
            search_grid: (blocks, mh, batch),
            k8_grid: (workspace.k8_chunks > 0).then_some((
                workspace.k8_chunks.min(u32::MAX as usize) as u32,
                cfg.num_kv_heads as u32,
                batch,
            )),
            scan_grid: (workspace.tail_blocks > 0).then_some((workspace.tail_blocks as u32, mh, batch)),
            dense_grid: (shape.max_seqlen_q.div_ceil(rows) as u32, hq, batch),
            sparse_grid: (!dense_only).then_some((blocks, hq, batch)),
            dense_kernel: DenseKernel::Classic,
        })
    }
}

/// The host-side scalars of a decode step that its plan depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeShape {
    pub batch: usize,
    pub max_seqlen_k: usize,
}

/// What a decode plan needs to know of the CUDA device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceTraits {
    pub sm_count: usize,
    /// CTAs per cluster of the cluster decode kernel (1: no clusters, only the one-CTA search).
    pub search_cluster: u32,
    /// CTAs of the cluster decode kernel (hip_decode_step_wide or hip_decode_search_wide, whichever the
    /// configuration's module holds: `decode_step_kernel`) one SM holds at once, as launched.
    pub cluster_per_sm: usize,
    /// CTAs of hip_decode_scan resident on the whole device at once.
    pub scan_resident: usize,
}

/// How a decode step selects the blocks of the (sequence, mask head) pairs that search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeSearch {
    /// The tree search before the attention kernels: hip_decode_search_wide with `cluster` CTAs per search
    /// when `cluster` > 1 (a mask shared by several q heads), else hip_decode_search.
    Tree { cluster: u32 },
    /// The whole step in hip_decode_step_wide: a cluster of `cluster` CTAs per search that also attends (split r
    /// of the key list on the CTA of rank r) and combines (a mask of one q head; `decode_step_kernel`).
    Step { cluster: u32 },
    /// hip_decode_scan with `splits` CTAs per (sequence, mask head), then hip_decode_scan_merge.
    Scan { splits: usize },
}

/// The CUDA launches of a decode step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLaunch {
    pub search: DecodeSearch,
    /// The search kernel's grid: (mask heads x cluster, batch, 1) for the tree search, (splits, mask heads, batch)
    /// for the scan.
    pub search_grid: Grid,
    /// hip_decode_scan_merge: (mask heads, batch, 1); None for the tree search.
    pub scan_merge_grid: Option<Grid>,
    /// Key-list chunks per (sequence, q head): the cluster's CTAs with `Step`; else with 1 the
    /// attention writes the outputs itself (hip_decode_attn_direct) and no combine runs.
    pub splits: usize,
    /// hip_decode_attn or hip_decode_attn_direct: (splits, q heads, batch); None with `Step`.
    pub attn_grid: Option<Grid>,
    /// hip_decode_combine: (q heads, batch, 1); None with one split or `Step`.
    pub combine_grid: Option<Grid>,
}

/// A decode step's plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodePlan {
    pub shape: DecodeShape,
    /// The workspace layout; `workspace.bytes` is what `hip_decode_workspace_size` returns (for any device).
    pub workspace: DecodeWorkspace,
    /// i32s per mask-state record.
    pub state_ints: usize,
    /// The CUDA launches; None when planned without a device (the CPU backend, which needs none of it).
    pub launch: Option<DecodeLaunch>,
}

impl DecodePlan {
    pub fn new(cfg: &Config, shape: DecodeShape, device: Option<&DeviceTraits>) -> Result<Self> {
        let workspace = DecodeWorkspace::new(cfg, shape.batch, shape.max_seqlen_k)?;
        let launch = device.map(|dev| {
            let (mh, hq, b) = (cfg.mask_heads() as u32, cfg.num_q_heads as u32, shape.batch as u32);
            let (search, search_grid, scan_merge_grid) = match cfg.decode_selection {
                Selection::Scan => {
                    let units = shape.batch * cfg.mask_heads();
                    let splits = scan_splits(units, shape.max_seqlen_k.div_ceil(cfg.bk), dev.scan_resident);
                    (DecodeSearch::Scan { splits }, (splits as u32, mh, b), Some((mh, b, 1)))
                }
                Selection::Tree => {
                    let cluster = decode_search_cluster(cfg, dev, shape.batch);
                    let search = match cluster {
                        2.. if decode_step_kernel(cfg) => DecodeSearch::Step { cluster },
                        _ => DecodeSearch::Tree { cluster },
                    };
                    (search, (mh * cluster, b, 1), None)
                }
            };
            if let DecodeSearch::Step { cluster } = search {
                // The step kernel attends too, split by cluster rank, and combines in the cluster.
                let splits = cluster as usize;
                return DecodeLaunch { search, search_grid, scan_merge_grid, splits, attn_grid: None, combine_grid: None };
            }
            let splits = decode_splits(cfg, shape, dev.sm_count);
            DecodeLaunch {
                search,
                search_grid,
                scan_merge_grid,
                splits,
                attn_grid: Some((splits as u32, hq, b)),
                combine_grid: (splits > 1).then_some((hq, b, 1)),
            }
        });
        Ok(DecodePlan { shape, workspace, state_ints: state_ints(cfg), launch })
    }
}

/// Splits per (sequence, head) so that a decode step puts about two CTAs on every SM, without splitting a
/// key list into chunks shorter than a tile. A split's share of the key list is n*s/splits, so the result
/// depends on `splits`: with HIP_ATTN_FLAG_BATCH_INVARIANT it comes from the configuration alone (the most
/// keys a step can attend, in 128-key chunks), never from the batch size, max_seqlen_k or the SM count.
/// Never more than the workspace holds (`decode_partials`), which only a device of more than
/// DECODE_SIZED_SMS SMs could want.
pub fn decode_splits(cfg: &Config, shape: DecodeShape, sm_count: usize) -> usize {
    if cfg.batch_invariant {
        return invariant_splits(cfg);
    }
    let rows = shape.batch.saturating_mul(cfg.num_q_heads).max(1);
    let want = (2 * sm_count.max(1)).div_ceil(rows);
    let held = decode_partials(rows, cfg, shape.max_seqlen_k) / rows;
    want.clamp(1, key_splits(cfg, shape.max_seqlen_k)).min(held.max(1))
}

/// The most keys a decode step can attend: sink, the selected blocks, the window and the keys appended since
/// the mask was searched.
fn most_decode_keys(cfg: &Config) -> usize {
    cfg.sink + cfg.kb() * cfg.bk + cfg.window + cfg.refresh
}

/// The split count under HIP_ATTN_FLAG_BATCH_INVARIANT: 128-key chunks of the most keys, at most
/// DECODE_MAX_SPLITS.
fn invariant_splits(cfg: &Config) -> usize {
    most_decode_keys(cfg).div_ceil(128).clamp(1, DECODE_MAX_SPLITS)
}

/// The most splits a row (sequence, q head) of a step with keys up to `max_k` takes: at most DECODE_MAX_SPLITS,
/// and no chunk under 64 keys.
fn key_splits(cfg: &Config, max_k: usize) -> usize {
    most_decode_keys(cfg).min(max_k).div_ceil(64).clamp(1, DECODE_MAX_SPLITS)
}

/// SMs the decode workspace is sized for. The size query has no device, so the split-K partials are counted for
/// the largest device the split rule is meant for (an H200 has 132 SMs); a larger one gets fewer splits than
/// it would want, never an overrun.
pub const DECODE_SIZED_SMS: usize = 512;

/// Split-K partials the decode workspace holds for `rows` (sequence, q head) rows of keys up to `max_k`: what
/// the split rule can pick on a device of up to DECODE_SIZED_SMS SMs. Each row takes at most `key_splits`, and
/// rows x ceil(2 SMs / rows) < rows + 2 SMs, so at a large batch (where one split per row already fills the
/// device) the workspace is about one partial per row instead of DECODE_MAX_SPLITS. Non-decreasing in `rows`
/// and `max_k`, so a workspace sized for the largest batch and length an engine uses serves every smaller step.
/// (Saturating: a size that overflows is reported by the workspace's checked arithmetic.)
fn decode_partials(rows: usize, cfg: &Config, max_k: usize) -> usize {
    if cfg.batch_invariant {
        return rows.saturating_mul(invariant_splits(cfg));
    }
    rows.saturating_mul(key_splits(cfg, max_k)).min(rows.saturating_add(2 * DECODE_SIZED_SMS))
}

/// Whether the configuration's cluster decode kernel is the whole step (hip_decode_step_wide: a mask of one q head, so
/// MHA and per-q-head masks) or the search alone (hip_decode_search_wide, then the attention kernels: a mask shared by
/// the q heads of a kv head, or HIP_ATTN_FLAG_BATCH_INVARIANT). The backend compiles the one it names
/// (-DHIP_DECODE_STEP). With a shared mask the step kernel gave the attention of a kv head's q heads to its cluster's 8
/// CTAs, a quarter of the CTAs the attention kernel spreads GQA-8's 32 heads over, and its cached steps were measured
/// slower than the three kernels' (BENCHMARKS.md, optimization log, 2026-12-03), while for a mask of one q head it
/// saves two launches per step. The step kernel splits a key list by its cluster size, and whether the clusters fit
/// depends on the device, so batch-invariant decode, which splits by the configuration alone (`decode_splits`), keeps
/// the attention kernels.
pub fn decode_step_kernel(cfg: &Config) -> bool {
    cfg.mask_heads() == cfg.num_q_heads && !cfg.batch_invariant
}

/// CTAs per search of the decode tree search for `batch` sequences: the cluster kernel's `search_cluster` CTAs
/// while every search's cluster fits at about 4 CTAs per SM (fewer where the kernel's registers or shared memory
/// allow fewer), else 1 (the one-CTA kernel). A search is a chain
/// of dependent gathers: spread over a cluster it finishes several times sooner, which pays while the clusters
/// fit on the GPU at once; beyond that the one-CTA kernel keeps every SM busy without the cluster's extra CTAs
/// (each holds ~43 KB of shared memory even on steps that reuse the mask). Both compute the same masks (a branch
/// is scored by one CTA either way: the same dot products and max, then the same selection), so the choice does
/// not change the masks (where the cluster kernel is the whole step, `decode_step_kernel`, its split count and so
/// the output's rounding differ). With HIP_ATTN_FLAG_BATCH_INVARIANT the choice looks at one sequence's searches
/// only, so that batch invariance never rests on that equality.
pub fn decode_search_cluster(cfg: &Config, dev: &DeviceTraits, batch: usize) -> u32 {
    let searches = if cfg.batch_invariant { 1 } else { batch } * cfg.mask_heads();
    pick_search_cluster(dev.search_cluster, dev.sm_count.max(1), dev.cluster_per_sm, searches)
}

/// The rule of `decode_search_cluster`: `cluster` while all `searches` clusters fit at `per_sm` CTAs per SM, at
/// most 4.
fn pick_search_cluster(cluster: u32, sm_count: usize, per_sm: usize, searches: usize) -> u32 {
    if cluster > 1 && searches.saturating_mul(cluster as usize) <= per_sm.min(4) * sm_count {
        cluster
    } else {
        1
    }
}

/// Fewest key blocks per CTA of the decode SCAN worth a split of their own (each split also selects its own
/// candidates, which the merge then reads).
const SCAN_MIN_BLOCKS: usize = 256;

/// CTAs of the decode SCAN per (sequence, mask head): `units` (sequence, mask head) pairs of at most `nbmax` key
/// blocks each, on `resident` CTAs at a time. The number of waves over the splits is what a step takes, so it picks
/// the fewest splits within 5% of the best ratio, at most SCAN_MAX_SPLITS and at most one per SCAN_MIN_BLOCKS
/// blocks. The masks do not depend on it (each block's score and the exact top-Kb are the same for any split), so
/// HIP_ATTN_FLAG_BATCH_INVARIANT holds whatever it picks.
pub fn scan_splits(units: usize, nbmax: usize, resident: usize) -> usize {
    let most = nbmax.div_ceil(SCAN_MIN_BLOCKS).clamp(1, SCAN_MAX_SPLITS);
    let resident = resident.max(1);
    let cost = |s: usize| (s * units).div_ceil(resident) as f64 / s as f64;
    let best = (1..=most).map(cost).fold(f64::INFINITY, f64::min);
    (1..=most).find(|&s| cost(s) <= best * 1.05).unwrap_or(1)
}

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
    /// With HIP_ATTN_FLAG_FP8_SEARCH_SCORES (see `with_k8`): the E4M3 copy of K and its chunk maxima; k8_chunks
    /// is 0 without them.
    pub k8_offset: usize,
    pub k8_amax_offset: usize,
    pub k8_chunks: usize,
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
        Ok(PrefillWorkspace {
            slots,
            idx_offset: 0,
            cnt_offset,
            tail_blocks: 0,
            tail_offset: bytes,
            k8_offset: bytes,
            k8_amax_offset: bytes,
            k8_chunks: 0,
            bytes,
        })
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
        (w.k8_offset, w.k8_amax_offset) = (w.bytes, w.bytes);
        Ok(w)
    }

    /// The layout with the FP8-scored search's region after the rest (cuda/k8.cuh): the E4M3 copy of K, bytes
    /// [batch][max_k][num_kv_heads][head_dim] (a sequence's rows at b * max_k, so that any valid sequence fits),
    /// then the largest |k| of each chunk of K8_CHUNK keys, u32 [batch][num_kv_heads][ceil(max_k / K8_CHUNK)].
    pub fn with_k8(mut self, cfg: &Config, batch: usize, max_k: usize) -> Result<Self> {
        const W: &str = "prefill workspace";
        let rows = checked_mul(checked_mul(batch, max_k, W)?, cfg.num_kv_heads, W)?;
        self.k8_chunks = max_k.div_ceil(crate::contract::K8_CHUNK);
        self.k8_offset = self.bytes;
        self.k8_amax_offset = align_up(checked_add(self.k8_offset, checked_mul(rows, cfg.head_dim, W)?, W)?)?;
        let amax = checked_mul(checked_mul(checked_mul(batch, cfg.num_kv_heads, W)?, self.k8_chunks, W)?, 4, W)?;
        self.bytes = align_up(checked_add(self.k8_amax_offset, amax, W)?)?;
        Ok(self)
    }

    pub fn slot(cfg: &Config, cu_q_b: usize, b: usize, j: usize) -> usize {
        cu_q_b / cfg.bq + b + j
    }

    /// Byte offsets in the workspace of the mask of (slot, mask head `mh`): its block count (one i32) and its
    /// block indices (Kb i32s). The CUDA kernels index `mask_cnt` / `mask_idx` the same way (cuda/search.cuh's
    /// prefill search writes them, cuda/attn/prefill.cuh reads them).
    pub fn mask_offsets(&self, cfg: &Config, slot: usize, mh: usize) -> (usize, usize) {
        let rec = slot * cfg.mask_heads() + mh;
        (self.cnt_offset + 4 * rec, self.idx_offset + 4 * rec * cfg.kb())
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

/// Decode workspace: split-K partial outputs (f32 [batch][Hq][splits][D]) and their LSEs (f32
/// [batch][Hq][splits]), room for `decode_partials` of them; with SCAN selection, then the scan's regions ([batch][mask heads] of
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
        let rows = decode_partials(checked_mul(batch, cfg.num_q_heads, "decode workspace")?, cfg, max_k);
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
    use super::*;
    use crate::ffi::convert::{config as validate, default_config};
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

    /// The Hopper dense kernel is chosen only where it is compiled and every operand suits the bulk copies; any
    /// one condition broken gives the classic kernel, whose plan is what `new` returns.
    #[test]
    fn dense_kernel_choice() {
        let mut raw = default_config();
        (raw.num_q_heads, raw.num_kv_heads, raw.head_dim) = (32, 8, 128);
        // SAFETY: default_config leaves kernel_cache_dir NULL, which validate accepts.
        let (bf16, _) = unsafe { validate(&raw) }.unwrap();
        assert_eq!(bf16.dtype, DType::Bf16, "the default config is bf16");
        let shape = PrefillShape { batch: 3, total_q: 1000, max_seqlen_q: 600, max_seqlen_k: 700 };
        let base = PrefillPlan::new(&bf16, shape).unwrap();
        assert_eq!(base.dense_kernel, DenseKernel::Classic);
        let good = DenseOperand { addr: 0x1000, row_stride: 32 * 128, head_stride: 128 };
        let ops = [good; 4];
        let choose = |cfg: &Config, compiled: bool, total_k: usize, ops: [DenseOperand; 4], shape: PrefillShape| {
            let mut p = PrefillPlan::new(cfg, shape).unwrap();
            p.choose_dense_kernel(cfg, compiled, total_k, ops);
            p.dense_kernel
        };
        assert_eq!(choose(&bf16, true, 1200, ops, shape), DenseKernel::Classic, "a batch: NaN must not cross sequences");
        let shape = PrefillShape { batch: 1, total_q: 600, max_seqlen_q: 600, max_seqlen_k: 700 };
        assert_eq!(choose(&bf16, true, 1200, ops, shape), DenseKernel::Hopper { grid: (5, 32, 1) });
        assert_eq!(choose(&bf16, false, 1200, ops, shape), DenseKernel::Classic, "not compiled (sm_80, ...)");
        assert_eq!(choose(&bf16, true, 0, ops, shape), DenseKernel::Classic, "no keys: no tensor map");
        let empty = PrefillShape { total_q: 0, max_seqlen_q: 0, ..shape };
        assert_eq!(choose(&bf16, true, 1200, ops, empty), DenseKernel::Classic, "no queries");
        for (i, bad) in [
            DenseOperand { addr: 0x1008, ..good },
            DenseOperand { row_stride: 32 * 128 + 2, ..good },
            DenseOperand { head_stride: 132, ..good },
        ]
        .into_iter()
        .enumerate()
        {
            for at in 0..4 {
                let mut o = ops;
                o[at] = bad;
                assert_eq!(choose(&bf16, true, 1200, o, shape), DenseKernel::Classic, "operand {at} case {i}");
            }
        }
        raw.dtype = crate::ffi::types::hip_dtype::HIP_ATTN_DTYPE_F16 as u32;
        // SAFETY: as above.
        let (f16, _) = unsafe { validate(&raw) }.unwrap();
        assert_eq!(choose(&f16, true, 1200, ops, shape), DenseKernel::Classic, "f16");
        raw.dtype = default_config().dtype;
        raw.head_dim = 64;
        // SAFETY: as above.
        let (d64, _) = unsafe { validate(&raw) }.unwrap();
        assert_eq!(choose(&d64, true, 1200, ops, shape), DenseKernel::Classic, "head_dim 64");
    }

    #[test]
    fn scan_splits_fill_the_device_in_whole_waves() {
        // H200 at 2 CTAs per SM (264 resident): MHA-32 batch 1 at 128k (65534 blocks) fills one wave with 8
        // splits; a short cache gets one split per 256 blocks at most; many sequences need no split.
        assert_eq!(scan_splits(32, 65534, 264), 8);
        assert_eq!(scan_splits(32, 300, 264), 2);
        assert_eq!(scan_splits(32, 200, 264), 1);
        assert_eq!(scan_splits(16 * 32, 16384, 264), 1);
        for (units, nbmax) in [(1, 1 << 19), (8, 65534), (3, 10), (1000, 1 << 20)] {
            let s = scan_splits(units, nbmax, 264);
            assert!((1..=SCAN_MAX_SPLITS).contains(&s), "{units} {nbmax}: {s}");
        }
        let one = scan_splits(1, 1 << 19, 264);
        assert!((61..=64).contains(&one), "one sequence and head: about as many splits as allowed, not {one}");
        assert_eq!(scan_splits(1, 1 << 19, 0), 1, "no occupancy figure: one split per pair");
    }

    #[test]
    fn decode_search_spreads_over_clusters_only_while_they_fit() {
        // H200: 132 SMs, clusters of 8. MHA-32 batch 1 (32 searches) and GQA-8 up to batch 8 fit; MHA-32 batch 16
        // (512 searches) does not.
        assert_eq!(pick_search_cluster(8, 132, 4, 32), 8);
        assert_eq!(pick_search_cluster(8, 132, 4, 66), 8);
        assert_eq!(pick_search_cluster(8, 132, 4, 67), 1);
        assert_eq!(pick_search_cluster(8, 132, 4, 512), 1);
        assert_eq!(pick_search_cluster(8, 132, 4, usize::MAX), 1, "no overflow");
        // Never more than 4 per SM; fewer where the kernel fits fewer.
        assert_eq!(pick_search_cluster(8, 132, 5, 67), 1);
        assert_eq!(pick_search_cluster(8, 132, 2, 33), 8);
        assert_eq!(pick_search_cluster(8, 132, 2, 34), 1);
        assert_eq!(pick_search_cluster(8, 132, 0, 1), 1, "no occupancy figure: the one-CTA kernel");
        // No clusters (sm_80, or none fits): always the one-CTA kernel.
        assert_eq!(pick_search_cluster(1, 132, 4, 1), 1);
    }

}

#[cfg(test)]
mod plan_tests {
    use super::*;
    use crate::ffi::convert::{config as validate, default_config};

    fn cfg(edit: impl FnOnce(&mut crate::ffi::types::hip_config)) -> Config {
        let mut raw = default_config();
        (raw.num_q_heads, raw.num_kv_heads) = (8, 2);
        edit(&mut raw);
        // SAFETY: default_config leaves kernel_cache_dir NULL, which validate accepts.
        unsafe { validate(&raw) }.unwrap().0
    }

    /// HIP_ATTN_FLAG_FP8_SEARCH_SCORES: the copy of K and its chunk maxima follow the rest of the workspace (so the
    /// masks keep their offsets), sized for batch x max_seqlen_k keys, with the copy kernels' grid; none where every
    /// block is selected (no search reads it) or without the flag.
    #[test]
    fn fp8_search_workspace_holds_the_copy_of_k() {
        use crate::contract::K8_CHUNK;
        let fp8 = crate::ffi::types::HIP_ATTN_FLAG_FP8_SEARCH_SCORES;
        let shape = PrefillShape { batch: 3, total_q: 5000, max_seqlen_q: 3000, max_seqlen_k: 4000 };
        let plain = PrefillPlan::new(&cfg(|_| ()), shape).unwrap();
        assert_eq!((plain.k8_grid, plain.workspace.k8_chunks), (None, 0));
        let c = cfg(|c| (c.flags, c.prefill_scan_tail) = (fp8, 100));
        let p = PrefillPlan::new(&c, shape).unwrap();
        let (w, base) = (p.workspace, plain.workspace);
        assert_eq!((w.idx_offset, w.cnt_offset, w.tail_offset, w.slots), (0, base.cnt_offset, base.tail_offset, base.slots));
        assert!(w.k8_offset >= w.tail_offset + base.bytes - base.tail_offset);
        let chunks = 4000usize.div_ceil(K8_CHUNK);
        assert_eq!(w.k8_chunks, chunks);
        assert!(w.k8_amax_offset >= w.k8_offset + 3 * 4000 * 2 * 128);
        assert!(w.bytes >= w.k8_amax_offset + 3 * 2 * chunks * 4);
        assert_eq!((w.k8_offset % SUB_ALIGN, w.k8_amax_offset % SUB_ALIGN), (0, 0));
        assert_eq!(p.k8_grid, Some((chunks as u32, 2, 3)));
        // Every block selected: no search, no copy.
        let dense = PrefillPlan::new(&cfg(|c| (c.flags, c.k) = (fp8, 1 << 14)), shape).unwrap();
        assert!(dense.dense_only && dense.k8_grid.is_none() && dense.workspace.k8_chunks == 0);
        // A copy whose size overflows (65535 x 2^31 x 4096 x 128 bytes) is an error, not a wrap.
        let huge = PrefillShape { batch: 65535, total_q: 1, max_seqlen_q: 1, max_seqlen_k: i32::MAX as usize };
        let c = cfg(|c| (c.flags, c.num_q_heads, c.num_kv_heads) = (fp8, 4096, 4096));
        assert!(PrefillPlan::new(&cfg(|c| (c.num_q_heads, c.num_kv_heads) = (4096, 4096)), huge).is_ok());
        assert!(PrefillPlan::new(&c, huge).is_err());
    }

    fn configs() -> Vec<Config> {
        vec![
            cfg(|_| {}),
            cfg(|c| c.mask_sharing = 2),
            cfg(|c| (c.prefill_scan_tail, c.k, c.bq) = (100, 64, 16)),
            cfg(|c| (c.prefill_scan_tail, c.k, c.bk, c.head_dim) = (1, 0, 3, 64)),
            cfg(|c| (c.decode_selection, c.k, c.bk) = (1, 1000, 7)),
            cfg(|c| (c.decode_selection, c.head_dim, c.mask_sharing, c.k) = (1, 256, 2, 1)),
            cfg(|c| c.flags = crate::ffi::types::HIP_ATTN_FLAG_BATCH_INVARIANT),
        ]
    }

    const DEVICE: DeviceTraits = DeviceTraits { sm_count: 132, search_cluster: 8, cluster_per_sm: 4, scan_resident: 264 };

    /// Every region of the prefill workspace starts on SUB_ALIGN, holds what the kernels index into it, and ends
    /// inside `bytes`; the size is monotone in each shape scalar (so one query for the largest batch serves all).
    #[test]
    fn prefill_plan_regions_are_aligned_disjoint_and_in_bounds() {
        for c in configs() {
            for (batch, total_q, max_q, max_k) in [(1, 1, 1, 1), (3, 100, 70, 5000), (7, 4097, 1000, 1000)] {
                let shape = PrefillShape { batch, total_q, max_seqlen_q: max_q, max_seqlen_k: max_k };
                let p = PrefillPlan::new(&c, shape).unwrap();
                let w = p.workspace;
                let at = format!("{c:?} {shape:?}");
                for off in [w.idx_offset, w.cnt_offset, w.tail_offset, w.bytes] {
                    assert_eq!(off % SUB_ALIGN, 0, "{at}");
                }
                assert!(w.slots >= total_q / c.bq + batch, "{at}: a slot per query block of every sequence");
                assert!(w.idx_offset + w.slots * c.mask_heads() * c.kb() * 4 <= w.cnt_offset, "{at}");
                assert!(w.cnt_offset + w.slots * c.mask_heads() * 4 <= w.tail_offset, "{at}");
                let tail = batch * w.tail_blocks * c.mask_heads() * 3 * c.kb().max(1) * 8;
                assert!(w.tail_offset + tail <= w.bytes, "{at}");
                assert_eq!(w.tail_blocks > 0, c.prefill_scan_tail > 0, "{at}");
                assert_eq!(p.scan_grid.is_some(), w.tail_blocks > 0, "{at}");
                assert_eq!(p.sparse_grid.is_none(), p.dense_only, "{at}");
                assert_eq!(p.dense_only, prefill_all_dense(&c, max_k), "{at}");
                assert_eq!(p.state_ints, state_ints(&c));
                let blocks = max_q.div_ceil(c.bq) as u32;
                assert_eq!(p.search_grid, (blocks, c.mask_heads() as u32, batch as u32), "{at}");
                for bigger in [
                    PrefillShape { batch: batch + 1, ..shape },
                    PrefillShape { total_q: total_q + c.bq, ..shape },
                    PrefillShape { max_seqlen_q: max_q + c.bq, ..shape },
                ] {
                    assert!(PrefillPlan::new(&c, bigger).unwrap().workspace.bytes >= w.bytes, "{at} -> {bigger:?}");
                }
            }
        }
    }

    /// The decode workspace: aligned, disjoint regions inside `bytes`, sized for the step's split partials and
    /// (SCAN) a region per (sequence, mask head); and the same with or without a device, so the size query (no
    /// device needed) equals what a CUDA run uses.
    #[test]
    fn decode_plan_regions_are_aligned_disjoint_and_device_independent() {
        let mut seen = std::collections::BTreeSet::new();
        for c in configs() {
            for (batch, max_k) in [(1, 1), (5, 300), (64, 131072)] {
                let shape = DecodeShape { batch, max_seqlen_k: max_k };
                let p = DecodePlan::new(&c, shape, Some(&DEVICE)).unwrap();
                let w = p.workspace;
                let at = format!("{c:?} {shape:?}");
                assert_eq!(DecodePlan::new(&c, shape, None).unwrap().workspace, w, "{at}");
                let l = p.launch.unwrap();
                // (hip_decode_step_wide combines in the cluster: it writes no partials)
                let written = if matches!(l.search, DecodeSearch::Step { .. }) { 0 } else { l.splits };
                let rows = batch * c.num_q_heads * written;
                assert!(w.part_o_offset + rows * c.head_dim * 4 <= w.part_lse_offset, "{at}");
                let lse_end = w.part_lse_offset + rows * 4;
                if c.decode_selection == Selection::Scan {
                    assert!(lse_end <= w.scan_offset, "{at}");
                    let scan = batch * c.mask_heads() * scan_region_bytes(&c, max_k).unwrap();
                    assert!(w.scan_offset + scan <= w.bytes, "{at}");
                    assert_eq!(w.scan_offset % SUB_ALIGN, 0);
                } else {
                    assert!(lse_end <= w.bytes && w.scan_offset == 0, "{at}");
                }
                assert_eq!((w.part_lse_offset % SUB_ALIGN, w.bytes % SUB_ALIGN), (0, 0), "{at}");
                assert!((1..=DECODE_MAX_SPLITS).contains(&l.splits), "{at}");
                if let DecodeSearch::Step { cluster } = l.search {
                    assert_eq!((l.attn_grid, l.combine_grid), (None, None), "{at}: the step kernel attends");
                    assert_eq!(l.splits, cluster as usize, "{at}: a split per CTA of the cluster");
                } else {
                    assert_eq!(l.combine_grid.is_none(), l.splits == 1, "{at}: one split writes directly");
                    assert_eq!(l.attn_grid, Some((l.splits as u32, c.num_q_heads as u32, batch as u32)));
                }
                match l.search {
                    DecodeSearch::Scan { splits } => {
                        assert_eq!(c.decode_selection, Selection::Scan);
                        assert!((1..=SCAN_MAX_SPLITS).contains(&splits), "{at}");
                        assert_eq!(l.search_grid, (splits as u32, c.mask_heads() as u32, batch as u32));
                        assert_eq!(l.scan_merge_grid, Some((c.mask_heads() as u32, batch as u32, 1)));
                    }
                    DecodeSearch::Tree { cluster } | DecodeSearch::Step { cluster } => {
                        assert_eq!(c.decode_selection, Selection::Tree);
                        assert_eq!(cluster, decode_search_cluster(&c, &DEVICE, batch), "{at}");
                        assert_eq!(l.search_grid, (c.mask_heads() as u32 * cluster, batch as u32, 1), "{at}");
                        assert_eq!(l.scan_merge_grid, None);
                        // The step kernel wherever a cluster searches a mask of one q head (not batch-invariant); else
                        // the search alone.
                        let step = cluster > 1 && c.mask_heads() == c.num_q_heads && !c.batch_invariant;
                        assert_eq!(matches!(l.search, DecodeSearch::Step { .. }), step, "{at}");
                    }
                }
                seen.insert(format!("{:?}", l.search));
                assert!(DecodePlan::new(&c, shape, None).unwrap().launch.is_none(), "no device, no launches");
            }
        }
        for each in ["Step { cluster: 8 }", "Tree { cluster: 8 }", "Tree { cluster: 1 }"] {
            assert!(seen.contains(each), "no configuration planned {each}: {seen:?}");
        }
    }

    /// The decode workspace holds every split count the rule picks, on any device (one larger than
    /// DECODE_SIZED_SMS gets fewer splits, never an overrun), never grows when the batch or the length shrinks (an
    /// engine sizes it once for its largest step), and at a large batch, where one split per row fills the device,
    /// it holds about one partial per row instead of DECODE_MAX_SPLITS.
    #[test]
    fn decode_workspace_holds_the_splits_and_shrinks_with_the_batch() {
        let bytes = |c: &Config, batch, max_k| DecodeWorkspace::new(c, batch, max_k).unwrap().bytes;
        for c in configs()
            .into_iter()
            .chain([cfg(|c| c.k = 1 << 14), cfg(|c| c.flags = crate::ffi::types::HIP_ATTN_FLAG_BATCH_INVARIANT)])
        {
            let mut last = 0;
            for batch in 1..=300 {
                for (j, max_k) in [1, 64, 65, 700, 1 << 20].into_iter().enumerate() {
                    let at = format!("{c:?} batch {batch} max_k {max_k}");
                    let shape = DecodeShape { batch, max_seqlen_k: max_k };
                    let w = DecodeWorkspace::new(&c, batch, max_k).unwrap();
                    let rows = batch * c.num_q_heads;
                    for sms in [1, 132, DECODE_SIZED_SMS, 100_000] {
                        let s = decode_splits(&c, shape, sms);
                        assert!((1..=DECODE_MAX_SPLITS).contains(&s), "{at} sms {sms}");
                        assert!(rows * s * (c.head_dim * 4) <= w.part_lse_offset, "{at} sms {sms}: partials");
                        assert!(w.part_lse_offset + rows * s * 4 <= w.bytes, "{at} sms {sms}: lses");
                        if sms <= DECODE_SIZED_SMS && !c.batch_invariant {
                            let want = (2 * sms).div_ceil(rows).clamp(1, key_splits(&c, max_k));
                            assert_eq!(s, want, "{at} sms {sms}: the workspace never cuts the rule short");
                        }
                    }
                    if j > 0 {
                        assert!(w.bytes >= last, "{at}: shrank as max_k grew");
                    }
                    last = w.bytes;
                    if batch > 1 {
                        assert!(w.bytes >= bytes(&c, batch - 1, max_k), "{at}: shrank as the batch grew");
                    }
                }
            }
        }
        // MHA-32 at batch 256: 8192 rows, one split each on an H200; about 4 MB of partials, not 134 MB.
        let c = cfg(|c| (c.num_q_heads, c.num_kv_heads) = (32, 32));
        assert_eq!(decode_splits(&c, DecodeShape { batch: 256, max_seqlen_k: 1 << 17 }, 132), 1);
        assert!(bytes(&c, 256, 1 << 17) < 5 << 20, "{}", bytes(&c, 256, 1 << 17));
    }

    /// The decode split rule at its boundaries: two CTAs per SM over batch x q heads rows, never a chunk under 64
    /// keys, at most DECODE_MAX_SPLITS; with HIP_ATTN_FLAG_BATCH_INVARIANT, from the configuration alone.
    #[test]
    fn decode_split_rule_boundaries() {
        // Defaults: sink 4 + Kb 256 x bk 2 + window 128 + refresh 8 = 652 keys at most; 8 q heads.
        let c = cfg(|_| {});
        let splits = |batch, max_k, sms| decode_splits(&c, DecodeShape { batch, max_seqlen_k: max_k }, sms);
        assert_eq!(splits(1, 1 << 20, 132), 11, "652 keys: ceil(652 / 64) chunks, under the 33 that 132 SMs want");
        assert_eq!(splits(1, 64, 132), 1, "64 keys: one chunk");
        assert_eq!(splits(1, 65, 132), 2, "65 keys: two chunks");
        assert_eq!(splits(33, 1 << 20, 132), 1, "264 rows already give every SM two CTAs");
        assert_eq!(splits(32, 1 << 20, 132), 2, "256 rows: 264 CTAs need two splits");
        assert_eq!(splits(1, 1 << 20, 0), 1, "no SM count: one CTA per row");
        let wide = cfg(|c| c.k = 1 << 14);
        let s = decode_splits(&wide, DecodeShape { batch: 1, max_seqlen_k: 1 << 20 }, 1000);
        assert_eq!(s, DECODE_MAX_SPLITS, "capped");
        let inv = cfg(|c| c.flags = crate::ffi::types::HIP_ATTN_FLAG_BATCH_INVARIANT);
        for (batch, max_k, sms) in [(1, 1, 1), (1, 1 << 20, 132), (512, 7, 8)] {
            let s = decode_splits(&inv, DecodeShape { batch, max_seqlen_k: max_k }, sms);
            assert_eq!(s, 652usize.div_ceil(128), "batch-invariant: 128-key chunks of the most keys");
        }
        // And the search kernel: one sequence's searches decide under HIP_ATTN_FLAG_BATCH_INVARIANT.
        let dev = DeviceTraits { sm_count: 4, search_cluster: 8, cluster_per_sm: 4, scan_resident: 8 };
        assert_eq!(decode_search_cluster(&c, &dev, 1), 1, "8 searches x 8 CTAs > 4 per SM of 4 SMs");
        assert_eq!(decode_search_cluster(&cfg(|c| c.num_q_heads = 2), &dev, 1), 8);
        assert_eq!(decode_search_cluster(&cfg(|c| (c.num_q_heads, c.flags) = (2, 1)), &dev, 100), 8);
        assert_eq!(decode_search_cluster(&cfg(|c| c.num_q_heads = 2), &dev, 100), 1);
    }
}
