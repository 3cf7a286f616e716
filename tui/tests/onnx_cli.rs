//! End-to-end tests of the ONNX paths of the real binary: `mnist train --format`, `mnist
//! export` and `mnist predict --model FILE.onnx`, on a small model trained on synthetic data,
//! and their errors on bad files. ONNX Runtime itself is in tests/tests/onnx_runtime.rs.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::{synthetic_npz, temp_dir};
use mnist_core::codec::onnx::{self, Dtype, InputLayout};

fn mnist(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mnist"));
    cmd.args(args).env("MNIST_TERMINATION_LOG", "/nonexistent/termination-log");
    cmd.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn ok(args: &[&str]) -> String {
    let output = mnist(args);
    assert!(output.status.success(), "{args:?}\nstdout:\n{}\nstderr:\n{}", text(&output.stdout), text(&output.stderr));
    text(&output.stdout)
}

/// Runs a command that must fail with exit code 2 and one `error:` line; returns that line.
fn fails(args: &[&str]) -> String {
    let output = mnist(args);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{args:?}\nstdout:\n{}\nstderr:\n{stderr}", text(&output.stdout));
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("{stderr}")).to_string()
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A model trained one epoch with `--format both`.
struct Trained {
    dir: PathBuf,
    data: PathBuf,
    out: PathBuf,
    stdout: String,
}

fn trained() -> &'static Trained {
    static TRAINED: OnceLock<Trained> = OnceLock::new();
    TRAINED.get_or_init(|| {
        let dir = temp_dir("onnx_cli");
        let data = dir.join("small.npz");
        std::fs::write(&data, synthetic_npz(640, 300)).unwrap();
        let out = dir.join("out");
        let stdout = ok(&[
            "train",
            "--data",
            s(&data),
            "--epochs",
            "1",
            "--format",
            "both",
            "--out-dir",
            s(&out),
            "--threads",
            "2",
            "--backend",
            "cpu",
        ]);
        Trained { dir, data, out, stdout }
    })
}

#[test]
fn train_writes_the_formats_asked_for() {
    let t = trained();
    for name in ["mnist_cnn-symbol.json", "mnist_cnn-0000.params", "mnist_cnn.onnx"] {
        assert!(t.out.join(name).is_file(), "{name} missing:\n{}", t.stdout);
    }
    let model_line = t.stdout.lines().find(|l| l.starts_with("model: ")).unwrap();
    assert!(model_line.contains("mnist_cnn-0000.params") && model_line.contains("mnist_cnn.onnx"), "{model_line}");
    let imported = onnx::import(&std::fs::read(t.out.join("mnist_cnn.onnx")).unwrap()).unwrap();
    assert_eq!((imported.input_layout, imported.dtype), (InputLayout::Nhwc, Dtype::F32));

    // --format onnx writes the ONNX file only; the default, MXNet only.
    let only = t.dir.join("only_onnx");
    ok(&["train", "--data", s(&t.data), "--epochs", "1", "--limit", "128", "--format", "onnx", "--out-dir", s(&only)]);
    let names: Vec<String> =
        std::fs::read_dir(&only).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.contains(&"mnist_cnn.onnx".to_string()) && !names.iter().any(|n| n.contains("params")), "{names:?}");
    let default = t.dir.join("default");
    ok(&["train", "--data", s(&t.data), "--epochs", "1", "--limit", "128", "--out-dir", s(&default)]);
    assert!(!default.join("mnist_cnn.onnx").exists() && default.join("mnist_cnn-0000.params").is_file());
}

#[test]
fn predict_reads_the_onnx_file_as_it_reads_the_checkpoint() {
    let t = trained();
    let (prefix, file) = (t.out.join("mnist_cnn"), t.out.join("mnist_cnn.onnx"));
    let from_mxnet = ok(&["predict", "--model", s(&prefix), "--npz", s(&t.data)]);
    let from_onnx = ok(&["predict", "--model", s(&file), "--npz", s(&t.data)]);
    assert!(from_onnx.starts_with("300 images: accuracy "), "{from_onnx}");
    assert_eq!(from_onnx, from_mxnet);
    // Image by image, with every probability (--json).
    let images = t.dir.join("unlabelled.npz");
    let bytes = std::fs::read(&t.data).unwrap();
    let x = mnist_core::codec::npz::read_member(&bytes, "x_test").unwrap();
    std::fs::write(
        &images,
        mnist_core::codec::npz::write(&[("x_test", &x)], mnist_core::codec::zip::Method::Stored).unwrap(),
    )
    .unwrap();
    let json = |model: &Path| ok(&["predict", "--model", s(model), "--npz", s(&images), "--json"]);
    let (a, b) = (json(&prefix), json(&file));
    assert_eq!(a.lines().count(), 300);
    assert_eq!(a.replace(s(&prefix), ""), b.replace(s(&file), ""));
}

#[test]
fn export_writes_what_train_wrote_and_its_options() {
    let t = trained();
    let dir = t.dir.join("export");
    std::fs::create_dir_all(&dir).unwrap();
    let to = dir.join("same.onnx");
    let stdout = ok(&["export", "--model", s(&t.out.join("mnist_cnn")), "--to", s(&to)]);
    assert!(
        stdout.starts_with(&format!("wrote {} (", to.display())) && stdout.contains("MXNet checkpoint"),
        "{stdout}"
    );
    assert!(stdout.contains("f32 weights, input /conv2d_1_input1 (N, 28, 28, 1)"), "{stdout}");
    assert_eq!(std::fs::read(&to).unwrap(), std::fs::read(t.out.join("mnist_cnn.onnx")).unwrap());
    // From an ONNX file to ONNX: the same bytes again.
    let again = dir.join("again.onnx");
    ok(&["export", "--model", s(&to), "--to", s(&again)]);
    assert_eq!(std::fs::read(&again).unwrap(), std::fs::read(&to).unwrap());

    let small = dir.join("small_nchw.onnx");
    let stdout = ok(&["export", "--model", s(&to), "--to", s(&small), "--dtype", "f16", "--input-layout", "nchw"]);
    assert!(stdout.contains("f16 weights, input /conv2d_1_input1 (N, 1, 28, 28)"), "{stdout}");
    let bytes = std::fs::read(&small).unwrap();
    assert!(bytes.len() * 2 < std::fs::read(&to).unwrap().len() + 8192);
    let imported = onnx::import(&bytes).unwrap();
    assert_eq!((imported.input_layout, imported.dtype), (InputLayout::Nchw, Dtype::F16));
    let accuracy = |model: &Path| ok(&["predict", "--model", s(model), "--npz", s(&t.data)]);
    let (full, half) = (accuracy(&to), accuracy(&small));
    let value = |line: &str| line.split("accuracy ").nth(1).unwrap()[..6].parse::<f64>().unwrap();
    assert!((value(&full) - value(&half)).abs() <= 0.01, "{full} vs {half}");
}

#[test]
fn bad_onnx_files_and_arguments_exit_2_naming_the_problem() {
    let t = trained();
    let dir = t.dir.join("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let good = std::fs::read(t.out.join("mnist_cnn.onnx")).unwrap();
    let predict = |model: &Path| fails(&["predict", "--model", s(model), "--npz", s(&t.data)]);

    let missing = dir.join("missing.onnx");
    let err = predict(&missing);
    assert!(err.contains("cannot read model file") && err.contains("an .onnx file or the prefix"), "{err}");

    let truncated = dir.join("truncated.onnx");
    std::fs::write(&truncated, &good[..good.len() / 3]).unwrap();
    let err = predict(&truncated);
    assert!(
        err.starts_with(&format!("error: cannot load the model from {}: ONNX model", truncated.display())),
        "{err}"
    );

    // An operator we do not run, named with its node: "Relu" -> "Selu" keeps every length.
    let at = good.windows(4).position(|w| w == b"Relu").unwrap();
    let mut selu = good.clone();
    selu[at] = b'S';
    let file = dir.join("selu.onnx");
    std::fs::write(&file, &selu).unwrap();
    let err = predict(&file);
    assert!(
        err.contains(r#"node 2 "conv2d_1/relu" (Selu): operator Selu is not part of the mnist_cnn architecture"#),
        "{err}"
    );
    // The app and `mnist export` read models the same way.
    let err = fails(&["export", "--model", s(&file), "--to", s(&dir.join("out.onnx"))]);
    assert!(err.contains("(Selu)"), "{err}");
    assert!(!dir.join("out.onnx").exists());

    let err = fails(&["predict", "--model", s(&t.out.join("mnist_cnn.onnx")), "--epoch", "2", "--npz", s(&t.data)]);
    assert!(err.contains("--epoch") && err.contains("is an ONNX file"), "{err}");
    let err = fails(&["export", "--model", s(&t.out.join("mnist_cnn")), "--to", s(&dir.join("model.bin"))]);
    assert!(err.contains("must end in .onnx"), "{err}");
    let err = fails(&["export", "--model", s(&t.out.join("mnist_cnn")), "--to", s(&dir.join("no/such/dir/m.onnx"))]);
    assert!(err.contains("cannot write"), "{err}");
}
