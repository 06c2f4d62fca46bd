// A small RAII wrapper of the hip-attn C API for C++17 engines: a move-only Context that destroys itself, and
// an exception carrying the status and the library's message. Header-only; copy it into your engine as it is.
//
// The wrapper adds no policy: buffers, workspaces and streams stay the engine's, as in the C API. Argument
// structs are the C ones (hip_prefill_args, hip_decode_args); the wrapper only fills in struct_size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

#include "hip_attn.h"

namespace hip {

// A failed call: `status` is the hip_status, what() the operation, the status text and the detailed message
// (which names the offending field).
class Error : public std::runtime_error {
public:
    Error(hip_status status, const std::string& what) : std::runtime_error(what), status_(status) {}
    hip_status status() const noexcept { return status_; }

private:
    hip_status status_;
};

// Throws on failure. The message is per thread and valid until the next failing call on this thread, so it is
// read right here, on the thread that made the call.
inline void check(hip_status status, const char* operation) {
    if (status != HIP_ATTN_STATUS_SUCCESS) {
        throw Error(status, std::string(operation) + ": " + hip_status_string(status) + ": " +
                                hip_last_error_message());
    }
}

// Checks at start-up that the header this program was compiled with matches the library it loaded.
inline void check_abi() {
    if (hip_abi_version() != HIP_ATTN_ABI_VERSION) {
        throw Error(HIP_ATTN_STATUS_UNSUPPORTED, "hip-attn library ABI " + std::to_string(hip_abi_version()) +
                                                     ", header ABI " + std::to_string(HIP_ATTN_ABI_VERSION));
    }
}

// Owns a hip_ctx. Immutable after creation: one Context may serve several threads and streams at once as long
// as each call has its own workspace. Destroy it only when no work that uses it is still queued.
class Context {
public:
    explicit Context(const hip_config& config) { check(hip_ctx_create(&config, &ctx_), "hip_ctx_create"); }
    ~Context() { hip_ctx_destroy(ctx_); }  // NULL (moved-from) is a no-op
    Context(Context&& other) noexcept : ctx_(std::exchange(other.ctx_, nullptr)) {}
    Context& operator=(Context&& other) noexcept {
        if (this != &other) {
            hip_ctx_destroy(ctx_);
            ctx_ = std::exchange(other.ctx_, nullptr);
        }
        return *this;
    }
    Context(const Context&) = delete;
    Context& operator=(const Context&) = delete;

    // Buffer sizes, the same on every backend. Sizes are monotone in each argument: size once for the largest
    // batch the engine will run.
    size_t prefill_workspace_size(uint32_t batch, uint32_t total_q, uint32_t max_seqlen_q,
                                  uint32_t max_seqlen_k) const {
        size_t bytes = 0;
        check(hip_prefill_workspace_size(ctx_, batch, total_q, max_seqlen_q, max_seqlen_k, &bytes),
              "hip_prefill_workspace_size");
        return bytes;
    }
    size_t decode_workspace_size(uint32_t batch, uint32_t max_seqlen_k) const {
        size_t bytes = 0;
        check(hip_decode_workspace_size(ctx_, batch, max_seqlen_k, &bytes), "hip_decode_workspace_size");
        return bytes;
    }
    size_t mask_state_size(uint32_t batch) const {
        size_t bytes = 0;
        check(hip_mask_state_size(ctx_, batch, &bytes), "hip_mask_state_size");
        return bytes;
    }

    // Run calls: queued on `stream` (CUDA) or computed before returning (CPU). They never allocate and keep no
    // pointer; on failure they write no output.
    void prefill(hip_prefill_args args, void* workspace, size_t workspace_bytes, void* stream = nullptr) const {
        args.struct_size = sizeof args;
        check(hip_prefill(ctx_, &args, workspace, workspace_bytes, stream), "hip_prefill");
    }
    void decode_step(hip_decode_args args, void* workspace, size_t workspace_bytes, void* stream = nullptr) const {
        args.struct_size = sizeof args;
        check(hip_decode_step(ctx_, &args, workspace, workspace_bytes, stream), "hip_decode_step");
    }
    void merge_states(hip_merge_args args, void* stream = nullptr) const {
        args.struct_size = sizeof args;
        check(hip_merge_states(ctx_, &args, stream), "hip_merge_states");
    }

    const hip_ctx* get() const noexcept { return ctx_; }

private:
    hip_ctx* ctx_ = nullptr;
};

}  // namespace hip
