//! The device under the CUDA backend: a context, its one stream and the loaded kernels, with
//! kernel launches, device buffers and copies, and CUDA's errors as mnist-core's; also whether a
//! GPU is usable at all (`cuda_available`). Leaves out: what any kernel computes (the layers'
//! launchers in layers/, data.rs, optim.rs) and cuBLAS (gemm.rs).

use std::sync::Arc;

use cudarc::driver::{
    result as driver, sys as driver_sys, CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, DeviceRepr,
    DriverError, LaunchConfig, PushKernelArg, ValidAsZeroBits,
};
use cudarc::nvrtc::Ptx;
use mnist_core::backend::DeviceBuffer;
use mnist_core::{Error, Result};

use crate::kernels::{self, Kernel};

/// Threads per block for the elementwise kernels (grid-stride loops, so any grid works).
pub(crate) const BLOCK: u32 = 256;
/// At most this many blocks per launch: enough to fill an H100 (132 SMs) many times over.
pub(crate) const MAX_BLOCKS: usize = 1 << 16;

/// Values on the device. `len` is the length the caller asked for; the allocation holds at
/// least one value so a zero-length buffer still has a valid pointer.
pub struct CudaBuffer<T> {
    pub(crate) slice: CudaSlice<T>,
    pub(crate) ptr: u64,
    pub(crate) len: usize,
}

impl<T> DeviceBuffer for CudaBuffer<T> {
    fn len(&self) -> usize {
        self.len
    }
}

impl<T> CudaBuffer<T> {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The device address of element `offset` (for cuBLAS and kernel arguments).
    pub(crate) fn at(&self, offset: usize) -> u64 {
        self.ptr + (offset * std::mem::size_of::<T>()) as u64
    }
}

/// A kernel argument. Each variant's type is the C type of the matching kernel parameter:
/// Ptr = any pointer, I64 = long long, I32 = int, U32 = unsigned, U64 = unsigned long long.
#[derive(Clone, Copy)]
pub(crate) enum Arg {
    Ptr(u64),
    I64(i64),
    I32(i32),
    U32(u32),
    U64(u64),
    F32(f32),
}

pub(crate) fn backend_error(op: &str, message: impl Into<String>) -> Error {
    Error::Backend { op: op.into(), message: message.into() }
}

pub(crate) fn driver_error(op: &str, e: DriverError) -> Error {
    let name = e.error_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|_| format!("{:?}", e.0));
    let text = e.error_string().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    backend_error(op, format!("{name}: {text}"))
}

/// `v` as a kernel's int argument.
pub(crate) fn int(op: &str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| backend_error(op, format!("{v} does not fit a 32-bit int")))
}

/// The launch of an elementwise kernel over `n` items: blocks of BLOCK threads, at most MAX_BLOCKS.
pub(crate) fn elementwise(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(BLOCK as usize).clamp(1, MAX_BLOCKS) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 }
}

/// One GPU: everything here is queued on `stream`, and only the copies back to the host wait.
pub(crate) struct Device {
    // Field order is drop order: the kernels' module, then the stream, then the context.
    functions: Vec<CudaFunction>, // indexed by `Kernel as usize`
    pub(crate) stream: Arc<CudaStream>,
    ctx: Arc<CudaContext>,
    /// "NVIDIA H100 80GB HBM3 (sm_90)".
    pub(crate) name: String,
    pub(crate) capability: (i32, i32),
    pub(crate) sm_count: usize,
}

impl Device {
    /// A context on GPU `ordinal`, one stream, and the kernels compiled by NVRTC for its arch.
    pub(crate) fn start(ordinal: usize) -> Result<Device> {
        check_libraries()?;
        let ctx = CudaContext::new(ordinal).map_err(|e| no_gpu(driver_error("cuda init", e)))?;
        // SAFETY: this backend uses one stream for everything, so cudarc's cross-stream event
        // tracking has nothing to order; turned off before the first allocation.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(|e| driver_error("cuStreamCreate", e))?;
        let capability = ctx.compute_capability().map_err(|e| driver_error("cuDeviceGetAttribute", e))?;
        let device = ctx.name().map_err(|e| driver_error("cuDeviceGetName", e))?;
        let cubin = kernels::cubin_for(capability)?;
        let module = ctx.load_module(Ptx::from_binary(cubin)).map_err(|e| driver_error("cuModuleLoadData", e))?;
        let functions = Kernel::ALL
            .iter()
            .map(|k| {
                module
                    .load_function(k.name())
                    .map_err(|e| driver_error(&format!("cuModuleGetFunction({})", k.name()), e))
            })
            .collect::<Result<Vec<_>>>()?;
        let sm_count = ctx
            .attribute(driver_sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(|e| driver_error("cuDeviceGetAttribute", e))?
            .max(1) as usize;
        let name = format!("{device} (sm_{}{})", capability.0, capability.1);
        Ok(Device { functions, stream, ctx, name, capability, sm_count })
    }

    /// The loaded `kernel` (for occupancy queries).
    pub(crate) fn function(&self, kernel: Kernel) -> &CudaFunction {
        &self.functions[kernel as usize]
    }

    /// Makes the context current on this thread, as cuBLAS and the raw driver calls need.
    pub(crate) fn bind(&self, op: &str) -> Result<()> {
        self.ctx.bind_to_thread().map_err(|e| driver_error(op, e))
    }

    /// Queues `kernel` on the stream.
    ///
    /// # Safety
    /// `args` must match the kernel's C parameters in number, order and type, and every
    /// pointer must address as much live device memory as the kernel indexes with those sizes.
    pub(crate) unsafe fn launch(&self, kernel: Kernel, config: LaunchConfig, args: &[Arg]) -> Result<()> {
        let mut builder = self.stream.launch_builder(&self.functions[kernel as usize]);
        for arg in args {
            match arg {
                Arg::Ptr(v) | Arg::U64(v) => builder.arg(v),
                Arg::I64(v) => builder.arg(v),
                Arg::I32(v) => builder.arg(v),
                Arg::U32(v) => builder.arg(v),
                Arg::F32(v) => builder.arg(v),
            };
        }
        // SAFETY: forwarded to the caller (see above); `args` outlives the launch call.
        unsafe { builder.launch(config) }.map(|_| ()).map_err(|e| driver_error(kernel.name(), e))
    }

    /// A zero-filled buffer of `len` values.
    pub(crate) fn alloc<T: DeviceRepr + ValidAsZeroBits>(&self, len: usize) -> Result<CudaBuffer<T>> {
        let slice = self.stream.alloc_zeros::<T>(len.max(1)).map_err(|e| driver_error("cuMemAlloc", e))?;
        // The address is fixed for the allocation's life; with event tracking off the
        // returned guard records nothing.
        let ptr = slice.device_ptr(&self.stream).0;
        Ok(CudaBuffer { ptr, slice, len })
    }

    /// A buffer holding a copy of `host`.
    pub(crate) fn upload_new<T: DeviceRepr + ValidAsZeroBits>(&self, host: &[T]) -> Result<CudaBuffer<T>> {
        let mut buffer = self.alloc(host.len())?;
        self.copy_in(&mut buffer, host)?;
        Ok(buffer)
    }

    /// Copies `src` into the start of `dst`, which callers make sure holds as many values.
    pub(crate) fn copy_in<T: DeviceRepr>(&self, dst: &mut CudaBuffer<T>, src: &[T]) -> Result<()> {
        if src.is_empty() {
            return Ok(());
        }
        let mut view = dst.slice.slice_mut(0..src.len());
        self.stream.memcpy_htod(src, &mut view).map_err(|e| driver_error("cuMemcpyHtoD", e))
    }

    /// Copies the start of `src` into `dst` once the queued work is done (`op` names the copy
    /// in errors), then waits for it.
    pub(crate) fn copy_out<T: DeviceRepr>(&self, op: &str, dst: &mut [T], src: &CudaBuffer<T>) -> Result<()> {
        if !dst.is_empty() {
            let view = src.slice.slice(0..dst.len());
            self.stream.memcpy_dtoh(&view, dst).map_err(|e| driver_error(op, e))?;
        }
        self.synchronize()
    }

    /// Waits for every queued operation; reports the first asynchronous error.
    pub(crate) fn synchronize(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(|e| driver_error("cuStreamSynchronize (an earlier launch may have failed)", e))
    }

    /// Fills the first `len` values at `dst` with `value`.
    pub(crate) fn fill(&self, dst: u64, len: usize, value: f32) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        // SAFETY: fill_f32(float* x, i64 n, float value); callers pass a buffer of >= len values.
        unsafe {
            self.launch(Kernel::FillF32, elementwise(len), &[Arg::Ptr(dst), Arg::I64(len as i64), Arg::F32(value)])
        }
    }

    /// Sets `len` floats at `dst` to zero.
    pub(crate) fn zero(&self, dst: u64, len: usize) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        self.bind("cuMemsetD8Async")?;
        // SAFETY: callers pass an address with >= len floats behind it; async on our stream.
        unsafe { driver::memset_d8_async(dst, 0, len * 4, self.stream.cu_stream()) }
            .map_err(|e| driver_error("cuMemsetD8Async", e))
    }
}

/// Which of the three libraries is missing, as the sentence `new` and `cuda_available` return.
fn check_libraries() -> Result<()> {
    // A statically linked binary (the musl `static` image) has a dlopen that never opens a file.
    if cfg!(target_feature = "crt-static") {
        return Err(backend_error(
            "cuda init",
            "no usable CUDA GPU: static build (a statically linked binary cannot load libcuda; use the cpu or cuda image)",
        ));
    }
    // SAFETY: each call only tries to dlopen the library by cudarc's candidate names.
    let (cuda, nvrtc, cublas) = unsafe {
        (
            cudarc::driver::sys::is_culib_present(),
            cudarc::nvrtc::sys::is_culib_present(),
            cudarc::cublas::sys::is_culib_present(),
        )
    };
    let missing = if !cuda {
        "libcuda.so could not be loaded (no NVIDIA driver)"
    } else if !nvrtc {
        "libnvrtc.so.13 could not be loaded (put CUDA 13's lib64 folder on LD_LIBRARY_PATH)"
    } else if !cublas {
        "libcublas.so.13 could not be loaded (put CUDA 13's lib64 folder on LD_LIBRARY_PATH)"
    } else {
        return Ok(());
    };
    Err(backend_error("cuda init", format!("no usable CUDA GPU: {missing}")))
}

/// cudarc panics where a library or symbol cannot be loaded; the checks above avoid the usual
/// cases, and this turns any other such panic into an error instead of a crash.
pub(crate) fn without_panics<T>(op: &str, f: impl FnOnce() -> Result<T> + std::panic::UnwindSafe) -> Result<T> {
    std::panic::catch_unwind(f).unwrap_or_else(|_| {
        Err(backend_error(op, "no usable CUDA GPU: the CUDA libraries failed to load (see the panic message above)"))
    })
}

/// The first GPU's name when the driver, NVRTC and cuBLAS load and a device exists; otherwise
/// one sentence saying why not (for `--backend auto`). Creates no context.
pub fn cuda_available() -> Result<String> {
    without_panics("cuda init", || {
        check_libraries()?;
        driver::init().map_err(|e| no_gpu(driver_error("cuInit", e)))?;
        let count = driver::device::get_count().map_err(|e| driver_error("cuDeviceGetCount", e))?;
        if count < 1 {
            return Err(backend_error("cuda init", "no usable CUDA GPU: the driver reports no device"));
        }
        let device = driver::device::get(0).map_err(|e| driver_error("cuDeviceGet", e))?;
        driver::device::get_name(device).map_err(|e| driver_error("cuDeviceGetName", e))
    })
}

fn no_gpu(e: Error) -> Error {
    match e {
        Error::Backend { op, message } => Error::Backend { op, message: format!("no usable CUDA GPU: {message}") },
        other => other,
    }
}
