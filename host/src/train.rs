//! The training and test loops, read top to bottom like the PyTorch tutorial.

use std::time::Instant;

use anyhow::{anyhow, Result};
use tailor_core::gemm::Kernels;
use tailor_core::loss;
use tailor_core::optim::{Optimizer, Schedule};
use tailor_core::packed::PackedMlp;
use tailor_core::par::Par;
use tailor_core::spec::Spec;
use tailor_core::Workspace;

use crate::checkpoint::{zero_model, Meta, Model};
use crate::data::{fill_batch_par, EpochOrder, Norm, Split};

/// Rows per pass of [`evaluate`]: big enough to amortize the per-batch
/// overhead, small enough that the activations stay in L2.
pub const EVAL_BATCH: usize = 256;

/// A workspace of the host's models.
pub type Ws = Workspace<Vec<f32>>;

/// A zeroed workspace for `spec` and batches of up to `batch` rows.
pub fn workspace(spec: Spec, batch: usize) -> Ws {
    Workspace::new(spec, batch, vec![0.0; Ws::len(&spec, batch)]).expect("buffer sized from the spec")
}

/// Everything that changes during training, in buffers allocated once.
pub struct Trainer {
    pub kernels: Kernels,
    pub model: Model,
    pub grad: Vec<f32>,
    /// Optimizer state: `meta.optimizer.buffers()` parameter-sized buffers
    /// (momentum, exp_avg, …), one after another.
    pub optim: Vec<f32>,
    pub ws: Ws,
    pub meta: Meta,
    /// Batches of epoch `meta.epoch` already done (not 0 only after a stop
    /// mid-epoch, see [`EpochEnd::Stopped`]).
    pub batch: usize,
    labels: Vec<u8>,
}

/// How [`Trainer::train_epoch`] ended.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum EpochEnd {
    /// Every batch done; the mean training loss of the epoch's batches run
    /// in this process.
    Done(f32),
    /// `stop()` said so after a step; [`Trainer::batch`] batches are done.
    Stopped,
}

/// What the loop reports as it goes.
pub enum Event<'a> {
    /// Every `log_every` batches: mean loss of that batch, samples seen.
    Loss { loss: f32, current: usize, size: usize },
    /// One batch done (for progress bars).
    Batch { done: usize, total: usize },
    #[allow(dead_code)]
    Note(&'a str),
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct EvalResult {
    pub correct: usize,
    pub total: usize,
    pub avg_loss: f64,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<u32>>,
    /// The predicted class of every image, in order (not in the JSON).
    #[serde(skip)]
    pub predictions: Vec<u8>,
    /// Every image's logits, `[total][classes]` row-major (not in the JSON).
    #[serde(skip)]
    pub logits: Vec<f32>,
}

impl EvalResult {
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.total.max(1) as f64
    }
}

impl Trainer {
    /// A fresh model of `spec`, PyTorch-initialized from `meta.seed`.
    pub fn new(kernels: Kernels, spec: Spec, meta: Meta) -> Self {
        let mut model = zero_model(spec);
        model.init(meta.seed);
        Self::from_weights(kernels, model, meta)
    }

    /// Training that starts from `model`'s weights (`train --init`), with a
    /// fresh optimizer.
    pub fn from_weights(kernels: Kernels, model: Model, meta: Meta) -> Self {
        let optim = vec![0.0; meta.optimizer.buffers() * model.spec().params()];
        Self::with(kernels, model, optim, meta)
    }

    fn with(kernels: Kernels, model: Model, optim: Vec<f32>, meta: Meta) -> Self {
        let spec = *model.spec();
        let b = meta.batch_size as usize;
        Trainer {
            kernels,
            grad: vec![0.0; spec.params()],
            optim,
            ws: workspace(spec, b),
            labels: vec![0; b],
            batch: 0,
            model,
            meta,
        }
    }

    /// Continue from a checkpoint's weights, optimizer state and progress.
    pub fn resume(kernels: Kernels, ck: crate::checkpoint::Checkpoint) -> Result<Self> {
        let need = ck.meta.optimizer.buffers() * ck.model.spec().params();
        if ck.optim.len() != need {
            return Err(anyhow!(
                "checkpoint has {} optimizer buffers, its optimizer needs {}",
                ck.meta.optim_buffers,
                ck.meta.optimizer.buffers()
            ));
        }
        let batch = ck.batch as usize;
        let mut t = Self::with(kernels, ck.model, ck.optim, ck.meta);
        t.batch = batch;
        Ok(t)
    }

    pub fn norm(&self) -> &Norm {
        &self.meta.norm
    }

    /// One optimizer step on the samples `idx` of `split` ([`tailor_core::Mlp::train_step`]:
    /// forward, loss, backward and update, fused). Returns the loss.
    pub fn step(&mut self, par: &dyn Par, split: &Split, idx: &[u32], lr: f32) -> Result<f32> {
        let n = idx.len();
        fill_batch_par(par, split, idx, &self.meta.norm, self.ws.input_mut(n), &mut self.labels[..n]);
        self.meta.step += 1;
        let (opt, step) = (self.meta.optimizer, self.meta.step);
        self.model
            .train_step(
                &self.kernels,
                par,
                &mut self.ws,
                &self.labels[..n],
                &mut self.grad,
                &mut self.optim,
                &opt,
                lr,
                step,
            )
            .map_err(|e| anyhow!("label {} of sample {} is not a class < {}", e.target, idx[e.row], e.classes))
    }

    /// The tutorial's `train_loop` for epoch `self.meta.epoch`, from batch
    /// [`Self::batch`]. `stop` is asked after every step (a signal: the
    /// step is finished, the state stays consistent for a checkpoint).
    ///
    /// A non-finite loss ends the epoch with an error at once, and so do
    /// non-finite weights at its end (a NaN can hide from the loss for a
    /// while when it sits in a dead ReLU's weights).
    pub fn train_epoch(
        &mut self,
        par: &dyn Par,
        split: &Split,
        log_every: usize,
        on: &mut dyn FnMut(Event),
        stop: &dyn Fn() -> bool,
    ) -> Result<EpochEnd> {
        let bs = self.meta.batch_size as usize;
        let epoch = self.meta.epoch;
        let order = EpochOrder::new(split.len(), self.meta.shuffle.then_some(self.meta.seed), epoch);
        let lr = self.meta.schedule.lr(self.meta.optimizer.lr(), epoch);
        let total = EpochOrder::num_batches(split.len(), bs);
        if self.batch > total {
            return Err(anyhow!(
                "the checkpoint stopped at batch {} of epoch {}, but this training set has {total} batches; resume with the same data and --train-limit",
                self.batch,
                epoch + 1
            ));
        }
        let (mut seen, mut loss_sum) = (self.batch * bs, 0.0f64);
        for (b, idx) in order.batches(bs).enumerate().skip(self.batch) {
            let loss = self.step(par, split, idx, lr)?;
            if !loss.is_finite() {
                return Err(diverged(&format!("loss became {loss}"), epoch, self.meta.step, lr));
            }
            self.batch = b + 1;
            seen += idx.len();
            loss_sum += loss as f64 * idx.len() as f64;
            if log_every > 0 && b % log_every == 0 {
                on(Event::Loss { loss, current: seen, size: split.len() });
            }
            on(Event::Batch { done: b + 1, total });
            if stop() && b + 1 < total {
                return Ok(EpochEnd::Stopped);
            }
        }
        if let Some(i) = self.model.params().iter().position(|w| !w.is_finite()) {
            let what = format!("weight {i} became {}", self.model.params()[i]);
            return Err(diverged(&what, epoch, self.meta.step, lr));
        }
        self.meta.epoch += 1;
        self.batch = 0;
        Ok(EpochEnd::Done((loss_sum / split.len().max(1) as f64) as f32))
    }
}

fn diverged(what: &str, epoch: u32, step: u64, lr: f32) -> anyhow::Error {
    anyhow!(
        "training diverged: {what} at epoch {} step {step} (learning rate {lr:e}); try a lower --lr. The checkpoint keeps the last good epoch",
        epoch + 1
    )
}

/// Scheduled learning rate for display.
pub fn lr_at(opt: &Optimizer, sched: &Schedule, epoch: u32) -> f32 {
    sched.lr(opt.lr(), epoch)
}

/// The tutorial's `test_loop`: accuracy, mean cross-entropy per sample, and
/// the confusion matrix. Uses a copy of the model packed for inference (one
/// pass to build) and a workspace of [`EVAL_BATCH`] rows.
pub fn evaluate(model: &Model, kernels: &Kernels, par: &dyn Par, split: &Split, norm: &Norm) -> EvalResult {
    let spec = *model.spec();
    let classes = spec.outputs();
    let mut ws = workspace(spec, EVAL_BATCH);
    let mut r = EvalResult { total: split.len(), confusion: vec![vec![0; classes]; classes], ..Default::default() };
    let mut labels = [0u8; EVAL_BATCH];
    let mut dlogits = vec![0.0f32; EVAL_BATCH * classes];
    let idx: Vec<u32> = (0..split.len() as u32).collect();
    let mut loss_sum = 0.0f64;
    let packed = pack(model, kernels);
    for chunk in idx.chunks(EVAL_BATCH) {
        let n = chunk.len();
        fill_batch_par(par, split, chunk, norm, ws.input_mut(n), &mut labels[..n]);
        packed.forward(kernels, par, &mut ws, n);
        let logits = ws.logits(n);
        r.logits.extend_from_slice(logits);
        if let Ok(l) = loss::cross_entropy(logits, classes, &labels[..n], &mut dlogits) {
            loss_sum += l as f64 * n as f64;
        }
        for (z, &y) in logits.chunks_exact(classes).zip(&labels[..n]) {
            let p = loss::argmax(z);
            r.predictions.push(p as u8);
            if let Some(row) = r.confusion.get_mut(y as usize) {
                row[p] += 1;
            }
            r.correct += (p == y as usize) as usize;
        }
    }
    r.avg_loss = loss_sum / split.len().max(1) as f64;
    r
}

/// A model packed for inference with one kernel set.
pub type Packed = PackedMlp<AlignedBuf>;

/// `model` packed for inference with `kernels`, in a cache-line-aligned
/// buffer.
pub fn pack(model: &Model, kernels: &Kernels) -> Packed {
    let buf = AlignedBuf::zeroed(Packed::len(model.spec()));
    PackedMlp::pack(kernels, model, buf).expect("buffer sized from the spec")
}

/// `f32`s in 64-byte-aligned storage: packed panel rows are read as whole
/// vectors, and one that straddles two cache lines costs two loads.
pub struct AlignedBuf {
    lines: Vec<Line>,
    len: usize,
}

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; 16]);

impl AlignedBuf {
    pub fn zeroed(len: usize) -> Self {
        AlignedBuf { lines: vec![Line([0.0; 16]); len.div_ceil(16)], len }
    }
}

impl AsRef<[f32]> for AlignedBuf {
    fn as_ref(&self) -> &[f32] {
        let all: &[[f32; 16]] = lines_as_arrays(&self.lines);
        &all.as_flattened()[..self.len]
    }
}

impl AsMut<[f32]> for AlignedBuf {
    fn as_mut(&mut self) -> &mut [f32] {
        let len = self.len;
        let all: &mut [[f32; 16]] = lines_as_arrays_mut(&mut self.lines);
        &mut all.as_flattened_mut()[..len]
    }
}

fn lines_as_arrays(l: &[Line]) -> &[[f32; 16]] {
    // SAFETY: `Line` is `repr(C)` around `[f32; 16]` (64 bytes, so its
    // alignment adds no padding): the same bytes, more strictly aligned.
    unsafe { std::slice::from_raw_parts(l.as_ptr() as *const [f32; 16], l.len()) }
}

fn lines_as_arrays_mut(l: &mut [Line]) -> &mut [[f32; 16]] {
    // SAFETY: as above, with the unique borrow.
    unsafe { std::slice::from_raw_parts_mut(l.as_mut_ptr() as *mut [f32; 16], l.len()) }
}

/// Wall-clock timer that reports seconds as f64.
pub struct Timer(Instant);

impl Timer {
    pub fn start() -> Self {
        Timer(Instant::now())
    }
    pub fn secs(&self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}
