//! Max pooling's launchers (maxpool2d.cu), as mnist-core's layers/maxpool2d.rs: the forward
//! writes each window's max and its argmax, the backward routes the gradient through them.
//! Leaves out: overlapping windows and padding (the model has none).

use mnist_core::shape::PoolDims;
use mnist_core::Result;

use crate::device::{elementwise, int, Arg, CudaBuffer, Device};
use crate::kernels::Kernel;

/// `Backend::maxpool2d_forward`, checked.
pub(crate) fn forward(
    device: &Device,
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
    unsafe { device.launch(Kernel::Maxpool2dForward, elementwise(threads), &args) }
}

/// `Backend::maxpool2d_backward`, checked.
pub(crate) fn backward(
    device: &Device,
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
    unsafe { device.launch(Kernel::Maxpool2dBackward, elementwise(threads), &args) }
}
