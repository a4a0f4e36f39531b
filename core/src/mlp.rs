//! An MLP of any [`Spec`]: one flat parameter buffer, a workspace of
//! activations, and forward, backward and the fused training step looping
//! over the layers.
//!
//! Buffers belong to the caller and are anything that derefs to `[f32]`
//! (`S: AsRef<[f32]>`, as smoltcp takes packet storage): a `static` array on
//! a microcontroller, a `Vec` on the host. Their lengths are `const fn`s of
//! the spec ([`Spec::params`], [`Workspace::len`]).
//!
//! | buffer | length | holds |
//! |---|---|---|
//! | [`Mlp`] parameters | `spec.params()` | per layer `weight[out][in]`, then `bias[out]` |
//! | gradients | `spec.params()` | the same layout |
//! | optimizer state | `optimizer.buffers() · spec.params()` | momentum, `exp_avg`, … one after another |
//! | [`Workspace`] | `spec.activations(batch)` | inputs, each layer's outputs, their gradients |

use crate::dense::{Dense, DenseMut, Update, UpdateFn};
use crate::format::{read_tensors, FormatError};
use crate::gemm::{Kernels, Rule};
use crate::loss::{self, BadTarget};
use crate::optim::Optimizer;
use crate::par::Par;
use crate::rng::Rng;
use crate::spec::{tensor_names, Activation, Spec, MAX_LAYERS};

/// A buffer is not as long as the spec needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SizeError {
    pub what: &'static str,
    pub expected: usize,
    pub found: usize,
}

impl core::fmt::Display for SizeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} holds {} floats, the model needs {}", self.what, self.found, self.expected)
    }
}

fn check_len(what: &'static str, found: usize, expected: usize) -> Result<(), SizeError> {
    if found == expected {
        Ok(())
    } else {
        Err(SizeError { what, expected, found })
    }
}

/// One named tensor of a model, with PyTorch's shape (`[out, in]` or `[out]`).
#[derive(Debug)]
pub struct TensorRef<'a> {
    pub name: &'static str,
    shape: [usize; 2],
    rank: usize,
    pub data: &'a [f32],
}

impl TensorRef<'_> {
    pub fn shape(&self) -> &[usize] {
        &self.shape[..self.rank]
    }
}

/// A model: its spec and its parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Mlp<S> {
    spec: Spec,
    params: S,
}

impl<S: AsRef<[f32]>> Mlp<S> {
    /// The model `spec` over `params` (`spec.params()` floats).
    pub fn new(spec: Spec, params: S) -> Result<Self, SizeError> {
        check_len("the parameter buffer", params.as_ref().len(), spec.params())?;
        Ok(Mlp { spec, params })
    }

    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// All parameters, layer after layer.
    pub fn params(&self) -> &[f32] {
        self.params.as_ref()
    }

    pub fn into_params(self) -> S {
        self.params
    }

    /// Layer `i`'s weight and bias.
    pub fn layer(&self, i: usize) -> Dense<'_> {
        layer_of(&self.spec, self.params.as_ref(), i)
    }

    /// Tensors in state-dict order (weight, bias of each layer).
    pub fn tensors(&self) -> impl ExactSizeIterator<Item = TensorRef<'_>> + '_ {
        (0..2 * self.spec.depth()).map(move |t| {
            let l = self.layer(t / 2);
            let [wn, bn] = tensor_names(t / 2);
            if t % 2 == 0 {
                TensorRef { name: wn, shape: [l.outputs, l.inputs], rank: 2, data: l.weight }
            } else {
                TensorRef { name: bn, shape: [l.outputs, 0], rank: 1, data: l.bias }
            }
        })
    }

    /// Logits for the first `n` rows of the workspace's input.
    pub fn forward<W: AsMut<[f32]>>(&self, k: &Kernels, par: &dyn Par, ws: &mut Workspace<W>, n: usize) {
        ws.check(&self.spec, n);
        for i in 0..self.spec.depth() {
            let (x, y) = ws.layer_io(i, n);
            let relu = self.spec.layer(i).activation == Activation::Relu;
            self.layer(i).forward(k, par, x, y, n, relu);
        }
    }

    /// Backpropagates the workspace's logit gradients (rows `..n`) into
    /// `grad` (overwritten). Needs the activations of the matching
    /// [`Self::forward`].
    pub fn backward<W: AsMut<[f32]>>(
        &self,
        k: &Kernels,
        par: &dyn Par,
        ws: &mut Workspace<W>,
        grad: &mut [f32],
        n: usize,
    ) {
        ws.check(&self.spec, n);
        assert_eq!(grad.len(), self.spec.params(), "backward: gradient buffer of the wrong length");
        for i in (0..self.spec.depth()).rev() {
            let (x, dy, dx) = ws.layer_grads(i, n);
            let g = layer_mut_of(&self.spec, grad, i);
            // The input needs no gradient: skip layer 0's dx (a third of its cost).
            self.layer(i).backward(k, par, x, dy, n, g, dx, relu_before(&self.spec, i));
        }
    }

    /// Forward, cross-entropy and backward for one batch of `labels.len()`
    /// rows already in the workspace. Returns the mean loss; `grad` is
    /// overwritten.
    pub fn loss_and_grad<W: AsMut<[f32]>>(
        &self,
        k: &Kernels,
        par: &dyn Par,
        ws: &mut Workspace<W>,
        labels: &[u8],
        grad: &mut [f32],
    ) -> Result<f32, BadTarget> {
        let n = labels.len();
        self.forward(k, par, ws, n);
        let l = ws.loss(&self.spec, labels)?;
        self.backward(k, par, ws, grad, n);
        Ok(l)
    }
}

/// Whether layer `i`'s input came out of a ReLU (its gradient is masked).
fn relu_before(spec: &Spec, i: usize) -> bool {
    i > 0 && spec.layer(i - 1).activation == Activation::Relu
}

fn layer_of<'a>(spec: &Spec, params: &'a [f32], i: usize) -> Dense<'a> {
    let l = spec.layer(i);
    Dense::new(l, &params[spec.param_offset(i)..][..l.params()])
}

fn layer_mut_of<'a>(spec: &Spec, params: &'a mut [f32], i: usize) -> DenseMut<'a> {
    let l = spec.layer(i);
    DenseMut::new(l, &mut params[spec.param_offset(i)..][..l.params()])
}

/// The optimizer state of a training run: `buffers` parameter-sized
/// buffers, one after another, shared with the pool's tasks by pointer.
struct StatePtr {
    ptr: *mut f32,
    buffers: usize,
    params: usize,
}
// SAFETY: tasks touch disjoint ranges (see `Mlp::train_step`).
unsafe impl Sync for StatePtr {}

impl<S: AsRef<[f32]> + AsMut<[f32]>> Mlp<S> {
    pub fn params_mut(&mut self) -> &mut [f32] {
        self.params.as_mut()
    }

    pub fn layer_mut(&mut self, i: usize) -> DenseMut<'_> {
        layer_mut_of(&self.spec, self.params.as_mut(), i)
    }

    /// PyTorch-default init, layer by layer, from `seed`.
    pub fn init(&mut self, seed: u64) {
        let mut rng = Rng::new(seed);
        for i in 0..self.spec.depth() {
            self.layer_mut(i).init(&mut rng);
        }
    }

    /// Reads a state dict written as [`crate::format::tensors`] (names and
    /// shapes must match this model) into the parameters. Returns the bytes
    /// after it.
    pub fn read_tensors<'p>(&mut self, bytes: &'p [u8]) -> Result<&'p [u8], FormatError> {
        read_state(&self.spec, self.params.as_mut(), bytes)
    }

    /// One training step on the `labels.len()` rows already in the
    /// workspace: forward, cross-entropy, backward and one `opt` update with
    /// learning rate `lr` (`step` is the update's 1-based number). Returns
    /// the mean loss.
    ///
    /// The same parameters, bit for bit, as [`Self::loss_and_grad`] followed
    /// by `opt.step` over all parameters, but fused: each block of a layer's
    /// weight gradient is applied to its weights as soon as it is computed,
    /// while both are in cache, instead of one more pass over all weights
    /// and gradients afterwards. Plain SGD and Adam go further: the
    /// weight-gradient kernel applies them to each tile still in registers
    /// ([`Update::Fused`]). So no whole gradient is ever stored: `grad` is
    /// scratch, at least [`Spec::train_scratch`] floats for one row per
    /// block (a microcontroller's choice), or `spec.params()` on a host,
    /// where blocks of up to 64 rows per thread keep the kernels fast.
    /// `state` holds `opt.buffers()` buffers of `spec.params()` floats, one
    /// after another.
    #[allow(clippy::too_many_arguments)]
    pub fn train_step<W: AsMut<[f32]>>(
        &mut self,
        k: &Kernels,
        par: &dyn Par,
        ws: &mut Workspace<W>,
        labels: &[u8],
        grad: &mut [f32],
        state: &mut [f32],
        opt: &Optimizer,
        lr: f32,
        step: u64,
    ) -> Result<f32, BadTarget> {
        let (spec, n) = (self.spec, labels.len());
        let p = spec.params();
        let biases = spec.outputs_sum();
        assert!(grad.len() >= spec.train_scratch(par.width()), "train_step: gradient scratch too short");
        assert_eq!(state.len(), opt.buffers() * p, "train_step: optimizer state of the wrong length");
        // The bias gradients, layer after layer, then the weight-gradient
        // scratch that every layer reuses in turn.
        let (gbias, gweight) = grad.split_at_mut(biases);
        self.forward(k, par, ws, n);
        let loss = ws.loss(&spec, labels)?;
        let adam = match opt {
            Optimizer::Adam(a) => Some(a.coefs(lr, step)),
            _ => None,
        };
        // Plain SGD and Adam run inside the weight-gradient kernel.
        let rule = match (opt, &adam) {
            (Optimizer::Sgd(o), _) if o.momentum == 0.0 => Some(Rule::Sgd { lr, weight_decay: o.weight_decay }),
            (_, Some(c)) => Some(Rule::Adam(c)),
            _ => None,
        };
        let shared = StatePtr { ptr: state.as_mut_ptr(), buffers: opt.buffers(), params: p };
        // The update is elementwise, so each block of a layer's parameters
        // is updated (with the same range of gradients and state) as soon as
        // its gradient is computed, on whichever thread computed it.
        let update = |base: usize| {
            let shared = &shared;
            move |off: usize, params: &mut [f32], grads: &[f32]| {
                let len = params.len();
                let mut slots: [&mut [f32]; 3] = [&mut [], &mut [], &mut []];
                for (b, s) in slots.iter_mut().enumerate().take(shared.buffers) {
                    // SAFETY: `backward_update` hands out disjoint parameter
                    // ranges [off, off + len) of the layer, so the state
                    // ranges [base + off, ...) of different calls are
                    // disjoint, inside buffer b (checked above), and `state`
                    // is borrowed mutably for the whole step.
                    *s =
                        unsafe { core::slice::from_raw_parts_mut(shared.ptr.add(b * shared.params + base + off), len) };
                }
                opt.step(lr, step, params, grads, &mut slots[..shared.buffers]);
            }
        };
        for i in (0..spec.depth()).rev() {
            let (off, len) = (spec.param_offset(i), spec.layer(i).params());
            let each = update(off);
            let upd = match rule {
                Some(r @ Rule::Adam(_)) => {
                    // SAFETY: layer i's range of buffers 0 (m) and 1 (v):
                    // disjoint, inside `state`, and no other reference to
                    // them lives during this call (`each` is unused).
                    let (m, v) = unsafe {
                        (
                            core::slice::from_raw_parts_mut(shared.ptr.add(off), len),
                            core::slice::from_raw_parts_mut(shared.ptr.add(p + off), len),
                        )
                    };
                    Update::Fused(r, [m, v])
                }
                Some(r) => Update::Fused(r, [&mut [], &mut []]),
                None => Update::Each(&each as UpdateFn),
            };
            let (x, dy, dx) = ws.layer_grads(i, n);
            let l = spec.layer(i);
            let bias_at = spec.outputs_before(i);
            let g = DenseMut {
                inputs: l.inputs,
                outputs: l.outputs,
                weight: &mut gweight[..],
                bias: &mut gbias[bias_at..][..l.outputs],
            };
            self.layer_mut(i).backward_update(k, par, x, dy, n, g, dx, relu_before(&spec, i), upd, false);
        }
        Ok(loss)
    }
}

/// Reads a state dict for `spec` into `params` (see [`Mlp::read_tensors`]).
fn read_state<'p>(spec: &Spec, params: &mut [f32], bytes: &'p [u8]) -> Result<&'p [u8], FormatError> {
    let mut shapes = [[0usize; 2]; 2 * MAX_LAYERS];
    for (i, l) in spec.layers().enumerate() {
        shapes[2 * i] = [l.outputs, l.inputs];
        shapes[2 * i + 1] = [l.outputs, 0];
    }
    let mut dest: [(&'static str, &[usize], &mut [f32]); 2 * MAX_LAYERS] =
        core::array::from_fn(|_| ("", &[][..], &mut [][..]));
    let mut rest = params;
    for (i, l) in spec.layers().enumerate() {
        let [wn, bn] = tensor_names(i);
        let (w, r) = rest.split_at_mut(l.outputs * l.inputs);
        let (b, r) = r.split_at_mut(l.outputs);
        rest = r;
        dest[2 * i] = (wn, &shapes[2 * i][..], w);
        dest[2 * i + 1] = (bn, &shapes[2 * i + 1][..1], b);
    }
    read_tensors(bytes, &mut dest[..2 * spec.depth()])
}

/// Activations for a batch of at most `batch` rows, and their gradients:
/// the inputs, then every layer's outputs (the last are the logits), then
/// the gradients of every layer's outputs.
#[derive(Clone, Debug)]
pub struct Workspace<S> {
    spec: Spec,
    batch: usize,
    buf: S,
}

impl<S: AsMut<[f32]>> Workspace<S> {
    /// Floats a workspace for `spec` and batches of up to `batch` rows needs.
    pub const fn len(spec: &Spec, batch: usize) -> usize {
        spec.activations(batch)
    }

    /// A workspace for `spec` over `buf` ([`Self::len`] floats).
    pub fn new(spec: Spec, batch: usize, mut buf: S) -> Result<Self, SizeError> {
        check_len("the workspace", buf.as_mut().len(), Self::len(&spec, batch))?;
        Ok(Workspace { spec, batch, buf })
    }

    /// Most rows a batch may have.
    pub fn batch(&self) -> usize {
        self.batch
    }

    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    pub(crate) fn check(&self, spec: &Spec, n: usize) {
        assert!(*spec == self.spec, "workspace made for {}, used with {}", self.spec, spec);
        assert!(n <= self.batch, "batch of {n} rows, the workspace holds {}", self.batch);
    }

    /// The first `n` rows of the input, to fill.
    pub fn input_mut(&mut self, n: usize) -> &mut [f32] {
        let len = n * self.spec.inputs();
        &mut self.buf.as_mut()[..len]
    }

    /// The first `n` rows of the output of layer `i` (`depth - 1`: logits).
    pub fn output(&mut self, i: usize, n: usize) -> &[f32] {
        let at = self.spec.act_offset(i + 1, self.batch);
        let len = n * self.spec.layer(i).outputs;
        &self.buf.as_mut()[at..][..len]
    }

    /// The first `n` rows of logits.
    pub fn logits(&mut self, n: usize) -> &[f32] {
        self.output(self.spec.depth() - 1, n)
    }

    /// Layer `i`'s input (rows `..n`) and output (to write), for loops of
    /// one's own over the layers.
    pub fn layer_io(&mut self, i: usize, n: usize) -> (&[f32], &mut [f32]) {
        let (s, b) = (self.spec, self.batch);
        let l = s.layer(i);
        let (lo, hi) = self.buf.as_mut().split_at_mut(s.act_offset(i + 1, b));
        (&lo[s.act_offset(i, b)..][..n * l.inputs], &mut hi[..n * l.outputs])
    }

    /// Layer `i`'s input, the gradient of its output, and (but for layer 0)
    /// the gradient of its input, to write.
    pub fn layer_grads(&mut self, i: usize, n: usize) -> (&[f32], &[f32], Option<&mut [f32]>) {
        let (s, b) = (self.spec, self.batch);
        let l = s.layer(i);
        let g1 = s.grad_offset(1, b);
        let (acts, grads) = self.buf.as_mut().split_at_mut(g1);
        let x = &acts[s.act_offset(i, b)..][..n * l.inputs];
        let (lo, hi) = grads.split_at_mut(s.grad_offset(i + 1, b) - g1);
        let dy = &hi[..n * l.outputs];
        let dx = (i > 0).then(|| &mut lo[s.grad_offset(i, b) - g1..][..n * l.inputs]);
        (x, dy, dx)
    }

    /// The first `n` rows of logits and of their gradients (to write), for
    /// a loss of one's own before [`Mlp::backward`].
    pub fn logits_and_grad(&mut self, n: usize) -> (&[f32], &mut [f32]) {
        let (s, b) = (self.spec, self.batch);
        let len = n * s.outputs();
        let (lo, hi) = self.buf.as_mut().split_at_mut(s.grad_offset(s.depth(), b));
        (&lo[s.act_offset(s.depth(), b)..][..len], &mut hi[..len])
    }

    /// Cross-entropy of the logits (rows `..labels.len()`); writes the logit
    /// gradients. Returns the mean loss.
    pub fn loss(&mut self, spec: &Spec, labels: &[u8]) -> Result<f32, BadTarget> {
        let n = labels.len();
        self.check(spec, n);
        let classes = self.spec.outputs();
        let (logits, grad) = self.logits_and_grad(n);
        loss::cross_entropy(logits, classes, labels, grad)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    use super::*;
    use crate::par::Serial;

    type VecMlp = Mlp<Vec<f32>>;

    fn model(dims: &[usize], seed: u64) -> VecMlp {
        let spec = Spec::mlp(dims);
        let mut m = Mlp::new(spec, vec![0.0; spec.params()]).unwrap();
        m.init(seed);
        m
    }

    fn workspace(spec: Spec, batch: usize) -> Workspace<Vec<f32>> {
        Workspace::new(spec, batch, vec![0.0; Workspace::<Vec<f32>>::len(&spec, batch)]).unwrap()
    }

    /// The two kinds of loss: cross-entropy on class labels, and MSE
    /// against one-hot targets (a regression-style loss plugged in through
    /// [`Workspace::logits_and_grad`]).
    #[derive(Clone, Copy, Debug)]
    enum Loss {
        CrossEntropy,
        Mse,
    }

    /// Forward and `loss`; leaves the logit gradients in the workspace.
    fn forward_loss(m: &VecMlp, k: &Kernels, ws: &mut Workspace<Vec<f32>>, labels: &[u8], loss: Loss) -> f64 {
        m.forward(k, &Serial, ws, labels.len());
        match loss {
            Loss::CrossEntropy => ws.loss(m.spec(), labels).unwrap() as f64,
            Loss::Mse => {
                let c = m.spec().outputs();
                let target: Vec<f32> =
                    labels.iter().flat_map(|&l| (0..c).map(move |j| (j == l as usize) as u8 as f32)).collect();
                let (z, g) = ws.logits_and_grad(labels.len());
                loss::mse(z, &target, g) as f64
            }
        }
    }

    /// Central differences on every parameter, for models of depth 1, 2, 3
    /// and 5 (0, 1, 2 and 4 hidden layers), with both kinds of loss.
    #[test]
    fn gradient_matches_central_differences_at_any_depth() {
        for (dims, loss) in [&[5usize, 3][..], &[5, 7, 3], &[5, 7, 6, 3], &[4, 6, 5, 7, 4, 3]]
            .into_iter()
            .flat_map(|d| [(d, Loss::CrossEntropy), (d, Loss::Mse)])
        {
            let m = model(dims, 11);
            let mut ws = workspace(*m.spec(), 4);
            let mut rng = Rng::new(5);
            for v in ws.input_mut(4) {
                *v = rng.uniform(-1.0, 1.0);
            }
            let labels = [0u8, 2, 1]; // a short batch: 3 of 4 rows
            for kern in [Kernels::NAIVE, Kernels::PORTABLE] {
                let mut grad = vec![0.0; m.spec().params()];
                forward_loss(&m, &kern, &mut ws, &labels, loss);
                m.backward(&kern, &Serial, &mut ws, &mut grad, labels.len());
                let h = 1e-3f32;
                for (i, &ana) in grad.iter().enumerate() {
                    let mut mp = m.clone();
                    mp.params_mut()[i] += h;
                    let lp = forward_loss(&mp, &Kernels::NAIVE, &mut ws, &labels, loss);
                    mp.params_mut()[i] -= 2.0 * h;
                    let lm = forward_loss(&mp, &Kernels::NAIVE, &mut ws, &labels, loss);
                    let num = (lp - lm) / (2.0 * h as f64);
                    let ana = ana as f64;
                    // Central differences have O(h²) error plus f32 rounding
                    // of the loss (~1e-7/h); ReLU kinks are avoided by the
                    // random init with overwhelming probability.
                    assert!(
                        (num - ana).abs() < 2e-3 + 2e-2 * ana.abs(),
                        "{dims:?} {loss:?} {}: param {i}: numeric {num} vs analytic {ana}",
                        kern.name
                    );
                }
            }
        }
    }

    /// The fused step, with the least gradient scratch, equals backward
    /// followed by one optimizer step over all parameters, bit for bit, for
    /// every optimizer and depth.
    #[test]
    fn train_step_equals_backward_then_step() {
        use crate::optim::{Adam, RmsProp, Sgd};
        let opts = [
            Optimizer::Sgd(Sgd { lr: 0.1, ..Sgd::default() }),
            Optimizer::Sgd(Sgd { lr: 0.1, momentum: 0.9, weight_decay: 0.01, ..Sgd::default() }),
            Optimizer::Adam(Adam::default()),
            Optimizer::RmsProp(RmsProp::default()),
        ];
        for dims in [&[6usize, 4][..], &[6, 9, 4], &[6, 9, 7, 5, 4]] {
            for opt in opts {
                let mut a = model(dims, 3);
                let mut b = a.clone();
                let spec = *a.spec();
                let (mut wa, mut wb) = (workspace(spec, 5), workspace(spec, 5));
                let p = spec.params();
                let (mut sa, mut sb) = (vec![0.0; opt.buffers() * p], vec![0.0; opt.buffers() * p]);
                let mut rng = Rng::new(9);
                for step in 1..=3u64 {
                    let x: Vec<f32> = (0..5 * 6).map(|_| rng.uniform(0.0, 1.0)).collect();
                    let labels = [1u8, 3, 0, 2, 1];
                    wa.input_mut(5).copy_from_slice(&x);
                    wb.input_mut(5).copy_from_slice(&x);
                    let mut g = vec![0.0; p];
                    let la = a.loss_and_grad(&Kernels::PORTABLE, &Serial, &mut wa, &labels, &mut g).unwrap();
                    let mut slots: Vec<&mut [f32]> = sa.chunks_mut(p).collect();
                    opt.step(0.01, step, a.params_mut(), &g, &mut slots);
                    // The least scratch: one row per block, as a board
                    // would give it.
                    let mut gb = vec![0.0; spec.train_scratch(1)];
                    let lb = b
                        .train_step(&Kernels::PORTABLE, &Serial, &mut wb, &labels, &mut gb, &mut sb, &opt, 0.01, step)
                        .unwrap();
                    assert_eq!(la, lb);
                    assert!(a.params() == b.params(), "{dims:?} {opt:?}: step {step} differs");
                    assert!(sa == sb, "{dims:?} {opt:?}: optimizer state differs");
                }
            }
        }
    }

    #[test]
    fn init_matches_pytorch_bounds_and_is_deterministic() {
        let (a, b) = (model(&[5, 7, 6, 3], 3), model(&[5, 7, 6, 3], 3));
        assert_eq!(a, b);
        let bound = 1.0 / libm::sqrtf(5.0);
        assert!(a.layer(0).weight.iter().all(|w| w.abs() <= bound));
        assert!(a.layer(0).weight.iter().any(|w| w.abs() > bound * 0.9));
        let bound3 = 1.0 / libm::sqrtf(6.0);
        assert!(a.layer(2).bias.iter().all(|w| w.abs() <= bound3));
    }

    #[test]
    fn tensors_cover_every_parameter_once_and_read_back() {
        let m = model(&[5, 7, 6, 3], 1);
        let ts: Vec<TensorRef> = m.tensors().collect();
        assert_eq!(ts.iter().map(|t| t.data.len()).sum::<usize>(), m.spec().params());
        assert_eq!(ts[2].name, "linear_relu_stack.2.weight");
        assert_eq!(ts[2].shape(), &[6, 7]);
        assert_eq!(ts[5].shape(), &[3]);
        let wire: Vec<crate::format::Tensor> =
            ts.iter().map(|t| crate::format::Tensor { name: t.name, shape: t.shape(), data: t.data }).collect();
        let mut buf = vec![0u8; 4096];
        let n = postcard::to_slice(&wire[..], &mut buf).unwrap().len();
        let mut back = model(&[5, 7, 6, 3], 2);
        assert!(back.read_tensors(&buf[..n]).unwrap().is_empty());
        assert_eq!(back, m);
        let mut other = model(&[5, 7, 3], 2);
        assert!(other.read_tensors(&buf[..n]).is_err());
    }

    #[test]
    fn wrong_buffer_sizes_are_errors() {
        let spec = Spec::mlp(&[5, 3]);
        assert_eq!(
            Mlp::new(spec, vec![0.0; 17]).unwrap_err(),
            SizeError { what: "the parameter buffer", expected: 18, found: 17 }
        );
        assert!(Workspace::new(spec, 2, vec![0.0; 3]).is_err());
    }
}
