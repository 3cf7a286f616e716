//! What every view reads and some change: the data, the model the draw and explore views use
//! (with its classifier and a generation that changes with the model or the data), and the
//! status line. Leaves out each view's own state (views/) and the prompts (update.rs).

use std::sync::Arc;

use mnist_core::Split;

use super::models::{Classifier, Model};
use crate::cli::DataArgs;

#[derive(Debug, Clone)]
pub enum DataState {
    Loading(DataArgs),
    Ready { split: Arc<Split>, source: String, args: DataArgs },
    Failed { message: String },
}

impl DataState {
    pub fn split(&self) -> Option<&Arc<Split>> {
        match self {
            DataState::Ready { split, .. } => Some(split),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusKind {
    Info,
    Error,
}

pub struct Shared {
    pub data: DataState,
    pub model: Option<Model>,
    pub classifier: Option<Classifier>,
    /// Bumped when the model or the data changes: predictions are for one generation.
    pub generation: u64,
    pub status: (String, StatusKind),
}

impl Shared {
    pub fn new(data: DataState) -> Self {
        Shared {
            data,
            model: None,
            classifier: None,
            generation: 0,
            status: (
                "Ready: set up the run and press s to train, or draw a digit in the draw view (2)".into(),
                StatusKind::Info,
            ),
        }
    }

    pub fn info(&mut self, text: impl Into<String>) {
        self.status = (text.into(), StatusKind::Info);
    }

    pub fn error(&mut self, text: impl Into<String>) {
        self.status = (text.into(), StatusKind::Error);
    }

    /// Makes `model` the one the views use, if a classifier can be built for it (else why not).
    pub fn set_model(&mut self, model: Model) -> Result<(), String> {
        self.classifier = Some(Classifier::new(&model)?);
        self.model = Some(model);
        self.generation += 1;
        Ok(())
    }

    /// The data has loaded or failed: what was predicted for the old data is stale.
    pub fn set_data(&mut self, data: DataState) {
        self.data = data;
        self.generation += 1;
    }
}
