//! hip-attn Zig example: a prefill of a small batch of sequences, then decode steps that reuse the mask between
//! searches, on the backend HIP_ATTN_BACKEND names (cpu, the default, or cuda). It checks itself against dense
//! attention computed here in f64: with k covering every key, HiP attention is exact dense attention
//! (docs/ALGORITHM.md). Shapes and random data are the C example's, so on the CPU backend both print the same
//! checksum.
const std = @import("std");
const hip = @import("hip.zig");
const memory = @import("memory.zig");
const c = hip.c;
const Memory = memory.Memory;
const Buffer = memory.Buffer;

const HQ = 8;
const HKV = 2;
const D = 64;
const BATCH = 2;
const STEPS = 6;
const SEQ_LEN = [BATCH]u32{ 300, 77 };
const MAX_LEN = 300;
const CAPACITY = MAX_LEN + STEPS;
const KV_ROW = HKV * D;
const Q_ROW = HQ * D;

/// bf16 <-> f32, round to nearest even.
fn toBf16(f: f32) u16 {
    var u: u32 = @bitCast(f);
    u +%= 0x7FFF + ((u >> 16) & 1);
    return @truncate(u >> 16);
}
fn fromBf16(h: u16) f64 {
    const f: f32 = @bitCast(@as(u32, h) << 16);
    return f;
}

/// The C example's xorshift generator, uniform in [-1, 1).
const Rng = struct {
    state: u64 = 0x9E3779B97F4A7C15,
    fn next(self: *Rng) f32 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        const unit: f64 = @as(f64, @floatFromInt(self.state >> 40)) * (1.0 / 16777216.0);
        return @as(f32, @floatCast(unit)) * 2.0 - 1.0;
    }
    fn fill(self: *Rng, v: []u16) void {
        for (v) |*x| x.* = toBf16(self.next());
    }
};

/// Largest |out - dense| over the heads of one query row at position `pos`, whose keys and values are rows
/// [0, pos] of k and v (KV_ROW apart); NaN counts as infinitely far.
fn denseDiff(out: []const u16, q: []const u16, k: []const u16, v: []const u16, pos: usize) f64 {
    var worst: f64 = 0;
    var s: [CAPACITY]f64 = undefined;
    const scale = 1.0 / @sqrt(@as(f64, D));
    for (0..HQ) |h| {
        const g = h / (HQ / HKV) * D;
        var m = -std.math.inf(f64);
        for (0..pos + 1) |j| {
            var dot: f64 = 0;
            for (0..D) |d| dot += fromBf16(q[h * D + d]) * fromBf16(k[j * KV_ROW + g + d]);
            s[j] = dot * scale;
            m = @max(m, s[j]);
        }
        var ref: [D]f64 = @splat(0);
        var sum: f64 = 0;
        for (0..pos + 1) |j| {
            const w = @exp(s[j] - m);
            sum += w;
            for (0..D) |d| ref[d] += w * fromBf16(v[j * KV_ROW + g + d]);
        }
        for (0..D) |d| {
            const diff = @abs(fromBf16(out[h * D + d]) - ref[d] / sum);
            if (std.math.isNan(diff)) return std.math.inf(f64);
            worst = @max(worst, diff);
        }
    }
    return worst;
}

pub const Result = struct { prefill_diff: f64, decode_diff: f64, checksum: f64 };

fn view(p: *const anyopaque, row: i64) c.hip_tensor {
    return .{ .data = p, .token_stride = row, .head_stride = D };
}
fn viewMut(p: *anyopaque, row: i64) c.hip_tensor_mut {
    return .{ .data = p, .token_stride = row, .head_stride = D };
}

/// The C example's scenario. `gpa` holds the host copies; `mem` is the backend's memory.
pub fn run(gpa: std.mem.Allocator, mem: Memory) !Result {
    // Two contexts: a sparse one as an engine would use it, and one whose k covers every key (exact).
    var cfg = c.hip_config_default();
    cfg.dtype = c.HIP_ATTN_DTYPE_BF16;
    cfg.head_dim = D;
    cfg.num_q_heads = HQ;
    cfg.num_kv_heads = HKV;
    cfg.k = 64;
    cfg.bq = 16;
    cfg.window = 32;
    cfg.refresh = 4;
    cfg.backend = mem.backend();
    cfg.device_ordinal = Memory.deviceOrdinal();
    const sparse = try hip.Context.init(cfg);
    defer sparse.deinit();
    cfg.k = 1024; // covers every key of these <= 306-token sequences: exact dense attention (on every backend)
    const exact = try hip.Context.init(cfg);
    defer exact.deinit();

    // Host data, drawn in the C example's order. The KV cache is contiguous per sequence,
    // [BATCH][CAPACITY][HKV][D]; the prefill reads the first SEQ_LEN tokens packed, so keep a packed copy too.
    var rng: Rng = .{};
    const total = SEQ_LEN[0] + SEQ_LEN[1];
    const cu = [_]i32{ 0, SEQ_LEN[0], total };
    const kc = try gpa.alloc(u16, BATCH * CAPACITY * KV_ROW);
    defer gpa.free(kc);
    const vc = try gpa.alloc(u16, BATCH * CAPACITY * KV_ROW);
    defer gpa.free(vc);
    rng.fill(kc);
    rng.fill(vc);
    const kp = try gpa.alloc(u16, total * KV_ROW);
    defer gpa.free(kp);
    const vp = try gpa.alloc(u16, total * KV_ROW);
    defer gpa.free(vp);
    for (0..BATCH) |b| {
        const n = SEQ_LEN[b] * KV_ROW;
        const dst: usize = @intCast(cu[b] * KV_ROW);
        @memcpy(kp[dst..][0..n], kc[b * CAPACITY * KV_ROW ..][0..n]);
        @memcpy(vp[dst..][0..n], vc[b * CAPACITY * KV_ROW ..][0..n]);
    }
    const q = try gpa.alloc(u16, total * Q_ROW);
    defer gpa.free(q);
    rng.fill(q);
    const o = try gpa.alloc(u16, total * Q_ROW);
    defer gpa.free(o);
    @memset(o, 0x7FC0); // NaN: an output left unwritten fails the comparison

    // The same in backend memory.
    const d_kc = try Buffer(u16).init(mem, kc.len);
    defer d_kc.deinit();
    const d_vc = try Buffer(u16).init(mem, vc.len);
    defer d_vc.deinit();
    const d_kp = try Buffer(u16).init(mem, kp.len);
    defer d_kp.deinit();
    const d_vp = try Buffer(u16).init(mem, vp.len);
    defer d_vp.deinit();
    const d_q = try Buffer(u16).init(mem, q.len);
    defer d_q.deinit();
    const d_o = try Buffer(u16).init(mem, o.len);
    defer d_o.deinit();
    const d_cu = try Buffer(i32).init(mem, cu.len);
    defer d_cu.deinit();
    try d_kc.upload(kc);
    try d_vc.upload(vc);
    try d_kp.upload(kp);
    try d_vp.upload(vp);
    try d_q.upload(q);
    try d_o.upload(o);
    try d_cu.upload(&cu);

    // One workspace for every call of both contexts: the largest of the sizes.
    var ws_bytes: usize = 0;
    for ([_]hip.Context{ sparse, exact }) |ctx| {
        ws_bytes = @max(ws_bytes, try ctx.prefillWorkspaceSize(BATCH, total, MAX_LEN, MAX_LEN));
        ws_bytes = @max(ws_bytes, try ctx.decodeWorkspaceSize(BATCH, CAPACITY));
    }
    const ws = try Buffer(u8).init(mem, ws_bytes);
    defer ws.deinit();
    // Mask states: the sparse one is filled by the prefill; the exact one starts zeroed (first step searches).
    const state = try Buffer(u8).init(mem, try sparse.maskStateSize(BATCH));
    defer state.deinit();
    const state_exact = try Buffer(u8).init(mem, try exact.maskStateSize(BATCH));
    defer state_exact.deinit();
    const zeros = try gpa.alloc(u8, state_exact.len);
    defer gpa.free(zeros);
    @memset(zeros, 0);
    try state_exact.upload(zeros);

    var pa = std.mem.zeroes(c.hip_prefill_args);
    pa.batch_size = BATCH;
    pa.total_q = total;
    pa.total_k = total;
    pa.max_seqlen_q = MAX_LEN;
    pa.max_seqlen_k = MAX_LEN;
    pa.q = view(d_q.ptr, Q_ROW);
    pa.k = view(d_kp.ptr, KV_ROW);
    pa.v = view(d_vp.ptr, KV_ROW);
    pa.o = viewMut(d_o.ptr, Q_ROW);
    pa.cu_seqlens_q = @ptrCast(@alignCast(d_cu.ptr));
    pa.cu_seqlens_k = @ptrCast(@alignCast(d_cu.ptr));
    try exact.prefill(pa, ws.ptr, ws.bytes(), null);
    try d_o.download(o);

    var result: Result = .{ .prefill_diff = 0, .decode_diff = 0, .checksum = 0 };
    for (0..BATCH) |b| {
        const start: usize = @intCast(cu[b]);
        for (0..SEQ_LEN[b]) |i| {
            const row = start + i;
            result.prefill_diff = @max(result.prefill_diff, denseDiff(o[row * Q_ROW ..], q[row * Q_ROW ..], kp[start * KV_ROW ..], vp[start * KV_ROW ..], i));
        }
    }

    pa.mask_state_out = state.ptr;
    try sparse.prefill(pa, ws.ptr, ws.bytes(), null);

    // Decode: each step the engine appends the new token's k/v to the cache (here it is already there), then
    // calls decodeStep. The mask from the prefill is reused until the step counter reaches `refresh`.
    // (dq starts random only to keep drawing in the C example's order: every step draws it anew.)
    var dq: [BATCH * Q_ROW]u16 = undefined;
    rng.fill(&dq);
    var dout: [BATCH * Q_ROW]u16 = undefined;
    var lens: [BATCH]i32 = undefined;
    const d_dq = try Buffer(u16).init(mem, dq.len);
    defer d_dq.deinit();
    const d_dout = try Buffer(u16).init(mem, dout.len);
    defer d_dout.deinit();
    const d_lens = try Buffer(i32).init(mem, lens.len);
    defer d_lens.deinit();
    var da = std.mem.zeroes(c.hip_decode_args);
    da.batch_size = BATCH;
    da.max_seqlen_k = CAPACITY;
    da.q = view(d_dq.ptr, Q_ROW);
    da.kv.layout = c.HIP_ATTN_KV_CONTIGUOUS;
    da.kv.k = d_kc.ptr;
    da.kv.v = d_vc.ptr;
    da.kv.seq_stride = CAPACITY * KV_ROW;
    da.kv.token_stride = KV_ROW;
    da.kv.head_stride = D;
    da.seqlens_k = @ptrCast(@alignCast(d_lens.ptr));
    da.o = viewMut(d_dout.ptr, Q_ROW);
    for (0..STEPS) |step| {
        for (&lens, SEQ_LEN) |*len, n| len.* = @intCast(n + step + 1);
        rng.fill(&dq);
        try d_lens.upload(&lens);
        try d_dq.upload(&dq);

        da.mask_state = state.ptr;
        try sparse.decodeStep(da, ws.ptr, ws.bytes(), null);
        try d_dout.download(&dout);
        for (dout) |x| result.checksum += fromBf16(x);

        da.mask_state = state_exact.ptr;
        try exact.decodeStep(da, ws.ptr, ws.bytes(), null);
        try d_dout.download(&dout);
        for (0..BATCH) |b| {
            const base = b * CAPACITY * KV_ROW;
            const pos: usize = @intCast(lens[b] - 1);
            result.decode_diff = @max(result.decode_diff, denseDiff(dout[b * Q_ROW ..], dq[b * Q_ROW ..], kc[base..], vc[base..], pos));
        }
    }
    return result;
}

fn ok(r: Result) bool {
    return r.prefill_diff < 2e-2 and r.decode_diff < 2e-2 and std.math.isFinite(r.checksum);
}

/// Prints to stdout (unbuffered: a handful of lines).
fn say(comptime fmt: []const u8, args: anytype) void {
    var buf: [256]u8 = undefined;
    const line = std.fmt.bufPrint(&buf, fmt ++ "\n", args) catch unreachable;
    _ = std.c.write(1, line.ptr, line.len);
}

pub fn main() u8 {
    if (c.hip_abi_version() != c.HIP_ATTN_ABI_VERSION) {
        std.debug.print("header ABI {d}, library ABI {d}\n", .{ c.HIP_ATTN_ABI_VERSION, c.hip_abi_version() });
        return 1;
    }
    const mem = Memory.fromEnv() catch return 1; // fromEnv printed why
    defer mem.deinit();
    say("hip-attn {s} (ABI {d}), backend {s}", .{ std.mem.span(c.hip_version()), c.hip_abi_version(), if (mem == .host) "cpu" else "cuda" });
    const r = run(std.heap.c_allocator, mem) catch |err| {
        // A hip-attn error has a detailed message (this thread's); a memory error printed its own.
        std.debug.print("error: {s}: {s}\n", .{ @errorName(err), hip.lastErrorMessage() });
        return 1;
    };
    say("prefill (k covers all keys) vs dense: max |diff| = {d:.5}", .{r.prefill_diff});
    say("decode: {d} steps with mask reuse, checksum {d:.6}", .{ STEPS, r.checksum });
    say("decode (k covers all keys) vs dense: max |diff| = {d:.5}", .{r.decode_diff});
    say("{s}", .{if (ok(r)) "MATCH: HiP with k covering all keys equals dense attention" else "MISMATCH"});
    return if (ok(r)) 0 else 1;
}

test "prefill and decode on the CPU backend match dense attention" {
    // std.testing.allocator fails the test on a leak of the host copies.
    const r = try run(std.testing.allocator, .host);
    try std.testing.expect(r.prefill_diff < 2e-2);
    try std.testing.expect(r.decode_diff < 2e-2);
    try std.testing.expect(std.math.isFinite(r.checksum));
}

test "a bad configuration fails with InvalidConfig and a message naming the field" {
    var cfg = c.hip_config_default();
    cfg.num_q_heads = 30;
    cfg.num_kv_heads = 8;
    try std.testing.expectError(error.InvalidConfig, hip.Context.init(cfg));
    try std.testing.expect(std.mem.indexOf(u8, hip.lastErrorMessage(), "num_q_heads (30)") != null);
}
