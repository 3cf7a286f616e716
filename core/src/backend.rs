//! The `Backend` trait: layer-level operations over buffers that live on the backend's device.
//! Shaped so a GPU backend keeps data, activations, parameters and optimizer state resident
//! for a whole epoch; the host only uploads the epoch's order and reads back what it logs.
//! Leaves out: the model's wiring (model.rs) and training policy (train.rs).

use alloc::string::String;

use crate::config::Span;
use crate::error::Result;
use crate::optim::Adadelta;
use crate::shape::{Conv2dDims, DenseDims, PoolDims};

/// Running sums that `softmax_xent_forward` adds to: `[loss_sum, correct_count]`.
pub const METRICS_LEN: usize = 2;

/// What differs between training steps of the same shape: the batch's first sample (in the
/// dataset's current order) and the dropout seeds of the two dropout layers. A backend that
/// records a step (a CUDA graph) keeps these on the device and sets them before each replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepValues {
    pub start: usize,
    pub dropout_seeds: [u64; 2],
}

/// What `Backend::begin_step` leaves to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepMode {
    /// Run the step's ops, then call `end_step` (the backend may be recording them).
    Run,
    /// The backend replayed a recording of the whole step with the new `StepValues`: skip the ops.
    Replayed,
}

/// Layer-level operations. Buffers are flat; parameters are `Span`s of one flat buffer
/// (see `ParamLayout`). Argument order: outputs, saved state, inputs, parameters, dimensions.
/// Parameter gradients are overwritten by each backward call, not accumulated.
pub trait Backend {
    /// f32 values on the device.
    type Buffer;
    /// u32 values on the device (labels, pooling argmax).
    type Indices;
    /// A whole dataset on the device: u8 images, u8 labels and a u32 sample order.
    type Dataset;

    /// A short description of the device, for logs ("cpu: 2 threads", "NVIDIA H100 ...").
    fn device_name(&self) -> String;

    /// A zero-filled buffer of `len` values.
    fn alloc(&mut self, len: usize) -> Result<Self::Buffer>;
    fn alloc_indices(&mut self, len: usize) -> Result<Self::Indices>;
    /// Copies `src` into the start of `dst`.
    fn upload(&mut self, dst: &mut Self::Buffer, src: &[f32]) -> Result<()>;
    /// Copies the start of `src` into `dst` (waits for pending work).
    fn download(&mut self, dst: &mut [f32], src: &Self::Buffer) -> Result<()>;
    fn fill(&mut self, dst: &mut Self::Buffer, value: f32) -> Result<()>;

    /// Copies a dataset to the device once: `images` (N, sample_len) u8, `labels` (N) u8.
    /// The order starts as 0..N.
    fn upload_dataset(&mut self, images: &[u8], labels: &[u8], sample_len: usize) -> Result<Self::Dataset>;
    /// Sets the order in which `load_batch` visits samples (a permutation of 0..N).
    fn set_order(&mut self, data: &mut Self::Dataset, order: &[u32]) -> Result<()>;
    /// x: (count, sample_len) = images[order[start..start+count]] / 255; labels likewise.
    fn load_batch(
        &mut self,
        x: &mut Self::Buffer,
        labels: &mut Self::Indices,
        data: &Self::Dataset,
        start: usize,
        count: usize,
    ) -> Result<()>;

    /// out = conv(inp, kernel) + bias, then ReLU if `relu`.
    #[allow(clippy::too_many_arguments)]
    fn conv2d_forward(
        &mut self,
        out: &mut Self::Buffer,
        inp: &Self::Buffer,
        params: &Self::Buffer,
        kernel: Span,
        bias: Span,
        dims: Conv2dDims,
        relu: bool,
    ) -> Result<()>;

    /// Gradients of `conv2d_forward`. `dout` is clobbered (masked by the ReLU in place).
    /// Writes the kernel and bias gradients into their spans of `dparams`; writes `dinp`
    /// when given (the first layer has no use for it).
    #[allow(clippy::too_many_arguments)]
    fn conv2d_backward(
        &mut self,
        dinp: Option<&mut Self::Buffer>,
        dparams: &mut Self::Buffer,
        dout: &mut Self::Buffer,
        out: &Self::Buffer,
        inp: &Self::Buffer,
        params: &Self::Buffer,
        kernel: Span,
        bias: Span,
        dims: Conv2dDims,
        relu: bool,
    ) -> Result<()>;

    /// out = max over each window; argmax = the input index (within the sample) of the max.
    fn maxpool2d_forward(
        &mut self,
        out: &mut Self::Buffer,
        argmax: &mut Self::Indices,
        inp: &Self::Buffer,
        dims: PoolDims,
    ) -> Result<()>;
    /// Overwrites `dinp` (zero except at each window's argmax).
    fn maxpool2d_backward(
        &mut self,
        dinp: &mut Self::Buffer,
        argmax: &Self::Indices,
        dout: &Self::Buffer,
        dims: PoolDims,
    ) -> Result<()>;

    /// In place on the first `len` values: keep with probability 1 - rate and scale by
    /// 1 / (1 - rate). The mask is a pure function of (seed, index): see `dropout::keep`.
    fn dropout_forward(&mut self, x: &mut Self::Buffer, len: usize, rate: f32, seed: u64) -> Result<()>;
    /// The same mask and scale applied to the gradient, in place.
    fn dropout_backward(&mut self, dx: &mut Self::Buffer, len: usize, rate: f32, seed: u64) -> Result<()>;

    /// out = inp @ kernel + bias, then ReLU if `relu`.
    #[allow(clippy::too_many_arguments)]
    fn dense_forward(
        &mut self,
        out: &mut Self::Buffer,
        inp: &Self::Buffer,
        params: &Self::Buffer,
        kernel: Span,
        bias: Span,
        dims: DenseDims,
        relu: bool,
    ) -> Result<()>;

    /// Gradients of `dense_forward`; same contract as `conv2d_backward`.
    #[allow(clippy::too_many_arguments)]
    fn dense_backward(
        &mut self,
        dinp: Option<&mut Self::Buffer>,
        dparams: &mut Self::Buffer,
        dout: &mut Self::Buffer,
        out: &Self::Buffer,
        inp: &Self::Buffer,
        params: &Self::Buffer,
        kernel: Span,
        bias: Span,
        dims: DenseDims,
        relu: bool,
    ) -> Result<()>;

    /// probs = softmax(logits) per row; adds the clipped cross-entropy summed over the
    /// batch and the number of correct argmax predictions to `metrics`.
    fn softmax_xent_forward(
        &mut self,
        probs: &mut Self::Buffer,
        metrics: &mut Self::Buffer,
        logits: &Self::Buffer,
        labels: &Self::Indices,
        batch: usize,
        classes: usize,
    ) -> Result<()>;
    /// dlogits = gradient of the batch-mean clipped cross-entropy, overwritten.
    fn softmax_xent_backward(
        &mut self,
        dlogits: &mut Self::Buffer,
        probs: &Self::Buffer,
        labels: &Self::Indices,
        batch: usize,
        classes: usize,
    ) -> Result<()>;

    /// One Adadelta update of every parameter (Keras 2 semantics).
    fn adadelta_step(
        &mut self,
        params: &mut Self::Buffer,
        accum_grad: &mut Self::Buffer,
        accum_update: &mut Self::Buffer,
        grads: &Self::Buffer,
        hyper: Adadelta,
    ) -> Result<()>;

    /// Optional step recording, for backends where launching an op costs more than running it
    /// (CUDA graphs); the defaults record nothing. `Network::train_step` calls this before a
    /// step's ops with everything those ops depend on besides the network's own buffers: the
    /// dataset, the batch size, the optimizer and `values`. On `Run` the caller runs the ops
    /// (while recording, every `start` and dropout seed it passes is one of `values`) and then
    /// calls `end_step`; on `Replayed` the step is done.
    fn begin_step(
        &mut self,
        data: &Self::Dataset,
        batch: usize,
        hyper: Adadelta,
        values: StepValues,
    ) -> Result<StepMode> {
        let _ = (data, batch, hyper, values);
        Ok(StepMode::Run)
    }
    /// Ends what `begin_step` started; `ops_error` is the ops' first error, if any. Returns
    /// true when a recording failed and was dropped: nothing ran, and the caller must run the
    /// ops again (the backend then runs steps of this shape op by op).
    fn end_step(&mut self, ops_error: Option<&crate::error::Error>) -> Result<bool> {
        let _ = ops_error;
        Ok(false)
    }
}

/// The argument checks every backend makes before an op, on buffer lengths (in values) and
/// parameter spans: the CPU and CUDA backends reject the same calls in the same words.
/// Backends call these with their buffers' lengths; what only a host can check (label values)
/// stays with the backend.
pub mod checks {
    use super::{Conv2dDims, DenseDims, PoolDims, METRICS_LEN};
    use crate::config::Span;
    use crate::error::{Error, Result};

    /// `what` (a buffer of `have` values) must hold at least `need`.
    pub fn length(op: &str, what: &str, have: usize, need: usize) -> Result<()> {
        if have < need {
            return Err(Error::Backend {
                op: op.into(),
                message: alloc::format!("{what} holds {have} values but {need} are needed"),
            });
        }
        Ok(())
    }

    /// `span` must be exactly `need` values long and lie inside a buffer of `buffer` values.
    pub fn span(op: &str, buffer: usize, span: Span, need: usize) -> Result<()> {
        if span.len != need || span.offset + span.len > buffer {
            return Err(Error::Backend {
                op: op.into(),
                message: alloc::format!("parameter span {span:?} does not fit {need} values in a buffer of {buffer}"),
            });
        }
        Ok(())
    }

    /// A backward pass writes the kernel's and the bias's gradients into one buffer: their
    /// spans must not share a value.
    pub fn disjoint(op: &str, kernel: Span, bias: Span) -> Result<()> {
        if kernel.offset < bias.offset + bias.len && bias.offset < kernel.offset + kernel.len {
            return Err(Error::Backend { op: op.into(), message: "kernel and bias spans overlap".into() });
        }
        Ok(())
    }

    pub fn conv2d_forward(
        out: usize,
        inp: usize,
        params: usize,
        kernel: Span,
        bias: Span,
        d: &Conv2dDims,
    ) -> Result<()> {
        let op = "conv2d_forward";
        length(op, "out", out, d.batch * d.out_len())?;
        length(op, "inp", inp, d.batch * d.in_len())?;
        span(op, params, kernel, d.patch_len() * d.out_channels)?;
        span(op, params, bias, d.out_channels)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn conv2d_backward(
        dinp: Option<usize>,
        dparams: usize,
        dout: usize,
        out: usize,
        inp: usize,
        params: usize,
        kernel: Span,
        bias: Span,
        d: &Conv2dDims,
    ) -> Result<()> {
        let op = "conv2d_backward";
        let (in_len, out_len, kernel_len) = (d.in_len(), d.out_len(), d.patch_len() * d.out_channels);
        length(op, "dout", dout, d.batch * out_len)?;
        length(op, "out", out, d.batch * out_len)?;
        length(op, "inp", inp, d.batch * in_len)?;
        if let Some(dinp) = dinp {
            length(op, "dinp", dinp, d.batch * in_len)?;
        }
        span(op, params, kernel, kernel_len)?;
        span(op, params, bias, d.out_channels)?;
        span(op, dparams, kernel, kernel_len)?;
        span(op, dparams, bias, d.out_channels)?;
        disjoint(op, kernel, bias)
    }

    pub fn maxpool2d_forward(out: usize, argmax: usize, inp: usize, d: &PoolDims) -> Result<()> {
        let op = "maxpool2d_forward";
        length(op, "out", out, d.batch * d.out_len())?;
        length(op, "argmax", argmax, d.batch * d.out_len())?;
        length(op, "inp", inp, d.batch * d.in_len())
    }

    pub fn maxpool2d_backward(dinp: usize, argmax: usize, dout: usize, d: &PoolDims) -> Result<()> {
        let op = "maxpool2d_backward";
        length(op, "dinp", dinp, d.batch * d.in_len())?;
        length(op, "argmax", argmax, d.batch * d.out_len())?;
        length(op, "dout", dout, d.batch * d.out_len())
    }

    pub fn dense_forward(out: usize, inp: usize, params: usize, kernel: Span, bias: Span, d: &DenseDims) -> Result<()> {
        let op = "dense_forward";
        length(op, "out", out, d.batch * d.outputs)?;
        length(op, "inp", inp, d.batch * d.inputs)?;
        span(op, params, kernel, d.inputs * d.outputs)?;
        span(op, params, bias, d.outputs)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn dense_backward(
        dinp: Option<usize>,
        dparams: usize,
        dout: usize,
        out: usize,
        inp: usize,
        params: usize,
        kernel: Span,
        bias: Span,
        d: &DenseDims,
    ) -> Result<()> {
        let op = "dense_backward";
        let (b, i, o) = (d.batch, d.inputs, d.outputs);
        length(op, "dout", dout, b * o)?;
        length(op, "out", out, b * o)?;
        length(op, "inp", inp, b * i)?;
        if let Some(dinp) = dinp {
            length(op, "dinp", dinp, b * i)?;
        }
        span(op, params, kernel, i * o)?;
        span(op, params, bias, o)?;
        span(op, dparams, kernel, i * o)?;
        span(op, dparams, bias, o)?;
        disjoint(op, kernel, bias)
    }

    pub fn softmax_xent_forward(
        probs: usize,
        metrics: usize,
        logits: usize,
        labels: usize,
        batch: usize,
        classes: usize,
    ) -> Result<()> {
        let op = "softmax_xent_forward";
        length(op, "probs", probs, batch * classes)?;
        length(op, "logits", logits, batch * classes)?;
        length(op, "labels", labels, batch)?;
        length(op, "metrics", metrics, METRICS_LEN)
    }

    pub fn softmax_xent_backward(
        dlogits: usize,
        probs: usize,
        labels: usize,
        batch: usize,
        classes: usize,
    ) -> Result<()> {
        let op = "softmax_xent_backward";
        length(op, "dlogits", dlogits, batch * classes)?;
        length(op, "probs", probs, batch * classes)?;
        length(op, "labels", labels, batch)
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use alloc::string::ToString;

        #[test]
        fn short_buffers_and_misplaced_spans_are_named() {
            let d = Conv2dDims { batch: 2, height: 5, width: 5, in_channels: 1, out_channels: 4, kernel: 3 };
            let (kernel, bias) = (Span { offset: 0, len: 36 }, Span { offset: 36, len: 4 });
            assert!(conv2d_forward(2 * 36, 2 * 25, 40, kernel, bias, &d).is_ok());
            let short = conv2d_forward(2 * 36 - 1, 2 * 25, 40, kernel, bias, &d).unwrap_err().to_string();
            assert!(
                short.contains("conv2d_forward") && short.contains("out holds 71 values but 72 are needed"),
                "{short}"
            );
            let outside = conv2d_forward(2 * 36, 2 * 25, 39, kernel, bias, &d).unwrap_err().to_string();
            assert!(outside.contains("does not fit 4 values in a buffer of 39"), "{outside}");
            let wrong_len = dense_forward(
                6,
                6,
                100,
                Span { offset: 0, len: 8 },
                Span { offset: 9, len: 3 },
                &DenseDims { batch: 2, inputs: 3, outputs: 3 },
            );
            assert!(wrong_len.unwrap_err().to_string().contains("does not fit 9 values"));
            assert!(conv2d_backward(Some(2 * 25 - 1), 40, 72, 72, 50, 40, kernel, bias, &d)
                .unwrap_err()
                .to_string()
                .contains("dinp holds 49"));
            let overlapping = Span { offset: 35, len: 4 };
            assert!(conv2d_backward(None, 40, 72, 72, 50, 40, kernel, overlapping, &d)
                .unwrap_err()
                .to_string()
                .contains("kernel and bias spans overlap"));
            let dd = DenseDims { batch: 2, inputs: 3, outputs: 3 };
            let (dk, db) = (Span { offset: 0, len: 9 }, Span { offset: 8, len: 3 });
            assert!(dense_backward(None, 12, 6, 6, 6, 12, dk, db, &dd)
                .unwrap_err()
                .to_string()
                .contains("kernel and bias spans overlap"));
            assert!(dense_backward(None, 12, 6, 6, 6, 12, dk, Span { offset: 9, len: 3 }, &dd).is_ok());
            assert!(softmax_xent_forward(20, METRICS_LEN - 1, 20, 2, 2, 10)
                .unwrap_err()
                .to_string()
                .contains("metrics holds 1"));
        }
    }
}
