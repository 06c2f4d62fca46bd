//! Backend memory for the example: host memory (aligned_alloc) for the CPU backend, device memory for the CUDA
//! backend. hip-attn takes pointers in its backend's memory and never allocates them; an engine has its own
//! allocator, this is the example's.
//!
//! The CUDA side loads the driver (libcuda.so.1) at run time and declares the few entry points it uses, so the
//! example builds and runs without CUDA headers or a link-time dependency.
const std = @import("std");
const hip = @import("hip.zig");

pub const Error = error{ OutOfMemory, CudaDriverUnavailable, CudaCallFailed, BadBackendName };

// C11's aligned_alloc, which std.c does not declare.
extern "c" fn aligned_alloc(alignment: usize, size: usize) ?*anyopaque;

const CUresult = c_int;
const CUdeviceptr = c_ulonglong;

/// The driver's entry points (cuda.h).
const Driver = struct {
    cuInit: *const fn (c_uint) callconv(.c) CUresult,
    cuDeviceGet: *const fn (*c_int, c_int) callconv(.c) CUresult,
    cuDevicePrimaryCtxRetain: *const fn (*?*anyopaque, c_int) callconv(.c) CUresult,
    cuDevicePrimaryCtxRelease_v2: *const fn (c_int) callconv(.c) CUresult,
    cuCtxSetCurrent: *const fn (?*anyopaque) callconv(.c) CUresult,
    cuCtxSynchronize: *const fn () callconv(.c) CUresult,
    cuMemAlloc_v2: *const fn (*CUdeviceptr, usize) callconv(.c) CUresult,
    cuMemFree_v2: *const fn (CUdeviceptr) callconv(.c) CUresult,
    cuMemcpyHtoD_v2: *const fn (CUdeviceptr, *const anyopaque, usize) callconv(.c) CUresult,
    cuMemcpyDtoH_v2: *const fn (*anyopaque, CUdeviceptr, usize) callconv(.c) CUresult,
    cuGetErrorName: *const fn (CUresult, *?[*:0]const u8) callconv(.c) CUresult,
};

pub const Memory = union(enum) {
    host,
    cuda: struct { lib: *anyopaque, driver: Driver, device: c_int },

    /// HIP_ATTN_BACKEND=cpu (default) or cuda; HIP_ATTN_DEVICE selects the CUDA device (default 0).
    pub fn fromEnv() Error!Memory {
        const name = if (std.c.getenv("HIP_ATTN_BACKEND")) |v| std.mem.span(v) else "cpu";
        if (std.mem.eql(u8, name, "cpu")) return .host;
        if (!std.mem.eql(u8, name, "cuda")) {
            std.debug.print("HIP_ATTN_BACKEND must be cpu or cuda, not '{s}'\n", .{name});
            return error.BadBackendName;
        }
        return openCuda(deviceOrdinal());
    }

    pub fn deviceOrdinal() c_int {
        const s = std.c.getenv("HIP_ATTN_DEVICE") orelse return 0;
        return std.fmt.parseInt(c_int, std.mem.span(s), 10) catch 0;
    }

    pub fn backend(self: Memory) u32 {
        return switch (self) {
            .host => hip.c.HIP_ATTN_BACKEND_CPU,
            .cuda => hip.c.HIP_ATTN_BACKEND_CUDA,
        };
    }

    /// Loads the driver and makes the device's primary context (the one hip-attn uses) current.
    fn openCuda(ordinal: c_int) Error!Memory {
        const lib = std.c.dlopen("libcuda.so.1", .{ .NOW = true }) orelse {
            std.debug.print("CUDA driver not available: {s}\n", .{std.c.dlerror() orelse "?"});
            return error.CudaDriverUnavailable;
        };
        errdefer _ = std.c.dlclose(lib);
        var driver: Driver = undefined;
        inline for (comptime std.meta.fieldNames(Driver)) |name| {
            const sym = std.c.dlsym(lib, name) orelse {
                std.debug.print("libcuda.so.1 lacks {s}\n", .{name});
                return error.CudaDriverUnavailable;
            };
            @field(driver, name) = @ptrCast(sym);
        }
        var self: Memory = .{ .cuda = .{ .lib = lib, .driver = driver, .device = 0 } };
        try self.cu(driver.cuInit(0), "cuInit");
        try self.cu(driver.cuDeviceGet(&self.cuda.device, ordinal), "cuDeviceGet");
        var ctx: ?*anyopaque = null;
        try self.cu(driver.cuDevicePrimaryCtxRetain(&ctx, self.cuda.device), "cuDevicePrimaryCtxRetain");
        errdefer _ = driver.cuDevicePrimaryCtxRelease_v2(self.cuda.device);
        try self.cu(driver.cuCtxSetCurrent(ctx), "cuCtxSetCurrent");
        return self;
    }

    /// Every buffer must be freed first.
    pub fn deinit(self: Memory) void {
        switch (self) {
            .host => {},
            .cuda => |d| {
                _ = d.driver.cuDevicePrimaryCtxRelease_v2(d.device);
                _ = std.c.dlclose(d.lib);
            },
        }
    }

    fn cu(self: Memory, r: CUresult, what: []const u8) Error!void {
        if (r == 0) return;
        var name: ?[*:0]const u8 = null;
        _ = self.cuda.driver.cuGetErrorName(r, &name);
        std.debug.print("{s} failed: {s}\n", .{ what, name orelse "unknown error" });
        return error.CudaCallFailed;
    }

    pub fn alloc(self: Memory, bytes: usize) Error!*anyopaque {
        switch (self) {
            // hip-attn wants 16-byte aligned base pointers; aligned_alloc wants a multiple of the alignment.
            .host => return aligned_alloc(16, @max(16, std.mem.alignForward(usize, bytes, 16))) orelse
                error.OutOfMemory,
            .cuda => |d| {
                var p: CUdeviceptr = 0;
                try self.cu(d.driver.cuMemAlloc_v2(&p, @max(bytes, 16)), "cuMemAlloc");
                return @ptrFromInt(p);
            },
        }
    }

    pub fn free(self: Memory, p: *anyopaque) void {
        switch (self) {
            .host => std.c.free(p),
            .cuda => |d| _ = d.driver.cuMemFree_v2(@intFromPtr(p)),
        }
    }

    /// Copies are synchronous and ordered after the work queued on the default (NULL) stream.
    pub fn toBackend(self: Memory, dst: *anyopaque, src: []const u8) Error!void {
        switch (self) {
            .host => @memcpy(@as([*]u8, @ptrCast(dst))[0..src.len], src),
            .cuda => |d| try self.cu(d.driver.cuMemcpyHtoD_v2(@intFromPtr(dst), src.ptr, src.len), "cuMemcpyHtoD"),
        }
    }

    pub fn toHost(self: Memory, dst: []u8, src: *const anyopaque) Error!void {
        switch (self) {
            .host => @memcpy(dst, @as([*]const u8, @ptrCast(src))[0..dst.len]),
            .cuda => |d| {
                try self.cu(d.driver.cuCtxSynchronize(), "cuCtxSynchronize");
                try self.cu(d.driver.cuMemcpyDtoH_v2(dst.ptr, @intFromPtr(src), dst.len), "cuMemcpyDtoH");
            },
        }
    }
};

/// A buffer of `len` T in backend memory.
pub fn Buffer(comptime T: type) type {
    return struct {
        const Self = @This();
        mem: Memory,
        ptr: *anyopaque,
        len: usize,

        pub fn init(mem: Memory, len: usize) Error!Self {
            return .{ .mem = mem, .ptr = try mem.alloc(len * @sizeOf(T)), .len = len };
        }
        pub fn deinit(self: Self) void {
            self.mem.free(self.ptr);
        }
        pub fn bytes(self: Self) usize {
            return self.len * @sizeOf(T);
        }
        pub fn upload(self: Self, host: []const T) Error!void {
            std.debug.assert(host.len == self.len);
            try self.mem.toBackend(self.ptr, std.mem.sliceAsBytes(host));
        }
        pub fn download(self: Self, host: []T) Error!void {
            std.debug.assert(host.len == self.len);
            try self.mem.toHost(std.mem.sliceAsBytes(host), self.ptr);
        }
    };
}
