//! MXNet symbol files (`prefix-symbol.json`, nnvm's graph JSON): building the graph of our
//! architecture from a `Config`, and reading a graph back into the few facts import needs.
//! Leaves out evaluating graphs: reading checks the layer sequence and its attributes, not every edge.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::config::{self, Config};
use crate::error::{Error, Result};

/// The keras-mxnet export's input name, which the sample's inference code binds by.
pub const INPUT_NAME: &str = "/conv2d_1_input1";
/// The last node; MXNet names the model's output `softmax1_output`, as keras-mxnet's does.
const OUTPUT_NODE: &str = "softmax1";
/// A graph attribute only our exports carry; MXNet keeps unknown graph attributes and ignores them.
pub const EXPORT_MARKER: &str = "mnist_rs_version";
/// The MXNet version our graphs are written for (1.9.1).
const MXNET_VERSION: i64 = 10901;

#[derive(Serialize, Deserialize)]
struct Graph {
    nodes: Vec<Node>,
    arg_nodes: Vec<usize>,
    heads: Vec<Vec<u64>>,
    #[serde(default)]
    attrs: BTreeMap<String, serde_json::Value>,
}

#[derive(Serialize, Deserialize)]
struct Node {
    op: String,
    name: String,
    // MXNet before 1.0 wrote "attr" or "param"; both mean the same.
    #[serde(default, alias = "attr", alias = "param", skip_serializing_if = "BTreeMap::is_empty")]
    attrs: BTreeMap<String, String>,
    inputs: Vec<Vec<u64>>,
}

/// The parameter names our exports use: keras-mxnet's, e.g. `conv2d_1/kernel1`.
pub fn export_param_name(slot_name: &str) -> String {
    format!("{slot_name}1")
}

fn tuple(values: &[usize]) -> String {
    let parts: Vec<String> = values.iter().map(|v| v.to_string()).collect();
    if parts.len() == 1 {
        format!("({},)", parts[0])
    } else {
        format!("({})", parts.join(", "))
    }
}

/// Appends nodes in order; each node's inputs precede it, as nnvm requires.
struct Builder {
    nodes: Vec<Node>,
    arg_nodes: Vec<usize>,
}

impl Builder {
    fn variable(&mut self, name: &str, shape: &[usize]) -> usize {
        let mut attrs = BTreeMap::new();
        attrs.insert(String::from("__dtype__"), String::from("0"));
        // Module.bind infers shapes from the input's only; through the transposes below it
        // cannot infer a kernel's, so every variable states its own.
        attrs.insert(String::from("__shape__"), tuple(shape));
        attrs.insert(String::from("__storage_type__"), String::from("0"));
        self.arg_nodes.push(self.nodes.len());
        self.push("null", name, attrs, &[])
    }

    fn op(&mut self, op: &str, name: &str, attrs: &[(&str, String)], inputs: &[usize]) -> usize {
        let attrs = attrs.iter().map(|(k, v)| (String::from(*k), v.clone())).collect();
        self.push(op, name, attrs, inputs)
    }

    fn push(&mut self, op: &str, name: &str, attrs: BTreeMap<String, String>, inputs: &[usize]) -> usize {
        let inputs = inputs.iter().map(|&i| vec![i as u64, 0, 0]).collect();
        self.nodes.push(Node { op: String::from(op), name: String::from(name), attrs, inputs });
        self.nodes.len() - 1
    }

    /// Convolution on NCHW data from a kernel stored HWIO (Keras's layout), plus relu.
    fn conv_relu(&mut self, layer: &str, x: usize, kernel: &config::ParamSlot, bias: &config::ParamSlot) -> usize {
        let (k, filters) = (kernel.shape[0], kernel.shape[3]);
        let w = self.variable(&export_param_name(&kernel.name), &kernel.shape);
        let w = self.op("transpose", &format!("{layer}/kernel_oihw"), &[("axes", tuple(&[3, 2, 0, 1]))], &[w]);
        let b = self.variable(&export_param_name(&bias.name), &bias.shape);
        let attrs = [
            ("kernel", tuple(&[k, k])),
            ("num_filter", filters.to_string()),
            ("stride", tuple(&[1, 1])),
            ("pad", tuple(&[0, 0])),
            ("dilate", tuple(&[1, 1])),
            ("layout", String::from("NCHW")),
            ("no_bias", String::from("False")),
        ];
        let y = self.op("Convolution", &format!("{layer}/convolution"), &attrs, &[x, w, b]);
        self.op("Activation", &format!("{layer}/relu"), &[("act_type", String::from("relu"))], &[y])
    }

    /// FullyConnected from a kernel stored (in, out), Keras's layout.
    fn dense(&mut self, layer: &str, x: usize, kernel: &config::ParamSlot, bias: &config::ParamSlot) -> usize {
        let w = self.variable(&export_param_name(&kernel.name), &kernel.shape);
        let w = self.op("transpose", &format!("{layer}/kernel_oi"), &[("axes", tuple(&[1, 0]))], &[w]);
        let b = self.variable(&export_param_name(&bias.name), &bias.shape);
        let attrs = [
            ("num_hidden", kernel.shape[1].to_string()),
            ("flatten", String::from("True")),
            ("no_bias", String::from("False")),
        ];
        self.op("FullyConnected", &format!("{layer}/dense"), &attrs, &[x, w, b])
    }
}

/// The symbol JSON of `config`'s model with keras-mxnet's interface: input `/conv2d_1_input1`
/// (N, H, W, C) float32, output softmax probabilities (N, classes), parameters in Keras shapes.
pub fn export_symbol(config: &Config) -> Result<String> {
    config.validate()?;
    let layout = config.layout();
    let slot = |i: usize| &layout.slots[i];
    let mut g = Builder { nodes: Vec::new(), arg_nodes: Vec::new() };
    let x = g.variable(INPUT_NAME, &[0, config.height, config.width, config.channels]);
    // MXNet's CPU convolution and pooling want NCHW; transpose in, and back before flattening
    // so the dense kernel sees Keras's HWC order.
    let x = g.op("transpose", "input_nchw", &[("axes", tuple(&[0, 3, 1, 2]))], &[x]);
    let x = g.conv_relu("conv2d_1", x, slot(config::CONV1_KERNEL), slot(config::CONV1_BIAS));
    let x = g.conv_relu("conv2d_2", x, slot(config::CONV2_KERNEL), slot(config::CONV2_BIAS));
    let p = config.pool;
    let pool_attrs = [
        ("kernel", tuple(&[p, p])),
        ("stride", tuple(&[p, p])),
        ("pad", tuple(&[0, 0])),
        ("pool_type", String::from("max")),
        ("pooling_convention", String::from("valid")),
    ];
    let x = g.op("Pooling", "max_pooling2d_1/pool", &pool_attrs, &[x]);
    // Dropout is the identity at inference; kept so the graph states the rates it was trained with.
    let x = g.op("Dropout", "dropout_1/dropout", &[("p", format!("{}", config.dropout1))], &[x]);
    let x = g.op("transpose", "pool_nhwc", &[("axes", tuple(&[0, 2, 3, 1]))], &[x]);
    let x = g.op("Flatten", "flatten_1/flatten", &[], &[x]);
    let x = g.dense("dense_1", x, slot(config::DENSE1_KERNEL), slot(config::DENSE1_BIAS));
    let x = g.op("Activation", "dense_1/relu", &[("act_type", String::from("relu"))], &[x]);
    let x = g.op("Dropout", "dropout_2/dropout", &[("p", format!("{}", config.dropout2))], &[x]);
    let x = g.dense("dense_2", x, slot(config::DENSE2_KERNEL), slot(config::DENSE2_BIAS));
    let x = g.op("softmax", OUTPUT_NODE, &[("axis", String::from("-1"))], &[x]);

    let mut attrs = BTreeMap::new();
    attrs.insert(String::from("mxnet_version"), serde_json::json!(["int", MXNET_VERSION]));
    attrs.insert(String::from(EXPORT_MARKER), serde_json::json!(["str", env!("CARGO_PKG_VERSION")]));
    let graph = Graph { nodes: g.nodes, arg_nodes: g.arg_nodes, heads: vec![vec![x as u64, 0, 0]], attrs };
    serde_json::to_string_pretty(&graph).map_err(|e| Error::invalid("symbol", format!("{e}")))
}

/// What import needs from a symbol graph.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphFacts {
    /// The input variable's name and its `__shape__` if the graph stores one (batch dim 0).
    pub input_name: String,
    pub input_shape: Option<Vec<usize>>,
    /// The eight parameter variables in graph order: conv1 kernel, bias, conv2 kernel, bias,
    /// dense1 kernel, bias, dense2 kernel, bias.
    pub params: Vec<String>,
    /// Each parameter's `__shape__` where the graph states one; 0 means "inferred later".
    pub param_shapes: Vec<Option<Vec<usize>>>,
    pub pool: usize,
    pub dropout1: Option<f32>,
    pub dropout2: Option<f32>,
    /// Whether the graph ends in a softmax (probabilities) or at the logits.
    pub softmax: bool,
    /// Whether the graph carries our export's marker attribute.
    pub ours: bool,
}

/// The layers that matter for what the graph computes; layout plumbing is skipped.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Layer {
    Conv,
    Relu,
    Pool(usize),
    Dropout(f32),
    Dense,
    Softmax,
}

const WHAT: &str = "MXNet symbol";

/// Parses MXNet's tuple strings: "(3, 3)", "[0, 3, 1, 2]", "(32,)", and Python 2's "(3L, 3L)".
pub fn parse_tuple(text: &str) -> Option<Vec<i64>> {
    let inner = text.trim().strip_prefix(['(', '['])?.strip_suffix([')', ']'])?;
    let mut out = Vec::new();
    for part in inner.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        out.push(part.strip_suffix('L').unwrap_or(part).parse().ok()?);
    }
    Some(out)
}

fn is_true(text: &str) -> bool {
    matches!(text, "True" | "true" | "1")
}

/// Checks an optional tuple attribute: absent, or every entry equal to `value`.
fn check_all(node: &Node, key: &str, value: i64) -> Result<()> {
    match node.attrs.get(key) {
        None => Ok(()),
        Some(text) => match parse_tuple(text) {
            Some(t) if t.iter().all(|&v| v == value) => Ok(()),
            _ => Err(unsupported_attr(node, key, text)),
        },
    }
}

fn unsupported_attr(node: &Node, key: &str, value: &str) -> Error {
    Error::unsupported(WHAT, format!("{} {:?} with {key} = {value:?}", node.op, node.name))
}

/// A square `kernel` attribute's side, within Config's limit so later arithmetic cannot overflow.
fn square_kernel(node: &Node) -> Result<usize> {
    let text = node.attrs.get("kernel").map(String::as_str).unwrap_or("");
    match parse_tuple(text).as_deref() {
        Some(&[a, b]) if a == b && a > 0 && a <= 1 << 16 => Ok(a as usize),
        _ => Err(unsupported_attr(node, "kernel", text)),
    }
}

fn classify(node: &Node) -> Result<Option<Layer>> {
    let attr = |key: &str| node.attrs.get(key).map(String::as_str);
    let layer = match node.op.as_str() {
        "null" | "transpose" | "broadcast_add" | "Flatten" | "flatten" => return Ok(None),
        "Convolution" => {
            square_kernel(node)?;
            check_all(node, "stride", 1)?;
            check_all(node, "dilate", 1)?;
            check_all(node, "pad", 0)?;
            if let Some(g) = attr("num_group").filter(|g| *g != "1") {
                return Err(unsupported_attr(node, "num_group", g));
            }
            if let Some(l) = attr("layout").filter(|l| *l != "NCHW" && *l != "None") {
                return Err(unsupported_attr(node, "layout", l));
            }
            Layer::Conv
        }
        "FullyConnected" => Layer::Dense,
        "dot" => {
            for key in ["transpose_a", "transpose_b"] {
                if let Some(t) = attr(key).filter(|t| is_true(t)) {
                    return Err(unsupported_attr(node, key, t));
                }
            }
            Layer::Dense
        }
        "relu" => Layer::Relu,
        "Activation" => match attr("act_type") {
            Some("relu") => Layer::Relu,
            other => return Err(unsupported_attr(node, "act_type", other.unwrap_or(""))),
        },
        // keras-mxnet writes relu as a leaky relu of slope 0.
        "LeakyReLU" => {
            let act = attr("act_type").unwrap_or("leaky");
            let slope = attr("slope").unwrap_or("0.25");
            if act != "leaky" {
                return Err(unsupported_attr(node, "act_type", act));
            }
            if slope.parse::<f64>().ok() != Some(0.0) {
                return Err(unsupported_attr(node, "slope", slope));
            }
            Layer::Relu
        }
        "Pooling" => {
            let p = square_kernel(node)?;
            if let Some(t) = attr("pool_type").filter(|t| *t != "max") {
                return Err(unsupported_attr(node, "pool_type", t));
            }
            if let Some(t) = attr("global_pool").filter(|t| is_true(t)) {
                return Err(unsupported_attr(node, "global_pool", t));
            }
            if let Some(t) = attr("pooling_convention").filter(|t| *t != "valid") {
                return Err(unsupported_attr(node, "pooling_convention", t));
            }
            // MXNet's default stride is 1, so it must be stated and equal the kernel.
            check_all(node, "stride", p as i64)?;
            if attr("stride").is_none() {
                return Err(unsupported_attr(node, "stride", "(1, 1)"));
            }
            check_all(node, "pad", 0)?;
            Layer::Pool(p)
        }
        "Dropout" => {
            let text = attr("p").unwrap_or("0.5");
            match text.parse::<f32>() {
                Ok(p) if (0.0..1.0).contains(&p) => Layer::Dropout(p),
                _ => return Err(unsupported_attr(node, "p", text)),
            }
        }
        "softmax" | "SoftmaxActivation" | "SoftmaxOutput" => {
            if let Some(axis) = attr("axis").filter(|a| *a != "-1" && *a != "1") {
                return Err(unsupported_attr(node, "axis", axis));
            }
            Layer::Softmax
        }
        other => {
            return Err(Error::unsupported(WHAT, format!("operator {other} (node {:?})", node.name)));
        }
    };
    Ok(Some(layer))
}

/// Reads a symbol graph and checks it is conv-relu-conv-relu-maxpool-[dropout]-dense-relu-
/// [dropout]-dense-[softmax] with eight parameter variables.
pub fn read_symbol(json: &[u8]) -> Result<GraphFacts> {
    let graph: Graph =
        serde_json::from_slice(json).map_err(|e| Error::malformed(WHAT, format!("not an MXNet graph JSON: {e}")))?;
    if graph.nodes.is_empty() {
        return Err(Error::malformed(WHAT, "the graph has no nodes"));
    }
    // nnvm writes nodes in topological order; requiring it rules out cycles and dangling edges.
    for (i, node) in graph.nodes.iter().enumerate() {
        for input in &node.inputs {
            if !(2..=3).contains(&input.len()) || input[0] >= i as u64 {
                return Err(Error::malformed(
                    WHAT,
                    format!("node {i} ({:?}) has input {input:?}, which is not an earlier node", node.name),
                ));
            }
        }
    }
    for &a in &graph.arg_nodes {
        if graph.nodes.get(a).map(|n| n.op.as_str()) != Some("null") {
            return Err(Error::malformed(WHAT, format!("arg_nodes entry {a} is not a variable node")));
        }
    }
    let last = graph.nodes.len() as u64 - 1;
    if graph.heads.len() != 1 || graph.heads[0].first() != Some(&last) {
        return Err(Error::unsupported(WHAT, "outputs other than the one last node"));
    }

    let mut variables = graph.nodes.iter().filter(|n| n.op == "null");
    let input = variables.next().ok_or_else(|| Error::malformed(WHAT, "the graph has no input variable"))?;
    // Labels (e.g. SoftmaxOutput's) are variables too, but not parameters.
    let param_nodes: Vec<&Node> = variables.filter(|n| !n.name.ends_with("label")).collect();
    let params: Vec<String> = param_nodes.iter().map(|n| n.name.clone()).collect();
    if params.len() != 8 {
        return Err(Error::malformed(
            WHAT,
            format!("expected 8 parameter variables (kernel and bias of 4 layers), found {}: {params:?}", params.len()),
        ));
    }
    let input_shape = stated_shape(input)?;
    let param_shapes = param_nodes.iter().map(|n| stated_shape(n)).collect::<Result<_>>()?;

    let mut layers = Vec::new();
    for node in &graph.nodes {
        if let Some(layer) = classify(node)? {
            layers.push(layer);
        }
    }
    let mismatch = || {
        Error::unsupported(
            WHAT,
            format!(
                "layer sequence {layers:?}; only conv, relu, conv, relu, maxpool, [dropout], dense, relu, [dropout], dense, [softmax] is read"
            ),
        )
    };
    use Layer::{Conv, Dense, Pool, Relu, Softmax};
    let (pool, rest) = match layers.as_slice() {
        [Conv, Relu, Conv, Relu, Pool(p), rest @ ..] => (*p, rest),
        _ => return Err(mismatch()),
    };
    let (dropout1, rest) = split_dropout(rest);
    let rest = match rest {
        [Dense, Relu, rest @ ..] => rest,
        _ => return Err(mismatch()),
    };
    let (dropout2, rest) = split_dropout(rest);
    let softmax = match rest {
        [Dense] => false,
        [Dense, Softmax] => true,
        _ => return Err(mismatch()),
    };

    Ok(GraphFacts {
        input_name: input.name.clone(),
        input_shape,
        params,
        param_shapes,
        pool,
        dropout1,
        dropout2,
        softmax,
        ours: graph.attrs.contains_key(EXPORT_MARKER),
    })
}

/// A variable's `__shape__` attribute, if it has one.
fn stated_shape(node: &Node) -> Result<Option<Vec<usize>>> {
    match node.attrs.get("__shape__") {
        None => Ok(None),
        Some(text) => match parse_tuple(text) {
            Some(dims) if dims.iter().all(|&d| usize::try_from(d).is_ok()) => {
                Ok(Some(dims.iter().map(|&d| d as usize).collect()))
            }
            _ => Err(Error::malformed(WHAT, format!("variable {:?} has __shape__ {text:?}", node.name))),
        },
    }
}

fn split_dropout(layers: &[Layer]) -> (Option<f32>, &[Layer]) {
    match layers {
        [Layer::Dropout(p), rest @ ..] => (Some(*p), rest),
        _ => (None, layers),
    }
}
