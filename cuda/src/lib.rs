//! mnist-cuda: mnist-core's `Backend` on an NVIDIA GPU through cudarc (driver, NVRTC, cuBLAS,
//! all loaded at run time, so this builds and runs its no-GPU paths with no CUDA installed).
//! Leaves out: the training loop and model wiring, which stay in mnist-core and are shared.

mod backend;
pub mod gemm;
pub mod kernels;

pub use backend::{
    cuda_available, CudaBackend, CudaBuffer, CudaDataset, F32Gemm, LossScale, Precision, StepGraphStats,
};
