//! Merging two partial attention results by their LSEs (docs/ALGORITHM.md §6).

use super::{read_row, write_lse, write_row, MAX_HEAD_DIM};
use crate::args::MergeArgs;

/// Merges (o_a, lse_a) and (o_b, lse_b) row by row. Each output row is computed from fully read input rows, so
/// an output that aliases an input exactly is fine. The rows live on the stack: merging allocates nothing.
///
/// # Safety
/// Every pointer in `m` is host memory spanning its validated extent.
pub unsafe fn merge(m: &MergeArgs) {
    let d = m.a.head_dim;
    let mut rows = [[0f32; MAX_HEAD_DIM]; 3];
    let [ra, rb, out] = &mut rows;
    let (ra, rb, out) = (&mut ra[..d], &mut rb[..d], &mut out[..d]);
    for t in 0..m.a.rows {
        for h in 0..m.a.heads {
            let at = t * m.a.heads + h;
            // SAFETY: t < rows, h < heads: inside every validated view.
            let (la, lb) = unsafe {
                read_row(&m.a, t, h, ra);
                read_row(&m.b, t, h, rb);
                ((m.lse_a.addr as *const f32).add(at).read(), (m.lse_b.addr as *const f32).add(at).read())
            };
            // (f32::max skips NaN: a NaN partial must not vanish beside an empty one)
            let mx = if la.is_nan() || lb.is_nan() { f32::NAN } else { la.max(lb) };
            let lse = if mx == f32::NEG_INFINITY {
                out.iter_mut().for_each(|x| *x = 0.0);
                f32::NEG_INFINITY
            } else {
                let (wa, wb) = (((la - mx) as f64).exp(), ((lb - mx) as f64).exp());
                // A side of weight 0 (lse -inf) contributes nothing, whatever its O holds (an empty partial's O
                // is not read, on either backend); a NaN weight makes the row NaN.
                let term = |w: f64, x: f32| if w == 0.0 { 0.0 } else { w * x as f64 };
                for i in 0..d {
                    out[i] = ((term(wa, ra[i]) + term(wb, rb[i])) / (wa + wb)) as f32;
                }
                (mx as f64 + (wa + wb).ln()) as f32
            };
            // SAFETY: as above.
            unsafe {
                write_row(&m.out, t, h, out);
                write_lse(&m.lse_out, t, h, lse);
            }
        }
    }
}
