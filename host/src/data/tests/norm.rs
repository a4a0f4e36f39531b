use tailor_core::par::Par;

use super::*;

#[test]
fn fashion_mnist_is_bit_identical_to_torchvision() {
    let n = Norm::fashion_mnist();
    assert_eq!((n.features(), n.per_tensor_values()), (784, Some((0.2860, 0.3530))));
    for b in 0..=255u8 {
        let want = (b as f32 / 255.0 - 0.2860) / 0.3530;
        for k in [0, 783] {
            assert_eq!(n.value(k, b as f32).to_bits(), want.to_bits(), "byte {b}");
        }
    }
    let t = Norm::identity(784, true);
    assert_eq!((t.value(0, 0.0), t.value(5, 255.0), t.value(9, 51.0)), (0.0, 1.0, 51.0f32 / 255.0));
    assert_eq!(Norm::identity(3, false).value(2, -7.25), -7.25);
}

/// Multiplying by the rounded 1/255 is not the same as dividing: the
/// reason `value` divides.
#[test]
fn scale_one_over_255_divides() {
    assert!((0..=255u8).any(|b| (b as f32 * U8_SCALE).to_bits() != (b as f32 / 255.0).to_bits()));
}

#[test]
fn standardize_by_hand() {
    // Feature 0: 1, 2, 3 → mean 2, population std sqrt(2/3).
    // Feature 1: 5, 5, 5 → constant: std 1.
    let s = Split::new(Features::F32(vec![1.0, 5.0, 2.0, 5.0, 3.0, 5.0]), vec![0, 1, 0], 2);
    let n = Norm::standardize(&s);
    assert_eq!(n.scale, 1.0);
    assert_eq!(n.mean, [2.0, 5.0]);
    assert_eq!(n.std, [(2.0f64 / 3.0).sqrt() as f32, 1.0]);
    assert_eq!(n.value(1, 5.0), 0.0);
    assert_eq!(n.per_tensor_values(), None);
    // Bytes are scaled by 1/255 first: 0 and 255 → mean 0.5, std 0.5.
    let s = Split::new(Features::U8(vec![0, 255]), vec![0, 0], 1);
    let n = Norm::standardize(&s);
    assert_eq!((n.scale, n.mean.clone(), n.std.clone()), (U8_SCALE, vec![0.5], vec![0.5]));
    assert_eq!((n.value(0, 0.0), n.value(0, 255.0)), (-1.0, 1.0));
}

#[test]
fn per_tensor_stats_by_hand() {
    // All values 0, 51, 102, 153 (/255: 0, .2, .4, .6) → mean .3, std sqrt(.05).
    let s = Split::new(Features::U8(vec![0, 51, 102, 153]), vec![0, 1], 2);
    let n = Norm::per_tensor_stats(&s);
    let (m, sd) = n.per_tensor_values().unwrap();
    assert!((m - 0.3).abs() < 1e-7 && (sd - 0.05f32.sqrt()).abs() < 1e-7, "{m} {sd}");
    let empty = Split::new(Features::U8(vec![]), vec![], 3);
    assert_eq!(Norm::per_tensor_stats(&empty), Norm::identity(3, true));
    assert_eq!(Norm::standardize(&empty), Norm::identity(3, true));
}

#[test]
fn norm_round_trips_through_json() {
    let n = Norm::standardize(&Split::new(Features::F32(vec![1.0, 2.0, 4.0, 8.0]), vec![0, 0], 2));
    assert_eq!(serde_json::from_str::<Norm>(&serde_json::to_string(&n).unwrap()).unwrap(), n);
}

/// `x[r][k] = norm.value(k, raw[idx[r]][k])`, one element at a time.
fn naive(split: &Split, idx: &[u32], norm: &Norm) -> Vec<f32> {
    let mut out = Vec::new();
    for &i in idx {
        for k in 0..split.width {
            let raw = match &split.features {
                Features::U8(v) => v[i as usize * split.width + k] as f32,
                Features::F32(v) => v[i as usize * split.width + k],
            };
            out.push(norm.value(k, raw));
        }
    }
    out
}

/// Two threads, so rows really are split over tasks.
struct TwoWay;

impl Par for TwoWay {
    fn width(&self) -> usize {
        2
    }
    fn for_tasks(&self, n: usize, f: &(dyn Fn(usize) + Sync)) {
        std::thread::scope(|s| {
            for i in 0..n {
                s.spawn(move || f(i));
            }
        });
    }
}

#[test]
fn fill_batch_par_matches_a_naive_loop() {
    let w = 5;
    let u8s = Split::new(Features::U8((0..40).map(|i| (i * 37 % 256) as u8).collect()), (0..8).collect(), w);
    let f32s = Split::new(Features::F32((0..40).map(|i| i as f32 * 0.37 - 3.0).collect()), (0..8).collect(), w);
    let idx = [5u32, 0, 7, 7, 2];
    for (split, norms) in [
        (&u8s, vec![Norm::identity(w, true), Norm::per_tensor(w, U8_SCALE, 0.3, 0.2), Norm::standardize(&u8s)]),
        (&f32s, vec![Norm::identity(w, false), Norm::per_tensor(w, 0.5, 1.0, 3.0), Norm::standardize(&f32s)]),
    ] {
        for norm in &norms {
            let want = naive(split, &idx, norm);
            for par in [&tailor_core::par::Serial as &dyn Par, &TwoWay] {
                let mut x = vec![-1.0f32; (idx.len() + 1) * w];
                let mut labels = [99u8; 6];
                fill_batch_par(par, split, &idx, norm, &mut x, &mut labels);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&x[..idx.len() * w]), bits(&want), "{norm:?}");
                assert!(x[idx.len() * w..].iter().all(|&v| v == -1.0), "rows past idx.len() are untouched");
                assert_eq!(labels, [5, 0, 7, 7, 2, 99]);
            }
        }
    }
}

#[test]
fn fill_batch_gathers_rows_and_labels() {
    let split = make_split(20, 784);
    let idx = [5u32, 0, 19];
    let mut x = vec![-1.0f32; 4 * 784];
    let mut labels = [99u8; 4];
    fill_batch(&split, &idx, &Norm::identity(784, true), &mut x, &mut labels);
    assert_eq!(labels, [5, 0, 9, 99]);
    assert_eq!(x[100], 35.0 / 255.0);
    assert_eq!(x[784], 0.0);
    assert_eq!(x[2 * 784 + 783], 133.0 / 255.0); // 19 * 7
    assert!(x[3 * 784..].iter().all(|&v| v == -1.0));
    fill_batch(&split, &[], &Norm::identity(784, true), &mut [], &mut []);
}

#[test]
#[should_panic(expected = "norm is for 784 features, data has 5")]
fn fill_batch_rejects_a_norm_of_another_width() {
    let s = make_split(1, 5);
    fill_batch(&s, &[0], &Norm::fashion_mnist(), &mut [0.0; 5], &mut [0]);
}

#[test]
fn split_truncate() {
    let mut s = make_split(5, 3);
    s.truncate(2);
    assert_eq!((s.len(), s.features.len()), (2, 6));
    s.truncate(9);
    assert_eq!(s.len(), 2);
}
