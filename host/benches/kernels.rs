//! The three dense-layer products at the 784-512-512-10 model's shapes, for
//! every kernel set this CPU runs. Throughput is reported in "elements" =
//! FLOPs (`2·m·n·k`), so criterion's `elem/s` reads as FLOP/s.
//!
//! `cargo bench -p tailor --bench kernels [-- FILTER]`; the FMA peak of this
//! machine is printed first for reference.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::Duration;
use tailor::simd;
use tailor_core::gemm::Kernels;

#[derive(Clone, Copy)]
enum Op {
    Forward,
    InputGrad,
    WeightGrad,
}

/// (product, m, n, k): batch 64 (and thread-split halves), batch 1.
const SHAPES: &[(Op, usize, usize, usize)] = &[
    (Op::Forward, 64, 512, 784),
    (Op::Forward, 64, 512, 512),
    (Op::Forward, 64, 10, 512),
    (Op::Forward, 32, 512, 784),
    (Op::Forward, 1, 512, 784),
    (Op::Forward, 1, 512, 512),
    (Op::Forward, 1, 10, 512),
    (Op::InputGrad, 64, 512, 512),
    (Op::InputGrad, 64, 10, 512),
    (Op::InputGrad, 32, 512, 512),
    (Op::WeightGrad, 64, 512, 784),
    (Op::WeightGrad, 64, 512, 512),
    (Op::WeightGrad, 64, 10, 512),
    (Op::WeightGrad, 64, 256, 784),
];

fn fill(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

fn run(k: &Kernels, op: Op, m: usize, n: usize, kk: usize, bufs: &mut Bufs) {
    match op {
        Op::Forward => (k.forward)(&bufs.x, &bufs.w, &bufs.b, &mut bufs.y, m, n, kk, true),
        Op::InputGrad => (k.input_grad)(&bufs.dy, &bufs.w, &mut bufs.dx, Some(&bufs.x), m, n, kk),
        Op::WeightGrad => (k.weight_grad)(&bufs.dy, n, &bufs.x, &mut bufs.dw, m, n, kk),
    }
}

struct Bufs {
    x: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
    y: Vec<f32>,
    dy: Vec<f32>,
    dx: Vec<f32>,
    dw: Vec<f32>,
}

fn kernels(c: &mut Criterion) {
    let peak = simd::fma_peak_gflops(1);
    println!("FMA peak on this machine: {peak:.1} GFLOP/s (1 thread)");
    let sets = simd::available();
    for &(op, m, n, k) in SHAPES {
        let name = match op {
            Op::Forward => "forward",
            Op::InputGrad => "input_grad",
            Op::WeightGrad => "weight_grad",
        };
        let mut g = c.benchmark_group(format!("{name}/m{m}_n{n}_k{k}"));
        g.throughput(Throughput::Elements((2 * m * n * k) as u64));
        g.sample_size(20).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
        let mut bufs = Bufs {
            x: fill(m * k, 1),
            w: fill(n * k, 2),
            b: fill(n, 3),
            y: vec![0.0; m * n],
            dy: fill(m * n, 4),
            dx: vec![0.0; m * k],
            dw: vec![0.0; n * k],
        };
        for kern in &sets {
            g.bench_function(BenchmarkId::from_parameter(kern.name), |bch| {
                bch.iter(|| {
                    run(kern, op, m, n, k, &mut bufs);
                    black_box(&bufs.y);
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, kernels);
criterion_main!(benches);
