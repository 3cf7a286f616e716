//! mnist-core: the Keras `mnist_cnn` model with hand-written forward and backward passes,
//! Adadelta, the dataset and model codecs, a `Backend` trait and the CPU backend.
//! Layout: model.rs (the network's buffers and passes), layers/ (one file per layer, forward
//! and backward together), shape.rs, optim.rs, backend/ (the trait; its provided methods make
//! every argument check once, backend/checks.rs, for all backends), cpu/ (CpuBackend), codec/,
//! data.rs and train.rs (the Trainer).
//! `#![no_std]` + alloc; the default `std` feature adds threads to the CPU backend and
//! `codec::mnist::load`, which finds and reads a dataset at a path (an .npz, or a directory of
//! idx files under any of their usual names). That is the one place core touches files, kept
//! here so the binary and the cross-crate tests share one lookup; every codec takes bytes.

#![no_std]
#![forbid(unsafe_op_in_unsafe_fn)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod backend;
pub mod codec;
pub mod config;
pub mod cpu;
pub mod data;
pub mod error;
pub mod layers;
pub mod model;
pub mod optim;
pub mod shape;
pub mod state;
pub mod train;

pub use backend::{Backend, DeviceBuffer, DeviceDataset};
pub use config::{Config, ParamLayout, Span};
pub use cpu::CpuBackend;
pub use data::{Dataset, Rng, Split};
pub use error::{Error, Result};
pub use optim::Adadelta;
