// Block-sparse attention over the HiP key list (docs/ALGORITHM.md section 6):
//  - prefill: FlashAttention-2 style, one CTA per query block and q head, key tiles gathered from the key list
//    (sinks, selected blocks ascending, local range) with cp.async, S = QK^T and O += PV with mma.sync, online
//    softmax in f32 in the log2 domain;
//  - decode: split-K over the key list of the single query, one CTA per (split, q head, sequence), then a combine;
//    with one split the CTA writes the output row itself (hip_decode_attn_direct) and no combine runs.
#ifndef HIP_ATTN_ATTENTION_CUH
#define HIP_ATTN_ATTENTION_CUH

#include "common.cuh"
#include "search.cuh"

// The stages by header (geometry and main loops, masking, online softmax, epilogues), then one header per kernel
// family (prefill, decode) composing them.
#include "attn/mainloop.cuh"
#include "attn/mask.cuh"
#include "attn/softmax.cuh"
#include "attn/epilogue.cuh"
#include "attn/prefill.cuh"
#include "attn/decode.cuh"

#endif
