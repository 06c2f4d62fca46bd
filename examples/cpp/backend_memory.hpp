// Backend memory for the example: host memory for the CPU backend, device memory for the CUDA backend. hip-attn
// takes pointers in the context's backend's memory and never allocates them itself, so every engine has
// something like this already; the example keeps its own tiny one.
//
// The CUDA side loads the driver (libcuda.so.1) at run time and declares the few entry points it uses, so the
// example builds and runs on machines without CUDA, and needs no CUDA headers or link-time dependency.
#pragma once

#include <dlfcn.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "hip_attn.h"

class Memory {
public:
    virtual ~Memory() = default;
    virtual void* allocate(size_t bytes) = 0;
    virtual void release(void* p) noexcept = 0;
    virtual void to_backend(void* dst, const void* src, size_t bytes) = 0;
    virtual void to_host(void* dst, const void* src, size_t bytes) = 0;
    // Waits for queued work; the CUDA backend queues on the stream, the CPU backend computes before returning.
    virtual void synchronize() = 0;
};

class HostMemory final : public Memory {
public:
    void* allocate(size_t bytes) override {
        // hip-attn wants 16-byte aligned base pointers; aligned_alloc wants a size that is a multiple of 16.
        void* p = std::aligned_alloc(16, bytes == 0 ? 16 : (bytes + 15) / 16 * 16);
        if (!p) throw std::bad_alloc();
        return p;
    }
    void release(void* p) noexcept override { std::free(p); }
    void to_backend(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
    void to_host(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
    void synchronize() override {}
};

// Device memory through the CUDA driver API, on the device's primary context: the one hip-attn's CUDA backend
// (and the CUDA runtime) use, so pointers allocated here are valid in hip-attn's calls.
class CudaMemory final : public Memory {
    // The driver's types and entry points (cuda.h), declared here so that nothing CUDA is needed to build.
    using CUresult = int;
    using CUdevice = int;
    using CUcontext = void*;
    using CUdeviceptr = unsigned long long;
    struct Driver {
        CUresult (*cuInit)(unsigned);
        CUresult (*cuDeviceGet)(CUdevice*, int);
        CUresult (*cuDevicePrimaryCtxRetain)(CUcontext*, CUdevice);
        CUresult (*cuDevicePrimaryCtxRelease_v2)(CUdevice);
        CUresult (*cuCtxSetCurrent)(CUcontext);
        CUresult (*cuCtxSynchronize)();
        CUresult (*cuMemAlloc_v2)(CUdeviceptr*, size_t);
        CUresult (*cuMemFree_v2)(CUdeviceptr);
        CUresult (*cuMemcpyHtoD_v2)(CUdeviceptr, const void*, size_t);
        CUresult (*cuMemcpyDtoH_v2)(void*, CUdeviceptr, size_t);
        CUresult (*cuGetErrorName)(CUresult, const char**);
    };

public:
    explicit CudaMemory(int ordinal) {
        lib_.reset(dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL));
        if (!lib_) throw std::runtime_error(std::string("CUDA driver not available: ") + dlerror());
        load(driver_.cuInit, "cuInit");
        load(driver_.cuDeviceGet, "cuDeviceGet");
        load(driver_.cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
        load(driver_.cuDevicePrimaryCtxRelease_v2, "cuDevicePrimaryCtxRelease_v2");
        load(driver_.cuCtxSetCurrent, "cuCtxSetCurrent");
        load(driver_.cuCtxSynchronize, "cuCtxSynchronize");
        load(driver_.cuMemAlloc_v2, "cuMemAlloc_v2");
        load(driver_.cuMemFree_v2, "cuMemFree_v2");
        load(driver_.cuMemcpyHtoD_v2, "cuMemcpyHtoD_v2");
        load(driver_.cuMemcpyDtoH_v2, "cuMemcpyDtoH_v2");
        load(driver_.cuGetErrorName, "cuGetErrorName");
        check(driver_.cuInit(0), "cuInit");
        check(driver_.cuDeviceGet(&device_, ordinal), "cuDeviceGet");
        CUcontext ctx = nullptr;
        check(driver_.cuDevicePrimaryCtxRetain(&ctx, device_), "cuDevicePrimaryCtxRetain");
        if (CUresult r = driver_.cuCtxSetCurrent(ctx); r != 0) {
            driver_.cuDevicePrimaryCtxRelease_v2(device_);  // the destructor does not run after a throw
            check(r, "cuCtxSetCurrent");
        }
    }
    // Every buffer must be freed before this runs (declare the Memory before the buffers).
    ~CudaMemory() override { driver_.cuDevicePrimaryCtxRelease_v2(device_); }
    CudaMemory(const CudaMemory&) = delete;
    CudaMemory& operator=(const CudaMemory&) = delete;

    void* allocate(size_t bytes) override {
        CUdeviceptr p = 0;
        check(driver_.cuMemAlloc_v2(&p, bytes == 0 ? 16 : bytes), "cuMemAlloc");  // 256-byte aligned
        return reinterpret_cast<void*>(static_cast<uintptr_t>(p));
    }
    void release(void* p) noexcept override {
        if (p) driver_.cuMemFree_v2(reinterpret_cast<uintptr_t>(p));
    }
    // Synchronous copies on the legacy default stream, which the example's NULL stream also is: they are
    // ordered after the attention calls queued there.
    void to_backend(void* dst, const void* src, size_t bytes) override {
        check(driver_.cuMemcpyHtoD_v2(reinterpret_cast<uintptr_t>(dst), src, bytes), "cuMemcpyHtoD");
    }
    void to_host(void* dst, const void* src, size_t bytes) override {
        check(driver_.cuMemcpyDtoH_v2(dst, reinterpret_cast<uintptr_t>(src), bytes), "cuMemcpyDtoH");
    }
    void synchronize() override { check(driver_.cuCtxSynchronize(), "cuCtxSynchronize"); }

private:
    template <class F>
    void load(F& fn, const char* name) {
        fn = reinterpret_cast<F>(dlsym(lib_.get(), name));
        if (!fn) throw std::runtime_error(std::string("libcuda.so.1 lacks ") + name);
    }
    void check(CUresult r, const char* what) {
        if (r == 0) return;
        const char* name = "unknown error";
        driver_.cuGetErrorName(r, &name);
        throw std::runtime_error(std::string(what) + " failed: " + name);
    }

    // Closed by its own destructor, so also when the constructor throws half-way.
    std::unique_ptr<void, int (*)(void*)> lib_{nullptr, dlclose};
    Driver driver_{};
    CUdevice device_ = 0;
};

// A typed buffer in backend memory, freed when it goes out of scope.
template <class T>
class Buffer {
public:
    Buffer(Memory& memory, size_t count) : memory_(&memory), count_(count), ptr_(memory.allocate(count * sizeof(T))) {}
    ~Buffer() { memory_->release(ptr_); }
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;

    T* get() const noexcept { return static_cast<T*>(ptr_); }
    size_t bytes() const noexcept { return count_ * sizeof(T); }
    void upload(const std::vector<T>& host) { memory_->to_backend(ptr_, host.data(), bytes_of(host)); }
    void download(std::vector<T>& host) const { memory_->to_host(host.data(), ptr_, bytes_of(host)); }

private:
    size_t bytes_of(const std::vector<T>& host) const {
        if (host.size() != count_) throw std::logic_error("host vector and buffer differ in size");
        return bytes();
    }
    Memory* memory_;
    size_t count_;
    void* ptr_;
};

// HIP_ATTN_BACKEND=cpu (default) or cuda; HIP_ATTN_DEVICE selects the CUDA device (default 0).
struct Backend {
    hip_backend kind;
    int device_ordinal;
    std::unique_ptr<Memory> memory;

    static Backend from_env() {
        const char* name = std::getenv("HIP_ATTN_BACKEND");
        const char* dev = std::getenv("HIP_ATTN_DEVICE");
        int ordinal = dev ? std::atoi(dev) : 0;
        std::string n = name ? name : "cpu";
        if (n == "cpu") return {HIP_ATTN_BACKEND_CPU, 0, std::make_unique<HostMemory>()};
        if (n == "cuda") return {HIP_ATTN_BACKEND_CUDA, ordinal, std::make_unique<CudaMemory>(ordinal)};
        throw std::runtime_error("HIP_ATTN_BACKEND must be cpu or cuda, not '" + n + "'");
    }
};
