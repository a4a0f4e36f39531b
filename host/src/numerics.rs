//! Non-finite numbers: a model holding one is refused everywhere, because
//! NaN weights still classify (every logit NaN, class 0) and would pass
//! for a model.

use anyhow::{bail, Result};
use tailor_core::quant::{QInput, QModel};

/// Fails on the first non-finite value of `xs`, naming `what` and where.
pub fn check_finite(xs: &[f32], what: &str) -> Result<()> {
    if let Some(i) = xs.iter().position(|x| !x.is_finite()) {
        bail!("{what}: parameter {i} of {} is {}; the model is not usable (did training diverge?)", xs.len(), xs[i]);
    }
    Ok(())
}

/// Fails when a scale or input grid of the int8 model is not finite.
pub fn check_q8(q: &QModel<'_>, what: &str) -> Result<()> {
    for i in 0..q.spec().depth() {
        let l = q.layer(i);
        let p = l.params;
        for (name, v) in [("input scale", p.in_scale), ("output scale", p.out_scale)] {
            if !v.is_finite() {
                bail!("{what}: layer {} {name} is {v}; the int8 model is not usable", i + 1);
            }
        }
        if let Some(r) = l.w_scale.iter().position(|v| !v.is_finite()) {
            bail!("{what}: layer {} weight scale of row {r} is {}; the int8 model is not usable", i + 1, l.w_scale[r]);
        }
    }
    if let QInput::AffineU8 { lo, step } = q.input() {
        if let Some(f) = lo.iter().chain(step).position(|v| !v.is_finite()) {
            bail!("{what}: input grid value {f} is not finite; the int8 model is not usable");
        }
    }
    Ok(())
}
