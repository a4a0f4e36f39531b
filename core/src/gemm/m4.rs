//! Cortex-M4F f32 training kernels, and their twin for every other target.
//!
//! The M4's FPU is scalar: no SIMD, one `VMLA` per multiply-accumulate, so
//! what costs is everything around the `VMLA`s (loads, pointer updates,
//! loop control). The micro-kernels here keep a register tile of outputs in
//! `s0`–`s15` and load operands with one `VLDM` per 4–8 floats, so that
//! most instructions are `VMLA`s (measured counts are in the README).
//!
//! **The same bits on the host.** Every output is one chain of `VMLA`
//! (multiply, round, add, round: not fused) in index order, starting from
//! the bias (forward) or +0 (gradients): the arithmetic of
//! [`super::naive`]. The host cannot run the assembly, so [`Kernels::M4_TWIN`]
//! runs the same drivers with the micro-kernels written in Rust (which
//! never contracts `a * b + c`), and so computes what the device computes,
//! bit for bit, on any machine. The ReLU mask of the input gradient tests
//! the mask's bits as an `i32` (`<= 0`: +0, −0 and negatives) on both
//! sides; it differs from `mask <= 0.0` only for negative NaNs.
//!
//! | product | micro-kernel | per step |
//! |---|---|---|
//! | forward | 2 rows × 4 outputs, dot products along `k` | 6 `VLDM` + 32 `VMLA` + 2 |
//! | input grad | 2 rows × 8 columns, axpy over `n`, on `w` packed once into 8-column panels (all rows in one call) | 2 `VLDM` (dy) + 4 `VLDM` (w) + 64 `VMLA` + 2 |
//! | weight grad | 8 batch rows into 8 columns of one `dw` row | 8 `VLDM` + 64 `VMLA` + `VLDM` (zeros) + `VSTM` + 2 |
//!
//! Shapes the micro-kernels do not cover (a last odd row, a last partial
//! group of outputs, `k` not a multiple of 4 or 8, fewer than 8 batch rows
//! in the weight gradient) take Rust loops with the same order of
//! operations, on both sides.

use super::Kernels;

/// The tile operations the device runs in assembly and the host in Rust.
///
/// # Safety
/// Every pointer must be valid for the reads or writes its doc states.
trait Micro {
    /// `acc[r·4 + c] += x[r][p]·w[c][p]` for `p < 4·steps`, `p` in order,
    /// `r < 2`, `c < 4` (`x[r]`, `w[c]`: `4·steps` floats each). `steps >= 1`.
    unsafe fn dot_2x4(acc: &mut [f32; 8], x: [*const f32; 2], w: [*const f32; 4], steps: usize);
    /// `o[r][8c + l] = Σ_t a[r][t]·b[t·ldb + 8c + l]` from +0, `t < terms`
    /// in order (`terms` even), for `r < 2`, `l < 8` and each of `blocks >= 1`
    /// blocks `c`. `o[0]` and `o[1]` are the same or do not overlap.
    unsafe fn axpy_2x8(a: [*const f32; 2], b: *const f32, ldb: usize, o: [*mut f32; 2], terms: usize, blocks: usize);
    /// `pk[(c·rows + j)·8 + l] = b[j·ldb + 8c + l]` for `j < rows`,
    /// `c < blocks`, `l < 8`: each 8-column block of `b`'s first `rows`
    /// rows as one contiguous panel. `rows >= 2` even, `blocks >= 1`.
    unsafe fn pack_panels(b: *const f32, ldb: usize, rows: usize, blocks: usize, pk: *mut f32);
    /// [`Self::axpy_2x8`] on packed panels (`p.panels`, `terms` rows each,
    /// `p.blocks` of them) for `pairs >= 1` pairs of rows: pair `q`'s first
    /// rows are `a + q·dy_next` and `o + q·(8·blocks + dx_next)` (in bytes),
    /// its second rows `dy_row` and `dx_row` bytes further (0: the same).
    unsafe fn axpy_rows(p: &RowsParams, a: *const f32, o: *mut f32, terms: usize, pairs: usize);
    /// `out[8s + l] = Σ_i dz[i]·x[i][8s + l]` from +0, `i < 8` in order, for
    /// `s < steps`, `l < 8`; `dz[8..]` must be +0 (the initial sums).
    unsafe fn axpy_t_8(dz: &[f32; 16], x: [*const f32; 8], out: *mut f32, steps: usize);
    /// `dx[e] = +0` where `mask[e]`'s bits as an `i32` are `<= 0`, for
    /// `e < 16·steps`.
    unsafe fn mask_16(dx: *mut f32, mask: *const f32, steps: usize);
}

/// What [`Micro::axpy_rows`] reads from memory (the assembly has no
/// registers left for it). Offsets are in bytes; the sums start at +0.
#[repr(C)]
struct RowsParams {
    dy_row: usize,
    dx_row: usize,
    panels: *const f32,
    blocks: usize,
    dx_next: usize,
    dy_next: usize,
}

/// Floats of packed panels the input gradient keeps on the stack: with
/// more than 256 rows in `w` it reads `w` unpacked.
const PACK: usize = 2048;

/// Whether a ReLU mask value zeroes its gradient (see the module doc).
#[inline(always)]
fn masked_out(mask: f32) -> bool {
    (mask.to_bits() as i32) <= 0
}

/// The micro-kernels in Rust: the twin of the assembly.
struct Twin;

impl Micro for Twin {
    #[inline(always)]
    unsafe fn dot_2x4(acc: &mut [f32; 8], x: [*const f32; 2], w: [*const f32; 4], steps: usize) {
        // SAFETY: the caller's contract: 4·steps floats per row.
        let (x, w) = unsafe {
            (x.map(|r| core::slice::from_raw_parts(r, 4 * steps)), w.map(|r| core::slice::from_raw_parts(r, 4 * steps)))
        };
        for p in 0..4 * steps {
            for r in 0..2 {
                for c in 0..4 {
                    acc[r * 4 + c] += x[r][p] * w[c][p];
                }
            }
        }
    }

    #[inline(always)]
    unsafe fn axpy_2x8(a: [*const f32; 2], b: *const f32, ldb: usize, o: [*mut f32; 2], terms: usize, blocks: usize) {
        for c in 0..blocks {
            let mut acc = [[0.0f32; 8]; 2];
            for t in 0..terms {
                // SAFETY: the caller's contract: `terms` coefficients per
                // row, 8 floats of `b` per term and block.
                let bt = unsafe { &*(b.add(t * ldb + 8 * c) as *const [f32; 8]) };
                for r in 0..2 {
                    // SAFETY: as above.
                    let s = unsafe { *a[r].add(t) };
                    for l in 0..8 {
                        acc[r][l] += s * bt[l];
                    }
                }
            }
            for r in 0..2 {
                // SAFETY: 8·blocks writable floats per row.
                unsafe { o[r].add(8 * c).cast::<[f32; 8]>().write(acc[r]) };
            }
        }
    }

    #[inline(always)]
    unsafe fn pack_panels(b: *const f32, ldb: usize, rows: usize, blocks: usize, pk: *mut f32) {
        for c in 0..blocks {
            for j in 0..rows {
                // SAFETY: the caller's contract.
                unsafe { pk.add((c * rows + j) * 8).copy_from_nonoverlapping(b.add(j * ldb + 8 * c), 8) };
            }
        }
    }

    #[inline(always)]
    unsafe fn axpy_rows(p: &RowsParams, a: *const f32, o: *mut f32, terms: usize, pairs: usize) {
        let f = core::mem::size_of::<f32>();
        for q in 0..pairs {
            // SAFETY: the caller's contract.
            unsafe {
                let (a0, o0) = (a.add(q * p.dy_next / f), o.add(q * (8 * p.blocks + p.dx_next / f)));
                let (a1, o1) = (a0.add(p.dy_row / f), o0.add(p.dx_row / f));
                for c in 0..p.blocks {
                    let pk = p.panels.add(c * terms * 8);
                    Self::axpy_2x8([a0, a1], pk, 8, [o0.add(8 * c), o1.add(8 * c)], terms, 1);
                }
            }
        }
    }

    #[inline(always)]
    unsafe fn axpy_t_8(dz: &[f32; 16], x: [*const f32; 8], out: *mut f32, steps: usize) {
        // SAFETY: the caller's contract: 8·steps floats per row and out.
        let (x, out) = unsafe {
            (x.map(|r| core::slice::from_raw_parts(r, 8 * steps)), core::slice::from_raw_parts_mut(out, 8 * steps))
        };
        for (s, o) in out.chunks_exact_mut(8).enumerate() {
            let mut acc = [dz[8]; 8];
            for i in 0..8 {
                for l in 0..8 {
                    acc[l] += dz[i] * x[i][8 * s + l];
                }
            }
            o.copy_from_slice(&acc);
        }
    }

    #[inline(always)]
    unsafe fn mask_16(dx: *mut f32, mask: *const f32, steps: usize) {
        // SAFETY: the caller's contract.
        let (dx, mask) =
            unsafe { (core::slice::from_raw_parts_mut(dx, 16 * steps), core::slice::from_raw_parts(mask, 16 * steps)) };
        for (d, &a) in dx.iter_mut().zip(mask) {
            if masked_out(a) {
                *d = 0.0;
            }
        }
    }
}

/// `y = x·wᵀ + b` (ReLU'd if `relu`): 2 × 4 tiles, a last odd row or
/// partial group of outputs computed by a tile that repeats its last row
/// (its extra results dropped).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn forward_with<K: Micro>(x: &[f32], w: &[f32], b: &[f32], y: &mut [f32], m: usize, n: usize, k: usize, relu: bool) {
    let (x, w, b, y) = (&x[..m * k], &w[..n * k], &b[..n], &mut y[..m * n]);
    let k4 = k / 4 * 4;
    for i in (0..m).step_by(2) {
        let rows = (m - i).min(2);
        for j in (0..n).step_by(4) {
            let cols = (n - j).min(4);
            let col = |c: usize| j + c.min(cols - 1);
            let mut acc = [0.0f32; 8];
            for c in 0..4 {
                acc[c] = b[col(c)];
                acc[4 + c] = b[col(c)];
            }
            if k4 > 0 {
                let xr = [x[i * k..].as_ptr(), x[(i + rows - 1) * k..].as_ptr()];
                let wr = core::array::from_fn(|c| w[col(c) * k..].as_ptr());
                // SAFETY: every row pointer starts a row of k >= 4·(k4/4) floats.
                unsafe { K::dot_2x4(&mut acc, xr, wr, k4 / 4) };
            }
            for r in 0..rows {
                for c in 0..cols {
                    let mut s = acc[r * 4 + c];
                    for p in k4..k {
                        s += x[(i + r) * k + p] * w[(j + c) * k + p];
                    }
                    y[(i + r) * n + j + c] = if relu && s < 0.0 { 0.0 } else { s };
                }
            }
        }
    }
}

/// `dx = dy·w`, masked: 2 × 8 tiles over all of `n`, then the last odd
/// term, the columns past a multiple of 8, and the mask.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn input_grad_with<K: Micro>(
    dy: &[f32],
    w: &[f32],
    dx: &mut [f32],
    mask: Option<&[f32]>,
    m: usize,
    n: usize,
    k: usize,
) {
    let (dy, w, dx) = (&dy[..m * n], &w[..n * k], &mut dx[..m * k]);
    let k8 = k / 8 * 8;
    let (terms, odd) = (n & !1, n % 2 == 1);
    // Columns per packed strip: all of them unless `w` is tall.
    let strip = PACK.checked_div(terms).map_or(k8, |r| (r / 8 * 8).min(k8));
    if k8 > 0 && strip > 0 {
        let mut pk = core::mem::MaybeUninit::<[f32; PACK]>::uninit();
        let pkp = pk.as_mut_ptr().cast::<f32>();
        let f = core::mem::size_of::<f32>();
        let mut c0 = 0;
        while c0 < k8 {
            let width = strip.min(k8 - c0);
            if terms > 0 {
                // SAFETY: w holds terms <= n rows (an even count) of
                // k >= c0 + width floats; the panels fill terms·width <= PACK
                // floats.
                unsafe { K::pack_panels(w.as_ptr().add(c0), k, terms, width / 8, pkp) };
            }
            let p = RowsParams {
                dy_row: n * f,
                dx_row: k * f,
                panels: pkp,
                blocks: width / 8,
                dx_next: (2 * k - width) * f,
                dy_next: 2 * n * f,
            };
            // SAFETY: pairs of rows of dy (n >= terms coefficients each) and
            // of dx (columns c0..c0 + width < k); the panels were packed
            // above (none read when terms = 0); a last odd row goes alone,
            // computed twice into the same place.
            unsafe {
                if m >= 2 {
                    K::axpy_rows(&p, dy.as_ptr(), dx.as_mut_ptr().add(c0), terms, m / 2);
                }
                if m % 2 == 1 {
                    let last = RowsParams { dy_row: 0, dx_row: 0, ..p };
                    K::axpy_rows(&last, dy.as_ptr().add((m - 1) * n), dx.as_mut_ptr().add((m - 1) * k + c0), terms, 1);
                }
            }
            c0 += width;
        }
    } else if k8 > 0 {
        let (dyp, dxp) = (dy.as_ptr(), dx.as_mut_ptr());
        for i in (0..m).step_by(2) {
            let last = if i + 1 < m { i + 1 } else { i };
            // SAFETY: rows i and last < m of dy (n >= terms coefficients
            // each) and of dx (k >= k8 floats each, a last odd row computed
            // twice into the same place); w holds n rows of k >= k8 floats.
            unsafe {
                let a = [dyp.add(i * n), dyp.add(last * n)];
                K::axpy_2x8(a, w.as_ptr(), k, [dxp.add(i * k), dxp.add(last * k)], terms, k8 / 8)
            };
        }
    }
    if odd || k8 < k {
        input_grad_tails(dy, w, dx, m, n, k);
    }
    if let Some(mask) = mask {
        mask_with::<K>(dx, &mask[..m * k]);
    }
}

/// [`input_grad_with`]'s last odd term and columns past a multiple of 8;
/// out of line, so that the common path does not set up their loops.
#[inline(never)]
fn input_grad_tails(dy: &[f32], w: &[f32], dx: &mut [f32], m: usize, n: usize, k: usize) {
    let k8 = k / 8 * 8;
    for r in 0..m {
        if n % 2 == 1 {
            let s = dy[r * n + n - 1];
            for (d, &v) in dx[r * k..][..k8].iter_mut().zip(&w[(n - 1) * k..][..k8]) {
                *d += s * v;
            }
        }
        for p in k8..k {
            let mut s = 0.0;
            for j in 0..n {
                s += dy[r * n + j] * w[j * k + p];
            }
            dx[r * k + p] = s;
        }
    }
}

/// `dx = +0` where the mask says so (see [`masked_out`]), 16 at a time.
#[inline(always)]
fn mask_with<K: Micro>(dx: &mut [f32], mask: &[f32]) {
    let e16 = mask.len() / 16 * 16;
    if e16 > 0 {
        // SAFETY: e16 floats of each.
        unsafe { K::mask_16(dx.as_mut_ptr(), mask.as_ptr(), e16 / 16) };
    }
    for (d, &a) in dx[e16..].iter_mut().zip(&mask[e16..]) {
        if masked_out(a) {
            *d = 0.0;
        }
    }
}

/// `dw = dyᵀ·x`: each row of `dw` from the first 8 batch rows in 8-column
/// steps, the rest (more rows, columns past a multiple of 8, batches of
/// fewer than 8) in order after them.
#[inline(always)]
fn weight_grad_with<K: Micro>(dy: &[f32], ldy: usize, x: &[f32], dw: &mut [f32], m: usize, n: usize, k: usize) {
    let (x, dw) = (&x[..m * k], &mut dw[..n * k]);
    if n == 0 || k == 0 {
        return;
    }
    assert!(ldy >= n, "weight_grad: dy's row stride {ldy} is narrower than its {n} columns");
    let dy = &dy[..if m == 0 { 0 } else { (m - 1) * ldy + n }];
    let k8 = if m >= 8 { k / 8 * 8 } else { 0 };
    for j in 0..n {
        let row = &mut dw[j * k..][..k];
        if k8 > 0 {
            let mut dz = [0.0f32; 16];
            for (i, d) in dz[..8].iter_mut().enumerate() {
                *d = dy[i * ldy + j];
            }
            let xr = core::array::from_fn(|i| x[i * k..].as_ptr());
            // SAFETY: rows of x and dw hold k >= k8 floats.
            unsafe { K::axpy_t_8(&dz, xr, row.as_mut_ptr(), k8 / 8) };
            for (p, o) in row[..k8].iter_mut().enumerate().filter(|_| m > 8) {
                for i in 8..m {
                    *o += dy[i * ldy + j] * x[i * k + p];
                }
            }
        }
        for (p, o) in row.iter_mut().enumerate().skip(k8) {
            let mut s = 0.0;
            for i in 0..m {
                s += dy[i * ldy + j] * x[i * k + p];
            }
            *o = s;
        }
    }
}

/// Generates a kernel set's functions from its micro-kernels.
macro_rules! kernel_fns {
    ($micro:ty) => {
        pub fn forward(x: &[f32], w: &[f32], b: &[f32], y: &mut [f32], m: usize, n: usize, k: usize, relu: bool) {
            super::forward_with::<$micro>(x, w, b, y, m, n, k, relu)
        }

        /// # Safety
        /// See [`crate::gemm::ForwardColsFn`].
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
            // SAFETY: forwarded; an output's arithmetic does not depend on
            // its tile.
            unsafe { crate::gemm::forward_cols_by_rows(forward, x, w, b, y, ldy, m, n, k, relu) }
        }

        pub fn input_grad(dy: &[f32], w: &[f32], dx: &mut [f32], mask: Option<&[f32]>, m: usize, n: usize, k: usize) {
            super::input_grad_with::<$micro>(dy, w, dx, mask, m, n, k)
        }

        pub fn weight_grad(dy: &[f32], ldy: usize, x: &[f32], dw: &mut [f32], m: usize, n: usize, k: usize) {
            super::weight_grad_with::<$micro>(dy, ldy, x, dw, m, n, k)
        }

        #[allow(clippy::too_many_arguments)]
        pub fn weight_grad_step(
            dy: &[f32],
            ldy: usize,
            x: &[f32],
            scratch: &mut [f32],
            w: &mut [f32],
            state: [&mut [f32]; 2],
            rule: crate::gemm::Rule<'_>,
            m: usize,
            n: usize,
            k: usize,
        ) {
            use crate::gemm::{portable, AdamFn, SgdFn, WeightGradFn};
            let ks = (weight_grad as WeightGradFn, portable::sgd as SgdFn, crate::optim::adam_update as AdamFn);
            crate::gemm::weight_grad_then_step(ks, dy, ldy, x, scratch, w, state, rule, m, n, k)
        }

        /// The set.
        pub const KERNELS: crate::gemm::Kernels = crate::gemm::Kernels {
            name: NAME,
            forward,
            forward_cols,
            panel: 1,
            forward_panels: forward_cols,
            input_grad,
            input_grad_cols: None,
            weight_grad,
            weight_grad_step,
            sgd: crate::gemm::portable::sgd,
            adam: crate::optim::adam_update,
        };
    };
}

/// The Cortex-M4 kernels' arithmetic in Rust, for any target.
pub mod twin {
    const NAME: &str = "m4-twin";
    kernel_fns!(super::Twin);
}

/// The Cortex-M4F kernels (VFPv4-SP `VLDM`/`VMLA` assembly).
#[cfg(tailor_arm_fpu)]
pub mod cortex_m4 {
    const NAME: &str = "cortex-m4";
    kernel_fns!(super::vfp::Vfp);
}

impl Kernels {
    /// What `Kernels::CORTEX_M4` computes, bit for bit, on any target
    /// (the host's replica of on-device training runs it).
    pub const M4_TWIN: Kernels = twin::KERNELS;
    /// Register-blocked `VLDM`/`VMLA` kernels for the Cortex-M4F (any
    /// Arm target with a hard-float FPU).
    #[cfg(tailor_arm_fpu)]
    pub const CORTEX_M4: Kernels = cortex_m4::KERNELS;
}

#[cfg(tailor_arm_fpu)]
mod vfp {
    use super::Micro;
    use core::arch::asm;

    pub struct Vfp;

    // `axpy_rows` reads these offsets.
    const _: () = {
        use core::mem::offset_of;
        type P = super::RowsParams;
        assert!(offset_of!(P, dy_row) == 0 && offset_of!(P, dx_row) == 4 && offset_of!(P, panels) == 8);
        assert!(offset_of!(P, blocks) == 12 && offset_of!(P, dx_next) == 16 && offset_of!(P, dy_next) == 20);
    };

    // The micro-kernels' unrolled `VMLA` lists come from the macros below,
    // one per tile shape, so that each tile's arithmetic is written once.

    /// `s{o} += s{a}·s{b}` for each pair `o`, `b` of the two lists, in
    /// order: one `VMLA` per product.
    macro_rules! vmla {
        ($a:literal; [$($o:literal)*] [$($b:literal)*]) => {
            concat!($("vmla.f32 s", $o, ", s", $a, ", s", $b, "\n",)*)
        };
    }

    /// Steps of a 2 × 4 dot-product tile: per step, `s0–s3 += s{x0}·` the
    /// four `w` registers and `s4–s7 += s{x1}·` the same (the two rows'
    /// and the four rows' element at one `p`).
    macro_rules! dot_terms {
        ($($x0:literal $x1:literal [$($w:literal)*]),*) => {
            concat!($(vmla!($x0; [0 1 2 3] [$($w)*]), vmla!($x1; [4 5 6 7] [$($w)*]),)*)
        };
    }

    /// A row of 8 floats of `w` into s16–s23: `post` reads packed panels
    /// (the next row follows), `stride` rows `{ldw}` bytes apart.
    macro_rules! w_row {
        (post) => {
            "vldmia {w}!, {{s16-s23}}\n"
        };
        (stride) => {
            "vldm {w}, {{s16-s23}}\nadd {w}, {w}, {ldw}\n"
        };
    }

    /// Terms of a 2 × 8 axpy tile: per term, a row of `w` (`w_row!`), then
    /// `s0–s7 += s{a0}·w` and `s8–s15 += s{a1}·w` (`a0`, `a1`: the two
    /// rows' coefficients of the term).
    macro_rules! axpy_terms {
        ($load:tt; $($a0:literal $a1:literal),*) => {
            concat!($(
                w_row!($load),
                vmla!($a0; [0 1 2 3 4 5 6 7] [16 17 18 19 20 21 22 23]),
                vmla!($a1; [8 9 10 11 12 13 14 15] [16 17 18 19 20 21 22 23]),
            )*)
        };
    }

    /// Rows of [`Micro::axpy_t_8`], two at a time: each loads 8 floats of
    /// its row of `x` (`{xa}` into s8–s15, `{xb}` into s16–s23) and adds
    /// them times its `dz` (`s{da}`, `s{db}`) to s0–s7.
    macro_rules! axpy_t_rows {
        ($($xa:ident $da:literal, $xb:ident $db:literal);*) => {
            concat!($(
                "vldmia {", stringify!($xa), "}!, {{s8-s15}}\n",
                vmla!($da; [0 1 2 3 4 5 6 7] [8 9 10 11 12 13 14 15]),
                "vldmia {", stringify!($xb), "}!, {{s16-s23}}\n",
                vmla!($db; [0 1 2 3 4 5 6 7] [16 17 18 19 20 21 22 23]),
            )*)
        };
    }

    /// Four gradients of [`Micro::mask_16`]: each mask's `usat` (1 or 0)
    /// times the gradient.
    macro_rules! mask_4 {
        () => {
            concat!(
                "ldm {m}!, {{r8, r9, r10, r11}}\n",
                "ldm {d}, {{r2, r3, r4, r5}}\n",
                "usat r8, #1, r8\n",
                "usat r9, #1, r9\n",
                "usat r10, #1, r10\n",
                "usat r11, #1, r11\n",
                "mul r2, r2, r8\n",
                "mul r3, r3, r9\n",
                "mul r4, r4, r10\n",
                "mul r5, r5, r11\n",
                "stm {d}!, {{r2, r3, r4, r5}}\n",
            )
        };
    }

    /// [`Micro::axpy_rows`]' assembly, its branches per block chosen once:
    /// `head` after the count of quads of terms (`Z`: none), `mid` after
    /// their loop, before the last pair of terms.
    macro_rules! axpy_rows_asm {
        ($p:expr, $a:expr, $o:expr, $terms:expr, $pairs:expr, [$($head:literal),*], [$($mid:literal),*]) => {{
            static ZERO: [f32; 16] = [0.0; 16];
            asm!(
                "6:",
                "ldrd {q}, {blocks}, [{p}, #0]",
                "add {d1}, {d0}, {q}",
                "add {o1}, {o0}, {blocks}",
                "ldrd {w}, {blocks}, [{p}, #8]",
                "2:",
                "vldm {z}, {{s0-s15}}",
                "lsrs {q}, {tb}, #4",
                $($head,)*
                "3:",
                "vldmia {d0}!, {{s24-s27}}",
                "vldmia {d1}!, {{s28-s31}}",
                axpy_terms!(post; 24 28, 25 29, 26 30, 27 31),
                "subs {q}, {q}, #1",
                "bne 3b",
                $($mid,)*
                "vldmia {d0}!, {{s24-s25}}",
                "vldmia {d1}!, {{s28-s29}}",
                axpy_terms!(post; 24 28, 25 29),
                "5:",
                "sub {d0}, {d0}, {tb}",
                "sub {d1}, {d1}, {tb}",
                "vstmia {o0}!, {{s0-s7}}",
                "vstmia {o1}!, {{s8-s15}}",
                "subs {blocks}, {blocks}, #1",
                "bne 2b",
                "ldrd {q}, {w}, [{p}, #16]",
                "add {o0}, {o0}, {q}",
                "add {d0}, {d0}, {w}",
                "subs {pairs}, {pairs}, #1",
                "bne 6b",
                p = in(reg) $p as *const super::RowsParams,
                z = in(reg) ZERO.as_ptr(),
                o0 = inout(reg) $o => _,
                o1 = out(reg) _,
                d0 = inout(reg) $a => _,
                d1 = out(reg) _,
                w = out(reg) _,
                q = out(reg) _,
                tb = in(reg) $terms * 4,
                blocks = out(reg) _,
                pairs = inout(reg) $pairs => _,
                out("s0") _, out("s1") _, out("s2") _, out("s3") _, out("s4") _, out("s5") _, out("s6") _, out("s7") _,
                out("s8") _, out("s9") _, out("s10") _, out("s11") _, out("s12") _, out("s13") _, out("s14") _, out("s15") _,
                out("s16") _, out("s17") _, out("s18") _, out("s19") _, out("s20") _, out("s21") _, out("s22") _, out("s23") _,
                out("s24") _, out("s25") _, out("s26") _, out("s27") _, out("s28") _, out("s29") _, out("s30") _, out("s31") _,
                options(nostack),
            )
        }};
    }

    impl Micro for Vfp {
        #[inline(always)]
        unsafe fn dot_2x4(acc: &mut [f32; 8], x: [*const f32; 2], w: [*const f32; 4], steps: usize) {
            // SAFETY: the trait's contract; s0-s31 are declared clobbered.
            unsafe {
                asm!(
                "vldm {acc}, {{s0-s7}}",
                "2:",
                "vldmia {x0}!, {{s8-s11}}",
                "vldmia {x1}!, {{s12-s15}}",
                "vldmia {w0}!, {{s16-s19}}",
                "vldmia {w1}!, {{s20-s23}}",
                "vldmia {w2}!, {{s24-s27}}",
                "vldmia {w3}!, {{s28-s31}}",
                dot_terms!(8 12 [16 20 24 28], 9 13 [17 21 25 29], 10 14 [18 22 26 30], 11 15 [19 23 27 31]),
                "subs {n}, {n}, #1",
                "bne 2b",
                "vstm {acc}, {{s0-s7}}",
                acc = in(reg) acc.as_mut_ptr(),
                x0 = inout(reg) x[0] => _,
                x1 = inout(reg) x[1] => _,
                w0 = inout(reg) w[0] => _,
                w1 = inout(reg) w[1] => _,
                w2 = inout(reg) w[2] => _,
                w3 = inout(reg) w[3] => _,
                n = inout(reg) steps => _,
                out("s0") _, out("s1") _, out("s2") _, out("s3") _, out("s4") _, out("s5") _, out("s6") _, out("s7") _,
                out("s8") _, out("s9") _, out("s10") _, out("s11") _, out("s12") _, out("s13") _, out("s14") _, out("s15") _,
                out("s16") _, out("s17") _, out("s18") _, out("s19") _, out("s20") _, out("s21") _, out("s22") _, out("s23") _,
                out("s24") _, out("s25") _, out("s26") _, out("s27") _, out("s28") _, out("s29") _, out("s30") _, out("s31") _,
                options(nostack),
                )
            }
        }

        #[inline(always)]
        unsafe fn axpy_2x8(
            a: [*const f32; 2],
            b: *const f32,
            ldb: usize,
            o: [*mut f32; 2],
            terms: usize,
            blocks: usize,
        ) {
            static ZERO: [f32; 16] = [0.0; 16];
            // SAFETY: the trait's contract; s0-s31 are declared clobbered.
            // Per block: quads of terms, then a pair if `terms` has one
            // (bit 3 of its byte count), then the dy pointers go back.
            unsafe {
                asm!(
                "2:",
                "vldm {z}, {{s0-s15}}",
                "mov {w}, {wc}",
                "add {wc}, {wc}, #32",
                "lsrs {q}, {tb}, #4",
                "beq 4f",
                "3:",
                "vldmia {d0}!, {{s24-s27}}",
                "vldmia {d1}!, {{s28-s31}}",
                axpy_terms!(stride; 24 28, 25 29, 26 30, 27 31),
                "subs {q}, {q}, #1",
                "bne 3b",
                "4:",
                "tst {tb}, #8",
                "beq 5f",
                "vldmia {d0}!, {{s24-s25}}",
                "vldmia {d1}!, {{s28-s29}}",
                axpy_terms!(stride; 24 28, 25 29),
                "5:",
                "sub {d0}, {d0}, {tb}",
                "sub {d1}, {d1}, {tb}",
                "vstmia {o0}!, {{s0-s7}}",
                "vstmia {o1}!, {{s8-s15}}",
                "subs {blocks}, {blocks}, #1",
                "bne 2b",
                z = in(reg) ZERO.as_ptr(),
                o0 = inout(reg) o[0] => _,
                o1 = inout(reg) o[1] => _,
                d0 = inout(reg) a[0] => _,
                d1 = inout(reg) a[1] => _,
                w = out(reg) _,
                wc = inout(reg) b => _,
                ldw = in(reg) ldb * 4,
                q = out(reg) _,
                tb = in(reg) terms * 4,
                blocks = inout(reg) blocks => _,
                out("s0") _, out("s1") _, out("s2") _, out("s3") _, out("s4") _, out("s5") _, out("s6") _, out("s7") _,
                out("s8") _, out("s9") _, out("s10") _, out("s11") _, out("s12") _, out("s13") _, out("s14") _, out("s15") _,
                out("s16") _, out("s17") _, out("s18") _, out("s19") _, out("s20") _, out("s21") _, out("s22") _, out("s23") _,
                out("s24") _, out("s25") _, out("s26") _, out("s27") _, out("s28") _, out("s29") _, out("s30") _, out("s31") _,
                options(nostack),
                )
            }
        }

        #[inline(always)]
        unsafe fn pack_panels(b: *const f32, ldb: usize, rows: usize, blocks: usize, pk: *mut f32) {
            // SAFETY: the trait's contract; s0-s31 are declared clobbered.
            // Four blocks at a time (one 32-float load per row, stored to
            // four panels), then a pair, then an odd last block, two rows
            // per step. `j` counts a panel's bytes down, 32 per row.
            unsafe {
                asm!(
                "subs {bl}, {bl}, #4",
                "blo 3f",
                "2:",
                "mov {s}, {src}",
                "add {db}, {da}, {rb}",
                "add {dc}, {db}, {rb}",
                "add {dd}, {dc}, {rb}",
                "mov {j}, {rb}",
                "7:",
                "vldm {s}, {{s0-s31}}",
                "add {s}, {s}, {ldb}",
                "vstmia {da}!, {{s0-s7}}",
                "vstmia {db}!, {{s8-s15}}",
                "vstmia {dc}!, {{s16-s23}}",
                "vstmia {dd}!, {{s24-s31}}",
                "vldm {s}, {{s0-s31}}",
                "add {s}, {s}, {ldb}",
                "vstmia {da}!, {{s0-s7}}",
                "vstmia {db}!, {{s8-s15}}",
                "vstmia {dc}!, {{s16-s23}}",
                "vstmia {dd}!, {{s24-s31}}",
                "subs {j}, {j}, #64",
                "bne 7b",
                "mov {da}, {dd}",
                "add {src}, {src}, #128",
                "subs {bl}, {bl}, #4",
                "bhs 2b",
                "3:",
                "tst {bl}, #2",
                "beq 4f",
                "mov {s}, {src}",
                "add {db}, {da}, {rb}",
                "mov {j}, {rb}",
                "8:",
                "vldm {s}, {{s0-s15}}",
                "add {s}, {s}, {ldb}",
                "vldm {s}, {{s16-s31}}",
                "add {s}, {s}, {ldb}",
                "vstmia {da}!, {{s0-s7}}",
                "vstmia {da}!, {{s16-s23}}",
                "vstmia {db}!, {{s8-s15}}",
                "vstmia {db}!, {{s24-s31}}",
                "subs {j}, {j}, #64",
                "bne 8b",
                "mov {da}, {db}",
                "add {src}, {src}, #64",
                "4:",
                "tst {bl}, #1",
                "beq 5f",
                "mov {j}, {rb}",
                "9:",
                "vldm {src}, {{s0-s7}}",
                "add {src}, {src}, {ldb}",
                "vldm {src}, {{s8-s15}}",
                "add {src}, {src}, {ldb}",
                "vstmia {da}!, {{s0-s15}}",
                "subs {j}, {j}, #64",
                "bne 9b",
                "5:",
                src = inout(reg) b => _,
                ldb = in(reg) ldb * 4,
                bl = inout(reg) blocks => _,
                rb = in(reg) rows * 32,
                da = inout(reg) pk => _,
                db = out(reg) _,
                dc = out(reg) _,
                dd = out(reg) _,
                s = out(reg) _,
                j = out(reg) _,
                out("s0") _, out("s1") _, out("s2") _, out("s3") _, out("s4") _, out("s5") _, out("s6") _, out("s7") _,
                out("s8") _, out("s9") _, out("s10") _, out("s11") _, out("s12") _, out("s13") _, out("s14") _, out("s15") _,
                out("s16") _, out("s17") _, out("s18") _, out("s19") _, out("s20") _, out("s21") _, out("s22") _, out("s23") _,
                out("s24") _, out("s25") _, out("s26") _, out("s27") _, out("s28") _, out("s29") _, out("s30") _, out("s31") _,
                options(nostack),
                )
            }
        }

        #[inline(always)]
        unsafe fn axpy_rows(p: &super::RowsParams, a: *const f32, o: *mut f32, terms: usize, pairs: usize) {
            // SAFETY: the trait's contract; s0-s31 are declared clobbered.
            // The offsets are those of RowsParams' fields (usize: 4 bytes).
            // The per-block tests of `terms` go when its shape is known:
            // at least one quad, and then a last pair or none.
            unsafe {
                if terms >= 4 && terms % 4 == 2 {
                    axpy_rows_asm!(p, a, o, terms, pairs, [], [])
                } else if terms >= 4 && terms.is_multiple_of(4) {
                    axpy_rows_asm!(p, a, o, terms, pairs, [], ["b 5f"])
                } else {
                    axpy_rows_asm!(p, a, o, terms, pairs, ["beq 4f"], ["4:", "tst {tb}, #8", "beq 5f"])
                }
            }
        }

        #[inline(always)]
        unsafe fn axpy_t_8(dz: &[f32; 16], x: [*const f32; 8], out: *mut f32, steps: usize) {
            // SAFETY: the trait's contract; s0-s31 are declared clobbered.
            unsafe {
                asm!(
                "vldm {dz}, {{s24-s31}}",
                "add {dz}, {dz}, #32",
                "2:",
                "vldm {dz}, {{s0-s7}}",
                axpy_t_rows!(x0 24, x1 25; x2 26, x3 27; x4 28, x5 29; x6 30, x7 31),
                "vstmia {out}!, {{s0-s7}}",
                "subs {n}, {n}, #1",
                "bne 2b",
                dz = inout(reg) dz.as_ptr() => _,
                x0 = inout(reg) x[0] => _,
                x1 = inout(reg) x[1] => _,
                x2 = inout(reg) x[2] => _,
                x3 = inout(reg) x[3] => _,
                x4 = inout(reg) x[4] => _,
                x5 = inout(reg) x[5] => _,
                x6 = inout(reg) x[6] => _,
                x7 = inout(reg) x[7] => _,
                out = inout(reg) out => _,
                n = inout(reg) steps => _,
                out("s0") _, out("s1") _, out("s2") _, out("s3") _, out("s4") _, out("s5") _, out("s6") _, out("s7") _,
                out("s8") _, out("s9") _, out("s10") _, out("s11") _, out("s12") _, out("s13") _, out("s14") _, out("s15") _,
                out("s16") _, out("s17") _, out("s18") _, out("s19") _, out("s20") _, out("s21") _, out("s22") _, out("s23") _,
                out("s24") _, out("s25") _, out("s26") _, out("s27") _, out("s28") _, out("s29") _, out("s30") _, out("s31") _,
                options(nostack),
                )
            }
        }

        #[inline(always)]
        unsafe fn mask_16(dx: *mut f32, mask: *const f32, steps: usize) {
            // SAFETY: the trait's contract. `usat t, #1, m` is 1 when m > 0
            // as an i32, else 0; the product keeps or clears the gradient.
            unsafe {
                asm!(
                "2:",
                mask_4!(),
                mask_4!(),
                mask_4!(),
                mask_4!(),
                "subs {n}, {n}, #1",
                "bne 2b",
                m = inout(reg) mask => _,
                d = inout(reg) dx => _,
                n = inout(reg) steps => _,
                out("r2") _, out("r3") _, out("r4") _, out("r5") _,
                out("r8") _, out("r9") _, out("r10") _, out("r11") _,
                options(nostack),
                )
            }
        }
    }
}

/// Checksums of the three products on fixed inputs, that pin the device's
/// kernels to the host's twin: a host test asserts that
/// [`Kernels::M4_TWIN`] gives [`golden::CHECKSUMS`], an on-target test that
/// `Kernels::CORTEX_M4` does.
pub mod golden {
    use crate::gemm::Kernels;
    use crate::rng::Rng;

    /// `(m, n, k)`: the 784-32-10 model's output layer, and shapes that take
    /// every tail path (odd rows, partial output groups, odd `n`, `k` not a
    /// multiple of 8, more than 8 batch rows).
    pub const SHAPES: [(usize, usize, usize); 3] = [(8, 10, 32), (9, 7, 21), (3, 5, 45)];

    /// [`checksums`] of the twin (and so of the device).
    pub const CHECKSUMS: [u32; 3] = [0x81f1_3dcb, 0xc010_3ddc, 0x9dd9_1037];

    const LEN: usize = 512;

    /// FNV-1a over the outputs' bits, for forward (plain and ReLU), input
    /// grad (plain and masked) and weight grad (`dy` with a row stride
    /// wider than `n`), over [`SHAPES`].
    pub fn checksums(k: &Kernels) -> [u32; 3] {
        let mut h = [0x811c_9dc5u32; 3];
        let mut eat = |i: usize, v: &[f32]| {
            for x in v {
                for b in x.to_bits().to_le_bytes() {
                    h[i] = (h[i] ^ b as u32).wrapping_mul(0x0100_0193);
                }
            }
        };
        let mut rng = Rng::new(2026);
        let mut fill = |v: &mut [f32]| v.iter_mut().for_each(|x| *x = rng.uniform(-1.0, 1.0));
        let (mut x, mut w, mut b, mut dy) = ([0.0f32; LEN], [0.0f32; LEN], [0.0f32; LEN], [0.0f32; LEN]);
        let mut out = [0.0f32; LEN];
        for (m, n, kk) in SHAPES {
            for v in [&mut x, &mut w, &mut b, &mut dy] {
                fill(v);
            }
            // A ReLU output as the mask: zeros of both signs too.
            let mut mask = x;
            for (i, v) in mask.iter_mut().enumerate() {
                *v = if i % 7 == 3 { -0.0 } else { v.max(0.0) };
            }
            for relu in [false, true] {
                (k.forward)(&x, &w, &b, &mut out, m, n, kk, relu);
                eat(0, &out[..m * n]);
            }
            for mk in [None, Some(&mask[..])] {
                (k.input_grad)(&dy, &w, &mut out, mk, m, n, kk);
                eat(1, &out[..m * kk]);
            }
            let ldy = n + 3;
            (k.weight_grad)(&dy, ldy, &x, &mut out, m, n, kk);
            eat(2, &out[..n * kk]);
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::naive;
    use crate::gemm::tests::{check, check_step};
    use proptest::prelude::*;
    extern crate std;
    use std::vec::Vec;

    fn fillv(seed: u64, len: usize) -> Vec<f32> {
        let mut r = crate::rng::Rng::new(seed);
        (0..len).map(|_| r.uniform(-1.0, 1.0)).collect()
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// The twin's outputs, and the naive loops' (the same order of
    /// operations): equal bit for bit, and the same on a second run.
    fn twin_is_naive(m: usize, n: usize, k: usize, seed: u64) {
        let t = Kernels::M4_TWIN;
        let (x, w, b) = (fillv(seed, m * k), fillv(seed + 1, n * k), fillv(seed + 2, n));
        let ldy = n + 1;
        let dy = fillv(seed + 3, m * ldy);
        let mask: Vec<f32> = x.iter().enumerate().map(|(i, v)| if i % 5 == 1 { -0.0 } else { v.max(0.0) }).collect();
        let run = |f: &dyn Fn(&mut [f32]), len: usize| -> Vec<u32> {
            let mut o = std::vec![7.0f32; len + 1];
            f(&mut o);
            assert_eq!(o[len], 7.0, "wrote past the end");
            bits(&o[..len])
        };
        for relu in [false, true] {
            let a = run(&|o| (t.forward)(&x, &w, &b, o, m, n, k, relu), m * n);
            let z = run(&|o| naive::forward(&x, &w, &b, o, m, n, k, relu), m * n);
            assert_eq!(a, z, "forward m={m} n={n} k={k} relu={relu}");
            assert_eq!(a, run(&|o| (t.forward)(&x, &w, &b, o, m, n, k, relu), m * n), "forward not deterministic");
        }
        let dyc = &dy[..m * n];
        for mk in [None, Some(&mask[..])] {
            let a = run(&|o| (t.input_grad)(dyc, &w, o, mk, m, n, k), m * k);
            let z = run(&|o| naive::input_grad(dyc, &w, o, mk, m, n, k), m * k);
            assert_eq!(a, z, "input_grad m={m} n={n} k={k} mask={}", mk.is_some());
        }
        let a = run(&|o| (t.weight_grad)(&dy, ldy, &x, o, m, n, k), n * k);
        let z = run(&|o| naive::weight_grad(&dy, ldy, &x, o, m, n, k), n * k);
        assert_eq!(a, z, "weight_grad m={m} n={n} k={k}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn twin_matches_naive(m in 0usize..20, n in 0usize..20, k in 0usize..70, seed in 0u64..1000) {
            twin_is_naive(m, n, k, seed);
            if m > 0 && n > 0 && k > 0 {
                check(&Kernels::M4_TWIN, m, n, k, seed);
            }
        }
    }

    #[test]
    fn twin_on_model_shapes() {
        for &(m, n, k) in
            &[(8, 32, 784), (8, 10, 32), (1, 32, 784), (7, 10, 32), (8, 10, 128), (3, 300, 16), (5, 258, 24)]
        {
            twin_is_naive(m, n, k, 3);
        }
    }

    #[test]
    fn twin_weight_grad_step_matches_unfused() {
        for &(m, n, k) in &[(1, 1, 1), (8, 5, 17), (9, 9, 33), (0, 2, 3)] {
            check_step(&Kernels::M4_TWIN, m, n, k, 4);
        }
    }

    /// The golden checksums that the on-target test asserts for the device's
    /// kernels (update both from this test's message when the kernels'
    /// arithmetic changes on purpose).
    #[test]
    fn twin_golden_checksums() {
        let got = golden::checksums(&Kernels::M4_TWIN);
        assert_eq!(got, golden::CHECKSUMS, "golden::CHECKSUMS should be {got:#010x?}");
        assert_eq!(got, golden::checksums(&Kernels::NAIVE), "the naive loops differ from the twin");
    }
}
