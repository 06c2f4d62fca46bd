// Warpgroup MMA (wgmma, sm_90a) primitives shared by the Hopper dense attention (fa3.cuh) and the mask search's
// Hopper scoring (search.cuh): shared-memory matrix descriptors, the fence/commit/wait protocol, and the one
// wgmma shape the search issues. Operands live in 128-byte swizzled shared-memory tiles: rows of 128 bytes in
// 8-row atoms of 1024 bytes (1024-byte aligned), 16-byte chunk c of row r stored at chunk c ^ (r % 8), which is
// the layout bulk tensor copies write and wgmma reads without bank conflicts.
//
// No CUDA header is included (as fa3.cuh and common.cuh): the file needs only the compiler's built-ins.
#ifndef HIP_ATTN_HOPPER_WGMMA_CUH
#define HIP_ATTN_HOPPER_WGMMA_CUH

// A wgmma shared-memory matrix descriptor with 128-byte swizzling: start address, leading and stride byte
// offsets, all in 16-byte units.
static __device__ __forceinline__ unsigned long long gmma_desc(unsigned addr, unsigned lbo, unsigned sbo) {
    return (unsigned long long)((addr & 0x3FFFF) >> 4) | ((unsigned long long)(lbo >> 4) << 16) |
           ((unsigned long long)(sbo >> 4) << 32) | (1ull << 62);
}

static __device__ __forceinline__ void wgmma_fence() {
    asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
}
static __device__ __forceinline__ void wgmma_commit() {
    asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
}
// Waits until at most N committed wgmma groups of this warpgroup are still running (they complete in order).
template <int N>
static __device__ __forceinline__ void wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
}

// Pins registers in place around the asynchronous wgmma: the compiler cannot move their reads or writes across
// this (volatile asm is never reordered against another volatile asm such as the wait), so nothing touches an
// accumulator or an A fragment while a wgmma that uses it may still be running.
template <int N>
static __device__ __forceinline__ void pin(float* x) {
#pragma unroll
    for (int i = 0; i < N; ++i) asm volatile("" : "+f"(x[i])::"memory");
}
template <int N>
static __device__ __forceinline__ void pin(unsigned* x) {
#pragma unroll
    for (int i = 0; i < N; ++i) asm volatile("" : "+r"(x[i])::"memory");
}

// Orders this thread's earlier generic-proxy writes to shared memory (cp.async copies, plain stores) before later
// reads of the async proxy (wgmma operands): each writer fences, then a CTA barrier publishes the tile.
static __device__ __forceinline__ void fence_proxy_async_smem() {
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
}

// d[32] (+)= A(64x16, registers: this warp's 16 rows in mma.m16n8k16's A-fragment order) * B(16x64, K-major,
// shared, descriptor b); accumulate = 0 overwrites d. BF16: bf16 operands, else f16. The accumulator layout is
// mma.m16n8k16's per 8-column n-tile j: d[4j + x] is row 16 * warp + g + 8 * (x >> 1), column 8j + 2 * (lane % 4)
// + (x & 1), g = lane / 4.
template <bool BF16>
static __device__ __forceinline__ void wgmma_rs_n64(float* d, const unsigned* a, unsigned long long b, int accumulate) {
#define HIP_WGMMA_RS_N64(TYPE)                                                                                         \
    asm volatile(                                                                                                      \
        "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"                                                                   \
        "wgmma.mma_async.sync.aligned.m64n64k16.f32." TYPE "." TYPE                                                    \
        " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, "  \
        "%23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, %36, p, 1, 1, 0;\n}\n"                  \
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), \
          "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),       \
          "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),      \
          "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])                    \
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(accumulate)                                          \
        : "memory")
    if constexpr (BF16) HIP_WGMMA_RS_N64("bf16");
    else HIP_WGMMA_RS_N64("f16");
#undef HIP_WGMMA_RS_N64
}

// The same for E4M3 operands, k = 32: A is this warp's 16 rows in mma.m16n8k32's E4M3 A-fragment order (a[0]: row
// g, columns 4 (lane % 4) .. + 3; a[1]: row g + 8; a[2], a[3]: the same 16 columns further), B 32x64, K-major (one
// 32-byte step of a 128-byte swizzled row per instruction); f32 accumulators in the layout above.
static __device__ __forceinline__ void wgmma_rs_n64_e4m3(float* d, const unsigned* a, unsigned long long b,
                                                         int accumulate) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k32.f32.e4m3.e4m3"
        " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, "
        "%23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, %36, p, 1, 1;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]),
          "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),
          "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),
          "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(accumulate)
        : "memory");
}

#endif
