// HiP mask search (docs/ALGORITHM.md section 4): the hierarchical tree search shared by prefill
// (one CTA per query block and mask head) and decode (one CTA, or a cluster of S_DCL, per sequence and mask head).
//
// One iteration scores the 2*KB branches of the current KB chunks by their representative blocks (except those
// whose key the previous iteration already computed: plan_scoring). The scores are
// a GEMM: rows = sampled queries (times the GQA group when masks are shared), columns = the sampled keys of the
// representative blocks, computed with mma.sync (f32 accumulate) from smem tiles: the rows of a pass sit in smem,
// key columns are gathered TC at a time with cp.async. The max over rows and over a branch's sampled keys is
// folded straight into the branch's key with a shared-memory atomicMin, so no score matrix is stored.
// Top-KB is a radix select over the 32-bit keys (smaller = better; ties: lower branch id); the winners are
// compacted in branch order so the chunks stay in ascending block order (branch order == block order, which is
// what makes the tie rule "lower block index wins" a plain comparison of branch ids).
#ifndef HIP_ATTN_SEARCH_CUH
#define HIP_ATTN_SEARCH_CUH

#include "common.cuh"
#include "decode_kv.cuh"

// The prefill search scores on one warpgroup MMA per tile where the module targets sm_90a at head_dim 128
// (score_branches for SearchSmemWg below); elsewhere, and in every decode search, on mma.sync.
#if defined(__CUDA_ARCH_FEAT_SM90_ALL) && HIP_HEAD_DIM == 128
#define HIP_SEARCH_WG 1
#include "hopper/wgmma.cuh"
#else
#define HIP_SEARCH_WG 0
#endif
// HIP_FP8_SEARCH 1 (HIP_ATTN_FLAG_FP8_SEARCH_SCORES): the prefill tree search scores on E4M3 copies of Q and K
// (docs/ALGORITHM.md section 9) with the E4M3 warpgroup MMA; the host compiles it only where HIP_SEARCH_WG holds.
#ifndef HIP_FP8_SEARCH
#define HIP_FP8_SEARCH 0
#endif
#if HIP_FP8_SEARCH
#if defined(__CUDA_ARCH__) && !HIP_SEARCH_WG
#error "HIP_FP8_SEARCH needs the Hopper search scoring (sm_90a, head_dim 128)"
#endif
#include "k8.cuh"
#endif

namespace hip {

constexpr int S_THREADS = HIP_ATTN_SEARCH_THREADS;
// CTAs per decode search (a thread-block cluster on sm_90; see HIP_DSEARCH_CL in hip_contract.h).
constexpr int S_DCL = HIP_DSEARCH_CL;
static_assert(S_DCL >= 1 && S_DCL <= 8, "HIP_DSEARCH_CL outside [1, 8] (8 is the portable cluster size)");
#if HIP_DSEARCH_CL > 1 && defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
#error "HIP_DSEARCH_CL > 1 needs thread-block clusters (sm_90 or newer)"
#endif
constexpr int S_WARPS = S_THREADS / 32;
constexpr int KBX = cmax(KB, 1);                   // array extent (KB may be 0)
constexpr int NSK = BK > SK ? ceil_div(BK, SK) : 1;  // sampled keys per block
constexpr int NCAND = 2 * KBX;                     // branches per iteration
constexpr int S_RADIX_PASSES = 4;                 // 8-bit digits of the 32-bit branch keys
constexpr int S_ROWS_MAX = ceil_div(BQ, SQ) * (SHARE ? GROUP : 1);  // scored rows of a prefill query block

// Tiles: key columns gathered S_TC at a time into S_NST pipeline stages, within the 48 KB static-smem budget left
// after the branch keys, list/histograms and chunks. The rows of a pass (Q, staged once per pass and then held in
// registers) borrow the last QS stages where at least one stage is left for the first tiles ("aliased"; the
// gather into those stages starts once Q is in registers), else they get space of their own after the stages.
// More stages keep more gathers in flight: 4 stages of 32 columns (aliased) beat 3 stages plus a separate Q
// buffer (prefill 128k 60.5 vs 61.8 ms), and 2 stages of 64 columns (73.5 ms).
// The scoring's branch list (id and representative block of each branch to score) shares its space with the
// selection's histograms.
constexpr int S_LIST_BYTES = cmax(S_RADIX_PASSES * 256 * 4, NCAND * 6);
constexpr int S_FIXED_BYTES = NCAND * 4 + S_LIST_BYTES + KBX * 12 + 128;
constexpr int S_BUDGET = 48 * 1024 - 256;
constexpr int S_TC = 32;  // key columns per tile
__host__ __device__ constexpr int s_qs(int rp) { return ceil_div(rp, S_TC); }
__host__ __device__ constexpr bool s_alias(int rp, int nst) { return nst > s_qs(rp); }
// Rows of the stage area: the stages, plus Q's own rows when it cannot borrow stages.
__host__ __device__ constexpr int s_rows(int rp, int nst) { return nst * S_TC + (s_alias(rp, nst) ? 0 : rp); }
__host__ __device__ constexpr bool s_fits(int rp, int nst) {
    return s_rows(rp, nst) * ROW * 2 + nst * S_TC * 4 + S_FIXED_BYTES <= S_BUDGET;
}
// Rows per pass: a power of two (16, 32 or 64), so that the pass's m-tiles divide the warps evenly.
__host__ __device__ constexpr int s_rp(int cap) { return cmin(next_pow2(round_up(S_ROWS_MAX, 16)), cap); }
__host__ __device__ constexpr int s_pick_rp() {
    return s_fits(s_rp(64), 2) ? s_rp(64) : s_fits(s_rp(32), 2) ? s_rp(32) : 16;
}
constexpr int S_RP = s_pick_rp();  // rows per pass
constexpr int S_NST = s_fits(S_RP, 4) ? 4 : s_fits(S_RP, 3) ? 3 : s_fits(S_RP, 2) ? 2 : 1;
constexpr int S_QS = s_qs(S_RP);  // stages that Q spans when aliased
constexpr bool S_QALIAS = s_alias(S_RP, S_NST);
constexpr int S_QROW = S_QALIAS ? (S_NST - S_QS) * S_TC : S_NST * S_TC;  // first row of Q in the stage area
static_assert(s_fits(S_RP, S_NST), "search tiles do not fit in 48 KB of static shared memory");
static_assert(S_THREADS % S_TC == 0 && (D / 8) % (S_THREADS / S_TC) == 0,
              "search: a key column's 16-byte chunks must split evenly over the threads that gather it");
// Rows per pass of the decode search: its rows are one query (times the GQA group when masks are shared), so it
// uses fewer m-tiles than a prefill block and keeps every warp busy.
constexpr int S_RP_DECODE = cmin(next_pow2(round_up(SHARE ? GROUP : 1, 16)), S_RP);

// Branches to score in one iteration, in branch order: the id (for the key) and the representative block (for
// the gather), so that gathering a column costs one lookup instead of re-deriving the branch's bounds.
struct ScoreList {
    int rep[NCAND];
    unsigned short id[NCAND];
};

struct SearchSmem {
    alignas(16) elem_t k[s_rows(S_RP, S_NST) * ROW];  // gathered key columns, S_TC rows per pipeline stage;
                                                      // Q from row S_QROW on
    alignas(16) u32 score[NCAND];              // per branch ~ord(best score), smaller = better; late in the
                                               // selection, staging for the new chunks (NCAND * 4 == KB * 8 bytes)
    union {
        alignas(16) int hist[S_RADIX_PASSES][256];  // selection: radix digit counts, one array per pass (zeroed
                                                    // up front, so a pass needs one barrier)
        ScoreList todo;                             // scoring: the branches to score
    };
    int colbr[S_NST][S_TC];                    // branch of each column, -1 = no key
    int2 chunks[KBX];                          // current chunks [x, y) of block indices, ascending
    u32 won[KBX];                              // key of the branch each chunk was in the previous iteration
    int scan[S_WARPS];                         // per-warp totals of a prefix sum
    int abort;                                 // decode cluster: some CTA met a bad page (each CTA that
                                               // meets one stores it into every CTA)
};


// Bounds [a, b) of branch `id` (chunk id/2, half id&1); b == a for the empty twin of a length-1 chunk.
__device__ __forceinline__ int2 branch_range(const int2* chunks, int id) {
    const int2 c = chunks[id >> 1];
    const int L = c.y - c.x;
    const int h = (L + 1) >> 1;
    if (L >= 2) return (id & 1) ? make_int2(c.x + h, c.y) : make_int2(c.x, c.x + h);
    return (id & 1) ? make_int2(c.y, c.y) : c;
}

// The branch of column `col` of the branch list (-1: no key) and, when it has one, its key row in ptr (left as it
// was otherwise: krow sets it only for a key it can read); `bad` when the key cannot be read. Column c is sampled
// key c % NSK of branch todo.id[c / NSK]; columns from col1 on are past this CTA's share.
template <class KRow, class Ptr>
__device__ __forceinline__ int column_branch(const ScoreList& todo, unsigned col, int col1, int sink, int e,
                                             const KRow& krow, Ptr& ptr, bool& bad) {
    int br = -1;
    if (col < (unsigned)col1) {  // (unsigned: the divisions below become shifts)
        const unsigned t = col / NSK, smp = col - t * NSK;
        const int key = sink + todo.rep[t] * BK + (int)smp * SK;
        if ((int)smp * SK < BK && key < e) {
            if (krow(key, ptr)) br = todo.id[t];
            else bad = true;
        }
    }
    return br;
}

// Folds one warp's scores of a tile into the keys of their branches (score[branch], smaller = better). acc holds
// S_NT n-tiles of 8 columns in the mma.m16n8k16 accumulator layout, which wgmma's is per warp too: acc[4 nt + x] is
// row g + 8 (x >> 1) of the warp's 16, column 8 nt + 2 tq + (x & 1). row_ok: which of the lane's two rows are
// real; cb[8 nt], cb[8 nt + 1]: the branches of the lane's two columns of n-tile nt (-1: no key).
//
// Each branch's values are folded into one float per lane, then reduced over the warp's 8 row groups (lanes
// differing in g): with several values per lane, each shuffle level trades half of them with the partner lane (a
// transposing reduction), so NV <= 8 values cost NV - 1 + 3 - log2(NV) shuffles instead of 3 * NV. Padded rows hold
// zeros and invalid columns zero-filled keys: with MASKED neither may win (row_ok, cb[8 nt + 1]); without it the
// caller guarantees that they repeat a real row or the branch's first key instead, which leaves every max as it is.
// Warps holding other rows of the same columns fold theirs into the same key through the atomicMin.
template <int S_NT, bool MASKED = true>
__device__ __forceinline__ void fold_tile(u32* score, const float* acc, const bool (&row_ok)[2], const int* cb, int g) {
    constexpr bool PAIR = NSK % 2 == 0;  // a lane's columns 2tq, 2tq+1 are keys of one branch
    constexpr int NV = S_NT * (PAIR ? 1 : 2);
    constexpr int LV = NV >= 8 ? 3 : NV >= 4 ? 2 : NV >= 2 ? 1 : 0;  // transposing levels
    float x[NV];
#pragma unroll
    for (int nt = 0; nt < S_NT; ++nt) {
        const float* a = acc + 4 * nt;
        const bool ok0 = !MASKED || row_ok[0], ok1 = !MASKED || row_ok[1];
        const float m0 = fmaxf(ok0 ? a[0] : HIP_NEG_INF, ok1 ? a[2] : HIP_NEG_INF);
        const float m1 = fmaxf(ok0 ? a[1] : HIP_NEG_INF, ok1 ? a[3] : HIP_NEG_INF);
        if (PAIR) {
            // (the even column is valid whenever the odd one is: it is the earlier key of the branch)
            x[nt] = fmaxf(m0, !MASKED || cb[nt * 8 + 1] >= 0 ? m1 : HIP_NEG_INF);
        } else {
            x[2 * nt] = m0;
            x[2 * nt + 1] = m1;
        }
    }
#pragma unroll
    for (int l = 0; l < LV; ++l) {
        const bool up = (g >> l) & 1;
#pragma unroll
        for (int i = 0; i < (NV >> l) / 2; ++i) {
            const float keep = up ? x[2 * i + 1] : x[2 * i];
            const float send = up ? x[2 * i] : x[2 * i + 1];
            x[i] = fmaxf(keep, __shfl_xor_sync(0xffffffffu, send, 4 << l));
        }
    }
    constexpr int NR = NV >> LV;  // values left per lane: value i is original index i * 2^LV + g % 2^LV
#pragma unroll
    for (int l = LV; l < 3; ++l)
#pragma unroll
        for (int i = 0; i < NR; ++i) x[i] = fmaxf(x[i], __shfl_xor_sync(0xffffffffu, x[i], 4 << l));
    if ((g >> LV) == 0) {
#pragma unroll
        for (int i = 0; i < NR; ++i) {
            const int v = i * (1 << LV) + g;
            const int col = PAIR ? v * 8 : (v >> 1) * 8 + (v & 1);
            const int br = cb[col];
            if (br >= 0) atomicMin(&score[br], ~float_ord(x[i]));
        }
    }
}

// Max over the pass's rows and over each branch's sampled keys of q.k, folded into sm.score[branch], for the
// branches listed in sm.todo: column c is sampled key c % NSK of branch todo.id[c / NSK], and this CTA scores the
// columns [col0, col1) (a decode cluster splits them over its CTAs).
// qrow(r): pointer to row r's D elements (global). krow(t, ptr): sets ptr to the key row at position t and returns
// true, or returns false when it cannot be read. Returns false, uniformly over the CTA, when some key could not be read
// (the search is then abandoned). gdummy: any valid global address, the source operand of zero-filling copies.
//
// Warps form an S_MT x S_WN grid over a tile: each owns one 16-row m-tile of the RP rows of a pass, whose Q
// fragments it keeps in registers for the whole pass, and S_CW columns. (Reloading Q from smem for every tile made
// ldmatrix traffic 2.5x what the key columns need; the kernel is bound by L1/smem throughput, ncu: 64% L1, 66% SM,
// 20% L2.)
template <int RP, bool BATCH, class QRow, class KRow>
__device__ bool score_branches(SearchSmem& sm, int col0, int col1, int nrows, const QRow& qrow, const KRow& krow,
                               int sink, int e, const elem_t* gdummy) {
    static_assert(RP <= S_RP && RP % 16 == 0, "search: rows per pass must fit sm.q in whole m-tiles");
    constexpr int S_MT = RP / 16;          // m-tiles per pass (1, 2 or 4)
    static_assert(S_WARPS % S_MT == 0, "search: the m-tiles of a pass must divide the warps");
    constexpr int S_WN = S_WARPS / S_MT;   // warps along the columns
    constexpr int S_CW = S_TC / S_WN;      // columns per warp
    constexpr int S_NT = S_CW / 8;         // n-tiles per warp
    static_assert(S_CW % 8 == 0, "search: each warp needs whole 8-column n-tiles");
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int g = lane >> 2, tq = lane & 3;
    constexpr int CPR = D / 8;  // 16-byte chunks per row
    const int ntile = ceil_div(col1 - col0, S_TC);
    bool bad = false;

    // Gather key-column tile i into stage i % S_NST. TPR threads share one column and copy interleaved 16-byte
    // chunks of its row, so each warp-wide copy covers whole runs of TPR * 16 bytes per row. (Fewer issuing threads
    // per tile, taking turns, made the issuing warps the ones every barrier waited for: prefill 128k +20%.)
    // A column's branch and key row: derived by its TPR threads per tile, or with BATCH once, by one lane, for G
    // tiles at a time (the RPW columns this warp copies in each of them, one per lane), each copying thread then
    // taking its row from that lane by shuffle. BATCH serves the decode search, whose rows come through the page
    // table from HBM: G tiles' lookups in flight at once made it 3-7% faster; in prefill, where the kernel waits
    // on shared memory and the rows are in L2, the shuffles made it 1-3% slower (BENCHMARKS.md, 2026-12-03).
    constexpr int TPR = S_THREADS / S_TC;  // threads per key column
    constexpr int CPT = CPR / TPR;         // 16-byte chunks per thread
    constexpr int RPW = 32 / TPR;          // a warp's columns of one tile
    constexpr int G = TPR;                 // tiles one derivation covers (RPW * G == 32 lanes)
    static_assert(32 % TPR == 0 && RPW * G == 32, "search: a warp's columns of G tiles must fill its lanes");
    const int my_row = tid / TPR, my_sub = tid - my_row * TPR;
    constexpr u32 K_STAGE_BYTES = S_TC * ROW * 2;
    const u32 dst0 = smem_addr(&sm.k[my_row * ROW]) + my_sub * 16;
    auto resolve = [&](unsigned col, const elem_t*& ptr) {
        return column_branch(sm.todo, col, col1, sink, e, krow, ptr, bad);
    };
    int g0 = -G;                  // BATCH: first tile of the group derived (warp-uniform)
    int own_br = -1;              // BATCH: this lane's column of the group: its branch ...
    const elem_t* own = gdummy;   // ... and key row (gdummy, a valid address for zero-filling copies, when none)
    auto issue = [&](int i) {
        if (i < ntile) {
            int br;
            const elem_t* ptr = gdummy;
            if constexpr (BATCH) {
                if (i < g0 || i >= g0 + G) {
                    g0 = i - i % G;
                    own = gdummy;
                    own_br = resolve(col0 + (g0 + lane / RPW) * S_TC + warp * RPW + lane % RPW, own);
                }
                const int src = (i - g0) * RPW + lane / TPR;
                br = __shfl_sync(0xffffffffu, own_br, src);
                ptr = (const elem_t*)__shfl_sync(0xffffffffu, (unsigned long long)own, src);
            } else {
                br = resolve(col0 + i * S_TC + my_row, ptr);
            }
            const int st = i % S_NST;
            if (my_sub == 0) sm.colbr[st][my_row] = br;
            const u32 dst = dst0 + st * K_STAGE_BYTES;
            cp_chunks<CPT, TPR * 16>(dst, ptr + my_sub * 8, nullptr, br >= 0);
        }
        cp_async_commit();  // (every thread, so that the wait counts stay uniform)
    };

    const int wm = warp % S_MT, wn = warp / S_MT;  // this warp's m-tile and column group
    elem_t* const qs = &sm.k[S_QROW * ROW];
    const u32 q_lane = smem_addr(qs) + ((wm * 16 + (lane & 15)) * ROW + (lane >> 4) * 8) * 2;
    const u32 k_lane = smem_addr(&sm.k[0]) + ((wn * S_CW + (lane & 7) + ((lane >> 4) << 3)) * ROW +
                                                  ((lane >> 3) & 1) * 8) * 2;

    for (int rbase = 0; rbase < nrows; rbase += RP) {
        const int rows_here = cmin(RP, nrows - rbase);
        const bool active = wm * 16 < rows_here;  // (warp-uniform) this warp's m-tile holds rows
        const bool row_ok[2] = {wm * 16 + g < rows_here, wm * 16 + g + 8 < rows_here};
        u32 qf[D / 16][4];
        __syncthreads();  // the previous pass is done with Q and every stage
        for (int c = tid; c < RP * CPR; c += S_THREADS) {
            const int r = c / CPR, part = c - r * CPR;
            const elem_t* src = r < rows_here ? qrow(rbase + r) : nullptr;
            cp_async16(smem_addr(&qs[r * ROW + part * 8]), src ? src + part * 8 : gdummy, src);
        }
        cp_async_commit();
        // Tiles before the first one whose stage Q borrows (all of the first S_NST - 1 when Q has its own slots).
        constexpr int PRE = S_QALIAS ? S_NST - S_QS : S_NST - 1;
#pragma unroll
        for (int i = 0; i < PRE; ++i) issue(i);

        for (int i = 0; i < ntile; ++i) {
            // With two or more stages one barrier per tile suffices: tile i + S_NST - 1 goes into the stage of
            // tile i-1, which every warp finished before reaching this tile's barrier.
            if (S_NST == 1) issue(i);
            if (i == 0) cp_async_wait<S_NST == 1 ? 0 : PRE - 1>();  // Q and tile 0 landed
            else cp_async_wait<S_NST == 1 ? 0 : S_NST - 2>();       // tile i landed
            __syncthreads();
            const int st = i % S_NST;

            // This warp's Q fragments, once per pass (Q landed with tile 0). Aliased, Q's stages are released for
            // the tiles after PRE once every warp holds its fragments.
            if (i == 0) {
                if (active) {
#pragma unroll
                    for (int kk = 0; kk < D / 16; ++kk) ldsm_x4(q_lane + kk * 32, qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3]);
                }
                if (S_QALIAS) {
                    __syncthreads();
#pragma unroll
                    for (int t = PRE; t < S_NST - 1; ++t) issue(t);
                }
            }
            if (S_NST > 1) issue(i + S_NST - 1);
            if (active) {
                float acc[S_NT][4];
#pragma unroll
                for (int nt = 0; nt < S_NT; ++nt)
#pragma unroll
                    for (int x = 0; x < 4; ++x) acc[nt][x] = 0.f;

                const u32 kst = k_lane + st * K_STAGE_BYTES;
#pragma unroll
                for (int kk = 0; kk < D / 16; ++kk) {
                    u32 bf[S_NT][2];
#pragma unroll
                    for (int nt = 0; nt + 1 < S_NT; nt += 2)
                        ldsm_x4(kst + (nt * 8 * ROW + kk * 16) * 2, bf[nt][0], bf[nt][1], bf[nt + 1][0], bf[nt + 1][1]);
                    if (S_NT & 1)  // (lanes 16..31 address rows 8..15 past this n-tile: ignored by .x2, still in smem)
                        ldsm_x2(kst + ((S_NT - 1) * 8 * ROW + kk * 16) * 2, bf[S_NT - 1][0], bf[S_NT - 1][1]);
#pragma unroll
                    for (int nt = 0; nt < S_NT; ++nt) mma16816(acc[nt], qf[kk], bf[nt][0], bf[nt][1]);
                }

                fold_tile<S_NT>(sm.score, &acc[0][0], row_ok, &sm.colbr[st][wn * S_CW + 2 * tq], g);
            }
            if (S_NST == 1) __syncthreads();  // the single stage is refilled by the next iteration's issue
        }
        cp_async_wait<0>();  // only empty groups can remain; keeps the group count bounded across passes
    }
    return !__syncthreads_or(bad);
}

#if HIP_SEARCH_WG
// ---------------------------------------------------------------------------------------------------------------
// The prefill search's scoring on Hopper (sm_90a, head_dim 128): the same keys as score_branches above, computed
// as S = Q K^T by one warpgroup MMA per tile of 64 key columns (the CTA is one warpgroup): A = the pass's rows from
// registers (16 per warp, as the mma.sync path holds them), B = the gathered key rows from shared memory, in the
// 128-byte swizzled layout wgmma reads. The mma.sync loop spent ~177 instructions per warp per 32 columns, most of
// them not MMAs (BENCHMARKS.md, "Where the default search's instructions went"): here each warp gives 8 MMA issues
// and one fold per 64 columns, its folds mask nothing (padded rows and missing keys repeat real ones), and each
// row's address is resolved once per tile by one lane. Prefill 128k, MHA-32: the search 47.5 -> 38.6 ms under
// Nsight Compute (BENCHMARKS.md, optimization log, 2026-12-04).
// A pass holds SW_RP = 64 rows; a prefill block of 32 rows (MHA, the defaults) leaves warps 2 and 3 rowless: their
// MMA rows are zeros and they fold nothing, but they still gather. Two stages of 64 rows and the fixed arrays take
// 43 KB; a third stage would pass the 48 KB a static layout may take, so one tile is in flight while another is
// scored. The tile's own chain is what the loop waits on, not that latency: tiles of 32 columns in four stages
// (three in flight) were 1.2x slower (BENCHMARKS.md, optimization log, 2026-12-04).
constexpr int SW_TC = 64;                     // key columns per tile: the wgmma's N
constexpr int SW_NST = 2;                     // pipeline stages
constexpr int SW_RP = 16 * S_WARPS;           // rows per pass: the wgmma's M
constexpr int SW_HALF = SW_TC * 128;          // bytes of one 64-element half of a tile's rows
constexpr int SW_STAGE = SW_HALF * (D / 64);  // bytes of a tile
static_assert(S_THREADS == 128, "the Hopper search scoring is one warpgroup: the CTA");
static_assert(SW_RP * D * 2 <= SW_STAGE, "a pass's rows are staged in one stage");

// SearchSmem's members for the prefill search on Hopper: the stages hold swizzled tiles (1024-byte aligned, as
// the swizzle's atoms must be) and no row padding.
struct SearchSmemWg {
    alignas(1024) unsigned char k[SW_NST * SW_STAGE];  // key tiles; a pass's rows (unswizzled) in the last one
    alignas(16) u32 score[NCAND];                       // as SearchSmem
    union {
        alignas(16) int hist[S_RADIX_PASSES][256];
        ScoreList todo;
    };
    int colbr[SW_NST][SW_TC];
    int2 chunks[KBX];
    u32 won[KBX];
    // 16-byte aligned: block_scan reads it with vector loads, which from a word-aligned start would also cover
    // won's last entries while other threads write them (harmless, the word is dropped, but a racecheck hazard;
    // seen at Kb = 67).
    alignas(16) int scan[S_WARPS];
    int abort;
};

// The branches and key rows of a warp's 16 rows of two tiles at once, resolved at the issue of the even tile i:
// lane l < 16 takes row 16 w + l of tile i, lane l >= 16 the same row of tile i + 1 (-1 and ptr untouched: no key;
// `bad` as column_branch). The resolution is a divergent stretch of ~40 instructions; resolved per tile by 16
// lanes it left half of the warp idle, and the kernel is bound by the instructions it issues (prefill MHA-32 128k
// 50.5 -> 49.9 ms, 32k 9.3 -> 9.2; BENCHMARKS.md, 2026-12-04, session 15). A branch's later sampled key past its
// end (or past e) gathers the branch's first key again: the same score, so that fold_tile needs no column mask
// (the first key exists whenever the branch does).
template <class KRow, class Ptr>
__device__ __forceinline__ int resolve_rows(const ScoreList& todo, int col0, int i, int ntile, int col1, int sink,
                                            int e, const KRow& krow, Ptr& ptr, bool& bad) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int ti = i + (lane >> 4);
    int br = -1;
    if (ti < ntile) {
        const unsigned col = col0 + ti * SW_TC + warp * 16 + (lane & 15);
        br = column_branch(todo, col, col1, sink, e, krow, ptr, bad);
        if (NSK > 1 && br < 0 && col % NSK != 0) br = column_branch(todo, col - col % NSK, col1, sink, e, krow, ptr, bad);
    }
    return br;
}

// Copies J.. of a warp's 16 tile rows (see score_branches below): copy J takes row 2 J + hi's address from its
// lane (hi: 0 or 1, plus 16 when lanes 16-31 hold the tile's rows; resolve_rows), and puts chunk c16 of it 256 J
// bytes past this lane's place for row hi % 2 (xo).
template <int J = 0>
__device__ __forceinline__ void sw_row_copies(u32 dst, const u32 (&xo)[4], const elem_t* ptr, unsigned valid, int hi,
                                              int c16) {
    if constexpr (J < 8) {
        const int from = 2 * J + hi;
        const elem_t* row = (const elem_t*)__shfl_sync(0xffffffffu, (unsigned long long)ptr, from);
        cp_async16_at<256 * J, 0>(dst + xo[J % 4], row + c16 * 8, (valid >> from) & 1);
        sw_row_copies<J + 1>(dst, xo, ptr, valid, hi, c16);
    }
}

template <int RP, bool BATCH, class QRow, class KRow>
__device__ bool score_branches(SearchSmemWg& sm, int col0, int col1, int nrows, const QRow& qrow, const KRow& krow,
                               int sink, int e, const elem_t* gdummy) {
    static_assert(!BATCH, "the Hopper scoring serves the prefill search");
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int g = lane >> 2, tq = lane & 3;
    constexpr int CPR = D / 8;  // 16-byte chunks per row
    static_assert(CPR == 16 && SW_TC == 16 * S_WARPS, "the swizzled copy below: 16 lanes per row, 16 rows per warp");
    const int ntile = ceil_div(col1 - col0, SW_TC);
    bool bad = false;
    const u32 kbase = smem_addr(sm.k);
    // A tile's rows are copied whole by 16 lanes each, 16 bytes a lane, two rows per warp-wide copy, so that a copy
    // asks L2 for four whole 128-byte lines; with two threads per row (32 bytes of each of 16 rows per copy) the
    // scoring ran at 95% of L2 throughput with 5.4 TB/s of rows, where whole rows stream at 9.2 (BENCHMARKS.md,
    // 2026-12-04). Warp w copies rows 16 w .. 16 w + 15, each resolved once by one lane (resolve_rows: lanes 0-15
    // for an even tile, 16-31 for the odd one after it), and copy j takes the address of row 2 j + l / 16 from that
    // lane by shuffle. Lane l copies chunk c = l % 16 of its rows:
    // into half c / 8 of the tile, at chunk (c % 8) ^ (r % 8) of row r's 128 bytes there; r % 8 = (2 j + l / 16) % 8,
    // so xo[j % 4] is that chunk's place and copy j is 256 j bytes further.
    const int c16 = lane & 15, hi = lane >> 4;
    const u32 wdst = (c16 >> 3) * SW_HALF + (warp * 16 + hi) * 128;
    u32 xo[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) xo[j] = wdst + (((c16 & 7) ^ ((2 * j + hi) & 7)) << 4);
    const elem_t* ptr = gdummy;  // the rows of tiles i and i + 1 from the issue of even tile i (resolve_rows)
    int br = -1;
    unsigned valid = 0;
    auto issue = [&](int i) {
        if (i < ntile) {
            const int st = i % SW_NST;
            if (i % 2 == 0) {
                ptr = gdummy;
                br = resolve_rows(sm.todo, col0, i, ntile, col1, sink, e, krow, ptr, bad);
                valid = __ballot_sync(0xffffffffu, br >= 0);
            }
            // (tile i + 1's branches wait in registers until its own issue, when its stage is free)
            const int half = (i % 2) * 16;
            if ((lane & 16) == half) sm.colbr[st][warp * 16 + (lane & 15)] = br;
            sw_row_copies(kbase + st * SW_STAGE, xo, ptr, valid, hi + half, c16);
        }
        cp_async_commit();  // (every thread, so that the wait counts stay uniform)
    };

    const u32 q_stage = kbase + (SW_NST - 1) * SW_STAGE;
    const u32 q_lane = q_stage + ((warp * 16 + (lane & 15)) * D + (lane >> 4) * 8) * 2;
    static_assert(SW_NST == 2, "one descriptor per stage below");
    const unsigned long long desc0 = gmma_desc(kbase, 16, 1024), desc1 = gmma_desc(kbase + SW_STAGE, 16, 1024);
    float acc[32];
#pragma unroll
    for (int x = 0; x < 32; ++x) acc[x] = 0.f;
    for (int rbase = 0; rbase < nrows; rbase += SW_RP) {
        const int rows_here = cmin(SW_RP, nrows - rbase);
        const bool active = warp * 16 < rows_here;  // (warp-uniform) this warp's MMA rows hold rows of the pass
        u32 qf[D / 16][4];
        __syncthreads();  // the previous pass is done with every stage
        // The pass's rows, unswizzled rows of D elements (read once by ldmatrix), the last stage's place. Rows past
        // the pass's last in a warp's 16 repeat that last row (the same scores: fold_tile masks no rows).
        for (int c = tid; c < round_up(rows_here, 16) * CPR; c += S_THREADS) {
            const int r = c / CPR, part = c - r * CPR;
            const elem_t* src = qrow(rbase + cmin(r, rows_here - 1));
            cp_async16(q_stage + (r * D + part * 8) * 2, src ? src + part * 8 : gdummy, src);
        }
        cp_async_commit();
        issue(0);
        for (int i = 0; i < ntile; ++i) {
            cp_async_wait<0>();        // tile i (and at i == 0 the rows) landed: tile i + 1 is issued below
            fence_proxy_async_smem();  // (the copies are generic-proxy writes; wgmma reads through the async proxy)
            __syncthreads();
            const int st = i % SW_NST;
            if (i == 0) {
#pragma unroll
                for (int kk = 0; kk < D / 16; ++kk) {
                    if (active) ldsm_x4(q_lane + kk * 32, qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3]);
                    else qf[kk][0] = qf[kk][1] = qf[kk][2] = qf[kk][3] = 0u;
                }
                __syncthreads();  // every warp holds its rows: their stage may take tile 1
            }
            // Tile i + 1 goes into the stage of tile i - 1, whose MMAs every warp waited for before the barrier.
            issue(i + 1);
            wgmma_fence();
            // (a descriptor's address field is the byte address / 16: an offset within the stage adds to it)
            const unsigned long long desc = st ? desc1 : desc0;
#pragma unroll
            for (int kk = 0; kk < D / 16; ++kk)
                wgmma_rs_n64<IS_BF16>(acc, qf[kk], desc + (((kk / 4) * SW_HALF + (kk % 4) * 32) >> 4), kk > 0);
            wgmma_commit();
            wgmma_wait<0>();
            pin<32>(acc);
            constexpr bool all_rows[2] = {true, true};
            if (active) fold_tile<SW_TC / 8, false>(sm.score, acc, all_rows, &sm.colbr[st][2 * tq], g);
        }
        cp_async_wait<0>();  // only empty groups can remain; keeps the group count bounded across passes
    }
    return !__syncthreads_or(bad);
}

#if HIP_FP8_SEARCH
// ---------------------------------------------------------------------------------------------------------------
// The FP8-scored prefill search (HIP_ATTN_FLAG_FP8_SEARCH_SCORES): the wgmma scoring above with both operands in
// E4M3, so that a gathered key row is 128 bytes (one swizzled row, no halves) and a tile is four m64n64k32 MMAs.
// The block's rows are rounded to E4M3 once per search, at the scale of all of them (stage_q8: section 9's one Q
// scale per query block and mask head), and kept in shared memory; the key rows come from the call's copy of K
// (k8.cuh). The scores are q8 . k8 without the two scales, which are positive and shared by every block this
// search compares.
constexpr int S8_MAX_ROWS = HIP_ATTN_FP8_SEARCH_MAX_ROWS;
static_assert(S_ROWS_MAX <= S8_MAX_ROWS, "the FP8-scored search holds at most HIP_ATTN_FP8_SEARCH_MAX_ROWS rows");
constexpr int S8_QROWS = round_up(S_ROWS_MAX, 16);  // rows of q8: the last real row repeated to a whole m-tile
constexpr int S8_NST = 2;                           // pipeline stages
constexpr int S8_STAGE = SW_TC * D;                 // bytes of a tile: 64 rows of D E4M3 values
static_assert(D == 128, "an E4M3 key row is one 128-byte swizzled row");

struct SearchSmemWg8 {
    alignas(1024) unsigned char k[S8_NST * S8_STAGE];  // key tiles, 128-byte swizzled
    alignas(16) unsigned char q8[S8_QROWS * D];        // the block's rows in E4M3, unswizzled
    alignas(16) u32 score[NCAND];                      // as SearchSmem
    union {
        alignas(16) int hist[S_RADIX_PASSES][256];
        ScoreList todo;
    };
    int colbr[S8_NST][SW_TC];
    int2 chunks[KBX];
    u32 won[KBX];
    alignas(16) int scan[S_WARPS];  // as SearchSmemWg's
    int abort;
};

// Rounds the search's nrows rows (qrow(r): D elements, or nullptr for zeros) to E4M3 at the scale of their largest
// finite magnitude into sm.q8, rows past the last repeating it (the same scores: fold_tile masks no rows).
template <class QRow>
__device__ __forceinline__ void stage_q8(SearchSmemWg8& sm, int nrows, const QRow& qrow) {
    constexpr int CPR = D / 8;
    u32 m = 0;
    for (int c = threadIdx.x; c < nrows * CPR; c += S_THREADS) {
        const elem_t* src = qrow(c / CPR);
        if (src) m = umax32(m, amax8(*(const uint4*)(src + (c % CPR) * 8)));
    }
    const float sc = e4m3_scale(block_umax(m, (u32*)sm.scan));
    for (int c = threadIdx.x; c < round_up(nrows, 16) * CPR; c += S_THREADS) {
        const int r = c / CPR, part = c % CPR;
        const elem_t* src = qrow(cmin(r, nrows - 1));
        *(uint2*)(sm.q8 + r * D + part * 8) = src ? quantize8(*(const uint4*)(src + part * 8), sc) : make_uint2(0, 0);
    }
    __syncthreads();
}

template <int RP, bool BATCH, class QRow, class KRow>
__device__ bool score_branches(SearchSmemWg8& sm, int col0, int col1, int nrows, const QRow&, const KRow& krow,
                               int sink, int e, const elem_t* gdummy) {
    static_assert(!BATCH, "the Hopper scoring serves the prefill search");
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int g = lane >> 2, tq = lane & 3;
    static_assert(SW_TC == 16 * S_WARPS, "the swizzled copy below: 16 rows per warp");
    const int ntile = ceil_div(col1 - col0, SW_TC);
    bool bad = false;
    const u32 kbase = smem_addr(sm.k);
    // As the bf16 scoring, with rows of 128 bytes: lane l < 16 resolves row 16 w + l of warp w's 16; lane l copies
    // chunk c = l % 8 of four of them, copy j taking row 4 j + l / 8 (address by shuffle) to chunk c ^ (r % 8) of
    // row r, r % 8 = 4 (j % 2) + l / 8: xo[j % 2] is that place and copy j is 512 j bytes further.
    const int c8 = lane & 7, sub = lane >> 3;
    const u32 xo[2] = {(warp * 16 + sub) * 128 + ((c8 ^ sub) << 4), (warp * 16 + sub) * 128 + ((c8 ^ (4 + sub)) << 4)};
    // Unlike the bf16 scoring, each tile's rows are resolved at its own issue (lanes 0-15): resolving two tiles at
    // once made MHA-32 2.7-3.3% slower here (and GQA-8 2-2.5% faster; 2026-12-04, c5).
    auto issue = [&](int i) {
        if (i < ntile) {
            const int st = i % S8_NST;
            const unsigned char* ptr = (const unsigned char*)gdummy;
            int br = -1;
            if (lane < 16) {
                const unsigned col = col0 + i * SW_TC + warp * 16 + lane;
                br = column_branch(sm.todo, col, col1, sink, e, krow, ptr, bad);
                // (a missing later key repeats the branch's first, as in the bf16 scoring)
                if (NSK > 1 && br < 0 && col % NSK != 0)
                    br = column_branch(sm.todo, col - col % NSK, col1, sink, e, krow, ptr, bad);
                sm.colbr[st][warp * 16 + lane] = br;
            }
            const unsigned valid = __ballot_sync(0xffffffffu, br >= 0);
            const u32 dst = kbase + st * S8_STAGE;
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const int from = 4 * j + sub;
                const unsigned char* row =
                    (const unsigned char*)__shfl_sync(0xffffffffu, (unsigned long long)ptr, from);
                cp_async16(dst + xo[j % 2] + 512 * j, row + c8 * 16, (valid >> from) & 1);
            }
        }
        cp_async_commit();
    };

    const u32 q_lane = smem_addr(sm.q8) + (warp * 16 + (lane & 15)) * D + (lane >> 4) * 16;
    static_assert(S8_NST == 2, "one descriptor per stage below");
    const unsigned long long desc0 = gmma_desc(kbase, 16, 1024), desc1 = gmma_desc(kbase + S8_STAGE, 16, 1024);
    float acc[32];
#pragma unroll
    for (int x = 0; x < 32; ++x) acc[x] = 0.f;
    for (int rbase = 0; rbase < nrows; rbase += SW_RP) {
        const bool active = warp * 16 < nrows - rbase;  // (warp-uniform) this warp's MMA rows hold rows of the pass
        u32 qf[D / 32][4];
#pragma unroll
        for (int kk = 0; kk < D / 32; ++kk) {
            if (active) ldsm_x4(q_lane + rbase * D + kk * 32, qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3]);
            else qf[kk][0] = qf[kk][1] = qf[kk][2] = qf[kk][3] = 0u;
        }
        __syncthreads();  // the previous pass (or round) is done with every stage
        issue(0);
        for (int i = 0; i < ntile; ++i) {
            cp_async_wait<0>();        // tile i landed: tile i + 1 is issued below
            fence_proxy_async_smem();  // (the copies are generic-proxy writes; wgmma reads through the async proxy)
            __syncthreads();
            const int st = i % S8_NST;
            // Tile i + 1 goes into the stage of tile i - 1, whose MMAs every warp waited for before the barrier.
            issue(i + 1);
            wgmma_fence();
            const unsigned long long desc = st ? desc1 : desc0;
#pragma unroll
            for (int kk = 0; kk < D / 32; ++kk) wgmma_rs_n64_e4m3(acc, qf[kk], desc + ((kk * 32) >> 4), kk > 0);
            wgmma_commit();
            wgmma_wait<0>();
            pin<32>(acc);
            constexpr bool all_rows[2] = {true, true};
            if (active) fold_tile<SW_TC / 8, false>(sm.score, acc, all_rows, &sm.colbr[st][2 * tq], g);
        }
        cp_async_wait<0>();  // only empty groups can remain; keeps the group count bounded across passes
    }
    return !__syncthreads_or(bad);
}
using SearchSmemPf = SearchSmemWg8;
#else
using SearchSmemPf = SearchSmemWg;
#endif
#else
using SearchSmemPf = SearchSmem;
#endif

// CTAs per SM for the prefill search's and the prefill scan's register budget (__launch_bounds__): as many as
// shared memory allows on Hopper (228 KB per SM, 1 KB reserved per CTA) for the larger of their two layouts, at
// most 5 (the ~90-96 registers the kernels need), so that ptxas never trades occupancy that shared memory would
// allow for registers. Elsewhere no hint.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
constexpr int S_MIN_CTAS = cmin(233472 / (cmax((int)sizeof(SearchSmem), (int)sizeof(SearchSmemPf)) + 1024), 5);
#else
constexpr int S_MIN_CTAS = 1;
#endif

// Exclusive prefix sum of x over the CTA's threads, in thread order; `total` gets the sum over all threads. All
// threads take part; one barrier (sm.scan must not be in use by an earlier scan that some thread still reads).
template <class Sm>
__device__ __forceinline__ int block_scan(Sm& sm, int x, int& total) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int incl = x;
#pragma unroll
    for (int off = 1; off < 32; off <<= 1) {
        const int t = __shfl_up_sync(0xffffffffu, incl, off);
        if (lane >= off) incl += t;
    }
    if (lane == 31) sm.scan[warp] = incl;
    __syncthreads();
    int excl = incl - x;
    total = 0;
#pragma unroll
    for (int w = 0; w < S_WARPS; ++w) {
        if (w < warp) excl += sm.scan[w];
        total += sm.scan[w];
    }
    return excl;
}

// Prepares an iteration: every branch key back to "not scored", and the branches to score listed in sm.todo
// (returns how many, uniformly). With `reuse` (every
// iteration after the first, where each chunk is a branch the previous iteration scored), the left branch of a
// 2-block chunk and the only branch of a 1-block chunk have the chunk's own representative, so their key is the
// chunk's key from the previous iteration, which is copied instead of gathering the rows again (about 9% of all
// scoring at 128k). The empty twin of a 1-block chunk is never scored and keeps "not scored".
template <class Sm>
__device__ int plan_scoring(Sm& sm, bool reuse) {
    constexpr int PER = ceil_div(NCAND, S_THREADS);
    const int b0 = threadIdx.x * PER;
    unsigned need = 0;  // bit j: branch b0 + j is scored
    int cnt = 0;
#pragma unroll
    for (int j = 0; j < PER; ++j) {
        const int id = b0 + j;
        if (id >= NCAND) break;
        const int2 c = sm.chunks[id >> 1];
        const int L = c.y - c.x;
        const bool left = (id & 1) == 0;
        const bool reused = reuse && left && L <= 2;
        sm.score[id] = reused ? sm.won[id >> 1] : 0xffffffffu;
        if (!reused && (left || L >= 2)) {
            need |= 1u << j;
            ++cnt;
        }
    }
    int total;
    int pos = block_scan(sm, cnt, total);
#pragma unroll
    for (int j = 0; j < PER; ++j) {
        if (need >> j & 1) {
            const int2 r = branch_range(sm.chunks, b0 + j);  // never empty: the empty twin is not listed
            sm.todo.rep[pos] = (int)(((long long)r.x + r.y - 1) >> 1);
            sm.todo.id[pos++] = (unsigned short)(b0 + j);
        }
    }
    return total;
}

// Keep the KB best of the NCAND branch keys in sm.score (smaller key = better, ties: lower branch id) as the new
// chunks, in branch order, and their keys in sm.won. Returns, uniformly, whether some new chunk is longer than one
// block. sm.score is left holding staging data (plan_scoring rewrites it).
//
// Radix select, most significant 8-bit digit first: a pass counts the digits of the keys that still match the
// decided high bits, and every warp finds on its own (one barrier per pass) the digit holding the KB-th key. It
// stops once that digit's keys all win. The winners are then the keys below the decided prefix plus the first
// `need` keys equal to it in branch order, which one prefix sum over the threads' consecutive branch ranges
// places. (The bitonic sort this replaces took 45 barrier passes at KB = 256.)
// It is scan.cuh's radix_top in selection (same digits, order and tie rule, keys complemented), kept apart for its
// register-resident keys and single placement pass (docs/ALGORITHM.md, section 5's implementation note).
template <class Sm>
__device__ bool select_branches(Sm& sm) {
    constexpr int PER = ceil_div(NCAND, S_THREADS);  // consecutive branch ids per thread
    const int tid = threadIdx.x, lane = tid & 31;
    const int b0 = tid * PER;
    u32 v[PER];
#pragma unroll
    for (int j = 0; j < PER; ++j) v[j] = b0 + j < NCAND ? sm.score[b0 + j] : 0u;
    // The histograms share their space with the branch list of the scoring that just ended.
    for (int i = tid; i < S_RADIX_PASSES * 256; i += S_THREADS) (&sm.hist[0][0])[i] = 0;
    __syncthreads();

    u32 mask = 0, prefix = 0;  // decided high bits of the KB-th key, and their value
    int need = KB;             // winners still to take among the keys whose decided bits equal prefix
#pragma unroll
    for (int pass = 0; pass < S_RADIX_PASSES; ++pass) {
        const int shift = 24 - 8 * pass;
        int* h = sm.hist[pass];
        // Scores cluster in a few digits (the top byte is sign and exponent): one atomic per distinct digit of the
        // warp instead of a queue of same-address atomics. Every match is issued before the first atomic, so that
        // their latencies overlap (each atomic's branch kept the next match behind the previous one's result).
        u32 dig[PER], grp[PER];
#pragma unroll
        for (int j = 0; j < PER; ++j) {
            const bool act = b0 + j < NCAND && (v[j] & mask) == prefix;
            dig[j] = act ? (v[j] >> shift) & 255u : 256u;
            grp[j] = __match_any_sync(0xffffffffu, dig[j]);
        }
#pragma unroll
        for (int j = 0; j < PER; ++j)
            if (dig[j] < 256u && lane == __ffs(grp[j]) - 1) atomicAdd(&h[dig[j]], __popc(grp[j]));
        __syncthreads();
        int c[8];
        const int4 lo = *(const int4*)&h[8 * lane], hi = *(const int4*)&h[8 * lane + 4];
        c[0] = lo.x; c[1] = lo.y; c[2] = lo.z; c[3] = lo.w; c[4] = hi.x; c[5] = hi.y; c[6] = hi.z; c[7] = hi.w;
        int sum = 0;
#pragma unroll
        for (int x = 0; x < 8; ++x) sum += c[x];
        int incl = sum;
#pragma unroll
        for (int off = 1; off < 32; off <<= 1) {
            const int t = __shfl_up_sync(0xffffffffu, incl, off);
            if (lane >= off) incl += t;
        }
        const int excl = incl - sum;
        // The lane whose 8 digits hold the need-th matching key (one exists: at least `need` keys match).
        const int src = __ffs(__ballot_sync(0xffffffffu, excl < need && incl >= need)) - 1;
        int digit = 0, below = 0, cnt = 0;
        if (lane == src) {
            int acc = excl;
            bool found = false;  // the lowest digit whose running count reaches need
#pragma unroll
            for (int x = 0; x < 8; ++x) {
                if (!found && acc + c[x] >= need) {
                    digit = 8 * lane + x;
                    below = acc;
                    cnt = c[x];
                    found = true;
                }
                acc += c[x];
            }
        }
        digit = __shfl_sync(0xffffffffu, digit, src);
        below = __shfl_sync(0xffffffffu, below, src);
        cnt = __shfl_sync(0xffffffffu, cnt, src);
        need -= below;
        prefix |= (u32)digit << shift;
        mask |= 255u << shift;
        if (cnt == need) break;  // (uniform: every warp read the same counts) all of this digit's keys win
    }

    // Prefix sum over the threads of (keys below prefix, keys equal to it), packed in one int (each < 2^16).
    int lt = 0, eq = 0;
#pragma unroll
    for (int j = 0; j < PER; ++j) {
        if (b0 + j < NCAND) {
            const u32 m = v[j] & mask;
            lt += m < prefix;
            eq += m == prefix;
        }
    }
    int total;
    // (its barrier also means every key is in registers, so sm.score may take the staged chunks)
    const int excl = block_scan(sm, (eq << 16) | lt, total);
    int eq_seen = excl >> 16;                      // equal keys in lower branch ids
    int pos = (excl & 0xffff) + cmin(eq_seen, need);  // winners in lower branch ids
    int2* staged = (int2*)sm.score;  // new chunk i may come from old chunk j != i, so stage them first
#pragma unroll
    for (int j = 0; j < PER; ++j) {
        if (b0 + j < NCAND) {
            const u32 m = v[j] & mask;
            bool win = m < prefix;
            if (m == prefix) win = eq_seen++ < need;
            if (win) {
                sm.won[pos] = v[j];  // (read only by the next iteration's plan_scoring, after barriers)
                staged[pos++] = branch_range(sm.chunks, b0 + j);
            }
        }
    }
    __syncthreads();
    bool longer = false;
    for (int i = tid; i < KB; i += S_THREADS) {
        const int2 r = staged[i];
        sm.chunks[i] = r;
        longer |= (r.y - r.x) > 1;
    }
    return __syncthreads_or(longer);
}

// The tree search for one query block (CL == 1, rank 0) or one decode query spread over a cluster of CL CTAs
// (rank = this CTA's rank; each scores NCAND / CL of the branches, and every CTA selects). On return (all threads,
// every CTA of the cluster), sm.chunks[i].x for i < result are the selected block indices in ascending order;
// result -1 means a key row could not be read (bad page). DECODE: the decode search (score_branches' BATCH).
template <int RP, int CL, bool DECODE, class Sm, class QRow, class KRow>
__device__ int tree_search(Sm& sm, int rank, int nrows, const QRow& qrow, const KRow& krow, int sink, int e,
                           const elem_t* gdummy) {
    static_assert(CL == 1 || CL == S_DCL, "search: cluster size");
    const int tid = threadIdx.x;
    if (KB == 0) return 0;
    const int NB = num_search_blocks(sink, e);
    if (NB <= KB) {
        for (int i = tid; i < NB; i += S_THREADS) sm.chunks[i] = make_int2(i, i + 1);
        __syncthreads();
        return NB;
    }
    for (int c = tid; c < KB; c += S_THREADS)
        sm.chunks[c] = make_int2((int)((long long)c * NB / KB), (int)((long long)(c + 1) * NB / KB));
    if (tid == 0) sm.abort = 0;
    __syncthreads();
    int ntodo = plan_scoring(sm, false);
    // A cluster also needs every CTA started and its keys reset before the first remote store.
    if (CL > 1) cluster_sync();
    bool more = true;  // some chunk is longer than one block (NB > KB guarantees it initially)
    bool reset_pending = false;  // cluster: this CTA arrived after its reset and has not waited since
    while (more) {
        const int t0 = rank * ntodo / CL, t1 = (rank + 1) * ntodo / CL;  // this CTA's share of the list
        const bool ok = score_branches<RP, DECODE>(sm, t0 * NSK, t1 * NSK, nrows, qrow, krow, sink, e, gdummy);
        if (CL == 1) {
            if (!ok) return -1;
            more = select_branches(sm);
            if (more) ntodo = plan_scoring(sm, true);
            continue;
        }
#if HIP_DSEARCH_CL > 1
        // Every CTA hands its branches' keys (and a bad page) to every other CTA, and after one cluster barrier
        // each selects from all of them itself: the same keys in every CTA, so the same chunks, where a leader
        // that selected and sent the chunks back cost a second barrier per iteration while the others waited
        // (BENCHMARKS.md, 2026-12-04). A CTA stores an iteration's keys into the others only once each has reset
        // its keys for that iteration (plan_scoring): it arrives on the cluster barrier after its reset and waits
        // just before its stores, a wait its own scoring has usually outlasted. Nothing else is written remotely.
        if (reset_pending) cluster_wait();
        for (int t = t0 + tid; t < t1; t += S_THREADS) {
            const int id = sm.todo.id[t];
            const u32 saddr = smem_addr(&sm.score[id]), v = sm.score[id];
#pragma unroll
            for (int r = 1; r < CL; ++r) st_cluster(cluster_map(saddr, (rank + r) % CL), v);
        }
        if (!ok && tid == 0) {
            sm.abort = 1;
#pragma unroll
            for (int r = 1; r < CL; ++r) st_cluster(cluster_map(smem_addr(&sm.abort), (rank + r) % CL), 1u);
        }
        cluster_sync();
        // (every CTA's stores of this iteration landed; no CTA stores into this one again before this CTA's next
        // arrive, which follows this read)
        if (*(volatile int*)&sm.abort) return -1;
        more = select_branches(sm);
        reset_pending = more;
        if (more) {
            ntodo = plan_scoring(sm, true);
            cluster_arrive();  // (release: the reset is ordered before the others' stores of the next iteration)
        }
#endif
    }
    return KB;
}

// The rows the search of a prefill query block scores (the tree search's and the SCAN tail's): its queries
// [first, first + len) taken with stride SQ, times the GQA group's q heads when one mask serves a kv head (row r =
// head r / nq of the group, query r % nq), and the keys of its kv head.
struct PrefillSearchRows {
    const hip_prefill_params& p;
    const PrefillSeq& s;
    int mh, first, nq, nrows;
    const elem_t* khead;
    int kvh;
#if HIP_FP8_SEARCH
    const unsigned char* k8head;  // key 0's row of this CTA's (sequence, kv head) in the call's E4M3 copy of K
#endif
    __device__ PrefillSearchRows(const hip_prefill_params& p_, const PrefillSeq& s_, int mh_, int first_, int len)
        : p(p_), s(s_), mh(mh_), first(first_), nq(ceil_div(len, SQ)), nrows(ceil_div(len, SQ) * (SHARE ? GROUP : 1)) {
        kvh = SHARE ? mh : mh / GROUP;
        khead = (const elem_t*)p.k + (long long)s.k0 * p.k_tok_stride + (long long)kvh * p.k_head_stride;
#if HIP_FP8_SEARCH
        k8head = (const unsigned char*)p.k8 + ((long long)blockIdx.z * p.max_seqlen_k * p.num_kv_heads + kvh) * D;
#endif
    }
    __device__ __forceinline__ const elem_t* q(int r) const {
        const int gh = SHARE ? r / nq : 0;
        const int qi = r - gh * nq;
        const int head = SHARE ? mh * GROUP + gh : mh;
        if (head >= p.num_q_heads) return nullptr;
        return (const elem_t*)p.q + (long long)(s.q0 + first + qi * SQ) * p.q_tok_stride +
               (long long)head * p.q_head_stride;
    }
    __device__ __forceinline__ bool k(int t, const elem_t*& ptr) const {
        ptr = khead + (long long)t * p.k_tok_stride;
        return true;
    }
#if HIP_FP8_SEARCH
    // Key t's row in the call's E4M3 copy of K (k8.cuh: rows of num_kv_heads * D bytes).
    __device__ __forceinline__ bool k8(int t, const unsigned char*& ptr) const {
        ptr = k8head + (long long)t * (p.num_kv_heads * D);
        return true;
    }
#endif
};

// ---------------------------------------------------------------------------------------------------------------
// hip_prefill_search: grid (ceil(max_seqlen_q / BQ), mask_heads, batch)
__device__ __forceinline__ void prefill_search(const hip_prefill_params& p) {
    __shared__ SearchSmemPf sm;
    const int j = blockIdx.x, mh = blockIdx.y, b = blockIdx.z;
    PrefillSeq s;
    const bool ok = prefill_seq(p, b, s);
    const long long slot = s.q_range_ok ? (long long)s.q0 / BQ + b + j : -1;
    int* cnt_out = (int*)p.mask_cnt;
    if (!ok) {
        // (no workspace write: attention never reads a skipped sequence's slots, and a slot derived from bad
        // bounds, at a block index past the sequence's own, can be a valid sequence's)
        if (threadIdx.x == 0) set_error(p.error_flag, HIP_ATTN_DEVERR_SEQLENS);
        return;
    }
    if ((long long)j * BQ >= s.Tq) return;
    if (slot >= p.slots) {
        if (threadIdx.x == 0) set_error(p.error_flag, HIP_ATTN_DEVERR_SEQLENS);
        return;
    }
    const int first = j * BQ;
    const int len = cmin(BQ, s.Tq - first);
    // Blocks holding any of the sequence's last scan_tail queries select by SCAN (hip_prefill_scan, scan.cuh).
    if (p.scan_tail > 0 && (long long)first + len + p.scan_tail > s.Tq) return;
    const int p0 = s.Tk - s.Tq + first;
    const int e = local_start(p.sink, p.window, p0, s.Tk);
    const PrefillSearchRows rows(p, s, mh, first, len);
    auto qrow = [&](int r) { return rows.q(r); };
#if HIP_FP8_SEARCH
    stage_q8(sm, rows.nrows, qrow);
    auto krow = [&](int t, const unsigned char*& ptr) { return rows.k8(t, ptr); };
#else
    auto krow = [&](int t, const elem_t*& ptr) { return rows.k(t, ptr); };
#endif
    const int count = tree_search<S_RP, 1, false>(sm, 0, rows.nrows, qrow, krow, p.sink, e, (const elem_t*)p.k);

    if (KB > 0) {
        int* idx_out = (int*)p.mask_idx + (slot * p.mask_heads + mh) * KB;
        for (int i = threadIdx.x; i < count; i += S_THREADS) idx_out[i] = sm.chunks[i].x;
    }
    if (threadIdx.x == 0) cnt_out[slot * p.mask_heads + mh] = count;

    // The last query block leaves its mask behind for decode (docs/ALGORITHM.md section 7).
    if (p.mask_state && first + len == s.Tq) {
        if (p.state_ints < HIP_ATTN_STATE_HEADER + KB) {
            if (threadIdx.x == 0) set_error(p.error_flag, HIP_ATTN_DEVERR_MASK_STATE);
            return;
        }
        int* rec = (int*)p.mask_state + ((long long)b * p.mask_heads + mh) * p.state_ints;
        store_record(rec, 1, e, count, p.state_fingerprint, [&](int i) { return sm.chunks[i].x; });
    }
}

// A stored record (magic already matched) is usable when its e and blocks can only name keys of [0, Tk).
__device__ __forceinline__ bool record_header_ok(int e, int count, int sink, int Tk) {
    const int e_hi = cmax(sink, Tk);
    return count >= 0 && count <= KB && e >= 0 && e <= e_hi && (!CAUSAL || e >= sink);
}

// Block indices per thread that a decode search reads with the record's header (decode_search): all of a k=512
// mask's (KB 256 over 128 threads); more would hold registers for masks few configurations have.
constexpr int DS_PF = cmin(ceil_div(KBX, S_THREADS), 4);

// ---------------------------------------------------------------------------------------------------------------
// The mask a decode step's search leaves to the attention of the same kernel (hip_decode_step_wide): the local
// start e and the count of selected blocks; count < 0 when there is none (bad input or a bad page, already
// reported), and the attention writes empty rows. next_step > 0: the record was reused, and the kernel's rank 0
// writes next_step into it once every CTA of the cluster is past its last barrier (every CTA read the old step
// before that barrier, so no CTA can see the new one and decide otherwise). met: the cluster crossed a barrier
// together in the search, so every CTA of it has started (and may be written through distributed shared memory).
struct DecodeMask {
    int e, count, next_step;
    bool met;
    int Tk;  // the sequence's length (count >= 0)
};

// The decode search of one (sequence, mask head): grid (mask_heads * CL, batch), CL CTAs (one cluster) per pair.
// The search is latency-bound (one query, 8 dependent iterations at 128k, each gathering 1024 key rows from HBM):
// a cluster spreads each iteration's gathers over CL SMs. Every CTA validates the record itself (same reads, same
// verdict, so the cluster stays in step); rank 0 writes it. hip_decode_search (CL 1) and hip_decode_search_wide
// (CL S_DCL) run it alone, before the attention kernels; hip_decode_step_wide (CL S_DCL, KEEP) attends in the same
// kernel, so the search also leaves the mask's block indices in `blocks` (shared memory, KB ints; every CTA of the
// cluster), from the record it reuses or from its own result.
template <int CL, bool KEEP>
__device__ __forceinline__ DecodeMask decode_search(const hip_decode_params& p, SearchSmem& sm, int* blocks) {
    constexpr DecodeMask none = {0, -1, 0, false, 0};
    const int mh = blockIdx.x / CL, rank = blockIdx.x % CL, b = blockIdx.y, tid = threadIdx.x;
    const bool writer = rank == 0 && tid == 0;
    if (!KEEP) pdl_trigger();  // decode attention may launch now; it waits for this kernel before reading the record
    // Every read a reuse verdict needs is issued at once, before any of them is looked at: the sequence length,
    // the record's header and this thread's first DS_PF block indices (each with the one before it, for the
    // order check). The record's place depends on the grid and the host-checked sizes alone, so the reads are in
    // bounds whatever they return; the verdicts below come in the same order as before. A cached step then waits
    // on one global round trip here instead of three in a chain (length, header, blocks).
    const bool rec_fits = p.state_ints >= HIP_ATTN_STATE_HEADER + KB;
    int* rec = (int*)p.mask_state + ((long long)b * p.mask_heads + mh) * p.state_ints;
    const int Tk = ((const int*)p.seqlens_k)[b];
    int magic = 0, step = 0, fp = 0, e0 = 0, cnt = 0, blk[DS_PF], blk_prev[DS_PF];
    if (rec_fits) {
        magic = rec[HIP_ATTN_STATE_MAGIC_IDX];
        step = rec[HIP_ATTN_STATE_STEP_IDX];
        fp = rec[HIP_ATTN_STATE_FPRINT_IDX];
        e0 = rec[HIP_ATTN_STATE_E_IDX];
        cnt = rec[HIP_ATTN_STATE_COUNT_IDX];
#pragma unroll
        for (int j = 0; j < DS_PF; ++j) {
            const int i = tid + j * S_THREADS;
            blk[j] = i < KB ? rec[HIP_ATTN_STATE_HEADER + i] : 0;
            blk_prev[j] = i > 0 && i <= KB ? rec[HIP_ATTN_STATE_HEADER + i - 1] : 0;
        }
    }
    if (!decode_seq_ok(p, Tk)) {
        if (tid == 0)
            set_error(p.error_flag, Tk >= 1 && Tk <= p.max_seqlen_k ? HIP_ATTN_DEVERR_PAGE_TABLE : HIP_ATTN_DEVERR_SEQLENS);
        return none;
    }
    if (!rec_fits) {
        if (tid == 0) set_error(p.error_flag, HIP_ATTN_DEVERR_MASK_STATE);
        return none;
    }
    const int refresh = p.refresh >= 1 ? p.refresh : 1;
    // Another configuration's record is searched anew whatever its step says (and reported).
    const bool foreign = record_foreign(magic, fp, p.state_fingerprint);
    if (foreign && writer) set_error(p.error_flag, HIP_ATTN_DEVERR_MASK_CONFIG);
    // A record of this configuration is checked even when its step calls for a search (as the CPU backend does):
    // one that does not fit the sequence is stale, and a stale record is reported whenever it is met.
    if (magic == HIP_ATTN_STATE_MAGIC && !foreign) {
        bool good = record_header_ok(e0, cnt, p.sink, Tk);
        bool bad_blk = false;
        if (good) {
            const int NBe = num_search_blocks(p.sink, e0);
            auto check = [&](int i, int v, int prev) {
                bad_blk |= v < 0 || v >= NBe || (i > 0 && prev >= v);
                if (KEEP) blocks[i] = v;
            };
#pragma unroll
            for (int j = 0; j < DS_PF; ++j) {
                const int i = tid + j * S_THREADS;
                if (i < cnt) check(i, blk[j], blk_prev[j]);
            }
            for (int i = tid + DS_PF * S_THREADS; i < cnt; i += S_THREADS)
                check(i, rec[HIP_ATTN_STATE_HEADER + i], rec[HIP_ATTN_STATE_HEADER + i - 1]);
        }
        // (the division before the barrier, so that a reused record's step does not wait for it after)
        const bool reuse = step >= 1 && step % refresh != 0;
        // (also the barrier that orders every thread's header reads before the write below)
        good = !__syncthreads_or(!good || bad_blk);
        if (good && reuse) {
            // (KEEP: the step kernel writes the step after its last cluster barrier, one barrier fewer here)
            if (KEEP) return DecodeMask{e0, cnt, step + 1, false, Tk};
            if (CL > 1) cluster_sync();  // every CTA of the cluster has read the step before it changes
            if (writer) rec[HIP_ATTN_STATE_STEP_IDX] = step + 1;
            return DecodeMask{e0, cnt, 0, true, Tk};
        }
        if (!good && writer) set_error(p.error_flag, HIP_ATTN_DEVERR_MASK_STATE);
    }

    const int pos = Tk - 1;
    const int e = local_start(p.sink, p.window, pos, Tk);
    const int kvh = SHARE ? mh : mh / GROUP;
    const int nrows = SHARE ? GROUP : 1;
    const elem_t* qbase = (const elem_t*)p.q;
    const elem_t* kbase = (const elem_t*)p.k_cache;
    auto qrow = [&](int r) -> const elem_t* {
        const int head = SHARE ? mh * GROUP + r : mh;
        if (head >= p.num_q_heads) return nullptr;
        return qbase + (long long)b * p.q_seq_stride + (long long)head * p.q_head_stride;
    };
    auto krow = [&](int t, const elem_t*& ptr) {
        bool bad = false;
        const long long off = decode_kv_offset(p, b, kvh, t, bad);
        if (bad) return false;
        ptr = kbase + off;
        return true;
    };
    const int count = tree_search<S_RP_DECODE, CL, true>(sm, rank, nrows, qrow, krow, p.sink, e, kbase);
    // Every thread of the cluster has read the old header before it is rewritten (and, in a cluster, no CTA
    // leaves while another may still store into its shared memory).
    if (CL > 1) cluster_sync();
    else __syncthreads();
    if (count < 0) {
        if (writer) {
            set_error(p.error_flag, HIP_ATTN_DEVERR_PAGE_TABLE);
            rec[HIP_ATTN_STATE_MAGIC_IDX] = 0;  // attention then writes zeros for this head
        }
        return DecodeMask{0, -1, 0, true, Tk};
    }
    if (KEEP)
        for (int i = tid; i < count; i += S_THREADS) blocks[i] = sm.chunks[i].x;
    if (rank == 0) store_record(rec, 1, e, count, p.state_fingerprint, [&](int i) { return sm.chunks[i].x; });
    return DecodeMask{e, count, 0, true, Tk};
}

}  // namespace hip

#endif
