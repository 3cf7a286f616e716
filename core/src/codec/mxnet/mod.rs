//! MXNet 1.x checkpoints (`prefix-symbol.json` + `prefix-0000.params`): export of our model with
//! keras-mxnet's interface, and import of ours, keras-mxnet's and Gluon `export`'s into our layout.
//! Leaves out file I/O (callers pass bytes) and architectures other than Config's mnist_cnn.

mod ndarray;
mod symbol;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

pub use ndarray::{read_ndarray_list, write_ndarray_list, Dtype, NdArray};
pub use symbol::{export_symbol, EXPORT_MARKER, INPUT_NAME};

use symbol::GraphFacts;

use crate::config::{self, Config};
use crate::error::{Error, Result};

/// The two files of an MXNet checkpoint, ready to write.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// `prefix-symbol.json`
    pub symbol: String,
    /// `prefix-0000.params`
    pub params: Vec<u8>,
}

/// `prefix-symbol.json`, the name `mx.model.load_checkpoint` looks for.
pub fn symbol_file_name(prefix: &str) -> String {
    format!("{prefix}-symbol.json")
}

/// `prefix-0000.params` for epoch 0.
pub fn params_file_name(prefix: &str, epoch: u32) -> String {
    format!("{prefix}-{epoch:04}.params")
}

/// Exports `params` (a flat buffer in `config.layout()` order) as an MXNet checkpoint whose
/// parameters are stored as `dtype`. Non-finite values, and values beyond float16's range when
/// exporting float16, are refused rather than silently written as infinities.
pub fn export(config: &Config, params: &[f32], dtype: Dtype) -> Result<Checkpoint> {
    let symbol = export_symbol(config)?;
    let layout = config.layout();
    if params.len() != layout.total() {
        return Err(Error::invalid(
            "parameters",
            format!("{} values given but the model has {}", params.len(), layout.total()),
        ));
    }
    let limit = if dtype == Dtype::F16 { f32::from(half::f16::MAX) } else { f32::MAX };
    let mut names = Vec::with_capacity(layout.slots.len());
    for slot in &layout.slots {
        let values = &params[slot.span().range()];
        if let Some(v) = values.iter().find(|v| !v.is_finite() || v.abs() > limit) {
            return Err(Error::invalid("parameters", format!("{} holds {v}, which {dtype:?} cannot store", slot.name)));
        }
        names.push(format!("arg:{}", symbol::export_param_name(&slot.name)));
    }
    let entries: Vec<(&str, &[usize], &[f32])> = layout
        .slots
        .iter()
        .zip(&names)
        .map(|(slot, name)| (name.as_str(), slot.shape.as_slice(), &params[slot.span().range()]))
        .collect();
    let params = write_ndarray_list(&entries, dtype)?;
    Ok(Checkpoint { symbol, params })
}

/// Which exporter wrote a checkpoint; it decides the stored layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// Our `export`: Keras shapes, names `conv2d_1/kernel1` ..., marked by `EXPORT_MARKER`.
    Ours,
    /// keras-mxnet's `save_mxnet_model`: the same names and Keras shapes (kernels HWIO,
    /// dense (in, out) over an HWC flatten); the graph transposes them itself.
    KerasMxnet,
    /// Gluon `HybridBlock.export`: `*_weight`/`*_bias`, kernels OIHW, dense (out, in) over an
    /// NCHW flatten; converted to our layout on import.
    Gluon,
}

/// A checkpoint read into our layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    /// The architecture the checkpoint holds. The image size comes from the symbol's input
    /// `__shape__` where stored (ours, keras-mxnet); Gluon exports do not store it, so a square
    /// image without a ragged pooling edge is assumed (28x28 for mnist_cnn), see
    /// `image_size_from_symbol`. Dropout rates come from the graph, else Keras's 0.25 and 0.5.
    pub config: Config,
    /// Flat buffer in `config.layout()` order and shapes.
    pub params: Vec<f32>,
    pub flavour: Flavour,
    /// The narrowest dtype the parameters were stored in (the precision they carry).
    pub dtype: Dtype,
    /// Whether the graph's output is softmax probabilities (else logits).
    pub softmax_output: bool,
    pub image_size_from_symbol: bool,
}

/// Reads a checkpoint written by us, keras-mxnet or Gluon `export` for the mnist_cnn
/// architecture and returns its parameters in our layout.
pub fn import(symbol_json: &[u8], params: &[u8]) -> Result<Imported> {
    let facts = symbol::read_symbol(symbol_json)?;
    let arrays = read_ndarray_list(params)?;
    let flavour = flavour_of(&facts)?;
    let find = |name: &str| -> Result<&NdArray> {
        // Checkpoints prefix arguments `arg:`; plain `nd.save` dictionaries may not.
        arrays
            .iter()
            .find(|a| a.name.strip_prefix("arg:").unwrap_or(&a.name) == name)
            .ok_or_else(|| Error::Missing { what: String::from("MXNet params file"), name: String::from(name) })
    };
    let stored: Vec<&NdArray> = facts.params.iter().map(|n| find(n)).collect::<Result<_>>()?;
    let config = infer_config(&facts, flavour, &stored)?;
    let layout = config.layout();

    // Check everything before allocating: the layout's size then matches data already decoded.
    let mut dtype = Dtype::F64;
    for (index, (slot, array)) in layout.slots.iter().zip(&stored).enumerate() {
        let expected = stored_shape(flavour, &slot.shape);
        if array.shape != expected {
            return Err(Error::ShapeMismatch { what: array.name.clone(), expected, actual: array.shape.clone() });
        }
        // The graph must agree with the file, or MXNet would refuse to bind the two together.
        if let Some(stated) = &facts.param_shapes[index] {
            let agrees =
                stated.len() == expected.len() && stated.iter().zip(&expected).all(|(&s, &e)| s == 0 || s == e);
            if !agrees {
                return Err(Error::malformed(
                    "MXNet checkpoint",
                    format!(
                        "{} has shape {:?} in the params file but {stated:?} in the symbol",
                        array.name, array.shape
                    ),
                ));
            }
        }
        if array.data.iter().any(|v| !v.is_finite()) {
            return Err(Error::malformed(array.name.clone(), "it holds NaN or infinite values"));
        }
        if array.dtype.size() < dtype.size() {
            dtype = array.dtype;
        }
    }

    let mut flat = alloc::vec![0.0f32; layout.total()];
    for (index, (slot, array)) in layout.slots.iter().zip(&stored).enumerate() {
        let out = &mut flat[slot.span().range()];
        match (flavour, index) {
            (Flavour::Ours | Flavour::KerasMxnet, _) => out.copy_from_slice(&array.data),
            (Flavour::Gluon, config::CONV1_KERNEL | config::CONV2_KERNEL) => {
                oihw_to_hwio(out, &array.data, &array.shape)
            }
            (Flavour::Gluon, config::DENSE1_KERNEL) => {
                let (hp, wp, c) = config.pool_out();
                gluon_dense_to_keras(out, &array.data, array.shape[0], c, hp * wp)
            }
            (Flavour::Gluon, config::DENSE2_KERNEL) => {
                gluon_dense_to_keras(out, &array.data, array.shape[0], array.shape[1], 1)
            }
            (Flavour::Gluon, _) => out.copy_from_slice(&array.data),
        }
    }
    Ok(Imported {
        config,
        params: flat,
        flavour,
        dtype,
        softmax_output: facts.softmax,
        image_size_from_symbol: facts.input_shape.is_some(),
    })
}

/// Decided by the names each exporter gives its variables, then checked role by role.
fn flavour_of(facts: &GraphFacts) -> Result<Flavour> {
    let (flavour, roles) = if facts.params[0].contains("/kernel") {
        (if facts.ours { Flavour::Ours } else { Flavour::KerasMxnet }, ["/kernel", "/bias"])
    } else if facts.params[0].ends_with("_weight") {
        (Flavour::Gluon, ["_weight", "_bias"])
    } else {
        return Err(Error::unsupported(
            "MXNet checkpoint",
            format!("parameter {:?} is named neither like keras-mxnet's nor like Gluon's", facts.params[0]),
        ));
    };
    for (i, name) in facts.params.iter().enumerate() {
        let role = roles[i % 2];
        // Keras variable names end in a counter MXNet appends: `conv2d_1/kernel1`.
        if !name.trim_end_matches(|c: char| c.is_ascii_digit()).ends_with(role) {
            return Err(Error::malformed(
                "MXNet symbol",
                format!(
                    "parameter {} of the graph, {name:?}, should be a {}",
                    i + 1,
                    role.trim_start_matches(['/', '_'])
                ),
            ));
        }
    }
    Ok(flavour)
}

/// Our (Keras) shape as the flavour stores it.
fn stored_shape(flavour: Flavour, keras: &[usize]) -> Vec<usize> {
    match (flavour, keras) {
        (Flavour::Gluon, &[h, w, i, o]) => alloc::vec![o, i, h, w],
        (Flavour::Gluon, &[i, o]) => alloc::vec![o, i],
        _ => keras.to_vec(),
    }
}

/// Reads the architecture off the stored shapes, the pooling size off the graph and the image
/// size off the input's `__shape__` (or assumes a square image when there is none).
fn infer_config(facts: &GraphFacts, flavour: Flavour, stored: &[&NdArray]) -> Result<Config> {
    let rank = |i: usize, want: usize| -> Result<&[usize]> {
        let a = stored[i];
        if a.shape.len() != want {
            return Err(Error::malformed(
                a.name.clone(),
                format!("it has {} dimensions where a {want}-dimensional array is needed", a.shape.len()),
            ));
        }
        // Positive dimensions keep every size below the (already decoded) data's length.
        if a.shape.contains(&0) {
            return Err(Error::malformed(a.name.clone(), format!("it is empty, shape {:?}", a.shape)));
        }
        Ok(&a.shape)
    };
    let (conv1, conv2) = (rank(config::CONV1_KERNEL, 4)?, rank(config::CONV2_KERNEL, 4)?);
    let (dense1, dense2) = (rank(config::DENSE1_KERNEL, 2)?, rank(config::DENSE2_KERNEL, 2)?);
    // Everything in Keras order: (KH, KW, I, O) and (in, out).
    let (conv1, conv2, dense1, dense2) = match flavour {
        Flavour::Gluon => (
            [conv1[2], conv1[3], conv1[1], conv1[0]],
            [conv2[2], conv2[3], conv2[1], conv2[0]],
            [dense1[1], dense1[0]],
            [dense2[1], dense2[0]],
        ),
        _ => (
            [conv1[0], conv1[1], conv1[2], conv1[3]],
            [conv2[0], conv2[1], conv2[2], conv2[3]],
            [dense1[0], dense1[1]],
            [dense2[0], dense2[1]],
        ),
    };
    let mut config = Config {
        channels: conv1[2],
        conv1_filters: conv1[3],
        conv2_filters: conv2[3],
        kernel: conv1[0],
        pool: facts.pool,
        hidden: dense1[1],
        classes: dense2[1],
        dropout1: facts.dropout1.unwrap_or(0.25),
        dropout2: facts.dropout2.unwrap_or(0.5),
        ..Config::keras_mnist_cnn()
    };
    match (&facts.input_shape, flavour) {
        (Some(shape), _) if shape.len() != 4 => {
            return Err(Error::malformed("MXNet symbol", format!("input shape {shape:?} is not 4-dimensional")))
        }
        (Some(shape), Flavour::Gluon) => {
            (config.height, config.width) = (shape[2], shape[3]);
            check_input_channels(&facts.input_name, shape, shape[1], config.channels)?;
        }
        (Some(shape), _) => {
            (config.height, config.width) = (shape[1], shape[2]);
            check_input_channels(&facts.input_name, shape, shape[3], config.channels)?;
        }
        (None, _) => {
            // dense_1 reads HP * WP * C2 values; assume HP = WP and no ragged pooling edge.
            let filters = config.conv2_filters.max(1);
            let spatial = dense1[0] / filters;
            let side = (1..=spatial).take_while(|s| s * s <= spatial).last().unwrap_or(0);
            if side * side * filters != dense1[0] {
                return Err(Error::unsupported(
                    "MXNet checkpoint",
                    format!(
                        "the symbol has no input shape and dense input {} is not a square map of {filters} channels",
                        dense1[0]
                    ),
                ));
            }
            config.height = side * config.pool + 2 * (config.kernel - 1);
            config.width = config.height;
        }
    }
    config.validate()?;
    // The other dimensions (conv2's input channels, dense_2's input, a kernel's width) are
    // checked against config.layout() by the caller.
    Ok(config)
}

fn check_input_channels(name: &str, shape: &[usize], stated: usize, channels: usize) -> Result<()> {
    if stated == channels {
        return Ok(());
    }
    Err(Error::malformed(
        "MXNet symbol",
        format!("input {name:?} has shape {shape:?}, {stated} channels, but conv2d_1's kernel takes {channels}"),
    ))
}

/// w: (O, I, KH, KW) -> out: (KH, KW, I, O)
fn oihw_to_hwio(out: &mut [f32], w: &[f32], shape: &[usize]) {
    let (o_n, i_n, kh_n, kw_n) = (shape[0], shape[1], shape[2], shape[3]);
    for o in 0..o_n {
        for i in 0..i_n {
            for kh in 0..kh_n {
                for kw in 0..kw_n {
                    out[((kh * kw_n + kw) * i_n + i) * o_n + o] = w[((o * i_n + i) * kh_n + kh) * kw_n + kw];
                }
            }
        }
    }
}

/// w: (OUT, C * S) over an NCHW flatten (index c * S + s) -> out: (S * C, OUT) over an HWC
/// flatten (index s * C + c). With S = 1 this is a plain transpose.
fn gluon_dense_to_keras(out: &mut [f32], w: &[f32], outputs: usize, channels: usize, spatial: usize) {
    for j in 0..outputs {
        for c in 0..channels {
            for s in 0..spatial {
                out[(s * channels + c) * outputs + j] = w[j * channels * spatial + c * spatial + s];
            }
        }
    }
}

#[cfg(test)]
mod tests;
