//! Run-time choice of the math kernels, and this machine's FMA peak.
//!
//! [`detect`] picks the widest kernel set the CPU runs (AVX-512 → AVX2+FMA →
//! portable on x86-64, NEON on aarch64); `TAILOR_KERNELS=portable|avx2|
//! avx512|neon|naive` overrides it.
//! [`fma_peak_gflops`] measures the f32 FMA peak (independent accumulator
//! chains, no memory traffic, like `shared/bench/fma_peak.c`), so kernel
//! throughput can be reported as a fraction of it.

use std::time::{Duration, Instant};
use tailor_core::gemm::Kernels;

/// The environment variable that overrides [`detect`].
pub const ENV: &str = "TAILOR_KERNELS";

/// The kernel set called `name` (`portable`, `naive`, `avx2`, `avx512`,
/// `neon`), if it exists and this CPU can run it.
pub fn by_name(name: &str) -> Option<Kernels> {
    match name {
        "portable" => Some(Kernels::PORTABLE),
        "naive" => Some(Kernels::NAIVE),
        #[cfg(target_arch = "x86_64")]
        "avx2" if has_avx2() => {
            // SAFETY: AVX2 and FMA detected.
            Some(unsafe { tailor_core::gemm::x86::avx2_fma() })
        }
        #[cfg(target_arch = "x86_64")]
        "avx512" if has_avx512() => {
            // SAFETY: AVX-512F/VL, AVX2 and FMA detected.
            Some(unsafe { tailor_core::gemm::x86::avx512() })
        }
        // NEON is baseline on aarch64: no detection needed.
        #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
        "neon" => Some(tailor_core::gemm::neon::NEON),
        _ => None,
    }
}

/// Every kernel set this CPU runs except `naive`, slowest first.
pub fn available() -> Vec<Kernels> {
    ["portable", "avx2", "avx512", "neon"].into_iter().filter_map(by_name).collect()
}

/// The best kernel set for this CPU, or the one `TAILOR_KERNELS` names (a
/// warning on stderr and detection if it is unknown or unsupported here).
pub fn detect() -> Kernels {
    if let Ok(name) = std::env::var(ENV) {
        let name = name.trim();
        if !name.is_empty() {
            match by_name(name) {
                Some(k) => return k,
                None => eprintln!("warning: {ENV}={name} is unknown or not supported by this CPU; detecting"),
            }
        }
    }
    *available().last().expect("portable is always available")
}

#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

#[cfg(target_arch = "x86_64")]
fn has_avx512() -> bool {
    has_avx2() && is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl")
}

/// Accumulator chains in the peak loop: enough to cover FMA latency × ports
/// (4 × 2 on current cores) with margin.
const NACC: usize = 12;
/// Inner iterations between clock reads.
const CHUNK: u64 = 1 << 16;

/// This machine's f32 FMA peak in GFLOP/s with `threads` threads (each runs
/// the loop for about 0.2 s in 5 windows and reports its fastest; the result
/// is their sum), using the vectors of the kernel set in use.
pub fn fma_peak_gflops(threads: usize) -> f64 {
    fma_peak_gflops_for(Duration::from_millis(200), threads)
}

/// [`fma_peak_gflops`] with a chosen run time per thread.
pub fn fma_peak_gflops_for(time: Duration, threads: usize) -> f64 {
    let threads = threads.max(1);
    let barrier = std::sync::Barrier::new(threads);
    let flops: Vec<(f64, Duration)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    run_peak(time)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("peak thread panicked")).collect()
    });
    flops.iter().map(|&(f, t)| f / t.as_secs_f64()).sum::<f64>() / 1e9
}

/// One thread's FMA peak in GFLOP/s over a single window of about `time`:
/// for interleaving with another measurement, so that both see the same
/// load on a shared host.
pub fn fma_peak_window_gflops(time: Duration) -> f64 {
    let (f, t) = run_peak_window(time);
    f / t.as_secs_f64() / 1e9
}

/// Windows per peak measurement; the best counts (like the kernel
/// measurements in `tailor bench`: noise on a shared host only ever slows a
/// window down).
const WINDOWS: u32 = 5;

/// Runs the FMA loop of the kernels in use for about `time` in [`WINDOWS`] windows;
/// returns (FLOPs, elapsed) of the fastest.
fn run_peak(time: Duration) -> (f64, Duration) {
    (0..WINDOWS)
        .map(|_| run_peak_window(time / WINDOWS))
        .max_by(|a, b| (a.0 / a.1.as_secs_f64()).total_cmp(&(b.0 / b.1.as_secs_f64())))
        .expect("at least one window")
}

/// The kernel set whose vectors the peak loop uses: [`detect`]'s, so that a
/// forced `TAILOR_KERNELS=avx2` is measured against 256-bit FMAs (half the
/// 512-bit peak on cores with two 512-bit FMA units).
#[cfg(target_arch = "x86_64")]
fn peak_set() -> &'static str {
    static SET: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
    SET.get_or_init(|| detect().name)
}

fn run_peak_window(time: Duration) -> (f64, Duration) {
    let start = Instant::now();
    let mut iters = 0u64;
    let mut sink = 0.0f32;
    let lanes = loop {
        #[cfg(target_arch = "x86_64")]
        let (l, s) = if peak_set() == "avx512" {
            // SAFETY: the set is only chosen when the features are there.
            (16, unsafe { peak_avx512(CHUNK) })
        } else if peak_set() == "avx2" {
            // SAFETY: features detected.
            (8, unsafe { peak_avx2(CHUNK) })
        } else {
            (8, peak_portable(CHUNK))
        };
        #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
        let (l, s) = (4, peak_neon(CHUNK));
        #[cfg(not(any(target_arch = "x86_64", all(target_arch = "aarch64", target_feature = "neon"))))]
        let (l, s) = (8, peak_portable(CHUNK));
        sink += s;
        iters += CHUNK;
        if start.elapsed() >= time {
            break l;
        }
    };
    std::hint::black_box(sink);
    (2.0 * (lanes * NACC) as f64 * iters as f64, start.elapsed())
}

#[cfg(target_arch = "x86_64")]
/// # Safety
/// The CPU must have AVX-512F.
#[target_feature(enable = "avx512f")]
unsafe fn peak_avx512(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_setzero_ps(); NACC];
    for (j, a) in acc.iter_mut().enumerate() {
        *a = _mm512_set1_ps(0.001 * j as f32);
    }
    let a = _mm512_set1_ps(std::hint::black_box(0.9999));
    let b = _mm512_set1_ps(std::hint::black_box(1e-7));
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm512_fmadd_ps(*v, a, b);
        }
    }
    let s = acc.iter().fold(_mm512_setzero_ps(), |s, &v| _mm512_add_ps(s, v));
    _mm512_reduce_add_ps(s)
}

#[cfg(target_arch = "x86_64")]
/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn peak_avx2(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_setzero_ps(); NACC];
    for (j, a) in acc.iter_mut().enumerate() {
        *a = _mm256_set1_ps(0.001 * j as f32);
    }
    let a = _mm256_set1_ps(std::hint::black_box(0.9999));
    let b = _mm256_set1_ps(std::hint::black_box(1e-7));
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm256_fmadd_ps(*v, a, b);
        }
    }
    let s = acc.iter().fold(_mm256_setzero_ps(), |s, &v| _mm256_add_ps(s, v));
    let mut o = [0.0f32; 8];
    _mm256_storeu_ps(o.as_mut_ptr(), s);
    o.iter().sum()
}

/// NEON `fmla` chains (LLVM does not fuse the portable loop's `a·b + c`).
#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
fn peak_neon(iters: u64) -> f32 {
    use std::arch::aarch64::*;
    // SAFETY: register-only NEON ops; NEON is enabled for the target.
    unsafe {
        let mut acc = [vdupq_n_f32(0.0); NACC];
        for (j, a) in acc.iter_mut().enumerate() {
            *a = vdupq_n_f32(0.001 * j as f32);
        }
        let a = vdupq_n_f32(std::hint::black_box(0.9999));
        let b = vdupq_n_f32(std::hint::black_box(1e-7));
        for _ in 0..iters {
            for v in acc.iter_mut() {
                *v = vfmaq_f32(b, *v, a);
            }
        }
        vaddvq_f32(acc.iter().fold(vdupq_n_f32(0.0), |s, &v| vaddq_f32(s, v)))
    }
}

/// Whatever the compile target makes of 8-lane multiply-add chains.
#[cfg_attr(all(target_arch = "aarch64", target_feature = "neon"), allow(dead_code))]
fn peak_portable(iters: u64) -> f32 {
    let mut acc = [[0.0f32; 8]; NACC];
    for (j, a) in acc.iter_mut().enumerate() {
        *a = [0.001 * j as f32; 8];
    }
    let a = std::hint::black_box(0.9999f32);
    let b = std::hint::black_box(1e-7f32);
    for _ in 0..iters {
        for v in acc.iter_mut() {
            for l in v.iter_mut() {
                *l = *l * a + b;
            }
        }
    }
    acc.iter().flatten().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(by_name("portable").unwrap().name, "portable");
        assert_eq!(by_name("naive").unwrap().name, "naive");
        assert!(by_name("sse9").is_none());
        assert_eq!(by_name("neon").is_some(), cfg!(target_arch = "aarch64"));
        let best = detect();
        assert!(available().iter().any(|k| k.name == best.name) || best.name == "naive");
    }

    #[test]
    fn peak_is_positive() {
        let p = fma_peak_gflops_for(Duration::from_millis(20), 1);
        assert!(p.is_finite() && p > 0.1, "{p}");
    }
}
