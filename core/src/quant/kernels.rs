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
//! `SMLAD`. One 32-bit load thus feeds 4 MACs of one row, and the inner loop
//! over a 4-row block is (per 4 inputs × 4 rows = 16 MACs):
//! `LDRD` (x) + 2 `LDRD` (w) + 8 `SXTB16` + 8 `SMLAD` + `SUBS` + `BNE`
//! = 21 instructions, 1.31 instructions/MAC (vs 1.76 for the 2-row kernel).
//! [`packed_index`] is the single definition of this layout.

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

/// A kernel choice. [`QKernels::BEST`] is what `classify` uses.
#[derive(Clone, Copy)]
pub struct QKernels {
    pub name: &'static str,
    pub block4: Block4Fn,
}

impl core::fmt::Debug for QKernels {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name)
    }
}

impl QKernels {
    /// Reads each weight through [`packed_index`]: the reference.
    pub const NAIVE: QKernels = QKernels { name: "naive", block4: naive::block4 };
    /// Plain Rust, lane-parallel, that LLVM vectorizes on x86-64.
    pub const PORTABLE: QKernels = QKernels { name: "portable", block4: portable::block4 };
    /// Cortex-M4/M7: `SMLAD` + `SXTB16`, 4 rows per pass.
    #[cfg(all(target_arch = "arm", tailor_arm_dsp))]
    pub const DSP: QKernels = QKernels { name: "dsp", block4: dsp::block4 };
    /// x86-64 baseline SIMD: `pmaddwd`, 4 rows × 4 inputs per step.
    #[cfg(target_arch = "x86_64")]
    pub const SSE2: QKernels = QKernels { name: "sse2", block4: sse2::block4 };
    /// The fastest kernel compiled in for this target.
    #[cfg(all(target_arch = "arm", tailor_arm_dsp))]
    pub const BEST: QKernels = Self::DSP;
    #[cfg(target_arch = "x86_64")]
    pub const BEST: QKernels = Self::SSE2;
    #[cfg(not(any(all(target_arch = "arm", tailor_arm_dsp), target_arch = "x86_64")))]
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
    let kg = k / K_GROUP * K_GROUP;
    for (r, o) in out[..nr].iter_mut().enumerate() {
        let mut s = 0i32;
        for g in 0..kg / K_GROUP {
            let w = &wb[g * nr * K_GROUP + r * K_GROUP..][..K_GROUP];
            for (j, &pos) in SWAP.iter().enumerate() {
                s += x[g * K_GROUP + j] as i32 * w[pos] as i32;
            }
        }
        let t = k - kg;
        for (i, &w) in wb[kg * nr + r * t..][..t].iter().enumerate() {
            s += x[kg + i] as i32 * w as i32;
        }
        *o = s;
    }
}

/// `acc[r] = Σ_k x[k]·w[r][k]` for all `rows` of a packed layer, calling
/// `emit(r, acc)` in row order. This is the layer loop every path shares.
#[inline]
pub fn gemv(kern: &QKernels, x: &[i16], w: &[i8], rows: usize, k: usize, mut emit: impl FnMut(usize, i32)) {
    let (x, w) = (&x[..k], &w[..rows * k]);
    let full = rows / ROW_BLOCK;
    for b in 0..full {
        let acc = (kern.block4)(x, &w[b * ROW_BLOCK * k..][..ROW_BLOCK * k], k);
        for (r, a) in acc.into_iter().enumerate() {
            emit(b * ROW_BLOCK + r, a);
        }
    }
    let nr = rows - full * ROW_BLOCK;
    if nr > 0 {
        let mut acc = [0i32; ROW_BLOCK];
        tail_rows(x, &w[full * ROW_BLOCK * k..], nr, k, &mut acc);
        for (r, &a) in acc[..nr].iter().enumerate() {
            emit(full * ROW_BLOCK + r, a);
        }
    }
}

pub mod naive {
    use super::*;

    /// Reference: every weight read through [`packed_index`] of a 4-row layer.
    pub fn block4(x: &[i16], wb: &[i8], k: usize) -> [i32; 4] {
        core::array::from_fn(|r| (0..k).map(|p| x[p] as i32 * wb[packed_index(r, p, ROW_BLOCK, k)] as i32).sum())
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

/// Cortex-M4/M7 DSP kernel (ARMv7E-M). Public so that on-target tests can
/// compare it with [`naive::block4`].
#[cfg(all(target_arch = "arm", tailor_arm_dsp))]
pub mod dsp {
    use super::*;

    /// 4 rows per pass; see the module docs for the instruction count.
    /// Falls back to [`portable::block4`] if `x` or `wb` is not 4-byte
    /// aligned (`LDRD` requires it; `classify`'s buffers always are).
    pub fn block4(x: &[i16], wb: &[i8], k: usize) -> [i32; 4] {
        let groups = k / K_GROUP;
        assert!(x.len() >= k && wb.len() >= ROW_BLOCK * k);
        if (x.as_ptr() as usize | wb.as_ptr() as usize) & 3 != 0 {
            return portable::block4(x, wb, k);
        }
        let (mut a0, mut a1, mut a2, mut a3) = (0i32, 0i32, 0i32, 0i32);
        if groups > 0 {
            // SAFETY: reads `groups·8` bytes of `x` (4 i16 per group, k ≥ 4·groups)
            // and `groups·16` bytes of `wb` (4·k ≥ 16·groups), both 4-byte
            // aligned as checked above. No stack, no writes to memory.
            unsafe {
                core::arch::asm!(
                    "2:",
                    "ldrd {x01}, {x23}, [{xp}], #8",
                    "ldrd {wa}, {wb}, [{wp}], #8",
                    "sxtb16 {t}, {wa}",
                    "sxtb16 {wa}, {wa}, ror #8",
                    "smlad {a0}, {t}, {x01}, {a0}",
                    "smlad {a0}, {wa}, {x23}, {a0}",
                    "sxtb16 {t}, {wb}",
                    "sxtb16 {wb}, {wb}, ror #8",
                    "smlad {a1}, {t}, {x01}, {a1}",
                    "smlad {a1}, {wb}, {x23}, {a1}",
                    "ldrd {wa}, {wb}, [{wp}], #8",
                    "sxtb16 {t}, {wa}",
                    "sxtb16 {wa}, {wa}, ror #8",
                    "smlad {a2}, {t}, {x01}, {a2}",
                    "smlad {a2}, {wa}, {x23}, {a2}",
                    "sxtb16 {t}, {wb}",
                    "sxtb16 {wb}, {wb}, ror #8",
                    "smlad {a3}, {t}, {x01}, {a3}",
                    "smlad {a3}, {wb}, {x23}, {a3}",
                    "subs {n}, {n}, #1",
                    "bne 2b",
                    xp = inout(reg) x.as_ptr() => _,
                    wp = inout(reg) wb.as_ptr() => _,
                    n = inout(reg) groups => _,
                    a0 = inout(reg) a0,
                    a1 = inout(reg) a1,
                    a2 = inout(reg) a2,
                    a3 = inout(reg) a3,
                    x01 = out(reg) _,
                    x23 = out(reg) _,
                    wa = out(reg) _,
                    wb = out(reg) _,
                    t = out(reg) _,
                    options(nostack, readonly),
                );
            }
        }
        let mut out = [a0, a1, a2, a3];
        let kg = groups * K_GROUP;
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(rows: usize, k: usize, xs: &[i16], ws: &[i8]) {
        let mut packed = [0i8; 4096];
        pack(ws, rows, k, &mut packed);
        let mut want = [0i32; 64];
        naive::gemv_row_major(xs, ws, rows, k, &mut want);
        for kern in [QKernels::NAIVE, QKernels::PORTABLE, QKernels::BEST] {
            #[cfg(target_arch = "x86_64")]
            let _ = QKernels::SSE2;
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
    }
}
