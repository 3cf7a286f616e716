//! Softmax with clipped cross-entropy's launchers (softmax_xent.cu), as mnist-core's
//! layers/softmax_xent.rs: the forward adds the loss and correct count to the device metrics,
//! the backward writes the batch-mean gradient (times f16's loss scale, when there is one).
//! Leaves out: label checks (the CPU's; a label >= classes is never used as an index here).

use cudarc::driver::LaunchConfig;
use mnist_core::Result;

use crate::device::{elementwise, int, Arg, CudaBuffer, Device};
use crate::kernels::Kernel;

/// softmax_xent_forward's block size (SOFTMAX_BLOCK in softmax_xent.cu).
const SOFTMAX_BLOCK: u32 = 256;

/// `Backend::softmax_xent_forward`, checked.
pub(crate) fn forward(
    device: &Device,
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
    unsafe { device.launch(Kernel::SoftmaxXentForward, config, &args) }
}

/// `Backend::softmax_xent_backward`, checked; `loss_scale` is the f16 loss scale state's
/// address, or null.
pub(crate) fn backward(
    device: &Device,
    loss_scale: u64,
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
        Arg::Ptr(loss_scale),
    ];
    // SAFETY: softmax_xent_backward(float* dlogits, const float* probs, const u32* labels,
    // int batch, int classes, float scale, const float* loss_scale); sizes checked above; a
    // label >= classes is never used as an index; loss_scale is null or the 4-value state.
    unsafe { device.launch(Kernel::SoftmaxXentBackward, elementwise(batch * classes), &args) }
}
