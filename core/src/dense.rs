//! A fully connected layer in PyTorch's layout: `weight[out][in]` row-major,
//! then `bias[out]`, as views into a model's flat parameters.
//!
//! Forward and backward allocate nothing and use only the caller's
//! activation buffers: row-major batches of `m` rows (`x: [m][in]`,
//! `y: [m][out]`), with `m` the live batch size.

use crate::gemm::{bias_grad, Kernels, Rule};
use crate::par::{rows_per_task, Par};
use crate::rng::Rng;
use crate::spec::Layer;

/// A layer's parameters (or gradients), borrowed.
#[derive(Clone, Copy, Debug)]
pub struct Dense<'a> {
    pub inputs: usize,
    pub outputs: usize,
    /// `[outputs][inputs]`, row-major.
    pub weight: &'a [f32],
    pub bias: &'a [f32],
}

/// A layer's parameters (or gradients), mutably borrowed.
#[derive(Debug)]
pub struct DenseMut<'a> {
    pub inputs: usize,
    pub outputs: usize,
    pub weight: &'a mut [f32],
    pub bias: &'a mut [f32],
}

impl<'a> Dense<'a> {
    /// The layer `layer` over its flat parameters (`weight`, then `bias`).
    /// Panics if `params` is not `layer.params()` long.
    pub fn new(layer: Layer, params: &'a [f32]) -> Self {
        assert_eq!(params.len(), layer.params(), "Dense: parameters of the wrong length");
        let (weight, bias) = params.split_at(layer.outputs * layer.inputs);
        Dense { inputs: layer.inputs, outputs: layer.outputs, weight, bias }
    }
}

impl<'a> DenseMut<'a> {
    /// As [`Dense::new`].
    pub fn new(layer: Layer, params: &'a mut [f32]) -> Self {
        assert_eq!(params.len(), layer.params(), "DenseMut: parameters of the wrong length");
        let (weight, bias) = params.split_at_mut(layer.outputs * layer.inputs);
        DenseMut { inputs: layer.inputs, outputs: layer.outputs, weight, bias }
    }

    pub fn as_ref(&self) -> Dense<'_> {
        Dense { inputs: self.inputs, outputs: self.outputs, weight: self.weight, bias: self.bias }
    }

    /// A shorter-lived mutable view (to pass on and use again).
    pub fn reborrow(&mut self) -> DenseMut<'_> {
        DenseMut { inputs: self.inputs, outputs: self.outputs, weight: self.weight, bias: self.bias }
    }

    /// PyTorch's default `nn.Linear` init: weight and bias uniform in
    /// `±1/sqrt(in)` (kaiming_uniform with a = sqrt(5) reduces to this).
    /// Weights are drawn row by row, then the bias.
    pub fn init(&mut self, rng: &mut Rng) {
        let bound = 1.0 / libm::sqrtf(self.inputs as f32);
        for w in self.weight.iter_mut() {
            *w = rng.uniform(-bound, bound);
        }
        for b in self.bias.iter_mut() {
            *b = rng.uniform(-bound, bound);
        }
    }
}

impl Dense<'_> {
    /// `y = x·Wᵀ + b` (ReLU'd if `relu`) for `m` rows.
    pub fn forward(&self, k: &Kernels, par: &dyn Par, x: &[f32], y: &mut [f32], m: usize, relu: bool) {
        let (inp, out) = (self.inputs, self.outputs);
        let (x, y) = (&x[..m * inp], &mut y[..m * out]);
        let (w, b) = (self.weight, self.bias);
        if par.width() > 1 {
            // Split the outputs: each thread streams (and keeps in its own
            // L2) only its share of the weights, packed once for all rows.
            // Every task sees all rows, so the kernel (chosen from the
            // batch and the layer's width) is the same for any split.
            let yp = SyncMut(y.as_mut_ptr());
            for_col_blocks(par, out, 16, &|j0, r| {
                let yp = &yp;
                // SAFETY: columns j0..j0 + r of y[m][out]; tasks own disjoint
                // column blocks and nothing else touches y during the call.
                unsafe {
                    (k.forward_cols)(x, &w[j0 * inp..][..r * inp], &b[j0..][..r], yp.0.add(j0), out, m, r, inp, relu)
                };
            });
            return;
        }
        (k.forward)(x, w, b, y, m, out, inp, relu);
    }

    /// Given `dy = ∂L/∂y` for `m` rows, writes this layer's gradients into
    /// `grad` and, if `dx` is given, `∂L/∂x` masked by the ReLU that
    /// produced `x` (pass `relu_input = true` when it did).
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        k: &Kernels,
        par: &dyn Par,
        x: &[f32],
        dy: &[f32],
        m: usize,
        grad: DenseMut<'_>,
        dx: Option<&mut [f32]>,
        relu_input: bool,
    ) {
        let (inp, out) = (self.inputs, self.outputs);
        let (xf, dyf) = (&x[..m * inp], &dy[..m * out]);
        // Weight gradient: split over output rows (tasks own whole rows of dw).
        let rows = rows_per_task(out, par.width(), 4);
        par.for_chunks(&mut grad.weight[..out * inp], rows * inp, &|t, dw| {
            let r = dw.len() / inp;
            (k.weight_grad)(&dyf[t * rows..], out, xf, dw, m, r, inp);
        });
        bias_grad(dyf, grad.bias, m, out);
        if let Some(dx) = dx {
            self.input_grad(k, par, xf, dyf, &mut dx[..m * inp], m, relu_input);
        }
    }
}
/// `update(offset, params, grads)`: an elementwise optimizer step on the
/// parameters at `offset..offset + params.len()` of a layer's flat
/// parameters (weight rows, then bias), given their gradients.
pub type UpdateFn<'a> = &'a (dyn Fn(usize, &mut [f32], &[f32]) + Sync);

/// The optimizer step that [`Dense::backward_update`] applies.
pub enum Update<'a> {
    /// Plain SGD or Adam, applied by the weight-gradient kernel to each tile
    /// of gradients while it is still in registers
    /// ([`Kernels::weight_grad_step`]): the gradient never goes to memory.
    /// `state` is Adam's `m` and `v` over the layer's flat parameters
    /// (weights, then bias); empty slices for SGD.
    Fused(Rule<'a>, [&'a mut [f32]; 2]),
    /// Any elementwise rule, applied to each block of gradients right after
    /// the kernel has written it.
    Each(UpdateFn<'a>),
}

/// Rows of `dw` per fused weight-grad + update block: small enough that the
/// block (and its weights) is still in cache for the update, large enough
/// to amortize the kernel's copy of `x` per call.
const UPDATE_ROWS: usize = 64;

/// Most tasks a forward is split into (column blocks of at least 16).
const MAX_TASKS: usize = 64;

/// Calls `f(j0, cols)` for column blocks `j0..j0 + cols` that cover `n`
/// outputs, one block per thread, each a multiple of `align` (but the last).
pub(crate) fn for_col_blocks(par: &dyn Par, n: usize, align: usize, f: &(dyn Fn(usize, usize) + Sync)) {
    let cols = rows_per_task(n, par.width().min(MAX_TASKS), align);
    let tasks = n.div_ceil(cols);
    par.for_tasks(tasks, &|t| {
        let j0 = t * cols;
        f(j0, cols.min(n - j0));
    });
}

/// A pointer into a buffer whose tasks write disjoint parts (rows of the
/// weights in `backward_update`, column blocks of `y` in `forward`).
pub(crate) struct SyncMut(pub(crate) *mut f32);
// SAFETY: each task derives a disjoint range (see the users).
unsafe impl Sync for SyncMut {}

impl DenseMut<'_> {
    /// [`Self::backward`], then `update` on every parameter, fused: each
    /// block of weight gradient is applied to its weights right after it is
    /// computed, while both are in cache. The parameters end up as with
    /// `backward` followed by one `update` over all of them (bit for bit,
    /// given an elementwise `update`), and so do `dx` and `grad.bias`.
    /// `grad.weight` does too if `keep_weight_grad` (it must then hold the
    /// whole gradient); otherwise it is scratch of any length that gives
    /// each task at least one row: the tasks share it equally, and each
    /// reuses its share for block after block of rows, which stays in cache.
    /// (A microcontroller passes a few rows' worth instead of a gradient the
    /// size of the layer.)
    #[allow(clippy::too_many_arguments)]
    pub fn backward_update(
        &mut self,
        k: &Kernels,
        par: &dyn Par,
        x: &[f32],
        dy: &[f32],
        m: usize,
        grad: DenseMut<'_>,
        dx: Option<&mut [f32]>,
        relu_input: bool,
        update: Update<'_>,
        keep_weight_grad: bool,
    ) {
        let (n_in, n_out) = (self.inputs, self.outputs);
        let (xf, dyf) = (&x[..m * n_in], &dy[..m * n_out]);
        // dx first: it needs the weights before they change.
        if let Some(dx) = dx {
            self.as_ref().input_grad(k, par, xf, dyf, &mut dx[..m * n_in], m, relu_input);
        }
        bias_grad(dyf, grad.bias, m, n_out);
        let (each, rule, state) = match update {
            Update::Fused(rule, state) => (None, Some(rule), state),
            Update::Each(f) => (Some(f), None, [&mut [][..], &mut []]),
        };
        let stateful = matches!(rule, Some(Rule::Adam(_)));
        let need = if stateful { n_out * (n_in + 1) } else { 0 };
        assert!(state.iter().all(|s| s.len() >= need), "backward_update: optimizer state is smaller than the layer");
        let [sm, sv] = state;
        let (smp, svp) = (SyncMut(sm.as_mut_ptr()), SyncMut(sv.as_mut_ptr()));
        // The optimizer state of flat parameters off..off + len (none when
        // stateless).
        // SAFETY (callers): the range lies inside the layer (the state is as
        // long, checked above), and no other task touches it.
        let state_at = |off: usize, len: usize| -> [&mut [f32]; 2] {
            let (smp, svp) = (&smp, &svp);
            if !stateful {
                return [&mut [], &mut []];
            }
            // SAFETY: see above.
            unsafe {
                [
                    core::slice::from_raw_parts_mut(smp.0.add(off), len),
                    core::slice::from_raw_parts_mut(svp.0.add(off), len),
                ]
            }
        };
        // One unfused elementwise step on the parameters at `off` (same
        // contract).
        let step_at = |off: usize, p: &mut [f32], g: &[f32]| match (each, rule) {
            (Some(f), _) => f(off, p, g),
            (None, Some(r)) => r.apply(k.sgd, k.adam, p, g, state_at(off, p.len())),
            (None, None) => unreachable!(),
        };
        let rows = rows_per_task(n_out, par.width(), 4);
        let tasks = n_out.div_ceil(rows);
        let (per, block) = if keep_weight_grad {
            assert!(grad.weight.len() >= n_out * n_in, "backward_update: kept gradient shorter than the weights");
            (rows * n_in, UPDATE_ROWS)
        } else {
            let per = grad.weight.len() / tasks / n_in * n_in;
            (per, UPDATE_ROWS.min(per / n_in))
        };
        assert!(
            block >= 1,
            "backward_update: weight-gradient scratch of {} floats holds less than one row of {n_in} for each of {tasks} tasks",
            grad.weight.len()
        );
        let w = SyncMut(self.weight.as_mut_ptr());
        let g = SyncMut(grad.weight.as_mut_ptr());
        par.for_tasks(tasks, &|t| {
            let (w, g) = (&w, &g);
            let r0 = t * rows;
            let rows = rows.min(n_out - r0);
            // SAFETY: task t's share of the scratch, [t·per, (t + 1)·per)
            // (when kept: its own rows of the gradient), lies inside
            // grad.weight (checked above) and no other task touches it.
            let dw = unsafe { core::slice::from_raw_parts_mut(g.0.add(t * per), per.min(rows * n_in)) };
            for b in 0..rows.div_ceil(block) {
                let (j0, r) = (r0 + b * block, block.min(rows - b * block));
                let at = if keep_weight_grad { (j0 - r0) * n_in } else { 0 };
                let dwb = &mut dw[at..][..r * n_in];
                // SAFETY: rows j0..j0 + r of the weights (and of the state
                // when stateful), inside the layer; tasks own disjoint row
                // ranges (as of dw), and nothing else reads them during this
                // call.
                let wb = unsafe { core::slice::from_raw_parts_mut(w.0.add(j0 * n_in), r * n_in) };
                match rule {
                    Some(rule) if !keep_weight_grad => {
                        let st = state_at(j0 * n_in, r * n_in);
                        (k.weight_grad_step)(&dyf[j0..], n_out, xf, dwb, wb, st, rule, m, r, n_in);
                    }
                    _ => {
                        (k.weight_grad)(&dyf[j0..], n_out, xf, dwb, m, r, n_in);
                        step_at(j0 * n_in, wb, dwb);
                    }
                }
            }
        });
        step_at(n_out * n_in, self.bias, grad.bias);
    }
}

impl Dense<'_> {
    /// `dx = dy·W`, masked by the ReLU that produced `x` when `relu_input`;
    /// split over rows of the batch.
    #[allow(clippy::too_many_arguments)]
    fn input_grad(
        &self,
        k: &Kernels,
        par: &dyn Par,
        xf: &[f32],
        dyf: &[f32],
        dx: &mut [f32],
        m: usize,
        relu_input: bool,
    ) {
        let (n_in, n_out) = (self.inputs, self.outputs);
        if let Some(cols_fn) = k.input_grad_cols.filter(|_| par.width() > 1 && m > 0) {
            // Split the columns: each thread packs and streams only its
            // share of the weights' columns, for all rows (by rows, each
            // would pack all of the weights).
            let w = self.weight;
            let dxp = SyncMut(dx.as_mut_ptr());
            let dyf = &dyf[..m * n_out];
            for_col_blocks(par, n_in, 16, &|p0, r| {
                let dxp = &dxp;
                let mask = relu_input.then(|| &xf[p0..m * n_in]);
                // SAFETY: columns p0..p0 + r of dx[m][n_in]; tasks own disjoint
                // column blocks and nothing else touches dx during the call.
                unsafe { cols_fn(dyf, &w[p0..], dxp.0.add(p0), n_in, mask, m, n_out, r) };
            });
            return;
        }
        let rows = rows_per_task(m, par.width(), 4);
        let w = self.weight;
        par.for_chunks(dx, rows * n_in, &|t, dxc| {
            let r = dxc.len() / n_in;
            let mask = relu_input.then(|| &xf[t * rows * n_in..][..r * n_in]);
            (k.input_grad)(&dyf[t * rows * n_out..][..r * n_out], w, dxc, mask, r, n_out, n_in);
        });
    }
}

/// ReLU on its own, for models that need it outside a fused product.
pub fn relu_forward(x: &mut [f32]) {
    for v in x {
        *v = v.max(0.0);
    }
}

/// `dx = dy ⊙ [y > 0]`, where `y` is the ReLU's output.
pub fn relu_backward(y: &[f32], dy: &mut [f32]) {
    for (d, &a) in dy.iter_mut().zip(y) {
        if a <= 0.0 {
            *d = 0.0;
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    use super::*;
    use crate::par::Serial;
    use crate::spec::Activation;

    /// Splits like a 2-thread pool but runs in order.
    struct Two;
    impl Par for Two {
        fn width(&self) -> usize {
            2
        }
        fn for_tasks(&self, n: usize, f: &(dyn Fn(usize) + Sync)) {
            Serial.for_tasks(n, f)
        }
    }

    fn kernels() -> [Kernels; 2] {
        #[cfg(target_arch = "x86_64")]
        {
            let avx512 = std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vl");
            crate::gemm::kernel_set_tested("f32 avx512 (dense layer)", "avx512f, avx512vl", avx512);
            if avx512 {
                // SAFETY: features checked (AVX-512F/VL imply AVX2 and FMA on
                // every CPU that has them).
                return [Kernels::PORTABLE, unsafe { crate::gemm::x86::avx512() }];
            }
        }
        [Kernels::PORTABLE, Kernels::NAIVE]
    }

    /// A layer, 5 rows of inputs and 5 of output gradients, all random.
    fn setup(n_in: usize, n_out: usize, seed: u64) -> (Layer, Vec<f32>, Vec<f32>, Vec<f32>) {
        let layer = Layer { inputs: n_in, outputs: n_out, activation: Activation::Relu };
        let mut rng = Rng::new(seed);
        let mut p = vec![0.0; layer.params()];
        DenseMut::new(layer, &mut p).init(&mut rng);
        let x = (0..5 * n_in).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let dy = (0..5 * n_out).map(|_| rng.uniform(-1.0, 1.0)).collect();
        (layer, p, x, dy)
    }

    fn fused_matches(n_in: usize, n_out: usize, m: usize) {
        let (layer, params, x, dy) = setup(n_in, n_out, 7);
        // A stateful, nonlinear elementwise update (like momentum SGD).
        let update = |_: usize, p: &mut [f32], g: &[f32]| {
            for (p, &g) in p.iter_mut().zip(g) {
                *p -= 0.1 * g + 0.01 * *p * *p;
            }
        };
        for k in kernels() {
            for par in [&Serial as &dyn Par, &Two] {
                let (mut ga, mut dxa) = (vec![0.0; layer.params()], vec![0.0; 5 * n_in]);
                let d = Dense::new(layer, &params);
                d.backward(&k, par, &x, &dy, m, DenseMut::new(layer, &mut ga), Some(&mut dxa), true);
                let mut pa = params.clone();
                update(0, &mut pa, &ga);
                for keep in [true, false] {
                    let mut b = params.clone();
                    let (mut gb, mut dxb) = (vec![0.0; layer.params()], vec![0.0; 5 * n_in]);
                    DenseMut::new(layer, &mut b).backward_update(
                        &k,
                        par,
                        &x,
                        &dy,
                        m,
                        DenseMut::new(layer, &mut gb),
                        Some(&mut dxb),
                        true,
                        Update::Each(&update),
                        keep,
                    );
                    let nw = n_in * n_out;
                    if keep {
                        assert!(ga == gb, "{}: gradients differ", k.name);
                    }
                    assert!(ga[nw..] == gb[nw..], "{}: bias gradients differ", k.name);
                    assert!(dxa == dxb, "{}: dx differs", k.name);
                    assert!(pa == b, "{}: parameters differ (keep {keep})", k.name);
                }
            }
        }
    }

    /// The kernel-fused SGD and Adam steps give the parameters and state of
    /// `backward` followed by the optimizer over all parameters, bit for bit.
    fn fused_rules_match(n_in: usize, n_out: usize, m: usize) {
        let (layer, params, x, dy) = setup(n_in, n_out, 8);
        let len = layer.params();
        let adam = crate::optim::Adam { weight_decay: 0.01, ..Default::default() };
        let c = adam.coefs(1e-2, 2);
        let rules = [Rule::Sgd { lr: 0.1, weight_decay: 0.01 }, Rule::Adam(&c)];
        for k in kernels() {
            for par in [&Serial as &dyn Par, &Two] {
                for rule in rules {
                    for keep in [false, true] {
                        let mut ga = vec![0.0; len];
                        let d = Dense::new(layer, &params);
                        d.backward(&k, par, &x, &dy, m, DenseMut::new(layer, &mut ga), None, false);
                        let mut pa = params.clone();
                        let (mut ma, mut va) = (vec![0.5f32; len], vec![0.25f32; len]);
                        rule.apply(k.sgd, k.adam, &mut pa, &ga, [&mut ma, &mut va]);
                        let mut b = params.clone();
                        let mut gb = vec![0.0; len];
                        let (mut mb, mut vb) = (vec![0.5f32; len], vec![0.25f32; len]);
                        let state: [&mut [f32]; 2] = match rule {
                            Rule::Adam(_) => [&mut mb, &mut vb],
                            Rule::Sgd { .. } => [&mut [], &mut []],
                        };
                        DenseMut::new(layer, &mut b).backward_update(
                            &k,
                            par,
                            &x,
                            &dy,
                            m,
                            DenseMut::new(layer, &mut gb),
                            None,
                            false,
                            Update::Fused(rule, state),
                            keep,
                        );
                        assert!(pa == b, "{}: parameters differ ({rule:?}, keep {keep})", k.name);
                        if let Rule::Adam(_) = rule {
                            assert!(ma == mb && va == vb, "{}: Adam state differs", k.name);
                        }
                        if keep {
                            assert!(ga == gb, "{}: kept gradients differ", k.name);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn fused_rules_match_backward_then_step() {
        fused_rules_match(17, 3, 5);
        fused_rules_match(33, 100, 4);
        fused_rules_match(16, 130, 1);
    }

    #[test]
    fn backward_update_matches_backward_then_update() {
        fused_matches(17, 3, 5);
        fused_matches(9, 70, 3);
        fused_matches(33, 100, 4);
        fused_matches(16, 130, 1);
    }
}
