//! `mnist predict`: loads a model (an MXNet checkpoint or an ONNX file, see model_file.rs) and
//! classifies image files, one line (or JSON object) each, or measures accuracy and loss on a
//! Keras-style .npz in batches. Leaves out image decoding and preprocessing (preprocess.rs) and
//! the model codecs (core).

use std::io::Write;
use std::path::{Path, PathBuf};

use mnist_core::codec::{mnist, npz};
use mnist_core::model::Network;
use mnist_core::{Backend, CpuBackend, Dataset};
use serde_json::json;

use crate::cli::{NpzSplit, PredictArgs};
use crate::failure::core_failure;
use crate::model_file;
use crate::preprocess;
use crate::Failure;

/// Images per forward pass; also the training batch size, so --npz evaluates as training did.
const BATCH: usize = 128;

fn bad(message: String) -> Failure {
    Failure::new(crate::EXIT_BAD_INPUT, message)
}

pub fn run(args: PredictArgs) -> Result<String, Failure> {
    if args.top == 0 {
        return Err(bad("--top must be at least 1".into()));
    }
    // Checked here: clap drops `requires = "npz"` once FILE, which conflicts with --npz, is given.
    if args.split.is_some() && args.npz.is_none() {
        return Err(bad("--split chooses the split of --npz, and no --npz was given".into()));
    }
    let model = model_file::load(&args.model, args.epoch)?;
    let mut backend = CpuBackend::new(args.threads);
    // The npz is uploaded before the backend moves into the network.
    let npz = match &args.npz {
        Some(path) => {
            let data = load_npz(path, args.split.unwrap_or(NpzSplit::Test), &model.config)?;
            let uploaded = backend
                .upload_dataset(&data.images, &data.labels, data.sample_len())
                .map_err(|e| core_failure("cannot use --npz", e))?;
            Some((path, data, uploaded))
        }
        None => None,
    };
    let mut network =
        Network::new(backend, model.config, BATCH).map_err(|e| core_failure("cannot set up the model", e))?;
    network.set_params(&model.params).map_err(|e| core_failure("cannot set up the model", e))?;
    let mut out = std::io::stdout().lock();
    match npz {
        Some((path, data, uploaded)) if data.labels_known => {
            let metrics = network.evaluate(&uploaded, data.len()).map_err(|e| core_failure("evaluation failed", e))?;
            let summary = format!("{} images: accuracy {:.4}, loss {:.4}", data.len(), metrics.accuracy, metrics.loss);
            let line = if args.json {
                let file = path.display().to_string();
                json!({ "file": file, "split": data.images_name, "images": data.len(), "accuracy": short(metrics.accuracy), "loss": short(metrics.loss) })
                    .to_string()
            } else {
                summary.clone()
            };
            write_line(&mut out, &line)?;
            Ok(summary)
        }
        Some((path, data, _)) => predict_unlabelled(&mut network, &mut out, path, &data, &args),
        None => predict_files(&mut network, &mut out, &args),
    }
}

/// One split of an npz, checked against the model.
struct NpzData {
    dataset: Dataset,
    images_name: &'static str,
    labels_known: bool,
}

impl std::ops::Deref for NpzData {
    type Target = Dataset;
    fn deref(&self) -> &Dataset {
        &self.dataset
    }
}

fn load_npz(path: &Path, split: NpzSplit, config: &mnist_core::Config) -> Result<NpzData, Failure> {
    let (images_name, labels_name) = match split {
        NpzSplit::Test => ("x_test", "y_test"),
        NpzSplit::Train => ("x_train", "y_train"),
    };
    let failed = |e: String| bad(format!("cannot use --npz {}: {e}", path.display()));
    // Bounded: a device or a huge file is refused before it fills memory.
    let bytes = mnist::read_data_file(path).map_err(|e| failed(e.to_string()))?;
    let names = npz::names(&bytes).map_err(|e| failed(e.to_string()))?;
    let labels_known = names.iter().any(|n| n == labels_name);
    let labels = labels_known.then_some(labels_name);
    let dataset = mnist::split_from_npz(&bytes, images_name, labels).map_err(|e| failed(e.to_string()))?;
    let shape = (dataset.height, dataset.width, dataset.channels);
    if shape != (config.height, config.width, config.channels) {
        return Err(failed(format!(
            "{images_name} holds {}x{}x{} images but the model takes {}x{}x{}",
            shape.0, shape.1, shape.2, config.height, config.width, config.channels
        )));
    }
    if dataset.is_empty() {
        return Err(failed(format!("{images_name} holds no images")));
    }
    if let Some(label) = dataset.labels.iter().find(|&&l| l as usize >= config.classes) {
        return Err(failed(format!("{labels_name} holds label {label} but the model has {} classes", config.classes)));
    }
    Ok(NpzData { dataset, images_name, labels_known })
}

/// One line per image of an npz without labels, named like `data.npz:x_test[0]`.
fn predict_unlabelled(
    network: &mut Network<CpuBackend>,
    out: &mut impl Write,
    path: &Path,
    data: &NpzData,
    args: &PredictArgs,
) -> Result<String, Failure> {
    let (n, sample_len) = (data.len(), data.sample_len());
    let mut x = Vec::with_capacity(BATCH * sample_len);
    for start in (0..n).step_by(BATCH) {
        let end = (start + BATCH).min(n);
        x.clear();
        // Scaled exactly as the training batches are.
        x.extend(data.images[start * sample_len..end * sample_len].iter().map(|&b| b as f32 * (1.0 / 255.0)));
        let probs = network.predict(&x).map_err(|e| core_failure("prediction failed", e))?;
        for (i, p) in (start..end).zip(probs.chunks_exact(network.config().classes)) {
            write_line(out, &render(&format!("{}:{}[{i}]", path.display(), data.images_name), p, args))?;
        }
    }
    Ok(format!("predicted {n} images"))
}

/// Reads, preprocesses and classifies the files, BATCH at a time; a file that cannot be read
/// is reported on stderr and the others still classified (exit 2 at the end).
fn predict_files(
    network: &mut Network<CpuBackend>,
    out: &mut impl Write,
    args: &PredictArgs,
) -> Result<String, Failure> {
    let config = *network.config();
    if config.channels != 1 {
        return Err(bad(format!(
            "the model takes {}-channel images; image files are read as greyscale (use --npz)",
            config.channels
        )));
    }
    let mut failed = 0;
    for chunk in args.files.chunks(BATCH) {
        let mut inputs = Vec::with_capacity(chunk.len() * config.input_len());
        let mut read: Vec<&PathBuf> = Vec::with_capacity(chunk.len());
        for path in chunk {
            let grey = std::fs::read(path).map_err(|e| e.to_string()).and_then(|bytes| preprocess::decode(&bytes));
            match grey {
                Ok(grey) if args.mnist_style => {
                    inputs.extend(preprocess::mnist_style(&grey, config.width, config.height))
                }
                Ok(grey) => inputs.extend(preprocess::standard(&grey, config.width, config.height)),
                Err(e) => {
                    eprintln!("error: cannot read image {}: {e}", path.display());
                    failed += 1;
                    continue;
                }
            }
            read.push(path);
        }
        if read.is_empty() {
            continue;
        }
        let probs = network.predict(&inputs).map_err(|e| core_failure("prediction failed", e))?;
        for (path, p) in read.iter().zip(probs.chunks_exact(config.classes)) {
            write_line(out, &render(&path.display().to_string(), p, args))?;
        }
    }
    if failed > 0 {
        return Err(bad(format!("could not read {failed} of {} images", args.files.len())));
    }
    Ok(format!("predicted {} images", args.files.len()))
}

/// `NAME: Prediction is [9] with probability of 92.5%` as the sample's handler words it (every
/// class tied for the top is listed), `(next: [4] 5.1%, ...)` with --top, or a JSON object.
fn render(name: &str, probs: &[f32], args: &PredictArgs) -> String {
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a])); // stable: ties keep class order
    let best = probs[order[0]];
    let top = &order[..args.top.min(order.len())];
    if args.json {
        let top: Vec<_> = top.iter().map(|&c| json!({ "class": c, "probability": short(probs[c]) })).collect();
        let all: Vec<f64> = probs.iter().map(|&p| short(p)).collect();
        return json!({ "file": name, "class": order[0], "probability": short(best), "probabilities": all, "top": top }).to_string();
    }
    let tied: Vec<usize> = order.iter().copied().take_while(|&c| probs[c] == best).collect();
    let classes: Vec<String> = tied.iter().map(|c| c.to_string()).collect();
    let mut line = format!("{name}: Prediction is [{}] with probability of {:.1}%", classes.join(", "), best * 100.0);
    let next: Vec<String> =
        top.iter().filter(|c| !tied.contains(c)).map(|&c| format!("[{c}] {:.1}%", probs[c] * 100.0)).collect();
    if !next.is_empty() {
        line.push_str(&format!(" (next: {})", next.join(", ")));
    }
    line
}

/// The f32's shortest decimal as an f64, so JSON shows 0.9252162 rather than 0.925216197967529.
fn short(value: f32) -> f64 {
    value.to_string().parse().unwrap_or(value as f64)
}

fn write_line(out: &mut impl Write, line: &str) -> Result<(), Failure> {
    writeln!(out, "{line}").map_err(|e| bad(format!("cannot write the output: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> PredictArgs {
        let cli = crate::cli::Cli::parse_from([&["mnist", "predict", "--model", "m", "a.png"][..], extra].concat());
        match cli.command {
            Some(crate::cli::Command::Predict(args)) => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lines_read_like_the_samples_handler() {
        let mut probs = [0.0f32; 10];
        (probs[9], probs[4], probs[7]) = (0.925, 0.05, 0.025);
        assert_eq!(render("a.png", &probs, &args(&[])), "a.png: Prediction is [9] with probability of 92.5%");
        assert_eq!(
            render("a.png", &probs, &args(&["--top", "3"])),
            "a.png: Prediction is [9] with probability of 92.5% (next: [4] 5.0%, [7] 2.5%)"
        );
        assert_eq!(
            render("x", &[0.1; 10], &args(&[])),
            "x: Prediction is [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] with probability of 10.0%"
        );
        let value: serde_json::Value =
            serde_json::from_str(&render("a.png", &probs, &args(&["--json", "--top", "2"]))).unwrap();
        assert_eq!(value["file"], "a.png");
        assert_eq!(value["class"], 9);
        assert_eq!(value["probability"], 0.925);
        assert_eq!(value["probabilities"].as_array().unwrap().len(), 10);
        assert_eq!(value["top"][1], json!({ "class": 4, "probability": 0.05 }));
    }
}
