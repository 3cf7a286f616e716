//! Adadelta's launcher (optim.cu), as mnist-core's optim.rs: one kernel over every parameter,
//! bracketed in f16 by the loss scale's overflow check (a step that overflowed is skipped) and
//! update (precision.rs). Leaves out: other optimizers.

use mnist_core::optim::Adadelta;
use mnist_core::Result;

use crate::device::{elementwise, Arg, CudaBuffer, Device};
use crate::kernels::Kernel;
use crate::precision::{check_finite, update_loss_scale};

/// `Backend::adadelta_step`, checked (four buffers of n values); `loss_scale` is the f16 loss
/// scale state's address, or null.
pub(crate) fn adadelta_step(
    device: &Device,
    loss_scale: u64,
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
    if loss_scale != 0 {
        // f16: flag a step whose scaled gradients overflowed, so adadelta skips it.
        check_finite(device, loss_scale, grads.ptr, n)?;
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
    unsafe { device.launch(Kernel::Adadelta, elementwise(n), &args) }?;
    if loss_scale == 0 {
        return Ok(());
    }
    update_loss_scale(device, loss_scale)
}
