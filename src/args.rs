//! Run-call arguments as validated descriptors, and the rules shared by every entry point: count ranges, index
//! arrays and caller buffers, and the aliasing rule. The C shell (`crate::ffi::convert`) reads the C argument
//! structs through these rules, once, for both backends: pointers, alignment, strides, extents and scalar ranges.
//! Index data that lives in backend memory (cu_seqlens, seqlens_k, page tables, mask state) is checked by the
//! backend that reads it.

use crate::status::{Error, Result};
use crate::tensor::{check_ptr, check_span, KvView, LseView, TensorView, BUFFER_ALIGN};

/// Upper bound of every count of a run call (tokens, lengths, batch, pages, heads of a merge): the kernels index
/// with int32 and cu_seqlens, seqlens_k and page tables are int32, so a larger count could not be addressed.
pub const MAX_TOKENS: usize = i32::MAX as usize;

/// A count of a run call (or of a size query) as usize, between `min` and [`MAX_TOKENS`].
pub fn count(field: &str, value: u32, min: usize) -> Result<usize> {
    let v = value as usize;
    if v < min || v > MAX_TOKENS {
        return Err(Error::arg(format!("{field} ({value}) must be between {min} and {MAX_TOKENS}")));
    }
    Ok(v)
}

/// The byte range of one argument of a run call, for the aliasing rule: an output (or the workspace) may share
/// no byte with any other argument, except the exact aliases an entry point allows. Byte ranges are compared,
/// not the elements a strided view touches, so two views that interleave without sharing an element still count
/// as overlapping (a conservative test, documented in the header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub field: &'static str,
    pub start: usize,
    pub end: usize,
    pub written: bool,
    /// (token stride, head stride) of a tensor view; two views of the same shape are the same view when their
    /// start and strides agree.
    pub strides: (usize, usize),
}

impl Span {
    fn tensor(field: &'static str, t: &TensorView, written: bool) -> Span {
        let strides = (t.row_stride, t.head_stride);
        Span { field, start: t.addr, end: t.addr + t.extent_bytes(), written, strides }
    }
    fn buffer(field: &'static str, b: Buffer, written: bool) -> Span {
        Span { field, start: b.addr, end: b.addr + b.bytes, written, strides: (0, 0) }
    }
    fn lse(field: &'static str, l: &LseView, written: bool) -> Span {
        Span { field, start: l.addr, end: l.addr + l.bytes(), written, strides: (0, 0) }
    }
    fn overlaps(&self, o: &Span) -> bool {
        self.start < o.end && o.start < self.end
    }
}

/// Rejects any overlap of a written span with another span, except the pairs in `allowed` when they are the
/// same view exactly (same start, end and strides).
fn check_aliasing(spans: &[Span], allowed: &[(&str, &str)]) -> Result<()> {
    for (i, a) in spans.iter().enumerate() {
        for b in &spans[i + 1..] {
            if !(a.written || b.written) || !a.overlaps(b) {
                continue;
            }
            let pair =
                allowed.iter().find(|(x, y)| (*x == a.field && *y == b.field) || (*x == b.field && *y == a.field));
            if pair.is_some() && a.start == b.start && a.end == b.end && a.strides == b.strides {
                continue;
            }
            let (w, r) = if a.written { (a, b) } else { (b, a) };
            let rule = match pair {
                Some(_) => format!(
                    "{} may be {} itself (the same data pointer and strides), but may not overlap it otherwise",
                    w.field, r.field
                ),
                None => "an output may not share memory with an input, another output or the workspace".into(),
            };
            return Err(Error::arg(format!(
                "{} (0x{:x} to 0x{:x}) overlaps {} (0x{:x} to 0x{:x}): {rule}",
                w.field, w.start, w.end, r.field, r.start, r.end
            )));
        }
    }
    Ok(())
}

/// An int32 index array of `n` entries in backend memory: NULL, alignment and address-space checks.
pub fn index_array(field: &'static str, addr: usize, n: usize, written: bool) -> Result<Span> {
    check_ptr(field, addr, 4)?;
    let bytes = crate::status::checked_mul(n, 4, field)?;
    let end = check_span(field, addr, bytes, || format!("{n} int32"))?;
    Ok(Span { field, start: addr, end, written, strides: (0, 0) })
}

/// A caller buffer of `bytes` (workspace, mask state): NULL, alignment and address-space checks.
pub fn buffer(field: &'static str, addr: usize, bytes: usize) -> Result<Buffer> {
    check_ptr(field, addr, BUFFER_ALIGN)?;
    check_span(field, addr, bytes, || format!("{bytes} bytes"))?;
    Ok(Buffer { addr, bytes })
}

/// A caller buffer in backend memory (workspace, mask state, index arrays).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buffer {
    pub addr: usize,
    pub bytes: usize,
}

#[derive(Clone, Copy, Debug)]
pub struct PrefillArgs {
    pub batch: usize,
    pub total_q: usize,
    pub total_k: usize,
    pub max_seqlen_q: usize,
    pub max_seqlen_k: usize,
    pub q: TensorView,
    pub k: TensorView,
    pub v: TensorView,
    pub o: TensorView,
    pub cu_seqlens_q: usize,
    pub cu_seqlens_k: usize,
    pub lse: Option<LseView>,
    pub mask_state_out: Option<Buffer>,
}

impl PrefillArgs {
    pub fn shape(&self) -> crate::plan::PrefillShape {
        crate::plan::PrefillShape {
            batch: self.batch,
            total_q: self.total_q,
            max_seqlen_q: self.max_seqlen_q,
            max_seqlen_k: self.max_seqlen_k,
        }
    }

    /// The aliasing rule of `hip_prefill`.
    pub fn check_aliasing(&self) -> Result<()> {
        check_aliasing(&self.spans(), PREFILL_ALIASES)
    }

    /// Every argument's byte range (the workspace aside).
    pub fn spans(&self) -> Vec<Span> {
        let cu = |field, addr: usize| Span {
            field,
            start: addr,
            end: addr + 4 * (self.batch + 1),
            written: false,
            strides: (0, 0),
        };
        let mut spans = vec![
            Span::tensor("q", &self.q, false),
            Span::tensor("k", &self.k, false),
            Span::tensor("v", &self.v, false),
            Span::tensor("o", &self.o, true),
            cu("cu_seqlens_q", self.cu_seqlens_q),
            cu("cu_seqlens_k", self.cu_seqlens_k),
        ];
        spans.extend(self.lse.map(|l| Span::lse("lse", &l, true)));
        spans.extend(self.mask_state_out.map(|b| Span::buffer("mask_state_out", b, true)));
        spans
    }
}

/// The exact aliases `hip_prefill` allows: o may be q itself. Safe on the CPU backend (a query row is read before
/// its output row is written, and no later row reads it) and on CUDA (the search, the only kernel that reads
/// queries of other rows, runs to completion before the attention kernels start; each attention CTA stages its
/// own query rows before it writes the same rows).
const PREFILL_ALIASES: &[(&str, &str)] = &[("o", "q")];
/// `hip_decode_step` allows none: on CUDA the attention kernel (a programmatic dependent launch) may write an
/// output row while the search kernel still reads the queries of the whole GQA group.
const DECODE_ALIASES: &[(&str, &str)] = &[];
/// `hip_merge_states`: an output may be either input of its kind itself; every output row is computed from fully
/// read input rows of the same (token, head) on both backends.
const MERGE_ALIASES: &[(&str, &str)] =
    &[("o_out", "o_a"), ("o_out", "o_b"), ("lse_out", "lse_a"), ("lse_out", "lse_b")];

#[derive(Clone, Copy, Debug)]
pub struct Paging {
    pub page_size: usize,
    pub page_table: usize,
    pub pt_stride: usize,
    pub num_pages: usize,
}

/// The part of a sequence a decode call's caches hold (docs/ALGORITHM.md, "Sharded sequences"). The default is
/// the whole sequence: an unsharded call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyRange {
    /// Global position of cache token 0; 0 or at least the configured sink.
    pub offset: usize,
    /// The range ends before the sequence's last token (`HIP_ATTN_SHARD_NOT_LAST`).
    pub not_last: bool,
}

impl KeyRange {
    /// Whether this is one shard of a longer sequence rather than the whole of it.
    pub fn is_shard(&self) -> bool {
        self.offset > 0 || self.not_last
    }
}

#[derive(Clone, Copy, Debug)]
pub struct DecodeArgs {
    pub batch: usize,
    pub max_seqlen_k: usize,
    pub q: TensorView,
    pub kv: KvView,
    pub paging: Option<Paging>,
    pub seqlens_k: usize,
    pub mask_state: Buffer,
    pub o: TensorView,
    pub lse: Option<LseView>,
    pub range: KeyRange,
}

impl DecodeArgs {
    pub fn shape(&self) -> crate::plan::DecodeShape {
        crate::plan::DecodeShape { batch: self.batch, max_seqlen_k: self.max_seqlen_k }
    }

    /// The aliasing rule of `hip_decode_step`.
    pub fn check_aliasing(&self) -> Result<()> {
        check_aliasing(&self.spans(), DECODE_ALIASES)
    }

    /// Every argument's byte range (the workspace aside). The mask state is read and written.
    pub fn spans(&self) -> Vec<Span> {
        let kv_bytes = self.kv.extent_bytes();
        let strides = (self.kv.token_stride, self.kv.head_stride);
        let mut spans = vec![
            Span::tensor("q", &self.q, false),
            Span { field: "kv.k", start: self.kv.k, end: self.kv.k + kv_bytes, written: false, strides },
            Span { field: "kv.v", start: self.kv.v, end: self.kv.v + kv_bytes, written: false, strides },
            Span::buffer("seqlens_k", Buffer { addr: self.seqlens_k, bytes: 4 * self.batch }, false),
            Span::buffer("mask_state", self.mask_state, true),
            Span::tensor("o", &self.o, true),
        ];
        if let Some(p) = self.paging {
            let end = p.page_table + 4 * self.batch * p.pt_stride;
            spans.push(Span { field: "kv.page_table", start: p.page_table, end, written: false, strides: (0, 0) });
        }
        spans.extend(self.lse.map(|l| Span::lse("lse", &l, true)));
        spans
    }
}

#[derive(Clone, Copy, Debug)]
pub struct MergeArgs {
    pub a: TensorView,
    pub lse_a: LseView,
    pub b: TensorView,
    pub lse_b: LseView,
    pub out: TensorView,
    pub lse_out: Option<LseView>,
}

impl MergeArgs {
    /// Every argument's byte range.
    pub fn spans(&self) -> Vec<Span> {
        let mut spans = vec![
            Span::tensor("o_a", &self.a, false),
            Span::lse("lse_a", &self.lse_a, false),
            Span::tensor("o_b", &self.b, false),
            Span::lse("lse_b", &self.lse_b, false),
            Span::tensor("o_out", &self.out, true),
        ];
        spans.extend(self.lse_out.map(|l| Span::lse("lse_out", &l, true)));
        spans
    }

    /// The aliasing rule of `hip_merge_states`.
    pub fn check_aliasing(&self) -> Result<()> {
        check_aliasing(&self.spans(), MERGE_ALIASES)
    }
}

/// Checks a caller's workspace against the size a backend needs, and that the part of it a call uses (its first
/// `needed` bytes) overlaps none of the call's `spans`.
pub fn check_workspace(addr: usize, bytes: usize, needed: usize, spans: &[Span]) -> Result<Buffer> {
    if bytes < needed {
        return Err(Error::new(
            crate::status::hip_status::HIP_ATTN_STATUS_WORKSPACE_TOO_SMALL,
            format!("workspace_bytes ({bytes}) is smaller than the {needed} bytes these arguments need"),
        ));
    }
    if needed > 0 {
        buffer("workspace", addr, needed)?;
        let used = Span { field: "workspace", start: addr, end: addr + needed, written: true, strides: (0, 0) };
        for s in spans {
            // The arguments were checked against each other by `validate`; only the workspace is new here.
            check_aliasing(&[used, *s], &[])?;
        }
    }
    Ok(Buffer { addr, bytes })
}
