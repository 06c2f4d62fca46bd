use super::*;

/// Dense attention of one query over `keys` (element offsets of each key's and value's row), in f64 from the
/// stored (dtype-rounded) values.
pub fn dense_row(
    dt: DType,
    d: usize,
    scale: f64,
    q: &Region,
    qoff: usize,
    k: &Region,
    v: &Region,
    keys: &[(usize, usize)],
) -> (Vec<f64>, f64) {
    let qv: Vec<f64> = (0..d).map(|i| read_elem(q, dt, qoff + i) as f64).collect();
    let logits: Vec<f64> = keys
        .iter()
        .map(|&(ko, _)| scale * (0..d).map(|i| qv[i] * read_elem(k, dt, ko + i) as f64).sum::<f64>())
        .collect();
    let m = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = logits.iter().map(|&s| (s - m).exp()).sum();
    let mut out = vec![0f64; d];
    for (&(_, vo), &s) in keys.iter().zip(&logits) {
        let w = (s - m).exp() / sum;
        for (i, o) in out.iter_mut().enumerate() {
            *o += w * read_elem(v, dt, vo + i) as f64;
        }
    }
    (out, m + sum.ln())
}

pub fn compare_row(dt: DType, o: &Region, off: usize, want: &[f64], what: &str) -> Result<(), String> {
    let tol = match dt {
        DType::Bf16 => 1.6e-2,
        DType::F16 => 2.5e-3,
        DType::F32 => 2e-4,
    };
    for (i, &w) in want.iter().enumerate() {
        let g = read_elem(o, dt, off + i) as f64;
        if !((g - w).abs() <= tol * (1.0 + w.abs())) {
            return Err(format!("{what} element {i}: {g} vs dense {w}"));
        }
    }
    Ok(())
}
