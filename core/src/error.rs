//! The one error type of mnist-core: every decoder, the model and the backends report through it.
//! Variants carry structured facts; `Display` turns them into one clear sentence.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// The input ended before `what` was complete.
    Truncated { what: String, needed: u64, available: u64 },
    /// A magic number or signature did not match.
    BadMagic { what: String, expected: String, found: String },
    /// A stored checksum does not match the data.
    ChecksumMismatch { what: String, expected: u32, actual: u32 },
    /// The bytes are structurally wrong in a way not covered above.
    Malformed { what: String, reason: String },
    /// Valid input using a feature we do not implement (a compression method, a dtype, ...).
    Unsupported { what: String, feature: String },
    /// A declared size is beyond what we accept (guards allocations sized by untrusted bytes).
    TooLarge { what: String, size: u64, limit: u64 },
    /// A named entry (zip member, parameter, array) is missing.
    Missing { what: String, name: String },
    /// An array's shape is not the one required.
    ShapeMismatch { what: String, expected: Vec<usize>, actual: Vec<usize> },
    /// A caller-supplied value is out of range (a config, a batch size, a rate).
    InvalidArgument { what: String, reason: String },
    /// Training produced a NaN or infinite value.
    NonFinite { what: String, step: u64 },
    /// A backend failed to run an operation (a CUDA launch, an allocation).
    Backend { op: String, message: String },
}

pub type Result<T> = core::result::Result<T, Error>;

fn write_shape(f: &mut fmt::Formatter<'_>, shape: &[usize]) -> fmt::Result {
    write!(f, "(")?;
    for (i, d) in shape.iter().enumerate() {
        if i > 0 {
            write!(f, ", ")?;
        }
        write!(f, "{d}")?;
    }
    if shape.len() == 1 {
        write!(f, ",")?;
    }
    write!(f, ")")
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated { what, needed, available } => {
                write!(f, "{what} is truncated: needed {needed} bytes but only {available} are available")
            }
            Error::BadMagic { what, expected, found } => {
                write!(f, "{what} has a bad signature: expected {expected}, found {found}")
            }
            Error::ChecksumMismatch { what, expected, actual } => {
                write!(f, "{what} is corrupt: stored checksum {expected:#010x}, computed {actual:#010x}")
            }
            Error::Malformed { what, reason } => write!(f, "{what} is malformed: {reason}"),
            Error::Unsupported { what, feature } => {
                write!(f, "{what} uses an unsupported feature: {feature}")
            }
            Error::TooLarge { what, size, limit } => {
                write!(f, "{what} is too large: {size} exceeds the limit of {limit}")
            }
            Error::Missing { what, name } => write!(f, "{what} has no entry named {name:?}"),
            Error::ShapeMismatch { what, expected, actual } => {
                write!(f, "{what} has shape ")?;
                write_shape(f, actual)?;
                write!(f, " but ")?;
                write_shape(f, expected)?;
                write!(f, " is required")
            }
            Error::InvalidArgument { what, reason } => write!(f, "invalid {what}: {reason}"),
            Error::NonFinite { what, step } => {
                write!(f, "{what} became NaN or infinite at step {step}")
            }
            Error::Backend { op, message } => write!(f, "backend operation {op} failed: {message}"),
        }
    }
}

impl core::error::Error for Error {}

/// Shorthand constructors so decoders stay readable.
impl Error {
    pub fn malformed(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Malformed { what: what.into(), reason: reason.into() }
    }
    pub fn truncated(what: impl Into<String>, needed: u64, available: u64) -> Self {
        Error::Truncated { what: what.into(), needed, available }
    }
    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidArgument { what: what.into(), reason: reason.into() }
    }
    pub fn unsupported(what: impl Into<String>, feature: impl Into<String>) -> Self {
        Error::Unsupported { what: what.into(), feature: feature.into() }
    }
}
