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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Features, Norm, Split};

    /// A NaN weight gives NaN weight scales: the `.q8` is refused, not
    /// written or run.
    #[test]
    fn non_finite_q8_scales_are_refused() {
        let spec = tailor_core::spec::Spec::mlp(&[4, 3, 2]);
        let mut m = crate::checkpoint::zero_model(spec);
        m.init(1);
        let train =
            Split::new(Features::U8((0..40).map(|i| (i * 7) as u8).collect()), vec![0, 1, 0, 1, 0, 1, 0, 1, 0, 1], 4);
        let norm = Norm::identity(4, true);
        let ok = crate::quantize::quantize_model(&m, &norm, &train, &crate::quantize::calibrate(&m, &train, &norm, 10))
            .unwrap();
        check_q8(&ok.model().unwrap(), "ok.q8").unwrap();
        // A NaN output scale in an otherwise valid, CRC-sealed file.
        let mut b = ok.bytes().to_vec();
        let scale = ok.model().unwrap().layer(0).params.out_scale.to_le_bytes();
        let at = b.windows(4).position(|w| w == scale).unwrap();
        b[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
        let depth = u16::from_le_bytes([b[6], b[7]]) as usize;
        let (hl, o) = (tailor_core::format::Header::len_for(depth), 12 + 8 * depth);
        let len = u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) as usize;
        let crc = tailor_core::format::crc32(&b[hl..hl + len]);
        b[o + 4..o + 8].copy_from_slice(&crc.to_le_bytes());
        let hc = tailor_core::format::crc32(&b[..hl - 4]);
        b[hl - 4..hl].copy_from_slice(&hc.to_le_bytes());
        let bad = crate::q8::Q8::from_bytes(&b);
        let e = check_q8(&bad.model().unwrap(), "nan.q8").unwrap_err().to_string();
        assert!(e.contains("nan.q8: layer 1 output scale is NaN"), "{e}");
        m.params_mut()[0] = f32::NAN;
        let e = crate::quantize::quantize_model(&m, &norm, &train, &crate::quantize::calibrate(&m, &train, &norm, 10));
        assert!(e.is_err(), "a NaN weight was quantized");
        assert!(check_finite(m.params(), "m").unwrap_err().to_string().contains("parameter 0 of"));
    }
}
