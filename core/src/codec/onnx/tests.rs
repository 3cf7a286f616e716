//! Unit tests of the ONNX codec: export/import round trips in every option, graphs written the
//! way other exporters write them (built here by editing ours), and clear errors naming the node.
//! Real ONNX Runtime, real PyTorch files and hostile bytes: tests/tests/onnx_*.rs.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use prost::Message;

use super::proto::{
    attribute_proto::AttributeType, tensor_proto::DataType, AttributeProto, ModelProto, NodeProto, TensorProto,
};
use super::*;
use crate::config;
use crate::data::Rng;
use crate::error::Error;

fn tiny() -> Config {
    // Non-square, 2 channels and a ragged pooling edge (11 -> 9 -> 7 -> 3), so that any H/W or
    // channel mix-up changes the numbers.
    Config {
        height: 10,
        width: 11,
        channels: 2,
        conv1_filters: 3,
        conv2_filters: 4,
        hidden: 6,
        classes: 3,
        ..Config::default()
    }
}

fn random_params(config: &Config, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..config.param_count()).map(|_| rng.next_f32() * 2.0 - 1.0).collect()
}

fn f16_rounded(params: &[f32]) -> Vec<f32> {
    params.iter().map(|&v| f32::from(half::f16::from_f32(v))).collect()
}

fn options(dtype: Dtype, input_layout: InputLayout) -> ExportOptions {
    ExportOptions { dtype, input_layout }
}

fn decode(bytes: &[u8]) -> ModelProto {
    ModelProto::decode(bytes).unwrap()
}

fn ops(model: &ModelProto) -> Vec<String> {
    model.graph.as_ref().unwrap().node.iter().map(|n| n.op_type.clone().unwrap()).collect()
}

#[test]
fn export_imports_back_in_every_option() {
    for config in [Config::default(), tiny()] {
        let params = random_params(&config, 7);
        for dtype in [Dtype::F32, Dtype::F16] {
            for layout in [InputLayout::Nhwc, InputLayout::Nchw] {
                let bytes = export(&config, &params, options(dtype, layout)).unwrap();
                let imported = import(&bytes).unwrap();
                assert_eq!(imported.config, config);
                assert_eq!(imported.dtype, dtype);
                assert_eq!(imported.input_layout, layout);
                assert!(imported.softmax_output);
                assert_eq!(imported.opset, OPSET);
                assert!(imported.producer.starts_with("mnist "), "{}", imported.producer);
                let expected = if dtype == Dtype::F16 { f16_rounded(&params) } else { params.clone() };
                assert!(imported.params == expected, "{config:?} {dtype:?} {layout:?}");
            }
        }
    }
}

#[test]
fn exported_graph_is_the_standard_layer_sequence() {
    let config = Config::default();
    let model = decode(&export(&config, &random_params(&config, 1), ExportOptions::default()).unwrap());
    assert_eq!(model.ir_version, Some(IR_VERSION));
    assert_eq!(
        ops(&model),
        [
            "Transpose",
            "Conv",
            "Relu",
            "Conv",
            "Relu",
            "MaxPool",
            "Transpose",
            "Flatten",
            "Gemm",
            "Relu",
            "Gemm",
            "Softmax"
        ]
    );
    let graph = model.graph.as_ref().unwrap();
    assert_eq!(graph.input.len(), 1);
    assert_eq!(graph.input[0].name.as_deref(), Some(INPUT_NAME));
    assert_eq!(graph.output[0].name.as_deref(), Some(OUTPUT_NAME));
    let shape = |dims: &[i64]| -> Vec<i64> { dims.to_vec() };
    let init = |name: &str| graph.initializer.iter().find(|t| t.name.as_deref() == Some(name)).unwrap();
    assert_eq!(shape(&init("conv2d_1/kernel").dims), [32, 1, 3, 3]); // OIHW
    assert_eq!(shape(&init("conv2d_2/kernel").dims), [64, 32, 3, 3]);
    assert_eq!(shape(&init("dense_1/kernel").dims), [9216, 128]); // (in, out) over HWC
                                                                  // f16: half the bytes, a Cast after every initializer.
    let f16 = export(&config, &random_params(&config, 1), options(Dtype::F16, InputLayout::Nhwc)).unwrap();
    let f32_len = export(&config, &random_params(&config, 1), ExportOptions::default()).unwrap().len();
    assert!(f16.len() < f32_len / 2 + 4096, "{} vs {f32_len}", f16.len());
    assert_eq!(ops(&decode(&f16)).iter().filter(|o| *o == "Cast").count(), 8);
    // NCHW: no Transpose before the first Conv.
    let nchw = decode(&export(&config, &random_params(&config, 1), options(Dtype::F32, InputLayout::Nchw)).unwrap());
    assert_eq!(ops(&nchw)[0], "Conv");
}

#[test]
fn export_refuses_what_it_cannot_store() {
    let config = tiny();
    let mut params = random_params(&config, 2);
    assert!(matches!(export(&config, &params[1..], ExportOptions::default()), Err(Error::InvalidArgument { .. })));
    params[5] = 70000.0; // beyond float16
    assert!(export(&config, &params, ExportOptions::default()).is_ok());
    let err = export(&config, &params, options(Dtype::F16, InputLayout::Nhwc)).unwrap_err();
    assert!(err.to_string().contains("conv2d_1/kernel holds 70000"), "{err}");
    params[5] = f32::NAN;
    assert!(export(&config, &params, ExportOptions::default()).is_err());
}

// ---- Graphs as other exporters write them, built by editing ours.

fn graph_mut(model: &mut ModelProto) -> &mut super::proto::GraphProto {
    model.graph.as_mut().unwrap()
}

fn node_mut<'a>(model: &'a mut ModelProto, name: &str) -> &'a mut NodeProto {
    graph_mut(model).node.iter_mut().find(|n| n.name.as_deref() == Some(name)).unwrap()
}

fn remove_node(model: &mut ModelProto, name: &str) {
    // The removed node's consumers read its input instead.
    let graph = graph_mut(model);
    let at = graph.node.iter().position(|n| n.name.as_deref() == Some(name)).unwrap();
    let node = graph.node.remove(at);
    let (from, to) = (node.output[0].clone(), node.input[0].clone());
    for n in &mut graph.node {
        for i in &mut n.input {
            if *i == from {
                *i = to.clone();
            }
        }
    }
    for o in &mut graph.output {
        if o.name.as_deref() == Some(from.as_str()) {
            o.name = Some(to.clone());
        }
    }
}

fn initializer_mut<'a>(model: &'a mut ModelProto, name: &str) -> &'a mut TensorProto {
    graph_mut(model).initializer.iter_mut().find(|t| t.name.as_deref() == Some(name)).unwrap()
}

fn floats_of(t: &TensorProto) -> Vec<f32> {
    t.raw_data.as_ref().unwrap().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
}

fn set_floats(t: &mut TensorProto, dims: &[usize], values: &[f32]) {
    t.dims = dims.iter().map(|&d| d as i64).collect();
    t.raw_data = Some(values.iter().flat_map(|v| v.to_le_bytes()).collect());
}

fn attribute_int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(value),
        ..Default::default()
    }
}

fn ints_attribute(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: values.to_vec(),
        ..Default::default()
    }
}

fn node(op: &str, name: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: Some(name.into()),
        op_type: Some(op.into()),
        attribute,
        ..Default::default()
    }
}

/// What PyTorch's exporter writes for the same net: NCHW input, Flatten straight after the
/// pooling (so dense_1's rows are in CHW order), Gemm with transB = 1, no Softmax.
fn pytorch_style(config: &Config, params: &[f32]) -> ModelProto {
    let mut model = decode(&export(config, params, options(Dtype::F32, InputLayout::Nchw)).unwrap());
    remove_node(&mut model, "to_nhwc");
    remove_node(&mut model, "softmax");
    let (hp, wp, c) = config.pool_out();
    for (name, index) in [("dense_1/kernel", config::DENSE1_KERNEL), ("dense_2/kernel", config::DENSE2_KERNEL)] {
        let ours = &params[config.layout().span(index).range()];
        let units = if index == config::DENSE1_KERNEL { config.hidden } else { config.classes };
        let inputs = ours.len() / units;
        // (out, in), the input index in CHW order for dense_1.
        let mut theirs = vec![0.0; ours.len()];
        for j in 0..units {
            for row in 0..inputs {
                let their_row = if index == config::DENSE1_KERNEL {
                    let (h, w, ch) = (row / (wp * c), row / c % wp, row % c);
                    (ch * hp + h) * wp + w
                } else {
                    row
                };
                theirs[j * inputs + their_row] = ours[row * units + j];
            }
        }
        set_floats(initializer_mut(&mut model, name), &[units, inputs], &theirs);
    }
    for gemm in ["dense_1", "dense_2"] {
        node_mut(&mut model, gemm).attribute.push(attribute_int("transB", 1));
    }
    model.producer_name = Some("pytorch".into());
    model.producer_version = Some("2.5.0".into());
    model
}

#[test]
fn pytorch_style_graph_imports_to_our_layout() {
    for config in [Config::default(), tiny()] {
        let params = random_params(&config, 3);
        let imported = import(&pytorch_style(&config, &params).encode_to_vec()).unwrap();
        assert_eq!(imported.config, config);
        assert_eq!(imported.input_layout, InputLayout::Nchw);
        assert!(!imported.softmax_output);
        assert_eq!(imported.producer, "pytorch 2.5.0");
        assert!(imported.params == params, "{config:?}");
    }
}

/// What tf2onnx writes for the Keras model: NHWC input with a Transpose, MatMul + Add, a
/// Reshape to (-1, F) with a constant shape, weights in float_data, dropout nodes.
fn tf2onnx_style(config: &Config, params: &[f32]) -> ModelProto {
    let mut model = decode(&export(config, params, ExportOptions::default()).unwrap());
    let graph = graph_mut(&mut model);
    let flatten = graph.node.iter().position(|n| n.op_type.as_deref() == Some("Flatten")).unwrap();
    graph.node[flatten] = node("Reshape", "flatten/Reshape", &["to_nhwc", "flatten/shape"], "flatten_1", vec![]);
    graph.node.insert(
        flatten,
        NodeProto {
            attribute: vec![AttributeProto {
                name: Some("value".into()),
                r#type: Some(AttributeType::Tensor as i32),
                t: Some(Box::new(TensorProto {
                    dims: vec![2],
                    data_type: Some(DataType::Int64 as i32),
                    int64_data: vec![-1, config.flat_len() as i64],
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..node("Constant", "flatten/shape", &[], "flatten/shape", vec![])
        },
    );
    for dense in ["dense_1", "dense_2"] {
        let at = graph.node.iter().position(|n| n.name.as_deref() == Some(dense)).unwrap();
        let input = graph.node[at].input.clone();
        graph.node[at] =
            node("MatMul", &format!("{dense}/MatMul"), &[&input[0], &input[1]], &format!("{dense}/mm"), vec![]);
        // The bias first: Add is commutative and tf2onnx writes either order.
        graph.node.insert(
            at + 1,
            node("Add", &format!("{dense}/BiasAdd"), &[&input[2], &format!("{dense}/mm")], dense, vec![]),
        );
    }
    // Dropout at inference, as Keras models carry it.
    let pool = graph.node.iter().position(|n| n.name.as_deref() == Some("max_pooling2d_1")).unwrap();
    graph.node[pool].output[0] = "pooled".into();
    graph.node.insert(pool + 1, node("Dropout", "dropout_1", &["pooled"], "max_pooling2d_1", vec![]));
    for t in &mut graph.initializer {
        let values = floats_of(t);
        t.raw_data = None;
        t.float_data = values;
    }
    model.producer_name = Some("tf2onnx".into());
    model.producer_version = Some("1.16.1".into());
    model
}

#[test]
fn tf2onnx_style_graph_imports_to_our_layout() {
    let config = tiny();
    let params = random_params(&config, 4);
    let imported = import(&tf2onnx_style(&config, &params).encode_to_vec()).unwrap();
    assert_eq!(imported.config, config);
    assert_eq!(imported.input_layout, InputLayout::Nhwc);
    assert_eq!(imported.producer, "tf2onnx 1.16.1");
    assert!(imported.params == params);
}

#[test]
fn float16_weights_in_int32_data_and_constant_nodes_import() {
    let config = tiny();
    let params = f16_rounded(&random_params(&config, 5));
    let mut model = decode(&export(&config, &params, ExportOptions::default()).unwrap());
    let graph = graph_mut(&mut model);
    // conv2d_1/kernel as float16 bits in int32_data, then a Cast to float as exporters write.
    let t = graph.initializer.iter_mut().find(|t| t.name.as_deref() == Some("conv2d_1/kernel")).unwrap();
    t.int32_data = floats_of(t).iter().map(|&v| half::f16::from_f32(v).to_bits() as i32).collect();
    t.raw_data = None;
    t.data_type = Some(DataType::Float16 as i32);
    t.name = Some("k16".into());
    graph.node.insert(0, node("Cast", "cast_k", &["k16"], "conv2d_1/kernel", vec![attribute_int("to", 1)]));
    // dense_2/bias as a Constant node instead of an initializer.
    let at = graph.initializer.iter().position(|t| t.name.as_deref() == Some("dense_2/bias")).unwrap();
    let bias = graph.initializer.remove(at);
    graph.node.insert(
        0,
        NodeProto {
            attribute: vec![AttributeProto {
                name: Some("value".into()),
                r#type: Some(AttributeType::Tensor as i32),
                t: Some(Box::new(bias)),
                ..Default::default()
            }],
            ..node("Constant", "bias_const", &[], "dense_2/bias", vec![])
        },
    );
    let imported = import(&model.encode_to_vec()).unwrap();
    assert_eq!(imported.dtype, Dtype::F16);
    assert!(imported.params == params);
}

// ---- Graphs we cannot run: clear errors naming the node.

fn import_err(model: &ModelProto) -> String {
    match import(&model.encode_to_vec()) {
        Ok(imported) => panic!("imported {:?}", imported.config),
        Err(e) => e.to_string(),
    }
}

fn ours() -> ModelProto {
    let config = tiny();
    decode(&export(&config, &random_params(&config, 6), ExportOptions::default()).unwrap())
}

#[test]
fn unknown_operators_and_attributes_are_named() {
    let mut model = ours();
    node_mut(&mut model, "conv2d_2/relu").op_type = Some("LeakyRelu".into());
    let err = import_err(&model);
    assert!(err.contains(r#"node 4 "conv2d_2/relu" (LeakyRelu)"#) && err.contains("not part of"), "{err}");

    let mut model = ours();
    node_mut(&mut model, "conv2d_1").attribute[1] = ints_attribute("strides", &[2, 2]);
    let err = import_err(&model);
    assert!(err.contains(r#""conv2d_1" (Conv)"#) && err.contains("strides = [2, 2]"), "{err}");
    node_mut(&mut model, "conv2d_1").attribute[1] = ints_attribute("strides", &[1, 1]);
    node_mut(&mut model, "conv2d_1").attribute.push(ints_attribute("strides", &[2, 2]));
    assert!(import_err(&model).contains(r#"attribute "strides" is given twice"#));
    node_mut(&mut model, "conv2d_1").attribute.pop();
    node_mut(&mut model, "conv2d_1").attribute.push(attribute_int("group", 3));
    assert!(import_err(&model).contains("grouped convolution"));

    let mut model = ours();
    node_mut(&mut model, "conv2d_1").attribute[0].r#type = Some(AttributeType::Float as i32);
    let err = import_err(&model);
    assert!(err.contains("attribute kernel_shape is of type FLOAT, expected INTS"), "{err}");

    let mut model = ours();
    node_mut(&mut model, "max_pooling2d_1").op_type = Some("AveragePool".into());
    let err = import_err(&model);
    assert!(err.contains("(AveragePool)"), "{err}");

    let mut model = ours();
    node_mut(&mut model, "dense_1/relu").domain = Some("com.microsoft".into());
    assert!(import_err(&model).contains(r#""dense_1/relu" (Relu): operator domain "com.microsoft""#));
}

#[test]
fn wrong_layer_order_and_incomplete_graphs_are_refused() {
    let mut model = ours();
    remove_node(&mut model, "conv2d_1/relu");
    let err = import_err(&model);
    assert!(err.contains(r#""conv2d_2" (Conv): the mnist_cnn architecture has a ReLU here"#), "{err}");

    let mut model = ours();
    let graph = graph_mut(&mut model);
    graph.node.truncate(9); // up to dense_1
    graph.output[0].name = Some("dense_1".into());
    assert!(import_err(&model).contains("it ends before a ReLU"));

    let mut model = ours();
    let graph = graph_mut(&mut model);
    graph.node.push(node("Relu", "extra", &[OUTPUT_NAME], "extra", vec![]));
    graph.output[0].name = Some("extra".into());
    assert!(import_err(&model).contains(r#""extra" (Relu): the mnist_cnn architecture ends before it"#));

    // NWHC: the input's rows and columns swapped before the convolution.
    let mut model = ours();
    node_mut(&mut model, "to_nchw").attribute[0].ints = vec![0, 3, 2, 1];
    assert!(import_err(&model).contains("only NCHW and NHWC inputs"));

    // A branch: the pooled map also feeds a second node.
    let mut model = ours();
    let graph = graph_mut(&mut model);
    let at = graph.node.iter().position(|n| n.name.as_deref() == Some("flatten_1")).unwrap();
    graph.node.insert(at + 1, node("Relu", "side", &["max_pooling2d_1"], "side", vec![]));
    assert!(import_err(&model)
        .contains(r#""side" (Relu): it reads "max_pooling2d_1", which the graph also uses elsewhere"#));

    // A flatten in the wrong place.
    let mut model = ours();
    node_mut(&mut model, "to_nhwc").attribute[0].ints = vec![1, 0, 2, 3];
    assert!(import_err(&model).contains("whose batch axis is not first"));
}

#[test]
fn bad_tensors_are_refused_before_allocating() {
    let mut model = ours();
    initializer_mut(&mut model, "dense_1/kernel").dims = vec![1 << 30, 1 << 30];
    let err = import_err(&model);
    assert!(err.contains(r#"ONNX tensor "dense_1/kernel""#) && err.contains("needs"), "{err}");

    let mut model = ours();
    initializer_mut(&mut model, "dense_1/kernel").dims = vec![i64::MAX, i64::MAX, 4];
    assert!(import_err(&model).contains("overflows"));

    let mut model = ours();
    initializer_mut(&mut model, "dense_1/kernel").dims = vec![-3, 4];
    assert!(import_err(&model).contains("dimension -3 is negative"));

    let mut model = ours();
    initializer_mut(&mut model, "conv2d_1/bias").data_type = Some(DataType::String as i32);
    assert!(import_err(&model).contains("data type STRING"));

    let mut model = ours();
    let t = initializer_mut(&mut model, "conv2d_1/bias");
    t.data_location = Some(1);
    t.raw_data = None;
    assert!(import_err(&model).contains("external file"));

    let mut model = ours();
    initializer_mut(&mut model, "conv2d_1/bias").float_data = vec![1.0];
    assert!(import_err(&model).contains("both raw_data and typed data"));

    // A kernel that disagrees with the rest of the graph.
    let mut model = ours();
    let t = initializer_mut(&mut model, "conv2d_2/kernel");
    let values = floats_of(t);
    set_floats(t, &[4, 2, 3, 3], &values[..4 * 18]);
    let err = import_err(&model);
    assert!(err.contains(r#""conv2d_2" (Conv)"#), "{err}");

    let mut model = ours();
    let t = initializer_mut(&mut model, "dense_2/bias");
    set_floats(t, &[3], &[0.0, f32::INFINITY, 1.0]);
    assert!(import_err(&model).contains("NaN or infinite"));

    let mut model = ours();
    let t = initializer_mut(&mut model, "dense_1/kernel");
    let values = floats_of(t);
    set_floats(t, &[values.len() / 6 - 1, 6], &values[..values.len() - 6]);
    assert!(import_err(&model).contains(r#""dense_1" (Gemm): the kernel takes"#));
}

#[test]
fn files_that_are_not_onnx_models_are_refused() {
    assert!(matches!(import(b""), Err(Error::Missing { .. })));
    assert!(import(b"{\"nodes\": []}").is_err());
    assert!(import(&[0xff; 64]).is_err());
    let mut model = ours();
    model.opset_import[0].version = Some(99);
    assert!(import_err(&model).contains("operator set 99"));
    model.opset_import.clear();
    assert!(import_err(&model).contains("no version of the default operator set"));
    let mut model = ours();
    graph_mut(&mut model).input.clear();
    assert!(import_err(&model).contains("exactly one input"));
    let bytes = ours().encode_to_vec();
    for cut in [1, 10, bytes.len() / 2, bytes.len() - 1] {
        assert!(import(&bytes[..cut]).is_err(), "cut at {cut}");
    }
}

/// A protobuf length-delimited field: key, length, payload.
fn field(tag: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for mut v in [u64::from(tag) << 3 | 2, payload.len() as u64] {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    out.extend_from_slice(payload);
    out
}

#[test]
fn entries_that_cost_more_decoded_than_encoded_are_refused_before_decoding() {
    // 5 M empty nodes: 10 MB on the wire, over a gigabyte as prost's NodeProto structs.
    let graph: Vec<u8> = [0x0a, 0x00].repeat(5_000_000);
    let bytes = field(7, &graph);
    let err = import(&bytes).unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("decoded size"), "{err}");

    // A packed int64 list of one-byte varints: each byte becomes 8, inside a tensor inside a graph.
    let tensor = field(7, &[1u8; 20_000_000]);
    let bytes = field(7, &field(5, &tensor));
    assert!(matches!(import(&bytes), Err(Error::TooLarge { .. })));

    // Nesting past prost's limit, and a field running past the end, are malformed, not a crash.
    let mut nested = Vec::new();
    for _ in 0..200 {
        nested = field(1, &field(5, &field(6, &nested))); // Graph.node -> Node.attribute -> Attribute.g
    }
    assert!(matches!(import(&field(7, &nested)), Err(Error::Malformed { .. })));
    let mut cut = field(7, &[0x0a, 0x05, 0x0a]);
    cut.truncate(4);
    assert!(matches!(import(&cut), Err(Error::Malformed { .. })));

    // Our own export's bound stays near its size: nothing legitimate is refused.
    let bytes = ours().encode_to_vec();
    let decoded = super::budget::decoded_size(&bytes).ok().unwrap();
    assert!(decoded < 2 * bytes.len() as u64 + 64 * 1024, "{decoded} for a {}-byte file", bytes.len());
}

#[test]
fn identity_chains_share_a_constant_and_copying_chains_are_capped() {
    // 2,000 Identity nodes between dense_1's 4.7 MB kernel and its Gemm: copies would take 9 GB
    // and outgrow the folding budget; shared, they cost nothing and the model imports.
    let config = Config::default();
    let params = random_params(&config, 6);
    let mut model = decode(&export(&config, &params, ExportOptions::default()).unwrap());
    let graph = graph_mut(&mut model);
    let mut last = String::from("dense_1/kernel");
    let mut chain = Vec::new();
    for i in 0..2000 {
        let out = format!("copy{i}");
        chain.push(node("Identity", &out, &[&last], &out, vec![]));
        last = out;
    }
    let at = graph.node.iter().position(|n| n.name.as_deref() == Some("dense_1")).unwrap();
    graph.node[at].input[1] = last.clone();
    graph.node.splice(at..at, chain);
    let imported = import(&model.encode_to_vec()).unwrap();
    assert!(imported.params == params);

    // Transposes each make a new copy: a chain long enough to outgrow twice the file is refused
    // by name. A 1-in, 1-out weight would be too small to outgrow the slack, so make a big one.
    let mut model = decode(&export(&config, &params, ExportOptions::default()).unwrap());
    let graph = graph_mut(&mut model);
    let big = TensorProto {
        name: Some("big".into()),
        dims: vec![1 << 20],
        data_type: Some(DataType::Float as i32),
        raw_data: Some(vec![0; 4 << 20]),
        ..Default::default()
    };
    graph.initializer.push(big);
    let mut last = String::from("big");
    let mut chain = Vec::new();
    for i in 0..40 {
        let out = format!("transposed{i}");
        chain.push(node("Transpose", &out, &[&last], &out, vec![ints_attribute("perm", &[0])]));
        last = out;
    }
    graph.node.splice(0..0, chain);
    let err = import_err(&model);
    assert!(err.contains(r#""transposed"#) && err.contains("(Transpose)") && err.contains("more memory"), "{err}");
}
