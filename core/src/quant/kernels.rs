//! Int8 dot-product kernels over the packed weight layout.
//!
//! Every kernel computes, for one block of 4 consecutive output rows,
//! `acc[r] = Σ_k x[k] · w[r][k]` with `x: i16` (unsigned 8-bit activation
//! values 0..=255, or pixel bytes, widened once per layer) and `w: i8`, in
//! exact `i32` arithmetic. Sums are exact (no overflow is possible for
//! `k < 2^31 / (255·128)` ≈ 65,000), so every kernel returns bit-identical
//! results on every target.
//!
//! # Packed weight layout (flash layout)
//!
//! A layer with `rows` outputs and `k` inputs stores `rows·k` bytes. Rows
//! are cut into blocks of [`ROW_BLOCK`] = 4 (the last block has
//! `nr = rows % 4` rows if that is not 0). A block of `nr` rows occupies
//! `nr·k` bytes starting at byte `(first row)·k`:
//!
//! ```text
//! for g in 0..k/4:            // k-groups of 4 inputs
//!     for r in 0..nr:         // one 32-bit word per row
//!         w[r][4g+0], w[r][4g+2], w[r][4g+1], w[r][4g+3]
//! for r in 0..nr:             // k % 4 leftover inputs, row by row
//!     w[r][4·(k/4) ..k]
//! ```
//!
//! The byte swap inside each word is for `SXTB16`: on the word
//! `[w0, w2, w1, w3]`, `SXTB16 t, w` yields the halfwords `(w0, w1)` and
//! `SXTB16 t, w, ROR #8` yields `(w2, w3)`, which pair with the activation
//! words `(x0, x1)` and `(x2, x3)` of a natural-order `i16` buffer in
//! `SMLAD`. The four row words of a group are consecutive, so one `LDM`
//! loads a group of a 4-row block, and the DSP kernel's inner loop is, per
//! 4 inputs × 4 rows = 16 MACs: `LDRD` (x) + `LDM` (w) + 8 `SXTB16` + 8
//! `SMLAD` = 18 instructions, with one `CMP` + `BNE` per 8 groups (see
//! [`dsp::dot4_blocks`]). [`packed_index`] is the single definition of this
//! layout.

/// Output rows per packed block (and per pass of the DSP kernel).
pub const ROW_BLOCK: usize = 4;
/// Inputs per packed 32-bit word.
pub const K_GROUP: usize = 4;
/// Byte position, inside a row's 4-byte word, of input `4g + j`.
pub const SWAP: [usize; 4] = [0, 2, 1, 3];

/// Index in the packed array of weight `(r, k)` of a `rows × kdim` layer.
#[inline]
pub const fn packed_index(r: usize, k: usize, rows: usize, kdim: usize) -> usize {
    let rb = r / ROW_BLOCK * ROW_BLOCK;
    let nr = if rows - rb < ROW_BLOCK { rows - rb } else { ROW_BLOCK };
    let r0 = r - rb;
    let base = rb * kdim;
    let kg = kdim / K_GROUP * K_GROUP;
    if k < kg {
        base + (k / K_GROUP) * nr * K_GROUP + r0 * K_GROUP + SWAP[k % K_GROUP]
    } else {
        base + kg * nr + r0 * (kdim - kg) + (k - kg)
    }
}

/// Packs a row-major `[rows][kdim]` matrix into `out` (same length).
pub fn pack(row_major: &[i8], rows: usize, kdim: usize, out: &mut [i8]) {
    assert!(row_major.len() >= rows * kdim && out.len() >= rows * kdim);
    for r in 0..rows {
        for k in 0..kdim {
            out[packed_index(r, k, rows, kdim)] = row_major[r * kdim + k];
        }
    }
}

/// One 4-row block: `x` has `k` elements, `wb` is the block's `4·k` packed
/// bytes. Returns the four row sums.
pub type Block4Fn = fn(x: &[i16], wb: &[i8], k: usize) -> [i32; 4];

/// One sample's row sums over a packed layer of `rows` rows (or a run of
/// its rows that starts on a block boundary, which is packed the same way):
/// `out[r] = Σ_p x[p]·w[r][p]` for `r < rows` (exact `i32`, no bias).
pub type RowsFn = fn(x: &[i16], w: &[i8], rows: usize, k: usize, out: &mut [i32]);

/// Batched layer product on `u8` inputs (the host's batched path, see
/// [`super::QModel::classify_batch`]): for every sample `i < m` and row
/// `r < rows`, `out[i·rows + r] = Σ_p x[i·ldx + p] · w[r][p]` (exact `i32`,
/// no bias), `w` in the packed layout. Every implementation returns
/// bit-identical sums.
pub type GemmFn = fn(x: &[u8], ldx: usize, m: usize, w: &[i8], rows: usize, k: usize, out: &mut [i32]);

/// Output parameters of a requantized layer (see [`RequantFn`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Requant {
    pub zp: i32,
    pub min: i32,
    pub max: i32,
}

/// Requantizes one sample's accumulators of a hidden layer:
/// `out[r] = clamp(zp + MBQM(acc[r] + bias[r], m0[r], shift[r]), min, max) as u8`
/// for `r < out.len()`, exactly [`super::QLayer::requantize`].
pub type RequantFn = fn(acc: &[i32], bias: &[i32], m0: &[i32], shift: &[i32], q: Requant, out: &mut [u8]);

/// A kernel choice. [`QKernels::BEST`] is what `classify` uses; on x86-64
/// hosts `tailor::quantize::best_qkernels` picks one of [`x86`] at run time.
#[derive(Clone, Copy)]
pub struct QKernels {
    pub name: &'static str,
    /// One sample, 4 rows.
    pub block4: Block4Fn,
    /// One sample, a run of rows (`classify`, the firmware path).
    pub rows: RowsFn,
    /// Many samples, all rows of a layer (`classify_batch`).
    pub gemm: GemmFn,
    /// Requantization of one sample's hidden layer (`classify_batch`).
    pub requant: RequantFn,
}

impl core::fmt::Debug for QKernels {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name)
    }
}

impl QKernels {
    /// Reads each weight through [`packed_index`]: the reference.
    pub const NAIVE: QKernels = QKernels {
        name: "naive",
        block4: naive::block4,
        rows: naive::rows,
        gemm: naive::gemm,
        requant: requant_scalar,
    };
    /// Plain Rust, lane-parallel, that LLVM vectorizes on x86-64.
    pub const PORTABLE: QKernels = QKernels {
        name: "portable",
        block4: portable::block4,
        rows: portable::rows,
        gemm: portable::gemm,
        requant: requant_scalar,
    };
    /// Cortex-M4/M7: `SMLAD` + `SXTB16`, 4 rows per pass, every block of a
    /// run in one call.
    #[cfg(all(target_arch = "arm", tailor_arm_dsp))]
    /// (The device classifies one image at a time: its batched `gemm` is the
    /// small naive one, to keep flash for what runs.)
    pub const DSP: QKernels =
        QKernels { name: "dsp", block4: dsp::block4, rows: dsp::rows, gemm: naive::gemm, requant: requant_scalar };
    /// x86-64 baseline SIMD: `pmaddwd`, 4 rows × 4 inputs per step.
    #[cfg(target_arch = "x86_64")]
    pub const SSE2: QKernels =
        QKernels { name: "sse2", block4: sse2::block4, rows: sse2::rows, gemm: sse2::gemm, requant: requant_scalar };
    /// The fastest kernel compiled in for this target.
    #[cfg(all(target_arch = "arm", tailor_arm_dsp))]
    pub const BEST: QKernels = Self::DSP;
    #[cfg(target_arch = "x86_64")]
    pub const BEST: QKernels = Self::SSE2;
    /// aarch64: NEON `smlal`, 4 rows × 4 inputs per step.
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    pub const NEON: QKernels =
        QKernels { name: "neon", block4: neon::block4, rows: neon::rows, gemm: neon::gemm, requant: requant_scalar };
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    pub const BEST: QKernels = Self::NEON;
    #[cfg(not(any(
        all(target_arch = "arm", tailor_arm_dsp),
        target_arch = "x86_64",
        all(target_arch = "aarch64", target_feature = "neon")
    )))]
    pub const BEST: QKernels = Self::PORTABLE;
}

impl Default for QKernels {
    fn default() -> Self {
        QKernels::BEST
    }
}

/// Sums of the rows `nr < 4` of a final partial block (any kernel uses this:
/// it is at most 3 rows of a layer).
pub fn tail_rows(x: &[i16], wb: &[i8], nr: usize, k: usize, out: &mut [i32]) {
    #[cfg(all(target_arch = "arm", tailor_arm_dsp))]
    if (x.as_ptr() as usize | wb.as_ptr() as usize) & 3 == 0 {
        return dsp::tail_rows(x, wb, nr, k, out);
    }
    tail_rows_of(x, wb, nr, k, out)
}

fn tail_rows_of<T: Copy + Into<i32>>(x: &[T], wb: &[i8], nr: usize, k: usize, out: &mut [i32]) {
    let kg = k / K_GROUP * K_GROUP;
    for (r, o) in out[..nr].iter_mut().enumerate() {
        let mut s = 0i32;
        for g in 0..kg / K_GROUP {
            let w = &wb[g * nr * K_GROUP + r * K_GROUP..][..K_GROUP];
            for (j, &pos) in SWAP.iter().enumerate() {
                s = s.wrapping_add(x[g * K_GROUP + j].into() * w[pos] as i32);
            }
        }
        let t = k - kg;
        for (i, &w) in wb[kg * nr + r * t..][..t].iter().enumerate() {
            s = s.wrapping_add(x[kg + i].into() * w as i32);
        }
        *o = s;
    }
}

/// Rows per [`RowsFn`] call of [`gemv`] and the hidden layers (a multiple
/// of [`ROW_BLOCK`]: runs start on block boundaries).
pub const GEMV_RUN: usize = 16 * ROW_BLOCK;

/// `acc[r] = Σ_k x[k]·w[r][k]` for all `rows` of a packed layer, calling
/// `emit(r, acc)` in row order. This is the layer loop every path shares:
/// [`QKernels::rows`] on runs of [`GEMV_RUN`] rows.
#[inline]
pub fn gemv(kern: &QKernels, x: &[i16], w: &[i8], rows: usize, k: usize, mut emit: impl FnMut(usize, i32)) {
    let w = &w[..rows * k];
    let mut acc = [0i32; GEMV_RUN];
    let mut r0 = 0;
    while r0 < rows {
        let m = (rows - r0).min(GEMV_RUN);
        (kern.rows)(x, &w[r0 * k..][..m * k], m, k, &mut acc[..m]);
        for (r, &a) in acc[..m].iter().enumerate() {
            emit(r0 + r, a);
        }
        r0 += m;
    }
}

/// A [`RowsFn`] from a block kernel: full blocks through `block4`, the last
/// `rows % 4` rows through [`tail_rows`].
pub fn rows_by_block4(block4: Block4Fn, x: &[i16], w: &[i8], rows: usize, k: usize, out: &mut [i32]) {
    let (x, w, out) = (&x[..k], &w[..rows * k], &mut out[..rows]);
    let full = rows / ROW_BLOCK;
    for (b, o) in out.chunks_exact_mut(ROW_BLOCK).enumerate() {
        o.copy_from_slice(&block4(x, &w[b * ROW_BLOCK * k..][..ROW_BLOCK * k], k));
    }
    let nr = rows - full * ROW_BLOCK;
    if nr > 0 {
        tail_rows(x, &w[full * ROW_BLOCK * k..], nr, k, &mut out[full * ROW_BLOCK..]);
    }
}

/// [`gemv`] with only a block kernel.
#[inline]
pub fn gemv_with(block4: Block4Fn, x: &[i16], w: &[i8], rows: usize, k: usize, mut emit: impl FnMut(usize, i32)) {
    let (x, w) = (&x[..k], &w[..rows * k]);
    let mut r0 = 0;
    while r0 < rows {
        let nr = (rows - r0).min(ROW_BLOCK);
        let wb = &w[r0 * k..][..nr * k];
        let acc = if nr == ROW_BLOCK {
            block4(x, wb, k)
        } else {
            let mut acc = [0i32; ROW_BLOCK];
            tail_rows(x, wb, nr, k, &mut acc);
            acc
        };
        // One call site, so that `emit` (a whole requantization on the
        // device) is inlined.
        for (r, &a) in acc[..nr].iter().enumerate() {
            emit(r0 + r, a);
        }
        r0 += nr;
    }
}

/// Checks the operands of a [`GemmFn`] (panics if a slice is too short).
pub fn check_gemm(x: &[u8], ldx: usize, m: usize, w: &[i8], rows: usize, k: usize, out: &[i32]) {
    let need = |a: usize, b: usize| a.checked_mul(b).expect("gemm: size overflow");
    assert!(w.len() >= need(rows, k) && out.len() >= need(m, rows), "gemm: w or out too short");
    if m > 0 {
        assert!(ldx >= k || m == 1, "gemm: ldx < k");
        assert!(x.len() >= need(m - 1, ldx).checked_add(k).expect("gemm: size overflow"), "gemm: x too short");
    }
}

/// Inputs per widened chunk of the block-kernel based [`GemmFn`]s.
const GEMM_KW: usize = 1024;

/// A [`GemmFn`] from a block kernel: widens each sample to `i16` (on the
/// stack, `k ≤ 1024`; larger layers take the naive path) and runs [`gemv_with`].
pub fn gemm_by_block4(
    block4: Block4Fn,
    x: &[u8],
    ldx: usize,
    m: usize,
    w: &[i8],
    rows: usize,
    k: usize,
    out: &mut [i32],
) {
    check_gemm(x, ldx, m, w, rows, k, out);
    if k > GEMM_KW {
        return naive::gemm(x, ldx, m, w, rows, k, out);
    }
    let mut buf = super::Aligned([0i16; GEMM_KW]);
    for i in 0..m {
        for (d, &p) in buf.0[..k].iter_mut().zip(&x[i * ldx..][..k]) {
            *d = p as i16;
        }
        let o = &mut out[i * rows..][..rows];
        gemv_with(block4, &buf.0[..k], w, rows, k, |r, a| o[r] = a);
    }
}

/// Scalar [`RequantFn`]: [`super::QLayer::requantize`] row by row.
pub fn requant_scalar(acc: &[i32], bias: &[i32], m0: &[i32], shift: &[i32], q: Requant, out: &mut [u8]) {
    let n = out.len();
    let it = acc[..n].iter().zip(&bias[..n]).zip(m0[..n].iter().zip(&shift[..n]));
    for (o, ((&a, &b), (&m, &s))) in out.iter_mut().zip(it) {
        *o = requant_one(a.wrapping_add(b), m, s, q) as u8;
    }
}

/// One requantized hidden output, `clamp(zp + MBQM(acc, m0, shift), min,
/// max)` (`min ≤ max`, as `QModel::parse` checks).
#[inline(always)]
pub fn requant_one(acc: i32, m0: i32, shift: i32, q: Requant) -> i32 {
    // Not `clamp`: its `min ≤ max` assertion would cost a compare per row.
    q.zp.wrapping_add(super::mbqm(acc, m0, shift)).max(q.min).min(q.max)
}

/// One sample's hidden layer outputs, widened (the next layer's input):
/// `out[r] = requant_one(acc[r] + bias[r], m0[r], shift[r], q)` for
/// `r < out.len()`. Exact, so every target may compute it its own way: the
/// DSP target with [`dsp::requant_widened`].
pub fn requant_widened(acc: &[i32], bias: &[i32], m0: &[i32], shift: &[i32], q: Requant, out: &mut [i16]) {
    #[cfg(all(target_arch = "arm", tailor_arm_dsp))]
    return dsp::requant_widened(acc, bias, m0, shift, q, out);
    #[cfg(not(all(target_arch = "arm", tailor_arm_dsp)))]
    {
        let n = out.len();
        let it = acc[..n].iter().zip(&bias[..n]).zip(m0[..n].iter().zip(&shift[..n]));
        for (o, ((&a, &b), (&m, &s))) in out.iter_mut().zip(it) {
            *o = requant_one(a.wrapping_add(b), m, s, q) as i16;
        }
    }
}

/// Adds the `k % 4` leftover inputs of every full 4-row block of a
/// `rows × k` layer to `out` (`m` samples at stride `ldo`; the x86 batched
/// kernels do the 4-input groups).
#[allow(clippy::too_many_arguments)]
#[cfg(target_arch = "x86_64")]
fn add_k_tail(x: &[u8], ldx: usize, m: usize, w: &[i8], rows: usize, k: usize, out: &mut [i32], ldo: usize) {
    let kg = k / K_GROUP * K_GROUP;
    let t = k - kg;
    if t == 0 {
        return;
    }
    for blk in 0..rows / ROW_BLOCK {
        let wb = &w[blk * ROW_BLOCK * k..][..ROW_BLOCK * k];
        for r in 0..ROW_BLOCK {
            let wt = &wb[ROW_BLOCK * kg + r * t..][..t];
            for i in 0..m {
                let xt = &x[i * ldx + kg..][..t];
                let s = wt.iter().zip(xt).fold(0i32, |s, (&w, &x)| s.wrapping_add(w as i32 * x as i32));
                let o = &mut out[i * ldo + blk * ROW_BLOCK + r];
                *o = o.wrapping_add(s);
            }
        }
    }
}

pub mod naive {
    use super::*;

    /// [`RowsFn`] over [`block4`].
    pub fn rows(x: &[i16], w: &[i8], rows: usize, k: usize, out: &mut [i32]) {
        rows_by_block4(block4, x, w, rows, k, out)
    }

    /// Reference: every weight read through [`packed_index`] of a 4-row layer.
    pub fn block4(x: &[i16], wb: &[i8], k: usize) -> [i32; 4] {
        core::array::from_fn(|r| (0..k).map(|p| x[p] as i32 * wb[packed_index(r, p, ROW_BLOCK, k)] as i32).sum())
    }

    /// Reference [`GemmFn`]: every weight read through [`packed_index`].
    pub fn gemm(x: &[u8], ldx: usize, m: usize, w: &[i8], rows: usize, k: usize, out: &mut [i32]) {
        check_gemm(x, ldx, m, w, rows, k, out);
        for i in 0..m {
            let xi = &x[i * ldx..][..k];
            for r in 0..rows {
                out[i * rows + r] =
                    (0..k).fold(0i32, |s, p| s.wrapping_add(xi[p] as i32 * w[packed_index(r, p, rows, k)] as i32));
            }
        }
    }

    /// Reference for a whole layer in PyTorch (row-major) layout.
    pub fn gemv_row_major(x: &[i16], w: &[i8], rows: usize, k: usize, acc: &mut [i32]) {
        for r in 0..rows {
            acc[r] = (0..k).map(|p| x[p] as i32 * w[r * k + p] as i32).sum();
        }
    }
}

pub mod portable {
    use super::*;

    /// [`RowsFn`] over [`block4`].
    pub fn rows(x: &[i16], w: &[i8], rows: usize, k: usize, out: &mut [i32]) {
        rows_by_block4(block4, x, w, rows, k, out)
    }

    /// [`GemmFn`] over [`block4`].
    pub fn gemm(x: &[u8], ldx: usize, m: usize, w: &[i8], rows: usize, k: usize, out: &mut [i32]) {
        gemm_by_block4(block4, x, ldx, m, w, rows, k, out)
    }

    /// 16 `i32` lanes (4 rows × 4 word bytes), two groups per iteration so
    /// that LLVM fills 256-bit registers: `vpmovsxbd`/`vpmulld`/`vpaddd`.
    pub fn block4(x: &[i16], wb: &[i8], k: usize) -> [i32; 4] {
        let kg = k / K_GROUP * K_GROUP;
        let (xg, wg) = (&x[..kg], &wb[..ROW_BLOCK * kg]);
        let mut acc = [0i32; 16];
        let mut acc2 = [0i32; 16];
        let mut xc = xg.chunks_exact(8);
        let mut wc = wg.chunks_exact(32);
        for (xs, ws) in (&mut xc).zip(&mut wc) {
            // Input order matching the byte order [w0, w2, w1, w3].
            let a = [xs[0], xs[2], xs[1], xs[3]];
            let b = [xs[4], xs[6], xs[5], xs[7]];
            for l in 0..16 {
                acc[l] = acc[l].wrapping_add(ws[l] as i32 * a[l & 3] as i32);
                acc2[l] = acc2[l].wrapping_add(ws[16 + l] as i32 * b[l & 3] as i32);
            }
        }
        for (xs, ws) in xc.remainder().chunks_exact(4).zip(wc.remainder().chunks_exact(16)) {
            let a = [xs[0], xs[2], xs[1], xs[3]];
            for l in 0..16 {
                acc[l] = acc[l].wrapping_add(ws[l] as i32 * a[l & 3] as i32);
            }
        }
        let mut out = [0i32; 4];
        for (r, o) in out.iter_mut().enumerate() {
            *o = (0..4).fold(0i32, |s, j| s.wrapping_add(acc[4 * r + j]).wrapping_add(acc2[4 * r + j]));
        }
        let t = k - kg;
        if t > 0 {
            for (r, o) in out.iter_mut().enumerate() {
                for (i, &w) in wb[ROW_BLOCK * kg + r * t..][..t].iter().enumerate() {
                    *o += x[kg + i] as i32 * w as i32;
                }
            }
        }
        out
    }
}

/// SSE2 (every x86-64 CPU). Per 4-input group of a 4-row block: one 16-byte
/// weight load, sign extension to `i16`, the activations `[x0, x2, x1, x3]`
/// (one `pshuflw`) repeated for two rows, two `pmaddwd` + two `paddd`.
#[cfg(target_arch = "x86_64")]
pub mod sse2 {
    use super::*;
    use core::arch::x86_64::*;

    /// [`RowsFn`] over [`block4`].
    pub fn rows(x: &[i16], w: &[i8], rows: usize, k: usize, out: &mut [i32]) {
        rows_by_block4(block4, x, w, rows, k, out)
    }

    /// [`GemmFn`] over [`block4`].
    pub fn gemm(x: &[u8], ldx: usize, m: usize, w: &[i8], rows: usize, k: usize, out: &mut [i32]) {
        gemm_by_block4(block4, x, ldx, m, w, rows, k, out)
    }

    pub fn block4(x: &[i16], wb: &[i8], k: usize) -> [i32; 4] {
        let groups = k / K_GROUP;
        let kg = groups * K_GROUP;
        assert!(x.len() >= k && wb.len() >= ROW_BLOCK * k);
        let mut a = [0i32; 8];
        // SAFETY: SSE2 is part of the x86-64 baseline; every load reads
        // inside `x[..4·groups]` (8 bytes at 4g) or `wb[..16·groups]` (16
        // bytes at 16g), checked by the assert above; stores go to `a`.
        unsafe {
            let zero = _mm_setzero_si128();
            let (mut acc01, mut acc23) = (zero, zero);
            let (xp, wp) = (x.as_ptr(), wb.as_ptr());
            for g in 0..groups {
                let w = _mm_loadu_si128(wp.add(16 * g) as *const __m128i);
                let sign = _mm_cmpgt_epi8(zero, w);
                let w01 = _mm_unpacklo_epi8(w, sign);
                let w23 = _mm_unpackhi_epi8(w, sign);
                let xv = _mm_loadl_epi64(xp.add(4 * g) as *const __m128i);
                let xs = _mm_shufflelo_epi16::<0b11_01_10_00>(xv);
                let xx = _mm_unpacklo_epi64(xs, xs);
                acc01 = _mm_add_epi32(acc01, _mm_madd_epi16(w01, xx));
                acc23 = _mm_add_epi32(acc23, _mm_madd_epi16(w23, xx));
            }
            _mm_storeu_si128(a.as_mut_ptr() as *mut __m128i, acc01);
            _mm_storeu_si128(a.as_mut_ptr().add(4) as *mut __m128i, acc23);
        }
        let mut out: [i32; 4] = core::array::from_fn(|r| a[2 * r].wrapping_add(a[2 * r + 1]));
        let t = k - kg;
        if t > 0 {
            for (r, o) in out.iter_mut().enumerate() {
                for (i, &w) in wb[ROW_BLOCK * kg + r * t..][..t].iter().enumerate() {
                    *o += x[kg + i] as i32 * w as i32;
                }
            }
        }
        out
    }

    /// Four samples per weight load (see [`super::block4_batch4`]).
    pub fn block4_batch4(xs: [&[i16]; 4], wb: &[i8], k: usize) -> [[i32; 4]; 4] {
        let groups = k / K_GROUP;
        let kg = groups * K_GROUP;
        assert!(xs.iter().all(|x| x.len() >= k) && wb.len() >= ROW_BLOCK * k);
        let mut a = [[0i32; 8]; 4];
        // SAFETY: as in `block4`, for each of the four inputs.
        unsafe {
            let zero = _mm_setzero_si128();
            let mut acc = [[zero; 2]; 4];
            let wp = wb.as_ptr();
            let xp = xs.map(|x| x.as_ptr());
            for g in 0..groups {
                let w = _mm_loadu_si128(wp.add(16 * g) as *const __m128i);
                let sign = _mm_cmpgt_epi8(zero, w);
                let w01 = _mm_unpacklo_epi8(w, sign);
                let w23 = _mm_unpackhi_epi8(w, sign);
                for b in 0..4 {
                    let xv = _mm_loadl_epi64(xp[b].add(4 * g) as *const __m128i);
                    let xs = _mm_shufflelo_epi16::<0b11_01_10_00>(xv);
                    let xx = _mm_unpacklo_epi64(xs, xs);
                    acc[b][0] = _mm_add_epi32(acc[b][0], _mm_madd_epi16(w01, xx));
                    acc[b][1] = _mm_add_epi32(acc[b][1], _mm_madd_epi16(w23, xx));
                }
            }
            for b in 0..4 {
                _mm_storeu_si128(a[b].as_mut_ptr() as *mut __m128i, acc[b][0]);
                _mm_storeu_si128(a[b].as_mut_ptr().add(4) as *mut __m128i, acc[b][1]);
            }
        }
        let t = k - kg;
        core::array::from_fn(|b| {
            core::array::from_fn(|r| {
                let mut o = a[b][2 * r].wrapping_add(a[b][2 * r + 1]);
                for (i, &w) in wb[ROW_BLOCK * kg + r * t..][..t].iter().enumerate() {
                    o += xs[b][kg + i] as i32 * w as i32;
                }
                o
            })
        })
    }
}

/// aarch64 NEON (baseline there): per 4 inputs × 4 rows, one 16-byte load
/// of the packed block, two widenings to `i16` and four `smlal`.
#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
pub mod neon {
    use super::*;
    use core::arch::aarch64::*;

    /// [`GemmFn`] over [`block4`].
    pub fn gemm(x: &[u8], ldx: usize, m: usize, w: &[i8], rows: usize, k: usize, out: &mut [i32]) {
        gemm_by_block4(block4, x, ldx, m, w, rows, k, out)
    }

    /// [`RowsFn`] over [`block4`].
    pub fn rows(x: &[i16], w: &[i8], rows: usize, k: usize, out: &mut [i32]) {
        rows_by_block4(block4, x, w, rows, k, out)
    }

    pub fn block4(x: &[i16], wb: &[i8], k: usize) -> [i32; 4] {
        let groups = k / K_GROUP;
        let kg = groups * K_GROUP;
        assert!(x.len() >= k && wb.len() >= ROW_BLOCK * k);
        // Byte indices putting the activations of a group in the weights'
        // word order (`SWAP`: x0 x2 x1 x3), twice (two rows per vector).
        const IDX: [u8; 16] = [0, 1, 4, 5, 2, 3, 6, 7, 0, 1, 4, 5, 2, 3, 6, 7];
        // SAFETY: NEON is enabled for the target; every load reads inside
        // `x[..4·groups]` (8 bytes at 4g) or `wb[..16·groups]` (16 bytes at
        // 16g), checked by the assert above.
        let mut out: [i32; 4] = unsafe {
            let idx = vld1q_u8(IDX.as_ptr());
            let mut acc = [vdupq_n_s32(0); 4];
            let (xp, wp) = (x.as_ptr(), wb.as_ptr());
            for g in 0..groups {
                let w = vld1q_s8(wp.add(16 * g));
                let (w01, w23) = (vmovl_s8(vget_low_s8(w)), vmovl_high_s8(w));
                let xb = vreinterpretq_u8_s16(vcombine_s16(vld1_s16(xp.add(4 * g)), vdup_n_s16(0)));
                let xx = vreinterpretq_s16_u8(vqtbl1q_u8(xb, idx));
                acc[0] = vmlal_s16(acc[0], vget_low_s16(w01), vget_low_s16(xx));
                acc[1] = vmlal_high_s16(acc[1], w01, xx);
                acc[2] = vmlal_s16(acc[2], vget_low_s16(w23), vget_low_s16(xx));
                acc[3] = vmlal_high_s16(acc[3], w23, xx);
            }
            acc.map(|a| vaddvq_s32(a))
        };
        let t = k - kg;
        if t > 0 {
            for (r, o) in out.iter_mut().enumerate() {
                for (i, &w) in wb[ROW_BLOCK * kg + r * t..][..t].iter().enumerate() {
                    *o += x[kg + i] as i32 * w as i32;
                }
            }
        }
        out
    }
}

/// Four samples through one 4-row block: `out[b][r] = Σ_k xs[b][k]·w[r][k]`.
/// Each weight is loaded once for four samples (the host's batched path:
/// per-sample inference is bound by streaming the 0.67 MB of weights).
pub fn block4_batch4(xs: [&[i16]; 4], wb: &[i8], k: usize) -> [[i32; 4]; 4] {
    #[cfg(target_arch = "x86_64")]
    {
        sse2::block4_batch4(xs, wb, k)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        xs.map(|x| (QKernels::BEST.block4)(x, wb, k))
    }
}

/// [`gemv`] for four samples: `emit(b, r, acc)`.
pub fn gemv4(xs: [&[i16]; 4], w: &[i8], rows: usize, k: usize, mut emit: impl FnMut(usize, usize, i32)) {
    let w = &w[..rows * k];
    let full = rows / ROW_BLOCK;
    for blk in 0..full {
        let acc = block4_batch4(xs, &w[blk * ROW_BLOCK * k..][..ROW_BLOCK * k], k);
        for (b, a) in acc.iter().enumerate() {
            for (r, &v) in a.iter().enumerate() {
                emit(b, blk * ROW_BLOCK + r, v);
            }
        }
    }
    let nr = rows - full * ROW_BLOCK;
    if nr > 0 {
        for (b, x) in xs.iter().enumerate() {
            let mut acc = [0i32; ROW_BLOCK];
            tail_rows(x, &w[full * ROW_BLOCK * k..], nr, k, &mut acc);
            for (r, &a) in acc[..nr].iter().enumerate() {
                emit(b, full * ROW_BLOCK + r, a);
            }
        }
    }
}

/// Cortex-M4/M7 DSP kernels (ARMv7E-M): the row sums in naked `asm`, the
/// requantization of hidden outputs. Their entry points are safe and
/// checked; the on-target tests compare them with the naive kernel and the
/// reference requantization.
#[cfg(all(target_arch = "arm", tailor_arm_dsp))]
pub mod dsp {
    use super::*;

    /// [`RowsFn`]: every full block through one [`dot4_blocks`] call, the
    /// last `rows % 4` rows through [`tail_rows`] ([`dot1`]). Unaligned
    /// operands (never the case for `classify`'s buffers and `.q8` weights)
    /// take [`portable::block4`].
    pub fn rows(x: &[i16], w: &[i8], rows: usize, k: usize, out: &mut [i32]) {
        let (x, w, out) = (&x[..k], &w[..rows * k], &mut out[..rows]);
        if (x.as_ptr() as usize | w.as_ptr() as usize) & 3 != 0 {
            return rows_by_block4(portable::block4, x, w, rows, k, out);
        }
        let full = rows / ROW_BLOCK;
        if full > 0 {
            let groups = k / K_GROUP;
            let x0 = x.as_ptr();
            let mut run = Run {
                // `wrapping_add`: pointers only compared with, inside `x`.
                x: x0,
                singles_end: x0.wrapping_add(K_GROUP * (groups % UNROLL)),
                end: x0.wrapping_add(K_GROUP * groups),
                skip: ROW_BLOCK * (k - K_GROUP * groups),
                out: out.as_mut_ptr(),
                blocks: full,
            };
            // SAFETY: each block reads `8·groups` bytes of `x` (k ≥ 4·groups
            // i16) and its `4·k` bytes of `w` (the groups' `16·groups`, then
            // skips the `skip` leftover bytes): `full` blocks stay inside
            // `w[..rows·k]`; writes `out[..4·full]`; all 4-byte aligned.
            unsafe { dot4_blocks(w.as_ptr(), &mut run) };
            if !k.is_multiple_of(K_GROUP) {
                for (b, o) in out[..full * ROW_BLOCK].chunks_exact_mut(ROW_BLOCK).enumerate() {
                    let wb = &w[b * ROW_BLOCK * k..][..ROW_BLOCK * k];
                    for (r, o) in o.iter_mut().enumerate() {
                        add_k_tail_row(x, wb, ROW_BLOCK, k, r, o);
                    }
                }
            }
        }
        let nr = rows - full * ROW_BLOCK;
        if nr > 0 {
            tail_rows(x, &w[full * ROW_BLOCK * k..], nr, k, &mut out[full * ROW_BLOCK..]);
        }
    }

    /// Adds the `k % 4` leftover inputs of row `r` of a block of `nr` rows
    /// (stored row by row after the groups) to `acc`.
    #[inline]
    fn add_k_tail_row(x: &[i16], wb: &[i8], nr: usize, k: usize, r: usize, acc: &mut i32) {
        let kg = k / K_GROUP * K_GROUP;
        let t = k - kg;
        for (i, &w) in wb[nr * kg + r * t..][..t].iter().enumerate() {
            *acc = acc.wrapping_add(x[kg + i] as i32 * w as i32);
        }
    }

    /// One 4-row block through [`rows`].
    pub fn block4(x: &[i16], wb: &[i8], k: usize) -> [i32; 4] {
        let mut out = [0i32; 4];
        rows(x, wb, ROW_BLOCK, k, &mut out);
        out
    }

    /// [`super::tail_rows`] (`nr < 4` rows) through [`dot1`]; `x` and `wb`
    /// 4-byte aligned.
    pub(super) fn tail_rows(x: &[i16], wb: &[i8], nr: usize, k: usize, out: &mut [i32]) {
        let groups = k / K_GROUP;
        assert!(nr < ROW_BLOCK && x.len() >= k && wb.len() >= nr * k && out.len() >= nr);
        assert!((x.as_ptr() as usize | wb.as_ptr() as usize) & 3 == 0, "dsp::tail_rows: unaligned operands");
        for (r, o) in out[..nr].iter_mut().enumerate() {
            // SAFETY: row r's words are at 4r + 4·nr·g for g < groups, all
            // inside the block's first `4·nr·groups ≤ nr·k` bytes; `x` as in
            // `rows`; both aligned (checked above).
            *o = unsafe { dot1(x.as_ptr(), wb.as_ptr().add(4 * r), groups, 4 * nr) };
            add_k_tail_row(x, wb, nr, k, r, o);
        }
    }

    /// [`super::requant_widened`]: right shifts of 1 to 31 bits (what
    /// calibration gives: `M < 1/2`) through [`mbqm_shr`], others through
    /// [`super::super::mbqm`]; the clamp of a ReLU layer with zero point 0
    /// (`0..=255`) is one `USAT`.
    pub fn requant_widened(acc: &[i32], bias: &[i32], m0: &[i32], shift: &[i32], q: Requant, out: &mut [i16]) {
        let n = out.len();
        let (acc, bias, m0, shift) = (&acc[..n], &bias[..n], &m0[..n], &shift[..n]);
        if q == (Requant { zp: 0, min: 0, max: 255 }) {
            requant_loop::<true>(acc, bias, m0, shift, q, out)
        } else {
            requant_loop::<false>(acc, bias, m0, shift, q, out)
        }
    }

    #[inline(always)]
    fn requant_loop<const U8: bool>(acc: &[i32], bias: &[i32], m0: &[i32], shift: &[i32], q: Requant, out: &mut [i16]) {
        let rows = acc.iter().zip(bias).zip(m0.iter().zip(shift));
        for (o, ((&a, &b), (&m, &s))) in out.iter_mut().zip(rows) {
            let a = a.wrapping_add(b);
            // −shift − 1: the right shift less one.
            let e1 = !s;
            let v = if (e1 as u32) < 31 { mbqm_shr(a, m, e1) } else { super::super::mbqm(a, m, s) };
            *o = if U8 { usat8(v) } else { q.zp.wrapping_add(v).max(q.min).min(q.max) } as i16;
        }
    }

    /// `v` clamped to `0..=255`.
    #[inline(always)]
    fn usat8(v: i32) -> i32 {
        let r: i32;
        // SAFETY: register arithmetic only (USAT may set the Q flag).
        unsafe {
            core::arch::asm!("usat {r}, #8, {v}", r = lateout(reg) r, v = in(reg) v, options(pure, nomem, nostack))
        };
        r
    }

    /// `MBQM(acc, m0, −(e1 + 1))` for `0 ≤ e1 ≤ 30`, in six instructions:
    ///
    /// * [`super::super::srdhm`] is `⌊(acc·m0 + 2^30) / 2^31⌋` (see
    ///   [`super::super::mbqm`]): `SMLAL` onto `2^30`, then the high word
    ///   doubled by `QADD` (which saturates exactly the one overflow,
    ///   `i32::MIN²`) with the low word's top bit.
    /// * [`super::super::rdbp`] of that `v` by `e = e1 + 1 ≥ 1` rounds half
    ///   away from zero: it is `⌊(t + 2^(e−1)) / 2^e⌋` with `t = v − (v < 0)`,
    ///   i.e. `⌊t / 2^e⌋` plus bit `e − 1` of `t`, which is `⌈s / 2⌉ = s −
    ///   ⌊s / 2⌋` for `s = t >> e1`. (`t` cannot wrap: `v > i32::MIN`.)
    #[inline(always)]
    pub fn mbqm_shr(acc: i32, m0: i32, e1: i32) -> i32 {
        let (mut lo, mut hi) = (1i32 << 30, 0i32);
        // SAFETY: register arithmetic only (QADD may set the sticky Q flag,
        // which nothing reads).
        unsafe {
            core::arch::asm!(
                "smlal {lo}, {hi}, {a}, {m}",
                "qadd {hi}, {hi}, {hi}",
                "orr {hi}, {hi}, {lo}, lsr #31",
                "add {hi}, {hi}, {hi}, asr #31",
                "asr {hi}, {hi}, {e1}",
                "sub {hi}, {hi}, {hi}, asr #1",
                a = in(reg) acc,
                m = in(reg) m0,
                e1 = in(reg) e1,
                lo = inout(reg) lo,
                hi = inout(reg) hi,
                options(pure, nomem, nostack),
            );
        }
        let _ = lo;
        hi
    }

    /// Groups per pass of [`dot4_blocks`]' unrolled loop.
    const UNROLL: usize = 8;

    /// What [`dot4_blocks`] reads and updates (its registers are all taken).
    #[repr(C)]
    struct Run {
        /// The activations, 4-byte aligned.
        x: *const i16,
        /// `x` + 4 · (groups % 8): the single groups end here.
        singles_end: *const i16,
        /// `x` + 4 · groups.
        end: *const i16,
        /// Bytes after each block's groups (its `k % 4` leftovers, 4 rows).
        skip: usize,
        /// Where the next block's 4 sums go; advanced by 4 per block.
        out: *mut i32,
        /// Blocks left (≥ 1 on entry); 0 on return.
        blocks: usize,
    }

    /// One 4-input group of a 4-row block (16 MACs): `LDRD` of the
    /// activations, one `LDM` of the four row words, 8 `SXTB16`, 8 `SMLAD`.
    macro_rules! group4 {
        () => {
            concat!(
                "ldrd r12, lr, [r0], #8\n",
                "ldmia r1!, {{r8-r11}}\n",
                "sxtb16 r3, r8\n",
                "sxtb16 r8, r8, ror #8\n",
                "smlad r4, r3, r12, r4\n",
                "smlad r4, r8, lr, r4\n",
                "sxtb16 r3, r9\n",
                "sxtb16 r9, r9, ror #8\n",
                "smlad r5, r3, r12, r5\n",
                "smlad r5, r9, lr, r5\n",
                "sxtb16 r3, r10\n",
                "sxtb16 r10, r10, ror #8\n",
                "smlad r6, r3, r12, r6\n",
                "smlad r6, r10, lr, r6\n",
                "sxtb16 r3, r11\n",
                "sxtb16 r11, r11, ror #8\n",
                "smlad r7, r3, r12, r7\n",
                "smlad r7, r11, lr, r7\n",
            )
        };
    }

    /// The row sums of `run.blocks` consecutive 4-row blocks starting at
    /// `w`, over the 4-input groups of `run.x`: `out[4b + r] = Σ_{p < 4·groups}
    /// x[p]·w[b][r][p]`.
    ///
    /// Per block: up to seven single groups, then eight groups per pass (one
    /// `CMP` + `BNE` per 128 MACs), then `STM` of the sums. All 14 usable
    /// registers are live in the loop (four sums, four row words, two
    /// activation words, one extended-weight temporary, the two pointers and
    /// the end), which is why this is a naked function: `asm!` operands
    /// cannot have `r7` (the frame pointer) or fix the ascending register
    /// list `LDM` needs; the rest of the state is in `run`.
    ///
    /// # Safety
    /// `run.blocks ≥ 1`; `x` readable for `4·groups` `i16`; `w` for
    /// `blocks · (16·groups + skip)` bytes; `out` writable for `4·blocks`
    /// `i32`; `x`, `w`, `out` and `skip` 4-byte aligned.
    #[unsafe(naked)]
    unsafe extern "C" fn dot4_blocks(w: *const i8, run: *mut Run) {
        // r0 x, r1 w, r2 end of the current loop, r3 temporary; r4-r7 the
        // row sums; r8-r11 the row words; r12 = (x0, x1), lr = (x2, x3).
        core::arch::naked_asm!(
            "push {{r4-r11, lr}}",
            "push {{r1}}",
            "mov r1, r0",
            "5:",
            "ldr r3, [sp]",
            "ldm r3, {{r0, r2}}",
            "movs r4, #0",
            "movs r5, #0",
            "movs r6, #0",
            "movs r7, #0",
            "cmp r0, r2",
            "beq 2f",
            "1:",
            group4!(),
            "cmp r0, r2",
            "bne 1b",
            "2:",
            "ldr r3, [sp]",
            "ldr r2, [r3, #8]",
            "cmp r0, r2",
            "beq 4f",
            "3:",
            group4!(),
            group4!(),
            group4!(),
            group4!(),
            group4!(),
            group4!(),
            group4!(),
            group4!(),
            "cmp r0, r2",
            "bne 3b",
            "4:",
            "ldr r3, [sp]",
            "ldr r2, [r3, #12]",
            "add r1, r1, r2",
            "ldr r2, [r3, #16]",
            "stmia r2!, {{r4-r7}}",
            "str r2, [r3, #16]",
            "ldr r2, [r3, #20]",
            "subs r2, r2, #1",
            "str r2, [r3, #20]",
            "bne 5b",
            "pop {{r1}}",
            "pop {{r4-r11, pc}}",
        )
    }

    /// One row's sum over `groups` 4-input groups whose words are `stride`
    /// bytes apart (a partial block of `nr` rows: `stride = 4·nr`).
    ///
    /// # Safety
    /// `x` readable for `4·groups` `i16`; `w` for one word at each
    /// `stride·g`, `g < groups`; both 4-byte aligned.
    #[unsafe(naked)]
    unsafe extern "C" fn dot1(x: *const i16, w: *const i8, groups: usize, stride: usize) -> i32 {
        // r0 x, r1 w, r2 end of x, r3 stride; r4 the sum, r5 the row word,
        // r6 temporary, r12 = (x0, x1), lr = (x2, x3).
        core::arch::naked_asm!(
            "push {{r4-r7, lr}}",
            "movs r4, #0",
            "add r2, r0, r2, lsl #3",
            "cmp r0, r2",
            "beq 2f",
            "1:",
            "ldrd r12, lr, [r0], #8",
            "ldr r5, [r1]",
            "add r1, r1, r3",
            "sxtb16 r6, r5",
            "sxtb16 r5, r5, ror #8",
            "smlad r4, r6, r12, r4",
            "smlad r4, r5, lr, r4",
            "cmp r0, r2",
            "bne 1b",
            "2:",
            "mov r0, r4",
            "pop {{r4-r7, pc}}",
        )
    }
}

/// Explicit x86-64 kernel sets for hosts, chosen at run time (see
/// `tailor::quantize::best_qkernels`). Their single-sample `block4` is
/// [`sse2::block4`]; what they add is the batched [`GemmFn`]: a register
/// tile of several 4-row blocks × several samples, so that each weight
/// loaded from L2 feeds every sample of the tile.
///
/// * [`avx2`]: `vpmovsxbw` weights (16 bytes = one 4-input group of a
///   4-row block → 16 `i16`) × the sample's inputs widened to `i16` and
///   permuted once per layer to `[x0, x2, x1, x3]` per group, so one
///   `vpbroadcastq` from memory matches the `[w0, w2, w1, w3]` word of every
///   row; `vpmaddwd` + `vpaddd`. Tile: 2 blocks × 6 samples (12 of 16 ymm).
/// * [`avx512_vnni`]: `vpdpbusd` (u8 × i8, four products summed into each
///   `i32` lane, exact: no saturation) straight on the packed bytes: 64
///   bytes of a block = 4 groups × 4 rows, lane `4j + r`. The sample's `u8`
///   inputs are expanded once per layer (one `vpshufb` per 16 inputs) so
///   that lane `4j + r` holds the 4 bytes of group `j` in word order; the 4
///   lanes of each row are summed at the end. Tile: 4 blocks (16 rows) × 6
///   samples = 24 zmm accumulators; per 16 inputs: 4 + 6 loads, 24
///   `vpdpbusd` (1,536 MACs). Requantization is vectorized too (16 rows per
///   step, exact gemmlowp arithmetic on 64-bit products).
#[cfg(target_arch = "x86_64")]
pub mod x86 {
    // Register tiles index their accumulator arrays by (block, sample).
    #![allow(clippy::needless_range_loop)]
    use super::*;
    use core::arch::x86_64::*;

    /// AVX2 kernel set.
    ///
    /// # Safety
    /// The CPU must support AVX2 (`is_x86_feature_detected!("avx2")`).
    pub unsafe fn avx2() -> QKernels {
        QKernels { name: "avx2", block4: sse2::block4, rows: sse2::rows, gemm: gemm_avx2, requant: requant_avx2 }
    }

    /// AVX-512 VNNI kernel set (AVX-512F, BW, VL and VNNI).
    ///
    /// # Safety
    /// The CPU must support `avx512f`, `avx512bw`, `avx512vl` and
    /// `avx512vnni`.
    pub unsafe fn avx512_vnni() -> QKernels {
        QKernels {
            name: "avx512vnni",
            block4: sse2::block4,
            rows: sse2::rows,
            gemm: gemm_vnni,
            requant: requant_avx512,
        }
    }

    /// Inputs per chunk of the expanded / widened input buffers (the layer's
    /// `k` is processed in chunks of this many; a multiple of 16).
    const KC: usize = 1024;
    /// Samples per register tile.
    const MT: usize = 6;

    #[repr(C, align(64))]
    struct A64<T>(T);

    // ------------------------------------------------------------------
    // AVX2

    /// The full-block part of a batched kernel: adds the sums over the
    /// 4-input groups of every full 4-row block into `out` (stride `rows`).
    type Blocks = unsafe fn(x: *const u8, ldx: usize, m: usize, w: *const i8, rows: usize, k: usize, out: *mut i32);

    /// Largest `k` whose last partial row block is padded to a full block on
    /// the stack (larger layers compute those ≤ 3 rows with scalar code).
    const PAD_K: usize = 2048;

    /// A [`GemmFn`] from a full-block kernel: zeroes `out`, runs `blocks`,
    /// adds the `k % 4` leftovers, and computes the rows of a final partial
    /// block by padding them with zero rows to one full block.
    ///
    /// # Safety
    /// `blocks` must be safe to call on this CPU.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_with(
        blocks: Blocks,
        x: &[u8],
        ldx: usize,
        m: usize,
        w: &[i8],
        rows: usize,
        k: usize,
        out: &mut [i32],
    ) {
        check_gemm(x, ldx, m, w, rows, k, out);
        out[..m * rows].fill(0);
        // SAFETY: lengths checked above; `blocks` runs on this CPU.
        unsafe { blocks(x.as_ptr(), ldx, m, w.as_ptr(), rows, k, out.as_mut_ptr()) };
        let full = rows / ROW_BLOCK;
        add_k_tail(x, ldx, m, w, full * ROW_BLOCK, k, out, rows);
        let nr = rows - full * ROW_BLOCK;
        if nr == 0 {
            return;
        }
        let wt = &w[full * ROW_BLOCK * k..][..nr * k];
        if k > PAD_K {
            for i in 0..m {
                tail_rows_of(&x[i * ldx..][..k], wt, nr, k, &mut out[i * rows + full * ROW_BLOCK..]);
            }
            return;
        }
        let mut pad = [0i8; ROW_BLOCK * PAD_K];
        let pad = &mut pad[..ROW_BLOCK * k];
        // Same words at a 4-row stride (see `packed_index`), then the leftovers.
        let (groups, t) = (k / K_GROUP, k % K_GROUP);
        for g in 0..groups {
            let n = nr * K_GROUP;
            pad[g * ROW_BLOCK * K_GROUP..][..n].copy_from_slice(&wt[g * n..][..n]);
        }
        let kg = groups * K_GROUP;
        pad[ROW_BLOCK * kg..][..nr * t].copy_from_slice(&wt[nr * kg..][..nr * t]);
        const MB: usize = 16;
        let mut tmp = [0i32; ROW_BLOCK * MB];
        let mut i0 = 0;
        while i0 < m {
            let mb = MB.min(m - i0);
            let tmp = &mut tmp[..ROW_BLOCK * mb];
            tmp.fill(0);
            let xs = &x[i0 * ldx..];
            // SAFETY: samples i0..i0+mb of `x` (checked above), a 4-row block
            // of `k` inputs, `mb·4` outputs; `blocks` runs on this CPU.
            unsafe { blocks(xs.as_ptr(), ldx, mb, pad.as_ptr(), ROW_BLOCK, k, tmp.as_mut_ptr()) };
            add_k_tail(xs, ldx, mb, pad, ROW_BLOCK, k, tmp, ROW_BLOCK);
            for i in 0..mb {
                out[(i0 + i) * rows + full * ROW_BLOCK..][..nr].copy_from_slice(&tmp[i * ROW_BLOCK..][..nr]);
            }
            i0 += mb;
        }
    }

    fn gemm_avx2(x: &[u8], ldx: usize, m: usize, w: &[i8], rows: usize, k: usize, out: &mut [i32]) {
        // SAFETY: the constructor's caller promised AVX2.
        unsafe { gemm_with(gemm_avx2_tf, x, ldx, m, w, rows, k, out) }
    }

    /// # Safety
    /// AVX2; `x` holds `m` samples of `k` bytes at stride `ldx`, `w` `rows·k`
    /// bytes, `out` `m·rows` zeroed `i32`s.
    #[target_feature(enable = "avx2")]
    unsafe fn gemm_avx2_tf(x: *const u8, ldx: usize, m: usize, w: *const i8, rows: usize, k: usize, out: *mut i32) {
        let groups = k / K_GROUP;
        let full = rows / ROW_BLOCK;
        if groups == 0 || full == 0 {
            return;
        }
        // Written before it is read, for the samples and groups in use.
        let mut xp = core::mem::MaybeUninit::<A64<[[i16; KC]; MT]>>::uninit();
        let xb = xp.as_mut_ptr() as *mut i16;
        // Within each 128-bit lane (8 i16 = 2 groups): [0, 2, 1, 3, 4, 6, 5, 7].
        let perm = _mm256_setr_epi8(
            0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15, 0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15,
        );
        let bstride = ROW_BLOCK * k;
        let mut i0 = 0;
        while i0 < m {
            let mt = MT.min(m - i0);
            let mut g0 = 0;
            while g0 < groups {
                let ng = (KC / K_GROUP).min(groups - g0);
                for mi in 0..mt {
                    // SAFETY: sample i0+mi < m, inputs 4·g0 .. 4·(g0+ng) ≤ k;
                    // row mi < MT of the scratch.
                    let (src, xr) = unsafe { (x.add((i0 + mi) * ldx + K_GROUP * g0), xb.add(mi * KC)) };
                    let n = K_GROUP * ng;
                    let mut p = 0;
                    while p + 16 <= n {
                        // SAFETY: 16 bytes inside the chunk; 32 bytes into `xr` (p + 16 ≤ n ≤ KC).
                        unsafe {
                            let v = _mm256_cvtepu8_epi16(_mm_loadu_si128(src.add(p) as *const __m128i));
                            _mm256_storeu_si256(xr.add(p) as *mut __m256i, _mm256_shuffle_epi8(v, perm));
                        }
                        p += 16;
                    }
                    while p < n {
                        for j in 0..K_GROUP {
                            // SAFETY: p + SWAP[j] < n ≤ KC.
                            unsafe { *xr.add(p + j) = *src.add(p + SWAP[j]) as i16 };
                        }
                        p += K_GROUP;
                    }
                }
                let mut blk = 0;
                while blk < full {
                    let nb = 2.min(full - blk);
                    // SAFETY: blocks blk..blk+nb < full, groups g0..g0+ng of each;
                    // samples i0..i0+mt; out rows 4·blk.. of those samples.
                    unsafe {
                        let wb = w.add(blk * bstride + 16 * g0);
                        let o = out.add(i0 * rows + blk * ROW_BLOCK);
                        macro_rules! go {
                            ($($b:literal, $m:literal);*) => {
                                match (nb, mt) {
                                    $(($b, $m) => tile_avx2::<$b, $m>(xb, KC, wb, bstride, ng, o, rows),)*
                                    _ => unreachable!(),
                                }
                            };
                        }
                        go!(1,1; 1,2; 1,3; 1,4; 1,5; 1,6; 2,1; 2,2; 2,3; 2,4; 2,5; 2,6);
                    }
                    blk += nb;
                }
                g0 += ng;
            }
            i0 += mt;
        }
    }

    /// `B` blocks × `M` samples over `ng` groups; adds the sums into `out`.
    ///
    /// # Safety
    /// AVX2; `xp` holds `M` rows of `4·ng` permuted `i16` at stride `ldxp`,
    /// block `b`'s weights are `16·ng` bytes at `w + b·bstride`, `out` has
    /// `B·4` `i32` at `i·ldo` for each sample `i < M`.
    #[target_feature(enable = "avx2")]
    #[inline(never)]
    unsafe fn tile_avx2<const B: usize, const M: usize>(
        xp: *const i16,
        ldxp: usize,
        w: *const i8,
        bstride: usize,
        ng: usize,
        out: *mut i32,
        ldo: usize,
    ) {
        let mut acc = [[_mm256_setzero_si256(); M]; B];
        let mut wv = [_mm256_setzero_si256(); B];
        for g in 0..ng {
            for b in 0..B {
                // SAFETY: group g < ng of block b.
                wv[b] = _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(w.add(b * bstride + 16 * g) as *const __m128i) });
            }
            for i in 0..M {
                // SAFETY: 4 i16 of sample i, group g.
                let q = unsafe { (xp.add(i * ldxp + K_GROUP * g) as *const i64).read_unaligned() };
                let xv = _mm256_set1_epi64x(q);
                for b in 0..B {
                    acc[b][i] = _mm256_add_epi32(acc[b][i], _mm256_madd_epi16(wv[b], xv));
                }
            }
        }
        for b in 0..B {
            for i in 0..M {
                // Lanes [r0 r0' r1 r1' | r2 r2' r3 r3'] → [r0 r1 r2 r3].
                let h = _mm256_hadd_epi32(acc[b][i], acc[b][i]);
                let s = _mm_unpacklo_epi64(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h));
                // SAFETY: 4 i32 of sample i, block b.
                unsafe {
                    let p = out.add(i * ldo + ROW_BLOCK * b) as *mut __m128i;
                    _mm_storeu_si128(p, _mm_add_epi32(_mm_loadu_si128(p), s));
                }
            }
        }
    }

    // ------------------------------------------------------------------
    // AVX-512 VNNI

    /// `vpshufb` control: 128-bit lane `j` gets bytes `4j + [0, 2, 1, 3]`
    /// four times (the word of group `j` for each of the 4 rows).
    const EXPAND: [u8; 64] = {
        let mut c = [0u8; 64];
        let mut i = 0;
        while i < 64 {
            let (j, b) = (i / 16, i % 4);
            c[i] = (4 * j + SWAP[b]) as u8;
            i += 1;
        }
        c
    };

    fn gemm_vnni(x: &[u8], ldx: usize, m: usize, w: &[i8], rows: usize, k: usize, out: &mut [i32]) {
        // SAFETY: the constructor's caller promised the features.
        unsafe { gemm_with(gemm_vnni_tf, x, ldx, m, w, rows, k, out) }
    }

    /// # Safety
    /// As [`gemm_avx2_tf`], with AVX-512F/BW/VL/VNNI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn gemm_vnni_tf(x: *const u8, ldx: usize, m: usize, w: *const i8, rows: usize, k: usize, out: *mut i32) {
        let groups = k / K_GROUP;
        let full = rows / ROW_BLOCK;
        if groups == 0 || full == 0 {
            return;
        }
        let sgs = groups.div_ceil(4);
        let remg = groups % 4;
        const SPC: usize = KC / 16;
        // Written before it is read, for the samples and supergroups in use.
        let mut xe = core::mem::MaybeUninit::<A64<[[u8; 4 * KC]; MT]>>::uninit();
        let xb = xe.as_mut_ptr() as *mut u8;
        // SAFETY: EXPAND is 64 bytes.
        let shuf = unsafe { _mm512_loadu_si512(EXPAND.as_ptr() as *const __m512i) };
        let bstride = ROW_BLOCK * k;
        let mut i0 = 0;
        while i0 < m {
            let mt = MT.min(m - i0);
            let mut s0 = 0;
            while s0 < sgs {
                let ns = SPC.min(sgs - s0);
                let partial = s0 + ns == sgs && remg != 0;
                for mi in 0..mt {
                    // SAFETY: sample i0+mi < m; row mi < MT of the scratch.
                    let (src, xr) = unsafe { (x.add((i0 + mi) * ldx), xb.add(mi * 4 * KC)) };
                    for s in s0..s0 + ns {
                        let nbytes = if partial && s + 1 == sgs { 4 * remg } else { 16 };
                        let mask = ((1u32 << nbytes) - 1) as __mmask16;
                        // SAFETY: the masked load reads bytes 16s .. 16s+nbytes ≤ 4·groups ≤ k
                        // of the sample; the store writes 64 bytes at 64·(s−s0) < 4·KC.
                        unsafe {
                            let v = _mm_maskz_loadu_epi8(mask, src.add(16 * s) as *const i8);
                            let e = _mm512_shuffle_epi8(_mm512_broadcast_i32x4(v), shuf);
                            _mm512_store_si512(xr.add(64 * (s - s0)) as *mut __m512i, e);
                        }
                    }
                }
                let nfull = ns - partial as usize;
                let wmask: u64 = if partial { (1u64 << (16 * remg)) - 1 } else { 0 };
                let mut blk = 0;
                while blk < full {
                    let nb = 4.min(full - blk);
                    // SAFETY: blocks blk..blk+nb < full; supergroups s0.. of each
                    // (the partial one masked to its 16·remg bytes); samples
                    // i0..i0+mt; out rows 4·blk.. of those samples.
                    unsafe {
                        let wb = w.add(blk * bstride + 64 * s0);
                        let o = out.add(i0 * rows + blk * ROW_BLOCK);
                        macro_rules! go {
                            ($($b:literal, $m:literal);*) => {
                                match (nb, mt) {
                                    $(($b, $m) => tile_vnni::<$b, $m>(xb, 4 * KC, wb, bstride, nfull, wmask, o, rows),)*
                                    _ => unreachable!(),
                                }
                            };
                        }
                        go!(1,1; 1,2; 1,3; 1,4; 1,5; 1,6; 2,1; 2,2; 2,3; 2,4; 2,5; 2,6;
                            3,1; 3,2; 3,3; 3,4; 3,5; 3,6; 4,1; 4,2; 4,3; 4,4; 4,5; 4,6);
                    }
                    blk += nb;
                }
                s0 += ns;
            }
            i0 += mt;
        }
    }

    /// Sum of the four 128-bit lanes: `[r0 r1 r2 r3]` of one block.
    #[target_feature(enable = "avx512f,avx512vl")]
    #[inline]
    fn lanes4(v: __m512i) -> __m128i {
        let h = _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64::<1>(v));
        _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h))
    }

    /// `B` blocks × `M` samples over `nfull` supergroups of 16 inputs (plus
    /// one partial one if `wmask ≠ 0`); adds the sums into `out`.
    ///
    /// # Safety
    /// AVX-512F/BW/VL/VNNI; `xe` holds `M` expanded rows (64 bytes per
    /// supergroup, zero past the inputs) at stride `ldxe`; block `b`'s weights
    /// are at `w + b·bstride` (64 bytes per full supergroup, then the bytes
    /// of `wmask`); `out` has `B·4` `i32` at `i·ldo` for each sample `i < M`.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline(never)]
    unsafe fn tile_vnni<const B: usize, const M: usize>(
        xe: *const u8,
        ldxe: usize,
        w: *const i8,
        bstride: usize,
        nfull: usize,
        wmask: u64,
        out: *mut i32,
        ldo: usize,
    ) {
        let mut acc = [[_mm512_setzero_si512(); M]; B];
        let mut wv = [_mm512_setzero_si512(); B];
        for s in 0..nfull {
            for b in 0..B {
                // SAFETY: full supergroup s of block b.
                wv[b] = unsafe { _mm512_loadu_si512(w.add(b * bstride + 64 * s) as *const __m512i) };
            }
            for i in 0..M {
                // SAFETY: expanded supergroup s of sample i (64-byte aligned).
                let xv = unsafe { _mm512_load_si512(xe.add(i * ldxe + 64 * s) as *const __m512i) };
                for b in 0..B {
                    acc[b][i] = _mm512_dpbusd_epi32(acc[b][i], xv, wv[b]);
                }
            }
        }
        if wmask != 0 {
            let s = nfull;
            for b in 0..B {
                // SAFETY: the masked bytes are the partial supergroup's groups.
                wv[b] = unsafe { _mm512_maskz_loadu_epi8(wmask, w.add(b * bstride + 64 * s)) };
            }
            for i in 0..M {
                // SAFETY: as above.
                let xv = unsafe { _mm512_load_si512(xe.add(i * ldxe + 64 * s) as *const __m512i) };
                for b in 0..B {
                    acc[b][i] = _mm512_dpbusd_epi32(acc[b][i], xv, wv[b]);
                }
            }
        }
        if B == 4 {
            for i in 0..M {
                // 4×4 transpose-and-add of 128-bit lanes: lane b of the result
                // is the lane sum of block b, i.e. rows 4b..4b+4.
                let (a0, a1, a2, a3) = (acc[0][i], acc[1 % B][i], acc[2 % B][i], acc[3 % B][i]);
                let s01 = _mm512_add_epi32(
                    _mm512_shuffle_i32x4::<0b01_00_01_00>(a0, a1),
                    _mm512_shuffle_i32x4::<0b11_10_11_10>(a0, a1),
                );
                let s23 = _mm512_add_epi32(
                    _mm512_shuffle_i32x4::<0b01_00_01_00>(a2, a3),
                    _mm512_shuffle_i32x4::<0b11_10_11_10>(a2, a3),
                );
                let s = _mm512_add_epi32(
                    _mm512_shuffle_i32x4::<0b10_00_10_00>(s01, s23),
                    _mm512_shuffle_i32x4::<0b11_01_11_01>(s01, s23),
                );
                // SAFETY: 16 i32 of sample i.
                unsafe {
                    let p = out.add(i * ldo) as *mut __m512i;
                    _mm512_storeu_si512(p, _mm512_add_epi32(_mm512_loadu_si512(p), s));
                }
            }
        } else {
            for b in 0..B {
                for i in 0..M {
                    let s = lanes4(acc[b][i]);
                    // SAFETY: 4 i32 of sample i, block b.
                    unsafe {
                        let p = out.add(i * ldo + ROW_BLOCK * b) as *mut __m128i;
                        _mm_storeu_si128(p, _mm_add_epi32(_mm_loadu_si128(p), s));
                    }
                }
            }
        }
    }

    fn requant_avx2(acc: &[i32], bias: &[i32], m0: &[i32], shift: &[i32], q: Requant, out: &mut [u8]) {
        let n = out.len();
        assert!(acc.len() >= n && bias.len() >= n && m0.len() >= n && shift.len() >= n);
        // SAFETY: lengths checked; the constructor's caller promised AVX2.
        unsafe { requant_avx2_tf(acc, bias, m0, shift, q, out) }
    }

    /// [`requant_avx512_tf`] with 8 rows per step. AVX2 has no 64-bit
    /// arithmetic shift, but bits 31..62 of `a·b + 2^30` are the same after
    /// a logical one.
    ///
    /// # Safety
    /// AVX2; every slice has at least `out.len()` elements.
    #[target_feature(enable = "avx2")]
    unsafe fn requant_avx2_tf(acc: &[i32], bias: &[i32], m0: &[i32], shift: &[i32], q: Requant, out: &mut [u8]) {
        let n = out.len();
        let (zero, one) = (_mm256_setzero_si256(), _mm256_set1_epi32(1));
        let half = _mm256_set1_epi64x(1 << 30);
        let (zp, lo, hi) = (_mm256_set1_epi32(q.zp), _mm256_set1_epi32(q.min), _mm256_set1_epi32(q.max));
        let (minv, m31) = (_mm256_set1_epi32(i32::MIN), _mm256_set1_epi32(-32));
        // Byte 0 of each i32 to bytes 0..4 of each 128-bit lane.
        let pick = _mm256_setr_epi8(
            0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1,
            -1, -1, -1, -1,
        );
        let mut r = 0;
        while r + 8 <= n {
            // SAFETY: r + 8 ≤ n ≤ every slice's length.
            let (a, b, m, s) = unsafe {
                (
                    _mm256_loadu_si256(acc.as_ptr().add(r) as *const __m256i),
                    _mm256_loadu_si256(bias.as_ptr().add(r) as *const __m256i),
                    _mm256_loadu_si256(m0.as_ptr().add(r) as *const __m256i),
                    _mm256_loadu_si256(shift.as_ptr().add(r) as *const __m256i),
                )
            };
            let bad = _mm256_or_si256(
                _mm256_or_si256(_mm256_cmpgt_epi32(s, zero), _mm256_cmpgt_epi32(m31, s)),
                _mm256_cmpeq_epi32(m, minv),
            );
            if _mm256_testz_si256(bad, bad) == 0 {
                requant_scalar(&acc[r..r + 8], &bias[r..r + 8], &m0[r..r + 8], &shift[r..r + 8], q, &mut out[r..r + 8]);
                r += 8;
                continue;
            }
            let x = _mm256_add_epi32(a, b);
            let pe = _mm256_mul_epi32(x, m);
            let po = _mm256_mul_epi32(_mm256_srli_epi64::<32>(x), _mm256_srli_epi64::<32>(m));
            let re = _mm256_srli_epi64::<31>(_mm256_add_epi64(pe, half));
            let ro = _mm256_slli_epi64::<1>(_mm256_add_epi64(po, half));
            let h = _mm256_blend_epi32::<0b1010_1010>(re, ro);
            let e = _mm256_sub_epi32(zero, s);
            let mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, e), one);
            let rem = _mm256_and_si256(h, mask);
            let thr = _mm256_sub_epi32(_mm256_srai_epi32::<1>(mask), _mm256_srai_epi32::<31>(h));
            // cmpgt is −1 where true: subtracting it adds 1.
            let v = _mm256_sub_epi32(_mm256_srav_epi32(h, e), _mm256_cmpgt_epi32(rem, thr));
            let v = _mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(v, zp), lo), hi);
            let p = _mm256_shuffle_epi8(v, pick);
            let bytes = _mm_unpacklo_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256::<1>(p));
            // SAFETY: 8 bytes at r < n.
            unsafe { _mm_storel_epi64(out.as_mut_ptr().add(r) as *mut __m128i, bytes) };
            r += 8;
        }
        requant_scalar(&acc[r..n], &bias[r..n], &m0[r..n], &shift[r..n], q, &mut out[r..n]);
    }

    fn requant_avx512(acc: &[i32], bias: &[i32], m0: &[i32], shift: &[i32], q: Requant, out: &mut [u8]) {
        let n = out.len();
        assert!(acc.len() >= n && bias.len() >= n && m0.len() >= n && shift.len() >= n);
        // SAFETY: lengths checked; the constructor's caller promised the features.
        unsafe { requant_avx512_tf(acc, bias, m0, shift, q, out) }
    }

    /// 16 rows per step: `SRDHM(a, b) = (a·b + 2^30) >> 31` (floor; equal to
    /// gemmlowp's nudged truncating division for every `(a, b)` but
    /// `(MIN, MIN)`), then `RDBP`, zero point and clamp. Rows with a left
    /// shift, a shift below −31 or `M0 = i32::MIN` go through the scalar code.
    ///
    /// # Safety
    /// AVX-512F/BW/VL; every slice has at least `out.len()` elements.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn requant_avx512_tf(acc: &[i32], bias: &[i32], m0: &[i32], shift: &[i32], q: Requant, out: &mut [u8]) {
        let n = out.len();
        let (zero, one) = (_mm512_setzero_si512(), _mm512_set1_epi32(1));
        let half = _mm512_set1_epi64(1 << 30);
        let (zp, lo, hi) = (_mm512_set1_epi32(q.zp), _mm512_set1_epi32(q.min), _mm512_set1_epi32(q.max));
        let mut r = 0;
        while r + 16 <= n {
            // SAFETY: r + 16 ≤ n ≤ every slice's length.
            let (a, b, m, s) = unsafe {
                (
                    _mm512_loadu_si512(acc.as_ptr().add(r) as *const __m512i),
                    _mm512_loadu_si512(bias.as_ptr().add(r) as *const __m512i),
                    _mm512_loadu_si512(m0.as_ptr().add(r) as *const __m512i),
                    _mm512_loadu_si512(shift.as_ptr().add(r) as *const __m512i),
                )
            };
            let bad = _mm512_cmpgt_epi32_mask(s, zero)
                | _mm512_cmplt_epi32_mask(s, _mm512_set1_epi32(-31))
                | _mm512_cmpeq_epi32_mask(m, _mm512_set1_epi32(i32::MIN));
            if bad != 0 {
                requant_scalar(
                    &acc[r..r + 16],
                    &bias[r..r + 16],
                    &m0[r..r + 16],
                    &shift[r..r + 16],
                    q,
                    &mut out[r..r + 16],
                );
                r += 16;
                continue;
            }
            let x = _mm512_add_epi32(a, b);
            let pe = _mm512_mul_epi32(x, m);
            let po = _mm512_mul_epi32(_mm512_srli_epi64::<32>(x), _mm512_srli_epi64::<32>(m));
            let re = _mm512_srai_epi64::<31>(_mm512_add_epi64(pe, half));
            let ro = _mm512_slli_epi64::<1>(_mm512_add_epi64(po, half));
            let h = _mm512_mask_blend_epi32(0xAAAA, re, ro);
            let e = _mm512_sub_epi32(zero, s);
            let mask = _mm512_sub_epi32(_mm512_sllv_epi32(one, e), one);
            let rem = _mm512_and_si512(h, mask);
            let thr = _mm512_sub_epi32(_mm512_srai_epi32::<1>(mask), _mm512_srai_epi32::<31>(h));
            let v = _mm512_srav_epi32(h, e);
            let v = _mm512_mask_add_epi32(v, _mm512_cmpgt_epi32_mask(rem, thr), v, one);
            let v = _mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(v, zp), lo), hi);
            // SAFETY: 16 bytes at r < n.
            unsafe { _mm_storeu_si128(out.as_mut_ptr().add(r) as *mut __m128i, _mm512_cvtepi32_epi8(v)) };
            r += 16;
        }
        requant_scalar(&acc[r..n], &bias[r..n], &m0[r..n], &shift[r..n], q, &mut out[r..n]);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    extern crate std;
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    /// Every kernel set this target (and CPU) runs.
    pub(crate) fn all_kernels() -> Vec<QKernels> {
        #[allow(unused_mut)]
        let mut v = std::vec![QKernels::NAIVE, QKernels::PORTABLE, QKernels::BEST];
        #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
        v.push(QKernels::NEON);
        #[cfg(target_arch = "x86_64")]
        {
            v.push(QKernels::SSE2);
            let avx2 = std::is_x86_feature_detected!("avx2");
            crate::gemm::kernel_set_tested("int8 avx2", "avx2", avx2);
            if avx2 {
                // SAFETY: feature checked.
                v.push(unsafe { x86::avx2() });
            }
            let vnni = std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512vl")
                && std::is_x86_feature_detected!("avx512vnni");
            crate::gemm::kernel_set_tested("int8 avx512vnni", "avx512f, avx512bw, avx512vl, avx512vnni", vnni);
            if vnni {
                // SAFETY: features checked.
                v.push(unsafe { x86::avx512_vnni() });
            }
        }
        v
    }

    /// Every batched kernel against the naive one: `m` samples of `k` u8
    /// inputs at stride `ldx`, a `rows × k` layer.
    fn check_gemm_all(rows: usize, k: usize, m: usize, pad: usize, seed: u64) {
        let mut rng = crate::rng::Rng::new(seed);
        let ldx = k + pad;
        let x: Vec<u8> = (0..m * ldx).map(|_| rng.next_u32() as u8).collect();
        let ws: Vec<i8> = (0..rows * k).map(|_| rng.next_u32() as i8).collect();
        let mut packed = std::vec![0i8; rows * k];
        pack(&ws, rows, k, &mut packed);
        let mut want = std::vec![0i32; m * rows];
        for i in 0..m {
            let xi: Vec<i16> = x[i * ldx..][..k].iter().map(|&v| v as i16).collect();
            naive::gemv_row_major(&xi, &ws, rows, k, &mut want[i * rows..]);
        }
        for kern in all_kernels() {
            // A canary past the outputs, and garbage in them.
            let mut got = std::vec![0x5a5a_5a5ai32; m * rows + 1];
            (kern.gemm)(&x, ldx, m, &packed, rows, k, &mut got);
            assert_eq!(&got[..m * rows], &want[..], "{} rows={rows} k={k} m={m}", kern.name);
            assert_eq!(got[m * rows], 0x5a5a_5a5a, "{} wrote past out", kern.name);
        }
    }

    #[test]
    fn gemm_seed_shapes() {
        check_gemm_all(512, 784, 13, 0, 1);
        check_gemm_all(512, 512, 7, 0, 2);
        check_gemm_all(10, 512, 12, 0, 3);
        // More inputs than one chunk of the x86 kernels (1024).
        check_gemm_all(9, 2100, 3, 5, 4);
    }

    #[test]
    fn gemm_extremes_do_not_overflow() {
        let (rows, k, m) = (9, 787, 7);
        let x = std::vec![255u8; m * k];
        let ws = std::vec![-128i8; rows * k];
        let mut packed = std::vec![0i8; rows * k];
        pack(&ws, rows, k, &mut packed);
        for kern in all_kernels() {
            let mut got = std::vec![0i32; m * rows];
            (kern.gemm)(&x, k, m, &packed, rows, k, &mut got);
            assert!(got.iter().all(|&v| v == -(255 * 128 * k as i32)), "{}", kern.name);
        }
    }

    fn check_requant(n: usize, seed: u64, any_params: bool) {
        let mut rng = crate::rng::Rng::new(seed);
        let mut r = || rng.next_u32() as i32;
        let acc: Vec<i32> = (0..n).map(|_| r() >> (r() & 31)).collect();
        let bias: Vec<i32> = (0..n).map(|_| r() >> 8).collect();
        let m0: Vec<i32> = (0..n)
            .map(|_| match r() & 15 {
                0 if any_params => i32::MIN,
                1 => 0,
                2 => i32::MAX,
                _ => (1 << 30) + (r() & 0x3fff_ffff),
            })
            .collect();
        let shift: Vec<i32> =
            (0..n).map(|_| if any_params { (r() & 63).min(54) - 31 } else { -((r() & 31).min(31)) }).collect();
        let zp = (r() & 255).min(200);
        let q = Requant { zp, min: zp, max: 255 };
        let mut want = std::vec![0u8; n];
        requant_scalar(&acc, &bias, &m0, &shift, q, &mut want);
        for kern in all_kernels() {
            let mut got = std::vec![0u8; n];
            (kern.requant)(&acc, &bias, &m0, &shift, q, &mut got);
            assert_eq!(got, want, "{} n={n}", kern.name);
        }
    }

    #[test]
    fn requant_matches_scalar_on_edges() {
        // Exact ties of SRDHM and RDBP, both signs, and the (MIN, MIN) case.
        let acc =
            [1 << 30, -(1 << 30), (1 << 30) + 1, -(1 << 30) - 1, 5, -5, 6, -6, 7, -7, i32::MIN, i32::MAX, 0, 3, -3, 1];
        let bias = [0; 16];
        let m0 = [
            1 << 30,
            1 << 30,
            1 << 30,
            1 << 30,
            i32::MAX,
            i32::MAX,
            i32::MAX,
            i32::MAX,
            1 << 30,
            1 << 30,
            1 << 30,
            1 << 30,
            1 << 30,
            i32::MAX,
            i32::MAX,
            i32::MAX,
        ];
        for sh in [0, -1, -2, -31] {
            let shift = [sh; 16];
            let q = Requant { zp: 100, min: 0, max: 255 };
            let mut want = [0u8; 16];
            requant_scalar(&acc, &bias, &m0, &shift, q, &mut want);
            for kern in all_kernels() {
                let mut got = [0u8; 16];
                (kern.requant)(&acc, &bias, &m0, &shift, q, &mut got);
                assert_eq!(got, want, "{} shift {sh}", kern.name);
            }
        }
    }

    /// A seed-shape (784-512-512-10) model with random weights and
    /// requantization parameters that spread the hidden outputs over 0..=255.
    fn random_seed_model(seed: u64) -> Vec<u32> {
        use crate::quant::{encode_raw, QInput, QParams, RawLayer};
        use crate::spec::Spec;
        let spec = Spec::mlp(&[784, 512, 512, 10]);
        let mut rng = crate::rng::Rng::new(seed);
        struct L {
            w: Vec<i8>,
            b: Vec<i32>,
            m: Vec<i32>,
            s: Vec<i32>,
            zp: i32,
        }
        let mut ls = Vec::new();
        for (i, l) in spec.layers().enumerate() {
            let hidden = i + 1 < spec.depth();
            let o = l.outputs;
            ls.push(L {
                w: (0..o * l.inputs).map(|_| (rng.next_u32() % 255) as i8).collect(),
                b: (0..o).map(|_| (rng.next_u32() % 200_001) as i32 - 100_000).collect(),
                m: (0..o).map(|_| if hidden { (1 << 30) + (rng.next_u32() >> 2) as i32 } else { 0 }).collect(),
                s: (0..o).map(|_| if hidden { -10 - (rng.next_u32() % 3) as i32 } else { 0 }).collect(),
                zp: if hidden { (rng.next_u32() % 3) as i32 } else { 0 },
            });
        }
        let raw: Vec<RawLayer<'_>> = spec
            .layers()
            .zip(&ls)
            .map(|(layer, l)| RawLayer {
                layer,
                params: QParams { in_scale: 1.0, in_zp: 0, out_scale: 1.0, out_zp: l.zp, out_min: l.zp, out_max: 255 },
                w_scale: &[],
                bias: &l.b,
                multiplier: &l.m,
                shift: &l.s,
                weight: &l.w,
            })
            .collect();
        let w_scales: Vec<Vec<f32>> = spec.layers().map(|l| std::vec![1.0; l.outputs]).collect();
        let raw: Vec<RawLayer<'_>> =
            raw.into_iter().zip(&w_scales).map(|(r, s)| RawLayer { w_scale: s, ..r }).collect();
        let n = crate::quant::encoded_len(&spec, crate::quant::InputKind::RawU8);
        let mut words = std::vec![0u32; n.div_ceil(4)];
        // SAFETY: u32 storage viewed as bytes (any bits are valid u8).
        let bytes = unsafe { core::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut u8, n) };
        encode_raw(&raw, &QInput::RawU8, bytes).unwrap();
        words
    }

    #[test]
    fn seed_model_identical_on_every_kernel() {
        use crate::quant::{batch_acc_len, batch_acts_len, QBatchScratch, QModel};
        let words = random_seed_model(7);
        let n_bytes =
            crate::quant::encoded_len(&crate::spec::Spec::mlp(&[784, 512, 512, 10]), crate::quant::InputKind::RawU8);
        // SAFETY: as in random_seed_model.
        let bytes = unsafe { core::slice::from_raw_parts(words.as_ptr() as *const u8, n_bytes) };
        let q = QModel::parse(bytes).unwrap();
        let n = 2 * 12 + 5;
        let mut rng = crate::rng::Rng::new(8);
        let pixels: Vec<u8> = (0..n * 784).map(|_| rng.next_u32() as u8).collect();
        // Hidden activations really use the whole u8 range (the test would
        // be weak if they were all 0 or all 255).
        let mut x = [0i16; 784];
        crate::quant::widen(&pixels[..784], &mut x);
        let mut h = [0i16; 512];
        q.layer(0).forward_hidden(&QKernels::NAIVE, &x, &mut h);
        let mid = h.iter().filter(|&&v| v > 0 && v < 255).count();
        assert!(mid > 100, "only {mid} hidden values strictly inside 0..255");
        let mut scratch = std::vec![0i16; q.scratch_len() + 1];
        let want: Vec<(usize, [i32; 10])> = (0..n)
            .map(|i| {
                let mut l = [0i32; 10];
                (q.classify(&QKernels::NAIVE, &pixels[i * 784..][..784], &mut scratch, &mut l), l)
            })
            .collect();
        let spec = *q.spec();
        for kern in all_kernels() {
            for batch in [1, 12] {
                let mut acts = std::vec![0u8; batch_acts_len(&spec, batch)];
                let mut acc = std::vec![0i32; batch_acc_len(&spec, batch)];
                let mut seen = 0;
                q.classify_batch(&kern, &pixels, n, QBatchScratch { acts: &mut acts, acc: &mut acc }, |i, c, l| {
                    assert_eq!(i, seen);
                    seen += 1;
                    assert_eq!((c, l), (want[i].0, &want[i].1[..]), "{} batch {batch} image {i}", kern.name);
                });
                assert_eq!(seen, n);
            }
            for (i, w) in want.iter().enumerate().step_by(7) {
                let mut l = [0i32; 10];
                let c = q.classify(&kern, &pixels[i * 784..][..784], &mut scratch[1..], &mut l);
                assert_eq!((c, l), *w, "{} image {i}", kern.name);
            }
        }
    }

    fn check(rows: usize, k: usize, xs: &[i16], ws: &[i8]) {
        let mut packed = [0i8; 4096];
        pack(ws, rows, k, &mut packed);
        let mut want = [0i32; 64];
        naive::gemv_row_major(xs, ws, rows, k, &mut want);
        for kern in all_kernels() {
            let mut got = [0i32; 64];
            gemv(&kern, xs, &packed, rows, k, |r, a| got[r] = a);
            assert_eq!(&got[..rows], &want[..rows], "{} rows={rows} k={k}", kern.name);
        }
        let mut got4 = [[0i32; 64]; 4];
        gemv4([xs, xs, xs, xs], &packed, rows, k, |b, r, a| got4[b][r] = a);
        for g in &got4 {
            assert_eq!(&g[..rows], &want[..rows], "batch4 rows={rows} k={k}");
        }
    }

    #[test]
    fn layout_is_a_permutation() {
        for (rows, k) in [(1, 1), (3, 5), (4, 4), (5, 7), (10, 9), (8, 16), (7, 3)] {
            let mut seen = [false; 256];
            for r in 0..rows {
                for p in 0..k {
                    let i = packed_index(r, p, rows, k);
                    assert!(i < rows * k && !seen[i], "rows={rows} k={k} r={r} p={p}");
                    seen[i] = true;
                }
            }
        }
        // Blocks of 4 rows start word-aligned whatever k is.
        assert_eq!(packed_index(4, 0, 10, 7), 28);
    }

    #[test]
    fn extremes_do_not_overflow() {
        let (rows, k) = (6, 63);
        let xs = [255i16; 63];
        let ws = [-128i8; 6 * 63];
        check(rows, k, &xs, &ws);
    }

    proptest! {
        #[test]
        fn kernels_match_naive(rows in 1usize..=13, k in 1usize..=70, seed in any::<u64>()) {
            let mut rng = crate::rng::Rng::new(seed);
            let mut xs = [0i16; 70];
            let mut ws = [0i8; 13 * 70];
            for x in xs.iter_mut() { *x = (rng.next_u32() % 256) as i16; }
            for w in ws.iter_mut() { *w = rng.next_u32() as i8; }
            check(rows, k, &xs[..k], &ws[..rows * k]);
        }

        #[test]
        fn gemm_kernels_match_naive(rows in 1usize..=37, k in 1usize..=150, m in 1usize..=14, pad in 0usize..3, seed in any::<u64>()) {
            check_gemm_all(rows, k, m, pad, seed);
        }

        #[test]
        fn requant_kernels_match_scalar(n in 0usize..=70, seed in any::<u64>(), any_params in any::<bool>()) {
            check_requant(n, seed, any_params);
        }
    }
}
