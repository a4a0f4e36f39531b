//! Per-phase time of one training step (784-512-512-10, batch 64, SGD):
//! where the milliseconds go, for tuning the kernels in context.
//! `cargo run --release -p tailor --example step_profile -- [threads]`
use std::time::Instant;
use tailor::train::Trainer;
use tailor_core::dense::Update;
use tailor_core::gemm::Rule;
use tailor_core::optim::{Optimizer, Sgd};
use tailor_core::par::Par;

fn main() -> anyhow::Result<()> {
    let threads = std::env::args().nth(1).map_or(Ok(1), |s| s.parse())?;
    let par = tailor::par::Threads::new(threads)?;
    let ds = tailor::data::load_default()?;
    let meta = tailor::checkpoint::Meta::fashion(Optimizer::Sgd(Sgd { lr: 1e-3, ..Sgd::default() }));
    let spec = tailor::bench::SPEC;
    let mut t = Trainer::new(tailor::simd::detect(), spec, meta);
    let order = tailor::data::EpochOrder::new(ds.train.len(), None, 0);
    let k = t.kernels;
    let mut grad = vec![0.0f32; spec.params()];
    let mut ws = tailor::train::workspace(spec, 64);
    let mut labels = [0u8; 64];
    let names = ["fill", "fwd1", "fwd2", "fwd3", "loss", "bwd3", "bwd2", "bwd1"];
    let mut acc = [0f64; 8];
    // Alternates the fused step with UNFUSED (gradient through memory, then
    // a separate SGD pass) in rounds of 50 steps; per phase, the best round.
    let mut unfused = false;
    let mut best = [[f64::MAX; 8]; 2];
    let mut round = [0f64; 8];
    let sgd = |_: usize, p: &mut [f32], g: &[f32]| (k.sgd)(p, g, 1e-3, 0.0);
    let up = |unfused: bool| {
        if unfused {
            Update::Each(&sgd)
        } else {
            Update::Fused(Rule::Sgd { lr: 1e-3, weight_decay: 0.0 }, [&mut [], &mut []])
        }
    };
    let steps = 2000;
    let total = Instant::now();
    for (s, idx) in order.indices().chunks(64).cycle().take(steps + 20).enumerate() {
        let n = idx.len();
        if s >= 20 && s % 50 == 0 {
            let v = unfused as usize;
            for i in 0..8 {
                best[v][i] = best[v][i].min(round[i] / 50.0);
            }
            round = [0.0; 8];
            unfused = !unfused;
        }
        let mut tick = Instant::now();
        let mut lap = |i: usize| {
            if s >= 20 {
                acc[i] += tick.elapsed().as_secs_f64();
                round[i] += tick.elapsed().as_secs_f64();
            }
            tick = Instant::now();
        };
        tailor::data::fill_batch(
            &ds.train,
            idx,
            &tailor::data::Norm::identity(784, true),
            ws.input_mut(n),
            &mut labels[..n],
        );
        lap(0);
        let m = &mut t.model;
        for l in 0..3 {
            let (x, y) = ws.layer_io(l, n);
            m.layer(l).forward(&k, &par, x, y, n, l < 2);
            lap(1 + l);
        }
        ws.loss(&spec, &labels[..n]).unwrap();
        lap(4);
        for l in (0..3).rev() {
            let (x, dy, dx) = ws.layer_grads(l, n);
            let off = spec.param_offset(l);
            let g = tailor_core::DenseMut::new(spec.layer(l), &mut grad[off..][..spec.layer(l).params()]);
            m.layer_mut(l).backward_update(&k, &par, x, dy, n, g, dx, l > 0, up(unfused), false);
            lap(7 - l);
        }
    }
    let _ = total;
    for (v, b) in best.iter().enumerate() {
        let sum: f64 = b.iter().sum();
        let parts: Vec<String> = (0..8).map(|i| format!("{} {:.0}", names[i], b[i] * 1e6)).collect();
        println!(
            "{}: best-round {:.0} us/step = {:.0} samples/s  [{}]",
            ["fused", "unfused"][v],
            sum * 1e6,
            64.0 / sum,
            parts.join(", ")
        );
    }
    let sum: f64 = acc.iter().sum();
    let flops = [
        0.0,
        64.0 * 784.0 * 512.0,
        64.0 * 512.0 * 512.0,
        64.0 * 5120.0,
        0.0,
        2.0 * 64.0 * 5120.0,
        2.0 * 64.0 * 512.0 * 512.0,
        64.0 * 784.0 * 512.0,
    ];
    for i in 0..8 {
        let us = acc[i] / steps as f64 * 1e6;
        println!(
            "{:<5} {:>8.1} us {:>5.1}%  {:>6.1} GFLOP/s",
            names[i],
            us,
            100.0 * acc[i] / sum,
            2.0 * flops[i] / us / 1e3
        );
    }
    println!(
        "step  {:>8.1} us  -> {:.0} samples/s ({} threads)",
        sum / steps as f64 * 1e6,
        64.0 * steps as f64 / sum,
        par.width()
    );
    Ok(())
}
