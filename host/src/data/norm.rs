//! Input normalization and the DataLoader-like batch fill.
//!
//! Data stays raw in memory (Fashion-MNIST as `u8` is 55 MB; an `f32` copy
//! would blow the 96 MiB RSS budget) and becomes normalized `f32` one batch
//! at a time in [`fill_batch`].

use super::{Features, Split};

/// `ToTensor`'s scale for bytes. [`Norm::value`] divides by 255 instead of
/// multiplying by this rounded reciprocal, which differs in the last bit for
/// some bytes; torchvision divides.
pub const U8_SCALE: f32 = 1.0 / 255.0;

/// Input normalization `x_k = (raw_k * scale - mean_k) / std_k`, in `f32`
/// in exactly that order: for bytes with `scale` [`U8_SCALE`] that is
/// torchvision's `ToTensor` + `Normalize`, bit for bit. `mean` and `std`
/// hold one value per feature.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Norm {
    pub scale: f32,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Norm {
    /// `ToTensor` alone for bytes (values in `[0, 1]`), no change for `f32`.
    pub fn identity(features: usize, u8_data: bool) -> Norm {
        Norm::per_tensor(features, if u8_data { U8_SCALE } else { 1.0 }, 0.0, 1.0)
    }

    pub fn per_tensor(features: usize, scale: f32, mean: f32, std: f32) -> Norm {
        Norm { scale, mean: vec![mean; features], std: vec![std; features] }
    }

    /// `Normalize((0.2860,), (0.3530,))`, Fashion-MNIST's training-set pixel
    /// mean and standard deviation after `ToTensor`.
    pub fn fashion_mnist() -> Norm {
        Norm::per_tensor(784, U8_SCALE, 0.2860, 0.3530)
    }

    /// Per-feature mean and population std of `scale * raw` over `train`
    /// (in `f64`, stored as `f32`). A constant feature gets std 1, so it
    /// becomes 0 instead of NaN.
    pub fn standardize(train: &Split) -> Norm {
        let mut norm = Norm::identity(train.width, matches!(train.features, Features::U8(_)));
        let (w, n) = (train.width, train.len());
        if n == 0 || w == 0 {
            return norm;
        }
        let mut sum = vec![0.0f64; w];
        let mut sq = vec![0.0f64; w];
        for_each_scaled(&norm, train, |k, v| sum[k] += v);
        let mean: Vec<f64> = sum.iter().map(|s| s / n as f64).collect();
        // Two passes: sum of squared deviations, not E[x²] - E[x]², which
        // cancels catastrophically for features far from zero.
        for_each_scaled(&norm, train, |k, v| sq[k] += (v - mean[k]) * (v - mean[k]));
        norm.mean = mean.iter().map(|&m| m as f32).collect();
        norm.std = sq.iter().map(|&s| std_or_one(s / n as f64)).collect();
        norm
    }

    /// One mean and std over all features of `train`: the default for image
    /// data, where every pixel is the same kind of quantity.
    pub fn per_tensor_stats(train: &Split) -> Norm {
        let norm = Norm::identity(train.width, matches!(train.features, Features::U8(_)));
        let count = (train.len() * train.width) as f64;
        if count == 0.0 {
            return norm;
        }
        let mut sum = 0.0f64;
        for_each_scaled(&norm, train, |_, v| sum += v);
        let mean = sum / count;
        let mut sq = 0.0f64;
        for_each_scaled(&norm, train, |_, v| sq += (v - mean) * (v - mean));
        Norm::per_tensor(train.width, norm.scale, mean as f32, std_or_one(sq / count))
    }

    pub fn features(&self) -> usize {
        self.mean.len()
    }

    fn scaled(&self, raw: f32) -> f32 {
        if self.scale == U8_SCALE {
            raw / 255.0
        } else {
            raw * self.scale
        }
    }

    /// The normalized value of `raw` as feature `k`.
    pub fn value(&self, k: usize, raw: f32) -> f32 {
        (self.scaled(raw) - self.mean[k]) / self.std[k]
    }

    /// `(mean, std)` when every feature shares them.
    pub fn per_tensor_values(&self) -> Option<(f32, f32)> {
        let (m, s) = (*self.mean.first()?, *self.std.first()?);
        let same = |v: &[f32], x: f32| v.iter().all(|y| y.to_bits() == x.to_bits());
        (same(&self.mean, m) && same(&self.std, s)).then_some((m, s))
    }
}

fn std_or_one(var: f64) -> f32 {
    let s = var.sqrt() as f32;
    if s > 0.0 && s.is_finite() {
        s
    } else {
        1.0
    }
}

/// `f(k, scale·raw)` for every value of `split`, scaled as [`Norm::value`]
/// scales it so the statistics describe what the model will see.
fn for_each_scaled(norm: &Norm, split: &Split, mut f: impl FnMut(usize, f64)) {
    let w = split.width;
    match &split.features {
        Features::U8(v) => v.iter().enumerate().for_each(|(i, &b)| f(i % w, norm.scaled(b as f32) as f64)),
        Features::F32(v) => v.iter().enumerate().for_each(|(i, &x)| f(i % w, norm.scaled(x) as f64)),
    }
}

/// Fill rows `0..idx.len()` of `x` (row-major, `split.width` wide) and
/// `labels` with the normalized samples `idx` of `split`.
///
/// Panics if `x` or `labels` is too short, `norm` is for another width, or
/// an index is out of range: those are bugs in the caller, not bad input.
pub fn fill_batch(split: &Split, idx: &[u32], norm: &Norm, x: &mut [f32], labels: &mut [u8]) {
    fill_batch_par(&tailor_core::par::Serial, split, idx, norm, x, labels)
}

/// [`fill_batch`] with the rows split over `par`'s threads.
pub fn fill_batch_par(
    par: &dyn tailor_core::par::Par,
    split: &Split,
    idx: &[u32],
    norm: &Norm,
    x: &mut [f32],
    labels: &mut [u8],
) {
    let (n, w) = (idx.len(), split.width);
    assert!(
        x.len() >= n * w && labels.len() >= n,
        "fill_batch: {n} indices of width {w} but room for {} values and {} labels",
        x.len(),
        labels.len()
    );
    assert!(
        norm.mean.len() == w && norm.std.len() == w,
        "fill_batch: norm is for {} features, data has {w}",
        norm.features()
    );
    for (&i, label) in idx.iter().zip(labels.iter_mut()) {
        *label = split.labels[i as usize];
    }
    if n == 0 || w == 0 {
        return;
    }
    let rows = tailor_core::par::rows_per_task(n, par.width(), 1);
    let fill = |t: usize, chunk: &mut [f32], row: &(dyn Fn(usize, &mut [f32]) + Sync)| {
        for (dst, &i) in chunk.chunks_exact_mut(w).zip(&idx[t * rows..]) {
            row(i as usize, dst);
        }
    };
    match (&split.features, norm.per_tensor_values()) {
        // A lookup per byte is cheaper than a division per value.
        (Features::U8(f), Some(_)) => {
            let lut: [f32; 256] = core::array::from_fn(|b| norm.value(0, b as f32));
            par.for_chunks(&mut x[..n * w], rows * w, &|t, chunk| {
                fill(t, chunk, &|i, dst| {
                    for (d, &s) in dst.iter_mut().zip(&f[i * w..(i + 1) * w]) {
                        *d = lut[s as usize];
                    }
                })
            });
        }
        (Features::U8(f), None) => par.for_chunks(&mut x[..n * w], rows * w, &|t, chunk| {
            fill(t, chunk, &|i, dst| {
                for (k, (d, &s)) in dst.iter_mut().zip(&f[i * w..(i + 1) * w]).enumerate() {
                    *d = norm.value(k, s as f32);
                }
            })
        }),
        (Features::F32(f), _) => par.for_chunks(&mut x[..n * w], rows * w, &|t, chunk| {
            fill(t, chunk, &|i, dst| {
                for (k, (d, &s)) in dst.iter_mut().zip(&f[i * w..(i + 1) * w]).enumerate() {
                    *d = norm.value(k, s);
                }
            })
        }),
    }
}
