//! Kernel GFLOP/s by this thread's CPU time (CLOCK_THREAD_CPUTIME_ID), so a
//! loaded machine's time slices don't count; best of 7 windows. Last, the
//! FMA peak on the same clock.
//! `cargo run --release -p tailor --example kernel_cpu_time`
use tailor_core::gemm::Rule;

fn cpu() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn main() {
    let k = tailor::simd::detect();
    let shapes: [(&str, usize, usize, usize); 11] = [
        ("forward", 64, 512, 784),
        ("forward", 64, 512, 512),
        ("fwd_relu_in", 64, 512, 784),
        ("fwd_relu_in", 64, 512, 512),
        ("fwd_packed", 64, 512, 784),
        ("fwd_packed1", 1, 512, 784),
        ("input_grad", 64, 512, 512),
        ("weight_grad", 64, 512, 784),
        ("weight_grad", 64, 512, 512),
        ("wgrad+sgd", 64, 512, 784),
        ("wgrad+adam", 64, 512, 784),
    ];
    let mut rng = tailor_core::rng::Rng::new(1);
    let mut buf = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect() };
    let mut line = String::new();
    for &(product, m, n, kk) in &shapes {
        let (mut x, w, b, dy) = (buf(m * kk), buf(n * kk), buf(n), buf(m * n));
        if product == "fwd_relu_in" {
            // Half exact zeros, as a ReLU leaves them (dense-equivalent FLOPs).
            x.iter_mut().for_each(|v| *v = v.max(0.0));
        }
        let mut packed = tailor::train::AlignedBuf::zeroed(n * kk);
        let pk = packed.as_mut();
        tailor_core::gemm::pack_panels(&w, n, kk, k.panel, pk);
        let mut out = vec![0.0f32; (m * kk).max(n * kk).max(m * n)];
        let (mut wm, mut sm, mut sv) = (w.clone(), vec![0.0f32; n * kk], vec![0.0f32; n * kk]);
        let adam = tailor_core::optim::Adam::default().coefs(1e-9, 1);
        let mut run = || match product {
            "forward" | "fwd_relu_in" => (k.forward)(&x, &w, &b, &mut out, m, n, kk, true),
            // SAFETY: out holds m·n floats.
            "fwd_packed" | "fwd_packed1" => unsafe {
                (k.forward_panels)(&x, pk, &b, out.as_mut_ptr(), n, m, n, kk, true)
            },
            "input_grad" => (k.input_grad)(&dy, &w, &mut out, Some(&x), m, n, kk),
            "wgrad+sgd" => {
                let rule = Rule::Sgd { lr: 1e-9, weight_decay: 0.0 };
                (k.weight_grad_step)(&dy, n, &x, &mut out, &mut wm, [&mut [], &mut []], rule, m, n, kk)
            }
            "wgrad+adam" => {
                let st = [&mut sm[..], &mut sv[..]];
                (k.weight_grad_step)(&dy, n, &x, &mut out, &mut wm, st, Rule::Adam(&adam), m, n, kk)
            }
            _ => (k.weight_grad)(&dy, n, &x, &mut out, m, n, kk),
        };
        let flops = 2.0 * (m * n * kk) as f64;
        let reps = ((2e8 / flops) as usize).clamp(3, 20_000);
        let mut best = 0.0f64;
        for _ in 0..7 {
            let t = cpu();
            for _ in 0..reps {
                run();
            }
            best = best.max(flops * reps as f64 / (cpu() - t) / 1e9);
        }
        line += &format!("{product}/{kk}:{best:.1} ");
    }
    // The FMA peak (widest vectors) on the same clock: FLOPs of a
    // wall-timed window over the CPU time it took.
    let mut peak = 0.0f64;
    for _ in 0..7 {
        let (c, w) = (cpu(), std::time::Instant::now());
        let g = tailor::simd::fma_peak_window_gflops(std::time::Duration::from_millis(50));
        peak = peak.max(g * w.elapsed().as_secs_f64() / (cpu() - c));
    }
    println!("{} {line}peak:{peak:.1}", k.name);
}
