//! The CPU reference backend: docs/ALGORITHM.md computed directly, one query at a time, with no shortcuts. It is the
//! oracle for the CUDA kernels and what the examples and CI run. Logits are f32 as the spec says; softmax sums
//! and the weighted value sum accumulate in f64 so the oracle's own rounding stays far below any tolerance.
//!
//! Memory model: every pointer is a host pointer that the caller promised spans its validated extent. Caller
//! memory is touched only through raw reads and writes (never Rust references), so inputs may alias each other
//! and outputs may alias inputs without undefined behaviour. All index data is validated before the first
//! output element is written, so a failing call leaves every output untouched.

mod decode;
mod merge;
mod prefill;

pub use decode::decode;
pub use merge::merge;
pub use prefill::prefill;

use crate::spec::dot;
use crate::tensor::{LseView, TensorView};

/// Reads row (row, head) of a view into `out` (f32).
///
/// # Safety
/// The view was validated and its memory is readable host memory of its extent.
unsafe fn read_row(view: &TensorView, row: usize, head: usize, out: &mut [f32]) {
    let base = view.addr as *const u8;
    let off = view.offset(row, head);
    for (d, x) in out.iter_mut().enumerate() {
        // SAFETY: off + d lies inside the validated extent (row < rows, head < heads, d < head_dim).
        *x = unsafe { view.dtype.read(base, off + d) };
    }
}

/// Writes `vals` to row (row, head) of an output view, rounding to its dtype.
///
/// # Safety
/// The view was validated and its memory is writable host memory of its extent.
unsafe fn write_row(view: &TensorView, row: usize, head: usize, vals: &[f32]) {
    let base = view.addr as *mut u8;
    let off = view.offset(row, head);
    for (d, &x) in vals.iter().enumerate() {
        // SAFETY: as in read_row, for a writable view.
        unsafe { view.dtype.write(base, off + d, x) };
    }
}

/// # Safety
/// `lse` was validated (row < rows, head < heads) and points to writable host memory.
unsafe fn write_lse(lse: &Option<LseView>, row: usize, head: usize, value: f32) {
    if let Some(l) = lse {
        // SAFETY: dense [rows, heads] f32 array of validated size.
        unsafe { (l.addr as *mut f32).add(row * l.heads + head).write(value) };
    }
}

/// Reads `n` i32s from host memory.
///
/// # Safety
/// `addr` points to `n` readable, 4-byte-aligned i32s.
unsafe fn read_i32s(addr: usize, n: usize) -> Vec<i32> {
    // SAFETY: forwarded from the caller's contract; read element-wise through a raw pointer.
    (0..n).map(|i| unsafe { (addr as *const i32).add(i).read() }).collect()
}

/// Softmax attention of one query over the keys that `for_each_key` yields. `key`/`value` give a key's row.
/// Returns the output row and the LSE (natural log); a query with no keys gets zeros and -inf.
fn attend<'a>(
    q: &[f32],
    scale: f32,
    for_each_key: impl FnOnce(&mut dyn FnMut(usize)),
    key: impl Fn(usize) -> &'a [f32],
    value: impl Fn(usize) -> &'a [f32],
    out: &mut [f32],
) -> f32 {
    let mut keys: Vec<(usize, f32)> = Vec::new();
    for_each_key(&mut |j| keys.push((j, scale * dot(q, key(j)))));
    out.iter_mut().for_each(|x| *x = 0.0);
    if keys.is_empty() {
        return f32::NEG_INFINITY;
    }
    let m = keys.iter().map(|&(_, s)| s).fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f64;
    let mut acc = vec![0f64; out.len()];
    for &(j, s) in &keys {
        let w = ((s - m) as f64).exp();
        sum += w;
        for (a, &v) in acc.iter_mut().zip(value(j)) {
            *a += w * v as f64;
        }
    }
    for (o, a) in out.iter_mut().zip(&acc) {
        *o = (a / sum) as f32;
    }
    (m as f64 + sum.ln()) as f32
}

/// The f32 copy of one kv head's keys or values of one sequence: rows [0, tokens).
struct Rows {
    dim: usize,
    data: Vec<f32>,
}

impl Rows {
    fn row(&self, t: usize) -> &[f32] {
        &self.data[t * self.dim..(t + 1) * self.dim]
    }
}
