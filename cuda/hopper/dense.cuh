// hip_prefill_attn_hopper: the dense prefill attention (hip_prefill_attn_dense's job, same inputs, outputs and
// rules) on the sm_90a pipeline of cuda/hopper/fa3.cuh (bulk tensor copies, warp-specialized producer, wgmma).
// The host picks it only for bf16, head_dim 128, sm_90a and tensors the copy engine can describe (plan.rs
// DenseKernel); every other call keeps the classic kernel. Included by hip_attn.cu after the library headers.
//
// Grid (tiles of 128 rows of the longest sequence, q heads, batch), HOPPER_THREADS threads, HOPPER_SMEM_BYTES of
// dynamic shared memory. The tensor maps describe Q, K and V of the whole batch as (d, head, token) over
// total_q / total_k tokens: a tile that runs past its sequence reads the next sequence's rows (or zeros past the
// batch), which the key mask below hides and the row check of the epilogue never writes.

static_assert(HIP_HEAD_DIM == HOPPER_D, "the Hopper dense kernel is built for head_dim 128 only");

// Keys the query rows of this thread may not see: past the query's position (causal; the queries are aligned to
// the end of the keys) or past the sequence's keys (both modes; causal already implies it for real rows).
// `masked` is -inf in the units of the raw scores times the sign of the scale, so that after scaling it is -inf.
static __device__ __forceinline__ void hopper_mask(float* acc_s, int kt, int qpos0, int c0, int Tk, float masked) {
#pragma unroll
    for (int j = 0; j < 16; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const int key = kt * HOPPER_BN + 8 * j + c0 + (e & 1);
            const int qpos = qpos0 + 8 * (e >> 1);
            if (HIP_CAUSAL ? key > qpos : key >= Tk) acc_s[4 * j + e] = masked;
        }
}

extern "C" __global__ void __launch_bounds__(HOPPER_THREADS, 1)
    hip_prefill_attn_hopper(const __grid_constant__ hopper_tmap tq, const __grid_constant__ hopper_tmap tk,
                            const __grid_constant__ hopper_tmap tv, const __grid_constant__ hip_prefill_params p) {
    extern __shared__ unsigned char hopper_dyn_smem[];
    // As hip_prefill_attn_dense: the longest causal tiles start first.
    const int jt = HIP_CAUSAL ? (int)(gridDim.x - 1 - blockIdx.x) : (int)blockIdx.x;
    const int h = blockIdx.y, b = blockIdx.z;
    const int tid = threadIdx.x;

    hip::PrefillSeq s;
    const bool ok = hip::prefill_seq(p, b, s);  // a barrier: every thread is still here
    if (ok && !hip::prefill_seq_dense(p, s)) return;  // the block-sparse kernel's sequence
    hip::elem_t* obase = (hip::elem_t*)p.o;
    float* lse_out = (float*)p.lse;
    if (!ok) {
        // Bad sequence bounds: zero this tile's rows (if they are the sequence's own) and report, as the classic
        // dense kernel does.
        hip::prefill_skip_block<HOPPER_BM, HOPPER_THREADS>(p, s, ok, jt, h, tid);
        return;
    }
    if (jt * HOPPER_BM >= s.Tq) return;

    const int first = jt * HOPPER_BM;
    const int len = min(HOPPER_BM, s.Tq - first);
    const int p0 = s.Tk - s.Tq + first;  // key position of the tile's first query
    const int nkeys = HIP_CAUSAL ? p0 + len : s.Tk;
    const int n_kt = (nkeys + HOPPER_BN - 1) / HOPPER_BN;
    // First key tile that holds a key some row of this tile may not see.
    const int mask_from = HIP_CAUSAL ? (p0 + 1) / HOPPER_BN : s.Tk / HOPPER_BN;
    const int hk = h / HIP_GROUP;
    const float scale_log2 = p.scale * 1.4426950408889634f;
    const float masked = scale_log2 > 0.f ? -HOPPER_INF : HOPPER_INF;

    const hopper_smem sm = hopper_smem_map(hopper_dyn_smem);
    const int wg = tid / 128;

    hopper_init_barriers(sm, tid == 0);

    if (wg == 0) {
        asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n" ::: "memory");
        if (tid == 0) hopper_produce(sm, &tq, &tk, &tv, h, s.q0 + first, hk, s.k0, n_kt);
        return;
    }

    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n" ::: "memory");
    const int cw = wg - 1;
    const int warp = (tid / 32) % 4;
    const int lane = tid % 32;
    const int r0 = 16 * warp + lane / 4;
    const int c0 = 2 * (lane % 4);
    const int row0 = 64 * cw + r0;  // row of the tile this thread's first accumulator row is

    float acc_o[2][32];
#pragma unroll
    for (int c = 0; c < 2; ++c)
#pragma unroll
        for (int i = 0; i < 32; ++i) acc_o[c][i] = 0.f;
    float m[2] = {-HOPPER_INF, -HOPPER_INF};
    float l[2] = {0.f, 0.f};

    mbar_wait(sm.q_full, 0);
    const unsigned q_tile = sm.sq + cw * 64 * 128;
    // The prototype's HOPPER_OVERLAP=2 main loop (next S with this P V, consumer pingpong); it needs a tile.
    if (n_kt > 0)
        hopper_mainloop<2>(sm, q_tile, n_kt, cw, lane, scale_log2, acc_o, m, l, [&](float* acc_s, int kt) {
            if (kt >= mask_from) hopper_mask(acc_s, kt, p0 + row0, c0, s.Tk, masked);
        });

    float inv[2];
    hopper_finish_rows(l, inv);
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int q = row0 + 8 * r;
        if (q >= len) continue;  // past the sequence: another sequence's row, or none
        const long long tok = (long long)s.q0 + first + q;
        hopper_store_row(obase + tok * p.o_tok_stride + (long long)h * p.o_head_stride, acc_o, inv[r], r, c0);
        if (lse_out && lane % 4 == 0) lse_out[tok * p.num_q_heads + h] = hopper_lse(m[r], l[r]);
    }
}
