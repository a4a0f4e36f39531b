//! `tailor quantize` and `tailor export`: f32 checkpoint → calibrated int8
//! `.q8` model → firmware sources, plus int8 evaluation on the host.
//!
//! The integer math lives in [`tailor_core::quant`]; this module adds the
//! dataset-driven parts (calibration, accuracy, throughput), files and the
//! memory report.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use serde::Serialize;
use tailor_core::gemm::Kernels;
use tailor_core::par::Par;
use tailor_core::quant::{
    batch_acc_len, batch_acts_len, export, ActRange, FloatLayer, InputAffine, InputKind, PerFeature, QBatchScratch,
    QInput, QKernels, QModel,
};
use tailor_core::spec::Activation;

use crate::board::{Board, BOARDS};
use crate::checkpoint::Model;
use crate::data::{self, fill_batch, Features, Norm, Split};
use crate::q8::Q8;
use crate::train::{evaluate, EVAL_BATCH};

/// How the activation range of each hidden layer is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum CalibMethod {
    /// `[0, max]` of everything observed.
    MinMax,
    /// `[0, p-th percentile]` of all post-ReLU values (e.g. 99.99);
    /// larger values saturate at 255.
    Percentile(f64),
}

/// Default: see the report of the quantization issue for the measurements
/// behind it (percentile 99.999 and min/max were within noise of each other;
/// lower percentiles clip too much).
pub const DEFAULT_METHOD: CalibMethod = CalibMethod::Percentile(99.999);
/// Default number of training images used for calibration.
pub const DEFAULT_CALIB_IMAGES: usize = 2000;

/// Calibrated f32 ranges of the hidden layers' outputs, in order.
pub type Ranges = Vec<ActRange>;

/// Calibrates with [`DEFAULT_METHOD`] on the first `n_images` training samples.
pub fn calibrate(model: &Model, train: &Split, norm: &Norm, n_images: usize) -> Ranges {
    calibrate_with(model, train, norm, n_images, DEFAULT_METHOD, &tailor_core::par::Serial)
}

/// Runs the f32 model on `n_images` evenly spaced training samples
/// (normalized with `norm`) and derives the range of every hidden layer's
/// output.
pub fn calibrate_with(
    model: &Model,
    train: &Split,
    norm: &Norm,
    n_images: usize,
    method: CalibMethod,
    par: &dyn Par,
) -> Ranges {
    let spec = *model.spec();
    let hidden = spec.depth() - 1;
    let n = n_images.clamp(1, train.len().max(1)).min(train.len());
    let step = train.len() as f64 / n.max(1) as f64;
    let idx: Vec<u32> = (0..n).map(|i| (i as f64 * step) as u32).collect();
    let mut ws = crate::train::workspace(spec, EVAL_BATCH);
    let mut labels = [0u8; EVAL_BATCH];
    let kernels = crate::simd::detect();
    let keep = !matches!(method, CalibMethod::MinMax);
    let mut values = vec![Vec::new(); hidden];
    let mut ranges = vec![ActRange::EMPTY; hidden];
    for chunk in idx.chunks(EVAL_BATCH) {
        let m = chunk.len();
        fill_batch(train, chunk, norm, ws.input_mut(m), &mut labels[..m]);
        model.forward(&kernels, par, &mut ws, m);
        for (l, (r, v)) in ranges.iter_mut().zip(values.iter_mut()).enumerate() {
            let h = ws.output(l, m);
            r.observe(h);
            if keep {
                v.extend_from_slice(h);
            }
        }
    }
    for (l, (r, v)) in ranges.iter_mut().zip(values.iter_mut()).enumerate() {
        if let CalibMethod::Percentile(p) = method {
            r.max = percentile(v, p).min(r.max);
        }
        // ReLU outputs: the range always starts at 0 (zero point 0).
        if spec.layer(l).activation == Activation::Relu {
            r.min = 0.0;
        }
    }
    ranges
}

fn percentile(v: &mut [f32], p: f64) -> f32 {
    if v.is_empty() {
        return 0.0;
    }
    let k = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    let k = k.min(v.len() - 1);
    *v.select_nth_unstable_by(k, |a, b| a.total_cmp(b)).1
}

/// The f32 model's layers as the quantizer takes them.
pub fn float_layers(model: &Model) -> Vec<FloatLayer<'_>> {
    let spec = model.spec();
    (0..spec.depth())
        .map(|i| {
            let (l, d) = (spec.layer(i), model.layer(i));
            FloatLayer {
                inputs: l.inputs,
                outputs: l.outputs,
                activation: l.activation,
                weight: d.weight,
                bias: d.bias,
            }
        })
        .collect()
}

/// How `f32` features become the device's input bytes: per feature, the
/// training set's range cut into 255 steps (`q = round((r − lo) / step)`,
/// clamped to `0..=255`). A constant feature gets step 1.
pub fn feature_grid(train: &Split) -> Result<(Vec<f32>, Vec<f32>)> {
    let x = train.features.as_f32().context("feature_grid: the data is not f32")?;
    let w = train.width;
    let (mut lo, mut hi) = (vec![f32::INFINITY; w], vec![f32::NEG_INFINITY; w]);
    for row in x.chunks_exact(w) {
        for (k, &v) in row.iter().enumerate() {
            lo[k] = lo[k].min(v);
            hi[k] = hi[k].max(v);
        }
    }
    let step = lo.iter().zip(&hi).map(|(&l, &h)| if h > l { (h - l) / 255.0 } else { 1.0 }).collect();
    Ok((lo, step))
}

/// Quantizes `model`, trained on inputs normalized by `norm`, into `.q8`
/// bytes. Byte data (`train` of `u8`) goes to the device as it is, with the
/// normalization folded into the first layer; `f32` data is first cut to
/// bytes on a per-feature grid from `train` ([`feature_grid`]), which is
/// folded in too and stored in the `.q8` for the host to apply.
pub fn quantize_model(model: &Model, norm: &Norm, train: &Split, ranges: &[ActRange]) -> Result<Q8> {
    // NaN drops out of max|w|, so a NaN weight would become a plausible int8.
    crate::numerics::check_finite(model.params(), "quantizing")?;
    let layers = float_layers(model);
    // x = (r·scale − mean)/std with r = lo + step·q: the data's scale
    // folds into the grid.
    let (mut lo, mut step, mut gain, mut offset) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    if let Features::F32(_) = train.features {
        (lo, step) = feature_grid(train)?;
        gain = step.iter().map(|s| s * norm.scale).collect();
        offset = norm.mean.iter().zip(&lo).map(|(m, l)| m - l * norm.scale).collect();
    }
    let (affine, kind) = match (&train.features, norm.per_tensor_values()) {
        // One mean and std for all (images): the folding of every version
        // before this one, bit for bit.
        (Features::U8(_), Some((mean, std))) if norm.scale == crate::data::U8_SCALE => {
            (InputAffine::pixels(mean, std), InputKind::RawU8)
        }
        (Features::U8(_), _) => (
            InputAffine {
                in_scale: norm.scale,
                gain: PerFeature::All(1.0),
                offset: PerFeature::Each(&norm.mean),
                std: PerFeature::Each(&norm.std),
                section: QInput::RawU8,
            },
            InputKind::RawU8,
        ),
        (Features::F32(_), _) => {
            let affine = InputAffine {
                in_scale: 1.0,
                gain: PerFeature::Each(&gain),
                offset: PerFeature::Each(&offset),
                std: PerFeature::Each(&norm.std),
                section: QInput::AffineU8 { lo: &lo, step: &step },
            };
            (affine, InputKind::AffineU8)
        }
    };
    quantize_layers(&layers, &affine, kind, ranges)
}

/// Quantizes f32 layers whose first layer's input is `affine` of the
/// device's bytes into `.q8` bytes (the core's [`tailor_core::quant::quantize`]
/// into a buffer of the right size).
pub fn quantize_layers(
    layers: &[FloatLayer<'_>],
    affine: &InputAffine<'_>,
    kind: InputKind,
    ranges: &[ActRange],
) -> Result<Q8> {
    let mut dims: Vec<usize> = vec![layers.first().map_or(0, |l| l.inputs)];
    dims.extend(layers.iter().map(|l| l.outputs));
    let spec = tailor_core::spec::Spec::try_mlp(&dims).map_err(|e| anyhow::anyhow!("model {dims:?}: {e}"))?;
    let mut q = Q8::zeroed(tailor_core::quant::encoded_len(&spec, kind));
    let n = tailor_core::quant::quantize(layers, affine, ranges, q.bytes_mut())
        .map_err(|e| anyhow::anyhow!("quantizing: {e}"))?;
    q.truncate(n);
    Ok(q)
}

/// `gain_k / std_k` of layer 1's input fold, as [`quantize_model`] hands it
/// to the core (which multiplies each weight `w[o][k]` by it in `f64`):
/// the int8 layer 1 approximates these folded weights, not the raw ones.
pub fn layer1_fold(norm: &Norm, train: &Split) -> Result<Vec<f64>> {
    let inv = |gain: f32, std: f32| gain as f64 * (1.0 / std as f64);
    Ok(match (&train.features, norm.per_tensor_values()) {
        (Features::U8(_), Some((_, std))) if norm.scale == crate::data::U8_SCALE => vec![inv(1.0, std); train.width],
        (Features::U8(_), _) => norm.std.iter().map(|&s| inv(1.0, s)).collect(),
        (Features::F32(_), _) => {
            let (_, step) = feature_grid(train)?;
            step.iter().zip(&norm.std).map(|(&st, &s)| inv(st * norm.scale, s)).collect()
        }
    })
}

/// How far one int8 layer is from its f32 weights.
#[derive(Clone, Debug, Serialize)]
pub struct LayerError {
    /// 1-based, as the plot labels it.
    pub layer: usize,
    /// Range of the f32 weights the int8 layer approximates (layer 1's
    /// with the input normalization folded in).
    pub f32_min: f32,
    pub f32_max: f32,
    /// Reach of the int8 grid: ±127 × the largest row step.
    pub grid_max: f32,
    /// Smallest and largest row step (the weight one int8 unit stands for).
    pub step_min: f32,
    pub step_max: f32,
    /// Root mean square of dequantized − f32 over all weights.
    pub rms_error: f64,
    pub max_abs_error: f64,
}

/// The int8 model's error: per layer, and on the logits of test samples.
#[derive(Clone, Debug, Serialize)]
pub struct Int8Error {
    pub layers: Vec<LayerError>,
    /// Test samples whose logits were compared (the first ones).
    pub logit_samples: usize,
    /// RMS of the f32 logits, for scale.
    pub logit_rms: f64,
    /// RMS of int8 logits × logit scale − f32 logits.
    pub logit_rms_error: f64,
    pub logit_max_abs_error: f64,
}

/// Test samples [`int8_error`] compares logits on by default.
pub const LOGIT_SAMPLES: usize = 1000;

/// Compares the int8 model `q` with the f32 `model` it came from (trained
/// on `norm`, quantized with `train`'s input grid): every weight, and the
/// logits of the first `samples` test samples.
pub fn int8_error(
    model: &Model,
    q: &QModel<'_>,
    norm: &Norm,
    train: &Split,
    test: &Split,
    samples: usize,
) -> Result<Int8Error> {
    let spec = *model.spec();
    let fold = layer1_fold(norm, train)?;
    let mut layers = Vec::with_capacity(spec.depth());
    for i in 0..spec.depth() {
        let (f, ql) = (model.layer(i), q.layer(i));
        let (mut lo, mut hi, mut sq, mut worst) = (f32::INFINITY, f32::NEG_INFINITY, 0.0f64, 0.0f64);
        for o in 0..ql.outputs {
            for (k, &w) in f.weight[o * ql.inputs..][..ql.inputs].iter().enumerate() {
                let w = if i == 0 { (w as f64 * fold[k]) as f32 } else { w };
                let e = ql.weight_at(o, k) as f64 * ql.w_scale[o] as f64 - w as f64;
                (lo, hi) = (lo.min(w), hi.max(w));
                sq += e * e;
                worst = worst.max(e.abs());
            }
        }
        let (step_min, step_max) = ql.w_scale.iter().fold((f32::INFINITY, 0.0f32), |(a, b), &s| (a.min(s), b.max(s)));
        layers.push(LayerError {
            layer: i + 1,
            f32_min: lo,
            f32_max: hi,
            grid_max: 127.0 * step_max,
            step_min,
            step_max,
            rms_error: (sq / (ql.outputs * ql.inputs).max(1) as f64).sqrt(),
            max_abs_error: worst,
        });
    }

    let n = samples.min(test.len());
    let outs = spec.outputs();
    let (_, int8) = int8_predict_logits(q, &device_inputs(q, test)?[..n * spec.inputs()]);
    let logit_scale = q.layer(spec.depth() - 1).params.out_scale as f64;
    let kernels = crate::simd::detect();
    let mut ws = crate::train::workspace(spec, EVAL_BATCH);
    let mut labels = [0u8; EVAL_BATCH];
    let (mut ref_sq, mut err_sq, mut worst) = (0.0f64, 0.0f64, 0.0f64);
    let idx: Vec<u32> = (0..n as u32).collect();
    for (c, chunk) in idx.chunks(EVAL_BATCH).enumerate() {
        let m = chunk.len();
        fill_batch(test, chunk, norm, ws.input_mut(m), &mut labels[..m]);
        model.forward(&kernels, &tailor_core::par::Serial, &mut ws, m);
        let f = ws.logits(m);
        for (&fv, &qv) in f.iter().zip(&int8[c * EVAL_BATCH * outs..]) {
            let e = qv as f64 * logit_scale - fv as f64;
            ref_sq += fv as f64 * fv as f64;
            err_sq += e * e;
            worst = worst.max(e.abs());
        }
    }
    let count = (n * outs).max(1) as f64;
    Ok(Int8Error {
        layers,
        logit_samples: n,
        logit_rms: (ref_sq / count).sqrt(),
        logit_rms_error: (err_sq / count).sqrt(),
        logit_max_abs_error: worst,
    })
}

/// The bytes the device takes for every sample of `split` (`split.len() ×
/// inputs`): the samples themselves for byte data, or `f32` features cut to
/// bytes on the model's grid. An error if the model does not take this data.
pub fn device_inputs<'s>(model: &QModel<'_>, split: &'s Split) -> Result<Cow<'s, [u8]>> {
    let n_in = model.spec().inputs();
    if split.width != n_in {
        bail!("the model takes {n_in} inputs, the data has {} features", split.width);
    }
    match (model.input(), &split.features) {
        (QInput::RawU8, Features::U8(b)) => Ok(Cow::Borrowed(b)),
        (q @ QInput::AffineU8 { .. }, Features::F32(x)) => {
            let mut out = vec![0u8; x.len()];
            for (row, o) in x.chunks_exact(n_in).zip(out.chunks_exact_mut(n_in)) {
                q.quantize_features(row, o);
            }
            Ok(Cow::Owned(out))
        }
        (QInput::RawU8, _) => bail!("the model takes bytes (images), the data is f32 features"),
        (_, _) => bail!("the model takes f32 features, the data is bytes"),
    }
}

/// The environment variable that overrides [`best_qkernels`].
pub const QKERNELS_ENV: &str = "TAILOR_QKERNELS";

/// The int8 kernel set called `name` (`naive`, `portable`, `sse2`, `avx2`,
/// `avx512vnni`, `neon`), if it exists and this CPU runs it.
pub fn qkernels_by_name(name: &str) -> Option<QKernels> {
    match name {
        "naive" => Some(QKernels::NAIVE),
        "portable" => Some(QKernels::PORTABLE),
        #[cfg(target_arch = "x86_64")]
        "sse2" => Some(QKernels::SSE2),
        #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
        "neon" => Some(QKernels::NEON),
        #[cfg(target_arch = "x86_64")]
        "avx2" if is_x86_feature_detected!("avx2") => {
            // SAFETY: AVX2 detected.
            Some(unsafe { tailor_core::quant::kernels::x86::avx2() })
        }
        #[cfg(target_arch = "x86_64")]
        "avx512vnni"
            if is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512vnni") =>
        {
            // SAFETY: AVX-512F/BW/VL/VNNI detected.
            Some(unsafe { tailor_core::quant::kernels::x86::avx512_vnni() })
        }
        _ => None,
    }
}

/// Every int8 kernel set this CPU runs, slowest first (`naive` included).
pub fn available_qkernels() -> Vec<QKernels> {
    ["naive", "portable", "sse2", "neon", "avx2", "avx512vnni"].into_iter().filter_map(qkernels_by_name).collect()
}

/// The fastest int8 kernel set this CPU runs (AVX-512 VNNI → AVX2 →
/// [`QKernels::BEST`]), or the one `TAILOR_QKERNELS` names. All of them give
/// bit-identical results.
pub fn best_qkernels() -> QKernels {
    if let Ok(name) = std::env::var(QKERNELS_ENV) {
        let name = name.trim();
        if !name.is_empty() {
            match qkernels_by_name(name) {
                Some(k) => return k,
                None => eprintln!("warning: {QKERNELS_ENV}={name} is unknown or not supported by this CPU; detecting"),
            }
        }
    }
    ["avx512vnni", "avx2"].into_iter().find_map(qkernels_by_name).unwrap_or(QKernels::BEST)
}

/// Samples per weight pass of the host's batched int8 path.
pub const QBATCH: usize = 12;
/// Samples per rayon task of [`int8_predict_all`].
const RAYON_CHUNK: usize = 4 * QBATCH;

/// Heap scratch of [`QModel::classify_batch`] for [`QBATCH`] samples.
pub struct BatchScratch {
    acts: Vec<u8>,
    acc: Vec<i32>,
}

impl BatchScratch {
    pub fn new(model: &QModel<'_>) -> Self {
        BatchScratch {
            acts: vec![0; batch_acts_len(model.spec(), QBATCH)],
            acc: vec![0; batch_acc_len(model.spec(), QBATCH)],
        }
    }

    pub fn get(&mut self) -> QBatchScratch<'_> {
        QBatchScratch { acts: &mut self.acts, acc: &mut self.acc }
    }
}

/// Samples in `inputs` (device bytes, [`device_inputs`]) for `model`.
fn samples(model: &QModel<'_>, inputs: &[u8]) -> (usize, usize) {
    let n_in = model.spec().inputs();
    assert!(inputs.len().is_multiple_of(n_in), "inputs are not whole samples of {n_in} bytes");
    (inputs.len() / n_in, n_in)
}

/// Int8 predictions and every logit (`n × outputs`) of `model` for every
/// sample of `inputs` (device bytes, [`device_inputs`]): rayon over chunks,
/// each through [`QModel::classify_batch`] with [`best_qkernels`];
/// bit-identical to the device.
pub fn int8_predict_logits(model: &QModel<'_>, inputs: &[u8]) -> (Vec<u8>, Vec<i32>) {
    let (n, n_in) = samples(model, inputs);
    let n_out = model.spec().outputs();
    let kern = best_qkernels();
    let mut classes = vec![0u8; n];
    let mut logits = vec![0i32; n * n_out];
    classes.par_chunks_mut(RAYON_CHUNK).zip(logits.par_chunks_mut(RAYON_CHUNK * n_out)).enumerate().for_each_init(
        || BatchScratch::new(model),
        |s, (c, (o, lg))| {
            let px = &inputs[c * RAYON_CHUNK * n_in..];
            model.classify_batch(&kern, px, o.len(), s.get(), |i, cls, l| {
                o[i] = cls as u8;
                lg[i * n_out..][..n_out].copy_from_slice(l);
            });
        },
    );
    (classes, logits)
}

/// Int8 predictions for every sample of `inputs` (see [`int8_predict_logits`]).
pub fn int8_predict_all(model: &QModel<'_>, inputs: &[u8]) -> Vec<u8> {
    let (n, n_in) = samples(model, inputs);
    let kern = best_qkernels();
    let mut out = vec![0u8; n];
    out.par_chunks_mut(RAYON_CHUNK).enumerate().for_each_init(
        || BatchScratch::new(model),
        |s, (c, o)| {
            let px = &inputs[c * RAYON_CHUNK * n_in..];
            model.classify_batch(&kern, px, o.len(), s.get(), |i, cls, _| o[i] = cls as u8);
        },
    );
    out
}

/// Int8 predictions like the f32 inference runs them: `batch` samples at a
/// time, each batch split evenly over the threads of `par`.
pub fn int8_predict_par(model: &QModel<'_>, kern: &QKernels, inputs: &[u8], par: &dyn Par, batch: usize) -> Vec<u8> {
    let (n, n_in) = samples(model, inputs);
    let batch = batch.max(1);
    let mut out = vec![0u8; n];
    let scratch: Vec<std::sync::Mutex<BatchScratch>> =
        (0..par.width().max(1)).map(|_| std::sync::Mutex::new(BatchScratch::new(model))).collect();
    let mut start = 0;
    while start < n {
        let b = batch.min(n - start);
        let per = b.div_ceil(par.width().max(1));
        let dst = SyncOut(out[start..].as_mut_ptr());
        par.for_tasks(b.div_ceil(per), &|ci| {
            let dst = &dst;
            let (first, len) = (ci * per, per.min(b - ci * per));
            let px = &inputs[(start + first) * n_in..];
            let mut s = scratch[ci % scratch.len()].lock().unwrap_or_else(|e| e.into_inner());
            // SAFETY: task ci alone writes samples first..first + len of
            // this batch, inside `out`, which outlives the call.
            let o = unsafe { std::slice::from_raw_parts_mut(dst.0.add(first), len) };
            model.classify_batch(kern, px, len, s.get(), |i, k, _| o[i] = k as u8);
        });
        start += b;
    }
    out
}

/// Where the tasks of [`int8_predict_par`] write their disjoint ranges.
struct SyncOut(*mut u8);
// SAFETY: tasks write disjoint ranges (see the user).
unsafe impl Sync for SyncOut {}

/// Samples per second of int8 inference over the first `limit` samples of
/// `inputs`, `batch` at a time over `par` (the int8 twin of the f32
/// inference measurement of `tailor bench`).
pub fn int8_infer_pass(
    model: &QModel<'_>,
    kern: &QKernels,
    par: &dyn Par,
    inputs: &[u8],
    batch: usize,
    limit: usize,
) -> f64 {
    let (n, n_in) = samples(model, inputs);
    let n = n.min(limit);
    // A fresh copy, as the previous versions timed it: the samples start
    // in cache, as those of a device's input stream would.
    let part = inputs[..n * n_in].to_vec();
    let t = Instant::now();
    std::hint::black_box(int8_predict_par(model, kern, &part, par, batch));
    n as f64 / t.elapsed().as_secs_f64()
}

/// Int8 accuracy (0..1) over `split`.
pub fn int8_accuracy(model: &QModel<'_>, split: &Split) -> Result<f64> {
    let p = int8_predict_all(model, &device_inputs(model, split)?);
    Ok(p.iter().zip(&split.labels).filter(|(a, b)| a == b).count() as f64 / split.len().max(1) as f64)
}

/// Samples per second of [`int8_predict_all`] over `inputs` (best of 3 runs).
pub fn int8_throughput(model: &QModel<'_>, inputs: &[u8]) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        std::hint::black_box(int8_predict_all(model, inputs));
        best = best.min(t.elapsed().as_secs_f64());
    }
    samples(model, inputs).0 as f64 / best
}

/// Reads a `.q8` (version 1 is converted in memory, with a notice).
pub fn load_q8(path: &Path) -> Result<Q8> {
    crate::q8::load(path)
}

pub use crate::checkpoint::atomic_write as write_atomic;

/// The int8 model in `path`: a `.q8` as it is, or an f32 model (checkpoint
/// or safetensors state dict) quantized in memory with the default
/// calibration on `ds`'s training split, with a notice on stderr.
pub fn load_or_quantize(path: &Path, ds: &data::Dataset) -> Result<Q8> {
    // Whole file: recognizing safetensors by its bytes needs the file's length.
    let bytes = crate::read::regular_file(path, "model")?;
    let f32_model = bytes.starts_with(&crate::checkpoint::MAGIC)
        || (!bytes.starts_with(b"TLQ8")
            && crate::interop::kind_of(path, &bytes) == crate::interop::ModelKind::Safetensors);
    drop(bytes);
    if !f32_model {
        return load_q8(path);
    }
    let ck = crate::interop::load(path, Some(ds))?;
    let spec = *ck.model.spec();
    if ds.features != spec.inputs() {
        bail!(
            "{}: the model {spec} takes {} inputs, {} has {} features",
            path.display(),
            spec.inputs(),
            ds.source,
            ds.features
        );
    }
    if ds.train.is_empty() {
        bail!("{}: quantizing {} needs training samples for calibration", ds.source, path.display());
    }
    let threads = crate::par::Threads::new(0)?;
    let cal = calibrate_with(&ck.model, &ds.train, &ck.meta.norm, DEFAULT_CALIB_IMAGES, DEFAULT_METHOD, &threads);
    let q8 = quantize_model(&ck.model, &ck.meta.norm, &ds.train, &cal)?;
    eprintln!(
        "note: {} is an f32 model, quantized in memory with the default calibration \
         (`tailor quantize` writes the .q8 and reports its accuracy)",
        path.display()
    );
    Ok(q8)
}

/// Arguments of `tailor quantize`.
#[derive(Clone, Debug)]
pub struct QuantizeArgs {
    /// f32 checkpoint (`tailor train` output).
    pub checkpoint: PathBuf,
    /// Where to write the `.q8`.
    pub out: PathBuf,
    /// The data: calibration uses its training split, the accuracy report
    /// its test split.
    pub data: data::DataArgs,
    /// Training images used for calibration (`None`: [`DEFAULT_CALIB_IMAGES`],
    /// or all of a smaller training set; more than the data is an error).
    pub calib_images: Option<usize>,
    pub method: CalibMethod,
    /// Threads for the f32 passes (0 = all cores).
    pub threads: usize,
    /// Print JSON instead of text.
    pub json: bool,
    /// `--plot`: weight ranges and int8 error, `.svg` or `.png`.
    pub plot: Option<PathBuf>,
}

impl QuantizeArgs {
    pub fn new(checkpoint: PathBuf, out: PathBuf) -> Self {
        QuantizeArgs {
            checkpoint,
            out,
            data: data::DataArgs::default(),
            calib_images: None,
            method: DEFAULT_METHOD,
            threads: 0,
            json: false,
            plot: None,
        }
    }
}

/// A microcontroller's memory budget.
#[derive(Clone, Debug, Serialize)]
pub struct BoardFit {
    pub board: &'static str,
    pub flash_bytes: u64,
    pub ram_bytes: u64,
    pub flash_used_pct: f64,
    pub ram_used_pct: f64,
    pub fits: bool,
}

/// Estimated code size of an inference-only firmware (kernels, requant,
/// UART protocol, runtime), from the size of a release build of this crate's
/// inference path for thumbv7em. An estimate, not a measurement of the
/// firmware.
pub const CODE_BYTES_ESTIMATE: u64 = 24 * 1024;
/// Stack and statics besides the activations and I/O buffers (protocol
/// frame buffer, stack frames of the inference, runtime), an estimate.
pub const RAM_OVERHEAD_ESTIMATE: u64 = 4 * 1024;

/// Flash and RAM one model needs: the `.q8` in flash beside the code; the
/// inference scratch plus one input and its logits in RAM.
pub fn board_fits(model: &QModel<'_>) -> (u64, u64, Vec<BoardFit>) {
    let flash = model.encoded_len() as u64 + CODE_BYTES_ESTIMATE;
    let spec = model.spec();
    let io = spec.inputs() as u64 + 4 * spec.outputs() as u64;
    let ram = 2 * model.scratch_len() as u64 + io + RAM_OVERHEAD_ESTIMATE;
    let fit = |b: &Board| {
        let refused = b.refuses(model.encoded_len() as u64, model.scratch_len() as u64, spec.outputs() as u64);
        BoardFit {
            board: b.name,
            flash_bytes: b.flash_bytes,
            ram_bytes: b.ram_bytes,
            flash_used_pct: 100.0 * flash as f64 / b.flash_bytes as f64,
            ram_used_pct: 100.0 * ram as f64 / b.ram_bytes as f64,
            fits: flash <= b.flash_bytes && ram <= b.ram_bytes && refused.is_none(),
        }
    };
    (flash, ram, BOARDS.iter().map(fit).collect())
}

#[derive(Clone, Debug, Serialize)]
pub struct QuantizeReport {
    pub f32_accuracy: f64,
    pub int8_accuracy: f64,
    /// Fraction of test images where f32 and int8 predict the same class.
    pub agreement: f64,
    /// Size of the `.q8` file (header + payload).
    pub model_bytes: u64,
    /// Layer widths, inputs first.
    pub dims: Vec<u32>,
    pub code_bytes_estimate: u64,
    pub flash_bytes: u64,
    /// Activation scratch of one inference (`QModel::scratch_len`, i16).
    pub scratch_bytes: u64,
    /// Activation scratch + one input and its logits + overhead estimate.
    pub ram_bytes: u64,
    pub payload_crc: String,
    pub calib_images: usize,
    pub calib_method: CalibMethod,
    /// Calibrated upper end of each hidden layer's output range.
    pub hidden_max: Vec<f32>,
    pub int8_samples_per_sec: f64,
    pub boards: Vec<BoardFit>,
    pub out: PathBuf,
    /// Per-layer weight ranges and errors, and the logit error.
    pub int8_error: Int8Error,
    pub plot: Option<PathBuf>,
}

/// `tailor quantize`: load, calibrate, quantize, write the `.q8`
/// atomically, compare f32 and int8 on the 10,000 test images, print the
/// memory report (text or `--json`).
pub fn run_quantize(args: QuantizeArgs) -> Result<QuantizeReport> {
    if let Some(p) = &args.plot {
        crate::plot::Format::of(p, "--plot")?;
    }
    let ds = data::load(&args.data)?;
    let ck = crate::interop::load(&args.checkpoint, Some(&ds))?;
    let spec = *ck.model.spec();
    if ds.features != spec.inputs() {
        bail!(
            "{}: the model {spec} takes {} inputs, {} has {} features",
            args.checkpoint.display(),
            spec.inputs(),
            ds.source,
            ds.features
        );
    }
    if ds.train.is_empty() || ds.test.is_empty() {
        bail!("{}: calibration and the accuracy report need training and test samples", ds.source);
    }
    let calib_images = match args.calib_images {
        None => DEFAULT_CALIB_IMAGES.min(ds.train.len()),
        Some(n) if n == 0 || n > ds.train.len() => {
            bail!("--calib-images {n}: expected 1..={} (the training samples in {})", ds.train.len(), ds.source)
        }
        Some(n) => n,
    };
    let mut inputs = ds.files.clone();
    inputs.push(args.checkpoint.clone());
    crate::output::check(&args.out, &inputs)?;
    let norm = ck.meta.norm.clone();
    let threads = crate::par::Threads::new(args.threads)?;
    let cal = calibrate_with(&ck.model, &ds.train, &norm, calib_images, args.method, &threads);
    let q8 = quantize_model(&ck.model, &norm, &ds.train, &cal)?;
    let q = q8.model()?;
    crate::numerics::check_q8(&q, &format!("not writing {}", args.out.display()))?;
    crate::output::write(&args.out, q8.bytes(), &inputs)?;

    let kernels: Kernels = crate::simd::detect();
    let f = evaluate(&ck.model, &kernels, &threads, &ds.test, &norm);
    drop(threads);
    let inputs = device_inputs(&q, &ds.test)?;
    let t = Instant::now();
    let preds = int8_predict_all(&q, &inputs);
    let int8_sps = ds.test.len() as f64 / t.elapsed().as_secs_f64();
    let correct = preds.iter().zip(&ds.test.labels).filter(|(a, b)| a == b).count();
    let agree = preds.iter().zip(&f.predictions).filter(|(a, b)| a == b).count();
    let n = ds.test.len().max(1) as f64;
    let int8_error = int8_error(&ck.model, &q, &norm, &ds.train, &ds.test, LOGIT_SAMPLES)?;

    let (flash, ram, boards) = board_fits(&q);
    let report = QuantizeReport {
        f32_accuracy: f.accuracy(),
        int8_accuracy: correct as f64 / n,
        agreement: agree as f64 / n,
        model_bytes: q8.bytes().len() as u64,
        dims: q.spec().dims().to_vec(),
        code_bytes_estimate: CODE_BYTES_ESTIMATE,
        flash_bytes: flash,
        scratch_bytes: 2 * q.scratch_len() as u64,
        ram_bytes: ram,
        payload_crc: format!("{:#010x}", q.payload_crc()),
        calib_images,
        calib_method: args.method,
        hidden_max: cal.iter().map(|r| r.max).collect(),
        int8_samples_per_sec: int8_sps,
        boards,
        out: args.out.clone(),
        int8_error,
        plot: args.plot.clone(),
    };
    // After the .q8 is written: a plot that fails loses nothing.
    if let Some(p) = &args.plot {
        let title = format!("{} → int8 ({})", spec, args.out.display());
        crate::plot::save(&crate::plot::quantize::QuantizeFigure { error: &report.int8_error, title }, p, "--plot")?;
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report);
    }
    Ok(report)
}

fn print_report(r: &QuantizeReport) {
    println!("wrote {} ({} bytes, payload CRC {})", r.out.display(), r.model_bytes, r.payload_crc);
    let ranges: Vec<String> = r.hidden_max.iter().map(|m| format!("{m:.3}")).collect();
    println!(
        "calibration: {} training samples, {:?}: hidden layers' upper ends [{}]",
        r.calib_images,
        r.calib_method,
        ranges.join(", ")
    );
    println!(
        "test accuracy   f32 {:6.2} %   int8 {:6.2} %   (Δ {:+.2} points, same class on {:.2} %)",
        100.0 * r.f32_accuracy,
        100.0 * r.int8_accuracy,
        100.0 * (r.int8_accuracy - r.f32_accuracy),
        100.0 * r.agreement
    );
    let e = &r.int8_error;
    let rms: Vec<String> = e.layers.iter().map(|l| crate::plot::short(l.rms_error)).collect();
    println!("int8 weight error (RMS per layer): [{}]; {}", rms.join(", "), crate::plot::quantize::logit_line(e));
    println!("int8 host throughput: {:.0} samples/s", r.int8_samples_per_sec);
    println!(
        "flash: {} B .q8 + ~{} B code = {} B    RAM: {} B activations + I/O + ~{} B overhead = {} B",
        r.model_bytes, r.code_bytes_estimate, r.flash_bytes, r.scratch_bytes, RAM_OVERHEAD_ESTIMATE, r.ram_bytes
    );
    println!("{:<10} {:>9} {:>8} {:>8} {:>8}  fits", "board", "flash KB", "used", "RAM KB", "used");
    for b in &r.boards {
        println!(
            "{:<10} {:>9} {:>7.1}% {:>8} {:>7.1}%  {}",
            b.board,
            b.flash_bytes / 1024,
            b.flash_used_pct,
            b.ram_bytes / 1024,
            b.ram_used_pct,
            if b.fits { "yes" } else { "NO" }
        );
    }
}

/// `tailor export --format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// Rust module + `<out stem>.q8` beside it (`include_bytes!`, aligned).
    Rust,
    /// C header with the `.q8` bytes as an aligned array.
    C,
    /// The `.q8` bytes only: the image of a model flash region.
    Bin,
}

impl std::str::FromStr for ExportFormat {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "rust" | "rs" => Ok(ExportFormat::Rust),
            "c" | "h" => Ok(ExportFormat::C),
            "bin" => Ok(ExportFormat::Bin),
            _ => bail!("unknown export format `{s}` (rust, c or bin)"),
        }
    }
}

/// `tailor export`: reads a `.q8` and writes firmware sources. For `rust`,
/// `out` is the `.rs` module and the `.q8` (version 2) goes to the same
/// path with extension `.q8` (the module `include_bytes!`es it by file
/// name). Returns the files written.
pub fn run_export(model_q8: &Path, format: ExportFormat, out: &Path) -> Result<Vec<PathBuf>> {
    let q8 = load_q8(model_q8)?;
    let q = q8.model()?;
    let inputs = [model_q8.to_path_buf()];
    let write_atomic = |path: &Path, bytes: &[u8]| crate::output::write(path, bytes, &inputs);
    match format {
        ExportFormat::Bin => {
            write_atomic(out, q8.bytes())?;
            Ok(vec![out.to_path_buf()])
        }
        ExportFormat::Rust => {
            let file = out.with_extension("q8");
            let name = file.file_name().and_then(|n| n.to_str()).context("output path has no file name")?.to_string();
            crate::output::check(out, &inputs)?;
            write_atomic(&file, q8.bytes())?;
            let mut s = String::new();
            export::write_rust_module(&q, &name, &mut s)?;
            write_atomic(out, s.as_bytes())?;
            Ok(vec![out.to_path_buf(), file])
        }
        ExportFormat::C => {
            let mut s = String::with_capacity(5 * q8.bytes().len() + 4096);
            export::write_c_header(&q, q8.bytes(), &mut s)?;
            write_atomic(out, s.as_bytes())?;
            Ok(vec![out.to_path_buf()])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tailor_core::quant::golden;

    fn seed_model(seed: u64) -> Model {
        let mut m = crate::checkpoint::zero_model(crate::bench::SPEC);
        m.init(seed);
        m
    }

    /// `n` generated 784-byte images (byte `i` is `i·a mod b`), labels `i mod 10`.
    fn bytes_split(n: usize, a: usize, b: usize) -> Split {
        let px = (0..n * 784).map(|i| (i * a % b) as u8).collect();
        Split::new(Features::U8(px), (0..n).map(|i| (i % 10) as u8).collect(), 784)
    }

    #[test]
    fn quantize_export_roundtrip_on_random_model() {
        let m = seed_model(1);
        let split = bytes_split(64, 37, 251);
        let cal = calibrate(&m, &split, &Norm::fashion_mnist(), 64);
        assert!(cal[0].max > 0.0 && cal[1].max > 0.0);
        let q8 = quantize_model(&m, &Norm::fashion_mnist(), &split, &cal).unwrap();
        let bytes = q8.bytes().to_vec();
        assert!(bytes.len() <= 690_000, "{} bytes", bytes.len());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.q8");
        crate::output::write(&p, &bytes, &[]).unwrap();
        let back = load_q8(&p).unwrap();
        assert_eq!(back.bytes(), q8.bytes());
        let q = back.model().unwrap();
        let inputs = device_inputs(&q, &split).unwrap();
        let preds = int8_predict_all(&q, &inputs);
        assert_eq!(preds.len(), 64);
        assert_eq!(int8_predict_all(&q, &inputs[..63 * 784]), preds[..63]);
        let (classes, logits) = int8_predict_logits(&q, &inputs);
        assert_eq!((classes, logits.len()), (preds, 640));
        let files = run_export(&p, ExportFormat::Rust, &dir.path().join("model.rs")).unwrap();
        let rs = std::fs::read_to_string(&files[0]).unwrap();
        assert!(rs.contains("include_bytes!(\"model.q8\")"));
        assert_eq!(std::fs::read(&files[1]).unwrap(), bytes);
        assert!(rs.contains(&format!("{:#010x}", q.payload_crc())));
        run_export(&p, ExportFormat::C, &dir.path().join("model.h")).unwrap();
        let bin = dir.path().join("model.bin");
        run_export(&p, ExportFormat::Bin, &bin).unwrap();
        assert_eq!(std::fs::read(&bin).unwrap(), bytes);
        // The memory report: the seed model fits the 1 MB parts, not 512 KB.
        let (_, _, fits) = board_fits(&q);
        let fit = |name: &str| fits.iter().find(|b| b.board == name).unwrap().fits;
        assert!(fit("nRF52840") && fit("mps2-an386") && !fit("STM32F411"));
        // A checkpoint-magic file gets a helpful error.
        let mut bad = bytes.clone();
        bad[..4].copy_from_slice(b"TLRF");
        std::fs::write(&p, &bad).unwrap();
        assert!(load_q8(&p).unwrap_err().to_string().contains("f32 checkpoint"));
    }

    /// Measurements for the report: `TAILOR_Q8_CKPT=path cargo test -p tailor
    /// --lib quantize::tests::measure -- --ignored --nocapture`.
    #[test]
    #[ignore = "needs TAILOR_Q8_CKPT=<f32 checkpoint> and the dataset"]
    fn measure_checkpoint() {
        let ck = std::path::PathBuf::from(std::env::var("TAILOR_Q8_CKPT").expect("TAILOR_Q8_CKPT"));
        let dir = tempfile::tempdir().unwrap();
        for (method, n) in [
            (CalibMethod::MinMax, 2000),
            (CalibMethod::Percentile(99.9), 2000),
            (CalibMethod::Percentile(99.99), 2000),
            (CalibMethod::Percentile(99.999), 2000),
            (CalibMethod::Percentile(99.999), 500),
            (CalibMethod::MinMax, 10000),
        ] {
            let mut a = QuantizeArgs::new(ck.clone(), dir.path().join("m.q8"));
            a.method = method;
            a.calib_images = Some(n);
            a.threads = 1;
            let r = run_quantize(a).unwrap();
            eprintln!(
                "MEASURE {method:?} n={n}: f32 {:.4} int8 {:.4} agree {:.4} bytes {}",
                r.f32_accuracy, r.int8_accuracy, r.agreement, r.model_bytes
            );
        }
    }

    /// `TAILOR_Q8_CKPT=path cargo test --release -p tailor --lib quantize::tests::speed -- --ignored --nocapture`
    #[test]
    #[ignore = "needs TAILOR_Q8_CKPT=<f32 checkpoint> and the dataset"]
    fn speed_int8_vs_f32() {
        let ck = crate::checkpoint::load(std::path::Path::new(&std::env::var("TAILOR_Q8_CKPT").unwrap())).unwrap();
        let ds = data::load_default().unwrap();
        let pixels = ck.meta.norm.clone();
        let cal = calibrate(&ck.model, &ds.train, &pixels, 500);
        let q8 = quantize_model(&ck.model, &pixels, &ds.train, &cal).unwrap();
        let q = q8.model().unwrap();
        let threads = crate::par::Threads::new(0).unwrap();
        let kernels = crate::simd::detect();
        let t = Instant::now();
        let f = evaluate(&ck.model, &kernels, &threads, &ds.test, &pixels);
        let f32_sps = ds.test.len() as f64 / t.elapsed().as_secs_f64();
        drop(threads);
        let inputs = device_inputs(&q, &ds.test).unwrap();
        let i8_sps = int8_throughput(&q, &inputs);
        for kern in [tailor_core::quant::QKernels::PORTABLE, tailor_core::quant::QKernels::BEST] {
            let t = Instant::now();
            let mut logits = [0i32; 10];
            let mut scratch = vec![0i16; q.scratch_len()];
            for i in 0..2000 {
                std::hint::black_box(q.classify(&kern, ds.test.row_u8(i).unwrap(), &mut scratch, &mut logits));
            }
            eprintln!("SPEED 1 thread {}: {:.1} us/sample", kern.name, t.elapsed().as_secs_f64() / 2000.0 * 1e6);
        }
        eprintln!(
            "SPEED f32 {f32_sps:.0}/s ({:.4})  int8 {i8_sps:.0}/s ({:.4})",
            f.accuracy(),
            int8_accuracy(&q, &ds.test).unwrap()
        );
    }

    /// Int8 speed of every kernel set on a random model (1 thread, batch 64
    /// and batch 1; `TAILOR_QKERNELS=name` for one set only): `cargo test
    /// --release -p tailor --lib quantize::tests::int8_kernel_speed --
    /// --ignored --nocapture`.
    #[test]
    #[ignore = "needs the dataset; a measurement"]
    fn int8_kernel_speed() {
        let ds = data::load_default().unwrap();
        let m = seed_model(0);
        let norm = Norm::identity(784, true);
        let cal = calibrate(&m, &ds.train, &norm, 500);
        let q8 = quantize_model(&m, &norm, &ds.train, &cal).unwrap();
        let q = q8.model().unwrap();
        let inputs = device_inputs(&q, &ds.test).unwrap();
        let serial = tailor_core::par::Serial;
        let want = int8_predict_par(&q, &QKernels::BEST, &inputs, &serial, 64);
        let only = std::env::var(QKERNELS_ENV).ok();
        for kern in available_qkernels().into_iter().skip(2).filter(|k| only.as_deref().is_none_or(|o| o == k.name)) {
            assert_eq!(int8_predict_par(&q, &kern, &inputs, &serial, 64), want, "{}", kern.name);
            let best = |batch: usize, limit: usize| {
                (0..5).map(|_| int8_infer_pass(&q, &kern, &serial, &inputs, batch, limit)).fold(0.0, f64::max)
            };
            let (b64, b1) = (best(64, 10_000), best(1, 2000));
            eprintln!("SPEED {:<11} batch 64: {b64:>8.0}/s   batch 1: {b1:>8.0}/s ({:.1} us)", kern.name, 1e6 / b1);
        }
    }

    /// The batched paths (every kernel set, any thread split and batch) give
    /// the per-image predictions.
    #[test]
    fn batched_int8_matches_per_image() {
        let m = seed_model(3);
        let n = 77;
        let split = bytes_split(n, 131, 253);
        let cal = calibrate(&m, &split, &Norm::fashion_mnist(), n);
        let q8 = quantize_model(&m, &Norm::fashion_mnist(), &split, &cal).unwrap();
        let q = q8.model().unwrap();
        let mut scratch = vec![0i16; q.scratch_len()];
        let want: Vec<u8> = (0..n)
            .map(|i| q.classify(&QKernels::NAIVE, split.row_u8(i).unwrap(), &mut scratch, &mut [0; 10]) as u8)
            .collect();
        let inputs = device_inputs(&q, &split).unwrap();
        assert_eq!(int8_predict_all(&q, &inputs), want);
        let threads = crate::par::Threads::new(2).unwrap();
        for kern in available_qkernels() {
            for batch in [1, 5, 64] {
                assert_eq!(int8_predict_par(&q, &kern, &inputs, &threads, batch), want, "{} batch {batch}", kern.name);
            }
        }
    }

    /// `f32` features (sensor readings on wildly different scales) go to
    /// the device as bytes on a per-feature grid folded into layer 1: the
    /// int8 model tracks the f32 one.
    #[test]
    fn f32_features_quantize_and_track_f32() {
        let spec = tailor_core::Spec::mlp(&[6, 24, 3]);
        let mut m = crate::checkpoint::zero_model(spec);
        m.init(5);
        let mut r = tailor_core::rng::Rng::new(2);
        let scale = [1.0f32, 100.0, 0.01, 5.0, 1000.0, 0.5];
        let n = 500;
        let x: Vec<f32> = (0..n * 6).map(|i| (r.uniform(-1.0, 1.0) + 3.0) * scale[i % 6]).collect();
        let split = Split::new(Features::F32(x), (0..n).map(|i| (i % 3) as u8).collect(), 6);
        let norm = Norm::standardize(&split);
        let cal = calibrate(&m, &split, &norm, n);
        let q8 = quantize_model(&m, &norm, &split, &cal).unwrap();
        let q = q8.model().unwrap();
        assert!(matches!(q.input(), QInput::AffineU8 { .. }));
        let inputs = device_inputs(&q, &split).unwrap();
        assert_eq!(inputs.len(), n * 6);
        let int8 = int8_predict_all(&q, &inputs);
        let f = evaluate(&m, &crate::simd::detect(), &tailor_core::par::Serial, &split, &norm);
        let agree = int8.iter().zip(&f.predictions).filter(|(a, b)| a == b).count();
        assert!(agree as f64 >= 0.95 * n as f64, "int8 and f32 agree on {agree} of {n}");
        // Byte data for a feature model (and the reverse) is refused.
        let bytes = Split::new(Features::U8(vec![0; 12]), vec![0, 1], 6);
        assert!(device_inputs(&q, &bytes).unwrap_err().to_string().contains("f32 features"));
    }

    /// Every int8 weight is within half a step of the f32 weight it stands
    /// for (layer 1's with the input fold, which [`layer1_fold`] must
    /// compute as the core does), and the logits track the f32 ones.
    #[test]
    fn int8_error_is_rounding_error() {
        let check = |m: &Model, norm: &Norm, split: &Split| {
            let cal = calibrate(m, split, norm, split.len());
            let q8 = quantize_model(m, norm, split, &cal).unwrap();
            let q = q8.model().unwrap();
            let e = int8_error(m, &q, norm, split, split, 50).unwrap();
            assert_eq!(e.layers.len(), m.spec().depth());
            assert_eq!(e.logit_samples, 50);
            for l in &e.layers {
                assert!(l.max_abs_error <= l.step_max as f64 * 0.5001, "{l:?}");
                assert!(l.rms_error > 0.0 && l.rms_error <= l.max_abs_error, "{l:?}");
                assert!(l.f32_min < 0.0 && l.f32_max > 0.0 && l.step_min <= l.step_max, "{l:?}");
                assert!(l.grid_max as f64 >= l.f32_max.abs().max(l.f32_min.abs()) as f64 * 0.9999, "{l:?}");
            }
            assert!(e.logit_rms > 0.0 && e.logit_rms_error < 0.1 * e.logit_rms, "{e:?}");
            e
        };
        let m = seed_model(4);
        let split = bytes_split(64, 37, 251);
        let e = check(&m, &Norm::fashion_mnist(), &split);
        // Folded by 1/0.353, layer 1's weights reach past the raw ±1/√784.
        assert!(e.layers[0].f32_max > 1.0 / 28.0);
        let per_feature = Norm { scale: crate::data::U8_SCALE, mean: vec![0.2; 784], std: vec![0.5; 784] };
        let mut per_feature = per_feature;
        per_feature.std[3] = 0.25;
        check(&m, &per_feature, &split);

        let spec = tailor_core::Spec::mlp(&[5, 16, 8, 3]);
        let mut m = crate::checkpoint::zero_model(spec);
        m.init(9);
        let mut r = tailor_core::rng::Rng::new(3);
        let n = 200;
        let x: Vec<f32> = (0..n * 5).map(|i| r.uniform(-2.0, 2.0) * [1.0, 50.0, 0.1, 7.0, 300.0][i % 5]).collect();
        let split = Split::new(Features::F32(x), (0..n).map(|i| (i % 3) as u8).collect(), 5);
        check(&m, &Norm::standardize(&split), &split);
    }

    #[test]
    fn golden_classifies_on_host() {
        let blob = golden::blob();
        let g = QModel::parse(&blob.0).unwrap();
        let mut logits = [0i32; 2];
        let mut scratch = [0i16; 32];
        assert_eq!(g.classify(&best_qkernels(), &golden::INPUT, &mut scratch, &mut logits), golden::EXPECTED_CLASS);
        assert_eq!(logits, golden::EXPECTED_LOGITS);
    }
}
