//! The convolution's launchers, as mnist-core's layers/conv2d.rs (and conv2d_direct.rs):
//! patches of at most DIRECT_CONV_MAX_PATCH values (conv1) run as one direct kernel, forward and
//! kernel gradient; larger ones (conv2) as im2col + GEMM with the bias/ReLU epilogue (in f32,
//! one tiled kernel that reads the image itself), in chunks of samples past COL_CAP of scratch.
//! The forward's im2col matrix is kept in the network's `CudaConv2dSaved` for the backward.
//! Leaves out: strides, padding and dilation (the model has none).

use cudarc::driver::LaunchConfig;
use mnist_core::shape::Conv2dDims;
use mnist_core::{Result, Span};

use crate::device::{backend_error, elementwise, int, Arg, CudaBuffer, Device};
use crate::gemm::{gradient_operand, Operand, RowMajorGemm};
use crate::kernels::Kernel;
use crate::layers::{bias_gradient, row_blocks, sum_partials};
use crate::precision::Precision;
use crate::scratch::HalfSlot;
use crate::CudaBackend;

/// Convolutions whose patch (K*K*C) is at most this run as one direct kernel (conv1: 9) instead
/// of im2col + GEMM + bias_act; conv2's 288 stays a GEMM.
const DIRECT_CONV_MAX_PATCH: usize = 32;
/// im2col and im2col_half get one thread per this many values (or float4s): each thread works
/// out its patch position once and walks rows without divisions (conv2d.cu), so the fewer
/// threads, the less set-up per value, as long as they fill the GPU (conv2: 2,592 blocks).
const IM2COL_VALUES_PER_THREAD: usize = 8;

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

/// `Backend::alloc_conv2d_saved`: room for the im2col matrix of a batch of `dims` when the layer
/// takes the im2col path and the batch fits one chunk (in the precision's format); none otherwise.
pub(crate) fn alloc_saved(be: &CudaBackend, dims: Conv2dDims) -> Result<CudaConv2dSaved> {
    let im2col = dims.patch_len() > DIRECT_CONV_MAX_PATCH && dims.batch > 0;
    let col = if !im2col || chunk(be, &dims) < dims.batch {
        SavedCol::None
    } else {
        let len = dims.batch * dims.out_height() * dims.out_width() * dims.patch_len();
        match be.precision {
            Precision::F32 => SavedCol::F32(be.device.alloc(len)?),
            Precision::Bf16 | Precision::F16 => SavedCol::Half(be.device.alloc(len)?),
        }
    };
    Ok(CudaConv2dSaved { col, holds: None })
}

/// `Backend::conv2d_forward`, checked.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(
    be: &mut CudaBackend,
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
        return direct(&be.device, out, inp, params, kernel, bias, &d, relu);
    }
    let rows = d.out_height() * d.out_width();
    let chunk = chunk(be, &d);
    // One chunk covers the batch: its im2col matrix goes into `saved`, for the backward.
    let keep = if chunk >= d.batch { saved.col.room(d.batch * rows * patch, be.precision) } else { None };
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
        let col = match implicit_im2col_kernel(be, &g, image, &d, weights, out_chunk.0, bias_at) {
            // The product reads the input itself and leaves the im2col matrix for the backward.
            Some(conv_kernel) => {
                let col = match keep {
                    Some(col) => col,
                    None => be.scratch.col(&be.device, &mut be.graphs, chunk * rows * patch)?,
                };
                conv_sgemm(be, conv_kernel, &g, image, &d, col, weights, out_chunk, bias_at, relu)?;
                Operand::F32(col, samples * rows * patch)
            }
            None => {
                let col = im2col_operand(be, image, samples, chunk, &d, keep)?;
                be.gemm_bias_act(op, g, col, weights, out_chunk, bias_at, relu)?;
                col
            }
        };
        last_col = Some(col);
    }
    if let (Some(_), Some(col)) = (keep, last_col) {
        saved.holds = Some(KeptCol { inp: inp.ptr, inp_len: inp.len, dims: d, precision: be.precision, col });
    }
    Ok(())
}

/// `Backend::conv2d_backward`, checked.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    be: &mut CudaBackend,
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
    let kept =
        saved.holds.filter(|k| k.inp == inp.ptr && k.inp_len == inp.len && k.dims == d && k.precision == be.precision);
    let (in_len, out_len, patch, oc) = (d.in_len(), d.out_len(), d.patch_len(), d.out_channels);
    let (dkernel, dbias) = ((dparams.at(kernel.offset), kernel.len), (dparams.at(bias.offset), bias.len));
    if d.batch == 0 {
        be.device.zero(dkernel.0, kernel.len)?;
        return be.device.zero(dbias.0, bias.len);
    }
    let rows = d.out_height() * d.out_width();
    if dinp.is_none() && patch <= DIRECT_CONV_MAX_PATCH {
        // conv1: no dinp, and a patch too small for im2col + GEMM to pay.
        return dkernel_direct(be, op, dkernel, dbias, dout.ptr, out.ptr, inp.ptr, &d, relu);
    }
    let half_dout = be.half_dout(d.batch * out_len)?;
    bias_gradient(be, op, dbias, dout.ptr, half_dout, out.ptr, d.batch * rows, oc, relu)?;
    let chunk = chunk(be, &d);
    let dinp_ptr = dinp.map(|b| b.ptr);
    for first in (0..d.batch).step_by(chunk) {
        let samples = chunk.min(d.batch - first);
        let col_len = samples * rows * patch;
        let dout_chunk = gradient_operand(dout.ptr, half_dout, first * out_len, samples * out_len);
        // dkernel (patch, OC) = col^T @ dout, summed over the chunks; the forward's im2col
        // when it kept one (a single chunk), else recomputed.
        let col = match kept {
            Some(k) if samples == d.batch => k.col,
            _ => im2col_operand(be, inp.at(first * in_len), samples, chunk, &d, None)?,
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
        be.gemm(op, g, col, dout_chunk, dkernel)?;
        if let Some(dinp) = dinp_ptr {
            // dcol (S*rows, patch) = dout @ kernel^T, into the f32 col scratch (in f32 also
            // a recomputed im2col matrix's: stream order puts this after the GEMM above),
            // then scattered back onto the input pixels.
            let dcol = be.scratch.col(&be.device, &mut be.graphs, chunk * rows * patch)?;
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
            be.gemm(op, g, dout_chunk, Operand::F32(params.at(kernel.offset), kernel.len), (dcol, col_len))?;
            im2col_or_col2im(&be.device, Kernel::Col2im, dinp + (first * in_len * 4) as u64, dcol, samples, &d)?;
        }
    }
    Ok(())
}

/// Samples per im2col chunk so that the scratch stays under the cap (COL_CAP).
fn chunk(be: &CudaBackend, d: &Conv2dDims) -> usize {
    let per_sample = d.out_height() * d.out_width() * d.patch_len();
    (be.scratch.col_cap / per_sample.max(1)).clamp(1, d.batch.max(1))
}

/// `forward` for a small patch: one kernel instead of im2col + GEMM + bias_act.
#[allow(clippy::too_many_arguments)]
fn direct(
    device: &Device,
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
    unsafe { device.launch(Kernel::Conv2dDirect, elementwise(threads), &args) }
}

/// dkernel (patch, OC) = im2col(inp)^T @ dout for a small patch, without the im2col matrix,
/// and in the same pass `bias_gradient`'s work (dout masked by the ReLU in place, dbias its
/// column sums, the same bits): partial sums over row ranges, then `sum_partials` for each.
#[allow(clippy::too_many_arguments)]
fn dkernel_direct(
    be: &mut CudaBackend,
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
    let (lanes, threads, rows_per_block, blocks) = row_blocks(rows, oc);
    // The kernel's pairs, then the bias's OC rows.
    let partial = be.scratch.partial(&be.device, &mut be.graphs, blocks * (pairs + oc))?;
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
    unsafe { be.device.launch(Kernel::Conv2dDkernelPartial, config, &args) }?;
    sum_partials(&be.device, op, dkernel.0, partial, blocks, pairs)?;
    sum_partials(&be.device, op, dbias.0, partial + (blocks * pairs * 4) as u64, blocks, oc)
}

/// The im2col matrix of `samples` samples at `src` as a GEMM operand, at `into` (a saved
/// state's room for it) or else in scratch sized for `chunk` samples: f32 in f32 precision,
/// written straight in half precision otherwise.
fn im2col_operand(
    be: &mut CudaBackend,
    src: u64,
    samples: usize,
    chunk: usize,
    d: &Conv2dDims,
    into: Option<u64>,
) -> Result<Operand> {
    let per_sample = d.out_height() * d.out_width() * d.patch_len();
    let len = samples * per_sample;
    if be.precision == Precision::F32 {
        let col = match into {
            Some(col) => col,
            None => be.scratch.col(&be.device, &mut be.graphs, chunk * per_sample)?,
        };
        im2col_or_col2im(&be.device, Kernel::Im2col, col, src, samples, d)?;
        return Ok(Operand::F32(col, len));
    }
    let col = match into {
        Some(col) => col,
        None => be.scratch.half(&be.device, &mut be.graphs, HalfSlot::Col, chunk * per_sample)?,
    };
    let a = image_args("im2col_half", col, src, samples, d)?;
    let args = [a[0], a[1], a[2], a[3], a[4], a[5], a[6], Arg::I32((be.precision == Precision::Bf16) as i32)];
    // Four values at a time when C % 4 == 0, as im2col (any grid is correct).
    let values = if d.in_channels.is_multiple_of(4) { len / 4 } else { len };
    let threads = values.div_ceil(IM2COL_VALUES_PER_THREAD);
    // SAFETY: im2col_half(u16* col, const float* inp, i64 samples, int height, int width, int
    // channels, int kernel, int bf16); callers pass `samples` samples of input (samples *
    // in_len floats, checked) and col holds chunk >= samples samples' rows.
    unsafe { be.device.launch(Kernel::Im2colHalf, elementwise(threads), &args) }?;
    Ok(Operand::Half(col, len))
}

fn im2col_or_col2im(device: &Device, kernel: Kernel, dst: u64, src: u64, samples: usize, d: &Conv2dDims) -> Result<()> {
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
    unsafe { device.launch(kernel, elementwise(threads), &args) }
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

/// The kernel (conv_sgemm_rows*) for a convolution's forward product `g` (out = im2col(image)
/// weights) that reads `image` itself: when f32's tiled kernel takes the product and C % 4
/// == 0, as Im2colRows (sgemm.cu) needs.
fn implicit_im2col_kernel(
    be: &CudaBackend,
    g: &RowMajorGemm,
    image: u64,
    d: &Conv2dDims,
    weights: Operand,
    out: u64,
    bias: u64,
) -> Option<Kernel> {
    let Operand::F32(weights, _) = weights else { return None };
    if be.precision != Precision::F32 || !d.in_channels.is_multiple_of(4) {
        return None;
    }
    let fits = [d.height, d.width, d.in_channels, d.kernel].iter().all(|&v| i32::try_from(v).is_ok());
    match be.tiled_sgemm_kernel(g, image, weights, out, bias)? {
        _ if !fits => None,
        Kernel::SgemmRows128 => Some(Kernel::ConvSgemmRows128),
        _ => Some(Kernel::ConvSgemmRows64),
    }
}

/// out = act(im2col(image) weights + bias) on `kernel` (from `implicit_im2col_kernel`), which
/// also writes the im2col matrix to `col` (`g.m` rows of `g.k`).
#[allow(clippy::too_many_arguments)]
fn conv_sgemm(
    be: &CudaBackend,
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
    // with room for m * k values (the scratch, or the saved state's room for the whole batch),
    // and a bias span of n values; the weights and out hold their extents (checked above).
    // Rows past m are read as row 0 and written nowhere.
    unsafe { be.launch_sgemm(kernel, g, &args) }
}
