//! Status codes and errors: the one place where a failure gets its C status number and its message.
//!
//! The numbers of `hip_status` are part of the ABI. A value is never renumbered or reused; new failures get
//! new numbers at the end.

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};

/// Result of every fallible C entry point. `HIP_ATTN_STATUS_SUCCESS` (0) means success; every other value has a
/// detailed message available from `hip_last_error_message()` on the same thread (and `hip_ctx_last_error()` for
/// calls that took a context).
#[allow(non_camel_case_types)]
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum hip_status {
    /// The call succeeded.
    HIP_ATTN_STATUS_SUCCESS = 0,
    /// A required pointer (context, argument struct, tensor data, output) was NULL.
    HIP_ATTN_STATUS_NULL_POINTER = 1,
    /// A `hip_config` field is out of range or inconsistent with another field.
    HIP_ATTN_STATUS_INVALID_CONFIG = 2,
    /// An argument of a run call (shape, stride, length, batch) is out of range or inconsistent.
    HIP_ATTN_STATUS_INVALID_ARGUMENT = 3,
    /// Valid input that this build or backend does not support (head_dim, dtype, block sizes on CUDA).
    HIP_ATTN_STATUS_UNSUPPORTED = 4,
    /// A pointer or stride does not meet the alignment the API requires.
    HIP_ATTN_STATUS_MISALIGNED_POINTER = 5,
    /// `workspace_bytes` is smaller than the size query returned for these arguments.
    HIP_ATTN_STATUS_WORKSPACE_TOO_SMALL = 6,
    /// A struct's `struct_size` does not match a layout this library understands.
    HIP_ATTN_STATUS_STRUCT_SIZE_MISMATCH = 7,
    /// A size computation (elements, bytes, extents) would overflow, or a buffer's extent (pointer plus the bytes
    /// its strides and lengths span) would pass the end of the user address space, 2^57. The message names the
    /// stride and length, or the span.
    HIP_ATTN_STATUS_SIZE_OVERFLOW = 8,
    /// Index data in backend memory is out of range: cu_seqlens (including an end other than total_q / total_k),
    /// seqlens_k, page table or mask state.
    HIP_ATTN_STATUS_BAD_INDEX = 9,
    /// The CUDA backend was requested but libcuda or libnvrtc could not be loaded, or no such device exists.
    HIP_ATTN_STATUS_CUDA_UNAVAILABLE = 10,
    /// A CUDA driver call failed; the message carries the driver's error name.
    HIP_ATTN_STATUS_CUDA_ERROR = 11,
    /// NVRTC failed to compile the kernels; the message carries the compiler log.
    HIP_ATTN_STATUS_KERNEL_COMPILE_FAILED = 12,
    /// Host or device memory could not be allocated: at context creation, or the CPU backend's run-call scratch
    /// (bounded by the configuration, reserved before any output is written, so nothing was written). Run calls on
    /// the CUDA backend never allocate memory that could fail this way.
    HIP_ATTN_STATUS_OUT_OF_MEMORY = 13,
    /// A bug in hip-attn (a caught panic or a broken invariant). Please report it with the message.
    HIP_ATTN_STATUS_INTERNAL = 14,
}

use hip_status::*;

impl hip_status {
    /// Every status, in numeric order (tests and `hip_status_string` use it).
    pub const fn all() -> [hip_status; 15] {
        [
            HIP_ATTN_STATUS_SUCCESS,
            HIP_ATTN_STATUS_NULL_POINTER,
            HIP_ATTN_STATUS_INVALID_CONFIG,
            HIP_ATTN_STATUS_INVALID_ARGUMENT,
            HIP_ATTN_STATUS_UNSUPPORTED,
            HIP_ATTN_STATUS_MISALIGNED_POINTER,
            HIP_ATTN_STATUS_WORKSPACE_TOO_SMALL,
            HIP_ATTN_STATUS_STRUCT_SIZE_MISMATCH,
            HIP_ATTN_STATUS_SIZE_OVERFLOW,
            HIP_ATTN_STATUS_BAD_INDEX,
            HIP_ATTN_STATUS_CUDA_UNAVAILABLE,
            HIP_ATTN_STATUS_CUDA_ERROR,
            HIP_ATTN_STATUS_KERNEL_COMPILE_FAILED,
            HIP_ATTN_STATUS_OUT_OF_MEMORY,
            HIP_ATTN_STATUS_INTERNAL,
        ]
    }

    /// A static, NUL-terminated description of a status number; unknown numbers get a generic text.
    pub fn describe(code: i32) -> &'static CStr {
        match Self::all().iter().find(|s| **s as i32 == code) {
            Some(HIP_ATTN_STATUS_SUCCESS) => c"success",
            Some(HIP_ATTN_STATUS_NULL_POINTER) => c"a required pointer is NULL",
            Some(HIP_ATTN_STATUS_INVALID_CONFIG) => c"invalid configuration",
            Some(HIP_ATTN_STATUS_INVALID_ARGUMENT) => c"invalid argument",
            Some(HIP_ATTN_STATUS_UNSUPPORTED) => c"unsupported by this build or backend",
            Some(HIP_ATTN_STATUS_MISALIGNED_POINTER) => c"misaligned pointer or stride",
            Some(HIP_ATTN_STATUS_WORKSPACE_TOO_SMALL) => c"workspace too small",
            Some(HIP_ATTN_STATUS_STRUCT_SIZE_MISMATCH) => c"struct_size does not match this library",
            Some(HIP_ATTN_STATUS_SIZE_OVERFLOW) => c"size computation overflows",
            Some(HIP_ATTN_STATUS_BAD_INDEX) => c"index data out of range",
            Some(HIP_ATTN_STATUS_CUDA_UNAVAILABLE) => c"CUDA is not available",
            Some(HIP_ATTN_STATUS_CUDA_ERROR) => c"CUDA driver error",
            Some(HIP_ATTN_STATUS_KERNEL_COMPILE_FAILED) => c"kernel compilation failed",
            Some(HIP_ATTN_STATUS_OUT_OF_MEMORY) => c"out of memory",
            Some(HIP_ATTN_STATUS_INTERNAL) => c"internal error in hip-attn",
            None => c"unknown status code",
        }
    }
}

/// A failure: the status it maps to and a message that names the offending field and value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub status: hip_status,
    pub message: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(status: hip_status, message: impl Into<String>) -> Self {
        Error { status, message: message.into() }
    }
    pub fn null(field: &str) -> Self {
        Self::new(HIP_ATTN_STATUS_NULL_POINTER, format!("{field} is NULL"))
    }
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(HIP_ATTN_STATUS_INVALID_CONFIG, message)
    }
    pub fn arg(message: impl Into<String>) -> Self {
        Self::new(HIP_ATTN_STATUS_INVALID_ARGUMENT, message)
    }
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(HIP_ATTN_STATUS_UNSUPPORTED, message)
    }
    pub fn misaligned(message: impl Into<String>) -> Self {
        Self::new(HIP_ATTN_STATUS_MISALIGNED_POINTER, message)
    }
    pub fn overflow(what: &str) -> Self {
        Self::new(HIP_ATTN_STATUS_SIZE_OVERFLOW, format!("size of {what} overflows"))
    }
    pub fn bad_index(message: impl Into<String>) -> Self {
        Self::new(HIP_ATTN_STATUS_BAD_INDEX, message)
    }
    pub fn out_of_memory(message: impl Into<String>) -> Self {
        Self::new(HIP_ATTN_STATUS_OUT_OF_MEMORY, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(HIP_ATTN_STATUS_INTERNAL, message)
    }
}

/// Checked arithmetic that turns overflow into `HIP_ATTN_STATUS_SIZE_OVERFLOW` naming `what`.
pub fn checked_mul(a: usize, b: usize, what: &str) -> Result<usize> {
    a.checked_mul(b).ok_or_else(|| Error::overflow(what))
}
pub fn checked_add(a: usize, b: usize, what: &str) -> Result<usize> {
    a.checked_add(b).ok_or_else(|| Error::overflow(what))
}

/// Turns a message into a C string, dropping interior NULs rather than losing the whole message.
pub fn to_cstring(message: &str) -> CString {
    CString::new(message.replace('\0', "")).unwrap_or_default()
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records the message of the latest failure on this thread (what `hip_last_error_message()` returns).
pub fn set_thread_error(message: &str) {
    LAST_ERROR.with(|e| *e.borrow_mut() = to_cstring(message));
}

/// Pointer to this thread's last error message. It stays valid until the next failing call on this thread
/// (the thread-local CString is only replaced, never mutated in place, by `set_thread_error`).
pub fn thread_error_ptr() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}
