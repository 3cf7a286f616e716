//! Writing our model as an ONNX graph: [Transpose to NCHW] -> Conv -> Relu -> Conv -> Relu ->
//! MaxPool -> Transpose to NHWC -> Flatten (so the rows are our HWC order) -> Gemm -> Relu ->
//! Gemm -> Softmax, batch dimension dynamic. Leaves out dropout (identity at inference).

use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use prost::Message;

use super::layout::hwio_to_oihw;
use super::proto::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto, AttributeProto, GraphProto,
    ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};
use super::{Dtype, ExportOptions, InputLayout, EXPORT_MARKER, INPUT_NAME, IR_VERSION, OPSET, OUTPUT_NAME};
use crate::config::{self, Config};
use crate::error::{Error, Result};

/// The ONNX file of `params` (a flat buffer in `config.layout()` order). Non-finite values,
/// and values beyond float16's range when storing float16, are refused.
pub fn export(config: &Config, params: &[f32], options: ExportOptions) -> Result<Vec<u8>> {
    config.validate()?;
    let layout = config.layout();
    if params.len() != layout.total() {
        return Err(Error::invalid(
            "parameters",
            format!("{} values given but the model has {}", params.len(), layout.total()),
        ));
    }
    let limit = if options.dtype == Dtype::F16 { f32::from(half::f16::MAX) } else { f32::MAX };
    for slot in &layout.slots {
        if let Some(v) = params[slot.span().range()].iter().find(|v| !v.is_finite() || v.abs() > limit) {
            return Err(Error::invalid(
                "parameters",
                format!("{} holds {v}, which {:?} cannot store", slot.name, options.dtype),
            ));
        }
    }

    let mut graph = Graph { nodes: Vec::new(), initializers: Vec::new(), dtype: options.dtype };
    let weight = |index: usize| &params[layout.span(index).range()];
    let (k, c, c1, c2) = (config.kernel, config.channels, config.conv1_filters, config.conv2_filters);
    let mut oihw1 = vec![0.0; weight(config::CONV1_KERNEL).len()];
    hwio_to_oihw(&mut oihw1, weight(config::CONV1_KERNEL), [k, k, c, c1]);
    let mut oihw2 = vec![0.0; weight(config::CONV2_KERNEL).len()];
    hwio_to_oihw(&mut oihw2, weight(config::CONV2_KERNEL), [k, k, c1, c2]);
    let conv1_w = graph.weight("conv2d_1/kernel", &[c1, c, k, k], &oihw1);
    let conv1_b = graph.weight("conv2d_1/bias", &[c1], weight(config::CONV1_BIAS));
    let conv2_w = graph.weight("conv2d_2/kernel", &[c2, c1, k, k], &oihw2);
    let conv2_b = graph.weight("conv2d_2/bias", &[c2], weight(config::CONV2_BIAS));
    // Gemm reads the dense kernels as Keras stores them, (in, out), with transB = 0.
    let dense1_w = graph.weight("dense_1/kernel", &[config.flat_len(), config.hidden], weight(config::DENSE1_KERNEL));
    let dense1_b = graph.weight("dense_1/bias", &[config.hidden], weight(config::DENSE1_BIAS));
    let dense2_w = graph.weight("dense_2/kernel", &[config.hidden, config.classes], weight(config::DENSE2_KERNEL));
    let dense2_b = graph.weight("dense_2/bias", &[config.classes], weight(config::DENSE2_BIAS));

    let input_dims = match options.input_layout {
        InputLayout::Nhwc => [config.height, config.width, c],
        InputLayout::Nchw => [c, config.height, config.width],
    };
    let mut x = String::from(INPUT_NAME);
    if options.input_layout == InputLayout::Nhwc {
        x = graph.node("Transpose", "to_nchw", &[&x], vec![ints("perm", &[0, 3, 1, 2])]);
    }
    let conv = |k: usize| vec![ints("kernel_shape", &[k as i64, k as i64]), ints("strides", &[1, 1])];
    x = graph.node("Conv", "conv2d_1", &[&x, &conv1_w, &conv1_b], conv(k));
    x = graph.node("Relu", "conv2d_1/relu", &[&x], vec![]);
    x = graph.node("Conv", "conv2d_2", &[&x, &conv2_w, &conv2_b], conv(k));
    x = graph.node("Relu", "conv2d_2/relu", &[&x], vec![]);
    let p = config.pool as i64;
    x = graph.node("MaxPool", "max_pooling2d_1", &[&x], vec![ints("kernel_shape", &[p, p]), ints("strides", &[p, p])]);
    // Back to NHWC so that Flatten's order is Keras's HWC, the order of dense_1's rows.
    x = graph.node("Transpose", "to_nhwc", &[&x], vec![ints("perm", &[0, 2, 3, 1])]);
    x = graph.node("Flatten", "flatten_1", &[&x], vec![int("axis", 1)]);
    x = graph.node("Gemm", "dense_1", &[&x, &dense1_w, &dense1_b], vec![]);
    x = graph.node("Relu", "dense_1/relu", &[&x], vec![]);
    x = graph.node("Gemm", "dense_2", &[&x, &dense2_w, &dense2_b], vec![]);
    graph.node_to("Softmax", "softmax", &[&x], vec![int("axis", 1)], OUTPUT_NAME);

    let doc = format!(
        "Keras mnist_cnn ({} parameters) exported by mnist {}: input {INPUT_NAME} is float32 {} in [0, 1], \
         output {OUTPUT_NAME} the {} class probabilities.",
        config.param_count(),
        env!("CARGO_PKG_VERSION"),
        match options.input_layout {
            InputLayout::Nhwc => "(N, H, W, C)",
            InputLayout::Nchw => "(N, C, H, W)",
        },
        config.classes
    );
    let model = ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(OPSET) }],
        producer_name: Some(String::from("mnist")),
        producer_version: Some(String::from(env!("CARGO_PKG_VERSION"))),
        model_version: Some(1),
        doc_string: Some(doc),
        metadata_props: vec![StringStringEntryProto {
            key: Some(String::from(EXPORT_MARKER)),
            value: Some(String::from(env!("CARGO_PKG_VERSION"))),
        }],
        graph: Some(GraphProto {
            name: Some(String::from("mnist_cnn")),
            node: graph.nodes,
            initializer: graph.initializers,
            input: vec![value_info(INPUT_NAME, &input_dims)],
            output: vec![value_info(OUTPUT_NAME, &[config.classes])],
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok(model.encode_to_vec())
}

/// The nodes and initializers so far, in topological order.
struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    dtype: Dtype,
}

impl Graph {
    /// A node whose one output is named after it; returns that name.
    fn node(&mut self, op: &str, name: &str, inputs: &[&str], attributes: Vec<AttributeProto>) -> String {
        self.node_to(op, name, inputs, attributes, name)
    }

    /// A node with one output, `output`; returns its name.
    fn node_to(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        attributes: Vec<AttributeProto>,
        output: &str,
    ) -> String {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![String::from(output)],
            name: Some(String::from(name)),
            op_type: Some(String::from(op)),
            attribute: attributes,
            ..Default::default()
        });
        String::from(output)
    }

    /// An initializer in the chosen dtype; float16 ones get a Cast to float32 after them.
    /// Returns the name of the float32 value.
    fn weight(&mut self, name: &str, dims: &[usize], values: &[f32]) -> String {
        let (data_type, raw_data): (DataType, Vec<u8>) = match self.dtype {
            Dtype::F32 => (DataType::Float, values.iter().flat_map(|v| v.to_le_bytes()).collect()),
            Dtype::F16 => {
                (DataType::Float16, values.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect())
            }
        };
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(data_type as i32),
            name: Some(String::from(name)),
            raw_data: Some(raw_data),
            ..Default::default()
        });
        match self.dtype {
            Dtype::F32 => String::from(name),
            Dtype::F16 => {
                let cast = format!("{name}/float32");
                self.node("Cast", &cast, &[name], vec![int("to", DataType::Float as i64)])
            }
        }
    }
}

fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: Some(String::from(name)),
        r#type: Some(AttributeType::Int as i32),
        i: Some(value),
        ..Default::default()
    }
}

fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(String::from(name)),
        r#type: Some(AttributeType::Ints as i32),
        ints: values.to_vec(),
        ..Default::default()
    }
}

/// A float32 tensor of shape (N, dims...), N a named dynamic dimension.
fn value_info(name: &str, dims: &[usize]) -> ValueInfoProto {
    let dimension = |value| tensor_shape_proto::Dimension { value: Some(value), denotation: None };
    let mut dim = vec![dimension(tensor_shape_proto::dimension::Value::DimParam(String::from("N")))];
    dim.extend(dims.iter().map(|&d| dimension(tensor_shape_proto::dimension::Value::DimValue(d as i64))));
    ValueInfoProto {
        name: Some(String::from(name)),
        r#type: Some(Box::new(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(DataType::Float as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
            denotation: None,
        })),
        ..Default::default()
    }
}
