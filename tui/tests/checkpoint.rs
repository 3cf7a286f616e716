//! Checkpoints on the real binary: a run killed with SIGKILL mid-epoch and started again ends
//! with parameters bit-identical to an uninterrupted run; SIGTERM finishes the step, writes a
//! checkpoint and exits 143, and the next start resumes and completes; a second trainer on the
//! same folder refuses at once, until the first one is gone.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{synthetic_npz, temp_dir};

fn train_args<'a>(data: &'a str, out: &'a str, epochs: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--data",
        data,
        "--epochs",
        epochs,
        "--batch-size",
        "64",
        "--threads",
        "2",
        "--out-dir",
        out,
        "--heartbeat-secs",
        "0",
    ]
}

fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mnist"));
    cmd.args(args).env("MNIST_TERMINATION_LOG", "/nonexistent/termination-log");
    cmd
}

fn checkpoints(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.retain(|n| n.ends_with(".ckpt"));
    names.sort();
    names
}

#[test]
fn sigkill_mid_epoch_then_restart_is_bit_identical_to_an_uninterrupted_run() {
    let dir = temp_dir("sigkill");
    let data = dir.join("small.npz");
    std::fs::write(&data, synthetic_npz(640, 120)).unwrap(); // 10 steps of 64 per epoch
    let (data, straight, resumed, ckpt) =
        (data.to_str().unwrap(), dir.join("straight"), dir.join("resumed"), dir.join("ckpt"));

    let status = command(&train_args(data, straight.to_str().unwrap(), "3")).stdout(Stdio::null()).status().unwrap();
    assert!(status.success());

    // Checkpoint after every step; kill once one from the middle of epoch 2 exists.
    let mut args = train_args(data, resumed.to_str().unwrap(), "3");
    args.extend(["--checkpoint-dir", ckpt.to_str().unwrap(), "--checkpoint-interval", "0"]);
    let mut child = command(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let start = Instant::now();
    loop {
        if checkpoints(&ckpt)
            .iter()
            .any(|n| n.starts_with("checkpoint-e0001-s00000") && n > &"checkpoint-e0001-s000003".to_string())
        {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed mid-epoch");
        assert!(start.elapsed() < Duration::from_secs(120), "no mid-epoch checkpoint appeared");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!resumed.join("mnist_cnn-0000.params").exists(), "the killed run must not have finished");

    let output = command(&args).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("resuming from"), "{stdout}");
    let a = std::fs::read(straight.join("mnist_cnn-0000.params")).unwrap();
    let b = std::fs::read(resumed.join("mnist_cnn-0000.params")).unwrap();
    assert!(a == b, "the resumed run's parameters differ from the uninterrupted run's");
    assert!(checkpoints(&ckpt).len() <= 2, "old checkpoints are pruned: {:?}", checkpoints(&ckpt));
}

#[test]
fn sigterm_writes_a_checkpoint_exits_143_and_the_next_start_completes() {
    let dir = temp_dir("sigterm");
    let data = dir.join("small.npz");
    std::fs::write(&data, synthetic_npz(640, 120)).unwrap();
    let (data, out, ckpt) = (data.to_str().unwrap(), dir.join("out"), dir.join("ckpt"));
    let mut args = train_args(data, out.to_str().unwrap(), "6");
    args.extend(["--checkpoint-dir", ckpt.to_str().unwrap()]);

    let mut child = command(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // After the first epoch's line, training is inside epoch 2: ask it to stop.
    let first = lines.find(|l| l.as_ref().is_ok_and(|l| l.starts_with("Epoch 1/6"))).expect("an epoch line").unwrap();
    assert!(first.contains("val_acc"), "{first}");
    let sent = Instant::now();
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(143), "{stderr}");
    assert!(sent.elapsed() < Duration::from_secs(30), "it must stop well within a pod's grace period");
    assert!(stderr.contains("stopped by SIGTERM") && stderr.contains("checkpoint written to"), "{stderr}");
    let saved = checkpoints(&ckpt);
    assert!(!saved.is_empty(), "no checkpoint after SIGTERM");

    let output = command(&args).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("resuming from"), "{stdout}");
    assert!(stdout.contains("Epoch 6/6 - "), "{stdout}");
    assert!(!stdout.contains("Epoch 1/6 - "), "the finished epoch is not trained again:\n{stdout}");
    let history = std::fs::read_to_string(out.join("history.csv")).unwrap();
    assert_eq!(history.lines().count(), 7, "all six epochs are in the history:\n{history}");
}

#[test]
fn a_corrupt_newest_checkpoint_is_skipped_with_a_warning() {
    let dir = temp_dir("corrupt");
    let data = dir.join("small.npz");
    std::fs::write(&data, synthetic_npz(640, 120)).unwrap();
    let (data, out, ckpt) = (data.to_str().unwrap(), dir.join("out"), dir.join("ckpt"));
    // Two epochs with a checkpoint after each, then ask for a third.
    let mut args = train_args(data, out.to_str().unwrap(), "2");
    args.extend(["--checkpoint-dir", ckpt.to_str().unwrap()]);
    assert!(command(&args).output().unwrap().status.success());
    let saved = checkpoints(&ckpt);
    assert_eq!(saved, ["checkpoint-e0001-s000000.ckpt", "checkpoint-e0002-s000000.ckpt"]);
    // Flip one byte in the middle of the newest one: its checksum no longer matches.
    let newest = ckpt.join(&saved[1]);
    let mut bytes = std::fs::read(&newest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&newest, bytes).unwrap();

    let mut args = train_args(data, out.to_str().unwrap(), "3");
    args.extend(["--checkpoint-dir", ckpt.to_str().unwrap()]);
    let output = command(&args).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("warning: skipping checkpoint")
            && stderr.contains("checkpoint-e0002")
            && stderr.contains("checksum"),
        "{stderr}"
    );
    assert!(stdout.contains("checkpoint-e0001-s000000.ckpt (epoch 2, step 0)"), "{stdout}");
    assert!(
        stdout.contains("Epoch 2/3 - ") && stdout.contains("Epoch 3/3 - ") && !stdout.contains("Epoch 1/3 - "),
        "{stdout}"
    );
}

#[test]
fn a_second_trainer_on_the_same_checkpoint_dir_refuses_at_once_and_the_lock_dies_with_its_holder() {
    let dir = temp_dir("shared-dir");
    let data = dir.join("small.npz");
    std::fs::write(&data, synthetic_npz(640, 120)).unwrap();
    let (data, ckpt) = (data.to_str().unwrap(), dir.join("ckpt"));
    let with_dir = |out: &str, epochs: &'static str| {
        let mut args: Vec<String> = train_args(data, out, epochs).into_iter().map(String::from).collect();
        args.extend(["--checkpoint-dir".into(), ckpt.to_str().unwrap().into()]);
        args
    };
    let (first_out, second_out) = (dir.join("first"), dir.join("second"));
    let first_args = with_dir(first_out.to_str().unwrap(), "50");
    let refs: Vec<&str> = first_args.iter().map(String::as_str).collect();
    let mut first = command(&refs).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
    // Its first line comes after it took the folder.
    let line = lines.next().expect("a first line").unwrap();
    assert!(line.starts_with("mnist "), "{line}");

    let second_args = with_dir(second_out.to_str().unwrap(), "50");
    let refs: Vec<&str> = second_args.iter().map(String::as_str).collect();
    let started = Instant::now();
    let output = command(&refs).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(started.elapsed() < Duration::from_secs(30), "it must refuse at once, not after training");
    assert!(!stdout.contains("Epoch "), "the second trainer trained:\n{stdout}");
    let expected =
        format!("--checkpoint-dir {} is in use by another mnist train (process {} holds", ckpt.display(), first.id());
    assert!(stderr.starts_with(&format!("error: {expected}")) && stderr.lines().count() == 1, "{stderr}");
    assert!(first.try_wait().unwrap().is_none(), "the first trainer goes on");

    // SIGKILL gives no chance to clean up: the lock still goes with the process.
    first.kill().unwrap();
    first.wait().unwrap();
    let third_args = with_dir(second_out.to_str().unwrap(), "1");
    let refs: Vec<&str> = third_args.iter().map(String::as_str).collect();
    let output = command(&refs).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    std::fs::remove_dir_all(&dir).unwrap();
}
