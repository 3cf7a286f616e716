//! End to end: the real binary's app in a fixed-size tmux window, driven with `send-keys` and
//! read with `capture-pane`: trains a small run to the end, saves the model, draws a digit with
//! the keyboard fallback, opens the explore view, quits and leaves the terminal as it was.
//! Needs tmux and $MNIST_DATA; without either it prints a loud SKIPPED line.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn skipped(why: &str) {
    // Straight to stderr: libtest hides eprintln! output of passing tests.
    let line = format!("SKIPPED: {why}\n");
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
}

/// A tmux server of our own (its own socket), killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux").arg("-L").arg(&self.socket).args(args).output().expect("tmux runs")
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "app"];
        args.extend(keys);
        let out = self.run(&args);
        assert!(out.status.success(), "send-keys: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "app"]).stdout).into_owned()
    }

    /// Polls the screen until it holds `text`; panics with the last screen after `limit`.
    fn wait_for(&self, text: &str, limit: Duration) -> String {
        let started = Instant::now();
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(started.elapsed() < limit, "waited {limit:?} for {text:?}; the screen:\n{screen}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

fn tmux_available() -> bool {
    Command::new("tmux").arg("-V").output().is_ok_and(|o| o.status.success())
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mnist-tui-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

#[test]
fn the_app_trains_saves_draws_explores_and_quits_in_a_real_terminal() {
    if !tmux_available() {
        assert!(std::env::var_os("MNIST_REQUIRE_TMUX").is_none(), "MNIST_REQUIRE_TMUX is set but tmux is missing");
        skipped("tmux is not installed (apt-get install tmux); the app's end-to-end test did not run");
        return;
    }
    let Some(data) = std::env::var_os("MNIST_DATA").map(PathBuf::from) else {
        skipped("MNIST_DATA is not set; the app's end-to-end test did not run");
        return;
    };
    let dir = temp_dir();
    let tmux = Tmux { socket: format!("mnist-e2e-{}", std::process::id()) };
    // After the app exits, its exit code is printed where capture-pane can see it.
    let command = format!(
        "{} tui --data {} --limit 2000 --epochs 1 --backend cpu --out-dir {}; echo \"app exited with $?\"; sleep 60",
        quote(Path::new(env!("CARGO_BIN_EXE_mnist"))),
        quote(&data),
        quote(&dir)
    );
    let out = tmux.run(&["new-session", "-d", "-x", "120", "-y", "40", "-s", "app", &command]);
    assert!(out.status.success(), "new-session: {}", String::from_utf8_lossy(&out.stderr));

    // The app opens on the train view with its settings and legend, and loads the data.
    let screen = tmux.wait_for("Data ready: 2000 train and 334 test images", Duration::from_secs(60));
    for text in ["1 Train", "Epochs     1", "Limit      2000", "s start", "q quit"] {
        assert!(screen.contains(text), "{text:?} missing:\n{screen}");
    }

    // Train to the end.
    tmux.keys(&["s"]);
    let screen = tmux.wait_for("Training finished: test accuracy", Duration::from_secs(300));
    assert!(screen.contains("Finished - epoch 1/1"), "{screen}");
    assert!(screen.contains("Epoch 1: loss"), "{screen}");

    // Export is offered by a notice: e opens the prompt, Enter saves to the suggested prefix in
    // --out-dir.
    assert!(screen.contains("e saves the model"), "{screen}");
    tmux.keys(&["e"]);
    tmux.wait_for("Save the model", Duration::from_secs(10));
    tmux.keys(&["Enter"]);
    tmux.wait_for("Saved the model", Duration::from_secs(20));
    assert!(dir.join("mnist_cnn-symbol.json").is_file() && dir.join("mnist_cnn-0000.params").is_file());

    // Draw a 1 with the keyboard: up 10, pen down, down 20, pen up.
    tmux.keys(&["2"]);
    tmux.wait_for("Pad 28x28", Duration::from_secs(10));
    tmux.keys(&["Up"; 10]);
    tmux.keys(&["d"]);
    tmux.keys(&["Down"; 20]);
    tmux.keys(&["d"]);
    let screen = tmux.wait_for("Prediction: ", Duration::from_secs(10));
    assert!(screen.contains("Model: trained here (1 epoch)"), "{screen}");
    assert!(screen.matches("██").count() >= 20, "the stroke is on the pad:\n{screen}");
    assert!(screen.contains("Probabilities"), "{screen}");

    // The explore view predicts the test images and shows the confusion matrix.
    tmux.keys(&["3"]);
    let screen = tmux.wait_for("Confusion matrix", Duration::from_secs(60));
    assert!(screen.contains("Test images: 334"), "{screen}");

    // Quit: the app exits 0 and the terminal leaves the app's screen.
    tmux.keys(&["q"]);
    let screen = tmux.wait_for("app exited with 0", Duration::from_secs(20));
    assert!(!screen.contains("Confusion matrix"), "the alternate screen was left:\n{screen}");
    let _ = std::fs::remove_dir_all(&dir);
}
