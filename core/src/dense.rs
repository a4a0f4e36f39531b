//! A fully connected layer in PyTorch's layout: `weight[OUT][IN]`, `bias[OUT]`.
//!
//! Costs `4·OUT·(IN+1)` bytes; forward and backward allocate nothing and use
//! only the caller's activation buffers. The batch is a slice of rows; its
//! length (≤ the workspace's compile-time maximum) is the live batch size.

use crate::gemm::{bias_grad, Kernels};
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
        if m == 1 && par.width() > 1 {
            // One row (batch-1 inference) is bound by streaming `w`: split
            // the outputs, so each thread reads (and keeps in its own L2)
            // only its share of the weights. y is one contiguous row here.
            let cols = rows_per_task(OUT, par.width(), 16);
            par.for_chunks(y, cols, &|t, yc| {
                let (j0, r) = (t * cols, yc.len());
                (k.forward)(x, &w[j0 * IN..][..r * IN], &b[j0..][..r], yc, 1, r, IN, relu);
            });
            return;
        }
        let rows = rows_per_task(m, par.width(), 4);
        par.for_chunks(y, rows * OUT, &|t, yc| {
            let r = yc.len() / OUT;
            (k.forward)(&x[t * rows * IN..][..r * IN], w, b, yc, r, OUT, IN, relu);
        });
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
            let dxf = dx[..m].as_flattened_mut();
            let rows = rows_per_task(m, par.width(), 4);
            let w = self.weight.as_flattened();
            par.for_chunks(dxf, rows * IN, &|t, dxc| {
                let r = dxc.len() / IN;
                let mask = relu_input.then(|| &xf[t * rows * IN..][..r * IN]);
                (k.input_grad)(&dyf[t * rows * OUT..][..r * OUT], w, dxc, mask, r, OUT, IN);
            });
        }
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
