//! The network: its buffers on a backend and the forward and backward passes in order, the
//! backward the exact mirror of the forward. Also Keras's initialisation and inference.
//! Leaves out: epochs, shuffling and events (train.rs).

use alloc::vec;
use alloc::vec::Vec;

use crate::backend::{Backend, StepMode, StepValues, METRICS_LEN};
use crate::config::*;
use crate::data::{mix64, Rng};
use crate::error::{Error, Result};
use crate::optim::Adadelta;
use crate::shape::{Conv2dDims, DenseDims, PoolDims};

/// Mean loss and accuracy over a number of samples.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Metrics {
    pub loss: f32,
    pub accuracy: f32,
    pub samples: usize,
}

impl Metrics {
    fn from_sums(sums: [f32; METRICS_LEN], samples: usize) -> Self {
        let n = samples.max(1) as f32;
        Metrics { loss: sums[0] / n, accuracy: sums[1] / n, samples }
    }
}

/// Keras's glorot_uniform for every kernel, zeros for every bias, drawn in layout order.
pub fn init_params(config: &Config, seed: u64) -> Vec<f32> {
    let layout = config.layout();
    let mut params = vec![0.0f32; layout.total()];
    let mut rng = Rng::new(seed);
    for slot in &layout.slots {
        if slot.shape.len() < 2 {
            continue; // biases start at zero
        }
        // Keras: fan_in = receptive field * inputs, fan_out = receptive field * outputs.
        let receptive: usize = slot.shape[..slot.shape.len() - 2].iter().product();
        let fan_in = receptive * slot.shape[slot.shape.len() - 2];
        let fan_out = receptive * slot.shape[slot.shape.len() - 1];
        let limit = libm::sqrtf(6.0 / (fan_in + fan_out) as f32);
        for p in &mut params[slot.span().range()] {
            *p = (2.0 * rng.next_f32() - 1.0) * limit;
        }
    }
    params
}

/// Every buffer of one network on backend `B`, sized for batches of up to `max_batch`.
pub struct Network<B: Backend> {
    pub backend: B,
    config: Config,
    layout: ParamLayout,
    max_batch: usize,
    pub hyper: Adadelta,
    params: B::Buffer,           // (P): ParamLayout
    grads: B::Buffer,            // (P)
    accum_grad: B::Buffer,       // (P): Adadelta's running mean of g^2
    accum_update: B::Buffer,     // (P): Adadelta's running mean of update^2
    x: B::Buffer,                // (B, H, W, C)
    labels: B::Indices,          // (B)
    a1: B::Buffer,               // (B, H1, W1, C1): conv1 + relu
    conv1_saved: B::Conv2dSaved, // what conv1's forward keeps for its backward
    a2: B::Buffer,               // (B, H2, W2, C2): conv2 + relu
    conv2_saved: B::Conv2dSaved, // what conv2's forward keeps for its backward
    pooled: B::Buffer,           // (B, HP, WP, C2): maxpool, then dropout in place
    argmax: B::Indices,          // (B, HP, WP, C2)
    hidden: B::Buffer,           // (B, hidden): dense1 + relu, then dropout in place
    logits: B::Buffer,           // (B, classes)
    probs: B::Buffer,            // (B, classes)
    dlogits: B::Buffer,          // (B, classes)
    dhidden: B::Buffer,          // (B, hidden)
    dpooled: B::Buffer,          // (B, HP, WP, C2)
    da2: B::Buffer,              // (B, H2, W2, C2)
    da1: B::Buffer,              // (B, H1, W1, C1)
    metrics: B::Buffer,          // (2): running [loss_sum, correct] since the last reset
    scratch_metrics: B::Buffer,  // (2): for predictions, whose labels are unknown
}

impl<B: Backend> Network<B> {
    /// Allocates everything on the backend; parameters start at zero (see `init`).
    pub fn new(mut backend: B, config: Config, max_batch: usize) -> Result<Self> {
        config.validate()?;
        if max_batch == 0 || max_batch > 1 << 16 {
            return Err(Error::invalid("batch size", alloc::format!("{max_batch} is not in 1..=65536")));
        }
        let layout = config.layout();
        let p = layout.total();
        let b = max_batch;
        let (h1, w1, c1) = config.conv1_out();
        let (h2, w2, c2) = config.conv2_out();
        let flat = config.flat_len();
        let (conv1, conv2) = (conv1_dims(&config, b), conv2_dims(&config, b));
        Ok(Network {
            params: backend.alloc(p)?,
            grads: backend.alloc(p)?,
            accum_grad: backend.alloc(p)?,
            accum_update: backend.alloc(p)?,
            x: backend.alloc(b * config.input_len())?,
            labels: backend.alloc_indices(b)?,
            a1: backend.alloc(b * h1 * w1 * c1)?,
            conv1_saved: backend.alloc_conv2d_saved(conv1)?,
            a2: backend.alloc(b * h2 * w2 * c2)?,
            conv2_saved: backend.alloc_conv2d_saved(conv2)?,
            pooled: backend.alloc(b * flat)?,
            argmax: backend.alloc_indices(b * flat)?,
            hidden: backend.alloc(b * config.hidden)?,
            logits: backend.alloc(b * config.classes)?,
            probs: backend.alloc(b * config.classes)?,
            dlogits: backend.alloc(b * config.classes)?,
            dhidden: backend.alloc(b * config.hidden)?,
            dpooled: backend.alloc(b * flat)?,
            da2: backend.alloc(b * h2 * w2 * c2)?,
            da1: backend.alloc(b * h1 * w1 * c1)?,
            metrics: backend.alloc(METRICS_LEN)?,
            scratch_metrics: backend.alloc(METRICS_LEN)?,
            backend,
            config,
            layout,
            max_batch,
            hyper: Adadelta::default(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }
    pub fn layout(&self) -> &ParamLayout {
        &self.layout
    }
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Keras initialisation from `seed`; also clears the optimizer state.
    pub fn init(&mut self, seed: u64) -> Result<()> {
        let params = init_params(&self.config, seed);
        self.set_params(&params)
    }

    /// Replaces the parameters (flat, `ParamLayout` order) and clears the optimizer state.
    pub fn set_params(&mut self, host: &[f32]) -> Result<()> {
        if host.len() != self.layout.total() {
            return Err(Error::ShapeMismatch {
                what: "parameter buffer".into(),
                expected: vec![self.layout.total()],
                actual: vec![host.len()],
            });
        }
        self.backend.upload(&mut self.params, host)?;
        self.backend.fill(&mut self.accum_grad, 0.0)?;
        self.backend.fill(&mut self.accum_update, 0.0)
    }

    pub fn params(&mut self) -> Result<Vec<f32>> {
        self.download(Which::Params)
    }
    /// The parameters into an existing buffer (no allocation).
    pub fn download_params(&mut self, host: &mut [f32]) -> Result<()> {
        self.backend.download(host, &self.params)
    }
    /// The gradients of the last training step.
    pub fn grads(&mut self) -> Result<Vec<f32>> {
        self.download(Which::Grads)
    }
    /// Adadelta's state: (running mean of g^2, running mean of update^2).
    pub fn optimizer_state(&mut self) -> Result<(Vec<f32>, Vec<f32>)> {
        Ok((self.download(Which::AccumGrad)?, self.download(Which::AccumUpdate)?))
    }
    /// Restores parameters and optimizer state together (for resuming a run).
    pub fn set_state(&mut self, params: &[f32], accum_grad: &[f32], accum_update: &[f32]) -> Result<()> {
        self.set_params(params)?;
        if accum_grad.len() != params.len() || accum_update.len() != params.len() {
            return Err(Error::invalid("optimizer state", "its length differs from the parameters'"));
        }
        self.backend.upload(&mut self.accum_grad, accum_grad)?;
        self.backend.upload(&mut self.accum_update, accum_update)
    }

    fn download(&mut self, which: Which) -> Result<Vec<f32>> {
        let mut host = vec![0.0; self.layout.total()];
        let buffer = match which {
            Which::Params => &self.params,
            Which::Grads => &self.grads,
            Which::AccumGrad => &self.accum_grad,
            Which::AccumUpdate => &self.accum_update,
        };
        self.backend.download(&mut host, buffer)?;
        Ok(host)
    }

    fn conv1_dims(&self, batch: usize) -> Conv2dDims {
        conv1_dims(&self.config, batch)
    }
    fn conv2_dims(&self, batch: usize) -> Conv2dDims {
        conv2_dims(&self.config, batch)
    }
    fn pool_dims(&self, batch: usize) -> PoolDims {
        let (height, width, channels) = self.config.conv2_out();
        PoolDims { batch, height, width, channels, pool: self.config.pool }
    }
    fn dense1_dims(&self, batch: usize) -> DenseDims {
        DenseDims { batch, inputs: self.config.flat_len(), outputs: self.config.hidden }
    }
    fn dense2_dims(&self, batch: usize) -> DenseDims {
        DenseDims { batch, inputs: self.config.hidden, outputs: self.config.classes }
    }

    fn check_batch(&self, batch: usize) -> Result<()> {
        if batch == 0 || batch > self.max_batch {
            return Err(Error::invalid(
                "batch",
                alloc::format!("{batch} samples with buffers for 1..={}", self.max_batch),
            ));
        }
        Ok(())
    }

    /// logits and probs for the batch in `x`/`labels`; dropout on when `dropout_seed` is given.
    /// Adds the batch's loss and correct count to `metrics` (or to a scratch sum if not `count`).
    fn forward(&mut self, batch: usize, dropout_seed: Option<u64>, count: bool) -> Result<()> {
        let l = &self.layout;
        let c = self.config;
        let (conv1, conv2, pool) = (self.conv1_dims(batch), self.conv2_dims(batch), self.pool_dims(batch));
        let (dense1, dense2) = (self.dense1_dims(batch), self.dense2_dims(batch));
        let be = &mut self.backend;
        let (p, k1, b1, k2, b2) =
            (&self.params, l.span(CONV1_KERNEL), l.span(CONV1_BIAS), l.span(CONV2_KERNEL), l.span(CONV2_BIAS));
        be.conv2d_forward(&mut self.a1, &mut self.conv1_saved, &self.x, p, k1, b1, conv1, true)?;
        be.conv2d_forward(&mut self.a2, &mut self.conv2_saved, &self.a1, p, k2, b2, conv2, true)?;
        be.maxpool2d_forward(&mut self.pooled, &mut self.argmax, &self.a2, pool)?;
        if let Some(seed) = dropout_seed {
            be.dropout_forward(&mut self.pooled, batch * c.flat_len(), c.dropout1, dropout_layer_seed(seed, 1))?;
        }
        be.dense_forward(
            &mut self.hidden,
            &self.pooled,
            &self.params,
            l.span(DENSE1_KERNEL),
            l.span(DENSE1_BIAS),
            dense1,
            true,
        )?;
        if let Some(seed) = dropout_seed {
            be.dropout_forward(&mut self.hidden, batch * c.hidden, c.dropout2, dropout_layer_seed(seed, 2))?;
        }
        be.dense_forward(
            &mut self.logits,
            &self.hidden,
            &self.params,
            l.span(DENSE2_KERNEL),
            l.span(DENSE2_BIAS),
            dense2,
            false,
        )?;
        let metrics = if count { &mut self.metrics } else { &mut self.scratch_metrics };
        be.softmax_xent_forward(&mut self.probs, metrics, &self.logits, &self.labels, batch, c.classes)
    }

    /// The exact mirror of `forward`, writing every parameter gradient into `grads`.
    fn backward(&mut self, batch: usize, dropout_seed: Option<u64>) -> Result<()> {
        let l = &self.layout;
        let c = self.config;
        let (conv1, conv2, pool) = (self.conv1_dims(batch), self.conv2_dims(batch), self.pool_dims(batch));
        let (dense1, dense2) = (self.dense1_dims(batch), self.dense2_dims(batch));
        let be = &mut self.backend;
        be.softmax_xent_backward(&mut self.dlogits, &self.probs, &self.labels, batch, c.classes)?;
        be.dense_backward(
            Some(&mut self.dhidden),
            &mut self.grads,
            &mut self.dlogits,
            &self.logits,
            &self.hidden,
            &self.params,
            l.span(DENSE2_KERNEL),
            l.span(DENSE2_BIAS),
            dense2,
            false,
        )?;
        if let Some(seed) = dropout_seed {
            be.dropout_backward(&mut self.dhidden, batch * c.hidden, c.dropout2, dropout_layer_seed(seed, 2))?;
        }
        be.dense_backward(
            Some(&mut self.dpooled),
            &mut self.grads,
            &mut self.dhidden,
            &self.hidden,
            &self.pooled,
            &self.params,
            l.span(DENSE1_KERNEL),
            l.span(DENSE1_BIAS),
            dense1,
            true,
        )?;
        if let Some(seed) = dropout_seed {
            be.dropout_backward(&mut self.dpooled, batch * c.flat_len(), c.dropout1, dropout_layer_seed(seed, 1))?;
        }
        be.maxpool2d_backward(&mut self.da2, &self.argmax, &self.dpooled, pool)?;
        be.conv2d_backward(
            Some(&mut self.da1),
            &mut self.grads,
            &mut self.da2,
            &self.conv2_saved,
            &self.a2,
            &self.a1,
            &self.params,
            l.span(CONV2_KERNEL),
            l.span(CONV2_BIAS),
            conv2,
            true,
        )?;
        be.conv2d_backward(
            None,
            &mut self.grads,
            &mut self.da1,
            &self.conv1_saved,
            &self.a1,
            &self.x,
            &self.params,
            l.span(CONV1_KERNEL),
            l.span(CONV1_BIAS),
            conv1,
            true,
        )
    }

    /// One training step on samples `start..start + batch` of `data` (in its current order):
    /// forward with dropout, backward, Adadelta. The batch's loss and accuracy are added to
    /// the running metrics.
    /// A backend may record the step's ops once and replay them (see `Backend::begin_step`).
    pub fn train_step(&mut self, data: &B::Dataset, start: usize, batch: usize, dropout_seed: u64) -> Result<()> {
        self.check_batch(batch)?;
        let dropout_seeds = [dropout_layer_seed(dropout_seed, 1), dropout_layer_seed(dropout_seed, 2)];
        let values = StepValues { start, dropout_seeds };
        if self.backend.begin_step(data, batch, self.hyper, values)? == StepMode::Replayed {
            return Ok(());
        }
        let ops = self.train_step_ops(data, start, batch, dropout_seed);
        if self.backend.end_step(ops.as_ref().err())? {
            // A recording failed and was dropped, so nothing ran: run the ops one by one.
            return self.train_step_ops(data, start, batch, dropout_seed);
        }
        ops
    }

    /// The ops of `train_step`, in order.
    fn train_step_ops(&mut self, data: &B::Dataset, start: usize, batch: usize, dropout_seed: u64) -> Result<()> {
        self.backend.load_batch(&mut self.x, &mut self.labels, data, start, batch)?;
        self.forward(batch, Some(dropout_seed), true)?;
        self.backward(batch, Some(dropout_seed))?;
        self.backend.adadelta_step(
            &mut self.params,
            &mut self.accum_grad,
            &mut self.accum_update,
            &self.grads,
            self.hyper,
        )
    }

    /// Forward and backward without the update (for gradient tests): the batch's mean loss.
    /// Dropout is on when `dropout_seed` is given. Resets the running metrics.
    pub fn compute_gradients(
        &mut self,
        data: &B::Dataset,
        start: usize,
        batch: usize,
        dropout_seed: Option<u64>,
    ) -> Result<f32> {
        self.check_batch(batch)?;
        self.backend.load_batch(&mut self.x, &mut self.labels, data, start, batch)?;
        self.reset_metrics()?;
        self.forward(batch, dropout_seed, true)?;
        self.backward(batch, dropout_seed)?;
        Ok(self.read_metrics(batch)?.loss)
    }

    /// The logits (batch, classes) of the last forward pass.
    pub fn last_logits(&mut self, batch: usize) -> Result<Vec<f32>> {
        self.check_batch(batch)?;
        let mut host = vec![0.0; batch * self.config.classes];
        self.backend.download(&mut host, &self.logits)?;
        Ok(host)
    }

    /// The running [loss_sum, correct] sums (for checkpoints).
    pub fn metric_sums(&mut self) -> Result<[f32; METRICS_LEN]> {
        let mut sums = [0.0; METRICS_LEN];
        self.backend.download(&mut sums, &self.metrics)?;
        Ok(sums)
    }
    pub fn set_metric_sums(&mut self, sums: [f32; METRICS_LEN]) -> Result<()> {
        self.backend.upload(&mut self.metrics, &sums)
    }

    pub fn reset_metrics(&mut self) -> Result<()> {
        self.backend.fill(&mut self.metrics, 0.0)
    }
    /// The running metrics, averaged over `samples` (reads back two values).
    pub fn read_metrics(&mut self, samples: usize) -> Result<Metrics> {
        let mut sums = [0.0; METRICS_LEN];
        self.backend.download(&mut sums, &self.metrics)?;
        Ok(Metrics::from_sums(sums, samples))
    }

    /// Loss and accuracy over the whole of `data` in its current order, without dropout.
    /// Resets the running metrics.
    pub fn evaluate(&mut self, data: &B::Dataset, samples: usize) -> Result<Metrics> {
        self.reset_metrics()?;
        let mut start = 0;
        while start < samples {
            let batch = self.max_batch.min(samples - start);
            self.backend.load_batch(&mut self.x, &mut self.labels, data, start, batch)?;
            self.forward(batch, None, true)?;
            start += batch;
        }
        self.read_metrics(samples)
    }

    /// Class probabilities (N, classes) for images (N, H, W, C) scaled to [0, 1].
    pub fn predict(&mut self, images: &[f32]) -> Result<Vec<f32>> {
        let n_in = self.config.input_len();
        if !images.len().is_multiple_of(n_in) {
            return Err(Error::invalid(
                "images",
                alloc::format!("{} values are not a whole number of {n_in}-value images", images.len()),
            ));
        }
        let n = images.len() / n_in;
        let classes = self.config.classes;
        let mut probs = vec![0.0; n * classes];
        for (chunk, out) in images.chunks(self.max_batch * n_in).zip(probs.chunks_mut(self.max_batch * classes)) {
            let batch = chunk.len() / n_in;
            self.backend.upload(&mut self.x, chunk)?;
            // Labels are unknown: class 0 stands in, and the metrics go to a scratch sum.
            self.backend.fill(&mut self.scratch_metrics, 0.0)?;
            self.forward(batch, None, false)?;
            self.backend.download(out, &self.probs)?;
        }
        Ok(probs)
    }
}

fn conv1_dims(c: &Config, batch: usize) -> Conv2dDims {
    Conv2dDims {
        batch,
        height: c.height,
        width: c.width,
        in_channels: c.channels,
        out_channels: c.conv1_filters,
        kernel: c.kernel,
    }
}

fn conv2_dims(c: &Config, batch: usize) -> Conv2dDims {
    let (h, w, ch) = c.conv1_out();
    Conv2dDims { batch, height: h, width: w, in_channels: ch, out_channels: c.conv2_filters, kernel: c.kernel }
}

enum Which {
    Params,
    Grads,
    AccumGrad,
    AccumUpdate,
}

/// The dropout mask seed of layer `layer` in the step whose seed is `step_seed`.
pub fn dropout_layer_seed(step_seed: u64, layer: u64) -> u64 {
    mix64(step_seed ^ mix64(layer))
}
