//! GEMM dispatch: every product of the backend, row-major, on our tiled f32 kernel (sgemm.cu)
//! or cuBLAS (SGEMM in f32, GemmEx on tensor cores for bf16/f16 inputs, summing in f32), with
//! the bias/ReLU epilogue. cuBLAS is column-major: a row-major X is the column-major X^T, so
//! C = op(A) op(B) is computed as C^T = op(B)^T op(A)^T by swapping the operands; that mapping
//! is a pure function, tested here against a naive column-major GEMM (no GPU needed).
//! Leaves out: batched GEMMs, and the convolution's own product (layers/conv2d.rs).

#[cfg(feature = "test-hooks")]
use std::cell::Cell;

use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::{result as cublas, sys as cublas_sys, CudaBlas};
use cudarc::driver::{CudaSlice, DevicePtr, LaunchConfig};
use mnist_core::{Error, Result};

use crate::device::{backend_error, driver_error, elementwise, int, Arg, Device};
use crate::kernels::Kernel;
use crate::precision::Precision;
use crate::scratch::HalfSlot;
use crate::CudaBackend;

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

/// C (m x n, rows `ldc` apart) = alpha op(A) op(B) + beta C, every matrix row-major.
/// op(A) is m x k: A is stored m x k (`lda` >= k), or k x m when `transpose_a` (`lda` >= m).
/// op(B) is k x n: B is stored k x n (`ldb` >= n), or n x k when `transpose_b` (`ldb` >= k).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowMajorGemm {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub transpose_a: bool,
    pub transpose_b: bool,
    pub lda: usize,
    pub ldb: usize,
    pub ldc: usize,
    pub alpha: f32,
    pub beta: f32,
}

/// The same product in cuBLAS's column-major arguments; cuBLAS's first operand is our B and
/// its second our A.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColumnMajorGemm {
    pub transa: cublasOperation_t,
    pub transb: cublasOperation_t,
    pub m: i32,
    pub n: i32,
    pub k: i32,
    pub lda: i32,
    pub ldb: i32,
    pub ldc: i32,
}

fn op(transpose: bool) -> cublasOperation_t {
    if transpose {
        cublasOperation_t::CUBLAS_OP_T
    } else {
        cublasOperation_t::CUBLAS_OP_N
    }
}

impl RowMajorGemm {
    /// C^T (n x m) = op(B)^T (n x k) op(A)^T (k x m): cuBLAS's A is our B, its B our A.
    /// None when a size does not fit cuBLAS's 32-bit ints.
    pub fn to_column_major(&self) -> Option<ColumnMajorGemm> {
        let int = |v: usize| i32::try_from(v).ok();
        Some(ColumnMajorGemm {
            transa: op(self.transpose_b),
            transb: op(self.transpose_a),
            m: int(self.n)?,
            n: int(self.m)?,
            k: int(self.k)?,
            lda: int(self.ldb)?,
            ldb: int(self.lda)?,
            ldc: int(self.ldc)?,
        })
    }

    /// The number of values each operand must hold (for bounds checks before a launch).
    pub fn extents(&self) -> (usize, usize, usize) {
        let rows_cols = |rows: usize, ld: usize, cols: usize| if rows == 0 { 0 } else { (rows - 1) * ld + cols };
        let a =
            if self.transpose_a { rows_cols(self.k, self.lda, self.m) } else { rows_cols(self.m, self.lda, self.k) };
        let b =
            if self.transpose_b { rows_cols(self.n, self.ldb, self.k) } else { rows_cols(self.k, self.ldb, self.n) };
        (a, b, rows_cols(self.m, self.ldc, self.n))
    }
}

/// Which kernels run the f32 GEMMs (`CudaOptions::f32_gemm`).
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
    /// Refuses tile heights that sgemm.cu does not compile.
    pub(crate) fn check(self) -> Result<()> {
        if let F32Gemm::Tiled { rows: Some(rows), .. } = self {
            if rows != 64 && rows != 128 {
                return Err(Error::invalid("f32 gemm", format!("tiles of {rows} rows: 64 or 128 are compiled")));
            }
        }
        Ok(())
    }
}

/// A GEMM operand: a device address and how many values are there, either f32 or already in
/// the half format of the backend's precision.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Operand {
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

/// Values [first, first + len) of a gradient as a GEMM operand: the f32 values at `f32_ptr`, or
/// their half-precision copy at `half_ptr` (2 bytes each) when there is one (nonzero).
pub(crate) fn gradient_operand(f32_ptr: u64, half_ptr: u64, first: usize, len: usize) -> Operand {
    if half_ptr == 0 {
        Operand::F32(f32_ptr + (first * 4) as u64, len)
    } else {
        Operand::Half(half_ptr + (first * 2) as u64, len)
    }
}

fn cublas_error(op: &str, e: cublas::CublasError) -> Error {
    backend_error(op, format!("cuBLAS {:?}", e.0))
}

/// cuBLAS (a handle with its fixed workspace, in default math unless TF32 is asked for) and the
/// choice of kernels for the f32 products.
pub(crate) struct Gemms {
    // Field order is drop order: the handle before its workspace.
    blas: CudaBlas,
    _workspace: CudaSlice<u8>,
    f32_gemm: F32Gemm,
    tf32: bool,
    sgemm_resident: [usize; 2], // blocks of sgemm_rows128 and sgemm_rows64 one SM holds at once
    #[cfg(feature = "test-hooks")]
    tiled_sgemms: Cell<u64>, // products run on sgemm.cu so far
}

impl Gemms {
    pub(crate) fn new(device: &Device, f32_gemm: F32Gemm, tf32: bool) -> Result<Gemms> {
        let resident = |k: Kernel| {
            device
                .function(k)
                .occupancy_max_active_blocks_per_multiprocessor(SGEMM_THREADS, 0, None)
                .map(|blocks| (blocks as usize).max(1))
                .map_err(|e| driver_error("cuOccupancyMaxActiveBlocksPerMultiprocessor", e))
        };
        let sgemm_resident = [resident(Kernel::SgemmRows128)?, resident(Kernel::SgemmRows64)?];
        let stream = &device.stream;
        let blas = CudaBlas::new(stream.clone()).map_err(|e| cublas_error("cublasCreate", e))?;
        // TF32 stays off unless asked for: fp32 GEMMs must match the CPU within 1e-4 relative.
        let math = if tf32 {
            cublas_sys::cublasMath_t::CUBLAS_TF32_TENSOR_OP_MATH
        } else {
            cublas_sys::cublasMath_t::CUBLAS_DEFAULT_MATH
        };
        // SAFETY: a live handle.
        unsafe { cublas_sys::cublasSetMathMode(*blas.handle(), math) }
            .result()
            .map_err(|e| cublas_error("cublasSetMathMode", e))?;
        let workspace = stream.alloc_zeros::<u8>(CUBLAS_WORKSPACE_BYTES).map_err(|e| driver_error("cuMemAlloc", e))?;
        // SAFETY: a live handle; the workspace outlives it (field order) and only this handle,
        // on its one stream, uses it.
        unsafe {
            cublas_sys::cublasSetWorkspace_v2(
                *blas.handle(),
                workspace.device_ptr(stream).0 as *mut std::ffi::c_void,
                CUBLAS_WORKSPACE_BYTES,
            )
        }
        .result()
        .map_err(|e| cublas_error("cublasSetWorkspace", e))?;
        Ok(Gemms {
            blas,
            _workspace: workspace,
            f32_gemm,
            tf32,
            sgemm_resident,
            #[cfg(feature = "test-hooks")]
            tiled_sgemms: Cell::new(0),
        })
    }

    /// How many f32 products ran on the tiled kernel (sgemm.cu) so far, not cuBLAS.
    #[cfg(feature = "test-hooks")]
    pub(crate) fn tiled_sgemm_count(&self) -> u64 {
        self.tiled_sgemms.get()
    }

    /// Tiles of 128 rows (fewer loads per multiply-add) unless their last wave of blocks would
    /// leave the GPU idler than 64-row tiles' would: conv2's forward has 576 tiles of 128, about
    /// 1.5 waves on an H100 at 3 blocks per SM, but 1,152 of 64, about 1.7 at 5. (The conv_
    /// variants fit as many blocks: 165 and 96 registers against 149 and 89, NVRTC 13.0.)
    fn sgemm_rows(&self, sm_count: usize, g: &RowMajorGemm) -> usize {
        let busy = |rows: usize, resident: usize| {
            let tiles = g.m.div_ceil(rows) * g.n.div_ceil(SGEMM_COLS);
            let slots = sm_count * resident;
            tiles as f64 / (tiles.div_ceil(slots) * slots) as f64
        };
        let (busy128, busy64) = (busy(128, self.sgemm_resident[0]), busy(64, self.sgemm_resident[1]));
        if busy128 >= 0.85 || busy128 >= busy64 {
            128
        } else {
            64
        }
    }
}

/// sgemm.cu's launch for `g` in tiles of `rows` rows: one block of SGEMM_THREADS per tile.
fn sgemm_grid(g: &RowMajorGemm, rows: usize) -> Result<LaunchConfig> {
    let tiles = g.m.div_ceil(rows) * g.n.div_ceil(SGEMM_COLS);
    let blocks = u32::try_from(tiles).map_err(|_| backend_error("sgemm", format!("{tiles} tiles exceed a grid")))?;
    Ok(LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (SGEMM_THREADS, 1, 1), shared_mem_bytes: 0 })
}

impl CudaBackend {
    /// Row-major C = alpha op(A) op(B) + beta C; C is f32, a device address and the number of
    /// values there. In f32 precision A and B must be f32 (the tiled kernel or cuBLAS's SGEMM,
    /// see `F32Gemm`); otherwise f32 operands are converted into half scratch first and the
    /// product runs on cuBLAS's tensor cores, summing in f32. Every operand is checked against
    /// the shapes before the call.
    pub(crate) fn gemm(&mut self, op: &str, g: RowMajorGemm, a: Operand, b: Operand, c: (u64, usize)) -> Result<()> {
        self.gemm_fused(op, g, a, b, c, None).map(|_| ())
    }

    /// `gemm`, then C = act(C + bias) (bias_act, with `channels` = n): in the tiled kernel's
    /// own pass over C when it takes the product (one read and write of conv2's 19 MB output
    /// fewer), else as a pass of its own. C's rows must be dense (ldc = n).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn gemm_bias_act(
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
            bias_act(&self.device, c.0, bias, g.m * g.n, g.n, relu)?;
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
            self.device.bind(op)?;
            // SAFETY: the handle is live and bound to our stream; the extents checked above
            // keep every access inside the three device allocations; alpha and beta are host
            // values (cuBLAS's default pointer mode). cuBLAS's A is our B and its B our A.
            return unsafe {
                cublas::sgemm(
                    *self.gemms.blas.handle(),
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
        let a = self.half_operand(HalfSlot::A, a, a_need)?;
        let b = self.half_operand(HalfSlot::B, b, b_need)?;
        self.device.bind(op)?;
        // SAFETY: as for SGEMM above; A and B now hold at least their extents of 2-byte values
        // of `half_type`, C f32; alpha and beta are f32 host values, as CUBLAS_COMPUTE_32F takes.
        unsafe {
            cublas::gemm_ex(
                *self.gemms.blas.handle(),
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
    pub(crate) fn tiled_sgemm_kernel(&self, g: &RowMajorGemm, a: u64, b: u64, c: u64, bias: u64) -> Option<Kernel> {
        let rows = match self.gemms.f32_gemm {
            F32Gemm::Cublas => return None,
            _ if self.gemms.tf32 => return None,
            F32Gemm::Tiled { min_rows, .. } if g.m < min_rows || g.k > TALL_GEMM_MAX_K => return None,
            F32Gemm::Tiled { rows: Some(rows), .. } => rows as usize,
            F32Gemm::Tiled { rows: None, .. } => self.gemms.sgemm_rows(self.device.sm_count, g),
        };
        let fits = [g.m, g.n, g.k, g.lda, g.ldb, g.ldc].iter().all(|&v| i32::try_from(v).is_ok())
            && sgemm_grid(g, rows).is_ok();
        let aligned = [g.n, g.lda, g.ldb, g.ldc].iter().all(|v| v.is_multiple_of(4))
            && [a, b, c, bias].iter().all(|p| p.is_multiple_of(16));
        let usable = !g.transpose_a && g.k > 0 && g.k.is_multiple_of(SGEMM_STEP);
        (fits && aligned && usable).then_some(if rows == 128 { Kernel::SgemmRows128 } else { Kernel::SgemmRows64 })
    }

    /// Launches one of sgemm.cu's kernels, one block per tile of `g` (and counts the product for
    /// the tests).
    ///
    /// # Safety
    /// As `Device::launch`: `args` must match `kernel`'s C parameters, for a product `g` whose
    /// operands the kernel may read and write in full.
    pub(crate) unsafe fn launch_sgemm(&self, kernel: Kernel, g: &RowMajorGemm, args: &[Arg]) -> Result<()> {
        let rows = match kernel {
            Kernel::SgemmRows128 | Kernel::ConvSgemmRows128 => 128,
            _ => 64,
        };
        // SAFETY: forwarded to the caller.
        unsafe { self.device.launch(kernel, sgemm_grid(g, rows)?, args) }?;
        #[cfg(feature = "test-hooks")]
        self.gemms.tiled_sgemms.set(self.gemms.tiled_sgemms.get() + 1);
        Ok(())
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
}

/// out (n) += bias (broadcast over rows of `channels`), then ReLU if `relu`: the epilogue of a
/// product the tiled kernel did not take.
fn bias_act(device: &Device, out: u64, bias: u64, n: usize, channels: usize, relu: bool) -> Result<()> {
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
    unsafe { device.launch(Kernel::BiasAct, elementwise(n), &args) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// cuBLAS's sgemm semantics, naively: column-major, element (i, j) at i + j * ld.
    fn column_major_sgemm(g: &ColumnMajorGemm, alpha: f32, a: &[f32], b: &[f32], beta: f32, c: &mut [f32]) {
        let at = |i: usize, p: usize| match g.transa {
            cublasOperation_t::CUBLAS_OP_N => a[i + p * g.lda as usize],
            _ => a[p + i * g.lda as usize],
        };
        let bt = |p: usize, j: usize| match g.transb {
            cublasOperation_t::CUBLAS_OP_N => b[p + j * g.ldb as usize],
            _ => b[j + p * g.ldb as usize],
        };
        for i in 0..g.m as usize {
            for j in 0..g.n as usize {
                let sum: f32 = (0..g.k as usize).map(|p| at(i, p) * bt(p, j)).sum();
                let cij = &mut c[i + j * g.ldc as usize];
                *cij = alpha * sum + beta * *cij;
            }
        }
    }

    #[test]
    fn row_major_products_through_the_column_major_mapping() {
        let (m, n, k) = (3, 5, 4);
        for (transpose_a, transpose_b) in [(false, false), (true, false), (false, true), (true, true)] {
            // Padded leading dimensions catch a swapped lda/ldb.
            let lda = if transpose_a { m + 1 } else { k + 2 };
            let ldb = if transpose_b { k + 3 } else { n + 1 };
            let ldc = n + 2;
            let g = RowMajorGemm { m, n, k, transpose_a, transpose_b, lda, ldb, ldc, alpha: 1.5, beta: 0.5 };
            let (a_len, b_len, c_len) = g.extents();
            let a: Vec<f32> = (0..a_len).map(|i| (i as f32 * 0.7).sin()).collect();
            let b: Vec<f32> = (0..b_len).map(|i| (i as f32 * 0.3).cos()).collect();
            let c0: Vec<f32> = (0..c_len).map(|i| i as f32 * 0.01).collect();
            let op_a = |i: usize, p: usize| if transpose_a { a[p * lda + i] } else { a[i * lda + p] };
            let op_b = |p: usize, j: usize| if transpose_b { b[j * ldb + p] } else { b[p * ldb + j] };
            let mut want = c0.clone();
            for i in 0..m {
                for j in 0..n {
                    let sum: f32 = (0..k).map(|p| op_a(i, p) * op_b(p, j)).sum();
                    want[i * ldc + j] = 1.5 * sum + 0.5 * c0[i * ldc + j];
                }
            }
            let cm = g.to_column_major().unwrap();
            let mut got = c0.clone();
            // cuBLAS's first operand is our B.
            column_major_sgemm(&cm, 1.5, &b, &a, 0.5, &mut got);
            for (idx, (x, y)) in got.iter().zip(&want).enumerate() {
                assert!((x - y).abs() < 1e-5, "ta={transpose_a} tb={transpose_b} at {idx}: {x} vs {y}");
            }
        }
    }

    #[test]
    fn sizes_beyond_i32_are_refused() {
        let g = RowMajorGemm {
            m: 1 << 31,
            n: 1,
            k: 1,
            transpose_a: false,
            transpose_b: false,
            lda: 1,
            ldb: 1,
            ldc: 1,
            alpha: 1.0,
            beta: 0.0,
        };
        assert!(g.to_column_major().is_none());
    }
}
