//! A model frozen for inference: its weights packed once, in the layout the
//! kernel set's [`Kernels::forward_panels`] reads, instead of transposed
//! block by block in every forward pass.
//!
//! Costs the model's size again (2.68 MB for the seed model) and one pass
//! over the weights to build. In exchange a batch skips the transposes, and a
//! single image becomes a matrix-vector product over contiguous rows of
//! `wᵀ` that skips the rows of zero inputs: about half of the pixels and of
//! the ReLU outputs, so about half of the weights it would stream.
//!
//! The packed layout depends on the kernel set ([`Kernels::panel`]): pack
//! with the kernels you run. An image gives the same outputs alone as in any
//! batch. They equal [`Mlp::forward`]'s (up to the sign of zero) where that
//! computes the same sums as axpy tiles: always with the portable and naive
//! kernels; with the x86 ones, for batches of 8 or more rows and layers wider
//! than 12 (elsewhere they differ by rounding).

use crate::dense::{for_col_blocks, Dense, SyncMut};
use crate::gemm::{pack_panels, Kernels};
use crate::mlp::{Mlp, Workspace};
use crate::par::Par;
use crate::Zeroed;

/// [`Dense`] with `wᵀ` packed in column panels (see [`pack_panels`]).
/// Cache-line aligned: panel rows are read as whole vectors, and one that
/// straddles two lines costs two loads.
#[repr(C, align(64))]
pub struct PackedDense<const IN: usize, const OUT: usize> {
    /// `IN·OUT` floats in panel layout, not `[out][in]` rows.
    wt: [[f32; IN]; OUT],
    bias: [f32; OUT],
    /// The panel width packed for; 0 before [`Self::pack`].
    panel: usize,
}

// SAFETY: f32 arrays and a usize; all zeros is a valid (unpacked) value.
unsafe impl<const IN: usize, const OUT: usize> Zeroed for PackedDense<IN, OUT> {}

impl<const IN: usize, const OUT: usize> PackedDense<IN, OUT> {
    pub const ZERO: Self = PackedDense { wt: [[0.0; IN]; OUT], bias: [0.0; OUT], panel: 0 };

    /// Packs `d` for the kernel set `k`.
    pub fn pack(&mut self, k: &Kernels, d: &Dense<IN, OUT>) {
        pack_panels(d.weight.as_flattened(), OUT, IN, k.panel, self.wt.as_flattened_mut());
        self.bias = d.bias;
        self.panel = k.panel;
    }

    /// `y = x·Wᵀ + b` (ReLU'd if `relu`) for the first `x.len()` rows, as
    /// [`Dense::forward`]. Output columns are split between threads by
    /// whole panels.
    ///
    /// # Panics
    /// If `k` is not the kernel set the layer was packed for (by panel
    /// width), as the layouts differ.
    pub fn forward(&self, k: &Kernels, par: &dyn Par, x: &[[f32; IN]], y: &mut [[f32; OUT]], relu: bool) {
        assert_eq!(self.panel, k.panel, "PackedDense: packed for panels of {}, kernels read {}", self.panel, k.panel);
        let m = x.len();
        let (x, y) = (x.as_flattened(), y[..m].as_flattened_mut());
        let (wt, b) = (self.wt.as_flattened(), &self.bias[..]);
        let yp = SyncMut(y.as_mut_ptr());
        for_col_blocks(par, OUT, self.panel.max(16).next_multiple_of(self.panel), &|j0, r| {
            let yp = &yp;
            // SAFETY: columns j0..j0 + r of y[m][OUT], j0 at a panel start;
            // tasks own disjoint column blocks and nothing else touches y.
            unsafe {
                (k.forward_panels)(x, &wt[j0 * IN..][..r * IN], &b[j0..][..r], yp.0.add(j0), OUT, m, r, IN, relu)
            };
        });
    }
}

/// [`Mlp`] packed for inference.
#[repr(C)]
pub struct PackedMlp<const IN: usize, const H1: usize, const H2: usize, const OUT: usize> {
    pub l1: PackedDense<IN, H1>,
    pub l2: PackedDense<H1, H2>,
    pub l3: PackedDense<H2, OUT>,
}

/// The seed model, packed: 2.68 MB.
pub type SeedPackedMlp = PackedMlp<784, 512, 512, 10>;

// SAFETY: three PackedDense, each valid as all zeros.
unsafe impl<const IN: usize, const H1: usize, const H2: usize, const OUT: usize> Zeroed for PackedMlp<IN, H1, H2, OUT> {}

impl<const IN: usize, const H1: usize, const H2: usize, const OUT: usize> PackedMlp<IN, H1, H2, OUT> {
    pub const ZERO: Self = PackedMlp { l1: PackedDense::ZERO, l2: PackedDense::ZERO, l3: PackedDense::ZERO };

    /// Packs every layer of `m` for the kernel set `k`.
    pub fn pack(&mut self, k: &Kernels, m: &Mlp<IN, H1, H2, OUT>) {
        self.l1.pack(k, &m.l1);
        self.l2.pack(k, &m.l2);
        self.l3.pack(k, &m.l3);
    }

    /// Logits for the first `n` rows of `ws.x`, as [`Mlp::forward`].
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::par::Serial;
    use crate::rng::Rng;

    type Small = Mlp<40, 130, 100, 10>;

    /// The packed model gives the unpacked one's logits, one row at a
    /// time and as a batch.
    #[test]
    fn packed_matches_unpacked() {
        let mut m = Small::ZERO;
        m.init(4);
        let mut ws = Workspace::<9, 40, 130, 100, 10>::ZERO;
        let mut rng = Rng::new(8);
        for v in ws.x.as_flattened_mut() {
            *v = rng.uniform(-1.0, 1.0).max(0.0);
        }
        for k in [Kernels::NAIVE, Kernels::PORTABLE] {
            let mut p = PackedMlp::ZERO;
            p.pack(&k, &m);
            m.forward(&k, &Serial, &mut ws, 9);
            let want = ws.logits;
            p.forward(&k, &Serial, &mut ws, 9);
            assert!(ws.logits == want, "{}: batch", k.name);
            let x = ws.x;
            for (i, row) in x.iter().enumerate() {
                ws.x[0] = *row;
                p.forward(&k, &Serial, &mut ws, 1);
                assert!(ws.logits[0] == want[i], "{}: row {i}", k.name);
            }
        }
    }

    #[test]
    #[should_panic(expected = "packed for panels")]
    fn other_kernels_are_refused() {
        let mut p = PackedDense::<3, 2>::ZERO;
        p.pack(&Kernels::NAIVE, &Dense::ZERO);
        let k = Kernels { panel: 2, ..Kernels::NAIVE };
        p.forward(&k, &Serial, &[[0.0; 3]], &mut [[0.0; 2]], false);
    }
}
