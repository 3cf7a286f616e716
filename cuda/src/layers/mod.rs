//! The layers' launchers, one file per layer named as mnist-core's core/src/layers/ and
//! cuda/kernels/: each turns a checked `Backend` op into kernel launches and GEMMs. Here: the
//! bias gradient that conv2d and dense share (its kernels are in conv2d.cu).
//! Leaves out: the network's wiring (mnist-core's model.rs).

pub(crate) mod conv2d;
pub(crate) mod dense;
pub(crate) mod dropout;
pub(crate) mod maxpool2d;
pub(crate) mod softmax_xent;

use cudarc::driver::LaunchConfig;
use mnist_core::Result;

use crate::device::{int, Arg, Device, BLOCK, MAX_BLOCKS};
use crate::kernels::Kernel;
use crate::precision::Precision;
use crate::CudaBackend;

/// Bias (and small-patch kernel) gradients sum rows in blocks of lanes, each thread summing
/// about BIAS_ROWS_PER_THREAD rows (conv2's bias, 128 x 24 x 24 rows x 64: 1,152 blocks of 256;
/// conv1's, 128 x 26 x 26 x 32: 676), then reduce each column's partial sums in one block of
/// BIAS_FINISH_BLOCK.
const BIAS_FINISH_BLOCK: u32 = 256; // BIAS_FINISH_BLOCK in conv2d.cu
const BIAS_ROWS_PER_THREAD: usize = 16;

/// Lanes of `cols` threads per block (up to BLOCK threads) and the rows each block sums, for
/// `rows` rows: each thread sums about BIAS_ROWS_PER_THREAD rows; wider rows get one lane of
/// BLOCK threads (whole warps), each thread owning several columns. (lanes, threads, rows per
/// block, blocks).
pub(crate) fn row_blocks(rows: usize, cols: usize) -> (usize, usize, usize, usize) {
    let (lanes, threads) = if cols <= BLOCK as usize {
        let lanes = BLOCK as usize / cols;
        (lanes, lanes * cols)
    } else {
        (1, BLOCK as usize)
    };
    let rows_per_block = (lanes * BIAS_ROWS_PER_THREAD).max(rows.div_ceil(MAX_BLOCKS));
    (lanes, threads, rows_per_block, rows.div_ceil(rows_per_block))
}

/// dbias (cols) = column sums of dout (rows, cols), overwritten; with `relu`, dout is first
/// masked in place by (out > 0), the ReLU's backward; with a nonzero `half_dout` (from
/// `CudaBackend::half_dout`), the masked dout is also written there in the precision's half
/// format. Two deterministic kernels: column sums over row ranges of about BIAS_ROWS_PER_THREAD
/// rows per thread, then a fixed tree over each column's sums.
#[allow(clippy::too_many_arguments)]
pub(crate) fn bias_gradient(
    be: &mut CudaBackend,
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
        return be.device.zero(dbias.0, cols);
    }
    if cols == 0 {
        return Ok(());
    }
    let (lanes, threads, rows_per_block, blocks) = row_blocks(rows, cols);
    let partial = be.scratch.partial(&be.device, &mut be.graphs, blocks * cols)?;
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
        Arg::I32((be.precision == Precision::Bf16) as i32),
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
            be.device.launch(Kernel::BiasGradPartial, config, &args[..8])
        } else {
            be.device.launch(Kernel::BiasGradPartialHalf, config, &args)
        }
    }?;
    sum_partials(&be.device, op, dbias.0, partial, blocks, cols)
}

/// dst (cols) = for each column j, the sum of partial[j][0..blocks) (bias_grad_finish).
pub(crate) fn sum_partials(
    device: &Device,
    op: &str,
    dst: u64,
    partial: u64,
    blocks: usize,
    cols: usize,
) -> Result<()> {
    let args = [Arg::Ptr(dst), Arg::Ptr(partial), Arg::I32(int(op, blocks)?)];
    let config = LaunchConfig {
        grid_dim: (int(op, cols)? as u32, 1, 1),
        block_dim: (BIAS_FINISH_BLOCK, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: bias_grad_finish(float* dbias, const float* partial, int blocks), launched with
    // one block per column of BIAS_FINISH_BLOCK threads as it requires; callers pass dst with
    // cols values (a checked span) and partial with cols * blocks.
    unsafe { device.launch(Kernel::BiasGradFinish, config, &args) }
}
