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
    let row = |off: usize, r: &Region| -> Vec<f32> { (0..d).map(|i| read_elem(r, dt, off + i)).collect() };
    let att = testkit::attend(&row(qoff, q), scale, keys.iter().map(|&(ko, vo)| (row(ko, k), row(vo, v))));
    let lse = att.lse();
    (att.o, lse)
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
