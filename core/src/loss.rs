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
pub fn log_softmax<const C: usize>(z: &[f32; C], out: &mut [f32; C]) {
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

/// `nn.CrossEntropyLoss` on raw logits: mean over rows of
/// `logsumexp(z) - z[target]`. Gradient `(softmax(z) - onehot) / m`.
pub fn cross_entropy<const C: usize>(
    logits: &[[f32; C]],
    targets: &[u8],
    grad: &mut [[f32; C]],
) -> Result<f32, BadTarget> {
    let m = logits.len();
    assert_eq!(targets.len(), m, "cross_entropy: {} targets for {} rows", targets.len(), m);
    check_targets(targets, C)?;
    let inv_m = 1.0 / m as f32;
    let mut total = 0.0f32;
    for ((z, &t), g) in logits.iter().zip(targets).zip(grad.iter_mut()) {
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
pub fn nll<const C: usize>(logp: &[[f32; C]], targets: &[u8], grad: &mut [[f32; C]]) -> Result<f32, BadTarget> {
    let m = logp.len();
    assert_eq!(targets.len(), m, "nll: {} targets for {} rows", targets.len(), m);
    check_targets(targets, C)?;
    let inv_m = 1.0 / m as f32;
    let mut total = 0.0f32;
    for ((lp, &t), g) in logp.iter().zip(targets).zip(grad.iter_mut()) {
        total -= lp[t as usize];
        g.fill(0.0);
        g[t as usize] = -inv_m;
    }
    Ok(total * inv_m)
}

/// `nn.MSELoss`: mean over all `m·C` elements of `(pred - target)²`.
pub fn mse<const C: usize>(pred: &[[f32; C]], target: &[[f32; C]], grad: &mut [[f32; C]]) -> f32 {
    let count = (pred.len() * C) as f32;
    let mut total = 0.0f32;
    for ((p, t), g) in pred.iter().zip(target).zip(grad.iter_mut()) {
        for c in 0..C {
            let d = p[c] - t[c];
            total += d * d;
            g[c] = 2.0 * d / count;
        }
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
        fd_check(Z, |z, g| cross_entropy(z, &[2, 0, 3], g).unwrap());
    }

    #[test]
    fn nll_and_mse_gradients_match_finite_differences() {
        fd_check(Z, |z, g| nll(z, &[1, 1, 0], g).unwrap());
        let t = [[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.5], [0.2, 0.2, 0.2, 0.2]];
        fd_check(Z, |z, g| mse(z, &t, g));
    }

    #[test]
    fn cross_entropy_known_value_equals_log_softmax_plus_nll() {
        // Uniform logits: loss is ln(C) exactly.
        let mut g = [[0.0; 4]; 1];
        let l = cross_entropy(&[[7.0; 4]], &[1], &mut g).unwrap();
        assert!((l - libm::logf(4.0)).abs() < 1e-6);
        let mut lp = [[0.0; 4]; 3];
        for r in 0..3 {
            log_softmax(&Z[r], &mut lp[r]);
        }
        let a = cross_entropy(&Z, &[0, 1, 2], &mut [[0.0; 4]; 3]).unwrap();
        let b = nll(&lp, &[0, 1, 2], &mut [[0.0; 4]; 3]).unwrap();
        assert!((a - b).abs() < 1e-6);
    }

    #[test]
    fn cross_entropy_is_stable_for_huge_logits() {
        let z = [[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]];
        let mut g = [[0.0; 3]; 2];
        let l = cross_entropy(&z, &[1, 0], &mut g).unwrap();
        assert!(l.is_finite());
        // Row 0: loss 2e4; row 1: ln 3. Mean: (2e4 + ln 3)/2.
        assert!((l - (2e4 + libm::logf(3.0)) / 2.0).abs() < 1.0);
        assert!(g.iter().flatten().all(|v| v.is_finite()));
        assert!((g[0][0] - 0.5).abs() < 1e-6 && (g[0][1] + 0.5).abs() < 1e-6);
    }

    #[test]
    fn bad_target_is_an_error_not_a_panic() {
        let e = cross_entropy(&[[0.0; 3]], &[3], &mut [[0.0; 3]]).unwrap_err();
        assert_eq!(e, BadTarget { row: 0, target: 3, classes: 3 });
        assert!(nll(&[[0.0; 3]], &[9], &mut [[0.0; 3]]).is_err());
    }

    #[test]
    fn argmax_takes_first_on_ties() {
        assert_eq!(argmax(&[1, 3, 3, 2]), 1);
        assert_eq!(argmax(&[-1.0f32]), 0);
    }
}
