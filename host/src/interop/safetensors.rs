//! PyTorch state dicts as safetensors files, both ways.
//!
//! Tensors are named as the tutorial's `nn.Sequential` names them
//! (`linear_relu_stack.{0,2,4,…}.{weight,bias}`, [`tensor_names`]), `F32`,
//! shaped `[out, in]` and `[out]`. The shape of the model is read from
//! them: each weight's inputs must be the previous layer's outputs, hidden
//! layers are ReLU and the last one gives logits.
//!
//! What a forward pass needs besides the weights travels in the
//! string→string metadata, as JSON: `tailor.norm` (the input normalization,
//! [`Norm`]: `{"scale": s, "mean": [...], "std": [...]}`, so that
//! `x = (raw * scale - mean) / std`) and `tailor.classes` (class names in
//! output order). A file from `safetensors.torch.save_file` has neither; the
//! caller then chooses defaults (see [`crate::model_file`]).

use std::collections::HashMap;

use anyhow::{anyhow, bail, Result};
use safetensors::tensor::{Dtype, SafeTensorError, SafeTensors, TensorView};
use tailor_core::spec::{tensor_names, Spec, MAX_LAYERS};

use crate::checkpoint::Model;
use crate::data::Norm;

/// Metadata key of the input normalization.
pub const NORM_KEY: &str = "tailor.norm";
/// Metadata key of the class names.
pub const CLASSES_KEY: &str = "tailor.classes";

/// A model read from a safetensors file, with what its metadata said.
#[derive(Clone, Debug, PartialEq)]
pub struct Imported {
    pub model: Model,
    /// `tailor.norm`, if the file has it.
    pub norm: Option<Norm>,
    /// `tailor.classes`, if the file has it.
    pub class_names: Option<Vec<String>>,
}

/// The safetensors bytes of `model`, with `norm` and `class_names` in the
/// metadata (and `format: pt`, as `safetensors.torch` writes it).
pub fn encode(model: &Model, norm: &Norm, class_names: &[String]) -> Result<Vec<u8>> {
    let spec = *model.spec();
    if norm.features() != spec.inputs() || class_names.len() != spec.outputs() {
        bail!(
            "the model {spec} has {} inputs and {} outputs, its normalization {} features and {} class names",
            spec.inputs(),
            spec.outputs(),
            norm.features(),
            class_names.len()
        );
    }
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = model
        .tensors()
        .map(|t| (t.name.to_string(), t.shape().to_vec(), t.data.iter().flat_map(|v| v.to_le_bytes()).collect()))
        .collect();
    let views = bytes
        .iter()
        .map(|(name, shape, data)| Ok((name.as_str(), TensorView::new(Dtype::F32, shape.clone(), data)?)))
        .collect::<Result<Vec<_>, SafeTensorError>>()?;
    let meta = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        (NORM_KEY.to_string(), serde_json::to_string(norm)?),
        (CLASSES_KEY.to_string(), serde_json::to_string(class_names)?),
    ]);
    Ok(safetensors::serialize(views, Some(meta))?)
}

/// Whether `bytes` look like a safetensors file: an 8-byte little-endian
/// header length, then a JSON object that fits in the file.
pub fn looks_like(bytes: &[u8]) -> bool {
    match (bytes.get(..8), bytes.get(8)) {
        (Some(n), Some(b'{')) => u64::from_le_bytes(n.try_into().expect("8 bytes")) <= (bytes.len() - 8) as u64,
        _ => false,
    }
}

/// Reads a state dict; `what` names the file in errors.
pub fn decode(bytes: &[u8], what: &str) -> Result<Imported> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| header_error(e, what))?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| header_error(e, what))?;

    let mut depth = 0;
    while depth < MAX_LAYERS && st.tensor(tensor_names(depth)[0]).is_ok() {
        depth += 1;
    }
    if depth == 0 {
        bail!(
            "{what}: missing tensor {}: expected a state dict of the PyTorch tutorial's \
             nn.Sequential (linear_relu_stack.{{0,2,4,…}}.{{weight,bias}}); the file has {}",
            tensor_names(0)[0],
            listing(&st)
        );
    }
    let mut dims = Vec::with_capacity(depth + 1);
    let mut layers = Vec::with_capacity(depth);
    for i in 0..depth {
        let [wn, bn] = tensor_names(i);
        let w = st.tensor(wn).map_err(|_| anyhow!("{what}: missing tensor {wn}"))?;
        let b = st.tensor(bn).map_err(|_| anyhow!("{what}: missing tensor {bn} (layer {i} has a weight)"))?;
        for (name, t) in [(wn, &w), (bn, &b)] {
            if t.dtype() != Dtype::F32 {
                bail!(
                    "{what}: tensor {name} is {:?}, expected F32 (in PyTorch: model.float() before saving)",
                    t.dtype()
                );
            }
        }
        let &[out, inp] = w.shape() else {
            bail!("{what}: tensor {wn} has shape {:?}, expected [outputs, inputs]", w.shape());
        };
        if b.shape() != [out] {
            bail!("{what}: tensor {bn} has shape {:?}, expected [{out}] (the rows of {wn})", b.shape());
        }
        match dims.last() {
            None => dims.push(inp),
            Some(&prev) if prev != inp => bail!(
                "{what}: tensor {wn} has shape [{out}, {inp}]: layer {i} takes {inp} inputs, \
                 but layer {} gives {prev}",
                i - 1
            ),
            Some(_) => {}
        }
        dims.push(out);
        layers.push((w, b));
    }
    let known: Vec<&str> = (0..depth).flat_map(tensor_names).collect();
    let mut extra: Vec<&str> = st.names().into_iter().filter(|n| !known.contains(n)).collect();
    extra.sort_unstable();
    if let Some(first) = extra.first() {
        bail!(
            "{what}: unexpected tensor {first}{}: a model of {depth} layers has exactly {} \
             (linear_relu_stack.{{0,2,…,{}}}.{{weight,bias}}, numbered without gaps)",
            if extra.len() > 1 { format!(" (and {} more)", extra.len() - 1) } else { String::new() },
            2 * depth,
            2 * (depth - 1)
        );
    }
    let spec = Spec::try_mlp(&dims).map_err(|e| anyhow!("{what}: model {dims:?}: {e}"))?;
    let mut params = Vec::with_capacity(spec.params());
    for (i, (w, b)) in layers.iter().enumerate() {
        let [wn, bn] = tensor_names(i);
        for (name, t) in [(wn, w), (bn, b)] {
            let start = params.len();
            params.extend(t.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))));
            if let Some(k) = params[start..].iter().position(|v| !v.is_finite()) {
                bail!("{what}: tensor {name} holds {} at index {k}; every weight must be finite", params[start + k]);
            }
        }
    }
    let model = Model::new(spec, params).map_err(|e| anyhow!("{what}: {e:?}"))?;

    let meta = header.metadata().as_ref();
    let get = |k: &str| meta.and_then(|m| m.get(k));
    let norm = get(NORM_KEY).map(|s| parse_norm(s, &spec, what)).transpose()?;
    let class_names = get(CLASSES_KEY)
        .map(|s| -> Result<Vec<String>> {
            let names: Vec<String> = serde_json::from_str(s)
                .map_err(|e| anyhow!("{what}: metadata {CLASSES_KEY} is not a JSON list of strings: {e}"))?;
            if names.len() != spec.outputs() {
                bail!(
                    "{what}: metadata {CLASSES_KEY} names {} classes, the model has {} outputs",
                    names.len(),
                    spec.outputs()
                );
            }
            Ok(names)
        })
        .transpose()?;
    Ok(Imported { model, norm, class_names })
}

fn parse_norm(s: &str, spec: &Spec, what: &str) -> Result<Norm> {
    let n: Norm = serde_json::from_str(s).map_err(|e| {
        anyhow!(
            "{what}: metadata {NORM_KEY} is not {{\"scale\": number, \"mean\": [numbers], \"std\": [numbers]}}: {e}"
        )
    })?;
    if n.mean.len() != spec.inputs() || n.std.len() != spec.inputs() {
        bail!(
            "{what}: metadata {NORM_KEY} has {} means and {} stds, the model takes {} inputs",
            n.mean.len(),
            n.std.len(),
            spec.inputs()
        );
    }
    if !(n.scale.is_finite() && n.scale > 0.0) {
        bail!("{what}: metadata {NORM_KEY}: scale {} is not a positive number", n.scale);
    }
    if let Some(k) = n.mean.iter().position(|m| !m.is_finite()) {
        bail!("{what}: metadata {NORM_KEY}: mean of feature {k} is {}", n.mean[k]);
    }
    if let Some(k) = n.std.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
        bail!("{what}: metadata {NORM_KEY}: std of feature {k} is {}, expected a positive number", n.std[k]);
    }
    Ok(n)
}

/// The crate's error, said in terms of the file.
fn header_error(e: SafeTensorError, what: &str) -> anyhow::Error {
    use SafeTensorError as E;
    match e {
        E::InvalidOffset(name) => anyhow!(
            "{what}: the safetensors header lies about offsets: tensor {name}'s data_offsets do not \
             start where the previous tensor ends"
        ),
        E::TensorInvalidInfo => anyhow!(
            "{what}: the safetensors header lies about offsets: a tensor's data_offsets do not span \
             its shape times its dtype size"
        ),
        E::MetadataIncompleteBuffer => anyhow!(
            "{what}: the safetensors header lies about offsets: its tensors do not end where the file ends \
             (truncated or padded file?)"
        ),
        E::InvalidHeaderLength | E::HeaderTooSmall | E::HeaderTooLarge => {
            anyhow!("{what}: not a safetensors file: its first 8 bytes give a header length that does not fit the file ({e})")
        }
        e => anyhow!("{what}: not a valid safetensors file: {e}"),
    }
}

fn listing(st: &SafeTensors<'_>) -> String {
    let mut names = st.names();
    names.sort_unstable();
    match names.len() {
        0 => "no tensors".into(),
        n if n <= 6 => names.join(", "),
        n => format!("{}, … ({n} tensors)", names[..6].join(", ")),
    }
}
