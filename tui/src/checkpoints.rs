//! The --checkpoint-dir folder: atomic checkpoint files named by their position, the newest
//! valid one found on start (a corrupt one is skipped with a warning), the two newest kept.

use std::path::{Path, PathBuf};

use mnist_core::codec::checkpoint;
use mnist_core::train::TrainerState;

use crate::atomic::write_atomic;
use crate::Failure;

const KEEP: usize = 2;

fn file_name(state: &TrainerState) -> String {
    format!("checkpoint-e{:04}-s{:06}.ckpt", state.epochs_done, state.step_in_epoch)
}

/// Checkpoint files in `dir`, oldest first (the name orders them by position).
fn list(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| {
        p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("checkpoint-") && n.ends_with(".ckpt"))
    });
    files.sort();
    files
}

/// The newest checkpoint in `dir` that decodes, or None. Corrupt files are reported on stderr
/// and skipped, so a crash while writing never blocks a restart.
pub fn newest(dir: &Path) -> Option<(PathBuf, TrainerState)> {
    remove_stale_temp_files(dir);
    for path in list(dir).into_iter().rev() {
        match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| checkpoint::decode(&b).map_err(|e| e.to_string()))
        {
            Ok(state) => return Some((path, state)),
            Err(e) => eprintln!("warning: skipping checkpoint {}: {e}", path.display()),
        }
    }
    None
}

/// A process killed while writing leaves its temp file (`.checkpoint-...ckpt.tmp-PID`).
fn remove_stale_temp_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(".checkpoint-") && name.contains(".ckpt.tmp-") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Writes `state` atomically and removes all but the newest few checkpoints.
pub fn save(dir: &Path, state: &TrainerState) -> Result<PathBuf, Failure> {
    let fail = |what: &str, e: String| {
        Failure::new(crate::EXIT_BAD_INPUT, format!("cannot {what} in --checkpoint-dir {}: {e}", dir.display()))
    };
    std::fs::create_dir_all(dir).map_err(|e| fail("create the folder", e.to_string()))?;
    let bytes = checkpoint::encode(state).map_err(|e| fail("encode a checkpoint", e.to_string()))?;
    let path = dir.join(file_name(state));
    write_atomic(&path, &bytes).map_err(|e| fail("write a checkpoint", e.to_string()))?;
    let files = list(dir);
    for old in files.iter().take(files.len().saturating_sub(KEEP)) {
        let _ = std::fs::remove_file(old);
    }
    Ok(path)
}

/// Settings that must match for a checkpoint to continue this run (--epochs may change).
pub fn mismatch(
    state: &TrainerState,
    batch_size: usize,
    seed: u64,
    learning_rate: f32,
    epsilon: f32,
) -> Option<String> {
    let c = &state.config;
    let checks = [
        ("--batch-size", c.batch_size.to_string(), batch_size.to_string()),
        ("--seed", c.seed.to_string(), seed.to_string()),
        ("--learning-rate", c.optimizer.learning_rate.to_string(), learning_rate.to_string()),
        ("--epsilon", c.optimizer.epsilon.to_string(), epsilon.to_string()),
    ];
    checks
        .into_iter()
        .find(|(_, a, b)| a != b)
        .map(|(flag, then, now)| format!("it was made with {flag} {then}, this run has {now}"))
}
