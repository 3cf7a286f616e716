//! Reading a model a user points at: an MXNet checkpoint by its prefix (PREFIX-symbol.json and
//! PREFIX-NNNN.params: ours, keras-mxnet's or Gluon's), imported into our layout. Shared by
//! `mnist predict`, `mnist serve` and the app; and the model shipped inside the binary.
//! Leaves out the codec itself (core).

use mnist_core::codec::mxnet;

use crate::{Failure, EXIT_BAD_INPUT};

fn bad(message: String) -> Failure {
    Failure::new(EXIT_BAD_INPUT, message)
}

/// A model trained by this project (see fixtures/model/README.md), so the app's draw view and
/// `mnist serve` work before any training.
const SHIPPED_SYMBOL: &[u8] = include_bytes!("../../fixtures/model/mnist_cnn-symbol.json");
pub const SHIPPED_PARAMS: &[u8] = include_bytes!("../../fixtures/model/mnist_cnn-0000.params");

/// Where the shipped model came from, for screens and logs.
pub const SHIPPED_ORIGIN: &str = "shipped (f16, fixtures/model)";

/// The model shipped inside the binary, imported into our layout.
pub fn shipped() -> Result<mxnet::Imported, Failure> {
    mxnet::import(SHIPPED_SYMBOL, SHIPPED_PARAMS)
        .map_err(|e| Failure::new(crate::EXIT_INTERNAL, format!("the shipped model is unreadable: {e}")))
}

/// PREFIX-symbol.json and PREFIX-NNNN.params, imported into our layout.
pub fn load(prefix: &str, epoch: u32) -> Result<mxnet::Imported, Failure> {
    let read = |name: String| {
        std::fs::read(&name).map_err(|e| {
            let hint = match e.kind() {
                std::io::ErrorKind::NotFound => {
                    " (--model takes the prefix of the checkpoint's files, e.g. out/mnist_cnn)"
                }
                _ => "",
            };
            bad(format!("cannot read model file {name}: {e}{hint}"))
        })
    };
    let (symbol_name, params_name) = (mxnet::symbol_file_name(prefix), mxnet::params_file_name(prefix, epoch));
    let (symbol, params) = (read(symbol_name.clone())?, read(params_name.clone())?);
    mxnet::import(&symbol, &params)
        .map_err(|e| bad(format!("cannot load the model from {symbol_name} and {params_name}: {e}")))
}
