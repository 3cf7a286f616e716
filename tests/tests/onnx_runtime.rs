//! The ONNX codec against the real `onnx` and `onnxruntime` packages (ONNX_PYTHON: a Python
//! with both, which .ci/run installs): our exports pass onnx.checker's full check and ONNX
//! Runtime's probabilities equal ours to 1e-5 on the 10,000 real test images (MNIST_DATA) in
//! f32, with the same class for all of them in f16. Leaves out third-party files (onnx_pytorch.rs).

use std::path::{Path, PathBuf};
use std::process::Command;

use mnist_core::codec::onnx::{self, Dtype, ExportOptions, InputLayout};
use mnist_core::codec::{mnist, mxnet, npy};
use mnist_core::model::Network;
use mnist_core::{Backend, Config, CpuBackend, Rng};

/// ONNX Runtime's and our probabilities must agree this closely (f32).
const TOLERANCE: f64 = 1e-5;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// $ONNX_PYTHON, or a loud SKIPPED line (a failure when $MNIST_REQUIRE_ONNX is set, as in CI).
fn onnx_python(what: &str) -> Option<PathBuf> {
    match std::env::var_os("ONNX_PYTHON") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            assert!(
                std::env::var_os("MNIST_REQUIRE_ONNX").is_none(),
                "MNIST_REQUIRE_ONNX is set but ONNX_PYTHON is not"
            );
            mnist_tests::skipped(&format!("ONNX_PYTHON is not set; {what} was not run in ONNX Runtime"));
            None
        }
    }
}

/// Runs fixtures/onnx/check_onnx.py and returns its report; panics when a check fails.
fn check_with_onnxruntime(python: &Path, model: &Path, inputs: &Path, ours: &Path, extra: &[&str]) -> String {
    let output = Command::new(python)
        .arg(repo("fixtures/onnx/check_onnx.py"))
        .args([model, inputs, ours])
        .args(["--tolerance", &TOLERANCE.to_string()])
        .args(extra)
        .output()
        .unwrap_or_else(|e| panic!("running ONNX_PYTHON={}: {e}", python.display()));
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    eprintln!("{}: {}", model.display(), stdout.trim());
    assert!(output.status.success(), "check_onnx.py failed\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

fn write_npy(path: &Path, shape: &[usize], values: &[f32]) {
    std::fs::write(path, npy::write_f32(shape, values).unwrap()).unwrap();
}

fn predict(config: &Config, params: &[f32], images: &[f32]) -> Vec<f32> {
    let mut net = Network::new(CpuBackend::new(0), *config, 500).unwrap();
    net.set_params(params).unwrap();
    let mut probs = Vec::new();
    for chunk in images.chunks(500 * config.input_len()) {
        probs.extend(net.predict(chunk).unwrap());
    }
    probs
}

/// The shipped model (fixtures/model, trained, float16 weights) trained 20 steps more, so its
/// float32 weights are not float16 values and an f16 export really rounds.
fn trained_params(train: &mnist_core::Dataset) -> Vec<f32> {
    let shipped = mxnet::import(
        &std::fs::read(repo("fixtures/model/mnist_cnn-symbol.json")).unwrap(),
        &std::fs::read(repo("fixtures/model/mnist_cnn-0000.params")).unwrap(),
    )
    .unwrap();
    let mut backend = CpuBackend::new(0);
    let data = backend.upload_dataset(&train.images[..2560 * 784], &train.labels[..2560], 784).unwrap();
    let mut net = Network::new(backend, shipped.config, 128).unwrap();
    net.set_params(&shipped.params).unwrap();
    for step in 0..20 {
        net.train_step(&data, step * 128, 128, step as u64).unwrap();
    }
    let params = net.params().unwrap();
    let f16 = ExportOptions { dtype: Dtype::F16, input_layout: InputLayout::Nhwc };
    let rounded = onnx::import(&onnx::export(&shipped.config, &params, f16).unwrap()).unwrap().params;
    let not_f16 = params.iter().zip(&rounded).filter(|(a, b)| a != b).count();
    assert!(not_f16 > params.len() / 2, "only {not_f16} weights are not float16 values");
    params
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).abs()).fold(0.0, f64::max)
}

#[test]
fn onnxruntime_matches_our_exports_on_the_real_test_set() {
    let Some(data) = mnist_tests::mnist_data() else { return };
    let split = mnist::from_npz(&std::fs::read(data).unwrap()).unwrap();
    let config = Config::default();
    let params = trained_params(&split.train);
    let test = &split.test;
    assert_eq!(test.len(), 10_000);
    let images: Vec<f32> = test.images.iter().map(|&p| p as f32 / 255.0).collect();
    let ours = predict(&config, &params, &images);

    let dir = scratch_dir("onnx_runtime_real");
    let (inputs, ours_file) = (dir.join("inputs.npy"), dir.join("ours.npy"));
    write_npy(&inputs, &[test.len(), 28, 28, 1], &images);
    write_npy(&ours_file, &[test.len(), 10], &ours);
    let python = onnx_python("the real-data ONNX check");
    for dtype in [Dtype::F32, Dtype::F16] {
        let bytes = onnx::export(&config, &params, ExportOptions { dtype, input_layout: InputLayout::Nhwc }).unwrap();
        let path = dir.join(format!("mnist_cnn_{dtype:?}.onnx"));
        std::fs::write(&path, &bytes).unwrap();
        // Our import of the file computes what we computed before exporting (f32), or what
        // ONNX Runtime computes from the rounded weights (f16).
        let imported = onnx::import(&bytes).unwrap();
        let from_file = predict(&imported.config, &imported.params, &images);
        let same_class = ours.chunks(10).zip(from_file.chunks(10)).filter(|(a, b)| argmax(a) == argmax(b)).count();
        eprintln!(
            "{dtype:?}: our import of the file vs our f32 model: max abs diff {:.3e}, same class {same_class} of 10000",
            max_abs_diff(&ours, &from_file)
        );
        let Some(python) = &python else { continue };
        let input = ["--input", onnx::INPUT_NAME];
        match dtype {
            Dtype::F32 => {
                assert_eq!(imported.params, params);
                check_with_onnxruntime(python, &path, &inputs, &ours_file, &input);
            }
            Dtype::F16 => {
                // The classes of the f32 model on every image; the probabilities of the f16 file
                // to 1e-5 against our run of the same file.
                check_with_onnxruntime(python, &path, &inputs, &ours_file, &[&input[..], &["--classes-only"]].concat());
                let from_file_path = dir.join("ours_f16.npy");
                write_npy(&from_file_path, &[test.len(), 10], &from_file);
                check_with_onnxruntime(python, &path, &inputs, &from_file_path, &input);
            }
        }
    }
}

fn argmax(p: &[f32]) -> usize {
    (0..p.len()).fold(0, |best, i| if p[i] > p[best] { i } else { best })
}

#[test]
fn onnxruntime_reads_both_input_layouts_of_a_multichannel_model() {
    // Two channels and a non-square image, so that NCHW and NHWC differ in memory and any H/W
    // mix-up changes the numbers; 11 wide leaves a ragged pooling edge (9 -> 7 -> 3).
    let config = Config {
        height: 10,
        width: 11,
        channels: 2,
        conv1_filters: 3,
        conv2_filters: 4,
        hidden: 6,
        classes: 3,
        ..Config::default()
    };
    let mut rng = Rng::new(9);
    let params: Vec<f32> = (0..config.param_count()).map(|_| rng.next_f32() - 0.5).collect();
    let n = 7;
    let nhwc: Vec<f32> = (0..n * config.input_len()).map(|_| rng.next_f32()).collect();
    let ours = predict(&config, &params, &nhwc);
    let (h, w, c) = (config.height, config.width, config.channels);
    let mut nchw = vec![0.0; nhwc.len()];
    for i in 0..n {
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    nchw[((i * c + ch) * h + y) * w + x] = nhwc[((i * h + y) * w + x) * c + ch];
                }
            }
        }
    }
    let dir = scratch_dir("onnx_runtime_layouts");
    write_npy(&dir.join("ours.npy"), &[n, config.classes], &ours);
    write_npy(&dir.join("nhwc.npy"), &[n, h, w, c], &nhwc);
    write_npy(&dir.join("nchw.npy"), &[n, c, h, w], &nchw);
    let python = onnx_python("the two-layout ONNX check");
    for (layout, inputs) in [(InputLayout::Nhwc, "nhwc.npy"), (InputLayout::Nchw, "nchw.npy")] {
        let bytes = onnx::export(&config, &params, ExportOptions { dtype: Dtype::F32, input_layout: layout }).unwrap();
        assert_eq!(onnx::import(&bytes).unwrap().params, params);
        let path = dir.join(format!("tiny_{layout:?}.onnx"));
        std::fs::write(&path, &bytes).unwrap();
        if let Some(python) = &python {
            check_with_onnxruntime(python, &path, &dir.join(inputs), &dir.join("ours.npy"), &[]);
        }
    }
}

/// The README's ONNX Runtime example, run as written on our export of the shipped model and 8
/// real test digits (fixtures/mxnet/images.npy): its lines must be our predictions.
#[test]
fn the_readmes_onnxruntime_example_prints_our_predictions() {
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    let block = readme
        .split("```python\n")
        .skip(1)
        .map(|rest| &rest[..rest.find("```").unwrap()])
        .find(|code| code.contains("onnxruntime"))
        .expect("README.md has a python block using onnxruntime");
    let dir = scratch_dir("onnx_readme");
    std::fs::write(dir.join("example.py"), block).unwrap();
    std::fs::copy(repo("fixtures/mxnet/images.npy"), dir.join("digits.npy")).unwrap();
    let shipped = mxnet::import(
        &std::fs::read(repo("fixtures/model/mnist_cnn-symbol.json")).unwrap(),
        &std::fs::read(repo("fixtures/model/mnist_cnn-0000.params")).unwrap(),
    )
    .unwrap();
    let bytes = onnx::export(&shipped.config, &shipped.params, ExportOptions::default()).unwrap();
    std::fs::write(dir.join("mnist_cnn.onnx"), bytes).unwrap();
    let digits = npy::read(&std::fs::read(dir.join("digits.npy")).unwrap()).unwrap();
    let npy::NpyData::U8(pixels) = digits.data else { panic!("images.npy is not uint8") };
    let images: Vec<f32> = pixels.iter().map(|&p| p as f32 / 255.0).collect();
    let ours = predict(&shipped.config, &shipped.params, &images);

    let Some(python) = onnx_python("the README's ONNX Runtime example") else { return };
    let output = Command::new(python).arg("example.py").current_dir(&dir).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 8, "{stdout}");
    for (line, p) in lines.iter().zip(ours.chunks(10)) {
        let class = argmax(p);
        let percent: f32 = line
            .strip_prefix(&format!("Prediction is [{class}] with probability of "))
            .and_then(|rest| rest.strip_suffix('%'))
            .unwrap_or_else(|| panic!("{line:?}: we predict {class} ({:.1}%)", p[class] * 100.0))
            .parse()
            .unwrap();
        assert!((percent - p[class] * 100.0).abs() <= 0.051, "{line:?} vs {:.3}%", p[class] * 100.0);
    }
    eprintln!("README example: {}", lines.join(" | "));
}
