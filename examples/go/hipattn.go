// Package hipattn is a cgo wrapper of the hip-attn C API (include/hip_attn.h): HiP sparse attention for
// inference engines written in Go.
//
// Memory: hip-attn reads and writes memory of the context's backend (host memory for the CPU backend, device
// memory for CUDA) and never allocates it. Those addresses travel through this package as uintptr and are
// turned into C pointers only on the C side, so no Go pointer and no device address in an unsafe.Pointer ever
// reaches C or the Go garbage collector. Host buffers must be C memory (C.malloc, C.aligned_alloc, or memory
// from the engine's own allocator), never Go memory: C keeps using them across calls (the mask state) and the
// Go runtime may move or free Go memory. See memory.go for the example's allocator.
//
// Errors: every fallible call returns nil or an *Error carrying the hip_status and the library's message. The
// message is thread-local in C and a goroutine may move to another OS thread between two cgo calls, so each
// call goes through a small C helper below that copies the message in the same C call that failed.
//
// Args structs are passed to C by address: they are Go memory that holds no Go pointers (addresses are
// uintptr), which the cgo rules allow, and C keeps nothing after the call.
package hipattn

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: -L${SRCDIR}/../../target/release -lhip_attn
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "hip_attn.h"

// A status and, on failure, a malloc'd copy of the calling thread's message (Go frees it). Every helper builds
// it right after its call, on the same thread, so the message is the one of that call.
typedef struct { hip_status status; char *message; } hipgo_result;

static hipgo_result hipgo_err(hip_status st) {
	hipgo_result r = {st, NULL};
	if (st != HIP_ATTN_STATUS_SUCCESS) r.message = strdup(hip_last_error_message());
	return r;
}

static hipgo_result hipgo_ctx_create(const hip_config *cfg, hip_ctx **out) {
	return hipgo_err(hip_ctx_create(cfg, out));
}

static hipgo_result hipgo_prefill_workspace_size(const hip_ctx *ctx, uint32_t batch, uint32_t total_q,
		uint32_t max_q, uint32_t max_k, size_t *bytes) {
	return hipgo_err(hip_prefill_workspace_size(ctx, batch, total_q, max_q, max_k, bytes));
}

static hipgo_result hipgo_decode_workspace_size(const hip_ctx *ctx, uint32_t batch, uint32_t max_k, size_t *bytes) {
	return hipgo_err(hip_decode_workspace_size(ctx, batch, max_k, bytes));
}

static hipgo_result hipgo_mask_state_size(const hip_ctx *ctx, uint32_t batch, size_t *bytes) {
	return hipgo_err(hip_mask_state_size(ctx, batch, bytes));
}

// Go-side mirrors of the argument structs with every address as uintptr_t: Go fills these (they hold no
// pointers at all), and C turns them into the real structs.
typedef struct { uintptr_t data; int64_t token_stride, head_stride; } hipgo_tensor;

typedef struct {
	uint32_t batch_size, total_q, total_k, max_seqlen_q, max_seqlen_k;
	hipgo_tensor q, k, v, o;
	uintptr_t cu_seqlens_q, cu_seqlens_k, lse, mask_state_out;
} hipgo_prefill_args;

typedef struct {
	uint32_t batch_size, max_seqlen_k;
	hipgo_tensor q;
	uint32_t layout, page_size;
	uintptr_t k, v;
	int64_t seq_stride, token_stride, head_stride;
	uintptr_t page_table;
	uint32_t page_table_stride, num_pages;
	uintptr_t seqlens_k, mask_state;
	hipgo_tensor o;
	uintptr_t lse;
} hipgo_decode_args;

static hip_tensor hipgo_in(hipgo_tensor t) {
	hip_tensor r = {(const void *)t.data, t.token_stride, t.head_stride};
	return r;
}
static hip_tensor_mut hipgo_out(hipgo_tensor t) {
	hip_tensor_mut r = {(void *)t.data, t.token_stride, t.head_stride};
	return r;
}

static hipgo_result hipgo_prefill(const hip_ctx *ctx, const hipgo_prefill_args *a, uintptr_t ws, size_t ws_bytes,
		uintptr_t stream) {
	hip_prefill_args p;
	memset(&p, 0, sizeof p);
	p.struct_size = sizeof p;
	p.batch_size = a->batch_size;
	p.total_q = a->total_q;
	p.total_k = a->total_k;
	p.max_seqlen_q = a->max_seqlen_q;
	p.max_seqlen_k = a->max_seqlen_k;
	p.q = hipgo_in(a->q);
	p.k = hipgo_in(a->k);
	p.v = hipgo_in(a->v);
	p.o = hipgo_out(a->o);
	p.cu_seqlens_q = (const int32_t *)a->cu_seqlens_q;
	p.cu_seqlens_k = (const int32_t *)a->cu_seqlens_k;
	p.lse = (float *)a->lse;
	p.mask_state_out = (void *)a->mask_state_out;
	return hipgo_err(hip_prefill(ctx, &p, (void *)ws, ws_bytes, (void *)stream));
}

static hipgo_result hipgo_decode_step(const hip_ctx *ctx, const hipgo_decode_args *a, uintptr_t ws, size_t ws_bytes,
		uintptr_t stream) {
	hip_decode_args d;
	memset(&d, 0, sizeof d);
	d.struct_size = sizeof d;
	d.batch_size = a->batch_size;
	d.max_seqlen_k = a->max_seqlen_k;
	d.q = hipgo_in(a->q);
	d.kv.layout = a->layout;
	d.kv.page_size = a->page_size;
	d.kv.k = (const void *)a->k;
	d.kv.v = (const void *)a->v;
	d.kv.seq_stride = a->seq_stride;
	d.kv.token_stride = a->token_stride;
	d.kv.head_stride = a->head_stride;
	d.kv.page_table = (const int32_t *)a->page_table;
	d.kv.page_table_stride = a->page_table_stride;
	d.kv.num_pages = a->num_pages;
	d.seqlens_k = (const int32_t *)a->seqlens_k;
	d.mask_state = (void *)a->mask_state;
	d.o = hipgo_out(a->o);
	d.lse = (float *)a->lse;
	return hipgo_err(hip_decode_step(ctx, &d, (void *)ws, ws_bytes, (void *)stream));
}
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// Status is a hip_status value. Numbers are never reused by the library.
type Status int32

const (
	StatusSuccess             Status = C.HIP_ATTN_STATUS_SUCCESS
	StatusNullPointer         Status = C.HIP_ATTN_STATUS_NULL_POINTER
	StatusInvalidConfig       Status = C.HIP_ATTN_STATUS_INVALID_CONFIG
	StatusInvalidArgument     Status = C.HIP_ATTN_STATUS_INVALID_ARGUMENT
	StatusUnsupported         Status = C.HIP_ATTN_STATUS_UNSUPPORTED
	StatusMisalignedPointer   Status = C.HIP_ATTN_STATUS_MISALIGNED_POINTER
	StatusWorkspaceTooSmall   Status = C.HIP_ATTN_STATUS_WORKSPACE_TOO_SMALL
	StatusStructSizeMismatch  Status = C.HIP_ATTN_STATUS_STRUCT_SIZE_MISMATCH
	StatusSizeOverflow        Status = C.HIP_ATTN_STATUS_SIZE_OVERFLOW
	StatusBadIndex            Status = C.HIP_ATTN_STATUS_BAD_INDEX
	StatusCUDAUnavailable     Status = C.HIP_ATTN_STATUS_CUDA_UNAVAILABLE
	StatusCUDAError           Status = C.HIP_ATTN_STATUS_CUDA_ERROR
	StatusKernelCompileFailed Status = C.HIP_ATTN_STATUS_KERNEL_COMPILE_FAILED
	StatusOutOfMemory         Status = C.HIP_ATTN_STATUS_OUT_OF_MEMORY
	StatusInternal            Status = C.HIP_ATTN_STATUS_INTERNAL
)

// String is the library's static description of the status.
func (s Status) String() string { return C.GoString(C.hip_status_string(C.int32_t(s))) }

// Error is a failed hip-attn call: the status and the library's message, which names the offending field
// (for example "num_q_heads (30) is not a multiple of num_kv_heads (8)"). Use errors.As to get at it.
type Error struct {
	Op      string // the C function, e.g. "hip_ctx_create"
	Status  Status
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s: %s", e.Op, e.Status, e.Message)
}

// check turns a helper's result into nil or an *Error, freeing the C copy of the message.
func check(op string, r C.hipgo_result) error {
	if r.status == C.HIP_ATTN_STATUS_SUCCESS {
		return nil
	}
	defer C.free(unsafe.Pointer(r.message))
	return &Error{Op: op, Status: Status(r.status), Message: C.GoString(r.message)}
}

// DType, Backend, MaskSharing and KVLayout are the C enums' values.
type (
	DType       uint32
	Backend     uint32
	MaskSharing uint32
	KVLayout    uint32
)

const (
	DTypeBF16 DType = C.HIP_ATTN_DTYPE_BF16
	DTypeF16  DType = C.HIP_ATTN_DTYPE_F16
	DTypeF32  DType = C.HIP_ATTN_DTYPE_F32

	BackendCPU  Backend = C.HIP_ATTN_BACKEND_CPU
	BackendCUDA Backend = C.HIP_ATTN_BACKEND_CUDA

	MaskPerQHead  MaskSharing = C.HIP_ATTN_MASK_PER_Q_HEAD
	MaskPerKVHead MaskSharing = C.HIP_ATTN_MASK_PER_KV_HEAD

	KVContiguous KVLayout = C.HIP_ATTN_KV_CONTIGUOUS
	KVPaged      KVLayout = C.HIP_ATTN_KV_PAGED
)

// Version is the library's version string; ABIVersion its ABI, which should equal HeaderABIVersion.
func Version() string    { return C.GoString(C.hip_version()) }
func ABIVersion() uint32 { return uint32(C.hip_abi_version()) }

// HeaderABIVersion is the ABI of the header this package was compiled against.
const HeaderABIVersion = C.HIP_ATTN_ABI_VERSION

// Config mirrors hip_config without its pointer fields (kernel cache directory and log callback stay at their
// defaults). Start from DefaultConfig and set the shape.
type Config struct {
	DType                           DType
	HeadDim, NumQHeads, NumKVHeads  uint32
	K, BQ, BK, Sink, Window, SQ, SK uint32
	Refresh                         uint32
	Causal                          bool
	MaskSharing                     MaskSharing
	Backend                         Backend
	DeviceOrdinal                   int32
	SoftmaxScale                    float32 // 0 = 1/sqrt(head_dim)
}

// DefaultConfig has the defaults of docs/ALGORITHM.md (k 512, bq 32, bk 2, sink 4, window 128, refresh 8, causal,
// bf16, head_dim 128, CPU backend). NumQHeads and NumKVHeads are 0: set them.
func DefaultConfig() Config {
	c := C.hip_config_default()
	return Config{
		DType: DType(c.dtype), HeadDim: uint32(c.head_dim),
		NumQHeads: uint32(c.num_q_heads), NumKVHeads: uint32(c.num_kv_heads),
		K: uint32(c.k), BQ: uint32(c.bq), BK: uint32(c.bk), Sink: uint32(c.sink), Window: uint32(c.window),
		SQ: uint32(c.sq), SK: uint32(c.sk), Refresh: uint32(c.refresh), Causal: c.causal != 0,
		MaskSharing: MaskSharing(c.mask_sharing), Backend: Backend(c.backend),
		DeviceOrdinal: int32(c.device_ordinal), SoftmaxScale: float32(c.softmax_scale),
	}
}

// Context owns a hip_ctx. It is immutable after creation: several goroutines may use one Context at once as
// long as each call has its own workspace. Close it when no call is running and no queued work uses it.
type Context struct {
	ctx *C.hip_ctx
}

// NewContext validates cfg and creates a context (on CUDA: loads the driver, compiles or loads the kernels).
func NewContext(cfg Config) (*Context, error) {
	c := C.hip_config_default()
	c.dtype = C.uint32_t(cfg.DType)
	c.head_dim = C.uint32_t(cfg.HeadDim)
	c.num_q_heads = C.uint32_t(cfg.NumQHeads)
	c.num_kv_heads = C.uint32_t(cfg.NumKVHeads)
	c.k = C.uint32_t(cfg.K)
	c.bq = C.uint32_t(cfg.BQ)
	c.bk = C.uint32_t(cfg.BK)
	c.sink = C.uint32_t(cfg.Sink)
	c.window = C.uint32_t(cfg.Window)
	c.sq = C.uint32_t(cfg.SQ)
	c.sk = C.uint32_t(cfg.SK)
	c.refresh = C.uint32_t(cfg.Refresh)
	c.causal = 0
	if cfg.Causal {
		c.causal = 1
	}
	c.mask_sharing = C.uint32_t(cfg.MaskSharing)
	c.backend = C.uint32_t(cfg.Backend)
	c.device_ordinal = C.int32_t(cfg.DeviceOrdinal)
	c.softmax_scale = C.float(cfg.SoftmaxScale)

	var ctx *C.hip_ctx
	if err := check("hip_ctx_create", C.hipgo_ctx_create(&c, &ctx)); err != nil {
		return nil, err
	}
	return &Context{ctx: ctx}, nil
}

// Close destroys the context. Calling it again is a no-op.
func (c *Context) Close() {
	C.hip_ctx_destroy(c.ctx)
	c.ctx = nil
}

// PrefillWorkspaceSize is the workspace Prefill needs; sizes are monotone, so size once for the largest batch.
func (c *Context) PrefillWorkspaceSize(batch, totalQ, maxSeqlenQ, maxSeqlenK uint32) (uint64, error) {
	var bytes C.size_t
	r := C.hipgo_prefill_workspace_size(c.ctx, C.uint32_t(batch), C.uint32_t(totalQ), C.uint32_t(maxSeqlenQ),
		C.uint32_t(maxSeqlenK), &bytes)
	return uint64(bytes), check("hip_prefill_workspace_size", r)
}

// DecodeWorkspaceSize is the workspace DecodeStep needs.
func (c *Context) DecodeWorkspaceSize(batch, maxSeqlenK uint32) (uint64, error) {
	var bytes C.size_t
	r := C.hipgo_decode_workspace_size(c.ctx, C.uint32_t(batch), C.uint32_t(maxSeqlenK), &bytes)
	return uint64(bytes), check("hip_decode_workspace_size", r)
}

// MaskStateSize is the persistent mask state for batch sequences (DecodeArgs.MaskState, PrefillArgs.MaskStateOut).
func (c *Context) MaskStateSize(batch uint32) (uint64, error) {
	var bytes C.size_t
	r := C.hipgo_mask_state_size(c.ctx, C.uint32_t(batch), &bytes)
	return uint64(bytes), check("hip_mask_state_size", r)
}

// Tensor is a [tokens, heads, head_dim] view of backend memory; strides are in elements.
type Tensor struct {
	Ptr                     uintptr
	TokenStride, HeadStride int64
}

func (t Tensor) c() C.hipgo_tensor {
	return C.hipgo_tensor{data: C.uintptr_t(t.Ptr), token_stride: C.int64_t(t.TokenStride),
		head_stride: C.int64_t(t.HeadStride)}
}

// PrefillArgs mirrors hip_prefill_args; every address is backend memory, optional ones 0.
type PrefillArgs struct {
	BatchSize, TotalQ, TotalK, MaxSeqlenQ, MaxSeqlenK uint32
	Q, K, V, O                                        Tensor
	CuSeqlensQ, CuSeqlensK                            uintptr // int32 [BatchSize+1]
	LSE, MaskStateOut                                 uintptr // optional
}

// Prefill runs HiP attention over a varlen batch; stream is a CUstream (0 = default stream; ignored on CPU).
func (c *Context) Prefill(a *PrefillArgs, workspace uintptr, workspaceBytes uint64, stream uintptr) error {
	args := C.hipgo_prefill_args{
		batch_size: C.uint32_t(a.BatchSize), total_q: C.uint32_t(a.TotalQ), total_k: C.uint32_t(a.TotalK),
		max_seqlen_q: C.uint32_t(a.MaxSeqlenQ), max_seqlen_k: C.uint32_t(a.MaxSeqlenK),
		q: a.Q.c(), k: a.K.c(), v: a.V.c(), o: a.O.c(),
		cu_seqlens_q: C.uintptr_t(a.CuSeqlensQ), cu_seqlens_k: C.uintptr_t(a.CuSeqlensK),
		lse: C.uintptr_t(a.LSE), mask_state_out: C.uintptr_t(a.MaskStateOut),
	}
	r := C.hipgo_prefill(c.ctx, &args, C.uintptr_t(workspace), C.size_t(workspaceBytes), C.uintptr_t(stream))
	return check("hip_prefill", r)
}

// KVCache mirrors hip_kv_cache.
type KVCache struct {
	Layout                             KVLayout
	PageSize                           uint32
	K, V                               uintptr
	SeqStride, TokenStride, HeadStride int64
	PageTable                          uintptr // paged only: int32 [batch, PageTableStride]
	PageTableStride, NumPages          uint32
}

// DecodeArgs mirrors hip_decode_args.
type DecodeArgs struct {
	BatchSize, MaxSeqlenK uint32
	Q                     Tensor
	KV                    KVCache
	SeqlensK              uintptr // int32 [BatchSize]
	MaskState             uintptr // persistent, MaskStateSize bytes
	O                     Tensor
	LSE                   uintptr // optional
}

// DecodeStep runs one decode step, searching or reusing each sequence's mask as its mask state says.
func (c *Context) DecodeStep(a *DecodeArgs, workspace uintptr, workspaceBytes uint64, stream uintptr) error {
	args := C.hipgo_decode_args{
		batch_size: C.uint32_t(a.BatchSize), max_seqlen_k: C.uint32_t(a.MaxSeqlenK), q: a.Q.c(),
		layout: C.uint32_t(a.KV.Layout), page_size: C.uint32_t(a.KV.PageSize),
		k: C.uintptr_t(a.KV.K), v: C.uintptr_t(a.KV.V), seq_stride: C.int64_t(a.KV.SeqStride),
		token_stride: C.int64_t(a.KV.TokenStride), head_stride: C.int64_t(a.KV.HeadStride),
		page_table: C.uintptr_t(a.KV.PageTable), page_table_stride: C.uint32_t(a.KV.PageTableStride),
		num_pages: C.uint32_t(a.KV.NumPages), seqlens_k: C.uintptr_t(a.SeqlensK),
		mask_state: C.uintptr_t(a.MaskState), o: a.O.c(), lse: C.uintptr_t(a.LSE),
	}
	r := C.hipgo_decode_step(c.ctx, &args, C.uintptr_t(workspace), C.size_t(workspaceBytes), C.uintptr_t(stream))
	return check("hip_decode_step", r)
}
