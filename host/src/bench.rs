//! `tailor bench`: training and inference throughput on this machine, the
//! way the PyTorch reference (`../shared/bench/torch_mlp.py`) measures it.

use std::path::Path;

use anyhow::{bail, Result};
use serde::Serialize;
use tailor_core::gemm::{Kernels, Rule};
use tailor_core::optim::{Adam, Optimizer, Sgd};
use tailor_core::par::Par;
use tailor_core::spec::Spec;

use crate::checkpoint::{zero_model, Meta};
use crate::data::{self, EpochOrder};
use crate::par::Threads;
use crate::train::{Packed, Timer, Trainer};

/// FLOPs of one training sample: the forward pass, every weight gradient,
/// and the input gradients of every layer but the first (3,209,216 for
/// 784-512-512-10).
pub fn train_flop_per_sample(spec: &Spec) -> f64 {
    let first = spec.layer(0);
    (3 * 2 * spec.macs() - 2 * first.inputs * first.outputs) as f64
}

#[derive(Clone, Debug, Serialize)]
pub struct KernelBench {
    pub product: &'static str,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub gflops: f64,
    /// The single-core FMA peak in windows interleaved with this kernel's.
    pub peak_gflops: f64,
    pub peak_fraction: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// The model's widths, inputs first.
    pub dims: Vec<u32>,
    pub threads: usize,
    pub kernels: &'static str,
    pub train_samples_per_sec: f64,
    pub infer_samples_per_sec: f64,
    pub infer_batch1_samples_per_sec: f64,
    /// Training GFLOP/s end to end.
    pub gflops: f64,
    pub peak_gflops: f64,
    pub peak_fraction: f64,
    pub kernel_gflops: Vec<KernelBench>,
    pub int8_infer_samples_per_sec: Option<f64>,
    pub int8_batch1_samples_per_sec: Option<f64>,
    /// The optimizer `train_samples_per_sec` was measured with (`sgd`:
    /// PyTorch's tutorial, lr 1e-3; `adam`: `torch.optim.Adam` defaults).
    pub optimizer: &'static str,
    /// Whether training read the batches in a shuffled order.
    pub shuffle: bool,
    /// Memory traffic of the Adam step alone (`Kernels::adam` over the
    /// model's parameters, one thread), counting the 4 streams read (p, g,
    /// m, v) and 3 written, in GB/s ...
    pub adam_gbytes_per_sec: f64,
    /// ... next to a plain copy of a buffer far larger than the caches
    /// (bytes read + written), on one thread, in windows interleaved with it.
    pub copy_gbytes_per_sec: f64,
}

/// The optimizers `tailor bench --optimizer` times, as `torch_mlp.py
/// --optimizer` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchOpt {
    Sgd,
    Adam,
}

impl BenchOpt {
    fn optimizer(self) -> Optimizer {
        match self {
            BenchOpt::Sgd => Optimizer::Sgd(Sgd { lr: 1e-3, ..Sgd::default() }),
            BenchOpt::Adam => Optimizer::Adam(Adam::default()),
        }
    }

    fn name(self) -> &'static str {
        match self {
            BenchOpt::Sgd => "sgd",
            BenchOpt::Adam => "adam",
        }
    }
}

/// Inference passes per measurement; the best counts, as in
/// `shared/bench/torch_bench.py` (noise only ever adds time).
const INFER_REPS: usize = 5;

fn best_of(mut f: impl FnMut() -> f64) -> f64 {
    (0..INFER_REPS).map(|_| f()).fold(0.0, f64::max)
}

/// `ToTensor` for bytes, nothing for floats, as the PyTorch reference does.
fn identity_norm(split: &data::Split) -> data::Norm {
    data::Norm::identity(split.width, matches!(split.features, data::Features::U8(_)))
}

fn train_pass(
    kernels: Kernels,
    spec: Spec,
    par: &dyn Par,
    split: &data::Split,
    batches: usize,
    opt: Optimizer,
    shuffle: bool,
) -> Result<f64> {
    let names = (0..spec.outputs()).map(|c| c.to_string()).collect();
    let meta = Meta::new(opt, identity_norm(split), names);
    let mut t = Trainer::new(kernels, spec, meta);
    let order = EpochOrder::new(split.len(), shuffle.then_some(0), 0);
    // Warm up caches and the thread pool.
    for idx in order.batches(64).take(5) {
        t.step(par, split, idx, 1e-3)?;
    }
    let timer = Timer::start();
    let mut n = 0;
    for idx in order.batches(64).take(batches) {
        t.step(par, split, idx, 1e-3)?;
        n += idx.len();
    }
    Ok(n as f64 / timer.secs())
}

fn infer_pass(kernels: Kernels, par: &dyn Par, model: &Packed, split: &data::Split, batch: usize, limit: usize) -> f64 {
    let mut ws = crate::train::workspace(*model.spec(), batch);
    let mut labels = vec![0u8; batch];
    let norm = identity_norm(split);
    let order = EpochOrder::new(split.len().min(limit), None, 0);
    let timer = Timer::start();
    let mut n = 0;
    for idx in order.batches(batch) {
        let m = idx.len();
        data::fill_batch_par(par, split, idx, &norm, ws.input_mut(m), &mut labels[..m]);
        model.forward(&kernels, par, &mut ws, m);
        std::hint::black_box(ws.logits(m));
        n += m;
    }
    n as f64 / timer.secs()
}

/// GFLOP/s of each product at the model's shapes, on random data:
/// `forward` as training runs it (transposing blocks of `w`), `fwd_packed`
/// as inference does (weights packed once), and `fwd_relu_in` is `forward`
/// with inputs that are half exact zeros, as a ReLU (or an image's
/// background) leaves them, which the kernels skip. The `_relu_dy`
/// products take a `dy` that is half exact zeros, as behind a ReLU in
/// training. FLOPs are counted as dense, so these may exceed the peak.
fn kernel_bench(k: &Kernels) -> Vec<KernelBench> {
    let shapes: [(&str, usize, usize, usize); 17] = [
        ("forward", 64, 512, 784),
        ("forward", 64, 512, 512),
        ("fwd_packed", 64, 512, 784),
        ("fwd_packed", 64, 512, 512),
        ("fwd_relu_in", 64, 512, 784),
        ("fwd_relu_in", 64, 512, 512),
        ("forward", 64, 10, 512),
        ("input_grad", 64, 512, 512),
        ("input_grad", 64, 10, 512),
        ("weight_grad", 64, 512, 784),
        ("weight_grad", 64, 512, 512),
        ("weight_grad", 64, 10, 512),
        ("wgrad+sgd", 64, 512, 784),
        ("wgrad+adam", 64, 512, 784),
        ("input_grad_relu_dy", 64, 512, 512),
        ("wgrad+sgd_relu_dy", 64, 512, 784),
        ("wgrad+adam_relu_dy", 64, 512, 784),
    ];
    let mut rng = tailor_core::rng::Rng::new(1);
    let mut buf = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect() };
    shapes
        .iter()
        .map(|&(name, m, n, kk)| {
            let (mut x, w, b, mut dy) = (buf(m * kk), buf(n * kk), buf(n), buf(m * n));
            let product = match name.strip_suffix("_relu_dy") {
                Some(p) => {
                    dy.iter_mut().filter(|v| v.abs() < 0.5).for_each(|v| *v = 0.0);
                    p
                }
                None => name,
            };
            if product == "fwd_relu_in" {
                // Inputs as a ReLU leaves them: half are exact zeros.
                x.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            // 64-byte aligned, as packed models are.
            let mut packed = crate::train::AlignedBuf::zeroed(n * kk);
            let pk = packed.as_mut();
            tailor_core::gemm::pack_panels(&w, n, kk, k.panel, pk);
            let mut out = vec![0.0f32; (m * kk).max(n * kk).max(m * n)];
            // The fused steps update weights and state in place; tiny
            // learning rates keep them from drifting far.
            let (mut wm, mut sm, mut sv) = (w.clone(), vec![0.0f32; n * kk], vec![0.0f32; n * kk]);
            let adam = tailor_core::optim::Adam::default().coefs(1e-9, 1);
            let mut run = || match product {
                "forward" | "fwd_relu_in" => (k.forward)(&x, &w, &b, &mut out, m, n, kk, true),
                // SAFETY: out holds m·n floats; nothing else uses it.
                "fwd_packed" => unsafe { (k.forward_panels)(&x, pk, &b, out.as_mut_ptr(), n, m, n, kk, true) },
                "input_grad" => (k.input_grad)(&dy, &w, &mut out, Some(&x), m, n, kk),
                "wgrad+sgd" => {
                    let rule = Rule::Sgd { lr: 1e-9, weight_decay: 0.0 };
                    (k.weight_grad_step)(&dy, n, &x, &mut out, &mut wm, [&mut [], &mut []], rule, m, n, kk)
                }
                "wgrad+adam" => {
                    let st = [&mut sm[..], &mut sv[..]];
                    (k.weight_grad_step)(&dy, n, &x, &mut out, &mut wm, st, Rule::Adam(&adam), m, n, kk)
                }
                _ => (k.weight_grad)(&dy, n, &x, &mut out, m, n, kk),
            };
            for _ in 0..3 {
                run();
            }
            // Best of 5 trials of ~0.4 GFLOP each, each followed by a window
            // of the FMA peak loop: the share is of the best peak window,
            // taken under the same load as the kernel's.
            let flops = 2.0 * (m * n * kk) as f64;
            let reps = ((4e8 / flops) as usize).clamp(3, 5_000);
            let (mut gflops, mut peak) = (0.0f64, 0.0f64);
            for _ in 0..INFER_REPS {
                let t = Timer::start();
                for _ in 0..reps {
                    run();
                }
                gflops = gflops.max(flops * reps as f64 / t.secs() / 1e9);
                peak = peak.max(crate::simd::fma_peak_window_gflops(std::time::Duration::from_millis(20)));
            }
            KernelBench { product: name, m, n, k: kk, gflops, peak_gflops: peak, peak_fraction: gflops / peak }
        })
        .collect()
}

/// One thread's (Adam step GB/s, copy GB/s) for `params` parameters, best
/// of [`INFER_REPS`] alternating windows of each.
fn memory_bench(k: &Kernels, params: usize) -> (f64, f64) {
    let mut rng = tailor_core::rng::Rng::new(2);
    let mut buf = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect() };
    let (mut p, g, mut m, mut v) = (buf(params), buf(params), vec![0.0f32; params], vec![0.0f32; params]);
    // 64 MB each way: well past any L3 this runs on.
    let (src, mut dst) = (buf(16 << 20), vec![0.0f32; 16 << 20]);
    let c = Adam::default().coefs(1e-9, 1);
    let (mut adam, mut copy) = (0.0f64, 0.0f64);
    for _ in 0..INFER_REPS {
        let reps = 20;
        let t = Timer::start();
        for _ in 0..reps {
            (k.adam)(&c, &mut p, &g, &mut m, &mut v);
        }
        adam = adam.max((7 * 4 * params * reps) as f64 / t.secs() / 1e9);
        let t = Timer::start();
        for _ in 0..2 {
            dst.copy_from_slice(&src);
            std::hint::black_box(&mut dst);
        }
        copy = copy.max((2 * 2 * 4 * src.len()) as f64 / t.secs() / 1e9);
    }
    (adam, copy)
}

/// The model benchmarked by default: the tutorial's 784-512-512-10.
pub const SPEC: Spec = Spec::mlp(&[784, 512, 512, 10]);

/// Benchmarks a model of `hidden` layers ([`SPEC`]'s when `None`) on the
/// data's inputs and classes.
pub fn run(
    threads: usize,
    data_dir: Option<&Path>,
    json: bool,
    train_batches: Option<usize>,
    hidden: Option<&[usize]>,
    opt: BenchOpt,
    shuffle: bool,
) -> Result<BenchReport> {
    let par = Threads::new(threads)?;
    let width = par.width();
    let kernels = crate::simd::detect();
    let ds = data::load(&data::DataArgs::from_dir(data_dir))?;
    let spec = match hidden {
        Some(h) => crate::commands::model_spec(ds.features, h, ds.classes)?,
        None => SPEC,
    };
    let peak = crate::simd::fma_peak_gflops(width);
    let all = EpochOrder::num_batches(ds.train.len(), 64);
    let batches = match train_batches {
        None => all,
        Some(b) if b == 0 || b > all => bail!("--train-batches {b}: expected 1..={all} (batches of 64 in one epoch)"),
        Some(b) => b,
    };
    let train = train_pass(kernels, spec, &par, &ds.train, batches, opt.optimizer(), shuffle)?;
    let mut model = zero_model(spec);
    model.init(0);
    // Packed once, as `tailor eval` does for a trained model.
    let packed = crate::train::pack(&model, &kernels);
    let infer = best_of(|| infer_pass(kernels, &par, &packed, &ds.test, 64, usize::MAX));
    let infer1 = best_of(|| infer_pass(kernels, &par, &packed, &ds.test, 1, 2000));
    // Int8: the same random model, quantized with 500 calibration samples.
    let qkern = crate::quantize::best_qkernels();
    let norm = identity_norm(&ds.train);
    let cal = crate::quantize::calibrate(&model, &ds.train, &norm, 500);
    let q8 = crate::quantize::quantize_model(&model, &norm, &ds.train, &cal)?;
    let qmodel = q8.model()?;
    let inputs = crate::quantize::device_inputs(&qmodel, &ds.test)?;
    let int8 = best_of(|| crate::quantize::int8_infer_pass(&qmodel, &qkern, &par, &inputs, 64, usize::MAX));
    let int8_1 = best_of(|| crate::quantize::int8_infer_pass(&qmodel, &qkern, &par, &inputs, 1, 2000));
    let kb = kernel_bench(&kernels);
    let (adam_gbs, copy_gbs) = memory_bench(&kernels, spec.params());
    let gflops = train * train_flop_per_sample(&spec) / 1e9;
    let rep = BenchReport {
        dims: spec.dims().to_vec(),
        threads: width,
        kernels: kernels.name,
        train_samples_per_sec: train,
        infer_samples_per_sec: infer,
        infer_batch1_samples_per_sec: infer1,
        gflops,
        peak_gflops: peak,
        peak_fraction: gflops / peak,
        kernel_gflops: kb,
        int8_infer_samples_per_sec: Some(int8),
        int8_batch1_samples_per_sec: Some(int8_1),
        optimizer: opt.name(),
        shuffle,
        adam_gbytes_per_sec: adam_gbs,
        copy_gbytes_per_sec: copy_gbs,
    };
    if json {
        println!("{}", serde_json::to_string(&rep)?);
    } else {
        println!("tailor bench: model {spec}, {} thread(s), {} kernels", rep.threads, rep.kernels);
        println!(
            "  train     {:>10.0} samples/s  ({}{}, {:.1} GFLOP/s, {:.0}% of {:.0} GFLOP/s FMA peak)",
            train,
            rep.optimizer,
            if shuffle { ", shuffled" } else { "" },
            gflops,
            100.0 * rep.peak_fraction,
            peak
        );
        println!("  infer 64  {:>10.0} samples/s", infer);
        println!("  infer 1   {:>10.0} samples/s", infer1);
        println!("  int8 64   {:>10.0} samples/s  ({} int8 kernels)", int8, qkern.name);
        println!("  int8 1    {:>10.0} samples/s  ({:.1} µs/sample)", int8_1, 1e6 / int8_1);
        println!("  adam step {adam_gbs:>10.1} GB/s on 1 thread (copy: {copy_gbs:.1} GB/s)");
        println!("  kernels (1 thread; share of the single-core FMA peak measured between the kernel's windows):");
        for k in &rep.kernel_gflops {
            println!(
                "    {:<12} m={:<3} n={:<4} k={:<4} {:>7.1} GFLOP/s {:>5.0}% of {:.0}",
                k.product,
                k.m,
                k.n,
                k.k,
                k.gflops,
                100.0 * k.peak_fraction,
                k.peak_gflops
            );
        }
    }
    Ok(rep)
}
