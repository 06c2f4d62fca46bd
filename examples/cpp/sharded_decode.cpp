// hip-attn C++ example: context parallelism. One long sequence's KV cache is split into contiguous shards, one per
// GPU; every decode step each shard runs hip_decode_step over its own keys (key_offset, shard_flags:
// docs/ALGORITHM.md, "Sharded sequences") on its own stream, the shards' partial (O, LSE) pairs are all-gathered
// with NCCL, and every rank merges them with hip_merge_states. New tokens go to the last shard.
//
// Without NCCL, or with fewer GPUs than shards (or on the CPU backend), it says so and runs the shards one after
// another on one device, each on its own stream, and merges there: the same calls, the same result.
//
//   sharded_decode [N]             check (N shards, default 2): a few thousand tokens, k covering every shard's keys, so the merged
//                                  result must equal dense attention over the whole sequence (computed here on
//                                  the host in double); prints MATCH or fails.
//   sharded_decode --bench T [N]   timing: T tokens over N shards (default 2) with the default k = 512; per step
//                                  the slowest shard's decode, the all-gather and the merge, in milliseconds.
//
// HIP_ATTN_EXAMPLE_NCCL=1 takes the NCCL path for one shard too (a communicator of one rank): the NCCL calls run on
// a one-GPU machine.
// HIP_ATTN_BACKEND=cpu (default) or cuda. NCCL (libnccl.so.2) and the CUDA driver are loaded at run time and the
// few entry points used are declared below, so the example builds with only a C++ compiler. NVLink multicast
// (NVLS) is turned off before NCCL loads: NCCL_NVLS_ENABLE=0.
//
// Build: `make example-cpp-sharded`, or as examples/cpp/example.cpp with this file.
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "example_data.hpp"
#include "hip_attn.hpp"

namespace {

constexpr int HQ = 8, HKV = 2, D = 128;
constexpr size_t KV_ROW = HKV * D, Q_ROW = HQ * D;
// One shard's partial as one contiguous record, so that a single all-gather moves both: O (bf16 [HQ, D]) then
// LSE (f32 [HQ]). 2048 + 32 bytes: a multiple of 16, so every record's O stays 16-byte aligned.
constexpr size_t O_BYTES = Q_ROW * 2, SLOT_BYTES = O_BYTES + HQ * 4;

using example::from_bf16;
using example::to_bf16;

example::Xorshift rng{0x2545F4914F6CDD1Dull};
void fill_random(uint16_t* p, size_t n) {
    for (size_t i = 0; i < n; ++i) p[i] = to_bf16(rng.next());
}

double now_ms() {
    using namespace std::chrono;
    return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

// ---------- the CUDA driver, loaded at run time (only what this example uses) ----------
struct Cuda {
    using CUresult = int;
    using CUdeviceptr = unsigned long long;
    CUresult (*cuInit)(unsigned) = nullptr;
    CUresult (*cuDeviceGetCount)(int*) = nullptr;
    CUresult (*cuDeviceGet)(int*, int) = nullptr;
    CUresult (*cuDevicePrimaryCtxRetain)(void**, int) = nullptr;
    CUresult (*cuDevicePrimaryCtxRelease_v2)(int) = nullptr;
    CUresult (*cuCtxSetCurrent)(void*) = nullptr;
    CUresult (*cuMemAlloc_v2)(CUdeviceptr*, size_t) = nullptr;
    CUresult (*cuMemFree_v2)(CUdeviceptr) = nullptr;
    CUresult (*cuMemcpyHtoD_v2)(CUdeviceptr, const void*, size_t) = nullptr;
    CUresult (*cuMemcpyDtoH_v2)(void*, CUdeviceptr, size_t) = nullptr;
    CUresult (*cuStreamCreate)(void**, unsigned) = nullptr;
    CUresult (*cuStreamDestroy_v2)(void*) = nullptr;
    CUresult (*cuStreamSynchronize)(void*) = nullptr;
    CUresult (*cuGetErrorName)(CUresult, const char**) = nullptr;
    std::unique_ptr<void, int (*)(void*)> lib{nullptr, dlclose};

    Cuda() {
        lib.reset(dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL));
        if (!lib) throw std::runtime_error(std::string("CUDA driver not available: ") + dlerror());
        load(cuInit, "cuInit");
        load(cuDeviceGetCount, "cuDeviceGetCount");
        load(cuDeviceGet, "cuDeviceGet");
        load(cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
        load(cuDevicePrimaryCtxRelease_v2, "cuDevicePrimaryCtxRelease_v2");
        load(cuCtxSetCurrent, "cuCtxSetCurrent");
        load(cuMemAlloc_v2, "cuMemAlloc_v2");
        load(cuMemFree_v2, "cuMemFree_v2");
        load(cuMemcpyHtoD_v2, "cuMemcpyHtoD_v2");
        load(cuMemcpyDtoH_v2, "cuMemcpyDtoH_v2");
        load(cuStreamCreate, "cuStreamCreate");
        load(cuStreamDestroy_v2, "cuStreamDestroy_v2");
        load(cuStreamSynchronize, "cuStreamSynchronize");
        load(cuGetErrorName, "cuGetErrorName");
        check(cuInit(0), "cuInit");
    }
    template <class F>
    void load(F& fn, const char* name) {
        fn = reinterpret_cast<F>(dlsym(lib.get(), name));
        if (!fn) throw std::runtime_error(std::string("libcuda.so.1 lacks ") + name);
    }
    void check(CUresult r, const char* what) const {
        if (r == 0) return;
        const char* name = "unknown error";
        cuGetErrorName(r, &name);
        throw std::runtime_error(std::string(what) + " failed: " + name);
    }
};

// One place that holds shards: the host (CPU backend) or one GPU's primary context (the one hip-attn's CUDA
// backend uses). Every driver call binds the context first: NCCL and hip-attn may leave another one current.
class Place {
public:
    explicit Place(std::shared_ptr<Cuda> cuda = nullptr, int ordinal = 0) : cuda_(std::move(cuda)), ordinal_(ordinal) {
        if (!cuda_) return;
        int dev = 0;
        cuda_->check(cuda_->cuDeviceGet(&dev, ordinal), "cuDeviceGet");
        cuda_->check(cuda_->cuDevicePrimaryCtxRetain(&ctx_, dev), "cuDevicePrimaryCtxRetain");
        device_ = dev;
    }
    ~Place() {
        if (cuda_) cuda_->cuDevicePrimaryCtxRelease_v2(device_);
    }
    Place(const Place&) = delete;
    Place& operator=(const Place&) = delete;

    bool gpu() const { return cuda_ != nullptr; }
    int ordinal() const { return ordinal_; }
    void bind() const {
        if (cuda_) cuda_->check(cuda_->cuCtxSetCurrent(ctx_), "cuCtxSetCurrent");
    }
    void* alloc(size_t bytes) const {
        bytes = (std::max<size_t>(bytes, 16) + 15) / 16 * 16;
        if (!cuda_) {
            void* p = std::aligned_alloc(16, bytes);
            if (!p) throw std::bad_alloc();
            return p;
        }
        bind();
        Cuda::CUdeviceptr p = 0;
        cuda_->check(cuda_->cuMemAlloc_v2(&p, bytes), "cuMemAlloc");
        return reinterpret_cast<void*>(static_cast<uintptr_t>(p));
    }
    void free(void* p) const noexcept {
        if (!p) return;
        if (!cuda_) return std::free(p);
        cuda_->cuCtxSetCurrent(ctx_);
        cuda_->cuMemFree_v2(reinterpret_cast<uintptr_t>(p));
    }
    void put(void* dst, const void* src, size_t bytes) const {
        if (!cuda_) return void(std::memcpy(dst, src, bytes));
        bind();
        cuda_->check(cuda_->cuMemcpyHtoD_v2(reinterpret_cast<uintptr_t>(dst), src, bytes), "cuMemcpyHtoD");
    }
    void get(void* dst, const void* src, size_t bytes) const {
        if (!cuda_) return void(std::memcpy(dst, src, bytes));
        bind();
        cuda_->check(cuda_->cuMemcpyDtoH_v2(dst, reinterpret_cast<uintptr_t>(src), bytes), "cuMemcpyDtoH");
    }
    void* new_stream() const {
        if (!cuda_) return nullptr;
        bind();
        void* s = nullptr;
        cuda_->check(cuda_->cuStreamCreate(&s, 0), "cuStreamCreate");
        return s;
    }
    void drop_stream(void* s) const noexcept {
        if (!cuda_ || !s) return;
        cuda_->cuCtxSetCurrent(ctx_);
        cuda_->cuStreamDestroy_v2(s);
    }
    void sync(void* stream) const {
        if (!cuda_) return;
        bind();
        cuda_->check(cuda_->cuStreamSynchronize(stream), "cuStreamSynchronize");
    }

private:
    std::shared_ptr<Cuda> cuda_;
    int ordinal_;
    int device_ = 0;
    void* ctx_ = nullptr;
};

// Memory on a Place, freed with it.
struct Mem {
    const Place* place;
    void* ptr;
    Mem(const Place& p, size_t bytes) : place(&p), ptr(p.alloc(bytes)) {}
    ~Mem() { place->free(ptr); }
    Mem(const Mem&) = delete;
    Mem& operator=(const Mem&) = delete;
    template <class T = void>
    T* as() const {
        return static_cast<T*>(ptr);
    }
};

// ---------- NCCL, loaded at run time (only what this example uses) ----------
struct Nccl {
    using Result = int;       // ncclResult_t: 0 is success
    using Comm = void*;       // ncclComm_t: an opaque handle
    static constexpr int INT8 = 0;  // ncclDataType_t ncclInt8: the all-gather moves raw bytes
    Result (*ncclCommInitAll)(Comm*, int, const int*) = nullptr;
    Result (*ncclCommDestroy)(Comm) = nullptr;
    Result (*ncclGroupStart)() = nullptr;
    Result (*ncclGroupEnd)() = nullptr;
    Result (*ncclAllGather)(const void*, void*, size_t, int, Comm, void*) = nullptr;
    const char* (*ncclGetErrorString)(Result) = nullptr;
    std::unique_ptr<void, int (*)(void*)> lib{nullptr, dlclose};

    // Null (with the reason in `why`) when libnccl.so.2 cannot be loaded.
    static std::unique_ptr<Nccl> open(std::string& why) {
        setenv("NCCL_NVLS_ENABLE", "0", 1);
        auto n = std::make_unique<Nccl>();
        n->lib.reset(dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL));
        if (!n->lib) {
            why = dlerror();
            return nullptr;
        }
        bool ok = n->load(n->ncclCommInitAll, "ncclCommInitAll") && n->load(n->ncclCommDestroy, "ncclCommDestroy") &&
                  n->load(n->ncclGroupStart, "ncclGroupStart") && n->load(n->ncclGroupEnd, "ncclGroupEnd") &&
                  n->load(n->ncclAllGather, "ncclAllGather") && n->load(n->ncclGetErrorString, "ncclGetErrorString");
        if (!ok) {
            why = "libnccl.so.2 lacks an entry point";
            return nullptr;
        }
        return n;
    }
    template <class F>
    bool load(F& fn, const char* name) {
        fn = reinterpret_cast<F>(dlsym(lib.get(), name));
        return fn != nullptr;
    }
    void check(Result r, const char* what) const {
        if (r != 0) throw std::runtime_error(std::string(what) + " failed: " + ncclGetErrorString(r));
    }
};

// ---------- one shard ----------
struct Shard {
    int index;
    size_t start, len, capacity;  // global position of token 0, tokens held now, tokens the cache can hold
    bool last;
    const Place* place;
    const hip::Context* ctx;
    void* stream;
    std::unique_ptr<Mem> k, v, q, seqlen, state, ws;
    size_t ws_bytes = 0;

    // The shard's decode step; its partial goes to `slot` (SLOT_BYTES in the place's memory).
    void step(char* slot) const {
        hip_decode_args a{};
        a.batch_size = 1;
        a.max_seqlen_k = static_cast<uint32_t>(capacity);
        a.q = {q->ptr, static_cast<int64_t>(Q_ROW), D};
        a.kv.layout = HIP_ATTN_KV_CONTIGUOUS;
        a.kv.k = k->ptr;
        a.kv.v = v->ptr;
        a.kv.seq_stride = static_cast<int64_t>(capacity * KV_ROW);
        a.kv.token_stride = static_cast<int64_t>(KV_ROW);
        a.kv.head_stride = D;
        a.seqlens_k = seqlen->as<const int32_t>();
        a.mask_state = state->ptr;
        a.o = {slot, static_cast<int64_t>(Q_ROW), D};
        a.lse = reinterpret_cast<float*>(slot + O_BYTES);
        a.key_offset = static_cast<uint32_t>(start);
        a.shard_flags = last ? 0u : static_cast<uint32_t>(HIP_ATTN_SHARD_NOT_LAST);
        ctx->decode_step(a, ws->ptr, ws_bytes, stream);
    }
};

// Merges the n partials of `slots` (n records of SLOT_BYTES) into the first, in shard order.
void merge_slots(const hip::Context& ctx, char* slots, int n, void* stream) {
    for (int i = 1; i < n; ++i) {
        char* b = slots + static_cast<size_t>(i) * SLOT_BYTES;
        hip_merge_args m{};
        m.num_tokens = 1;
        m.num_heads = HQ;
        m.o_a = {slots, static_cast<int64_t>(Q_ROW), D};
        m.lse_a = reinterpret_cast<const float*>(slots + O_BYTES);
        m.o_b = {b, static_cast<int64_t>(Q_ROW), D};
        m.lse_b = reinterpret_cast<const float*>(b + O_BYTES);
        m.o_out = {slots, static_cast<int64_t>(Q_ROW), D};  // o_a itself: allowed
        m.lse_out = reinterpret_cast<float*>(slots + O_BYTES);
        ctx.merge_states(m, stream);
    }
}

// Dense attention of query row `q` over keys [0, t) in double (the check's reference).
void dense(const uint16_t* q, const std::vector<uint16_t>& k, const std::vector<uint16_t>& v, size_t t, double* out,
           double* lse) {
    const double scale = 1.0 / std::sqrt(static_cast<double>(D));
    std::vector<double> s(t);
    for (int h = 0; h < HQ; ++h) {
        const int g = h / (HQ / HKV);
        double m = -INFINITY;
        for (size_t j = 0; j < t; ++j) {
            double dot = 0;
            for (int i = 0; i < D; ++i) dot += double(from_bf16(q[h * D + i])) * from_bf16(k[j * KV_ROW + g * D + i]);
            s[j] = dot * scale;
            m = std::max(m, s[j]);
        }
        double sum = 0;
        std::vector<double> acc(D, 0.0);
        for (size_t j = 0; j < t; ++j) {
            const double w = std::exp(s[j] - m);
            sum += w;
            for (int i = 0; i < D; ++i) acc[i] += w * from_bf16(v[j * KV_ROW + g * D + i]);
        }
        for (int i = 0; i < D; ++i) out[h * D + i] = acc[i] / sum;
        lse[h] = m + std::log(sum);
    }
}

int run(int argc, char** argv) {
    hip::check_abi();
    bool bench = argc >= 2 && std::string(argv[1]) == "--bench";
    int nshards = 2;
    size_t total = 0;
    if (bench) {
        if (argc < 3) throw std::runtime_error("usage: sharded_decode --bench TOKENS [SHARDS]");
        total = std::strtoull(argv[2], nullptr, 10);
        if (argc >= 4) nshards = std::atoi(argv[3]);
    } else if (argc >= 2) {
        nshards = std::atoi(argv[1]);
    }
    if (nshards < 1) throw std::runtime_error("SHARDS must be at least 1");
    if (!bench) total = 1500 * static_cast<size_t>(nshards);
    const int steps = bench ? 20 : 4;
    if (total < static_cast<size_t>(nshards) * 256) throw std::runtime_error("too few tokens for that many shards");

    const char* backend_env = std::getenv("HIP_ATTN_BACKEND");
    const std::string backend = backend_env ? backend_env : "cpu";
    if (backend != "cpu" && backend != "cuda") throw std::runtime_error("HIP_ATTN_BACKEND must be cpu or cuda");
    const bool cuda = backend == "cuda";

    // Places: one per shard when there are enough GPUs and NCCL loads; otherwise one, and the shards take turns.
    std::shared_ptr<Cuda> driver;
    int gpus = 0;
    if (cuda) {
        driver = std::make_shared<Cuda>();
        driver->check(driver->cuDeviceGetCount(&gpus), "cuDeviceGetCount");
    }
    std::unique_ptr<Nccl> nccl;
    std::string why;
    if (!cuda) {
        why = "the CPU backend has no NCCL";
    } else if (gpus < nshards) {
        why = std::to_string(gpus) + " GPU(s) for " + std::to_string(nshards) + " shards";
    } else if (nshards < 2 && !std::getenv("HIP_ATTN_EXAMPLE_NCCL")) {
        why = "one shard";
    } else {
        nccl = Nccl::open(why);
    }
    const bool parallel = nccl != nullptr;
    if (parallel) {
        std::printf("%d shards on %d GPUs, partials all-gathered with NCCL (NCCL_NVLS_ENABLE=0)\n", nshards, nshards);
    } else {
        std::printf("%d shard(s) one after another on one %s (%s)\n", nshards, cuda ? "GPU" : "host", why.c_str());
    }
    std::vector<std::unique_ptr<Place>> places;
    for (int i = 0; i < (parallel ? nshards : 1); ++i) places.push_back(std::make_unique<Place>(driver, i));

    hip_config cfg = hip_config_default();
    cfg.dtype = HIP_ATTN_DTYPE_BF16;
    cfg.head_dim = D;
    cfg.num_q_heads = HQ;
    cfg.num_kv_heads = HKV;
    cfg.refresh = 4;
    // The check's k covers every shard's keys (each shard's domain is under 1500 + steps keys): then the merged
    // result is dense attention over the whole sequence, whatever the boundaries (docs/ALGORITHM.md).
    if (!bench) cfg.k = 2048;
    cfg.backend = cuda ? HIP_ATTN_BACKEND_CUDA : HIP_ATTN_BACKEND_CPU;
    std::vector<std::unique_ptr<hip::Context>> ctxs;
    for (auto& p : places) {
        cfg.device_ordinal = p->ordinal();
        p->bind();
        ctxs.push_back(std::make_unique<hip::Context>(cfg));
    }

    // The whole sequence on the host (the check needs it; the bench only uses it to fill the shards).
    const size_t final_len = total + steps;
    std::vector<uint16_t> k(final_len * KV_ROW), v(final_len * KV_ROW);
    fill_random(k.data(), k.size());
    fill_random(v.data(), v.size());

    std::vector<Shard> shards;
    for (int i = 0; i < nshards; ++i) {
        Shard s{};
        s.index = i;
        s.start = total * i / nshards;
        s.len = total * (i + 1) / nshards - s.start;
        s.last = i + 1 == nshards;
        s.capacity = s.len + (s.last ? steps : 0);
        s.place = places[parallel ? i : 0].get();
        s.ctx = ctxs[parallel ? i : 0].get();
        s.stream = s.place->new_stream();
        const size_t kv_bytes = s.capacity * KV_ROW * 2;
        s.k = std::make_unique<Mem>(*s.place, kv_bytes);
        s.v = std::make_unique<Mem>(*s.place, kv_bytes);
        s.place->put(s.k->ptr, k.data() + s.start * KV_ROW, s.len * KV_ROW * 2);
        s.place->put(s.v->ptr, v.data() + s.start * KV_ROW, s.len * KV_ROW * 2);
        s.q = std::make_unique<Mem>(*s.place, Q_ROW * 2);
        s.seqlen = std::make_unique<Mem>(*s.place, 4);
        const size_t state_bytes = s.ctx->mask_state_size(1);
        s.state = std::make_unique<Mem>(*s.place, state_bytes);
        std::vector<char> zeros(state_bytes, 0);
        s.place->put(s.state->ptr, zeros.data(), state_bytes);
        s.ws_bytes = s.ctx->decode_workspace_size(1, static_cast<uint32_t>(s.capacity));
        s.ws = std::make_unique<Mem>(*s.place, s.ws_bytes);
        shards.push_back(std::move(s));
    }
    // The partials: on every rank all n records (NCCL gathers into them in place); without NCCL one set.
    std::vector<std::unique_ptr<Mem>> slots;
    for (auto& p : places) slots.push_back(std::make_unique<Mem>(*p, SLOT_BYTES * nshards));

    std::vector<Nccl::Comm> comms(nshards, nullptr);
    if (parallel) {
        std::vector<int> devs(nshards);
        for (int i = 0; i < nshards; ++i) devs[i] = i;
        nccl->check(nccl->ncclCommInitAll(comms.data(), nshards, devs.data()), "ncclCommInitAll");
    }

    double t_decode = 0, t_comm = 0, t_merge = 0;
    std::vector<double> t_shard(nshards, 0.0);
    int timed = 0;
    double worst_o = 0, worst_lse = 0;
    std::vector<uint16_t> q(Q_ROW);
    std::vector<char> merged(SLOT_BYTES);
    for (int step = 0; step < steps; ++step) {
        // The new token's key and value go to the last shard; its query goes to every shard.
        Shard& tail = shards.back();
        const size_t pos = total + step;  // global position of the new token
        tail.len = pos + 1 - tail.start;
        tail.place->put(tail.k->as<char>() + (tail.len - 1) * KV_ROW * 2, k.data() + pos * KV_ROW, KV_ROW * 2);
        tail.place->put(tail.v->as<char>() + (tail.len - 1) * KV_ROW * 2, v.data() + pos * KV_ROW, KV_ROW * 2);
        fill_random(q.data(), q.size());
        for (auto& s : shards) {
            const int32_t n = static_cast<int32_t>(s.len);
            s.place->put(s.seqlen->ptr, &n, 4);
            s.place->put(s.q->ptr, q.data(), Q_ROW * 2);
        }

        const double t0 = now_ms();
        if (parallel) {
            for (auto& s : shards) s.step(slots[s.index]->as<char>() + s.index * SLOT_BYTES);
            for (auto& s : shards) s.place->sync(s.stream);
        } else {
            // One after another: each shard on its own stream, finished before the next starts.
            for (auto& s : shards) {
                const double ts = now_ms();
                s.step(slots[0]->as<char>() + s.index * SLOT_BYTES);
                s.place->sync(s.stream);
                if (step >= 2) t_shard[s.index] += now_ms() - ts;
            }
        }
        const double t1 = now_ms();
        if (parallel) {
            nccl->check(nccl->ncclGroupStart(), "ncclGroupStart");
            for (auto& s : shards) {
                char* recv = slots[s.index]->as<char>();
                nccl->check(nccl->ncclAllGather(recv + s.index * SLOT_BYTES, recv, SLOT_BYTES, Nccl::INT8,
                                                comms[s.index], s.stream),
                            "ncclAllGather");
            }
            nccl->check(nccl->ncclGroupEnd(), "ncclGroupEnd");
            for (auto& s : shards) s.place->sync(s.stream);
        }
        const double t2 = now_ms();
        // Every rank merges its gathered copy (so each holds the result its next layer needs); rank 0 is read.
        for (size_t r = 0; r < places.size(); ++r) {
            places[r]->bind();
            merge_slots(*ctxs[r], slots[r]->as<char>(), nshards, shards[r].stream);
        }
        for (size_t r = 0; r < places.size(); ++r) places[r]->sync(shards[r].stream);
        const double t3 = now_ms();
        if (step >= 2) {  // the first steps search every shard and warm up
            t_decode += t1 - t0;
            t_comm += t2 - t1;
            t_merge += t3 - t2;
            ++timed;
        }

        places[0]->get(merged.data(), slots[0]->ptr, SLOT_BYTES);
        if (!bench) {
            std::vector<double> want(Q_ROW), want_lse(HQ);
            dense(q.data(), k, v, pos + 1, want.data(), want_lse.data());
            const uint16_t* o = reinterpret_cast<const uint16_t*>(merged.data());
            const float* lse = reinterpret_cast<const float*>(merged.data() + O_BYTES);
            for (size_t i = 0; i < Q_ROW; ++i) worst_o = std::max(worst_o, std::fabs(from_bf16(o[i]) - want[i]));
            for (int h = 0; h < HQ; ++h) worst_lse = std::max(worst_lse, std::fabs(lse[h] - want_lse[h]));
            // bf16 inputs and output: the merged rows carry bf16 rounding of the partials and of the result.
            if (!(worst_o < 1e-2 && worst_lse < 1e-2)) {
                std::printf("MISMATCH at step %d: max |o - dense| %.3g, max |lse - dense| %.3g\n", step, worst_o,
                            worst_lse);
                return 1;
            }
        }
    }

    if (parallel) {
        for (auto c : comms) nccl->ncclCommDestroy(c);
    }
    for (auto& s : shards) s.place->drop_stream(s.stream);
    if (timed > 0) {
        const double step_ms = (t_decode + t_comm + t_merge) / timed;
        std::printf("%zu tokens, %d shards, k %u: per step %.3f ms = decode %.3f + all-gather %.3f + merge %.3f "
                    "(communication %.1f%%)\n",
                    total, nshards, cfg.k, step_ms, t_decode / timed, t_comm / timed, t_merge / timed,
                    100.0 * t_comm / (t_decode + t_comm + t_merge));
        if (!parallel) {
            for (int i = 0; i < nshards; ++i) {
                std::printf("  shard %d [%zu, %zu): %.3f ms\n", i, shards[i].start, shards[i].start + shards[i].len,
                            t_shard[i] / timed);
            }
        }
    }
    if (!bench) {
        std::printf("max |o - dense| %.3g, max |lse - dense| %.3g over %d steps\n", worst_o, worst_lse, steps);
        std::printf("MATCH: sharded HiP with k covering all keys equals dense attention\n");
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "sharded_decode: %s\n", e.what());
        return 1;
    }
}
