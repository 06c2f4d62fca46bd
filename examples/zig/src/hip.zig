//! A thin Zig wrapper of the hip-attn C API: Zig errors for statuses, a Context with deinit, and the argument
//! structs of the translated header as they are (the wrapper only fills in struct_size).
const std = @import("std");
pub const c = @import("c");

/// One error per hip_status. The detailed message (naming the offending field) is per thread in C: read it with
/// lastErrorMessage() on the same thread, before the next hip-attn call fails.
pub const Error = error{
    NullPointer,
    InvalidConfig,
    InvalidArgument,
    Unsupported,
    MisalignedPointer,
    WorkspaceTooSmall,
    StructSizeMismatch,
    SizeOverflow,
    BadIndex,
    CudaUnavailable,
    CudaError,
    KernelCompileFailed,
    OutOfMemory,
    Internal,
    UnknownStatus,
};

pub fn check(status: c.hip_status) Error!void {
    return switch (status) {
        c.HIP_ATTN_STATUS_SUCCESS => {},
        c.HIP_ATTN_STATUS_NULL_POINTER => error.NullPointer,
        c.HIP_ATTN_STATUS_INVALID_CONFIG => error.InvalidConfig,
        c.HIP_ATTN_STATUS_INVALID_ARGUMENT => error.InvalidArgument,
        c.HIP_ATTN_STATUS_UNSUPPORTED => error.Unsupported,
        c.HIP_ATTN_STATUS_MISALIGNED_POINTER => error.MisalignedPointer,
        c.HIP_ATTN_STATUS_WORKSPACE_TOO_SMALL => error.WorkspaceTooSmall,
        c.HIP_ATTN_STATUS_STRUCT_SIZE_MISMATCH => error.StructSizeMismatch,
        c.HIP_ATTN_STATUS_SIZE_OVERFLOW => error.SizeOverflow,
        c.HIP_ATTN_STATUS_BAD_INDEX => error.BadIndex,
        c.HIP_ATTN_STATUS_CUDA_UNAVAILABLE => error.CudaUnavailable,
        c.HIP_ATTN_STATUS_CUDA_ERROR => error.CudaError,
        c.HIP_ATTN_STATUS_KERNEL_COMPILE_FAILED => error.KernelCompileFailed,
        c.HIP_ATTN_STATUS_OUT_OF_MEMORY => error.OutOfMemory,
        c.HIP_ATTN_STATUS_INTERNAL => error.Internal,
        else => error.UnknownStatus,
    };
}

/// The message of the latest failed call on this thread ("" if none).
pub fn lastErrorMessage() [:0]const u8 {
    return std.mem.span(c.hip_last_error_message());
}

pub const Context = struct {
    ptr: *c.hip_ctx,

    /// Validates `config` and creates a context. Immutable afterwards: several threads may use it at once as
    /// long as each call has its own workspace.
    pub fn init(config: c.hip_config) Error!Context {
        var ptr: ?*c.hip_ctx = null;
        try check(c.hip_ctx_create(&config, &ptr));
        return .{ .ptr = ptr.? };
    }

    /// No call may be running or queued on a stream that still uses the context.
    pub fn deinit(self: Context) void {
        c.hip_ctx_destroy(self.ptr);
    }

    pub fn prefillWorkspaceSize(self: Context, batch: u32, total_q: u32, max_seqlen_q: u32, max_seqlen_k: u32) Error!usize {
        var bytes: usize = 0;
        try check(c.hip_prefill_workspace_size(self.ptr, batch, total_q, max_seqlen_q, max_seqlen_k, &bytes));
        return bytes;
    }

    pub fn decodeWorkspaceSize(self: Context, batch: u32, max_seqlen_k: u32) Error!usize {
        var bytes: usize = 0;
        try check(c.hip_decode_workspace_size(self.ptr, batch, max_seqlen_k, &bytes));
        return bytes;
    }

    pub fn maskStateSize(self: Context, batch: u32) Error!usize {
        var bytes: usize = 0;
        try check(c.hip_mask_state_size(self.ptr, batch, &bytes));
        return bytes;
    }

    /// Queued on `stream` (CUDA; null = default stream) or computed before returning (CPU).
    pub fn prefill(self: Context, args: c.hip_prefill_args, workspace: ?*anyopaque, workspace_bytes: usize, stream: ?*anyopaque) Error!void {
        var a = args;
        a.struct_size = @sizeOf(c.hip_prefill_args);
        try check(c.hip_prefill(self.ptr, &a, workspace, workspace_bytes, stream));
    }

    pub fn decodeStep(self: Context, args: c.hip_decode_args, workspace: ?*anyopaque, workspace_bytes: usize, stream: ?*anyopaque) Error!void {
        var a = args;
        a.struct_size = @sizeOf(c.hip_decode_args);
        try check(c.hip_decode_step(self.ptr, &a, workspace, workspace_bytes, stream));
    }
};
