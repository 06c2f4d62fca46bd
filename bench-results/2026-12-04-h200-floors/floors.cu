// floors.cu: achievable-throughput floors for two memory access patterns of hip-attn kernels (H200).
//
// Why this exists: two performance targets (batch-16 decode attention, prefill mask search) are
// bounded by memory traffic whose shape the datasheet peaks do not describe: many small scattered
// rows, not a stream. Each case below replays only the access shape (no math), so a target can be
// stated against what this card actually delivers for that shape.
//
// dram-rows-256B-{512cta,2048cta}: decode reads, per (sequence, head), ~645 tokens (4 sinks, 256
//   pairs of consecutive tokens, a 129-token window) from a paged K/V cache laid out
//   [page][64 tok][32 head][128 bf16]: each read is a 256-B row, 8 KB away from the next token's row,
//   on a randomly placed page, looked up through a page table as our kernel does. That is the
//   DRAM-bound floor of decode; the 2048-CTA variants ask whether more parallelism (each (b,h)
//   split in 4; "-occ8" also trades loads in flight per thread for 8 resident CTAs/SM) buys
//   throughput or whether 512 CTAs already saturate HBM for this shape.
// dram-stream: a plain coalesced 2 GiB read, the achievable streaming peak to compare against
//   (the ~4.8 TB/s datasheet number is never reached).
// l2-rows-256B-{cpasync,ldg}: the mask search gathers random 256-B key rows from a buffer that fits
//   in L2 (24 MiB here), via 4-stage cp.async.cg into shared memory. Row ids come from an in-kernel
//   hash of the row's sequence number rather than an id array, so that the id reads do not take
//   L2 bandwidth of their own. The ldg variant asks whether the smem staging costs or helps.
//
// DRAM cases flush L2 before every launch (warm-up and timed) by writing a 256 MiB scratch buffer
// (cudaMemsetAsync). A write flush leaves ~50 MB of dirty lines whose write-back would then be
// charged to the timed kernel, so by default a read of another 256 MiB follows it (untimed) to
// leave L2 clean; the "-dirtyflush" lines skip that read and show what the write-back costs.
// Timing: events right around the kernel, 5 warm-ups, 50 timed launches, median/min/max.
#include <cuda_runtime.h>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <vector>

#define CK(call)                                                                                  \
  do {                                                                                            \
    const cudaError_t e_ = (call);                                                                \
    if (e_ != cudaSuccess) {                                                                      \
      fprintf(stderr, "CUDA error %s at %s:%d in %s: %s\n", cudaGetErrorName(e_), __FILE__, __LINE__, \
              #call, cudaGetErrorString(e_));                                                     \
      exit(1);                                                                                    \
    }                                                                                             \
  } while (0)

constexpr int SEQS = 16, HEADS = 32, PAGE = 64, ROW_U4 = 16;  // one 256-B row = 16 x uint4
constexpr int SINKS = 4, PAIRS = 256, WINDOW = 129;
constexpr int NPOS = SINKS + 2 * PAIRS + WINDOW;  // 645 tokens per (sequence, head)
constexpr int STAGES = 4, RPT = 2;                 // cp.async: stages, rows per 16-lane group per stage
constexpr int L2_U = 8;                            // ldg L2 variant: rows per 16-lane group in flight
constexpr unsigned MAGIC = 0x9E3779B9u;

__device__ __forceinline__ void xor4(uint4& a, const uint4 v) { a.x ^= v.x; a.y ^= v.y; a.z ^= v.z; a.w ^= v.w; }
// A store the compiler cannot prove dead keeps every load alive, without the sink write traffic.
__device__ __forceinline__ void sink_if(const uint4 a, unsigned* sink) {
  const unsigned v = a.x ^ a.y ^ a.z ^ a.w;
  if (v == MAGIC) *sink = v;
}

// Predicated 16-B load as one straight-line PTX block, so a CTA's ragged tail costs neither a
// branch between the loads nor an extra row read.
__device__ __forceinline__ uint4 ldg_pred(const uint4* p, bool ok) {
  uint4 v = make_uint4(0, 0, 0, 0);
  asm volatile("{\n .reg .pred q;\n setp.ne.b32 q, %5, 0;\n @q ld.global.nc.v4.u32 {%0,%1,%2,%3}, [%4];\n}\n"
               : "+r"(v.x), "+r"(v.y), "+r"(v.z), "+r"(v.w)
               : "l"(p), "r"((int)ok));
  return v;
}

// One CTA per (b, h) part; 16 threads cover one 256-B row, so one CTA-wide load reads 8 rows.
// Index reads past the end are clamped (not skipped) to keep the loop body branch-free.
// U tokens (2U row loads) per thread in flight. MINB matters: with __launch_bounds__(128) alone
// ptxas aims at 16 CTAs/SM (32 registers) and interleaves each load with its use, leaving ~2 rows
// in flight per thread. <8,4> gets 85 registers (5 CTAs/SM) and issues all 16 row loads before
// the first use; <4,8> gets 8 CTAs/SM with all 8 loads issued first.
template <int U, int MINB>
__global__ void __launch_bounds__(128, MINB) dram_rows(const uint4* __restrict__ K, const uint4* __restrict__ V,
                                                 const int* __restrict__ pos, const int* __restrict__ table,
                                                 int pages_per_seq, int parts, unsigned* sink) {
  const int bh = blockIdx.x / parts, part = blockIdx.x % parts;
  const int b = bh / HEADS, h = bh % HEADS;
  const int begin = NPOS * part / parts, end = NPOS * (part + 1) / parts;
  const int* p = pos + (size_t)bh * NPOS;
  const int* tb = table + (size_t)b * pages_per_seq;
  const int r = threadIdx.x >> 4, lane = threadIdx.x & 15;
  uint4 acc = make_uint4(0, 0, 0, 0);
  for (int base = begin; base < end; base += 8 * U) {
    int t[U], pg[U];
#pragma unroll
    for (int u = 0; u < U; ++u) t[u] = __ldg(p + min(base + 8 * u + r, end - 1));
#pragma unroll
    for (int u = 0; u < U; ++u) pg[u] = __ldg(tb + t[u] / PAGE);
    uint4 kv[2 * U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const size_t off = (((size_t)pg[u] * PAGE + t[u] % PAGE) * HEADS + h) * ROW_U4 + lane;
      const bool ok = base + 8 * u + r < end;
      kv[2 * u] = ldg_pred(K + off, ok);
      kv[2 * u + 1] = ldg_pred(V + off, ok);
    }
#pragma unroll
    for (int u = 0; u < 2 * U; ++u) xor4(acc, kv[u]);
  }
  sink_if(acc, sink);
}

// Grid-stride, 4 independent 16-B loads per thread per step so each SM has enough bytes in flight.
__global__ void __launch_bounds__(256) stream_read(const uint4* __restrict__ a, size_t n, unsigned* sink) {
  const size_t stride = (size_t)gridDim.x * blockDim.x;
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  uint4 acc = make_uint4(0, 0, 0, 0);
  for (; i + 3 * stride < n; i += 4 * stride) {
    const uint4 v0 = __ldg(a + i), v1 = __ldg(a + i + stride);
    const uint4 v2 = __ldg(a + i + 2 * stride), v3 = __ldg(a + i + 3 * stride);
    xor4(acc, v0); xor4(acc, v1); xor4(acc, v2); xor4(acc, v3);
  }
  for (; i < n; i += stride) xor4(acc, __ldg(a + i));
  sink_if(acc, sink);
}

// Murmur3-style finalizer: consecutive row numbers land on unrelated rows, at ~6 ALU ops.
__device__ __forceinline__ unsigned pick_row(unsigned j, unsigned nrows) {
  unsigned x = j * 0x9E3779B1u;
  x ^= x >> 16; x *= 0x85EBCA6Bu; x ^= x >> 13; x *= 0xC2B2AE35u; x ^= x >> 16;
  return __umulhi(x, nrows);
}

// Each thread reads back only the smem slots it copied itself, so cp.async.wait_group alone
// orders copy and use (no __syncthreads): this isolates the copy throughput.
// A "unit" is one stage of one CTA: 8 * RPT rows.
__global__ void __launch_bounds__(128, 8) l2_rows_cpasync(const uint4* __restrict__ buf, unsigned nrows,
                                                       unsigned units, unsigned* sink) {
  __shared__ uint4 sm[STAGES][RPT][128];
  const unsigned r = threadIdx.x >> 4, lane = threadIdx.x & 15;
  const unsigned n = blockIdx.x < units ? (units - blockIdx.x + gridDim.x - 1) / gridDim.x : 0;
  auto issue = [&](unsigned k) {
    if (k < n) {
      const unsigned unit = blockIdx.x + k * gridDim.x;
#pragma unroll
      for (int q = 0; q < RPT; ++q) {
        const unsigned row = pick_row(unit * (8 * RPT) + 8 * q + r, nrows);
        const uint4* g = buf + (size_t)row * ROW_U4 + lane;
        const unsigned s = (unsigned)__cvta_generic_to_shared(&sm[k % STAGES][q][threadIdx.x]);
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(g) : "memory");
      }
    }
    asm volatile("cp.async.commit_group;\n" ::: "memory");  // empty groups keep the count uniform
  };
  for (unsigned k = 0; k < STAGES - 1; ++k) issue(k);
  uint4 acc = make_uint4(0, 0, 0, 0);
  for (unsigned k = 0; k < n; ++k) {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(STAGES - 2) : "memory");  // group k has landed
#pragma unroll
    for (int q = 0; q < RPT; ++q) xor4(acc, sm[k % STAGES][q][threadIdx.x]);
    issue(k + STAGES - 1);  // refills the slot consumed in iteration k-1
  }
  asm volatile("cp.async.wait_group 0;\n" ::: "memory");
  sink_if(acc, sink);
}

// Same rows, same hash, straight into registers; a unit is 8 * L2_U rows.
__global__ void __launch_bounds__(128, 8) l2_rows_ldg(const uint4* __restrict__ buf, unsigned nrows,
                                                   unsigned units, unsigned* sink) {
  const unsigned r = threadIdx.x >> 4, lane = threadIdx.x & 15;
  uint4 acc = make_uint4(0, 0, 0, 0);
  for (unsigned unit = blockIdx.x; unit < units; unit += gridDim.x) {
    uint4 v[L2_U];
#pragma unroll
    for (int u = 0; u < L2_U; ++u)
      v[u] = __ldg(buf + (size_t)pick_row(unit * (8 * L2_U) + 8 * u + r, nrows) * ROW_U4 + lane);
#pragma unroll
    for (int u = 0; u < L2_U; ++u) xor4(acc, v[u]);
  }
  sink_if(acc, sink);
}

enum Flush { NO_FLUSH, FLUSH_CLEAN, FLUSH_DIRTY };
constexpr size_t FLUSH_BYTES = 256ull << 20;
static unsigned char* g_scratch = nullptr;  // 2 x FLUSH_BYTES: memset half, clean-read half
static unsigned* g_sink = nullptr;
static int g_sms = 0;

static void flush_l2(Flush f, int it) {
  if (f == NO_FLUSH) return;
  CK(cudaMemsetAsync(g_scratch, it & 0xff, FLUSH_BYTES, 0));
  if (f == FLUSH_CLEAN) {
    stream_read<<<g_sms * 8, 256>>>((const uint4*)(g_scratch + FLUSH_BYTES), FLUSH_BYTES / 16, g_sink);
    CK(cudaGetLastError());
  }
}

struct Stats { double med_us, min_us, max_us, gbps; };

template <class F>
static Stats run_case(const char* name, unsigned long long bytes, Flush f, F launch) {
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0)); CK(cudaEventCreate(&e1));
  std::vector<double> us;
  for (int it = 0; it < 5 + 50; ++it) {
    flush_l2(f, it);
    CK(cudaEventRecord(e0, 0));
    launch();
    CK(cudaGetLastError());
    CK(cudaEventRecord(e1, 0));
    CK(cudaEventSynchronize(e1));
    float ms = 0.f;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    if (it >= 5) us.push_back(1e3 * ms);
  }
  CK(cudaEventDestroy(e0)); CK(cudaEventDestroy(e1));
  std::sort(us.begin(), us.end());
  const size_t m = us.size();
  Stats s{(us[(m - 1) / 2] + us[m / 2]) / 2, us.front(), us.back(), 0};
  s.gbps = (double)bytes / (s.med_us * 1e3);
  printf("case=%s bytes=%llu median_us=%.2f min_us=%.2f max_us=%.2f GBps=%.1f\n", name, bytes, s.med_us,
         s.min_us, s.max_us, s.gbps);
  fflush(stdout);
  return s;
}

static bool try_alloc2(void** a, void** b, size_t n) {
  if (cudaMalloc(a, n) != cudaSuccess) { (void)cudaGetLastError(); return false; }
  if (cudaMalloc(b, n) != cudaSuccess) { (void)cudaGetLastError(); CK(cudaFree(*a)); return false; }
  return true;
}

int main() {
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  int drv = 0, rt = 0;
  CK(cudaDriverGetVersion(&drv));
  CK(cudaRuntimeGetVersion(&rt));
  g_sms = prop.multiProcessorCount;
  printf("# device=\"%s\" cc=%d.%d sms=%d l2_bytes=%d smem_per_sm=%zu global_mem=%zu driver=%d.%d runtime=%d.%d\n",
         prop.name, prop.major, prop.minor, g_sms, prop.l2CacheSize, prop.sharedMemPerMultiprocessor,
         prop.totalGlobalMem, drv / 1000, (drv % 1000) / 10, rt / 1000, (rt % 1000) / 10);
  printf("# timing: cudaEvent around each kernel, 5 warm-up + 50 timed launches; GBps = bytes / median\n");

  // Paged K/V caches, 2 x 16 x T x 32 x 256 B (8 GiB at T = 32768).
  int T = 32768;
  uint4 *K = nullptr, *V = nullptr;
  size_t cache_bytes = 0;
  for (;;) {
    cache_bytes = (size_t)SEQS * T * HEADS * ROW_U4 * sizeof(uint4);
    if (try_alloc2((void**)&K, (void**)&V, cache_bytes)) break;
    T /= 2;
    printf("# cudaMalloc of the K/V caches failed: halving tokens per sequence to %d\n", T);
    if (T < 4096) { fprintf(stderr, "cannot allocate K/V caches\n"); return 1; }
  }
  CK(cudaMemset(K, 0x3C, cache_bytes)); CK(cudaMemset(V, 0xC3, cache_bytes));
  CK(cudaMalloc(&g_scratch, 2 * FLUSH_BYTES));
  CK(cudaMemset(g_scratch, 0, 2 * FLUSH_BYTES));
  CK(cudaMalloc(&g_sink, sizeof(unsigned))); CK(cudaMemset(g_sink, 0, sizeof(unsigned)));

  // Pages of all sequences: one random permutation of the page ids; positions per (b, h).
  const int pps = T / PAGE, npages = SEQS * pps;
  std::mt19937 rng(20261204u);
  std::vector<int> table(npages);
  std::iota(table.begin(), table.end(), 0);
  std::shuffle(table.begin(), table.end(), rng);  // table[b * pps + i] = page of block i of seq b
  const int nev = (T - 160 - 4) / 2;               // even t in [4, T - 160): t = 4 + 2j, j < nev
  std::vector<int> pos((size_t)SEQS * HEADS * NPOS);
  for (int bh = 0; bh < SEQS * HEADS; ++bh) {
    int* p = &pos[(size_t)bh * NPOS];
    int n = 0;
    for (int t = 0; t < SINKS; ++t) p[n++] = t;
    std::vector<char> used(nev, 0);
    for (int c = 0; c < PAIRS;) {
      const int j = (int)(rng() % (unsigned)nev);
      if (!used[j]) { used[j] = 1; ++c; }
    }
    for (int j = 0; j < nev; ++j)
      if (used[j]) { p[n++] = 4 + 2 * j; p[n++] = 5 + 2 * j; }
    for (int t = T - WINDOW; t < T; ++t) p[n++] = t;
    if (n != NPOS) { fprintf(stderr, "position list has %d entries, expected %d\n", n, NPOS); return 1; }
  }
  int *dpos = nullptr, *dtable = nullptr;
  CK(cudaMalloc(&dpos, pos.size() * sizeof(int))); CK(cudaMalloc(&dtable, table.size() * sizeof(int)));
  CK(cudaMemcpy(dpos, pos.data(), pos.size() * sizeof(int), cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dtable, table.data(), table.size() * sizeof(int), cudaMemcpyHostToDevice));
  CK(cudaDeviceSynchronize());

  // 1. DRAM row gather (decode).
  const unsigned long long rows_bytes = (unsigned long long)SEQS * HEADS * NPOS * 2 * 256;
  int occ4 = 0, occ8 = 0;
  CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ4, dram_rows<8, 4>, 128, 0));
  CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ8, dram_rows<4, 8>, 128, 0));
  printf("# dram-rows: T=%d tokens/seq, %d tokens per (b,h), K+V cache %.2f GB, gather %.1f MB; "
         "CTAs/SM: <8 tok,minB 4> kernel %d, -occ8 <4 tok,minB 8> kernel %d\n",
         T, NPOS, 2.0 * cache_bytes / 1e9, rows_bytes / 1e6, occ4, occ8);
  const Flush modes[2] = {FLUSH_CLEAN, FLUSH_DIRTY};
  for (Flush f : modes) {
    const char* sfx = f == FLUSH_DIRTY ? "-dirtyflush" : "";
    for (int v = 0; v < 3; ++v) {
      const int parts = v == 0 ? 1 : 4;
      char name[64];
      snprintf(name, sizeof name, "dram-rows-256B-%dcta%s%s", SEQS * HEADS * parts, v == 2 ? "-occ8" : "", sfx);
      const Stats s = run_case(name, rows_bytes, f, [&] {
        if (v < 2) dram_rows<8, 4><<<SEQS * HEADS * parts, 128>>>(K, V, dpos, dtable, pps, parts, g_sink);
        else dram_rows<4, 8><<<SEQS * HEADS * parts, 128>>>(K, V, dpos, dtable, pps, parts, g_sink);
      });
      printf("#   %.1f MB at %.1f GB/s = %.1f us\n", rows_bytes / 1e6, s.gbps, rows_bytes / (s.gbps * 1e3));
    }
    // 2. DRAM streaming peak (first 2 GiB of the K cache, or all of it if smaller).
    const size_t sbytes = std::min(cache_bytes, (size_t)2 << 30);
    char name[64];
    snprintf(name, sizeof name, "dram-stream%s", sfx);
    run_case(name, (unsigned long long)sbytes, f,
             [&] { stream_read<<<g_sms * 8, 256>>>(K, sbytes / 16, g_sink); });
  }

  // 3. L2-resident row gather (mask search). 64 Mi row reads of 256 B from a 24 MiB buffer.
  const size_t l2_bytes = 24ull << 20;
  const unsigned nrows = (unsigned)(l2_bytes / 256), total_rows = 1u << 26;
  uint4* L = nullptr;
  CK(cudaMalloc(&L, l2_bytes));
  CK(cudaMemset(L, 0x5A, l2_bytes));
  stream_read<<<g_sms * 8, 256>>>(L, l2_bytes / 16, g_sink);  // warm L2 (the warm-ups do too)
  CK(cudaGetLastError());
  CK(cudaDeviceSynchronize());
  int occ_cp = 0, occ_ldg = 0;
  CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ_cp, l2_rows_cpasync, 128, 0));
  CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ_ldg, l2_rows_ldg, 128, 0));
  const int grid = g_sms * 8;
  printf("# l2-rows: %u rows of 256 B (%.1f MiB), %u row reads, grid %d x 128, occupancy cpasync %d "
         "ldg %d CTAs/SM; row ids from an in-kernel hash (no id array)\n",
         nrows, l2_bytes / 1048576.0, total_rows, grid, occ_cp, occ_ldg);
  const unsigned long long l2_gather = (unsigned long long)total_rows * 256;
  for (int v = 0; v < 2; ++v) {
    const Stats s = run_case(v == 0 ? "l2-rows-256B-cpasync" : "l2-rows-256B-ldg", l2_gather, NO_FLUSH, [&] {
      if (v == 0) l2_rows_cpasync<<<grid, 128>>>(L, nrows, total_rows / (8 * RPT), g_sink);
      else l2_rows_ldg<<<grid, 128>>>(L, nrows, total_rows / (8 * L2_U), g_sink);
    });
    printf("#   %.2f TB/s; 240 GB (prefill mask search, 128k, MHA-32) would take %.1f ms\n", s.gbps / 1e3,
           240e3 / s.gbps);
  }
  for (void* q : {(void*)L, (void*)dpos, (void*)dtable, (void*)g_sink, (void*)g_scratch, (void*)K, (void*)V})
    CK(cudaFree(q));
  return 0;
}
