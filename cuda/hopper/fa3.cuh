// Prototype of a Hopper-native (sm_90a) dense causal prefill attention in the FlashAttention-3 structure, kept apart
// from the library's kernels (issue 15) and driven only by tests/gpu_hopper.rs until it is measured; design,
// resource usage and open points in docs/HOPPER-NOTES.md.
//
// One CTA per (128-query tile, query head); 3 warpgroups: warpgroup 0 is the producer (one thread issues bulk tensor
// copies of Q, K and V tiles into shared memory, completing on mbarriers, HOPPER_STAGES deep), warpgroups 1 and 2 are
// consumers (64 query rows each): S = Q K^T and O += P V with wgmma, online softmax in registers, then O (bf16) and
// the natural-log LSE straight from registers. setmaxnreg moves registers from the producer to the consumers.
//
// Layout: Q, K, V, O are [tokens][heads][128] bf16 rows with element strides (token, head); the tensor maps are
// 3-D (d, head, token) with 128-byte swizzled boxes of 64 d x 1 head x 128 tokens, so every shared tile is a
// stack of 128-byte rows in exactly the swizzled K-major (Q, K) or MN-major (V) form wgmma reads.
//
// No CUDA header is included (NVRTC on an engine host may have none): elements are raw 16-bit words. The geometry
// the host must know (threads, tile rows, head dim, shared memory) is src/contract.rs's, through hip_contract.h,
// both in the library and standalone (tests/gpu_hopper.rs passes the header).
#include "hip_contract.h"
#include "hopper/wgmma.cuh"

#ifndef HOPPER_STAGES
#define HOPPER_STAGES 2
#endif
// 1: the next tile's S = Q K^T is issued together with this tile's P V, and its softmax runs while P V does.
// 2: as 1, and the two consumer warpgroups take turns issuing those products (pingpong, two named barriers), so
// that one warpgroup's softmax runs while the other's products hold the tensor cores.
#ifndef HOPPER_OVERLAP
#define HOPPER_OVERLAP 0
#endif
#define HOPPER_BM HIP_ATTN_HOPPER_ROWS
#define HOPPER_BN HIP_ATTN_HOPPER_ROWS
#define HOPPER_D HIP_ATTN_HOPPER_HEAD_DIM
#define HOPPER_THREADS HIP_ATTN_HOPPER_THREADS
#define HOPPER_INF __int_as_float(0x7f800000)

static_assert(HOPPER_STAGES >= 1 && HOPPER_STAGES <= 3, "1 to 3 K/V stages fit in shared memory");

// A CUtensorMap as the driver encodes it: 128 opaque bytes, 64-byte aligned, passed by value as a grid constant.
struct __align__(64) hopper_tmap {
    unsigned long long opaque[16];
};

// Bytes of one 64-column half of a 128-row bf16 tile (the unit one bulk tensor copy fills).
#define HOPPER_HALF (HOPPER_BM * 64 * 2)
#define HOPPER_TILE (2 * HOPPER_HALF)
#define HOPPER_SMEM_BYTES hip_contract::hopper_smem(HOPPER_STAGES, HOPPER_BM, HOPPER_D)
// The layout the kernels carve out of the dynamic shared memory (Q tile, K and V stages, then the mbarriers after
// up to 1 KiB of alignment) is what the host grants.
static_assert(HOPPER_BM == HOPPER_BN && HOPPER_D == 2 * 64, "one tile shape (the host's tensor-map box) for Q, K and V");
static_assert(1024 + HOPPER_TILE * (1 + 2 * HOPPER_STAGES) + 8 * (1 + 4 * HOPPER_STAGES) <= HOPPER_SMEM_BYTES,
              "the shared-memory layout fits in hip_contract::hopper_smem");

static __device__ __forceinline__ unsigned smem_u32(const void* p) {
    return (unsigned)__cvta_generic_to_shared(p);
}

static __device__ __forceinline__ void mbar_init(unsigned bar, unsigned count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
}

static __device__ __forceinline__ void mbar_expect_tx(unsigned bar, unsigned bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
}

static __device__ __forceinline__ void mbar_arrive(unsigned bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(bar) : "memory");
}

static __device__ __forceinline__ unsigned long long global_ns() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

// Waits until the phase of parity `parity` of the barrier has completed. A pipeline bug must not hang the device
// (and the lead's whole GPU call with it): after about two seconds the kernel traps, which the host sees as a
// launch error.
static __device__ __forceinline__ void mbar_wait(unsigned bar, unsigned parity) {
    unsigned ok = 0, spins = 0;
    unsigned long long t0 = 0;
    for (;;) {
        asm volatile(
            "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
            : "=r"(ok)
            : "r"(bar), "r"(parity)
            : "memory");
        if (ok) return;
        if ((++spins & 1023) == 0) {
            if (t0 == 0) t0 = global_ns();
            else if (global_ns() - t0 > 2000000000ull) asm volatile("trap;");
        }
    }
}

// One 64 x 1 x 128 box of a (d, head, token) tensor map into shared memory at `dst`, completing on `bar`.
static __device__ __forceinline__ void tma_load(unsigned dst, const hopper_tmap* map, int d0, int head, int tok,
                                                unsigned bar) {
    asm volatile(
        "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], [%5];"
        ::"r"(dst), "l"((unsigned long long)map), "r"(d0), "r"(head), "r"(tok), "r"(bar)
        : "memory");
}

// d[64] (+)= A(64x16, K-major, shared) * B(16x128, K-major, shared); accumulate = 0 overwrites d.
static __device__ __forceinline__ void wgmma_s(float* d, unsigned long long a, unsigned long long b, int accumulate) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, "
        "%12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, "
        "%34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, "
        "%56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]),
          "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),
          "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),
          "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]),
          "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]),
          "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]),
          "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]),
          "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "l"(a), "l"(b), "r"(accumulate)
        : "memory");
}

// d[32] += A(64x16 bf16, registers) * B(16x64, MN-major, shared).
static __device__ __forceinline__ void wgmma_pv(float* d, const unsigned* a, unsigned long long b) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, "
        "%12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
        "{%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]),
          "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),
          "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),
          "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1)
        : "memory");
}

static __device__ __forceinline__ float ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

// Two floats as bf16x2: `lo` in the low half (the lower column).
static __device__ __forceinline__ unsigned pack_bf16(float lo, float hi) {
    unsigned r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

// S (64 x 128, this warpgroup's rows) = Q K^T over d = 128: 8 k-steps of 16, each in half kk / 4 of the tiles,
// 32 bytes into their 128-byte rows.
static __device__ __forceinline__ void issue_s(float* acc_s, unsigned q_tile, unsigned k_tile) {
#pragma unroll
    for (int kk = 0; kk < HOPPER_D / 16; ++kk) {
        const unsigned off = (kk / 4) * HOPPER_HALF + (kk % 4) * 32;
        wgmma_s(acc_s, gmma_desc(q_tile + off, 16, 1024), gmma_desc(k_tile + off, 16, 1024), kk > 0);
    }
}

// O (64 x 128, two 64-column accumulators) += P V(tile): keys 16 kk .. 16 kk + 15 are rows 16 kk.. of each half
// of the V tile, two 8-row swizzle atoms of 1024 bytes. With n = 64 the B operand lies in one atom column, so
// the leading offset is never stepped: both offsets are 1024 and either reading of them is the same layout.
static __device__ __forceinline__ void issue_pv(float (*acc_o)[32], const unsigned* p, unsigned v_tile) {
#pragma unroll
    for (int kk = 0; kk < HOPPER_BN / 16; ++kk)
#pragma unroll
        for (int c = 0; c < 2; ++c)
            wgmma_pv(acc_o[c], &p[4 * kk], gmma_desc(v_tile + c * HOPPER_HALF + kk * 2048, 1024, 1024));
}

// One arrival per consumer warp on an "empty" barrier: the warpgroup's wgmma reads of the stage have completed.
static __device__ __forceinline__ void release(unsigned bar, int lane) {
    __syncwarp();
    if (lane == 0) mbar_arrive(bar);
}

// The diagonal tile `kt`: key kt * 128 + col is visible to query q only when it is <= q (which also hides the
// zero-filled keys past T from every real row).
static __device__ __forceinline__ void mask_diagonal(float* acc_s, int kt, int q_row0, int c0) {
#pragma unroll
    for (int j = 0; j < 16; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const int key = kt * HOPPER_BN + 8 * j + c0 + (e & 1);
            const int q = q_row0 + 8 * (e >> 1);
            if (key > q) acc_s[4 * j + e] = -HOPPER_INF;
        }
}

// Online softmax of one S tile: updates the running max `m` (log2 units, scale included) and this thread's row
// sums `l`, returns the factor `alpha` the older O must be scaled by, and P as bf16 pairs already in the
// A-fragment order of m64nNk16 (4 registers per 16 keys: the accumulator layout of m64nN is that order).
static __device__ __forceinline__ void softmax_tile(const float* acc_s, float scale_log2, float* m, float* l,
                                                    float* alpha, unsigned* p) {
    float mx[2] = {m[0], m[1]};
#pragma unroll
    for (int j = 0; j < 16; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) mx[e >> 1] = fmaxf(mx[e >> 1], acc_s[4 * j + e] * scale_log2);
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
        alpha[r] = ex2(m[r] - mx[r]);  // 0 on the first tile (m = -inf)
        m[r] = mx[r];
        l[r] *= alpha[r];
    }
#pragma unroll
    for (int j = 0; j < 16; ++j) {
        const float e0 = ex2(acc_s[4 * j + 0] * scale_log2 - m[0]);
        const float e1 = ex2(acc_s[4 * j + 1] * scale_log2 - m[0]);
        const float e2 = ex2(acc_s[4 * j + 2] * scale_log2 - m[1]);
        const float e3 = ex2(acc_s[4 * j + 3] * scale_log2 - m[1]);
        l[0] += e0 + e1;
        l[1] += e2 + e3;
        p[2 * j] = pack_bf16(e0, e1);
        p[2 * j + 1] = pack_bf16(e2, e3);
    }
}

// Named barriers 1 and 2 (0 is __syncthreads): "consumer warpgroup 0 / 1 may issue its products". A warpgroup
// waits on its own (its 128 threads plus the other warpgroup's 128 arrivals) and arrives on the other's.
// Immediate barrier ids (a register id makes ptxas reserve all 16).
static __device__ __forceinline__ void turn_wait(int cw) {
    if (cw == 0) asm volatile("bar.sync 1, 256;" ::: "memory");
    else asm volatile("bar.sync 2, 256;" ::: "memory");
}
static __device__ __forceinline__ void turn_pass(int cw) {
    if (cw == 0) asm volatile("bar.arrive 2, 256;" ::: "memory");
    else asm volatile("bar.arrive 1, 256;" ::: "memory");
}

static __device__ __forceinline__ void rescale(float (*acc_o)[32], const float* alpha) {
#pragma unroll
    for (int c = 0; c < 2; ++c)
#pragma unroll
        for (int i = 0; i < 32; ++i) acc_o[c][i] *= alpha[(i >> 1) & 1];
}

// Shared-memory map of a CTA: the Q tile, HOPPER_STAGES K tiles and V tiles, each on a 1024-byte boundary (the
// swizzle pattern repeats every 8 rows of 128 bytes), then the mbarriers: Q full, and per stage K/V full and empty.
struct hopper_smem {
    unsigned sq, sk, sv, q_full, k_full, v_full, k_empty, v_empty;
};

static __device__ __forceinline__ hopper_smem hopper_smem_map(const void* dyn) {
    hopper_smem sm;
    const unsigned base = (smem_u32(dyn) + 1023u) & ~1023u;
    sm.sq = base;
    sm.sk = base + HOPPER_TILE;
    sm.sv = sm.sk + HOPPER_STAGES * HOPPER_TILE;
    const unsigned bars = sm.sv + HOPPER_STAGES * HOPPER_TILE;
    sm.q_full = bars;
    sm.k_full = bars + 8;
    sm.v_full = sm.k_full + 8 * HOPPER_STAGES;
    sm.k_empty = sm.v_full + 8 * HOPPER_STAGES;
    sm.v_empty = sm.k_empty + 8 * HOPPER_STAGES;
    return sm;
}

// `leader` (one thread) initialises the barriers; every thread of the CTA must call this (it ends in
// __syncthreads).
static __device__ __forceinline__ void hopper_init_barriers(const hopper_smem& sm, bool leader) {
    if (leader) {
        mbar_init(sm.q_full, 1);
        for (int s = 0; s < HOPPER_STAGES; ++s) {
            mbar_init(sm.k_full + 8 * s, 1);
            mbar_init(sm.v_full + 8 * s, 1);
            // One arrival per consumer warp once its wgmma reads of the stage are complete.
            mbar_init(sm.k_empty + 8 * s, 8);
            mbar_init(sm.v_empty + 8 * s, 8);
        }
        // Makes the initialised barriers visible to the copy engine (the async proxy).
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();
}

// The producer (one thread): the Q tile of query head h at token q_tok, then n_kt K and V tiles of kv head hk from
// token k_tok0 on, each stage refilled once the consumers have released its previous use.
static __device__ __forceinline__ void hopper_produce(const hopper_smem& sm, const hopper_tmap* tq,
                                                      const hopper_tmap* tk, const hopper_tmap* tv, int h, int q_tok,
                                                      int hk, int k_tok0, int n_kt) {
    mbar_expect_tx(sm.q_full, HOPPER_TILE);
    tma_load(sm.sq, tq, 0, h, q_tok, sm.q_full);
    tma_load(sm.sq + HOPPER_HALF, tq, 64, h, q_tok, sm.q_full);
    for (int kt = 0; kt < n_kt; ++kt) {
        const int s = kt % HOPPER_STAGES;
        const unsigned use = kt / HOPPER_STAGES;
        if (use > 0) mbar_wait(sm.k_empty + 8 * s, (use - 1) & 1);
        mbar_expect_tx(sm.k_full + 8 * s, HOPPER_TILE);
        tma_load(sm.sk + s * HOPPER_TILE, tk, 0, hk, k_tok0 + kt * HOPPER_BN, sm.k_full + 8 * s);
        tma_load(sm.sk + s * HOPPER_TILE + HOPPER_HALF, tk, 64, hk, k_tok0 + kt * HOPPER_BN, sm.k_full + 8 * s);
        if (use > 0) mbar_wait(sm.v_empty + 8 * s, (use - 1) & 1);
        mbar_expect_tx(sm.v_full + 8 * s, HOPPER_TILE);
        tma_load(sm.sv + s * HOPPER_TILE, tv, 0, hk, k_tok0 + kt * HOPPER_BN, sm.v_full + 8 * s);
        tma_load(sm.sv + s * HOPPER_TILE + HOPPER_HALF, tv, 64, hk, k_tok0 + kt * HOPPER_BN, sm.v_full + 8 * s);
    }
}

// A consumer warpgroup's main loop over n_kt key tiles: acc_o, the running row maxima m (log2 units, scale
// included) and this thread's row sums l accumulate attention over them. `mask(acc_s, kt)` hides, in the raw
// scores of tile kt, the keys this thread's rows may not see. OVERLAP as HOPPER_OVERLAP above; with OVERLAP > 0,
// n_kt must be at least 1.
// O += P V on stage s once its V tile has landed (use parity `parity`), to completion, then the stage's V is handed
// back to the producer: the last step of a tile wherever nothing else is in flight to overlap with it.
static __device__ __forceinline__ void pv_tile(const hopper_smem& sm, float (*acc_o)[32], const unsigned* p, int s,
                                               unsigned parity, int lane) {
    mbar_wait(sm.v_full + 8 * s, parity);
    wgmma_fence();
    issue_pv(acc_o, p, sm.sv + s * HOPPER_TILE);
    wgmma_commit();
    wgmma_wait<0>();
    pin<32>(acc_o[0]);
    pin<32>(acc_o[1]);
    release(sm.v_empty + 8 * s, lane);
}

template <int OVERLAP, class Mask>
static __device__ __forceinline__ void hopper_mainloop(const hopper_smem& sm, unsigned q_tile, int n_kt, int cw,
                                                       int lane, float scale_log2, float (*acc_o)[32], float* m,
                                                       float* l, Mask mask) {
    if (OVERLAP) {
        // S(kt + 1) = Q K(kt + 1) and O += P(kt) V(kt) are in flight together; the softmax of S(kt + 1) runs
        // under the P V product, and O is rescaled only once that product has completed.
        unsigned p[32];
        {
            float acc_s[64];
            mbar_wait(sm.k_full, 0);
            wgmma_fence();
            issue_s(acc_s, q_tile, sm.sk);
            wgmma_commit();
            wgmma_wait<0>();
            pin<64>(acc_s);
            release(sm.k_empty, lane);
            float alpha[2];
            mask(acc_s, 0);
            softmax_tile(acc_s, scale_log2, m, l, alpha, p);
        }
        // Warpgroup 0 issues first. Each warpgroup waits n_kt - 1 times; warpgroup 1 passes the turn once before
        // the loop and then in every trip but its last, so every wait has exactly one matching arrival.
        if (OVERLAP == 2 && cw == 1 && n_kt > 1) turn_pass(cw);
        // Every tile but the last has a successor; the last tile's P V runs alone after the loop.
        for (int kt = 0; kt + 1 < n_kt; ++kt) {
            const int s = kt % HOPPER_STAGES;
            const unsigned parity = (kt / HOPPER_STAGES) & 1;
            const int s1 = (kt + 1) % HOPPER_STAGES;
            const unsigned parity1 = ((kt + 1) / HOPPER_STAGES) & 1;
            float acc_s[64];
            mbar_wait(sm.k_full + 8 * s1, parity1);
            mbar_wait(sm.v_full + 8 * s, parity);
            if (OVERLAP == 2) turn_wait(cw);
            wgmma_fence();
            issue_s(acc_s, q_tile, sm.sk + s1 * HOPPER_TILE);
            wgmma_commit();
            issue_pv(acc_o, p, sm.sv + s * HOPPER_TILE);
            wgmma_commit();
            if (OVERLAP == 2 && (cw == 0 || kt + 2 < n_kt)) turn_pass(cw);
            wgmma_wait<1>();  // the older group, S(kt + 1), is complete; P(kt) V(kt) may still run
            pin<64>(acc_s);
            release(sm.k_empty + 8 * s1, lane);
            mask(acc_s, kt + 1);
            float alpha[2];
            unsigned p_next[32];
            softmax_tile(acc_s, scale_log2, m, l, alpha, p_next);
            pin<32>(p_next);
            wgmma_wait<0>();
            pin<32>(acc_o[0]);
            pin<32>(acc_o[1]);
            pin<32>(p);
            release(sm.v_empty + 8 * s, lane);
            rescale(acc_o, alpha);
#pragma unroll
            for (int i = 0; i < 32; ++i) p[i] = p_next[i];
        }
        const int kt = n_kt - 1;
        const int s = kt % HOPPER_STAGES;
        pv_tile(sm, acc_o, p, s, (kt / HOPPER_STAGES) & 1, lane);
    } else {
        for (int kt = 0; kt < n_kt; ++kt) {
            const int s = kt % HOPPER_STAGES;
            const unsigned parity = (kt / HOPPER_STAGES) & 1;
            float acc_s[64];
            mbar_wait(sm.k_full + 8 * s, parity);
            wgmma_fence();
            issue_s(acc_s, q_tile, sm.sk + s * HOPPER_TILE);
            wgmma_commit();
            wgmma_wait<0>();
            pin<64>(acc_s);
            release(sm.k_empty + 8 * s, lane);
            mask(acc_s, kt);
            float alpha[2];
            unsigned p[32];
            softmax_tile(acc_s, scale_log2, m, l, alpha, p);
            rescale(acc_o, alpha);
            pv_tile(sm, acc_o, p, s, parity, lane);
        }
    }
}

// Completes this thread's row sums over the four threads that share its rows; inv gets 1 / sum per row.
static __device__ __forceinline__ void hopper_finish_rows(float* l, float* inv) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    }
    inv[0] = 1.f / l[0];
    inv[1] = 1.f / l[1];
}

// Writes this thread's part of accumulator row r (0: row r0, 1: row r0 + 8), normalised by inv, as bf16 at `row`.
template <class E>
static __device__ __forceinline__ void hopper_store_row(E* row, const float (*acc_o)[32], float inv, int r, int c0) {
#pragma unroll
    for (int c = 0; c < 2; ++c)
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const unsigned v = pack_bf16(acc_o[c][4 * j + 2 * r] * inv, acc_o[c][4 * j + 2 * r + 1] * inv);
            *reinterpret_cast<unsigned*>(row + 64 * c + 8 * j + c0) = v;
        }
}

// ln(sum exp(s)) = ln 2 * (max + log2(sum exp2(s - max))) in the log2 units of the main loop.
static __device__ __forceinline__ float hopper_lse(float m, float l) {
    return 0.69314718055994531f * (m + __log2f(l));
}

// The library builds its own kernel (cuda/hopper/dense.cuh) on the helpers above and leaves this one out.
#ifndef HOPPER_NO_PROTOTYPE
// Causal self-attention of one sequence (Tq = Tk = T). Grid (ceil(T/128), heads), HOPPER_THREADS threads,
// HOPPER_SMEM_BYTES of dynamic shared memory. `group` = query heads per kv head. `scale_log2` = softmax scale *
// log2(e), > 0. `o` and `lse` ([T][heads] f32) are written for every query row < T.
extern "C" __global__ void __launch_bounds__(HOPPER_THREADS, 1)
    hopper_fa3_causal(const __grid_constant__ hopper_tmap tq, const __grid_constant__ hopper_tmap tk,
                      const __grid_constant__ hopper_tmap tv, unsigned short* __restrict__ o, long long o_tok,
                      long long o_head, float* __restrict__ lse, int T, int heads, int group, float scale_log2) {
    extern __shared__ unsigned char smem_raw[];
    const hopper_smem sm = hopper_smem_map(smem_raw);

    const int n_tiles = (T + HOPPER_BM - 1) / HOPPER_BM;
    // The longest rows first: with a causal mask tile i costs i + 1 key tiles, so the tail of the grid is short.
    const int qt = n_tiles - 1 - (int)blockIdx.x;
    const int h = blockIdx.y;
    const int hk = h / group;
    const int n_kt = qt + 1;
    const int wg = threadIdx.x / 128;

    hopper_init_barriers(sm, threadIdx.x == 0);

    if (wg == 0) {
        asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n" ::: "memory");
        if (threadIdx.x == 0) hopper_produce(sm, &tq, &tk, &tv, h, qt * HOPPER_BM, hk, 0, n_kt);
        return;
    }

    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n" ::: "memory");
    const int cw = wg - 1;  // consumer warpgroup: query rows [64 cw, 64 cw + 64) of the tile
    const int warp = (threadIdx.x / 32) % 4;
    const int lane = threadIdx.x % 32;
    // Accumulator fragment of m64nN: this thread holds rows r0 and r0 + 8, columns 8 j + 2 (lane % 4) + {0, 1}.
    const int r0 = 16 * warp + lane / 4;
    const int c0 = 2 * (lane % 4);
    const int q_row0 = qt * HOPPER_BM + 64 * cw + r0;  // absolute query index of row r0

    float acc_o[2][32];
#pragma unroll
    for (int c = 0; c < 2; ++c)
#pragma unroll
        for (int i = 0; i < 32; ++i) acc_o[c][i] = 0.f;
    float m[2] = {-HOPPER_INF, -HOPPER_INF};  // running row max of the logits, in log2 units (scale included)
    float l[2] = {0.f, 0.f};              // this thread's share of the row sums

    mbar_wait(sm.q_full, 0);
    const unsigned q_tile = sm.sq + cw * 64 * 128;
    hopper_mainloop<HOPPER_OVERLAP>(sm, q_tile, n_kt, cw, lane, scale_log2, acc_o, m, l, [&](float* acc_s, int kt) {
        if (kt == qt) mask_diagonal(acc_s, kt, q_row0, c0);
    });

    float inv[2];
    hopper_finish_rows(l, inv);
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int q = q_row0 + 8 * r;
        if (q >= T) continue;
        hopper_store_row(o + (long long)q * o_tok + (long long)h * o_head, acc_o, inv[r], r, c0);
        if (lane % 4 == 0) lse[(long long)q * heads + h] = hopper_lse(m[r], l[r]);
    }
}
#endif  // HOPPER_NO_PROTOTYPE
