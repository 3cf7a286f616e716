//! The `Backend` trait: layer-level operations over buffers that live on the backend's device.
//! Shaped so a GPU backend keeps data, activations, parameters and optimizer state resident
//! for a whole epoch; the host only uploads the epoch's order and reads back what it logs.
//! The trait's provided methods make every argument check (checks.rs) once, for all backends,
//! and then call the backend's `*_checked` op. Leaves out: the model's wiring (model.rs) and
//! training policy (train.rs).

use alloc::string::String;

use crate::config::Span;
use crate::error::{Error, Result};
use crate::optim::Adadelta;
use crate::shape::{Conv2dDims, DenseDims, PoolDims};

mod checks;

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

/// What the checks read of a device buffer: how many values it holds.
pub trait DeviceBuffer {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> DeviceBuffer for alloc::vec::Vec<T> {
    fn len(&self) -> usize {
        alloc::vec::Vec::len(self)
    }
}

/// What the checks read of a dataset on the device: its samples and the values in each.
pub trait DeviceDataset {
    /// The number of samples.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Values (bytes) per sample.
    fn sample_len(&self) -> usize;
}

/// Proof that an op's arguments passed its checks: only the provided methods of `Backend` make
/// one, and hand it to the backend's `*_checked` op, which may rely on them (the CUDA backend
/// sizes kernel launches by them). A backend cannot be called past the checks by mistake.
#[derive(Debug, Clone, Copy)]
pub struct Checked(());

/// Layer-level operations. Buffers are flat; parameters are `Span`s of one flat buffer
/// (see `ParamLayout`). Argument order: outputs, saved state, inputs, parameters, dimensions.
/// Parameter gradients are overwritten by each backward call, not accumulated.
///
/// Callers use the provided methods (`conv2d_forward`, ...), which check their arguments and
/// reject bad ones in the same words on every backend; a backend implements the `*_checked`
/// ops behind them.
pub trait Backend {
    /// f32 values on the device.
    type Buffer: DeviceBuffer;
    /// u32 values on the device (labels, pooling argmax).
    type Indices: DeviceBuffer;
    /// A whole dataset on the device: u8 images, u8 labels and a u32 sample order.
    type Dataset: DeviceDataset;
    /// What `conv2d_forward` keeps for the `conv2d_backward` of the same input (the CUDA
    /// backend: the im2col matrix), owned by the caller as the pooling argmax is. Made by
    /// `alloc_conv2d_saved`.
    type Conv2dSaved;

    /// A short description of the device, for logs ("cpu: 2 threads", "NVIDIA H100 ...").
    fn device_name(&self) -> String;

    /// A zero-filled buffer of `len` values.
    fn alloc(&mut self, len: usize) -> Result<Self::Buffer>;
    fn alloc_indices(&mut self, len: usize) -> Result<Self::Indices>;
    /// Room for what a convolution of up to `dims` (its largest batch) keeps between its
    /// forward and backward passes; holds nothing until a forward fills it.
    fn alloc_conv2d_saved(&mut self, dims: Conv2dDims) -> Result<Self::Conv2dSaved>;

    /// Copies `src` into the start of `dst`.
    fn upload(&mut self, dst: &mut Self::Buffer, src: &[f32]) -> Result<()> {
        checks::length("upload", "destination", dst.len(), src.len())?;
        self.upload_checked(Checked(()), dst, src)
    }
    fn upload_checked(&mut self, checked: Checked, dst: &mut Self::Buffer, src: &[f32]) -> Result<()>;

    /// Copies the start of `src` into `dst` (waits for pending work).
    fn download(&mut self, dst: &mut [f32], src: &Self::Buffer) -> Result<()> {
        checks::length("download", "source", src.len(), dst.len())?;
        self.download_checked(Checked(()), dst, src)
    }
    fn download_checked(&mut self, checked: Checked, dst: &mut [f32], src: &Self::Buffer) -> Result<()>;

    fn fill(&mut self, dst: &mut Self::Buffer, value: f32) -> Result<()>;

    /// Copies a dataset to the device once: `images` (N, sample_len) u8, `labels` (N) u8.
    /// The order starts as 0..N.
    fn upload_dataset(&mut self, images: &[u8], labels: &[u8], sample_len: usize) -> Result<Self::Dataset> {
        checks::dataset(images, labels, sample_len)?;
        self.upload_dataset_checked(Checked(()), images, labels, sample_len)
    }
    fn upload_dataset_checked(
        &mut self,
        checked: Checked,
        images: &[u8],
        labels: &[u8],
        sample_len: usize,
    ) -> Result<Self::Dataset>;

    /// Sets the order in which `load_batch` visits samples (a permutation of 0..N).
    fn set_order(&mut self, data: &mut Self::Dataset, order: &[u32]) -> Result<()> {
        checks::order(order, data.len())?;
        self.set_order_checked(Checked(()), data, order)
    }
    fn set_order_checked(&mut self, checked: Checked, data: &mut Self::Dataset, order: &[u32]) -> Result<()>;

    /// x: (count, sample_len) = images[order[start..start+count]] / 255; labels likewise.
    fn load_batch(
        &mut self,
        x: &mut Self::Buffer,
        labels: &mut Self::Indices,
        data: &Self::Dataset,
        start: usize,
        count: usize,
    ) -> Result<()> {
        checks::load_batch(x.len(), labels.len(), start, count, data.len(), data.sample_len())?;
        self.load_batch_checked(Checked(()), x, labels, data, start, count)
    }
    fn load_batch_checked(
        &mut self,
        checked: Checked,
        x: &mut Self::Buffer,
        labels: &mut Self::Indices,
        data: &Self::Dataset,
        start: usize,
        count: usize,
    ) -> Result<()>;

    /// out = conv(inp, kernel) + bias, then ReLU if `relu`; `saved` keeps what the backward of
    /// this input may reuse.
    #[allow(clippy::too_many_arguments)]
    fn conv2d_forward(
        &mut self,
        out: &mut Self::Buffer,
        saved: &mut Self::Conv2dSaved,
        inp: &Self::Buffer,
        params: &Self::Buffer,
        kernel: Span,
        bias: Span,
        dims: Conv2dDims,
        relu: bool,
    ) -> Result<()> {
        checks::conv2d_forward(out.len(), inp.len(), params.len(), kernel, bias, &dims)?;
        self.conv2d_forward_checked(Checked(()), out, saved, inp, params, kernel, bias, dims, relu)
    }
    #[allow(clippy::too_many_arguments)]
    fn conv2d_forward_checked(
        &mut self,
        checked: Checked,
        out: &mut Self::Buffer,
        saved: &mut Self::Conv2dSaved,
        inp: &Self::Buffer,
        params: &Self::Buffer,
        kernel: Span,
        bias: Span,
        dims: Conv2dDims,
        relu: bool,
    ) -> Result<()>;

    /// Gradients of `conv2d_forward`. `dout` is clobbered (masked by the ReLU in place).
    /// Writes the kernel and bias gradients into their spans of `dparams`; writes `dinp`
    /// when given (the first layer has no use for it). `saved` is what the forward of this
    /// `inp`, unchanged since, left (as `argmax` for pooling); one from another input or shape,
    /// or never filled, is not used.
    #[allow(clippy::too_many_arguments)]
    fn conv2d_backward(
        &mut self,
        dinp: Option<&mut Self::Buffer>,
        dparams: &mut Self::Buffer,
        dout: &mut Self::Buffer,
        saved: &Self::Conv2dSaved,
        out: &Self::Buffer,
        inp: &Self::Buffer,
        params: &Self::Buffer,
        kernel: Span,
        bias: Span,
        dims: Conv2dDims,
        relu: bool,
    ) -> Result<()> {
        let dinp_len = dinp.as_ref().map(|v| v.len());
        let (dparams_len, dout_len) = (dparams.len(), dout.len());
        checks::conv2d_backward(
            dinp_len,
            dparams_len,
            dout_len,
            out.len(),
            inp.len(),
            params.len(),
            kernel,
            bias,
            &dims,
        )?;
        self.conv2d_backward_checked(
            Checked(()),
            dinp,
            dparams,
            dout,
            saved,
            out,
            inp,
            params,
            kernel,
            bias,
            dims,
            relu,
        )
    }
    #[allow(clippy::too_many_arguments)]
    fn conv2d_backward_checked(
        &mut self,
        checked: Checked,
        dinp: Option<&mut Self::Buffer>,
        dparams: &mut Self::Buffer,
        dout: &mut Self::Buffer,
        saved: &Self::Conv2dSaved,
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
    ) -> Result<()> {
        checks::maxpool2d_forward(out.len(), argmax.len(), inp.len(), &dims)?;
        self.maxpool2d_forward_checked(Checked(()), out, argmax, inp, dims)
    }
    fn maxpool2d_forward_checked(
        &mut self,
        checked: Checked,
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
    ) -> Result<()> {
        checks::maxpool2d_backward(dinp.len(), argmax.len(), dout.len(), &dims)?;
        self.maxpool2d_backward_checked(Checked(()), dinp, argmax, dout, dims)
    }
    fn maxpool2d_backward_checked(
        &mut self,
        checked: Checked,
        dinp: &mut Self::Buffer,
        argmax: &Self::Indices,
        dout: &Self::Buffer,
        dims: PoolDims,
    ) -> Result<()>;

    /// In place on the first `len` values: keep with probability 1 - rate and scale by
    /// 1 / (1 - rate). The mask is a pure function of (seed, index): see `dropout::keep`.
    fn dropout_forward(&mut self, x: &mut Self::Buffer, len: usize, rate: f32, seed: u64) -> Result<()> {
        checks::length("dropout_forward", "x", x.len(), len)?;
        self.dropout_forward_checked(Checked(()), x, len, rate, seed)
    }
    fn dropout_forward_checked(
        &mut self,
        checked: Checked,
        x: &mut Self::Buffer,
        len: usize,
        rate: f32,
        seed: u64,
    ) -> Result<()>;

    /// The same mask and scale applied to the gradient, in place: inverted dropout is linear
    /// for a fixed mask, so the backward is the forward's map.
    fn dropout_backward(&mut self, dx: &mut Self::Buffer, len: usize, rate: f32, seed: u64) -> Result<()> {
        self.dropout_forward(dx, len, rate, seed)
    }

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
    ) -> Result<()> {
        checks::dense_forward(out.len(), inp.len(), params.len(), kernel, bias, &dims)?;
        self.dense_forward_checked(Checked(()), out, inp, params, kernel, bias, dims, relu)
    }
    #[allow(clippy::too_many_arguments)]
    fn dense_forward_checked(
        &mut self,
        checked: Checked,
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
    ) -> Result<()> {
        let dinp_len = dinp.as_ref().map(|v| v.len());
        let (dparams_len, dout_len) = (dparams.len(), dout.len());
        checks::dense_backward(
            dinp_len,
            dparams_len,
            dout_len,
            out.len(),
            inp.len(),
            params.len(),
            kernel,
            bias,
            &dims,
        )?;
        self.dense_backward_checked(Checked(()), dinp, dparams, dout, out, inp, params, kernel, bias, dims, relu)
    }
    #[allow(clippy::too_many_arguments)]
    fn dense_backward_checked(
        &mut self,
        checked: Checked,
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
    ) -> Result<()> {
        checks::softmax_xent_forward(probs.len(), metrics.len(), logits.len(), labels.len(), batch, classes)?;
        self.softmax_xent_forward_checked(Checked(()), probs, metrics, logits, labels, batch, classes)
    }
    #[allow(clippy::too_many_arguments)]
    fn softmax_xent_forward_checked(
        &mut self,
        checked: Checked,
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
    ) -> Result<()> {
        checks::softmax_xent_backward(dlogits.len(), probs.len(), labels.len(), batch, classes)?;
        self.softmax_xent_backward_checked(Checked(()), dlogits, probs, labels, batch, classes)
    }
    fn softmax_xent_backward_checked(
        &mut self,
        checked: Checked,
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
    ) -> Result<()> {
        checks::adadelta_step(params.len(), accum_grad.len(), accum_update.len(), grads.len())?;
        self.adadelta_step_checked(Checked(()), params, accum_grad, accum_update, grads, hyper)
    }
    fn adadelta_step_checked(
        &mut self,
        checked: Checked,
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
    /// calls `end_step`; on `Replayed` the step is done. The batch is checked against the
    /// dataset first (a replay has no `load_batch` to check it).
    fn begin_step(
        &mut self,
        data: &Self::Dataset,
        batch: usize,
        hyper: Adadelta,
        values: StepValues,
    ) -> Result<StepMode> {
        checks::batch(values.start, batch, data.len())?;
        self.begin_step_checked(Checked(()), data, batch, hyper, values)
    }
    fn begin_step_checked(
        &mut self,
        checked: Checked,
        data: &Self::Dataset,
        batch: usize,
        hyper: Adadelta,
        values: StepValues,
    ) -> Result<StepMode> {
        let _ = (checked, data, batch, hyper, values);
        Ok(StepMode::Run)
    }
    /// Ends what `begin_step` started; `ops_error` is the ops' first error, if any. Returns
    /// true when a recording failed and was dropped: nothing ran, and the caller must run the
    /// ops again (the backend then runs steps of this shape op by op).
    fn end_step(&mut self, ops_error: Option<&Error>) -> Result<bool> {
        let _ = ops_error;
        Ok(false)
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use alloc::string::ToString;
    use alloc::vec;

    use super::*;
    use crate::cpu::CpuBackend;

    fn message<T>(r: Result<T>) -> String {
        r.err().expect("the op was refused").to_string()
    }

    /// The provided methods refuse bad arguments in `checks`' words before a backend's op runs
    /// (the CPU's ops would index out of their slices and panic instead).
    #[test]
    fn ops_are_checked_before_a_backend_runs_them() {
        let mut cpu = CpuBackend::new(1);
        let d = Conv2dDims { batch: 2, height: 5, width: 5, in_channels: 1, out_channels: 4, kernel: 3 };
        let (kernel, bias) = (Span { offset: 0, len: 36 }, Span { offset: 36, len: 4 });
        let (inp, params) = (vec![0.0; 50], vec![0.0; 40]);
        #[allow(clippy::let_unit_value)] // the CPU keeps nothing; the call shape is every backend's
        let mut saved = cpu.alloc_conv2d_saved(d).unwrap();
        let e = message(cpu.conv2d_forward(&mut vec![0.0; 71], &mut saved, &inp, &params, kernel, bias, d, true));
        assert!(e.contains("conv2d_forward") && e.contains("out holds 71 values but 72 are needed"), "{e}");
        let (mut dparams, mut dout, out) = (vec![0.0; 40], vec![0.0; 72], vec![0.0; 72]);
        let e = message(cpu.conv2d_backward(
            Some(&mut vec![0.0; 49]),
            &mut dparams,
            &mut dout,
            &saved,
            &out,
            &inp,
            &params,
            kernel,
            bias,
            d,
            true,
        ));
        assert!(e.contains("dinp holds 49"), "{e}");

        assert!(message(cpu.upload(&mut vec![0.0; 2], &[1.0; 3])).contains("destination holds 2 values but 3"));
        assert!(message(cpu.download(&mut [0.0; 3], &vec![0.0; 2])).contains("source holds 2 values but 3"));
        let e = message(cpu.upload_dataset(&[0; 5], &[0, 1], 3));
        assert!(e.contains("image bytes do not match the label count"), "{e}");
        let mut data = cpu.upload_dataset(&[0; 6], &[0, 1], 3).unwrap();
        assert!(message(cpu.set_order(&mut data, &[0, 2])).contains("not a list of indices"));
        let (mut x, mut labels) = (vec![0.0; 6], vec![0; 2]);
        assert!(message(cpu.load_batch(&mut x, &mut labels, &data, 1, 2)).contains("samples 1..3 of 2"));
        assert!(message(cpu.load_batch(&mut vec![0.0; 5], &mut labels, &data, 0, 2)).contains("x holds 5"));
        let values = StepValues { start: 1, dropout_seeds: [1, 2] };
        let e = message(cpu.begin_step(&data, 2, Adadelta::default(), values));
        assert!(e.contains("samples 1..3 of 2"), "{e}");

        let mut short = vec![0.0; 3];
        assert!(message(cpu.dropout_forward(&mut short, 4, 0.5, 1)).contains("x holds 3 values but 4"));
        assert!(message(cpu.dropout_backward(&mut short, 4, 0.5, 1)).contains("x holds 3 values but 4"));
        let (mut p, mut a, mut u) = (vec![0.0; 4], vec![0.0; 4], vec![0.0; 3]);
        let e = message(cpu.adadelta_step(&mut p, &mut a, &mut u, &vec![0.0; 4], Adadelta::default()));
        assert!(e.contains("accum_update has 3 values, params 4"), "{e}");
        let pool = PoolDims { batch: 1, height: 4, width: 4, channels: 1, pool: 2 };
        let e = message(cpu.maxpool2d_forward(&mut vec![0.0; 4], &mut vec![0; 3], &vec![0.0; 16], pool));
        assert!(e.contains("argmax holds 3"), "{e}");
        let dense = DenseDims { batch: 2, inputs: 3, outputs: 3 };
        let (dk, overlapping) = (Span { offset: 0, len: 9 }, Span { offset: 8, len: 3 });
        let e = message(cpu.dense_backward(
            None,
            &mut vec![0.0; 12],
            &mut vec![0.0; 6],
            &vec![0.0; 6],
            &vec![0.0; 6],
            &vec![0.0; 12],
            dk,
            overlapping,
            dense,
            false,
        ));
        assert!(e.contains("kernel and bias spans overlap"), "{e}");
        let e = message(cpu.softmax_xent_forward(
            &mut vec![0.0; 20],
            &mut vec![0.0; 1],
            &vec![0.0; 20],
            &vec![0; 2],
            2,
            10,
        ));
        assert!(e.contains("metrics holds 1"), "{e}");
    }
}
