// Attention main loops: tile geometry and the stages that move keys and values through a CTA. Included by
// attention.cuh before the kernels that compose them.
#ifndef HIP_ATTN_ATTN_MAINLOOP_CUH
#define HIP_ATTN_ATTN_MAINLOOP_CUH

namespace hip {

// ---------------------------------------------------------------------------------------------------------------
// Decode. Each CTA walks a contiguous chunk of the query's key list. A key row is read by G = D/8 lanes, 16 bytes
// each (coalesced), so a CTA works on NGRP keys at once and UNR rounds of them are in flight per loop trip.
// The row offsets of up to DCH keys are resolved first (block index, then page table: two dependent loads, done
// for all DCH keys at once) into shared memory, so a trip of the main loop waits on one HBM round trip, not three.
constexpr int DC_THREADS = HIP_ATTN_DECODE_THREADS;
constexpr int DG = D / 8;                 // lanes per key row
constexpr int NGRP = DC_THREADS / DG;     // keys in parallel per CTA
constexpr int UNR = D <= 128 ? 8 : 4;     // rounds in flight
constexpr int DCH = 1024;                 // keys whose offsets are resolved per chunk
static_assert(DG <= 32 && DC_THREADS % DG == 0, "decode grouping");
static_assert(DCH % DC_THREADS == 0 && DCH % (NGRP * UNR) == 0, "decode chunking");

// ---------------------------------------------------------------------------------------------------------------
// Prefill. The kernel (prefill.cuh) keeps the loop over key tiles and its barriers; these are the bodies of its
// stages, inlined, so that each tile reads as the sequence of stages.

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
