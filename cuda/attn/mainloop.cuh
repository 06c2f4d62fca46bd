// Attention main loops: tile geometry and the stages that move keys and values through a CTA and multiply them
// (decode: offsets, loads; prefill: gather, S = QK^T, O += PV). Included by attention.cuh before the kernels that
// compose them, which keep the loops themselves.
#ifndef HIP_ATTN_ATTN_MAINLOOP_CUH
#define HIP_ATTN_ATTN_MAINLOOP_CUH

namespace hip {

// ---------------------------------------------------------------------------------------------------------------
// Decode. Each CTA walks a contiguous chunk of the query's key list. A key row is read by G = D/8 lanes, 16 bytes
// each (coalesced), so a CTA works on NGRP keys at once and U rounds of them are in flight per loop trip (UNR in
// the attention kernels, STEP_U in the step kernel, whose value rows go through shared memory).
// The row offsets of a chunk of keys (CH in the templates below, the extent of the offsets' array: DCH in the
// attention kernels) are resolved first (block index, then page table: two dependent loads, done for the whole
// chunk at once) into shared memory, so a trip of the main loop waits on one HBM round trip, not three.
constexpr int DC_THREADS = HIP_ATTN_DECODE_THREADS;
constexpr int DG = D / 8;                 // lanes per key row
constexpr int NGRP = DC_THREADS / DG;     // keys in parallel per CTA
constexpr int UNR = D <= 128 ? 8 : 4;     // rounds in flight
constexpr int DCH = 1024;                 // keys whose offsets are resolved per chunk (the attention kernels)
static_assert(DG <= 32 && DC_THREADS % DG == 0, "decode grouping");

// Shared address of this lane's 16 bytes of round u's value row in a V stage (decode_load_rounds' VS): a lane
// reads back only what it copied itself, so its own cp.async wait orders the two and no CTA barrier is needed.
__device__ __forceinline__ u32 decode_vslot(u32 vstage, int u, int grp, int gl) {
    return vstage + (u32)(((u * NGRP + grp) * DG + gl) * 16);
}

// Resolve the row offsets of the chunk [c0, c1) of the key list into s_off (-1: no key), one per thread and
// round, all loads first into registers, then the stores: the loads do not wait on each other. The barriers make
// the previous chunk's offsets consumed before they are overwritten, and the new ones visible to every group.
template <int CH>
__device__ __forceinline__ void decode_resolve_chunk(const hip_decode_params& p, const KeyList& kl, int b, int kvh,
                                                     int c0, int c1, int tid, bool& bad, long long (&s_off)[CH]) {
    static_assert(CH % DC_THREADS == 0, "decode chunking");
    long long offs[CH / DC_THREADS];
#pragma unroll
    for (int j = 0; j < CH / DC_THREADS; ++j) {
        const int idx = c0 + j * DC_THREADS + tid;
        const int pos = idx < c1 ? kl.pos(idx) : INVALID_POS;
        offs[j] = pos != INVALID_POS ? decode_kv_offset(p, b, kvh, pos, bad) : -1;
    }
    __syncthreads();  // the previous chunk's offsets are consumed
#pragma unroll
    for (int j = 0; j < CH / DC_THREADS; ++j) s_off[j * DC_THREADS + tid] = offs[j];
    __syncthreads();
}

// Load one trip's U rounds of key and value rows (this lane's 16 bytes of each) of the keys base + u * NGRP +
// grp; valid[u] says whether round u has a key (past c1 or a padding slot: zeros). VS: the value rows go to shared
// memory instead (decode_split's V stage at `vstage`, round u's 16 bytes of this lane at vslot(u)), by cp.async in
// one commit group; vr is left untouched.
template <int U, bool VS, int CH>
__device__ __forceinline__ void decode_load_rounds(const elem_t* kc, const elem_t* vc, const long long (&s_off)[CH],
                                                   int base, int c0, int c1, int grp, int gl, uint4 (&kr)[U],
                                                   uint4 (&vr)[U], bool (&valid)[U], u32 vstage) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
        const int idx = base + u * NGRP + grp;
        const long long off = idx < c1 ? s_off[idx - c0] : -1;
        valid[u] = off >= 0;
        kr[u] = valid[u] ? ldg16(kc + off + gl * 8) : make_uint4(0, 0, 0, 0);
        if constexpr (VS)
            cp_async16(decode_vslot(vstage, u, grp, gl), vc + (valid[u] ? off : 0) + gl * 8, valid[u]);
        else
            vr[u] = valid[u] ? ldg16(vc + off + gl * 8) : make_uint4(0, 0, 0, 0);
    }
    if constexpr (VS) cp_async_commit();
}

// Ask L2 for the key and value rows of the trip of keys from `base` (those of [c0, c1) that have a key), one
// 128-byte line of each per thread, and go on. Called a trip ahead (decode_split says where), HBM serves the next
// trip's rows while this trip's loads wait and are scored, and the next loads find them in L2: two trips of rows
// in flight for the registers of one.
template <int U, int CH>
__device__ __forceinline__ void decode_prefetch_trip(const elem_t* kc, const elem_t* vc, const long long (&s_off)[CH],
                                                     int base, int c0, int c1, int tid) {
    constexpr int LE = 128 / (int)sizeof(elem_t);  // elements per line
    constexpr int LINES = ceil_div(D, LE);         // lines per row (rows start on a line where the strides allow)
    constexpr int N = NGRP * U * LINES;
#pragma unroll
    for (int j = 0; j < ceil_div(N, DC_THREADS); ++j) {
        const int w = tid + j * DC_THREADS;
        const int key = w / LINES, line = w - key * LINES;
        const int idx = base + key;
        const long long off = w < N && idx < c1 ? s_off[idx - c0] : -1;
        if (off >= 0) {
            prefetch_l2(kc + off + line * LE);
            prefetch_l2(vc + off + line * LE);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Prefill. The kernel (prefill.cuh) keeps the loop over key tiles and its barriers; these are the bodies of its
// stages, inlined, so that each tile reads as the sequence of stages.

// Gather tile t of the key list (K and V rows of key-list slots t * TK ..) into stage t & 1 with cp.async, and the
// rows' key positions into sm.kpos (the mask reads them); the caller commits the group. SUBS threads share a key row:
// they look its position up and form its addresses once, then copy interleaved 16-byte chunks (per-chunk address
// arithmetic outweighed the MMAs). TK * SUBS never exceeds the CTA, so a copying thread takes the same row (crow) and
// chunks (csub) of every tile. The dense kernel (registers to spare) keeps that row's shared-memory address (kd0) and
// chunk sources (kg_c, vg_c) across tiles and folds the chunks' offsets into the copies: its issue shrank from ~100 to
// ~60 instructions per tile. The same change in the block-sparse kernel, held at 128 registers, made prefill 2% slower:
// it keeps its form.
template <int TK, int SUBS, int THREADS, bool DENSE, class Smem>
__device__ __forceinline__ void prefill_gather(Smem& sm, const hip_prefill_params& p, const KeyList& kl, int t,
                                               int tid, const elem_t* kg, const elem_t* vg, bool copier, int crow,
                                               int csub, u32 kd0, const elem_t* kg_c, const elem_t* vg_c) {
    constexpr int CPR = D / 8;
    constexpr u32 V_BYTES = TK * ROW * 2;
    constexpr u32 STAGE_BYTES = 2 * V_BYTES;
    if constexpr (DENSE) {
        if (copier) {
            const int st = t & 1;
            const int pos = kl.pos(t * TK + crow);
            const bool v = pos != INVALID_POS;
            if (csub == 0) sm.kpos[st][crow] = pos;
            const elem_t* ks_src = kg_c + (v ? (long long)pos * p.k_tok_stride : 0);
            const elem_t* vs_src = vg_c + (v ? (long long)pos * p.v_tok_stride : 0);
            cp_chunks<CPR / SUBS, SUBS * 16, V_BYTES>(kd0 + st * STAGE_BYTES, ks_src, vs_src, v);
        }
    } else {
        const int st = t & 1;
        for (int w = tid; w < TK * SUBS; w += THREADS) {
            const int row = w / SUBS, sub = w - row * SUBS;
            const int pos = kl.pos(t * TK + row);
            const bool v = pos != INVALID_POS;
            if (sub == 0) sm.kpos[st][row] = pos;
            const elem_t* ks_src = kg + (v ? (long long)pos * p.k_tok_stride : 0);
            const elem_t* vs_src = vg + (v ? (long long)pos * p.v_tok_stride : 0);
            const u32 kd = smem_addr(&sm.kv[st][0][row * ROW]), vd = smem_addr(&sm.kv[st][1][row * ROW]);
#pragma unroll
            for (int j = 0; j < CPR / SUBS; ++j) {
                const int part = sub + j * SUBS;
                cp_async16(kd + part * 16, ks_src + part * 8, v);
                cp_async16(vd + part * 16, vs_src + part * 8, v);
            }
        }
    }
}

// S = QK^T for one tile of a warp: its MT m-tiles of query rows against its KW keys of the stage at kt (this
// lane's ldmatrix address of the warp's first key row). MT == 1 takes Q as A fragments held in registers (qf);
// MT > 1 reads them from shared memory (q_lane) at every k-step, so that each K fragment feeds MT MMAs. qa holds
// one k-step's A fragments: the caller declares it because a local array of an inlined function is allocated
// ahead of the caller's own, and that order alone changed the kernel's register assignment and schedule.
template <int MT, int KW>
__device__ __forceinline__ void prefill_qk(float (&sc)[MT][KW / 8][4], u32 (&qa)[MT][4],
                                           const u32 (&qf)[MT == 1 ? D / 16 : 1][4], u32 q_lane, u32 kt) {
#pragma unroll
    for (int m = 0; m < MT; ++m)
#pragma unroll
        for (int n = 0; n < KW / 8; ++n)
#pragma unroll
            for (int i = 0; i < 4; ++i) sc[m][n][i] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
        for (int m = 0; m < MT; ++m) {
            if (MT == 1) {
#pragma unroll
                for (int i = 0; i < 4; ++i) qa[m][i] = qf[kk][i];
            } else {
                ldsm_x4(q_lane + (m * 16 * ROW + kk * 16) * 2, qa[m][0], qa[m][1], qa[m][2], qa[m][3]);
            }
        }
#pragma unroll
        for (int n = 0; n < KW / 8; n += 2) {
            u32 b0, b1, b2, b3;
            ldsm_x4(kt + (n * 8 * ROW + kk * 16) * 2, b0, b1, b2, b3);
#pragma unroll
            for (int m = 0; m < MT; ++m) {
                mma16816(sc[m][n], qa[m], b0, b1);
                mma16816(sc[m][n + 1], qa[m], b2, b3);
            }
        }
    }
}

// O += PV for one tile of a warp: P as A fragments (pf, from the online softmax), V of the stage at vt (this lane's
// transposing ldmatrix address of the warp's first key row). Each V fragment feeds MT MMAs.
template <int MT, int KW>
__device__ __forceinline__ void prefill_pv(float (&o)[MT][D / 8][4], const u32 (&pf)[MT][KW / 16][4], u32 vt) {
#pragma unroll
    for (int kk = 0; kk < KW / 16; ++kk) {
#pragma unroll
        for (int n = 0; n < D / 8; n += 2) {
            u32 b0, b1, b2, b3;
            ldsm_x4_t(vt + (kk * 16 * ROW + n * 8) * 2, b0, b1, b2, b3);
#pragma unroll
            for (int m = 0; m < MT; ++m) {
                mma16816(o[m][n], pf[m][kk], b0, b1);
                mma16816(o[m][n + 1], pf[m][kk], b2, b3);
            }
        }
    }
}

}  // namespace hip

#endif
