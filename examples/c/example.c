/*
 * hip-attn C example: a prefill of a small batch of sequences, then decode steps that reuse the mask between
 * searches, on the backend HIP_ATTN_BACKEND names (cpu, the default, or cuda; HIP_ATTN_DEVICE picks the CUDA
 * device). It checks itself against its own dense attention, computed in double: with k covering every key,
 * HiP attention is exact dense attention (docs/ALGORITHM.md).
 *
 * Build and run:  cargo build --release && cc -std=c11 -Wall -Wextra -Werror -Iinclude examples/c/example.c \
 *                   -Ltarget/release -lhip_attn -lm -ldl -o example && LD_LIBRARY_PATH=target/release ./example
 */
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hip_attn.h"

enum { HQ = 8, HKV = 2, D = 64, BATCH = 2, STEPS = 6 };
static const int SEQ_LEN[BATCH] = {300, 77};
#define CAPACITY (300 + STEPS)

/* bf16 <-> float, round to nearest even (C has no bf16 type). */
static uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static float from_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float rnd(void) { /* uniform in [-1, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

/* 16-byte aligned allocation of n bf16 values, filled randomly or with NaN (an unwritten output shows). */
static uint16_t *bf16_buffer(size_t n, int random) {
    uint16_t *p = aligned_alloc(16, ((n * 2 + 15) / 16) * 16);
    if (!p) { fprintf(stderr, "out of memory\n"); exit(1); }
    for (size_t i = 0; i < n; i++) p[i] = random ? to_bf16(rnd()) : 0x7FC0;
    return p;
}

static void check(hip_status st, const char *what) {
    if (st != HIP_ATTN_STATUS_SUCCESS) {
        fprintf(stderr, "%s failed: %s (%s)\n", what, hip_status_string(st), hip_last_error_message());
        exit(1);
    }
}

/* Dense causal attention of one query row (at position pos) over keys [0, pos] of one kv head, in double. */
static void dense_row(const uint16_t *q, const uint16_t *k, const uint16_t *v, size_t kv_row, int pos, double *out) {
    double m = -INFINITY, sum = 0, scale = 1.0 / sqrt((double)D);
    double *s = malloc(sizeof(double) * (size_t)(pos + 1));
    for (int j = 0; j <= pos; j++) {
        double dot = 0;
        for (int d = 0; d < D; d++) dot += (double)from_bf16(q[d]) * from_bf16(k[(size_t)j * kv_row + d]);
        s[j] = dot * scale;
        if (s[j] > m) m = s[j];
    }
    for (int d = 0; d < D; d++) out[d] = 0;
    for (int j = 0; j <= pos; j++) {
        double w = exp(s[j] - m);
        sum += w;
        for (int d = 0; d < D; d++) out[d] += w * from_bf16(v[(size_t)j * kv_row + d]);
    }
    for (int d = 0; d < D; d++) out[d] /= sum;
    free(s);
}

static void *buffer(size_t bytes) {
    void *p = aligned_alloc(16, bytes < 16 ? 16 : (bytes + 15) / 16 * 16);
    if (!p) { fprintf(stderr, "out of memory\n"); exit(1); }
    return p;
}

/* Backend memory: host buffers for the CPU backend; for CUDA, device buffers through the driver API on the
 * device's primary context (the one hip-attn uses). The driver is loaded at run time, so the example builds
 * and runs on machines without CUDA, with no CUDA headers or link-time dependency. */
typedef unsigned long long cu_ptr;
static struct {
    int (*Init)(unsigned);
    int (*DeviceGet)(int *, int);
    int (*DevicePrimaryCtxRetain)(void **, int);
    int (*DevicePrimaryCtxRelease_v2)(int);
    int (*CtxSetCurrent)(void *);
    int (*CtxSynchronize)(void);
    int (*MemAlloc_v2)(cu_ptr *, size_t);
    int (*MemFree_v2)(cu_ptr);
    int (*MemcpyHtoD_v2)(cu_ptr, const void *, size_t);
    int (*MemcpyDtoH_v2)(void *, cu_ptr, size_t);
    void *lib;
    int device;
} drv;

static void cu_check(int r, const char *what) {
    if (r != 0) { fprintf(stderr, "%s failed: CUDA error %d\n", what, r); exit(1); }
}

/* Returns 0 and the device ordinal's primary context made current, or 1 with the reason printed. */
static int cuda_open(int ordinal) {
    drv.lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!drv.lib) { fprintf(stderr, "CUDA driver not available: %s\n", dlerror()); return 1; }
    /* POSIX's way to store dlsym's object pointer into a function pointer. */
#define LOAD(f) if (!(*(void **)&drv.f = dlsym(drv.lib, "cu" #f))) { fprintf(stderr, "no cu" #f "\n"); return 1; }
    LOAD(Init) LOAD(DeviceGet) LOAD(DevicePrimaryCtxRetain) LOAD(DevicePrimaryCtxRelease_v2) LOAD(CtxSetCurrent)
    LOAD(CtxSynchronize) LOAD(MemAlloc_v2) LOAD(MemFree_v2) LOAD(MemcpyHtoD_v2) LOAD(MemcpyDtoH_v2)
#undef LOAD
    void *ctx = NULL;
    cu_check(drv.Init(0), "cuInit");
    cu_check(drv.DeviceGet(&drv.device, ordinal), "cuDeviceGet");
    cu_check(drv.DevicePrimaryCtxRetain(&ctx, drv.device), "cuDevicePrimaryCtxRetain");
    cu_check(drv.CtxSetCurrent(ctx), "cuCtxSetCurrent");
    return 0;
}

static void *backend_alloc(size_t bytes) {
    if (!drv.lib) return buffer(bytes);
    cu_ptr p = 0;
    cu_check(drv.MemAlloc_v2(&p, bytes < 16 ? 16 : bytes), "cuMemAlloc"); /* 256-byte aligned */
    return (void *)(uintptr_t)p;
}
static void backend_free(void *p) {
    if (drv.lib) cu_check(drv.MemFree_v2((cu_ptr)(uintptr_t)p), "cuMemFree");
    else free(p);
}
static void upload(void *dst, const void *src, size_t bytes) {
    if (drv.lib) cu_check(drv.MemcpyHtoD_v2((cu_ptr)(uintptr_t)dst, src, bytes), "cuMemcpyHtoD");
    else memcpy(dst, src, bytes);
}
/* Waits for the queued attention calls first (the CPU backend computes before returning). */
static void download(void *dst, const void *src, size_t bytes) {
    if (drv.lib) {
        cu_check(drv.CtxSynchronize(), "cuCtxSynchronize");
        cu_check(drv.MemcpyDtoH_v2(dst, (cu_ptr)(uintptr_t)src, bytes), "cuMemcpyDtoH");
    } else {
        memcpy(dst, src, bytes);
    }
}
/* A backend copy of a host array. */
static void *mirror(const void *host, size_t bytes) {
    void *p = backend_alloc(bytes);
    upload(p, host, bytes);
    return p;
}

int main(void) {
    if (hip_abi_version() != HIP_ATTN_ABI_VERSION) {
        fprintf(stderr, "header ABI %d, library ABI %u\n", HIP_ATTN_ABI_VERSION, hip_abi_version());
        return 1;
    }
    printf("hip-attn %s (ABI %u)\n", hip_version(), hip_abi_version());
    const char *backend = getenv("HIP_ATTN_BACKEND"), *device = getenv("HIP_ATTN_DEVICE");
    int ordinal = device ? atoi(device) : 0;
    if (backend && strcmp(backend, "cpu") != 0 && strcmp(backend, "cuda") != 0) {
        fprintf(stderr, "HIP_ATTN_BACKEND must be cpu or cuda, not '%s'\n", backend);
        return 1;
    }
    int on_cuda = backend && strcmp(backend, "cuda") == 0;
    if (on_cuda && cuda_open(ordinal) != 0) return 1;

    /* Two contexts: a sparse one as an engine would use it, and one whose k covers every key (exact). */
    hip_config cfg = hip_config_default();
    cfg.dtype = HIP_ATTN_DTYPE_BF16;
    cfg.head_dim = D;
    cfg.num_q_heads = HQ;
    cfg.num_kv_heads = HKV;
    cfg.k = 64;
    cfg.bq = 16;
    cfg.window = 32;
    cfg.refresh = 4;
    cfg.backend = on_cuda ? HIP_ATTN_BACKEND_CUDA : HIP_ATTN_BACKEND_CPU;
    cfg.device_ordinal = ordinal;
    hip_ctx *sparse = NULL, *exact = NULL;
    check(hip_ctx_create(&cfg, &sparse), "hip_ctx_create(sparse)");
    cfg.k = 1024; /* covers every key of these <= 306-token sequences: exact dense attention (on every backend) */
    check(hip_ctx_create(&cfg, &exact), "hip_ctx_create(exact)");

    /* KV cache: contiguous per sequence, [BATCH][CAPACITY][HKV][D]; the first SEQ_LEN tokens feed the prefill,
     * which reads them packed, so keep a packed copy too. */
    const size_t kv_row = HKV * D, q_row = HQ * D;
    uint16_t *kc = bf16_buffer((size_t)BATCH * CAPACITY * kv_row, 1);
    uint16_t *vc = bf16_buffer((size_t)BATCH * CAPACITY * kv_row, 1);
    int total = SEQ_LEN[0] + SEQ_LEN[1];
    int32_t cu[BATCH + 1] = {0, SEQ_LEN[0], SEQ_LEN[0] + SEQ_LEN[1]};
    uint16_t *kp = bf16_buffer((size_t)total * kv_row, 0), *vp = bf16_buffer((size_t)total * kv_row, 0);
    for (int b = 0; b < BATCH; b++) {
        memcpy(kp + (size_t)cu[b] * kv_row, kc + (size_t)b * CAPACITY * kv_row, (size_t)SEQ_LEN[b] * kv_row * 2);
        memcpy(vp + (size_t)cu[b] * kv_row, vc + (size_t)b * CAPACITY * kv_row, (size_t)SEQ_LEN[b] * kv_row * 2);
    }
    uint16_t *q = bf16_buffer((size_t)total * q_row, 1), *o = bf16_buffer((size_t)total * q_row, 0);
    /* The same in backend memory (on the CPU backend, copies in host memory). */
    const size_t cache_bytes = (size_t)BATCH * CAPACITY * kv_row * 2, packed_bytes = (size_t)total * kv_row * 2;
    void *d_kc = mirror(kc, cache_bytes), *d_vc = mirror(vc, cache_bytes), *d_kp = mirror(kp, packed_bytes);
    void *d_vp = mirror(vp, packed_bytes), *d_q = mirror(q, (size_t)total * q_row * 2);
    void *d_o = mirror(o, (size_t)total * q_row * 2), *d_cu = mirror(cu, sizeof cu);

    /* Prefill on both contexts; the sparse one leaves its masks in the mask state for decode. */
    size_t ws_bytes = 0, ws2 = 0, state_bytes = 0, state_exact_bytes = 0;
    check(hip_prefill_workspace_size(sparse, BATCH, total, 300, 300, &ws_bytes), "workspace size");
    check(hip_prefill_workspace_size(exact, BATCH, total, 300, 300, &ws2), "workspace size");
    if (ws2 > ws_bytes) ws_bytes = ws2;
    check(hip_decode_workspace_size(sparse, BATCH, CAPACITY, &ws2), "decode workspace size");
    if (ws2 > ws_bytes) ws_bytes = ws2;
    check(hip_decode_workspace_size(exact, BATCH, CAPACITY, &ws2), "decode workspace size");
    if (ws2 > ws_bytes) ws_bytes = ws2;
    check(hip_mask_state_size(sparse, BATCH, &state_bytes), "mask state size");
    check(hip_mask_state_size(exact, BATCH, &state_exact_bytes), "mask state size");
    void *ws = backend_alloc(ws_bytes), *state = backend_alloc(state_bytes);
    void *zeros = calloc(1, state_exact_bytes), *state_exact = mirror(zeros, state_exact_bytes);
    free(zeros); /* zeroed state: the first decode step searches */

    hip_prefill_args pa;
    memset(&pa, 0, sizeof pa);
    pa.struct_size = sizeof pa;
    pa.batch_size = BATCH;
    pa.total_q = pa.total_k = (uint32_t)total;
    pa.max_seqlen_q = pa.max_seqlen_k = 300;
    pa.q = (hip_tensor){d_q, (int64_t)q_row, D};
    pa.k = (hip_tensor){d_kp, (int64_t)kv_row, D};
    pa.v = (hip_tensor){d_vp, (int64_t)kv_row, D};
    pa.o = (hip_tensor_mut){d_o, (int64_t)q_row, D};
    pa.cu_seqlens_q = d_cu;
    pa.cu_seqlens_k = d_cu;
    check(hip_prefill(exact, &pa, ws, ws_bytes, NULL), "hip_prefill(exact)");
    download(o, d_o, (size_t)total * q_row * 2);

    double max_diff = 0, ref[D];
    for (int b = 0; b < BATCH; b++)
        for (int i = 0; i < SEQ_LEN[b]; i++)
            for (int h = 0; h < HQ; h++) {
                size_t row = (size_t)(cu[b] + i);
                dense_row(q + row * q_row + (size_t)h * D, kp + (size_t)cu[b] * kv_row + (size_t)(h / (HQ / HKV)) * D,
                          vp + (size_t)cu[b] * kv_row + (size_t)(h / (HQ / HKV)) * D, kv_row, i, ref);
                for (int d = 0; d < D; d++) {
                    double diff = fabs(from_bf16(o[row * q_row + (size_t)h * D + d]) - ref[d]);
                    if (!(diff <= max_diff)) max_diff = diff; /* NaN propagates as a failure */
                }
            }
    printf("prefill (k covers all keys) vs dense: max |diff| = %.5f\n", max_diff);

    pa.mask_state_out = state;
    check(hip_prefill(sparse, &pa, ws, ws_bytes, NULL), "hip_prefill(sparse)");

    /* Decode: each step the engine appends the new token's k/v to the cache, then calls hip_decode_step. The
     * mask from the prefill is reused until the step counter reaches `refresh`. */
    const size_t dq_bytes = (size_t)BATCH * q_row * 2;
    uint16_t *dq = bf16_buffer((size_t)BATCH * q_row, 1), *dout = bf16_buffer((size_t)BATCH * q_row, 0);
    int32_t lens[BATCH];
    void *d_dq = backend_alloc(dq_bytes), *d_dout = backend_alloc(dq_bytes), *d_lens = backend_alloc(sizeof lens);
    hip_decode_args da;
    memset(&da, 0, sizeof da);
    da.struct_size = sizeof da;
    da.batch_size = BATCH;
    da.max_seqlen_k = CAPACITY;
    da.q = (hip_tensor){d_dq, (int64_t)q_row, D};
    da.kv.layout = HIP_ATTN_KV_CONTIGUOUS;
    da.kv.k = d_kc;
    da.kv.v = d_vc;
    da.kv.seq_stride = (int64_t)(CAPACITY * kv_row);
    da.kv.token_stride = (int64_t)kv_row;
    da.kv.head_stride = D;
    da.seqlens_k = d_lens;
    da.o = (hip_tensor_mut){d_dout, (int64_t)q_row, D};
    double checksum = 0, max_decode_diff = 0;
    for (int step = 0; step < STEPS; step++) {
        for (int b = 0; b < BATCH; b++) lens[b] = SEQ_LEN[b] + step + 1;
        for (size_t i = 0; i < (size_t)BATCH * q_row; i++) dq[i] = to_bf16(rnd());
        upload(d_lens, lens, sizeof lens);
        upload(d_dq, dq, dq_bytes);
        da.mask_state = state;
        check(hip_decode_step(sparse, &da, ws, ws_bytes, NULL), "hip_decode_step(sparse)");
        download(dout, d_dout, dq_bytes);
        for (size_t i = 0; i < (size_t)BATCH * q_row; i++) checksum += from_bf16(dout[i]);
        da.mask_state = state_exact;
        check(hip_decode_step(exact, &da, ws, ws_bytes, NULL), "hip_decode_step(exact)");
        download(dout, d_dout, dq_bytes);
        for (int b = 0; b < BATCH; b++)
            for (int h = 0; h < HQ; h++) {
                size_t g = (size_t)(h / (HQ / HKV)) * D, base = (size_t)b * CAPACITY * kv_row;
                dense_row(dq + (size_t)b * q_row + (size_t)h * D, kc + base + g, vc + base + g, kv_row, lens[b] - 1, ref);
                for (int d = 0; d < D; d++) {
                    double diff = fabs(from_bf16(dout[(size_t)b * q_row + (size_t)h * D + d]) - ref[d]);
                    if (!(diff <= max_decode_diff)) max_decode_diff = diff;
                }
            }
    }
    printf("decode: %d steps with mask reuse, checksum %.6f\n", STEPS, checksum);
    printf("decode (k covers all keys) vs dense: max |diff| = %.5f\n", max_decode_diff);

    hip_ctx_destroy(sparse);
    hip_ctx_destroy(exact);
    free(kc); free(vc); free(kp); free(vp); free(q); free(o); free(dq); free(dout);
    void *backend_buffers[] = {d_kc, d_vc, d_kp, d_vp, d_q, d_o, d_cu, ws, state, state_exact, d_dq, d_dout,
                               d_lens};
    for (size_t i = 0; i < sizeof backend_buffers / sizeof *backend_buffers; i++) backend_free(backend_buffers[i]);
    if (drv.lib) {
        drv.DevicePrimaryCtxRelease_v2(drv.device);
        dlclose(drv.lib);
    }
    int ok = max_diff < 2e-2 && max_decode_diff < 2e-2 && isfinite(checksum);
    printf("%s\n", ok ? "MATCH: HiP with k covering all keys equals dense attention" : "MISMATCH");
    return ok ? 0 : 1;
}
