//! f32 checkpoints: the model's state dict, plus what `--resume` needs.
//!
//! Layout: a [`format::Header`] (magic `TLRF`, version, layer sizes, CRC of
//! the payload), then a postcard payload made of
//! 1. the state dict: tensors `linear_relu_stack.{0,2,4}.{weight,bias}`;
//! 2. [`Meta`]: how the model was trained and how far;
//! 3. `meta.optim_buffers` more tensor sequences with the same names: the
//!    optimizer's state (momentum, `exp_avg`, `exp_avg_sq`, …).

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tailor_core::format::{self, Header, Tensor};
use tailor_core::optim::{Optimizer, Schedule};
use tailor_core::SeedMlp;

use crate::boxed;

pub const MAGIC: [u8; 4] = *b"TLRF";

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
    /// Input normalization applied after `/255` (0 and 1 for plain ToTensor).
    pub pixel_mean: f32,
    pub pixel_std: f32,
    /// Test accuracy after the last completed epoch (0..1), if measured.
    pub test_accuracy: Option<f32>,
    pub optim_buffers: u32,
}

impl Meta {
    /// A fresh run: batch 64, no shuffle, one epoch, ToTensor pixels,
    /// constant learning rate. Callers override fields as needed.
    pub fn new(optimizer: Optimizer) -> Self {
        Meta {
            epoch: 0,
            step: 0,
            epochs: 1,
            batch_size: 64,
            seed: 0,
            shuffle: false,
            optimizer,
            schedule: Schedule::Constant,
            pixel_mean: 0.0,
            pixel_std: 1.0,
            test_accuracy: None,
            optim_buffers: 0,
        }
    }
}

fn spec() -> tailor_core::spec::Spec {
    tailor_core::spec::Spec::mlp(&SeedMlp::DIMS)
}

fn push_tensors(out: &mut Vec<u8>, m: &SeedMlp) -> Result<()> {
    let ts: Vec<Tensor> = m.tensors().iter().map(|t| Tensor { name: t.name, shape: t.shape, data: t.data }).collect();
    postcard::to_io(&ts[..], &mut *out)?;
    Ok(())
}

/// Encodes model, meta and optimizer state into one file image. The
/// payload is written in place after room for the header, so the file is
/// built in one buffer (peak memory matters: see the README).
pub fn encode(model: &SeedMlp, meta: &Meta, optim: &[Box<SeedMlp>]) -> Result<Vec<u8>> {
    let mut meta = meta.clone();
    meta.optim_buffers = optim.len() as u32;
    let hl = Header::len_for(spec().depth());
    let mut file = Vec::with_capacity(hl + (std::mem::size_of::<SeedMlp>() + 1024) * (1 + optim.len()));
    file.resize(hl, 0);
    push_tensors(&mut file, model)?;
    postcard::to_io(&meta, &mut file)?;
    for b in optim {
        push_tensors(&mut file, b)?;
    }
    let header = Header::new(MAGIC, spec(), &file[hl..]);
    header.encode(&mut file);
    Ok(file)
}

/// Writes `bytes` to `path` atomically: a temp file beside it, then rename,
/// so a crash never leaves a half-written checkpoint under the real name.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating directory {}", dir.display()))?;
    let name = path.file_name().with_context(|| format!("{}: not a file path", path.display()))?;
    let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let res = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(())
}

pub fn save(path: &Path, model: &SeedMlp, meta: &Meta, optim: &[Box<SeedMlp>]) -> Result<()> {
    atomic_write(path, &encode(model, meta, optim)?)
}

/// A loaded checkpoint.
pub struct Checkpoint {
    pub model: Box<SeedMlp>,
    pub meta: Meta,
    pub optim: Vec<Box<SeedMlp>>,
}

fn read_model_tensors<'a>(bytes: &'a [u8], into: &mut SeedMlp) -> std::result::Result<&'a [u8], format::FormatError> {
    let mut dest = into.tensors_mut();
    format::read_tensors(bytes, &mut dest)
}

/// Decodes a checkpoint image; `what` names the file in errors.
pub fn decode(bytes: &[u8], what: &str) -> Result<Checkpoint> {
    let (_, payload) = Header::parse(bytes, MAGIC)
        .and_then(|(h, p)| {
            if h.spec != spec() {
                return Err(format::FormatError::ShapeMismatch);
            }
            Ok((h, p))
        })
        .map_err(|e| {
            if matches!(e, format::FormatError::BadMagic { found, .. } if &found == b"TLQ8") {
                anyhow::anyhow!("{what}: this is an int8 model (.q8), expected an f32 checkpoint from `tailor train`")
            } else {
                anyhow::anyhow!("{what}: {e}")
            }
        })?;
    let mut model = boxed::zeroed::<SeedMlp>();
    let rest = read_model_tensors(payload, &mut model).map_err(|e| anyhow::anyhow!("{what}: state dict: {e}"))?;
    let (meta, mut rest): (Meta, _) =
        postcard::take_from_bytes(rest).map_err(|e| anyhow::anyhow!("{what}: training metadata: {e}"))?;
    if meta.optim_buffers > 3 {
        bail!("{what}: training metadata says {} optimizer buffers, at most 3 exist", meta.optim_buffers);
    }
    let mut optim = Vec::new();
    for i in 0..meta.optim_buffers {
        let mut b = boxed::zeroed::<SeedMlp>();
        rest = read_model_tensors(rest, &mut b).map_err(|e| anyhow::anyhow!("{what}: optimizer buffer {i}: {e}"))?;
        optim.push(b);
    }
    if !rest.is_empty() {
        bail!("{what}: {} unexpected bytes after the optimizer state", rest.len());
    }
    Ok(Checkpoint { model, meta, optim })
}

pub fn load(path: &Path) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).with_context(|| format!("reading checkpoint {}", path.display()))?;
    decode(&bytes, &path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tailor_core::optim::Sgd;

    fn meta() -> Meta {
        Meta {
            epoch: 2,
            step: 1876,
            epochs: 10,
            batch_size: 64,
            seed: 1,
            shuffle: false,
            optimizer: Optimizer::Sgd(Sgd { momentum: 0.9, ..Sgd::default() }),
            schedule: Schedule::Constant,
            pixel_mean: 0.0,
            pixel_std: 1.0,
            test_accuracy: Some(0.5),
            optim_buffers: 0,
        }
    }

    #[test]
    fn roundtrip_with_optimizer_state() {
        let mut m = boxed::zeroed::<SeedMlp>();
        m.init(4);
        let mut mom = boxed::zeroed::<SeedMlp>();
        mom.init(5);
        let bytes = encode(&m, &meta(), std::slice::from_ref(&mom)).unwrap();
        let ck = decode(&bytes, "x.ckpt").unwrap();
        assert_eq!(*ck.model, *m);
        assert_eq!(ck.meta.optim_buffers, 1);
        assert_eq!(*ck.optim[0], *mom);
        assert_eq!(ck.meta.step, 1876);
    }

    #[test]
    fn corrupt_files_give_named_errors() {
        let mut m = boxed::zeroed::<SeedMlp>();
        m.init(4);
        let bytes = encode(&m, &meta(), &[]).unwrap();
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
        // The header CRC catches a changed width before the shape check.
        assert!(err(&b).contains("header checksum"));
        let mut b = bytes.clone();
        b[1000] ^= 0x40;
        assert!(err(&b).contains("checksum"));
        let mut b = bytes.clone();
        b[..4].copy_from_slice(b"TLQ8");
        assert!(err(&b).contains("int8 model"));
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.ckpt");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
