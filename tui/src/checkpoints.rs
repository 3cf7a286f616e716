//! The --checkpoint-dir folder: held by one trainer at a time (a lock file), atomic checkpoint
//! files named by their position, the newest valid one found on start (a corrupt one is skipped
//! with a warning), the two newest kept. Leaves out when to save (checkpoint_policy.rs).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use mnist_core::codec::checkpoint;
use mnist_core::train::TrainerState;

use crate::atomic::write_atomic;
use crate::Failure;

const KEEP: usize = 2;
const LOCK_FILE: &str = "mnist-train.lock";

/// The folder's lock, held until dropped or the process ends, however it ends (an flock).
pub struct DirLock {
    _file: File,
}

/// Takes `dir` for this process, so that a second trainer sharing it refuses at once instead of
/// mixing its checkpoints with ours. The lock file stays (removing it would race a new holder)
/// and holds the holder's PID, for the message. Where the filesystem cannot lock, a warning
/// says so and training goes on unguarded.
pub fn lock(dir: &Path) -> Result<Option<DirLock>, Failure> {
    let fail = |what: &str, e: String| {
        Failure::new(crate::EXIT_BAD_INPUT, format!("cannot {what} --checkpoint-dir {}: {e}", dir.display()))
    };
    std::fs::create_dir_all(dir).map_err(|e| fail("create", e.to_string()))?;
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| fail("open the lock file in", e.to_string()))?;
    match file.try_lock() {
        Ok(()) => {
            // Only the holder writes, so a reader sees a whole PID or an empty file.
            let _ = file.set_len(0).and_then(|()| file.rewind()).and_then(|()| write!(file, "{}", std::process::id()));
            Ok(Some(DirLock { _file: file }))
        }
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim().parse::<u32>() {
                Ok(pid) => format!("process {pid}"),
                Err(_) => String::from("another process"),
            };
            Err(Failure::new(
                crate::EXIT_BAD_INPUT,
                format!(
                    "--checkpoint-dir {} is in use by another mnist train ({holder} holds {}); give each run its own folder",
                    dir.display(),
                    path.display()
                ),
            ))
        }
        Err(TryLockError::Error(e)) => {
            eprintln!(
                "warning: cannot lock --checkpoint-dir {}: {e}; a second run sharing it would not be stopped",
                dir.display()
            );
            Ok(None)
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_folder_is_held_by_one_lock_at_a_time_and_names_its_holder() {
        let dir = std::env::temp_dir().join(format!("mnist-ckpt-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let held = lock(&dir).unwrap().expect("this filesystem locks");
        // Another open file description conflicts even within one process (flock semantics).
        let refused = lock(&dir).err().expect("a second lock is refused");
        assert_eq!(refused.code, crate::EXIT_BAD_INPUT);
        assert!(refused.message.contains(&format!("(process {} holds", std::process::id())), "{}", refused.message);
        drop(held);
        assert!(lock(&dir).unwrap().is_some(), "free again once dropped");
        assert!(list(&dir).is_empty(), "the lock file is not a checkpoint");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
