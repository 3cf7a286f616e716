//! Writing a file so readers see either nothing or the whole of it: a temp file in the same
//! directory, fsync, rename over the target, fsync the directory; on an error the temp file is
//! removed, and what a killed writer left is removed by the next one. Leaves out locking.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let tmp = dir.join(format!("{}{}", temp_prefix(&name.to_string_lossy()), std::process::id()));
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        // Make the rename itself durable; some filesystems cannot sync a directory, which is fine.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Checks that files can be created in `dir` now (a read-only mount, a folder of someone
/// else's), so a long run fails at its start rather than at its end: writes and removes an
/// empty temp file named as `write_atomic`'s are.
pub fn check_writable(dir: &Path) -> io::Result<()> {
    let probe = dir.join(format!("{}{}", temp_prefix("write-check"), std::process::id()));
    File::create(&probe)?;
    fs::remove_file(&probe)
}

/// A temp file is named `.NAME.tmp-PID`, PID being its writer's.
fn temp_prefix(name: &str) -> String {
    format!(".{name}.tmp-")
}

/// Removes the temp files that writers of `names` in `dir` left when they were killed: those of
/// processes that no longer exist (Linux's /proc tells; elsewhere nothing is removed).
pub fn remove_abandoned_temps(dir: &Path, names: &[&str]) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    if !Path::new("/proc/self").exists() {
        return;
    }
    for entry in entries.flatten() {
        let file = entry.file_name();
        let file = file.to_string_lossy();
        let pid = names.iter().find_map(|name| file.strip_prefix(&temp_prefix(name)));
        let gone = pid
            .and_then(|p| p.parse::<u32>().ok())
            .is_some_and(|pid| pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists());
        if gone {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_file_and_leaves_no_temp() {
        let dir = std::env::temp_dir().join(format!("mnist-atomic-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let target = dir.join("out.txt");
        write_atomic(&target, b"one").unwrap();
        write_atomic(&target, b"two").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(write_atomic(&dir.join("missing/x"), b"x").is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn abandoned_temps_of_dead_writers_are_removed_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("mnist-atomic-abandoned-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        // A process that has exited (and been waited for) has no /proc entry.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let ours = std::process::id();
        let files = [
            format!(".out.txt.tmp-{dead}"),
            format!(".out.txt.tmp-{ours}"),
            format!(".other.txt.tmp-{dead}"),
            format!(".out.txt.tmp-x{dead}"),
            "out.txt".to_string(),
        ];
        for f in &files {
            fs::write(dir.join(f), b"x").unwrap();
        }
        remove_abandoned_temps(&dir, &["out.txt"]);
        let mut left: Vec<String> =
            fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        let mut expected = files[1..].to_vec();
        expected.sort();
        assert_eq!(left, expected);
        fs::remove_dir_all(&dir).unwrap();
    }
}
