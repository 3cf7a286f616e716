//! A third party's ONNX file: the mnist_cnn architecture built and trained in PyTorch and
//! exported by `torch.onnx.export` (fixtures/onnx, see its README). Our import must predict
//! what PyTorch predicted on the 10,000 real test images (MNIST_DATA) and what ONNX Runtime
//! computes from the same file (ONNX_PYTHON). Leaves out our own exports (onnx_runtime.rs).

use std::path::{Path, PathBuf};
use std::process::Command;

use mnist_core::codec::mnist;
use mnist_core::codec::npy::{self, NpyData};
use mnist_core::codec::onnx::{self, Dtype, ExportOptions, InputLayout};
use mnist_core::model::Network;
use mnist_core::{Config, CpuBackend};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/onnx").join(name)
}

fn imported() -> onnx::Imported {
    onnx::import(&std::fs::read(fixture("pytorch_mnist_cnn.onnx")).unwrap()).unwrap()
}

#[test]
fn pytorch_export_imports_as_the_keras_architecture() {
    let model = imported();
    assert_eq!(model.config, Config::default());
    assert_eq!(model.input_layout, InputLayout::Nchw);
    assert_eq!(model.dtype, Dtype::F32);
    assert!(!model.softmax_output);
    assert_eq!(model.producer, "pytorch 2.15.0+cu132");
    assert_eq!(model.opset, 18);
}

fn argmax(p: &[f32]) -> usize {
    (0..p.len()).fold(0, |best, i| if p[i] > p[best] { i } else { best })
}

#[test]
fn our_predictions_match_pytorch_and_onnxruntime_on_the_real_test_set() {
    let Some(data) = mnist_tests::mnist_data() else { return };
    let bytes = std::fs::read(data).unwrap();
    let test = mnist::split_from_npz(&bytes, "x_test", Some("y_test")).unwrap();
    let images: Vec<f32> = test.images.iter().map(|&p| p as f32 / 255.0).collect();
    let model = imported();
    let mut net = Network::new(CpuBackend::new(0), model.config, 500).unwrap();
    net.set_params(&model.params).unwrap();
    let mut ours = Vec::new();
    for chunk in images.chunks(500 * 784) {
        ours.extend(net.predict(chunk).unwrap());
    }

    // PyTorch's own probabilities, computed when the fixture was made.
    let theirs = npy::read(&std::fs::read(fixture("pytorch_probs.npy")).unwrap()).unwrap();
    assert_eq!(theirs.shape, [10_000, 10]);
    let NpyData::F32(theirs) = theirs.data else { panic!("pytorch_probs.npy is not float32") };
    let diff = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    let same = ours.chunks(10).zip(theirs.chunks(10)).filter(|(a, b)| argmax(a) == argmax(b)).count();
    let correct = ours.chunks(10).zip(&test.labels).filter(|(p, &l)| argmax(p) == l as usize).count();
    eprintln!(
        "vs PyTorch 2.15: max abs difference {diff:.3e}, same class for {same} of 10000; accuracy {correct}/10000"
    );
    assert!(diff <= 1e-5, "max abs difference from PyTorch {diff:.3e}");
    assert_eq!(same, 10_000);

    let Some(python) = std::env::var_os("ONNX_PYTHON") else {
        assert!(std::env::var_os("MNIST_REQUIRE_ONNX").is_none(), "MNIST_REQUIRE_ONNX is set but ONNX_PYTHON is not");
        mnist_tests::skipped("ONNX_PYTHON is not set; the PyTorch fixture was not run in ONNX Runtime");
        return;
    };
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("onnx_pytorch");
    std::fs::create_dir_all(&dir).unwrap();
    // One channel: (N, 1, 28, 28) holds the same bytes as (N, 28, 28, 1).
    std::fs::write(dir.join("nchw.npy"), npy::write_f32(&[10_000, 1, 28, 28], &images).unwrap()).unwrap();
    std::fs::write(dir.join("nhwc.npy"), npy::write_f32(&[10_000, 28, 28, 1], &images).unwrap()).unwrap();
    std::fs::write(dir.join("ours.npy"), npy::write_f32(&[10_000, 10], &ours).unwrap()).unwrap();
    // The same weights in our own export: what a user gets from `mnist export --model it.onnx`.
    let ours_export = dir.join("reexported.onnx");
    std::fs::write(&ours_export, onnx::export(&model.config, &model.params, ExportOptions::default()).unwrap())
        .unwrap();
    let runs: [(&Path, &str, &[&str]); 2] =
        [(&fixture("pytorch_mnist_cnn.onnx"), "nchw.npy", &["--softmax"]), (&ours_export, "nhwc.npy", &[])];
    for (file, inputs, extra) in runs {
        let output = Command::new(&python)
            .arg(fixture("check_onnx.py"))
            .args([file, &dir.join(inputs), &dir.join("ours.npy")])
            .args(extra)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        eprintln!("{}: {}", file.display(), stdout.trim());
        assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    }
}
