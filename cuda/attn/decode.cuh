// Decode attention: split-K over the single query's key list (hip_decode_attn, hip_decode_attn_direct); the
// combine of the splits (hip_decode_combine) is in epilogue.cuh; and the whole step (search, attention and
// combine) in one cluster kernel (hip_decode_step_wide). KV rows are addressed through decode_kv.cuh.
// The main loop walks the CTA's keys in chunks: their row offsets resolved (decode_resolve_chunk, mainloop.cuh),
// then per trip U rounds loaded (decode_load_rounds), scored, and folded in (decode_online_softmax); the step kernel
// takes its value rows through shared memory so that its whole share is one trip.
// Included by attention.cuh.
#ifndef HIP_ATTN_ATTN_DECODE_CUH
#define HIP_ATTN_ATTN_DECODE_CUH

namespace hip {

// The query row of q head h of sequence b that this lane multiplies (elements gl * 8 ..), as stored.
__device__ __forceinline__ uint4 decode_load_q(const hip_decode_params& p, int b, int h, int gl) {
    return ldg16((const elem_t*)p.q + (long long)b * p.q_seq_stride + (long long)h * p.q_head_stride + gl * 8);
}

// The query row's elements scaled into the log2 domain.
__device__ __forceinline__ void decode_scale_q(const hip_decode_params& p, const uint4& raw, float (&q)[8]) {
    unpack8(raw, q);
    const float sl2 = p.scale * LOG2E;
#pragma unroll
    for (int i = 0; i < 8; ++i) q[i] *= sl2;
}

// decode_split's hook once its first chunk's offsets are resolved (the page-table reads done, past the chunk's
// barrier) and before q is read: nothing here; the step kernel scales its query there.
struct DecodeNoHook {
    __device__ __forceinline__ void operator()() const {}
};

// The main loop of one split: keys [lo, hi) of the key list, folded into this lane's group's (m, l, acc). bad: a
// key's page could not be read; nan: a NaN logit (NaN query or key, or inf * 0), which makes the CPU backend's row
// NaN, so ours too. U rounds per trip. VS: the value rows travel through shared memory (a V stage of NGRP * U rows
// at `vstage`) while the key rows go to registers, so a trip holds U rounds in flight for the registers of U / 2
// (the step kernel: its whole share in one trip). first_resolved: called once, after the first chunk's offsets are
// resolved (its page-table reads done) and before q is read.
template <int U = UNR, bool VS = false, class Hook = DecodeNoHook, int CH>
__device__ __forceinline__ void decode_split(const hip_decode_params& p, const KeyList& kl, int b, int kvh, int lo,
                                             int hi, int tid, int grp, int gl, const float (&q)[8], float& m, float& l,
                                             float (&acc)[8], bool& bad, bool& nan, long long (&s_off)[CH],
                                             u32 vstage = 0, const Hook& first_resolved = Hook()) {
    const elem_t* kc = (const elem_t*)p.k_cache;
    const elem_t* vc = (const elem_t*)p.v_cache;
    // The next trip's rows are asked of L2 while this trip's loads wait (decode_prefetch_trip), only where a mask is
    // shared by a kv head's q heads and the split has more than two trips: there GROUP CTAs read the same rows, HBM
    // is far from busy, and each trip waits out HBM's latency. Where every CTA reads rows of its own (MHA at a large
    // batch, whose scattered rows already keep HBM busy) the prefetches made the step slower, and over one or two
    // trips they did not pay (measured: BENCHMARKS.md, optimization log, 2026-12-04).
    const bool ahead = SHARE && GROUP > 1 && hi - lo > 2 * NGRP * U;
    for (int c0 = lo; c0 < hi; c0 += CH) {
        const int c1 = cmin(hi, c0 + CH);
        decode_resolve_chunk(p, kl, b, kvh, c0, c1, tid, bad, s_off);
        if (c0 == lo) first_resolved();
        // Trip count is uniform over the CTA (shuffles below need whole warps).
        for (int base = c0; base < c1; base += NGRP * U) {
            uint4 kr[U], vr[U];
            bool valid[U];
            decode_load_rounds<U, VS>(kc, vc, s_off, base, c0, c1, grp, gl, kr, vr, valid, vstage);
            if (ahead) decode_prefetch_trip<U>(kc, vc, s_off, base + NGRP * U, c0, c1, tid);
            // The scores stay inline: as a function of their own they compiled to the same instructions in another
            // register order (the NaN flag's), so the split would need a GPU A/B of its own.
            float sv[U];
#pragma unroll
            for (int u = 0; u < U; ++u) {
                float kf[8];
                unpack8(kr[u], kf);
                float d = 0.f;
#pragma unroll
                for (int i = 0; i < 8; ++i) d = fmaf(q[i], kf[i], d);
#pragma unroll
                for (int off = DG / 2; off > 0; off >>= 1) d += __shfl_xor_sync(0xffffffffu, d, off);
                sv[u] = valid[u] ? d : HIP_NEG_INF;
                nan |= valid[u] && d != d;
            }
            if constexpr (VS) {
                // (the next trip's copies into these slots are issued after these reads in this thread's program
                // order, and a read cannot observe a write that follows it: no barrier between trips)
                cp_async_wait<0>();
#pragma unroll
                for (int u = 0; u < U; ++u) vr[u] = lds16(decode_vslot(vstage, u, grp, gl));
            }
            decode_online_softmax(sv, vr, m, l, acc);
        }
    }
}

// A split's result once its main loop is done (every thread of the CTA): empty (poisoned) on a bad page, NaN on a
// NaN logit, else the merge of its key groups. The groups' (m, l, acc) are staged before the verdict is known, so
// that one CTA barrier both publishes them and says whether any thread met either case (rare: a second barrier then
// tells which), where a barrier per verdict and one for the stage took three.
template <bool DIRECT>
__device__ __forceinline__ void decode_finish(const hip_decode_params& p, float* po, float* plse, int b, int h,
                                              int tid, int grp, int gl, float m, float l, const float (&acc)[8],
                                              bool bad, bool nan, float (&s_o)[NGRP][D], float (&s_m)[NGRP],
                                              float (&s_l)[NGRP]) {
    decode_stage_groups(grp, gl, m, l, acc, s_o, s_m, s_l);
    if (__syncthreads_or(bad || nan)) {
        if (__syncthreads_or(bad)) {
            if (tid == 0) set_error(p.error_flag, HIP_ATTN_DEVERR_PAGE_TABLE);
            decode_write_empty<DIRECT>(p, po, plse, b, h, tid, __uint_as_float(DECODE_POISON_BITS));
        } else {
            decode_write_nan<DIRECT>(p, po, plse, b, h, tid);
        }
        return;
    }
    decode_epilogue<DIRECT>(p, po, plse, b, h, tid, s_o, s_m, s_l);
}

// The key list of a stored or just-searched mask: count blocks (ascending indices in `blocks`) and local start e.
__device__ __forceinline__ KeyList decode_key_list(const hip_decode_params& p, int Tk, int e, int count,
                                                   const int* blocks) {
    KeyList kl;
    kl.nS = cmin(p.sink, Tk);
    kl.nM = count * BK;
    kl.nL = cmax(0, Tk - e);
    kl.sink = p.sink;
    kl.e = e;
    kl.NB = num_search_blocks(p.sink, e);
    kl.blocks = blocks;
    return kl;
}

// hip_decode_attn and hip_decode_attn_direct: grid (num_splits, num_q_heads, batch), after the search kernel.
// DIRECT (num_splits == 1): the CTA holds the whole key list and writes the output row and lse as the combine
// would (with one split it multiplies by exp(0) = 1 and divides by 1: the same values; only a -0 element, which
// the combine's sum turns into +0, keeps its sign), so no combine runs.
template <bool DIRECT>
__device__ __forceinline__ void decode_attn(const hip_decode_params& p) {
    __shared__ float s_o[NGRP][D];
    __shared__ float s_m[NGRP], s_l[NGRP];
    __shared__ long long s_off[DCH];  // element offset of each key of the chunk, -1 = no key
    const int split = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int tid = threadIdx.x, grp = tid / DG, gl = tid - grp * DG;
    const long long part = ((long long)b * p.num_q_heads + h) * p.num_splits + split;
    // (the split's partial, formed where it is written: held across the main loop, the two pointers cost 6 registers)
#define HIP_DECODE_PART (float*)p.part_o + part * D, (float*)p.part_lse + part
    const float poison = __uint_as_float(DECODE_POISON_BITS);
    pdl_trigger();  // the combine may launch; it waits for this kernel

    // Inputs first, while the search kernel may still run: the query and the sequence length are the caller's
    // (the previous step's combine, the last reader of the partials, finished before the search started).
    const int Tk = ((const int*)p.seqlens_k)[b];
    if (!decode_seq_ok(p, Tk)) {
        if (tid == 0 && split == 0)
            set_error(p.error_flag, Tk >= 1 && Tk <= p.max_seqlen_k ? HIP_ATTN_DEVERR_PAGE_TABLE : HIP_ATTN_DEVERR_SEQLENS);
        decode_write_empty<DIRECT>(p, HIP_DECODE_PART, b, h, tid, poison);
        return;
    }
    float q[8];
    decode_scale_q(p, decode_load_q(p, b, h, gl), q);
    pdl_wait();  // the search kernel has written the mask record
    const int mh = SHARE ? h / GROUP : h;
    const int kvh = h / GROUP;
    const int* rec = (const int*)p.mask_state + ((long long)b * p.mask_heads + mh) * p.state_ints;
    const int magic = rec[HIP_ATTN_STATE_MAGIC_IDX];
    const int e = rec[HIP_ATTN_STATE_E_IDX];
    const int cnt = rec[HIP_ATTN_STATE_COUNT_IDX];
    // (the search re-searched a foreign record; one left here means the search skipped this head)
    const bool foreign = record_foreign(magic, rec[HIP_ATTN_STATE_FPRINT_IDX], p.state_fingerprint);
    if (magic != HIP_ATTN_STATE_MAGIC || foreign || p.state_ints < HIP_ATTN_STATE_HEADER + KB ||
        !record_header_ok(e, cnt, p.sink, Tk)) {
        if (tid == 0 && split == 0 && magic == HIP_ATTN_STATE_MAGIC)
            set_error(p.error_flag, foreign ? HIP_ATTN_DEVERR_MASK_CONFIG : HIP_ATTN_DEVERR_MASK_STATE);
        decode_write_empty<DIRECT>(p, HIP_DECODE_PART, b, h, tid, poison);
        return;
    }
    const KeyList kl = decode_key_list(p, Tk, e, cnt, rec + HIP_ATTN_STATE_HEADER);
    const long long n = kl.size();
    const int lo = (int)(n * split / p.num_splits);
    const int hi = (int)(n * (split + 1) / p.num_splits);

    float m = HIP_NEG_INF, l = 0.f, acc[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) acc[i] = 0.f;
    bool bad = false, nan = false;
    decode_split(p, kl, b, kvh, lo, hi, tid, grp, gl, q, m, l, acc, bad, nan, s_off);
    decode_finish<DIRECT>(p, HIP_DECODE_PART, b, h, tid, grp, gl, m, l, acc, bad, nan, s_o, s_m, s_l);
#undef HIP_DECODE_PART
}

// ---------------------------------------------------------------------------------------------------------------
// hip_decode_step_wide: a whole decode step of one (sequence, q head) in one cluster of CL CTAs, grid
// (mask_heads * CL, batch), for a mask of one q head (MHA, or masks per q head: plan::decode_step_kernel; the
// module defines HIP_DECODE_STEP). The cluster searches (or reuses the stored mask) as hip_decode_search does, then
// each CTA attends the CL-th share of the key list (split = rank) and stores its split partial into rank 0's shared
// memory through distributed shared memory, and rank 0 combines them: no partials in the workspace, no second or
// third kernel, so a step waits on one launch and the cluster's barriers instead of three launches in a chain (the
// cached step's cost). After the search, its gather stages (sm.k) hold the attention's scratch, the partials and
// the V stage (the value rows of the CTA's share), and sm.won the mask's block indices. A mask shared by a kv head's
// q heads is searched by hip_decode_search_wide instead, and the attention kernels spread its heads over more CTAs
// than a cluster has (measured: BENCHMARKS.md, 2026-12-03). (Without clusters, CL == 1, it compiles to the same
// step on one CTA, which the host does not launch: there the three-kernel step splits the keys over more CTAs.)
// Keys whose offsets the step kernel resolves per chunk: a CTA's share of a k=512 step is ~81 keys, and the
// smaller array leaves room in the search's stages for the CL partials.
constexpr int SCH = 256;
template <int CL>
struct StepSmem {
    float o[NGRP][D];
    float m[NGRP], l[NGRP];
    long long off[SCH];
    float po[CL][D];  // rank 0: every CTA's split partial, stored by that CTA
    float plse[CL];
};
static_assert(sizeof(StepSmem<S_DCL>) <= s_rows(S_RP, S_NST) * ROW * 2,
              "hip_decode_step_wide: the attention's scratch must fit in the search's stages (SearchSmem::k)");
static_assert(S_THREADS == DC_THREADS, "hip_decode_step_wide: the search and the attention share the CTA");
// The step kernel's V stage: the rest of the search's stages after StepSmem. Its rounds per trip: as many as the stage
// holds, at most twice the attention kernels' (its key rows in registers then take what their K and V rows take):
// 11 at head_dim 128 up to 420 blocks (the defaults: 256), so that a CTA's share of a k=512 step (~81 keys) is one
// trip instead of two, which made the cached step 1 us faster; K and V rows of 11 rounds in registers took 160
// registers, or spilled at 128 (BENCHMARKS.md, optimization log, 2026-12-04).
// Where the stage holds fewer rounds than the attention kernels keep in registers (large k: the search's fixed
// arrays leave fewer stages), the step kernel keeps their form instead (rounds in registers, UNR per trip).
constexpr int STEP_VSTAGE = round_up((int)sizeof(StepSmem<S_DCL>), 16);
constexpr int STEP_ROOM = (s_rows(S_RP, S_NST) * ROW * 2 - STEP_VSTAGE) / (NGRP * D * 2);  // rounds the stage holds
constexpr bool STEP_VS = STEP_ROOM >= UNR;
constexpr int STEP_U = STEP_VS ? cmin(2 * UNR, STEP_ROOM) : UNR;

template <int CL>
__device__ __forceinline__ void decode_step_wide(const hip_decode_params& p) {
    static_assert(CL == S_DCL && (!SHARE || GROUP == 1), "hip_decode_step_wide: a cluster per q head's mask");
    __shared__ SearchSmem sm;
    const int h = blockIdx.x / CL, rank = blockIdx.x % CL, b = blockIdx.y;
    const int tid = threadIdx.x, grp = tid / DG, gl = tid - grp * DG;
    int* blocks = (int*)sm.won;
    const DecodeMask mask = decode_search<CL, true>(p, sm, blocks);
    // A CTA stores into another's shared memory only once that one has started: where the search crossed no
    // cluster barrier (a reused record, bad input), each CTA says it has started now and waits for the others just
    // before its stores, by when they have long arrived, so a cached step gets no barrier of its own there.
    if (!mask.met) cluster_arrive_relaxed();
    // The search's last cluster barrier is behind it (no CTA stores into another's shared memory any more), and
    // only this CTA uses its stages from here on: a CTA barrier publishes the block list to its threads. A reused
    // record's list (next_step > 0) was written before the record check's barrier, which published it.
    if (mask.next_step == 0) __syncthreads();
    StepSmem<CL>& st = *reinterpret_cast<StepSmem<CL>*>(sm.k);
    float* po = cluster_peer(&st.po[rank][0], 0);
    float* plse = cluster_peer(&st.plse[rank], 0);
    if (mask.count < 0) {  // (reported by the search)
        if (!mask.met) cluster_wait();
        decode_write_empty<false>(p, po, plse, b, h, tid, __uint_as_float(DECODE_POISON_BITS));
    } else {
        // The query's load is issued before the key list's page-table reads and scaled once they are done (the
        // empty asm pins the scaling there: else the compiler hoists it, and the wait for the load with it, above
        // their issue), so that the two round trips overlap instead of following each other.
        const uint4 qraw = decode_load_q(p, b, h, gl);
        float q[8];
        auto scale_q = [&] {
            uint4 r = qraw;
            asm volatile("" : "+r"(r.x), "+r"(r.y), "+r"(r.z), "+r"(r.w));
            decode_scale_q(p, r, q);
        };
        const KeyList kl = decode_key_list(p, mask.Tk, mask.e, mask.count, blocks);
        const long long n = kl.size();
        const int lo = (int)(n * rank / CL), hi = (int)(n * (rank + 1) / CL);
        float m = HIP_NEG_INF, l = 0.f, acc[8];
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[i] = 0.f;
        bool bad = false, nan = false;
        decode_split<STEP_U, STEP_VS>(p, kl, b, h / GROUP, lo, hi, tid, grp, gl, q, m, l, acc, bad, nan, st.off,
                                      smem_addr(sm.k) + STEP_VSTAGE, scale_q);
        if (!mask.met) cluster_wait();
        decode_finish<false>(p, po, plse, b, h, tid, grp, gl, m, l, acc, bad, nan, st.o, st.m, st.l);
    }
    // Every CTA's partial is stored (release) before rank 0 reads them (acquire); the others leave at once, as
    // nothing reads their shared memory (the barrier waits only for threads that have not exited).
    cluster_arrive();
    if (rank != 0) return;
    cluster_wait();
    decode_combine_row<CL>(
        p, b, h, CL, [&](int s2) { return st.plse[s2]; }, [&](int s2, int d) { return st.po[s2][d]; }, tid,
        DC_THREADS);
    if (mask.next_step > 0 && tid == 0)
        ((int*)p.mask_state)[((long long)b * p.mask_heads + h) * p.state_ints + HIP_ATTN_STATE_STEP_IDX] = mask.next_step;
}

}  // namespace hip

#endif
