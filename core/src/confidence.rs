//! How sure a prediction is: the softmax probability of the predicted class,
//! as a device reports it beside each prediction.
//!
//! A confidence is shown to people, so an approximate `exp` would do, and
//! the design card named `micromath`'s. Measured on the Cortex-M4
//! (the on-target test `softmax_exp_cost_and_error`, figures in the
//! README) it costs more instructions per call than `libm`'s `expf`, which
//! is exact to the last bit or so, so the confidence uses `libm` too. The
//! functions take the exponential as an argument so that the comparison
//! runs the same softmax. Plain f32 arithmetic without fused operations:
//! the host computes the same bits as the device and checks them.

/// `e^x` by `libm`, as the loss computes it.
pub fn libm_exp(x: f32) -> f32 {
    libm::expf(x)
}

/// Softmax of `logits` into `probs` (same length, not empty) with the
/// exponential `exp`, shifted by the maximum so no term overflows.
pub fn softmax(logits: &[f32], probs: &mut [f32], exp: fn(f32) -> f32) {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &z| if z > m { z } else { m });
    let mut sum = 0.0f32;
    for (p, &z) in probs.iter_mut().zip(logits) {
        *p = exp(z - max);
        sum += *p;
    }
    for p in probs.iter_mut() {
        *p /= sum;
    }
}

/// The probability of the largest logit, `1 / Σ e^(z − max)`, with `exp`.
/// 0 for no logits or a non-finite one.
pub fn top_probability(logits: &[f32], exp: fn(f32) -> f32) -> f32 {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &z| if z > m { z } else { m });
    if logits.is_empty() || !logits.iter().all(|z| z.is_finite()) {
        return 0.0;
    }
    let sum: f32 = logits.iter().map(|&z| exp(z - max)).sum();
    1.0 / sum
}

/// A probability as a whole percent, `0..=100` (rounded to nearest).
pub fn percent(p: f32) -> u8 {
    let v = p * 100.0 + 0.5;
    if v >= 100.0 {
        100
    } else if v > 0.0 {
        v as u8
    } else {
        0
    }
}

/// Most classes [`of_int8_logits`] takes.
pub const MAX_CLASSES: usize = 16;

/// The confidence, in percent, of an int8 model's prediction from its
/// `i32` logits, whose real value is `scale · logit` (the last layer's
/// `out_scale`). Logits beyond [`MAX_CLASSES`] are ignored.
pub fn of_int8_logits(logits: &[i32], scale: f32) -> u8 {
    let n = logits.len().min(MAX_CLASSES);
    let mut z = [0f32; MAX_CLASSES];
    for (r, &l) in z.iter_mut().zip(&logits[..n]) {
        *r = scale * l as f32;
    }
    percent(top_probability(&z[..n], libm_exp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_its_top_is_the_confidence() {
        let mut rng = crate::rng::Rng::new(4);
        for _ in 0..500 {
            let z: [f32; 10] = core::array::from_fn(|_| (rng.below(4001) as f32 - 2000.0) / 100.0);
            let mut p = [0f32; 10];
            softmax(&z, &mut p, libm_exp);
            assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            let top = top_probability(&z, libm_exp);
            assert!((top - p[crate::loss::argmax(&z)]).abs() < 1e-6, "{top} vs {p:?}");
        }
    }

    #[test]
    fn percents_and_edge_cases() {
        assert_eq!(percent(1.0), 100);
        assert_eq!(percent(0.994), 99);
        assert_eq!(percent(0.995), 100);
        assert_eq!(percent(0.0), 0);
        assert_eq!(percent(f32::NAN), 0);
        assert_eq!(top_probability(&[], libm_exp), 0.0);
        assert_eq!(top_probability(&[1.0, f32::NAN], libm_exp), 0.0);
        // Equal logits: 1/n.
        assert_eq!(of_int8_logits(&[5, 5, 5, 5], 0.1), 25);
        // One far ahead: certain; huge gaps do not overflow.
        assert_eq!(of_int8_logits(&[i32::MAX, i32::MIN, 0], 1.0), 100);
        // 0.653 (ln-odds by hand: 1 / (1 + e^-2 + e^-1.75 + e^-1.5)).
        assert_eq!(of_int8_logits(&[-91, -99, -98, -97], 0.25), 65);
    }
}
