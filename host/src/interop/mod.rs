//! Models in other tools' formats: PyTorch state dicts as safetensors (in
//! and out) and ONNX (out), and [`load`], which reads a model from a
//! checkpoint or a safetensors file alike.

pub mod onnx;
pub mod safetensors;

use std::path::Path;

use anyhow::{bail, Result};
use tailor_core::optim::{Optimizer, Sgd};

use crate::checkpoint::{self, Checkpoint, Meta};
use crate::data::{Dataset, Features, Norm};

/// What a model file is, by its extension or its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// tailor's own f32 checkpoint (`TLRF`), or anything else: its decoder
    /// names what the bytes are not.
    Checkpoint,
    Safetensors,
}

pub fn kind_of(path: &Path, bytes: &[u8]) -> ModelKind {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let ours = bytes.starts_with(&checkpoint::MAGIC) || bytes.starts_with(b"TLQ8");
    if !ours && (ext.eq_ignore_ascii_case("safetensors") || safetensors::looks_like(bytes)) {
        ModelKind::Safetensors
    } else {
        ModelKind::Checkpoint
    }
}

/// Reads an f32 model from a checkpoint or a safetensors state dict.
///
/// A state dict without tailor's metadata gets, from `data`: the input
/// normalization of PyTorch's tutorial, `ToTensor` alone (bytes / 255,
/// `f32` features unchanged, [`Norm::identity`]), and the data's class
/// names when there is one per output (else `0..C-1`). Without `data` such
/// a file is an error, since nothing says how its inputs were scaled.
pub fn load(path: &Path, data: Option<&Dataset>) -> Result<Checkpoint> {
    let bytes = crate::read::regular_file(path, "model")?;
    let what = path.display().to_string();
    match kind_of(path, &bytes) {
        ModelKind::Checkpoint => checkpoint::decode(&bytes, &what),
        ModelKind::Safetensors => {
            let imp = safetensors::decode(&bytes, &what)?;
            let spec = *imp.model.spec();
            let norm = match (imp.norm, data) {
                (Some(n), _) => n,
                (None, Some(ds)) => Norm::identity(spec.inputs(), matches!(ds.train.features, Features::U8(_))),
                (None, None) => bail!(
                    "{what}: no {} metadata, so nothing says how its inputs are scaled; \
                     use a file from `tailor export --format safetensors`, or a command that reads data",
                    safetensors::NORM_KEY
                ),
            };
            let names = imp.class_names.unwrap_or_else(|| match data {
                Some(ds) if ds.class_names.len() == spec.outputs() => ds.class_names.clone(),
                _ => (0..spec.outputs()).map(|c| c.to_string()).collect(),
            });
            let meta = Meta::new(Optimizer::Sgd(Sgd::default()), norm, names);
            Ok(Checkpoint { model: imp.model, meta, optim: Vec::new(), batch: 0 })
        }
    }
}

/// `tailor export --format safetensors|onnx`: what it writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum F32Format {
    Safetensors,
    Onnx,
}

/// Writes the f32 model in `model` (a checkpoint or a safetensors file
/// with tailor's metadata) as `format`, atomically.
pub fn export(model: &Path, format: F32Format, out: &Path) -> Result<()> {
    let ck = load(model, None)?;
    let bytes = match format {
        F32Format::Safetensors => safetensors::encode(&ck.model, &ck.meta.norm, &ck.meta.class_names)?,
        F32Format::Onnx => onnx::encode(&ck.model, &ck.meta.norm, &ck.meta.class_names)?,
    };
    crate::output::write(out, &bytes, &[model.to_path_buf()])
}

#[cfg(test)]
mod tests;
