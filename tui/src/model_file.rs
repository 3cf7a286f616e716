//! Reading a model a user points at: an ONNX file (a path ending in .onnx: ours, PyTorch's,
//! tf2onnx's, ... of the mnist_cnn family) or an MXNet checkpoint by its prefix
//! (PREFIX-symbol.json and PREFIX-NNNN.params: ours, keras-mxnet's or Gluon's), imported into
//! our layout; and the model shipped inside the binary. Shared by `mnist predict`, `export`,
//! `serve` and the app. Leaves out the codecs (core).

use mnist_core::codec::{mxnet, onnx};
use mnist_core::Config;

use crate::{Failure, EXIT_BAD_INPUT};

/// Why a model could not be read. `missing`: a file is not there (`mnist serve` answers 404, the
/// command line adds a hint on what --model takes); otherwise it is not a model we can run.
#[derive(Debug)]
pub struct ModelError {
    pub missing: bool,
    pub message: String,
}

fn bad(message: String) -> ModelError {
    ModelError { missing: false, message }
}

impl From<ModelError> for Failure {
    fn from(e: ModelError) -> Failure {
        let hint = if e.missing {
            " (--model takes an .onnx file or the prefix of an MXNet checkpoint's files, e.g. out/mnist_cnn)"
        } else {
            ""
        };
        Failure::new(EXIT_BAD_INPUT, format!("{}{hint}", e.message))
    }
}

/// A model trained by this project (see fixtures/model/README.md), so the app's draw view and
/// `mnist serve` work before any training.
const SHIPPED_SYMBOL: &[u8] = include_bytes!("../../fixtures/model/mnist_cnn-symbol.json");
pub const SHIPPED_PARAMS: &[u8] = include_bytes!("../../fixtures/model/mnist_cnn-0000.params");

/// Where the shipped model came from, for screens and logs.
pub const SHIPPED_ORIGIN: &str = "shipped (f16, fixtures/model)";

/// The model shipped inside the binary, imported into our layout.
pub fn shipped() -> Result<Loaded, Failure> {
    let imported = mxnet::import(SHIPPED_SYMBOL, SHIPPED_PARAMS)
        .map_err(|e| Failure::new(crate::EXIT_INTERNAL, format!("the shipped model is unreadable: {e}")))?;
    Ok(Loaded { config: imported.config, params: imported.params, description: SHIPPED_ORIGIN.into() })
}

/// A model read into our layout.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// Flat buffer in `config.layout()` order.
    pub params: Vec<f32>,
    /// What was read, for messages: "ONNX file m.onnx (pytorch 2.5.0, f32 weights)".
    pub description: String,
}

/// Whether `model` names an ONNX file rather than an MXNet checkpoint's prefix.
pub fn is_onnx(model: &str) -> bool {
    model.to_ascii_lowercase().ends_with(".onnx")
}

/// An ONNX file when `model` ends in .onnx, else the MXNet checkpoint PREFIX-symbol.json and
/// PREFIX-NNNN.params (`epoch`, which an ONNX file does not have: it must be 0 then).
pub fn load(model: &str, epoch: u32) -> Result<Loaded, ModelError> {
    if is_onnx(model) {
        if epoch != 0 {
            return Err(bad(format!("--epoch chooses an MXNet checkpoint's params file; {model} is an ONNX file")));
        }
        return load_onnx(model);
    }
    let (symbol_name, params_name) = (mxnet::symbol_file_name(model), mxnet::params_file_name(model, epoch));
    let (symbol, params) = (read(&symbol_name)?, read(&params_name)?);
    let imported = mxnet::import(&symbol, &params)
        .map_err(|e| bad(format!("cannot load the model from {symbol_name} and {params_name}: {e}")))?;
    let flavour = match imported.flavour {
        mxnet::Flavour::Ours => "ours",
        mxnet::Flavour::KerasMxnet => "keras-mxnet",
        mxnet::Flavour::Gluon => "Gluon",
    };
    let dtype = format!("{:?}", imported.dtype).to_lowercase();
    Ok(Loaded {
        config: imported.config,
        params: imported.params,
        description: format!("MXNet checkpoint {model} ({flavour}, {dtype} weights)"),
    })
}

fn load_onnx(path: &str) -> Result<Loaded, ModelError> {
    // Refused before reading it all: a model of this family is at most MAX_MODEL_BYTES.
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.len() > onnx::MAX_MODEL_BYTES as u64 {
            return Err(bad(format!(
                "cannot load the model from {path}: {} bytes is more than any model of this architecture needs ({})",
                meta.len(),
                onnx::MAX_MODEL_BYTES
            )));
        }
    }
    let bytes = read(path)?;
    let imported = onnx::import(&bytes).map_err(|e| bad(format!("cannot load the model from {path}: {e}")))?;
    let producer = if imported.producer.is_empty() { String::from("unknown producer") } else { imported.producer };
    let dtype = match imported.dtype {
        onnx::Dtype::F32 => "f32",
        onnx::Dtype::F16 => "f16",
    };
    Ok(Loaded {
        config: imported.config,
        params: imported.params,
        description: format!("ONNX file {path} ({producer}, {dtype} weights)"),
    })
}

fn read(name: &str) -> Result<Vec<u8>, ModelError> {
    std::fs::read(name).map_err(|e| ModelError {
        missing: e.kind() == std::io::ErrorKind::NotFound,
        message: format!("cannot read model file {name}: {e}"),
    })
}
