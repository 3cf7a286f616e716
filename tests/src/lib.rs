//! Helpers shared by the cross-crate tests: finding the real MNIST file.

use std::path::PathBuf;

/// `$MNIST_DATA` if set. CI sets it and requires the file; on a user's machine without it the
/// tests that need it print a loud SKIPPED line instead of passing silently.
pub fn mnist_data() -> Option<PathBuf> {
    match std::env::var_os("MNIST_DATA") {
        Some(p) => {
            let path = PathBuf::from(p);
            assert!(path.is_file(), "MNIST_DATA={} does not name a file", path.display());
            Some(path)
        }
        None => {
            eprintln!("SKIPPED: MNIST_DATA is not set; this real-data test did not run");
            None
        }
    }
}
