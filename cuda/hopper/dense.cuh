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
        if (tid == 0) hip::set_error(p.error_flag, HIP_ATTN_DEVERR_SEQLENS);
        if (!s.q_range_ok) return;
        const int first = jt * HOPPER_BM;
        const int len = min(HOPPER_BM, s.Tq - first);
        for (int c = tid; c < len * 16; c += HOPPER_THREADS) {
            const int r = c / 16, part = c - r * 16;
            *(uint4*)(obase + (long long)(s.q0 + first + r) * p.o_tok_stride + (long long)h * p.o_head_stride +
                      part * 8) = make_uint4(0, 0, 0, 0);
        }
        if (lse_out)
            for (int r = tid; r < len; r += HOPPER_THREADS)
                lse_out[(long long)(s.q0 + first + r) * p.num_q_heads + h] = HIP_NEG_INF;
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

    const unsigned base = (smem_u32(hopper_dyn_smem) + 1023u) & ~1023u;
    const unsigned sq = base;
    const unsigned sk = base + HOPPER_TILE;
    const unsigned sv = sk + HOPPER_STAGES * HOPPER_TILE;
    const unsigned bars = sv + HOPPER_STAGES * HOPPER_TILE;
    const unsigned q_full = bars;
    const unsigned k_full = bars + 8;
    const unsigned v_full = k_full + 8 * HOPPER_STAGES;
    const unsigned k_empty = v_full + 8 * HOPPER_STAGES;
    const unsigned v_empty = k_empty + 8 * HOPPER_STAGES;
    const int wg = tid / 128;

    if (tid == 0) {
        mbar_init(q_full, 1);
        for (int st = 0; st < HOPPER_STAGES; ++st) {
            mbar_init(k_full + 8 * st, 1);
            mbar_init(v_full + 8 * st, 1);
            mbar_init(k_empty + 8 * st, 8);
            mbar_init(v_empty + 8 * st, 8);
        }
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();

    if (wg == 0) {
        asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n" ::: "memory");
        if (tid == 0) {
            mbar_expect_tx(q_full, HOPPER_TILE);
            tma_load(sq, &tq, 0, h, s.q0 + first, q_full);
            tma_load(sq + HOPPER_HALF, &tq, 64, h, s.q0 + first, q_full);
            for (int kt = 0; kt < n_kt; ++kt) {
                const int st = kt % HOPPER_STAGES;
                const unsigned use = kt / HOPPER_STAGES;
                const int tok = s.k0 + kt * HOPPER_BN;
                if (use > 0) mbar_wait(k_empty + 8 * st, (use - 1) & 1);
                mbar_expect_tx(k_full + 8 * st, HOPPER_TILE);
                tma_load(sk + st * HOPPER_TILE, &tk, 0, hk, tok, k_full + 8 * st);
                tma_load(sk + st * HOPPER_TILE + HOPPER_HALF, &tk, 64, hk, tok, k_full + 8 * st);
                if (use > 0) mbar_wait(v_empty + 8 * st, (use - 1) & 1);
                mbar_expect_tx(v_full + 8 * st, HOPPER_TILE);
                tma_load(sv + st * HOPPER_TILE, &tv, 0, hk, tok, v_full + 8 * st);
                tma_load(sv + st * HOPPER_TILE + HOPPER_HALF, &tv, 64, hk, tok, v_full + 8 * st);
            }
        }
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

    mbar_wait(q_full, 0);
    const unsigned q_tile = sq + cw * 64 * 128;
    // As the prototype's HOPPER_OVERLAP=2 (docs/HOPPER-NOTES.md): S(kt + 1) = Q K(kt + 1) is issued together with
    // O += P(kt) V(kt), the softmax of S(kt + 1) runs while that product does, and the two consumer warpgroups take
    // turns issuing their products (pingpong), so one's softmax runs while the other's products hold the tensor
    // cores. The first tile's S and softmax come before the loop, the last tile's P V after it.
    if (n_kt > 0) {
        unsigned p[32];
        {
            float acc_s[64];
            mbar_wait(k_full, 0);
            wgmma_fence();
            issue_s(acc_s, q_tile, sk);
            wgmma_commit();
            wgmma_wait<0>();
            pin<64>(acc_s);
            release(k_empty, lane);
            if (mask_from == 0) hopper_mask(acc_s, 0, p0 + row0, c0, s.Tk, masked);
            float alpha[2];  // O is still zero: nothing to rescale
            softmax_tile(acc_s, scale_log2, m, l, alpha, p);
        }
        // Warpgroup 0 issues first. Each warpgroup waits n_kt - 1 times; warpgroup 1 passes the turn once before
        // the loop and then in every trip but its last, so every wait has exactly one matching arrival.
        if (cw == 1 && n_kt > 1) turn_pass(cw);
        for (int kt = 0; kt + 1 < n_kt; ++kt) {
            const int st = kt % HOPPER_STAGES;
            const unsigned parity = (kt / HOPPER_STAGES) & 1;
            const int st1 = (kt + 1) % HOPPER_STAGES;
            const unsigned parity1 = ((kt + 1) / HOPPER_STAGES) & 1;
            float acc_s[64];
            mbar_wait(k_full + 8 * st1, parity1);
            mbar_wait(v_full + 8 * st, parity);
            turn_wait(cw);
            wgmma_fence();
            issue_s(acc_s, q_tile, sk + st1 * HOPPER_TILE);
            wgmma_commit();
            issue_pv(acc_o, p, sv + st * HOPPER_TILE);
            wgmma_commit();
            if (cw == 0 || kt + 2 < n_kt) turn_pass(cw);
            wgmma_wait<1>();  // the older group, S(kt + 1), is complete; P(kt) V(kt) may still run
            pin<64>(acc_s);
            release(k_empty + 8 * st1, lane);
            if (kt + 1 >= mask_from) hopper_mask(acc_s, kt + 1, p0 + row0, c0, s.Tk, masked);
            float alpha[2];
            unsigned p_next[32];
            softmax_tile(acc_s, scale_log2, m, l, alpha, p_next);
            pin<32>(p_next);
            wgmma_wait<0>();
            pin<32>(acc_o[0]);
            pin<32>(acc_o[1]);
            pin<32>(p);
            release(v_empty + 8 * st, lane);
            rescale(acc_o, alpha);
#pragma unroll
            for (int i = 0; i < 32; ++i) p[i] = p_next[i];
        }
        const int kt = n_kt - 1;
        const int st = kt % HOPPER_STAGES;
        mbar_wait(v_full + 8 * st, (kt / HOPPER_STAGES) & 1);
        wgmma_fence();
        issue_pv(acc_o, p, sv + st * HOPPER_TILE);
        wgmma_commit();
        wgmma_wait<0>();
        pin<32>(acc_o[0]);
        pin<32>(acc_o[1]);
        release(v_empty + 8 * st, lane);
    }

#pragma unroll
    for (int r = 0; r < 2; ++r) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    }
    const float inv[2] = {1.f / l[0], 1.f / l[1]};
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int q = row0 + 8 * r;
        if (q >= len) continue;  // past the sequence: another sequence's row, or none
        const long long tok = (long long)s.q0 + first + q;
        hip::elem_t* row = obase + tok * p.o_tok_stride + (long long)h * p.o_head_stride;
#pragma unroll
        for (int c = 0; c < 2; ++c)
#pragma unroll
            for (int j = 0; j < 8; ++j) {
                const unsigned v = pack_bf16(acc_o[c][4 * j + 2 * r] * inv[r], acc_o[c][4 * j + 2 * r + 1] * inv[r]);
                *reinterpret_cast<unsigned*>(row + 64 * c + 8 * j + c0) = v;
            }
        if (lse_out && lane % 4 == 0)
            lse_out[tok * p.num_q_heads + h] = 0.69314718055994531f * (m[r] + __log2f(l[r]));
    }
}
