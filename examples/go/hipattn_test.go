package hipattn

// Runs the C example's scenario through the Go wrapper, on the backend HIP_ATTN_BACKEND names (cpu by default):
// a prefill of a small batch, then decode steps that reuse the mask between searches, checked against dense
// attention computed here in float64 (with k covering every key, HiP attention is exact dense attention). The
// shapes and random data are the C example's, so on the CPU backend both print the same checksum.
//
//	LD_LIBRARY_PATH=../../target/release go test -v

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
)

const (
	hq, hkv, headDim, batch, steps = 8, 2, 64, 2, 6
	maxLen                         = 300
	capacity                       = maxLen + steps
	kvRow, qRow                    = hkv * headDim, hq * headDim
)

var seqLen = [batch]int{300, 77}

// bf16 <-> float32, round to nearest even.
func toBF16(f float32) uint16 {
	u := math.Float32bits(f)
	u += 0x7FFF + ((u >> 16) & 1)
	return uint16(u >> 16)
}
func fromBF16(h uint16) float64 { return float64(math.Float32frombits(uint32(h) << 16)) }

// The C example's xorshift generator, uniform in [-1, 1).
type rng uint64

func (r *rng) next() float32 {
	x := uint64(*r)
	x ^= x << 13
	x ^= x >> 7
	x ^= x << 17
	*r = rng(x)
	return float32(float64(x>>40)*(1.0/16777216.0))*2 - 1
}
func (r *rng) bf16s(n int) []uint16 {
	v := make([]uint16, n)
	for i := range v {
		v[i] = toBF16(r.next())
	}
	return v
}
func nanBF16(n int) []uint16 {
	v := make([]uint16, n)
	for i := range v {
		v[i] = 0x7FC0 // NaN: an output left unwritten fails the comparison
	}
	return v
}

// buffer is backend memory freed when the test ends.
type buffer struct {
	mem   Memory
	ptr   uintptr
	bytes uint64
}

func newBuffer(t *testing.T, mem Memory, bytes uint64) buffer {
	t.Helper()
	p, err := mem.Alloc(bytes)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mem.Free(p) })
	return buffer{mem, p, bytes}
}

func (b buffer) upload(t *testing.T, v interface{}) {
	t.Helper()
	var raw bytes.Buffer
	if err := binary.Write(&raw, binary.LittleEndian, v); err != nil {
		t.Fatal(err)
	}
	if err := b.mem.ToBackend(b.ptr, raw.Bytes()); err != nil {
		t.Fatal(err)
	}
}

func (b buffer) downloadBF16(t *testing.T, v []uint16) {
	t.Helper()
	raw := make([]byte, 2*len(v))
	if err := b.mem.Synchronize(); err != nil {
		t.Fatal(err)
	}
	if err := b.mem.ToHost(raw, b.ptr); err != nil {
		t.Fatal(err)
	}
	for i := range v {
		v[i] = binary.LittleEndian.Uint16(raw[2*i:])
	}
}

// denseDiff is the largest |out - dense| over the heads of one query row at position pos, whose keys and values
// are rows [0, pos] of k and v (kvRow apart); NaN counts as infinitely far.
func denseDiff(out, q, k, v []uint16, pos int) float64 {
	worst := 0.0
	scale := 1 / math.Sqrt(headDim)
	s := make([]float64, pos+1)
	ref := make([]float64, headDim)
	for h := 0; h < hq; h++ {
		g := h / (hq / hkv) * headDim
		m := math.Inf(-1)
		for j := 0; j <= pos; j++ {
			dot := 0.0
			for d := 0; d < headDim; d++ {
				dot += fromBF16(q[h*headDim+d]) * fromBF16(k[j*kvRow+g+d])
			}
			s[j] = dot * scale
			m = math.Max(m, s[j])
		}
		sum := 0.0
		for d := range ref {
			ref[d] = 0
		}
		for j := 0; j <= pos; j++ {
			w := math.Exp(s[j] - m)
			sum += w
			for d := 0; d < headDim; d++ {
				ref[d] += w * fromBF16(v[j*kvRow+g+d])
			}
		}
		for d := 0; d < headDim; d++ {
			diff := math.Abs(fromBF16(out[h*headDim+d]) - ref[d]/sum)
			if math.IsNaN(diff) {
				return math.Inf(1)
			}
			worst = math.Max(worst, diff)
		}
	}
	return worst
}

func mustContext(t *testing.T, cfg Config) *Context {
	t.Helper()
	ctx, err := NewContext(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ctx.Close)
	return ctx
}

func TestPrefillAndDecodeMatchDense(t *testing.T) {
	if ABIVersion() != HeaderABIVersion {
		t.Fatalf("library ABI %d, header ABI %d", ABIVersion(), HeaderABIVersion)
	}
	backend, ordinal, mem, err := MemoryFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mem.Close) // cleanups run last-in first-out: after every buffer's
	name := map[Backend]string{BackendCPU: "cpu", BackendCUDA: "cuda"}[backend]
	fmt.Printf("hip-attn %s (ABI %d), backend %s\n", Version(), ABIVersion(), name)

	// Two contexts: a sparse one as an engine would use it, and one whose k covers every key (exact).
	cfg := DefaultConfig()
	cfg.DType, cfg.HeadDim, cfg.NumQHeads, cfg.NumKVHeads = DTypeBF16, headDim, hq, hkv
	cfg.K, cfg.BQ, cfg.Window, cfg.Refresh = 64, 16, 32, 4
	cfg.Backend, cfg.DeviceOrdinal = backend, ordinal
	sparse := mustContext(t, cfg)
	cfg.K = 1024 // covers every key of these <= 306-token sequences: exact dense attention (on every backend)
	exact := mustContext(t, cfg)

	// Host data, drawn in the C example's order. The KV cache is contiguous per sequence,
	// [batch][capacity][hkv][headDim]; the prefill reads the first seqLen tokens packed, so keep a packed copy.
	r := rng(0x9E3779B97F4A7C15)
	total := seqLen[0] + seqLen[1]
	cu := []int32{0, int32(seqLen[0]), int32(total)}
	kc, vc := r.bf16s(batch*capacity*kvRow), r.bf16s(batch*capacity*kvRow)
	kp, vp := make([]uint16, total*kvRow), make([]uint16, total*kvRow)
	for b := 0; b < batch; b++ {
		copy(kp[int(cu[b])*kvRow:], kc[b*capacity*kvRow:][:seqLen[b]*kvRow])
		copy(vp[int(cu[b])*kvRow:], vc[b*capacity*kvRow:][:seqLen[b]*kvRow])
	}
	q, o := r.bf16s(total*qRow), nanBF16(total*qRow)

	dkc, dvc := newBuffer(t, mem, uint64(2*len(kc))), newBuffer(t, mem, uint64(2*len(vc)))
	dkp, dvp := newBuffer(t, mem, uint64(2*len(kp))), newBuffer(t, mem, uint64(2*len(vp)))
	dq, do := newBuffer(t, mem, uint64(2*len(q))), newBuffer(t, mem, uint64(2*len(o)))
	dcu := newBuffer(t, mem, 4*uint64(len(cu)))
	for _, u := range []struct {
		b buffer
		v interface{}
	}{{dkc, kc}, {dvc, vc}, {dkp, kp}, {dvp, vp}, {dq, q}, {do, o}, {dcu, cu}} {
		u.b.upload(t, u.v)
	}

	mustSize := func(n uint64, err error) uint64 {
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// One workspace for every call of both contexts: the largest of the sizes.
	var wsBytes uint64
	for _, c := range []*Context{sparse, exact} {
		wsBytes = max64(wsBytes, mustSize(c.PrefillWorkspaceSize(batch, uint32(total), maxLen, maxLen)))
		wsBytes = max64(wsBytes, mustSize(c.DecodeWorkspaceSize(batch, capacity)))
	}
	ws := newBuffer(t, mem, wsBytes)
	// Mask states: the sparse one is filled by the prefill; the exact one starts zeroed (first step searches).
	state := newBuffer(t, mem, mustSize(sparse.MaskStateSize(batch)))
	stateExact := newBuffer(t, mem, mustSize(exact.MaskStateSize(batch)))
	stateExact.upload(t, make([]byte, stateExact.bytes))

	pa := PrefillArgs{
		BatchSize: batch, TotalQ: uint32(total), TotalK: uint32(total), MaxSeqlenQ: maxLen, MaxSeqlenK: maxLen,
		Q: Tensor{dq.ptr, qRow, headDim}, K: Tensor{dkp.ptr, kvRow, headDim}, V: Tensor{dvp.ptr, kvRow, headDim},
		O: Tensor{do.ptr, qRow, headDim}, CuSeqlensQ: dcu.ptr, CuSeqlensK: dcu.ptr,
	}
	if err := exact.Prefill(&pa, ws.ptr, ws.bytes, 0); err != nil {
		t.Fatal(err)
	}
	do.downloadBF16(t, o)
	maxDiff := 0.0
	for b := 0; b < batch; b++ {
		for i := 0; i < seqLen[b]; i++ {
			row := int(cu[b]) + i
			maxDiff = math.Max(maxDiff, denseDiff(o[row*qRow:], q[row*qRow:], kp[int(cu[b])*kvRow:],
				vp[int(cu[b])*kvRow:], i))
		}
	}
	fmt.Printf("prefill (k covers all keys) vs dense: max |diff| = %.5f\n", maxDiff)

	pa.MaskStateOut = state.ptr
	if err := sparse.Prefill(&pa, ws.ptr, ws.bytes, 0); err != nil {
		t.Fatal(err)
	}

	// Decode: each step the engine appends the new token's k/v to the cache (here it is already there), then
	// calls DecodeStep. The mask from the prefill is reused until the step counter reaches Refresh.
	// (dqh starts random only to keep drawing in the C example's order: every step draws it anew.)
	dqh, dout := r.bf16s(batch*qRow), nanBF16(batch*qRow)
	lens := make([]int32, batch)
	ddq, ddout, dlens := newBuffer(t, mem, 2*uint64(len(dqh))), newBuffer(t, mem, 2*uint64(len(dout))),
		newBuffer(t, mem, 4*batch)
	da := DecodeArgs{
		BatchSize: batch, MaxSeqlenK: capacity, Q: Tensor{ddq.ptr, qRow, headDim},
		KV: KVCache{Layout: KVContiguous, K: dkc.ptr, V: dvc.ptr, SeqStride: capacity * kvRow,
			TokenStride: kvRow, HeadStride: headDim},
		SeqlensK: dlens.ptr, O: Tensor{ddout.ptr, qRow, headDim},
	}
	checksum, maxDecodeDiff := 0.0, 0.0
	for step := 0; step < steps; step++ {
		for b := range lens {
			lens[b] = int32(seqLen[b] + step + 1)
		}
		for i := range dqh {
			dqh[i] = toBF16(r.next())
		}
		dlens.upload(t, lens)
		ddq.upload(t, dqh)

		da.MaskState = state.ptr
		if err := sparse.DecodeStep(&da, ws.ptr, ws.bytes, 0); err != nil {
			t.Fatal(err)
		}
		ddout.downloadBF16(t, dout)
		for _, x := range dout {
			checksum += fromBF16(x)
		}

		da.MaskState = stateExact.ptr
		if err := exact.DecodeStep(&da, ws.ptr, ws.bytes, 0); err != nil {
			t.Fatal(err)
		}
		ddout.downloadBF16(t, dout)
		for b := 0; b < batch; b++ {
			base := b * capacity * kvRow
			maxDecodeDiff = math.Max(maxDecodeDiff, denseDiff(dout[b*qRow:], dqh[b*qRow:], kc[base:], vc[base:],
				int(lens[b])-1))
		}
	}
	fmt.Printf("decode: %d steps with mask reuse, checksum %.6f\n", steps, checksum)
	fmt.Printf("decode (k covers all keys) vs dense: max |diff| = %.5f\n", maxDecodeDiff)

	if !(maxDiff < 2e-2 && maxDecodeDiff < 2e-2) || math.IsNaN(checksum) || math.IsInf(checksum, 0) {
		t.Fatalf("MISMATCH: prefill %g, decode %g, checksum %g", maxDiff, maxDecodeDiff, checksum)
	}
	fmt.Println("MATCH: HiP with k covering all keys equals dense attention")
}

func max64(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

// A bad configuration fails with an *Error whose status and message name the problem. Many goroutines fail at
// once, each with its own numbers: every error must carry its own call's message, although the C message is
// per thread and goroutines move between threads.
func TestBadConfigReturnsError(t *testing.T) {
	var wg sync.WaitGroup
	errs := make([]error, 64)
	for i := range errs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			cfg := DefaultConfig()
			cfg.NumQHeads, cfg.NumKVHeads = uint32(8*i+3), 8 // not a multiple
			ctx, err := NewContext(cfg)
			if ctx != nil {
				ctx.Close()
			}
			errs[i] = err
		}(i)
	}
	wg.Wait()
	for i, err := range errs {
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("goroutine %d: want *Error, got %v", i, err)
		}
		want := fmt.Sprintf("num_q_heads (%d)", 8*i+3)
		if e.Status != StatusInvalidConfig || !strings.Contains(e.Message, want) || e.Op != "hip_ctx_create" {
			t.Fatalf("goroutine %d: want InvalidConfig naming %q, got %v", i, want, err)
		}
	}
	t.Logf("for example: %v", errs[0])
}
