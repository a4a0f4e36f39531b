//! `tailor train` and `tailor eval`: the user-facing loops and their output.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::checkpoint::{self, Meta};
use crate::data::{self, Norm};
use crate::par::Threads;
use crate::recipe::{self, OptName, Recipe, SchedName};
use crate::train::{evaluate, EpochEnd, EvalResult, Event, Timer, Trainer};

pub struct TrainArgs {
    pub recipe: Recipe,
    /// Hidden layer widths (`--hidden 512,512`; empty: no hidden layer).
    pub hidden: Option<Vec<usize>>,
    /// Classes whose samples are left out of the training set (the test
    /// set keeps them): for models a device later extends with a new head.
    pub withhold: Vec<u8>,
    pub epochs: Option<u32>,
    pub batch_size: Option<usize>,
    pub lr: Option<f32>,
    pub optimizer: Option<OptName>,
    pub momentum: Option<f32>,
    pub weight_decay: Option<f32>,
    pub schedule: Option<SchedName>,
    pub seed: Option<u64>,
    pub shuffle: Option<bool>,
    pub normalize: Option<bool>,
    pub data: data::DataArgs,
    pub out: Option<PathBuf>,
    pub threads: usize,
    pub resume: Option<PathBuf>,
    /// Start from these weights (a checkpoint or a safetensors state dict)
    /// with a fresh optimizer.
    pub init: Option<PathBuf>,
    pub json: bool,
    pub log_every: usize,
    pub train_limit: Option<usize>,
    /// `--plot`: loss and accuracy curves, `.svg` or `.png`.
    pub plot: Option<PathBuf>,
    /// `--metrics`: one CSV row per epoch.
    pub metrics: Option<PathBuf>,
}

#[derive(Clone, Debug, Serialize)]
pub struct EpochReport {
    pub epoch: u32,
    pub lr: f32,
    pub train_loss: f32,
    pub test_accuracy: f64,
    pub test_avg_loss: f64,
    pub train_seconds: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct TrainReport {
    pub test_accuracy: f64,
    pub test_avg_loss: f64,
    pub epochs: u32,
    pub train_seconds: f64,
    pub samples_per_sec: f64,
    pub best_test_accuracy: f64,
    pub threads: usize,
    pub kernels: &'static str,
    pub checkpoint: PathBuf,
    /// The model's widths, inputs first.
    pub dims: Vec<u32>,
    pub params: usize,
    pub history: Vec<EpochReport>,
    pub plot: Option<PathBuf>,
    pub metrics: Option<PathBuf>,
}

/// The metadata of a run starting at epoch 0 with settings `s`.
fn fresh_meta(s: &recipe::Settings, norm: Norm, class_names: Vec<String>) -> Meta {
    Meta {
        epochs: s.epochs,
        batch_size: s.batch_size as u32,
        seed: s.seed,
        shuffle: s.shuffle,
        schedule: s.schedule,
        ..Meta::new(s.optimizer, norm, class_names)
    }
}

/// Largest `--batch-size`.
pub const MAX_BATCH_SIZE: usize = 8192;

/// Parses `--hidden`: comma-separated widths, or nothing for a model with
/// no hidden layer.
pub fn parse_hidden(s: &str) -> Result<Vec<usize>> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(Vec::new());
    }
    let widths = s
        .split(',')
        .map(|w| match w.trim().parse::<usize>() {
            Ok(n) if n > 0 && n <= 1 << 20 => Ok(n),
            _ => bail!("--hidden {s:?}: `{w}` is not a layer width in 1..=1048576"),
        })
        .collect::<Result<Vec<_>>>()?;
    if widths.len() >= tailor_core::spec::MAX_LAYERS {
        bail!("--hidden {s:?}: at most {} hidden layers", tailor_core::spec::MAX_LAYERS - 1);
    }
    Ok(widths)
}

/// The model for `features` inputs, `hidden` layers and `classes` outputs.
pub fn model_spec(features: usize, hidden: &[usize], classes: usize) -> Result<tailor_core::spec::Spec> {
    let dims: Vec<usize> = std::iter::once(features).chain(hidden.iter().copied()).chain([classes]).collect();
    tailor_core::spec::Spec::try_mlp(&dims).map_err(|e| anyhow::anyhow!("model {dims:?}: {e}"))
}

/// Human output: stdout normally, stderr when stdout carries JSON.
macro_rules! say {
    ($json:expr, $pb:expr, $($t:tt)*) => {{
        let line = format!($($t)*);
        if let Some(pb) = $pb.as_ref() {
            pb.suspend(|| if $json { eprintln!("{line}") } else { println!("{line}") });
        } else if $json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }};
}

/// `--epochs`: 1 to [`checkpoint::MAX_EPOCHS`].
fn check_epochs(e: u32) -> Result<()> {
    if e == 0 || e > checkpoint::MAX_EPOCHS {
        bail!("--epochs {e}: expected 1..={}", checkpoint::MAX_EPOCHS);
    }
    Ok(())
}

/// The flag that sets a PyTorch optimizer setting, for messages.
fn optim_flag(setting: &str) -> String {
    match setting {
        "lr" => "--lr".into(),
        "momentum" => "--momentum".into(),
        "weight_decay" => "--weight-decay".into(),
        other => format!("optimizer setting {other}"),
    }
}

/// [`tailor_core::optim::Optimizer::validate`], in terms of the flags.
pub fn validate_optimizer(o: &tailor_core::optim::Optimizer) -> Result<()> {
    use tailor_core::optim::OptimError;
    o.validate().map_err(|e| match e {
        OptimError::Invalid { setting, value, expected } => {
            anyhow::anyhow!("{} {value}: expected {expected}", optim_flag(setting))
        }
        OptimError::Nesterov { .. } => anyhow::anyhow!("--optimizer nesterov: {e}; set --momentum above 0"),
    })
}

fn settings_from(a: &TrainArgs) -> Result<recipe::Settings> {
    let mut s = a.recipe.settings();
    if let Some(e) = a.epochs {
        check_epochs(e)?;
        s.epochs = e;
        if let tailor_core::optim::Schedule::Cosine { t_max, .. } = &mut s.schedule {
            *t_max = e;
        }
    }
    if let Some(b) = a.batch_size {
        if b == 0 || b > MAX_BATCH_SIZE {
            bail!("--batch-size {b}: expected 1..={MAX_BATCH_SIZE}");
        }
        s.batch_size = b;
    }
    if a.optimizer.is_some() || a.lr.is_some() || a.momentum.is_some() || a.weight_decay.is_some() {
        let name = a.optimizer.unwrap_or(match s.optimizer {
            tailor_core::optim::Optimizer::Sgd(o) if o.momentum != 0.0 => OptName::Momentum,
            tailor_core::optim::Optimizer::Sgd(_) => OptName::Sgd,
            tailor_core::optim::Optimizer::Adam(o) if o.decoupled => OptName::Adamw,
            tailor_core::optim::Optimizer::Adam(_) => OptName::Adam,
            tailor_core::optim::Optimizer::RmsProp(_) => OptName::Rmsprop,
        });
        if a.momentum.is_some() && matches!(name, OptName::Adam | OptName::Adamw) {
            bail!("--momentum applies to sgd, momentum, nesterov and rmsprop, not {name:?} (its betas are fixed)");
        }
        s.optimizer = recipe::optimizer(name, a.lr, a.momentum, a.weight_decay);
    }
    if let Some(sc) = a.schedule {
        s.schedule = recipe::schedule(sc, s.epochs);
    }
    if let Some(seed) = a.seed {
        s.seed = seed;
    }
    if let Some(sh) = a.shuffle {
        s.shuffle = sh;
    }
    if let Some(n) = a.normalize {
        s.normalize = n;
    }
    validate_optimizer(&s.optimizer)?;
    // PyTorch allows 0; a run that cannot move is surely a mistake here.
    if s.optimizer.lr() <= 0.0 {
        bail!("--lr {}: expected a finite number > 0", s.optimizer.lr());
    }
    Ok(s)
}

pub(crate) fn progress(total: u64, unit: &str, json: bool) -> Option<ProgressBar> {
    if json || !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template(&format!("{{bar:40}} {{pos}}/{{len}} {unit}  {{per_sec}}  eta {{eta}}")).ok()?,
    );
    Some(pb)
}

/// Training stopped by a signal after saving; `main` exits with the
/// shell's status for it (130, 143).
#[derive(Debug, thiserror::Error)]
#[error("interrupted by signal {0}")]
pub struct Interrupted(pub i32);

/// Turns graceful signal handling on for its lifetime.
struct Graceful;

impl Graceful {
    fn on() -> Self {
        crate::signals::set_graceful(true);
        Graceful
    }
}

impl Drop for Graceful {
    fn drop(&mut self) {
        crate::signals::set_graceful(false);
    }
}

pub fn train(a: TrainArgs) -> Result<TrainReport> {
    if let Some(p) = &a.plot {
        crate::plot::Format::of(p, "--plot")?;
    }
    let threads = Threads::new(a.threads)?;
    let kernels = crate::simd::detect();
    let ds = data::load(&a.data)?;
    if a.init.is_some() && a.resume.is_some() {
        bail!("--init and --resume: give one (--resume continues a run, --init starts one from given weights)");
    }
    let init = a.init.as_deref().map(|p| crate::interop::load(p, Some(&ds))).transpose()?;
    let default_norm = ds.default_norm();
    let (features, classes, class_names, source) = (ds.features, ds.classes, ds.class_names, ds.source);
    let mut train_split = ds.train;
    if !a.withhold.is_empty() {
        train_split = without_classes(&train_split, &a.withhold);
    }
    if let Some(n) = a.train_limit {
        if n == 0 || n > train_split.len() {
            bail!("--train-limit {n}: expected 1..={} (the training samples in {source})", train_split.len());
        }
        train_split.truncate(n);
    }
    let test = ds.test;
    if train_split.is_empty() || test.is_empty() {
        bail!(
            "{source}: {} training and {} test samples; both splits need at least one",
            train_split.len(),
            test.len()
        );
    }

    let mut t = if let Some(path) = &a.resume {
        let ck = checkpoint::load(path)?;
        let spec = *ck.model.spec();
        if let Some(h) = &a.hidden {
            if spec.hidden().iter().map(|&w| w as usize).ne(h.iter().copied()) {
                bail!("--hidden {h:?} contradicts the checkpoint's model {spec}; leave it out to resume");
            }
        }
        if spec.inputs() != features || spec.outputs() < classes {
            bail!(
                "{}: the model {spec} does not take this data ({features} features, {classes} classes)",
                path.display()
            );
        }
        let mut t = Trainer::resume(kernels, ck)?;
        if let Some(e) = a.epochs {
            check_epochs(e)?;
            t.meta.epochs = e;
        }
        t
    } else if let Some(ck) = init {
        let path = a.init.as_deref().expect("init was loaded from it").display();
        let spec = *ck.model.spec();
        if let Some(h) = &a.hidden {
            if spec.hidden().iter().map(|&w| w as usize).ne(h.iter().copied()) {
                bail!("--hidden {h:?} contradicts {path}'s model {spec}; leave it out with --init");
            }
        }
        if spec.inputs() != features || spec.outputs() < classes {
            bail!("{path}: the model {spec} does not take this data ({features} features, {classes} classes)");
        }
        // The weights were trained on inputs normalized one way; keep it.
        let meta = fresh_meta(&settings_from(&a)?, ck.meta.norm, ck.meta.class_names);
        Trainer::from_weights(kernels, ck.model, meta)
    } else {
        let s = settings_from(&a)?;
        let hidden = a.hidden.clone().unwrap_or_else(|| vec![512, 512]);
        let spec = model_spec(features, &hidden, classes)?;
        let u8_data = matches!(train_split.features, data::Features::U8(_));
        let norm = if s.normalize { default_norm } else { Norm::identity(features, u8_data) };
        Trainer::new(kernels, spec, fresh_meta(&s, norm, class_names))
    };
    let out = a.out.clone().or_else(|| a.resume.clone()).unwrap_or_else(|| PathBuf::from("runs/model.ckpt"));
    // The checkpoint may replace the one resumed from (the default), never
    // a data file; and a bad --out fails now, not after the first epoch.
    let inputs = ds.files;
    crate::output::probe(&out, &inputs)?;
    let json = a.json;
    let m = t.meta.clone();
    let none: Option<ProgressBar> = None;
    let spec = *t.model.spec();
    say!(json, none, "tailor train: model {spec} ({} parameters), {:?}, batch {}, {} epochs, shuffle {}, seed {}, {} kernels, {} thread(s), data {}",
        spec.params(), m.optimizer, m.batch_size, m.epochs, m.shuffle, m.seed, t.kernels.name, tailor_core::par::Par::width(&threads), source);
    if m.epoch >= m.epochs {
        bail!("checkpoint already has {} of {} epochs; pass --epochs N with N > {}", m.epoch, m.epochs, m.epoch);
    }

    // From here a signal stops training after a step with a checkpoint;
    // before, it ends tailor at once (nothing to save).
    let _graceful = Graceful::on();
    if let Some(sig) = crate::signals::interrupted() {
        return Err(Interrupted(sig).into());
    }
    let mut history = Vec::new();
    let (mut train_seconds, mut samples) = (0.0f64, 0usize);
    let mut last = EvalResult::default();
    let norm = t.norm().clone();
    while t.meta.epoch < t.meta.epochs {
        let epoch = t.meta.epoch;
        let lr = crate::train::lr_at(&t.meta.optimizer, &t.meta.schedule, epoch);
        say!(json, none, "Epoch {}\n-------------------------------", epoch + 1);
        let batches = data::EpochOrder::num_batches(train_split.len(), t.meta.batch_size as usize);
        let pb = progress(batches as u64, "batches", json);
        let timer = Timer::start();
        let stop = || crate::signals::interrupted().is_some();
        let on = &mut |ev: Event| match ev {
            Event::Loss { loss, current, size } => say!(json, pb, "loss: {loss:>7.6}  [{current:>5}/{size:>5}]"),
            Event::Batch { done, .. } => {
                if let Some(pb) = &pb {
                    pb.set_position(done as u64)
                }
            }
            Event::Note(s) => say!(json, pb, "{s}"),
        };
        let end = t.train_epoch(&threads, &train_split, a.log_every, on, &stop)?;
        let secs = timer.secs();
        if let Some(pb) = pb {
            pb.finish_and_clear();
        }
        let train_loss = match end {
            EpochEnd::Done(l) => l,
            EpochEnd::Stopped => {
                let sig = crate::signals::interrupted().unwrap_or(0);
                let saved =
                    checkpoint::Saved { model: &t.model, meta: &t.meta, optim: &t.optim, batch: t.batch as u32 };
                checkpoint::save(&out, &saved, &inputs)?;
                eprintln!(
                    "interrupted by signal {sig} at epoch {} batch {}; saved {} (continue with --resume {})",
                    epoch + 1,
                    t.batch,
                    out.display(),
                    out.display()
                );
                return Err(Interrupted(sig).into());
            }
        };
        train_seconds += secs;
        samples += train_split.len();
        last = evaluate(&t.model, &t.kernels, &threads, &test, &norm);
        t.meta.test_accuracy = Some(last.accuracy() as f32);
        say!(
            json,
            none,
            "Test Error: \n Accuracy: {:>0.1}%, Avg loss: {:>8.6} \n",
            100.0 * last.accuracy(),
            last.avg_loss
        );
        say!(
            json,
            none,
            "epoch {}: lr {lr:.3e}, train loss {train_loss:.4}, {secs:.1} s, {:.0} samples/s\n",
            epoch + 1,
            train_split.len() as f64 / secs
        );
        history.push(EpochReport {
            epoch: epoch + 1,
            lr,
            train_loss,
            test_accuracy: last.accuracy(),
            test_avg_loss: last.avg_loss,
            train_seconds: secs,
        });
        let saved = checkpoint::Saved { model: &t.model, meta: &t.meta, optim: &t.optim, batch: 0 };
        checkpoint::save(&out, &saved, &inputs)?;
        // Rewritten after every epoch, like the checkpoint (and after it,
        // so a failure here never loses the weights).
        if let Some(p) = &a.metrics {
            // Never over the data, the checkpoint resumed from, or the one just saved.
            crate::metrics::write(p, &history, &[&inputs[..], std::slice::from_ref(&out)].concat())?;
        }
        if let Some(p) = &a.plot {
            let title = format!("tailor train: {spec} on {source}");
            crate::plot::save(&crate::plot::train::TrainCurves { history: &history, title }, p, "--plot")?;
        }
        if let Some(sig) = crate::signals::interrupted() {
            eprintln!("interrupted by signal {sig} after epoch {}; saved {}", epoch + 1, out.display());
            return Err(Interrupted(sig).into());
        }
    }
    let report = TrainReport {
        test_accuracy: last.accuracy(),
        test_avg_loss: last.avg_loss,
        epochs: t.meta.epoch,
        train_seconds,
        samples_per_sec: samples as f64 / train_seconds.max(1e-9),
        best_test_accuracy: history.iter().map(|h| h.test_accuracy).fold(0.0, f64::max),
        threads: tailor_core::par::Par::width(&threads),
        kernels: t.kernels.name,
        checkpoint: out.clone(),
        dims: spec.dims().to_vec(),
        params: spec.params(),
        history,
        plot: a.plot.clone(),
        metrics: a.metrics.clone(),
    };
    say!(
        json,
        none,
        "Done! {} epochs, train time {:.1} s, {:.0} samples/s; final test accuracy {:.2}%; saved {}",
        report.epochs,
        report.train_seconds,
        report.samples_per_sec,
        100.0 * report.test_accuracy,
        out.display()
    );
    for p in report.metrics.iter().chain(&report.plot) {
        say!(json, none, "wrote {}", p.display());
    }
    if json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(report)
}

#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    pub test_accuracy: f64,
    pub test_avg_loss: f64,
    pub correct: usize,
    pub total: usize,
    pub per_class_accuracy: Vec<(String, f64)>,
    pub confusion: Vec<Vec<u32>>,
    pub epochs: u32,
    pub train_seconds: Option<f64>,
    pub samples_per_sec: Option<f64>,
}

/// Evaluates the model in `model_path` (a checkpoint or a safetensors state
/// dict, [`crate::interop::load`]) on `ds`'s test split.
pub fn eval_split(model_path: &Path, ds: &data::Dataset, threads: usize) -> Result<(EvalResult, Meta)> {
    let test = &ds.test;
    let ck = crate::interop::load(model_path, Some(ds))?;
    if ds.features != ck.model.spec().inputs() {
        bail!(
            "the model {} takes {} inputs, {} has {} features",
            ck.model.spec(),
            ck.model.spec().inputs(),
            ds.source,
            ds.features
        );
    }
    let threads = Threads::new(threads)?;
    let kernels = crate::simd::detect();
    let spec = *ck.model.spec();
    if let Some(row) = test.labels.iter().position(|&l| l as usize >= spec.outputs()) {
        bail!("test label {} (sample {row}) is not one of the model's {} classes", test.labels[row], spec.outputs());
    }
    Ok((evaluate(&ck.model, &kernels, &threads, test, &ck.meta.norm), ck.meta))
}

/// `tailor eval`; `plot`: the confusion matrix as a heatmap (`.svg` or
/// `.png`); with `logits`, also writes every test sample's logits there as
/// an NPY `float32 [N, classes]` array.
pub fn eval(
    model_path: &Path,
    data: &data::DataArgs,
    threads: usize,
    json: bool,
    plot: Option<&Path>,
    logits: Option<&Path>,
) -> Result<EvalReport> {
    if let Some(p) = plot {
        crate::plot::Format::of(p, "--plot")?;
    }
    let ds = data::load(data)?;
    if ds.test.is_empty() {
        bail!("{}: no test samples to evaluate", ds.source);
    }
    let (r, meta) =
        eval_split(model_path, &ds, threads).with_context(|| format!("evaluating {}", model_path.display()))?;
    if let Some(path) = logits {
        let classes = r.confusion.len();
        let bytes: Vec<u8> = r.logits.iter().flat_map(|v| v.to_le_bytes()).collect();
        let npy = data::npy::npy_bytes("<f4", &[r.total as u64, classes as u64], &bytes);
        let mut inputs = ds.files.clone();
        inputs.push(model_path.to_path_buf());
        crate::output::write(path, &npy, &inputs).with_context(|| format!("--logits {}", path.display()))?;
    }
    let names = &meta.class_names;
    let per_class: Vec<(String, f64)> = r
        .confusion
        .iter()
        .enumerate()
        .map(|(c, row)| {
            let n: u32 = row.iter().sum();
            (names[c].clone(), row[c] as f64 / n.max(1) as f64)
        })
        .collect();
    let rep = EvalReport {
        test_accuracy: r.accuracy(),
        test_avg_loss: r.avg_loss,
        correct: r.correct,
        total: r.total,
        per_class_accuracy: per_class.clone(),
        confusion: r.confusion.clone(),
        epochs: meta.epoch,
        train_seconds: None,
        samples_per_sec: None,
    };
    let none: Option<ProgressBar> = None;
    say!(json, none, "Test Error: \n Accuracy: {:>0.1}%, Avg loss: {:>8.6} \n", 100.0 * r.accuracy(), r.avg_loss);
    say!(json, none, "{}/{} correct ({} epochs trained)\n\nper-class accuracy:", r.correct, r.total, meta.epoch);
    for (name, acc) in &per_class {
        say!(json, none, "  {name:<12} {:>6.2}%", 100.0 * acc);
    }
    let mut hdr = format!("\nconfusion matrix (rows: true class, columns: predicted)\n{:<12}", "");
    for c in 0..r.confusion.len() {
        hdr += &format!("{c:>5}");
    }
    say!(json, none, "{hdr}");
    for (c, row) in r.confusion.iter().enumerate() {
        let mut line = format!("{:<12}", format!("{c} {}", names[c].split('/').next().unwrap_or("")));
        for v in row {
            line += &format!("{v:>5}");
        }
        say!(json, none, "{line}");
    }
    if let Some(p) = plot {
        let title = format!(
            "{} on {}: {:.2} % ({}/{})",
            model_path.display(),
            ds.source,
            100.0 * r.accuracy(),
            r.correct,
            r.total
        );
        let fig = crate::plot::confusion::Confusion { counts: &r.confusion, class_names: names, title };
        crate::plot::save(&fig, p, "--plot")?;
        say!(json, none, "wrote {}", p.display());
    }
    if json {
        println!("{}", serde_json::to_string(&rep)?);
    }
    Ok(rep)
}

/// `split` without the samples whose label is in `classes`.
pub fn without_classes(split: &data::Split, classes: &[u8]) -> data::Split {
    let keep: Vec<usize> = (0..split.len()).filter(|&i| !classes.contains(&split.labels[i])).collect();
    let w = split.width;
    let labels = keep.iter().map(|&i| split.labels[i]).collect();
    let features = match &split.features {
        data::Features::U8(v) => {
            data::Features::U8(keep.iter().flat_map(|&i| &v[i * w..(i + 1) * w]).copied().collect())
        }
        data::Features::F32(v) => {
            data::Features::F32(keep.iter().flat_map(|&i| &v[i * w..(i + 1) * w]).copied().collect())
        }
    };
    data::Split::new(features, labels, w)
}
