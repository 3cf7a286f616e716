//! The app's messages: everything that reaches `update` on the one channel (keys, mouse, the
//! workers' reports) and every effect `update` asks the event loop and the workers to carry out.
//! Leaves out what they mean (update.rs, views/) and how the threads do them (worker.rs).

use std::sync::Arc;
use std::time::Instant;

use crossterm::event::{KeyEvent, MouseEvent};
use mnist_core::train::Event;
use mnist_core::Split;

use super::models::{Model, Predictions};
use crate::cli::{BackendChoice, DataArgs, PrecisionChoice};

/// Everything that reaches the app, on one channel.
#[derive(Debug, Clone)]
pub enum Msg {
    Key(KeyEvent),
    Mouse(MouseEvent),
    Resize(u16, u16),
    Worker(WorkerMsg),
    Data(DataMsg),
    /// How loading the data for `args` is going (a download), for the status line.
    DataProgress {
        text: String,
        args: DataArgs,
    },
    Explore(ExploreMsg),
    /// The result of `Effect::LoadModel`.
    ModelLoaded(Result<Model, String>),
    /// The result of `Effect::SaveModel`: what was written.
    ModelSaved(Result<String, String>),
}

/// Work with side effects, done by the event loop and the workers.
#[derive(Debug, Clone)]
pub enum Effect {
    LoadData(DataArgs),
    StartTraining {
        settings: RunSettings,
        split: Arc<Split>,
    },
    /// For the run started last (ignored when none is going).
    ControlRun(RunCommand),
    PredictAll {
        model: Model,
        split: Arc<Split>,
        generation: u64,
    },
    SaveModel {
        model: Model,
        prefix: String,
    },
    LoadModel {
        prefix: String,
    },
}

/// What the train view asks of a running training worker; applied after the current step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunCommand {
    Pause,
    Resume,
    /// Also wakes a paused worker, so that it can stop.
    Stop,
}

/// What a run trains with.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSettings {
    pub epochs: usize,
    pub batch_size: usize,
    pub seed: u64,
    pub backend: BackendChoice,
    pub precision: PrecisionChoice,
    pub threads: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RunEnd {
    Completed,
    Stopped,
    Failed(String),
}

/// From the training worker to the UI.
#[derive(Debug, Clone)]
pub enum WorkerMsg {
    /// The backend is up (`note` says why `auto` chose the CPU).
    Ready {
        backend: &'static str,
        device: String,
        note: Option<String>,
    },
    Progress {
        event: Event,
        at: Instant,
    },
    /// The parameters after `epoch` epochs: the only model a run hands over (a stopped run's
    /// unfinished epoch is not one).
    Snapshot {
        epoch: usize,
        params: Vec<f32>,
    },
    Done {
        end: RunEnd,
    },
}

/// From the data loader.
#[derive(Debug, Clone)]
pub enum DataMsg {
    Loaded { split: Arc<Split>, source: String, args: DataArgs },
    Failed { message: String, args: DataArgs },
}

/// From the explore view's batch prediction: for the model of `generation`.
#[derive(Debug, Clone)]
pub enum ExploreMsg {
    Done { generation: u64, result: Result<Predictions, String> },
}
