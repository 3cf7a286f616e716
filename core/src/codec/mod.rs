//! Decoders and encoders for the file formats we read and write. All of them work on byte
//! slices (no I/O), return `Error` on any malformed input and never size an allocation by an
//! untrusted field without checking it against the input's length first.

pub mod idx;
pub mod mnist;
pub mod mxnet;
pub mod npy;
pub mod npz;
