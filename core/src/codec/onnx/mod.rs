//! ONNX models of the mnist_cnn architecture: export of ours as a standard ONNX graph, and
//! import of ours and of graphs other tools export for the same architecture (PyTorch, tf2onnx).
//! The protobuf is prost's (proto/onnx.rs, generated from the official onnx.proto). Leaves out
//! file I/O, external data files and running arbitrary graphs (only this architecture family).

mod budget;
mod export;
mod import;
mod layout;
#[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
#[path = "proto/onnx.rs"]
pub mod proto;

pub use export::export;
pub use import::import;

use alloc::string::String;
use alloc::vec::Vec;

use crate::config::Config;

/// The graph input's name: the MXNet export's (keras-mxnet's), so clients bind the same name.
pub const INPUT_NAME: &str = crate::codec::mxnet::INPUT_NAME;
/// The graph output's name: softmax probabilities, as MXNet names the sample's output.
pub const OUTPUT_NAME: &str = "softmax1_output";
/// The operator set we write: 17 (2022), run by ONNX Runtime since 1.12 and by current tools.
pub const OPSET: i64 = 17;
/// IR version 8 goes with opset 17.
pub const IR_VERSION: i64 = 8;
/// The largest file read: room for the biggest model `Config::validate` allows (2^28 f32
/// parameters, 1 GiB), so a decoder never has to hold more than a bounded multiple of this.
pub const MAX_MODEL_BYTES: usize = (1 << 30) + (1 << 20);
/// What decoding may allocate beyond twice the file's size: room for the struct overhead of
/// a graph with many nodes, while a file of millions of empty entries is refused.
pub const MAX_DECODED_SLACK: u64 = 64 << 20;
/// A metadata key only our exports carry, with the exporting crate's version.
pub const EXPORT_MARKER: &str = "mnist_rs_version";

/// How the weights are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// float32 initializers.
    F32,
    /// float16 initializers, each followed by a Cast to float32: half the file, same graph.
    F16,
}

/// The order of the graph input's axes; the graph turns either into what Conv needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputLayout {
    /// (N, H, W, C): our images and Keras's, the default.
    Nhwc,
    /// (N, C, H, W): ONNX's and PyTorch's convention.
    Nchw,
}

/// What to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportOptions {
    pub dtype: Dtype,
    pub input_layout: InputLayout,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions { dtype: Dtype::F32, input_layout: InputLayout::Nhwc }
    }
}

/// An ONNX model read into our layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    /// The architecture; dropout rates (not in an inference graph) are Keras's 0.25 and 0.5.
    pub config: Config,
    /// Flat buffer in `config.layout()` order and shapes.
    pub params: Vec<f32>,
    /// The narrowest type the weights were stored in.
    pub dtype: Dtype,
    pub input_layout: InputLayout,
    /// Whether the graph ends in a Softmax (else at the logits).
    pub softmax_output: bool,
    /// `producer_name producer_version` as the file states it ("pytorch 2.5.0", "mnist 0.1.0").
    pub producer: String,
    /// The default domain's operator set version.
    pub opset: i64,
}

#[cfg(test)]
mod tests;
