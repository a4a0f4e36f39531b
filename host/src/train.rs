//! The training and test loops, read top to bottom like the PyTorch tutorial.

use std::time::Instant;

use anyhow::{anyhow, Result};
use tailor_core::dense::Update;
use tailor_core::gemm::Kernels;
use tailor_core::gemm::Rule;
use tailor_core::loss;
use tailor_core::optim::{Optimizer, Schedule};
use tailor_core::packed::SeedPackedMlp;
use tailor_core::par::Par;
use tailor_core::{Flat, SeedMlp, Workspace};

use crate::boxed;
use crate::checkpoint::Meta;
use crate::data::{fill_batch_par, EpochOrder, Norm, Split};

/// Largest batch the workspace holds (compile-time); smaller batches use a
/// prefix of it. 256 rows of activations and gradients ≈ 2.9 MB.
pub const MAX_BATCH: usize = 256;
pub type Ws = Workspace<MAX_BATCH, 784, 512, 512, 10>;
pub const CLASSES: usize = 10;

/// Everything that changes during training, in caller-owned boxes.
pub struct Trainer {
    pub kernels: Kernels,
    pub model: Box<SeedMlp>,
    pub grad: Box<SeedMlp>,
    /// Optimizer state buffers (momentum, exp_avg, …), parameter-shaped.
    pub optim_bufs: Vec<Box<SeedMlp>>,
    pub ws: Box<Ws>,
    pub meta: Meta,
    labels: [u8; MAX_BATCH],
    /// Built once from `meta`: a `Norm` holds vectors, and a step must not allocate.
    norm: Norm,
}

/// Optimizer state pointers shared with the pool's tasks.
struct SyncPtrs([*mut f32; 3], usize);
// SAFETY: tasks touch disjoint ranges (see `Trainer::step`).
unsafe impl Sync for SyncPtrs {}

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
    pub confusion: [[u32; CLASSES]; CLASSES],
    /// The predicted class of every image, in order (not in the JSON).
    #[serde(skip)]
    pub predictions: Vec<u8>,
}

impl EvalResult {
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.total.max(1) as f64
    }
}

fn norm_of(meta: &Meta) -> Norm {
    Norm::per_tensor(784, crate::data::U8_SCALE, meta.pixel_mean, meta.pixel_std)
}

impl Trainer {
    /// A fresh model, PyTorch-initialized from `meta.seed`.
    pub fn new(kernels: Kernels, meta: Meta) -> Self {
        let mut model = boxed::zeroed::<SeedMlp>();
        model.init(meta.seed);
        let optim_bufs = (0..meta.optimizer.buffers()).map(|_| boxed::zeroed::<SeedMlp>()).collect();
        let norm = norm_of(&meta);
        Trainer {
            kernels,
            model,
            grad: boxed::zeroed(),
            optim_bufs,
            ws: boxed::zeroed(),
            meta,
            labels: [0; MAX_BATCH],
            norm,
        }
    }

    /// Continue from a checkpoint's weights, optimizer state and progress.
    pub fn resume(kernels: Kernels, ck: crate::checkpoint::Checkpoint) -> Result<Self> {
        let need = ck.meta.optimizer.buffers();
        if ck.optim.len() != need {
            return Err(anyhow!("checkpoint has {} optimizer buffers, its optimizer needs {need}", ck.optim.len()));
        }
        Ok(Trainer {
            kernels,
            model: ck.model,
            grad: boxed::zeroed(),
            optim_bufs: ck.optim,
            ws: boxed::zeroed(),
            norm: norm_of(&ck.meta),
            meta: ck.meta,
            labels: [0; MAX_BATCH],
        })
    }

    pub fn pixels(&self) -> Norm {
        self.norm.clone()
    }

    /// One optimizer step on the samples `idx` of `split`. Returns the loss.
    ///
    /// The same math as `loss_and_grad` followed by one optimizer update
    /// (bit for bit), but fused (`Dense::backward_update`): each block of
    /// weight-gradient rows is applied to its weights as soon as it is
    /// computed, in a small reused buffer that stays in cache, instead of one
    /// more pass over all 2.7 MB of weights and gradients afterwards. So
    /// `self.grad` holds only scratch (and the bias gradients) afterwards.
    /// Plain SGD and Adam go further: the weight-gradient kernel applies them
    /// to each tile of gradients still in registers (`Update::Fused`).
    pub fn step(&mut self, par: &dyn Par, split: &Split, idx: &[u32], lr: f32) -> Result<f32> {
        let n = idx.len();
        fill_batch_par(par, split, idx, &self.norm, self.ws.x[..n].as_flattened_mut(), &mut self.labels[..n]);
        let (k, ws, labels) = (&self.kernels, &mut *self.ws, &self.labels[..n]);
        self.model.forward(k, par, ws, n);
        let loss = loss::cross_entropy(&ws.logits[..n], labels, &mut ws.dlogits[..n])
            .map_err(|e| anyhow!("label {} of sample {} is not a class < {}", e.target, idx[e.row], e.classes))?;
        self.meta.step += 1;
        let mut bufs: [*mut f32; 3] = [std::ptr::null_mut(); 3];
        for (p, b) in bufs.iter_mut().zip(self.optim_bufs.iter_mut()) {
            *p = b.flat_mut().as_mut_ptr();
        }
        let bufs = SyncPtrs(bufs, self.optim_bufs.len());
        let (opt, step) = (self.meta.optimizer, self.meta.step);
        // Flat offsets of the layers (Mlp is repr(C): l1, l2, l3).
        let l1 = 0;
        let l2 = l1 + std::mem::size_of_val(&self.model.l1) / 4;
        let l3 = l2 + std::mem::size_of_val(&self.model.l2) / 4;
        // The update is elementwise, so each block of a layer's parameters
        // is updated (with the same range of gradients and state) as soon as
        // its gradient is computed, on whichever thread computed it.
        let adam = match opt {
            Optimizer::Adam(a) => Some(a.coefs(lr, step)),
            _ => None,
        };
        let update = |base: usize| {
            let bufs = &bufs;
            move |off: usize, params: &mut [f32], grads: &[f32]| {
                let n = params.len();
                // SAFETY: `backward_update` hands out disjoint parameter
                // ranges [off, off+n) of the layer, so the state ranges
                // [base+off, base+off+n) of different calls are disjoint; the
                // buffers are parameter-sized and outlive the call.
                let mut slots: [&mut [f32]; 3] = [&mut [], &mut [], &mut []];
                for (s, &p) in slots.iter_mut().zip(&bufs.0[..bufs.1]) {
                    *s = unsafe { std::slice::from_raw_parts_mut(p.add(base + off), n) };
                }
                opt.step(lr, step, params, grads, &mut slots[..bufs.1]);
            }
        };
        // Plain SGD and Adam run inside the weight-gradient kernel.
        let rule = match (opt, &adam) {
            (Optimizer::Sgd(o), _) if o.momentum == 0.0 => Some(Rule::Sgd { lr, weight_decay: o.weight_decay }),
            (_, Some(c)) => Some(Rule::Adam(c)),
            _ => None,
        };
        let (u1, u2, u3) = (update(l1), update(l2), update(l3));
        let [mut s1, mut s2, mut s3]: [[&mut [f32]; 2]; 3] = Default::default();
        // (Only for the fused Adam: the unfused rules use `bufs`.)
        if let (Some(Rule::Adam(_)), [m, v]) = (rule, &mut self.optim_bufs[..]) {
            (s1, s2, s3) = (
                [m.l1.flat_mut(), v.l1.flat_mut()],
                [m.l2.flat_mut(), v.l2.flat_mut()],
                [m.l3.flat_mut(), v.l3.flat_mut()],
            );
        }
        let (model, grad) = (&mut *self.model, &mut *self.grad);
        let pick = |u, st| rule.map_or(Update::Each(u), |r| Update::Fused(r, st));
        let (dh2, dh1) = (Some(&mut ws.dh2[..n]), Some(&mut ws.dh1[..n]));
        model.l3.backward_update(k, par, &ws.h2[..n], &ws.dlogits[..n], &mut grad.l3, dh2, true, pick(&u3, s3), false);
        model.l2.backward_update(k, par, &ws.h1[..n], &ws.dh2[..n], &mut grad.l2, dh1, true, pick(&u2, s2), false);
        // The input needs no gradient: skip layer 1's dx.
        model.l1.backward_update(k, par, &ws.x[..n], &ws.dh1[..n], &mut grad.l1, None, false, pick(&u1, s1), false);
        Ok(loss)
    }

    /// The tutorial's `train_loop` for epoch `self.meta.epoch`.
    pub fn train_epoch(
        &mut self,
        par: &dyn Par,
        split: &Split,
        log_every: usize,
        on: &mut dyn FnMut(Event),
    ) -> Result<f32> {
        let bs = self.meta.batch_size as usize;
        let epoch = self.meta.epoch;
        let order = EpochOrder::new(split.len(), self.meta.shuffle.then_some(self.meta.seed), epoch);
        let lr = self.meta.schedule.lr(self.meta.optimizer.lr(), epoch);
        let total = EpochOrder::num_batches(split.len(), bs);
        let (mut seen, mut loss_sum) = (0usize, 0.0f64);
        for (b, idx) in order.batches(bs).enumerate() {
            let loss = self.step(par, split, idx, lr)?;
            if !loss.is_finite() {
                return Err(anyhow!("loss became {loss} at epoch {} batch {b}: lower the learning rate", epoch + 1));
            }
            seen += idx.len();
            loss_sum += loss as f64 * idx.len() as f64;
            if log_every > 0 && b % log_every == 0 {
                on(Event::Loss { loss, current: seen, size: split.len() });
            }
            on(Event::Batch { done: b + 1, total });
        }
        self.meta.epoch += 1;
        Ok((loss_sum / seen.max(1) as f64) as f32)
    }
}

/// Scheduled learning rate for display.
pub fn lr_at(opt: &Optimizer, sched: &Schedule, epoch: u32) -> f32 {
    sched.lr(opt.lr(), epoch)
}

/// The tutorial's `test_loop`: accuracy, mean cross-entropy per sample, and
/// the confusion matrix. Uses the workspace's forward buffers only, and a
/// copy of the model packed for inference (2.7 MB, one pass to build).
pub fn evaluate(
    model: &SeedMlp,
    kernels: &Kernels,
    par: &dyn Par,
    ws: &mut Ws,
    split: &Split,
    pixels: &Norm,
) -> EvalResult {
    let mut r = EvalResult { total: split.len(), ..Default::default() };
    let mut labels = [0u8; MAX_BATCH];
    let idx: Vec<u32> = (0..split.len() as u32).collect();
    let mut loss_sum = 0.0f64;
    let packed = pack(model, kernels);
    for chunk in idx.chunks(MAX_BATCH) {
        let n = chunk.len();
        fill_batch_par(par, split, chunk, pixels, ws.x[..n].as_flattened_mut(), &mut labels[..n]);
        packed.forward(kernels, par, ws, n);
        if let Ok(l) = loss::cross_entropy(&ws.logits[..n], &labels[..n], &mut ws.dlogits[..n]) {
            loss_sum += l as f64 * n as f64;
        }
        for (z, &y) in ws.logits[..n].iter().zip(&labels[..n]) {
            let p = loss::argmax(z);
            r.predictions.push(p as u8);
            r.confusion[y as usize % CLASSES][p] += 1;
            r.correct += (p == y as usize) as usize;
        }
    }
    r.avg_loss = loss_sum / split.len().max(1) as f64;
    r
}

/// `model` packed for inference with `kernels`.
pub fn pack(model: &SeedMlp, kernels: &Kernels) -> Box<SeedPackedMlp> {
    let mut p = boxed::zeroed::<SeedPackedMlp>();
    p.pack(kernels, model);
    p
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
