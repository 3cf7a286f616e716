//! CudaBackend: mnist-core's `Backend` on one CUDA stream. Convolutions are im2col + GEMMs or,
//! for small patches, direct kernels; everything else a small NVRTC kernel. GEMMs take f32
//! inputs (the convolutions' tall products on our tiled kernel, sgemm.cu, the rest on cuBLAS's
//! SGEMM, TF32 off) or, with `set_precision`, bf16 or f16 inputs on cuBLAS's tensor cores,
//! always summing in f32 (f16 with dynamic loss scaling).
//! Every op is queued on the stream and only `download` waits.
//! Training steps are recorded once per shape as a CUDA graph and replayed (see `begin_step`).
//! Leaves out: multiple streams and GPUs, and half-precision storage of activations.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::Arc;

use cudarc::cublas::{result as cublas, sys as cublas_sys, CudaBlas};
use cudarc::driver::{
    result as driver, sys as driver_sys, CudaContext, CudaFunction, CudaGraph, CudaSlice, CudaStream, DevicePtr,
    DeviceRepr, DriverError, LaunchConfig, PushKernelArg, ValidAsZeroBits,
};
use cudarc::nvrtc::Ptx;
use mnist_core::backend::{Backend, Checked, DeviceBuffer, DeviceDataset, StepMode, StepValues};
use mnist_core::layers::dropout::drop_threshold;
use mnist_core::optim::Adadelta;
use mnist_core::shape::{Conv2dDims, DenseDims, PoolDims};
use mnist_core::{Error, Result, Span};

use crate::gemm::RowMajorGemm;
use crate::kernels::{self, Kernel};

/// Threads per block for the elementwise kernels (grid-stride loops, so any grid works).
const BLOCK: u32 = 256;
/// At most this many blocks per launch: enough to fill an H100 (132 SMs) many times over.
const MAX_BLOCKS: usize = 1 << 16;
/// softmax_xent_forward's block size (SOFTMAX_BLOCK in softmax_xent.cu).
const SOFTMAX_BLOCK: u32 = 256;
/// Bias (and small-patch kernel) gradients sum rows in blocks of lanes, each thread summing
/// about BIAS_ROWS_PER_THREAD rows (conv2's bias, 128 x 24 x 24 rows x 64: 1,152 blocks of 256;
/// conv1's, 128 x 26 x 26 x 32: 676), then reduce each column's partial sums in one block of
/// BIAS_FINISH_BLOCK.
const BIAS_FINISH_BLOCK: u32 = 256; // BIAS_FINISH_BLOCK in conv2d.cu
const BIAS_ROWS_PER_THREAD: usize = 16;
/// The im2col scratch holds at most this many floats (256 MiB); larger batches are convolved
/// in chunks of samples. A batch of 128 of the default model needs 21 M (one chunk).
const COL_CAP: usize = 1 << 26;
/// Convolutions whose patch (K*K*C) is at most this run as one direct kernel (conv1: 9) instead
/// of im2col + GEMM + bias_act; conv2's 288 stays a GEMM.
const DIRECT_CONV_MAX_PATCH: usize = 32;
/// im2col and im2col_half get one thread per this many values (or float4s): each thread works
/// out its patch position once and walks rows without divisions (conv2d.cu), so the fewer
/// threads, the less set-up per value, as long as they fill the GPU (conv2: 2,592 blocks).
const IM2COL_VALUES_PER_THREAD: usize = 8;
/// sgemm.cu's block size, tile width and k step (SGEMM_THREADS, SGEMM_COLS, SGEMM_STEP).
const SGEMM_THREADS: u32 = 128;
const SGEMM_COLS: usize = 64;
const SGEMM_STEP: usize = 16;
/// By default the tiled kernel takes the products with at least this many rows and at most this
/// long a sum: the convolutions' (conv2: 73,728 rows, k 288 forward and 64 for dcol), where
/// cuBLAS's SIMT kernels reached ~40% of an H100's f32 peak. A dense layer's rows are its batch.
const TALL_GEMM_MIN_ROWS: usize = 8192;
const TALL_GEMM_MAX_K: usize = 1024;
/// cuBLAS's workspace, set by us so that cuBLAS allocates nothing while a step is recorded
/// (NVIDIA's graph-capture advice; 32 MiB is what it recommends for Hopper).
const CUBLAS_WORKSPACE_BYTES: usize = 32 << 20;
/// f16 training's first loss scale (2^16, as PyTorch's GradScaler): halved on every step whose
/// gradients overflow (which is then skipped), doubled after LOSS_SCALE_GROWTH_INTERVAL clean
/// steps (update_loss_scale in precision.cu).
const LOSS_SCALE_START: f32 = 65536.0;
const LOSS_SCALE_GROWTH_INTERVAL: i32 = 2000;

/// The number format of the GEMMs' inputs. Every GEMM sums in f32 and writes f32; every other
/// op, the master weights and Adadelta's state stay f32 in all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// SGEMM with TF32 off: the CPU-vs-CUDA tolerances of 1e-4 hold.
    #[default]
    F32,
    /// bfloat16 inputs (8-bit mantissa, f32's range): no loss scaling needed.
    Bf16,
    /// IEEE half inputs (11-bit mantissa, at most 65504, normal down to 2^-14): the loss is
    /// scaled so small gradients survive, and steps whose gradients overflow are skipped.
    F16,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        }
    }
}

/// Which kernels run the f32 GEMMs (`CudaBackend::set_f32_gemm`; for timing, the variable
/// `MNIST_CUDA_SGEMM=cublas`, `tiled128` or `tiled64` sets one for a whole process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum F32Gemm {
    /// cuBLAS for every product.
    Cublas,
    /// Our tiled kernel (sgemm.cu) for the products it can take (k a multiple of 16 and at most
    /// TALL_GEMM_MAX_K, n and the row strides multiples of 4, A not transposed) with at least
    /// `min_rows` rows, in tiles of `rows` rows (64 or 128; None: whichever keeps the GPU
    /// busier); cuBLAS for the rest.
    Tiled { min_rows: usize, rows: Option<u32> },
}

impl Default for F32Gemm {
    /// The convolutions' tall products on the tiled kernel; dense layers (rows: the batch) on cuBLAS.
    fn default() -> F32Gemm {
        F32Gemm::Tiled { min_rows: TALL_GEMM_MIN_ROWS, rows: None }
    }
}

impl F32Gemm {
    fn from_env() -> F32Gemm {
        let tall = |rows| F32Gemm::Tiled { min_rows: TALL_GEMM_MIN_ROWS, rows: Some(rows) };
        match std::env::var("MNIST_CUDA_SGEMM").as_deref() {
            Ok("cublas") => F32Gemm::Cublas,
            Ok("tiled128") => tall(128),
            Ok("tiled64") => tall(64),
            _ => F32Gemm::default(),
        }
    }
}

/// f16 training's loss scaling so far (`CudaBackend::loss_scale`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossScale {
    /// The factor the loss gradient is multiplied by now.
    pub scale: f32,
    /// Steps skipped because their scaled gradients overflowed f16.
    pub skipped_steps: u64,
}

/// Half-precision scratch slots (`half_scratch`): the im2col matrix; the GEMM's A and B when
/// converted from f32; and a layer's output gradient, written by `bias_gradient` for the two
/// GEMMs that read it.
const HALF_COL: usize = 0;
const HALF_A: usize = 1;
const HALF_B: usize = 2;
const HALF_KEPT: usize = 3;

/// A GEMM operand: a device address and how many values are there, either f32 or already in
/// the half format of the backend's precision.
#[derive(Debug, Clone, Copy)]
enum Operand {
    F32(u64, usize),
    Half(u64, usize),
}

impl Operand {
    fn len(self) -> usize {
        match self {
            Operand::F32(_, len) | Operand::Half(_, len) => len,
        }
    }
}

/// What a convolution's forward keeps for the backward of the same input (`Backend::Conv2dSaved`,
/// owned by the network): the im2col matrix, which the backward reads instead of recomputing it
/// (conv2's im2col took 53 us of a 0.64 ms f32 step on an H100). There is room for it when the
/// layer takes the im2col path and its largest batch fits one chunk of samples.
pub struct CudaConv2dSaved {
    col: SavedCol,
    /// The input, shape and format of the matrix in `col` now (None: it holds none).
    holds: Option<KeptCol>,
}

/// Room for an im2col matrix: f32 in f32 precision, else bf16 or f16 bits.
enum SavedCol {
    None,
    F32(CudaBuffer<f32>),
    Half(CudaBuffer<u16>),
}

impl SavedCol {
    /// Where a matrix of `len` values goes (written in `precision`'s format), if it fits.
    fn room(&self, len: usize, precision: Precision) -> Option<u64> {
        match self {
            SavedCol::F32(col) if precision == Precision::F32 && col.len >= len => Some(col.ptr),
            SavedCol::Half(col) if precision != Precision::F32 && col.len >= len => Some(col.ptr),
            _ => None,
        }
    }
}

/// Which matrix a `CudaConv2dSaved` holds: the input's address and length, the shape and the
/// precision it was made for; the backward uses it only when all four match its own.
#[derive(Debug, Clone, Copy)]
struct KeptCol {
    inp: u64,
    inp_len: usize,
    dims: Conv2dDims,
    precision: Precision,
    col: Operand,
}

/// Values on the device. `len` is the length the caller asked for; the allocation holds at
/// least one value so a zero-length buffer still has a valid pointer.
pub struct CudaBuffer<T> {
    slice: CudaSlice<T>,
    ptr: u64,
    len: usize,
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
    fn at(&self, offset: usize) -> u64 {
        self.ptr + (offset * std::mem::size_of::<T>()) as u64
    }
}

/// A dataset resident on the device: u8 images and labels, and the u32 sample order.
pub struct CudaDataset {
    images: CudaBuffer<u8>, // (N, sample_len)
    labels: CudaBuffer<u8>, // (N)
    order: CudaBuffer<u32>, // (N): a permutation of 0..N
    sample_len: usize,
}

impl CudaDataset {
    pub fn len(&self) -> usize {
        self.labels.len
    }
    pub fn is_empty(&self) -> bool {
        self.labels.len == 0
    }
}

impl DeviceDataset for CudaDataset {
    fn len(&self) -> usize {
        self.labels.len
    }
    fn sample_len(&self) -> usize {
        self.sample_len
    }
}

/// A kernel argument. Each variant's type is the C type of the matching kernel parameter:
/// Ptr = any pointer, I64 = long long, I32 = int, U32 = unsigned, U64 = unsigned long long.
#[derive(Clone, Copy)]
enum Arg {
    Ptr(u64),
    I64(i64),
    I32(i32),
    U32(u32),
    U64(u64),
    F32(f32),
}

/// Everything a recorded training step depends on besides the network's buffers (which one
/// Network owns for the backend's whole life) and `StepValues`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct StepKey {
    batch: usize,
    data: [u64; 5],  // images, labels and order addresses, N, sample_len
    hyper: [u32; 3], // Adadelta's f32 bits
}

/// A captured CUDA graph. cudarc leaves `CudaGraph` !Send because its handles are raw pointers;
/// CUDA allows a graph to be used from any thread as long as calls are serialised, which the
/// backend's `&mut self` guarantees, so the backend stays Send as before.
struct StepGraph(CudaGraph);
// SAFETY: see above; the graph is only touched through `&mut CudaBackend`.
unsafe impl Send for StepGraph {}

enum Recording {
    /// Ran once op by op (allocating scratch, loading cuBLAS's kernels); recorded next time.
    WarmedUp,
    Graph(StepGraph),
    /// Recording failed once; steps of this shape run op by op from then on.
    Failed,
}

/// How many steps were recorded and replayed, and why any recording failed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepGraphStats {
    pub recorded: usize,
    pub replayed: usize,
    pub failures: Vec<String>,
}

pub struct CudaBackend {
    // Field order is drop order: graphs first, then buffers and cuBLAS (before its workspace),
    // then the stream and context.
    graphs_enabled: bool,
    graphs: HashMap<StepKey, Recording>,
    recording: Option<(StepKey, StepValues)>, // between begin_step and end_step while capturing
    graph_stats: StepGraphStats,
    step_values: CudaBuffer<u64>, // (3): start, dropout seed 1, dropout seed 2 of the current step
    col: Option<CudaBuffer<f32>>, // im2col / dcol scratch, grown on demand
    col_cap: usize,               // COL_CAP, or less for tests of convolutions in chunks
    precision: Precision,
    f32_gemm: F32Gemm,
    tf32: bool,
    sm_count: usize,
    sgemm_resident: [usize; 2], // blocks of sgemm_rows128 and sgemm_rows64 one SM holds at once
    tiled_sgemms: Cell<u64>,    // products run on sgemm.cu so far
    half: [Option<CudaBuffer<u16>>; 4], // bf16 or f16 scratch, by HALF_* slot, grown on demand
    loss_scale: Option<CudaBuffer<f32>>, // f16 only: [scale, clean steps, overflow flag, skipped steps]
    partial: Option<CudaBuffer<f32>>, // (blocks, channels): bias gradients' per-block sums
    blas: CudaBlas,
    _blas_workspace: CudaSlice<u8>,
    functions: Vec<CudaFunction>, // indexed by `Kernel as usize`
    stream: Arc<CudaStream>,
    ctx: Arc<CudaContext>,
    name: String,
    capability: (i32, i32),
}

fn backend_error(op: &str, message: impl Into<String>) -> Error {
    Error::Backend { op: op.into(), message: message.into() }
}

fn driver_error(op: &str, e: DriverError) -> Error {
    let name = e.error_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|_| format!("{:?}", e.0));
    let text = e.error_string().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    backend_error(op, format!("{name}: {text}"))
}

fn cublas_error(op: &str, e: cublas::CublasError) -> Error {
    backend_error(op, format!("cuBLAS {:?}", e.0))
}

fn int(op: &str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| backend_error(op, format!("{v} does not fit a 32-bit int")))
}

fn elementwise(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(BLOCK as usize).clamp(1, MAX_BLOCKS) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 }
}

/// sgemm.cu's launch for `g` in tiles of `rows` rows: one block of SGEMM_THREADS per tile.
fn sgemm_grid(g: &RowMajorGemm, rows: usize) -> Result<LaunchConfig> {
    let tiles = g.m.div_ceil(rows) * g.n.div_ceil(SGEMM_COLS);
    let blocks = u32::try_from(tiles).map_err(|_| backend_error("sgemm", format!("{tiles} tiles exceed a grid")))?;
    Ok(LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (SGEMM_THREADS, 1, 1), shared_mem_bytes: 0 })
}

/// Values [first, first + len) of a gradient as a GEMM operand: the f32 values at `f32_ptr`, or
/// their half-precision copy at `half_ptr` (2 bytes each) when there is one (nonzero).
fn gradient_operand(f32_ptr: u64, half_ptr: u64, first: usize, len: usize) -> Operand {
    if half_ptr == 0 {
        Operand::F32(f32_ptr + (first * 4) as u64, len)
    } else {
        Operand::Half(half_ptr + (first * 2) as u64, len)
    }
}

/// The arguments im2col, im2col_half and col2im start with: (dst, src, i64 samples, int height,
/// int width, int channels, int kernel).
fn image_args(op: &str, dst: u64, src: u64, samples: usize, d: &Conv2dDims) -> Result<[Arg; 7]> {
    Ok([
        Arg::Ptr(dst),
        Arg::Ptr(src),
        Arg::I64(samples as i64),
        Arg::I32(int(op, d.height)?),
        Arg::I32(int(op, d.width)?),
        Arg::I32(int(op, d.in_channels)?),
        Arg::I32(int(op, d.kernel)?),
    ])
}

/// Which of the three libraries is missing, as the sentence `new` and `cuda_available` return.
fn check_libraries() -> Result<()> {
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
fn without_panics<T>(op: &str, f: impl FnOnce() -> Result<T> + std::panic::UnwindSafe) -> Result<T> {
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

impl CudaBackend {
    /// Starts the backend on GPU `ordinal`: a context, one stream, the kernels compiled by
    /// NVRTC for this GPU's arch, and a cuBLAS handle in default (non-TF32) math.
    /// Without a usable GPU, a clear error instead of a panic.
    pub fn new(ordinal: usize) -> Result<Self> {
        without_panics("cuda init", || Self::start(ordinal))
    }

    fn start(ordinal: usize) -> Result<Self> {
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
        let resident = |k: Kernel| {
            functions[k as usize]
                .occupancy_max_active_blocks_per_multiprocessor(SGEMM_THREADS, 0, None)
                .map(|blocks| (blocks as usize).max(1))
                .map_err(|e| driver_error("cuOccupancyMaxActiveBlocksPerMultiprocessor", e))
        };
        let sgemm_resident = [resident(Kernel::SgemmRows128)?, resident(Kernel::SgemmRows64)?];
        let blas = CudaBlas::new(stream.clone()).map_err(|e| cublas_error("cublasCreate", e))?;
        // TF32 stays off: fp32 GEMMs must match the CPU within 1e-4 relative.
        // SAFETY: a live handle.
        unsafe { cublas_sys::cublasSetMathMode(*blas.handle(), cublas_sys::cublasMath_t::CUBLAS_DEFAULT_MATH) }
            .result()
            .map_err(|e| cublas_error("cublasSetMathMode", e))?;
        let workspace = stream.alloc_zeros::<u8>(CUBLAS_WORKSPACE_BYTES).map_err(|e| driver_error("cuMemAlloc", e))?;
        // SAFETY: a live handle; the workspace outlives it (field order) and only this handle,
        // on its one stream, uses it.
        unsafe {
            cublas_sys::cublasSetWorkspace_v2(
                *blas.handle(),
                workspace.device_ptr(&stream).0 as *mut std::ffi::c_void,
                CUBLAS_WORKSPACE_BYTES,
            )
        }
        .result()
        .map_err(|e| cublas_error("cublasSetWorkspace", e))?;
        let name = format!("{device} (sm_{}{})", capability.0, capability.1);
        let step_slice = stream.alloc_zeros::<u64>(3).map_err(|e| driver_error("cuMemAlloc", e))?;
        let step_ptr = step_slice.device_ptr(&stream).0;
        Ok(CudaBackend {
            // MNIST_CUDA_GRAPHS=0 runs every step op by op (to measure what graphs save).
            graphs_enabled: std::env::var("MNIST_CUDA_GRAPHS").as_deref() != Ok("0"),
            graphs: HashMap::new(),
            recording: None,
            graph_stats: StepGraphStats::default(),
            step_values: CudaBuffer { slice: step_slice, ptr: step_ptr, len: 3 },
            col: None,
            col_cap: COL_CAP,
            precision: Precision::F32,
            f32_gemm: F32Gemm::from_env(),
            tf32: false,
            sm_count,
            sgemm_resident,
            tiled_sgemms: Cell::new(0),
            half: [None, None, None, None],
            loss_scale: None,
            partial: None,
            blas,
            _blas_workspace: workspace,
            functions,
            stream,
            ctx,
            name,
            capability,
        })
    }

    /// Turns step recording (CUDA graphs) on or off; off drops every recording. On by default
    /// unless `MNIST_CUDA_GRAPHS=0`.
    pub fn set_step_graphs(&mut self, enabled: bool) {
        self.graphs_enabled = enabled;
        self.graphs.clear();
    }

    /// Lets cuBLAS use TF32 tensor cores for the f32 GEMMs (10-bit mantissa products, f32
    /// sums), or not (the default, which the CPU-vs-CUDA tolerances assume). Drops every
    /// recording, since recorded GEMMs keep the math they were captured with.
    pub fn set_tf32(&mut self, enabled: bool) -> Result<()> {
        let mode = if enabled {
            cublas_sys::cublasMath_t::CUBLAS_TF32_TENSOR_OP_MATH
        } else {
            cublas_sys::cublasMath_t::CUBLAS_DEFAULT_MATH
        };
        // SAFETY: a live handle.
        unsafe { cublas_sys::cublasSetMathMode(*self.blas.handle(), mode) }
            .result()
            .map_err(|e| cublas_error("cublasSetMathMode", e))?;
        self.tf32 = enabled;
        self.graphs.clear();
        Ok(())
    }

    /// Picks the kernels of the f32 GEMMs (see `F32Gemm`; TF32 GEMMs are always cuBLAS's).
    /// Drops every recording, since recorded GEMMs keep the kernels they were captured with.
    pub fn set_f32_gemm(&mut self, choice: F32Gemm) -> Result<()> {
        if let F32Gemm::Tiled { rows: Some(rows), .. } = choice {
            if rows != 64 && rows != 128 {
                return Err(Error::invalid("f32 gemm", format!("tiles of {rows} rows: 64 or 128 are compiled")));
            }
        }
        self.drop_recordings("set_f32_gemm")?;
        self.f32_gemm = choice;
        Ok(())
    }

    /// Caps the im2col scratch at `floats` (at least one sample's matrix is always allowed)
    /// instead of 256 MiB: tests use it to run convolutions in chunks of samples, as a batch
    /// past the cap does.
    #[doc(hidden)]
    pub fn set_im2col_cap(&mut self, floats: usize) {
        self.col_cap = floats;
    }

    /// How many f32 products ran on the tiled kernel (sgemm.cu) so far, not cuBLAS.
    pub fn tiled_sgemm_count(&self) -> u64 {
        self.tiled_sgemms.get()
    }

    /// Sets the GEMMs' input format (see `Precision`); f16 starts a fresh loss scale. Drops
    /// every recording, since recorded GEMMs keep the format they were captured with.
    pub fn set_precision(&mut self, precision: Precision) -> Result<()> {
        if precision == Precision::Bf16 && self.capability < (8, 0) {
            let (major, minor) = self.capability;
            return Err(Error::invalid(
                "precision bf16",
                format!(
                    "bf16 GEMMs need a GPU of compute capability 8.0 or newer; this one is {major}.{minor} (f16 works)"
                ),
            ));
        }
        self.drop_recordings("set_precision")?;
        self.precision = precision;
        self.loss_scale = None;
        if precision == Precision::F16 {
            self.loss_scale = Some(self.alloc_buffer(4)?);
            self.set_loss_scale(LOSS_SCALE_START)?;
        }
        Ok(())
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Restarts f16 loss scaling at `scale` (a power of two, 1..=2^24) with no steps counted.
    pub fn set_loss_scale(&mut self, scale: f32) -> Result<()> {
        if !(1.0..=16_777_216.0).contains(&scale) || scale.log2().fract() != 0.0 {
            return Err(Error::invalid("loss scale", format!("{scale} is not a power of two in 1..=2^24")));
        }
        let Some(mut state) = self.loss_scale.take() else {
            return Err(backend_error("set_loss_scale", "loss scaling is only used with f16 precision"));
        };
        let result = self.copy_in(&mut state, &[scale, 0.0, 0.0, 0.0]);
        self.loss_scale = Some(state);
        result
    }

    /// f16 training's current loss scale and skipped steps (waits for the stream); None in
    /// f32 and bf16, which do not scale the loss.
    pub fn loss_scale(&mut self) -> Result<Option<LossScale>> {
        let Some(state) = self.loss_scale.as_ref() else {
            return Ok(None);
        };
        let mut host = [0.0f32; 4];
        self.stream
            .memcpy_dtoh(&state.slice.slice(0..4), &mut host)
            .map_err(|e| driver_error("cuMemcpyDtoH (loss scale)", e))?;
        self.synchronize()?;
        Ok(Some(LossScale { scale: host[0], skipped_steps: host[3] as u64 }))
    }

    /// The loss scale state's address for the kernels that use it; null (none) unless f16.
    fn loss_scale_at(&self) -> u64 {
        self.loss_scale.as_ref().map_or(0, |s| s.ptr)
    }

    /// How many steps were recorded and replayed so far, and why any recording failed.
    pub fn step_graph_stats(&self) -> &StepGraphStats {
        &self.graph_stats
    }

    /// Forgets every recording: they hold addresses of scratch that is about to be replaced.
    fn drop_recordings(&mut self, op: &str) -> Result<()> {
        if self.recording.is_some() {
            return Err(backend_error(op, "scratch would grow while a step is recorded"));
        }
        self.graphs.clear();
        Ok(())
    }

    /// Where a recorded step's kernels read the value `wanted` from: `slot` of `step_values`,
    /// checked to hold what the caller passed; null (use the argument) when not recording.
    fn step_value_at(&self, op: &str, slot: usize, wanted: u64) -> Result<u64> {
        let Some((_, values)) = self.recording else {
            return Ok(0);
        };
        let have = [values.start as u64, values.dropout_seeds[0], values.dropout_seeds[1]];
        if have[slot] != wanted {
            return Err(backend_error(op, "a recorded step passed a value that begin_step was not given"));
        }
        Ok(self.step_values.at(slot))
    }

    /// Copies a step's values to the device, in stream order before the step's kernels.
    fn write_step_values(&mut self, values: StepValues) -> Result<()> {
        let host = [values.start as u64, values.dropout_seeds[0], values.dropout_seeds[1]];
        // From pageable memory: CUDA stages the 24 bytes before returning, so `host` may go.
        let mut view = self.step_values.slice.slice_mut(0..3);
        self.stream.memcpy_htod(&host, &mut view).map_err(|e| driver_error("cuMemcpyHtoD (step values)", e))
    }

    /// Waits for every queued operation; reports the first asynchronous error.
    pub fn synchronize(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(|e| driver_error("cuStreamSynchronize (an earlier launch may have failed)", e))
    }

    fn alloc_buffer<T: DeviceRepr + ValidAsZeroBits>(&mut self, len: usize) -> Result<CudaBuffer<T>> {
        let slice = self.stream.alloc_zeros::<T>(len.max(1)).map_err(|e| driver_error("cuMemAlloc", e))?;
        // The address is fixed for the allocation's life; with event tracking off the
        // returned guard records nothing.
        let ptr = slice.device_ptr(&self.stream).0;
        Ok(CudaBuffer { ptr, slice, len })
    }

    fn upload_new<T: DeviceRepr + ValidAsZeroBits>(&mut self, host: &[T]) -> Result<CudaBuffer<T>> {
        let mut buffer = self.alloc_buffer(host.len())?;
        self.copy_in(&mut buffer, host)?;
        Ok(buffer)
    }

    /// Copies `src` into the start of `dst`, which callers make sure holds as many values.
    fn copy_in<T: DeviceRepr>(&mut self, dst: &mut CudaBuffer<T>, src: &[T]) -> Result<()> {
        if src.is_empty() {
            return Ok(());
        }
        let mut view = dst.slice.slice_mut(0..src.len());
        self.stream.memcpy_htod(src, &mut view).map_err(|e| driver_error("cuMemcpyHtoD", e))
    }

    /// Queues `kernel` on the stream.
    ///
    /// # Safety
    /// `args` must match the kernel's C parameters in number, order and type, and every
    /// pointer must address as much live device memory as the kernel indexes with those sizes.
    unsafe fn launch(&self, kernel: Kernel, config: LaunchConfig, args: &[Arg]) -> Result<()> {
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

    /// Row-major C = alpha op(A) op(B) + beta C; C is f32, a device address and the number of
    /// values there. In f32 precision A and B must be f32 (the tiled kernel or cuBLAS's SGEMM,
    /// see `F32Gemm`); otherwise f32 operands are converted into half scratch first and the
    /// product runs on cuBLAS's tensor cores, summing in f32. Every operand is checked against
    /// the shapes before the call.
    fn gemm(&mut self, op: &str, g: RowMajorGemm, a: Operand, b: Operand, c: (u64, usize)) -> Result<()> {
        self.gemm_fused(op, g, a, b, c, None).map(|_| ())
    }

    /// `gemm`, then C = act(C + bias) (bias_act, with `channels` = n): in the tiled kernel's
    /// own pass over C when it takes the product (one read and write of conv2's 19 MB output
    /// fewer), else as a pass of its own. C's rows must be dense (ldc = n).
    #[allow(clippy::too_many_arguments)]
    fn gemm_bias_act(
        &mut self,
        op: &str,
        g: RowMajorGemm,
        a: Operand,
        b: Operand,
        c: (u64, usize),
        bias: u64,
        relu: bool,
    ) -> Result<()> {
        if g.ldc != g.n {
            return Err(backend_error(op, format!("bias_act after a GEMM needs dense rows of C: {g:?}")));
        }
        if !self.gemm_fused(op, g, a, b, c, Some((bias, relu)))? {
            self.bias_act(c.0, bias, g.m * g.n, g.n, relu)?;
        }
        Ok(())
    }

    /// `gemm`, with bias_act's (bias address, relu) fused into the product when the tiled kernel
    /// takes it; returns whether it did.
    fn gemm_fused(
        &mut self,
        op: &str,
        g: RowMajorGemm,
        a: Operand,
        b: Operand,
        c: (u64, usize),
        bias_act: Option<(u64, bool)>,
    ) -> Result<bool> {
        let (a_need, b_need, c_need) = g.extents();
        if a.len() < a_need || b.len() < b_need || c.1 < c_need {
            return Err(backend_error(op, format!("GEMM operands too small for {g:?}")));
        }
        if g.m == 0 || g.n == 0 {
            return Ok(false);
        }
        let cm = g
            .to_column_major()
            .ok_or_else(|| backend_error(op, format!("GEMM {g:?} exceeds cuBLAS's 32-bit sizes")))?;
        let half_type = match self.precision {
            Precision::F32 => None,
            Precision::Bf16 => Some(cublas_sys::cudaDataType::CUDA_R_16BF),
            Precision::F16 => Some(cublas_sys::cudaDataType::CUDA_R_16F),
        };
        let Some(half_type) = half_type else {
            let (Operand::F32(a, _), Operand::F32(b, _)) = (a, b) else {
                return Err(backend_error(op, "a half-precision operand in f32 precision"));
            };
            let bias = bias_act.map_or(0, |(bias, _)| bias);
            if let Some(kernel) = self.tiled_sgemm_kernel(&g, a, b, c.0, bias) {
                self.tiled_sgemm(kernel, &g, a, b, c.0, bias_act)?;
                return Ok(bias_act.is_some());
            }
            self.ctx.bind_to_thread().map_err(|e| driver_error(op, e))?;
            // SAFETY: the handle is live and bound to our stream; the extents checked above
            // keep every access inside the three device allocations; alpha and beta are host
            // values (cuBLAS's default pointer mode). cuBLAS's A is our B and its B our A.
            return unsafe {
                cublas::sgemm(
                    *self.blas.handle(),
                    cm.transa,
                    cm.transb,
                    cm.m,
                    cm.n,
                    cm.k,
                    &g.alpha,
                    b as *const f32,
                    cm.lda,
                    a as *const f32,
                    cm.ldb,
                    &g.beta,
                    c.0 as *mut f32,
                    cm.ldc,
                )
            }
            .map(|_| false)
            .map_err(|e| cublas_error(op, e));
        };
        // Only the extent the GEMM reads is converted (a dense layer's kernel, not all params).
        let a = self.half_operand(HALF_A, a, a_need)?;
        let b = self.half_operand(HALF_B, b, b_need)?;
        self.ctx.bind_to_thread().map_err(|e| driver_error(op, e))?;
        // SAFETY: as for SGEMM above; A and B now hold at least their extents of 2-byte values
        // of `half_type`, C f32; alpha and beta are f32 host values, as CUBLAS_COMPUTE_32F takes.
        unsafe {
            cublas::gemm_ex(
                *self.blas.handle(),
                cm.transa,
                cm.transb,
                cm.m,
                cm.n,
                cm.k,
                &g.alpha as *const f32 as *const std::ffi::c_void,
                b as *const std::ffi::c_void,
                half_type,
                cm.lda,
                a as *const std::ffi::c_void,
                half_type,
                cm.ldb,
                &g.beta as *const f32 as *const std::ffi::c_void,
                c.0 as *mut std::ffi::c_void,
                cublas_sys::cudaDataType::CUDA_R_32F,
                cm.ldc,
                cublas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                cublas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .map(|_| false)
        .map_err(|e| cublas_error(op, e))
    }

    /// The tiled kernel (sgemm.cu) that takes this f32 product, if `f32_gemm` gives it one and
    /// the product meets the kernel's terms; None leaves it to cuBLAS.
    /// `bias`: the address of the bias it would add (0: none).
    fn tiled_sgemm_kernel(&self, g: &RowMajorGemm, a: u64, b: u64, c: u64, bias: u64) -> Option<Kernel> {
        let rows = match self.f32_gemm {
            F32Gemm::Cublas => return None,
            _ if self.tf32 => return None,
            F32Gemm::Tiled { min_rows, .. } if g.m < min_rows || g.k > TALL_GEMM_MAX_K => return None,
            F32Gemm::Tiled { rows: Some(rows), .. } => rows as usize,
            F32Gemm::Tiled { rows: None, .. } => self.sgemm_rows(g),
        };
        let fits = [g.m, g.n, g.k, g.lda, g.ldb, g.ldc].iter().all(|&v| i32::try_from(v).is_ok())
            && sgemm_grid(g, rows).is_ok();
        let aligned = [g.n, g.lda, g.ldb, g.ldc].iter().all(|v| v.is_multiple_of(4))
            && [a, b, c, bias].iter().all(|p| p.is_multiple_of(16));
        let usable = !g.transpose_a && g.k > 0 && g.k.is_multiple_of(SGEMM_STEP);
        (fits && aligned && usable).then_some(if rows == 128 { Kernel::SgemmRows128 } else { Kernel::SgemmRows64 })
    }

    /// The kernel (conv_sgemm_rows*) for a convolution's forward product `g` (out = im2col(image)
    /// weights) that reads `image` itself: when f32's tiled kernel takes the product and C % 4
    /// == 0, as Im2colRows (sgemm.cu) needs.
    fn implicit_im2col_kernel(
        &self,
        g: &RowMajorGemm,
        image: u64,
        d: &Conv2dDims,
        weights: Operand,
        out: u64,
        bias: u64,
    ) -> Option<Kernel> {
        let Operand::F32(weights, _) = weights else { return None };
        if self.precision != Precision::F32 || !d.in_channels.is_multiple_of(4) {
            return None;
        }
        let fits = [d.height, d.width, d.in_channels, d.kernel].iter().all(|&v| i32::try_from(v).is_ok());
        match self.tiled_sgemm_kernel(g, image, weights, out, bias)? {
            _ if !fits => None,
            Kernel::SgemmRows128 => Some(Kernel::ConvSgemmRows128),
            _ => Some(Kernel::ConvSgemmRows64),
        }
    }

    /// out = act(im2col(image) weights + bias) on `kernel` (from `implicit_im2col_kernel`), which
    /// also writes the im2col matrix to `col` (`g.m` rows of `g.k`).
    #[allow(clippy::too_many_arguments)]
    fn conv_sgemm(
        &self,
        kernel: Kernel,
        g: &RowMajorGemm,
        image: u64,
        d: &Conv2dDims,
        col: u64,
        weights: Operand,
        out: (u64, usize),
        bias: u64,
        relu: bool,
    ) -> Result<()> {
        let op = kernel.name();
        let (_, b_need, c_need) = g.extents();
        let Operand::F32(weights, weights_len) = weights else {
            return Err(backend_error(op, "a half-precision operand in f32 precision"));
        };
        if weights_len < b_need || out.1 < c_need {
            return Err(backend_error(op, format!("GEMM operands too small for {g:?}")));
        }
        let args = [
            Arg::I32(int(op, g.m)?),
            Arg::I32(int(op, g.n)?),
            Arg::I32(int(op, g.k)?),
            Arg::Ptr(image),
            Arg::I32(int(op, d.height)?),
            Arg::I32(int(op, d.width)?),
            Arg::I32(int(op, d.in_channels)?),
            Arg::I32(int(op, d.kernel)?),
            Arg::Ptr(col),
            Arg::Ptr(weights),
            Arg::I32(int(op, g.ldb)?),
            Arg::Ptr(out.0),
            Arg::I32(int(op, g.ldc)?),
            Arg::Ptr(bias),
            Arg::I32(relu as i32),
        ];
        // SAFETY: conv_sgemm_rows*(int m, int n, int k, const float* image, int height, int
        // width, int channels, int ksize, float* col, const float* b, int ldb, float* c, int ldc,
        // const float* bias, int relu). implicit_im2col_kernel checked the kernel's terms (f32,
        // k % 16, C % 4, 16-byte aligned image, weights, out and bias); the callers pass m =
        // samples * OH * OW rows of `samples` samples of image (checked by conv2d_forward), col
        // with room for m * k values (col_scratch), and a bias span of n values; the weights
        // and out hold their extents (checked above). Rows past m are read as row 0 and
        // written nowhere.
        unsafe { self.launch_sgemm(kernel, g, &args) }
    }

    /// Launches one of sgemm.cu's kernels, one block per tile of `g`, and counts the product.
    ///
    /// # Safety
    /// As `launch`: `args` must match `kernel`'s C parameters, for a product `g` whose operands
    /// the kernel may read and write in full.
    unsafe fn launch_sgemm(&self, kernel: Kernel, g: &RowMajorGemm, args: &[Arg]) -> Result<()> {
        let rows = match kernel {
            Kernel::SgemmRows128 | Kernel::ConvSgemmRows128 => 128,
            _ => 64,
        };
        // SAFETY: forwarded to the caller.
        unsafe { self.launch(kernel, sgemm_grid(g, rows)?, args) }?;
        self.tiled_sgemms.set(self.tiled_sgemms.get() + 1);
        Ok(())
    }

    /// Tiles of 128 rows (fewer loads per multiply-add) unless their last wave of blocks would
    /// leave the GPU idler than 64-row tiles' would: conv2's forward has 576 tiles of 128, about
    /// 1.5 waves on an H100 at 3 blocks per SM, but 1,152 of 64, about 1.7 at 5. (The conv_
    /// variants fit as many blocks: 165 and 96 registers against 149 and 89, NVRTC 13.0.)
    fn sgemm_rows(&self, g: &RowMajorGemm) -> usize {
        let busy = |rows: usize, resident: usize| {
            let tiles = g.m.div_ceil(rows) * g.n.div_ceil(SGEMM_COLS);
            let slots = self.sm_count * resident;
            tiles as f64 / (tiles.div_ceil(slots) * slots) as f64
        };
        let (busy128, busy64) = (busy(128, self.sgemm_resident[0]), busy(64, self.sgemm_resident[1]));
        if busy128 >= 0.85 || busy128 >= busy64 {
            128
        } else {
            64
        }
    }

    /// C = alpha A op(B) + beta C on `kernel` (one of sgemm.cu's), then bias_act's (bias
    /// address, relu) if given, for a product that `tiled_sgemm_kernel` accepted.
    fn tiled_sgemm(
        &self,
        kernel: Kernel,
        g: &RowMajorGemm,
        a: u64,
        b: u64,
        c: u64,
        bias_act: Option<(u64, bool)>,
    ) -> Result<()> {
        let op = kernel.name();
        let args = [
            Arg::I32(int(op, g.m)?),
            Arg::I32(int(op, g.n)?),
            Arg::I32(int(op, g.k)?),
            Arg::Ptr(a),
            Arg::I32(int(op, g.lda)?),
            Arg::Ptr(b),
            Arg::I32(int(op, g.ldb)?),
            Arg::I32(g.transpose_b as i32),
            Arg::Ptr(c),
            Arg::I32(int(op, g.ldc)?),
            Arg::F32(g.alpha),
            Arg::F32(g.beta),
            Arg::Ptr(bias_act.map_or(0, |(bias, _)| bias)),
            Arg::I32(bias_act.is_some_and(|(_, relu)| relu) as i32),
        ];
        // SAFETY: sgemm_rows*(int m, int n, int k, const float* a, int lda, const float* b, int
        // ldb, int trans_b, float* c, int ldc, float alpha, float beta, const float* bias, int
        // relu). `gemm_fused` checked that the three allocations hold the operands' extents for
        // these sizes and strides, and tiled_sgemm_kernel that every size fits an int and meets
        // the kernel's terms (k % 16, float4 alignment, bias's too); the kernel reads A's rows
        // < m, B's columns < n, bias's n values (the callers check a bias span of n), and writes
        // C's (row < m, column < n) entries only.
        unsafe { self.launch_sgemm(kernel, g, &args) }
    }

    /// The half-precision address of a GEMM operand: a Half one as it is, an f32 one's first
    /// `len` values converted into scratch `slot`.
    fn half_operand(&mut self, slot: usize, operand: Operand, len: usize) -> Result<u64> {
        match operand {
            Operand::Half(ptr, _) => Ok(ptr),
            Operand::F32(ptr, _) => self.convert_to_half(slot, ptr, len),
        }
    }

    /// Where `bias_gradient` also writes the masked dout, in the same pass, for the two GEMMs
    /// that read it: HALF_KEPT with room for `len` values in bf16 and f16; nowhere (0) in f32.
    fn half_dout(&mut self, len: usize) -> Result<u64> {
        if self.precision == Precision::F32 {
            return Ok(0);
        }
        self.half_scratch(HALF_KEPT, len)
    }

    /// Converts `len` floats at `src` into half scratch `slot` (bf16 or f16, the precision's);
    /// returns the scratch's address.
    fn convert_to_half(&mut self, slot: usize, src: u64, len: usize) -> Result<u64> {
        let dst = self.half_scratch(slot, len)?;
        if len == 0 {
            return Ok(dst);
        }
        let args =
            [Arg::Ptr(dst), Arg::Ptr(src), Arg::I64(len as i64), Arg::I32((self.precision == Precision::Bf16) as i32)];
        // SAFETY: to_half(u16* dst, const float* src, i64 n, int bf16); dst holds >= len values
        // (half_scratch) and callers pass src with >= len floats (a checked operand extent).
        unsafe { self.launch(Kernel::ToHalf, elementwise(len), &args) }?;
        Ok(dst)
    }

    /// Half scratch `slot` with room for at least `len` values; grows like `col_scratch`.
    fn half_scratch(&mut self, slot: usize, len: usize) -> Result<u64> {
        if self.half[slot].as_ref().is_none_or(|h| h.len < len) {
            self.drop_recordings("half-precision scratch")?;
            self.half[slot] = None;
            self.half[slot] = Some(self.alloc_buffer(len)?);
        }
        Ok(self.half[slot].as_ref().map_or(0, |h| h.ptr))
    }

    /// Fills the first `len` values of `dst` with `value`.
    fn fill_range(&self, dst: u64, len: usize, value: f32) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        // SAFETY: fill_f32(float* x, i64 n, float value); callers pass a buffer of >= len values.
        unsafe {
            self.launch(Kernel::FillF32, elementwise(len), &[Arg::Ptr(dst), Arg::I64(len as i64), Arg::F32(value)])
        }
    }

    /// Sets `len` floats at `dst` to zero.
    fn zero_range(&self, dst: u64, len: usize) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        self.ctx.bind_to_thread().map_err(|e| driver_error("cuMemsetD8Async", e))?;
        // SAFETY: callers pass an address with >= len floats behind it; async on our stream.
        unsafe { driver::memset_d8_async(dst, 0, len * 4, self.stream.cu_stream()) }
            .map_err(|e| driver_error("cuMemsetD8Async", e))
    }

    /// A scratch buffer of at least `len` floats for im2col and dcol.
    fn col_scratch(&mut self, len: usize) -> Result<u64> {
        if self.col.as_ref().is_none_or(|c| c.len < len) {
            self.drop_recordings("im2col scratch")?;
            self.col = None; // free the old one first (stream-ordered)
            self.col = Some(self.alloc_buffer(len)?);
        }
        Ok(self.col.as_ref().map_or(0, |c| c.ptr))
    }

    /// A scratch buffer of at least `len` floats for the bias gradients' partial sums.
    fn partial_scratch(&mut self, len: usize) -> Result<u64> {
        if self.partial.as_ref().is_none_or(|p| p.len < len) {
            self.drop_recordings("bias gradient scratch")?;
            self.partial = None;
            self.partial = Some(self.alloc_buffer(len)?);
        }
        Ok(self.partial.as_ref().map_or(0, |p| p.ptr))
    }

    /// dbias (cols) = column sums of dout (rows, cols), overwritten; with `relu`, dout is first
    /// masked in place by (out > 0), the ReLU's backward; with a nonzero `half_dout` (from
    /// `half_dout`), the masked dout is also written there in the precision's half format. Two
    /// deterministic kernels: column sums over row ranges of about BIAS_ROWS_PER_THREAD rows per
    /// thread, then a fixed tree over each column's sums.
    #[allow(clippy::too_many_arguments)]
    fn bias_gradient(
        &mut self,
        op: &str,
        dbias: (u64, usize),
        dout: u64,
        half_dout: u64,
        out: u64,
        rows: usize,
        cols: usize,
        relu: bool,
    ) -> Result<()> {
        if rows == 0 {
            return self.zero_range(dbias.0, cols);
        }
        if cols == 0 {
            return Ok(());
        }
        // Blocks of `lanes` lanes of `cols` threads (up to BLOCK threads), each thread summing
        // about BIAS_ROWS_PER_THREAD rows; wider rows get one lane of BLOCK threads (whole
        // warps), each thread owning several columns.
        let (lanes, threads) = if cols <= BLOCK as usize {
            let lanes = BLOCK as usize / cols;
            (lanes, lanes * cols)
        } else {
            (1, BLOCK as usize)
        };
        let rows_per_block = (lanes * BIAS_ROWS_PER_THREAD).max(rows.div_ceil(MAX_BLOCKS));
        let blocks = rows.div_ceil(rows_per_block);
        let partial = self.partial_scratch(blocks * cols)?;
        let threads = threads as u32;
        let config = LaunchConfig { grid_dim: (blocks as u32, 1, 1), block_dim: (threads, 1, 1), shared_mem_bytes: 0 };
        let args = [
            Arg::Ptr(partial),
            Arg::Ptr(dout),
            Arg::Ptr(out),
            Arg::I64(rows as i64),
            Arg::I32(int(op, cols)?),
            Arg::I32(int(op, rows_per_block)?),
            Arg::I32(relu as i32),
            Arg::I32(int(op, lanes)?),
            Arg::Ptr(half_dout),
            Arg::I32((self.precision == Precision::Bf16) as i32),
        ];
        // SAFETY: bias_grad_partial(float* partial, float* dout, const float* out, i64 rows, int
        // channels, int rows_per_block, int relu, int lanes), and bias_grad_partial_half with
        // (u16* half_dout, int bf16) after; dout and out hold rows * cols values (checked by the
        // callers; distinct buffers, as its __restrict__ needs), half_dout, when given, rows *
        // cols (half_dout, a scratch of its own), partial cols * blocks, and block b touches only
        // rows [b * rows_per_block, rows) and column b of partial; the block is `lanes` lanes of
        // exactly `cols` threads when lanes > 1, and at most BLOCK (<= BIAS_PARTIAL_MAX_BLOCK)
        // threads.
        unsafe {
            if half_dout == 0 {
                self.launch(Kernel::BiasGradPartial, config, &args[..8])
            } else {
                self.launch(Kernel::BiasGradPartialHalf, config, &args)
            }
        }?;
        self.sum_partials(op, dbias.0, partial, blocks, cols)
    }

    /// dst (cols) = for each column j, the sum of partial[j][0..blocks) (bias_grad_finish).
    fn sum_partials(&self, op: &str, dst: u64, partial: u64, blocks: usize, cols: usize) -> Result<()> {
        let args = [Arg::Ptr(dst), Arg::Ptr(partial), Arg::I32(int(op, blocks)?)];
        let config = LaunchConfig {
            grid_dim: (int(op, cols)? as u32, 1, 1),
            block_dim: (BIAS_FINISH_BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: bias_grad_finish(float* dbias, const float* partial, int blocks), launched with
        // one block per column of BIAS_FINISH_BLOCK threads as it requires; callers pass dst with
        // cols values (a checked span) and partial with cols * blocks.
        unsafe { self.launch(Kernel::BiasGradFinish, config, &args) }
    }

    /// dkernel (patch, OC) = im2col(inp)^T @ dout for a small patch, without the im2col matrix,
    /// and in the same pass `bias_gradient`'s work (dout masked by the ReLU in place, dbias its
    /// column sums, the same bits): partial sums over row ranges, then `sum_partials` for each.
    #[allow(clippy::too_many_arguments)]
    fn conv2d_dkernel_direct(
        &mut self,
        op: &str,
        dkernel: (u64, usize),
        dbias: (u64, usize),
        dout: u64,
        out: u64,
        inp: u64,
        d: &Conv2dDims,
        relu: bool,
    ) -> Result<()> {
        let rows = d.batch * d.out_height() * d.out_width();
        let pairs = d.patch_len() * d.out_channels;
        let oc = d.out_channels;
        // Lanes of exactly OC threads (conv1: 8 lanes of 32), each thread summing about
        // BIAS_ROWS_PER_THREAD rows for the whole patch; wider layers get one lane of BLOCK.
        let (lanes, threads) = if oc <= BLOCK as usize {
            let lanes = BLOCK as usize / oc;
            (lanes, lanes * oc)
        } else {
            (1, BLOCK as usize)
        };
        let rows_per_block = (lanes * BIAS_ROWS_PER_THREAD).max(rows.div_ceil(MAX_BLOCKS));
        let blocks = rows.div_ceil(rows_per_block);
        // The kernel's pairs, then the bias's OC rows.
        let partial = self.partial_scratch(blocks * (pairs + oc))?;
        let config =
            LaunchConfig { grid_dim: (blocks as u32, 1, 1), block_dim: (threads as u32, 1, 1), shared_mem_bytes: 0 };
        let args = [
            Arg::Ptr(partial),
            Arg::Ptr(dout),
            Arg::Ptr(inp),
            Arg::Ptr(out),
            Arg::I64(d.batch as i64),
            Arg::I32(int(op, d.height)?),
            Arg::I32(int(op, d.width)?),
            Arg::I32(int(op, d.in_channels)?),
            Arg::I32(int(op, d.kernel)?),
            Arg::I32(int(op, d.out_channels)?),
            Arg::I32(int(op, rows_per_block)?),
            Arg::I32(int(op, lanes)?),
            Arg::I32(relu as i32),
        ];
        // SAFETY: conv2d_dkernel_partial(float* partial, float* dout, const float* inp, const
        // float* out, i64 samples, int height, int width, int channels, int kernel_size, int
        // out_channels, int rows_per_block, int lanes, int relu); conv2d_backward checked dout
        // and out (batch * out_len, distinct buffers) and inp (batch * in_len); partial holds
        // (pairs + OC) * blocks and block b writes only column b of it; the patch is at most
        // DIRECT_CONV_MAX_PATCH (= DKERNEL_MAX_PATCH, the callers' test), and the block at most
        // BLOCK (= DKERNEL_MAX_BLOCK) threads, exactly `lanes` * OC when lanes > 1, as the
        // kernel needs.
        unsafe { self.launch(Kernel::Conv2dDkernelPartial, config, &args) }?;
        self.sum_partials(op, dkernel.0, partial, blocks, pairs)?;
        self.sum_partials(op, dbias.0, partial + (blocks * pairs * 4) as u64, blocks, oc)
    }

    /// out (n) += bias (broadcast over rows of `channels`), then ReLU if `relu`.
    fn bias_act(&self, out: u64, bias: u64, n: usize, channels: usize, relu: bool) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        let args = [
            Arg::Ptr(out),
            Arg::Ptr(bias),
            Arg::I64(n as i64),
            Arg::I32(int("bias_act", channels)?),
            Arg::I32(relu as i32),
        ];
        // SAFETY: bias_act(float* out, const float* bias, i64 n, int channels, int relu); out
        // holds n values and bias `channels` (checked by the callers).
        unsafe { self.launch(Kernel::BiasAct, elementwise(n), &args) }
    }

    /// `conv2d_forward` for a small patch: one kernel instead of im2col + GEMM + bias_act.
    #[allow(clippy::too_many_arguments)]
    fn conv2d_direct(
        &self,
        out: &mut CudaBuffer<f32>,
        inp: &CudaBuffer<f32>,
        params: &CudaBuffer<f32>,
        kernel: Span,
        bias: Span,
        d: &Conv2dDims,
        relu: bool,
    ) -> Result<()> {
        let op = "conv2d_direct";
        let kernel_ptr = params.at(kernel.offset);
        // Four output channels per thread when OC % 4 == 0 and out and the kernel are 16-byte
        // aligned (the kernel's test; any grid is correct).
        let n = d.batch * d.out_len();
        let quads = d.out_channels.is_multiple_of(4) && (out.ptr | kernel_ptr).is_multiple_of(16);
        let threads = if quads { n / 4 } else { n };
        let args = [
            Arg::Ptr(out.ptr),
            Arg::Ptr(inp.ptr),
            Arg::Ptr(kernel_ptr),
            Arg::Ptr(params.at(bias.offset)),
            Arg::I64(d.batch as i64),
            Arg::I32(int(op, d.height)?),
            Arg::I32(int(op, d.width)?),
            Arg::I32(int(op, d.in_channels)?),
            Arg::I32(int(op, d.kernel)?),
            Arg::I32(int(op, d.out_channels)?),
            Arg::I32(relu as i32),
        ];
        // SAFETY: conv2d_direct(float* out, const float* inp, const float* kernel, const float*
        // bias, i64 samples, int height, int width, int channels, int kernel_size, int
        // out_channels, int relu); conv2d_forward checked out (batch * out_len), inp (batch *
        // in_len) and the kernel (patch * OC) and bias (OC) spans; every read window lies
        // inside its sample because the convolution is "valid".
        unsafe { self.launch(Kernel::Conv2dDirect, elementwise(threads), &args) }
    }

    /// Samples per im2col chunk so that the scratch stays under `col_cap` (COL_CAP).
    fn conv_chunk(&self, d: &Conv2dDims) -> usize {
        let per_sample = d.out_height() * d.out_width() * d.patch_len();
        (self.col_cap / per_sample.max(1)).clamp(1, d.batch.max(1))
    }

    /// The im2col matrix of `samples` samples at `src` as a GEMM operand, at `into` (a saved
    /// state's room for it) or else in scratch sized for `chunk` samples: f32 in f32 precision,
    /// written straight in half precision otherwise.
    fn im2col_operand(
        &mut self,
        src: u64,
        samples: usize,
        chunk: usize,
        d: &Conv2dDims,
        into: Option<u64>,
    ) -> Result<Operand> {
        let per_sample = d.out_height() * d.out_width() * d.patch_len();
        let len = samples * per_sample;
        if self.precision == Precision::F32 {
            let col = match into {
                Some(col) => col,
                None => self.col_scratch(chunk * per_sample)?,
            };
            self.im2col_or_col2im(Kernel::Im2col, col, src, samples, d)?;
            return Ok(Operand::F32(col, len));
        }
        let col = match into {
            Some(col) => col,
            None => self.half_scratch(HALF_COL, chunk * per_sample)?,
        };
        let a = image_args("im2col_half", col, src, samples, d)?;
        let args = [a[0], a[1], a[2], a[3], a[4], a[5], a[6], Arg::I32((self.precision == Precision::Bf16) as i32)];
        // Four values at a time when C % 4 == 0, as im2col (any grid is correct).
        let values = if d.in_channels.is_multiple_of(4) { len / 4 } else { len };
        let threads = values.div_ceil(IM2COL_VALUES_PER_THREAD);
        // SAFETY: im2col_half(u16* col, const float* inp, i64 samples, int height, int width, int
        // channels, int kernel, int bf16); callers pass `samples` samples of input (samples *
        // in_len floats, checked) and col holds chunk >= samples samples' rows.
        unsafe { self.launch(Kernel::Im2colHalf, elementwise(threads), &args) }?;
        Ok(Operand::Half(col, len))
    }

    fn im2col_or_col2im(&self, kernel: Kernel, dst: u64, src: u64, samples: usize, d: &Conv2dDims) -> Result<()> {
        let op = kernel.name();
        let n = match kernel {
            Kernel::Im2col => samples * d.out_height() * d.out_width() * d.patch_len(),
            _ => samples * d.in_len(),
        };
        // Both move float4s when C % 4 == 0 (and the pointers are aligned, as ours are; a
        // misaligned one falls back to floats, still correct on this grid: grid-stride loops).
        let n = if d.in_channels.is_multiple_of(4) { n / 4 } else { n };
        let threads = match kernel {
            Kernel::Im2col => n.div_ceil(IM2COL_VALUES_PER_THREAD),
            _ => n,
        };
        let args = image_args(op, dst, src, samples, d)?;
        // SAFETY: im2col(float* col, const float* inp, ...) and col2im(float* dinp, const
        // float* dcol, ...) share this signature; callers pass `samples` samples of input
        // (samples * in_len values) and a col scratch of samples * OH*OW * patch values.
        unsafe { self.launch(kernel, elementwise(threads), &args) }
    }
}

impl Backend for CudaBackend {
    type Buffer = CudaBuffer<f32>;
    type Indices = CudaBuffer<u32>;
    type Dataset = CudaDataset;
    type Conv2dSaved = CudaConv2dSaved;

    fn device_name(&self) -> String {
        self.name.clone()
    }

    fn alloc(&mut self, len: usize) -> Result<CudaBuffer<f32>> {
        self.alloc_buffer(len)
    }
    fn alloc_indices(&mut self, len: usize) -> Result<CudaBuffer<u32>> {
        self.alloc_buffer(len)
    }
    /// Room for the im2col matrix of a batch of `dims` when the layer takes the im2col path
    /// and the batch fits one chunk (in the precision's format); none otherwise.
    fn alloc_conv2d_saved(&mut self, dims: Conv2dDims) -> Result<CudaConv2dSaved> {
        let im2col = dims.patch_len() > DIRECT_CONV_MAX_PATCH && dims.batch > 0;
        let col = if !im2col || self.conv_chunk(&dims) < dims.batch {
            SavedCol::None
        } else {
            let len = dims.batch * dims.out_height() * dims.out_width() * dims.patch_len();
            match self.precision {
                Precision::F32 => SavedCol::F32(self.alloc_buffer(len)?),
                Precision::Bf16 | Precision::F16 => SavedCol::Half(self.alloc_buffer(len)?),
            }
        };
        Ok(CudaConv2dSaved { col, holds: None })
    }
    fn upload_checked(&mut self, _: Checked, dst: &mut CudaBuffer<f32>, src: &[f32]) -> Result<()> {
        self.copy_in(dst, src)
    }
    fn download_checked(&mut self, _: Checked, dst: &mut [f32], src: &CudaBuffer<f32>) -> Result<()> {
        if !dst.is_empty() {
            let view = src.slice.slice(0..dst.len());
            self.stream
                .memcpy_dtoh(&view, dst)
                .map_err(|e| driver_error("cuMemcpyDtoH (an earlier launch may have failed)", e))?;
        }
        self.synchronize()
    }
    fn fill(&mut self, dst: &mut CudaBuffer<f32>, value: f32) -> Result<()> {
        self.fill_range(dst.ptr, dst.len, value)
    }

    fn upload_dataset_checked(
        &mut self,
        _: Checked,
        images: &[u8],
        labels: &[u8],
        sample_len: usize,
    ) -> Result<CudaDataset> {
        let order: Vec<u32> = (0..labels.len() as u32).collect();
        Ok(CudaDataset {
            images: self.upload_new(images)?,
            labels: self.upload_new(labels)?,
            order: self.upload_new(&order)?,
            sample_len,
        })
    }

    fn set_order_checked(&mut self, _: Checked, data: &mut CudaDataset, order: &[u32]) -> Result<()> {
        self.copy_in(&mut data.order, order)
    }

    fn load_batch_checked(
        &mut self,
        _: Checked,
        x: &mut CudaBuffer<f32>,
        labels: &mut CudaBuffer<u32>,
        data: &CudaDataset,
        start: usize,
        count: usize,
    ) -> Result<()> {
        let n = data.sample_len;
        if count == 0 {
            return Ok(());
        }
        let start_at = self.step_value_at("load_batch", 0, start as u64)?;
        let args = [
            Arg::Ptr(x.ptr),
            Arg::Ptr(labels.ptr),
            Arg::Ptr(data.images.ptr),
            Arg::Ptr(data.labels.ptr),
            Arg::Ptr(data.order.ptr),
            Arg::I64(start as i64),
            Arg::Ptr(start_at),
            Arg::I64(count as i64),
            Arg::I64(n as i64),
        ];
        // SAFETY: load_batch(float* x, u32* labels, const u8* images, const u8* all_labels,
        // const u32* order, i64 start, const u64* start_at, i64 count, i64 sample_len). x and
        // labels hold count samples (checked); start + count <= N, and set_order keeps every
        // order entry < N, so the gathers stay inside images (N * sample_len) and all_labels
        // (N). start_at is null or step_values[0], which begin_step checks the same way before
        // every replay.
        unsafe { self.launch(Kernel::LoadBatch, elementwise(count * n), &args) }
    }

    fn conv2d_forward_checked(
        &mut self,
        _: Checked,
        out: &mut CudaBuffer<f32>,
        saved: &mut CudaConv2dSaved,
        inp: &CudaBuffer<f32>,
        params: &CudaBuffer<f32>,
        kernel: Span,
        bias: Span,
        d: Conv2dDims,
        relu: bool,
    ) -> Result<()> {
        let op = "conv2d_forward";
        let (in_len, out_len, patch, oc) = (d.in_len(), d.out_len(), d.patch_len(), d.out_channels);
        saved.holds = None; // overwritten below, or left stale
        if d.batch == 0 {
            return Ok(());
        }
        if patch <= DIRECT_CONV_MAX_PATCH {
            return self.conv2d_direct(out, inp, params, kernel, bias, &d, relu);
        }
        let rows = d.out_height() * d.out_width();
        let chunk = self.conv_chunk(&d);
        // One chunk covers the batch: its im2col matrix goes into `saved`, for the backward.
        let keep = if chunk >= d.batch { saved.col.room(d.batch * rows * patch, self.precision) } else { None };
        let mut last_col = None;
        for first in (0..d.batch).step_by(chunk) {
            let samples = chunk.min(d.batch - first);
            // out (S*rows, OC) = act(col (S*rows, patch) @ kernel (patch, OC) + bias)
            let g = RowMajorGemm {
                m: samples * rows,
                n: oc,
                k: patch,
                transpose_a: false,
                transpose_b: false,
                lda: patch,
                ldb: oc,
                ldc: oc,
                alpha: 1.0,
                beta: 0.0,
            };
            let (image, weights) = (inp.at(first * in_len), Operand::F32(params.at(kernel.offset), kernel.len));
            let (out_chunk, bias_at) = ((out.at(first * out_len), samples * out_len), params.at(bias.offset));
            let col = match self.implicit_im2col_kernel(&g, image, &d, weights, out_chunk.0, bias_at) {
                // The product reads the input itself and leaves the im2col matrix for the backward.
                Some(conv_kernel) => {
                    let col = match keep {
                        Some(col) => col,
                        None => self.col_scratch(chunk * rows * patch)?,
                    };
                    self.conv_sgemm(conv_kernel, &g, image, &d, col, weights, out_chunk, bias_at, relu)?;
                    Operand::F32(col, samples * rows * patch)
                }
                None => {
                    let col = self.im2col_operand(image, samples, chunk, &d, keep)?;
                    self.gemm_bias_act(op, g, col, weights, out_chunk, bias_at, relu)?;
                    col
                }
            };
            last_col = Some(col);
        }
        if let (Some(_), Some(col)) = (keep, last_col) {
            saved.holds = Some(KeptCol { inp: inp.ptr, inp_len: inp.len, dims: d, precision: self.precision, col });
        }
        Ok(())
    }

    fn conv2d_backward_checked(
        &mut self,
        _: Checked,
        dinp: Option<&mut CudaBuffer<f32>>,
        dparams: &mut CudaBuffer<f32>,
        dout: &mut CudaBuffer<f32>,
        saved: &CudaConv2dSaved,
        out: &CudaBuffer<f32>,
        inp: &CudaBuffer<f32>,
        params: &CudaBuffer<f32>,
        kernel: Span,
        bias: Span,
        d: Conv2dDims,
        relu: bool,
    ) -> Result<()> {
        let op = "conv2d_backward";
        // The forward's im2col matrix, if `saved` holds this input's (nothing below writes the
        // input: it is borrowed immutably, and the other buffers are distinct).
        let kept = saved
            .holds
            .filter(|k| k.inp == inp.ptr && k.inp_len == inp.len && k.dims == d && k.precision == self.precision);
        let (in_len, out_len, patch, oc) = (d.in_len(), d.out_len(), d.patch_len(), d.out_channels);
        let (dkernel, dbias) = ((dparams.at(kernel.offset), kernel.len), (dparams.at(bias.offset), bias.len));
        if d.batch == 0 {
            self.zero_range(dkernel.0, kernel.len)?;
            return self.zero_range(dbias.0, bias.len);
        }
        let rows = d.out_height() * d.out_width();
        if dinp.is_none() && patch <= DIRECT_CONV_MAX_PATCH {
            // conv1: no dinp, and a patch too small for im2col + GEMM to pay.
            return self.conv2d_dkernel_direct(op, dkernel, dbias, dout.ptr, out.ptr, inp.ptr, &d, relu);
        }
        let half_dout = self.half_dout(d.batch * out_len)?;
        self.bias_gradient(op, dbias, dout.ptr, half_dout, out.ptr, d.batch * rows, oc, relu)?;
        let chunk = self.conv_chunk(&d);
        let dinp_ptr = dinp.map(|b| b.ptr);
        for first in (0..d.batch).step_by(chunk) {
            let samples = chunk.min(d.batch - first);
            let col_len = samples * rows * patch;
            let dout_chunk = gradient_operand(dout.ptr, half_dout, first * out_len, samples * out_len);
            // dkernel (patch, OC) = col^T @ dout, summed over the chunks; the forward's im2col
            // when it kept one (a single chunk), else recomputed.
            let col = match kept {
                Some(k) if samples == d.batch => k.col,
                _ => self.im2col_operand(inp.at(first * in_len), samples, chunk, &d, None)?,
            };
            let beta = if first == 0 { 0.0 } else { 1.0 };
            let g = RowMajorGemm {
                m: patch,
                n: oc,
                k: samples * rows,
                transpose_a: true,
                transpose_b: false,
                lda: patch,
                ldb: oc,
                ldc: oc,
                alpha: 1.0,
                beta,
            };
            self.gemm(op, g, col, dout_chunk, dkernel)?;
            if let Some(dinp) = dinp_ptr {
                // dcol (S*rows, patch) = dout @ kernel^T, into the f32 col scratch (in f32 also
                // a recomputed im2col matrix's: stream order puts this after the GEMM above),
                // then scattered back onto the input pixels.
                let dcol = self.col_scratch(chunk * rows * patch)?;
                let g = RowMajorGemm {
                    m: samples * rows,
                    n: patch,
                    k: oc,
                    transpose_a: false,
                    transpose_b: true,
                    lda: oc,
                    ldb: oc,
                    ldc: patch,
                    alpha: 1.0,
                    beta: 0.0,
                };
                self.gemm(op, g, dout_chunk, Operand::F32(params.at(kernel.offset), kernel.len), (dcol, col_len))?;
                self.im2col_or_col2im(Kernel::Col2im, dinp + (first * in_len * 4) as u64, dcol, samples, &d)?;
            }
        }
        Ok(())
    }

    fn maxpool2d_forward_checked(
        &mut self,
        _: Checked,
        out: &mut CudaBuffer<f32>,
        argmax: &mut CudaBuffer<u32>,
        inp: &CudaBuffer<f32>,
        d: PoolDims,
    ) -> Result<()> {
        let op = "maxpool2d_forward";
        let out_len = d.out_len();
        if d.batch * out_len == 0 {
            return Ok(());
        }
        let args = [
            Arg::Ptr(out.ptr),
            Arg::Ptr(argmax.ptr),
            Arg::Ptr(inp.ptr),
            Arg::I64(d.batch as i64),
            Arg::I32(int(op, d.height)?),
            Arg::I32(int(op, d.width)?),
            Arg::I32(int(op, d.channels)?),
            Arg::I32(int(op, d.pool)?),
        ];
        // Four channels per thread when C % 4 == 0 and every pointer is 16-byte aligned (the
        // kernel's test; any grid is correct).
        let quads = d.channels.is_multiple_of(4) && (out.ptr | argmax.ptr | inp.ptr).is_multiple_of(16);
        let threads = if quads { d.batch * out_len / 4 } else { d.batch * out_len };
        // SAFETY: maxpool2d_forward(float* out, u32* argmax, const float* inp, i64 batch, int
        // height, int width, int channels, int pool); out and argmax hold batch * out_len
        // values and inp batch * in_len (checked); windows lie inside (H/P*P, W/P*P).
        unsafe { self.launch(Kernel::Maxpool2dForward, elementwise(threads), &args) }
    }

    fn maxpool2d_backward_checked(
        &mut self,
        _: Checked,
        dinp: &mut CudaBuffer<f32>,
        argmax: &CudaBuffer<u32>,
        dout: &CudaBuffer<f32>,
        d: PoolDims,
    ) -> Result<()> {
        let op = "maxpool2d_backward";
        let in_len = d.in_len();
        if d.batch * in_len == 0 {
            return Ok(());
        }
        let args = [
            Arg::Ptr(dinp.ptr),
            Arg::Ptr(argmax.ptr),
            Arg::Ptr(dout.ptr),
            Arg::I64(d.batch as i64),
            Arg::I32(int(op, d.height)?),
            Arg::I32(int(op, d.width)?),
            Arg::I32(int(op, d.channels)?),
            Arg::I32(int(op, d.pool)?),
        ];
        // One thread per window when the pool divides H and W (the kernel's test), else one
        // per input value.
        let windows = d.height.is_multiple_of(d.pool) && d.width.is_multiple_of(d.pool);
        let threads = if windows { d.batch * d.out_len() } else { d.batch * in_len };
        // SAFETY: maxpool2d_backward(float* dinp, const u32* argmax, const float* dout, i64
        // batch, int height, int width, int channels, int pool); dinp holds batch * in_len
        // values, argmax and dout batch * out_len (checked); each dinp value is written by one
        // thread only (its own, or its window's), which reads only that window's argmax and
        // dout.
        unsafe { self.launch(Kernel::Maxpool2dBackward, elementwise(threads), &args) }
    }

    fn dropout_forward_checked(
        &mut self,
        _: Checked,
        x: &mut CudaBuffer<f32>,
        len: usize,
        rate: f32,
        seed: u64,
    ) -> Result<()> {
        if rate <= 0.0 || len == 0 {
            return Ok(());
        }
        // The same threshold and f32 scale as layers::dropout::dropout_apply.
        let (threshold, scale) = (drop_threshold(rate), 1.0f32 / (1.0 - rate));
        // While recording, the seed is the first or second dropout layer's (begin_step made
        // sure they differ), read from the device at replay.
        let seed_at = match self.recording {
            Some((_, v)) if v.dropout_seeds[1] == seed => self.step_value_at("dropout", 2, seed)?,
            _ => self.step_value_at("dropout", 1, seed)?,
        };
        let args = [
            Arg::Ptr(x.ptr),
            Arg::I64(len as i64),
            Arg::U64(seed),
            Arg::Ptr(seed_at),
            Arg::U32(threshold),
            Arg::F32(scale),
        ];
        // SAFETY: dropout(float* x, i64 n, u64 seed, const u64* seed_at, u32 threshold, float
        // scale); x holds len values (checked); seed_at is null or a slot of step_values.
        unsafe { self.launch(Kernel::Dropout, elementwise(len), &args) }
    }

    fn dense_forward_checked(
        &mut self,
        _: Checked,
        out: &mut CudaBuffer<f32>,
        inp: &CudaBuffer<f32>,
        params: &CudaBuffer<f32>,
        kernel: Span,
        bias: Span,
        d: DenseDims,
        relu: bool,
    ) -> Result<()> {
        let op = "dense_forward";
        let (b, i, o) = (d.batch, d.inputs, d.outputs);
        if b == 0 {
            return Ok(());
        }
        // out (B, O) = inp (B, I) @ kernel (I, O)
        let g = RowMajorGemm {
            m: b,
            n: o,
            k: i,
            transpose_a: false,
            transpose_b: false,
            lda: i,
            ldb: o,
            ldc: o,
            alpha: 1.0,
            beta: 0.0,
        };
        self.gemm_bias_act(
            op,
            g,
            Operand::F32(inp.ptr, b * i),
            Operand::F32(params.at(kernel.offset), kernel.len),
            (out.ptr, b * o),
            params.at(bias.offset),
            relu,
        )
    }

    fn dense_backward_checked(
        &mut self,
        _: Checked,
        dinp: Option<&mut CudaBuffer<f32>>,
        dparams: &mut CudaBuffer<f32>,
        dout: &mut CudaBuffer<f32>,
        out: &CudaBuffer<f32>,
        inp: &CudaBuffer<f32>,
        params: &CudaBuffer<f32>,
        kernel: Span,
        bias: Span,
        d: DenseDims,
        relu: bool,
    ) -> Result<()> {
        let op = "dense_backward";
        let (b, i, o) = (d.batch, d.inputs, d.outputs);
        let (dkernel, dbias) = ((dparams.at(kernel.offset), kernel.len), (dparams.at(bias.offset), bias.len));
        if b == 0 {
            self.zero_range(dkernel.0, kernel.len)?;
            return self.zero_range(dbias.0, bias.len);
        }
        let half_dout = self.half_dout(b * o)?;
        self.bias_gradient(op, dbias, dout.ptr, half_dout, out.ptr, b, o, relu)?;
        let dout_operand = gradient_operand(dout.ptr, half_dout, 0, b * o);
        // dkernel (I, O) = inp^T (I, B) @ dout (B, O)
        let g = RowMajorGemm {
            m: i,
            n: o,
            k: b,
            transpose_a: true,
            transpose_b: false,
            lda: i,
            ldb: o,
            ldc: o,
            alpha: 1.0,
            beta: 0.0,
        };
        self.gemm(op, g, Operand::F32(inp.ptr, b * i), dout_operand, dkernel)?;
        if let Some(dinp) = dinp {
            // dinp (B, I) = dout (B, O) @ kernel^T (O, I)
            let g = RowMajorGemm {
                m: b,
                n: i,
                k: o,
                transpose_a: false,
                transpose_b: true,
                lda: o,
                ldb: o,
                ldc: i,
                alpha: 1.0,
                beta: 0.0,
            };
            self.gemm(op, g, dout_operand, Operand::F32(params.at(kernel.offset), kernel.len), (dinp.ptr, b * i))?;
        }
        Ok(())
    }

    fn softmax_xent_forward_checked(
        &mut self,
        _: Checked,
        probs: &mut CudaBuffer<f32>,
        metrics: &mut CudaBuffer<f32>,
        logits: &CudaBuffer<f32>,
        labels: &CudaBuffer<u32>,
        batch: usize,
        classes: usize,
    ) -> Result<()> {
        let op = "softmax_xent_forward";
        if batch == 0 || classes == 0 {
            return Ok(());
        }
        let config = LaunchConfig {
            grid_dim: (batch.div_ceil(SOFTMAX_BLOCK as usize) as u32, 1, 1),
            block_dim: (SOFTMAX_BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let args = [
            Arg::Ptr(probs.ptr),
            Arg::Ptr(metrics.ptr),
            Arg::Ptr(logits.ptr),
            Arg::Ptr(labels.ptr),
            Arg::I32(int(op, batch)?),
            Arg::I32(int(op, classes)?),
        ];
        // SAFETY: softmax_xent_forward(float* probs, float* metrics, const float* logits, const
        // u32* labels, int batch, int classes), launched with SOFTMAX_BLOCK threads per block as
        // it requires; probs and logits hold batch * classes values, labels batch, metrics 2
        // (checked). Rows >= batch touch no memory; labels >= classes are never used as indices.
        unsafe { self.launch(Kernel::SoftmaxXentForward, config, &args) }
    }

    fn softmax_xent_backward_checked(
        &mut self,
        _: Checked,
        dlogits: &mut CudaBuffer<f32>,
        probs: &CudaBuffer<f32>,
        labels: &CudaBuffer<u32>,
        batch: usize,
        classes: usize,
    ) -> Result<()> {
        let op = "softmax_xent_backward";
        if batch == 0 || classes == 0 {
            return Ok(());
        }
        let scale = 1.0 / batch as f32; // the loss is the batch mean, as on the CPU
        let args = [
            Arg::Ptr(dlogits.ptr),
            Arg::Ptr(probs.ptr),
            Arg::Ptr(labels.ptr),
            Arg::I32(int(op, batch)?),
            Arg::I32(int(op, classes)?),
            Arg::F32(scale),
            Arg::Ptr(self.loss_scale_at()),
        ];
        // SAFETY: softmax_xent_backward(float* dlogits, const float* probs, const u32* labels,
        // int batch, int classes, float scale, const float* loss_scale); sizes checked above; a
        // label >= classes is never used as an index; loss_scale is null or the 4-value state.
        unsafe { self.launch(Kernel::SoftmaxXentBackward, elementwise(batch * classes), &args) }
    }

    fn adadelta_step_checked(
        &mut self,
        _: Checked,
        params: &mut CudaBuffer<f32>,
        accum_grad: &mut CudaBuffer<f32>,
        accum_update: &mut CudaBuffer<f32>,
        grads: &CudaBuffer<f32>,
        hyper: Adadelta,
    ) -> Result<()> {
        let n = params.len;
        if n == 0 {
            return Ok(());
        }
        let loss_scale = self.loss_scale_at();
        if loss_scale != 0 {
            // f16: flag a step whose scaled gradients overflowed, so adadelta skips it.
            let args = [Arg::Ptr(loss_scale), Arg::Ptr(grads.ptr), Arg::I64(n as i64)];
            // SAFETY: check_finite(float* state, const float* x, i64 n); the state holds 4
            // values and grads n (checked).
            unsafe { self.launch(Kernel::CheckFinite, elementwise(n), &args) }?;
        }
        let args = [
            Arg::Ptr(params.ptr),
            Arg::Ptr(accum_grad.ptr),
            Arg::Ptr(accum_update.ptr),
            Arg::Ptr(grads.ptr),
            Arg::I64(n as i64),
            Arg::F32(hyper.learning_rate),
            Arg::F32(hyper.rho),
            Arg::F32(1.0 - hyper.rho),
            Arg::F32(hyper.epsilon),
            Arg::Ptr(loss_scale),
        ];
        // SAFETY: adadelta(float* params, float* accum_grad, float* accum_update, const float*
        // grads, i64 n, float learning_rate, float rho, float keep, float epsilon, const float*
        // loss_scale); all four buffers hold n values (checked); loss_scale is null or the
        // 4-value state.
        unsafe { self.launch(Kernel::Adadelta, elementwise(n), &args) }?;
        if loss_scale == 0 {
            return Ok(());
        }
        let single = LaunchConfig { grid_dim: (1, 1, 1), block_dim: (1, 1, 1), shared_mem_bytes: 0 };
        let args = [Arg::Ptr(loss_scale), Arg::I32(LOSS_SCALE_GROWTH_INTERVAL)];
        // SAFETY: update_loss_scale(float* state, int growth_interval), one thread, as it
        // requires; the state holds 4 values. Stream order puts it after adadelta's reads.
        unsafe { self.launch(Kernel::UpdateLossScale, single, &args) }
    }

    /// Records a training step as a CUDA graph the second time a shape is seen (the first runs
    /// op by op, so scratch and cuBLAS are set up outside the capture) and replays it after,
    /// with `values` copied to the device first: one graph launch instead of ~40 launches.
    fn begin_step_checked(
        &mut self,
        _: Checked,
        data: &CudaDataset,
        batch: usize,
        hyper: Adadelta,
        values: StepValues,
    ) -> Result<StepMode> {
        if !self.graphs_enabled || self.recording.is_some() {
            return Ok(StepMode::Run);
        }
        let key = StepKey {
            batch,
            data: [data.images.ptr, data.labels.ptr, data.order.ptr, data.len() as u64, data.sample_len as u64],
            hyper: [hyper.learning_rate.to_bits(), hyper.rho.to_bits(), hyper.epsilon.to_bits()],
        };
        match self.graphs.get(&key) {
            None => {
                self.graphs.insert(key, Recording::WarmedUp);
                Ok(StepMode::Run)
            }
            Some(Recording::Failed) => Ok(StepMode::Run),
            // The two dropout layers are told apart by their seeds: equal ones (a 2^-64 chance)
            // run op by op and the next step is recorded instead.
            Some(Recording::WarmedUp) if values.dropout_seeds[0] == values.dropout_seeds[1] => Ok(StepMode::Run),
            Some(Recording::WarmedUp) => {
                self.write_step_values(values)?;
                // Thread-local mode: an allocation or synchronisation on this thread during the
                // capture is an error (a bug here), while other threads' CUDA work is unaffected.
                self.stream
                    .begin_capture(driver_sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
                    .map_err(|e| driver_error("cuStreamBeginCapture", e))?;
                self.recording = Some((key, values));
                self.graphs.insert(key, Recording::Failed); // until end_step succeeds
                Ok(StepMode::Run)
            }
            Some(Recording::Graph(graph)) => {
                let exec = graph.0.cu_graph_exec();
                self.write_step_values(values)?;
                // SAFETY: a graph instantiated from this stream's capture, launched on the same
                // stream; every address in it belongs to buffers that live as long as the
                // backend and the network (scratch that is replaced drops the recordings).
                unsafe { driver::graph::launch(exec, self.stream.cu_stream()) }
                    .map_err(|e| driver_error("cuGraphLaunch (training step)", e))?;
                self.graph_stats.replayed += 1;
                Ok(StepMode::Replayed)
            }
        }
    }

    fn end_step(&mut self, ops_error: Option<&Error>) -> Result<bool> {
        let Some((key, _)) = self.recording.take() else {
            return Ok(false);
        };
        // Ends the capture on every path, so the stream never stays in capture mode.
        let captured = self.stream.end_capture(driver_sys::CUgraphInstantiate_flags(0));
        let why = match (ops_error, captured) {
            (None, Ok(Some(graph))) => {
                graph.launch().map_err(|e| driver_error("cuGraphLaunch (training step, first)", e))?;
                self.graphs.insert(key, Recording::Graph(StepGraph(graph)));
                self.graph_stats.recorded += 1;
                return Ok(false);
            }
            (Some(e), _) => format!("an op failed while recording: {e}"),
            (None, Ok(None)) => "the capture was empty".to_string(),
            (None, Err(e)) => format!("{}", driver_error("cuStreamEndCapture", e)),
        };
        self.graph_stats.failures.push(why);
        Ok(true)
    }
}
