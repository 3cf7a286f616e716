//! mnist-cuda: mnist-core's `Backend` on an NVIDIA GPU through cudarc (driver, NVRTC, cuBLAS,
//! all loaded at run time, so this builds and runs its no-GPU paths with no CUDA installed).
//! Laid out by concern: backend.rs is the trait impl, delegating to device.rs (context, stream,
//! launches, buffers), data.rs, layers/<op>.rs (beside kernels/<op>.cu and mnist-core's
//! layers/<op>.rs), optim.rs, gemm.rs, precision.rs, scratch.rs and graph.rs; kernels.rs
//! compiles the CUDA C. Leaves out: the training loop and model wiring, which stay in
//! mnist-core and are shared.

mod backend;
mod data;
mod device;
pub mod gemm;
mod graph;
pub mod kernels;
mod layers;
mod optim;
mod precision;
mod scratch;

pub use backend::{CudaBackend, CudaOptions};
pub use data::CudaDataset;
pub use device::{cuda_available, CudaBuffer};
pub use gemm::F32Gemm;
#[cfg(feature = "test-hooks")]
pub use graph::StepGraphStats;
pub use layers::conv2d::CudaConv2dSaved;
pub use precision::{LossScale, Precision};
