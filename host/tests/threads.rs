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

/// The README's claim over a whole epoch of the real data: one epoch of
/// Fashion-MNIST's 60,000 training images (shuffled, batch 64, the last
/// batch short) with 1 and 2 threads gives the same weights and optimizer
/// state, bit for bit, for every optimizer. The claim is about the code
/// path (each output element computed by one thread with the same code),
/// not the width, so the hidden layers are 128 and 64 wide to keep the
/// test short; the widths still split into several blocks per product.
/// Skipped with a note when the data is absent, unless
/// `TAILOR_REQUIRE_DATA=1`.
#[test]
fn a_full_epoch_of_fashion_mnist_is_the_same_with_1_and_2_threads() {
    let ds = match tailor::data::load_default() {
        Ok(ds) if ds.fashion_mnist => ds,
        other => {
            let msg = format!("Fashion-MNIST not found ({:?})", other.err().map(|e| e.to_string()));
            if std::env::var_os("TAILOR_REQUIRE_DATA").is_some_and(|v| v == "1") {
                panic!("{msg} and TAILOR_REQUIRE_DATA=1");
            }
            eprintln!("SKIPPED a_full_epoch_of_fashion_mnist: {msg}");
            return;
        }
    };
    let spec = tailor_core::Spec::mlp(&[784, 128, 64, 10]);
    for opt in [
        Optimizer::Sgd(Sgd { lr: 0.01, ..Sgd::default() }),
        Optimizer::Sgd(Sgd { lr: 0.01, momentum: 0.9, nesterov: true, ..Sgd::default() }),
        Optimizer::Adam(Adam { weight_decay: 1e-2, decoupled: true, ..Adam::default() }),
        Optimizer::RmsProp(RmsProp { momentum: 0.5, centered: true, ..RmsProp::default() }),
    ] {
        let run = |threads: usize| {
            let meta = Meta { batch_size: 64, seed: 11, shuffle: true, norm: ds.default_norm(), ..Meta::fashion(opt) };
            let par = Threads::new(threads).unwrap();
            let mut t = Trainer::new(tailor::simd::detect(), spec, meta);
            let end = t.train_epoch(&par, &ds.train, 0, &mut |_| {}, &|| false).unwrap();
            assert!(matches!(end, tailor::train::EpochEnd::Done(l) if l.is_finite()), "{opt:?}: {end:?}");
            assert_eq!(t.meta.step, 938, "one epoch is 938 batches of 64");
            t
        };
        let (one, two) = (run(1), run(2));
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert!(bits(one.model.params()) == bits(two.model.params()), "{opt:?}: 2 threads give other weights than 1");
        assert!(bits(&one.optim) == bits(&two.optim), "{opt:?}: 2 threads give another optimizer state than 1");
    }
}
