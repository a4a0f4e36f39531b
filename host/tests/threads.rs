//! Training results do not depend on the thread count: every output element
//! is computed by one thread with the same code, so 1, 2 and 3 threads give
//! the same weights (checked with a float tolerance, as the contract allows
//! reassociation; today they are in fact bitwise equal).

use tailor::checkpoint::Meta;
use tailor::data::{EpochOrder, Split};
use tailor::par::Threads;
use tailor::train::Trainer;
use tailor_core::optim::{Adam, Optimizer};
use tailor_core::Flat;

fn split(n: usize) -> Split {
    let mut r = tailor_core::rng::Rng::new(4);
    Split {
        features: tailor::data::Features::U8((0..n * 784).map(|_| r.below(256) as u8).collect()),
        labels: (0..n).map(|_| r.below(10) as u8).collect(),
        width: 784,
    }
}

fn train(threads: usize, data: &Split) -> Trainer {
    let meta = Meta {
        batch_size: 50, // not a multiple of the 4-row tiles: exercises the split edges
        seed: 8,
        shuffle: true,
        pixel_mean: 0.2860,
        pixel_std: 0.3530,
        ..Meta::new(Optimizer::Adam(Adam::default()))
    };
    let par = Threads::new(threads).unwrap();
    let mut t = Trainer::new(tailor::simd::detect(), meta);
    let order = EpochOrder::new(data.len(), Some(8), 0);
    for idx in order.batches(50) {
        t.step(&par, data, idx, 1e-3).unwrap();
    }
    t
}

#[test]
fn one_two_and_three_threads_agree() {
    let data = split(50 * 12 + 7);
    let base = train(1, &data);
    for n in [2, 3] {
        let t = train(n, &data);
        let (a, b) = (base.model.flat(), t.model.flat());
        let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(worst <= 1e-5, "{n} threads: max weight difference {worst}");
    }
}
