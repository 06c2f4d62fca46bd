package hipattn

// Backend memory for the example and its test: host memory (C.aligned_alloc) for the CPU backend, device memory
// for the CUDA backend. An engine has its own allocator; this one only shows what hip-attn expects: C or device
// memory, handled as uintptr.
//
// The CUDA side loads the driver (libcuda.so.1) at run time and declares the few entry points it uses, so the
// package builds and its tests run on machines without CUDA, with no CUDA headers or link-time dependency.

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *hipgo_host_alloc(size_t bytes) {
	// 16-byte aligned base pointers; aligned_alloc wants a size that is a multiple of the alignment.
	return aligned_alloc(16, bytes == 0 ? 16 : (bytes + 15) / 16 * 16);
}
static void hipgo_host_free(uintptr_t p) { free((void *)p); }
static void hipgo_host_to(uintptr_t dst, const void *src, size_t n) { memcpy((void *)dst, src, n); }
static void hipgo_host_from(void *dst, uintptr_t src, size_t n) { memcpy(dst, (const void *)src, n); }

// The CUDA driver's entry points (cuda.h), loaded once by hipgo_cuda_open.
typedef int CUresult;
static struct {
	void *lib;
	int device;
	CUresult (*cuInit)(unsigned);
	CUresult (*cuDeviceGet)(int *, int);
	CUresult (*cuDevicePrimaryCtxRetain)(void **, int);
	CUresult (*cuDevicePrimaryCtxRelease_v2)(int);
	CUresult (*cuCtxSetCurrent)(void *);
	CUresult (*cuCtxSynchronize)(void);
	CUresult (*cuMemAlloc_v2)(unsigned long long *, size_t);
	CUresult (*cuMemFree_v2)(unsigned long long);
	CUresult (*cuMemcpyHtoD_v2)(unsigned long long, const void *, size_t);
	CUresult (*cuMemcpyDtoH_v2)(void *, unsigned long long, size_t);
	CUresult (*cuGetErrorName)(CUresult, const char **);
	void *ctx;
} cu;

// Formats a failure into a malloc'd message (Go frees it); NULL on success.
static char *hipgo_cu_err(CUresult r, const char *what) {
	if (r == 0) return NULL;
	const char *name = "unknown error";
	if (cu.cuGetErrorName) cu.cuGetErrorName(r, &name);
	char *msg = malloc(256);
	if (msg) snprintf(msg, 256, "%s failed: %s", what, name);
	return msg;
}

// The driver keeps per-thread current contexts, and goroutines move between threads: every helper makes the
// primary context current in the same C call that uses it.
static CUresult hipgo_cu_current(void) { return cu.cuCtxSetCurrent(cu.ctx); }

static char *hipgo_cuda_open(int ordinal) {
	if (cu.lib) return NULL;
	void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		char *msg = malloc(512);
		if (msg) snprintf(msg, 512, "CUDA driver not available: %s", dlerror());
		return msg;
	}
#define LOAD(name) if (!(*(void **)&cu.name = dlsym(lib, #name))) { dlclose(lib); memset(&cu, 0, sizeof cu); return strdup("libcuda.so.1 lacks " #name); }
	LOAD(cuInit) LOAD(cuDeviceGet) LOAD(cuDevicePrimaryCtxRetain) LOAD(cuDevicePrimaryCtxRelease_v2)
	LOAD(cuCtxSetCurrent) LOAD(cuCtxSynchronize) LOAD(cuMemAlloc_v2) LOAD(cuMemFree_v2) LOAD(cuMemcpyHtoD_v2)
	LOAD(cuMemcpyDtoH_v2) LOAD(cuGetErrorName)
#undef LOAD
	char *err = hipgo_cu_err(cu.cuInit(0), "cuInit");
	if (!err) err = hipgo_cu_err(cu.cuDeviceGet(&cu.device, ordinal), "cuDeviceGet");
	if (!err) err = hipgo_cu_err(cu.cuDevicePrimaryCtxRetain(&cu.ctx, cu.device), "cuDevicePrimaryCtxRetain");
	if (err) {
		dlclose(lib);
		memset(&cu, 0, sizeof cu);
		return err;
	}
	cu.lib = lib;
	return NULL;
}
static void hipgo_cuda_close(void) {
	if (!cu.lib) return;
	cu.cuDevicePrimaryCtxRelease_v2(cu.device);
	dlclose(cu.lib);
	memset(&cu, 0, sizeof cu);
}
static char *hipgo_cuda_alloc(size_t bytes, uintptr_t *out) {
	unsigned long long p = 0;
	char *err = hipgo_cu_err(hipgo_cu_current(), "cuCtxSetCurrent");
	if (!err) err = hipgo_cu_err(cu.cuMemAlloc_v2(&p, bytes == 0 ? 16 : bytes), "cuMemAlloc");
	*out = (uintptr_t)p;
	return err;
}
static void hipgo_cuda_free(uintptr_t p) {
	if (p && hipgo_cu_current() == 0) cu.cuMemFree_v2(p);
}
static char *hipgo_cuda_to(uintptr_t dst, const void *src, size_t n) {
	char *err = hipgo_cu_err(hipgo_cu_current(), "cuCtxSetCurrent");
	return err ? err : hipgo_cu_err(cu.cuMemcpyHtoD_v2(dst, src, n), "cuMemcpyHtoD");
}
static char *hipgo_cuda_from(void *dst, uintptr_t src, size_t n) {
	char *err = hipgo_cu_err(hipgo_cu_current(), "cuCtxSetCurrent");
	return err ? err : hipgo_cu_err(cu.cuMemcpyDtoH_v2(dst, src, n), "cuMemcpyDtoH");
}
static char *hipgo_cuda_sync(void) {
	char *err = hipgo_cu_err(hipgo_cu_current(), "cuCtxSetCurrent");
	return err ? err : hipgo_cu_err(cu.cuCtxSynchronize(), "cuCtxSynchronize");
}
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"unsafe"
)

// Memory allocates and copies backend memory. Addresses are uintptr: host C memory or device memory, never Go
// memory. Copies take Go byte slices, which C reads or writes only during the call (allowed: they hold no Go
// pointers).
type Memory interface {
	Alloc(bytes uint64) (uintptr, error)
	Free(p uintptr)
	ToBackend(dst uintptr, src []byte) error
	ToHost(dst []byte, src uintptr) error
	// Synchronize waits for queued work (CUDA); the CPU backend computes before returning.
	Synchronize() error
	Close()
}

// MemoryFromEnv picks the backend from HIP_ATTN_BACKEND (cpu, the default, or cuda) and the CUDA device from
// HIP_ATTN_DEVICE (default 0).
func MemoryFromEnv() (Backend, int32, Memory, error) {
	ordinal := 0
	if s := os.Getenv("HIP_ATTN_DEVICE"); s != "" {
		var err error
		if ordinal, err = strconv.Atoi(s); err != nil {
			return 0, 0, nil, fmt.Errorf("HIP_ATTN_DEVICE=%q: %w", s, err)
		}
	}
	switch name := os.Getenv("HIP_ATTN_BACKEND"); name {
	case "", "cpu":
		return BackendCPU, 0, HostMemory{}, nil
	case "cuda":
		m, err := OpenCUDAMemory(ordinal)
		return BackendCUDA, int32(ordinal), m, err
	default:
		return 0, 0, nil, fmt.Errorf("HIP_ATTN_BACKEND must be cpu or cuda, not %q", name)
	}
}

func bytesPtr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(&b[0])
}

// HostMemory is C heap memory, 16-byte aligned.
type HostMemory struct{}

func (HostMemory) Alloc(bytes uint64) (uintptr, error) {
	p := C.hipgo_host_alloc(C.size_t(bytes))
	if p == nil {
		return 0, errors.New("out of host memory")
	}
	return uintptr(p), nil
}
func (HostMemory) Free(p uintptr) { C.hipgo_host_free(C.uintptr_t(p)) }
func (HostMemory) ToBackend(dst uintptr, src []byte) error {
	C.hipgo_host_to(C.uintptr_t(dst), bytesPtr(src), C.size_t(len(src)))
	return nil
}
func (HostMemory) ToHost(dst []byte, src uintptr) error {
	C.hipgo_host_from(bytesPtr(dst), C.uintptr_t(src), C.size_t(len(dst)))
	return nil
}
func (HostMemory) Synchronize() error { return nil }
func (HostMemory) Close()             {}

// CUDAMemory is device memory on the device's primary context, the one hip-attn's CUDA backend uses. One per
// process: the driver state lives in C globals.
type CUDAMemory struct{}

// cError turns a helper's malloc'd message into an error (nil for none).
func cError(msg *C.char) error {
	if msg == nil {
		return nil
	}
	defer C.free(unsafe.Pointer(msg))
	return errors.New(C.GoString(msg))
}

// OpenCUDAMemory loads the driver and retains the primary context of device ordinal.
func OpenCUDAMemory(ordinal int) (CUDAMemory, error) {
	return CUDAMemory{}, cError(C.hipgo_cuda_open(C.int(ordinal)))
}

func (CUDAMemory) Alloc(bytes uint64) (uintptr, error) {
	var p C.uintptr_t
	err := cError(C.hipgo_cuda_alloc(C.size_t(bytes), &p))
	return uintptr(p), err
}
func (CUDAMemory) Free(p uintptr) { C.hipgo_cuda_free(C.uintptr_t(p)) }
func (CUDAMemory) ToBackend(dst uintptr, src []byte) error {
	return cError(C.hipgo_cuda_to(C.uintptr_t(dst), bytesPtr(src), C.size_t(len(src))))
}
func (CUDAMemory) ToHost(dst []byte, src uintptr) error {
	return cError(C.hipgo_cuda_from(bytesPtr(dst), C.uintptr_t(src), C.size_t(len(dst))))
}
func (CUDAMemory) Synchronize() error { return cError(C.hipgo_cuda_sync()) }
func (CUDAMemory) Close()             { C.hipgo_cuda_close() }
