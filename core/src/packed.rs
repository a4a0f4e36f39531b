//! A model frozen for inference: its weights packed once, in the layout the
//! kernel set's [`Kernels::forward_panels`] reads, instead of transposed
//! block by block in every forward pass.
//!
//! Costs about the model's size again ([`PackedMlp::len`]) and one pass
//! over the weights to build. In exchange a batch skips the transposes, and a
//! single image becomes a matrix-vector product over contiguous rows of
//! `wᵀ` that skips the rows of zero inputs: about half of the pixels and of
//! the ReLU outputs, so about half of the weights it would stream.
//!
//! The packed layout depends on the kernel set ([`Kernels::panel`]): pack
//! with the kernels you run. An image gives the same outputs alone as in any
//! batch. They equal [`crate::mlp::Mlp::forward`]'s (up to the sign of zero) where that
//! computes the same sums as axpy tiles: always with the portable and naive
//! kernels; with the x86 ones, for batches of 8 or more rows and layers wider
//! than 12 (elsewhere they differ by rounding).

use crate::dense::{for_col_blocks, SyncMut};
use crate::gemm::{pack_panels, Kernels};
use crate::mlp::{Mlp, SizeError, Workspace};
use crate::par::Par;
use crate::spec::{Activation, Spec};

/// Floats per cache line: every layer's packed weights start on one (if the
/// buffer does), since panel rows are read as whole vectors and one that
/// straddles two lines costs two loads.
pub const ALIGN: usize = 16;

const fn round_up(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// A model packed for one kernel set: per layer `wᵀ` in panel layout
/// ([`pack_panels`]), then the bias, each starting at a multiple of
/// [`ALIGN`] floats.
pub struct PackedMlp<S> {
    spec: Spec,
    /// The panel width packed for.
    panel: usize,
    buf: S,
}

impl<S: AsRef<[f32]>> PackedMlp<S> {
    /// Floats of a packed model of `spec`.
    pub const fn len(spec: &Spec) -> usize {
        Self::offset(spec, spec.depth())
    }

    /// Where layer `i`'s packed weights start.
    const fn offset(spec: &Spec, i: usize) -> usize {
        let mut off = 0;
        let mut j = 0;
        while j < i {
            let l = spec.layer(j);
            off += round_up(l.outputs * l.inputs) + round_up(l.outputs);
            j += 1;
        }
        off
    }

    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// Logits for the first `n` rows of the workspace's input, as
    /// [`Mlp::forward`]. Output columns are split between threads by whole
    /// panels.
    ///
    /// # Panics
    /// If `k` is not the kernel set the model was packed for (by panel
    /// width), as the layouts differ.
    pub fn forward<W: AsMut<[f32]>>(&self, k: &Kernels, par: &dyn Par, ws: &mut Workspace<W>, n: usize) {
        assert_eq!(self.panel, k.panel, "PackedMlp: packed for panels of {}, kernels read {}", self.panel, k.panel);
        ws.check(&self.spec, n);
        for i in 0..self.spec.depth() {
            let l = self.spec.layer(i);
            let at = Self::offset(&self.spec, i);
            let wt = &self.buf.as_ref()[at..][..l.outputs * l.inputs];
            let b = &self.buf.as_ref()[at + round_up(l.outputs * l.inputs)..][..l.outputs];
            let (x, y) = ws.layer_io(i, n);
            let (n_in, n_out, relu) = (l.inputs, l.outputs, l.activation == Activation::Relu);
            let yp = SyncMut(y.as_mut_ptr());
            for_col_blocks(par, n_out, self.panel.max(16).next_multiple_of(self.panel), &|j0, r| {
                let yp = &yp;
                // SAFETY: columns j0..j0 + r of y[n][n_out], j0 at a panel
                // start; tasks own disjoint column blocks and nothing else
                // touches y.
                unsafe {
                    (k.forward_panels)(
                        x,
                        &wt[j0 * n_in..][..r * n_in],
                        &b[j0..][..r],
                        yp.0.add(j0),
                        n_out,
                        n,
                        r,
                        n_in,
                        relu,
                    )
                };
            });
        }
    }
}

impl<S: AsRef<[f32]> + AsMut<[f32]>> PackedMlp<S> {
    /// `model` packed for the kernel set `k` into `buf` ([`Self::len`]
    /// floats; align it to 64 bytes for speed).
    pub fn pack<P: AsRef<[f32]>>(k: &Kernels, model: &Mlp<P>, mut buf: S) -> Result<Self, SizeError> {
        let spec = *model.spec();
        let need = Self::len(&spec);
        if buf.as_mut().len() != need {
            return Err(SizeError { what: "the packed buffer", expected: need, found: buf.as_mut().len() });
        }
        for i in 0..spec.depth() {
            let l = model.layer(i);
            let at = Self::offset(&spec, i);
            let out = &mut buf.as_mut()[at..];
            pack_panels(l.weight, l.outputs, l.inputs, k.panel, &mut out[..l.outputs * l.inputs]);
            out[round_up(l.outputs * l.inputs)..][..l.outputs].copy_from_slice(l.bias);
        }
        Ok(PackedMlp { spec, panel: k.panel, buf })
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec;

    use super::*;
    use crate::par::Serial;

    /// The packed model gives the unpacked one's logits, one row at a
    /// time and as a batch.
    #[test]
    fn packed_matches_unpacked() {
        let spec = Spec::mlp(&[40, 130, 100, 10]);
        let mut m = Mlp::new(spec, vec![0.0; spec.params()]).unwrap();
        m.init(4);
        let mut ws = Workspace::new(spec, 9, vec![0.0; spec.activations(9)]).unwrap();
        let mut rng = crate::rng::Rng::new(8);
        let x: std::vec::Vec<f32> = (0..9 * 40).map(|_| rng.uniform(-1.0, 1.0).max(0.0)).collect();
        for k in [Kernels::NAIVE, Kernels::PORTABLE] {
            let p = PackedMlp::pack(&k, &m, vec![0.0; PackedMlp::<&[f32]>::len(&spec)]).unwrap();
            ws.input_mut(9).copy_from_slice(&x);
            m.forward(&k, &Serial, &mut ws, 9);
            let want = ws.logits(9).to_vec();
            p.forward(&k, &Serial, &mut ws, 9);
            assert!(ws.logits(9) == &want[..], "{}: batch", k.name);
            for (i, row) in x.chunks(40).enumerate() {
                ws.input_mut(1).copy_from_slice(row);
                p.forward(&k, &Serial, &mut ws, 1);
                assert!(ws.logits(1) == &want[i * 10..][..10], "{}: row {i}", k.name);
            }
        }
    }

    #[test]
    #[should_panic(expected = "packed for panels")]
    fn other_kernels_are_refused() {
        let spec = Spec::mlp(&[3, 2]);
        let m = Mlp::new(spec, vec![0.0; spec.params()]).unwrap();
        let p = PackedMlp::pack(&Kernels::NAIVE, &m, vec![0.0; PackedMlp::<&[f32]>::len(&spec)]).unwrap();
        let k = Kernels { panel: 2, ..Kernels::NAIVE };
        let mut ws = Workspace::new(spec, 1, vec![0.0; spec.activations(1)]).unwrap();
        p.forward(&k, &Serial, &mut ws, 1);
    }
}
