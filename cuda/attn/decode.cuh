// Decode attention: split-K over the single query's key list (hip_decode_attn, hip_decode_attn_direct); the
// combine of the splits (hip_decode_combine) is in epilogue.cuh. KV rows are addressed through decode_kv.cuh.
// The main loop walks the CTA's keys in chunks: their row offsets resolved (decode_resolve_chunk, mainloop.cuh),
// then per trip UNR rounds loaded (decode_load_rounds), scored, and folded in (decode_online_softmax).
// Included by attention.cuh.
#ifndef HIP_ATTN_ATTN_DECODE_CUH
#define HIP_ATTN_ATTN_DECODE_CUH

namespace hip {

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
    const float poison = __uint_as_float(DECODE_POISON_BITS);
    pdl_trigger();  // the combine may launch; it waits for this kernel

    // Inputs first, while the search kernel may still run: the query and the sequence length are the caller's
    // (the previous step's combine, the last reader of the partials, finished before the search started).
    const int Tk = ((const int*)p.seqlens_k)[b];
    if (!decode_seq_ok(p, Tk)) {
        if (tid == 0 && split == 0)
            set_error(p.error_flag, Tk >= 1 && Tk <= p.max_seqlen_k ? HIP_ATTN_DEVERR_PAGE_TABLE : HIP_ATTN_DEVERR_SEQLENS);
        decode_write_empty<DIRECT>(p, part, b, h, tid, poison);
        return;
    }
    float q[8];
    {
        const elem_t* qp = (const elem_t*)p.q + (long long)b * p.q_seq_stride + (long long)h * p.q_head_stride + gl * 8;
        unpack8(ldg16(qp), q);
        const float sl2 = p.scale * LOG2E;
#pragma unroll
        for (int i = 0; i < 8; ++i) q[i] *= sl2;
    }
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
        decode_write_empty<DIRECT>(p, part, b, h, tid, poison);
        return;
    }
    KeyList kl;
    kl.nS = cmin(p.sink, Tk);
    kl.nM = cnt * BK;
    kl.nL = cmax(0, Tk - e);
    kl.sink = p.sink;
    kl.e = e;
    kl.NB = num_search_blocks(p.sink, e);
    kl.blocks = rec + HIP_ATTN_STATE_HEADER;
    const long long n = kl.size();
    const int lo = (int)(n * split / p.num_splits);
    const int hi = (int)(n * (split + 1) / p.num_splits);

    const elem_t* kc = (const elem_t*)p.k_cache;
    const elem_t* vc = (const elem_t*)p.v_cache;

    float m = HIP_NEG_INF, l = 0.f, acc[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) acc[i] = 0.f;
    bool bad = false;
    bool nan = false;  // a NaN logit (NaN query or key, or inf * 0): the CPU backend's row is NaN, so is ours

    for (int c0 = lo; c0 < hi; c0 += DCH) {
        const int c1 = cmin(hi, c0 + DCH);
        decode_resolve_chunk(p, kl, b, kvh, c0, c1, tid, bad, s_off);
        // Trip count is uniform over the CTA (shuffles below need whole warps).
        for (int base = c0; base < c1; base += NGRP * UNR) {
            uint4 kr[UNR], vr[UNR];
            bool valid[UNR];
            decode_load_rounds(kc, vc, s_off, base, c0, c1, grp, gl, kr, vr, valid);
            // The scores stay inline: as a function of their own they compiled to the same instructions in another
            // register order (the NaN flag's), so the split would need a GPU A/B of its own.
            float sv[UNR];
#pragma unroll
            for (int u = 0; u < UNR; ++u) {
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
            decode_online_softmax(sv, vr, m, l, acc);
        }
    }

    if (__syncthreads_or(bad)) {
        if (tid == 0) set_error(p.error_flag, HIP_ATTN_DEVERR_PAGE_TABLE);
        decode_write_empty<DIRECT>(p, part, b, h, tid, poison);
        return;
    }
    if (__syncthreads_or(nan)) {
        decode_write_nan<DIRECT>(p, part, b, h, tid);
        return;
    }
    decode_epilogue<DIRECT>(p, part, b, h, tid, grp, gl, m, l, acc, s_o, s_m, s_l);
}

}  // namespace hip

#endif
