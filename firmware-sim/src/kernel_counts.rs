//! Instructions per multiply-accumulate of an f32 kernel set's training
//! products over a model's real shapes, counted with [`crate::counter`]
//! (deterministic under `-icount shift=0`).

use tailor_core::gemm::Kernels;
use tailor_core::spec::{Activation, Spec};

/// Instructions and multiply-accumulates of one product over the layers it
/// runs on in a training step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Count {
    pub instructions: u64,
    pub macs: u64,
}

impl Count {
    /// Instructions per 1,000 MACs (`None` when the product does not run,
    /// e.g. the input gradient of a one-layer model).
    pub fn per_kilo_mac(&self) -> Option<u64> {
        (self.macs > 0).then(|| self.instructions * 1000 / self.macs)
    }
}

/// The three products of [`tailor_core::gemm`]'s table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub forward: Count,
    pub input_grad: Count,
    pub weight_grad: Count,
}

impl Counts {
    /// `forward=N input_grad=N weight_grad=N` (instructions per 1,000 MACs,
    /// `-` for a product that does not run), as the host parses it.
    pub fn write(&self, out: &mut dyn core::fmt::Write) -> core::fmt::Result {
        for (name, c) in [("forward", self.forward), ("input_grad", self.input_grad), ("weight_grad", self.weight_grad)]
        {
            match c.per_kilo_mac() {
                Some(v) => write!(out, "{name}={v} ")?,
                None => write!(out, "{name}=- ")?,
            }
        }
        Ok(())
    }
}

/// Runs of each call that [`measure`] averages.
const REPS: u64 = 16;

/// Why [`measure`] could not run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooSmall {
    pub buffer: &'static str,
    pub needed: usize,
}

/// Runs each product of `k` once per layer of `spec` the way a training
/// step of `batch` samples calls it: the forward of every layer (ReLU'd
/// where the layer is), the input gradient of every layer but the first
/// (masked by the ReLU before it), and the weight gradient in blocks of as
/// many rows as `scratch_len` floats of gradient scratch hold (as
/// `DenseMut::backward_update` cuts them on one thread). The operands'
/// values do not change the counts: `x` (`batch` × widest input), `w` (the
/// largest weight matrix), `dy` (`batch` × widest output) are read as they
/// are, `out` is overwritten.
pub fn measure(
    k: &Kernels,
    spec: &Spec,
    batch: usize,
    scratch_len: usize,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    out: &mut [f32],
) -> Result<Counts, TooSmall> {
    let layers = || spec.layers();
    let widest_in = layers().map(|l| l.inputs).max().unwrap_or(0);
    let widest_out = layers().map(|l| l.outputs).max().unwrap_or(0);
    let largest = layers().map(|l| l.inputs * l.outputs).max().unwrap_or(0);
    let free = scratch_len.saturating_sub(spec.outputs_sum());
    let rows = |l: tailor_core::spec::Layer| (free / l.inputs).clamp(1, 64).min(l.outputs);
    let out_len = layers().map(|l| (batch * l.inputs).max(rows(l) * l.inputs)).max().unwrap_or(0);
    for (buffer, have, needed) in [
        ("x", x.len(), batch * widest_in),
        ("w", w.len(), largest),
        ("dy", dy.len(), batch * widest_out),
        ("out", out.len(), out_len),
    ] {
        if have < needed {
            return Err(TooSmall { buffer, needed });
        }
    }
    let mut c = Counts::default();
    // Each call runs REPS times (its outputs overwritten, so the same
    // work): the counter ticks every few dozen instructions, which one
    // call of a small layer would not average out.
    let count = |c: &mut Count, macs: usize, f: &mut dyn FnMut()| {
        let t0 = crate::counter::instructions();
        for _ in 0..REPS {
            f();
        }
        c.instructions += (crate::counter::instructions() - t0) / REPS;
        c.macs += macs as u64;
    };
    for (i, l) in layers().enumerate() {
        let (n_in, n_out, m) = (l.inputs, l.outputs, batch);
        let b = &dy[..n_out];
        let relu = l.activation == Activation::Relu;
        count(&mut c.forward, m * n_out * n_in, &mut || (k.forward)(x, w, b, out, m, n_out, n_in, relu));
        if i > 0 {
            let mask = Some(&x[..m * n_in]);
            count(&mut c.input_grad, m * n_out * n_in, &mut || (k.input_grad)(dy, w, out, mask, m, n_out, n_in));
        }
        let r = rows(l);
        for j0 in (0..n_out).step_by(r) {
            let rr = r.min(n_out - j0);
            count(&mut c.weight_grad, m * rr * n_in, &mut || {
                (k.weight_grad)(&dy[j0..], n_out, x, &mut out[..rr * n_in], m, rr, n_in)
            });
        }
    }
    Ok(c)
}
