/*
 * One hip-attn context shared by several pthreads, each with its own workspace, outputs and mask state (what
 * the API documents as safe), run under valgrind's helgrind by tests/memcheck.rs. Each thread runs a prefill
 * and decode steps on its own inputs; the results must equal a serial run bit for bit. Threads also make
 * failing calls on the shared context at the same time (per-context last-error message) and read it back.
 * Prints MATCH on success.
 */
#define _POSIX_C_SOURCE 200809L /* pthread barriers */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hip_attn.h"

enum { THREADS = 4, HQ = 4, HKV = 2, D = 64, TQ = 24, TK = 40, CAP = 48, STEPS = 3 };

static hip_ctx *ctx;
static pthread_barrier_t barrier;

typedef struct {
    uint64_t seed;
    uint16_t *q, *k, *v, *o, *dq, *dout;
    float *lse;
    void *ws, *state;
    size_t ws_bytes, state_bytes;
    int failed;
} job;

static uint16_t rnd_bf16(uint64_t *s) {
    *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17;
    float f = (float)((*s >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
    uint32_t u; memcpy(&u, &f, 4);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

static void *xalloc(size_t bytes, int fill) {
    void *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!p) { fprintf(stderr, "out of memory\n"); exit(1); }
    memset(p, fill, bytes);
    return p;
}

static void setup(job *j, uint64_t seed) {
    memset(j, 0, sizeof *j);
    j->seed = seed;
    uint64_t s = seed * 2654435761u + 1;
    j->q = xalloc(sizeof(uint16_t) * TQ * HQ * D, 0);
    j->k = xalloc(sizeof(uint16_t) * CAP * HKV * D, 0);
    j->v = xalloc(sizeof(uint16_t) * CAP * HKV * D, 0);
    j->o = xalloc(sizeof(uint16_t) * TQ * HQ * D, 0xFF);
    j->dq = xalloc(sizeof(uint16_t) * HQ * D, 0);
    j->dout = xalloc(sizeof(uint16_t) * STEPS * HQ * D, 0xFF);
    j->lse = xalloc(sizeof(float) * TQ * HQ, 0xFF);
    for (int i = 0; i < TQ * HQ * D; i++) j->q[i] = rnd_bf16(&s);
    for (int i = 0; i < CAP * HKV * D; i++) { j->k[i] = rnd_bf16(&s); j->v[i] = rnd_bf16(&s); }
    for (int i = 0; i < HQ * D; i++) j->dq[i] = rnd_bf16(&s);
    size_t a = 0, b = 0;
    if (hip_prefill_workspace_size(ctx, 1, TQ, TQ, CAP, &a) || hip_decode_workspace_size(ctx, 1, CAP, &b) ||
        hip_mask_state_size(ctx, 1, &j->state_bytes)) {
        fprintf(stderr, "size query failed: %s\n", hip_last_error_message());
        exit(1);
    }
    j->ws_bytes = a > b ? a : b;
    j->ws = xalloc(j->ws_bytes, 0);
    j->state = xalloc(j->state_bytes, 0);
}

static void teardown(job *j) {
    free(j->q); free(j->k); free(j->v); free(j->o); free(j->dq); free(j->dout); free(j->lse);
    free(j->ws); free(j->state);
}

static void run(job *j) {
    const int32_t cu_q[2] = {0, TQ}, cu_k[2] = {0, TK};
    hip_prefill_args pa;
    memset(&pa, 0, sizeof pa);
    pa.struct_size = sizeof pa;
    pa.batch_size = 1; pa.total_q = TQ; pa.total_k = TK; pa.max_seqlen_q = TQ; pa.max_seqlen_k = TK;
    pa.q = (hip_tensor){j->q, HQ * D, D};
    pa.k = (hip_tensor){j->k, HKV * D, D};
    pa.v = (hip_tensor){j->v, HKV * D, D};
    pa.o = (hip_tensor_mut){j->o, HQ * D, D};
    pa.cu_seqlens_q = cu_q; pa.cu_seqlens_k = cu_k;
    pa.lse = j->lse; pa.mask_state_out = j->state;
    if (hip_prefill(ctx, &pa, j->ws, j->ws_bytes, NULL) != HIP_ATTN_STATUS_SUCCESS) { j->failed = 1; return; }
    for (int step = 0; step < STEPS; step++) {
        const int32_t len = TK + 1 + step;
        hip_decode_args da;
        memset(&da, 0, sizeof da);
        da.struct_size = sizeof da;
        da.batch_size = 1; da.max_seqlen_k = CAP;
        da.q = (hip_tensor){j->dq, HQ * D, D};
        da.kv = (hip_kv_cache){HIP_ATTN_KV_CONTIGUOUS, 0, j->k, j->v, CAP * HKV * D, HKV * D, D, NULL, 0, 0};
        da.seqlens_k = &len;
        da.mask_state = j->state;
        da.o = (hip_tensor_mut){j->dout + step * HQ * D, HQ * D, D};
        if (hip_decode_step(ctx, &da, j->ws, j->ws_bytes, NULL) != HIP_ATTN_STATUS_SUCCESS) { j->failed = 1; return; }
    }
}

static void *thread_main(void *arg) {
    job *j = arg;
    pthread_barrier_wait(&barrier);
    run(j);
    /* A failing call on the shared context: each thread records its own message there. */
    size_t n;
    if (hip_mask_state_size(ctx, 0, &n) != HIP_ATTN_STATUS_INVALID_ARGUMENT) j->failed = 1;
    if (strstr(hip_last_error_message(), "batch_size (0)") == NULL) j->failed = 1;
    char buf[256];
    if (hip_ctx_last_error(ctx, buf, sizeof buf) < 2) j->failed = 1;
    return NULL;
}

static int same(const job *a, const job *b) {
    return !memcmp(a->o, b->o, sizeof(uint16_t) * TQ * HQ * D) && !memcmp(a->lse, b->lse, sizeof(float) * TQ * HQ) &&
           !memcmp(a->dout, b->dout, sizeof(uint16_t) * STEPS * HQ * D) && !memcmp(a->state, b->state, a->state_bytes);
}

int main(void) {
    hip_config cfg = hip_config_default();
    cfg.head_dim = D; cfg.num_q_heads = HQ; cfg.num_kv_heads = HKV;
    cfg.k = 8; cfg.bq = 8; cfg.bk = 2; cfg.sink = 2; cfg.window = 6; cfg.refresh = 2;
    if (hip_ctx_create(&cfg, &ctx) != HIP_ATTN_STATUS_SUCCESS) {
        fprintf(stderr, "hip_ctx_create: %s\n", hip_last_error_message());
        return 1;
    }
    job serial[THREADS], par[THREADS];
    for (int i = 0; i < THREADS; i++) {
        setup(&serial[i], (uint64_t)i + 1);
        run(&serial[i]);
        if (serial[i].failed) { fprintf(stderr, "serial run %d failed: %s\n", i, hip_last_error_message()); return 1; }
        setup(&par[i], (uint64_t)i + 1);
    }
    pthread_barrier_init(&barrier, NULL, THREADS);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, thread_main, &par[i]);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    pthread_barrier_destroy(&barrier);
    int ok = 1;
    for (int i = 0; i < THREADS; i++) {
        if (par[i].failed || !same(&serial[i], &par[i])) { fprintf(stderr, "thread %d differs or failed\n", i); ok = 0; }
        teardown(&serial[i]);
        teardown(&par[i]);
    }
    hip_ctx_destroy(ctx);
    puts(ok ? "MATCH" : "MISMATCH");
    return ok ? 0 : 1;
}
