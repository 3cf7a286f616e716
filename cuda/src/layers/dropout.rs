//! Dropout's launcher (dropout.cu), as mnist-core's layers/dropout.rs: the same mask, a pure
//! function of (seed, index), and the same f32 scale; the backward is the trait's default (the
//! forward's map). Leaves out: storing the mask (it is recomputed from the seed).

use mnist_core::layers::dropout::drop_threshold;
use mnist_core::Result;

use crate::device::{elementwise, Arg, CudaBuffer, Device};
use crate::graph::StepGraphs;
use crate::kernels::Kernel;

/// `Backend::dropout_forward`, checked; a recorded step reads the seed from the device.
pub(crate) fn forward(
    device: &Device,
    graphs: &StepGraphs,
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
    let seed_at = match graphs.recording() {
        Some(v) if v.dropout_seeds[1] == seed => graphs.value_at("dropout", 2, seed)?,
        _ => graphs.value_at("dropout", 1, seed)?,
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
    // scale); x holds len values (checked); seed_at is null or a slot of the step values.
    unsafe { device.launch(Kernel::Dropout, elementwise(len), &args) }
}
