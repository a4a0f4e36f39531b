//! Losses with their gradients, reduced by the batch mean as in PyTorch.
//!
//! Each function takes `m` rows of predictions, returns the mean loss and
//! writes `∂loss/∂prediction` (already divided by the batch size) into the
//! caller's buffer. Targets are class indices (`u8`, since ≤ 256 classes).

/// Error for a target that is not a valid class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadTarget {
    pub row: usize,
    pub target: u8,
    pub classes: usize,
}

fn check_targets(targets: &[u8], classes: usize) -> Result<(), BadTarget> {
    match targets.iter().position(|&t| t as usize >= classes) {
        Some(row) => Err(BadTarget { row, target: targets[row], classes }),
        None => Ok(()),
    }
}

/// `log_softmax` of one row, stable for any finite logits: the max is
/// subtracted before `exp`, so ±1e4 logits neither overflow nor vanish.
pub fn log_softmax(z: &[f32], out: &mut [f32]) {
    let mx = z.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let mut s = 0.0f32;
    for &v in z {
        s += libm::expf(v - mx);
    }
    let lse = mx + libm::logf(s);
    for (o, &v) in out.iter_mut().zip(z) {
        *o = v - lse;
    }
}

/// `nn.CrossEntropyLoss` on raw logits (`targets.len()` rows of `classes`):
/// mean over rows of `logsumexp(z) - z[target]`. Gradient
/// `(softmax(z) - onehot) / m`.
pub fn cross_entropy(logits: &[f32], classes: usize, targets: &[u8], grad: &mut [f32]) -> Result<f32, BadTarget> {
    let m = targets.len();
    assert!(logits.len() >= m * classes && grad.len() >= m * classes, "cross_entropy: {m} rows do not fit");
    check_targets(targets, classes)?;
    let inv_m = 1.0 / m as f32;
    let mut total = 0.0f32;
    for ((z, &t), g) in logits.chunks_exact(classes).zip(targets).zip(grad.chunks_exact_mut(classes)) {
        log_softmax(z, g);
        total -= g[t as usize];
        for v in g.iter_mut() {
            *v = libm::expf(*v) * inv_m;
        }
        g[t as usize] -= inv_m;
    }
    Ok(total * inv_m)
}

/// `nn.NLLLoss` on log-probabilities: mean of `-logp[target]`.
pub fn nll(logp: &[f32], classes: usize, targets: &[u8], grad: &mut [f32]) -> Result<f32, BadTarget> {
    let m = targets.len();
    assert!(logp.len() >= m * classes && grad.len() >= m * classes, "nll: {m} rows do not fit");
    check_targets(targets, classes)?;
    let inv_m = 1.0 / m as f32;
    let mut total = 0.0f32;
    for ((lp, &t), g) in logp.chunks_exact(classes).zip(targets).zip(grad.chunks_exact_mut(classes)) {
        total -= lp[t as usize];
        g.fill(0.0);
        g[t as usize] = -inv_m;
    }
    Ok(total * inv_m)
}

/// `nn.MSELoss`: mean over all elements of `(pred - target)²`.
pub fn mse(pred: &[f32], target: &[f32], grad: &mut [f32]) -> f32 {
    let count = pred.len() as f32;
    let mut total = 0.0f32;
    for ((p, t), g) in pred.iter().zip(target).zip(grad.iter_mut()) {
        let d = p - t;
        total += d * d;
        *g = 2.0 * d / count;
    }
    total / count
}

/// Index of the largest value (the first one on ties, like `torch.argmax`).
pub fn argmax<T: PartialOrd + Copy>(xs: &[T]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Central differences in f64 around an f32 loss.
    fn fd_check<const C: usize>(z: [[f32; C]; 3], f: impl Fn(&[[f32; C]; 3], &mut [[f32; C]; 3]) -> f32) {
        let mut g = [[0.0; C]; 3];
        f(&z, &mut g);
        let h = 1e-2f32;
        let mut scratch = [[0.0; C]; 3];
        for r in 0..3 {
            for c in 0..C {
                let mut zp = z;
                zp[r][c] += h;
                let mut zm = z;
                zm[r][c] -= h;
                let num = (f(&zp, &mut scratch) as f64 - f(&zm, &mut scratch) as f64) / (2.0 * h as f64);
                assert!((num - g[r][c] as f64).abs() < 2e-3, "[{r}][{c}]: numeric {num} vs analytic {}", g[r][c]);
            }
        }
    }

    const Z: [[f32; 4]; 3] = [[0.5, -1.0, 2.0, 0.1], [3.0, 3.0, -2.0, 0.0], [-0.3, 0.2, 0.9, -1.5]];

    #[test]
    fn cross_entropy_gradient_matches_finite_differences() {
        fd_check(Z, |z, g| cross_entropy(z.as_flattened(), 4, &[2, 0, 3], g.as_flattened_mut()).unwrap());
    }

    #[test]
    fn nll_and_mse_gradients_match_finite_differences() {
        fd_check(Z, |z, g| nll(z.as_flattened(), 4, &[1, 1, 0], g.as_flattened_mut()).unwrap());
        let t = [[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.5], [0.2, 0.2, 0.2, 0.2]];
        fd_check(Z, |z, g| mse(z.as_flattened(), t.as_flattened(), g.as_flattened_mut()));
    }

    #[test]
    fn cross_entropy_known_value_equals_log_softmax_plus_nll() {
        // Uniform logits: loss is ln(C) exactly.
        let mut g = [[0.0; 4]; 1];
        let l = cross_entropy(&[7.0; 4], 4, &[1], g.as_flattened_mut()).unwrap();
        assert!((l - libm::logf(4.0)).abs() < 1e-6);
        let mut lp = [[0.0; 4]; 3];
        for r in 0..3 {
            log_softmax(&Z[r], &mut lp[r]);
        }
        let a = cross_entropy(Z.as_flattened(), 4, &[0, 1, 2], &mut [0.0; 12]).unwrap();
        let b = nll(lp.as_flattened(), 4, &[0, 1, 2], &mut [0.0; 12]).unwrap();
        assert!((a - b).abs() < 1e-6);
    }

    #[test]
    fn cross_entropy_is_stable_for_huge_logits() {
        let z = [[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]];
        let mut g = [[0.0; 3]; 2];
        let l = cross_entropy(z.as_flattened(), 3, &[1, 0], g.as_flattened_mut()).unwrap();
        assert!(l.is_finite());
        // Row 0: loss 2e4; row 1: ln 3. Mean: (2e4 + ln 3)/2.
        assert!((l - (2e4 + libm::logf(3.0)) / 2.0).abs() < 1.0);
        assert!(g.iter().flatten().all(|v| v.is_finite()));
        assert!((g[0][0] - 0.5).abs() < 1e-6 && (g[0][1] + 0.5).abs() < 1e-6);
    }

    #[test]
    fn bad_target_is_an_error_not_a_panic() {
        let e = cross_entropy(&[0.0; 3], 3, &[3], &mut [0.0; 3]).unwrap_err();
        assert_eq!(e, BadTarget { row: 0, target: 3, classes: 3 });
        assert!(nll(&[0.0; 3], 3, &[9], &mut [0.0; 3]).is_err());
    }

    #[test]
    fn argmax_takes_first_on_ties() {
        assert_eq!(argmax(&[1, 3, 3, 2]), 1);
        assert_eq!(argmax(&[-1.0f32]), 0);
    }
}
