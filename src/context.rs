//! The safe core behind the C shell: a validated configuration bound to a backend. A context is immutable after
//! creation (only its last-error message changes, behind a mutex), so it is Send + Sync and one context may
//! serve several threads at once, each call with its own workspace.

use crate::args::{check_workspace, DecodeArgs, MergeArgs, PrefillArgs, MAX_TOKENS};
use crate::config::{BackendKind, Config, CreateOptions};
use crate::ffi::types::{hip_decode_args, hip_merge_args, hip_prefill_args};
use crate::plan::{self, DecodeWorkspace, PrefillWorkspace};
use crate::status::{Error, Result};
use std::ffi::CString;
use std::sync::Mutex;

enum Backend {
    Cpu,
    Cuda(Box<crate::cuda::CudaBackend>),
}

pub struct Context {
    cfg: Config,
    backend: Backend,
    last_error: Mutex<CString>,
}

fn tokens(field: &str, v: u32, min: usize) -> Result<usize> {
    let v = v as usize;
    if v < min || v > MAX_TOKENS {
        return Err(Error::arg(format!("{field} ({v}) must be between {min} and {MAX_TOKENS}")));
    }
    Ok(v)
}

impl Context {
    pub fn new(cfg: Config, opts: CreateOptions) -> Result<Context> {
        let backend = match cfg.backend {
            BackendKind::Cpu => Backend::Cpu,
            BackendKind::Cuda { ordinal } => {
                Backend::Cuda(Box::new(crate::cuda::CudaBackend::new(&cfg, ordinal, &opts)?))
            }
        };
        Ok(Context { cfg, backend, last_error: Mutex::new(CString::default()) })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn set_last_error(&self, message: &str) {
        // A poisoned lock only means another thread panicked mid-assignment of a CString; the value is whole.
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = crate::status::to_cstring(message);
    }

    pub fn last_error(&self) -> CString {
        self.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn prefill_workspace_size(&self, batch: u32, total_q: u32, max_q: u32, max_k: u32) -> Result<usize> {
        let batch = tokens("batch_size", batch, 1)?;
        let total_q = tokens("total_q", total_q, 1)?;
        let max_q = tokens("max_seqlen_q", max_q, 1)?;
        tokens("max_seqlen_k", max_k, 1)?;
        Ok(PrefillWorkspace::with_tail(&self.cfg, batch, total_q, max_q)?.bytes)
    }

    pub fn decode_workspace_size(&self, batch: u32, max_k: u32) -> Result<usize> {
        let batch = tokens("batch_size", batch, 1)?;
        let max_k = tokens("max_seqlen_k", max_k, 1)?;
        Ok(DecodeWorkspace::new(&self.cfg, batch, max_k)?.bytes)
    }

    pub fn mask_state_size(&self, batch: u32) -> Result<usize> {
        plan::mask_state_bytes(&self.cfg, tokens("batch_size", batch, 1)?)
    }

    /// # Safety
    /// The pointers in `raw`, `workspace` and `stream` are what the C API documents: memory of the context's
    /// backend spanning the described extents, and a stream of the context's device (CUDA).
    pub unsafe fn prefill(&self, raw: &hip_prefill_args, ws: usize, ws_bytes: usize, stream: usize) -> Result<()> {
        let a = PrefillArgs::validate(&self.cfg, raw)?;
        let needed = PrefillWorkspace::with_tail(&self.cfg, a.batch, a.total_q, a.max_seqlen_q)?.bytes;
        let ws = check_workspace(ws, ws_bytes, needed, &a.spans())?;
        match &self.backend {
            // SAFETY: forwarded from this function's contract.
            Backend::Cpu => unsafe { crate::cpu::prefill(&self.cfg, &a, ws) },
            // SAFETY: as above.
            Backend::Cuda(c) => unsafe { c.prefill(&self.cfg, &a, ws, stream) },
        }
    }

    /// # Safety
    /// As for `prefill`.
    pub unsafe fn decode(&self, raw: &hip_decode_args, ws: usize, ws_bytes: usize, stream: usize) -> Result<()> {
        let a = DecodeArgs::validate(&self.cfg, raw)?;
        let needed = DecodeWorkspace::new(&self.cfg, a.batch, a.max_seqlen_k)?.bytes;
        let ws = check_workspace(ws, ws_bytes, needed, &a.spans())?;
        match &self.backend {
            // SAFETY: forwarded from this function's contract.
            Backend::Cpu => unsafe { crate::cpu::decode(&self.cfg, &a) },
            // SAFETY: as above.
            Backend::Cuda(c) => unsafe { c.decode(&self.cfg, &a, ws, stream) },
        }
    }

    /// # Safety
    /// As for `prefill`.
    pub unsafe fn merge(&self, raw: &hip_merge_args, stream: usize) -> Result<()> {
        let m = MergeArgs::validate(&self.cfg, raw)?;
        match &self.backend {
            // SAFETY: forwarded from this function's contract.
            Backend::Cpu => {
                unsafe { crate::cpu::merge(&m) };
                Ok(())
            }
            // SAFETY: as above.
            Backend::Cuda(c) => unsafe { c.merge(&self.cfg, &m, stream) },
        }
    }
}
