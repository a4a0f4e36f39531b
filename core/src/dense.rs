//! A fully connected layer in PyTorch's layout: `weight[OUT][IN]`, `bias[OUT]`.
//!
//! Costs `4·OUT·(IN+1)` bytes; forward and backward allocate nothing and use
//! only the caller's activation buffers. The batch is a slice of rows; its
//! length (≤ the workspace's compile-time maximum) is the live batch size.

use crate::gemm::{bias_grad, Kernels, Rule};
use crate::par::{rows_per_task, Par};
use crate::rng::Rng;
use crate::{Flat, Zeroed};

#[repr(C)]
#[derive(Clone, Debug, PartialEq)]
pub struct Dense<const IN: usize, const OUT: usize> {
    pub weight: [[f32; IN]; OUT],
    pub bias: [f32; OUT],
}

// SAFETY: repr(C), only f32 arrays, no padding (everything has align 4).
unsafe impl<const IN: usize, const OUT: usize> Flat for Dense<IN, OUT> {}
unsafe impl<const IN: usize, const OUT: usize> Zeroed for Dense<IN, OUT> {}

impl<const IN: usize, const OUT: usize> Dense<IN, OUT> {
    pub const ZERO: Self = Dense { weight: [[0.0; IN]; OUT], bias: [0.0; OUT] };

    /// PyTorch's default `nn.Linear` init: weight and bias uniform in
    /// `±1/sqrt(IN)` (kaiming_uniform with a = sqrt(5) reduces to this).
    /// Weights are drawn row by row, then the bias.
    pub fn init(&mut self, rng: &mut Rng) {
        let bound = 1.0 / libm::sqrtf(IN as f32);
        for w in self.weight.as_flattened_mut() {
            *w = rng.uniform(-bound, bound);
        }
        for b in &mut self.bias {
            *b = rng.uniform(-bound, bound);
        }
    }

    /// `y = x·Wᵀ + b` (ReLU'd if `relu`) for the first `x.len()` rows.
    pub fn forward(&self, k: &Kernels, par: &dyn Par, x: &[[f32; IN]], y: &mut [[f32; OUT]], relu: bool) {
        let m = x.len();
        let (x, y) = (x.as_flattened(), y[..m].as_flattened_mut());
        let (w, b) = (self.weight.as_flattened(), &self.bias[..]);
        if par.width() > 1 {
            // Split the outputs: each thread streams (and keeps in its own
            // L2) only its share of the weights, packed once for all rows.
            // Every task sees all rows, so the kernel (chosen from the
            // batch and the layer's width) is the same for any split.
            let yp = SyncMut(y.as_mut_ptr());
            for_col_blocks(par, OUT, 16, &|j0, r| {
                let yp = &yp;
                // SAFETY: columns j0..j0 + r of y[m][OUT]; tasks own disjoint
                // column blocks and nothing else touches y during the call.
                unsafe {
                    (k.forward_cols)(x, &w[j0 * IN..][..r * IN], &b[j0..][..r], yp.0.add(j0), OUT, m, r, IN, relu)
                };
            });
            return;
        }
        (k.forward)(x, w, b, y, m, OUT, IN, relu);
    }

    /// Given `dy = ∂L/∂y` for `m = dy.len()` rows, writes this layer's
    /// gradients into `grad` and, if `dx` is given, `∂L/∂x` masked by the
    /// ReLU that produced `x` (pass `relu_input = true` when it did).
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        k: &Kernels,
        par: &dyn Par,
        x: &[[f32; IN]],
        dy: &[[f32; OUT]],
        grad: &mut Self,
        dx: Option<&mut [[f32; IN]]>,
        relu_input: bool,
    ) {
        let m = dy.len();
        let (xf, dyf) = (x[..m].as_flattened(), dy.as_flattened());
        // Weight gradient: split over output rows (tasks own whole rows of dw).
        let rows = rows_per_task(OUT, par.width(), 4);
        par.for_chunks(grad.weight.as_flattened_mut(), rows * IN, &|t, dw| {
            let r = dw.len() / IN;
            (k.weight_grad)(&dyf[t * rows..], OUT, xf, dw, m, r, IN);
        });
        bias_grad(dyf, &mut grad.bias, m, OUT);
        if let Some(dx) = dx {
            self.input_grad(k, par, xf, dyf, &mut dx[..m], relu_input);
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
    let mut ids = [0.0f32; MAX_TASKS];
    par.for_chunks(&mut ids[..tasks], 1, &|t, _| {
        let j0 = t * cols;
        f(j0, cols.min(n - j0));
    });
}

/// A pointer into a buffer whose tasks write disjoint parts (rows of the
/// weights in `backward_update`, column blocks of `y` in `forward`).
pub(crate) struct SyncMut(pub(crate) *mut f32);
// SAFETY: each task derives a disjoint range (see the users).
unsafe impl Sync for SyncMut {}

impl<const IN: usize, const OUT: usize> Dense<IN, OUT> {
    /// [`Self::backward`], then `update` on every parameter, fused: each
    /// block of weight gradient is applied to its weights right after it is
    /// computed, while both are in cache. The parameters end up as with
    /// `backward` followed by one `update` over all of them (bit for bit,
    /// given an elementwise `update`), and so do `dx` and `grad.bias`.
    /// `grad.weight` does too if `keep_weight_grad`; otherwise it is scratch
    /// (each task reuses its first block of rows, which stays in cache, and
    /// the rest is left as it was).
    #[allow(clippy::too_many_arguments)]
    pub fn backward_update(
        &mut self,
        k: &Kernels,
        par: &dyn Par,
        x: &[[f32; IN]],
        dy: &[[f32; OUT]],
        grad: &mut Self,
        dx: Option<&mut [[f32; IN]]>,
        relu_input: bool,
        update: Update<'_>,
        keep_weight_grad: bool,
    ) {
        let m = dy.len();
        let (xf, dyf) = (x[..m].as_flattened(), dy.as_flattened());
        // dx first: it needs the weights before they change.
        if let Some(dx) = dx {
            self.input_grad(k, par, xf, dyf, &mut dx[..m], relu_input);
        }
        bias_grad(dyf, &mut grad.bias, m, OUT);
        let (each, rule, state) = match update {
            Update::Fused(rule, state) => (None, Some(rule), state),
            Update::Each(f) => (Some(f), None, [&mut [][..], &mut []]),
        };
        let stateful = matches!(rule, Some(Rule::Adam(_)));
        let need = if stateful { OUT * (IN + 1) } else { 0 };
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
        let rows = rows_per_task(OUT, par.width(), 4);
        let w = SyncMut(self.weight.as_flattened_mut().as_mut_ptr());
        par.for_chunks(grad.weight.as_flattened_mut(), rows * IN, &|t, dw| {
            let w = &w;
            let r0 = t * rows;
            let rows = dw.len() / IN;
            for b in 0..rows.div_ceil(UPDATE_ROWS) {
                let (j0, r) = (r0 + b * UPDATE_ROWS, UPDATE_ROWS.min(rows - b * UPDATE_ROWS));
                let at = if keep_weight_grad { (j0 - r0) * IN } else { 0 };
                let dwb = &mut dw[at..][..r * IN];
                // SAFETY: rows j0..j0 + r of the weights (and of the state
                // when stateful), inside the layer; tasks own disjoint row
                // ranges (as of dw), and nothing else reads them during this
                // call.
                let wb = unsafe { core::slice::from_raw_parts_mut(w.0.add(j0 * IN), r * IN) };
                match rule {
                    Some(rule) if !keep_weight_grad => {
                        let st = state_at(j0 * IN, r * IN);
                        (k.weight_grad_step)(&dyf[j0..], OUT, xf, dwb, wb, st, rule, m, r, IN);
                    }
                    _ => {
                        (k.weight_grad)(&dyf[j0..], OUT, xf, dwb, m, r, IN);
                        step_at(j0 * IN, wb, dwb);
                    }
                }
            }
        });
        step_at(OUT * IN, &mut self.bias, &grad.bias);
    }
    /// `dx = dy·W`, masked by the ReLU that produced `x` when `relu_input`;
    /// split over rows of the batch.
    fn input_grad(&self, k: &Kernels, par: &dyn Par, xf: &[f32], dyf: &[f32], dx: &mut [[f32; IN]], relu_input: bool) {
        let m = dx.len();
        if let Some(cols_fn) = k.input_grad_cols.filter(|_| par.width() > 1 && m > 0) {
            // Split the columns: each thread packs and streams only its
            // share of the weights' columns, for all rows (by rows, each
            // would pack all of the weights).
            let w = self.weight.as_flattened();
            let dxp = SyncMut(dx.as_flattened_mut().as_mut_ptr());
            let dyf = &dyf[..m * OUT];
            for_col_blocks(par, IN, 16, &|p0, r| {
                let dxp = &dxp;
                let mask = relu_input.then(|| &xf[p0..m * IN]);
                // SAFETY: columns p0..p0 + r of dx[m][IN]; tasks own disjoint
                // column blocks and nothing else touches dx during the call.
                unsafe { cols_fn(dyf, &w[p0..], dxp.0.add(p0), IN, mask, m, OUT, r) };
            });
            return;
        }
        let rows = rows_per_task(m, par.width(), 4);
        let w = self.weight.as_flattened();
        par.for_chunks(dx.as_flattened_mut(), rows * IN, &|t, dxc| {
            let r = dxc.len() / IN;
            let mask = relu_input.then(|| &xf[t * rows * IN..][..r * IN]);
            (k.input_grad)(&dyf[t * rows * OUT..][..r * OUT], w, dxc, mask, r, OUT, IN);
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
    use super::*;
    use crate::par::Serial;

    /// Splits like a 2-thread pool but runs in order.
    struct Two;
    impl Par for Two {
        fn width(&self) -> usize {
            2
        }
        fn for_chunks(&self, out: &mut [f32], chunk_len: usize, f: &(dyn Fn(usize, &mut [f32]) + Sync)) {
            Serial.for_chunks(out, chunk_len, f)
        }
    }

    fn kernels() -> [Kernels; 2] {
        #[cfg(target_arch = "x86_64")]
        {
            extern crate std;
            if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vl") {
                // SAFETY: features checked (AVX-512F/VL imply AVX2 and FMA on
                // every CPU that has them).
                return [Kernels::PORTABLE, unsafe { crate::gemm::x86::avx512() }];
            }
        }
        [Kernels::PORTABLE, Kernels::NAIVE]
    }

    fn fused_matches<const IN: usize, const OUT: usize>(m: usize) {
        let mut rng = Rng::new(7);
        let mut layer = Dense::<IN, OUT>::ZERO;
        layer.init(&mut rng);
        let x: [[f32; IN]; 5] = core::array::from_fn(|_| core::array::from_fn(|_| rng.uniform(-1.0, 1.0)));
        let dy: [[f32; OUT]; 5] = core::array::from_fn(|_| core::array::from_fn(|_| rng.uniform(-1.0, 1.0)));
        // A stateful, nonlinear elementwise update (like momentum SGD).
        let update = |_: usize, p: &mut [f32], g: &[f32]| {
            for (p, &g) in p.iter_mut().zip(g) {
                *p -= 0.1 * g + 0.01 * *p * *p;
            }
        };
        for k in kernels() {
            for par in [&Serial as &dyn Par, &Two] {
                let a = layer.clone();
                let (mut ga, mut dxa) = (Dense::<IN, OUT>::ZERO, [[0.0; IN]; 5]);
                a.backward(&k, par, &x[..m], &dy[..m], &mut ga, Some(&mut dxa[..m]), true);
                let len = a.flat().len();
                let mut pa = a.flat().to_owned_array();
                update(0, &mut pa[..len], ga.flat());
                let mut b = layer.clone();
                let (mut gb, mut dxb) = (Dense::<IN, OUT>::ZERO, [[0.0; IN]; 5]);
                b.backward_update(
                    &k,
                    par,
                    &x[..m],
                    &dy[..m],
                    &mut gb,
                    Some(&mut dxb[..m]),
                    true,
                    Update::Each(&update),
                    true,
                );
                assert!(ga == gb, "{}: gradients differ", k.name);
                assert!(dxa == dxb, "{}: dx differs", k.name);
                assert!(pa[..len] == *b.flat(), "{}: parameters differ", k.name);
                let mut c = layer.clone();
                let (mut gc, mut dxc) = (Dense::<IN, OUT>::ZERO, [[0.0; IN]; 5]);
                c.backward_update(
                    &k,
                    par,
                    &x[..m],
                    &dy[..m],
                    &mut gc,
                    Some(&mut dxc[..m]),
                    true,
                    Update::Each(&update),
                    false,
                );
                assert!(ga.bias == gc.bias, "{}: bias gradients differ", k.name);
                assert!(dxa == dxc, "{}: dx differs", k.name);
                assert!(pa[..len] == *c.flat(), "{}: parameters differ (scratch)", k.name);
            }
        }
    }

    /// The kernel-fused SGD and Adam steps give the parameters and state of
    /// `backward` followed by the optimizer over all parameters, bit for bit.
    fn fused_rules_match<const IN: usize, const OUT: usize>(m: usize) {
        let mut rng = Rng::new(8);
        let mut layer = Dense::<IN, OUT>::ZERO;
        layer.init(&mut rng);
        let x: [[f32; IN]; 5] = core::array::from_fn(|_| core::array::from_fn(|_| rng.uniform(-1.0, 1.0)));
        let dy: [[f32; OUT]; 5] = core::array::from_fn(|_| core::array::from_fn(|_| rng.uniform(-1.0, 1.0)));
        let len = OUT * (IN + 1);
        let adam = crate::optim::Adam { weight_decay: 0.01, ..Default::default() };
        let c = adam.coefs(1e-2, 2);
        let rules = [Rule::Sgd { lr: 0.1, weight_decay: 0.01 }, Rule::Adam(&c)];
        for k in kernels() {
            for par in [&Serial as &dyn Par, &Two] {
                for rule in rules {
                    for keep in [false, true] {
                        let a = layer.clone();
                        let mut ga = Dense::<IN, OUT>::ZERO;
                        a.backward(&k, par, &x[..m], &dy[..m], &mut ga, None, false);
                        let mut pa = a.flat().to_owned_array();
                        let (mut ma, mut va) = ([0.5f32; 4096], [0.25f32; 4096]);
                        rule.apply(k.sgd, k.adam, &mut pa[..len], ga.flat(), [&mut ma[..len], &mut va[..len]]);
                        let mut b = layer.clone();
                        let mut gb = Dense::<IN, OUT>::ZERO;
                        let (mut mb, mut vb) = ([0.5f32; 4096], [0.25f32; 4096]);
                        let state: [&mut [f32]; 2] = match rule {
                            Rule::Adam(_) => [&mut mb[..len], &mut vb[..len]],
                            Rule::Sgd { .. } => [&mut [], &mut []],
                        };
                        b.backward_update(
                            &k,
                            par,
                            &x[..m],
                            &dy[..m],
                            &mut gb,
                            None,
                            false,
                            Update::Fused(rule, state),
                            keep,
                        );
                        assert!(pa[..len] == *b.flat(), "{}: parameters differ ({rule:?}, keep {keep})", k.name);
                        if let Rule::Adam(_) = rule {
                            assert!(ma[..len] == mb[..len] && va[..len] == vb[..len], "{}: Adam state differs", k.name);
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
        fused_rules_match::<17, 3>(5);
        fused_rules_match::<33, 100>(4);
        fused_rules_match::<16, 130>(1);
    }

    trait ToArray {
        fn to_owned_array(&self) -> [f32; 4096];
    }
    impl ToArray for [f32] {
        fn to_owned_array(&self) -> [f32; 4096] {
            let mut a = [0.0; 4096];
            a[..self.len()].copy_from_slice(self);
            a
        }
    }

    #[test]
    fn backward_update_matches_backward_then_update() {
        fused_matches::<17, 3>(5);
        fused_matches::<9, 70>(3);
        fused_matches::<33, 100>(4);
        fused_matches::<16, 130>(1);
    }
}
