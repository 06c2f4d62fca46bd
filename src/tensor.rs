//! Tensor descriptors: a caller's pointer plus strides, validated once (NULL, alignment, stride rules,
//! overflow of the extent) and then used by every backend. Element conversion lives here too.

use crate::status::{checked_add, checked_mul, Error, Result};
use half::{bf16, f16};

/// Alignment required of every tensor base pointer, and of every stride in bytes. 16 bytes lets the CUDA
/// kernels use vector loads; the CPU backend enforces the same contract so code tested on it runs on a GPU.
pub const TENSOR_ALIGN: usize = 16;
/// Alignment required of workspace and mask-state buffers.
pub const BUFFER_ALIGN: usize = 16;
/// One past the highest byte address a caller buffer may reach: the end of the user address space of x86-64
/// with 5-level paging (4-level paging ends at 2^47, aarch64 at 2^52, CUDA unified addresses lie below both).
/// A pointer plus extent beyond it is a wrong stride or length, not a buffer, whatever the arithmetic says.
pub const ADDRESS_LIMIT: u64 = 1 << 57;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    Bf16,
    F16,
    F32,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::Bf16 | DType::F16 => 2,
            DType::F32 => 4,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            DType::Bf16 => "bf16",
            DType::F16 => "f16",
            DType::F32 => "f32",
        }
    }
    #[cfg(any(test, feature = "internals"))]
    /// Rounds an f32 to this dtype and back (what storing and reloading a value does).
    pub fn round(self, x: f32) -> f32 {
        match self {
            DType::Bf16 => bf16::from_f32(x).to_f32(),
            DType::F16 => f16::from_f32(x).to_f32(),
            DType::F32 => x,
        }
    }
    /// Reads element `i` of a buffer of this dtype.
    ///
    /// # Safety
    /// `base` points to at least `i + 1` readable elements of this dtype, suitably aligned.
    #[inline]
    pub unsafe fn read(self, base: *const u8, i: usize) -> f32 {
        // SAFETY: forwarded from the caller's contract; raw reads create no references, so inputs may alias.
        unsafe {
            match self {
                DType::Bf16 => bf16::from_bits((base as *const u16).add(i).read()).to_f32(),
                DType::F16 => f16::from_bits((base as *const u16).add(i).read()).to_f32(),
                DType::F32 => (base as *const f32).add(i).read(),
            }
        }
    }
    /// Writes element `i` (rounded to nearest even).
    ///
    /// # Safety
    /// `base` points to at least `i + 1` writable elements of this dtype, suitably aligned.
    #[inline]
    pub unsafe fn write(self, base: *mut u8, i: usize, x: f32) {
        // SAFETY: forwarded from the caller's contract.
        unsafe {
            match self {
                DType::Bf16 => (base as *mut u16).add(i).write(bf16::from_f32(x).to_bits()),
                DType::F16 => (base as *mut u16).add(i).write(f16::from_f32(x).to_bits()),
                DType::F32 => (base as *mut f32).add(i).write(x),
            }
        }
    }
}

/// A validated [rows, heads, head_dim] view of caller memory (host or device, by backend). It holds an address,
/// not a reference: the backends decide how to touch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorView {
    pub addr: usize,
    pub rows: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub row_stride: usize,
    pub head_stride: usize,
    pub dtype: DType,
}

fn stride(field: &str, name: &str, value: i64, dtype: DType) -> Result<usize> {
    if value < 0 {
        return Err(Error::arg(format!("{field}.{name} ({value}) is negative")));
    }
    let per = TENSOR_ALIGN / dtype.size();
    if !(value as u64).is_multiple_of(per as u64) {
        return Err(Error::misaligned(format!(
            "{field}.{name} ({value}) must be a multiple of {per} elements ({TENSOR_ALIGN} bytes of {})",
            dtype.name()
        )));
    }
    usize::try_from(value).map_err(|_| Error::overflow(field))
}

/// Checks that `bytes` from `addr` stay inside the user address space (below [`ADDRESS_LIMIT`]) and returns the
/// end address. `layout` describes the strides and lengths that gave `bytes`, for the message.
pub fn check_span(field: &str, addr: usize, bytes: usize, layout: impl FnOnce() -> String) -> Result<usize> {
    let end = addr as u128 + bytes as u128;
    if end > ADDRESS_LIMIT as u128 {
        return Err(Error::new(
            crate::status::hip_status::HIP_ATTN_STATUS_SIZE_OVERFLOW,
            format!(
                "{field} spans 0x{addr:x} to 0x{end:x} ({}): past the end of the user address space (2^57)",
                layout()
            ),
        ));
    }
    Ok(end as usize)
}

/// `n - 1` steps of `stride` elements (the reach of one dimension), as a SIZE_OVERFLOW naming both when it
/// does not fit in 64 bits.
fn reach(field: &str, name: &str, stride: usize, n: usize, what: &str) -> Result<usize> {
    stride.checked_mul(n.saturating_sub(1)).ok_or_else(|| {
        Error::new(
            crate::status::hip_status::HIP_ATTN_STATUS_SIZE_OVERFLOW,
            format!("size of {field} overflows: {name} ({stride}) times {} {what} does not fit in 64 bits", n - 1),
        )
    })
}

/// Bytes of `elems` elements of `dtype`, as a SIZE_OVERFLOW naming the layout when they do not fit in 64 bits.
fn elem_bytes(field: &str, elems: usize, dtype: DType, layout: impl FnOnce() -> String) -> Result<usize> {
    elems.checked_mul(dtype.size()).ok_or_else(|| {
        Error::new(
            crate::status::hip_status::HIP_ATTN_STATUS_SIZE_OVERFLOW,
            format!(
                "size of {field} overflows: {elems} elements of {} ({}) do not fit in 64 bits",
                dtype.name(),
                layout()
            ),
        )
    })
}

/// Elements from the base to one past the last element of a view with these (stride, length, name)
/// dimensions and a contiguous last dimension of `inner` elements; SIZE_OVERFLOW names what overflowed.
fn extent(field: &str, dims: &[(usize, usize, &str, &str)], inner: usize) -> Result<usize> {
    let mut e = inner;
    for &(stride, n, name, what) in dims {
        let r = reach(field, name, stride, n, what)?;
        e = e.checked_add(r).ok_or_else(|| {
            Error::new(
                crate::status::hip_status::HIP_ATTN_STATUS_SIZE_OVERFLOW,
                format!("size of {field} overflows: adding {name} ({stride}) times {} {what} passes 64 bits", n - 1),
            )
        })?;
    }
    Ok(e)
}

/// Checks a base address for NULL and the required alignment.
pub fn check_ptr(field: &str, addr: usize, align: usize) -> Result<()> {
    if addr == 0 {
        return Err(Error::null(field));
    }
    if !addr.is_multiple_of(align) {
        return Err(Error::misaligned(format!("{field} (0x{addr:x}) is not {align}-byte aligned")));
    }
    Ok(())
}

/// Rows of a writable view must not share elements: with the dimensions sorted by stride, each stride must
/// step over everything the smaller ones span. (This accepts token-major and head-major layouts alike.)
fn check_no_overlap(field: &str, dims: &[(usize, usize)], head_dim: usize) -> Result<()> {
    let mut dims: Vec<(usize, usize, &str)> = dims
        .iter()
        .zip(["token_stride", "head_stride"])
        .filter(|((_, n), _)| *n > 1)
        .map(|((s, n), name)| (*s, *n, name))
        .collect();
    dims.sort();
    let mut span = head_dim;
    for (s, n, name) in dims {
        if s < span {
            return Err(Error::arg(format!(
                "{field}.{name} ({s}) is smaller than the {span} elements it must step over: output rows would overlap"
            )));
        }
        span = s.saturating_mul(n - 1).saturating_add(span);
    }
    Ok(())
}

impl TensorView {
    /// Validates a caller's view. `field` names it in messages ("q", "o_a", ...). `writable` views must not have
    /// two (row, head) pairs share an element, or results would depend on write order.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        field: &str,
        addr: usize,
        row_stride: i64,
        head_stride: i64,
        rows: usize,
        heads: usize,
        head_dim: usize,
        dtype: DType,
        writable: bool,
    ) -> Result<TensorView> {
        check_ptr(&format!("{field}.data"), addr, TENSOR_ALIGN)?;
        let row_stride = stride(field, "token_stride", row_stride, dtype)?;
        let head_stride = stride(field, "head_stride", head_stride, dtype)?;
        if writable {
            check_no_overlap(field, &[(row_stride, rows), (head_stride, heads)], head_dim)?;
        }
        let view = TensorView { addr, rows, heads, head_dim, row_stride, head_stride, dtype };
        let dims = [(row_stride, rows, "token_stride", "rows"), (head_stride, heads, "head_stride", "heads")];
        let layout = || format!("token_stride {row_stride}, {rows} rows; head_stride {head_stride}, {heads} heads");
        let bytes = elem_bytes(field, extent(field, &dims, head_dim)?, dtype, layout)?;
        check_span(field, addr, bytes, layout)?;
        Ok(view)
    }

    /// Elements from the base to one past the last element the view touches.
    pub fn extent_elems(&self) -> Result<usize> {
        if self.rows == 0 || self.heads == 0 {
            return Ok(0);
        }
        let a = checked_mul(self.rows - 1, self.row_stride, "tensor extent")?;
        let b = checked_mul(self.heads - 1, self.head_stride, "tensor extent")?;
        checked_add(checked_add(a, b, "tensor extent")?, self.head_dim, "tensor extent")
    }

    /// Bytes from the base to one past the last byte the view touches (validated: cannot overflow).
    pub fn extent_bytes(&self) -> usize {
        self.extent_elems().map_or(usize::MAX, |e| e.saturating_mul(self.dtype.size()))
    }

    /// Element offset of (row, head, 0).
    #[inline]
    pub fn offset(&self, row: usize, head: usize) -> usize {
        row * self.row_stride + head * self.head_stride
    }
}

/// A dense f32 [rows, heads] side array (LSE); NULL allowed when optional.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LseView {
    pub addr: usize,
    pub rows: usize,
    pub heads: usize,
}

impl LseView {
    pub fn new(field: &str, addr: usize, rows: usize, heads: usize) -> Result<Option<LseView>> {
        if addr == 0 {
            return Ok(None);
        }
        check_ptr(field, addr, 4)?;
        let bytes = checked_mul(checked_mul(rows, heads, field)?, 4, field)?;
        check_span(field, addr, bytes, || format!("{rows} rows of {heads} heads of f32"))?;
        Ok(Some(LseView { addr, rows, heads }))
    }

    pub fn bytes(&self) -> usize {
        self.rows * self.heads * 4
    }
}

/// A validated KV cache for decode: per sequence (contiguous) or per page (paged), a [tokens, heads, head_dim]
/// block repeated `outer` times at `outer_stride`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvView {
    pub k: usize,
    pub v: usize,
    pub outer: usize,
    pub outer_stride: usize,
    pub tokens: usize,
    pub token_stride: usize,
    pub heads: usize,
    pub head_stride: usize,
    pub head_dim: usize,
    pub dtype: DType,
}

impl KvView {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        k: usize,
        v: usize,
        outer: usize,
        outer_stride: i64,
        tokens: usize,
        token_stride: i64,
        heads: usize,
        head_stride: i64,
        head_dim: usize,
        dtype: DType,
        paged: bool,
    ) -> Result<KvView> {
        check_ptr("kv.k", k, TENSOR_ALIGN)?;
        check_ptr("kv.v", v, TENSOR_ALIGN)?;
        let view = KvView {
            k,
            v,
            outer,
            outer_stride: stride("kv", "seq_stride", outer_stride, dtype)?,
            tokens,
            token_stride: stride("kv", "token_stride", token_stride, dtype)?,
            heads,
            head_stride: stride("kv", "head_stride", head_stride, dtype)?,
            head_dim,
            dtype,
        };
        let dims = [
            (view.outer_stride, outer, "kv.seq_stride", if paged { "pages" } else { "sequences" }),
            (view.token_stride, tokens, "kv.token_stride", "tokens"),
            (view.head_stride, heads, "kv.head_stride", "heads"),
        ];
        let layout = || {
            format!(
                "seq_stride {}, {outer} {}; token_stride {}, {tokens} tokens; head_stride {}, {heads} heads",
                view.outer_stride, dims[0].3, view.token_stride, view.head_stride
            )
        };
        let bytes = elem_bytes("kv", extent("kv", &dims, head_dim)?, dtype, layout)?;
        check_span("kv.k", k, bytes, layout)?;
        check_span("kv.v", v, bytes, layout)?;
        Ok(view)
    }

    /// Bytes of `k` (and of `v`) from the base to one past the last byte the cache touches.
    pub fn extent_bytes(&self) -> usize {
        self.extent_elems().map_or(usize::MAX, |e| e.saturating_mul(self.dtype.size()))
    }

    pub fn extent_elems(&self) -> Result<usize> {
        if self.outer == 0 || self.tokens == 0 || self.heads == 0 {
            return Ok(0);
        }
        let mut e = self.head_dim;
        for (n, s) in
            [(self.outer, self.outer_stride), (self.tokens, self.token_stride), (self.heads, self.head_stride)]
        {
            e = checked_add(e, checked_mul(n - 1, s, "kv cache extent")?, "kv cache extent")?;
        }
        Ok(e)
    }
}
