//! `tailor device-train --mode full`: an f32 model learns on the emulated
//! Cortex-M4 from the samples the host streams, and the host checks that
//! the device computed what it computes, bit for bit.
//!
//! Both sides run [`tailor_core::session::TrainSession`]: the same code, one
//! thread, the same order of operations; the device with the Cortex-M4
//! kernels (`VMLA` assembly), the host with their twin in Rust
//! ([`Kernels::M4_TWIN`]). What could still differ is the floating-point
//! environment:
//! - no fused multiply-add: `VMLA` rounds the product, then the sum, and
//!   Rust never contracts `a * b + c`;
//! - subnormals: the device's FPU keeps them (FPSCR.FZ = 0), so the host's
//!   replica runs on a thread of its own that does not flush them (the
//!   training pool does, for speed; see `par::flush_denormals`);
//! - `exp`/`log` in the loss: both use the `libm` crate's code.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use tailor_core::gemm::Kernels;
use tailor_core::optim::{Optimizer, Sgd};
use tailor_core::protocol::{Message, MAX_DIMS};
use tailor_core::quant::{InputKind, QModel};
use tailor_core::session::{InputMap, SessionBuffers, SessionSetup, TrainSession};
use tailor_core::spec::Spec;

use crate::checkpoint::{self, Meta, Model};
use crate::data::{self, EpochOrder, Features, Norm, Split};
use crate::device::{build_firmware_bin, Qemu, Reply, Transport};

/// The firmware image that trains.
pub const TRAIN_FIRMWARE: &str = "tailor-firmware-train";

/// `tailor device-train` settings.
#[derive(Clone, Debug)]
pub struct DeviceTrainArgs {
    /// `Some(.q8)`: train a new classifier head on this int8 model's last
    /// hidden layer, the model flashed and frozen (`--mode head`); `None`: a
    /// fresh model of `hidden` layers (`--mode full`).
    pub backbone: Option<PathBuf>,
    pub hidden: Vec<usize>,
    pub epochs: u32,
    pub lr: f32,
    /// Decay the learning rate linearly to 0 over the run, batch by batch
    /// (one epoch on a microcontroller is often all there is: annealing
    /// within it is worth about a point of accuracy).
    pub decay: bool,
    /// SGD momentum (0: plain SGD).
    pub momentum: f32,
    pub batch: usize,
    pub seed: u64,
    /// Train on the first N training samples of each epoch's order (all by default).
    pub limit: Option<usize>,
    /// Evaluate on the first N test samples (all by default).
    pub test_limit: Option<usize>,
    /// `--mode full`: the trained model as a checkpoint. `--mode head`: the
    /// backbone dequantized to f32 with the trained head as its last layer,
    /// a checkpoint too ([`head_checkpoint`]).
    pub out: Option<PathBuf>,
    pub timeout_secs: f64,
    pub data: data::DataArgs,
    /// Show a progress bar on stderr (only when it is a terminal).
    pub progress: bool,
}

impl DeviceTrainArgs {
    pub fn new() -> Self {
        DeviceTrainArgs {
            backbone: None,
            hidden: vec![32],
            epochs: 1,
            lr: 0.01,
            decay: true,
            momentum: 0.9,
            batch: 8,
            seed: 0,
            limit: None,
            test_limit: None,
            out: None,
            timeout_secs: 3600.0,
            data: data::DataArgs::default(),
            progress: false,
        }
    }
}

impl Default for DeviceTrainArgs {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct DeviceTrainReport {
    pub mode: &'static str,
    pub dims: Vec<u32>,
    /// Test accuracy of the device's model, computed on the device.
    pub device_accuracy: f64,
    /// Test accuracy of the host's replica, computed on the host.
    pub host_accuracy: f64,
    /// Head mode's yardstick: the test accuracy of the same head trained on
    /// the host (same initialization, order and learning rates) from the
    /// f32 features of the same backbone, its int8 weights dequantized and
    /// its activations never rounded ([`f32_features_accuracy`]). `None` in
    /// full mode.
    pub f32_features_accuracy: Option<f64>,
    /// The device's trained weights equal the host's, bit for bit (and so
    /// did every batch's loss).
    pub bit_identical: bool,
    pub images_trained: usize,
    pub images_tested: usize,
    /// Bytes of the device's training buffers (model, optimizer state,
    /// scratch, one batch), as it reports them; the firmware's whole `.bss`
    /// is in the README (`size -A`).
    pub ram_bytes: u32,
    /// Instructions per multiply-accumulate of training (forward, weight
    /// gradients, input gradients but the first layer's; in head mode also
    /// the int8 backbone's), with `-icount shift=0`.
    pub instructions_per_mac: f64,
    /// The device's f32 kernels alone, per product, on this model's shapes
    /// (counted by the device at setup, read with `SelfTest`).
    pub kernel_instructions_per_mac: KernelCounts,
    pub train_loss_last: f32,
    /// Mean confidence (0..1) of the device's right test predictions: the
    /// softmax probability of the predicted class, in whole percent on the
    /// device.
    pub mean_confidence_correct: f64,
    /// The same over its wrong predictions.
    pub mean_confidence_wrong: f64,
    /// The device's confidence sums equal the host replica's.
    pub confidence_agrees: bool,
    pub wall_secs: f64,
    pub stream_secs: f64,
    pub firmware: PathBuf,
    pub checkpoint: Option<PathBuf>,
}

/// Instructions per MAC of each f32 training product on the device (`None`
/// for a product the model does not run: the input gradient of a one-layer
/// head).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct KernelCounts {
    pub forward: Option<f64>,
    pub input_grad: Option<f64>,
    pub weight_grad: Option<f64>,
}

impl KernelCounts {
    /// From the training firmware's `SelfTest` detail: `... forward=N
    /// input_grad=N weight_grad=N` in instructions per 1,000 MACs, `-` for
    /// a product that does not run.
    pub fn parse(detail: &str) -> Result<Self> {
        let get = |key: &str| -> Result<Option<f64>> {
            let v = detail
                .split_whitespace()
                .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
                .with_context(|| format!("the device's self-test reports no {key} count: {detail:?}"))?;
            match v {
                "-" => Ok(None),
                n => {
                    Ok(Some(n.parse::<u64>().with_context(|| format!("{key}={n}: expected a count"))? as f64 / 1000.0))
                }
            }
        };
        Ok(KernelCounts { forward: get("forward")?, input_grad: get("input_grad")?, weight_grad: get("weight_grad")? })
    }
}

/// Multiply-accumulates of one training sample.
pub fn train_macs(spec: &Spec) -> u64 {
    let first = spec.layer(0);
    (3 * spec.macs() - first.inputs * first.outputs) as u64
}

/// What the host's replica is asked to do, in order.
enum Job {
    Batch { lr: f32, labels: Vec<u8>, pixels: Vec<u8> },
    Done,
}

/// The replica's result: every batch's loss, its parameters, and its test
/// accuracy and confidence sums (right, wrong) on the same samples.
struct Replica {
    losses: Vec<f32>,
    params: Vec<f32>,
    correct: u32,
    confidence: (u32, u32),
}

/// Runs the same session as the device on a thread of its own (whose
/// floating-point environment is the default: subnormals kept).
fn replica(setup: SessionSetup, batch: usize, jobs: mpsc::Receiver<Job>, test: (Vec<u8>, Vec<u8>)) -> Result<Replica> {
    let spec = setup.spec;
    let p = spec.params();
    let (mut params, mut state) = (vec![0.0; p], vec![0.0; setup.optimizer.buffers() * p]);
    let (mut scratch, mut ws) = (vec![0.0; spec.train_scratch(1)], vec![0.0; spec.activations(batch)]);
    let bufs = SessionBuffers { params: &mut params, state: &mut state, scratch: &mut scratch, workspace: &mut ws };
    let mut s = TrainSession::new(&setup, bufs).map_err(|e| anyhow::anyhow!("host replica: {e}"))?;
    let mut losses = Vec::new();
    while let Ok(Job::Batch { lr, labels, pixels }) = jobs.recv() {
        losses.push(s.train_batch(&Kernels::M4_TWIN, lr, &labels, &pixels).map_err(|e| anyhow::anyhow!("{e}"))?);
    }
    let (labels, pixels) = test;
    let n_in = spec.inputs();
    let (mut correct, mut confidence) = (0, (0, 0));
    for (l, px) in labels.chunks(batch).zip(pixels.chunks(batch * n_in)) {
        let e = s.evaluate(&Kernels::M4_TWIN, l, px).map_err(|e| anyhow::anyhow!("{e}"))?;
        correct += e.correct;
        confidence = (confidence.0 + e.confidence_right, confidence.1 + e.confidence_wrong);
    }
    Ok(Replica { losses, params: s.params().to_vec(), correct, confidence })
}

fn bytes_of(split: &Split) -> Result<&[u8]> {
    match &split.features {
        Features::U8(b) => Ok(b),
        Features::F32(_) => bail!("device training streams byte samples (images); this data is f32 features"),
    }
}

/// The int8 backbone of head mode, as the host runs it to give its replica
/// the same features as the device computes.
struct Backbone {
    q8: crate::q8::Q8,
}

impl Backbone {
    /// Features of the samples `pixels` (back to back).
    fn features(&self, pixels: &[u8]) -> Result<Vec<u8>> {
        let m = self.q8.model()?;
        let (n_in, depth) = (m.spec().inputs(), m.spec().depth());
        let h = m.spec().layer(depth - 1).inputs;
        let mut scratch = vec![0i16; m.scratch_len()];
        let mut out = vec![0u8; pixels.len() / n_in * h];
        let k = crate::quantize::best_qkernels();
        for (px, f) in pixels.chunks_exact(n_in).zip(out.chunks_exact_mut(h)) {
            m.features(&k, px, &mut scratch, f);
        }
        Ok(out)
    }
}

/// `tailor device-train`: `--mode full` without a backbone, `--mode head`
/// with one.
pub fn run(args: &DeviceTrainArgs) -> Result<DeviceTrainReport> {
    let t0 = Instant::now();
    let ds = data::load(&args.data)?;
    let (train, test) = (&ds.train, &ds.test);
    let (train_px, test_px) = (bytes_of(train)?, bytes_of(test)?);
    let norm = ds.default_norm();
    let (mean, std) = norm.per_tensor_values().context("device training needs one mean and std for all inputs")?;
    // The model trained, and how the replica's input bytes come to be.
    let (spec, backbone, input, sample_bytes) = match &args.backbone {
        None => {
            let spec = crate::commands::model_spec(ds.features, &args.hidden, ds.classes)?;
            (spec, None, InputMap::Pixels { mean, std }, ds.features)
        }
        Some(path) => {
            let q8 = crate::q8::load(path)?;
            let m = q8.model()?;
            let (n_in, depth) = (m.spec().inputs(), m.spec().depth());
            if depth < 2 {
                bail!("{}: a head needs a model with a hidden layer (this one is {})", path.display(), m.spec());
            }
            if n_in != ds.features {
                bail!("{}: the model takes {n_in} inputs, {} has {}", path.display(), ds.source, ds.features);
            }
            let last = m.layer(depth - 1);
            let spec = crate::commands::model_spec(last.inputs, &[], m.spec().outputs().max(ds.classes))?;
            let input = InputMap::Affine { scale: last.params.in_scale, zero_point: last.params.in_zp };
            (spec, Some(Backbone { q8: q8.clone() }), input, n_in)
        }
    };
    let head = backbone.is_some();
    let n_in = sample_bytes;
    // Head mode also runs the int8 backbone (all but its last layer) per sample.
    let macs_per_sample = train_macs(&spec)
        + match &backbone {
            Some(b) => {
                let m = b.q8.model()?;
                let last = m.spec().layer(m.spec().depth() - 1);
                (m.spec().macs() - last.inputs * last.outputs) as u64
            }
            None => 0,
        };
    let in_range = |flag: &str, v: Option<usize>, max: usize| match v {
        Some(n) if n == 0 || n > max => bail!("{flag} {n}: expected 1..={max} (the samples in {})", ds.source),
        _ => Ok(()),
    };
    in_range("--limit", args.limit, train.len())?;
    in_range("--test-limit", args.test_limit, test.len())?;
    if args.epochs == 0 || args.epochs > 1000 {
        bail!("--epochs {}: expected 1..=1000", args.epochs);
    }
    if !(args.lr.is_finite() && args.lr > 0.0) {
        bail!("--lr {}: expected a positive number", args.lr);
    }
    if !(args.momentum.is_finite() && (0.0..1.0).contains(&args.momentum)) {
        bail!("--momentum {}: expected 0 <= momentum < 1", args.momentum);
    }
    // Never over an input: the data, or the backbone of a head.
    let mut inputs = ds.files.clone();
    inputs.extend(args.backbone.iter().cloned());
    if let Some(out) = &args.out {
        crate::output::probe(out, &inputs)?;
    }
    let optimizer = Optimizer::Sgd(Sgd { lr: args.lr, momentum: args.momentum, ..Sgd::default() });
    let setup = SessionSetup { spec, optimizer, seed: args.seed, input };

    let (elf, _) = build_firmware_bin(TRAIN_FIRMWARE)?;
    let flashed = backbone.as_ref().map(|b| b.q8.bytes());
    let mut q = Qemu::start(&elf, flashed, Transport::Semihosting, Duration::from_secs_f64(args.timeout_secs))?;
    let mut dims = [0u32; MAX_DIMS];
    dims[..spec.dims().len()].copy_from_slice(spec.dims());
    let n_dims = spec.dims().len() as u8;
    q.send(&Message::TrainSetup { head, n_dims, dims, optimizer, seed: args.seed, mean, std })?;
    let (max_batch, ram_bytes) = match q.recv()? {
        Reply::TrainReady { max_batch, ram_bytes, .. } => (max_batch as usize, ram_bytes),
        Reply::Error { detail, .. } => bail!("the device cannot train {spec}: {detail}"),
        other => bail!("unexpected reply to TrainSetup: {other:?}"),
    };
    if args.batch == 0 || args.batch > max_batch {
        bail!("--batch-size {}: the device takes 1..={max_batch} samples of {spec} per batch", args.batch);
    }
    let n_test = args.test_limit.unwrap_or(test.len()).min(test.len());
    let replica_inputs = |px: &[u8]| -> Result<Vec<u8>> {
        match &backbone {
            Some(b) => b.features(px),
            None => Ok(px.to_vec()),
        }
    };
    let test_set = (test.labels[..n_test].to_vec(), replica_inputs(&test_px[..n_test * n_in])?);
    let (jobs_tx, jobs_rx) = mpsc::channel();
    let batch = args.batch;
    let host = std::thread::Builder::new()
        .name("replica".into())
        .spawn(move || replica(setup, batch, jobs_rx, test_set))
        .context("starting the host replica")?;

    let t_stream = Instant::now();
    let (mut trained, mut instructions, mut seq) = (0usize, 0u64, 0u32);
    let mut losses = Vec::new();
    let n = args.limit.unwrap_or(train.len()).min(train.len());
    let plan = batches(args, train.len(), n);
    let bar = crate::commands::progress((plan.len() + n_test.div_ceil(max_batch)) as u64, "batches", !args.progress);
    for (lr, idx) in plan.iter().map(|(lr, idx)| (*lr, idx.as_slice())) {
        let labels: Vec<u8> = idx.iter().map(|&i| train.labels[i as usize]).collect();
        let mut pixels = Vec::with_capacity(idx.len() * n_in);
        for &i in idx {
            pixels.extend_from_slice(&train_px[i as usize * n_in..][..n_in]);
        }
        q.send(&Message::TrainBatch { seq, lr, labels: &labels, pixels: &pixels })?;
        match q.recv()? {
            Reply::Trained { seq: s, loss, instructions: i } if s == seq => {
                losses.push(loss);
                instructions += i;
            }
            Reply::Error { detail, .. } => bail!("the device refused batch {seq}: {detail}"),
            other => bail!("unexpected reply to batch {seq}: {other:?}"),
        }
        jobs_tx.send(Job::Batch { lr, labels, pixels: replica_inputs(&pixels)? }).ok();
        trained += idx.len();
        seq += 1;
        if let Some(b) = &bar {
            b.inc(1);
        }
    }
    jobs_tx.send(Job::Done).ok();
    let (mut correct, mut confidence) = (0u32, (0u32, 0u32));
    for (i, (l, px)) in
        test.labels[..n_test].chunks(max_batch).zip(test_px[..n_test * n_in].chunks(max_batch * n_in)).enumerate()
    {
        q.send(&Message::EvalBatch { seq: i as u32, labels: l, pixels: px })?;
        match q.recv()? {
            Reply::Evaluated { correct: c, confidence: (r, w), .. } => {
                correct += c;
                confidence = (confidence.0 + r, confidence.1 + w);
            }
            Reply::Error { detail, .. } => bail!("the device refused test batch {i}: {detail}"),
            other => bail!("unexpected reply to a test batch: {other:?}"),
        }
        if let Some(b) = &bar {
            b.inc(1);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let p = spec.params();
    let mut params = Vec::with_capacity(p);
    while params.len() < p {
        q.send(&Message::ReadParams { offset: params.len() as u32, count: (p - params.len()) as u32 })?;
        match q.recv()? {
            Reply::Params { data, .. } if !data.is_empty() => params.extend_from_slice(&data),
            other => bail!("unexpected reply to ReadParams: {other:?}"),
        }
    }
    let stream_secs = t_stream.elapsed().as_secs_f64();
    let (_, failed, detail) = q.self_test()?;
    if failed > 0 {
        bail!("the device's kernels fail their self-test: {detail}");
    }
    let kernel_instructions_per_mac = KernelCounts::parse(&detail)?;
    q.finish()?;
    let rep = host.join().map_err(|_| anyhow::anyhow!("the host replica panicked"))??;
    let f32_features_accuracy = match &backbone {
        Some(b) => Some(f32_features_accuracy(
            &b.q8.model()?,
            &setup,
            &plan,
            (&train.labels, train_px),
            (&test.labels[..n_test], &test_px[..n_test * n_in]),
        )?),
        None => None,
    };
    let same = |a: &[f32], b: &[f32]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
    let bit_identical = same(&params, &rep.params) && same(&losses, &rep.losses);

    let checkpoint = match &args.out {
        Some(path) => {
            let (model, norm) = match &backbone {
                Some(b) => head_checkpoint(&b.q8.model()?, &params)?,
                None => (
                    tailor_core::Mlp::new(spec, params.clone()).map_err(|e| anyhow::anyhow!("{e}"))?,
                    Norm::per_tensor(n_in, data::U8_SCALE, mean, std),
                ),
            };
            let meta = Meta {
                epoch: args.epochs,
                epochs: args.epochs,
                batch_size: args.batch as u32,
                seed: args.seed,
                shuffle: true,
                ..Meta::new(optimizer, norm, ds.class_names.clone())
            };
            let saved = checkpoint::Saved { model: &model, meta: &meta, optim: &[], batch: 0 };
            checkpoint::save(path, &saved, &inputs)?;
            Some(path.clone())
        }
        None => None,
    };
    Ok(DeviceTrainReport {
        mode: if head { "head" } else { "full" },
        dims: spec.dims().to_vec(),
        device_accuracy: correct as f64 / n_test.max(1) as f64,
        host_accuracy: rep.correct as f64 / n_test.max(1) as f64,
        f32_features_accuracy,
        bit_identical,
        images_trained: trained,
        images_tested: n_test,
        ram_bytes,
        instructions_per_mac: instructions as f64 / (trained.max(1) as f64 * macs_per_sample as f64),
        kernel_instructions_per_mac,
        train_loss_last: losses.last().copied().unwrap_or(f32::NAN),
        mean_confidence_correct: confidence.0 as f64 / 100.0 / (correct.max(1) as f64),
        mean_confidence_wrong: confidence.1 as f64 / 100.0 / ((n_test as u32 - correct).max(1) as f64),
        confidence_agrees: confidence == rep.confidence,
        wall_secs: t0.elapsed().as_secs_f64(),
        stream_secs,
        firmware: elf,
        checkpoint,
    })
}

/// The run's batches in order: each one's learning rate and sample
/// indices (the first `n` of each epoch's shuffled order).
fn batches(args: &DeviceTrainArgs, samples: usize, n: usize) -> Vec<(f32, Vec<u32>)> {
    let total = args.epochs as usize * n.div_ceil(args.batch);
    let mut plan = Vec::with_capacity(total);
    for epoch in 0..args.epochs {
        let order = EpochOrder::new(samples, Some(args.seed), epoch);
        for idx in order.indices()[..n].chunks(args.batch) {
            let seq = plan.len();
            let lr = if args.decay { args.lr * (1.0 - seq as f32 / total as f32) } else { args.lr };
            plan.push((lr, idx.to_vec()));
        }
    }
    plan
}

/// Trains head mode's head on the host from f32 features: the backbone's
/// hidden layers dequantized ([`head_checkpoint`]) and run in f32 without
/// rounding their activations, then the head initialized, ordered and
/// stepped as the device's. Returns its test accuracy: what the device's
/// int8 features cost against the f32 model they come from.
fn f32_features_accuracy(
    backbone: &QModel<'_>,
    setup: &SessionSetup,
    plan: &[(f32, Vec<u32>)],
    (train_labels, train_px): (&[u8], &[u8]),
    (test_labels, test_px): (&[u8], &[u8]),
) -> Result<f64> {
    let spec = setup.spec;
    let (h, n_in) = (spec.inputs(), backbone.spec().inputs());
    let (full, norm) = head_checkpoint(backbone, &vec![0.0; spec.params()])?;
    let depth = full.spec().depth();
    let k = crate::simd::detect();
    const CHUNK: usize = 256;
    let mut ws = tailor_core::Workspace::new(*full.spec(), CHUNK, vec![0.0; full.spec().activations(CHUNK)])
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut features = |px: &[u8]| -> Vec<f32> {
        let mut out = Vec::with_capacity(px.len() / n_in * h);
        for chunk in px.chunks(CHUNK * n_in) {
            let m = chunk.len() / n_in;
            for (i, (x, &b)) in ws.input_mut(m).iter_mut().zip(chunk).enumerate() {
                *x = norm.value(i % n_in, b as f32);
            }
            full.forward(&k, &tailor_core::par::Serial, &mut ws, m);
            out.extend_from_slice(ws.layer_io(depth - 1, m).0);
        }
        out
    };
    let (train_f, test_f) = (features(train_px), features(test_px));

    let batch = plan.iter().map(|(_, idx)| idx.len()).max().unwrap_or(1);
    let mut head = tailor_core::Mlp::new(spec, vec![0.0; spec.params()]).map_err(|e| anyhow::anyhow!("{e}"))?;
    head.init(setup.seed);
    let mut ws = tailor_core::Workspace::new(spec, batch, vec![0.0; spec.activations(batch)])
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (mut scratch, mut state) =
        (vec![0.0; spec.train_scratch(1)], vec![0.0; setup.optimizer.buffers() * spec.params()]);
    let mut labels = Vec::with_capacity(batch);
    for (step, (lr, idx)) in plan.iter().enumerate() {
        labels.clear();
        labels.extend(idx.iter().map(|&i| train_labels[i as usize]));
        for (row, &i) in ws.input_mut(idx.len()).chunks_exact_mut(h).zip(idx) {
            row.copy_from_slice(&train_f[i as usize * h..][..h]);
        }
        let (par, opt) = (&tailor_core::par::Serial, &setup.optimizer);
        head.train_step(&k, par, &mut ws, &labels, &mut scratch, &mut state, opt, *lr, step as u64 + 1)
            .map_err(|e| anyhow::anyhow!("the f32-features head, step {}: {e:?}", step + 1))?;
    }
    let mut correct = 0usize;
    for (l, f) in test_labels.chunks(batch).zip(test_f.chunks(batch * h)) {
        ws.input_mut(l.len()).copy_from_slice(f);
        head.forward(&k, &tailor_core::par::Serial, &mut ws, l.len());
        let classes = spec.outputs();
        correct += ws
            .logits(l.len())
            .chunks_exact(classes)
            .zip(l)
            .filter(|(z, &y)| tailor_core::loss::argmax(z) == y as usize)
            .count();
    }
    Ok(correct as f64 / test_labels.len().max(1) as f64)
}

/// Head mode's `--out`: an f32 model that `eval`, `quantize` and `train
/// --init` take, made of the int8 backbone's layers dequantized (weights
/// `q · w_scale`, biases in real units, the input normalization folded in
/// as the `.q8` holds it, so the model reads raw bytes · `in_scale`) and
/// the head trained on the device as its last layer. It computes what the
/// device computes up to the int8 rounding of the hidden activations, so
/// its accuracy is the device's within a few tenths of a point (measured
/// in the README).
pub fn head_checkpoint(backbone: &QModel<'_>, head: &[f32]) -> Result<(Model, Norm)> {
    let bspec = backbone.spec();
    let depth = bspec.depth();
    if depth < 2 {
        bail!("a head needs a backbone with a hidden layer (this one is {bspec})");
    }
    if backbone.input().kind() != InputKind::RawU8 {
        bail!("--out: the backbone takes f32 features; saving a head is supported for byte (image) inputs");
    }
    let h = bspec.layer(depth - 1).inputs;
    if head.is_empty() || !head.len().is_multiple_of(h + 1) {
        bail!("the device sent {} head parameters, not a whole number of rows of {h} weights and a bias", head.len());
    }
    let classes = head.len() / (h + 1);
    let mut dims: Vec<usize> = bspec.dims()[..depth].iter().map(|&d| d as usize).collect();
    dims.push(classes);
    let spec = crate::commands::model_spec(dims[0], &dims[1..depth], classes)?;
    let mut params = Vec::with_capacity(spec.params());
    for i in 0..depth - 1 {
        let l = backbone.layer(i);
        if spec.layer(i).activation != l.activation {
            bail!("backbone layer {} has activation {:?}; a checkpoint's hidden layers have ReLU", i + 1, l.activation);
        }
        for o in 0..l.outputs {
            params.extend((0..l.inputs).map(|k| l.weight_at(o, k) as f32 * l.w_scale[o]));
        }
        for o in 0..l.outputs {
            // The stored bias folds in the input zero point: add it back.
            let sum: i64 = (0..l.inputs).map(|k| l.weight_at(o, k) as i64).sum();
            let acc = l.bias[o] as i64 + l.params.in_zp as i64 * sum;
            params.push((acc as f64 * l.params.in_scale as f64 * l.w_scale[o] as f64) as f32);
        }
    }
    params.extend_from_slice(head);
    let model = tailor_core::Mlp::new(spec, params).map_err(|e| anyhow::anyhow!("{e}"))?;
    let norm = Norm::per_tensor(spec.inputs(), backbone.layer(0).params.in_scale, 0.0, 1.0);
    Ok((model, norm))
}

#[cfg(test)]
mod tests {
    use super::KernelCounts;

    #[test]
    fn kernel_counts_parse() {
        let k = KernelCounts::parse(
            "cortex-m4 kernels: golden ok; per 1000 MACs: forward=1325 input_grad=- weight_grad=1262 ",
        )
        .unwrap();
        assert_eq!(k, KernelCounts { forward: Some(1.325), input_grad: None, weight_grad: Some(1.262) });
        assert!(KernelCounts::parse("forward=1 weight_grad=2").is_err());
        assert!(KernelCounts::parse("forward=x input_grad=- weight_grad=2").is_err());
    }
}
