// Warpgroup MMA (wgmma, sm_90a) primitives of the Hopper kernels (fa3.cuh): shared-memory matrix descriptors and
// the fence/commit/wait protocol. Operands live in 128-byte swizzled shared-memory tiles: rows of 128 bytes in
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

#endif
