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

}  // namespace hip

#endif
