//! Run-call arguments: the C argument structs turned into validated descriptors. Everything a host can check
//! without touching backend memory is checked here, once, for both backends: pointers, alignment, strides,
//! extents, struct sizes and scalar ranges. Index data that lives in backend memory (cu_seqlens, seqlens_k,
//! page tables, mask state) is checked by the backend that reads it.

use crate::config::Config;
use crate::ffi::types::*;
use crate::status::{Error, Result};
use crate::tensor::{check_ptr, check_span, KvView, LseView, TensorView, BUFFER_ALIGN};

/// Upper bound of every count of a run call (tokens, lengths, batch, pages, heads of a merge): the kernels index
/// with int32 and cu_seqlens, seqlens_k and page tables are int32, so a larger count could not be addressed.
pub const MAX_TOKENS: usize = i32::MAX as usize;

fn count(field: &str, value: u32, min: usize) -> Result<usize> {
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
fn index_array(field: &'static str, addr: usize, n: usize, written: bool) -> Result<Span> {
    check_ptr(field, addr, 4)?;
    let bytes = crate::status::checked_mul(n, 4, field)?;
    let end = check_span(field, addr, bytes, || format!("{n} int32"))?;
    Ok(Span { field, start: addr, end, written, strides: (0, 0) })
}

/// A caller buffer of `bytes` (workspace, mask state): NULL, alignment and address-space checks.
fn buffer(field: &'static str, addr: usize, bytes: usize) -> Result<Buffer> {
    check_ptr(field, addr, BUFFER_ALIGN)?;
    check_span(field, addr, bytes, || format!("{bytes} bytes"))?;
    Ok(Buffer { addr, bytes })
}

fn reserved_zero(field: &str, reserved: &[u64]) -> Result<()> {
    match reserved.iter().position(|&r| r != 0) {
        Some(i) => Err(Error::arg(format!("{field}[{i}] must be 0"))),
        None => Ok(()),
    }
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
    pub fn validate(cfg: &Config, a: &hip_prefill_args) -> Result<PrefillArgs> {
        reserved_zero("reserved", &a.reserved)?;
        let batch = count("batch_size", a.batch_size, 1)?;
        let total_q = count("total_q", a.total_q, 1)?;
        let total_k = count("total_k", a.total_k, 1)?;
        let max_seqlen_q = count("max_seqlen_q", a.max_seqlen_q, 1)?;
        let max_seqlen_k = count("max_seqlen_k", a.max_seqlen_k, 1)?;
        if max_seqlen_q > total_q {
            return Err(Error::arg(format!("max_seqlen_q ({max_seqlen_q}) exceeds total_q ({total_q})")));
        }
        if max_seqlen_k > total_k {
            return Err(Error::arg(format!("max_seqlen_k ({max_seqlen_k}) exceeds total_k ({total_k})")));
        }
        if total_q > total_k {
            return Err(Error::arg(format!(
                "total_q ({total_q}) exceeds total_k ({total_k}): every sequence needs Tq <= Tk"
            )));
        }
        let (d, hq, hkv, dt) = (cfg.head_dim, cfg.num_q_heads, cfg.num_kv_heads, cfg.dtype);
        let q = TensorView::input("q", &a.q, total_q, hq, d, dt)?;
        let k = TensorView::input("k", &a.k, total_k, hkv, d, dt)?;
        let v = TensorView::input("v", &a.v, total_k, hkv, d, dt)?;
        let o = TensorView::output("o", &a.o, total_q, hq, d, dt)?;
        index_array("cu_seqlens_q", a.cu_seqlens_q as usize, batch + 1, false)?;
        index_array("cu_seqlens_k", a.cu_seqlens_k as usize, batch + 1, false)?;
        let lse = LseView::new("lse", a.lse as usize, total_q, hq)?;
        let mask_state_out = if a.mask_state_out.is_null() {
            None
        } else {
            Some(buffer("mask_state_out", a.mask_state_out as usize, crate::plan::mask_state_bytes(cfg, batch)?)?)
        };
        let args = PrefillArgs {
            batch,
            total_q,
            total_k,
            max_seqlen_q,
            max_seqlen_k,
            q,
            k,
            v,
            o,
            cu_seqlens_q: a.cu_seqlens_q as usize,
            cu_seqlens_k: a.cu_seqlens_k as usize,
            lse,
            mask_state_out,
        };
        check_aliasing(&args.spans(), PREFILL_ALIASES)?;
        Ok(args)
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
}

impl DecodeArgs {
    pub fn validate(cfg: &Config, a: &hip_decode_args) -> Result<DecodeArgs> {
        reserved_zero("reserved", &a.reserved)?;
        if a.reserved_u32 != 0 {
            return Err(Error::arg("reserved_u32 must be 0"));
        }
        let batch = count("batch_size", a.batch_size, 1)?;
        let max_seqlen_k = count("max_seqlen_k", a.max_seqlen_k, 1)?;
        let (d, hq, hkv, dt) = (cfg.head_dim, cfg.num_q_heads, cfg.num_kv_heads, cfg.dtype);
        let q = TensorView::input("q", &a.q, batch, hq, d, dt)?;
        let o = TensorView::output("o", &a.o, batch, hq, d, dt)?;
        let c = &a.kv;
        let (kv, paging) = match c.layout {
            x if x == hip_kv_layout::HIP_ATTN_KV_CONTIGUOUS as u32 => {
                let kv = KvView::new(
                    c.k as usize,
                    c.v as usize,
                    batch,
                    c.seq_stride,
                    max_seqlen_k,
                    c.token_stride,
                    hkv,
                    c.head_stride,
                    d,
                    dt,
                    false,
                )?;
                (kv, None)
            }
            x if x == hip_kv_layout::HIP_ATTN_KV_PAGED as u32 => {
                let page_size = count("kv.page_size", c.page_size, 1)?;
                let pt_stride = count("kv.page_table_stride", c.page_table_stride, 1)?;
                let num_pages = count("kv.num_pages", c.num_pages, 1)?;
                if max_seqlen_k.div_ceil(page_size) > pt_stride {
                    return Err(Error::arg(format!(
                        "kv.page_table_stride ({pt_stride}) cannot hold max_seqlen_k ({max_seqlen_k}) tokens in \
                         pages of {page_size}"
                    )));
                }
                index_array("kv.page_table", c.page_table as usize, batch * pt_stride, false)?;
                let kv = KvView::new(
                    c.k as usize,
                    c.v as usize,
                    num_pages,
                    c.seq_stride,
                    page_size,
                    c.token_stride,
                    hkv,
                    c.head_stride,
                    d,
                    dt,
                    true,
                )?;
                (kv, Some(Paging { page_size, page_table: c.page_table as usize, pt_stride, num_pages }))
            }
            v => return Err(Error::arg(format!("kv.layout ({v}) is not a hip_kv_layout value"))),
        };
        index_array("seqlens_k", a.seqlens_k as usize, batch, false)?;
        let mask_state = buffer("mask_state", a.mask_state as usize, crate::plan::mask_state_bytes(cfg, batch)?)?;
        let lse = LseView::new("lse", a.lse as usize, batch, hq)?;
        let seqlens_k = a.seqlens_k as usize;
        let args = DecodeArgs { batch, max_seqlen_k, q, kv, paging, seqlens_k, mask_state, o, lse };
        check_aliasing(&args.spans(), DECODE_ALIASES)?;
        Ok(args)
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
    pub fn validate(cfg: &Config, m: &hip_merge_args) -> Result<MergeArgs> {
        reserved_zero("reserved", &m.reserved)?;
        if m.reserved_u32 != 0 {
            return Err(Error::arg("reserved_u32 must be 0"));
        }
        let n = count("num_tokens", m.num_tokens, 1)?;
        let h = count("num_heads", m.num_heads, 1)?;
        let (d, dt) = (cfg.head_dim, cfg.dtype);
        let required = |field: &str, addr: usize| -> Result<LseView> {
            check_ptr(field, addr, 4)?;
            LseView::new(field, addr, n, h)?.ok_or_else(|| Error::null(field))
        };
        let args = MergeArgs {
            a: TensorView::input("o_a", &m.o_a, n, h, d, dt)?,
            lse_a: required("lse_a", m.lse_a as usize)?,
            b: TensorView::input("o_b", &m.o_b, n, h, d, dt)?,
            lse_b: required("lse_b", m.lse_b as usize)?,
            out: TensorView::output("o_out", &m.o_out, n, h, d, dt)?,
            lse_out: LseView::new("lse_out", m.lse_out as usize, n, h)?,
        };
        let mut spans = vec![
            Span::tensor("o_a", &args.a, false),
            Span::lse("lse_a", &args.lse_a, false),
            Span::tensor("o_b", &args.b, false),
            Span::lse("lse_b", &args.lse_b, false),
            Span::tensor("o_out", &args.out, true),
        ];
        spans.extend(args.lse_out.map(|l| Span::lse("lse_out", &l, true)));
        check_aliasing(&spans, MERGE_ALIASES)?;
        Ok(args)
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
