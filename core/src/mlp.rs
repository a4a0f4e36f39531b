//! The tutorial's model: `Linear → ReLU → Linear → ReLU → Linear` (logits).
//!
//! [`Mlp`] holds parameters (and, as a second copy, gradients or optimizer
//! state: they have the same shape). [`Workspace`] holds one batch of
//! activations and their gradients, sized by the compile-time batch `B`.
//! Forward and backward sit side by side and touch only these buffers.

use crate::dense::Dense;
use crate::gemm::Kernels;
use crate::loss::{self, BadTarget};
use crate::par::Par;
use crate::rng::Rng;
use crate::{Flat, Zeroed};

#[repr(C)]
#[derive(Clone, Debug, PartialEq)]
pub struct Mlp<const IN: usize, const H1: usize, const H2: usize, const OUT: usize> {
    pub l1: Dense<IN, H1>,
    pub l2: Dense<H1, H2>,
    pub l3: Dense<H2, OUT>,
}

/// PyTorch tutorial's 784-512-512-10: 669,706 parameters, 2.68 MB of f32.
pub type SeedMlp = Mlp<784, 512, 512, 10>;

// SAFETY: repr(C) of Dense layers, which are f32-only without padding.
unsafe impl<const IN: usize, const H1: usize, const H2: usize, const OUT: usize> Flat for Mlp<IN, H1, H2, OUT> {}
unsafe impl<const IN: usize, const H1: usize, const H2: usize, const OUT: usize> Zeroed for Mlp<IN, H1, H2, OUT> {}

/// State-dict names, in PyTorch's order (`nn.Sequential` indices 0, 2, 4).
pub const TENSOR_NAMES: [&str; 6] = [
    "linear_relu_stack.0.weight",
    "linear_relu_stack.0.bias",
    "linear_relu_stack.2.weight",
    "linear_relu_stack.2.bias",
    "linear_relu_stack.4.weight",
    "linear_relu_stack.4.bias",
];

/// One named tensor of a model: PyTorch shape (`[out, in]` or `[out]`).
#[derive(Debug)]
pub struct TensorRef<'a> {
    pub name: &'static str,
    pub shape: &'static [usize],
    pub data: &'a [f32],
}

impl<const IN: usize, const H1: usize, const H2: usize, const OUT: usize> Mlp<IN, H1, H2, OUT> {
    pub const ZERO: Self = Mlp { l1: Dense::ZERO, l2: Dense::ZERO, l3: Dense::ZERO };
    pub const DIMS: [usize; 4] = [IN, H1, H2, OUT];
    pub const PARAMS: usize = H1 * (IN + 1) + H2 * (H1 + 1) + OUT * (H2 + 1);
    const SHAPES: [&'static [usize]; 6] = [&[H1, IN], &[H1], &[H2, H1], &[H2], &[OUT, H2], &[OUT]];

    /// PyTorch-default init, layer by layer, from `seed`.
    pub fn init(&mut self, seed: u64) {
        let mut rng = Rng::new(seed);
        self.l1.init(&mut rng);
        self.l2.init(&mut rng);
        self.l3.init(&mut rng);
    }

    /// Tensors in state-dict order.
    pub fn tensors(&self) -> [TensorRef<'_>; 6] {
        let d: [&[f32]; 6] = [
            self.l1.weight.as_flattened(),
            &self.l1.bias,
            self.l2.weight.as_flattened(),
            &self.l2.bias,
            self.l3.weight.as_flattened(),
            &self.l3.bias,
        ];
        core::array::from_fn(|i| TensorRef { name: TENSOR_NAMES[i], shape: Self::SHAPES[i], data: d[i] })
    }

    /// Mutable tensors in state-dict order, with their names and shapes.
    pub fn tensors_mut(&mut self) -> [(&'static str, &'static [usize], &mut [f32]); 6] {
        let [a, b, c, d, e, f] = [
            self.l1.weight.as_flattened_mut(),
            &mut self.l1.bias[..],
            self.l2.weight.as_flattened_mut(),
            &mut self.l2.bias[..],
            self.l3.weight.as_flattened_mut(),
            &mut self.l3.bias[..],
        ];
        let mut it = [a, b, c, d, e, f].into_iter();
        core::array::from_fn(|i| (TENSOR_NAMES[i], Self::SHAPES[i], it.next().unwrap()))
    }

    /// Logits for the first `n` rows of `ws.x`.
    pub fn forward<const B: usize>(
        &self,
        k: &Kernels,
        par: &dyn Par,
        ws: &mut Workspace<B, IN, H1, H2, OUT>,
        n: usize,
    ) {
        self.l1.forward(k, par, &ws.x[..n], &mut ws.h1[..n], true);
        self.l2.forward(k, par, &ws.h1[..n], &mut ws.h2[..n], true);
        self.l3.forward(k, par, &ws.h2[..n], &mut ws.logits[..n], false);
    }

    /// Backpropagates `ws.dlogits` (rows `..n`) into `grad`. Needs the
    /// activations of the matching [`Self::forward`].
    pub fn backward<const B: usize>(
        &self,
        k: &Kernels,
        par: &dyn Par,
        ws: &mut Workspace<B, IN, H1, H2, OUT>,
        grad: &mut Self,
        n: usize,
    ) {
        let ws = &mut *ws;
        self.l3.backward(k, par, &ws.h2[..n], &ws.dlogits[..n], &mut grad.l3, Some(&mut ws.dh2[..n]), true);
        self.l2.backward(k, par, &ws.h1[..n], &ws.dh2[..n], &mut grad.l2, Some(&mut ws.dh1[..n]), true);
        // The input needs no gradient: skip layer 1's dx (a third of its cost).
        self.l1.backward(k, par, &ws.x[..n], &ws.dh1[..n], &mut grad.l1, None, false);
    }

    /// Forward, cross-entropy and backward for one batch of `labels.len()`
    /// rows already in `ws.x`. Returns the mean loss; `grad` is overwritten.
    pub fn loss_and_grad<const B: usize>(
        &self,
        k: &Kernels,
        par: &dyn Par,
        ws: &mut Workspace<B, IN, H1, H2, OUT>,
        labels: &[u8],
        grad: &mut Self,
    ) -> Result<f32, BadTarget> {
        let n = labels.len();
        self.forward(k, par, ws, n);
        let l = loss::cross_entropy(&ws.logits[..n], labels, &mut ws.dlogits[..n])?;
        self.backward(k, par, ws, grad, n);
        Ok(l)
    }
}

/// Activations for a batch of at most `B` rows, and their gradients.
/// For the seed model at `B = 64`: 64·(784 + 2·512·2 + 2·10)·4 B ≈ 0.73 MB.
#[repr(C)]
pub struct Workspace<const B: usize, const IN: usize, const H1: usize, const H2: usize, const OUT: usize> {
    pub x: [[f32; IN]; B],
    pub h1: [[f32; H1]; B],
    pub h2: [[f32; H2]; B],
    pub logits: [[f32; OUT]; B],
    pub dlogits: [[f32; OUT]; B],
    pub dh2: [[f32; H2]; B],
    pub dh1: [[f32; H1]; B],
}

// SAFETY: all-zero f32 arrays are valid.
unsafe impl<const B: usize, const IN: usize, const H1: usize, const H2: usize, const OUT: usize> Zeroed
    for Workspace<B, IN, H1, H2, OUT>
{
}

impl<const B: usize, const IN: usize, const H1: usize, const H2: usize, const OUT: usize>
    Workspace<B, IN, H1, H2, OUT>
{
    pub const ZERO: Self = Workspace {
        x: [[0.0; IN]; B],
        h1: [[0.0; H1]; B],
        h2: [[0.0; H2]; B],
        logits: [[0.0; OUT]; B],
        dlogits: [[0.0; OUT]; B],
        dh2: [[0.0; H2]; B],
        dh1: [[0.0; H1]; B],
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::par::Serial;

    type Tiny = Mlp<5, 7, 6, 3>;

    /// Loss of the whole MLP in f32, for finite differences.
    fn loss_of(m: &Tiny, ws: &mut Workspace<4, 5, 7, 6, 3>, labels: &[u8]) -> f64 {
        m.forward(&Kernels::NAIVE, &Serial, ws, labels.len());
        let mut g = [[0.0; 3]; 4];
        loss::cross_entropy(&ws.logits[..labels.len()], labels, &mut g[..labels.len()]).unwrap() as f64
    }

    #[test]
    fn whole_mlp_gradient_matches_central_differences() {
        let mut m = Tiny::ZERO;
        m.init(11);
        let mut ws = Workspace::<4, 5, 7, 6, 3>::ZERO;
        let mut rng = Rng::new(5);
        for v in ws.x.as_flattened_mut() {
            *v = rng.uniform(-1.0, 1.0);
        }
        let labels = [0u8, 2, 1]; // a short batch: 3 of 4 rows
        for kern in [Kernels::NAIVE, Kernels::PORTABLE] {
            let mut grad = Tiny::ZERO;
            m.loss_and_grad(&kern, &Serial, &mut ws, &labels, &mut grad).unwrap();
            let h = 1e-3f32;
            let mut checked = 0;
            for i in 0..Tiny::PARAMS {
                let mut mp = m.clone();
                mp.flat_mut()[i] += h;
                let lp = loss_of(&mp, &mut ws, &labels);
                mp.flat_mut()[i] -= 2.0 * h;
                let lm = loss_of(&mp, &mut ws, &labels);
                let num = (lp - lm) / (2.0 * h as f64);
                let ana = grad.flat()[i] as f64;
                // Central differences have O(h²) error plus f32 rounding of
                // the loss (~1e-7/h); ReLU kinks are avoided by the random
                // init with overwhelming probability.
                assert!(
                    (num - ana).abs() < 2e-3 + 2e-2 * ana.abs(),
                    "{}: param {i}: numeric {num} vs analytic {ana}",
                    kern.name
                );
                checked += 1;
            }
            assert_eq!(checked, Tiny::PARAMS);
        }
    }

    #[test]
    fn init_matches_pytorch_bounds_and_is_deterministic() {
        let mut a = Tiny::ZERO;
        a.init(3);
        let mut b = Tiny::ZERO;
        b.init(3);
        assert_eq!(a, b);
        let bound = 1.0 / libm::sqrtf(5.0);
        assert!(a.l1.weight.as_flattened().iter().all(|w| w.abs() <= bound));
        assert!(a.l1.weight.as_flattened().iter().any(|w| w.abs() > bound * 0.9));
        let bound3 = 1.0 / libm::sqrtf(6.0);
        assert!(a.l3.bias.iter().all(|w| w.abs() <= bound3));
    }

    #[test]
    fn tensors_cover_every_parameter_once() {
        let total: usize = Tiny::ZERO.tensors().iter().map(|t| t.data.len()).sum();
        assert_eq!(total, Tiny::PARAMS);
        assert_eq!(SeedMlp::PARAMS, 669_706);
        assert_eq!(core::mem::size_of::<SeedMlp>(), 669_706 * 4);
    }
}
