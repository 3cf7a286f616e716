//! End-to-end: the real binary given data or models it cannot use (another image size, labels
//! that are not classes, a directory missing an idx file, damaged or endless files, damaged
//! MXNet checkpoints) exits 2 with one sentence naming the problem, never panics and writes
//! nothing. Leaves out the decoders' own hostile-input tests (tests/tests/codecs_prop.rs).

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{synthetic_npz, temp_dir};
use mnist_core::codec::npy::{NpyArray, NpyData};
use mnist_core::codec::{idx, npz, zip};

fn mnist(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mnist"))
        .args(args)
        .env_remove("MNIST_DATA_URL")
        .env("MNIST_TERMINATION_LOG", "/nonexistent/termination-log")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A Keras-style npz: `n` train and `n / 5` test images of `shape` (after N), labels by `label`.
fn npz_of(n: usize, shape: &[usize], label: impl Fn(usize) -> u8) -> Vec<u8> {
    let per_image: usize = shape.iter().product();
    let images = |n: usize| {
        let dims = [&[n][..], shape].concat();
        NpyArray::new(dims, NpyData::U8((0..n * per_image).map(|i| (i % 251) as u8).collect())).unwrap()
    };
    let labels = |n: usize| NpyArray::new(vec![n], NpyData::U8((0..n).map(&label).collect())).unwrap();
    let (x_train, y_train, x_test, y_test) = (images(n), labels(n), images(n / 5), labels(n / 5));
    let arrays = [("x_train", &x_train), ("y_train", &y_train), ("x_test", &x_test), ("y_test", &y_test)];
    npz::write(&arrays, zip::Method::Deflated).unwrap()
}

/// Runs `train --data PATH` and checks it exits 2 with `needle` in one line of stderr and
/// leaves the out-dir empty.
fn refused(dir: &Path, data: &Path, needle: &str) {
    let out = dir.join("out");
    let output = mnist(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--epochs",
        "1",
        "--backend",
        "cpu",
        "--out-dir",
        out.to_str().unwrap(),
    ]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{}: {stderr}", data.display());
    let error: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(error.len(), 1, "one error line: {stderr}");
    assert!(error[0].contains(needle), "{}: expected {needle:?} in {stderr}", data.display());
    assert!(!stderr.contains("panicked"), "{stderr}");
    let written: Vec<_> =
        std::fs::read_dir(&out).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    assert!(written.is_empty(), "{}: wrote {written:?}", data.display());
}

#[test]
fn data_of_another_shape_or_with_other_labels_is_refused_in_one_sentence() {
    let dir = temp_dir("data-shape");
    let cases: Vec<(&str, Vec<u8>, String)> = vec![
        ("small.npz", npz_of(50, &[8, 8], |i| (i % 10) as u8), "its train images are 8x8 with 1 channel".into()),
        (
            "rgb.npz",
            npz_of(50, &[28, 28, 3], |i| (i % 10) as u8),
            "its train images are 28x28 with 3 channels; the model takes 28x28 grey".into(),
        ),
        (
            "labels.npz",
            npz_of(50, &[28, 28], |i| if i == 7 { 14 } else { (i % 10) as u8 }),
            "train label 14 (sample 7) is not a class; the model has classes 0 to 9".into(),
        ),
        ("empty.npz", npz_of(0, &[28, 28], |_| 0), "it has no train images".into()),
    ];
    for (name, bytes, needle) in cases {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        refused(&dir, &path, &format!("cannot use --data {}: {needle}", path.display()));
    }
}

#[test]
fn an_idx_directory_missing_a_file_or_with_a_damaged_one_is_refused() {
    let dir = temp_dir("data-idx");
    let idx_dir = dir.join("idx");
    std::fs::create_dir_all(&idx_dir).unwrap();
    let images: Vec<u8> = (0..12 * 784).map(|i| (i % 251) as u8).collect();
    let labels: Vec<u8> = (0..12).map(|i| (i % 10) as u8).collect();
    let write = |name: &str, bytes: &[u8]| std::fs::write(idx_dir.join(name), bytes).unwrap();
    write("train-images-idx3-ubyte.gz", &idx::gzip(&idx::write_u8(&[12, 28, 28], &images).unwrap()));
    write("train-labels-idx1-ubyte", &idx::write_u8(&[12], &labels).unwrap());
    write("t10k-images-idx3-ubyte", &idx::write_u8(&[12, 28, 28], &images).unwrap());
    refused(&dir, &idx_dir, "has no entry named \"t10k-labels-idx1-ubyte[.gz]\"");
    write("t10k-labels-idx1-ubyte.gz", &idx::gzip(&idx::write_u8(&[12], &labels).unwrap())[..30]);
    refused(&dir, &idx_dir, "t10k-labels-idx1-ubyte.gz: gzip");
    write("t10k-labels-idx1-ubyte.gz", &idx::gzip(&idx::write_u8(&[11], &labels[..11]).unwrap()));
    refused(&dir, &idx_dir, "11 labels for the 12 images");
    // Complete and consistent: it trains (the four files are found under their .gz names too).
    write("t10k-labels-idx1-ubyte.gz", &idx::gzip(&idx::write_u8(&[12], &labels).unwrap()));
    let out = dir.join("trained");
    let output =
        mnist(&["train", "--data", idx_dir.to_str().unwrap(), "--epochs", "1", "--out-dir", out.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
}

#[test]
fn damaged_endless_and_huge_data_files_are_refused() {
    let dir = temp_dir("data-damaged");
    let good = synthetic_npz(64, 16);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated.npz", good[..good.len() / 2].to_vec(), "no end of central directory"),
        ("no-tail.npz", good[..good.len() - 1].to_vec(), "no end of central directory"),
        ("text.npz", b"not an archive at all".to_vec(), "bad signature"),
        ("empty.npz", Vec::new(), "zip end of central directory is truncated"),
    ];
    for (name, bytes, needle) in cases {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        refused(&dir, &path, needle);
    }
    // A flipped bit in each half of the compressed data: a checksum or deflate error.
    for at in [good.len() / 4, good.len() / 2] {
        let mut bad = good.clone();
        bad[at] ^= 0x10;
        let path = dir.join("flipped.npz");
        std::fs::write(&path, bad).unwrap();
        refused(&dir, &path, "cannot use --data");
    }
    refused(&dir, Path::new("/dev/zero"), "/dev/zero: it is a device, not a file");
    let huge = dir.join("huge.npz");
    std::fs::File::create(&huge).unwrap().set_len(3 << 30).unwrap(); // sparse: no disk used
    refused(&dir, &huge, "is too large: 3221225472 exceeds the limit of 2147483648");
}

#[test]
fn damaged_mxnet_checkpoints_are_refused_by_predict() {
    let dir = temp_dir("model-damaged");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/model/mnist_cnn");
    let symbol = std::fs::read(format!("{}-symbol.json", shipped.display())).unwrap();
    let params = std::fs::read(format!("{}-0000.params", shipped.display())).unwrap();
    let image = dir.join("digit.pgm");
    let mut pgm = b"P5 28 28 255\n".to_vec();
    pgm.extend((0..784).map(|i| if i % 28 == 14 { 255u8 } else { 0 }));
    std::fs::write(&image, pgm).unwrap();
    let mut long_json = symbol.clone();
    let at = long_json.iter().position(|&b| b == b'[').unwrap();
    long_json.splice(at..at, std::iter::repeat_n(b'[', 100_000));
    let mut huge_dim = params.clone();
    huge_dim[24 + 12..24 + 20].copy_from_slice(&(1u64 << 40).to_le_bytes()); // conv1's first dimension
    let cases: Vec<(&str, Vec<u8>, Vec<u8>, &str)> = vec![
        ("cut-params", symbol.clone(), params[..params.len() / 2].to_vec(), "truncated"),
        ("huge-dim", symbol.clone(), huge_dim, "truncated"),
        ("cut-symbol", symbol[..symbol.len() / 2].to_vec(), params.clone(), "not an MXNet graph JSON"),
        ("deep-symbol", long_json, params.clone(), "not an MXNet graph JSON"),
        ("swapped", params.clone(), symbol.clone(), "not an MXNet graph JSON"),
    ];
    for (name, symbol, params, needle) in cases {
        let prefix = dir.join(name);
        std::fs::write(format!("{}-symbol.json", prefix.display()), symbol).unwrap();
        std::fs::write(format!("{}-0000.params", prefix.display()), params).unwrap();
        let output = mnist(&["predict", "--model", prefix.to_str().unwrap(), image.to_str().unwrap()]);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains(needle), "{name}: expected {needle:?} in {stderr}");
        assert!(!stderr.contains("panicked") && output.stdout.is_empty(), "{name}: {stderr}");
    }
    // An endless --npz: /dev/zero used to be read until memory ran out.
    let shipped = shipped.to_str().unwrap();
    let output = mnist(&["predict", "--model", shipped, "--npz", "/dev/zero"]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot use --npz /dev/zero") && stderr.contains("it is a device"), "{stderr}");
}
