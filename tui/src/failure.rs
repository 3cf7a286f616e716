//! How a command fails: an exit code (documented in `mnist --help`) and one sentence for
//! stderr. Leaves out printing and exiting, which only main.rs does.

use mnist_core::Error;

pub const EXIT_BAD_INPUT: i32 = 2;
pub const EXIT_TRANSIENT: i32 = 3;
pub const EXIT_DIVERGED: i32 = 4;
pub const EXIT_INTERNAL: i32 = 70;
pub const EXIT_SIGINT: i32 = 130;
pub const EXIT_SIGTERM: i32 = 143;

/// A failed command: its exit code and one sentence for stderr.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    pub fn new(code: i32, message: String) -> Self {
        Failure { code, message }
    }
}

/// Maps a core error to an exit code: bad input is permanent, a NaN is divergence, the rest
/// is ours.
pub fn core_failure(context: &str, e: Error) -> Failure {
    let code = match e {
        Error::NonFinite { .. } => EXIT_DIVERGED,
        Error::Backend { .. } => EXIT_INTERNAL,
        _ => EXIT_BAD_INPUT,
    };
    Failure::new(code, format!("{context}: {e}"))
}
