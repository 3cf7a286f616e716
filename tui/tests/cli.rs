//! End-to-end tests of the real `mnist` binary: a small synthetic MNIST written as a Keras
//! npz, trained for real; logs, exit codes, outputs, the download path through a local HTTP
//! server and its cache.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::Ordering;

use common::{serve, synthetic_npz, temp_dir};
use mnist_core::codec::mxnet;
use sha2::Digest;

fn mnist(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mnist"));
    cmd.args(args).env_remove("MNIST_DATA_URL").env("MNIST_TERMINATION_LOG", "/nonexistent/termination-log");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[test]
fn train_logs_like_keras_and_writes_the_model_and_history() {
    let dir = temp_dir("train");
    let data = dir.join("small.npz");
    std::fs::write(&data, synthetic_npz(640, 120)).unwrap();
    let out_dir = dir.join("out");
    let termination = dir.join("termination-log");
    std::fs::write(&termination, "").unwrap();
    let output = mnist(
        &[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--epochs",
            "3",
            "--out-dir",
            out_dir.to_str().unwrap(),
            "--threads",
            "2",
            "--backend",
            "cpu",
        ],
        &[("MNIST_TERMINATION_LOG", &termination)],
    );
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "stdout:\n{stdout}\nstderr:\n{}", text(&output.stderr));
    assert!(
        !stdout.contains('\r') && !stdout.contains('\x1b'),
        "control characters in a non-terminal log:\n{stdout:?}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("mnist ") && lines[0].contains("backend: cpu"), "{}", lines[0]);
    for expected in ["x_train shape: (640, 28, 28, 1)", "640 train samples", "120 test samples"] {
        assert!(lines.contains(&expected), "missing {expected:?} in\n{stdout}");
    }
    let epochs: Vec<&&str> = lines.iter().filter(|l| l.starts_with("Epoch ")).collect();
    assert_eq!(epochs.len(), 3, "{stdout}");
    assert!(
        epochs[2].starts_with("Epoch 3/3 - ") && epochs[2].contains(" - loss: ") && epochs[2].contains(" - val_acc: "),
        "{}",
        epochs[2]
    );
    let accuracy: f32 =
        lines.iter().find_map(|l| l.strip_prefix("Test accuracy: ")).expect("Test accuracy line").parse().unwrap();
    assert!(accuracy > 0.9, "the synthetic task is easy, accuracy {accuracy}\n{stdout}");
    assert!(lines.iter().any(|l| l.starts_with("Test loss: ")));
    assert!(lines.len() < 20, "a short run's log should be short:\n{stdout}");

    let svg = std::fs::read_to_string(out_dir.join("training.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("polyline"), "training.svg");
    let history = std::fs::read_to_string(out_dir.join("history.csv")).unwrap();
    assert_eq!(history.lines().count(), 4, "{history}");
    assert!(history.starts_with("epoch,loss,acc,val_loss,val_acc,seconds\n1,"));

    // The exported model imports and predicts what the run reported.
    let symbol = std::fs::read(out_dir.join("mnist_cnn-symbol.json")).unwrap();
    let params = std::fs::read(out_dir.join("mnist_cnn-0000.params")).unwrap();
    let imported = mxnet::import(&symbol, &params).unwrap();
    assert_eq!(imported.params.len(), 1_199_882);
    let leftovers: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let summary = std::fs::read_to_string(&termination).unwrap();
    assert!(summary.starts_with("trained 3 epochs: test accuracy "), "{summary}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = temp_dir("json");
    let data = dir.join("small.npz");
    std::fs::write(&data, synthetic_npz(256, 60)).unwrap();
    let output = mnist(
        &[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--epochs",
            "2",
            "--out-dir",
            dir.to_str().unwrap(),
            "--log-format",
            "json",
        ],
        &[],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    // Without -v nothing extra goes to stderr.
    assert!(!text(&output.stderr).contains("samples/s including validation"), "{}", text(&output.stderr));
    let records: Vec<serde_json::Value> =
        text(&output.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let events: Vec<&str> = records.iter().map(|r| r["event"].as_str().unwrap()).collect();
    assert_eq!(events.iter().filter(|e| **e == "epoch_end").count(), 2, "{events:?}");
    assert_eq!(*events.last().unwrap(), "info"); // the model line follows the result
    let result = records.iter().find(|r| r["event"] == "result").unwrap();
    assert!(result["test_accuracy"].as_f64().unwrap() > 0.0);
    assert_eq!(records.iter().find(|r| r["train_samples"].is_number()).unwrap()["train_samples"], 256);
}

#[test]
fn verbose_adds_load_time_and_throughput_on_stderr() {
    let dir = temp_dir("verbose");
    let data = dir.join("small.npz");
    std::fs::write(&data, synthetic_npz(256, 60)).unwrap();
    let output = mnist(
        &["train", "--data", data.to_str().unwrap(), "--epochs", "2", "--out-dir", dir.to_str().unwrap(), "-v"],
        &[],
    );
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("data loaded in "), "{stderr}");
    for epoch in 1..=2 {
        assert!(
            stderr.contains(&format!("epoch {epoch}: ")) && stderr.contains("samples/s including validation"),
            "{stderr}"
        );
    }
    assert!(!text(&output.stdout).contains("samples/s including"), "diagnostics stay off stdout");
}

#[test]
fn bad_arguments_and_data_exit_with_2_and_one_clear_sentence() {
    let dir = temp_dir("bad");
    let garbage = dir.join("garbage.npz");
    std::fs::write(&garbage, b"PK\x03\x04 this is not a zip file").unwrap();
    let missing = dir.join("missing.npz");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["train", "--data", missing.to_str().unwrap()], "missing.npz"),
        (vec!["train", "--data", garbage.to_str().unwrap()], "garbage.npz"),
        (vec!["train", "--data", garbage.to_str().unwrap(), "--backend", "cuda"], "CUDA"),
        (
            vec!["train", "--data", garbage.to_str().unwrap(), "--backend", "cpu", "--precision", "bf16"],
            "--precision bf16 needs --backend cuda",
        ),
        (vec!["train", "--precision", "f8"], "f8"),
        (vec!["train", "--epochs", "0"], "--epochs"),
        (vec!["train", "--no-such-flag"], "--no-such-flag"),
        (vec!["train", "--sha256", "xyz", "--cache-dir", dir.to_str().unwrap()], "--sha256"),
    ];
    for (args, needle) in cases {
        let output = mnist(&args, &[]);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn half_precision_with_auto_says_where_it_runs_and_in_what() {
    let dir = temp_dir("precision");
    let data = dir.join("small.npz");
    std::fs::write(&data, synthetic_npz(256, 60)).unwrap();
    let output = mnist(
        &[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--epochs",
            "1",
            "--precision",
            "f16",
            "--out-dir",
            dir.to_str().unwrap(),
        ],
        &[],
    );
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stderr}");
    if stderr.contains("training on the CPU because") {
        // No GPU here: the CPU trains in f32 and says that the flag did not apply.
        assert!(stderr.contains("(in f32: --precision f16 applies to the CUDA backend only)"), "{stderr}");
        assert!(stdout.contains("backend: cpu") && stdout.contains("precision: f32"), "{stdout}");
    } else {
        assert!(stdout.contains("backend: cuda") && stdout.contains("precision: f16"), "{stdout}");
        assert!(stdout.contains("f16 loss scale"), "{stdout}");
    }
}

/// The number after `key=` in a bench line.
fn field(line: &str, key: &str) -> f64 {
    let value = line.split(' ').find_map(|kv| kv.strip_prefix(key)).unwrap_or_else(|| panic!("no {key} in {line}"));
    value.parse().unwrap_or_else(|_| panic!("{key}{value} in {line}"))
}

#[test]
fn bench_times_training_and_inference_and_refuses_what_it_cannot_time() {
    let dir = temp_dir("bench");
    let data = dir.join("small.npz");
    std::fs::write(&data, synthetic_npz(256, 60)).unwrap();
    let data = data.to_str().unwrap();

    // Training: the line tests/bench/keras_ratio.sh reads.
    let output = mnist(
        &[
            "bench",
            "--data",
            data,
            "--steps",
            "3",
            "--warmup",
            "1",
            "--repeats",
            "2",
            "--batch-size",
            "16",
            "--threads",
            "1",
        ],
        &[],
    );
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let line = stdout
        .lines()
        .find(|l| l.starts_with("mnist_cpu conv=fast threads=1 batch=16 "))
        .unwrap_or_else(|| panic!("{stdout}"));
    let rate = field(line, "samples_per_s=");
    assert!(rate > 0.0 && (field(line, "epoch_s=") - 60_000.0 / rate).abs() < 0.01 * 60_000.0 / rate, "{line}");

    // Inference on the reference convolutions: the file's 60 test images.
    let output = mnist(
        &[
            "bench",
            "--inference",
            "--conv",
            "im2col",
            "--data",
            data,
            "--repeats",
            "1",
            "--warmup",
            "1",
            "--threads",
            "1",
        ],
        &[],
    );
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let line = stdout
        .lines()
        .find(|l| l.starts_with("mnist_cpu_inference conv=im2col threads=1 "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        line.contains(" images=60 ") && field(line, "single_image_ms=") > 0.0 && field(line, "set_s=") > 0.0,
        "{line}"
    );

    // What it cannot time: half precision on the CPU; the GPU where there is none.
    let output = mnist(&["bench", "--precision", "bf16"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("--precision bf16 needs --backend cuda"), "{}", text(&output.stderr));
    let output = mnist(
        &[
            "bench",
            "--backend",
            "cuda",
            "--data",
            data,
            "--steps",
            "2",
            "--warmup",
            "1",
            "--repeats",
            "1",
            "--batch-size",
            "16",
        ],
        &[],
    );
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    if output.status.success() {
        assert!(stdout.contains("mnist_cuda precision=f32 batch=16 samples_per_s="), "{stdout}");
    } else {
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("--backend cuda: ") && stderr.contains("no usable CUDA GPU"), "{stderr}");
    }
}

#[test]
fn a_diverging_run_exits_4_and_keeps_the_last_good_model() {
    let dir = temp_dir("diverge");
    let data = dir.join("small.npz");
    std::fs::write(&data, synthetic_npz(256, 60)).unwrap();
    let output = mnist(
        &[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--epochs",
            "2",
            "--learning-rate",
            "1e36",
            "--out-dir",
            dir.to_str().unwrap(),
        ],
        &[],
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("diverged") && stderr.contains("NaN or infinite"), "{stderr}");
    let symbol = std::fs::read(dir.join("mnist_cnn-symbol.json")).unwrap();
    let params = std::fs::read(dir.join("mnist_cnn-0000.params")).unwrap();
    let imported = mxnet::import(&symbol, &params).unwrap();
    assert!(imported.params.iter().all(|v| v.is_finite()), "the kept model is the last good one");
}

#[test]
fn data_url_downloads_verifies_caches_and_reuses() {
    let dir = temp_dir("download");
    let body = synthetic_npz(256, 60);
    let sha = sha2::Sha256::digest(&body).iter().map(|b| format!("{b:02x}")).collect::<String>();
    let (url, hits) = serve(body.clone(), 200);
    let cache = dir.join("cache");
    let args = [
        "train",
        "--data-url",
        &url,
        "--sha256",
        &sha,
        "--cache-dir",
        cache.to_str().unwrap(),
        "--epochs",
        "1",
        "--out-dir",
        dir.to_str().unwrap(),
    ];
    let first = mnist(&args, &[]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(text(&first.stdout).contains("downloaded from"), "{}", text(&first.stdout));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // Beside the file, only the (empty) lock file through which processes take turns.
    let is_lock = |p: &std::path::PathBuf| p.extension().is_some_and(|e| e == "lock");
    let cached: Vec<_> =
        std::fs::read_dir(&cache).unwrap().map(|e| e.unwrap().path()).filter(|p| !is_lock(p)).collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert_eq!(std::fs::read(&cached[0]).unwrap(), body);

    let second = mnist(&args, &[]);
    assert!(second.status.success(), "{}", text(&second.stderr));
    assert!(text(&second.stdout).contains("(cached)"), "{}", text(&second.stdout));
    assert_eq!(hits.load(Ordering::SeqCst), 1, "the second run must not download");

    // A wrong digest is refused and leaves nothing in a fresh cache.
    let other_cache = dir.join("cache2");
    let wrong = "0".repeat(64);
    let bad =
        mnist(&["train", "--data-url", &url, "--sha256", &wrong, "--cache-dir", other_cache.to_str().unwrap()], &[]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
    assert!(text(&bad.stderr).contains("sha256"), "{}", text(&bad.stderr));
    let left: Vec<_> = std::fs::read_dir(&other_cache)
        .map(|d| d.map(|e| e.unwrap().path()).filter(|p| !is_lock(p)).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_missing_file_on_the_server_is_a_permanent_error() {
    let dir = temp_dir("404");
    let (url, hits) = serve(Vec::new(), 404);
    let output = mnist(&["train", "--data-url", &url, "--cache-dir", dir.to_str().unwrap()], &[]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("404"), "{}", text(&output.stderr));
    assert_eq!(hits.load(Ordering::SeqCst), 1, "a 404 is not retried");
}

#[test]
fn without_a_terminal_mnist_alone_prints_help_and_the_app_refuses_clearly() {
    // output() gives the child pipes and no stdin: not a terminal.
    let output = mnist(&[], &[]);
    assert_eq!(output.status.code(), Some(0));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("Usage: mnist") && stdout.contains("tui"), "{stdout}");
    assert!(stdout.contains("`mnist` with no command (or `mnist tui`) opens the interactive app"), "{stdout}");
    assert!(!stdout.contains('\x1b'), "no terminal codes in a pipe: {stdout:?}");
    let output = mnist(&["tui"], &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("the app needs a terminal") && !stderr.contains("panicked"), "{stderr}");
    assert!(output.stdout.is_empty(), "{:?}", text(&output.stdout));
}
