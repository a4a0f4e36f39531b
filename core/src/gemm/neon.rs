//! aarch64 kernels with NEON intrinsics (32 × 128-bit registers, 4 lanes).
//!
//! NEON is part of the aarch64 baseline (every `aarch64-*` target with an
//! FPU enables it), so [`NEON`] is a plain constant: no run-time detection.
//! The design follows the x86 sets (`gemm::x86`), with one shape per
//! product sized for 32 registers:
//!
//! * **forward** (`y = x·wᵀ + b`), batches of `m ≥ 8` rows and `n > 12`
//!   outputs, and **forward_panels** (any batch, weights packed once by
//!   `gemm::pack_panels` in panels of [`PANEL`] outputs): broadcast-FMA
//!   ("axpy") tiles of `MR` rows × `NV` vectors over `wᵀ`, the sum over `k`
//!   in blocks whose slice of `wᵀ` (transposed 4 × 4 at a time into a stack
//!   buffer, or read in place from the panels) stays in L1 while all row
//!   tiles use it; bias on the first block, ReLU on the last. Per element
//!   both sum from the bias in increasing `k`, so they agree bit for bit.
//!   When at most 70 % of the inputs are nonzero (ReLU outputs, image
//!   backgrounds), tiles of two rows walk each row's nonzero bit mask and
//!   skip the zero inputs, as on x86 (8 vectors wide in training, one
//!   panel wide on packed weights).
//!   Otherwise (fewer than 8 rows, or a thin layer such as 512→10) forward
//!   takes dot products along `k` in tiles of `MR × NR` vector accumulators,
//!   each reduced across lanes at the end.
//! * **input grad** (`dx = dy·w`) and **weight grad** (`dw = dyᵀ·x`): the
//!   same axpy tiles with other strides; input grad blocks the sum over `n`
//!   (partial sums through `dx`, the block of `w` copied to the stack, the
//!   ReLU mask on the last block); weight grad keeps the whole sum over `m`
//!   in registers and, fused with an optimizer, steps the parameters under
//!   each tile while its gradients are still in registers.
//! * **Skipping zero gradients.** Behind a ReLU, `dy` is zero wherever the
//!   unit was off. When at most 70 % of `dy` is nonzero, input grad runs as
//!   forward's sparse tiles with `dy` as the inputs and `w` as `wᵀ`, and
//!   weight grad transposes `dy` 64 rows of `dw` at a time and walks each
//!   row's nonzero mask over a packed block of `x`, with the fused optimizer
//!   epilogue. Each element stays one FMA chain in order from zero, so the
//!   values equal the dense tiles' bit for bit, as on x86.
//! * **sgd** and **adam**: vectorized with the scalar rounding (separate
//!   multiply, add, divide and square root; NEON's `fsqrt`/`fdiv` are
//!   correctly rounded), so bit-identical to the scalar rules.
//!
//! Products use `fmla` (fused multiply-add), as the x86 sets do: results
//! match the naive loops within rounding, not bit for bit.
//!
//! Vector tails are loaded and stored through a 4-float stack buffer (NEON
//! has no masked loads), so no access ever goes past a slice.

use super::Kernels;
use crate::optim::AdamStep;
use core::arch::aarch64::*;

/// The NEON kernel set.
pub const NEON: Kernels = Kernels {
    name: "neon",
    forward,
    forward_cols,
    panel: PANEL,
    forward_panels,
    input_grad,
    input_grad_cols: Some(input_grad_cols),
    weight_grad,
    weight_grad_step,
    sgd,
    adam,
};

/// Lanes per vector.
const W: usize = 4;
/// Rows per axpy tile (then 2, then 1 for the remainder).
const MR: usize = 6;
/// Vectors per axpy tile row: `MR·NV` = 24 accumulators, `NV` operand
/// vectors and a broadcast fit in the 32 registers.
const NV: usize = 4;
/// Outputs per panel of the packed layout: one tile's width.
pub const PANEL: usize = NV * W;
/// Dot-product forward tile: `DMR` rows × `DNR` columns of accumulators.
const DMR: usize = 4;
const DNR: usize = 4;
/// Inputs per block of the broadcast-FMA forward (rows of the `wᵀ` block).
const FWD_KB: usize = 64;
/// Rows of `w` per block of the sum in input grad.
const IG_NB: usize = 64;
/// Vectors per row of the zero-skipping tiles in training (forward, input
/// and weight grad): a nonzero's mask walk, broadcast and addressing cost
/// as much as 4 FMAs, so a tile one panel wide would save little.
const SPARSE_NV: usize = 8;

type V = float32x4_t;

// ---------------------------------------------------------------------------
// Vector helpers. Pointers must be valid for the lanes touched.

#[inline(always)]
unsafe fn load(p: *const f32) -> V {
    // SAFETY: the caller guarantees 4 readable floats.
    unsafe { vld1q_f32(p) }
}

/// The first `n` lanes (`1 ≤ n ≤ 4`), the others zero.
#[inline(always)]
unsafe fn load_n(p: *const f32, n: usize) -> V {
    let mut t = [0.0f32; W];
    // SAFETY: the caller guarantees n readable floats.
    unsafe {
        core::ptr::copy_nonoverlapping(p, t.as_mut_ptr(), n);
        vld1q_f32(t.as_ptr())
    }
}

#[inline(always)]
unsafe fn load_l(p: *const f32, last: bool, n: usize) -> V {
    // SAFETY: forwarded.
    unsafe {
        if last {
            load_n(p, n)
        } else {
            load(p)
        }
    }
}

#[inline(always)]
unsafe fn store(p: *mut f32, v: V) {
    // SAFETY: the caller guarantees 4 writable floats.
    unsafe { vst1q_f32(p, v) }
}

/// Stores the first `n` lanes (`1 ≤ n ≤ 4`).
#[inline(always)]
unsafe fn store_n(p: *mut f32, v: V, n: usize) {
    let mut t = [0.0f32; W];
    // SAFETY: the caller guarantees n writable floats.
    unsafe {
        vst1q_f32(t.as_mut_ptr(), v);
        core::ptr::copy_nonoverlapping(t.as_ptr(), p, n);
    }
}

#[inline(always)]
unsafe fn store_l(p: *mut f32, v: V, last: bool, n: usize) {
    // SAFETY: forwarded.
    unsafe {
        if last {
            store_n(p, v, n)
        } else {
            store(p, v)
        }
    }
}

#[inline(always)]
unsafe fn splat(p: *const f32) -> V {
    // SAFETY: the caller guarantees *p readable.
    unsafe { vld1q_dup_f32(p) }
}

/// `a·b + c`, one rounding.
#[inline(always)]
fn fma(a: V, b: V, c: V) -> V {
    // SAFETY: register-only; NEON is enabled for the whole target.
    unsafe { vfmaq_f32(c, a, b) }
}

#[inline(always)]
fn zero() -> V {
    // SAFETY: register-only.
    unsafe { vdupq_n_f32(0.0) }
}

/// `v` with lanes zeroed where `mask <= 0` (NaN keeps, like the naive loop).
#[inline(always)]
fn mask_le0(v: V, mask: V) -> V {
    // SAFETY: register-only.
    unsafe {
        let le = vclezq_f32(mask);
        vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(v), le))
    }
}

/// Bit `l` set where lane `l` of `v` is nonzero (NaN included).
#[inline(always)]
fn nz_bits(v: V) -> u32 {
    const LANE_BIT: [u32; W] = [1, 2, 4, 8];
    // SAFETY: register-only, and a load of the 4-word constant.
    unsafe { vaddvq_u32(vbicq_u32(vld1q_u32(LANE_BIT.as_ptr()), vceqzq_f32(v))) }
}

/// Nonzeros (NaN included) among `len` floats.
#[inline(always)]
unsafe fn nonzeros(x: *const f32, len: usize) -> usize {
    // SAFETY: reads x[..len]; the partial tail's other lanes are zero.
    unsafe {
        // A nonzero lane's test is all ones, -1: subtracting it counts it.
        let (mut ones, mut c) = (vdupq_n_u32(0), 0);
        while c < len {
            let n = W.min(len - c);
            ones = vsubq_u32(ones, vmvnq_u32(vceqzq_f32(load_l(x.add(c), n < W, n))));
            c += n;
        }
        vaddvq_u32(ones) as usize
    }
}

// ---------------------------------------------------------------------------
// Safe entry points: bounds checks, then the raw-pointer code.

fn prod(a: usize, b: usize) -> usize {
    a.checked_mul(b).expect("gemm: size overflow")
}

fn check_forward(x: &[f32], w: &[f32], b: &[f32], y: &[f32], m: usize, n: usize, k: usize) {
    assert!(x.len() >= prod(m, k) && w.len() >= prod(n, k) && b.len() >= n && y.len() >= prod(m, n));
}

#[derive(Clone, Copy)]
struct Fwd {
    x: *const f32,
    w: *const f32,
    b: *const f32,
    y: *mut f32,
    /// Row stride of `y` (`>= n`): the whole layer's width when `n` is a
    /// column block of it.
    ldy: usize,
    m: usize,
    n: usize,
    k: usize,
    relu: bool,
}

#[allow(clippy::too_many_arguments)]
fn cols_args(
    x: &[f32],
    w: &[f32],
    b: &[f32],
    y: *mut f32,
    ldy: usize,
    m: usize,
    n: usize,
    k: usize,
    relu: bool,
) -> Fwd {
    check_forward(x, w, b, &[], 0, n, k);
    assert!(x.len() >= prod(m, k) && ldy >= n);
    Fwd { x: x.as_ptr(), w: w.as_ptr(), b: b.as_ptr(), y, ldy, m, n, k, relu }
}

#[allow(clippy::too_many_arguments)]
fn forward(x: &[f32], w: &[f32], b: &[f32], y: &mut [f32], m: usize, n: usize, k: usize, relu: bool) {
    check_forward(x, w, b, y, m, n, k);
    let f = Fwd { x: x.as_ptr(), w: w.as_ptr(), b: b.as_ptr(), y: y.as_mut_ptr(), ldy: n, m, n, k, relu };
    // SAFETY: lengths checked above.
    unsafe { forward_any(f) }
}

/// # Safety
/// See `gemm::ForwardColsFn`.
#[allow(clippy::too_many_arguments)]
unsafe fn forward_cols(
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
    // SAFETY: x, w, b checked; y is the caller's contract.
    unsafe { forward_any(cols_args(x, w, b, y, ldy, m, n, k, relu)) }
}

/// # Safety
/// See `gemm::ForwardPanelsFn`.
#[allow(clippy::too_many_arguments)]
unsafe fn forward_panels(
    x: &[f32],
    packed: &[f32],
    b: &[f32],
    y: *mut f32,
    ldy: usize,
    m: usize,
    n: usize,
    k: usize,
    relu: bool,
) {
    // SAFETY: x, packed, b checked; y is the caller's contract.
    unsafe { forward_packed::<NV>(cols_args(x, packed, b, y, ldy, m, n, k, relu), Layout::Panels, core::ptr::null()) }
}

/// Below this many rows, forward uses dot products: the transposed `wᵀ`
/// block would serve too few rows to repay its transpose.
const FWD_PACK_MIN_M: usize = 8;

/// # Safety
/// `f` describes valid matrices.
unsafe fn forward_any(f: Fwd) {
    if f.n == 0 {
        return;
    }
    // SAFETY: forwarded. The choice depends on the whole layer (ldy, m),
    // never on a column block, so results do not depend on the split.
    unsafe {
        if f.ldy > 12 && f.m >= FWD_PACK_MIN_M {
            forward_packed::<SPARSE_NV>(f, Layout::Rows, core::ptr::null())
        } else {
            forward_dot(f)
        }
    }
}

fn check_input_grad(dy: &[f32], w: &[f32], dx: &[f32], mask: Option<&[f32]>, m: usize, n: usize, k: usize) {
    let mk = prod(m, k);
    assert!(dy.len() >= prod(m, n) && w.len() >= prod(n, k) && dx.len() >= mk);
    assert!(mask.is_none_or(|a| a.len() >= mk));
}

fn input_grad(dy: &[f32], w: &[f32], dx: &mut [f32], mask: Option<&[f32]>, m: usize, n: usize, k: usize) {
    check_input_grad(dy, w, dx, mask, m, n, k);
    let mask = mask.map_or(core::ptr::null(), |a| a.as_ptr());
    // SAFETY: lengths checked.
    unsafe { input_grad_impl(dy.as_ptr(), w.as_ptr(), dx.as_mut_ptr(), mask, m, n, k, k) }
}

/// # Safety
/// See `gemm::InputGradColsFn`.
#[allow(clippy::too_many_arguments)]
unsafe fn input_grad_cols(
    dy: &[f32],
    w: &[f32],
    dx: *mut f32,
    ld: usize,
    mask: Option<&[f32]>,
    m: usize,
    n: usize,
    k: usize,
) {
    // A block of k columns of w[n][ld] (and of mask[m][ld]).
    let span = |rows: usize| {
        if rows == 0 || k == 0 {
            0
        } else {
            prod(rows - 1, ld).checked_add(k).expect("gemm: size overflow")
        }
    };
    assert!(ld >= k && dy.len() >= prod(m, n) && w.len() >= span(n));
    assert!(mask.is_none_or(|a| a.len() >= span(m)));
    let mask = mask.map_or(core::ptr::null(), |a| a.as_ptr());
    // SAFETY: dy, w, mask checked; dx is the caller's contract.
    unsafe { input_grad_impl(dy.as_ptr(), w.as_ptr(), dx, mask, m, n, k, ld) }
}

fn check_weight_grad(dy: &[f32], ldy: usize, x: &[f32], dw: &[f32], m: usize, n: usize, k: usize) {
    assert!(ldy >= n && x.len() >= prod(m, k) && dw.len() >= prod(n, k));
    if m > 0 && n > 0 {
        assert!(dy.len() >= prod(m - 1, ldy).checked_add(n).expect("gemm: size overflow"));
    }
}

fn weight_grad(dy: &[f32], ldy: usize, x: &[f32], dw: &mut [f32], m: usize, n: usize, k: usize) {
    check_weight_grad(dy, ldy, x, dw, m, n, k);
    // SAFETY: lengths checked.
    unsafe { weight_grad_impl(dy.as_ptr(), ldy, x.as_ptr(), dw.as_mut_ptr(), m, n, k, None) }
}

#[allow(clippy::too_many_arguments)]
fn weight_grad_step(
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
    let nk = prod(n, k);
    // The dense tiles keep the whole sum over m in registers; the sparse
    // ones carry partial sums through the scratch past 64 rows of dy.
    check_weight_grad(dy, ldy, x, w, m, n, k);
    assert!(scratch.len() >= nk, "weight_grad_step: scratch is smaller than w");
    let [sm, sv] = state;
    let rule = match rule {
        super::Rule::Sgd { lr, weight_decay } => StepRule::Sgd { lr, wd: weight_decay },
        super::Rule::Adam(c) => {
            assert!(sm.len() >= nk && sv.len() >= nk, "weight_grad_step: Adam state is smaller than w");
            StepRule::Adam(*c)
        }
    };
    let step = TileStep { w: w.as_mut_ptr(), sm: sm.as_mut_ptr(), sv: sv.as_mut_ptr(), rule };
    // SAFETY: lengths checked; the tiles write only w and the state.
    unsafe { weight_grad_impl(dy.as_ptr(), ldy, x.as_ptr(), scratch.as_mut_ptr(), m, n, k, Some(step)) }
}

fn sgd(params: &mut [f32], grads: &[f32], lr: f32, wd: f32) {
    assert_eq!(params.len(), grads.len(), "sgd: params and grads differ in length");
    let (p, g, n) = (params.as_mut_ptr(), grads.as_ptr(), params.len());
    let step = StepRule::Sgd { lr, wd };
    let mut i = 0;
    // SAFETY: p and g hold n floats; the tail is partial.
    unsafe {
        while i < n {
            let len = W.min(n - i);
            step_vec(
                &step,
                p.add(i),
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                load_l(g.add(i), len < W, len),
                len,
            );
            i += len;
        }
    }
}

fn adam(c: &AdamStep, params: &mut [f32], grads: &[f32], m: &mut [f32], v: &mut [f32]) {
    let n = params.len();
    assert!(grads.len() == n && m.len() == n && v.len() == n, "adam: buffers differ in length");
    let (p, g, m, v) = (params.as_mut_ptr(), grads.as_ptr(), m.as_mut_ptr(), v.as_mut_ptr());
    let step = StepRule::Adam(*c);
    let mut i = 0;
    // SAFETY: p, g, m, v hold n floats; the tail is partial.
    unsafe {
        while i < n {
            let len = W.min(n - i);
            step_vec(&step, p.add(i), m.add(i), v.add(i), load_l(g.add(i), len < W, len), len);
            i += len;
        }
    }
}

// ---------------------------------------------------------------------------
// Optimizer steps, one vector at a time.

#[derive(Clone, Copy)]
enum StepRule {
    Sgd { lr: f32, wd: f32 },
    Adam(AdamStep),
}

/// Where a fused weight-grad tile applies its step: the pointers address
/// the tile's first element (row stride `k`, like `dw`).
#[derive(Clone, Copy)]
struct TileStep {
    w: *mut f32,
    sm: *mut f32,
    sv: *mut f32,
    rule: StepRule,
}

impl TileStep {
    /// The same step for the parameters `o` floats further on.
    ///
    /// # Safety
    /// They lie inside the buffers.
    #[inline(always)]
    unsafe fn at(self, o: usize) -> TileStep {
        let adam = matches!(self.rule, StepRule::Adam(_));
        // SAFETY: the caller's contract.
        unsafe {
            TileStep {
                w: self.w.add(o),
                sm: if adam { self.sm.add(o) } else { self.sm },
                sv: if adam { self.sv.add(o) } else { self.sv },
                rule: self.rule,
            }
        }
    }
}

/// One optimizer step on `len ≤ 4` parameters at `p` (and Adam state at
/// `m`, `v`) with gradients `g`, in the scalar rules' operations and order,
/// each separately rounded (see `optim::adam_update`, `optim::Sgd`).
#[inline(always)]
unsafe fn step_vec(rule: &StepRule, p: *mut f32, m: *mut f32, v: *mut f32, g: V, len: usize) {
    let last = len < W;
    // SAFETY: the caller guarantees len valid floats at p (and m, v for
    // Adam); register ops need only NEON.
    unsafe {
        let pv = load_l(p, last, len);
        match *rule {
            StepRule::Sgd { lr, wd } => {
                let u = vmulq_f32(vdupq_n_f32(lr), vaddq_f32(g, vmulq_f32(vdupq_n_f32(wd), pv)));
                store_l(p, vsubq_f32(pv, u), last, len);
            }
            StepRule::Adam(c) => {
                let (mut pv, mut gv) = (pv, g);
                if c.decoupled {
                    pv = vmulq_f32(pv, vdupq_n_f32(c.decay));
                } else {
                    gv = vaddq_f32(gv, vmulq_f32(vdupq_n_f32(c.weight_decay), pv));
                }
                let mv = load_l(m, last, len);
                let vv = load_l(v, last, len);
                let mv = vaddq_f32(vmulq_f32(vdupq_n_f32(c.beta1), mv), vmulq_f32(vdupq_n_f32(c.one_minus_beta1), gv));
                let vv = vaddq_f32(
                    vmulq_f32(vdupq_n_f32(c.beta2), vv),
                    vmulq_f32(vmulq_f32(vdupq_n_f32(c.one_minus_beta2), gv), gv),
                );
                let denom = vaddq_f32(vdivq_f32(vsqrtq_f32(vv), vdupq_n_f32(c.bc2_sqrt)), vdupq_n_f32(c.eps));
                let pv = vsubq_f32(pv, vdivq_f32(vmulq_f32(vdupq_n_f32(c.step_size), mv), denom));
                store_l(m, mv, last, len);
                store_l(v, vv, last, len);
                store_l(p, pv, last, len);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Forward: dot-product tiles.

/// Tiles of `DMR × DNR` outputs (remainders 1 row, 1–3 columns).
unsafe fn forward_dot(f: Fwd) {
    // SAFETY: every tile stays inside the checked m×n / ×k.
    unsafe {
        let mut j = 0;
        while j < f.n {
            let nr = DNR.min(f.n - j);
            let mut i = 0;
            while i + DMR <= f.m {
                match nr {
                    4 => dot_tile::<DMR, 4>(f, i, j),
                    3 => dot_tile::<DMR, 3>(f, i, j),
                    2 => dot_tile::<DMR, 2>(f, i, j),
                    _ => dot_tile::<DMR, 1>(f, i, j),
                }
                i += DMR;
            }
            while i < f.m {
                match nr {
                    4 => dot_tile::<1, 4>(f, i, j),
                    3 => dot_tile::<1, 3>(f, i, j),
                    2 => dot_tile::<1, 2>(f, i, j),
                    _ => dot_tile::<1, 1>(f, i, j),
                }
                i += 1;
            }
            j += nr;
        }
    }
}

/// `y[i..i+R][j..j+C]`: `R·C` vector accumulators along `k`, each summed
/// across its lanes at the end, then the bias and ReLU. Per element the
/// same arithmetic whatever the tile, so results do not depend on `m` or
/// the column split.
// Its own function: inlined into the dispatch, LLVM spills accumulators.
#[inline(never)]
#[allow(clippy::needless_range_loop)] // acc[r][c] is indexed both ways
unsafe fn dot_tile<const R: usize, const C: usize>(f: Fwd, i: usize, j: usize) {
    let k = f.k;
    // SAFETY: rows i..i+R of x and j..j+C of w exist; loads stay below k.
    unsafe {
        let (x, w) = (f.x.add(i * k), f.w.add(j * k));
        let mut acc = [[zero(); C]; R];
        let mut p = 0;
        while p < k {
            let len = W.min(k - p);
            let last = len < W;
            let mut xv = [zero(); R];
            for (r, v) in xv.iter_mut().enumerate() {
                *v = load_l(x.add(r * k + p), last, len);
            }
            for c in 0..C {
                let wv = load_l(w.add(c * k + p), last, len);
                for r in 0..R {
                    acc[r][c] = fma(xv[r], wv, acc[r][c]);
                }
            }
            p += len;
        }
        for r in 0..R {
            let y = f.y.add((i + r) * f.ldy + j);
            for c in 0..C {
                let v = vaddvq_f32(acc[r][c]) + *f.b.add(j + c);
                *y.add(c) = if f.relu && v < 0.0 { 0.0 } else { v };
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Broadcast-FMA tiles (forward on wᵀ, input grad, weight grad).

/// `out[r][..cols] (+)= Σ_{t < t_len} a[r·ars + t·ats] · b[t·ldb ..][..cols]`
/// for the tile's rows, with `cols = (NV' - 1)·W + tail`.
#[derive(Clone, Copy)]
struct Axpy {
    a: *const f32,
    ars: usize,
    ats: usize,
    b: *const f32,
    ldb: usize,
    t_len: usize,
    out: *mut f32,
    ldo: usize,
    /// Same layout as `out`, null for none: lanes where it is `<= 0` are
    /// zeroed before storing.
    mask: *const f32,
    /// Accumulate into `out` (else start from `bias`, or zero if null).
    acc_in: bool,
    bias: *const f32,
    /// Zero lanes `<= 0` before storing.
    relu: bool,
    /// Instead of storing the sums, step the parameters under the tile.
    step: Option<TileStep>,
}

/// `R` rows × `N` vectors; the last vector has `tail` lanes when `TAIL`.
// Its own function: inlined into the callers, LLVM spills accumulators.
#[inline(never)]
unsafe fn axpy_tile<const R: usize, const N: usize, const TAIL: bool>(t: Axpy, tail: usize) {
    // SAFETY: the caller sizes the tile inside the checked matrices; the
    // last vector is partial when TAIL.
    unsafe {
        let last = |c: usize| TAIL && c == N - 1;
        let mut acc = [[zero(); N]; R];
        if t.acc_in {
            for (r, row) in acc.iter_mut().enumerate() {
                let o = t.out.add(r * t.ldo);
                for (c, v) in row.iter_mut().enumerate() {
                    *v = load_l(o.add(c * W), last(c), tail);
                }
            }
        } else if !t.bias.is_null() {
            for c in 0..N {
                let v = load_l(t.bias.add(c * W), last(c), tail);
                for row in acc.iter_mut() {
                    row[c] = v;
                }
            }
        }
        let mut ap = t.a;
        let mut bp = t.b;
        for _ in 0..t.t_len {
            let mut bv = [zero(); N];
            for (c, v) in bv.iter_mut().enumerate() {
                *v = load_l(bp.add(c * W), last(c), tail);
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let s = splat(ap.add(r * t.ars));
                for (c, v) in row.iter_mut().enumerate() {
                    *v = fma(s, bv[c], *v);
                }
            }
            ap = ap.add(t.ats);
            bp = bp.add(t.ldb);
        }
        if let Some(st) = t.step {
            // Through a stack buffer and a separate function: were the
            // epilogue's (not unrolled) loops to index `acc`, LLVM would
            // keep the accumulators in memory during the main loop too.
            let mut g = [zero(); MR * NV];
            for (r, row) in acc.iter().enumerate() {
                for (c, &v) in row.iter().enumerate() {
                    g[r * N + c] = v;
                }
            }
            return step_tile(&g[..R * N], N, st, t.ldo, if TAIL { tail } else { W });
        }
        for (r, row) in acc.iter().enumerate() {
            let o = t.out.add(r * t.ldo);
            for (c, &v) in row.iter().enumerate() {
                let v = if t.mask.is_null() {
                    v
                } else {
                    mask_le0(v, load_l(t.mask.add(r * t.ldo + c * W), last(c), tail))
                };
                let v = if t.relu { mask_le0(v, v) } else { v };
                store_l(o.add(c * W), v, last(c), tail);
            }
        }
    }
}

/// The epilogue of a fused weight-grad tile: one optimizer step on the
/// parameters under the tile (rows `ld` apart), with the sums in `g` (rows
/// of `nv` vectors, the last one `tail` lanes wide) as gradients.
#[inline(never)]
unsafe fn step_tile(g: &[V], nv: usize, st: TileStep, ld: usize, tail: usize) {
    let adam = matches!(st.rule, StepRule::Adam(_));
    for (r, row) in g.chunks_exact(nv).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            let off = r * ld + c * W;
            // SAFETY: the tile's parameters (and state) lie inside the
            // checked [n][k] buffers, like its gradients.
            unsafe {
                let (m, s) = if adam { (st.sm.add(off), st.sv.add(off)) } else { (st.sm, st.sv) };
                step_vec(&st.rule, st.w.add(off), m, s, v, if c == nv - 1 { tail } else { W });
            }
        }
    }
}

/// One tile of `R` rows covering `cols ≤ NV·W` columns.
#[inline(always)]
unsafe fn axpy_cols<const R: usize>(t: Axpy, cols: usize) {
    // SAFETY: forwarded.
    unsafe {
        if cols == NV * W {
            return axpy_tile::<R, NV, false>(t, W);
        }
        let nv = cols.div_ceil(W);
        let tail = cols - (nv - 1) * W;
        match nv {
            1 => axpy_tile::<R, 1, true>(t, tail),
            2 => axpy_tile::<R, 2, true>(t, tail),
            3 => axpy_tile::<R, 3, true>(t, tail),
            4 => axpy_tile::<R, 4, true>(t, tail),
            _ => unreachable!(),
        }
    }
}

/// Tiles for output rows `0..rows` (`MR`, then 2, then 1 at a time); `row`
/// gives the tile for row offset `r0`.
#[inline(always)]
unsafe fn axpy_rows(rows: usize, cols: usize, row: impl Fn(usize) -> Axpy) {
    // SAFETY: forwarded.
    unsafe {
        let mut r = 0;
        while r + MR <= rows {
            axpy_cols::<MR>(row(r), cols);
            r += MR;
        }
        while r + 2 <= rows {
            axpy_cols::<2>(row(r), cols);
            r += 2;
        }
        while r < rows {
            axpy_cols::<1>(row(r), cols);
            r += 1;
        }
    }
}

/// Rows and columns of the stack block (8 KB): one block of the
/// zero-skipping tiles.
const PACK_ROWS: usize = 64;
const PACK_COLS: usize = SPARSE_NV * W;

/// A block on the stack, cache-line aligned.
#[repr(C, align(64))]
struct Pack([core::mem::MaybeUninit<f32>; PACK_ROWS * PACK_COLS]);

impl Pack {
    #[inline(always)]
    fn new() -> Self {
        Pack([core::mem::MaybeUninit::uninit(); PACK_ROWS * PACK_COLS])
    }
    #[inline(always)]
    fn ptr(&mut self) -> *mut f32 {
        self.0.as_mut_ptr().cast()
    }
}

/// Copies `len` floats.
#[inline(always)]
unsafe fn copy_row(src: *const f32, dst: *mut f32, len: usize) {
    // SAFETY: both hold len floats.
    unsafe { core::ptr::copy_nonoverlapping(src, dst, len) }
}

/// `pack[t·ldp + c] = src[c·lds + t]` for `c < cols`, `t < rows`: a block
/// of `w` (or of `dy`) transposed, 4 × 4 at a time.
unsafe fn pack_t(src: *const f32, lds: usize, pack: *mut f32, ldp: usize, cols: usize, rows: usize) {
    // SAFETY: the caller keeps both blocks inside their buffers.
    unsafe {
        let (cf, rf) = (cols / W * W, rows / W * W);
        let mut c = 0;
        while c < cf {
            let mut t = 0;
            while t < rf {
                let s = src.add(c * lds + t);
                let r = [load(s), load(s.add(lds)), load(s.add(2 * lds)), load(s.add(3 * lds))];
                let (t0, t1) = (vtrn1q_f32(r[0], r[1]), vtrn2q_f32(r[0], r[1]));
                let (t2, t3) = (vtrn1q_f32(r[2], r[3]), vtrn2q_f32(r[2], r[3]));
                let d = |a: V| vreinterpretq_f64_f32(a);
                let e = |a: float64x2_t| vreinterpretq_f32_f64(a);
                let dst = pack.add(t * ldp + c);
                store(dst, e(vtrn1q_f64(d(t0), d(t2))));
                store(dst.add(ldp), e(vtrn1q_f64(d(t1), d(t3))));
                store(dst.add(2 * ldp), e(vtrn2q_f64(d(t0), d(t2))));
                store(dst.add(3 * ldp), e(vtrn2q_f64(d(t1), d(t3))));
                t += W;
            }
            for cc in c..c + W {
                for tt in rf..rows {
                    *pack.add(tt * ldp + cc) = *src.add(cc * lds + tt);
                }
            }
            c += W;
        }
        for cc in cf..cols {
            for tt in 0..rows {
                *pack.add(tt * ldp + cc) = *src.add(cc * lds + tt);
            }
        }
    }
}

/// Where [`forward_packed`] finds each block of `wᵀ`.
#[derive(Clone, Copy, PartialEq)]
enum Layout {
    /// `w[n][k]`, transposed block by block into a stack buffer.
    Rows,
    /// Packed by `gemm::pack_panels` with panels of [`PANEL`] (read in
    /// place; then `f.w` is the packed weights).
    Panels,
    /// Already `wᵀ`, as `[k][ldy]` (input grad's `w`); copied block by
    /// block into a stack buffer.
    InputRows,
}

/// Forward as axpy tiles: `y[i][j..j+BNV·W] = b + Σ_p x[i][p] · wᵀ[p][j..]`.
/// Output column blocks of `BNV·W`; the sum over `k` in blocks of
/// [`FWD_KB`]; partial sums go through `y`, bias on the first block, ReLU
/// on the last. `layout` says where the blocks of `wᵀ` come from. A null
/// `f.b` starts the sums from zero; a non-null `mask` (laid out as `y`)
/// zeroes the outputs where it is `<= 0`.
///
/// When at most [`SPARSE_MAX_DENSITY`] of a group of rows' inputs are
/// nonzero (ReLU outputs, image backgrounds), the tiles skip the zero ones
/// (see [`sparse_tile`]). Per element, every path sums from the bias in
/// increasing `p`, so all give the same values (a skipped term adds `±0`,
/// given finite weights).
unsafe fn forward_packed<const BNV: usize>(f: Fwd, layout: Layout, mask: *const f32) {
    let mut pack = Pack::new();
    let mut masks = [0u64; SPARSE_ROWS * SPARSE_BLOCKS];
    let kb = FWD_KB;
    // SAFETY: all tiles lie inside x[m][k], w[n][k] (or wᵀ[k][ldy]), b[n],
    // y[m][ldy] (and mask, laid out as y); the packed block is
    // pb ≤ PACK_ROWS rows of cols ≤ PACK_COLS.
    unsafe {
        let nc = BNV * W;
        debug_assert!(nc <= PACK_COLS && kb <= PACK_ROWS);
        let pk = pack.ptr();
        let mut i0 = 0;
        while i0 < f.m {
            let rows = SPARSE_ROWS.min(f.m - i0);
            let x = f.x.add(i0 * f.k);
            let y = f.y.add(i0 * f.ldy);
            let mut q0 = 0;
            loop {
                let q1 = q0 + (kb * SPARSE_BLOCKS).min(f.k - q0);
                // A thin layer's tile is one vector wide: the mask walk
                // would cost more than the FMAs it saves. (Decided from the
                // whole layer's width, so that splits agree.)
                let sparse = f.ldy > SPARSE_MIN_WIDTH && nonzero_masks(x.add(q0), f.k, rows, q1 - q0, kb, &mut masks);
                let mut j = 0;
                while j < f.n {
                    let cols = nc.min(f.n - j);
                    let mut p = q0;
                    loop {
                        let pb = kb.min(q1 - p);
                        let last = p + pb == f.k;
                        let (blk, ldb) = match layout {
                            Layout::Panels => (f.w.add(j * f.k + p * cols), cols),
                            Layout::Rows => {
                                pack_t(f.w.add(j * f.k + p), f.k, pk, PACK_COLS, cols, pb);
                                (pk.cast_const(), PACK_COLS)
                            }
                            Layout::InputRows => {
                                for t in 0..pb {
                                    copy_row(f.w.add((p + t) * f.ldy + j), pk.add(t * PACK_COLS), cols);
                                }
                                (pk.cast_const(), PACK_COLS)
                            }
                        };
                        let bias = if p == 0 && !f.b.is_null() { f.b.add(j) } else { core::ptr::null() };
                        let relu = f.relu && last;
                        // The output mask at row q (of the whole matrix),
                        // column j + c0, on the last block.
                        let omask = |q: usize, c0: usize| {
                            if last && !mask.is_null() {
                                mask.add(q * f.ldy + j + c0)
                            } else {
                                core::ptr::null()
                            }
                        };
                        if sparse {
                            let blkm = &masks[(p - q0) / kb..];
                            let mut r = 0;
                            while r < rows {
                                let two = r + 1 < rows;
                                let r1 = r + usize::from(two);
                                let row = |q: usize| (x.add(q * f.k + p), y.add(q * f.ldy + j));
                                let ((x0, y0), (x1, y1)) = (row(r), row(r1));
                                let t = Sparse {
                                    x: [x0, x1],
                                    mask: [blkm[r * SPARSE_BLOCKS], if two { blkm[r1 * SPARSE_BLOCKS] } else { 0 }],
                                    b: blk,
                                    ldb,
                                    out: [y0, y1],
                                    bias,
                                    acc_in: p > 0,
                                    relu,
                                    omask: [omask(i0 + r, 0), omask(i0 + r1, 0)],
                                    step: None,
                                    ldo: f.ldy,
                                };
                                if two {
                                    sparse_cols::<2, BNV, false>(t, cols);
                                } else {
                                    sparse_cols::<1, BNV, false>(t, cols);
                                }
                                r += 2;
                            }
                        } else {
                            // Dense tiles NV vectors wide across the block.
                            let mut c0 = 0;
                            while c0 < cols {
                                let cw = (NV * W).min(cols - c0);
                                axpy_rows(rows, cw, |i| Axpy {
                                    a: x.add(i * f.k + p),
                                    ars: f.k,
                                    ats: 1,
                                    b: blk.add(c0),
                                    ldb,
                                    t_len: pb,
                                    out: y.add(i * f.ldy + j + c0),
                                    ldo: f.ldy,
                                    mask: omask(i0 + i, c0),
                                    acc_in: p > 0,
                                    bias: if bias.is_null() { bias } else { bias.add(c0) },
                                    relu,
                                    step: None,
                                });
                                c0 += cw;
                            }
                        }
                        p += pb;
                        if p == q1 {
                            break;
                        }
                    }
                    j += cols;
                }
                q0 = q1;
                if q0 == f.k {
                    break;
                }
            }
            i0 += rows;
        }
    }
}

/// Rows and `FWD_KB`-blocks of inputs whose nonzero masks
/// [`forward_packed`] keeps at once (8 KB of stack).
const SPARSE_ROWS: usize = 64;
const SPARSE_BLOCKS: usize = 16;

/// Above this share of nonzero inputs, dense tiles are taken (as on x86;
/// not tuned for any aarch64 core, see the README).
const SPARSE_MAX_DENSITY: f32 = 0.7;

/// Layers at most this wide always use dense tiles.
const SPARSE_MIN_WIDTH: usize = 32;

/// `masks[r·SPARSE_BLOCKS + b]` = bit `t` set where `x[r·ldx + b·kb + t]`
/// is nonzero (NaN included), for `r < rows`, `b·kb + t < len`. Returns
/// whether the inputs are sparse enough to skip the zeros.
unsafe fn nonzero_masks(x: *const f32, ldx: usize, rows: usize, len: usize, kb: usize, masks: &mut [u64]) -> bool {
    // SAFETY: reads x[r·ldx + c] for c < len only.
    unsafe {
        let mut ones = 0u32;
        for r in 0..rows {
            let xr = x.add(r * ldx);
            let mut b = 0;
            while b * kb < len {
                let (c0, c1) = (b * kb, len.min((b + 1) * kb));
                let bits = nonzero_bits(xr.add(c0), c1 - c0);
                masks[r * SPARSE_BLOCKS + b] = bits;
                ones += bits.count_ones();
                b += 1;
            }
        }
        (ones as f32) <= SPARSE_MAX_DENSITY * (rows * len) as f32
    }
}

/// Bit `t` set where `x[t]` is nonzero (NaN included), for `t < len ≤ 64`.
#[inline(always)]
unsafe fn nonzero_bits(x: *const f32, len: usize) -> u64 {
    // SAFETY: reads x[..len].
    unsafe {
        let mut bits = 0u64;
        let mut t = 0;
        while t < len {
            let n = W.min(len - t);
            bits |= u64::from(nz_bits(load_l(x.add(t), n < W, n))) << t;
            t += n;
        }
        bits
    }
}

/// A [`sparse_tile`]: rows `x[r]` (at the block's first input) with nonzero
/// masks `mask[r]`, outputs `out[r]`; the block of `wᵀ` at `b`.
#[derive(Clone, Copy)]
struct Sparse {
    x: [*const f32; 2],
    mask: [u64; 2],
    b: *const f32,
    ldb: usize,
    out: [*mut f32; 2],
    /// Initial value of both rows unless `acc_in`; null for zero.
    bias: *const f32,
    acc_in: bool,
    relu: bool,
    /// Zero the outputs where these (null for none) are `<= 0`.
    omask: [*const f32; 2],
    /// As in [`Axpy`]: an optimizer step with the sums as gradients
    /// instead of storing them (then `out[1] = out[0] + ldo`).
    step: Option<TileStep>,
    ldo: usize,
}

/// `R ≤ 2` rows × `N` vectors of outputs, summing only the inputs whose
/// mask bit is set. Two rows interleave their (different) nonzeros so that
/// `2·N` independent accumulators hide the FMA latency; each row's sum
/// still runs in increasing input order.
#[inline(never)]
#[allow(clippy::needless_range_loop)] // two rows of acc per index
unsafe fn sparse_tile<const R: usize, const N: usize, const TAIL: bool, const STEP: bool>(t: Sparse, tail: usize) {
    // SAFETY: the caller sizes the tile inside the checked matrices; set
    // mask bits index inputs inside the block.
    unsafe {
        let last = |c: usize| TAIL && c == N - 1;
        let mut acc = [[zero(); N]; R];
        for (r, row) in acc.iter_mut().enumerate() {
            let src = if t.acc_in { t.out[r].cast_const() } else { t.bias };
            if !src.is_null() {
                for (c, v) in row.iter_mut().enumerate() {
                    *v = load_l(src.add(c * W), last(c), tail);
                }
            }
        }
        let mut m = t.mask;
        if R == 2 {
            while m[0] != 0 && m[1] != 0 {
                let (p0, p1) = (m[0].trailing_zeros() as usize, m[1].trailing_zeros() as usize);
                m[0] &= m[0] - 1;
                m[1] &= m[1] - 1;
                let (s0, s1) = (splat(t.x[0].add(p0)), splat(t.x[1].add(p1)));
                let (b0, b1) = (t.b.add(p0 * t.ldb), t.b.add(p1 * t.ldb));
                for c in 0..N {
                    acc[0][c] = fma(s0, load_l(b0.add(c * W), last(c), tail), acc[0][c]);
                    acc[R - 1][c] = fma(s1, load_l(b1.add(c * W), last(c), tail), acc[R - 1][c]);
                }
            }
        }
        for (r, row) in acc.iter_mut().enumerate() {
            while m[r] != 0 {
                let p = m[r].trailing_zeros() as usize;
                m[r] &= m[r] - 1;
                let s = splat(t.x[r].add(p));
                let bp = t.b.add(p * t.ldb);
                for (c, v) in row.iter_mut().enumerate() {
                    *v = fma(s, load_l(bp.add(c * W), last(c), tail), *v);
                }
            }
        }
        // STEP is a constant so that the other tiles get no stack frame
        // for the buffer (inference calls many small tiles).
        if let Some(st) = t.step.filter(|_| STEP) {
            // Through a stack buffer, as in `axpy_tile`.
            let mut g = [zero(); 2 * SPARSE_NV];
            for (r, row) in acc.iter().enumerate() {
                for (c, &v) in row.iter().enumerate() {
                    g[r * N + c] = v;
                }
            }
            return step_tile(&g[..R * N], N, st, t.ldo, if TAIL { tail } else { W });
        }
        for (r, row) in acc.iter().enumerate() {
            for (c, &v) in row.iter().enumerate() {
                let v = if t.relu { mask_le0(v, v) } else { v };
                store_l(t.out[r].add(c * W), v, last(c), tail);
            }
        }
        for r in 0..R {
            if !t.omask[r].is_null() {
                mask_stored(t.out[r], t.omask[r], N, if TAIL { tail } else { W });
            }
        }
    }
}

/// Zeroes the `nv` vectors (the last one `tail` lanes) at `out` where
/// `mask <= 0`. Applied after the stores: in the tile's epilogue, the
/// masks' loads made LLVM keep the accumulators in memory in its loops.
#[inline(always)]
unsafe fn mask_stored(out: *mut f32, mask: *const f32, nv: usize, tail: usize) {
    for c in 0..nv {
        let n = if c == nv - 1 { tail } else { W };
        // SAFETY: the caller's tile lies inside out and mask.
        unsafe {
            let o = out.add(c * W);
            store_l(o, mask_le0(load_l(o, n < W, n), load_l(mask.add(c * W), n < W, n)), n < W, n);
        }
    }
}

/// One [`sparse_tile`] covering `cols ≤ BNV·W` columns.
#[inline(always)]
unsafe fn sparse_cols<const R: usize, const BNV: usize, const STEP: bool>(t: Sparse, cols: usize) {
    // SAFETY: forwarded.
    unsafe {
        if cols == BNV * W {
            return sparse_tile::<R, BNV, false, STEP>(t, W);
        }
        let nv = cols.div_ceil(W);
        let tail = cols - (nv - 1) * W;
        // Whole vectors (as at the end of a 784-wide row) need no partial
        // loads, which go through the stack.
        if tail == W {
            return match nv {
                1 => sparse_tile::<R, 1, false, STEP>(t, W),
                2 => sparse_tile::<R, 2, false, STEP>(t, W),
                3 => sparse_tile::<R, 3, false, STEP>(t, W),
                4 => sparse_tile::<R, 4, false, STEP>(t, W),
                5 => sparse_tile::<R, 5, false, STEP>(t, W),
                6 => sparse_tile::<R, 6, false, STEP>(t, W),
                7 => sparse_tile::<R, 7, false, STEP>(t, W),
                _ => unreachable!(),
            };
        }
        match nv {
            1 => sparse_tile::<R, 1, true, STEP>(t, tail),
            2 => sparse_tile::<R, 2, true, STEP>(t, tail),
            3 => sparse_tile::<R, 3, true, STEP>(t, tail),
            4 => sparse_tile::<R, 4, true, STEP>(t, tail),
            5 => sparse_tile::<R, 5, true, STEP>(t, tail),
            6 => sparse_tile::<R, 6, true, STEP>(t, tail),
            7 => sparse_tile::<R, 7, true, STEP>(t, tail),
            8 => sparse_tile::<R, 8, true, STEP>(t, tail),
            _ => unreachable!(),
        }
    }
}

/// `dx[m][k] = dy[m][n]·w[n][k]` (row stride `ld` for `w`, `dx`, `mask`),
/// masked; when `dy` is mostly zeros, as [`forward_packed`]'s zero-skipping
/// tiles. Otherwise column blocks of `NV·W`; the sum over `n` in blocks of
/// [`IG_NB`] rows of `w`, each copied to a contiguous stack buffer that
/// stays in L1 while all row tiles use it (in place, rows `ld` floats apart
/// alias onto few L1 sets when `ld` is a power of two).
#[allow(clippy::too_many_arguments)]
unsafe fn input_grad_impl(
    dy: *const f32,
    w: *const f32,
    dx: *mut f32,
    mask: *const f32,
    m: usize,
    n: usize,
    k: usize,
    ld: usize,
) {
    // A ReLU layer's dy is mostly zeros: dx = dy·w is then a forward whose
    // inputs are dy and whose `wᵀ` is w itself, and the forward's sparse
    // tiles skip the zeros. Every path sums each element in increasing `n`
    // from zero, so all give the same values. (Decided from the whole
    // layer's width `ld`, as forward decides.)
    let mn = m * n;
    // SAFETY: reads dy[m][n] only.
    if n > 0 && ld > SPARSE_MIN_WIDTH && unsafe { nonzeros(dy, mn) } as f32 <= SPARSE_MAX_DENSITY * mn as f32 {
        let f = Fwd { x: dy, w, b: core::ptr::null(), y: dx, ldy: ld, m, n: k, k: n, relu: false };
        // SAFETY: as below: the forward reads dy[m][n] and the first k
        // columns of w[n][ld], writes (and masks by) dx[m][ld].
        return unsafe { forward_packed::<SPARSE_NV>(f, Layout::InputRows, mask) };
    }
    let mut pack = Pack::new();
    // SAFETY: all tiles lie inside dy[m][n] and the first k columns of
    // w[n][ld], dx/mask[m][ld]; the packed block is jb ≤ PACK_ROWS rows of
    // cols ≤ PACK_COLS.
    unsafe {
        let kc = NV * W;
        let pk = pack.ptr();
        let mut p = 0;
        while p < k {
            let cols = kc.min(k - p);
            let tile = |i: usize, j: usize, jb: usize, last: bool| Axpy {
                a: dy.add(i * n + j),
                ars: n,
                ats: 1,
                b: pk,
                ldb: kc,
                t_len: jb,
                out: dx.add(i * ld + p),
                ldo: ld,
                mask: if mask.is_null() || !last { core::ptr::null() } else { mask.add(i * ld + p) },
                acc_in: j > 0,
                bias: core::ptr::null(),
                relu: false,
                step: None,
            };
            if n == 0 {
                axpy_rows(m, cols, |i| tile(i, 0, 0, true));
            }
            let mut j = 0;
            while j < n {
                let jb = IG_NB.min(n - j).min(PACK_ROWS);
                for t in 0..jb {
                    copy_row(w.add((j + t) * ld + p), pk.add(t * kc), cols);
                }
                axpy_rows(m, cols, |i| tile(i, j, jb, j + jb == n));
                j += jb;
            }
            p += cols;
        }
    }
}

/// `dw[n][k] = dyᵀ·x` (or, with `step`, the optimizer step with it as the
/// gradient): column blocks of `NV·W`, `MR` rows of `dw` per tile, the whole
/// sum over `m` in registers, streaming `m × NV·W` of `x` per tile; or, when
/// `dy` is mostly zeros, [`weight_grad_sparse`] (which needs `dw`, the
/// scratch when stepping, for partial sums).
#[allow(clippy::too_many_arguments)]
unsafe fn weight_grad_impl(
    dy: *const f32,
    ldy: usize,
    x: *const f32,
    dw: *mut f32,
    m: usize,
    n: usize,
    k: usize,
    step: Option<TileStep>,
) {
    // SAFETY: forwarded.
    if m > 0 && k > SPARSE_MIN_WIDTH && unsafe { weight_grad_sparse(dy, ldy, x, dw, m, n, k, step) } {
        return;
    }
    // SAFETY: all tiles lie inside dy (stride ldy), x[m][k], dw[n][k] (and
    // the step's w, m, v, shaped like dw).
    unsafe {
        let kc = NV * W;
        let mut p = 0;
        while p < k {
            let cols = kc.min(k - p);
            axpy_rows(n, cols, |j| Axpy {
                a: dy.add(j),
                ars: 1,
                ats: ldy,
                b: x.add(p),
                ldb: k,
                t_len: m,
                out: dw.add(j * k + p),
                ldo: k,
                mask: core::ptr::null(),
                acc_in: false,
                bias: core::ptr::null(),
                relu: false,
                step: step.map(|s| s.at(j * k + p)),
            });
            p += cols;
        }
    }
}

/// Rows of `dw` (columns of `dy`) whose coefficients [`weight_grad_sparse`]
/// transposes at once.
const WG_SPARSE_ROWS: usize = 64;

/// A block of `dyᵀ`: `WG_SPARSE_ROWS` rows of up to `PACK_ROWS` batch rows
/// (16 KB).
#[repr(C, align(64))]
struct DyT([core::mem::MaybeUninit<f32>; WG_SPARSE_ROWS * PACK_ROWS]);

/// Weight grad that skips zero gradients: a ReLU layer's `dy` is zero
/// wherever its output was, typically half the batch. Per block of 64 rows
/// of `dw` and 64 rows of the batch, the block of `dy` is transposed (each
/// row of `dw` then reads its coefficients in order) with each row's
/// nonzero bit mask; [`sparse_tile`]s of two rows of `dw` walk the masks
/// over a packed block of `x`, partial sums going through `dw` (the
/// scratch, when stepping) past 64 rows. A block denser than
/// [`SPARSE_MAX_DENSITY`] runs dense tiles on the same packed operands.
/// Returns false, having done nothing, when the whole `dy` is that dense
/// (the dense path then reads `dy` in place). Every path sums each element
/// in increasing `t` from zero, so all give the same values.
#[allow(clippy::too_many_arguments)]
unsafe fn weight_grad_sparse(
    dy: *const f32,
    ldy: usize,
    x: *const f32,
    dw: *mut f32,
    m: usize,
    n: usize,
    k: usize,
    step: Option<TileStep>,
) -> bool {
    // SAFETY: reads dy[t·ldy + j] for t < m, j < n; tiles lie inside x[m][k]
    // and dw[n][k] (and the step's buffers, shaped like dw); the stack
    // blocks hold WG_SPARSE_ROWS × PACK_ROWS and PACK_ROWS × PACK_COLS
    // floats.
    unsafe {
        let ones: usize = (0..m).map(|t| nonzeros(dy.add(t * ldy), n)).sum();
        if ones as f32 > SPARSE_MAX_DENSITY * (m * n) as f32 {
            return false;
        }
        let nc = SPARSE_NV * W;
        let mut pack = Pack::new();
        let mut dyt = DyT([core::mem::MaybeUninit::uninit(); WG_SPARSE_ROWS * PACK_ROWS]);
        let (pk, dt) = (pack.ptr(), dyt.0.as_mut_ptr().cast::<f32>());
        let mut masks = [0u64; WG_SPARSE_ROWS];
        let mut j0 = 0;
        while j0 < n {
            let nj = WG_SPARSE_ROWS.min(n - j0);
            let mut i = 0;
            while i < m {
                let ib = PACK_ROWS.min(m - i);
                let last = i + ib == m;
                // dt[r·PACK_ROWS + t] = dy[(i + t)·ldy + j0 + r].
                pack_t(dy.add(i * ldy + j0), ldy, dt, PACK_ROWS, ib, nj);
                let mut ones = 0;
                for (r, mk) in masks.iter_mut().enumerate().take(nj) {
                    *mk = nonzero_bits(dt.add(r * PACK_ROWS), ib);
                    ones += mk.count_ones() as usize;
                }
                let sparse = ones as f32 <= SPARSE_MAX_DENSITY * (nj * ib) as f32;
                let mut p = 0;
                while p < k {
                    let cols = nc.min(k - p);
                    for t in 0..ib {
                        copy_row(x.add((i + t) * k + p), pk.add(t * PACK_COLS), cols);
                    }
                    // The step of the tile at row j of dw, column p + c0
                    // (only the last block of the batch holds whole sums).
                    let step_at = |j: usize, c0: usize| step.filter(|_| last).map(|s| s.at(j * k + p + c0));
                    if sparse {
                        let mut r = 0;
                        while r < nj {
                            let two = r + 1 < nj;
                            let r1 = r + usize::from(two);
                            let out = dw.add((j0 + r) * k + p);
                            let t = Sparse {
                                x: [dt.add(r * PACK_ROWS), dt.add(r1 * PACK_ROWS)],
                                mask: [masks[r], if two { masks[r1] } else { 0 }],
                                b: pk,
                                ldb: PACK_COLS,
                                out: [out, out.add((r1 - r) * k)],
                                bias: core::ptr::null(),
                                acc_in: i > 0,
                                relu: false,
                                omask: [core::ptr::null(); 2],
                                step: step_at(j0 + r, 0),
                                ldo: k,
                            };
                            match (two, t.step.is_some()) {
                                (true, true) => sparse_cols::<2, SPARSE_NV, true>(t, cols),
                                (true, false) => sparse_cols::<2, SPARSE_NV, false>(t, cols),
                                (false, true) => sparse_cols::<1, SPARSE_NV, true>(t, cols),
                                (false, false) => sparse_cols::<1, SPARSE_NV, false>(t, cols),
                            }
                            r += 2;
                        }
                    } else {
                        let mut c0 = 0;
                        while c0 < cols {
                            let cw = (NV * W).min(cols - c0);
                            axpy_rows(nj, cw, |r| Axpy {
                                a: dt.add(r * PACK_ROWS),
                                ars: PACK_ROWS,
                                ats: 1,
                                b: pk.add(c0),
                                ldb: PACK_COLS,
                                t_len: ib,
                                out: dw.add((j0 + r) * k + p + c0),
                                ldo: k,
                                mask: core::ptr::null(),
                                acc_in: i > 0,
                                bias: core::ptr::null(),
                                relu: false,
                                step: step_at(j0 + r, c0),
                            });
                            c0 += cw;
                        }
                    }
                    p += cols;
                }
                i += ib;
            }
            j0 += nj;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::super::tests::{check, check_adam, check_panels, check_sgd, check_step};
    use super::super::{naive, Kernels};
    use super::NEON;
    use proptest::prelude::*;
    use std::vec::Vec;

    fn fill(seed: u64, n: usize) -> Vec<f32> {
        let mut r = crate::rng::Rng::new(seed);
        (0..n).map(|_| r.uniform(-1.0, 1.0)).collect()
    }

    fn close(a: &[f32], b: &[f32], k: usize, what: &str) {
        let tol = 1e-5 * (k as f32).sqrt() * 4.0 + 1e-6;
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{what} elem {i}: {x} vs {y}");
        }
    }

    /// Like `gemm::tests::check` without its 4096-element limit, plus a
    /// strided `dy` with `ldy > n` and a canary past every output.
    fn check_big(kern: &Kernels, m: usize, n: usize, k: usize, seed: u64) {
        crate::gemm::kernel_set_tested("f32 neon", "neon (baseline on aarch64)", true);
        let (x, w, b, dy) = (fill(seed, m * k), fill(seed + 1, n * k), fill(seed + 2, n), fill(seed + 3, m * n));
        for relu in [false, true] {
            let mut y0 = std::vec![0.0; m * n];
            let mut y1 = std::vec![7.0; m * n + 1];
            naive::forward(&x, &w, &b, &mut y0, m, n, k, relu);
            (kern.forward)(&x, &w, &b, &mut y1, m, n, k, relu);
            close(&y1[..m * n], &y0, k, "forward");
            assert_eq!(y1[m * n], 7.0, "forward wrote past the end");
        }
        for mask in [None, Some(&x[..])] {
            let mut d0 = std::vec![0.0; m * k];
            let mut d1 = std::vec![7.0; m * k + 1];
            naive::input_grad(&dy, &w, &mut d0, mask, m, n, k);
            (kern.input_grad)(&dy, &w, &mut d1, mask, m, n, k);
            close(&d1[..m * k], &d0, n, "input_grad");
            assert_eq!(d1[m * k], 7.0, "input_grad wrote past the end");
        }
        // dy as columns 1..n+1 of an [m][n + 3] matrix.
        let ldy = n + 3;
        let dys = fill(seed + 4, m * ldy);
        let mut g0 = std::vec![0.0; n * k];
        let mut g1 = std::vec![7.0; n * k + 1];
        naive::weight_grad(&dys[1..], ldy, &x, &mut g0, m, n, k);
        (kern.weight_grad)(&dys[1..(m - 1) * ldy + n + 1], ldy, &x, &mut g1, m, n, k);
        close(&g1[..n * k], &g0, m, "weight_grad");
        assert_eq!(g1[n * k], 7.0, "weight_grad wrote past the end");
    }

    const ODD: [usize; 10] = [1, 2, 3, 5, 16, 17, 33, 63, 65, 513];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn neon_matches_naive_small(m in 1usize..20, n in 1usize..20, k in 1usize..70, seed in 0u64..1000) {
            check(&NEON, m, n, k, seed);
            check_panels(&NEON, m, n, k, seed);
        }

        #[test]
        fn neon_matches_naive_odd(mi in 0usize..10, ni in 0usize..10, ki in 0usize..10, seed in 0u64..1000) {
            let (m, n, k) = (ODD[mi].min(70), ODD[ni].min(70), ODD[ki]);
            check_big(&NEON, m, n, k, seed);
        }

        #[test]
        fn neon_step_matches_unfused(m in 0usize..20, n in 1usize..20, k in 1usize..40, seed in 0u64..1000) {
            check_step(&NEON, m, n, k, seed);
        }
    }

    #[test]
    fn neon_odd_sizes() {
        for &(m, n, k) in &[(1, 1, 1), (3, 17, 63), (5, 3, 65), (1, 7, 513), (17, 1, 33), (4, 4, 16)] {
            check(&NEON, m, n, k, 9);
        }
    }

    #[test]
    fn neon_sgd_adam_match_optimizer() {
        for n in [0, 1, 3, 4, 5, 7, 15, 16, 17, 63, 100, 4096] {
            check_sgd(&NEON, n, n as u64);
            check_adam(&NEON, n, n as u64);
        }
    }

    /// Column blocks of input grad equal the whole, bit for bit.
    #[test]
    fn neon_input_grad_cols_matches_whole() {
        let cols = NEON.input_grad_cols.expect("neon has input_grad_cols");
        for &(m, n, k) in &[(1, 1, 1), (5, 3, 17), (64, 130, 100), (7, 10, 513), (3, 70, 100)] {
            let (dy, w, x) = (fill(1, m * n), fill(2, n * k), fill(3, m * k));
            for mask in [None, Some(&x[..])] {
                let mut whole = std::vec![0.0; m * k];
                (NEON.input_grad)(&dy, &w, &mut whole, mask, m, n, k);
                let mut parts = std::vec![7.0; m * k];
                let mut p0 = 0;
                for width in [16, 1, 33, 96].iter().cycle() {
                    if p0 >= k {
                        break;
                    }
                    let r = (*width).min(k - p0);
                    // SAFETY: columns p0..p0 + r of parts[m][k].
                    unsafe {
                        cols(&dy, &w[p0..], parts.as_mut_ptr().add(p0), k, mask.map(|a| &a[p0..]), m, n, r);
                    }
                    p0 += r;
                }
                assert!(whole == parts, "input_grad_cols differs (m={m} n={n} k={k})");
            }
        }
    }

    #[test]
    fn neon_weight_grad_step_matches_unfused() {
        for &(m, n, k) in &[(1, 1, 1), (3, 5, 17), (64, 40, 100), (130, 33, 47), (5, 70, 513), (0, 2, 3)] {
            check_step(&NEON, m, n, k, 6);
        }
    }

    /// Bit for bit the FMA chain of each element at any sparsity (see
    /// `gemm::tests::check_weight_grad_fma_chain`).
    #[test]
    fn weight_grad_is_the_fma_chain_at_any_sparsity() {
        super::super::tests::check_weight_grad_fma_chain(&NEON);
    }

    #[test]
    fn input_grad_is_the_fma_chain_at_any_sparsity() {
        super::super::tests::check_input_grad_fma_chain(&NEON);
    }

    #[test]
    fn neon_model_shapes() {
        for &(m, n, k) in &[(64, 512, 784), (64, 10, 512), (1, 512, 784), (5, 13, 100), (130, 40, 100), (9, 100, 17)] {
            check_big(&NEON, m, n, k, 3);
            check_panels(&NEON, m, n, k, 3);
        }
    }

    #[test]
    fn neon_zero_sizes() {
        let (x, w, b) = ([1.0f32; 6], [1.0f32; 6], [0.5f32; 3]);
        let mut y = [9.0f32; 6];
        (NEON.forward)(&x, &w, &b, &mut y, 2, 3, 0, false);
        assert_eq!(y, [0.5; 6]);
        // The broadcast-FMA path (m ≥ 8, n > 12) with k = 0.
        let mut y = [9.0f32; 9 * 13 + 1];
        (NEON.forward)(&[], &[], &[0.5; 13], &mut y[..9 * 13], 9, 13, 0, true);
        assert!(y[..9 * 13].iter().all(|&v| v == 0.5) && y[9 * 13] == 9.0);
        let mut dx = [9.0f32; 6];
        (NEON.input_grad)(&[], &w, &mut dx, None, 2, 0, 3);
        assert_eq!(dx, [0.0; 6]);
        let mut dw = [9.0f32; 6];
        (NEON.weight_grad)(&[], 3, &x, &mut dw, 0, 3, 2);
        assert_eq!(dw, [0.0; 6]);
    }
}
