//! `mnist train`'s outputs when writing them goes wrong, on the real binary: an --out-dir on a
//! full filesystem (a 1 MiB tmpfs, mounted when running as root) and SIGKILL during the final
//! export. Either way the folder holds a whole model (the old one or the new one) or none.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::{synthetic_npz, temp_dir};
use mnist_core::codec::mxnet;

const SYMBOL: &str = "mnist_cnn-symbol.json";
const PARAMS: &str = "mnist_cnn-0000.params";

fn train(data: &Path, out: &Path, seed: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mnist"));
    cmd.args(["train", "--data", data.to_str().unwrap(), "--epochs", "1", "--batch-size", "64", "--threads", "2"])
        .args(["--backend", "cpu", "--heartbeat-secs", "0", "--seed", seed, "--out-dir", out.to_str().unwrap()])
        .env("MNIST_TERMINATION_LOG", "/nonexistent/termination-log");
    cmd
}

fn run(mut cmd: Command) -> Output {
    let output = cmd.output().unwrap();
    assert!(!String::from_utf8_lossy(&output.stderr).contains("panicked"), "{output:?}");
    output
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// A tmpfs with mount `options` (e.g. `size=1m`, `ro`) on `dir` for the life of the value (root only).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, options: &str) -> Result<Tmpfs, String> {
        let uid = Command::new("id").arg("-u").output().map_err(|e| format!("cannot run id: {e}"))?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return Err("not running as root".into());
        }
        std::fs::create_dir_all(dir).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs", dir.to_str().unwrap()])
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !mounted.status.success() {
            return Err(format!("mount failed: {}", String::from_utf8_lossy(&mounted.stderr).trim()));
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn an_out_dir_on_a_full_filesystem_exits_2_and_leaves_no_partial_model() {
    let dir = temp_dir("full-fs");
    let data = dir.join("small.npz");
    std::fs::write(&data, synthetic_npz(128, 32)).unwrap();
    let out = dir.join("out");
    // The f32 model is 4.8 MB: it cannot fit in 1 MiB.
    let tmpfs = match Tmpfs::mount(&out, "size=1m") {
        Ok(t) => t,
        Err(why) => {
            eprintln!("SKIPPED an_out_dir_on_a_full_filesystem_exits_2_and_leaves_no_partial_model: {why}");
            return;
        }
    };
    let output = run(train(&data, &out, "1"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("cannot write {}", out.join(PARAMS).display())), "{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one sentence: {stderr}");
    // No model file at all: half a model (a symbol file without its parameters) looks like one.
    let left = names(&out);
    assert!(!left.iter().any(|n| n.contains("mnist_cnn") || n.contains("tmp")), "{left:?}");
    drop(tmpfs);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_out_dir_that_cannot_be_written_exits_2_before_training() {
    let dir = temp_dir("read-only");
    let data = dir.join("small.npz");
    std::fs::write(&data, synthetic_npz(128, 32)).unwrap();
    let out = dir.join("out");
    let tmpfs = match Tmpfs::mount(&out, "ro") {
        Ok(t) => t,
        Err(why) => {
            eprintln!("SKIPPED an_out_dir_that_cannot_be_written_exits_2_before_training: {why}");
            return;
        }
    };
    let output = run(train(&data, &out, "1"));
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("cannot write into --out-dir {}", out.display())), "{stderr}");
    assert!(stderr.contains("Read-only file system"), "{stderr}");
    // Refused at the start: no epoch was trained.
    assert!(!stdout.contains("Epoch 1/1"), "{stdout}");
    drop(tmpfs);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Sorted (name, length, modified) of every entry: changes once the export begins.
fn listing(dir: &Path) -> Vec<(String, u64, Option<SystemTime>)> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let meta = e.metadata().ok()?;
                    Some((e.file_name().to_string_lossy().into_owned(), meta.len(), meta.modified().ok()))
                })
                .collect()
        })
        .unwrap_or_default();
    entries.sort();
    entries
}

#[test]
fn sigkill_during_the_final_export_leaves_the_old_or_the_new_model_never_a_torn_one() {
    let dir = temp_dir("kill-export");
    let data = dir.join("small.npz");
    std::fs::write(&data, synthetic_npz(128, 32)).unwrap();
    // The two models the folder may hold: seed 1's (there before) and seed 2's (being written).
    let (old_dir, new_dir, out) = (dir.join("old"), dir.join("new"), dir.join("out"));
    for (path, seed) in [(&old_dir, "1"), (&new_dir, "2"), (&out, "1")] {
        assert!(run(train(&data, path, seed)).status.success());
    }
    let old = std::fs::read(old_dir.join(PARAMS)).unwrap();
    let new = std::fs::read(new_dir.join(PARAMS)).unwrap();
    let symbol = std::fs::read(new_dir.join(SYMBOL)).unwrap();
    assert!(old != new && std::fs::read(old_dir.join(SYMBOL)).unwrap() == symbol);

    // Kill seed 2's run when the export starts (the folder first changes) and at delays after,
    // so kills land while each file is written, synced and renamed.
    let delays_us = [0, 0, 100, 300, 600, 1_000, 2_000, 3_000, 5_000, 8_000, 12_000, 20_000, 40_000, 80_000];
    let mut seen = [0usize; 2];
    for &delay in &delays_us {
        let before = listing(&out);
        let mut child = train(&data, &out, "2").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let start = Instant::now();
        while listing(&out) == before && child.try_wait().unwrap().is_none() {
            assert!(start.elapsed() < Duration::from_secs(120), "the export never started");
        }
        std::thread::sleep(Duration::from_micros(delay));
        let _ = child.kill(); // SIGKILL (a no-op if it already finished)
        child.wait().unwrap();

        let params = std::fs::read(out.join(PARAMS)).expect("the parameters are never absent once written");
        assert!(params == old || params == new, "a torn {PARAMS} ({} bytes) after a kill at +{delay}us", params.len());
        assert_eq!(std::fs::read(out.join(SYMBOL)).unwrap(), symbol, "{SYMBOL} after a kill at +{delay}us");
        mxnet::import(&symbol, &params).unwrap();
        seen[usize::from(params == new)] += 1;
        let history = std::fs::read_to_string(out.join("history.csv")).unwrap();
        assert!(
            history.starts_with("epoch,") && history.ends_with('\n') && history.lines().count() == 2,
            "{history:?}"
        );
        let svg = std::fs::read_to_string(out.join("training.svg")).unwrap();
        assert!(svg.trim_end().ends_with("</svg>"), "a torn training.svg after a kill at +{delay}us");
        if params == new {
            // Start the next try from the old model again.
            std::fs::copy(old_dir.join(PARAMS), out.join(PARAMS)).unwrap();
        }
    }
    eprintln!("kills during the export: {} left the old model, {} the new one", seen[0], seen[1]);
    assert!(seen[0] > 0, "no kill landed before the new model was in place");

    // What the killed runs left behind (their temp files) goes with the next complete run.
    assert!(run(train(&data, &out, "2")).status.success());
    let left = names(&out);
    assert_eq!(left, ["history.csv", PARAMS, SYMBOL, "training.svg"], "{left:?}");
    assert!(std::fs::read(out.join(PARAMS)).unwrap() == new);
    std::fs::remove_dir_all(&dir).unwrap();
}
