//! Where the training data comes from: `--data PATH` (an .npz or a directory of idx files), or
//! Keras's mnist.npz fetched into the cache (default origin and mirror, or --data-url).
//! Leaves out: the decoding itself (mnist_core::codec) and the HTTP details (download.rs).

use std::path::Path;

use mnist_core::codec::mnist;
use mnist_core::{Config, Split};

use crate::cli::DataArgs;
use crate::download::{self, ErrorKind, FetchOptions, ProgressEvent, ProgressRenderer, Source};
use crate::Failure;

pub struct Loaded {
    pub split: Split,
    /// A short description for the log ("downloaded from URL", "PATH").
    pub source: String,
}

pub fn load_path(path: &Path) -> Result<Loaded, Failure> {
    // The error names the file (and the member or idx file) itself.
    let split =
        mnist::load(path).map_err(|e| Failure::new(crate::EXIT_BAD_INPUT, format!("cannot use --data: {e}")))?;
    Ok(Loaded { split, source: path.display().to_string() })
}

/// Loads the data, showing download progress on stderr.
pub fn load(args: &DataArgs) -> Result<Loaded, Failure> {
    let mut renderer = ProgressRenderer::stderr();
    load_with_progress(args, &mut |event| renderer.handle(&event))
}

/// Loads the data, giving download progress to `progress` (the app cannot use stderr).
pub fn load_with_progress(args: &DataArgs, progress: &mut dyn FnMut(ProgressEvent)) -> Result<Loaded, Failure> {
    let mut loaded = match &args.data {
        Some(path) => load_path(path)?,
        None => fetch(args, progress)?,
    };
    let named = match &args.data {
        Some(path) => format!("--data {}", path.display()),
        None => loaded.source.clone(),
    };
    if let Some(limit) = args.limit {
        if limit == 0 {
            return Err(Failure::new(crate::EXIT_BAD_INPUT, "--limit must be positive".into()));
        }
        let split = &mut loaded.split;
        split.train = split.train.take(limit);
        split.test = split.test.take(limit.div_ceil(6));
        loaded.source.push_str(&format!(
            " (limited to {} train and {} test samples)",
            split.train.len(),
            split.test.len()
        ));
    }
    check_fits_the_model(&loaded.split, &named)?;
    Ok(loaded)
}

/// The model (Keras's mnist_cnn) takes 28x28 grey images of 10 classes: data of another shape
/// or with other labels gets one sentence naming it before anything is trained.
fn check_fits_the_model(split: &Split, named: &str) -> Result<(), Failure> {
    let model = Config::default();
    let bad = |why: String| Err(Failure::new(crate::EXIT_BAD_INPUT, format!("cannot use {named}: {why}")));
    for (set, data) in [("train", &split.train), ("test", &split.test)] {
        if (data.height, data.width, data.channels) != (model.height, model.width, model.channels) {
            return bad(format!(
                "its {set} images are {}x{} with {} channel{}; the model takes {}x{} grey images (1 channel), as MNIST's are",
                data.height,
                data.width,
                data.channels,
                if data.channels == 1 { "" } else { "s" },
                model.height,
                model.width
            ));
        }
        if data.is_empty() {
            return bad(format!("it has no {set} images"));
        }
        if let Some(i) = data.labels.iter().position(|&l| l as usize >= model.classes) {
            return bad(format!(
                "{set} label {} (sample {i}) is not a class; the model has classes 0 to {}",
                data.labels[i],
                model.classes - 1
            ));
        }
    }
    Ok(())
}

fn fetch(args: &DataArgs, progress: &mut dyn FnMut(ProgressEvent)) -> Result<Loaded, Failure> {
    let bad = |m: String| Failure::new(crate::EXIT_BAD_INPUT, m);
    let sha256 = match &args.sha256 {
        Some(hex) => Some(download::parse_sha256(hex).map_err(|e| bad(format!("--sha256: {e}")))?),
        None => None,
    };
    let cache_dir = download::resolve_cache_dir(args.cache_dir.as_deref()).map_err(|e| bad(e.to_string()))?;
    let options = FetchOptions::mnist(cache_dir, download::resolve_data_url(args.data_url.clone()), sha256);
    let fetched = download::fetch(&options, progress).map_err(|e| {
        let code = match e.kind() {
            ErrorKind::Permanent => crate::EXIT_BAD_INPUT,
            ErrorKind::Transient => crate::EXIT_TRANSIENT,
        };
        Failure::new(code, format!("cannot get MNIST: {e}"))
    })?;
    let source = match &fetched.source {
        Source::Cache => format!("{} (cached)", fetched.path.display()),
        Source::Reused => format!("{} (Keras's cache)", fetched.path.display()),
        Source::Downloaded { url } => format!("{} (downloaded from {url})", fetched.path.display()),
    };
    let mut loaded = load_path(&fetched.path)?;
    loaded.source = source;
    Ok(loaded)
}
