//! x86-64 kernels with explicit intrinsics: an AVX2+FMA set (16 × 256-bit
//! registers) and an AVX-512F/VL set (32 × 512-bit registers).
//!
//! Both sets share one generic implementation over the [`Isa`] trait; every
//! generic function is `#[inline(always)]`, so it is compiled inside the
//! `#[target_feature]` entry points (`*_avx2` / `*_avx512`) with the right
//! instructions. The public surface is [`avx2_fma`] and [`avx512`], `unsafe`
//! constructors whose contract is that the CPU has the features; the safe
//! `fn`s in the returned [`Kernels`] check slice lengths, then run on raw
//! pointers.
//!
//! * **forward** (`y = x·wᵀ + b`), batches of `m ≥ 8` rows and `n > 12`
//!   outputs: the same broadcast-FMA tiles as input grad (below) over
//!   `wᵀ`: output column blocks of `NV` vectors, the sum over `k` in blocks
//!   whose `k × NV·W` slice of `w` is transposed (`W × W` register
//!   transposes) into a stack buffer; bias on the first block, ReLU on the
//!   last. When at most 70 % of the inputs are nonzero (ReLU outputs, image
//!   backgrounds), tiles of two rows walk each row's nonzero bit mask and
//!   skip the zero inputs. **forward_panels** runs the same tiles, for any
//!   batch, on weights packed once in the panel layout (`gemm::pack_panels`;
//!   panels of 128 outputs with AVX-512, so that two threads split a
//!   512-wide layer evenly and a sparse tile does 16 FMAs per input pair)
//!   instead of transposing them per call. Otherwise (fewer than 8 rows, or
//!   a thin layer such as 512→10) the unpacked forward takes dot products
//!   along `k`: a tile of `MR` rows of `x` × `NR` rows of `w` keeps `MR·NR`
//!   vector accumulators, reduced horizontally four at a time at the end.
//! * **input grad** (`dx = dy·w`) and **weight grad** (`dw = dyᵀ·x`): both
//!   are `out[r][p..] = Σ_t a(r, t) · b[t][p..]` with different strides for
//!   the coefficients `a`, computed by one broadcast-FMA ("axpy") tile of
//!   `MR` output rows × `NV` vectors. Column blocks of `b` are sized to stay
//!   in L1 while all row tiles sweep them; for input grad the reduction over
//!   `n` is blocked too (partial sums go through `dx`), the block of `w` is
//!   packed, and the ReLU mask is applied when the last block is stored; for
//!   weight grad the block of `x` is copied to a contiguous buffer (in place,
//!   a power-of-two `k` maps its rows onto a few L1 sets).
//! * **Skipping zero gradients.** Behind a ReLU, `dy` is zero wherever the
//!   unit was off. When at most 70 % of `dy` is nonzero, input grad runs as
//!   forward's sparse tiles with `dy` as the inputs and `w` as `wᵀ`, and
//!   weight grad transposes `dy` 64 rows of `dw` at a time and walks each
//!   row's nonzero mask over a packed block of `x`. Each element stays one
//!   FMA chain in order from zero, so the values equal the dense tiles' bit
//!   for bit.
//! * **weight grad + step**: SGD's step runs in each tile's epilogue, on
//!   the sums still in registers; Adam's runs over the whole gradient once
//!   it is summed, where the divider its step waits on stays busy.
//! * **sgd** (`p -= lr·(g + wd·p)`) and **adam**: vectorized, with the
//!   scalar rounding.
//!
//! Each micro-kernel is compiled as its own small function (see
//! [`Isa::run`]): inlined into one big function, LLVM's register allocator
//! spilled the accumulators.

use super::Kernels;
use core::arch::x86_64::*;

use crate::optim::AdamStep;

/// The AVX2+FMA kernel set.
///
/// # Safety
/// The CPU must support AVX2 and FMA (`is_x86_feature_detected!("avx2")`
/// and `("fma")`); the kernels execute those instructions unconditionally.
pub unsafe fn avx2_fma() -> Kernels {
    Kernels {
        name: "avx2",
        forward: forward_avx2,
        forward_cols: forward_cols_avx2,
        panel: AVX2_PANEL,
        forward_panels: forward_panels_avx2,
        input_grad: input_grad_avx2,
        input_grad_cols: Some(input_grad_cols_avx2),
        weight_grad: weight_grad_avx2,
        weight_grad_step: weight_grad_step_avx2,
        sgd: sgd_avx2,
        adam: adam_avx2,
    }
}

/// The AVX-512 kernel set (AVX-512F and VL, plus AVX2 and FMA instructions).
///
/// # Safety
/// The CPU must support AVX-512F, AVX-512VL, AVX2 and FMA. (VL matters for
/// speed: without it, values touched by 256-bit instructions are confined to
/// 16 registers and the accumulators spill.)
pub unsafe fn avx512() -> Kernels {
    Kernels {
        name: "avx512",
        forward: forward_avx512,
        forward_cols: forward_cols_avx512,
        panel: AVX512_PANEL,
        forward_panels: forward_panels_avx512,
        input_grad: input_grad_avx512,
        input_grad_cols: Some(input_grad_cols_avx512),
        weight_grad: weight_grad_avx512,
        weight_grad_step: weight_grad_step_avx512,
        sgd: sgd_avx512,
        adam: adam_avx512,
    }
}

// ---------------------------------------------------------------------------
// Safe wrappers: bounds checks, then the target-feature code.

fn prod(a: usize, b: usize) -> usize {
    a.checked_mul(b).expect("gemm: size overflow")
}

fn check_forward(x: &[f32], w: &[f32], b: &[f32], y: &[f32], m: usize, n: usize, k: usize) {
    assert!(x.len() >= prod(m, k) && w.len() >= prod(n, k) && b.len() >= n && y.len() >= prod(m, n));
}

fn check_input_grad(dy: &[f32], w: &[f32], dx: &[f32], mask: Option<&[f32]>, m: usize, n: usize, k: usize) {
    let mk = prod(m, k);
    assert!(dy.len() >= prod(m, n) && w.len() >= prod(n, k) && dx.len() >= mk);
    assert!(mask.is_none_or(|a| a.len() >= mk));
}

/// A block of `k` columns of `w[n][ld]` (and of `mask[m][ld]`).
fn check_input_grad_cols(dy: &[f32], w: &[f32], mask: Option<&[f32]>, ld: usize, m: usize, n: usize, k: usize) {
    let span = |rows: usize| {
        if rows == 0 || k == 0 {
            0
        } else {
            prod(rows - 1, ld).checked_add(k).expect("gemm: size overflow")
        }
    };
    assert!(ld >= k && dy.len() >= prod(m, n) && w.len() >= span(n));
    assert!(mask.is_none_or(|a| a.len() >= span(m)));
}

fn check_weight_grad(dy: &[f32], ldy: usize, x: &[f32], dw: &[f32], m: usize, n: usize, k: usize) {
    assert!(ldy >= n && x.len() >= prod(m, k) && dw.len() >= prod(n, k));
    if m > 0 && n > 0 {
        assert!(dy.len() >= prod(m - 1, ldy).checked_add(n).expect("gemm: size overflow"));
    }
}

/// The checked arguments of a `gemm::ForwardColsFn`-shaped call (`y` is the
/// caller's contract).
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

macro_rules! entry_points {
    ($feat:literal, $S:ty, $panel:ident, $fwp:ident, $fwp_tf:ident, $fwd:ident, $fwdc:ident, $ig:ident, $igc:ident, $igc_tf:ident, $wg:ident, $wgs:ident, $sgd:ident, $fwd_tf:ident, $ig_tf:ident, $wg_tf:ident, $wgs_tf:ident, $sgd_tf:ident,
     fwd = ($MR:literal, $NR:literal, $TMR:literal, $FKB:literal), axpy = ($AMR:literal, $ANV:literal, $NB:literal), panels = ($PMR:literal, $PNV:literal, $PSR:literal, $PBNV:literal),
     sparse = ($FSR:literal, $FSNV:literal), wsparse = ($WSR:literal, $WSNV:literal)) => {
        #[allow(clippy::too_many_arguments)]
        fn $fwd(x: &[f32], w: &[f32], b: &[f32], y: &mut [f32], m: usize, n: usize, k: usize, relu: bool) {
            check_forward(x, w, b, y, m, n, k);
            let f = Fwd { x: x.as_ptr(), w: w.as_ptr(), b: b.as_ptr(), y: y.as_mut_ptr(), ldy: n, m, n, k, relu };
            // SAFETY: lengths checked above; the features are promised by
            // the caller of the constructor that handed out this fn.
            unsafe { $fwd_tf(f) }
        }

        /// # Safety
        /// See `gemm::ForwardColsFn`.
        #[allow(clippy::too_many_arguments)]
        unsafe fn $fwdc(
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
            unsafe { $fwd_tf(cols_args(x, w, b, y, ldy, m, n, k, relu)) }
        }

        /// Panel width of the packed layout `$fwp` reads: its sparse
        /// tiles' width.
        const $panel: usize = $PBNV * <$S as Isa>::W;

        /// # Safety
        /// See `gemm::ForwardPanelsFn`.
        #[allow(clippy::too_many_arguments)]
        unsafe fn $fwp(
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
            unsafe { $fwp_tf(cols_args(x, packed, b, y, ldy, m, n, k, relu)) }
        }

        #[target_feature(enable = $feat)]
        unsafe fn $fwp_tf(f: Fwd) {
            // SAFETY: forwarded from the wrapper.
            unsafe { forward_packed::<$S, $PMR, $PNV, $PSR, $PBNV>(f, $FKB, Layout::Panels, core::ptr::null()) }
        }

        #[target_feature(enable = $feat)]
        unsafe fn $fwd_tf(f: Fwd) {
            // SAFETY: forwarded from the wrapper. The choice depends on the
            // whole layer (ldy, m), not on a column block, so that results
            // do not depend on how the outputs are split.
            unsafe {
                if f.n == 0 {
                    return;
                }
                if f.ldy > 12 && f.m >= FWD_PACK_MIN_M {
                    forward_packed::<$S, $AMR, $ANV, $FSR, $FSNV>(f, $FKB, Layout::Rows, core::ptr::null())
                } else {
                    forward_impl::<$S, $MR, $NR, $TMR>(f)
                }
            }
        }

        fn $ig(dy: &[f32], w: &[f32], dx: &mut [f32], mask: Option<&[f32]>, m: usize, n: usize, k: usize) {
            check_input_grad(dy, w, dx, mask, m, n, k);
            let mask = mask.map_or(core::ptr::null(), |a| a.as_ptr());
            // SAFETY: as for forward.
            unsafe { $ig_tf(dy.as_ptr(), w.as_ptr(), dx.as_mut_ptr(), mask, m, n, k) }
        }

        #[target_feature(enable = $feat)]
        unsafe fn $ig_tf(dy: *const f32, w: *const f32, dx: *mut f32, mask: *const f32, m: usize, n: usize, k: usize) {
            // SAFETY: forwarded from the wrapper.
            unsafe { input_grad_impl::<$S, $AMR, $ANV, $FSR, $FSNV>(dy, w, dx, mask, m, n, k, k, $NB, $FKB) }
        }

        /// # Safety
        /// See `gemm::InputGradColsFn`.
        #[allow(clippy::too_many_arguments)]
        unsafe fn $igc(
            dy: &[f32],
            w: &[f32],
            dx: *mut f32,
            ld: usize,
            mask: Option<&[f32]>,
            m: usize,
            n: usize,
            k: usize,
        ) {
            check_input_grad_cols(dy, w, mask, ld, m, n, k);
            let mask = mask.map_or(core::ptr::null(), |a| a.as_ptr());
            // SAFETY: dy, w, mask checked; dx is the caller's contract.
            unsafe { $igc_tf(dy.as_ptr(), w.as_ptr(), dx, ld, mask, m, n, k) }
        }

        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = $feat)]
        unsafe fn $igc_tf(
            dy: *const f32,
            w: *const f32,
            dx: *mut f32,
            ld: usize,
            mask: *const f32,
            m: usize,
            n: usize,
            k: usize,
        ) {
            // SAFETY: forwarded from the wrapper.
            unsafe { input_grad_impl::<$S, $AMR, $ANV, $FSR, $FSNV>(dy, w, dx, mask, m, n, k, ld, $NB, $FKB) }
        }

        fn $wg(dy: &[f32], ldy: usize, x: &[f32], dw: &mut [f32], m: usize, n: usize, k: usize) {
            check_weight_grad(dy, ldy, x, dw, m, n, k);
            // SAFETY: as for forward.
            unsafe { $wg_tf(dy.as_ptr(), ldy, x.as_ptr(), dw.as_mut_ptr(), m, n, k) }
        }

        #[target_feature(enable = $feat)]
        unsafe fn $wg_tf(dy: *const f32, ldy: usize, x: *const f32, dw: *mut f32, m: usize, n: usize, k: usize) {
            // SAFETY: forwarded from the wrapper.
            unsafe { weight_grad_impl::<$S, $AMR, $ANV, $WSR, $WSNV>(dy, ldy, x, dw, m, n, k, None) }
        }

        #[allow(clippy::too_many_arguments)]
        fn $wgs(
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
            check_weight_grad(dy, ldy, x, scratch, m, n, k);
            assert!(w.len() >= nk, "weight_grad_step: w holds {} of {nk} floats", w.len());
            let [sm, sv] = state;
            let step = match rule {
                super::Rule::Sgd { lr, weight_decay } => {
                    Step::Sgd(TileStep { w: w.as_mut_ptr(), lr, wd: weight_decay })
                }
                super::Rule::Adam(c) => {
                    assert!(sm.len() >= nk && sv.len() >= nk, "weight_grad_step: Adam state is smaller than w");
                    Step::Adam { w: w.as_mut_ptr(), sm: sm.as_mut_ptr(), sv: sv.as_mut_ptr(), c: *c }
                }
            };
            // SAFETY: as for forward; the step's buffers were checked too.
            unsafe { $wgs_tf(dy.as_ptr(), ldy, x.as_ptr(), scratch.as_mut_ptr(), m, n, k, step) }
        }

        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = $feat)]
        unsafe fn $wgs_tf(
            dy: *const f32,
            ldy: usize,
            x: *const f32,
            dw: *mut f32,
            m: usize,
            n: usize,
            k: usize,
            step: Step,
        ) {
            // SAFETY: forwarded from the wrapper; dw, w and the state each
            // hold n·k floats.
            unsafe {
                match step {
                    Step::Sgd(t) => weight_grad_impl::<$S, $AMR, $ANV, $WSR, $WSNV>(dy, ldy, x, dw, m, n, k, Some(t)),
                    // Adam's step runs over the whole gradient once it is
                    // summed, not in the tiles' epilogues. Its square root
                    // and two divisions per weight wait on the divider: a
                    // streaming loop keeps the divider busy, while after
                    // each tile the step neither overlaps the FMAs nor keeps
                    // the divider fed (the README's Speed section has the
                    // numbers).
                    Step::Adam { w, sm, sv, c } => {
                        weight_grad_impl::<$S, $AMR, $ANV, $WSR, $WSNV>(dy, ldy, x, dw, m, n, k, None);
                        adam_impl::<$S>(&c, w, dw, sm, sv, n * k);
                    }
                }
            }
        }

        fn $sgd(params: &mut [f32], grads: &[f32], lr: f32, wd: f32) {
            assert_eq!(params.len(), grads.len(), "sgd: params and grads differ in length");
            // SAFETY: as for forward.
            unsafe { $sgd_tf(params.as_mut_ptr(), grads.as_ptr(), params.len(), lr, wd) }
        }

        #[target_feature(enable = $feat)]
        unsafe fn $sgd_tf(p: *mut f32, g: *const f32, n: usize, lr: f32, wd: f32) {
            // SAFETY: forwarded from the wrapper.
            unsafe { sgd_impl::<$S>(p, g, n, lr, wd) }
        }
    };
}

// AVX2 has 16 registers: a broadcast-FMA tile needs MR·NV accumulators +
// NV vectors of `b` + a broadcast. 6 × 2 (15) leaves LLVM room; 4 × 3 (16)
// made it spill an accumulator to the stack inside the loop, and the
// store-to-load round trip on that chain halved the FMA rate. Sparse tiles
// (forward, input and weight grad, packed panels) are one row × 8 vectors:
// 8 accumulators hide the FMA latency with one mask walk and one broadcast
// per 8 FMAs. On Zen 4 that beat two rows × 4 vectors by 8–10 % of a
// training step and 11 % of batch-64 inference. Dense tiles are 6 × 2, and
// leftover rows (all of batch 1) run one at a time 8 vectors wide.
entry_points!(
    "avx2,fma",
    Avx2,
    AVX2_PANEL,
    forward_panels_avx2,
    forward_panels_avx2_tf,
    forward_avx2,
    forward_cols_avx2,
    input_grad_avx2,
    input_grad_cols_avx2,
    input_grad_cols_avx2_tf,
    weight_grad_avx2,
    weight_grad_step_avx2,
    sgd_avx2,
    forward_avx2_tf,
    input_grad_avx2_tf,
    weight_grad_avx2_tf,
    weight_grad_step_avx2_tf,
    sgd_avx2_tf,
    fwd = (2, 6, 1, 64),
    axpy = (6, 2, 64),
    panels = (6, 2, 1, 8),
    sparse = (1, 8),
    wsparse = (1, 8)
);
entry_points!(
    "avx512f,avx512vl,avx2,fma",
    Avx512,
    AVX512_PANEL,
    forward_panels_avx512,
    forward_panels_avx512_tf,
    forward_avx512,
    forward_cols_avx512,
    input_grad_avx512,
    input_grad_cols_avx512,
    input_grad_cols_avx512_tf,
    weight_grad_avx512,
    weight_grad_step_avx512,
    sgd_avx512,
    forward_avx512_tf,
    input_grad_avx512_tf,
    weight_grad_avx512_tf,
    weight_grad_step_avx512_tf,
    sgd_avx512_tf,
    fwd = (4, 6, 2, 64),
    axpy = (4, 6, 64),
    panels = (2, 8, 2, 8),
    sparse = (2, 6),
    wsparse = (2, 6)
);

// ---------------------------------------------------------------------------
// The vector abstraction.

/// One SIMD width. All methods are `unsafe`: pointers must be valid for the
/// lanes touched, and the CPU must have the features (they are only called
/// from inside the matching `#[target_feature]` functions).
trait Isa {
    type V: Copy;
    /// Lanes per vector.
    const W: usize;
    unsafe fn zero() -> Self::V;
    unsafe fn load(p: *const f32) -> Self::V;
    /// The first `n` lanes (`1 ≤ n ≤ W`), the others zero; never touches
    /// memory past lane `n`.
    unsafe fn load_n(p: *const f32, n: usize) -> Self::V;
    unsafe fn store(p: *mut f32, v: Self::V);
    /// Stores the first `n` lanes (`1 ≤ n ≤ W`).
    unsafe fn store_n(p: *mut f32, v: Self::V, n: usize);
    /// Broadcast of `*p`.
    unsafe fn splat(p: *const f32) -> Self::V;
    /// `a·b + c`
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    unsafe fn set1(x: f32) -> Self::V;
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn sub(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn mul(a: Self::V, b: Self::V) -> Self::V;
    /// Correctly rounded, like the scalar operations.
    unsafe fn div(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn sqrt(a: Self::V) -> Self::V;
    /// `v` with lanes zeroed where `mask <= 0` (NaN keeps, like the naive loop).
    unsafe fn mask_le0(v: Self::V, mask: Self::V) -> Self::V;
    /// Bit `l` set where lane `l` of `v` is not `+0`/`-0` (NaN included).
    unsafe fn nz_bits(v: Self::V) -> u32;
    /// The horizontal sums of four vectors.
    unsafe fn hsum4(a: Self::V, b: Self::V, c: Self::V, d: Self::V) -> [f32; 4];
    /// `dst[c·ldd + r] = src[r·lds + c]` for a `W × W` block.
    unsafe fn transpose(src: *const f32, lds: usize, dst: *mut f32, ldd: usize);
    /// Runs `f` inside a separate (not inlined) function compiled with this
    /// ISA's features. Each micro-kernel goes through it, so that it gets a
    /// small function of its own: inlined into one huge function, the
    /// register allocator spills accumulators.
    unsafe fn run<R>(f: impl FnOnce() -> R) -> R;
}

#[derive(Clone, Copy)]
struct Avx2;
#[derive(Clone, Copy)]
struct Avx512;

/// `LANE_MASK[8 - n..][..8]` enables the first `n` lanes.
static LANE_MASK: [i32; 16] = [-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0];

/// Horizontal sums of four 256-bit vectors.
#[inline(always)]
unsafe fn hsum4_256(a: __m256, b: __m256, c: __m256, d: __m256) -> [f32; 4] {
    // SAFETY: register-only AVX ops; the caller has AVX.
    unsafe {
        let ab = _mm256_hadd_ps(a, b);
        let cd = _mm256_hadd_ps(c, d);
        let abcd = _mm256_hadd_ps(ab, cd);
        let s = _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps::<1>(abcd));
        let mut o = [0.0f32; 4];
        _mm_storeu_ps(o.as_mut_ptr(), s);
        o
    }
}

/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
#[inline(never)]
unsafe fn run_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// # Safety
/// The CPU must have AVX-512F, AVX-512VL, AVX2 and FMA.
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
#[inline(never)]
unsafe fn run_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

impl Isa for Avx2 {
    type V = __m256;
    const W: usize = 8;
    #[inline(always)]
    unsafe fn zero() -> __m256 {
        // SAFETY: caller has AVX.
        unsafe { _mm256_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m256 {
        // SAFETY: caller guarantees 8 readable lanes.
        unsafe { _mm256_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn load_n(p: *const f32, n: usize) -> __m256 {
        // SAFETY: masked-off lanes are not accessed (no fault); n ≤ 8 keeps
        // the table read in bounds.
        unsafe { _mm256_maskload_ps(p, _mm256_loadu_si256(LANE_MASK.as_ptr().add(8 - n).cast())) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m256) {
        // SAFETY: caller guarantees 8 writable lanes.
        unsafe { _mm256_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn store_n(p: *mut f32, v: __m256, n: usize) {
        // SAFETY: as load_n.
        unsafe { _mm256_maskstore_ps(p, _mm256_loadu_si256(LANE_MASK.as_ptr().add(8 - n).cast()), v) }
    }
    #[inline(always)]
    unsafe fn splat(p: *const f32) -> __m256 {
        // SAFETY: caller guarantees *p readable.
        unsafe { _mm256_broadcast_ss(&*p) }
    }
    #[inline(always)]
    unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
        // SAFETY: caller has FMA.
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn set1(x: f32) -> __m256 {
        // SAFETY: register-only op; caller has the features.
        unsafe { _mm256_set1_ps(x) }
    }
    #[inline(always)]
    unsafe fn add(a: __m256, b: __m256) -> __m256 {
        // SAFETY: register-only op; caller has the features.
        unsafe { _mm256_add_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn sub(a: __m256, b: __m256) -> __m256 {
        // SAFETY: register-only op; caller has the features.
        unsafe { _mm256_sub_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn mul(a: __m256, b: __m256) -> __m256 {
        // SAFETY: register-only op; caller has the features.
        unsafe { _mm256_mul_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn div(a: __m256, b: __m256) -> __m256 {
        // SAFETY: register-only op; the caller has the features.
        unsafe { _mm256_div_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn sqrt(a: __m256) -> __m256 {
        // SAFETY: register-only op; the caller has the features.
        unsafe { _mm256_sqrt_ps(a) }
    }
    #[inline(always)]
    unsafe fn mask_le0(v: __m256, mask: __m256) -> __m256 {
        // SAFETY: caller has AVX.
        unsafe { _mm256_and_ps(v, _mm256_cmp_ps::<_CMP_NLE_UQ>(mask, _mm256_setzero_ps())) }
    }
    #[inline(always)]
    unsafe fn nz_bits(v: __m256) -> u32 {
        // SAFETY: register-only ops; the caller has AVX.
        unsafe { _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_NEQ_UQ>(v, _mm256_setzero_ps())) as u32 }
    }
    #[inline(always)]
    unsafe fn hsum4(a: __m256, b: __m256, c: __m256, d: __m256) -> [f32; 4] {
        // SAFETY: caller has AVX.
        unsafe { hsum4_256(a, b, c, d) }
    }
    #[inline(always)]
    unsafe fn transpose(src: *const f32, lds: usize, dst: *mut f32, ldd: usize) {
        // SAFETY: caller guarantees the 8 × 8 blocks are accessible.
        unsafe {
            let r: [__m256; 8] = core::array::from_fn(|i| _mm256_loadu_ps(src.add(i * lds)));
            let t: [__m256; 8] = core::array::from_fn(|i| {
                let (a, b) = (r[i & !1], r[i | 1]);
                if i & 1 == 0 {
                    _mm256_unpacklo_ps(a, b)
                } else {
                    _mm256_unpackhi_ps(a, b)
                }
            });
            // s[4h + q]: from t[4h + {0,2}] (q < 2) or t[4h + {1,3}].
            let s: [__m256; 8] = core::array::from_fn(|i| {
                let (h, q) = (i / 4 * 4, i % 4);
                let (a, b) = (t[h + q / 2], t[h + q / 2 + 2]);
                if q % 2 == 0 {
                    _mm256_shuffle_ps::<0x44>(a, b)
                } else {
                    _mm256_shuffle_ps::<0xEE>(a, b)
                }
            });
            for i in 0..8 {
                let (a, b) = (s[i % 4], s[i % 4 + 4]);
                let v = if i < 4 { _mm256_permute2f128_ps::<0x20>(a, b) } else { _mm256_permute2f128_ps::<0x31>(a, b) };
                _mm256_storeu_ps(dst.add(i * ldd), v);
            }
        }
    }
    #[inline(always)]
    unsafe fn run<R>(f: impl FnOnce() -> R) -> R {
        // SAFETY: the caller has the features.
        unsafe { run_avx2(f) }
    }
}

impl Isa for Avx512 {
    type V = __m512;
    const W: usize = 16;
    #[inline(always)]
    unsafe fn zero() -> __m512 {
        // SAFETY: caller has AVX-512F.
        unsafe { _mm512_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m512 {
        // SAFETY: caller guarantees 16 readable lanes.
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn load_n(p: *const f32, n: usize) -> __m512 {
        // SAFETY: masked-off lanes are not accessed (fault suppression).
        unsafe { _mm512_maskz_loadu_ps(((1u32 << n) - 1) as u16, p) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m512) {
        // SAFETY: caller guarantees 16 writable lanes.
        unsafe { _mm512_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn store_n(p: *mut f32, v: __m512, n: usize) {
        // SAFETY: as load_n.
        unsafe { _mm512_mask_storeu_ps(p, ((1u32 << n) - 1) as u16, v) }
    }
    #[inline(always)]
    unsafe fn splat(p: *const f32) -> __m512 {
        // SAFETY: caller guarantees *p readable.
        unsafe { _mm512_set1_ps(*p) }
    }
    #[inline(always)]
    unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
        // SAFETY: caller has AVX-512F.
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn set1(x: f32) -> __m512 {
        // SAFETY: register-only op; caller has the features.
        unsafe { _mm512_set1_ps(x) }
    }
    #[inline(always)]
    unsafe fn add(a: __m512, b: __m512) -> __m512 {
        // SAFETY: register-only op; caller has the features.
        unsafe { _mm512_add_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn sub(a: __m512, b: __m512) -> __m512 {
        // SAFETY: register-only op; caller has the features.
        unsafe { _mm512_sub_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn mul(a: __m512, b: __m512) -> __m512 {
        // SAFETY: register-only op; caller has the features.
        unsafe { _mm512_mul_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn div(a: __m512, b: __m512) -> __m512 {
        // SAFETY: register-only op; the caller has the features.
        unsafe { _mm512_div_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn sqrt(a: __m512) -> __m512 {
        // SAFETY: register-only op; the caller has the features.
        unsafe { _mm512_sqrt_ps(a) }
    }
    #[inline(always)]
    unsafe fn mask_le0(v: __m512, mask: __m512) -> __m512 {
        // SAFETY: caller has AVX-512F.
        unsafe { _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_NLE_UQ>(mask, _mm512_setzero_ps()), v) }
    }
    #[inline(always)]
    unsafe fn nz_bits(v: __m512) -> u32 {
        // SAFETY: register-only op; the caller has AVX-512F.
        unsafe { _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(v, _mm512_setzero_ps()) as u32 }
    }
    #[inline(always)]
    unsafe fn hsum4(a: __m512, b: __m512, c: __m512, d: __m512) -> [f32; 4] {
        // SAFETY: caller has AVX-512F (and thus AVX).
        unsafe {
            // [a0 a1 b0 b1] + [a2 a3 b2 b3] (128-bit quarters), then the
            // same for c, d; then fold once more to one quarter per vector.
            let ab =
                _mm512_add_ps(_mm512_shuffle_f32x4::<0b01_00_01_00>(a, b), _mm512_shuffle_f32x4::<0b11_10_11_10>(a, b));
            let cd =
                _mm512_add_ps(_mm512_shuffle_f32x4::<0b01_00_01_00>(c, d), _mm512_shuffle_f32x4::<0b11_10_11_10>(c, d));
            let s = _mm512_add_ps(
                _mm512_shuffle_f32x4::<0b10_00_10_00>(ab, cd),
                _mm512_shuffle_f32x4::<0b11_01_11_01>(ab, cd),
            );
            // s = [a' b' c' d'], four lanes each: reduce inside each quarter.
            let lo = _mm512_castps512_ps256(s);
            let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(s)));
            // lo = [a' b'], hi = [c' d']
            let h = _mm256_hadd_ps(lo, hi); // a01 a23 c01 c23 | b01 b23 d01 d23
            let h = _mm256_hadd_ps(h, h); // a c a c | b d b d
            let mut o = [0.0f32; 8];
            _mm256_storeu_ps(o.as_mut_ptr(), h);
            [o[0], o[4], o[1], o[5]]
        }
    }
    #[inline(always)]
    unsafe fn transpose(src: *const f32, lds: usize, dst: *mut f32, ldd: usize) {
        // SAFETY: caller guarantees the 16 × 16 blocks are accessible.
        unsafe {
            let r: [__m512; 16] = core::array::from_fn(|i| _mm512_loadu_ps(src.add(i * lds)));
            // Pairs of rows interleaved (32-bit), then pairs of pairs (64-bit).
            let t: [__m512; 16] = core::array::from_fn(|i| {
                let (a, b) = (r[i & !1], r[i | 1]);
                if i & 1 == 0 {
                    _mm512_unpacklo_ps(a, b)
                } else {
                    _mm512_unpackhi_ps(a, b)
                }
            });
            let u: [__m512; 16] = core::array::from_fn(|i| {
                let (h, q) = (i / 4 * 4, i % 4);
                let (a, b) = (_mm512_castps_pd(t[h + q / 2]), _mm512_castps_pd(t[h + q / 2 + 2]));
                _mm512_castpd_ps(if q % 2 == 0 { _mm512_unpacklo_pd(a, b) } else { _mm512_unpackhi_pd(a, b) })
            });
            // 128-bit lanes: first across groups of 4 rows, then of 8.
            let v: [__m512; 16] = core::array::from_fn(|i| {
                let (h, q) = (i / 8 * 8, i % 8);
                let (a, b) = (u[h + q % 4], u[h + q % 4 + 4]);
                if q < 4 {
                    _mm512_shuffle_f32x4::<0x88>(a, b)
                } else {
                    _mm512_shuffle_f32x4::<0xDD>(a, b)
                }
            });
            for i in 0..16 {
                let (a, b) = (v[i % 8], v[i % 8 + 8]);
                let o = if i < 8 { _mm512_shuffle_f32x4::<0x88>(a, b) } else { _mm512_shuffle_f32x4::<0xDD>(a, b) };
                _mm512_storeu_ps(dst.add(i * ldd), o);
            }
        }
    }
    #[inline(always)]
    unsafe fn run<R>(f: impl FnOnce() -> R) -> R {
        // SAFETY: the caller has the features.
        unsafe { run_avx512(f) }
    }
}

// ---------------------------------------------------------------------------
// Forward: dot-product tiles.

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

/// Main tiles `MR × NR`; when `n ≤ 12` a single `TMR × n` tile column.
#[inline(always)]
unsafe fn forward_impl<S: Isa, const MR: usize, const NR: usize, const TMR: usize>(f: Fwd) {
    // SAFETY (whole body): every tile stays inside the checked m×n / ×k.
    unsafe {
        if f.n <= 12 {
            fwd_cols_dyn::<S, TMR>(f, 0, f.n);
            return;
        }
        let mut j = 0;
        while j + NR <= f.n {
            fwd_cols::<S, MR, NR>(f, j);
            j += NR;
        }
        if j < f.n {
            fwd_cols_rem::<S, MR>(f, j, f.n - j);
        }
    }
}

/// Remainder columns (`nr < 6`, the widest main tile) after the main tiles.
#[inline(always)]
unsafe fn fwd_cols_rem<S: Isa, const MR: usize>(f: Fwd, j: usize, nr: usize) {
    // SAFETY: forwarded.
    unsafe {
        match nr {
            1 => fwd_cols::<S, MR, 1>(f, j),
            2 => fwd_cols::<S, MR, 2>(f, j),
            3 => fwd_cols::<S, MR, 3>(f, j),
            4 => fwd_cols::<S, MR, 4>(f, j),
            5 => fwd_cols::<S, MR, 5>(f, j),
            _ => unreachable!(),
        }
    }
}

/// A thin layer: one tile column of all `nr ≤ 12` outputs.
#[inline(always)]
unsafe fn fwd_cols_dyn<S: Isa, const MR: usize>(f: Fwd, j: usize, nr: usize) {
    // SAFETY: forwarded.
    unsafe {
        match nr {
            1 => fwd_cols::<S, MR, 1>(f, j),
            2 => fwd_cols::<S, MR, 2>(f, j),
            3 => fwd_cols::<S, MR, 3>(f, j),
            4 => fwd_cols::<S, MR, 4>(f, j),
            5 => fwd_cols::<S, MR, 5>(f, j),
            6 => fwd_cols::<S, MR, 6>(f, j),
            7 => fwd_cols::<S, MR, 7>(f, j),
            8 => fwd_cols::<S, MR, 8>(f, j),
            9 => fwd_cols::<S, MR, 9>(f, j),
            10 => fwd_cols::<S, MR, 10>(f, j),
            11 => fwd_cols::<S, MR, 11>(f, j),
            12 => fwd_cols::<S, MR, 12>(f, j),
            _ => unreachable!(),
        }
    }
}

/// Outputs `y[..][j..j + NR]` for all rows.
#[inline(always)]
unsafe fn fwd_cols<S: Isa, const MR: usize, const NR: usize>(f: Fwd, j: usize) {
    // SAFETY: forwarded.
    unsafe {
        let mut i = 0;
        while i + MR <= f.m {
            S::run(|| fwd_tile::<S, MR, NR>(f, i, j));
            i += MR;
        }
        if MR > 2 {
            while i + 2 <= f.m {
                S::run(|| fwd_tile::<S, 2, NR>(f, i, j));
                i += 2;
            }
        }
        while i < f.m {
            S::run(|| fwd_tile::<S, 1, NR>(f, i, j));
            i += 1;
        }
    }
}

#[inline(always)]
#[allow(clippy::needless_range_loop)] // acc[r][c] is indexed both ways
unsafe fn fwd_tile<S: Isa, const MR: usize, const NR: usize>(f: Fwd, i: usize, j: usize) {
    let k = f.k;
    // SAFETY: rows i..i+MR of x and j..j+NR of w exist; loads stay below k.
    unsafe {
        let x = f.x.add(i * k);
        let w = f.w.add(j * k);
        let mut acc = [[S::zero(); NR]; MR];
        let steps = k / S::W;
        let mut xp = x;
        let mut wp = w;
        for _ in 0..steps {
            let mut xv = [S::zero(); MR];
            for (r, v) in xv.iter_mut().enumerate() {
                *v = S::load(xp.add(r * k));
            }
            for c in 0..NR {
                let wv = S::load(wp.add(c * k));
                for r in 0..MR {
                    acc[r][c] = S::fma(xv[r], wv, acc[r][c]);
                }
            }
            xp = xp.add(S::W);
            wp = wp.add(S::W);
        }
        let t = k - steps * S::W;
        if t > 0 {
            let mut xv = [S::zero(); MR];
            for (r, v) in xv.iter_mut().enumerate() {
                *v = S::load_n(xp.add(r * k), t);
            }
            for c in 0..NR {
                let wv = S::load_n(wp.add(c * k), t);
                for r in 0..MR {
                    acc[r][c] = S::fma(xv[r], wv, acc[r][c]);
                }
            }
        }
        // Reduce (four at a time), add the bias, ReLU, store.
        let mut sums = [[0.0f32; NR]; MR];
        let mut q = 0;
        while q + 4 <= MR * NR {
            let a = |q: usize| acc[q / NR][q % NR];
            let s = S::hsum4(a(q), a(q + 1), a(q + 2), a(q + 3));
            for (l, &v) in s.iter().enumerate() {
                sums[(q + l) / NR][(q + l) % NR] = v;
            }
            q += 4;
        }
        if q < MR * NR {
            let a = |q: usize| {
                if q < MR * NR {
                    acc[q / NR][q % NR]
                } else {
                    S::zero()
                }
            };
            let s = S::hsum4(a(q), a(q + 1), a(q + 2), a(q + 3));
            for (l, &v) in s.iter().enumerate().take(MR * NR - q) {
                sums[(q + l) / NR][(q + l) % NR] = v;
            }
        }
        for (r, row) in sums.iter().enumerate() {
            let y = f.y.add((i + r) * f.ldy + j);
            for (c, &s) in row.iter().enumerate() {
                let v = s + *f.b.add(j + c);
                *y.add(c) = if f.relu && v < 0.0 { 0.0 } else { v };
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Input and weight grads: broadcast-FMA tiles.

/// `out[r][..cols] (+)= Σ_{t < t_len} a[r·ars + t·ats] · b[t·ldb ..][..cols]`
/// for `r < MR`, with `cols = (NV - 1)·W + tail` when `TAIL` (else `NV·W`).
/// Accumulates into `out` if `acc_in`; zeroes lanes where `mask` (same
/// layout as `out`, null for none) is `<= 0` before storing.
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
    mask: *const f32,
    acc_in: bool,
    /// Initial value of every row (`cols` floats), unless `acc_in`; null
    /// for zero.
    bias: *const f32,
    /// Zero lanes `<= 0` before storing.
    relu: bool,
    /// Instead of storing the sums, apply an SGD step with them as
    /// gradients to the parameters at the same offsets.
    step: Option<TileStep>,
}

/// A fused weight grad's optimizer step.
#[derive(Clone, Copy)]
enum Step {
    /// In each tile's epilogue.
    Sgd(TileStep),
    /// Over the whole gradient once it is summed (see the entry points).
    Adam { w: *mut f32, sm: *mut f32, sv: *mut f32, c: AdamStep },
}

/// SGD in a weight-grad tile's epilogue: `w` addresses the tile's first
/// parameter (row stride `ldo`, like `out`).
#[derive(Clone, Copy)]
struct TileStep {
    w: *mut f32,
    lr: f32,
    wd: f32,
}

impl TileStep {
    /// The step for the tile whose first element is `o` floats further on.
    ///
    /// # Safety
    /// `o` must lie inside the buffers.
    #[inline(always)]
    unsafe fn at(self, o: usize) -> Self {
        // SAFETY: the caller's contract.
        TileStep { w: unsafe { self.w.add(o) }, ..self }
    }
}

#[inline(always)]
unsafe fn axpy_tile<S: Isa, const MR: usize, const NV: usize, const TAIL: bool, const STEP: bool>(
    t: Axpy,
    tail: usize,
) {
    // SAFETY: the caller sizes the tile inside the checked matrices; the last
    // vector is masked to `tail` lanes when TAIL.
    unsafe {
        let last = |c: usize| TAIL && c == NV - 1;
        let mut acc = [[S::zero(); NV]; MR];
        if t.acc_in {
            for (r, row) in acc.iter_mut().enumerate() {
                let o = t.out.add(r * t.ldo);
                for (c, v) in row.iter_mut().enumerate() {
                    *v = if last(c) { S::load_n(o.add(c * S::W), tail) } else { S::load(o.add(c * S::W)) };
                }
            }
        } else if !t.bias.is_null() {
            for c in 0..NV {
                let bp = t.bias.add(c * S::W);
                let v = if last(c) { S::load_n(bp, tail) } else { S::load(bp) };
                for row in acc.iter_mut() {
                    row[c] = v;
                }
            }
        }
        if STEP {
            if let Some(st) = t.step {
                prefetch_step::<S, MR, NV>(st, t.ldo);
            }
        }
        let mut ap = t.a;
        let mut bp = t.b;
        for _ in 0..t.t_len {
            let mut bv = [S::zero(); NV];
            for (c, v) in bv.iter_mut().enumerate() {
                *v = if last(c) { S::load_n(bp.add(c * S::W), tail) } else { S::load(bp.add(c * S::W)) };
            }
            for row in acc.iter_mut() {
                let s = S::splat(ap);
                for (c, v) in row.iter_mut().enumerate() {
                    *v = S::fma(s, bv[c], *v);
                }
                ap = ap.add(t.ars);
            }
            ap = ap.sub(MR * t.ars).add(t.ats);
            bp = bp.add(t.ldb);
        }
        // A separate instantiation: the epilogue's registers must not
        // weigh on the other products' loops.
        if STEP {
            if let Some(st) = t.step {
                return step_acc::<S, MR, NV, TAIL>(&acc, st, t.ldo, tail);
            }
        }
        for (r, row) in acc.iter().enumerate() {
            let o = t.out.add(r * t.ldo);
            for (c, &v) in row.iter().enumerate() {
                let v = if t.mask.is_null() {
                    v
                } else {
                    let mp = t.mask.add(r * t.ldo + c * S::W);
                    S::mask_le0(v, if last(c) { S::load_n(mp, tail) } else { S::load(mp) })
                };
                let v = if t.relu { S::mask_le0(v, v) } else { v };
                if last(c) {
                    S::store_n(o.add(c * S::W), v, tail);
                } else {
                    S::store(o.add(c * S::W), v);
                }
            }
        }
    }
}

/// Floats in a fused weight-grad tile's gradient buffer (MR·NV·W ≤ 4·6·16).
const STEP_TILE_MAX: usize = 384;

/// Asks for the cache lines of `w` that [`step_tile`] will update, so that they
/// arrive while the tile computes: rows of `w` are `k` floats apart and the
/// tiles walk down them column block by column block, a pattern the
/// hardware prefetchers do not follow.
#[inline(always)]
unsafe fn prefetch_step<S: Isa, const MR: usize, const NV: usize>(st: TileStep, ld: usize) {
    for r in 0..MR {
        for c in 0..NV {
            // SAFETY: a prefetch is a hint that never faults, so the address
            // may point past a partial last vector (hence wrapping_add).
            unsafe { _mm_prefetch::<_MM_HINT_T0>(st.w.wrapping_add(r * ld + c * S::W).cast::<i8>()) };
        }
    }
}

/// The epilogue of a fused weight-grad tile: one SGD step on the parameters
/// under the tile, with the sums in `g` (`MR × NV` vectors) as gradients,
/// in the same operations as [`sgd_impl`] (so bit for bit the unfused
/// result).
#[inline(always)]
unsafe fn step_tile<S: Isa, const MR: usize, const NV: usize, const TAIL: bool>(
    g: *const f32,
    st: TileStep,
    ld: usize,
    tail: usize,
) {
    // SAFETY: the tile's parameters lie inside the checked [n][k] buffer,
    // like its gradients; the last vector is masked.
    unsafe {
        // (Functions, not closures: a closure may be compiled outside the
        // caller's target features.)
        #[inline(always)]
        unsafe fn load<S: Isa>(p: *const f32, last: bool, tail: usize) -> S::V {
            // SAFETY: forwarded.
            unsafe {
                if last {
                    S::load_n(p, tail)
                } else {
                    S::load(p)
                }
            }
        }
        #[inline(always)]
        unsafe fn store<S: Isa>(p: *mut f32, v: S::V, last: bool, tail: usize) {
            // SAFETY: forwarded.
            unsafe {
                if last {
                    S::store_n(p, v, tail)
                } else {
                    S::store(p, v)
                }
            }
        }
        let (vlr, vwd) = (S::set1(st.lr), S::set1(st.wd));
        for r in 0..MR {
            for c in 0..NV {
                let g = S::load(g.add((r * NV + c) * S::W));
                let l = TAIL && c == NV - 1;
                let wp = st.w.add(r * ld + c * S::W);
                let pv = load::<S>(wp, l, tail);
                store::<S>(wp, S::sub(pv, S::mul(vlr, S::add(g, S::mul(vwd, pv)))), l, tail);
            }
        }
    }
}

/// A tile's epilogue when fused with an optimizer step: [`step_tile`] on
/// the sums in `acc`. Through a stack buffer: were the epilogue's (not
/// unrolled) loops to index `acc`, LLVM would keep the accumulators in
/// memory during the tile's main loop as well.
#[inline(always)]
unsafe fn step_acc<S: Isa, const R: usize, const NV: usize, const TAIL: bool>(
    acc: &[[S::V; NV]; R],
    st: TileStep,
    ld: usize,
    tail: usize,
) {
    // SAFETY: forwarded; the buffer holds R·NV vectors (asserted).
    unsafe {
        let mut g = [core::mem::MaybeUninit::<f32>::uninit(); STEP_TILE_MAX];
        assert!(R * NV * S::W <= STEP_TILE_MAX);
        let gp = g.as_mut_ptr().cast::<f32>();
        for (r, row) in acc.iter().enumerate() {
            for (c, &v) in row.iter().enumerate() {
                S::store(gp.add((r * NV + c) * S::W), v);
            }
        }
        step_tile::<S, R, NV, TAIL>(gp, st, ld, tail)
    }
}

/// One tile of `MR` rows covering `cols ≤ NV·W` columns.
#[inline(always)]
unsafe fn axpy_cols<S: Isa, const MR: usize, const NV: usize, const STEP: bool>(t: Axpy, cols: usize) {
    // SAFETY: forwarded.
    unsafe {
        if cols == NV * S::W {
            return S::run(|| axpy_tile::<S, MR, NV, false, STEP>(t, 0));
        }
        let nv = cols.div_ceil(S::W);
        let tail = cols - (nv - 1) * S::W;
        match nv {
            1 => S::run(|| axpy_tile::<S, MR, 1, true, STEP>(t, tail)),
            2 => S::run(|| axpy_tile::<S, MR, 2, true, STEP>(t, tail)),
            3 => S::run(|| axpy_tile::<S, MR, 3, true, STEP>(t, tail)),
            4 => S::run(|| axpy_tile::<S, MR, 4, true, STEP>(t, tail)),
            5 => S::run(|| axpy_tile::<S, MR, 5, true, STEP>(t, tail)),
            6 => S::run(|| axpy_tile::<S, MR, 6, true, STEP>(t, tail)),
            7 => S::run(|| axpy_tile::<S, MR, 7, true, STEP>(t, tail)),
            8 => S::run(|| axpy_tile::<S, MR, 8, true, STEP>(t, tail)),
            _ => unreachable!(),
        }
    }
}

/// Tiles for output rows `0..rows` (`MR`, then 2, then 1 at a time); `row`
/// gives the tile for row offset `r0`.
#[inline(always)]
unsafe fn axpy_rows<S: Isa, const MR: usize, const NV: usize, const STEP: bool>(
    rows: usize,
    cols: usize,
    row: impl Fn(usize) -> Axpy,
) {
    // SAFETY: forwarded.
    unsafe {
        let mut r = 0;
        while r + MR <= rows {
            axpy_cols::<S, MR, NV, STEP>(row(r), cols);
            r += MR;
        }
        if MR > 2 {
            while r + 2 <= rows {
                axpy_cols::<S, 2, NV, STEP>(row(r), cols);
                r += 2;
            }
        }
        while r < rows {
            axpy_cols::<S, 1, NV, STEP>(row(r), cols);
            r += 1;
        }
    }
}

/// Copies `len` floats in vectors, inline (the rows are short: a libc call
/// per row costs more than the copy).
#[inline(always)]
unsafe fn copy_row<S: Isa>(src: *const f32, dst: *mut f32, len: usize) {
    // SAFETY: both hold len floats; the tail is masked.
    unsafe {
        let mut c = 0;
        while c + S::W <= len {
            S::store(dst.add(c), S::load(src.add(c)));
            // An empty asm statement keeps LLVM from turning this loop back
            // into a `memcpy` call.
            core::arch::asm!("", options(nostack, preserves_flags));
            c += S::W;
        }
        if c < len {
            S::store_n(dst.add(c), S::load_n(src.add(c), len - c), len - c);
        }
    }
}

/// Below this many rows, forward uses dot products: the packed `wᵀ` block
/// would serve too few rows to repay its transpose.
const FWD_PACK_MIN_M: usize = 8;

/// From this many rows of `dw` on, weight grad copies blocks of `x`.
const WG_PACK_MIN_N: usize = 32;

/// Rows and columns of the packed block of `w` in input grad (24 KB).
const PACK_ROWS: usize = 64;
const PACK_COLS: usize = 96;

/// A packed block on the stack, cache-line aligned: its rows are a
/// multiple of 64 bytes apart, so no vector load splits a line.
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

/// `dx[m][k] = dy[m][n]·w[n][k]`, masked. Column blocks of `NV·W`; the sum
/// over `n` in blocks of `nb` rows of `w`; each `nb × NV·W` block of `w` is
/// copied to a contiguous stack buffer, which stays in L1 while all row tiles
/// use it (in place, rows `k` floats apart alias onto few L1 sets when `k` is
/// a power of two).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn input_grad_impl<S: Isa, const MR: usize, const NV: usize, const SR: usize, const SNV: usize>(
    dy: *const f32,
    w: *const f32,
    dx: *mut f32,
    mask: *const f32,
    m: usize,
    n: usize,
    k: usize,
    ld: usize,
    nb: usize,
    kb: usize,
) {
    // A ReLU layer's dy is mostly zeros: dx = dy·w is then a forward whose
    // inputs are dy and whose `wᵀ` is w itself, and the forward's sparse
    // tiles skip the zeros. Every path sums each element in increasing `n`
    // from zero, so all give the same values.
    // SAFETY: reads dy[m][n] only.
    if n > 0 && k > SPARSE_MIN_WIDTH && unsafe { density::<S>(dy, m * n) } <= SPARSE_MAX_DENSITY {
        let f = Fwd { x: dy, w, b: core::ptr::null(), y: dx, ldy: ld, m, n: k, k: n, relu: false };
        // SAFETY: as below: the forward reads dy[m][n] and the first k
        // columns of w[n][ld], writes (and masks by) dx[m][ld].
        return unsafe { forward_packed::<S, MR, NV, SR, SNV>(f, kb, Layout::InputRows, mask) };
    }
    // Only the packed columns of each row are ever read (masked loads for
    // the tail), so the buffer needs no initialization.
    let mut pack = Pack::new();
    // SAFETY: all tiles lie inside dy[m][n], and the first k columns of
    // w[n][ld], dx/mask[m][ld]; the
    // packed block is jb ≤ PACK_ROWS rows of cols ≤ kc ≤ PACK_COLS.
    unsafe {
        let kc = NV * S::W;
        debug_assert!(kc <= PACK_COLS);
        let mut p = 0;
        while p < k {
            let cols = kc.min(k - p);
            if n == 0 {
                axpy_rows::<S, MR, NV, false>(m, cols, |i| Axpy {
                    a: dy,
                    ars: 0,
                    ats: 0,
                    b: w,
                    ldb: 0,
                    t_len: 0,
                    out: dx.add(i * ld + p),
                    ldo: ld,
                    mask: if mask.is_null() { mask } else { mask.add(i * ld + p) },
                    acc_in: false,
                    bias: core::ptr::null(),
                    relu: false,
                    step: None,
                });
            }
            let mut j = 0;
            while j < n {
                let jb = nb.min(n - j).min(PACK_ROWS);
                let last = j + jb == n;
                // Pack the block of w: its rows are ld apart, which for
                // power-of-two ld maps them onto a few L1 sets.
                let pk = pack.ptr();
                for t in 0..jb {
                    copy_row::<S>(w.add((j + t) * ld + p), pk.add(t * kc), cols);
                }
                axpy_rows::<S, MR, NV, false>(m, cols, |i| Axpy {
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
                });
                j += jb;
            }
            p += cols;
        }
    }
}

/// `pack[t][c] = src[c·lds + t]` for `c < cols`, `t < rows` (row stride
/// `PACK_COLS`): a block of `w` transposed, `W × W` at a time.
#[inline(always)]
unsafe fn pack_t<S: Isa>(src: *const f32, lds: usize, pack: *mut f32, cols: usize, rows: usize) {
    // SAFETY: the caller keeps cols ≤ PACK_COLS, rows ≤ PACK_ROWS and the
    // source block inside w.
    unsafe {
        let (cf, rf) = (cols / S::W * S::W, rows / S::W * S::W);
        let mut c = 0;
        while c < cf {
            let mut t = 0;
            while t < rf {
                S::transpose(src.add(c * lds + t), lds, pack.add(t * PACK_COLS + c), PACK_COLS);
                t += S::W;
            }
            for cc in c..c + S::W {
                for tt in rf..rows {
                    *pack.add(tt * PACK_COLS + cc) = *src.add(cc * lds + tt);
                }
            }
            c += S::W;
        }
        for cc in cf..cols {
            for tt in 0..rows {
                *pack.add(tt * PACK_COLS + cc) = *src.add(cc * lds + tt);
            }
        }
    }
}

/// Where [`forward_packed`] finds each block of `wᵀ`.
#[derive(Clone, Copy, PartialEq)]
enum Layout {
    /// `w[n][k]`, transposed block by block into a stack buffer.
    Rows,
    /// Packed by `gemm::pack_panels` with panels of `NV·W` (read in place).
    Panels,
    /// Already `wᵀ`, as `[k][ldy]` (input grad's `w`); copied block by
    /// block into a stack buffer.
    InputRows,
}

/// Nonzeros among `len` floats.
#[inline(always)]
unsafe fn nonzeros<S: Isa>(x: *const f32, len: usize) -> usize {
    // SAFETY: reads x[..len].
    unsafe {
        let mut ones = 0usize;
        let mut c = 0;
        while c < len {
            let v = if c + S::W <= len { S::load(x.add(c)) } else { S::load_n(x.add(c), len - c) };
            ones += S::nz_bits(v).count_ones() as usize;
            c += S::W;
        }
        ones
    }
}

/// Share of nonzeros among `len` floats.
#[inline(always)]
unsafe fn density<S: Isa>(x: *const f32, len: usize) -> f32 {
    // SAFETY: forwarded.
    unsafe { nonzeros::<S>(x, len) as f32 / len.max(1) as f32 }
}

/// Forward as broadcast-FMA tiles: `y[i][j..j+NV·W] = b + Σ_p x[i][p] ·
/// wᵀ[p][j..]`. Output column blocks of `NV·W`; the sum over `k` in blocks
/// of `kb`, each `kb × NV·W` block of `wᵀ` in L1 while all row tiles use it;
/// partial sums go through `y`, bias on the first block, ReLU on the last.
/// `layout` says where the blocks come from. A null `f.b` starts the sums
/// from zero; a non-null `mask` (laid out as `y`) zeroes the outputs where
/// it is `<= 0`.
///
/// When at most [`SPARSE_MAX_DENSITY`] of a group of rows' inputs are
/// nonzero (ReLU outputs, image backgrounds), the tiles skip the zero ones
/// (see [`sparse_tile`]). Per element, every path sums from the bias in
/// increasing `p`, so all give the same values (a skipped term adds `±0`,
/// given finite weights).
#[inline(always)]
unsafe fn forward_packed<S: Isa, const MR: usize, const NV: usize, const SR: usize, const BNV: usize>(
    f: Fwd,
    kb: usize,
    layout: Layout,
    mask: *const f32,
) {
    let mut pack = Pack::new();
    let mut masks = [0u64; SPARSE_ROWS * SPARSE_BLOCKS];
    // SAFETY: all tiles lie inside x[m][k], w[n][k], b[n], y[m][n]; the
    // packed block is pb ≤ PACK_ROWS rows of cols ≤ PACK_COLS.
    unsafe {
        let nc = BNV * S::W;
        debug_assert!((layout == Layout::Panels || nc <= PACK_COLS) && kb <= PACK_ROWS && kb <= 64 && BNV >= NV);
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
                let sparse =
                    f.ldy > SPARSE_MIN_WIDTH && nonzero_masks::<S>(x.add(q0), f.k, rows, q1 - q0, kb, &mut masks);
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
                                pack_t::<S>(f.w.add(j * f.k + p), f.k, pk, cols, pb);
                                (pk.cast_const(), PACK_COLS)
                            }
                            Layout::InputRows => {
                                for t in 0..pb {
                                    copy_row::<S>(f.w.add((p + t) * f.ldy + j), pk.add(t * PACK_COLS), cols);
                                }
                                (pk.cast_const(), PACK_COLS)
                            }
                        };
                        let bias = if p == 0 && !f.b.is_null() { f.b.add(j) } else { core::ptr::null() };
                        let relu = f.relu && last;
                        // The output mask of row q, on the last block.
                        let omask = |q: usize| {
                            if last && !mask.is_null() {
                                mask.add(q * f.ldy + j)
                            } else {
                                core::ptr::null()
                            }
                        };
                        if sparse {
                            let blkm = &masks[(p - q0) / kb..];
                            let mut r = 0;
                            while r < rows {
                                let two = SR == 2 && r + 1 < rows;
                                let row = |q: usize| (x.add(q * f.k + p), y.add(q * f.ldy + j));
                                let ((x0, y0), (x1, y1)) = (row(r), row(if two { r + 1 } else { r }));
                                let t = Sparse {
                                    x: [x0, x1],
                                    mask: [
                                        blkm[r * SPARSE_BLOCKS],
                                        if two { blkm[(r + 1) * SPARSE_BLOCKS] } else { 0 },
                                    ],
                                    b: blk,
                                    ldb,
                                    out: [y0, y1],
                                    bias,
                                    acc_in: p > 0,
                                    relu,
                                    omask: [omask(i0 + r), omask(i0 + r + usize::from(two))],
                                    step: None,
                                    ldo: f.ldy,
                                };
                                if two {
                                    sparse_cols::<S, 2, BNV, false>(t, cols);
                                } else {
                                    sparse_cols::<S, 1, BNV, false>(t, cols);
                                }
                                r += 1 + usize::from(two);
                            }
                        } else {
                            // Dense tiles: MR rows × NV vectors across the
                            // block, then the rows left over one at a time
                            // across the whole block (a tile of few rows and
                            // NV vectors would leave the FMA latency exposed:
                            // batch 1 is all leftover).
                            let tile = |i: usize, c0: usize| Axpy {
                                a: x.add(i * f.k + p),
                                ars: f.k,
                                ats: 1,
                                b: blk.add(c0),
                                ldb,
                                t_len: pb,
                                out: y.add(i * f.ldy + j + c0),
                                ldo: f.ldy,
                                mask: if last && !mask.is_null() {
                                    mask.add((i0 + i) * f.ldy + j + c0)
                                } else {
                                    core::ptr::null()
                                },
                                acc_in: p > 0,
                                bias: if bias.is_null() { bias } else { bias.add(c0) },
                                relu,
                                step: None,
                            };
                            let full = rows / MR * MR;
                            let mut c0 = 0;
                            while full > 0 && c0 < cols {
                                let cw = (NV * S::W).min(cols - c0);
                                axpy_rows::<S, MR, NV, false>(full, cw, |i| tile(i, c0));
                                c0 += cw;
                            }
                            for i in full..rows {
                                axpy_cols::<S, 1, BNV, false>(tile(i, 0), cols);
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

/// Rows and `kb`-blocks of inputs whose nonzero masks [`forward_packed`]
/// keeps at once (8 KB of stack).
const SPARSE_ROWS: usize = 64;
const SPARSE_BLOCKS: usize = 16;

/// Above this share of nonzero inputs, dense tiles are faster than
/// skipping (they need fewer loads per FMA).
const SPARSE_MAX_DENSITY: f32 = 0.7;

/// Layers at most this wide always use dense tiles.
const SPARSE_MIN_WIDTH: usize = 32;

/// `masks[r·SPARSE_BLOCKS + b]` = bit `t` set where `x[r·ldx + b·kb + t]`
/// is nonzero, for `r < rows`, `b·kb + t < len`. Returns whether the inputs
/// are sparse enough to skip the zeros.
#[inline(always)]
unsafe fn nonzero_masks<S: Isa>(
    x: *const f32,
    ldx: usize,
    rows: usize,
    len: usize,
    kb: usize,
    masks: &mut [u64],
) -> bool {
    // SAFETY: reads x[r·ldx + c] for c < len only.
    unsafe {
        let mut ones = 0u32;
        for r in 0..rows {
            let xr = x.add(r * ldx);
            let mut b = 0;
            while b * kb < len {
                let (c0, c1) = (b * kb, len.min((b + 1) * kb));
                let mut bits = 0u64;
                let mut c = c0;
                while c < c1 {
                    let v = if c + S::W <= c1 { S::load(xr.add(c)) } else { S::load_n(xr.add(c), c1 - c) };
                    bits |= (S::nz_bits(v) as u64) << (c - c0);
                    c += S::W;
                }
                masks[r * SPARSE_BLOCKS + b] = bits;
                ones += bits.count_ones();
                b += 1;
            }
        }
        (ones as f32) <= SPARSE_MAX_DENSITY * (rows * len) as f32
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

/// `R ≤ 2` rows × `NV` vectors of outputs, summing only the inputs whose
/// mask bit is set. Two rows interleave their (different) nonzeros so that
/// `2·NV` independent accumulators hide the FMA latency; each row's sum
/// still runs in increasing input order.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
// two rows of acc per index
// The empty asm statements touch no memory: they only hide the addresses'
// values from LLVM, so that it keeps them whole in registers.
#[allow(clippy::pointers_in_nomem_asm_block)]
unsafe fn sparse_tile<S: Isa, const R: usize, const NV: usize, const TAIL: bool, const STEP: bool>(
    t: Sparse,
    tail: usize,
) {
    // SAFETY: the caller sizes the tile inside the checked matrices; set
    // mask bits index inputs inside the block.
    unsafe {
        let last = |c: usize| TAIL && c == NV - 1;
        let ld =
            |p: *const f32, c: usize| if last(c) { S::load_n(p.add(c * S::W), tail) } else { S::load(p.add(c * S::W)) };
        let mut acc = [[S::zero(); NV]; R];
        for (r, row) in acc.iter_mut().enumerate() {
            for (c, v) in row.iter_mut().enumerate() {
                if t.acc_in {
                    *v = ld(t.out[r], c);
                } else if !t.bias.is_null() {
                    *v = ld(t.bias, c);
                }
            }
        }
        if STEP {
            if let Some(st) = t.step {
                prefetch_step::<S, R, NV>(st, t.ldo);
            }
        }
        let mut m = t.mask;
        if R == 2 {
            while m[0] != 0 && m[1] != 0 {
                let (p0, p1) = (m[0].trailing_zeros() as usize, m[1].trailing_zeros() as usize);
                m[0] &= m[0] - 1;
                m[1] &= m[1] - 1;
                let (s0, s1) = (S::splat(t.x[0].add(p0)), S::splat(t.x[1].add(p1)));
                let (mut b0, mut b1) = (t.b.add(p0 * t.ldb), t.b.add(p1 * t.ldb));
                // Whole addresses in registers: folded into the FMAs as
                // base + index, each FMA would issue as two micro-ops.
                core::arch::asm!("/* {0} {1} */", inout(reg) b0, inout(reg) b1, options(pure, nomem, nostack, preserves_flags));
                for c in 0..NV {
                    acc[0][c] = S::fma(s0, ld(b0, c), acc[0][c]);
                    acc[R - 1][c] = S::fma(s1, ld(b1, c), acc[R - 1][c]);
                }
            }
        }
        for (r, row) in acc.iter_mut().enumerate() {
            while m[r] != 0 {
                let p = m[r].trailing_zeros() as usize;
                m[r] &= m[r] - 1;
                let s = S::splat(t.x[r].add(p));
                let mut bp = t.b.add(p * t.ldb);
                core::arch::asm!("/* {0} */", inout(reg) bp, options(pure, nomem, nostack, preserves_flags));
                for (c, v) in row.iter_mut().enumerate() {
                    *v = S::fma(s, ld(bp, c), *v);
                }
            }
        }
        if STEP {
            if let Some(st) = t.step {
                return step_acc::<S, R, NV, TAIL>(&acc, st, t.ldo, tail);
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (c, &v) in row.iter().enumerate() {
                let v = if t.relu { S::mask_le0(v, v) } else { v };
                let v = if t.omask[r].is_null() { v } else { S::mask_le0(v, ld(t.omask[r], c)) };
                if last(c) {
                    S::store_n(t.out[r].add(c * S::W), v, tail);
                } else {
                    S::store(t.out[r].add(c * S::W), v);
                }
            }
        }
    }
}

/// One [`sparse_tile`] covering `cols ≤ NV·W` columns.
#[inline(always)]
unsafe fn sparse_cols<S: Isa, const R: usize, const NV: usize, const STEP: bool>(t: Sparse, cols: usize) {
    // SAFETY: forwarded.
    unsafe {
        if cols == NV * S::W {
            return S::run(|| sparse_tile::<S, R, NV, false, STEP>(t, 0));
        }
        let nv = cols.div_ceil(S::W);
        let tail = cols - (nv - 1) * S::W;
        match nv {
            1 => S::run(|| sparse_tile::<S, R, 1, true, STEP>(t, tail)),
            2 => S::run(|| sparse_tile::<S, R, 2, true, STEP>(t, tail)),
            3 => S::run(|| sparse_tile::<S, R, 3, true, STEP>(t, tail)),
            4 => S::run(|| sparse_tile::<S, R, 4, true, STEP>(t, tail)),
            5 => S::run(|| sparse_tile::<S, R, 5, true, STEP>(t, tail)),
            6 => S::run(|| sparse_tile::<S, R, 6, true, STEP>(t, tail)),
            7 => S::run(|| sparse_tile::<S, R, 7, true, STEP>(t, tail)),
            8 => S::run(|| sparse_tile::<S, R, 8, true, STEP>(t, tail)),
            _ => unreachable!(),
        }
    }
}

/// `dw[n][k] = dyᵀ·x`: column blocks of `NV·W` (so `m × NV·W` of `x` stays
/// in L1 for moderate `m`), `MR` rows of `dw` per tile, the whole sum over
/// `m` in registers.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn weight_grad_impl<S: Isa, const MR: usize, const NV: usize, const SR: usize, const SNV: usize>(
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
    if m > 0
        && k > SPARSE_MIN_WIDTH
        && unsafe { weight_grad_sparse::<S, MR, NV, SR, SNV>(dy, ldy, x, dw, m, n, k, step) }
    {
        return;
    }
    let mut pack = Pack::new();
    // SAFETY: all tiles lie inside dy (stride ldy), x[m][k], dw[n][k] (and
    // the step's w, m, v, shaped like dw); the
    // packed block is ib ≤ PACK_ROWS rows of cols ≤ kc ≤ PACK_COLS.
    unsafe {
        let kc = NV * S::W;
        debug_assert!(kc <= PACK_COLS);
        let pk = pack.ptr();
        let mut p = 0;
        while p < k {
            let cols = kc.min(k - p);
            // Rows of x in blocks, each copied to a contiguous buffer (in
            // place, rows k floats apart alias onto few L1 sets when k is a
            // power of two); partial sums over blocks go through dw.
            // A thin dw (few rows) would not repay the copy.
            let mut i = 0;
            loop {
                let (ib, b, ldb) = if n >= WG_PACK_MIN_N {
                    let ib = PACK_ROWS.min(m - i);
                    for t in 0..ib {
                        copy_row::<S>(x.add((i + t) * k + p), pk.add(t * PACK_COLS), cols);
                    }
                    (ib, pk.cast_const(), PACK_COLS)
                } else {
                    (m, x.add(p), k)
                };
                let tile = |j: usize| Axpy {
                    a: dy.add(i * ldy + j),
                    ars: 1,
                    ats: ldy,
                    b,
                    ldb,
                    t_len: ib,
                    out: dw.add(j * k + p),
                    ldo: k,
                    mask: core::ptr::null(),
                    acc_in: i > 0,
                    bias: core::ptr::null(),
                    relu: false,
                    // Only the last block holds whole sums.
                    step: step.filter(|_| i + ib >= m).map(|s| s.at(j * k + p)),
                };
                if step.is_some() && i + ib >= m {
                    axpy_rows::<S, MR, NV, true>(n, cols, tile);
                } else {
                    axpy_rows::<S, MR, NV, false>(n, cols, tile);
                }
                i += ib;
                if i >= m {
                    break;
                }
            }
            p += cols;
        }
    }
}

/// Rows of `dw` (columns of `dy`) whose coefficients [`weight_grad_sparse`]
/// transposes at once.
const WG_SPARSE_ROWS: usize = 64;

/// A block of `dyᵀ`: `WG_SPARSE_ROWS` rows of up to `PACK_ROWS` batch rows.
#[repr(C, align(64))]
struct DyT([core::mem::MaybeUninit<f32>; WG_SPARSE_ROWS * PACK_ROWS]);

/// Weight grad that skips zero gradients: a ReLU layer's `dy` is zero
/// wherever its output was, typically half the batch. Per block of 64 rows
/// of `dw`, the block of `dy` is transposed (each row of `dw` then reads its
/// coefficients in order) with each row's nonzero bit mask; [`sparse_tile`]s
/// of two rows of `dw` walk the masks over a packed `x` block. A block
/// denser than [`SPARSE_MAX_DENSITY`] runs dense tiles on the same packed
/// operands. Returns false, having done nothing, when the whole `dy` is that
/// dense (the caller's dense path then reads `dy` in place). Every path sums
/// each element in increasing `t` from zero, so all give the same values.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn weight_grad_sparse<S: Isa, const MR: usize, const NV: usize, const SR: usize, const SNV: usize>(
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
    // and dw[n][k] (and the step's buffers, shaped like dw); the buffers
    // hold WG_SPARSE_ROWS × PACK_ROWS and PACK_ROWS × PACK_COLS floats.
    unsafe {
        let mut ones = 0;
        for t in 0..m {
            ones += nonzeros::<S>(dy.add(t * ldy), n);
        }
        if ones as f32 > SPARSE_MAX_DENSITY * (m * n) as f32 {
            return false;
        }
        let nc = SNV * S::W;
        debug_assert!(nc <= PACK_COLS);
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
                let src = dy.add(i * ldy + j0);
                let (rf, tf) = (nj / S::W * S::W, ib / S::W * S::W);
                for r in (0..rf).step_by(S::W) {
                    for t in (0..tf).step_by(S::W) {
                        S::transpose(src.add(t * ldy + r), ldy, dt.add(r * PACK_ROWS + t), PACK_ROWS);
                    }
                    for rr in r..r + S::W {
                        for t in tf..ib {
                            *dt.add(rr * PACK_ROWS + t) = *src.add(t * ldy + rr);
                        }
                    }
                }
                for rr in rf..nj {
                    for t in 0..ib {
                        *dt.add(rr * PACK_ROWS + t) = *src.add(t * ldy + rr);
                    }
                }
                let mut ones = 0;
                for (r, mk) in masks.iter_mut().enumerate().take(nj) {
                    let row = dt.add(r * PACK_ROWS);
                    let mut bits = 0u64;
                    let mut t = 0;
                    while t < ib {
                        let v = if t + S::W <= ib { S::load(row.add(t)) } else { S::load_n(row.add(t), ib - t) };
                        bits |= (S::nz_bits(v) as u64) << t;
                        t += S::W;
                    }
                    *mk = bits;
                    ones += bits.count_ones() as usize;
                }
                let sparse = ones as f32 <= SPARSE_MAX_DENSITY * (nj * ib) as f32;
                let mut p = 0;
                while p < k {
                    let cols = nc.min(k - p);
                    for t in 0..ib {
                        copy_row::<S>(x.add((i + t) * k + p), pk.add(t * PACK_COLS), cols);
                    }
                    // The step's pointers for the tile at row j of dw,
                    // column p (only the last block of t holds whole sums).
                    let step_at = |j: usize, c0: usize| step.filter(|_| last).map(|s| s.at(j * k + p + c0));
                    let stepping = step.is_some() && last;
                    if sparse {
                        let mut r = 0;
                        while r < nj {
                            let two = SR == 2 && r + 1 < nj;
                            let j = j0 + r;
                            let out = dw.add(j * k + p);
                            let t = Sparse {
                                x: [dt.add(r * PACK_ROWS), dt.add((r + usize::from(two)) * PACK_ROWS)],
                                mask: [masks[r], if two { masks[r + 1] } else { 0 }],
                                b: pk,
                                ldb: PACK_COLS,
                                out: [out, if two { out.add(k) } else { out }],
                                bias: core::ptr::null(),
                                acc_in: i > 0,
                                relu: false,
                                omask: [core::ptr::null(); 2],
                                step: step_at(j, 0),
                                ldo: k,
                            };
                            match (two, stepping) {
                                (true, true) => sparse_cols::<S, 2, SNV, true>(t, cols),
                                (true, false) => sparse_cols::<S, 2, SNV, false>(t, cols),
                                (false, true) => sparse_cols::<S, 1, SNV, true>(t, cols),
                                (false, false) => sparse_cols::<S, 1, SNV, false>(t, cols),
                            }
                            r += 1 + usize::from(two);
                        }
                    } else {
                        let mut c0 = 0;
                        while c0 < cols {
                            let cw = (NV * S::W).min(cols - c0);
                            let tile = |r: usize| Axpy {
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
                            };
                            if stepping {
                                axpy_rows::<S, MR, NV, true>(nj, cw, tile);
                            } else {
                                axpy_rows::<S, MR, NV, false>(nj, cw, tile);
                            }
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

// ---------------------------------------------------------------------------
// SGD update.

/// `p -= lr·(g + wd·p)` for `n` elements, with the scalar loop's rounding
/// (separate multiply, add, multiply, subtract).
#[inline(always)]
unsafe fn sgd_impl<S: Isa>(p: *mut f32, g: *const f32, n: usize, lr: f32, wd: f32) {
    // SAFETY: p and g hold n floats; the tail is masked.
    unsafe {
        let (vlr, vwd) = (S::set1(lr), S::set1(wd));
        let step = |i: usize, len: usize| {
            let (pv, gv) = if len == S::W {
                (S::load(p.add(i)), S::load(g.add(i)))
            } else {
                (S::load_n(p.add(i), len), S::load_n(g.add(i), len))
            };
            let v = S::sub(pv, S::mul(vlr, S::add(gv, S::mul(vwd, pv))));
            if len == S::W {
                S::store(p.add(i), v)
            } else {
                S::store_n(p.add(i), v, len)
            }
        };
        let mut i = 0;
        while i + S::W <= n {
            step(i, S::W);
            i += S::W;
        }
        if i < n {
            step(i, n - i);
        }
    }
}

/// Vectorized [`crate::optim::adam_update`]: the same operations in the same
/// order, each correctly rounded (no FMA), so the results are bit-identical.
/// (Plain `#[inline(always)]` functions, not closures: closures are not
/// inlined into the `#[target_feature]` caller and lose its features.)
#[inline(always)]
unsafe fn adam_impl<S: Isa>(c: &AdamStep, p: *mut f32, g: *const f32, m: *mut f32, v: *mut f32, n: usize) {
    // SAFETY: p, g, m, v hold n floats; the tail is masked.
    unsafe {
        let k = AdamV::<S>::new(c);
        let mut i = 0;
        while i + S::W <= n {
            let (pv, mv, vv) =
                adam_lanes::<S>(&k, S::load(p.add(i)), S::load(g.add(i)), S::load(m.add(i)), S::load(v.add(i)));
            S::store(m.add(i), mv);
            S::store(v.add(i), vv);
            S::store(p.add(i), pv);
            i += S::W;
        }
        if i < n {
            let l = n - i;
            let (pv, mv, vv) = adam_lanes::<S>(
                &k,
                S::load_n(p.add(i), l),
                S::load_n(g.add(i), l),
                S::load_n(m.add(i), l),
                S::load_n(v.add(i), l),
            );
            S::store_n(m.add(i), mv, l);
            S::store_n(v.add(i), vv, l);
            S::store_n(p.add(i), pv, l);
        }
    }
}

struct AdamV<S: Isa> {
    b1: S::V,
    b2: S::V,
    ob1: S::V,
    ob2: S::V,
    ss: S::V,
    bc2s: S::V,
    eps: S::V,
    wd: S::V,
    decay: S::V,
    decoupled: bool,
}

impl<S: Isa> AdamV<S> {
    #[inline(always)]
    unsafe fn new(c: &AdamStep) -> Self {
        // SAFETY: register-only ops; the caller has the features.
        unsafe {
            AdamV {
                b1: S::set1(c.beta1),
                b2: S::set1(c.beta2),
                ob1: S::set1(c.one_minus_beta1),
                ob2: S::set1(c.one_minus_beta2),
                ss: S::set1(c.step_size),
                bc2s: S::set1(c.bc2_sqrt),
                eps: S::set1(c.eps),
                wd: S::set1(c.weight_decay),
                decay: S::set1(c.decay),
                decoupled: c.decoupled,
            }
        }
    }
}

/// One vector of the update: returns the new (p, m, v).
#[inline(always)]
unsafe fn adam_lanes<S: Isa>(k: &AdamV<S>, pv: S::V, gv: S::V, mv: S::V, vv: S::V) -> (S::V, S::V, S::V) {
    // SAFETY: register-only ops; the caller has the features.
    unsafe {
        let (mut pv, mut gv) = (pv, gv);
        if k.decoupled {
            pv = S::mul(pv, k.decay);
        } else {
            gv = S::add(gv, S::mul(k.wd, pv));
        }
        let mv = S::add(S::mul(k.b1, mv), S::mul(k.ob1, gv));
        let vv = S::add(S::mul(k.b2, vv), S::mul(S::mul(k.ob2, gv), gv));
        let denom = S::add(S::div(S::sqrt(vv), k.bc2s), k.eps);
        (S::sub(pv, S::div(S::mul(k.ss, mv), denom)), mv, vv)
    }
}

fn check_adam(params: &[f32], grads: &[f32], m: &[f32], v: &[f32]) {
    let n = params.len();
    assert!(grads.len() == n && m.len() == n && v.len() == n, "adam: buffers differ in length");
}

fn adam_avx2(c: &AdamStep, params: &mut [f32], grads: &[f32], m: &mut [f32], v: &mut [f32]) {
    check_adam(params, grads, m, v);
    // SAFETY: lengths checked; AVX2 promised by the constructor's caller.
    unsafe { adam_avx2_tf(c, params.as_mut_ptr(), grads.as_ptr(), m.as_mut_ptr(), v.as_mut_ptr(), params.len()) }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn adam_avx2_tf(c: &AdamStep, p: *mut f32, g: *const f32, m: *mut f32, v: *mut f32, n: usize) {
    // SAFETY: forwarded from the wrapper.
    unsafe { adam_impl::<Avx2>(c, p, g, m, v, n) }
}

fn adam_avx512(c: &AdamStep, params: &mut [f32], grads: &[f32], m: &mut [f32], v: &mut [f32]) {
    check_adam(params, grads, m, v);
    // SAFETY: lengths checked; AVX-512 promised by the constructor's caller.
    unsafe { adam_avx512_tf(c, params.as_mut_ptr(), grads.as_ptr(), m.as_mut_ptr(), v.as_mut_ptr(), params.len()) }
}

#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn adam_avx512_tf(c: &AdamStep, p: *mut f32, g: *const f32, m: *mut f32, v: *mut f32, n: usize) {
    // SAFETY: forwarded from the wrapper.
    unsafe { adam_impl::<Avx512>(c, p, g, m, v, n) }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::super::{naive, tests::check, Kernels};
    use proptest::prelude::*;
    use std::vec::Vec;

    /// The kernel sets this CPU can run (a message for each one it cannot).
    fn available() -> Vec<Kernels> {
        let mut v = Vec::new();
        let avx2 = std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
        crate::gemm::kernel_set_tested("f32 avx2+fma", "avx2, fma", avx2);
        if avx2 {
            // SAFETY: features checked.
            v.push(unsafe { super::avx2_fma() });
        }
        let avx512 = avx2 && std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vl");
        crate::gemm::kernel_set_tested("f32 avx512", "avx512f, avx512vl", avx512);
        if avx512 {
            // SAFETY: features checked.
            v.push(unsafe { super::avx512() });
        }
        v
    }

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
        let x = fill(seed, m * k);
        let w = fill(seed + 1, n * k);
        let b = fill(seed + 2, n);
        let dy = fill(seed + 3, m * n);
        let name = kern.name;
        for relu in [false, true] {
            let mut y0 = std::vec![0.0; m * n];
            let mut y1 = std::vec![7.0; m * n + 1];
            naive::forward(&x, &w, &b, &mut y0, m, n, k, relu);
            (kern.forward)(&x, &w, &b, &mut y1, m, n, k, relu);
            close(&y1[..m * n], &y0, k, name);
            assert_eq!(y1[m * n], 7.0, "{name} forward wrote past the end");
        }
        for mask in [None, Some(&x[..])] {
            let mut d0 = std::vec![0.0; m * k];
            let mut d1 = std::vec![7.0; m * k + 1];
            naive::input_grad(&dy, &w, &mut d0, mask, m, n, k);
            (kern.input_grad)(&dy, &w, &mut d1, mask, m, n, k);
            close(&d1[..m * k], &d0, n, name);
            assert_eq!(d1[m * k], 7.0, "{name} input_grad wrote past the end");
        }
        // dy as columns 1..n+1 of an [m][n + 3] matrix.
        let ldy = n + 3;
        let dys = fill(seed + 4, m * ldy);
        let mut g0 = std::vec![0.0; n * k];
        let mut g1 = std::vec![7.0; n * k + 1];
        naive::weight_grad(&dys[1..], ldy, &x, &mut g0, m, n, k);
        (kern.weight_grad)(&dys[1..(m - 1) * ldy + n + 1], ldy, &x, &mut g1, m, n, k);
        close(&g1[..n * k], &g0, m, name);
        assert_eq!(g1[n * k], 7.0, "{name} weight_grad wrote past the end");
    }

    const ODD: [usize; 10] = [1, 2, 3, 5, 16, 17, 33, 63, 65, 513];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn simd_matches_naive_small(m in 1usize..20, n in 1usize..20, k in 1usize..70, seed in 0u64..1000) {
            for kern in available() {
                check(&kern, m, n, k, seed);
                super::super::tests::check_panels(&kern, m, n, k, seed);
            }
        }

        #[test]
        fn simd_matches_naive_odd(mi in 0usize..10, ni in 0usize..10, ki in 0usize..10, seed in 0u64..1000) {
            let (m, n, k) = (ODD[mi].min(70), ODD[ni].min(70), ODD[ki]);
            for kern in available() {
                check_big(&kern, m, n, k, seed);
            }
        }
    }

    #[test]
    fn odd_sizes() {
        for kern in available() {
            for &(m, n, k) in &[(1, 1, 1), (3, 17, 63), (5, 3, 65), (1, 7, 513), (17, 1, 33), (4, 4, 16)] {
                check(&kern, m, n, k, 9);
            }
        }
    }

    #[test]
    fn sgd_matches_optimizer() {
        for kern in available() {
            for n in [0, 1, 7, 15, 16, 17, 63, 100, 4096] {
                super::super::tests::check_sgd(&kern, n, n as u64);
                super::super::tests::check_adam(&kern, n, n as u64);
            }
        }
    }

    /// Column blocks of input grad equal the whole, bit for bit.
    #[test]
    fn input_grad_cols_matches_whole() {
        for kern in available() {
            let cols = kern.input_grad_cols.expect("x86 sets have input_grad_cols");
            for &(m, n, k) in &[(1, 1, 1), (5, 3, 17), (64, 512, 512), (7, 10, 513), (3, 70, 100)] {
                let (dy, w, x) = (fill(1, m * n), fill(2, n * k), fill(3, m * k));
                for mask in [None, Some(&x[..])] {
                    let mut whole = std::vec![0.0; m * k];
                    (kern.input_grad)(&dy, &w, &mut whole, mask, m, n, k);
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
                    assert!(whole == parts, "{}: input_grad_cols differs (m={m} n={n} k={k})", kern.name);
                }
            }
        }
    }

    #[test]
    fn weight_grad_step_matches_unfused() {
        for kern in available() {
            // Odd tails, a thin layer, and m > 64 (partial sums in scratch).
            for &(m, n, k) in
                &[(1, 1, 1), (3, 5, 17), (64, 40, 100), (130, 33, 47), (5, 70, 513), (0, 2, 3), (0, 5, 40)]
            {
                super::super::tests::check_step(&kern, m, n, k, 6);
            }
        }
    }

    /// Bit for bit the FMA chain of each element at any sparsity (see
    /// `gemm::tests::check_weight_grad_fma_chain`).
    #[test]
    fn weight_grad_is_the_fma_chain_at_any_sparsity() {
        for kern in available() {
            super::super::tests::check_weight_grad_fma_chain(&kern);
        }
    }

    #[test]
    fn input_grad_is_the_fma_chain_at_any_sparsity() {
        for kern in available() {
            super::super::tests::check_input_grad_fma_chain(&kern);
        }
    }

    #[test]
    fn model_shapes() {
        for kern in available() {
            for &(m, n, k) in &[
                (64, 512, 784),
                (64, 512, 512),
                (64, 10, 512),
                (1, 512, 784),
                (32, 256, 784),
                (5, 13, 100),
                (130, 40, 100),
                (9, 100, 17),
                // More than one chunk of input masks (1024 inputs), and of rows (64).
                (70, 33, 1100),
            ] {
                check_big(&kern, m, n, k, 3);
                super::super::tests::check_panels(&kern, m, n, k, 3);
            }
        }
    }

    /// A packed model gives the unpacked model's hidden activations for a
    /// batch of 9 (the axpy-tile path) exactly, and its logits closely (the
    /// unpacked thin layer uses dot products); each image alone gives its
    /// row of the packed batch exactly.
    #[test]
    fn packed_model_matches_forward() {
        use crate::packed::PackedMlp;
        use crate::par::Serial;
        use crate::spec::Spec;
        use crate::{Mlp, Workspace};
        let spec = Spec::mlp(&[40, 130, 100, 10]);
        let mut m = Mlp::new(spec, std::vec![0.0; spec.params()]).unwrap();
        m.init(4);
        let mut ws = Workspace::new(spec, 9, std::vec![0.0; spec.activations(9)]).unwrap();
        let mut rng = crate::rng::Rng::new(8);
        let x: std::vec::Vec<f32> = (0..9 * 40).map(|_| rng.uniform(-1.0, 1.0).max(0.0)).collect();
        for k in available() {
            let p = PackedMlp::pack(&k, &m, std::vec![0.0; PackedMlp::<&[f32]>::len(&spec)]).unwrap();
            ws.input_mut(9).copy_from_slice(&x);
            m.forward(&k, &Serial, &mut ws, 9);
            let (h2, logits) = (ws.output(1, 9).to_vec(), ws.logits(9).to_vec());
            p.forward(&k, &Serial, &mut ws, 9);
            assert!(ws.output(1, 9) == &h2[..], "{}: batch", k.name);
            close(ws.logits(9), &logits, 100, k.name);
            let want = ws.logits(9).to_vec();
            for (i, row) in x.chunks(40).enumerate() {
                ws.input_mut(1).copy_from_slice(row);
                p.forward(&k, &Serial, &mut ws, 1);
                assert!(ws.logits(1) == &want[i * 10..][..10], "{}: row {i}", k.name);
            }
        }
    }

    #[test]
    fn zero_sizes() {
        for kern in available() {
            let (x, w, b) = ([1.0f32; 6], [1.0f32; 6], [0.5f32; 3]);
            let mut y = [9.0f32; 6];
            (kern.forward)(&x, &w, &b, &mut y, 2, 3, 0, false);
            assert_eq!(y, [0.5; 6]);
            let mut dx = [9.0f32; 6];
            (kern.input_grad)(&[], &w, &mut dx, None, 2, 0, 3);
            assert_eq!(dx, [0.0; 6]);
            let mut dw = [9.0f32; 6];
            (kern.weight_grad)(&[], 3, &x, &mut dw, 0, 3, 2);
            assert_eq!(dw, [0.0; 6]);
        }
    }
}
