//! What a training run is, as plain data: its settings (`TrainConfig`) and its whole state at a
//! position (`TrainerState`), shared by the Trainer and the checkpoint codec so neither imports
//! the other. Leaves out: how a run advances (train.rs) and the byte format (codec/checkpoint.rs).

use alloc::vec::Vec;

use crate::backend::METRICS_LEN;
use crate::config::Config;
use crate::model::Metrics;
use crate::optim::Adadelta;

/// How to train. Defaults are the Keras sample's.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub seed: u64,
    pub optimizer: Adadelta,
    /// Read the running loss/accuracy every this many steps (0: only at epoch ends). Each
    /// read is a device round trip, so a GPU run keeps this sparse.
    pub metrics_every: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig { epochs: 12, batch_size: 128, seed: 1, optimizer: Adadelta::default(), metrics_every: 0 }
    }
}

/// Everything needed to continue a run exactly: with the same data, backend and thread
/// count, a run restored from this state ends bit-identical to one never interrupted.
/// The field order is the checkpoint format (postcard writes fields in order): append only,
/// with a new format version.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainerState {
    pub model: Config,
    pub config: TrainConfig,
    pub train_samples: usize,
    pub epochs_done: usize,
    /// Steps of the current epoch already trained (0 at an epoch boundary).
    pub step_in_epoch: usize,
    /// The current epoch's running [loss_sum, correct] so far.
    pub running_sums: [f32; METRICS_LEN],
    /// (train, test) metrics of each completed epoch.
    pub history: Vec<(Metrics, Option<Metrics>)>,
    pub params: Vec<f32>,
    pub accum_grad: Vec<f32>,
    pub accum_update: Vec<f32>,
}
