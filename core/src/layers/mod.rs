//! One file per layer, forward and backward side by side, on plain slices of one sample or
//! one block of rows. The CPU backend (cpu/) splits batches across threads and calls these.
//! Leaves out: threading and buffer management (cpu/), the model's wiring (model.rs).

pub mod conv2d;
pub mod conv2d_direct;
pub mod conv2d_winograd;
pub mod dense;
pub mod dropout;
pub mod gemm;
pub mod maxpool2d;
pub mod relu;
pub mod softmax_xent;

#[cfg(test)]
pub(crate) mod gradcheck;
