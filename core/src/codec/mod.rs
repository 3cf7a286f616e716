//! Decoders and encoders for the file formats we read and write. All of them work on byte
//! slices (no I/O), return `Error` on any malformed input and never size an allocation by an
//! untrusted field without checking it against the input's length first.

pub mod checkpoint;
pub mod idx;
mod inflate;
pub mod mnist;
pub mod mxnet;
pub mod npy;
pub mod npz;
pub mod onnx;
pub mod zip;

use alloc::format;

use crate::error::Error;

/// Prefixes the error's subject with `context` (a file or member name), so a message says
/// where in a nested format the problem is: "mnist.npz: zip member x_train.npy is corrupt: ...".
pub(crate) fn with_context(error: Error, context: &str) -> Error {
    let prefix = |what: &mut alloc::string::String| *what = format!("{context}: {what}");
    let mut error = error;
    match &mut error {
        Error::Truncated { what, .. }
        | Error::BadMagic { what, .. }
        | Error::ChecksumMismatch { what, .. }
        | Error::Malformed { what, .. }
        | Error::Unsupported { what, .. }
        | Error::TooLarge { what, .. }
        | Error::Missing { what, .. }
        | Error::ShapeMismatch { what, .. }
        | Error::InvalidArgument { what, .. }
        | Error::NonFinite { what, .. } => prefix(what),
        Error::Backend { op, .. } => prefix(op),
    }
    error
}

/// Cases per decoder property test: `$MNIST_PROPTEST_CASES`, else 256 so CI stays fast.
/// tests/bench/fuzz_decoders.sh sets 100,000 for the long run.
#[cfg(test)]
pub(crate) fn proptest_cases() -> u32 {
    extern crate std;
    std::env::var("MNIST_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
}

/// The first bytes of `bytes` in hex, for "found ..." in `BadMagic` errors.
pub(crate) fn hex_prefix(bytes: &[u8], max: usize) -> alloc::string::String {
    use core::fmt::Write;
    let mut s = alloc::string::String::new();
    for b in bytes.iter().take(max) {
        let _ = write!(s, "{b:02x}");
    }
    if bytes.is_empty() {
        s.push_str("nothing");
    }
    s
}
