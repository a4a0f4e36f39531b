//! The three products of a dense layer, on row-major slices.
//!
//! With `x: [m][k]` (batch of inputs), `w: [n][k]` (PyTorch's `[out][in]`)
//! and `dy: [m][n]`:
//!
//! | product | shape | form |
//! |---|---|---|
//! | forward `y = x·wᵀ + b` (ReLU fused) | `[m][n]` | dot products along `k` (SIMD: broadcast-axpy over `k` on packed `wᵀ`, skipping zero inputs) |
//! | input grad `dx = dy·w` (ReLU mask fused) | `[m][k]` | broadcast-axpy over `n` |
//! | weight grad `dw = dyᵀ·x` | `[n][k]` | broadcast-axpy over `m` |
//!
//! Every operand is contiguous along the inner loop in PyTorch's layout, so
//! the micro-kernels need no packing: a register tile of outputs is kept in
//! accumulators while one pass streams the operands. [`naive`] holds the
//! reference twins the tests compare with. [`Kernels`] is a table of function
//! pointers so that the host can pick a SIMD path at run time; the portable
//! one is always available.

/// `y[m][n] = x[m][k]·w[n][k]ᵀ + b[n]`, then `max(0, ·)` if `relu`.
pub type ForwardFn = fn(x: &[f32], w: &[f32], b: &[f32], y: &mut [f32], m: usize, n: usize, k: usize, relu: bool);
/// [`ForwardFn`] for a block of `n` columns of a wider output: `y` points at
/// element `[0][j0]` of a matrix with row stride `ldy >= n`, so that tasks
/// can each compute a column block (reading only their rows of `w`) of the
/// same rows. Kernels pick their method from `(m, ldy)`, never from the
/// block, so results do not depend on the split.
///
/// # Safety
/// `y.add(i·ldy + c)` must be valid for writes for `i < m`, `c < n`, and not
/// accessed by anyone else during the call.
pub type ForwardColsFn =
    unsafe fn(x: &[f32], w: &[f32], b: &[f32], y: *mut f32, ldy: usize, m: usize, n: usize, k: usize, relu: bool);
/// [`ForwardColsFn`] on weights packed once by [`pack_panels`] with the
/// kernel set's [`Kernels::panel`] width, for a model that does not change
/// between batches (inference). `packed` starts at the panel of the block's
/// first column (a multiple of the panel width), `n` is the block's width.
/// Per element, the same arithmetic for every `m` and every split, so one
/// image gives the same bits alone as in a batch (up to the sign of a zero).
///
/// # Safety
/// As [`ForwardColsFn`].
pub type ForwardPanelsFn = ForwardColsFn;
/// `dx[m][k] = dy[m][n]·w[n][k]`, then zeroed where `mask[m][k] <= 0` (the
/// ReLU that produced the layer's input) if a mask is given.
pub type InputGradFn = fn(dy: &[f32], w: &[f32], dx: &mut [f32], mask: Option<&[f32]>, m: usize, n: usize, k: usize);
/// [`InputGradFn`] for a block of `k` columns of a wider `dx`: `w`, `mask`
/// and `dx` start at column `p0` of matrices with row stride `ld >= k`, so
/// that tasks can each compute a column block of all rows, reading only
/// their columns of `w`. Per element, the same arithmetic as the whole.
///
/// # Safety
/// `dx.add(i·ld + c)` must be valid for writes for `i < m`, `c < k`, and not
/// accessed by anyone else during the call.
pub type InputGradColsFn =
    unsafe fn(dy: &[f32], w: &[f32], dx: *mut f32, ld: usize, mask: Option<&[f32]>, m: usize, n: usize, k: usize);
/// `dw[n][k] = dyᵀ·x` (overwrites). `dy` has row stride `ldy >= n`, so a
/// caller can hand a task the column block `dy[:, j0..j0+n]` by offsetting.
pub type WeightGradFn = fn(dy: &[f32], ldy: usize, x: &[f32], dw: &mut [f32], m: usize, n: usize, k: usize);

/// `params -= lr·(grads + wd·params)` elementwise: plain SGD (no momentum),
/// rounded exactly like `optim::Sgd::step` (a multiply, an add, a multiply
/// and a subtract per element, never fused).
pub type SgdFn = fn(params: &mut [f32], grads: &[f32], lr: f32, wd: f32);
/// One Adam/AdamW step over `params` with state `m`, `v`, bit-identical to
/// [`crate::optim::adam_update`].
pub type AdamFn = fn(c: &crate::optim::AdamStep, params: &mut [f32], grads: &[f32], m: &mut [f32], v: &mut [f32]);

/// The optimizer rule that [`WeightGradStepFn`] applies to each tile of
/// weight gradients while the tile is still in registers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rule<'a> {
    /// Plain SGD, exactly as [`SgdFn`].
    Sgd { lr: f32, weight_decay: f32 },
    /// Adam/AdamW, exactly as [`AdamFn`]; the state is `m`, then `v`.
    Adam(&'a crate::optim::AdamStep),
}

impl Rule<'_> {
    /// The rule over whole slices, with a kernel set's `sgd`/`adam`.
    pub fn apply(self, sgd: SgdFn, adam: AdamFn, w: &mut [f32], g: &[f32], state: [&mut [f32]; 2]) {
        match self {
            Rule::Sgd { lr, weight_decay } => sgd(w, g, lr, weight_decay),
            Rule::Adam(c) => {
                let [m, v] = state;
                adam(c, w, g, m, v)
            }
        }
    }
}

/// [`WeightGradFn`] fused with one optimizer step: `w` (`[n][k]`) is updated
/// by `rule` with `dyᵀ·x` as its gradient, bit for bit as [`WeightGradFn`]
/// followed by [`Rule::apply`], but without storing the gradient. `state`
/// (`m`, `v` for Adam, shaped like `w`; empty for SGD) is updated too.
/// `scratch` (`n·k`) holds partial sums when the kernel splits the sum over
/// `m`; its contents afterwards are unspecified.
pub type WeightGradStepFn = fn(
    dy: &[f32],
    ldy: usize,
    x: &[f32],
    scratch: &mut [f32],
    w: &mut [f32],
    state: [&mut [f32]; 2],
    rule: Rule<'_>,
    m: usize,
    n: usize,
    k: usize,
);

/// A [`WeightGradStepFn`] from separate kernels: the gradient goes to
/// `scratch`, then the rule runs over it.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn weight_grad_then_step(
    (wg, sgd, adam): (WeightGradFn, SgdFn, AdamFn),
    dy: &[f32],
    ldy: usize,
    x: &[f32],
    scratch: &mut [f32],
    w: &mut [f32],
    state: [&mut [f32]; 2],
    rule: Rule<'_>,
    m: usize,
    n: usize,
    k: usize,
) {
    let g = &mut scratch[..n * k];
    wg(dy, ldy, x, g, m, n, k);
    rule.apply(sgd, adam, &mut w[..n * k], g, state);
}

/// A set of kernels. Choosing one is the only run-time dispatch in the math.
#[derive(Clone, Copy)]
pub struct Kernels {
    pub name: &'static str,
    pub forward: ForwardFn,
    pub forward_cols: ForwardColsFn,
    /// Columns per panel of the layout [`Self::forward_panels`] reads (see
    /// [`pack_panels`]); 1 means `w` itself.
    pub panel: usize,
    pub forward_panels: ForwardPanelsFn,
    pub input_grad: InputGradFn,
    /// Column blocks of input grad, where a kernel set has them (the
    /// portable ones split by rows instead).
    pub input_grad_cols: Option<InputGradColsFn>,
    pub weight_grad: WeightGradFn,
    pub weight_grad_step: WeightGradStepFn,
    pub sgd: SgdFn,
    pub adam: AdamFn,
}

impl core::fmt::Debug for Kernels {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name)
    }
}

impl Kernels {
    /// Plain Rust that LLVM vectorizes for whatever the target has.
    pub const PORTABLE: Kernels = Kernels {
        name: "portable",
        forward: portable::forward,
        forward_cols: portable::forward_cols,
        panel: 1,
        forward_panels: portable::forward_cols,
        input_grad: portable::input_grad,
        input_grad_cols: None,
        weight_grad: portable::weight_grad,
        weight_grad_step: portable::weight_grad_step,
        sgd: portable::sgd,
        adam: crate::optim::adam_update,
    };
    /// The reference loops: slow, obviously right.
    pub const NAIVE: Kernels = Kernels {
        name: "naive",
        forward: naive::forward,
        forward_cols: naive::forward_cols,
        panel: 1,
        forward_panels: naive::forward_cols,
        input_grad: naive::input_grad,
        input_grad_cols: None,
        weight_grad: naive::weight_grad,
        weight_grad_step: naive::weight_grad_step,
        sgd: naive::sgd,
        adam: crate::optim::adam_update,
    };
    /// The set compiled for this target, for code that makes no run-time
    /// choice (the C API, firmware): `Kernels::CORTEX_M4` on an Arm target
    /// with a hard-float FPU (replayed bit for bit anywhere by
    /// [`Self::M4_TWIN`]), else [`Self::PORTABLE`].
    #[cfg(tailor_arm_fpu)]
    pub const TARGET: Kernels = Self::CORTEX_M4;
    #[cfg(not(tailor_arm_fpu))]
    pub const TARGET: Kernels = Self::PORTABLE;
}

impl Default for Kernels {
    fn default() -> Self {
        Kernels::PORTABLE
    }
}

/// Packs `w[n][k]` for [`ForwardPanelsFn`]: `wᵀ` cut into panels of `panel`
/// columns (the last may be narrower), each stored whole, row after row:
/// output `j0 + c` of the panel starting at `j0` holds its input `p` at
/// `out[j0·k + p·cols + c]`, where `cols` is that panel's width. A row of a
/// panel is what one register tile of outputs needs for one input, and a
/// panel's rows are contiguous, so the kernels read them without strides.
/// With `panel = 1` the layout is `w` itself.
pub fn pack_panels(w: &[f32], n: usize, k: usize, panel: usize, out: &mut [f32]) {
    assert!(panel > 0 && w.len() >= n * k && out.len() >= n * k, "pack_panels: sizes");
    let mut j0 = 0;
    while j0 < n {
        let cols = panel.min(n - j0);
        let dst = &mut out[j0 * k..][..cols * k];
        for (c, row) in w[j0 * k..][..cols * k].chunks_exact(k).enumerate() {
            for (p, &v) in row.iter().enumerate() {
                dst[p * cols + c] = v;
            }
        }
        j0 += cols;
    }
}

/// `db[j] = Σ_m dy[m][j]` for a `[m][n]` gradient. Cheap, kept serial.
pub fn bias_grad(dy: &[f32], db: &mut [f32], m: usize, n: usize) {
    db[..n].fill(0.0);
    for row in dy[..m * n].chunks_exact(n) {
        for (d, &g) in db.iter_mut().zip(row) {
            *d += g;
        }
    }
}

/// A [`ForwardColsFn`] from a [`ForwardFn`] whose results do not depend on
/// `m`: one row at a time.
///
/// # Safety
/// As [`ForwardColsFn`].
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn forward_cols_by_rows(
    f: ForwardFn,
    x: &[f32],
    w: &[f32],
    b: &[f32],
    y: *mut f32,
    ldy: usize,
    m: usize,
    n: usize,
    k: usize,
    relu: bool,
) {
    assert!(ldy >= n && x.len() >= m * k);
    for i in 0..m {
        // SAFETY: row i of the block, valid and exclusive by contract.
        let yr = unsafe { core::slice::from_raw_parts_mut(y.add(i * ldy), n) };
        f(&x[i * k..][..k], w, b, yr, 1, n, k, relu);
    }
}

pub mod naive {
    /// # Safety
    /// See [`super::ForwardColsFn`].
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn forward_cols(
        x: &[f32],
        w: &[f32],
        b: &[f32],
        y: *mut f32,
        ldy: usize,
        m: usize,
        n: usize,
        k: usize,
        relu: bool,
    ) {
        // SAFETY: forwarded.
        unsafe { super::forward_cols_by_rows(forward, x, w, b, y, ldy, m, n, k, relu) }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn weight_grad_step(
        dy: &[f32],
        ldy: usize,
        x: &[f32],
        scratch: &mut [f32],
        w: &mut [f32],
        state: [&mut [f32]; 2],
        rule: super::Rule<'_>,
        m: usize,
        n: usize,
        k: usize,
    ) {
        let ks = (weight_grad as super::WeightGradFn, sgd as super::SgdFn, crate::optim::adam_update as super::AdamFn);
        super::weight_grad_then_step(ks, dy, ldy, x, scratch, w, state, rule, m, n, k)
    }

    pub fn sgd(params: &mut [f32], grads: &[f32], lr: f32, wd: f32) {
        assert_eq!(params.len(), grads.len(), "sgd: params and grads differ in length");
        for (p, &g) in params.iter_mut().zip(grads) {
            let g = g + wd * *p;
            *p -= lr * g;
        }
    }

    pub fn forward(x: &[f32], w: &[f32], b: &[f32], y: &mut [f32], m: usize, n: usize, k: usize, relu: bool) {
        for i in 0..m {
            for j in 0..n {
                let mut s = b[j];
                for p in 0..k {
                    s += x[i * k + p] * w[j * k + p];
                }
                y[i * n + j] = if relu && s < 0.0 { 0.0 } else { s };
            }
        }
    }

    pub fn input_grad(dy: &[f32], w: &[f32], dx: &mut [f32], mask: Option<&[f32]>, m: usize, n: usize, k: usize) {
        for i in 0..m {
            for p in 0..k {
                let mut s = 0.0;
                for j in 0..n {
                    s += dy[i * n + j] * w[j * k + p];
                }
                if let Some(mask) = mask {
                    if mask[i * k + p] <= 0.0 {
                        s = 0.0;
                    }
                }
                dx[i * k + p] = s;
            }
        }
    }

    pub fn weight_grad(dy: &[f32], ldy: usize, x: &[f32], dw: &mut [f32], m: usize, n: usize, k: usize) {
        for j in 0..n {
            for p in 0..k {
                let mut s = 0.0;
                for i in 0..m {
                    s += dy[i * ldy + j] * x[i * k + p];
                }
                dw[j * k + p] = s;
            }
        }
    }
}

pub mod portable {
    //! Register-tiled loops written so that LLVM's vectorizers map the lane
    //! arrays onto SIMD registers (SSE/AVX/NEON) or FPU registers (M4F).

    pub use super::naive::sgd;

    /// # Safety
    /// See [`super::ForwardColsFn`].
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn forward_cols(
        x: &[f32],
        w: &[f32],
        b: &[f32],
        y: *mut f32,
        ldy: usize,
        m: usize,
        n: usize,
        k: usize,
        relu: bool,
    ) {
        // SAFETY: forwarded; the portable forward's per-element arithmetic
        // does not depend on the row tile.
        unsafe { super::forward_cols_by_rows(forward, x, w, b, y, ldy, m, n, k, relu) }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn weight_grad_step(
        dy: &[f32],
        ldy: usize,
        x: &[f32],
        scratch: &mut [f32],
        w: &mut [f32],
        state: [&mut [f32]; 2],
        rule: super::Rule<'_>,
        m: usize,
        n: usize,
        k: usize,
    ) {
        let ks = (weight_grad as super::WeightGradFn, sgd as super::SgdFn, crate::optim::adam_update as super::AdamFn);
        super::weight_grad_then_step(ks, dy, ldy, x, scratch, w, state, rule, m, n, k)
    }

    /// Lanes per accumulator vector in the dot-product kernel.
    const L: usize = 8;

    pub fn forward(x: &[f32], w: &[f32], b: &[f32], y: &mut [f32], m: usize, n: usize, k: usize, relu: bool) {
        let (x, w, y) = (&x[..m * k], &w[..n * k], &mut y[..m * n]);
        let mut i = 0;
        while i < m {
            let mr = (m - i).min(4);
            let mut j = 0;
            while j < n {
                let nr = (n - j).min(2);
                match (mr, nr) {
                    (4, 2) => fwd_tile::<4, 2>(x, w, b, y, i, j, n, k, relu),
                    (4, _) => fwd_tile::<4, 1>(x, w, b, y, i, j, n, k, relu),
                    (_, 2) => fwd_tile::<1, 2>(x, w, b, y, i, j, n, k, relu),
                    _ => fwd_tile::<1, 1>(x, w, b, y, i, j, n, k, relu),
                }
                j += nr;
            }
            i += if mr == 4 { 4 } else { 1 };
        }
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn fwd_tile<const MR: usize, const NR: usize>(
        x: &[f32],
        w: &[f32],
        b: &[f32],
        y: &mut [f32],
        i: usize,
        j: usize,
        n: usize,
        k: usize,
        relu: bool,
    ) {
        let mut acc = [[[0.0f32; L]; NR]; MR];
        let kv = k / L * L;
        let mut p = 0;
        while p < kv {
            let mut wv = [[0.0f32; L]; NR];
            for c in 0..NR {
                wv[c].copy_from_slice(&w[(j + c) * k + p..][..L]);
            }
            for r in 0..MR {
                let xv: &[f32] = &x[(i + r) * k + p..][..L];
                for c in 0..NR {
                    for l in 0..L {
                        acc[r][c][l] += xv[l] * wv[c][l];
                    }
                }
            }
            p += L;
        }
        for r in 0..MR {
            for c in 0..NR {
                let mut s = b[j + c];
                // Pairwise reduction keeps the tree shallow (and identical
                // on every target).
                let a = &acc[r][c];
                s += ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
                for q in kv..k {
                    s += x[(i + r) * k + q] * w[(j + c) * k + q];
                }
                y[(i + r) * n + j + c] = if relu && s < 0.0 { 0.0 } else { s };
            }
        }
    }

    /// Columns of `dx`/`dw` per register tile in the axpy kernels.
    const KC: usize = 16;

    pub fn input_grad(dy: &[f32], w: &[f32], dx: &mut [f32], mask: Option<&[f32]>, m: usize, n: usize, k: usize) {
        // dx[i][p..p+KC] = Σ_j dy[i][j] · w[j][p..p+KC]
        let mut i = 0;
        while i < m {
            let mr = if m - i >= 4 { 4 } else { 1 };
            let mut p = 0;
            while p < k {
                let kc = (k - p).min(KC);
                if mr == 4 {
                    axpy_tile::<4>(dy, n, w, k, dx, k, i, p, kc, n);
                } else {
                    axpy_tile::<1>(dy, n, w, k, dx, k, i, p, kc, n);
                }
                p += kc;
            }
            i += mr;
        }
        if let Some(mask) = mask {
            for (d, &a) in dx[..m * k].iter_mut().zip(&mask[..m * k]) {
                if a <= 0.0 {
                    *d = 0.0;
                }
            }
        }
    }

    pub fn weight_grad(dy: &[f32], ldy: usize, x: &[f32], dw: &mut [f32], m: usize, n: usize, k: usize) {
        // dw[j][p..p+KC] = Σ_i dy[i][j] · x[i][p..p+KC]; the "coefficient"
        // matrix is dyᵀ, read with strides (1, ldy).
        let mut j = 0;
        while j < n {
            let nr = if n - j >= 4 { 4 } else { 1 };
            let mut p = 0;
            while p < k {
                let kc = (k - p).min(KC);
                if nr == 4 {
                    axpy_tile_t::<4>(dy, ldy, x, k, dw, k, j, p, kc, m);
                } else {
                    axpy_tile_t::<1>(dy, ldy, x, k, dw, k, j, p, kc, m);
                }
                p += kc;
            }
            j += nr;
        }
    }

    /// `out[r0+r][p..p+kc] = Σ_t a[r0+r][t] · b[t][p..p+kc]` for `r < R`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn axpy_tile<const R: usize>(
        a: &[f32],
        lda: usize,
        b: &[f32],
        ldb: usize,
        out: &mut [f32],
        ldo: usize,
        r0: usize,
        p: usize,
        kc: usize,
        t_len: usize,
    ) {
        let mut acc = [[0.0f32; KC]; R];
        if kc == KC {
            for t in 0..t_len {
                let bv: &[f32; KC] = b[t * ldb + p..][..KC].try_into().unwrap();
                for r in 0..R {
                    let s = a[(r0 + r) * lda + t];
                    for l in 0..KC {
                        acc[r][l] += s * bv[l];
                    }
                }
            }
        } else {
            for t in 0..t_len {
                let bv = &b[t * ldb + p..][..kc];
                for r in 0..R {
                    let s = a[(r0 + r) * lda + t];
                    for l in 0..kc {
                        acc[r][l] += s * bv[l];
                    }
                }
            }
        }
        for r in 0..R {
            out[(r0 + r) * ldo + p..][..kc].copy_from_slice(&acc[r][..kc]);
        }
    }

    /// Like [`axpy_tile`] with the coefficients transposed:
    /// `out[r0+r][p..] = Σ_t a[t][r0+r] · b[t][p..]`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn axpy_tile_t<const R: usize>(
        a: &[f32],
        lda: usize,
        b: &[f32],
        ldb: usize,
        out: &mut [f32],
        ldo: usize,
        r0: usize,
        p: usize,
        kc: usize,
        t_len: usize,
    ) {
        let mut acc = [[0.0f32; KC]; R];
        if kc == KC {
            for t in 0..t_len {
                let bv: &[f32; KC] = b[t * ldb + p..][..KC].try_into().unwrap();
                let arow = &a[t * lda + r0..][..R];
                for r in 0..R {
                    let s = arow[r];
                    for l in 0..KC {
                        acc[r][l] += s * bv[l];
                    }
                }
            }
        } else {
            for t in 0..t_len {
                let bv = &b[t * ldb + p..][..kc];
                let arow = &a[t * lda + r0..][..R];
                for r in 0..R {
                    let s = arow[r];
                    for l in 0..kc {
                        acc[r][l] += s * bv[l];
                    }
                }
            }
        }
        for r in 0..R {
            out[(r0 + r) * ldo + p..][..kc].copy_from_slice(&acc[r][..kc]);
        }
    }
}

/// Tells the test log, once per kernel set and test binary, whether the
/// kernel set `set` is tested here or skipped because the CPU lacks
/// `features`. Written to stderr directly: libtest swallows the `eprintln!`
/// of passing tests, and a skipped set must not pass silently.
#[cfg(test)]
pub(crate) fn kernel_set_tested(set: &'static str, features: &str, available: bool) {
    extern crate std;
    use std::io::Write;
    static SAID: std::sync::Mutex<std::vec::Vec<&'static str>> = std::sync::Mutex::new(std::vec::Vec::new());
    let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
    if said.contains(&set) {
        return;
    }
    said.push(set);
    let line = if available {
        std::format!("kernel set {set}: tested ({features})\n")
    } else {
        std::format!("skipped: CPU lacks {features}: the {set} kernels are not tested\n")
    };
    let _ = std::io::stderr().write_all(line.as_bytes());
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use proptest::prelude::*;

    fn fill(seed: u64, n: usize) -> [f32; 4096] {
        let mut r = crate::rng::Rng::new(seed);
        let mut v = [0.0; 4096];
        for x in v.iter_mut().take(n) {
            *x = r.uniform(-1.0, 1.0);
        }
        v
    }

    fn close(a: &[f32], b: &[f32], k: usize) {
        let tol = 1e-5 * (k as f32).sqrt() * 4.0 + 1e-6;
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "elem {i}: {x} vs {y}");
        }
    }

    pub fn check(kern: &Kernels, m: usize, n: usize, k: usize, seed: u64) {
        let x = fill(seed, m * k);
        let w = fill(seed + 1, n * k);
        let b = fill(seed + 2, n);
        let dy = fill(seed + 3, m * n);
        let mut y0 = [0.0; 4096];
        let mut y1 = [0.0; 4096];
        for relu in [false, true] {
            naive::forward(&x, &w, &b, &mut y0, m, n, k, relu);
            (kern.forward)(&x, &w, &b, &mut y1, m, n, k, relu);
            close(&y1[..m * n], &y0[..m * n], k);
        }
        // forward_cols over two column blocks equals forward.
        for relu in [false, true] {
            (kern.forward)(&x, &w, &b, &mut y0, m, n, k, relu);
            y1[..m * n].fill(7.0);
            let j0 = n / 2;
            // SAFETY: both blocks lie inside y1[m][n]; calls are sequential.
            unsafe {
                (kern.forward_cols)(&x, &w, &b, y1.as_mut_ptr(), n, m, j0, k, relu);
                (kern.forward_cols)(&x, &w[j0 * k..], &b[j0..], y1.as_mut_ptr().add(j0), n, m, n - j0, k, relu);
            }
            assert!(y0[..m * n] == y1[..m * n], "{}: forward_cols differs from forward", kern.name);
        }
        for mask in [None, Some(&x[..m * k])] {
            naive::input_grad(&dy, &w, &mut y0, mask, m, n, k);
            (kern.input_grad)(&dy, &w, &mut y1, mask, m, n, k);
            close(&y1[..m * k], &y0[..m * k], n);
        }
        naive::weight_grad(&dy, n, &x, &mut y0, m, n, k);
        (kern.weight_grad)(&dy, n, &x, &mut y1, m, n, k);
        close(&y1[..n * k], &y0[..n * k], m);
        // A column block of dy via the row stride.
        if n > 1 {
            let j0 = n / 2;
            naive::weight_grad(&dy[j0..], n, &x, &mut y0, m, n - j0, k);
            (kern.weight_grad)(&dy[j0..], n, &x, &mut y1, m, n - j0, k);
            close(&y1[..(n - j0) * k], &y0[..(n - j0) * k], m);
        }
    }

    /// [`Kernels::forward_panels`] on packed weights: close to the naive
    /// forward, and the same values whether the rows come as one batch or
    /// one at a time and the columns as one block or two. Inputs are
    /// ReLU-like (about half exact zeros, and an all-zero row), which the
    /// kernels may skip.
    pub fn check_panels(kern: &Kernels, m: usize, n: usize, k: usize, seed: u64) {
        extern crate std;
        use std::vec;
        let mut x = vec![0.0f32; m * k];
        let mut r = crate::rng::Rng::new(seed);
        for v in x.iter_mut() {
            *v = r.uniform(-1.0, 1.0).max(0.0);
        }
        if m > 1 {
            x[k..2 * k].fill(0.0);
        }
        let w: vec::Vec<f32> = (0..n * k).map(|_| r.uniform(-1.0, 1.0)).collect();
        let b: vec::Vec<f32> = (0..n).map(|_| r.uniform(-1.0, 1.0)).collect();
        let mut pk = vec![f32::NAN; n * k];
        pack_panels(&w, n, k, kern.panel, &mut pk);
        assert!(pk.iter().all(|v| !v.is_nan()), "pack_panels left a hole");
        let j0 = n / 2 / kern.panel * kern.panel;
        for relu in [false, true] {
            let mut y0 = vec![0.0; m * n];
            naive::forward(&x, &w, &b, &mut y0, m, n, k, relu);
            let mut y1 = vec![7.0; m * n + 1];
            let mut y2 = vec![7.0; m * n];
            // SAFETY: every block lies inside its y[m][n]; calls are sequential.
            unsafe {
                (kern.forward_panels)(&x, &pk, &b, y1.as_mut_ptr(), n, m, n, k, relu);
                for i in 0..m {
                    let (xi, yi) = (&x[i * k..][..k], y2.as_mut_ptr().add(i * n));
                    (kern.forward_panels)(xi, &pk, &b, yi, n, 1, j0, k, relu);
                    (kern.forward_panels)(xi, &pk[j0 * k..], &b[j0..], yi.add(j0), n, 1, n - j0, k, relu);
                }
            }
            close(&y1[..m * n], &y0, k);
            assert_eq!(y1[m * n], 7.0, "{}: forward_panels wrote past the end", kern.name);
            // `==`, not bits: a skipped zero input may leave a -0 where the
            // dense sum has +0.
            assert!(
                y1[..m * n] == y2[..],
                "{}: forward_panels depends on m or the split (m={m} n={n} k={k})",
                kern.name
            );
            // Batches that the unpacked forward also computes as axpy tiles
            // over a transposed `w` (small ones may use dot products there).
            if m >= 8 && n > 12 {
                let mut y3 = vec![0.0; m * n];
                (kern.forward)(&x, &w, &b, &mut y3, m, n, k, relu);
                assert!(y1[..m * n] == y3[..], "{}: forward_panels differs from forward", kern.name);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn portable_matches_naive(m in 1usize..20, n in 1usize..20, k in 1usize..70, seed in 0u64..1000) {
            check(&Kernels::PORTABLE, m, n, k, seed);
            check_panels(&Kernels::PORTABLE, m, n, k, seed);
        }
    }

    #[test]
    fn odd_sizes() {
        for &(m, n, k) in &[(1, 1, 1), (3, 17, 63), (5, 3, 65), (1, 7, 513), (17, 1, 33), (4, 4, 16)] {
            check(&Kernels::PORTABLE, m, n, k, 9);
        }
    }

    /// Every kernel set's SGD matches `optim::Sgd` bit for bit.
    pub fn check_sgd(kern: &Kernels, n: usize, seed: u64) {
        let p0 = fill(seed, n);
        let g = fill(seed + 1, n);
        for (lr, wd) in [(1e-3, 0.0), (0.1, 1e-2), (0.7, -0.3)] {
            let o = crate::optim::Sgd { lr, weight_decay: wd, ..Default::default() };
            let (mut a, mut b) = (p0, p0);
            o.step(lr, 3, &mut a[..n], &g[..n], &mut []);
            (kern.sgd)(&mut b[..n], &g[..n], lr, wd);
            assert!(a[..n].iter().zip(&b[..n]).all(|(x, y)| x.to_bits() == y.to_bits()), "{} sgd n={n}", kern.name);
        }
    }

    /// Every kernel set's Adam/AdamW matches `optim::Adam` bit for bit over
    /// several steps (state carried between them).
    pub fn check_adam(kern: &Kernels, n: usize, seed: u64) {
        for opt in [
            crate::optim::Adam::default(),
            crate::optim::Adam { weight_decay: 0.01, ..Default::default() },
            crate::optim::Adam::adamw(),
        ] {
            let (mut pa, mut pb) = (fill(seed, n), fill(seed, n));
            let (mut ma, mut va) = ([0.0f32; 4096], [0.0f32; 4096]);
            let (mut mb, mut vb) = ([0.0f32; 4096], [0.0f32; 4096]);
            for step in 1..=4u64 {
                let g = fill(seed + step, n);
                opt.step(3e-3, step, &mut pa[..n], &g[..n], &mut [&mut ma[..n], &mut va[..n]]);
                (kern.adam)(&opt.coefs(3e-3, step), &mut pb[..n], &g[..n], &mut mb[..n], &mut vb[..n]);
                let same = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(
                    same(&pa[..n], &pb[..n]) && same(&ma[..n], &mb[..n]) && same(&va[..n], &vb[..n]),
                    "{} adam n={n} {opt:?}",
                    kern.name
                );
            }
        }
    }

    /// `weight_grad_step` equals `weight_grad` then the rule, bit for bit,
    /// for SGD, Adam and AdamW over a few steps (dy strided by `ldy`).
    pub fn check_step(kern: &Kernels, m: usize, n: usize, k: usize, seed: u64) {
        extern crate std;
        use std::vec::Vec;
        let fillv = |seed: u64, len: usize| -> Vec<f32> {
            let mut r = crate::rng::Rng::new(seed);
            (0..len).map(|_| r.uniform(-1.0, 1.0)).collect()
        };
        let (ldy, nk) = (n + 2, n * k);
        let x = fillv(seed, m * k);
        let sgd = |lr, weight_decay| (Rule::Sgd { lr, weight_decay }, None);
        let adams = [crate::optim::Adam::default(), crate::optim::Adam::adamw()];
        for (i, (rule, adam)) in [
            sgd(0.1, 0.0),
            sgd(0.05, 0.01),
            (Rule::Sgd { lr: 0.0, weight_decay: 0.0 }, Some(adams[0])),
            (Rule::Sgd { lr: 0.0, weight_decay: 0.0 }, Some(adams[1])),
        ]
        .into_iter()
        .enumerate()
        {
            let (mut wa, mut wb) = (fillv(seed + 1, nk), fillv(seed + 1, nk));
            let (mut ma, mut va) = (std::vec![0.0f32; nk], std::vec![0.0f32; nk]);
            let (mut mb, mut vb) = (std::vec![0.0f32; nk], std::vec![0.0f32; nk]);
            let (mut g, mut scratch) = (std::vec![0.0f32; nk], std::vec![3.0f32; nk]);
            for step in 1..=3u64 {
                let dy = fillv(seed + 10 + step, m * ldy + 1);
                let c = adam.map(|a| a.coefs(3e-3, step));
                let rule = c.as_ref().map_or(rule, Rule::Adam);
                (kern.weight_grad)(&dy[1..], ldy, &x, &mut g, m, n, k);
                rule.apply(kern.sgd, kern.adam, &mut wa, &g, [&mut ma, &mut va]);
                let state: [&mut [f32]; 2] = if adam.is_some() { [&mut mb, &mut vb] } else { [&mut [], &mut []] };
                (kern.weight_grad_step)(&dy[1..], ldy, &x, &mut scratch, &mut wb, state, rule, m, n, k);
            }
            let same = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(
                same(&wa, &wb) && same(&ma, &mb) && same(&va, &vb),
                "{}: weight_grad_step differs (case {i}, m={m} n={n} k={k})",
                kern.name
            );
        }
    }

    fn fillv(seed: u64, n: usize) -> std::vec::Vec<f32> {
        let mut r = crate::rng::Rng::new(seed);
        (0..n).map(|_| r.uniform(-1.0, 1.0)).collect()
    }

    fn same_bits(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
    }

    /// `dy` of the given share of nonzeros (ReLU gradients are half zero),
    /// as columns 1..n+1 of an [m][n + 3] matrix.
    fn sparse_dy(seed: u64, m: usize, n: usize, density: f32) -> (std::vec::Vec<f32>, usize) {
        let ldy = n + 3;
        let mut r = crate::rng::Rng::new(seed);
        let dy = (0..m * ldy)
            .map(|_| {
                let v = r.uniform(-1.0, 1.0);
                if r.uniform(0.0, 1.0) < density {
                    v
                } else {
                    0.0
                }
            })
            .collect();
        (dy, ldy)
    }

    const DENSITIES: [f32; 6] = [0.0, 0.1, 0.5, 0.69, 0.71, 1.0];

    /// For kernel sets whose products are FMA chains (x86, NEON): every
    /// element of weight grad is one FMA chain over the batch in order, from
    /// zero, whichever path runs (dense or zero-skipping tiles, partial sums
    /// through `dw` past 64 rows): bit for bit that chain, at any share of
    /// zeros in `dy`. The fused step equals the unfused one.
    pub fn check_weight_grad_fma_chain(kern: &Kernels) {
        let shapes =
            [(64, 64, 784), (64, 10, 512), (130, 70, 100), (5, 3, 65), (64, 129, 33), (1, 64, 40), (64, 64, 32)];
        let name = kern.name;
        for &(m, n, k) in &shapes {
            let x = fillv(1, m * k);
            for density in DENSITIES {
                let (dy, ldy) = sparse_dy(2, m, n, density);
                let dy = &dy[1..];
                let mut want = std::vec![0.0f32; n * k];
                for j in 0..n {
                    for p in 0..k {
                        want[j * k + p] = (0..m).fold(0.0f32, |a, t| dy[t * ldy + j].mul_add(x[t * k + p], a));
                    }
                }
                let mut got = std::vec![7.0f32; n * k + 1];
                (kern.weight_grad)(&dy[..(m - 1) * ldy + n], ldy, &x, &mut got, m, n, k);
                assert!(
                    same_bits(&want, &got[..n * k]) && got[n * k] == 7.0,
                    "{name}: weight_grad m={m} n={n} k={k} density {density}"
                );
                let adam = crate::optim::Adam::default().coefs(1e-3, 2);
                for rule in [Rule::Sgd { lr: 0.1, weight_decay: 0.01 }, Rule::Adam(&adam)] {
                    let w0 = fillv(3, n * k);
                    let (mut wa, mut sa) =
                        (w0.clone(), [fillv(4, n * k), fillv(5, n * k).iter().map(|v| v.abs()).collect()]);
                    let (mut wb, mut sb) = (w0, sa.clone());
                    let [ma, va] = &mut sa;
                    rule.apply(kern.sgd, kern.adam, &mut wa, &want, [ma, va]);
                    let [mb, vb] = &mut sb;
                    let mut scratch = std::vec![0.0f32; n * k];
                    (kern.weight_grad_step)(dy, ldy, &x, &mut scratch, &mut wb, [mb, vb], rule, m, n, k);
                    assert!(
                        same_bits(&wa, &wb) && same_bits(&sa[0], &sb[0]) && same_bits(&sa[1], &sb[1]),
                        "{name}: weight_grad_step m={m} n={n} k={k} density {density}"
                    );
                }
            }
        }
    }

    /// Input grad likewise: each element one FMA chain over `n` in order
    /// from zero, then masked, at any share of zeros in `dy`; in column
    /// blocks too.
    pub fn check_input_grad_fma_chain(kern: &Kernels) {
        let shapes =
            [(64, 512, 512), (64, 10, 512), (70, 1100, 40), (5, 3, 65), (3, 64, 33), (1, 64, 40), (64, 64, 32)];
        let name = kern.name;
        let cols = kern.input_grad_cols.expect("the FMA-chain sets have input_grad_cols");
        for &(m, n, k) in &shapes {
            let (w, x) = (fillv(1, n * k), fillv(3, m * k));
            for density in DENSITIES {
                let (dy, _) = sparse_dy(2, m, n, density);
                let dy = &dy[..m * n];
                for mask in [None, Some(&x[..])] {
                    let mut want = std::vec![0.0f32; m * k];
                    for t in 0..m {
                        for p in 0..k {
                            let v = (0..n).fold(0.0f32, |a, j| dy[t * n + j].mul_add(w[j * k + p], a));
                            want[t * k + p] = if mask.is_some_and(|x| x[t * k + p] <= 0.0) { 0.0 } else { v };
                        }
                    }
                    let mut got = std::vec![7.0f32; m * k + 1];
                    (kern.input_grad)(dy, &w, &mut got, mask, m, n, k);
                    assert!(
                        same_bits(&want, &got[..m * k]) && got[m * k] == 7.0,
                        "{name}: input_grad m={m} n={n} k={k} density {density}"
                    );
                    let mut parts = std::vec![7.0f32; m * k];
                    for p0 in (0..k).step_by(40) {
                        let r = 40.min(k - p0);
                        // SAFETY: columns p0..p0 + r of parts[m][k].
                        unsafe { cols(dy, &w[p0..], parts.as_mut_ptr().add(p0), k, mask.map(|a| &a[p0..]), m, n, r) };
                    }
                    assert!(same_bits(&want, &parts), "{name}: input_grad_cols m={m} n={n} k={k} density {density}");
                }
            }
        }
    }

    #[test]
    fn weight_grad_step_matches_unfused() {
        for kern in [Kernels::NAIVE, Kernels::PORTABLE] {
            for &(m, n, k) in &[(1, 1, 1), (3, 5, 17), (7, 9, 33), (0, 2, 3)] {
                check_step(&kern, m, n, k, 4);
            }
        }
    }

    #[test]
    fn adam_matches_optimizer() {
        for n in [0, 1, 7, 16, 17, 100, 4096] {
            check_adam(&Kernels::PORTABLE, n, n as u64);
        }
    }

    #[test]
    fn sgd_matches_optimizer() {
        for n in [0, 1, 7, 15, 16, 17, 63, 100, 4096] {
            check_sgd(&Kernels::PORTABLE, n, n as u64);
            check_sgd(&Kernels::NAIVE, n, n as u64);
        }
    }

    #[test]
    fn bias_grad_sums_columns() {
        let dy = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut db = [9.0; 3];
        bias_grad(&dy, &mut db, 2, 3);
        assert_eq!(db, [5.0, 7.0, 9.0]);
    }
}

#[cfg(target_arch = "x86_64")]
pub mod x86;

pub mod m4;

#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
pub mod neon;
