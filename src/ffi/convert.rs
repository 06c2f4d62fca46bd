//! The boundary: the one place where the C API's raw structs (`hip_config`, `hip_*_args`, `hip_tensor`,
//! `hip_kv_cache`) become the validated Rust types the core takes (`Config`, `PrefillArgs`, `DecodeArgs`,
//! `MergeArgs`, `TensorView`, `KvView`). Each rule here is the one documented next to its field in `types.rs`;
//! the shared ones (counts, index arrays, buffers, aliasing, tensor extents) are `crate::args` and
//! `crate::tensor` functions. Every failure names the field and its value; nothing past this module sees a C
//! encoding (an enumeration's number, a reserved field, a C string).

use super::types::*;
use crate::args::{buffer, count, index_array, DecodeArgs, KeyRange, MergeArgs, Paging, PrefillArgs, MAX_TOKENS};
use crate::config::{
    BackendKind, Config, CreateOptions, Logger, MaskSharing, Selection, MAX_BLOCK, MAX_HEADS, MAX_K,
    MAX_SINK_WINDOW, MAX_SOFTMAX_SCALE, SUPPORTED_HEAD_DIMS,
};
use crate::cuda::LogLevel;
use crate::status::{Error, Result};
use crate::tensor::{check_ptr, DType, KvView, LseView, TensorView};
use std::ffi::{c_char, c_void, CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

#[cfg(any(test, feature = "internals"))]
impl DType {
    /// The dtype of a `hip_dtype` value; None for any other number.
    pub fn from_raw(v: u32) -> Option<DType> {
        dtype(v)
    }
}

fn dtype(v: u32) -> Option<DType> {
    match v {
        x if x == hip_dtype::HIP_ATTN_DTYPE_BF16 as u32 => Some(DType::Bf16),
        x if x == hip_dtype::HIP_ATTN_DTYPE_F16 as u32 => Some(DType::F16),
        x if x == hip_dtype::HIP_ATTN_DTYPE_F32 as u32 => Some(DType::F32),
        _ => None,
    }
}

/// The C log level of a library one.
fn log_level(l: LogLevel) -> hip_log_level {
    match l {
        LogLevel::Error => hip_log_level::HIP_ATTN_LOG_ERROR,
        LogLevel::Warn => hip_log_level::HIP_ATTN_LOG_WARN,
        LogLevel::Info => hip_log_level::HIP_ATTN_LOG_INFO,
        LogLevel::Debug => hip_log_level::HIP_ATTN_LOG_DEBUG,
    }
}

/// A `Logger` that calls the caller's `log_callback` (silent without one).
fn logger(callback: hip_log_callback, user_data: *mut c_void) -> Logger {
    let Some(cb) = callback else { return Logger::silent() };
    Logger::new(move |level, message| {
        let text = crate::status::to_cstring(message);
        // SAFETY: the caller supplied this callback and user_data in hip_config and promised they stay valid
        // during hip_ctx_create, the only time a Logger exists; `text` outlives the call.
        unsafe { cb(user_data, log_level(level) as u32, text.as_ptr()) }
    })
}

/// `hip_config_default()`: docs/ALGORITHM.md defaults, CPU backend, shape fields zero (the caller must set them).
pub fn default_config() -> hip_config {
    hip_config {
        struct_size: std::mem::size_of::<hip_config>() as u32,
        dtype: hip_dtype::HIP_ATTN_DTYPE_BF16 as u32,
        head_dim: 128,
        num_q_heads: 0,
        num_kv_heads: 0,
        k: 512,
        bq: 32,
        bk: 2,
        sink: 4,
        window: 128,
        sq: 1,
        sk: 1,
        refresh: 8,
        causal: 1,
        mask_sharing: hip_mask_sharing::HIP_ATTN_MASK_PER_Q_HEAD as u32,
        backend: hip_backend::HIP_ATTN_BACKEND_CPU as u32,
        device_ordinal: 0,
        softmax_scale: 0.0,
        flags: 0,
        reserved_u32: 0,
        kernel_cache_dir: std::ptr::null(),
        log_callback: None,
        log_user_data: std::ptr::null_mut(),
        decode_selection: hip_selection::HIP_ATTN_SELECT_TREE as u32,
        prefill_scan_tail: 0,
        reserved: [0; 7],
    }
}

fn bounded(field: &str, value: u32, min: usize, max: usize) -> Result<usize> {
    let v = value as usize;
    if v < min || v > max {
        return Err(Error::config(format!("{field} ({value}) must be between {min} and {max}")));
    }
    Ok(v)
}

/// Validates every field of a caller's configuration.
///
/// # Safety
/// `raw.kernel_cache_dir` is NULL or a NUL-terminated string valid for this call.
pub unsafe fn config(raw: &hip_config) -> Result<(Config, CreateOptions)> {
    let dtype = dtype(raw.dtype)
        .ok_or_else(|| Error::config(format!("dtype ({}) is not a hip_dtype value", raw.dtype)))?;
    let head_dim = raw.head_dim as usize;
    if !SUPPORTED_HEAD_DIMS.contains(&head_dim) {
        return Err(Error::unsupported(format!("head_dim ({head_dim}) is not supported: use 64, 128 or 256")));
    }
    let num_q_heads = bounded("num_q_heads", raw.num_q_heads, 1, MAX_HEADS)?;
    let num_kv_heads = bounded("num_kv_heads", raw.num_kv_heads, 1, MAX_HEADS)?;
    if num_q_heads % num_kv_heads != 0 {
        return Err(Error::config(format!(
            "num_q_heads ({num_q_heads}) is not a multiple of num_kv_heads ({num_kv_heads})"
        )));
    }
    let k = bounded("k", raw.k, 0, MAX_K)?;
    let bq = bounded("bq", raw.bq, 1, MAX_BLOCK)?;
    let bk = bounded("bk", raw.bk, 1, MAX_BLOCK)?;
    let sq = bounded("sq", raw.sq, 1, MAX_BLOCK)?;
    let sk = bounded("sk", raw.sk, 1, MAX_BLOCK)?;
    let sink = bounded("sink", raw.sink, 0, MAX_SINK_WINDOW)?;
    let window = bounded("window", raw.window, 0, MAX_SINK_WINDOW)?;
    let refresh = bounded("refresh", raw.refresh, 1, u32::MAX as usize)?;
    let causal = match raw.causal {
        0 => false,
        1 => true,
        v => return Err(Error::config(format!("causal ({v}) must be 0 or 1"))),
    };
    let sharing = match raw.mask_sharing {
        x if x == hip_mask_sharing::HIP_ATTN_MASK_PER_Q_HEAD as u32 => MaskSharing::PerQHead,
        x if x == hip_mask_sharing::HIP_ATTN_MASK_PER_KV_HEAD as u32 => MaskSharing::PerKvHead,
        v => return Err(Error::config(format!("mask_sharing ({v}) is not a hip_mask_sharing value"))),
    };
    let backend = match raw.backend {
        x if x == hip_backend::HIP_ATTN_BACKEND_CPU as u32 => BackendKind::Cpu,
        x if x == hip_backend::HIP_ATTN_BACKEND_CUDA as u32 => {
            if raw.device_ordinal < 0 {
                return Err(Error::config(format!("device_ordinal ({}) is negative", raw.device_ordinal)));
            }
            BackendKind::Cuda { ordinal: raw.device_ordinal }
        }
        v => return Err(Error::config(format!("backend ({v}) is not a hip_backend value"))),
    };
    // -0.0 == 0.0: a computed zero of either sign asks for the default, as `scale == 0` would in C.
    let scale = match raw.softmax_scale {
        0.0 => 1.0 / (head_dim as f32).sqrt(),
        s if s > 0.0 && s <= MAX_SOFTMAX_SCALE => s,
        s => {
            return Err(Error::config(format!(
                "softmax_scale ({s}) must be 0 (the default, 1/sqrt(head_dim)) or a positive finite number at most \
                 {MAX_SOFTMAX_SCALE}"
            )));
        }
    };
    // A query must attend at least one key, or its softmax is undefined.
    let attends_nothing = k == 0 && sink == 0 && (window == 0 || !causal);
    if attends_nothing {
        return Err(Error::config(if causal {
            "k, sink and window are all 0: queries would attend no key"
        } else {
            "k and sink are both 0 and a non-causal context has no local window: queries would attend no key"
        }));
    }
    let decode_selection = match raw.decode_selection {
        x if x == hip_selection::HIP_ATTN_SELECT_TREE as u32 => Selection::Tree,
        x if x == hip_selection::HIP_ATTN_SELECT_SCAN as u32 => Selection::Scan,
        v => return Err(Error::config(format!("decode_selection ({v}) is not a hip_selection value"))),
    };
    let prefill_scan_tail = bounded("prefill_scan_tail", raw.prefill_scan_tail, 0, i32::MAX as usize)?;
    let unknown = raw.flags & !(HIP_ATTN_FLAG_BATCH_INVARIANT | HIP_ATTN_FLAG_FP8_SEARCH_SCORES);
    if unknown != 0 {
        return Err(Error::config(format!("flags (0x{:x}) has unknown bits 0x{unknown:x}", raw.flags)));
    }
    if raw.reserved_u32 != 0 {
        return Err(Error::config("reserved_u32 must be 0"));
    }
    if let Some(i) = raw.reserved.iter().position(|&r| r != 0) {
        return Err(Error::config(format!("reserved[{i}] must be 0")));
    }
    let kernel_cache_dir = if raw.kernel_cache_dir.is_null() {
        None
    } else {
        // SAFETY: non-NULL, and the caller promises a NUL-terminated string valid for this call.
        let bytes = unsafe { CStr::from_ptr(raw.kernel_cache_dir as *const c_char) }.to_bytes();
        if bytes.is_empty() {
            return Err(Error::config("kernel_cache_dir is an empty string: pass NULL for the default"));
        }
        Some(PathBuf::from(OsStr::from_bytes(bytes)))
    };
    let cfg = Config {
        dtype,
        head_dim,
        num_q_heads,
        num_kv_heads,
        k,
        bq,
        bk,
        sink,
        window,
        sq,
        sk,
        refresh,
        causal,
        sharing,
        backend,
        scale,
        batch_invariant: raw.flags & HIP_ATTN_FLAG_BATCH_INVARIANT != 0,
        fp8_search: raw.flags & HIP_ATTN_FLAG_FP8_SEARCH_SCORES != 0,
        decode_selection,
        prefill_scan_tail,
    };
    let log = logger(raw.log_callback, raw.log_user_data);
    Ok((cfg, CreateOptions { kernel_cache_dir, log }))
}


fn reserved_zero(field: &str, reserved: &[u64]) -> Result<()> {
    match reserved.iter().position(|&r| r != 0) {
        Some(i) => Err(Error::arg(format!("{field}[{i}] must be 0"))),
        None => Ok(()),
    }
}

/// A read-only tensor argument.
fn input(field: &str, t: &hip_tensor, rows: usize, heads: usize, head_dim: usize, dtype: DType) -> Result<TensorView> {
    TensorView::new(field, t.data as usize, t.token_stride, t.head_stride, rows, heads, head_dim, dtype, false)
}

/// A written tensor argument (its rows may not overlap).
fn output(
    field: &str,
    t: &hip_tensor_mut,
    rows: usize,
    heads: usize,
    head_dim: usize,
    dtype: DType,
) -> Result<TensorView> {
    TensorView::new(field, t.data as usize, t.token_stride, t.head_stride, rows, heads, head_dim, dtype, true)
}

/// Reads `hip_prefill`'s arguments.
pub fn prefill_args(cfg: &Config, a: &hip_prefill_args) -> Result<PrefillArgs> {
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
    let q = input("q", &a.q, total_q, hq, d, dt)?;
    let k = input("k", &a.k, total_k, hkv, d, dt)?;
    let v = input("v", &a.v, total_k, hkv, d, dt)?;
    let o = output("o", &a.o, total_q, hq, d, dt)?;
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
    args.check_aliasing()?;
    Ok(args)
}

/// Reads `hip_decode_step`'s arguments.
pub fn decode_args(cfg: &Config, a: &hip_decode_args) -> Result<DecodeArgs> {
    reserved_zero("reserved", &a.reserved)?;
    if a.reserved_u32 != 0 {
        return Err(Error::arg("reserved_u32 must be 0"));
    }
    let batch = count("batch_size", a.batch_size, 1)?;
    let max_seqlen_k = count("max_seqlen_k", a.max_seqlen_k, 1)?;
    let (d, hq, hkv, dt) = (cfg.head_dim, cfg.num_q_heads, cfg.num_kv_heads, cfg.dtype);
    let q = input("q", &a.q, batch, hq, d, dt)?;
    let o = output("o", &a.o, batch, hq, d, dt)?;
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
    let range = key_range(cfg, a, max_seqlen_k, lse.is_some())?;
    let args = DecodeArgs { batch, max_seqlen_k, q, kv, paging, seqlens_k, mask_state, o, lse, range };
    args.check_aliasing()?;
    Ok(args)
}

/// Reads the sharding fields of `hip_decode_args` (docs/ALGORITHM.md, "Sharded sequences").
fn key_range(cfg: &Config, a: &hip_decode_args, max_seqlen_k: usize, has_lse: bool) -> Result<KeyRange> {
    let unknown = a.shard_flags & !HIP_ATTN_SHARD_NOT_LAST;
    if unknown != 0 {
        return Err(Error::arg(format!("shard_flags (0x{:x}) has unknown bits 0x{unknown:x}", a.shard_flags)));
    }
    let offset = a.key_offset as usize;
    if offset > 0 && offset < cfg.sink {
        return Err(Error::arg(format!(
            "key_offset ({offset}) falls inside the sink tokens [0, {}): the shard that starts the sequence must \
             hold every sink token, so another shard starts at 0 or at or after sink",
            cfg.sink
        )));
    }
    if offset + max_seqlen_k > MAX_TOKENS {
        return Err(Error::arg(format!(
            "key_offset ({offset}) + max_seqlen_k ({max_seqlen_k}) exceeds {MAX_TOKENS}: global positions are int32"
        )));
    }
    let range = KeyRange { offset, not_last: a.shard_flags & HIP_ATTN_SHARD_NOT_LAST != 0 };
    if range.is_shard() && !has_lse {
        return Err(Error::new(
            crate::status::hip_status::HIP_ATTN_STATUS_NULL_POINTER,
            format!(
                "lse is NULL but key_offset ({offset}) and shard_flags (0x{:x}) describe one shard of a sequence, \
                 whose partial output merges with the others only through its LSE",
                a.shard_flags
            ),
        ));
    }
    Ok(range)
}

/// Reads `hip_merge_states`'s arguments.
pub fn merge_args(cfg: &Config, m: &hip_merge_args) -> Result<MergeArgs> {
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
        a: input("o_a", &m.o_a, n, h, d, dt)?,
        lse_a: required("lse_a", m.lse_a as usize)?,
        b: input("o_b", &m.o_b, n, h, d, dt)?,
        lse_b: required("lse_b", m.lse_b as usize)?,
        out: output("o_out", &m.o_out, n, h, d, dt)?,
        lse_out: LseView::new("lse_out", m.lse_out as usize, n, h)?,
    };
    args.check_aliasing()?;
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Result;
    fn scale_of(s: f32) -> Result<f32> {
        let mut raw = default_config();
        (raw.num_q_heads, raw.num_kv_heads, raw.head_dim, raw.softmax_scale) = (4, 4, 64, s);
        // SAFETY: default_config leaves kernel_cache_dir NULL.
        unsafe { config(&raw) }.map(|(c, _)| c.scale)
    }

    #[test]
    fn softmax_scale_zero_of_either_sign_is_the_default_and_the_cap_is_inclusive() {
        assert_eq!(scale_of(0.0).unwrap(), 0.125);
        assert_eq!(scale_of(-0.0).unwrap(), 0.125);
        assert_eq!(scale_of(MAX_SOFTMAX_SCALE).unwrap(), MAX_SOFTMAX_SCALE);
        assert_eq!(scale_of(f32::MIN_POSITIVE / 2.0).unwrap(), f32::MIN_POSITIVE / 2.0, "a subnormal scale is valid");
        for bad in [-1.0, -f32::MIN_POSITIVE, f32::NAN, -f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 65536.01, 1e30] {
            let e = scale_of(bad).unwrap_err();
            assert_eq!(e.status, crate::status::hip_status::HIP_ATTN_STATUS_INVALID_CONFIG, "{bad}");
            assert!(e.message.contains("softmax_scale") && e.message.contains("65536"), "{bad}: {}", e.message);
        }
    }
}
