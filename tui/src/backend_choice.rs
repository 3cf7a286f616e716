//! Which backend a command trains or times on: the CPU, or a CUDA GPU computing in the asked
//! precision. `auto` falls back to the CPU when no GPU is usable and says why; a GPU that cannot
//! compute in the asked precision is bad input, never a reason to fall back.
//! Leaves out: the CPU backend's own settings (threads, convolutions), which each caller sets.

use mnist_cuda::{CudaBackend, CudaOptions, Precision};

use crate::cli::{BackendChoice, PrecisionChoice};
use crate::failure::core_failure;
use crate::Failure;

pub enum Chosen {
    Cuda(Box<CudaBackend>),
    /// The CPU; `fallback` is why `auto` did not use a GPU (None when the CPU was asked for).
    Cpu {
        fallback: Option<String>,
    },
}

pub fn choose(backend: BackendChoice, precision: PrecisionChoice) -> Result<Chosen, Failure> {
    let precision = precision.precision();
    let options = CudaOptions { precision, ..CudaOptions::default() };
    match backend {
        BackendChoice::Cpu if precision != Precision::F32 => Err(Failure::new(
            crate::EXIT_BAD_INPUT,
            format!("--precision {} needs --backend cuda: the CPU backend computes in f32", precision.name()),
        )),
        BackendChoice::Cpu => Ok(Chosen::Cpu { fallback: None }),
        BackendChoice::Cuda | BackendChoice::Auto => match CudaBackend::with_options(0, options) {
            Ok(gpu) => Ok(Chosen::Cuda(Box::new(gpu))),
            // A GPU that cannot compute in this precision (no usable GPU is an Error::Backend).
            Err(e @ mnist_core::Error::InvalidArgument { .. }) => {
                Err(core_failure(&format!("--precision {}", precision.name()), e))
            }
            Err(e) if backend == BackendChoice::Cuda => {
                Err(Failure::new(crate::EXIT_BAD_INPUT, format!("--backend cuda: {e}")))
            }
            Err(e) => {
                let in_f32 = match precision {
                    Precision::F32 => String::new(),
                    other => format!(" (in f32: --precision {} applies to the CUDA backend only)", other.name()),
                };
                Ok(Chosen::Cpu { fallback: Some(format!("{e}{in_f32}")) })
            }
        },
    }
}
