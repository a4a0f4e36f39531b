//! ONNX export of an f32 model.
//!
//! The graph takes `input` `[N, F]` float — raw features, as in the data
//! files (pixels 0–255) — and gives `logits` `[N, C]`. The input
//! normalization comes first as its own nodes, in the order tailor computes
//! it (`Div` by 255 for bytes, else `Mul` by the scale; `Sub` mean; `Div`
//! std; each per feature), not folded into layer 1, so the logits match
//! `tailor eval`'s to rounding and the weights stay the checkpoint's. Then
//! each layer is a `Gemm` (`transB = 1`: the weights stay in PyTorch's
//! `[out, in]` layout, the bias is its `C`) and hidden layers a `Relu`.
//! Opset 13, IR version 7.
//!
//! The protobuf messages are declared here with `prost`'s derive, only the
//! fields this writer sets, with their `onnx.proto` numbers. `prost-build`
//! would need `protoc` at build time, and the crates that ship generated
//! ONNX types pull in a whole protobuf runtime for the ~10 messages used.

use anyhow::{bail, Result};
use prost::Message;

use crate::checkpoint::Model;
use crate::data::norm::U8_SCALE;
use crate::data::Norm;

pub const OPSET: i64 = 13;
pub const IR_VERSION: i64 = 7;
const FLOAT: i32 = 1;
const ATTR_INT: i32 = 2;

#[derive(Clone, PartialEq, Message)]
pub struct ModelProto {
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    #[prost(string, tag = "2")]
    pub producer_name: String,
    #[prost(string, tag = "3")]
    pub producer_version: String,
    #[prost(string, tag = "6")]
    pub doc_string: String,
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(int64, tag = "2")]
    pub version: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct StringStringEntryProto {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(string, tag = "4")]
    pub op_type: String,
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct AttributeProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(int64, tag = "3")]
    pub i: i64,
    #[prost(int32, tag = "20")]
    pub r#type: i32,
}

#[derive(Clone, PartialEq, Message)]
pub struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    #[prost(string, tag = "8")]
    pub name: String,
    /// Little-endian IEEE 754, as the spec requires of `raw_data`.
    #[prost(bytes = "vec", tag = "9")]
    pub raw_data: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ValueInfoProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TypeProto {
    #[prost(message, optional, tag = "1")]
    pub tensor_type: Option<TensorType>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TensorType {
    #[prost(int32, tag = "1")]
    pub elem_type: i32,
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<Dimension>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Dimension {
    #[prost(oneof = "DimValue", tags = "1, 2")]
    pub value: Option<DimValue>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum DimValue {
    #[prost(int64, tag = "1")]
    Value(i64),
    #[prost(string, tag = "2")]
    Param(String),
}

fn tensor(name: &str, dims: &[usize], data: &[f32]) -> TensorProto {
    TensorProto {
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: FLOAT,
        name: name.into(),
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

fn node(op: &str, inputs: &[&str], output: &str, attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: format!("{op}_{output}"),
        op_type: op.into(),
        attribute: attrs,
    }
}

fn io(name: &str, width: usize) -> ValueInfoProto {
    let dim = vec![
        Dimension { value: Some(DimValue::Param("N".into())) },
        Dimension { value: Some(DimValue::Value(width as i64)) },
    ];
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorType { elem_type: FLOAT, shape: Some(TensorShapeProto { dim }) }),
        }),
    }
}

/// The ONNX model of `model` with its input normalization `norm` in front;
/// `class_names` go into the model's metadata (`tailor.classes`, JSON).
pub fn build(model: &Model, norm: &Norm, class_names: &[String]) -> Result<ModelProto> {
    let spec = *model.spec();
    if norm.features() != spec.inputs() {
        bail!("the normalization has {} features, the model {} takes {}", norm.features(), spec, spec.inputs());
    }
    let f = spec.inputs();
    let mut nodes = Vec::new();
    let mut inits = Vec::new();
    // Same operations and order as `Norm::value`, so results agree to the bit.
    if norm.scale == U8_SCALE {
        inits.push(tensor("norm.divisor", &[], &[255.0]));
        nodes.push(node("Div", &["input", "norm.divisor"], "scaled", vec![]));
    } else {
        inits.push(tensor("norm.scale", &[], &[norm.scale]));
        nodes.push(node("Mul", &["input", "norm.scale"], "scaled", vec![]));
    }
    inits.push(tensor("norm.mean", &[f], &norm.mean));
    inits.push(tensor("norm.std", &[f], &norm.std));
    nodes.push(node("Sub", &["scaled", "norm.mean"], "centered", vec![]));
    nodes.push(node("Div", &["centered", "norm.std"], "x0", vec![]));
    let trans_b = AttributeProto { name: "transB".into(), i: 1, r#type: ATTR_INT };
    let mut x = "x0".to_string();
    for (i, t) in model.tensors().collect::<Vec<_>>().chunks(2).enumerate() {
        let (w, b) = (&t[0], &t[1]);
        inits.push(tensor(w.name, w.shape(), w.data));
        inits.push(tensor(b.name, b.shape(), b.data));
        let last = i + 1 == spec.depth();
        let z = if last { "logits".to_string() } else { format!("z{}", i + 1) };
        nodes.push(node("Gemm", &[&x, w.name, b.name], &z, vec![trans_b.clone()]));
        x = match spec.layer(i).activation {
            tailor_core::spec::Activation::Relu => {
                let y = format!("x{}", i + 1);
                nodes.push(node("Relu", &[&z], &y, vec![]));
                y
            }
            tailor_core::spec::Activation::None => z,
        };
    }
    if x != "logits" {
        bail!("the model {spec}'s last layer has an activation; tailor exports logits from a plain last layer");
    }
    let graph = GraphProto {
        node: nodes,
        name: format!("tailor_mlp_{}", spec.dims().iter().map(u32::to_string).collect::<Vec<_>>().join("_")),
        initializer: inits,
        input: vec![io("input", f)],
        output: vec![io("logits", spec.outputs())],
    };
    Ok(ModelProto {
        ir_version: IR_VERSION,
        producer_name: "tailor".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: format!("MLP {spec}: raw features in, normalized in the graph, logits out"),
        graph: Some(graph),
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET }],
        metadata_props: vec![StringStringEntryProto {
            key: "tailor.classes".into(),
            value: serde_json::to_string(class_names)?,
        }],
    })
}

/// [`build`], serialized.
pub fn encode(model: &Model, norm: &Norm, class_names: &[String]) -> Result<Vec<u8>> {
    Ok(build(model, norm, class_names)?.encode_to_vec())
}
