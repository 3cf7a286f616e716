//! (placeholder: being written)
pub struct CpuBackend;
