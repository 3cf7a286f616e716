//! The CUDA C kernels (cuda/kernels/*.cu, joined into one translation unit) and their NVRTC
//! compilation, to CUBIN for the running GPU or to PTX/CUBIN for any arch (CI's compile test).
//! Leaves out: launching (device.rs, and the layers' launchers).

use std::ffi::{c_char, CStr, CString};
use std::sync::Mutex;

use cudarc::nvrtc::{result as nvrtc, sys as nvrtc_sys};
use mnist_core::Error;

/// Every kernel file, `common.cu` first (it defines the types and macros the others use).
pub const KERNEL_FILES: [(&str, &str); 9] = [
    ("common.cu", include_str!("../kernels/common.cu")),
    ("data.cu", include_str!("../kernels/data.cu")),
    ("conv2d.cu", include_str!("../kernels/conv2d.cu")),
    ("maxpool2d.cu", include_str!("../kernels/maxpool2d.cu")),
    ("dropout.cu", include_str!("../kernels/dropout.cu")),
    ("softmax_xent.cu", include_str!("../kernels/softmax_xent.cu")),
    ("optim.cu", include_str!("../kernels/optim.cu")),
    ("precision.cu", include_str!("../kernels/precision.cu")),
    ("sgemm.cu", include_str!("../kernels/sgemm.cu")),
];

/// Declares `Kernel` and `KERNEL_NAMES` from one list, so the two cannot drift apart.
macro_rules! kernels {
    ($($kernel:ident = $name:literal,)*) => {
        /// The `extern "C"` kernels, in `Kernel`'s order.
        pub const KERNEL_NAMES: [&str; Kernel::ALL.len()] = [$($name,)*];

        /// A kernel the backend launches; `as usize` indexes `KERNEL_NAMES` and the loaded functions.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum Kernel {
            $($kernel,)*
        }

        impl Kernel {
            pub(crate) const ALL: [Kernel; [$($name),*].len()] = [$(Kernel::$kernel,)*];

            /// The kernel's C name, which CUDA errors carry.
            pub(crate) fn name(self) -> &'static str {
                KERNEL_NAMES[self as usize]
            }
        }
    };
}

kernels! {
    FillF32 = "fill_f32",
    LoadBatch = "load_batch",
    Im2col = "im2col",
    Im2colHalf = "im2col_half",
    Col2im = "col2im",
    Conv2dDirect = "conv2d_direct",
    Conv2dDkernelPartial = "conv2d_dkernel_partial",
    BiasAct = "bias_act",
    BiasGradPartial = "bias_grad_partial",
    BiasGradPartialHalf = "bias_grad_partial_half",
    BiasGradFinish = "bias_grad_finish",
    Maxpool2dForward = "maxpool2d_forward",
    Maxpool2dBackward = "maxpool2d_backward",
    Dropout = "dropout",
    SoftmaxXentForward = "softmax_xent_forward",
    SoftmaxXentBackward = "softmax_xent_backward",
    Adadelta = "adadelta",
    ToHalf = "to_half",
    CheckFinite = "check_finite",
    UpdateLossScale = "update_loss_scale",
    SgemmRows128 = "sgemm_rows128",
    SgemmRows64 = "sgemm_rows64",
    ConvSgemmRows128 = "conv_sgemm_rows128",
    ConvSgemmRows64 = "conv_sgemm_rows64",
}

/// The whole translation unit, with a `#line` marker before each file so NVRTC's messages
/// name the right file and line.
pub fn source() -> String {
    let mut src = String::new();
    for (name, text) in KERNEL_FILES {
        src.push_str(&format!("#line 1 \"{name}\"\n"));
        src.push_str(text);
        src.push('\n');
    }
    src
}

/// What NVRTC should produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// PTX for a virtual arch, e.g. `compute_90`.
    Ptx { compute_capability: (i32, i32) },
    /// Machine code for a real arch, e.g. `sm_90`: nothing left for the driver to JIT.
    Cubin { compute_capability: (i32, i32) },
}

/// The options every compile uses. No FMA contraction: Rust never contracts, so elementwise
/// kernels round exactly like the CPU layers (they are memory-bound; FMA buys nothing).
/// Precise division and square root are NVRTC's defaults and stay on.
pub fn options(target: Target, include_dirs: &[String]) -> Vec<String> {
    let arch = match target {
        Target::Ptx { compute_capability: (major, minor) } => format!("--gpu-architecture=compute_{major}{minor}"),
        Target::Cubin { compute_capability: (major, minor) } => format!("--gpu-architecture=sm_{major}{minor}"),
    };
    let mut options = vec![arch, "--fmad=false".to_string(), "--std=c++17".to_string()];
    options.extend(include_dirs.iter().map(|dir| format!("--include-path={dir}")));
    options
}

/// Whether libnvrtc can be loaded (cudarc panics on first use otherwise).
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to dlopen the library by cudarc's candidate names and closes it again.
    unsafe { nvrtc_sys::is_culib_present() }
}

/// NVRTC's version, e.g. (13, 0).
pub fn nvrtc_version() -> Result<(i32, i32), Error> {
    if !nvrtc_present() {
        return Err(no_nvrtc());
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: two valid out-pointers.
    unsafe { nvrtc_sys::nvrtcVersion(&mut major, &mut minor) }.result().map_err(|e| nvrtc_error("nvrtcVersion", e))?;
    Ok((major, minor))
}

fn no_nvrtc() -> Error {
    Error::Backend {
        op: "nvrtc".into(),
        message: "libnvrtc could not be loaded (put CUDA 13's lib folder on LD_LIBRARY_PATH)".into(),
    }
}

fn nvrtc_error(op: &str, e: nvrtc::NvrtcError) -> Error {
    Error::Backend { op: op.into(), message: format!("{e:?}") }
}

/// Compiles every kernel for `target`; returns the PTX text (with its NUL) or the CUBIN image.
/// A compile error carries NVRTC's log.
pub fn compile(target: Target, include_dirs: &[String]) -> Result<Vec<u8>, Error> {
    compile_source("mnist_kernels.cu", &source(), target, include_dirs)
}

/// The kernels' CUBIN for a GPU arch, compiled once per process (about a second of NVRTC):
/// later backends in the same process, such as one per test, reuse it.
pub fn cubin_for(compute_capability: (i32, i32)) -> Result<Vec<u8>, Error> {
    // (compute capability, CUBIN) pairs: one GPU kind per process in practice.
    type Cubins = Vec<((i32, i32), Vec<u8>)>;
    static CACHE: Mutex<Cubins> = Mutex::new(Vec::new());
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, cubin)) = cache.iter().find(|(cc, _)| *cc == compute_capability) {
        return Ok(cubin.clone());
    }
    let cubin = compile(Target::Cubin { compute_capability }, &[])?;
    cache.push((compute_capability, cubin.clone()));
    Ok(cubin)
}

/// Compiles any CUDA C source `src` (called `name` in messages) with `options`.
pub fn compile_source(name: &str, src: &str, target: Target, include_dirs: &[String]) -> Result<Vec<u8>, Error> {
    if !nvrtc_present() {
        return Err(no_nvrtc());
    }
    let nul = |_| Error::Backend { op: "nvrtc".into(), message: format!("{name} contains a NUL byte") };
    let (src, c_name) = (CString::new(src).map_err(nul)?, CString::new(name).map_err(nul)?);
    let program =
        Program(nvrtc::create_program(&src, Some(&c_name)).map_err(|e| nvrtc_error("nvrtcCreateProgram", e))?);
    let opts = options(target, include_dirs);
    // SAFETY: `program` is live until dropped at the end of this function.
    if let Err(e) = unsafe { nvrtc::compile_program(program.0, &opts) } {
        // SAFETY: as above.
        let log = unsafe { nvrtc::get_program_log(program.0) }.map(|raw| c_chars_to_string(&raw)).unwrap_or_default();
        return Err(Error::Backend {
            op: "nvrtcCompileProgram".into(),
            message: format!("{name}: {e:?} with {opts:?}:\n{log}"),
        });
    }
    match target {
        // SAFETY: as above; get_ptx sizes its buffer from nvrtcGetPTXSize.
        Target::Ptx { .. } => unsafe { nvrtc::get_ptx(program.0) }
            .map(|ptx| ptx.into_iter().map(|c| c as u8).collect())
            .map_err(|e| nvrtc_error("nvrtcGetPTX", e)),
        Target::Cubin { .. } => {
            let mut size = 0usize;
            // SAFETY: a live program and a valid out-pointer.
            unsafe { nvrtc_sys::nvrtcGetCUBINSize(program.0, &mut size) }
                .result()
                .map_err(|e| nvrtc_error("nvrtcGetCUBINSize", e))?;
            let mut cubin = vec![0u8; size];
            // SAFETY: `cubin` holds the `size` bytes NVRTC said it will write.
            unsafe { nvrtc_sys::nvrtcGetCUBIN(program.0, cubin.as_mut_ptr() as *mut c_char) }
                .result()
                .map_err(|e| nvrtc_error("nvrtcGetCUBIN", e))?;
            if cubin.is_empty() {
                return Err(Error::Backend {
                    op: "nvrtcGetCUBIN".into(),
                    message: "NVRTC returned an empty CUBIN".into(),
                });
            }
            Ok(cubin)
        }
    }
}

/// Destroys the NVRTC program on every path out of `compile`.
struct Program(nvrtc_sys::nvrtcProgram);

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: created by create_program and destroyed only here. A failure leaks a little
        // host memory, which is not worth a panic.
        let _ = unsafe { nvrtc::destroy_program(self.0) };
    }
}

fn c_chars_to_string(raw: &[c_char]) -> String {
    let bytes: Vec<u8> = raw.iter().map(|&c| c as u8).collect();
    CStr::from_bytes_until_nul(&bytes)
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_name_is_defined_once() {
        let src = source();
        for name in KERNEL_NAMES {
            // `void name(`, or `void __launch_bounds__(...) name(`.
            let pattern = format!(" {name}(");
            let definitions =
                src.lines().filter(|line| line.contains("__global__ void") && line.contains(&pattern)).count();
            assert_eq!(definitions, 1, "{name}");
        }
        assert_eq!(src.matches("extern \"C\" __global__").count(), KERNEL_NAMES.len());
    }

    #[test]
    fn kernel_enum_follows_the_names() {
        for (i, k) in Kernel::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i);
        }
        assert_eq!(Kernel::Im2col.name(), "im2col");
        assert_eq!(Kernel::Adadelta.name(), "adadelta");
        assert_eq!(Kernel::UpdateLossScale.name(), "update_loss_scale");
    }
}
