//! Training results do not depend on the thread count: every output element
//! is computed by one thread with the same code, so 1, 2 and 3 threads give
//! the same weights, bit for bit, for every optimizer.

use tailor::checkpoint::Meta;
use tailor::data::{EpochOrder, Split};
use tailor::par::Threads;
use tailor::train::Trainer;
use tailor_core::optim::{Adam, Optimizer, RmsProp, Sgd};

fn split(n: usize) -> Split {
    let mut r = tailor_core::rng::Rng::new(4);
    Split {
        features: tailor::data::Features::U8((0..n * 784).map(|_| r.below(256) as u8).collect()),
        labels: (0..n).map(|_| r.below(10) as u8).collect(),
        width: 784,
    }
}

fn train(threads: usize, data: &Split, opt: Optimizer) -> Trainer {
    let meta = Meta {
        batch_size: 50, // not a multiple of the 4-row tiles: exercises the split edges
        seed: 8,
        shuffle: true,
        norm: tailor::data::Norm::fashion_mnist(),
        ..Meta::fashion(opt)
    };
    let par = Threads::new(threads).unwrap();
    let mut t = Trainer::new(tailor::simd::detect(), tailor::bench::SPEC, meta);
    let order = EpochOrder::new(data.len(), Some(8), 0);
    for idx in order.batches(50) {
        t.step(&par, data, idx, 1e-3).unwrap();
    }
    t
}

#[test]
fn one_two_and_three_threads_agree() {
    let data = split(50 * 12 + 7);
    for opt in [
        Optimizer::Adam(Adam::default()),
        Optimizer::Sgd(Sgd::default()),
        Optimizer::Sgd(Sgd { momentum: 0.9, nesterov: true, ..Sgd::default() }),
        Optimizer::RmsProp(RmsProp::default()),
    ] {
        let base = train(1, &data, opt);
        for n in [2, 3] {
            let t = train(n, &data, opt);
            let same = base.model.params().iter().zip(t.model.params()).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "{opt:?}: {n} threads give other weights than 1");
            assert!(base.optim.iter().zip(&t.optim).all(|(x, y)| x.to_bits() == y.to_bits()), "{opt:?}: state");
        }
    }
}
