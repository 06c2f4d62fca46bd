// hip-attn C++ example: a prefill of a small batch of sequences, then decode steps that reuse the mask between
// searches. It runs on the backend that HIP_ATTN_BACKEND names (cpu, the default, or cuda) and checks itself
// against its own dense attention, computed on the host in double: with k covering every key, HiP attention is
// exact dense attention (docs/ALGORITHM.md). Shapes and random data are those of the C example, so on the CPU
// backend both print the same checksum.
//
// Build against an installed copy (make install), through pkg-config:
//   c++ -std=c++17 -O2 $(pkg-config --cflags hip_attn) examples/cpp/example.cpp $(pkg-config --libs hip_attn) -ldl
// or simply `make example-cpp`. See examples/README.md.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <vector>

#include "backend_memory.hpp"
#include "example_data.hpp"
#include "hip_attn.hpp"

namespace {

constexpr int HQ = 8, HKV = 2, D = 64, BATCH = 2, STEPS = 6;
constexpr int SEQ_LEN[BATCH] = {300, 77};
constexpr int MAX_LEN = 300, CAPACITY = MAX_LEN + STEPS;
constexpr size_t KV_ROW = HKV * D, Q_ROW = HQ * D;

using example::from_bf16;
using example::to_bf16;

// The C example's generator and seed, so the two examples draw the same data.
example::Xorshift rng{0x9E3779B97F4A7C15ull};
float rnd() { return rng.next(); }
std::vector<uint16_t> random_bf16(size_t n) {
    std::vector<uint16_t> v(n);
    for (auto& x : v) x = to_bf16(rnd());
    return v;
}
// Outputs start as NaN so that anything left unwritten fails the comparison.
std::vector<uint16_t> nan_bf16(size_t n) { return std::vector<uint16_t>(n, 0x7FC0); }

// Dense causal attention of one query row (at position pos) over keys [0, pos] of one kv head, in double.
void dense_row(const uint16_t* q, const uint16_t* k, const uint16_t* v, size_t kv_row, int pos, double* out) {
    std::vector<double> s(static_cast<size_t>(pos) + 1);
    double m = -INFINITY, sum = 0, scale = 1.0 / std::sqrt(static_cast<double>(D));
    for (int j = 0; j <= pos; j++) {
        double dot = 0;
        for (int d = 0; d < D; d++) dot += static_cast<double>(from_bf16(q[d])) * from_bf16(k[j * kv_row + d]);
        s[j] = dot * scale;
        m = std::max(m, s[j]);
    }
    for (int d = 0; d < D; d++) out[d] = 0;
    for (int j = 0; j <= pos; j++) {
        double w = std::exp(s[j] - m);
        sum += w;
        for (int d = 0; d < D; d++) out[d] += w * from_bf16(v[j * kv_row + d]);
    }
    for (int d = 0; d < D; d++) out[d] /= sum;
}

// Largest |out - dense| over the heads of one query row; NaN (an unwritten output) counts as infinitely far.
double row_diff(const uint16_t* out_row, const uint16_t* q_row, const uint16_t* k, const uint16_t* v, int pos) {
    double worst = 0, ref[D];
    for (int h = 0; h < HQ; h++) {
        size_t g = static_cast<size_t>(h / (HQ / HKV)) * D;
        dense_row(q_row + h * D, k + g, v + g, KV_ROW, pos, ref);
        for (int d = 0; d < D; d++) {
            double diff = std::fabs(from_bf16(out_row[h * D + d]) - ref[d]);
            if (std::isnan(diff)) return INFINITY;
            worst = std::max(worst, diff);
        }
    }
    return worst;
}

hip_tensor view(const void* p, size_t row) { return {p, static_cast<int64_t>(row), D}; }
hip_tensor_mut view_mut(void* p, size_t row) { return {p, static_cast<int64_t>(row), D}; }

int run() {
    hip::check_abi();
    // Declared first, so destroyed last: every buffer below is released into it.
    Backend backend = Backend::from_env();
    Memory& mem = *backend.memory;
    std::printf("hip-attn %s (ABI %u), backend %s\n", hip_version(), hip_abi_version(),
                backend.kind == HIP_ATTN_BACKEND_CUDA ? "cuda" : "cpu");

    // Two contexts: a sparse one as an engine would use it, and one whose k covers every key (exact).
    hip_config cfg = hip_config_default();
    cfg.dtype = HIP_ATTN_DTYPE_BF16;
    cfg.head_dim = D;
    cfg.num_q_heads = HQ;
    cfg.num_kv_heads = HKV;
    cfg.k = 64;
    cfg.bq = 16;
    cfg.window = 32;
    cfg.refresh = 4;
    cfg.backend = backend.kind;
    cfg.device_ordinal = backend.device_ordinal;
    const hip::Context sparse(cfg);
    cfg.k = 1024;  // covers every key of these <= 306-token sequences: exact dense attention (on every backend)
    const hip::Context exact(cfg);

    // Host data, drawn in the C example's order. The KV cache is contiguous per sequence,
    // [BATCH][CAPACITY][HKV][D]; the prefill reads the first SEQ_LEN tokens packed, so keep a packed copy too.
    const int total = SEQ_LEN[0] + SEQ_LEN[1];
    const std::vector<int32_t> cu = {0, SEQ_LEN[0], total};
    std::vector<uint16_t> kc = random_bf16(size_t{BATCH} * CAPACITY * KV_ROW);
    std::vector<uint16_t> vc = random_bf16(size_t{BATCH} * CAPACITY * KV_ROW);
    std::vector<uint16_t> kp(total * KV_ROW), vp(total * KV_ROW);
    for (int b = 0; b < BATCH; b++) {
        std::copy_n(kc.begin() + b * CAPACITY * KV_ROW, SEQ_LEN[b] * KV_ROW, kp.begin() + cu[b] * KV_ROW);
        std::copy_n(vc.begin() + b * CAPACITY * KV_ROW, SEQ_LEN[b] * KV_ROW, vp.begin() + cu[b] * KV_ROW);
    }
    std::vector<uint16_t> q = random_bf16(total * Q_ROW), o = nan_bf16(total * Q_ROW);

    // The same in backend memory.
    Buffer<uint16_t> d_kc(mem, kc.size()), d_vc(mem, vc.size()), d_kp(mem, kp.size()), d_vp(mem, vp.size());
    Buffer<uint16_t> d_q(mem, q.size()), d_o(mem, o.size());
    Buffer<int32_t> d_cu(mem, cu.size());
    d_kc.upload(kc), d_vc.upload(vc), d_kp.upload(kp), d_vp.upload(vp), d_q.upload(q), d_o.upload(o);
    d_cu.upload(cu);

    // One workspace for every call of both contexts: the largest of the sizes.
    size_t ws_bytes = 0;
    for (const hip::Context* c : {&sparse, &exact}) {
        ws_bytes = std::max({ws_bytes, c->prefill_workspace_size(BATCH, total, MAX_LEN, MAX_LEN),
                             c->decode_workspace_size(BATCH, CAPACITY)});
    }
    Buffer<uint8_t> ws(mem, ws_bytes);
    // Mask states: the sparse one is filled by the prefill; the exact one starts zeroed (first step searches).
    Buffer<uint8_t> state(mem, sparse.mask_state_size(BATCH));
    Buffer<uint8_t> state_exact(mem, exact.mask_state_size(BATCH));
    state_exact.upload(std::vector<uint8_t>(state_exact.bytes(), 0));

    hip_prefill_args pa{};
    pa.batch_size = BATCH;
    pa.total_q = pa.total_k = total;
    pa.max_seqlen_q = pa.max_seqlen_k = MAX_LEN;
    pa.q = view(d_q.get(), Q_ROW);
    pa.k = view(d_kp.get(), KV_ROW);
    pa.v = view(d_vp.get(), KV_ROW);
    pa.o = view_mut(d_o.get(), Q_ROW);
    pa.cu_seqlens_q = pa.cu_seqlens_k = d_cu.get();
    exact.prefill(pa, ws.get(), ws.bytes());
    mem.synchronize();
    d_o.download(o);

    double max_diff = 0;
    for (int b = 0; b < BATCH; b++)
        for (int i = 0; i < SEQ_LEN[b]; i++) {
            size_t row = cu[b] + i;
            max_diff = std::max(max_diff, row_diff(&o[row * Q_ROW], &q[row * Q_ROW], &kp[cu[b] * KV_ROW],
                                                   &vp[cu[b] * KV_ROW], i));
        }
    std::printf("prefill (k covers all keys) vs dense: max |diff| = %.5f\n", max_diff);

    pa.mask_state_out = state.get();
    sparse.prefill(pa, ws.get(), ws.bytes());

    // Decode: each step the engine appends the new token's k/v to the cache (here it is already there), then
    // calls decode_step. The mask from the prefill is reused until the step counter reaches `refresh`.
    // (dq starts random only to keep drawing in the C example's order: every step draws it anew.)
    std::vector<uint16_t> dq = random_bf16(BATCH * Q_ROW), dout = nan_bf16(BATCH * Q_ROW);
    std::vector<int32_t> lens(BATCH);
    Buffer<uint16_t> d_dq(mem, dq.size()), d_dout(mem, dout.size());
    Buffer<int32_t> d_lens(mem, lens.size());
    hip_decode_args da{};
    da.batch_size = BATCH;
    da.max_seqlen_k = CAPACITY;
    da.q = view(d_dq.get(), Q_ROW);
    da.kv.layout = HIP_ATTN_KV_CONTIGUOUS;
    da.kv.k = d_kc.get();
    da.kv.v = d_vc.get();
    da.kv.seq_stride = CAPACITY * KV_ROW;
    da.kv.token_stride = KV_ROW;
    da.kv.head_stride = D;
    da.seqlens_k = d_lens.get();
    da.o = view_mut(d_dout.get(), Q_ROW);
    double checksum = 0, max_decode_diff = 0;
    for (int step = 0; step < STEPS; step++) {
        for (int b = 0; b < BATCH; b++) lens[b] = SEQ_LEN[b] + step + 1;
        for (auto& x : dq) x = to_bf16(rnd());
        d_lens.upload(lens);
        d_dq.upload(dq);

        da.mask_state = state.get();
        sparse.decode_step(da, ws.get(), ws.bytes());
        mem.synchronize();
        d_dout.download(dout);
        for (uint16_t x : dout) checksum += from_bf16(x);

        da.mask_state = state_exact.get();
        exact.decode_step(da, ws.get(), ws.bytes());
        mem.synchronize();
        d_dout.download(dout);
        for (int b = 0; b < BATCH; b++) {
            size_t base = b * CAPACITY * KV_ROW;
            max_decode_diff = std::max(
                max_decode_diff, row_diff(&dout[b * Q_ROW], &dq[b * Q_ROW], &kc[base], &vc[base], lens[b] - 1));
        }
    }
    std::printf("decode: %d steps with mask reuse, checksum %.6f\n", STEPS, checksum);
    std::printf("decode (k covers all keys) vs dense: max |diff| = %.5f\n", max_decode_diff);

    bool ok = max_diff < 2e-2 && max_decode_diff < 2e-2 && std::isfinite(checksum);
    std::printf("%s\n", ok ? "MATCH: HiP with k covering all keys equals dense attention" : "MISMATCH");
    return ok ? 0 : 1;
}

}  // namespace

int main() {
    try {
        return run();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
