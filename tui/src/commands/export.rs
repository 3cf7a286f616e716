//! `mnist export`: reads a model (an MXNet checkpoint or an .onnx file, through model_file) and
//! writes it as a standard ONNX file, atomically. Also the ONNX writing `mnist train --format`
//! shares. Leaves out the codec (core/src/codec/onnx).

use std::path::Path;

use mnist_core::codec::onnx;
use mnist_core::Config;

use crate::atomic::write_atomic;
use crate::cli::{ExportArgs, ExportDtype, InputLayoutChoice};
use crate::failure::core_failure;
use crate::model_file;
use crate::Failure;

pub fn run(args: ExportArgs) -> Result<String, Failure> {
    let to = args.to.to_string_lossy();
    if !model_file::is_onnx(&to) {
        return Err(Failure::new(
            crate::EXIT_BAD_INPUT,
            format!(
                "--to {to}: the file name must end in .onnx (`mnist predict` and other tools tell ONNX files by it)"
            ),
        ));
    }
    let model = model_file::load(&args.model, args.epoch)?;
    let layout = match args.input_layout {
        InputLayoutChoice::Nhwc => onnx::InputLayout::Nhwc,
        InputLayoutChoice::Nchw => onnx::InputLayout::Nchw,
    };
    let written = write_onnx(&args.to, &model.config, &model.params, args.dtype, layout)?;
    let summary = format!("wrote {written} from {}", model.description);
    println!("{summary}");
    Ok(summary)
}

/// Writes `path` atomically; returns a description: "m.onnx (4800312 bytes, f32 weights, input
/// /conv2d_1_input1 (N, 28, 28, 1))".
pub fn write_onnx(
    path: &Path,
    config: &Config,
    params: &[f32],
    dtype: ExportDtype,
    layout: onnx::InputLayout,
) -> Result<String, Failure> {
    let (dtype, dtype_name) = match dtype {
        ExportDtype::F32 => (onnx::Dtype::F32, "f32"),
        ExportDtype::F16 => (onnx::Dtype::F16, "f16"),
    };
    let bytes = onnx::export(config, params, onnx::ExportOptions { dtype, input_layout: layout })
        .map_err(|e| core_failure("cannot export the model", e))?;
    write_atomic(path, &bytes)
        .map_err(|e| Failure::new(crate::EXIT_BAD_INPUT, format!("cannot write {}: {e}", path.display())))?;
    let (h, w, c) = (config.height, config.width, config.channels);
    let shape = match layout {
        onnx::InputLayout::Nhwc => format!("(N, {h}, {w}, {c})"),
        onnx::InputLayout::Nchw => format!("(N, {c}, {h}, {w})"),
    };
    Ok(format!("{} ({} bytes, {dtype_name} weights, input {} {shape})", path.display(), bytes.len(), onnx::INPUT_NAME))
}
