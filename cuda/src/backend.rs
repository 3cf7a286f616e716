//! CudaBackend: mnist-core's `Backend` on one CUDA stream, the trait impl delegating to the
//! modules of one concern each: device.rs (context, stream, launches, buffers), data.rs,
//! layers/<op>.rs (the launchers, named as mnist-core's layers), optim.rs, gemm.rs (cuBLAS or
//! our tiled SGEMM), precision.rs (f32, bf16 or f16 GEMM inputs; f16's loss scaling),
//! scratch.rs and graph.rs (a training step recorded once per shape and replayed). What it
//! computes with is fixed at the start (`CudaOptions`). Every op is queued on the stream and
//! only `download` waits.
//! Leaves out: multiple streams and GPUs, and half-precision storage of activations.

use mnist_core::backend::{Backend, Checked, StepMode, StepValues};
use mnist_core::optim::Adadelta;
use mnist_core::shape::{Conv2dDims, DenseDims, PoolDims};
use mnist_core::{Error, Result, Span};

use crate::data::{self, CudaDataset};
use crate::device::{without_panics, CudaBuffer, Device};
use crate::gemm::{F32Gemm, Gemms};
use crate::graph::StepGraphs;
use crate::layers::conv2d::{self, CudaConv2dSaved};
use crate::layers::{dense, dropout, maxpool2d, softmax_xent};
use crate::optim;
use crate::precision::{Precision, LOSS_SCALE_START};
use crate::scratch::Scratch;

/// How a `CudaBackend` computes, fixed when it starts (the library reads no environment
/// variables: benchmarks and tests that want them set these). The default is what `mnist
/// train` runs: f32, the tall f32 products on the tiled kernel, no TF32, step graphs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CudaOptions {
    /// The GEMMs' input format (`--precision`); f16 adds loss scaling.
    pub precision: Precision,
    /// Which kernels run the f32 GEMMs (TF32 GEMMs are always cuBLAS's).
    pub f32_gemm: F32Gemm,
    /// Lets cuBLAS use TF32 tensor cores for the f32 GEMMs (10-bit mantissa products, f32 sums):
    /// a diagnostic, off by default, as the CPU-vs-CUDA tolerances assume.
    pub tf32: bool,
    /// Records each training step shape once as a CUDA graph and replays it (graph.rs); off
    /// runs every step op by op (to measure what graphs save, or to profile every launch).
    pub step_graphs: bool,
}

impl Default for CudaOptions {
    fn default() -> CudaOptions {
        CudaOptions { precision: Precision::F32, f32_gemm: F32Gemm::default(), tf32: false, step_graphs: true }
    }
}

pub struct CudaBackend {
    // Field order is drop order: the recordings first, then buffers and cuBLAS, then the
    // device (the kernels, the stream and the context).
    pub(crate) graphs: StepGraphs,
    pub(crate) scratch: Scratch,
    /// f16 only: [scale, clean steps, overflow flag, skipped steps].
    pub(crate) loss_scale: Option<CudaBuffer<f32>>,
    pub(crate) precision: Precision,
    pub(crate) gemms: Gemms,
    pub(crate) device: Device,
}

impl CudaBackend {
    /// Starts the backend on GPU `ordinal` with the default options: a context, one stream, the
    /// kernels compiled by NVRTC for this GPU's arch, and a cuBLAS handle in default (non-TF32)
    /// math. Without a usable GPU, a clear error instead of a panic.
    pub fn new(ordinal: usize) -> Result<Self> {
        Self::with_options(ordinal, CudaOptions::default())
    }

    /// `new` with `options`. A GPU that cannot run them (bf16 before compute capability 8.0,
    /// a tile height that is not compiled) is an `Error::InvalidArgument`; no usable GPU is an
    /// `Error::Backend`.
    pub fn with_options(ordinal: usize, options: CudaOptions) -> Result<Self> {
        without_panics("cuda init", || Self::start(ordinal, options))
    }

    fn start(ordinal: usize, options: CudaOptions) -> Result<Self> {
        let device = Device::start(ordinal)?;
        options.precision.check(device.capability)?;
        options.f32_gemm.check()?;
        let gemms = Gemms::new(&device, options.f32_gemm, options.tf32)?;
        let graphs = StepGraphs::new(&device, options.step_graphs)?;
        let loss_scale = match options.precision {
            Precision::F16 => Some(device.upload_new(&[LOSS_SCALE_START, 0.0, 0.0, 0.0])?),
            Precision::F32 | Precision::Bf16 => None,
        };
        Ok(CudaBackend { graphs, scratch: Scratch::new(), loss_scale, precision: options.precision, gemms, device })
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Waits for every queued operation; reports the first asynchronous error.
    pub fn synchronize(&self) -> Result<()> {
        self.device.synchronize()
    }
}

/// Hooks for this crate's tests (the `test-hooks` feature), never in a product build.
#[cfg(feature = "test-hooks")]
impl CudaBackend {
    /// Caps the im2col scratch at `floats` (at least one sample's matrix is always allowed)
    /// instead of 256 MiB, to run convolutions in chunks of samples, as a batch past the cap does.
    pub fn set_im2col_cap(&mut self, floats: usize) {
        self.scratch.col_cap = floats;
    }

    /// How many f32 products ran on the tiled kernel (sgemm.cu) so far, not cuBLAS.
    pub fn tiled_sgemm_count(&self) -> u64 {
        self.gemms.tiled_sgemm_count()
    }

    /// How many steps were recorded and replayed so far, and why any recording failed.
    pub fn step_graph_stats(&self) -> &crate::graph::StepGraphStats {
        self.graphs.stats()
    }
}

/// Every op after the trait's checks (the `Checked` proof), which the launchers' SAFETY
/// comments rely on.
impl Backend for CudaBackend {
    type Buffer = CudaBuffer<f32>;
    type Indices = CudaBuffer<u32>;
    type Dataset = CudaDataset;
    type Conv2dSaved = CudaConv2dSaved;

    fn device_name(&self) -> String {
        self.device.name.clone()
    }

    fn alloc(&mut self, len: usize) -> Result<CudaBuffer<f32>> {
        self.device.alloc(len)
    }
    fn alloc_indices(&mut self, len: usize) -> Result<CudaBuffer<u32>> {
        self.device.alloc(len)
    }
    /// Room for the im2col matrix of a batch of `dims` when the layer takes the im2col path
    /// and the batch fits one chunk (in the precision's format); none otherwise.
    fn alloc_conv2d_saved(&mut self, dims: Conv2dDims) -> Result<CudaConv2dSaved> {
        conv2d::alloc_saved(self, dims)
    }
    fn upload_checked(&mut self, _: Checked, dst: &mut CudaBuffer<f32>, src: &[f32]) -> Result<()> {
        self.device.copy_in(dst, src)
    }
    fn download_checked(&mut self, _: Checked, dst: &mut [f32], src: &CudaBuffer<f32>) -> Result<()> {
        self.device.copy_out("cuMemcpyDtoH (an earlier launch may have failed)", dst, src)
    }
    fn fill(&mut self, dst: &mut CudaBuffer<f32>, value: f32) -> Result<()> {
        self.device.fill(dst.ptr, dst.len, value)
    }

    fn upload_dataset_checked(
        &mut self,
        _: Checked,
        images: &[u8],
        labels: &[u8],
        sample_len: usize,
    ) -> Result<CudaDataset> {
        data::upload(&self.device, images, labels, sample_len)
    }
    fn set_order_checked(&mut self, _: Checked, data: &mut CudaDataset, order: &[u32]) -> Result<()> {
        data::set_order(&self.device, data, order)
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
        data::load_batch(&self.device, &self.graphs, x, labels, data, start, count)
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
        conv2d::forward(self, out, saved, inp, params, kernel, bias, d, relu)
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
        conv2d::backward(self, dinp, dparams, dout, saved, out, inp, params, kernel, bias, d, relu)
    }

    fn maxpool2d_forward_checked(
        &mut self,
        _: Checked,
        out: &mut CudaBuffer<f32>,
        argmax: &mut CudaBuffer<u32>,
        inp: &CudaBuffer<f32>,
        d: PoolDims,
    ) -> Result<()> {
        maxpool2d::forward(&self.device, out, argmax, inp, d)
    }
    fn maxpool2d_backward_checked(
        &mut self,
        _: Checked,
        dinp: &mut CudaBuffer<f32>,
        argmax: &CudaBuffer<u32>,
        dout: &CudaBuffer<f32>,
        d: PoolDims,
    ) -> Result<()> {
        maxpool2d::backward(&self.device, dinp, argmax, dout, d)
    }

    fn dropout_forward_checked(
        &mut self,
        _: Checked,
        x: &mut CudaBuffer<f32>,
        len: usize,
        rate: f32,
        seed: u64,
    ) -> Result<()> {
        dropout::forward(&self.device, &self.graphs, x, len, rate, seed)
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
        dense::forward(self, out, inp, params, kernel, bias, d, relu)
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
        dense::backward(self, dinp, dparams, dout, out, inp, params, kernel, bias, d, relu)
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
        softmax_xent::forward(&self.device, probs, metrics, logits, labels, batch, classes)
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
        softmax_xent::backward(&self.device, self.loss_scale_at(), dlogits, probs, labels, batch, classes)
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
        optim::adadelta_step(&self.device, self.loss_scale_at(), params, accum_grad, accum_update, grads, hyper)
    }

    /// Records a training step as a CUDA graph the second time a shape is seen and replays it
    /// after (graph.rs).
    fn begin_step_checked(
        &mut self,
        _: Checked,
        data: &CudaDataset,
        batch: usize,
        hyper: Adadelta,
        values: StepValues,
    ) -> Result<StepMode> {
        self.graphs.begin(&self.device, data, batch, hyper, values)
    }

    fn end_step(&mut self, ops_error: Option<&Error>) -> Result<bool> {
        self.graphs.end(&self.device, ops_error)
    }
}
