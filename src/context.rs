//! The safe core behind the C shell: a validated configuration bound to a backend. A context is immutable after
//! creation (only its last-error message changes, behind a mutex), so it is Send + Sync and one context may
//! serve several threads at once, each call with its own workspace.

use crate::args::{check_workspace, count as tokens, DecodeArgs, MergeArgs, PrefillArgs};
use crate::config::{BackendKind, Config, CreateOptions};
use crate::plan::{self, DecodePlan, DecodeShape, DeviceTraits, PrefillPlan, PrefillShape};
use crate::status::Result;
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

    /// The plan of a prefill of this shape: what `hip_prefill_workspace_size` reports and `prefill` runs.
    pub fn prefill_plan(&self, shape: PrefillShape) -> Result<PrefillPlan> {
        PrefillPlan::new(&self.cfg, shape)
    }

    /// The plan of a decode step of this shape on this context's backend.
    pub fn decode_plan(&self, shape: DecodeShape) -> Result<DecodePlan> {
        DecodePlan::new(&self.cfg, shape, self.device_traits().as_ref())
    }

    fn device_traits(&self) -> Option<DeviceTraits> {
        match &self.backend {
            Backend::Cpu => None,
            Backend::Cuda(c) => Some(c.device_traits()),
        }
    }

    pub fn prefill_workspace_size(&self, batch: u32, total_q: u32, max_q: u32, max_k: u32) -> Result<usize> {
        let shape = PrefillShape {
            batch: tokens("batch_size", batch, 1)?,
            total_q: tokens("total_q", total_q, 1)?,
            max_seqlen_q: tokens("max_seqlen_q", max_q, 1)?,
            max_seqlen_k: tokens("max_seqlen_k", max_k, 1)?,
        };
        Ok(self.prefill_plan(shape)?.workspace.bytes)
    }

    pub fn decode_workspace_size(&self, batch: u32, max_k: u32) -> Result<usize> {
        let batch = tokens("batch_size", batch, 1)?;
        let max_seqlen_k = tokens("max_seqlen_k", max_k, 1)?;
        Ok(self.decode_plan(DecodeShape { batch, max_seqlen_k })?.workspace.bytes)
    }

    pub fn mask_state_size(&self, batch: u32) -> Result<usize> {
        plan::mask_state_bytes(&self.cfg, tokens("batch_size", batch, 1)?)
    }

    /// # Safety
    /// `a` was validated against this context's configuration; its pointers, `workspace` and `stream` are what the
    /// C API documents: memory of the context's backend spanning the described extents, and a stream of the
    /// context's device (CUDA).
    pub unsafe fn prefill(&self, a: &PrefillArgs, ws: usize, ws_bytes: usize, stream: usize) -> Result<()> {
        let plan = self.prefill_plan(a.shape())?;
        let ws = check_workspace(ws, ws_bytes, plan.workspace.bytes, &a.spans())?;
        match &self.backend {
            // SAFETY: forwarded from this function's contract.
            Backend::Cpu => unsafe { crate::cpu::prefill(&self.cfg, &plan, a, ws) },
            // SAFETY: as above.
            Backend::Cuda(c) => unsafe { c.prefill(&self.cfg, &plan, a, ws, stream) },
        }
    }

    /// # Safety
    /// As for `prefill`.
    pub unsafe fn decode(&self, a: &DecodeArgs, ws: usize, ws_bytes: usize, stream: usize) -> Result<()> {
        let plan = self.decode_plan(a.shape())?;
        let ws = check_workspace(ws, ws_bytes, plan.workspace.bytes, &a.spans())?;
        match &self.backend {
            // SAFETY: forwarded from this function's contract.
            Backend::Cpu => unsafe { crate::cpu::decode(&self.cfg, a) },
            // SAFETY: as above.
            Backend::Cuda(c) => unsafe { c.decode(&self.cfg, &plan, a, ws, stream) },
        }
    }

    /// # Safety
    /// As for `prefill`.
    pub unsafe fn merge(&self, m: &MergeArgs, stream: usize) -> Result<()> {
        match &self.backend {
            // SAFETY: forwarded from this function's contract.
            Backend::Cpu => {
                unsafe { crate::cpu::merge(m) };
                Ok(())
            }
            // SAFETY: as above.
            Backend::Cuda(c) => unsafe { c.merge(&self.cfg, m, stream) },
        }
    }
}
