//! Run-call arguments: the C argument structs turned into validated descriptors. Everything a host can check
//! without touching backend memory is checked here, once, for both backends: pointers, alignment, strides,
//! extents, struct sizes and scalar ranges. Index data that lives in backend memory (cu_seqlens, seqlens_k,
//! page tables, mask state) is checked by the backend that reads it.

use crate::config::Config;
use crate::ffi::types::*;
use crate::status::{Error, Result};
use crate::tensor::{check_ptr, KvView, LseView, TensorView, BUFFER_ALIGN};

/// Upper bound of any token count, so that i32 index data and 64-bit offsets cannot overflow.
pub const MAX_TOKENS: usize = i32::MAX as usize;

fn count(field: &str, value: u32, min: usize) -> Result<usize> {
    let v = value as usize;
    if v < min {
        return Err(Error::arg(format!("{field} ({value}) must be at least {min}")));
    }
    if v > MAX_TOKENS {
        return Err(Error::arg(format!("{field} ({value}) exceeds {MAX_TOKENS}")));
    }
    Ok(v)
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
        check_ptr("cu_seqlens_q", a.cu_seqlens_q as usize, 4)?;
        check_ptr("cu_seqlens_k", a.cu_seqlens_k as usize, 4)?;
        let lse = LseView::new("lse", a.lse as usize, total_q, hq)?;
        let mask_state_out = if a.mask_state_out.is_null() {
            None
        } else {
            check_ptr("mask_state_out", a.mask_state_out as usize, BUFFER_ALIGN)?;
            let bytes = crate::plan::mask_state_bytes(cfg, batch)?;
            Some(Buffer { addr: a.mask_state_out as usize, bytes })
        };
        Ok(PrefillArgs {
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
        })
    }
}

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
                )?;
                (kv, None)
            }
            x if x == hip_kv_layout::HIP_ATTN_KV_PAGED as u32 => {
                let page_size = count("kv.page_size", c.page_size, 1)?;
                let pt_stride = count("kv.page_table_stride", c.page_table_stride, 1)?;
                let num_pages = count("kv.num_pages", c.num_pages, 1)?;
                check_ptr("kv.page_table", c.page_table as usize, 4)?;
                if max_seqlen_k.div_ceil(page_size) > pt_stride {
                    return Err(Error::arg(format!(
                        "kv.page_table_stride ({pt_stride}) cannot hold max_seqlen_k ({max_seqlen_k}) tokens in \
                         pages of {page_size}"
                    )));
                }
                crate::status::checked_mul(batch, pt_stride, "kv.page_table")?;
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
                )?;
                (kv, Some(Paging { page_size, page_table: c.page_table as usize, pt_stride, num_pages }))
            }
            v => return Err(Error::arg(format!("kv.layout ({v}) is not a hip_kv_layout value"))),
        };
        check_ptr("seqlens_k", a.seqlens_k as usize, 4)?;
        check_ptr("mask_state", a.mask_state as usize, BUFFER_ALIGN)?;
        let mask_state = Buffer { addr: a.mask_state as usize, bytes: crate::plan::mask_state_bytes(cfg, batch)? };
        let lse = LseView::new("lse", a.lse as usize, batch, hq)?;
        Ok(DecodeArgs { batch, max_seqlen_k, q, kv, paging, seqlens_k: a.seqlens_k as usize, mask_state, o, lse })
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
        Ok(MergeArgs {
            a: TensorView::input("o_a", &m.o_a, n, h, d, dt)?,
            lse_a: required("lse_a", m.lse_a as usize)?,
            b: TensorView::input("o_b", &m.o_b, n, h, d, dt)?,
            lse_b: required("lse_b", m.lse_b as usize)?,
            out: TensorView::output("o_out", &m.o_out, n, h, d, dt)?,
            lse_out: LseView::new("lse_out", m.lse_out as usize, n, h)?,
        })
    }
}

/// Checks a caller's workspace against the size a backend needs.
pub fn check_workspace(addr: usize, bytes: usize, needed: usize) -> Result<Buffer> {
    if bytes < needed {
        return Err(Error::new(
            crate::status::hip_status::HIP_ATTN_STATUS_WORKSPACE_TOO_SMALL,
            format!("workspace_bytes ({bytes}) is smaller than the {needed} bytes these arguments need"),
        ));
    }
    if needed > 0 {
        check_ptr("workspace", addr, BUFFER_ALIGN)?;
    }
    Ok(Buffer { addr, bytes })
}
