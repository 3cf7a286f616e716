//! Helpers shared by the cross-crate tests: finding the real MNIST and Fashion-MNIST files.

use std::path::{Path, PathBuf};

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
            skipped("MNIST_DATA is not set; this real-data test did not run");
            None
        }
    }
}

/// Where Debian's dataset-fashion-mnist puts LeCun-format idx.gz files.
pub const FASHION_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// The Fashion-MNIST folder if installed. CI sets $MNIST_REQUIRE_FASHION and installs it; on
/// a user's machine without it the tests print a loud SKIPPED line.
pub fn fashion_dir() -> Option<&'static Path> {
    let dir = Path::new(FASHION_DIR);
    if dir.join("train-images-idx3-ubyte.gz").is_file() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("MNIST_REQUIRE_FASHION").is_none(),
        "MNIST_REQUIRE_FASHION is set but {FASHION_DIR} is missing"
    );
    skipped(&format!(
        "{FASHION_DIR} is missing (apt-get install dataset-fashion-mnist); this Fashion-MNIST test did not run"
    ));
    None
}

/// Prints a SKIPPED line straight to stderr: libtest hides eprintln! output of passing tests,
/// and a test that did not run must say so visibly.
pub fn skipped(why: &str) {
    let line = format!("SKIPPED: {why}\n");
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
}

/// Cases for each decoder property test: `$MNIST_PROPTEST_CASES`, else 256 so CI stays fast.
/// tests/bench/fuzz_decoders.sh runs 100,000 per decoder.
pub fn proptest_cases() -> u32 {
    std::env::var("MNIST_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
}
