// SCAN selection (docs/ALGORITHM.md, selection modes): every block of the search domain is scored the way the tree
// search scores a representative, and the exact top-KB is kept (ties: lower block index).
//
// Decode: hip_decode_scan streams K of the domain once, split into scan_splits contiguous ranges of blocks per
// (sequence, mask head), so that one long sequence still spreads over every SM. Each CTA writes the score key of
// every block of its range to the workspace, then selects its range's top-KB from there (L2-hot) and compacts
// those candidates to the front of its range. hip_decode_scan_merge then selects the top-KB of all candidates and
// writes the mask record. The global top-KB is in the union of the per-range top-KBs under the same total order,
// so the result is exact and does not depend on the number of splits.
#ifndef HIP_ATTN_SCAN_CUH
#define HIP_ATTN_SCAN_CUH

#include "common.cuh"
#include "search.cuh"

namespace hip {

constexpr int SC_THREADS = HIP_ATTN_SCAN_THREADS;
constexpr int SC_WARPS = SC_THREADS / 32;
constexpr int SC_MAXS = HIP_ATTN_SCAN_MAX_SPLITS;
// A key row is read by SC_TPK threads, each taking 16-byte chunks sub, sub + SC_TPK, ...: one warp-wide load
// covers 64 contiguous bytes of 8 rows (whole 32-byte sectors), and a row's dot product needs two shuffles.
constexpr int SC_TPK = 4;
constexpr int SC_CPR = D / 8;            // 16-byte chunks per key row
constexpr int SC_CPT = SC_CPR / SC_TPK;  // chunks per thread and row
constexpr int SC_GROUPS = SC_THREADS / SC_TPK;
static_assert(SC_CPR % SC_TPK == 0, "scan: a key row's chunks must split evenly over its threads");
constexpr int SC_R = SHARE ? GROUP : 1;  // query rows scored against every key
// Key rows a thread has in flight (16 loads of 16 bytes): enough outstanding reads to cover HBM latency with two
// CTAs per SM.
constexpr int SC_NR = cmax(1, 16 / SC_CPT);
constexpr int SC_PER = 4;                // compaction: consecutive entries per thread and tile
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
constexpr int SC_MIN_CTAS = D <= 128 ? 2 : 1;
#else
constexpr int SC_MIN_CTAS = 1;
#endif

struct ScanSmem {
    alignas(16) elem_t q[SC_R * D];  // the query rows (the GQA group's heads with mask sharing per kv head)
    int hist[4][256];                // radix digit counts, one array per pass (zeroed up front)
    int scan[SC_WARPS];              // per-warp totals of a prefix sum
    int j0[SC_MAXS], cnt[SC_MAXS];   // merge: first block and candidate count of each split
    int blocks[KBX];                 // merge: the selected blocks, ascending
};

// 16-byte streaming load: K is read once per scan, so it need not displace anything in L1.
__device__ __forceinline__ uint4 ldg16_stream(const void* p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
    return v;
}

// Exclusive prefix sum of x over the CTA's T threads in thread order; `total` = the sum. One barrier; the caller
// puts a barrier between two calls (sm.scan).
template <int T, class Sm>
__device__ __forceinline__ int sc_block_scan(Sm& sm, int x, int& total) {
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
    for (int w = 0; w < T / 32; ++w) {
        if (w < warp) excl += sm.scan[w];
        total += sm.scan[w];
    }
    return excl;
}

// The k best of n entries, k < n: key(i) is a u32, larger = better, ties to the lower i. Calls
// emit(i, pos, key, payload(i)) for every winner, pos = its rank among the winners in index order (0..k-1), after
// every key and payload has been read in the tile of i and before any of a later tile is read (so emit may
// overwrite entries pos <= i, and must take what it needs of entry i from its arguments: another winner's emit may
// already have overwritten entry i). All threads.
//
// Radix select, most significant 8-bit digit first: a pass counts the digits of the entries that still match the
// decided high bits, and every warp finds on its own the digit holding the k-th best (one barrier per pass); it
// stops once that digit's entries all win. The winners are the entries above the decided prefix plus the first
// `need` equal to it in index order, placed by prefix sums over tiles of T * SC_PER entries. T: the CTA's threads;
// sm: any shared struct with int hist[4][256] and int scan[T / 32]. The same selection as search.cuh's
// select_branches (keys complemented), kept apart for its streamed run-time count and tiled placement
// (docs/ALGORITHM.md, section 5's implementation note).
template <int T, class Sm, class Key, class Payload, class Emit>
__device__ void radix_top(Sm& sm, int n, int k, const Key& key, const Payload& payload, const Emit& emit) {
    const int tid = threadIdx.x, lane = tid & 31;
    for (int i = tid; i < 4 * 256; i += T) (&sm.hist[0][0])[i] = 0;
    __syncthreads();
    u32 mask = 0, prefix = 0;  // decided high bits of the k-th best key, and their value
    int need = k;              // winners still to take among the entries whose decided bits equal prefix
    for (int pass = 0; pass < 4; ++pass) {
        const int shift = 24 - 8 * pass;
        int* h = sm.hist[pass];
        for (int base = 0; base < n; base += T) {
            const int i = base + tid;
            const u32 u = i < n ? key(i) : 0u;
            const bool act = i < n && (u & mask) == prefix;
            const u32 dig = (u >> shift) & 255u;
            // Scores cluster in few digits (the top byte is sign and exponent): one atomic per distinct digit of
            // the warp instead of a queue of same-address atomics.
            const u32 grp = __match_any_sync(0xffffffffu, act ? dig : 256u);
            if (act && lane == __ffs(grp) - 1) atomicAdd(&h[dig], __popc(grp));
        }
        __syncthreads();
        // Lane l holds digits 255 - 8l - x (x = 0..7): lanes and x in descending digit order.
        int c[8];
        int sum = 0;
#pragma unroll
        for (int x = 0; x < 8; ++x) {
            c[x] = h[255 - 8 * lane - x];
            sum += c[x];
        }
        int incl = sum;
#pragma unroll
        for (int off = 1; off < 32; off <<= 1) {
            const int t = __shfl_up_sync(0xffffffffu, incl, off);
            if (lane >= off) incl += t;
        }
        const int excl = incl - sum;
        // The lane whose digits hold the need-th matching entry (one exists: at least `need` entries match).
        const int src = __ffs(__ballot_sync(0xffffffffu, excl < need && incl >= need)) - 1;
        int digit = 0, above = 0, cnt = 0;
        if (lane == src) {
            int acc = excl;
            bool found = false;
#pragma unroll
            for (int x = 0; x < 8; ++x) {
                if (!found && acc + c[x] >= need) {
                    digit = 255 - 8 * lane - x;
                    above = acc;
                    cnt = c[x];
                    found = true;
                }
                acc += c[x];
            }
        }
        digit = __shfl_sync(0xffffffffu, digit, src);
        above = __shfl_sync(0xffffffffu, above, src);
        cnt = __shfl_sync(0xffffffffu, cnt, src);
        need -= above;
        prefix |= (u32)digit << shift;
        mask |= 255u << shift;
        if (cnt == need) break;  // (uniform: every warp read the same counts) all of this digit's entries win
    }

    int carry_gt = 0, carry_eq = 0;  // entries above / equal to the prefix in earlier tiles
    for (int base = 0; base < n; base += T * SC_PER) {
        const int i0 = base + tid * SC_PER;
        u32 v[SC_PER];
        int pl[SC_PER];
        int gt = 0, eq = 0;
#pragma unroll
        for (int j = 0; j < SC_PER; ++j) {
            v[j] = i0 + j < n ? key(i0 + j) : 0u;
            pl[j] = i0 + j < n ? payload(i0 + j) : 0;
            const u32 m = v[j] & mask;
            gt += i0 + j < n && m > prefix;
            eq += i0 + j < n && m == prefix;
        }
        int total;
        // (its barrier also means every key of this tile has been read before any emit below)
        const int excl = sc_block_scan<T>(sm, (eq << 16) | gt, total);
        int g_run = carry_gt + (excl & 0xffff), e_run = carry_eq + (excl >> 16);
#pragma unroll
        for (int j = 0; j < SC_PER; ++j) {
            if (i0 + j >= n) break;
            const u32 m = v[j] & mask;
            if (m > prefix) {
                emit(i0 + j, g_run + cmin(e_run, need), v[j], pl[j]);
                ++g_run;
            } else if (m == prefix) {
                if (e_run < need) emit(i0 + j, g_run + e_run, v[j], pl[j]);
                ++e_run;
            }
        }
        carry_gt += total & 0xffff;
        carry_eq += total >> 16;
        __syncthreads();  // sm.scan is read by every thread before the next tile's prefix sum rewrites it
    }
}

// Whether this decode step reuses the stored mask, decided exactly as decode_search decides it (so that the scan
// and merge kernels agree: neither writes the record before both have read it). `inconsistent`: a record of this
// configuration that cannot be used (stale); `foreign`: a record of another configuration (its fingerprint); both
// are searched anew and reported by the merge kernel. All threads; the branches are uniform over the CTA.
__device__ __forceinline__ bool scan_reuses(const hip_decode_params& p, const int* rec, int Tk, int& step,
                                            bool& inconsistent, bool& foreign) {
    const int refresh = p.refresh >= 1 ? p.refresh : 1;
    const int magic = rec[HIP_ATTN_STATE_MAGIC_IDX];
    step = rec[HIP_ATTN_STATE_STEP_IDX];
    inconsistent = false;
    foreign = record_foreign(magic, rec[HIP_ATTN_STATE_FPRINT_IDX], p.state_fingerprint);
    if (magic != HIP_ATTN_STATE_MAGIC || foreign) return false;
    // A record of this configuration is checked even when its step calls for a search, as decode_search does.
    const int e0 = rec[HIP_ATTN_STATE_E_IDX];
    const int cnt = rec[HIP_ATTN_STATE_COUNT_IDX];
    bool good = record_header_ok(e0, cnt, p.sink, Tk);
    bool bad_blk = false;
    if (good) {
        const int NBe = num_search_blocks(p.sink, e0);
        for (int i = threadIdx.x; i < cnt; i += SC_THREADS) {
            const int v = rec[HIP_ATTN_STATE_HEADER + i];
            bad_blk |= v < 0 || v >= NBe || (i > 0 && rec[HIP_ATTN_STATE_HEADER + i - 1] >= v);
        }
    }
    good = !__syncthreads_or(!good || bad_blk);
    inconsistent = !good;
    return good && step >= 1 && step % refresh != 0;
}

// A fresh search result into a decode mask-state record: `count` ascending block indices from shared memory,
// step 1, e, this configuration's fingerprint. All threads; every thread has read the old record.
__device__ __forceinline__ void scan_write_record(const hip_decode_params& p, int* rec, int e, int count,
                                                  const int* blocks) {
    store_record(rec, 1, e, count, p.state_fingerprint, [&](int i) { return blocks[i]; });
}

// The scan workspace of (sequence b, mask head mh): see scan_region_bytes in hip_contract.h.
struct ScanRegion {
    int* stat;
    u32* keys;
    int* cidx;
};
__device__ __forceinline__ ScanRegion scan_region(const hip_decode_params& p, int b, int mh) {
    const long long nbmax = ((long long)p.max_seqlen_k + BK - 1) / BK;
    char* base = (char*)p.scan_ws + ((long long)b * p.mask_heads + mh) * hip_contract::scan_region_bytes(HIP_ATTN_SCAN_MAX_SPLITS, nbmax);
    ScanRegion r;
    r.stat = (int*)base;
    r.keys = (u32*)(base + 4 * SC_MAXS);
    r.cidx = (int*)(base + 4 * SC_MAXS + 4 * nbmax);
    return r;
}

// First block of split s of n blocks in S splits.
__device__ __forceinline__ int scan_split_start(int s, int n, int S) { return (int)((long long)s * n / S); }

// ---------------------------------------------------------------------------------------------------------------
// hip_decode_scan: grid (scan_splits, mask_heads, batch). Bad sequence lengths, a short record and a reuse step
// exit at once (hip_decode_scan_merge reports and handles them); a bad page is recorded in the split's stat.
__device__ __forceinline__ void decode_scan(const hip_decode_params& p) {
    __shared__ ScanSmem sm;
    const int split = blockIdx.x, mh = blockIdx.y, b = blockIdx.z, tid = threadIdx.x;
    const int S = p.scan_splits;
    if (KB == 0 || split >= S || S > SC_MAXS || !p.scan_ws) return;
    const int Tk = ((const int*)p.seqlens_k)[b];
    if (!decode_seq_ok(p, Tk) || p.state_ints < HIP_ATTN_STATE_HEADER + KB) return;
    const int* rec = (const int*)p.mask_state + ((long long)b * p.mask_heads + mh) * p.state_ints;
    int step;
    bool inconsistent, foreign;
    if (scan_reuses(p, rec, Tk, step, inconsistent, foreign)) return;
    const int e = local_start(p.sink, p.window, Tk - 1, Tk);
    const int NB = num_search_blocks(p.sink, e);
    if (NB <= KB) return;  // the merge selects every block, no score needed
    const ScanRegion reg = scan_region(p, b, mh);
    const int j0 = scan_split_start(split, NB, S), j1 = scan_split_start(split + 1, NB, S);
    const int kvh = SHARE ? mh : mh / GROUP;

    const elem_t* qbase = (const elem_t*)p.q + (long long)b * p.q_seq_stride;
    for (int c = tid; c < SC_R * SC_CPR; c += SC_THREADS) {
        const int r = c / SC_CPR, part = c - r * SC_CPR;
        const int head = SHARE ? mh * GROUP + r : mh;
        *(uint4*)&sm.q[r * D + part * 8] = ldg16(qbase + (long long)head * p.q_head_stride + part * 8);
    }
    __syncthreads();
    const int g = tid / SC_TPK, sub = tid - g * SC_TPK;
    float qf[SC_R == 1 ? SC_CPT * 8 : 1];
    if (SC_R == 1) {
#pragma unroll
        for (int c = 0; c < SC_CPT; ++c) unpack8(*(const uint4*)&sm.q[(sub + SC_TPK * c) * 8], &qf[c * 8]);
    }

    // Group g takes blocks j0 + g, j0 + g + SC_GROUPS, ...; their sampled key rows one after another. The loop runs
    // to the row count of the warp's first group (the most), so that every lane of a warp takes the shuffles.
    const int nblk = j1 - j0;
    auto rows_of = [&](int grp) { return grp < nblk ? (nblk - grp + SC_GROUPS - 1) / SC_GROUPS * NSK : 0; };
    const int nrows = rows_of(g), nrows_w = rows_of(g & ~7);
    const elem_t* kbase = (const elem_t*)p.k_cache;
    bool bad = false;
    float best = HIP_NEG_INF;  // max over the current block's rows so far
    for (int r0 = 0; r0 < nrows_w; r0 += SC_NR) {
        uint4 kv[SC_NR][SC_CPT];
        bool ok[SC_NR];
#pragma unroll
        for (int u = 0; u < SC_NR; ++u) {
            const int r = r0 + u;
            const int bi = r / NSK, s = r - bi * NSK;
            const long long t = p.sink + (long long)(j0 + g + SC_GROUPS * bi) * BK + s * SK;
            ok[u] = r < nrows && t < e;
            long long off = 0;
            if (ok[u]) {
                bool pb = false;
                off = decode_kv_offset(p, b, kvh, (int)t, pb);
                if (pb) {
                    bad = true;
                    ok[u] = false;
                    off = 0;
                }
            }
            const elem_t* kp = kbase + off + sub * 8;
#pragma unroll
            for (int c = 0; c < SC_CPT; ++c)
                kv[u][c] = ok[u] ? ldg16_stream(kp + c * SC_TPK * 8) : make_uint4(0u, 0u, 0u, 0u);
        }
#pragma unroll
        for (int u = 0; u < SC_NR; ++u) {
            const int r = r0 + u;
            const int bi = r / NSK, s = r - bi * NSK;
            float kf[SC_CPT * 8];
#pragma unroll
            for (int c = 0; c < SC_CPT; ++c) unpack8(kv[u][c], &kf[c * 8]);
            float sc = HIP_NEG_INF;
#pragma unroll
            for (int rr = 0; rr < SC_R; ++rr) {
                float acc = 0.f;
                if (SC_R == 1) {
#pragma unroll
                    for (int x = 0; x < SC_CPT * 8; ++x) acc = fmaf(kf[x], qf[x], acc);
                } else {
#pragma unroll
                    for (int c = 0; c < SC_CPT; ++c) {
                        float qv[8];
                        unpack8(*(const uint4*)&sm.q[rr * D + (sub + SC_TPK * c) * 8], qv);
#pragma unroll
                        for (int x = 0; x < 8; ++x) acc = fmaf(kf[c * 8 + x], qv[x], acc);
                    }
                }
                acc += __shfl_xor_sync(0xffffffffu, acc, 1);
                acc += __shfl_xor_sync(0xffffffffu, acc, 2);
                sc = fmaxf(sc, acc);
            }
            if (ok[u]) best = fmaxf(best, sc);
            if (s == NSK - 1) {
                if (sub == 0 && r < nrows) reg.keys[j0 + g + SC_GROUPS * bi] = float_ord(best);
                best = HIP_NEG_INF;
            }
        }
    }
    // (also the barrier after which every key of the range is visible to the whole CTA)
    bad = __syncthreads_or(bad);
    pdl_trigger();  // the merge may launch; it waits for this kernel
    if (tid == 0) reg.stat[split] = bad;
    if (bad) return;
    const int n = j1 - j0;
    if (n <= KB) {
        for (int i = tid; i < n; i += SC_THREADS) reg.cidx[j0 + i] = j0 + i;
        return;
    }
    u32* keys = reg.keys + j0;
    int* cidx = reg.cidx + j0;
    radix_top<SC_THREADS>(sm, n, KB, [&](int i) { return keys[i]; }, [](int) { return 0; },
              [&](int i, int pos, u32 key, int) {
                  keys[pos] = key;
                  cidx[pos] = j0 + i;
              });
}

// ---------------------------------------------------------------------------------------------------------------
// hip_decode_scan_merge: grid (mask_heads, batch). Writes the record as decode_search does (or, on a reuse step,
// advances its step counter), from the candidates of hip_decode_scan's splits.
__device__ __forceinline__ void decode_scan_merge(const hip_decode_params& p) {
    __shared__ ScanSmem sm;
    const int mh = blockIdx.x, b = blockIdx.y, tid = threadIdx.x;
    pdl_wait();     // the scan kernel's candidates (a no-op for an ordinary launch)
    pdl_trigger();  // decode attention may launch now; it waits for this kernel before reading the record
    const int Tk = ((const int*)p.seqlens_k)[b];
    if (!decode_seq_ok(p, Tk)) {
        if (tid == 0)
            set_error(p.error_flag, Tk >= 1 && Tk <= p.max_seqlen_k ? HIP_ATTN_DEVERR_PAGE_TABLE : HIP_ATTN_DEVERR_SEQLENS);
        return;
    }
    if (p.state_ints < HIP_ATTN_STATE_HEADER + KB) {
        if (tid == 0) set_error(p.error_flag, HIP_ATTN_DEVERR_MASK_STATE);
        return;
    }
    int* rec = (int*)p.mask_state + ((long long)b * p.mask_heads + mh) * p.state_ints;
    int step;
    bool inconsistent, foreign;
    if (scan_reuses(p, rec, Tk, step, inconsistent, foreign)) {
        if (tid == 0) rec[HIP_ATTN_STATE_STEP_IDX] = step + 1;
        return;
    }
    if (inconsistent && tid == 0) set_error(p.error_flag, HIP_ATTN_DEVERR_MASK_STATE);
    if (foreign && tid == 0) set_error(p.error_flag, HIP_ATTN_DEVERR_MASK_CONFIG);
    const int e = local_start(p.sink, p.window, Tk - 1, Tk);
    const int NB = num_search_blocks(p.sink, e);
    int count = 0;
    if (KB > 0 && NB <= KB) {
        count = NB;
        for (int i = tid; i < NB; i += SC_THREADS) sm.blocks[i] = i;
    } else if (KB > 0) {
        const int S = p.scan_splits;
        bool bad = !p.scan_ws || S < 1 || S > SC_MAXS;  // (the host never launches so)
        ScanRegion reg;
        if (!bad) {
            reg = scan_region(p, b, mh);
            if (tid < S) {
                const int a = scan_split_start(tid, NB, S);
                sm.j0[tid] = a;
                sm.cnt[tid] = cmin(KB, scan_split_start(tid + 1, NB, S) - a);
                bad = reg.stat[tid] != 0;
            }
        }
        // (also the barrier after which every thread has read the old record)
        if (__syncthreads_or(bad)) {
            if (tid == 0) {
                set_error(p.error_flag, !p.scan_ws || S < 1 || S > SC_MAXS ? HIP_ATTN_DEVERR_MASK_STATE
                                                                              : HIP_ATTN_DEVERR_PAGE_TABLE);
                rec[HIP_ATTN_STATE_MAGIC_IDX] = 0;  // attention then writes zeros for this head
            }
            return;
        }
        count = KB;
        if (S == 1) {  // the one split already holds exactly the KB best, in block order
            for (int i = tid; i < KB; i += SC_THREADS) sm.blocks[i] = reg.cidx[i];
        } else {
            // Entry v = KB * s + i is candidate i of split s (0 past its count): index order is block order.
            radix_top<SC_THREADS>(sm, S * KB, KB,
                      [&](int v) {
                          const int s = v / KB, i = v - s * KB;
                          return i < sm.cnt[s] ? reg.keys[sm.j0[s] + i] : 0u;
                      },
                      [](int) { return 0; },
                      [&](int v, int pos, u32, int) {
                          const int s = v / KB;
                          sm.blocks[pos] = reg.cidx[sm.j0[s] + v - s * KB];
                      });
        }
    }
    __syncthreads();  // every thread has read the old record, and sm.blocks is complete
    scan_write_record(p, rec, e, count, sm.blocks);
}

// ---------------------------------------------------------------------------------------------------------------
// Prefill tail: the query blocks holding any of the last scan_tail queries of their sequence select by SCAN
// (hip_prefill_search skips them). One CTA per (tail block, mask head, sequence) walks its search domain in chunks
// of NCAND blocks, scores each chunk with the tree search's tensor-core scoring (score_branches: the same rows,
// the same max), and keeps a running top-KB in its workspace region: the carried KB best, then the chunk's
// blocks, cut back to the KB best by radix_top (entries stay in block order, so the tie rule holds).

// First tail block of a sequence of Tq queries.
__device__ __forceinline__ int prefill_tail_first(int Tq, int tail) { return Tq > tail ? (Tq - tail) / BQ : 0; }

// hip_prefill_scan: grid (tail_blocks, mask_heads, batch), HIP_ATTN_SEARCH_THREADS threads.
__device__ __forceinline__ void prefill_scan(const hip_prefill_params& p) {
    __shared__ SearchSmem sm;
    const int tb = blockIdx.x, mh = blockIdx.y, b = blockIdx.z, tid = threadIdx.x;
    const int tail = p.scan_tail;
    if (tail <= 0 || !p.mask_cnt) return;
    PrefillSeq s;
    if (!prefill_seq(p, b, s)) return;  // hip_prefill_search reports the sequence and zeroes its counts
    const int j = prefill_tail_first(s.Tq, tail) + tb;
    if ((long long)j * BQ >= s.Tq) return;
    const long long slot = (long long)s.q0 / BQ + b + j;
    if (slot >= p.slots) return;  // (reported by hip_prefill_search)
    const int first = j * BQ;
    const int len = cmin(BQ, s.Tq - first);
    const int p0 = s.Tk - s.Tq + first;
    const int e = local_start(p.sink, p.window, p0, s.Tk);
    const PrefillSearchRows rows(p, s, mh, first, len);
    auto qrow = [&](int r) { return rows.q(r); };
    auto krow = [&](int t, const elem_t*& ptr) { return rows.k(t, ptr); };
    const int nrows = rows.nrows;
    const elem_t* kbase = (const elem_t*)p.k;

    const int NB = num_search_blocks(p.sink, e);
    int count = 0;
    // The region of (sequence, tail block, mask head): KB carried + NCAND new (key, block) entries.
    int2* cand = (int2*)(p.mask_cnt + (((long long)p.slots * p.mask_heads * 4 + 255) / 256 * 256)) +
                 (((long long)b * p.tail_blocks + tb) * p.mask_heads + mh) * (KBX + NCAND);
    if (KB > 0 && NB <= KB) {
        count = NB;
        for (int i = tid; i < NB; i += S_THREADS) cand[i] = make_int2(0, i);
    } else if (KB > 0) {
        int carry = 0;
        for (int c0 = 0; c0 < NB; c0 += NCAND) {
            const int n_new = cmin(NCAND, NB - c0);
            for (int i = tid; i < NCAND; i += S_THREADS) {
                sm.score[i] = 0xffffffffu;
                sm.todo.rep[i] = c0 + i;
                sm.todo.id[i] = (unsigned short)i;
            }
            __syncthreads();
            score_branches<S_RP, false>(sm, 0, n_new * NSK, nrows, qrow, krow, p.sink, e, kbase);
            // (score_branches ends on a barrier: every key of the chunk is in sm.score)
            for (int i = tid; i < n_new; i += S_THREADS) cand[carry + i] = make_int2((int)~sm.score[i], c0 + i);
            __syncthreads();
            const int total = carry + n_new;
            if (total > KB) {
                // (the block travels as the payload: cand[i] itself may already hold another winner)
                radix_top<S_THREADS>(
                    sm, total, KB, [&](int i) { return (u32)cand[i].x; }, [&](int i) { return cand[i].y; },
                    [&](int, int pos, u32 key, int block) { cand[pos] = make_int2((int)key, block); });
                carry = KB;
            } else {
                carry = total;
            }
            __syncthreads();
        }
        count = carry;
    }
    if (KB > 0) {
        int* idx_out = (int*)p.mask_idx + (slot * p.mask_heads + mh) * KB;
        for (int i = tid; i < count; i += S_THREADS) idx_out[i] = cand[i].y;
    }
    if (tid == 0) ((int*)p.mask_cnt)[slot * p.mask_heads + mh] = count;
    // The last query block leaves its mask behind for decode, as in prefill_search.
    if (p.mask_state && first + len == s.Tq) {
        if (p.state_ints < HIP_ATTN_STATE_HEADER + KB) {
            if (tid == 0) set_error(p.error_flag, HIP_ATTN_DEVERR_MASK_STATE);
            return;
        }
        int* rec = (int*)p.mask_state + ((long long)b * p.mask_heads + mh) * p.state_ints;
        store_record(rec, 1, e, count, p.state_fingerprint, [&](int i) { return cand[i].y; });
    }
}

}  // namespace hip

#endif
