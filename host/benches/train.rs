//! One training step at batch 64 and inference (batch 64 and 1, on the
//! packed model) of the 784-512-512-10 MLP, with 1 and 2 threads, on
//! generated images that are half background (zeros), as Fashion-MNIST's
//! are. Throughput is in samples, so criterion prints samples/s.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tailor::checkpoint::Meta;
use tailor::data::{fill_batch, Norm, Split};
use tailor::par::Threads;
use tailor::train::Trainer;
use tailor_core::optim::{Optimizer, Sgd};
use tailor_core::par::Par;

fn data(n: usize) -> Split {
    let mut r = tailor_core::rng::Rng::new(1);
    Split {
        features: tailor::data::Features::U8(
            (0..n * 784).map(|_| if r.below(2) == 0 { 0 } else { 1 + r.below(255) as u8 }).collect(),
        ),
        labels: (0..n).map(|_| r.below(10) as u8).collect(),
        width: 784,
    }
}

fn meta(opt: Optimizer) -> Meta {
    Meta::fashion(opt)
}

fn bench(c: &mut Criterion) {
    let split = data(64 * 8);
    let idx: Vec<u32> = (0..64).collect();
    let mut g = c.benchmark_group("train_step_b64");
    g.throughput(Throughput::Elements(64)).sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    for threads in [1, 2] {
        let par = Threads::new(threads).unwrap();
        for (name, opt) in [("sgd", Optimizer::Sgd(Sgd::default())), ("adam", Optimizer::Adam(Default::default()))] {
            let mut t = Trainer::new(tailor::simd::detect(), tailor::bench::SPEC, meta(opt));
            g.bench_function(BenchmarkId::new(name, format!("{threads}t")), |b| {
                b.iter(|| t.step(&par, &split, &idx, 1e-3).unwrap())
            });
        }
    }
    g.finish();

    let mut model = tailor::checkpoint::zero_model(tailor::bench::SPEC);
    model.init(0);
    let k = tailor::simd::detect();
    let packed = tailor::train::pack(&model, &k);
    let mut ws = tailor::train::workspace(tailor::bench::SPEC, 64);
    let mut labels = [0u8; 64];
    fill_batch(&split, &idx, &Norm::identity(784, true), ws.input_mut(64), &mut labels);
    let mut g = c.benchmark_group("infer");
    g.sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    for threads in [1, 2] {
        let par = Threads::new(threads).unwrap();
        for batch in [64usize, 1] {
            g.throughput(Throughput::Elements(batch as u64));
            g.bench_function(BenchmarkId::new(format!("b{batch}"), format!("{threads}t")), |b| {
                b.iter(|| packed.forward(&k, &par as &dyn Par, &mut ws, batch))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
