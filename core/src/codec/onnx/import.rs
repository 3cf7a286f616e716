//! Reading an ONNX graph of the mnist_cnn family into our layout. The nodes are walked in
//! their (topological) order as one chain from the graph input, tracking which axis is which
//! through Transpose, Flatten and Reshape, and matched against conv-relu-conv-relu-maxpool-
//! dense-relu-dense[-softmax]. Leaves out evaluating anything else: such a node is refused by name.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use prost::Message;

use super::layout::{dense_rows_to_hwc, oihw_to_hwio, transpose, Axis};
use super::proto::{
    attribute_proto::AttributeType, tensor_proto::DataLocation, tensor_proto::DataType, tensor_shape_proto, type_proto,
    AttributeProto, ModelProto, NodeProto, TensorProto,
};
use super::{budget, Dtype, Imported, InputLayout, MAX_DECODED_SLACK, MAX_MODEL_BYTES};
use crate::config::Config;
use crate::error::{Error, Result};

/// The newest default-domain operator set this reader knows (onnx.proto of onnx 1.23).
const NEWEST_OPSET: i64 = 28;
/// Opset 7 is the first whose Gemm broadcasts without an attribute.
const OLDEST_OPSET: i64 = 7;

/// Reads a model written by us, by PyTorch's `torch.onnx.export`, by tf2onnx or by another tool
/// for the mnist_cnn architecture and returns its parameters in our layout.
pub fn import(bytes: &[u8]) -> Result<Imported> {
    if bytes.len() > MAX_MODEL_BYTES {
        return Err(Error::TooLarge {
            what: String::from("ONNX model"),
            size: bytes.len() as u64,
            limit: MAX_MODEL_BYTES as u64,
        });
    }
    // Bound what prost will allocate before it allocates it: small entries cost more decoded.
    let decoded = budget::decoded_size(bytes).map_err(|_| {
        Error::malformed("ONNX model", "not a valid protobuf message (truncated, or a field that does not parse)")
    })?;
    let decoded_limit = 2 * bytes.len() as u64 + MAX_DECODED_SLACK;
    if decoded > decoded_limit {
        return Err(Error::TooLarge {
            what: String::from("ONNX model's decoded size (its protobuf entries, before any weight is read)"),
            size: decoded,
            limit: decoded_limit,
        });
    }
    let model = ModelProto::decode(bytes).map_err(|e| Error::malformed("ONNX model", e.to_string()))?;
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| Error::Missing { what: String::from("ONNX model"), name: String::from("graph") })?;
    let opset = default_opset(&model)?;

    let mut walk = Walk {
        opset,
        values: BTreeMap::new(),
        current: None,
        stage: 0,
        found: Found::default(),
        fold_budget: 2 * bytes.len() as u64 + MAX_DECODED_SLACK,
    };
    for tensor in &graph.initializer {
        let name = tensor.name.clone().unwrap_or_default();
        let value = read_tensor(tensor, &name)?;
        walk.values.insert(name, Value::Const(value));
    }
    if !graph.sparse_initializer.is_empty() {
        return Err(Error::unsupported("ONNX graph", "sparse initializers"));
    }
    let input = graph_input(graph, &walk.values)?;
    walk.found.input_dims = input.dims;
    walk.current = Some(input.name.clone());
    walk.values.insert(input.name, Value::Act(Act::Input { perm: [0, 1, 2, 3] }));
    for (index, node) in graph.node.iter().enumerate() {
        walk.node(&NodeRef { index, node })?;
    }
    walk.finish(graph, &model)
}

/// The default domain's version among the model's operator sets.
fn default_opset(model: &ModelProto) -> Result<i64> {
    let default = model.opset_import.iter().find(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")));
    let version = default
        .and_then(|o| o.version)
        .ok_or_else(|| Error::malformed("ONNX model", "it imports no version of the default operator set (ai.onnx)"))?;
    if !(OLDEST_OPSET..=NEWEST_OPSET).contains(&version) {
        return Err(Error::unsupported(
            "ONNX model",
            format!("operator set {version}; this reader knows {OLDEST_OPSET} to {NEWEST_OPSET}"),
        ));
    }
    Ok(version)
}

/// A constant: an initializer, a Constant node, or one of those through Cast/Transpose/Identity.
/// Cloning shares the values: a chain of Identity nodes over one weight costs nothing.
#[derive(Debug, Clone)]
struct Tensor {
    dims: Vec<usize>,
    data: Data,
    /// The type it was stored as, for floats.
    stored: Dtype,
}

#[derive(Debug, Clone)]
enum Data {
    F32(Rc<Vec<f32>>),
    I64(Rc<Vec<i64>>),
}

impl Data {
    fn bytes(&self) -> u64 {
        match self {
            Data::F32(v) => 4 * v.len() as u64,
            Data::I64(v) => 8 * v.len() as u64,
        }
    }
    fn same_values(&self, other: &Data) -> bool {
        match (self, other) {
            (Data::F32(a), Data::F32(b)) => Rc::ptr_eq(a, b),
            (Data::I64(a), Data::I64(b)) => Rc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Tensor {
    fn floats(&self) -> Option<&[f32]> {
        match &self.data {
            Data::F32(v) => Some(v.as_slice()),
            Data::I64(_) => None,
        }
    }
}

/// What the chain's tensor looks like at some point.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Act {
    /// Before the first Conv: axis i of the tensor is axis perm[i] of the graph input.
    Input { perm: [usize; 4] },
    /// After it: what each axis holds (a Conv's output is N, C, H, W).
    Image { axes: [Axis; 4] },
    /// (N, F) whose F follows a flatten of these axes, outermost first.
    Flat { order: [Axis; 3] },
    /// (N, units) after a dense layer.
    Units,
}

#[derive(Debug, Clone)]
enum Value {
    Const(Tensor),
    Act(Act),
}

/// The layers in the order the architecture has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Conv(usize),
    Relu,
    MaxPool,
    Dense(usize),
    Softmax,
}

const STEPS: [Step; 9] = [
    Step::Conv(0),
    Step::Relu,
    Step::Conv(1),
    Step::Relu,
    Step::MaxPool,
    Step::Dense(0),
    Step::Relu,
    Step::Dense(1),
    Step::Softmax,
];
/// The steps a graph must have; the final Softmax is optional.
const REQUIRED_STEPS: usize = 8;

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Conv(i) => write!(f, "convolution {}", i + 1),
            Step::Relu => write!(f, "a ReLU"),
            Step::MaxPool => write!(f, "the max pooling"),
            Step::Dense(i) => write!(f, "dense layer {}", i + 1),
            Step::Softmax => write!(f, "a softmax"),
        }
    }
}

/// Everything read off the graph so far, in our layout.
#[derive(Default)]
struct Found {
    /// The graph input's dims after the batch: (d1, d2, d3).
    input_dims: [usize; 3],
    input_layout: Option<InputLayout>,
    /// (height, width, channels) of the image.
    image: (usize, usize, usize),
    /// HWIO kernels with (K, I, O), and biases.
    conv: [Option<(Vec<f32>, [usize; 3])>; 2],
    conv_bias: [Option<Vec<f32>>; 2],
    pool: usize,
    /// (in, out) kernels with our row order, and biases.
    dense: [Option<(Vec<f32>, [usize; 2])>; 2],
    dense_bias: [Option<Vec<f32>>; 2],
    /// A MatMul's dense layer whose bias may come in the next Add.
    bias_pending: Option<usize>,
    dropout: [Option<f32>; 2],
    softmax: bool,
    dtype: Option<Dtype>,
}

/// A node and its position, for messages: `node 3 "conv2d_1" (Conv)`.
struct NodeRef<'a> {
    index: usize,
    node: &'a NodeProto,
}

impl fmt::Display for NodeRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {}", self.index)?;
        if let Some(name) = self.node.name.as_deref().filter(|n| !n.is_empty()) {
            write!(f, " {name:?}")?;
        }
        write!(f, " ({})", printable(self.op()))
    }
}

/// An operator name as it is when it is one, quoted and escaped when it holds anything odd, so
/// that a message stays one line.
fn printable(op: &str) -> alloc::borrow::Cow<'_, str> {
    if !op.is_empty() && op.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        alloc::borrow::Cow::Borrowed(op)
    } else {
        alloc::borrow::Cow::Owned(format!("{op:?}"))
    }
}

impl NodeRef<'_> {
    fn op(&self) -> &str {
        self.node.op_type.as_deref().unwrap_or("")
    }
    fn unsupported(&self, why: impl fmt::Display) -> Error {
        Error::unsupported("ONNX graph", format!("{self}: {why}"))
    }
    fn malformed(&self, why: impl fmt::Display) -> Error {
        Error::malformed("ONNX graph", format!("{self}: {why}"))
    }

    fn attribute(&self, name: &str, kind: AttributeType) -> Result<Option<&AttributeProto>> {
        let Some(a) = self.node.attribute.iter().find(|a| a.name.as_deref() == Some(name)) else {
            return Ok(None);
        };
        if a.ref_attr_name.is_some() {
            return Err(self.unsupported(format!("attribute {name} refers to a function's attribute")));
        }
        match a.r#type {
            Some(t) if t == kind as i32 => Ok(Some(a)),
            // IR version 1 had no type field: trust the one that is set.
            None => Ok(Some(a)),
            Some(t) => Err(self.malformed(format!(
                "attribute {name} is of type {}, expected {}",
                AttributeType::try_from(t).map_or_else(|_| t.to_string(), |t| t.as_str_name().to_string()),
                kind.as_str_name()
            ))),
        }
    }
    fn int(&self, name: &str, default: i64) -> Result<i64> {
        Ok(self.attribute(name, AttributeType::Int)?.and_then(|a| a.i).unwrap_or(default))
    }
    fn float(&self, name: &str, default: f32) -> Result<f32> {
        Ok(self.attribute(name, AttributeType::Float)?.and_then(|a| a.f).unwrap_or(default))
    }
    fn ints(&self, name: &str) -> Result<Option<&[i64]>> {
        Ok(self.attribute(name, AttributeType::Ints)?.map(|a| a.ints.as_slice()))
    }
    fn string(&self, name: &str) -> Result<Option<&[u8]>> {
        Ok(self.attribute(name, AttributeType::String)?.and_then(|a| a.s.as_deref()))
    }
    /// Refuses any attribute not in `known`, or given twice, so nothing that changes the
    /// result is ignored.
    fn only_attributes(&self, known: &[&str]) -> Result<()> {
        let attributes = &self.node.attribute;
        for (i, a) in attributes.iter().enumerate() {
            let name = a.name.as_deref().unwrap_or("");
            if !known.contains(&name) {
                return Err(self.unsupported(format!("attribute {name:?}")));
            }
            if attributes[..i].iter().any(|b| b.name == a.name) {
                return Err(self.malformed(format!("attribute {name:?} is given twice")));
            }
        }
        Ok(())
    }
    /// An ints attribute that, when present, must hold `len` copies of `value`.
    fn require_all(&self, name: &str, len: usize, value: i64) -> Result<()> {
        match self.ints(name)? {
            Some(v) if v.len() != len || v.iter().any(|&x| x != value) => {
                Err(self.unsupported(format!("{name} = {v:?}; only {value} is supported")))
            }
            _ => Ok(()),
        }
    }
    fn require_valid_padding(&self) -> Result<()> {
        match self.string("auto_pad")? {
            None | Some(b"NOTSET") | Some(b"VALID") => Ok(()),
            Some(other) => Err(self.unsupported(format!("auto_pad = {:?}", String::from_utf8_lossy(other)))),
        }
    }
}

struct GraphInput {
    name: String,
    dims: [usize; 3],
}

/// The one graph input that is not an initializer: a float tensor (N, d1, d2, d3).
fn graph_input(graph: &super::proto::GraphProto, values: &BTreeMap<String, Value>) -> Result<GraphInput> {
    let mut inputs = graph.input.iter().filter(|i| !values.contains_key(i.name.as_deref().unwrap_or("")));
    let (Some(input), None) = (inputs.next(), inputs.next()) else {
        return Err(Error::unsupported("ONNX graph", "it does not have exactly one input besides its initializers"));
    };
    let name = input.name.clone().unwrap_or_default();
    let what = || format!("ONNX graph input {name:?}");
    let tensor = match input.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => t,
        _ => return Err(Error::unsupported(what(), "it is not a tensor")),
    };
    match tensor.elem_type.and_then(|t| DataType::try_from(t).ok()) {
        Some(DataType::Float | DataType::Float16) => {}
        other => {
            return Err(Error::unsupported(
                what(),
                format!("element type {}; float images are needed", other.map_or("unknown", |t| t.as_str_name())),
            ))
        }
    }
    let dims = tensor.shape.as_ref().map(|s| s.dim.as_slice()).unwrap_or(&[]);
    if dims.len() != 4 {
        return Err(Error::unsupported(
            what(),
            format!("{} dimensions; images (N, H, W, C) or (N, C, H, W) have 4", dims.len()),
        ));
    }
    let mut fixed = [0usize; 3];
    for (i, dim) in dims[1..].iter().enumerate() {
        match dim.value {
            Some(tensor_shape_proto::dimension::Value::DimValue(v)) if v > 0 && v <= 1 << 16 => fixed[i] = v as usize,
            _ => return Err(Error::unsupported(what(), format!("dimension {} is not a fixed size", i + 1))),
        }
    }
    Ok(GraphInput { name, dims: fixed })
}

struct Walk {
    opset: i64,
    values: BTreeMap<String, Value>,
    /// The name of the chain's latest tensor.
    current: Option<String>,
    /// Index into STEPS of the next layer expected.
    stage: usize,
    found: Found,
    /// Bytes that folding constants (Cast, Transpose, Constant nodes) may still make, so a chain
    /// of thousands of Transposes over one weight is refused instead of filling memory.
    fold_budget: u64,
}

impl Walk {
    fn node(&mut self, n: &NodeRef<'_>) -> Result<()> {
        if !matches!(n.node.domain.as_deref(), None | Some("") | Some("ai.onnx")) {
            return Err(n.unsupported(format!("operator domain {:?}", n.node.domain.as_deref().unwrap_or(""))));
        }
        // Where the chain goes through this node: the position of its input.
        let mut chain_input = None;
        for (i, name) in n.node.input.iter().enumerate() {
            if name.is_empty() {
                continue; // an omitted optional input
            }
            match self.values.get(name) {
                Some(Value::Const(_)) => {}
                Some(Value::Act(_)) if Some(name) == self.current.as_ref() && chain_input.is_none() => {
                    chain_input = Some(i)
                }
                Some(Value::Act(_)) => {
                    return Err(n.unsupported(format!(
                        "it reads {name:?}, which the graph also uses elsewhere; this architecture is one chain"
                    )))
                }
                None => return Err(n.malformed(format!("input {name:?} is not produced by any earlier node"))),
            }
        }
        let output =
            n.node.output.first().filter(|o| !o.is_empty()).cloned().ok_or_else(|| n.malformed("no output"))?;
        if self.values.contains_key(&output) {
            return Err(n.malformed(format!("output {output:?} is already defined")));
        }
        let value = match chain_input {
            None => {
                let folded = self.fold(n)?;
                self.charge(n, &folded)?;
                Value::Const(folded)
            }
            Some(position) => {
                if position != 0 && n.op() != "Add" {
                    return Err(n.unsupported("the image flows into a weight input"));
                }
                let act = match self.values.get(&n.node.input[position]) {
                    Some(Value::Act(act)) => *act,
                    _ => unreachable!("chain_input names an activation"),
                };
                let next = self.step(n, act, position)?;
                self.current = Some(output.clone());
                Value::Act(next)
            }
        };
        self.values.insert(output, value);
        Ok(())
    }

    fn constant(&self, n: &NodeRef<'_>, position: usize) -> Result<Option<&Tensor>> {
        match n.node.input.get(position).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(name) => match self.values.get(name) {
                Some(Value::Const(t)) => Ok(Some(t)),
                _ => Err(n.unsupported(format!("input {} ({name:?}) is not a constant", position + 1))),
            },
        }
    }

    /// A float constant input, copied, with its dims; notes the type it was stored in.
    fn floats(&mut self, n: &NodeRef<'_>, position: usize, what: &str) -> Result<Option<(Vec<usize>, Vec<f32>)>> {
        let Some(t) = self.constant(n, position)? else {
            return Ok(None);
        };
        let Some(values) = t.floats() else {
            return Err(n.malformed(format!("the {what} is not a float tensor")));
        };
        let (dims, values, stored) = (t.dims.clone(), values.to_vec(), t.stored);
        if stored == Dtype::F16 || self.found.dtype.is_none() {
            self.found.dtype = Some(stored);
        }
        Ok(Some((dims, values)))
    }

    /// Counts a folded constant against the budget, unless it shares its input's values.
    fn charge(&mut self, n: &NodeRef<'_>, folded: &Tensor) -> Result<()> {
        let shared = n.node.input.first().and_then(|name| match self.values.get(name) {
            Some(Value::Const(input)) => Some(input.data.same_values(&folded.data)),
            _ => None,
        });
        if shared == Some(true) {
            return Ok(());
        }
        let bytes = folded.data.bytes();
        self.fold_budget = self.fold_budget.checked_sub(bytes).ok_or_else(|| {
            n.unsupported("folding the graph's constants would take more memory than twice the file; too many copies")
        })?;
        Ok(())
    }

    /// A node without the chain among its inputs: Constant, or Cast/Identity/Transpose of constants.
    fn fold(&mut self, n: &NodeRef<'_>) -> Result<Tensor> {
        match n.op() {
            "Constant" => {
                let [a] = n.node.attribute.as_slice() else {
                    return Err(n.malformed("a Constant needs exactly one attribute"));
                };
                let name = a.name.as_deref().unwrap_or("");
                match (name, &a.t) {
                    ("value", Some(t)) => read_tensor(t, &format!("{n}")),
                    ("value_float", _) => Ok(Tensor {
                        dims: vec![],
                        data: Data::F32(Rc::new(vec![n.float(name, 0.0)?])),
                        stored: Dtype::F32,
                    }),
                    ("value_floats", _) => {
                        let v = n.attribute(name, AttributeType::Floats)?.map(|a| a.floats.clone()).unwrap_or_default();
                        Ok(Tensor { dims: vec![v.len()], data: Data::F32(Rc::new(v)), stored: Dtype::F32 })
                    }
                    ("value_int", _) => {
                        Ok(Tensor { dims: vec![], data: Data::I64(Rc::new(vec![n.int(name, 0)?])), stored: Dtype::F32 })
                    }
                    ("value_ints", _) => {
                        let v = n.ints(name)?.unwrap_or(&[]).to_vec();
                        Ok(Tensor { dims: vec![v.len()], data: Data::I64(Rc::new(v)), stored: Dtype::F32 })
                    }
                    _ => Err(n.unsupported(format!("a Constant given by {name:?}"))),
                }
            }
            "Identity" => Ok(self.constant(n, 0)?.ok_or_else(|| n.malformed("no input"))?.clone()),
            "Cast" => {
                n.only_attributes(&["to", "saturate", "round_mode"])?;
                let t = self.constant(n, 0)?.ok_or_else(|| n.malformed("no input"))?;
                let to = n.int("to", 0)?;
                match (&t.data, DataType::try_from(to as i32).ok()) {
                    (Data::F32(_), Some(DataType::Float)) | (Data::I64(_), Some(DataType::Int64)) => Ok(t.clone()),
                    (Data::F32(v), Some(DataType::Float16)) => Ok(Tensor {
                        dims: t.dims.clone(),
                        data: Data::F32(Rc::new(v.iter().map(|&x| f32::from(half::f16::from_f32(x))).collect())),
                        stored: Dtype::F16,
                    }),
                    _ => Err(n.unsupported(format!("a Cast of constant {:?} to type {to}", n.node.input[0]))),
                }
            }
            "Transpose" => {
                n.only_attributes(&["perm"])?;
                let t = self.constant(n, 0)?.ok_or_else(|| n.malformed("no input"))?;
                let perm = permutation(n, n.ints("perm")?, t.dims.len())?;
                Ok(transpose_tensor(t, &perm))
            }
            other => Err(n.unsupported(format!("{} on constants only is not supported", printable(other)))),
        }
    }

    /// The chain's next node: a layer, or a change of layout.
    fn step(&mut self, n: &NodeRef<'_>, act: Act, position: usize) -> Result<Act> {
        let op = n.op();
        // A MatMul's bias, if any, is the Add right after it.
        if let Some(layer) = self.found.bias_pending.take() {
            if op == "Add" {
                let out = self.found.dense[layer].as_ref().map_or(0, |d| d.1[1]);
                let other = if position == 0 { 1 } else { 0 };
                let (dims, bias) = self.floats(n, other, "bias")?.ok_or_else(|| n.malformed("Add needs two inputs"))?;
                if bias.len() != out || dims.iter().filter(|&&d| d != 1).count() > 1 {
                    return Err(n.unsupported(format!("a bias of shape {dims:?} for {out} units")));
                }
                self.found.dense_bias[layer] = Some(bias);
                return Ok(act);
            }
        }
        match op {
            "Identity" => Ok(act),
            "Dropout" => self.dropout(n, act),
            "Cast" => match DataType::try_from(n.int("to", 0)? as i32) {
                Ok(DataType::Float | DataType::Float16 | DataType::Double) => Ok(act),
                _ => Err(n.unsupported("a Cast of the image to a non-float type")),
            },
            "Transpose" => {
                n.only_attributes(&["perm"])?;
                let rank = if matches!(act, Act::Input { .. } | Act::Image { .. }) { 4 } else { 2 };
                let perm = permutation(n, n.ints("perm")?, rank)?;
                match act {
                    Act::Input { perm: old } => Ok(Act::Input { perm: [0, 1, 2, 3].map(|i| old[perm[i]]) }),
                    Act::Image { axes } => Ok(Act::Image { axes: [0, 1, 2, 3].map(|i| axes[perm[i]]) }),
                    _ if perm == [0, 1] => Ok(act),
                    _ => Err(n.unsupported("it swaps the batch with the features")),
                }
            }
            "Flatten" | "Reshape" => self.flatten(n, act),
            "Conv" | "Relu" | "MaxPool" | "Gemm" | "MatMul" | "Softmax" => {
                let expected = STEPS.get(self.stage).copied();
                let step = match (op, expected) {
                    ("Conv", Some(s @ Step::Conv(_))) => s,
                    ("Relu", Some(Step::Relu)) => Step::Relu,
                    ("MaxPool", Some(Step::MaxPool)) => Step::MaxPool,
                    ("Gemm" | "MatMul", Some(s @ Step::Dense(_))) => s,
                    ("Softmax", Some(Step::Softmax)) => Step::Softmax,
                    (_, Some(expected)) => {
                        return Err(n.unsupported(format!("the mnist_cnn architecture has {expected} here")))
                    }
                    (_, None) => return Err(n.unsupported("the mnist_cnn architecture ends before it")),
                };
                self.stage += 1;
                match step {
                    Step::Conv(layer) => self.conv(n, act, layer),
                    Step::Relu => {
                        n.only_attributes(&[])?;
                        Ok(act)
                    }
                    Step::MaxPool => self.max_pool(n, act),
                    Step::Dense(layer) => self.dense(n, act, layer),
                    Step::Softmax => self.softmax(n, act),
                }
            }
            other => {
                Err(n.unsupported(format!("operator {} is not part of the mnist_cnn architecture", printable(other))))
            }
        }
    }

    fn dropout(&mut self, n: &NodeRef<'_>, act: Act) -> Result<Act> {
        n.only_attributes(&["ratio", "seed", "is_test"])?;
        if let Some(mode) = self.constant(n, 2)? {
            if !matches!(&mode.data, Data::I64(v) if v.iter().all(|&x| x == 0)) {
                return Err(n.unsupported("dropout in training mode"));
            }
        }
        // Only for the Config: dropout is the identity at inference.
        let ratio = match self.floats(n, 1, "ratio")? {
            Some((_, r)) if r.len() == 1 => Some(r[0]),
            Some(_) => return Err(n.malformed("the ratio is not one number")),
            None => n.attribute("ratio", AttributeType::Float)?.and_then(|a| a.f),
        };
        let slot = if self.stage <= 5 { 0 } else { 1 };
        self.found.dropout[slot] = ratio.or(self.found.dropout[slot]);
        Ok(act)
    }

    fn conv(&mut self, n: &NodeRef<'_>, act: Act, layer: usize) -> Result<Act> {
        n.only_attributes(&["auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"])?;
        n.require_valid_padding()?;
        n.require_all("dilations", 2, 1)?;
        n.require_all("strides", 2, 1)?;
        n.require_all("pads", 4, 0)?;
        if n.int("group", 1)? != 1 {
            return Err(n.unsupported("grouped convolution"));
        }
        let (dims, w) = self.floats(n, 1, "kernel")?.ok_or_else(|| n.malformed("no kernel"))?;
        let &[o, i, kh, kw] = dims.as_slice() else {
            return Err(n.unsupported(format!("a kernel of shape {dims:?}; 2-D convolutions have (O, I, KH, KW)")));
        };
        if kh != kw || o == 0 || i == 0 || kh == 0 {
            return Err(n.unsupported(format!("a {kh}x{kw} kernel with {i} inputs and {o} outputs")));
        }
        if let Some(shape) = n.ints("kernel_shape")? {
            if shape != [kh as i64, kw as i64] {
                return Err(n.malformed(format!("kernel_shape {shape:?} but the kernel is {kh}x{kw}")));
            }
        }
        let bias = match self.floats(n, 2, "bias")? {
            Some((_, b)) if b.len() == o => b,
            Some((d, _)) => return Err(n.malformed(format!("a bias of shape {d:?} for {o} filters"))),
            None => vec![0.0; o],
        };
        let mut hwio = vec![0.0; w.len()];
        oihw_to_hwio(&mut hwio, &w, [o, i, kh, kw]);
        match (layer, act) {
            (0, Act::Input { perm }) => {
                // Conv reads (N, C, H, W): so input axis perm[1] is C, perm[2] H, perm[3] W.
                let layout = match perm {
                    [0, 1, 2, 3] => InputLayout::Nchw,
                    [0, 3, 1, 2] => InputLayout::Nhwc,
                    _ => {
                        return Err(n.unsupported(format!(
                        "it sees the graph input's axes in the order {perm:?}; only NCHW and NHWC inputs are supported"
                    )))
                    }
                };
                let d = self.found.input_dims;
                let image = (d[perm[2] - 1], d[perm[3] - 1], d[perm[1] - 1]);
                if image.2 != i {
                    return Err(n.malformed(format!("the input has {} channels but the kernel takes {i}", image.2)));
                }
                self.found.input_layout = Some(layout);
                self.found.image = image;
            }
            (1, Act::Image { axes: [Axis::N, Axis::C, Axis::H, Axis::W] }) => {
                let previous = self.found.conv[0].as_ref().map_or([0; 3], |c| c.1);
                if i != previous[2] || kh != previous[0] {
                    return Err(n.unsupported(format!(
                        "a {kh}x{kw} kernel over {i} channels after a {k}x{k} convolution with {c} filters",
                        k = previous[0],
                        c = previous[2]
                    )));
                }
            }
            (_, act) => return Err(n.unsupported(format!("it reads a tensor of layout {act:?}, not (N, C, H, W)"))),
        }
        self.found.conv[layer] = Some((hwio, [kh, i, o]));
        self.found.conv_bias[layer] = Some(bias);
        Ok(Act::Image { axes: [Axis::N, Axis::C, Axis::H, Axis::W] })
    }

    fn max_pool(&mut self, n: &NodeRef<'_>, act: Act) -> Result<Act> {
        n.only_attributes(&["auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "storage_order", "strides"])?;
        n.require_valid_padding()?;
        n.require_all("dilations", 2, 1)?;
        n.require_all("pads", 4, 0)?;
        if n.int("ceil_mode", 0)? != 0 {
            return Err(n.unsupported("ceil_mode = 1 (Keras drops a ragged edge)"));
        }
        if n.node.output.get(1).is_some_and(|o| !o.is_empty()) {
            return Err(n.unsupported("the Indices output"));
        }
        let p = match n.ints("kernel_shape")? {
            Some(&[a, b]) if a == b && a > 0 && a <= 1 << 16 => a as usize,
            other => return Err(n.unsupported(format!("kernel_shape {other:?}; a square pooling is needed"))),
        };
        match n.ints("strides")? {
            Some(s) if s == [p as i64, p as i64] => {}
            other => return Err(n.unsupported(format!("strides {other:?} for a {p}x{p} pooling; they must be equal"))),
        }
        if act != (Act::Image { axes: [Axis::N, Axis::C, Axis::H, Axis::W] }) {
            return Err(n.unsupported(format!("it reads a tensor of layout {act:?}, not (N, C, H, W)")));
        }
        self.found.pool = p;
        Ok(act)
    }

    /// The pooled map's (HP, WP, C2), known once the pooling has been read.
    fn pooled(&self) -> (usize, usize, usize) {
        let (h, w, _) = self.found.image;
        let k = self.found.conv[0].as_ref().map_or(1, |c| c.1[0]);
        let c2 = self.found.conv[1].as_ref().map_or(0, |c| c.1[2]);
        let p = self.found.pool.max(1);
        let shrink = 2 * (k - 1);
        (h.saturating_sub(shrink) / p, w.saturating_sub(shrink) / p, c2)
    }

    fn flatten(&mut self, n: &NodeRef<'_>, act: Act) -> Result<Act> {
        let Act::Image { axes } = act else {
            return Err(n.unsupported(format!("it reshapes a tensor of layout {act:?}")));
        };
        if STEPS.get(self.stage) != Some(&Step::Dense(0)) {
            return Err(n.unsupported("the mnist_cnn architecture flattens right after the pooling"));
        }
        let [Axis::N, a, b, c] = axes else {
            return Err(n.unsupported(format!("it flattens {axes:?}, whose batch axis is not first")));
        };
        let (hp, wp, c2) = self.pooled();
        let features = (hp * wp * c2) as i64;
        if n.op() == "Flatten" {
            n.only_attributes(&["axis"])?;
            if !matches!(n.int("axis", 1)?, 1 | -3) {
                return Err(n.unsupported("a Flatten not at axis 1"));
            }
        } else {
            n.only_attributes(&["allowzero"])?;
            let shape = match self.constant(n, 1)? {
                Some(Tensor { data: Data::I64(v), .. }) => v.clone(),
                _ => return Err(n.unsupported("a Reshape whose shape is not a constant int64 tensor")),
            };
            let allow_zero = n.int("allowzero", 0)? != 0;
            match shape.as_slice() {
                [-1, f] if *f == features || *f == -1 => {}
                [0, f] if !allow_zero && (*f == features || *f == -1) => {}
                _ => {
                    // A hostile shape may hold millions of entries: name only short ones.
                    let to =
                        if shape.len() <= 8 { format!("{shape:?}") } else { format!("{} dimensions", shape.len()) };
                    return Err(n.unsupported(format!(
                        "a Reshape to {to}; flattening (N, {hp}, {wp}, {c2}) keeps the batch: (-1, {features})"
                    )));
                }
            }
        }
        Ok(Act::Flat { order: [a, b, c] })
    }

    fn dense(&mut self, n: &NodeRef<'_>, act: Act, layer: usize) -> Result<Act> {
        let (mut kernel, bias, inputs, units);
        if n.op() == "Gemm" {
            n.only_attributes(&["alpha", "beta", "transA", "transB"])?;
            if n.int("transA", 0)? != 0 {
                return Err(n.unsupported("transA = 1"));
            }
            let (alpha, beta) = (n.float("alpha", 1.0)?, n.float("beta", 1.0)?);
            let (dims, w) = self.floats(n, 1, "kernel")?.ok_or_else(|| n.malformed("no kernel"))?;
            let &[rows, cols] = dims.as_slice() else {
                return Err(n.unsupported(format!("a kernel of shape {dims:?}")));
            };
            if n.int("transB", 0)? != 0 {
                kernel = vec![0.0; w.len()];
                transpose(&mut kernel, &w, rows, cols);
                (inputs, units) = (cols, rows);
            } else {
                (kernel, inputs, units) = (w, rows, cols);
            }
            kernel.iter_mut().for_each(|v| *v *= alpha);
            bias = match self.floats(n, 2, "bias")? {
                Some((d, b)) if b.len() == units && d.iter().filter(|&&x| x != 1).count() <= 1 => {
                    b.iter().map(|v| v * beta).collect()
                }
                Some((d, _)) => return Err(n.unsupported(format!("a bias of shape {d:?} for {units} units"))),
                None => vec![0.0; units],
            };
        } else {
            n.only_attributes(&[])?;
            let (dims, w) = self.floats(n, 1, "kernel")?.ok_or_else(|| n.malformed("no kernel"))?;
            let &[rows, cols] = dims.as_slice() else {
                return Err(n.unsupported(format!("a kernel of shape {dims:?}")));
            };
            (kernel, inputs, units) = (w, rows, cols);
            bias = vec![0.0; units];
            self.found.bias_pending = Some(layer);
        }
        match (layer, act) {
            (0, Act::Flat { order }) => {
                let (hp, wp, c2) = self.pooled();
                if inputs != hp * wp * c2 {
                    return Err(n.malformed(format!(
                        "the kernel takes {inputs} inputs but the pooled map is {hp}x{wp}x{c2} = {}",
                        hp * wp * c2
                    )));
                }
                let mut ours = vec![0.0; kernel.len()];
                dense_rows_to_hwc(&mut ours, &kernel, order, (hp, wp, c2));
                kernel = ours;
            }
            (1, Act::Units) => {
                let hidden = self.found.dense[0].as_ref().map_or(0, |d| d.1[1]);
                if inputs != hidden {
                    return Err(
                        n.malformed(format!("the kernel takes {inputs} inputs but dense layer 1 has {hidden} units"))
                    );
                }
            }
            (_, act) => return Err(n.unsupported(format!("it reads a tensor of layout {act:?}"))),
        }
        self.found.dense[layer] = Some((kernel, [inputs, units]));
        self.found.dense_bias[layer] = Some(bias);
        Ok(Act::Units)
    }

    fn softmax(&mut self, n: &NodeRef<'_>, act: Act) -> Result<Act> {
        n.only_attributes(&["axis"])?;
        let axis = n.int("axis", if self.opset >= 13 { -1 } else { 1 })?;
        if !matches!(axis, 1 | -1) || act != Act::Units {
            return Err(n.unsupported(format!("a softmax over axis {axis} of {act:?}")));
        }
        self.found.softmax = true;
        Ok(act)
    }

    /// Checks the chain is complete and ends at the graph's output, and builds the result.
    fn finish(self, graph: &super::proto::GraphProto, model: &ModelProto) -> Result<Imported> {
        if self.stage < REQUIRED_STEPS {
            return Err(Error::unsupported(
                "ONNX graph",
                format!("it ends before {}, which the mnist_cnn architecture has", STEPS[self.stage]),
            ));
        }
        let output = match graph.output.as_slice() {
            [o] => o.name.clone().unwrap_or_default(),
            outputs => {
                return Err(Error::unsupported("ONNX graph", format!("{} outputs; one is needed", outputs.len())))
            }
        };
        if Some(&output) != self.current.as_ref() {
            return Err(Error::unsupported(
                "ONNX graph",
                format!("its output {output:?} is not the end of the chain ({:?})", self.current.unwrap_or_default()),
            ));
        }
        let f = self.found;
        let missing = || Error::malformed("ONNX graph", "a layer has no weights");
        let (conv1, conv2) = (f.conv[0].as_ref().ok_or_else(missing)?, f.conv[1].as_ref().ok_or_else(missing)?);
        let (dense1, dense2) = (f.dense[0].as_ref().ok_or_else(missing)?, f.dense[1].as_ref().ok_or_else(missing)?);
        let (height, width, channels) = f.image;
        let config = Config {
            height,
            width,
            channels,
            conv1_filters: conv1.1[2],
            conv2_filters: conv2.1[2],
            kernel: conv1.1[0],
            pool: f.pool,
            hidden: dense1.1[1],
            classes: dense2.1[1],
            dropout1: f.dropout[0].filter(|r| (0.0..1.0).contains(r)).unwrap_or(0.25),
            dropout2: f.dropout[1].filter(|r| (0.0..1.0).contains(r)).unwrap_or(0.5),
        };
        config.validate()?;
        let layout = config.layout();
        let biases = [&f.conv_bias[0], &f.conv_bias[1], &f.dense_bias[0], &f.dense_bias[1]];
        let parts: [&[f32]; 8] = [
            &conv1.0,
            biases[0].as_deref().unwrap_or(&[]),
            &conv2.0,
            biases[1].as_deref().unwrap_or(&[]),
            &dense1.0,
            biases[2].as_deref().unwrap_or(&[]),
            &dense2.0,
            biases[3].as_deref().unwrap_or(&[]),
        ];
        let mut params = Vec::with_capacity(layout.total());
        for (slot, part) in layout.slots.iter().zip(parts) {
            if part.len() != slot.len {
                return Err(Error::ShapeMismatch {
                    what: format!("ONNX weights for {}", slot.name),
                    expected: slot.shape.clone(),
                    actual: vec![part.len()],
                });
            }
            if part.iter().any(|v| !v.is_finite()) {
                return Err(Error::malformed(
                    format!("ONNX weights for {}", slot.name),
                    "they hold NaN or infinite values",
                ));
            }
            params.extend_from_slice(part);
        }
        let producer = match (model.producer_name.as_deref(), model.producer_version.as_deref()) {
            (Some(name), Some(version)) if !version.is_empty() => format!("{name} {version}"),
            (name, _) => String::from(name.unwrap_or("")),
        };
        Ok(Imported {
            config,
            params,
            dtype: f.dtype.unwrap_or(Dtype::F32),
            input_layout: f.input_layout.unwrap_or(InputLayout::Nhwc),
            softmax_output: f.softmax,
            producer,
            opset: self.opset,
        })
    }
}

/// A Transpose's `perm` (default: the axes reversed), checked to be a permutation of `rank` axes.
fn permutation(n: &NodeRef<'_>, perm: Option<&[i64]>, rank: usize) -> Result<Vec<usize>> {
    let perm: Vec<usize> = match perm {
        None => (0..rank).rev().collect(),
        Some(p) => p.iter().map(|&a| usize::try_from(a).unwrap_or(usize::MAX)).collect(),
    };
    let mut seen = vec![false; rank];
    if perm.len() != rank || perm.iter().any(|&a| a >= rank || core::mem::replace(&mut seen[a], true)) {
        return Err(n.malformed(format!("perm {perm:?} is not a permutation of {rank} axes")));
    }
    Ok(perm)
}

/// Output axis i is input axis perm[i].
fn transpose_tensor(t: &Tensor, perm: &[usize]) -> Tensor {
    let dims: Vec<usize> = perm.iter().map(|&a| t.dims[a]).collect();
    let rank = dims.len();
    // Strides of the input, in input axis order.
    let mut strides = vec![1usize; rank];
    for a in (0..rank.saturating_sub(1)).rev() {
        strides[a] = strides[a + 1] * t.dims[a + 1];
    }
    let count: usize = dims.iter().product();
    let source_index = |mut flat: usize| {
        let mut at = 0;
        for axis in (0..rank).rev() {
            at += (flat % dims[axis]) * strides[perm[axis]];
            flat /= dims[axis];
        }
        at
    };
    let data = match &t.data {
        Data::F32(v) => Data::F32(Rc::new((0..count).map(|i| v[source_index(i)]).collect())),
        Data::I64(v) => Data::I64(Rc::new((0..count).map(|i| v[source_index(i)]).collect())),
    };
    Tensor { dims, data, stored: t.stored }
}

/// A TensorProto's values: float, float16 or int64 (as Reshape shapes), stored in raw_data or
/// in the typed fields. Sizes are checked against the data actually present before converting.
fn read_tensor(t: &TensorProto, name: &str) -> Result<Tensor> {
    let what = || format!("ONNX tensor {name:?}");
    if t.data_location == Some(DataLocation::External as i32) || !t.external_data.is_empty() {
        return Err(Error::unsupported(
            what(),
            "its data is in an external file (save the model with its data inside)",
        ));
    }
    if t.segment.is_some() {
        return Err(Error::unsupported(what(), "segments"));
    }
    let mut dims = Vec::with_capacity(t.dims.len());
    let mut count: usize = 1;
    for &d in &t.dims {
        let d = usize::try_from(d).map_err(|_| Error::malformed(what(), format!("dimension {d} is negative")))?;
        count = count
            .checked_mul(d)
            .ok_or_else(|| Error::malformed(what(), format!("the product of its dimensions {:?} overflows", t.dims)))?;
        dims.push(d);
    }
    let raw = t.raw_data.as_deref();
    let data_type = t.data_type.and_then(|v| DataType::try_from(v).ok());
    // Each source must hold exactly `count` values; checked before anything is allocated.
    let check = |present: usize, unit: usize| -> Result<()> {
        if present == count.saturating_mul(unit) {
            Ok(())
        } else {
            Err(Error::malformed(
                what(),
                format!("its shape {dims:?} needs {count} values but {} are stored", present / unit.max(1)),
            ))
        }
    };
    let typed_and_raw = |typed: usize| {
        if raw.is_some() && typed > 0 {
            Err(Error::malformed(what(), "it has both raw_data and typed data"))
        } else {
            Ok(())
        }
    };
    let (data, stored) = match data_type {
        Some(DataType::Float) => {
            typed_and_raw(t.float_data.len())?;
            let v = match raw {
                Some(raw) => {
                    check(raw.len(), 4)?;
                    raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
                }
                None => {
                    check(t.float_data.len(), 1)?;
                    t.float_data.clone()
                }
            };
            (Data::F32(Rc::new(v)), Dtype::F32)
        }
        Some(DataType::Float16) => {
            typed_and_raw(t.int32_data.len())?;
            let v = match raw {
                Some(raw) => {
                    check(raw.len(), 2)?;
                    raw.chunks_exact(2).map(|b| f32::from(half::f16::from_le_bytes([b[0], b[1]]))).collect()
                }
                None => {
                    check(t.int32_data.len(), 1)?;
                    // Each int32 holds one float16's bits.
                    let mut v = Vec::with_capacity(count);
                    for &bits in &t.int32_data {
                        let bits = u16::try_from(bits)
                            .map_err(|_| Error::malformed(what(), format!("{bits} is not a float16's bits")))?;
                        v.push(f32::from(half::f16::from_bits(bits)));
                    }
                    v
                }
            };
            (Data::F32(Rc::new(v)), Dtype::F16)
        }
        Some(DataType::Int64) => {
            typed_and_raw(t.int64_data.len())?;
            let v = match raw {
                Some(raw) => {
                    check(raw.len(), 8)?;
                    raw.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8]))).collect()
                }
                None => {
                    check(t.int64_data.len(), 1)?;
                    t.int64_data.clone()
                }
            };
            (Data::I64(Rc::new(v)), Dtype::F32)
        }
        other => {
            return Err(Error::unsupported(
                what(),
                format!("data type {}", other.map_or_else(|| format!("{:?}", t.data_type), |t| t.as_str_name().into())),
            ))
        }
    };
    Ok(Tensor { dims, data, stored })
}
