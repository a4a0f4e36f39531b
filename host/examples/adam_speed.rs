//! Micro-benchmark of the optimizer updates: scalar reference vs the SIMD
//! kernels, over the seed model's 669,706 parameters.
//! `cargo run --release -p tailor --example adam_speed`
fn main() {
    let n = 669_706;
    let k = tailor::simd::detect();
    let mut p = vec![0.01f32; n];
    let g: Vec<f32> = (0..n).map(|i| ((i % 97) as f32 - 48.0) * 1e-4).collect();
    let (mut m, mut v) = (vec![0.0f32; n], vec![0.0f32; n]);
    let o = tailor_core::optim::Adam::default();
    let s = tailor_core::optim::Sgd::default();
    for round in 0..2 {
        for (name, simd) in [("adam scalar", false), ("adam simd", true)] {
            let t = std::time::Instant::now();
            for step in 1..=50u64 {
                let c = o.coefs(1e-3, step);
                if simd {
                    (k.adam)(&c, &mut p, &g, &mut m, &mut v);
                } else {
                    tailor_core::optim::adam_update(&c, &mut p, &g, &mut m, &mut v);
                }
            }
            println!("{round} {name} ({}): {:.0} us/step", k.name, t.elapsed().as_secs_f64() / 50.0 * 1e6);
        }
        for (name, simd) in [("sgd scalar", false), ("sgd simd", true)] {
            let t = std::time::Instant::now();
            for step in 1..=50u64 {
                if simd {
                    (k.sgd)(&mut p, &g, 1e-3, 0.0);
                } else {
                    s.step(1e-3, step, &mut p, &g, &mut []);
                }
            }
            println!("{round} {name} ({}): {:.0} us/step", k.name, t.elapsed().as_secs_f64() / 50.0 * 1e6);
        }
    }
}
