use std::collections::HashMap;

use prost::Message;
use safetensors::tensor::{Dtype, TensorView};
use tailor_core::spec::Spec;

use super::onnx::{self, ModelProto};
use super::safetensors::{decode, encode, looks_like, CLASSES_KEY, NORM_KEY};
use crate::checkpoint::{zero_model, Model};
use crate::data::Norm;

fn model(dims: &[usize], seed: u64) -> Model {
    let mut m = zero_model(Spec::mlp(dims));
    m.init(seed);
    m
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|c| format!("class {c}")).collect()
}

/// A tensor as (name, dtype, shape, little-endian bytes).
type Raw = (String, Dtype, Vec<usize>, Vec<u8>);

fn f32s(name: &str, shape: &[usize], v: impl IntoIterator<Item = f32>) -> Raw {
    (name.into(), Dtype::F32, shape.to_vec(), v.into_iter().flat_map(f32::to_le_bytes).collect())
}

/// The tensors of `m`, as `safetensors.torch.save_file(model.state_dict())` has them.
fn state_dict(m: &Model) -> Vec<Raw> {
    m.tensors().map(|t| f32s(t.name, t.shape(), t.data.iter().copied())).collect()
}

/// A well-formed file (the crate's writer) holding `ts`, with `meta`.
fn file(ts: &[Raw], meta: &[(&str, &str)]) -> Vec<u8> {
    let views: Vec<_> =
        ts.iter().map(|(n, d, s, b)| (n.as_str(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    let meta: HashMap<String, String> = meta.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    safetensors::serialize(views, Some(meta)).unwrap()
}

/// A file whose header says `header` (JSON) and whose data is `data`.
fn raw_file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header.as_bytes());
    b.extend_from_slice(data);
    b
}

fn err(bytes: &[u8]) -> String {
    format!("{:#}", decode(bytes, "bad.safetensors").expect_err("must be rejected"))
}

fn assert_err(bytes: &[u8], parts: &[&str]) {
    let e = err(bytes);
    assert!(e.starts_with("bad.safetensors: "), "{e}");
    for p in parts {
        assert!(e.contains(p), "error {e:?} lacks {p:?}");
    }
}

#[test]
fn export_then_import_gives_the_same_model_at_any_depth() {
    for dims in [&[7, 3][..], &[7, 5, 4, 3, 2][..], &[4, 3, 3, 3, 3, 3, 3, 2][..]] {
        let m = model(dims, 3);
        let norm = Norm { scale: 0.5, mean: (0..dims[0]).map(|k| k as f32).collect(), std: vec![2.0; dims[0]] };
        let cls = names(*dims.last().unwrap());
        let bytes = encode(&m, &norm, &cls).unwrap();
        assert!(looks_like(&bytes));
        let imp = decode(&bytes, "m.safetensors").unwrap();
        assert_eq!(imp.model, m);
        assert_eq!(imp.norm.as_ref(), Some(&norm));
        assert_eq!(imp.class_names.as_deref(), Some(&cls[..]));
    }
}

#[test]
fn a_torch_state_dict_without_metadata_loads() {
    let m = model(&[6, 8, 8, 3], 1);
    let imp = decode(&file(&state_dict(&m), &[("format", "pt")]), "torch.safetensors").unwrap();
    assert_eq!(imp.model, m);
    assert_eq!(imp.norm, None);
    assert_eq!(imp.class_names, None);
}

#[test]
fn wrong_dtype_is_named() {
    let m = model(&[4, 3, 2], 0);
    for (dtype, width) in [(Dtype::F64, 8), (Dtype::F16, 2), (Dtype::BF16, 2)] {
        let mut ts = state_dict(&m);
        let (_, d, s, b) = &mut ts[2];
        *d = dtype;
        *b = vec![0; s.iter().product::<usize>() * width];
        assert_err(&file(&ts, &[]), &["tensor linear_relu_stack.2.weight is", &format!("{dtype:?}"), "expected F32"]);
    }
}

#[test]
fn missing_tensors_are_named() {
    let ts = state_dict(&model(&[4, 3, 2], 0));
    let without = |name: &str| file(&ts.iter().filter(|t| t.0 != name).cloned().collect::<Vec<_>>(), &[]);
    assert_err(&without("linear_relu_stack.2.bias"), &["missing tensor linear_relu_stack.2.bias"]);
    assert_err(&without("linear_relu_stack.0.bias"), &["missing tensor linear_relu_stack.0.bias"]);
    assert_err(
        &without("linear_relu_stack.0.weight"),
        &["missing tensor linear_relu_stack.0.weight", "linear_relu_stack.2.weight"],
    );
    assert_err(&file(&[], &[("format", "pt")]), &["missing tensor linear_relu_stack.0.weight", "no tensors"]);
}

#[test]
fn extra_tensors_are_named() {
    let mut ts = state_dict(&model(&[4, 3, 2], 0));
    ts.push(f32s("running_mean", &[3], [0.0; 3]));
    assert_err(&file(&ts, &[]), &["unexpected tensor running_mean", "exactly 4"]);
    // A gap in the numbering: layer 4 without layer 2.
    let mut ts: Vec<Raw> = state_dict(&model(&[4, 3, 2], 0)).into_iter().take(2).collect();
    ts.push(f32s("linear_relu_stack.4.weight", &[2, 3], [0.0; 6]));
    ts.push(f32s("linear_relu_stack.4.bias", &[2], [0.0; 2]));
    assert_err(&file(&ts, &[]), &["unexpected tensor linear_relu_stack.4.bias (and 1 more)", "without gaps"]);
}

#[test]
fn shapes_must_chain_and_biases_match_rows() {
    let w = |i: usize, o: usize, n: usize| f32s(&format!("linear_relu_stack.{i}.weight"), &[o, n], vec![0.1; o * n]);
    let b = |i: usize, o: usize| f32s(&format!("linear_relu_stack.{i}.bias"), &[o], vec![0.0; o]);
    assert_err(
        &file(&[w(0, 5, 4), b(0, 5), w(2, 2, 6), b(2, 2)], &[]),
        &["linear_relu_stack.2.weight has shape [2, 6]", "layer 1 takes 6 inputs, but layer 0 gives 5"],
    );
    assert_err(&file(&[w(0, 5, 4), b(0, 4)], &[]), &["linear_relu_stack.0.bias has shape [4], expected [5]"]);
    assert_err(
        &file(&[f32s("linear_relu_stack.0.weight", &[20], [0.0; 20]), b(0, 5)], &[]),
        &["linear_relu_stack.0.weight has shape [20], expected [outputs, inputs]"],
    );
    assert_err(&file(&[w(0, 0, 4), b(0, 0)], &[]), &["layer 0 has no inputs or no outputs"]);
}

#[test]
fn a_header_that_lies_about_offsets_is_caught() {
    let data = [0u8; 24];
    let t = |name: &str, shape: &str, off: &str| {
        format!(r#""{name}":{{"dtype":"F32","shape":{shape},"data_offsets":{off}}}"#)
    };
    let (w, b) = ("linear_relu_stack.0.weight", "linear_relu_stack.0.bias");
    // The weight claims more bytes than its shape holds.
    let h = format!("{{{},{}}}", t(w, "[2,2]", "[0,20]"), t(b, "[2]", "[20,28]"));
    assert_err(&raw_file(&h, &[0; 28]), &["lies about offsets", "shape"]);
    // Offsets past the end of the file.
    let h = format!("{{{},{}}}", t(w, "[2,2]", "[0,16]"), t(b, "[2]", "[16,24]"));
    assert_err(&raw_file(&h, &data[..20]), &["lies about offsets", "do not end where the file ends"]);
    // Overlapping tensors.
    let h = format!("{{{},{}}}", t(w, "[2,2]", "[0,16]"), t(b, "[2]", "[8,16]"));
    assert_err(&raw_file(&h, &data[..16]), &["lies about offsets", "linear_relu_stack.0.bias"]);
    // The length prefix says more header than the file has.
    let mut f = raw_file(&format!("{{{},{}}}", t(w, "[2,2]", "[0,16]"), t(b, "[2]", "[16,24]")), &data);
    f[..8].copy_from_slice(&1000u64.to_le_bytes());
    assert_err(&f, &["header length"]);
    assert_err(b"1234", &["header length"]);
    assert_err(&raw_file("{not json", &[]), &["not a valid safetensors file"]);
    // The well-formed twin of these files loads.
    let h = format!("{{{},{}}}", t(w, "[2,2]", "[0,16]"), t(b, "[2]", "[16,24]"));
    assert_eq!(*decode(&raw_file(&h, &data), "ok").unwrap().model.spec(), Spec::mlp(&[2, 2]));
}

#[test]
fn non_finite_weights_are_rejected() {
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut ts = state_dict(&model(&[4, 3, 2], 0));
        let mut v = vec![0.5f32; 6];
        v[4] = bad;
        ts[2] = f32s("linear_relu_stack.2.weight", &[2, 3], v);
        assert_err(&file(&ts, &[]), &["tensor linear_relu_stack.2.weight holds", "at index 4", "finite"]);
    }
}

#[test]
fn malformed_metadata_is_named() {
    let ts = state_dict(&model(&[3, 2], 0));
    let with = |k: &str, v: &str| file(&ts, &[(k, v)]);
    assert_err(&with(NORM_KEY, "{\"scale\":1"), &["metadata tailor.norm is not"]);
    assert_err(&with(NORM_KEY, r#"{"scale":1,"mean":[0,0],"std":[1,1]}"#), &["2 means and 2 stds", "3 inputs"]);
    assert_err(&with(NORM_KEY, r#"{"scale":1,"mean":[0,0,0],"std":[1,0,1]}"#), &["std of feature 1 is 0"]);
    assert_err(&with(NORM_KEY, r#"{"scale":-1,"mean":[0,0,0],"std":[1,1,1]}"#), &["scale -1"]);
    assert_err(&with(CLASSES_KEY, r#"["a","b","c"]"#), &["names 3 classes", "2 outputs"]);
    assert_err(&with(CLASSES_KEY, "[1,2]"), &["metadata tailor.classes is not a JSON list of strings"]);
    let ok = decode(&with(CLASSES_KEY, r#"["a","b"]"#), "ok").unwrap();
    assert_eq!(ok.class_names.unwrap(), ["a", "b"]);
}

#[test]
fn detection_by_extension_or_bytes() {
    use super::{kind_of, ModelKind};
    use std::path::Path;
    let st = file(&state_dict(&model(&[3, 2], 0)), &[]);
    assert_eq!(kind_of(Path::new("m.bin"), &st), ModelKind::Safetensors);
    assert_eq!(kind_of(Path::new("m.safetensors"), b"garbage"), ModelKind::Safetensors);
    assert_eq!(kind_of(Path::new("m.ckpt"), b"TLRF...."), ModelKind::Checkpoint);
    assert_eq!(kind_of(Path::new("m.safetensors"), b"TLRF...."), ModelKind::Checkpoint);
    assert!(!looks_like(b"\xff\xff\xff\xff\xff\xff\xff\xff{"));
}

#[test]
fn onnx_graph_has_the_normalization_then_gemm_relu_per_layer() {
    let m = model(&[5, 4, 3, 2], 2);
    let norm = Norm::per_tensor(5, crate::data::U8_SCALE, 0.25, 0.5);
    let bytes = onnx::encode(&m, &norm, &names(2)).unwrap();
    let p = ModelProto::decode(&bytes[..]).unwrap();
    assert_eq!(p.opset_import[0].version, onnx::OPSET);
    let g = p.graph.unwrap();
    let ops: Vec<&str> = g.node.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(ops, ["Div", "Sub", "Div", "Gemm", "Relu", "Gemm", "Relu", "Gemm"]);
    assert_eq!(g.node.last().unwrap().output, ["logits"]);
    let w1 = g.initializer.iter().find(|t| t.name == "linear_relu_stack.2.weight").unwrap();
    assert_eq!(w1.dims, [3, 4]);
    let back: Vec<f32> = w1.raw_data.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(back, m.layer(1).weight);
    // Every node input is a graph input, an initializer or an earlier output.
    let mut known: Vec<String> = g.initializer.iter().map(|t| t.name.clone()).chain(["input".into()]).collect();
    for n in &g.node {
        assert!(n.input.iter().all(|i| known.contains(i)), "{n:?}");
        known.extend(n.output.iter().cloned());
    }
    let scaled = Norm::per_tensor(5, 0.5, 0.0, 1.0);
    let ops = ModelProto::decode(&onnx::encode(&m, &scaled, &names(2)).unwrap()[..]).unwrap().graph.unwrap().node;
    assert_eq!(ops[0].op_type, "Mul");
}
