//! Validated configuration: the only place that turns a caller's `hip_config` into numbers the rest of the
//! library may trust. Every rule gives a message naming the field and its value.

use crate::ffi::types::*;
use crate::status::{Error, Result};
use crate::tensor::DType;
use std::ffi::{c_char, c_void, CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// Head dimensions every backend supports.
pub const SUPPORTED_HEAD_DIMS: [usize; 3] = [64, 128, 256];
/// Upper bounds that keep every size computation far from overflow; not performance limits. Each is written in
/// the header next to its field (tests/caps.rs checks that), and a value above it is refused with a message that
/// states it.
/// num_q_heads, num_kv_heads: 32x the most heads of any published model; keeps batch x heads x Kb products of the
/// workspace sizes, and the CUDA grids' heads dimension (at most 65535), in range.
pub const MAX_HEADS: usize = 1 << 12;
/// k: 2^20 keys; a mask record holds ceil(k / bk) int32 block indices per head, which must stay small.
pub const MAX_K: usize = 1 << 20;
/// bq, bk, sq, sk: block sizes and sampling strides; the kernels hold a block's rows in shared memory and index
/// them with int32.
pub const MAX_BLOCK: usize = 1 << 12;
/// sink, window: 2^30 tokens: longer than any context a model runs with (either may exceed the sequence), and
/// bounded so that sink + window cannot overflow 32 bits.
pub const MAX_SINK_WINDOW: usize = 1 << 30;
/// softmax_scale: a larger scale is a unit or sign mistake (the default 1/sqrt(head_dim) is at most 0.125, and
/// temperature-scaled models stay below 100). Up to it, no logit of f16 inputs can overflow f32
/// (|q.k| <= 256 * 65504^2 ~ 1.1e12), nor can scale * log2(e), which the CUDA kernels fold into the queries.
pub const MAX_SOFTMAX_SCALE: f32 = 65536.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskSharing {
    PerQHead,
    PerKvHead,
}

/// How a search selects key blocks (docs/ALGORITHM.md, "Selection modes").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection {
    Tree,
    Scan,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    Cpu,
    Cuda { ordinal: i32 },
}

/// A configuration that passed validation. Immutable for the life of a context.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub dtype: DType,
    pub head_dim: usize,
    pub num_q_heads: usize,
    pub num_kv_heads: usize,
    pub k: usize,
    pub bq: usize,
    pub bk: usize,
    pub sink: usize,
    pub window: usize,
    pub sq: usize,
    pub sk: usize,
    pub refresh: usize,
    pub causal: bool,
    pub sharing: MaskSharing,
    pub backend: BackendKind,
    /// Resolved softmax scale (never 0).
    pub scale: f32,
    /// `HIP_ATTN_FLAG_BATCH_INVARIANT`: decode work is split by the configuration alone.
    pub batch_invariant: bool,
    /// Selection of a decode step that searches.
    pub decode_selection: Selection,
    /// Prefill query blocks holding any of a sequence's last `prefill_scan_tail` queries select by SCAN.
    pub prefill_scan_tail: usize,
}

impl Config {
    /// Key blocks selected per query block: Kb = ceil(k / bk).
    pub fn kb(&self) -> usize {
        self.k.div_ceil(self.bk)
    }
    /// Query heads per kv head.
    pub fn group(&self) -> usize {
        self.num_q_heads / self.num_kv_heads
    }
    /// Heads that own a mask: q heads, or kv heads when one search serves a GQA group.
    pub fn mask_heads(&self) -> usize {
        match self.sharing {
            MaskSharing::PerQHead => self.num_q_heads,
            MaskSharing::PerKvHead => self.num_kv_heads,
        }
    }
    /// The q heads whose queries score for mask head `mh`, and the kv head they read.
    pub fn mask_head_q_heads(&self, mh: usize) -> std::ops::Range<usize> {
        match self.sharing {
            MaskSharing::PerQHead => mh..mh + 1,
            MaskSharing::PerKvHead => mh * self.group()..(mh + 1) * self.group(),
        }
    }
    /// The mask head that q head `h` uses.
    pub fn mask_head_of(&self, h: usize) -> usize {
        match self.sharing {
            MaskSharing::PerQHead => h,
            MaskSharing::PerKvHead => h / self.group(),
        }
    }
    /// The kv head that q head `h` reads.
    pub fn kv_head_of(&self, h: usize) -> usize {
        h / self.group()
    }
    /// The selection of prefill query block [i0, i1) of a sequence of `tq` queries: SCAN when the block holds
    /// any of the last `prefill_scan_tail` queries, TREE otherwise.
    pub fn prefill_selection(&self, i1: usize, tq: usize) -> Selection {
        if self.prefill_scan_tail > 0 && i1 + self.prefill_scan_tail > tq {
            Selection::Scan
        } else {
            Selection::Tree
        }
    }
}

/// What `hip_ctx_create` needs besides the configuration; used only while the context is created.
pub struct CreateOptions {
    pub kernel_cache_dir: Option<PathBuf>,
    pub log: Logger,
}

/// The caller's log callback, if any. Only used on the thread that creates the context.
#[derive(Clone, Copy)]
pub struct Logger {
    callback: hip_log_callback,
    user_data: *mut c_void,
}

impl Logger {
    pub fn silent() -> Self {
        Logger { callback: None, user_data: std::ptr::null_mut() }
    }
    pub fn log(&self, level: hip_log_level, message: &str) {
        if let Some(cb) = self.callback {
            let text = crate::status::to_cstring(message);
            // SAFETY: the caller supplied this callback and user_data in hip_config and promised they stay valid
            // during hip_ctx_create, the only time a Logger exists; `text` outlives the call.
            unsafe { cb(self.user_data, level as u32, text.as_ptr()) }
        }
    }
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
pub unsafe fn validate(raw: &hip_config) -> Result<(Config, CreateOptions)> {
    let dtype = DType::from_raw(raw.dtype)
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
    let unknown = raw.flags & !HIP_ATTN_FLAG_BATCH_INVARIANT;
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
        decode_selection,
        prefill_scan_tail,
    };
    let log = Logger { callback: raw.log_callback, user_data: raw.log_user_data };
    Ok((cfg, CreateOptions { kernel_cache_dir, log }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scale_of(s: f32) -> Result<f32> {
        let mut raw = default_config();
        (raw.num_q_heads, raw.num_kv_heads, raw.head_dim, raw.softmax_scale) = (4, 4, 64, s);
        // SAFETY: default_config leaves kernel_cache_dir NULL.
        unsafe { validate(&raw) }.map(|(c, _)| c.scale)
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
