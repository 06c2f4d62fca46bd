// Shared device helpers for the HiP kernels: the 16-bit element type, conversions, inline-PTX tensor-core and
// copy primitives, warp reductions, and the key list that the attention kernels walk.
//
// No CUDA toolkit header is included on purpose: engine hosts may only have the driver and libnvrtc, and NVRTC 13
// has no built-in cuda_bf16.h / cuda_fp16.h. Elements are therefore raw 16-bit words, converted with PTX cvt.
// Everything here needs sm_80 or newer (bf16 cvt, mma.sync m16n8k16 bf16, cp.async, ldmatrix).
#ifndef HIP_ATTN_COMMON_CUH
#define HIP_ATTN_COMMON_CUH

#include "hip_contract.h"

#if !defined(HIP_DTYPE) || !defined(HIP_HEAD_DIM) || !defined(HIP_KB) || !defined(HIP_BQ) || !defined(HIP_BK) || \
    !defined(HIP_SQ) || !defined(HIP_SK) || !defined(HIP_GROUP) || !defined(HIP_SHARE_KV) || !defined(HIP_CAUSAL) || \
    !defined(HIP_DECODE_STEP)
#error "hip_attn.cu needs -DHIP_DTYPE, HIP_HEAD_DIM, HIP_KB, HIP_BQ, HIP_BK, HIP_SQ, HIP_SK, HIP_GROUP, HIP_SHARE_KV, HIP_CAUSAL, HIP_DECODE_STEP"
#endif

static_assert(HIP_DTYPE == 0 || HIP_DTYPE == 1, "HIP_DTYPE must be 0 (bf16) or 1 (f16)");
static_assert(HIP_HEAD_DIM == 64 || HIP_HEAD_DIM == 128 || HIP_HEAD_DIM == 256, "HIP_HEAD_DIM must be 64, 128 or 256");
static_assert(HIP_BQ >= 1 && HIP_BQ <= hip_contract::cuda_max_bq(HIP_HEAD_DIM), "HIP_BQ outside [1, cuda_max_bq(HIP_HEAD_DIM)]");
static_assert(HIP_BK >= 1 && HIP_BK <= HIP_ATTN_CUDA_MAX_BK, "HIP_BK outside [1, HIP_ATTN_CUDA_MAX_BK]");
static_assert(HIP_KB >= 0 && HIP_KB <= hip_contract::cuda_max_kb(HIP_HEAD_DIM), "HIP_KB outside [0, cuda_max_kb(HIP_HEAD_DIM)]");
static_assert(HIP_SQ >= 1 && HIP_SK >= 1, "HIP_SQ and HIP_SK must be >= 1");
static_assert(HIP_GROUP >= 1 && HIP_GROUP <= HIP_ATTN_CUDA_MAX_GROUP, "HIP_GROUP outside [1, HIP_ATTN_CUDA_MAX_GROUP]");
static_assert(HIP_SHARE_KV == 0 || HIP_SHARE_KV == 1, "HIP_SHARE_KV must be 0 or 1");
static_assert(HIP_CAUSAL == 0 || HIP_CAUSAL == 1, "HIP_CAUSAL must be 0 or 1");
static_assert(HIP_DECODE_STEP == 0 || (HIP_DECODE_STEP == 1 && (HIP_SHARE_KV == 0 || HIP_GROUP == 1)),
              "HIP_DECODE_STEP must be 0, or 1 with masks of one q head (HIP_SHARE_KV 0 or HIP_GROUP 1)");

#define HIP_NEG_INF __int_as_float(0xff800000)

namespace hip {

typedef unsigned short elem_t;  // bf16 or f16 bits
typedef unsigned int u32;
typedef unsigned long long u64;

constexpr int D = HIP_HEAD_DIM;
constexpr int BQ = HIP_BQ;
constexpr int BK = HIP_BK;
constexpr int KB = HIP_KB;
constexpr int SQ = HIP_SQ;
constexpr int SK = HIP_SK;
constexpr int GROUP = HIP_GROUP;
constexpr bool SHARE = HIP_SHARE_KV != 0;
constexpr bool CAUSAL = HIP_CAUSAL != 0;
constexpr bool IS_BF16 = HIP_DTYPE == 0;

// Smem tiles hold rows of D elements padded by 8 (16 bytes), so the 8 row addresses of one ldmatrix phase fall
// on 8 different 16-byte bank groups.
constexpr int ROW = D + 8;

constexpr int INVALID_POS = 0x7fffffff;  // position of a key-list slot that holds no key: fails every "pos <= p"
constexpr float LOG2E = 1.4426950408889634f;
constexpr float LN2 = 0.6931471805599453f;

__host__ __device__ constexpr int cmax(int a, int b) { return a > b ? a : b; }
__host__ __device__ constexpr int cmin(int a, int b) { return a < b ? a : b; }
__host__ __device__ constexpr int ceil_div(int a, int b) { return (a + b - 1) / b; }
__host__ __device__ constexpr int round_up(int a, int b) { return ceil_div(a, b) * b; }
__host__ __device__ constexpr int next_pow2(int a) { int p = 1; while (p < a) p <<= 1; return p; }
__host__ __device__ constexpr int prev_pow2(int a) { int p = 1; while (2 * p <= a) p <<= 1; return p; }

// ---------------------------------------------------------------------------------------------------------------
// Conversions
__device__ __forceinline__ float to_f32(elem_t h) {
#if HIP_DTYPE == 0
    return __uint_as_float(((u32)h) << 16);
#else
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
#endif
}

__device__ __forceinline__ elem_t from_f32(float f) {
    elem_t h;
#if HIP_DTYPE == 0
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(f));
#else
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
#endif
    return h;
}

// Two floats -> one 32-bit register holding (lo in bits 0..15, hi in bits 16..31), the element order that
// mma fragments and little-endian memory both use.
__device__ __forceinline__ u32 pack2(float lo, float hi) {
    u32 r;
#if HIP_DTYPE == 0
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
#else
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
#endif
    return r;
}

__device__ __forceinline__ void unpack2(u32 v, float& lo, float& hi) {
    lo = to_f32((elem_t)(v & 0xffffu));
    hi = to_f32((elem_t)(v >> 16));
}

// 8 elements (one 16-byte vector) -> 8 floats
__device__ __forceinline__ void unpack8(const uint4& v, float* f) {
    unpack2(v.x, f[0], f[1]);
    unpack2(v.y, f[2], f[3]);
    unpack2(v.z, f[4], f[5]);
    unpack2(v.w, f[6], f[7]);
}

// Monotone map float -> u32 (a < b  <=>  ord(a) < ord(b)), after folding -0 into +0 and NaN into -inf so that
// equal f32 scores stay equal (the tie rule then decides) and a NaN never outranks a real score.
__device__ __forceinline__ u32 float_ord(float f) {
    if (f != f) f = HIP_NEG_INF;
    f = f + 0.0f;
    u32 u = __float_as_uint(f);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// ---------------------------------------------------------------------------------------------------------------
// The CTA's shared-memory struct: static, or (DYN) placed at the start of the launch's dynamic shared memory, for
// layouts above the 48 KiB a static declaration may take. The host passes at least sizeof(S) bytes.
template <class S, bool DYN>
__device__ __forceinline__ S& cta_smem() {
    if constexpr (DYN) {
        extern __shared__ __align__(16) unsigned char hip_dyn_smem[];
        return *reinterpret_cast<S*>(hip_dyn_smem);
    } else {
        __shared__ S s;
        return s;
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Shared-memory address, ldmatrix, mma.sync, cp.async
__device__ __forceinline__ u32 smem_addr(const void* p) {
    u32 r;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(r) : "l"(p));
    return r;
}

__device__ __forceinline__ void ldsm_x4(u32 addr, u32& r0, u32& r1, u32& r2, u32& r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3) : "r"(addr));
}
__device__ __forceinline__ void ldsm_x2(u32 addr, u32& r0, u32& r1) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];" : "=r"(r0), "=r"(r1) : "r"(addr));
}
__device__ __forceinline__ void ldsm_x4_t(u32 addr, u32& r0, u32& r1, u32& r2, u32& r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3) : "r"(addr));
}
__device__ __forceinline__ void ldsm_x2_t(u32 addr, u32& r0, u32& r1) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];" : "=r"(r0), "=r"(r1) : "r"(addr));
}

// D(16x8, f32) += A(16x16, row) * B(16x8, col)
__device__ __forceinline__ void mma16816(float* c, const u32* a, u32 b0, u32 b1) {
#if HIP_DTYPE == 0
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

// 16-byte global->shared copy that bypasses L1; !valid (src_bytes = 0) zero-fills the destination without reading,
// though src must still be a valid address. DST_OFF / SRC_OFF: compile-time byte offsets from the two addresses,
// which fold into the instruction, so the chunks of one row share one pair of address registers instead of
// computing a 64-bit address each. cp_async16 is the copy at the addresses themselves.
template <int DST_OFF, int SRC_OFF>
__device__ __forceinline__ void cp_async16_at(u32 dst, const void* src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0+%3], [%1+%4], 16, %2;" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0),
                 "n"(DST_OFF), "n"(SRC_OFF)
                 : "memory");
}
__device__ __forceinline__ void cp_async16(u32 dst, const void* src, bool valid) {
    cp_async16_at<0, 0>(dst, src, valid);
}
// Chunks J..N-1 of one row: 16 bytes each, STEP bytes apart in shared and in global memory, at compile-time
// offsets from one pair of address registers. With V_OFF >= 0, interleaved with the same chunks of a second row
// (src2, V_OFF bytes further in shared memory): a K row and its V row.
template <int N, int STEP, int V_OFF = -1, int J = 0>
__device__ __forceinline__ void cp_chunks(u32 dst, const void* src, const void* src2, bool valid) {
    if constexpr (J < N) {
        cp_async16_at<J * STEP, J * STEP>(dst, src, valid);
        if constexpr (V_OFF >= 0) cp_async16_at<V_OFF + J * STEP, J * STEP>(dst, src2, valid);
        cp_chunks<N, STEP, V_OFF, J + 1>(dst, src, src2, valid);
    }
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory"); }

__device__ __forceinline__ uint4 lds16(u32 addr) {
    uint4 v;
    asm volatile("ld.shared.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "r"(addr));
    return v;
}

__device__ __forceinline__ uint4 ldg16(const void* p) {
    uint4 v;
    asm volatile("ld.global.nc.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
    return v;
}

// Asks L2 for the 128-byte line holding p and goes on: nothing waits for it, and no register holds its data.
__device__ __forceinline__ void prefetch_l2(const void* p) { asm volatile("prefetch.global.L2 [%0];" ::"l"(p)); }

// ---------------------------------------------------------------------------------------------------------------
// Thread-block clusters (sm_90): distributed shared memory and the cluster-wide barrier (the decode search).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
// The shared::cluster address of `saddr` (a shared::cta address of this CTA's layout) in CTA `rank`.
__device__ __forceinline__ u32 cluster_map(u32 saddr, u32 rank) {
    u32 r;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(r) : "r"(saddr), "r"(rank));
    return r;
}
__device__ __forceinline__ void st_cluster(u32 addr, u32 v) {
    asm volatile("st.shared::cluster.u32 [%0], %1;" ::"r"(addr), "r"(v) : "memory");
}
__device__ __forceinline__ void st_cluster(u32 addr, int2 v) {
    asm volatile("st.shared::cluster.v2.s32 [%0], {%1, %2};" ::"r"(addr), "r"(v.x), "r"(v.y) : "memory");
}
// Every thread of every CTA of the cluster; release/acquire order the remote stores before it with the reads
// after it.
__device__ __forceinline__ void cluster_sync() {
    asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory");
}
// The two halves of cluster_sync, for a barrier that some CTAs only arrive at: a thread that exits after arriving
// no longer counts (PTX waits for the non-exited threads). relaxed: orders nothing (a CTA saying it has started).
__device__ __forceinline__ void cluster_arrive_relaxed() {
    asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory");
}
__device__ __forceinline__ void cluster_arrive() { asm volatile("barrier.cluster.arrive.release.aligned;" ::: "memory"); }
__device__ __forceinline__ void cluster_wait() { asm volatile("barrier.cluster.wait.acquire.aligned;" ::: "memory"); }
// The same shared-memory object in the CTA of cluster rank `rank`, as a generic pointer (plain loads and stores
// reach it through distributed shared memory).
template <class T>
__device__ __forceinline__ T* cluster_peer(T* ptr, u32 rank) {
    unsigned long long r;
    asm volatile("mapa.u64 %0, %1, %2;" : "=l"(r) : "l"(ptr), "r"(rank));
    return (T*)r;
}
#else
__device__ __forceinline__ void cluster_sync() { __syncthreads(); }
__device__ __forceinline__ void cluster_arrive_relaxed() {}
__device__ __forceinline__ void cluster_arrive() { __syncthreads(); }
__device__ __forceinline__ void cluster_wait() { __syncthreads(); }
template <class T>
__device__ __forceinline__ T* cluster_peer(T* ptr, u32) {
    return ptr;  // (no clusters: a cluster of one CTA)
}
#endif

// Programmatic dependent launch (sm_90): the host launches a decode kernel with the PDL attribute, so it may start
// while the kernel before it is still running. pdl_wait() blocks until that kernel has finished and its writes are
// visible (a no-op for an ordinary launch); pdl_trigger() lets the next kernel start launching.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// 2^x on the MUFU alone, without exp2f's fix-up for results in the denormal range (flushed to 0 here). The
// online softmax takes x <= 0: a weight below 2^-126 next to a row maximum of weight 1 changes no bit of an f32
// row sum or a 16-bit output.
__device__ __forceinline__ float exp2_ftz(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

// ---------------------------------------------------------------------------------------------------------------
// Warp reductions
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
// over the 4 lanes of an mma quad (lanes sharing groupID = lane / 4)
__device__ __forceinline__ float quad_max(float v) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
    return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ __forceinline__ float quad_sum(float v) {
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

__device__ __forceinline__ void set_error(unsigned long long flag_ptr, u32 bit) {
    if (flag_ptr) atomicOr((unsigned int*)flag_ptr, bit);
}

// ---------------------------------------------------------------------------------------------------------------
// Geometry of one query block (or decode query), docs/ALGORITHM.md section 3

// Number of search blocks in [sink, e): blocks of BK keys starting at sink, the last one clipped at e
// (hip_contract::search_blocks_i32, generated from src/contract.rs's search_blocks). prefill_seq_dense compares it
// with KB as hip_contract::all_blocks_selected does.
__device__ __forceinline__ int num_search_blocks(int sink, int e) { return hip_contract::search_blocks_i32(sink, e, BK); }

// The key list of one query block: sink keys S, then the selected blocks M in ascending order (count * BK slots,
// a slot past e -- the tail of a partial last block -- or of an out-of-range block holds no key), then the local
// keys [e, e + nL). Walking it in this order lets every attention kernel see a flat list of slots it can tile or
// split without caring which set a slot comes from.
struct KeyList {
    int nS;             // min(sink, Tk)
    int nM;             // count * BK
    int nL;             // local keys (causal: up to the last query of the block; decode: [e, p])
    int sink, e, NB;
    const int* blocks;  // count ascending block indices (smem or global)

    __device__ __forceinline__ int size() const { return nS + nM + nL; }

    // Absolute key position of slot idx, or INVALID_POS for an empty slot.
    __device__ __forceinline__ int pos(int idx) const {
        if (idx < nS) return idx;
        idx -= nS;
        if (idx < nM) {
            const int slot = idx / BK;
            const int off = idx - slot * BK;
            const int blk = blocks[slot];
            if (blk < 0 || blk >= NB) return INVALID_POS;
            const int t = sink + blk * BK + off;
            return t < e ? t : INVALID_POS;
        }
        idx -= nM;
        if (idx < nL) return e + idx;
        return INVALID_POS;
    }
};


// ---------------------------------------------------------------------------------------------------------------
// Prefill sequence bounds from cu_seqlens, validated so that no later index can leave the tensors. The totals
// check (cu_seqlens_q[batch] == total_q, cu_seqlens_k[batch] == total_k, as the CPU backend checks on the host)
// fails every sequence of the call at once: each CTA sees the same two entries, so all rows whose range lies
// inside the tensors are zeroed (lse -inf) and HIP_ATTN_DEVERR_SEQLENS is raised.
struct PrefillSeq {
    int q0, k0, Tq, Tk;
    bool q_range_ok;  // [q0, q0 + Tq) lies inside [0, total_q): outputs of this sequence may be written
};

// Every thread of the CTA calls it (a barrier): the whole of cu_seqlens_q and cu_seqlens_k must be non-decreasing
// for any sequence to pass. A sequence whose own bounds look fine in arrays that are not would overlap another
// sequence's rows and workspace slots, so such a batch is skipped whole (q_range_ok still says which rows a
// skipped sequence may zero: they are its own claim, and every sequence of that batch is skipped).
__device__ __forceinline__ bool prefill_seq(const hip_prefill_params& p, int b, PrefillSeq& s) {
    const int* cq = (const int*)p.cu_seqlens_q;
    const int* ck = (const int*)p.cu_seqlens_k;
    bool ordered = true;
    for (int i = threadIdx.x; i < p.batch; i += blockDim.x) ordered &= cq[i] <= cq[i + 1] && ck[i] <= ck[i + 1];
    ordered = !__syncthreads_or(!ordered);
    const int qa = cq[b], qb = cq[b + 1], ka = ck[b], kb = ck[b + 1];
    s.q0 = qa;
    s.k0 = ka;
    s.Tq = qb - qa;
    s.Tk = kb - ka;
    s.q_range_ok = qa >= 0 && qb >= qa && qb <= p.total_q;
    return ordered && s.q_range_ok && cq[0] == 0 && ck[0] == 0 && ka >= 0 && kb >= ka && kb <= p.total_k &&
           cq[p.batch] == p.total_q && ck[p.batch] == p.total_k && s.Tq <= p.max_seqlen_q &&
           s.Tk <= p.max_seqlen_k && s.Tq <= s.Tk;
}

// Mask-state records (layout in hip_contract.h). Every kernel that writes a record goes through store_record, so
// that none leaves without the writer's fingerprint.

// Writes a whole record: step, e, count, the fingerprint `fp` (the parameter block's state_fingerprint) and
// block(i) for i < count. Every thread of the CTA calls it with the same arguments; the block indices are spread
// over the threads and thread 0 writes the header. Readers are later kernels, so the order of the stores is free.
template <class Block>
__device__ __forceinline__ void store_record(int* rec, int step, int e, int count, int fp, const Block& block) {
    for (int i = threadIdx.x; i < count; i += blockDim.x) rec[HIP_ATTN_STATE_HEADER + i] = block(i);
    if (threadIdx.x == 0) {
        rec[HIP_ATTN_STATE_STEP_IDX] = step;
        rec[HIP_ATTN_STATE_E_IDX] = e;
        rec[HIP_ATTN_STATE_COUNT_IDX] = count;
        rec[HIP_ATTN_STATE_FPRINT_IDX] = fp;
        rec[HIP_ATTN_STATE_MAGIC_IDX] = HIP_ATTN_STATE_MAGIC;
    }
}

// A record whose magic says it holds a mask, written by a context of another configuration: its blocks and e mean
// something else here, so it is never reused (HIP_ATTN_DEVERR_MASK_CONFIG).
__device__ __forceinline__ bool record_foreign(int magic, int fp_stored, int fp) {
    return magic == HIP_ATTN_STATE_MAGIC && fp_stored != fp;
}

// e_B of a query block whose first query sits at position p0 (docs/ALGORITHM.md "three disjoint key sets").
__device__ __forceinline__ int local_start(int sink, int window, int p0, int Tk) {
    // Non-causal: no local set; raised to `sink` when Tk < sink so the search domain is never negative
    // (src/spec.rs BlockKeys::new does the same).
    if (!CAUSAL) return Tk > sink ? Tk : sink;
    const long long e = (long long)p0 + 1 - window;
    return e > sink ? (int)e : sink;
}

}  // namespace hip

#endif
