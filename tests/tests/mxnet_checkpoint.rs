//! The MXNet checkpoint codec against real MXNet 1.9.1: our exports run in MXNet (via
//! fixtures/mxnet/check_export.py when MXNET_PYTHON is set) and MXNet-made fixtures import.
//! Leaves out training; "our probabilities" come from an f64 reference forward pass below.

use std::path::{Path, PathBuf};
use std::process::Command;

use mnist_core::codec::mxnet::{self, Dtype, Flavour};
use mnist_core::config::{self, Config};
use mnist_core::{Error, Rng};
use proptest::prelude::*;

/// MXNet's and our probabilities must agree this closely.
const TOLERANCE: f64 = 1e-5;

/// Our model's probabilities for `images` (N, H, W, C) in [0, 1].
fn our_probabilities(config: &Config, params: &[f32], images: &[f32]) -> Vec<f32> {
    // The product's own inference path; an f64 reference cross-checks it.
    let n = images.len() / config.input_len();
    let mut net = mnist_core::model::Network::new(mnist_core::CpuBackend::new(2), *config, n).unwrap();
    net.set_params(params).unwrap();
    let ours = net.predict(images).unwrap();
    let reference = reference_probabilities(config, params, images);
    let max_diff = ours.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(max_diff < 1e-5, "Network::predict differs from the f64 reference by {max_diff}");
    ours
}

// ---- A straightforward f64 forward pass of Keras's mnist_cnn, layouts as in Config::layout.

/// x: (H, W, C), kernel: (K, K, C, O) -> (H-K+1, W-K+1, O), relu applied.
fn conv_relu(x: &[f64], (h, w, c): (usize, usize, usize), kernel: &[f64], bias: &[f64], k: usize) -> Vec<f64> {
    let o_n = bias.len();
    let (oh, ow) = (h - k + 1, w - k + 1);
    let mut out = vec![0.0; oh * ow * o_n];
    for y in 0..oh {
        for x0 in 0..ow {
            for o in 0..o_n {
                let mut sum = bias[o];
                for ky in 0..k {
                    for kx in 0..k {
                        for ci in 0..c {
                            sum += x[((y + ky) * w + x0 + kx) * c + ci] * kernel[((ky * k + kx) * c + ci) * o_n + o];
                        }
                    }
                }
                out[(y * ow + x0) * o_n + o] = sum.max(0.0);
            }
        }
    }
    out
}

/// x: (H, W, C) -> (H/P, W/P, C), a ragged edge dropped.
fn maxpool(x: &[f64], (h, w, c): (usize, usize, usize), p: usize) -> Vec<f64> {
    let (oh, ow) = (h / p, w / p);
    let mut out = vec![f64::NEG_INFINITY; oh * ow * c];
    for y in 0..oh * p {
        for x0 in 0..ow * p {
            for ci in 0..c {
                let o = &mut out[((y / p) * ow + x0 / p) * c + ci];
                *o = o.max(x[(y * w + x0) * c + ci]);
            }
        }
    }
    out
}

/// x: (IN,), kernel: (IN, OUT) -> (OUT,)
fn dense(x: &[f64], kernel: &[f64], bias: &[f64], relu: bool) -> Vec<f64> {
    let out_n = bias.len();
    (0..out_n)
        .map(|j| {
            let sum = bias[j] + x.iter().enumerate().map(|(i, v)| v * kernel[i * out_n + j]).sum::<f64>();
            if relu {
                sum.max(0.0)
            } else {
                sum
            }
        })
        .collect()
}

fn reference_probabilities(config: &Config, params: &[f32], images: &[f32]) -> Vec<f32> {
    let layout = config.layout();
    let p = |i: usize| -> Vec<f64> { params[layout.span(i).range()].iter().map(|&v| v as f64).collect() };
    let (k1, b1, k2, b2) =
        (p(config::CONV1_KERNEL), p(config::CONV1_BIAS), p(config::CONV2_KERNEL), p(config::CONV2_BIAS));
    let (k3, b3, k4, b4) =
        (p(config::DENSE1_KERNEL), p(config::DENSE1_BIAS), p(config::DENSE2_KERNEL), p(config::DENSE2_BIAS));
    let mut probs = Vec::new();
    for image in images.chunks_exact(config.input_len()) {
        let x: Vec<f64> = image.iter().map(|&v| v as f64).collect();
        let x = conv_relu(&x, (config.height, config.width, config.channels), &k1, &b1, config.kernel);
        let x = conv_relu(&x, config.conv1_out(), &k2, &b2, config.kernel);
        let x = maxpool(&x, config.conv2_out(), config.pool);
        let x = dense(&x, &k3, &b3, true); // dropout is the identity at inference
        let logits = dense(&x, &k4, &b4, false);
        let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = logits.iter().map(|l| (l - max).exp()).sum();
        probs.extend(logits.iter().map(|l| ((l - max).exp() / sum) as f32));
    }
    probs
}

// ---- .npy files: just enough to read the fixtures and write float32 arrays for the script.

fn write_npy_f32(path: &Path, shape: &[usize], data: &[f32]) {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let dims = if shape.len() == 1 { format!("{},", dims[0]) } else { dims.join(", ") };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({dims}), }}");
    // Version 1.0 pads magic (6) + version (2) + length (2) + header + '\n' to 64 bytes.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend(data.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(path, bytes).unwrap();
}

/// (shape, values as f32) of a version 1 `|u1` or `<f4` C-order .npy.
fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00", "{}", path.display());
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + len]).unwrap();
    let between = |start: &str, end: char| {
        let from = header.find(start).unwrap() + start.len();
        &header[from..from + header[from..].find(end).unwrap()]
    };
    let shape: Vec<usize> = between("'shape': (", ')')
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let data = &bytes[10 + len..];
    let values = match between("'descr': '", '\'') {
        "|u1" => data.iter().map(|&b| b as f32).collect(),
        "<f4" => data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect::<Vec<_>>(),
        other => panic!("{}: dtype {other}", path.display()),
    };
    assert_eq!(values.len(), shape.iter().product::<usize>());
    (shape, values)
}

// ---- Fixtures and helpers.

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/mxnet").join(name)
}

fn read_fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// The 8 MNIST test images the fixtures were made from, (8, 28, 28, 1) in [0, 1].
fn test_images() -> Vec<f32> {
    let (shape, pixels) = read_npy(&fixture("images.npy"));
    assert_eq!(shape, [8, 28, 28]);
    pixels.iter().map(|p| p / 255.0).collect()
}

/// He-uniform kernels and small biases, as a freshly initialised Keras model has.
fn random_params(config: &Config, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let mut params = Vec::new();
    for slot in config.layout().slots {
        let fan_in: usize = slot.shape[..slot.shape.len() - 1].iter().product();
        let limit = if slot.shape.len() > 1 { (6.0 / fan_in as f32).sqrt() } else { 0.1 };
        params.extend((0..slot.len).map(|_| (rng.next_f32() * 2.0 - 1.0) * limit));
    }
    params
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).abs()).fold(0.0, f64::max)
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes the checkpoint, the images and our probabilities, and has real MXNet compare.
fn check_with_mxnet(name: &str, config: &Config, params: &[f32], dtype: Dtype, images: &[f32]) {
    let checkpoint = mxnet::export(config, params, dtype).unwrap();
    // Our probabilities from exactly what the file holds (f16 export rounds).
    let stored = mxnet::import(checkpoint.symbol.as_bytes(), &checkpoint.params).unwrap();
    assert_eq!(stored.flavour, Flavour::Ours);
    assert_eq!(stored.config, *config);
    assert_eq!(stored.dtype, dtype);
    let ours = our_probabilities(config, &stored.params, images);

    let dir = scratch_dir(name);
    let prefix = dir.join("model").to_str().unwrap().to_string();
    std::fs::write(mxnet::symbol_file_name(&prefix), &checkpoint.symbol).unwrap();
    std::fs::write(mxnet::params_file_name(&prefix, 0), &checkpoint.params).unwrap();
    let n = images.len() / config.input_len();
    write_npy_f32(&dir.join("inputs.npy"), &[n, config.height, config.width, config.channels], images);
    write_npy_f32(&dir.join("ours.npy"), &[n, config.classes], &ours);

    let Some(python) = std::env::var_os("MXNET_PYTHON") else {
        // Straight to stderr: the test harness captures eprintln!, and this must be seen.
        let line =
            format!("SKIPPED: MXNET_PYTHON not set; {name} exported to {} but not run in MXNet\n", dir.display());
        let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
        return;
    };
    let output = Command::new(&python)
        .arg(fixture("check_export.py"))
        .args([&prefix, dir.join("inputs.npy").to_str().unwrap(), dir.join("ours.npy").to_str().unwrap()])
        .output()
        .unwrap_or_else(|e| panic!("running MXNET_PYTHON={}: {e}", python.to_string_lossy()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{name}: {}", stdout.trim());
    assert!(
        output.status.success(),
        "{name}: check_export.py failed\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

// ---- Export: MXNet computes what we compute.

#[test]
fn float32_export_runs_in_mxnet() {
    let config = Config::default();
    check_with_mxnet("mxnet_export_f32", &config, &random_params(&config, 1), Dtype::F32, &test_images());
}

#[test]
fn float16_export_runs_in_mxnet() {
    let config = Config::default();
    check_with_mxnet("mxnet_export_f16", &config, &random_params(&config, 2), Dtype::F16, &test_images());
}

#[test]
fn tiny_non_square_multichannel_export_runs_in_mxnet() {
    // Non-square and 2 channels so that any H/W or channel mix-up changes the numbers; 11 wide
    // leaves a ragged pooling edge (9 -> 7 -> 3).
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
    let mut rng = Rng::new(3);
    let images: Vec<f32> = (0..5 * config.input_len()).map(|_| rng.next_f32()).collect();
    check_with_mxnet("mxnet_export_tiny", &config, &random_params(&config, 3), Dtype::F32, &images);
}

// ---- Import: MXNet-made checkpoints give MXNet's probabilities.

fn import_fixture(prefix: &str) -> mxnet::Imported {
    let symbol = read_fixture(&format!("{prefix}-symbol.json"));
    let params = read_fixture(&format!("{prefix}-0000.params"));
    mxnet::import(&symbol, &params).unwrap()
}

fn assert_matches_mxnet(imported: &mxnet::Imported, probs_fixture: &str) -> f64 {
    let (shape, theirs) = read_npy(&fixture(probs_fixture));
    assert_eq!(shape, [8, 10]);
    let ours = our_probabilities(&imported.config, &imported.params, &test_images());
    let diff = max_abs_diff(&ours, &theirs);
    eprintln!("{probs_fixture}: max abs difference from MXNet {diff:.3e}");
    assert!(diff <= TOLERANCE, "{probs_fixture}: max abs difference {diff:.3e}");
    diff
}

#[test]
fn gluon_export_imports_and_matches_mxnet() {
    let imported = import_fixture("gluon_mnist_cnn");
    assert_eq!(imported.flavour, Flavour::Gluon);
    assert_eq!(imported.dtype, Dtype::F16);
    assert_eq!(imported.config, Config::default());
    // The Gluon net ends at its logits; gluon_probs.npy is MXNet's softmax of them.
    assert!(!imported.softmax_output);
    assert!(!imported.image_size_from_symbol);
    assert_matches_mxnet(&imported, "gluon_probs.npy");
}

#[test]
fn keras_mxnet_export_imports_and_matches_mxnet() {
    let imported = import_fixture("keras_mnist_cnn");
    assert_eq!(imported.flavour, Flavour::KerasMxnet);
    assert_eq!(imported.dtype, Dtype::F16);
    assert_eq!(imported.config, Config::default());
    assert!(imported.softmax_output && imported.image_size_from_symbol);
    assert_matches_mxnet(&imported, "keras_probs.npy");
}

#[test]
fn imported_gluon_model_reexports_and_runs_in_mxnet() {
    // Closes the loop: Gluon's layout converted by import, written by export, run by MXNet.
    let imported = import_fixture("gluon_mnist_cnn");
    check_with_mxnet("mxnet_reexport_gluon", &imported.config, &imported.params, Dtype::F16, &test_images());
}

// ---- Bad input: clear errors, never a panic.

#[test]
fn damaged_fixtures_give_clear_errors() {
    let symbol = read_fixture("gluon_mnist_cnn-symbol.json");
    let params = read_fixture("gluon_mnist_cnn-0000.params");
    for cut in [0, 7, 24, 100, params.len() / 2, params.len() - 1] {
        let err = mxnet::import(&symbol, &params[..cut]).unwrap_err();
        assert!(matches!(err, Error::Truncated { .. }), "cut at {cut}: {err}");
    }
    // Gluon's params under keras-mxnet's graph: the names are not there.
    let keras_symbol = read_fixture("keras_mnist_cnn-symbol.json");
    let err = mxnet::import(&keras_symbol, &params).unwrap_err();
    assert!(matches!(&err, Error::Missing { name, .. } if name == "conv2d_1/kernel1"), "{err}");
    // Some other JSON.
    let err = mxnet::import(br#"{"nodes": 3}"#, &params).unwrap_err();
    assert!(err.to_string().contains("not an MXNet graph JSON"), "{err}");
    // The symbol file given as params and vice versa.
    let err = mxnet::import(&params, &symbol).unwrap_err();
    assert!(matches!(err, Error::Malformed { .. }), "{err}");
}

proptest! {
    // No regression file: integration tests have no lib.rs for proptest to place it beside.
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_real_checkpoints_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        in_symbol in any::<bool>(),
        header_only in any::<bool>(),
    ) {
        let mut symbol = read_fixture("keras_mnist_cnn-symbol.json");
        let mut params = read_fixture("keras_mnist_cnn-0000.params");
        let bytes = if in_symbol { &mut symbol } else { &mut params };
        // Half the cases aim at the first array's header, where a flipped byte matters most.
        let span = if header_only && !in_symbol { 128 } else { bytes.len() };
        for (index, value) in &edits {
            bytes[index.index(span)] = *value;
        }
        if let Ok(imported) = mxnet::import(&symbol, &params) {
            prop_assert_eq!(imported.params.len(), imported.config.param_count());
        }
    }
}
