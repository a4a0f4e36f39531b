//! f32 checkpoints: the model's state dict, plus what `--resume` needs.
//!
//! Layout: a [`format::Header`] (magic `TLRF`, version 2, the layer table,
//! CRC of the payload), then a postcard payload made of
//! 1. the state dict: tensors `linear_relu_stack.{0,2,4,…}.{weight,bias}`;
//! 2. [`Meta`]: how the model was trained and how far, the input
//!    normalization and the class names;
//! 3. `meta.optim_buffers` more tensor sequences with the same names: the
//!    optimizer's state (momentum, `exp_avg`, `exp_avg_sq`, …).
//!
//! Version-1 checkpoints (the 784-512-512-10 model, a fixed header and the
//! pixel mean/std in their metadata) still load.

use std::path::Path;

use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};
use tailor_core::format::{self, Header, Tensor};
use tailor_core::optim::{Optimizer, Schedule};
use tailor_core::spec::Spec;
use tailor_core::Mlp;

use crate::data::{Norm, CLASS_NAMES};

pub const MAGIC: [u8; 4] = *b"TLRF";

/// The f32 model the host trains: any spec, parameters in a `Vec`.
pub type Model = Mlp<Vec<f32>>;

/// A fresh, zeroed model of `spec`.
pub fn zero_model(spec: Spec) -> Model {
    Mlp::new(spec, vec![0.0; spec.params()]).expect("buffer sized from the spec")
}

/// Training settings and progress stored with the weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// Epochs completed.
    pub epoch: u32,
    /// Optimizer steps taken.
    pub step: u64,
    pub epochs: u32,
    pub batch_size: u32,
    pub seed: u64,
    pub shuffle: bool,
    pub optimizer: Optimizer,
    pub schedule: Schedule,
    /// How raw features become the model's inputs.
    pub norm: Norm,
    /// One name per output.
    pub class_names: Vec<String>,
    /// Test accuracy after the last completed epoch (0..1), if measured.
    pub test_accuracy: Option<f32>,
    pub optim_buffers: u32,
}

/// Version 1's metadata (784 pixels, one mean and std for all).
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct MetaV1 {
    epoch: u32,
    step: u64,
    epochs: u32,
    batch_size: u32,
    seed: u64,
    shuffle: bool,
    optimizer: Optimizer,
    schedule: Schedule,
    pixel_mean: f32,
    pixel_std: f32,
    test_accuracy: Option<f32>,
    optim_buffers: u32,
}

impl Meta {
    /// A fresh run: batch 64, no shuffle, one epoch, constant learning rate,
    /// the given input normalization and classes. Callers override fields
    /// as needed.
    pub fn new(optimizer: Optimizer, norm: Norm, class_names: Vec<String>) -> Self {
        Meta {
            epoch: 0,
            step: 0,
            epochs: 1,
            batch_size: 64,
            seed: 0,
            shuffle: false,
            optimizer,
            schedule: Schedule::Constant,
            norm,
            class_names,
            test_accuracy: None,
            optim_buffers: 0,
        }
    }

    /// Fashion-MNIST with `ToTensor` alone and its class names (for tests).
    pub fn fashion(optimizer: Optimizer) -> Self {
        let names = CLASS_NAMES.iter().map(|s| s.to_string()).collect();
        Meta::new(optimizer, Norm::identity(crate::data::FASHION_MNIST_PIXELS, true), names)
    }
}

fn push_tensors(out: &mut Vec<u8>, spec: &Spec, params: &[f32]) -> Result<()> {
    let m = Mlp::new(*spec, params).map_err(|e| anyhow!("{e}"))?;
    let refs: Vec<_> = m.tensors().collect();
    let ts: Vec<Tensor> = refs.iter().map(|t| Tensor { name: t.name, shape: t.shape(), data: t.data }).collect();
    postcard::to_io(&ts[..], &mut *out)?;
    Ok(())
}

/// Encodes model, meta and optimizer state (`meta.optimizer.buffers()`
/// parameter-sized buffers, one after another) into one file image. The
/// payload is written in place after room for the header, so the file is
/// built in one buffer (peak memory matters: see the README).
///
/// `batch` is the number of batches of epoch `meta.epoch` already done (a
/// run stopped by a signal mid-epoch); when not 0 it follows the optimizer
/// state, so checkpoints saved at epoch ends are unchanged.
pub fn encode(model: &Model, meta: &Meta, optim: &[f32], batch: u32) -> Result<Vec<u8>> {
    let spec = *model.spec();
    let p = spec.params();
    if !optim.len().is_multiple_of(p.max(1)) {
        bail!("optimizer state of {} floats is not a whole number of {p}-float buffers", optim.len());
    }
    let mut meta = meta.clone();
    meta.optim_buffers = (optim.len() / p.max(1)) as u32;
    if meta.norm.mean.len() != spec.inputs() || meta.norm.std.len() != spec.inputs() {
        bail!("input normalization has {} features, the model {}", meta.norm.mean.len(), spec.inputs());
    }
    let hl = Header::len_for(spec.depth());
    let mut file = Vec::with_capacity(hl + (4 * p + 1024) * (1 + meta.optim_buffers as usize));
    file.resize(hl, 0);
    push_tensors(&mut file, &spec, model.params())?;
    postcard::to_io(&meta, &mut file)?;
    for b in optim.chunks(p) {
        push_tensors(&mut file, &spec, b)?;
    }
    if batch != 0 {
        postcard::to_io(&batch, &mut file)?;
    }
    let header = Header::new(MAGIC, spec, &file[hl..]);
    header.encode(&mut file);
    Ok(file)
}

/// Writes `bytes` to `path` atomically and safely ([`crate::output::write`]
/// with no inputs to protect).
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::output::write(path, bytes, &[])
}

/// Saves a checkpoint to `path`, never over one of `inputs`, and never a
/// model with a non-finite weight (the file there stays the last good one).
pub fn save(path: &Path, ck: &Saved<'_>, inputs: &[std::path::PathBuf]) -> Result<()> {
    crate::numerics::check_finite(ck.model.params(), &format!("not saving {}", path.display()))?;
    crate::output::write(path, &encode(ck.model, ck.meta, ck.optim, ck.batch)?, inputs)
}

/// What [`save`] writes (see [`encode`]).
pub struct Saved<'a> {
    pub model: &'a Model,
    pub meta: &'a Meta,
    pub optim: &'a [f32],
    pub batch: u32,
}

/// A loaded checkpoint.
pub struct Checkpoint {
    pub model: Model,
    pub meta: Meta,
    /// `meta.optim_buffers` parameter-sized buffers, one after another.
    pub optim: Vec<f32>,
    /// Batches of epoch `meta.epoch` already done (see [`encode`]).
    pub batch: u32,
}

/// Largest `--epochs` (and a checkpoint's epoch count).
pub const MAX_EPOCHS: u32 = 100_000;

/// Decodes a checkpoint image; `what` names the file in errors.
pub fn decode(bytes: &[u8], what: &str) -> Result<Checkpoint> {
    let (h, payload) = Header::parse(bytes, MAGIC).map_err(|e| {
        if matches!(e, format::FormatError::BadMagic { found, .. } if &found == b"TLQ8") {
            anyhow!("{what}: this is an int8 model (.q8), expected an f32 checkpoint from `tailor train`")
        } else {
            anyhow!("{what}: {e}")
        }
    })?;
    let spec = h.spec;
    // Every parameter takes 4 bytes of the payload: a header announcing a
    // larger model is corrupt, and is refused before the model is allocated
    // (a 700-byte file once asked for 28 GB).
    let need = spec.params().saturating_mul(4);
    if payload.len() < need {
        bail!(
            "{what}: the header's model {spec} has {} parameters ({need} bytes), but the payload has only {} bytes",
            spec.params(),
            payload.len()
        );
    }
    let mut model = zero_model(spec);
    let rest = model.read_tensors(payload).map_err(|e| anyhow!("{what}: state dict: {e}"))?;
    let (meta, mut rest) = if h.version == 1 {
        let (m, rest): (MetaV1, _) =
            postcard::take_from_bytes(rest).map_err(|e| anyhow!("{what}: training metadata: {e}"))?;
        let norm = Norm::per_tensor(spec.inputs(), 1.0 / 255.0, m.pixel_mean, m.pixel_std);
        let names = (0..spec.outputs()).map(|c| CLASS_NAMES.get(c).map_or(c.to_string(), |s| s.to_string()));
        let meta = Meta {
            epoch: m.epoch,
            step: m.step,
            epochs: m.epochs,
            batch_size: m.batch_size,
            seed: m.seed,
            shuffle: m.shuffle,
            optimizer: m.optimizer,
            schedule: m.schedule,
            norm,
            class_names: names.collect(),
            test_accuracy: m.test_accuracy,
            optim_buffers: m.optim_buffers,
        };
        (meta, rest)
    } else {
        postcard::take_from_bytes::<Meta>(rest).map_err(|e| anyhow!("{what}: training metadata: {e}"))?
    };
    if meta.optim_buffers > 3 {
        bail!("{what}: training metadata says {} optimizer buffers, at most 3 exist", meta.optim_buffers);
    }
    if meta.norm.mean.len() != spec.inputs() || meta.norm.std.len() != spec.inputs() {
        bail!("{what}: input normalization has {} features, the model takes {}", meta.norm.mean.len(), spec.inputs());
    }
    if meta.class_names.len() != spec.outputs() {
        bail!("{what}: {} class names for a model of {} outputs", meta.class_names.len(), spec.outputs());
    }
    let max_batch = crate::commands::MAX_BATCH_SIZE;
    if meta.batch_size == 0 || meta.batch_size as usize > max_batch {
        bail!("{what}: training metadata says batch size {}, expected 1..={max_batch}", meta.batch_size);
    }
    if meta.epochs > MAX_EPOCHS || meta.epoch > meta.epochs {
        bail!("{what}: training metadata says epoch {} of {}, expected at most {MAX_EPOCHS}", meta.epoch, meta.epochs);
    }
    meta.optimizer.validate().map_err(|e| anyhow!("{what}: training metadata: optimizer {e}"))?;
    let p = spec.params();
    let mut optim = vec![0.0f32; p * meta.optim_buffers as usize];
    for (i, b) in optim.chunks_mut(p).enumerate() {
        let mut m = Mlp::new(spec, b).expect("chunk sized from the spec");
        rest = m.read_tensors(rest).map_err(|e| anyhow!("{what}: optimizer buffer {i}: {e}"))?;
    }
    let mut batch = 0u32;
    if !rest.is_empty() {
        match postcard::take_from_bytes::<u32>(rest) {
            Ok((b, r)) if r.is_empty() && b != 0 => batch = b,
            _ => bail!("{what}: {} unexpected bytes after the optimizer state", rest.len()),
        }
    }
    crate::numerics::check_finite(model.params(), what)?;
    Ok(Checkpoint { model, meta, optim, batch })
}

pub fn load(path: &Path) -> Result<Checkpoint> {
    let bytes = crate::read::regular_file(path, "checkpoint")?;
    decode(&bytes, &path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tailor_core::optim::Sgd;

    /// Found by the `checkpoint` fuzz target: a valid header (CRCs right)
    /// for a 4-1073741826-2-3 model over a 600-byte payload made `decode`
    /// allocate 28 GB before reading a tensor.
    #[test]
    fn a_header_announcing_more_than_the_payload_holds_is_refused_before_allocating() {
        let bytes = include_bytes!("../../fuzz/regressions/checkpoint/huge-model-small-payload");
        let Err(e) = decode(bytes, "m.ckpt") else { panic!("a 4-1073741826-2-3 model decoded from 685 bytes") };
        let e = e.to_string();
        assert!(e.contains("m.ckpt") && e.contains("payload has only"), "{e}");
    }

    fn meta() -> Meta {
        Meta {
            epoch: 2,
            step: 1876,
            epochs: 10,
            optimizer: Optimizer::Sgd(Sgd { momentum: 0.9, ..Sgd::default() }),
            test_accuracy: Some(0.5),
            ..Meta::new(
                Optimizer::Sgd(Sgd::default()),
                Norm::per_tensor(7, 1.0, 0.5, 2.0),
                vec!["a".into(), "b".into()],
            )
        }
    }

    fn model(seed: u64) -> Model {
        let mut m = zero_model(Spec::mlp(&[7, 5, 4, 3, 2]));
        m.init(seed);
        m
    }

    #[test]
    fn roundtrip_with_optimizer_state_at_any_depth() {
        let m = model(4);
        let mom = model(5);
        let bytes = encode(&m, &meta(), mom.params(), 0).unwrap();
        let ck = decode(&bytes, "x.ckpt").unwrap();
        assert_eq!(ck.model, m);
        assert_eq!(ck.meta.optim_buffers, 1);
        assert_eq!(ck.optim, mom.params());
        assert_eq!(ck.meta.step, 1876);
        assert_eq!(ck.meta.class_names, ["a", "b"]);
    }

    #[test]
    fn corrupt_files_give_named_errors() {
        let bytes = encode(&model(4), &meta(), &[], 0).unwrap();
        let err = |b: &[u8]| decode(b, "bad.ckpt").err().expect("must fail").to_string();
        assert!(err(&bytes[..20]).contains("bad.ckpt: truncated"));
        assert!(err(&bytes[..bytes.len() - 1]).contains("truncated"));
        let mut b = bytes.clone();
        b[0] = b'X';
        assert!(err(&b).contains("wrong magic"));
        let mut b = bytes.clone();
        b[4] = 9;
        assert!(err(&b).contains("version"));
        let mut b = bytes.clone();
        b[8] = 0;
        assert!(err(&b).contains("header checksum"));
        let mut b = bytes.clone();
        b[100] ^= 0x40;
        assert!(err(&b).contains("checksum"));
        let mut b = bytes.clone();
        b[..4].copy_from_slice(b"TLQ8");
        assert!(err(&b).contains("int8 model"));
    }

    /// A checkpoint written by version 1 (the seed model, fixed header,
    /// pixel mean/std) still loads.
    #[test]
    fn version_1_checkpoints_load() {
        let spec = Spec::mlp(&[784, 512, 512, 10]);
        let mut m = zero_model(spec);
        m.init(1);
        let mut file = vec![0u8; 32];
        let refs: Vec<_> = m.tensors().collect();
        let ts: Vec<Tensor> = refs.iter().map(|t| Tensor { name: t.name, shape: t.shape(), data: t.data }).collect();
        postcard::to_io(&ts[..], &mut file).unwrap();
        let v1 = MetaV1 {
            epoch: 3,
            step: 9,
            epochs: 20,
            batch_size: 64,
            seed: 0,
            shuffle: true,
            optimizer: Optimizer::Sgd(Sgd::default()),
            schedule: Schedule::Constant,
            pixel_mean: 0.2860,
            pixel_std: 0.3530,
            test_accuracy: None,
            optim_buffers: 0,
        };
        postcard::to_io(&v1, &mut file).unwrap();
        let payload_len = (file.len() - 32) as u32;
        let crc = format::crc32(&file[32..]);
        file[..4].copy_from_slice(&MAGIC);
        file[4..6].copy_from_slice(&1u16.to_le_bytes());
        file[6..8].copy_from_slice(&4u16.to_le_bytes());
        for (i, d) in [784u32, 512, 512, 10].iter().enumerate() {
            file[8 + 4 * i..12 + 4 * i].copy_from_slice(&d.to_le_bytes());
        }
        file[24..28].copy_from_slice(&payload_len.to_le_bytes());
        file[28..32].copy_from_slice(&crc.to_le_bytes());
        let ck = decode(&file, "v1.ckpt").unwrap();
        assert_eq!(ck.model, m);
        assert_eq!(ck.meta.norm, Norm::fashion_mnist());
        assert_eq!(ck.meta.class_names[9], "Ankle boot");
        assert_eq!(ck.meta.epoch, 3);
    }

    #[test]
    fn mid_epoch_position_roundtrips_and_bad_settings_are_refused() {
        let bytes = encode(&model(4), &meta(), &[], 17).unwrap();
        assert_eq!(decode(&bytes, "x").unwrap().batch, 17);
        for (bs, epochs) in [(0u32, 10u32), (1_000_000, 10), (64, MAX_EPOCHS + 1)] {
            let m = Meta { batch_size: bs, epochs, ..meta() };
            let e = decode(&encode(&model(4), &m, &[], 0).unwrap(), "s.ckpt").err().unwrap().to_string();
            assert!(e.contains("s.ckpt: training metadata says"), "{e}");
        }
        let m = Meta { optimizer: Optimizer::Sgd(Sgd { momentum: f32::NAN, ..Sgd::default() }), ..meta() };
        let e = decode(&encode(&model(4), &m, &[], 0).unwrap(), "o.ckpt").err().unwrap().to_string();
        assert!(e.contains("momentum"), "{e}");
    }

    #[test]
    fn non_finite_models_are_neither_saved_nor_loaded() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.ckpt");
        let good = model(4);
        let mt = meta();
        let saved = |m| Saved { model: m, meta: &mt, optim: &[], batch: 0 };
        save(&p, &saved(&good), &[]).unwrap();
        let before = std::fs::read(&p).unwrap();
        let mut bad = good.clone();
        bad.params_mut()[3] = f32::NAN;
        let e = save(&p, &saved(&bad), &[]).unwrap_err().to_string();
        assert!(e.contains("parameter 3") && e.contains("NaN"), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), before, "the last good checkpoint must stay");
        bad.params_mut()[3] = f32::INFINITY;
        let e = decode(&encode(&bad, &mt, &[], 0).unwrap(), "inf.ckpt").err().unwrap().to_string();
        assert!(e.contains("inf.ckpt") && e.contains("inf"), "{e}");
    }
}
