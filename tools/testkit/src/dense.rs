//! Dense softmax attention in f64: the oracle every output check compares with (docs/ALGORITHM.md §6 with the
//! key set given explicitly, so the same function checks dense, masked and HiP attention).

/// f64 dot product of two rows.
pub fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// The attention of one query over a list of keys.
#[derive(Clone, Debug, PartialEq)]
pub struct Attention {
    /// sum_j softmax_j * v_j.
    pub o: Vec<f64>,
    /// Largest scaled logit (-inf over no keys).
    pub max: f64,
    /// sum_j exp(logit_j - max): the softmax denominator relative to `max`.
    pub z: f64,
}

impl Attention {
    /// Log-sum-exp of the scaled logits (-inf over no keys).
    pub fn lse(&self) -> f64 {
        self.max + self.z.ln()
    }
    /// The softmax mass that a key of scaled logit `logit` carries.
    pub fn weight(&self, logit: f64) -> f64 {
        (logit - self.max).exp() / self.z
    }
}

/// Attention of query `q` over `keys`, pairs of (key row, value row), with the scores scaled by `scale`. Over no
/// keys the output is all zeros (and `lse()` is -inf), which is what a fully masked row is defined to give.
pub fn attend<K: AsRef<[f32]>, V: AsRef<[f32]>>(
    q: &[f32],
    scale: f64,
    keys: impl IntoIterator<Item = (K, V)>,
) -> Attention {
    let rows: Vec<(f64, V)> = keys.into_iter().map(|(k, v)| (scale * dot(q, k.as_ref()), v)).collect();
    let max = rows.iter().map(|r| r.0).fold(f64::NEG_INFINITY, f64::max);
    let width = rows.first().map_or(q.len(), |r| r.1.as_ref().len());
    let mut acc = vec![0f64; width];
    let mut z = 0f64;
    for (logit, v) in &rows {
        let w = (logit - max).exp();
        z += w;
        for (a, &x) in acc.iter_mut().zip(v.as_ref()) {
            *a += w * x as f64;
        }
    }
    if z > 0.0 {
        for a in &mut acc {
            *a /= z;
        }
    }
    Attention { o: acc, max, z }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_returns_its_value_and_equal_logits_average() {
        let q = [1.0f32, 0.0];
        let a = attend(&q, 1.0, [([2.0f32, 0.0], [3.0f32, -1.0])]);
        assert_eq!(a.o, vec![3.0, -1.0]);
        assert_eq!(a.lse(), 2.0);
        let b = attend(&q, 1.0, [([0.0f32, 1.0], [1.0f32, 0.0]), ([0.0, 5.0], [0.0, 1.0])]);
        assert_eq!(b.o, vec![0.5, 0.5]);
        assert!((b.lse() - 2f64.ln()).abs() < 1e-15);
        assert_eq!(b.weight(0.0), 0.5);
    }

    #[test]
    fn no_keys_give_zeros_and_minus_infinity() {
        let a = attend(&[1.0f32; 3], 1.0, std::iter::empty::<(&[f32], &[f32])>());
        assert_eq!(a.o, vec![0.0; 3]);
        assert_eq!(a.lse(), f64::NEG_INFINITY);
    }
}
