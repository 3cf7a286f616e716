//! The models the app predicts with (the one shipped inside the binary, MXNet checkpoints
//! loaded from disk, snapshots of the one in training), saving them as MXNet checkpoints, and
//! the CPU inference the draw and explore views run. Leaves out the codec itself (core).

use std::path::Path;
use std::sync::Arc;

use mnist_core::codec::mxnet;
use mnist_core::model::Network;
use mnist_core::{Config, CpuBackend, Dataset};

use crate::atomic::write_atomic;

/// Parameters with their architecture and where they came from.
#[derive(Debug, Clone)]
pub struct Model {
    pub config: Config,
    pub params: Arc<Vec<f32>>,
    /// For the screen: "shipped", "trained, epoch 2", "loaded from out/mnist_cnn".
    pub origin: String,
}

/// The model shipped inside the binary (model_file.rs), so the draw view works before any
/// training.
pub fn shipped() -> Result<Model, String> {
    let imported = crate::model_file::shipped().map_err(|f| f.message)?;
    Ok(Model {
        config: imported.config,
        params: Arc::new(imported.params),
        origin: crate::model_file::SHIPPED_ORIGIN.into(),
    })
}

/// Reads PREFIX-symbol.json and PREFIX-0000.params (ours, keras-mxnet's or Gluon's).
pub fn load(prefix: &str) -> Result<Model, String> {
    let imported = crate::model_file::load(prefix, 0).map_err(|e| e.message)?;
    Ok(Model { config: imported.config, params: Arc::new(imported.params), origin: format!("loaded from {prefix}") })
}

/// Writes PREFIX-symbol.json and PREFIX-0000.params (f32), each atomically, creating the
/// folder; returns what was written. A prefix that names a folder (ends in `/`) is refused:
/// it would write `-symbol.json` files.
pub fn save(model: &Model, prefix: &str) -> Result<String, String> {
    if prefix.is_empty() || prefix.ends_with(['/', std::path::MAIN_SEPARATOR]) {
        return Err(format!("{prefix:?} is a folder, not a checkpoint prefix: add a name, e.g. {prefix}mnist_cnn"));
    }
    let checkpoint = mxnet::export(&model.config, &model.params, mxnet::Dtype::F32)
        .map_err(|e| format!("cannot export the model: {e}"))?;
    let (symbol, params) = (mxnet::symbol_file_name(prefix), mxnet::params_file_name(prefix, 0));
    if let Some(dir) = Path::new(&symbol).parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    for (name, bytes) in [(&symbol, checkpoint.symbol.as_bytes()), (&params, checkpoint.params.as_slice())] {
        write_atomic(Path::new(name), bytes).map_err(|e| format!("cannot write {name}: {e}"))?;
    }
    Ok(format!("{symbol} and {params}"))
}

/// One model on a single-threaded CPU backend, sized for one image: the draw view calls it on
/// every stroke, on the UI thread, so it must stay well under a frame (20 ms).
pub struct Classifier {
    network: Network<CpuBackend>,
}

impl Classifier {
    pub fn new(model: &Model) -> Result<Self, String> {
        let mut network =
            Network::new(CpuBackend::new(1), model.config, 1).map_err(|e| format!("cannot set up the model: {e}"))?;
        network.set_params(&model.params).map_err(|e| format!("cannot set up the model: {e}"))?;
        Ok(Classifier { network })
    }

    /// Class probabilities of one image (H, W, C) in [0, 1].
    pub fn classify(&mut self, image: &[f32]) -> Result<Vec<f32>, String> {
        self.network.predict(image).map_err(|e| format!("prediction failed: {e}"))
    }
}

/// Each test image's predicted class and its probability, for the explore view.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    pub classes: Vec<u8>,
    pub confidence: Vec<f32>,
}

/// Predicts every image of `data` in batches on all cores (run on a helper thread).
pub fn predict_all(model: &Model, data: &Dataset) -> Result<Predictions, String> {
    const BATCH: usize = 256;
    let config = model.config;
    if (data.height, data.width, data.channels) != (config.height, config.width, config.channels) {
        return Err(format!(
            "the test images are {}x{}x{} but the model takes {}x{}x{}",
            data.height, data.width, data.channels, config.height, config.width, config.channels
        ));
    }
    let mut network =
        Network::new(CpuBackend::new(0), config, BATCH).map_err(|e| format!("cannot set up the model: {e}"))?;
    network.set_params(&model.params).map_err(|e| format!("cannot set up the model: {e}"))?;
    let sample_len = data.sample_len();
    let mut out = Predictions { classes: Vec::with_capacity(data.len()), confidence: Vec::with_capacity(data.len()) };
    for chunk in data.images.chunks(BATCH * sample_len) {
        // Scaled exactly as the training batches are.
        let x: Vec<f32> = chunk.iter().map(|&b| b as f32 * (1.0 / 255.0)).collect();
        let probs = network.predict(&x).map_err(|e| format!("prediction failed: {e}"))?;
        for p in probs.chunks_exact(config.classes) {
            let (class, best) = argmax(p);
            out.classes.push(class as u8);
            out.confidence.push(best);
        }
    }
    Ok(out)
}

/// The most likely class and its probability (the first of a tie).
pub fn argmax(probs: &[f32]) -> (usize, f32) {
    probs.iter().copied().enumerate().fold((0, f32::MIN), |best, (i, p)| if p > best.1 { (i, p) } else { best })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn the_shipped_model_loads_and_is_f16_sized() {
        let model = shipped().unwrap();
        assert_eq!(model.params.len(), Config::default().param_count());
        // 1.2 M parameters at 2 bytes, plus names and headers.
        assert!(
            (2_300_000..2_500_000).contains(&crate::model_file::SHIPPED_PARAMS.len()),
            "{}",
            crate::model_file::SHIPPED_PARAMS.len()
        );
    }

    #[test]
    fn saving_and_loading_round_trips() {
        let model = shipped().unwrap();
        let dir = std::env::temp_dir().join(format!("mnist-app-models-{}", std::process::id()));
        let prefix = dir.join("sub/m").display().to_string();
        let written = save(&model, &prefix).unwrap();
        assert!(written.contains("m-symbol.json") && written.contains("m-0000.params"), "{written}");
        let back = load(&prefix).unwrap();
        // Saved as f32, so the f16 values come back exactly.
        assert_eq!(back.params, model.params);
        assert_eq!(back.config, model.config);
        let missing = load(&dir.join("missing").display().to_string()).unwrap_err();
        assert!(missing.contains("cannot read model file") && missing.contains("missing-symbol.json"), "{missing}");
        assert!(!missing.contains("--"), "the app has no flags: {missing}");
        let folder = format!("{}/", dir.display());
        assert!(save(&model, &folder).unwrap_err().contains("is a folder"));
        assert!(!Path::new(&format!("{folder}-symbol.json")).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The draw view predicts on every stroke: one image must cost well under a 20 ms frame.
    #[test]
    fn one_image_classifies_well_under_a_frame() {
        let mut classifier = Classifier::new(&shipped().unwrap()).unwrap();
        let image = vec![0.5f32; 784];
        classifier.classify(&image).unwrap(); // warm-up: scratch buffers grow once
        let mut times: Vec<f64> = (0..15)
            .map(|_| {
                let started = Instant::now();
                let probs = classifier.classify(&image).unwrap();
                assert_eq!(probs.len(), 10);
                started.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!(
            "draw-view inference: median {median:.2} ms, min {:.2} ms, max {:.2} ms over 15 images",
            times[0], times[14]
        );
        // Debug builds of the workspace's own crates are slow; the bound is for release.
        let bound = if cfg!(debug_assertions) { 200.0 } else { 20.0 };
        assert!(median < bound, "median {median:.2} ms per image, bound {bound} ms");
    }

    #[test]
    fn argmax_takes_the_first_of_a_tie() {
        assert_eq!(argmax(&[0.1, 0.4, 0.4, 0.1]), (1, 0.4));
    }
}
