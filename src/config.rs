//! The validated configuration of a context and its derived quantities. A `Config` exists only once the C shell
//! (`crate::ffi::convert::config`, the one place that reads a caller's `hip_config`) has checked every field
//! against the rules and caps below, so the rest of the library trusts its numbers.

use crate::cuda::LogLevel;
use crate::tensor::DType;
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
    /// `HIP_ATTN_FLAG_FP8_SEARCH_SCORES`: prefill's tree search scores on E4M3 copies of Q and K.
    pub fp8_search: bool,
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
    #[cfg(any(test, feature = "internals"))]
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
    /// The configuration a decode call over `range` runs with (docs/ALGORITHM.md, "Sharded sequences"): in the
    /// cache's own positions a shard is an ordinary decode step with the sink tokens only where the range starts
    /// the sequence and the local window only where it ends it, so both backends run their unsharded code with
    /// these two values. The mask-state fingerprint follows them, so a record written in another role is
    /// reported rather than reused. The whole sequence (the default range) gets `self` unchanged.
    pub fn for_range(&self, range: crate::args::KeyRange) -> Config {
        let mut c = self.clone();
        if range.offset > 0 {
            c.sink = 0;
        }
        if range.not_last {
            c.window = 0;
        }
        c
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

/// Where context creation reports what it does (the C shell wraps the caller's log callback in one). Only used
/// on the thread that creates the context.
pub struct Logger {
    sink: Option<Box<LogSink>>,
}

type LogSink = dyn Fn(LogLevel, &str);

impl Logger {
    pub fn silent() -> Self {
        Logger { sink: None }
    }
    pub fn new(sink: impl Fn(LogLevel, &str) + 'static) -> Self {
        Logger { sink: Some(Box::new(sink)) }
    }
    pub fn log(&self, level: LogLevel, message: &str) {
        if let Some(sink) = &self.sink {
            sink(level, message)
        }
    }
}

/// The C shell's reading of a `hip_config` (`crate::ffi::convert::config`), under the name this repository's
/// tests and tools use.
#[cfg(feature = "internals")]
pub use crate::ffi::convert::config as validate;
