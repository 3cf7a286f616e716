//! The training loop: epochs of shuffled batches on a backend, reported as events to an
//! observer (the headless printer, the TUI and tests all consume the same stream), which answers
//! each one: go on, stop, or hand it a checkpoint or a parameter snapshot and go on. Prints
//! nothing and reads no clock: observers time what they need.

use alloc::vec::Vec;

use crate::backend::Backend;
use crate::config::Config;
use crate::data::{mix64, Dataset, Rng};
use crate::error::{Error, Result};
use crate::model::{Metrics, Network};
pub use crate::state::{TrainConfig, TrainerState};

/// What happened. Epochs are numbered from 1, steps within an epoch from 1.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Started { epochs: usize, steps_per_epoch: usize, train_samples: usize, test_samples: usize },
    EpochStarted { epoch: usize },
    Step { epoch: usize, step: usize, steps_per_epoch: usize, samples_done: usize, running: Option<Metrics> },
    EpochEnded { epoch: usize, train: Metrics, test: Option<Metrics> },
    Finished { epochs_done: usize },
}

/// An observer's answer to an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    /// End `run` with `Outcome::Stopped` here (the current step always completes).
    Stop,
    /// Call `Observer::on_checkpoint` with the whole state here, then go on as it answers.
    Checkpoint,
    /// Call `Observer::on_snapshot` with the parameters here, then go on as it answers.
    Snapshot,
}

/// Receives every event and steers the run by its answers. Every position between events can be
/// resumed except one: after an epoch's last `Step`, before its validation. There a `Stop` is
/// ignored (the epoch always finishes: answer `Stop` to its `EpochEnded`), and a `Checkpoint` is
/// taken right after that epoch's `EpochEnded` instead. The answer to `Finished` can still ask
/// for a checkpoint or snapshot; the run is over either way.
pub trait Observer {
    fn on_event(&mut self, event: &Event) -> Control;
    /// After an event answered with Control::Checkpoint: the whole state, as Trainer::state() returns it.
    fn on_checkpoint(&mut self, state: &TrainerState) -> Control {
        let _ = state;
        Control::Continue
    }
    /// After an event answered with Control::Snapshot: the parameters now (after EpochEnded, that epoch's model).
    fn on_snapshot(&mut self, epochs_done: usize, params: &[f32]) -> Control {
        let _ = (epochs_done, params);
        Control::Continue
    }
}

/// An observer that records every event (for tests and tools).
#[derive(Debug, Default)]
pub struct Recorder {
    pub events: Vec<Event>,
}

impl Observer for Recorder {
    fn on_event(&mut self, event: &Event) -> Control {
        self.events.push(event.clone());
        Control::Continue
    }
}

/// How a `run` ended. After `Stopped`, calling `run` again continues where it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    Stopped,
}

/// The state of a run: the network on its backend, the datasets on the device, and where
/// training stands. Shuffling and dropout are pure functions of (seed, epoch, step), so the
/// position alone determines what comes next.
pub struct Trainer<B: Backend> {
    pub network: Network<B>,
    train: B::Dataset,
    test: Option<B::Dataset>,
    train_len: usize,
    test_len: usize,
    config: TrainConfig,
    order: Vec<u32>,
    epochs_done: usize,
    step_in_epoch: usize,
    history: Vec<(Metrics, Option<Metrics>)>,
    /// Parameters at the last epoch end (or the start), restored if the loss diverges.
    last_good: Vec<f32>,
    /// The parameters handed to `Observer::on_snapshot` (sized on the first snapshot).
    snapshot: Vec<f32>,
}

impl<B: Backend> Trainer<B> {
    /// Uploads the data once and initialises the parameters from `config.seed`.
    pub fn new(
        mut backend: B,
        model: Config,
        config: TrainConfig,
        train: &Dataset,
        test: Option<&Dataset>,
    ) -> Result<Self> {
        if config.batch_size == 0 {
            return Err(Error::invalid("batch size", "must be positive"));
        }
        check_fits(&model, train, "training set")?;
        if let Some(test) = test {
            check_fits(&model, test, "test set")?;
        }
        let train_dev = backend.upload_dataset(&train.images, &train.labels, train.sample_len())?;
        let test_dev = match test {
            Some(t) => Some(backend.upload_dataset(&t.images, &t.labels, t.sample_len())?),
            None => None,
        };
        let mut network = Network::new(backend, model, config.batch_size)?;
        network.hyper = config.optimizer;
        network.init(mix64(config.seed))?;
        let last_good = network.params()?;
        Ok(Trainer {
            network,
            train: train_dev,
            test: test_dev,
            train_len: train.len(),
            test_len: test.map_or(0, |t| t.len()),
            config,
            order: (0..train.len() as u32).collect(),
            epochs_done: 0,
            step_in_epoch: 0,
            history: Vec::with_capacity(config.epochs),
            last_good,
            snapshot: Vec::new(),
        })
    }

    /// A trainer that continues from `state` (a checkpoint) on the given data.
    pub fn resume(backend: B, state: &TrainerState, train: &Dataset, test: Option<&Dataset>) -> Result<Self> {
        if state.train_samples != train.len() {
            return Err(Error::invalid(
                "checkpoint",
                alloc::format!("it was made with {} training samples, not {}", state.train_samples, train.len()),
            ));
        }
        let mut trainer = Trainer::new(backend, state.model, state.config, train, test)?;
        let steps = trainer.steps_per_epoch();
        if state.step_in_epoch >= steps || state.history.len() != state.epochs_done {
            return Err(Error::invalid("checkpoint", "its position does not fit the training set"));
        }
        trainer.network.set_state(&state.params, &state.accum_grad, &state.accum_update)?;
        trainer.network.set_metric_sums(state.running_sums)?;
        trainer.epochs_done = state.epochs_done;
        trainer.step_in_epoch = state.step_in_epoch;
        trainer.history.clone_from(&state.history);
        trainer.network.download_params(&mut trainer.last_good)?;
        Ok(trainer)
    }

    /// The whole state, for a checkpoint (reads the parameters and optimizer state back).
    pub fn state(&mut self) -> Result<TrainerState> {
        let (accum_grad, accum_update) = self.network.optimizer_state()?;
        Ok(TrainerState {
            model: *self.network.config(),
            config: self.config,
            train_samples: self.train_len,
            epochs_done: self.epochs_done,
            step_in_epoch: self.step_in_epoch,
            running_sums: self.network.metric_sums()?,
            history: self.history.clone(),
            params: self.network.params()?,
            accum_grad,
            accum_update,
        })
    }

    /// Lets a resumed run train to a different number of epochs.
    pub fn set_epochs(&mut self, epochs: usize) {
        self.config.epochs = epochs;
    }

    pub fn config(&self) -> &TrainConfig {
        &self.config
    }
    /// Steps of the current epoch already trained.
    pub fn step_in_epoch(&self) -> usize {
        self.step_in_epoch
    }
    pub fn epochs_done(&self) -> usize {
        self.epochs_done
    }
    /// (train, test) metrics of each completed epoch.
    pub fn history(&self) -> &[(Metrics, Option<Metrics>)] {
        &self.history
    }
    pub fn steps_per_epoch(&self) -> usize {
        self.train_len.div_ceil(self.config.batch_size)
    }

    /// Trains the remaining epochs, reporting to `observer` and acting on its answers (see
    /// `Observer`); it may stop the run after any event (the current step always completes).
    pub fn run(&mut self, observer: &mut dyn Observer) -> Result<Outcome> {
        let started = Event::Started {
            epochs: self.config.epochs,
            steps_per_epoch: self.steps_per_epoch(),
            train_samples: self.train_len,
            test_samples: self.test_len,
        };
        let control = observer.on_event(&started);
        if self.answer(observer, control)? == Control::Stop {
            return Ok(Outcome::Stopped);
        }
        while self.epochs_done < self.config.epochs {
            if self.run_epoch(observer)? == Outcome::Stopped {
                return Ok(Outcome::Stopped);
            }
        }
        let control = observer.on_event(&Event::Finished { epochs_done: self.epochs_done });
        // The run is over: a Stop has nothing left to stop.
        self.answer(observer, control)?;
        Ok(Outcome::Completed)
    }

    /// One epoch: reshuffle, every batch (the last one partial), then validation. If the loss
    /// becomes NaN or infinite, the parameters of the last good epoch are restored and
    /// `Error::NonFinite` is returned.
    pub fn run_epoch(&mut self, observer: &mut dyn Observer) -> Result<Outcome> {
        match self.train_epoch(observer) {
            Err(e @ Error::NonFinite { .. }) => {
                self.network.set_params(&self.last_good)?;
                Err(e)
            }
            other => other,
        }
    }

    fn train_epoch(&mut self, observer: &mut dyn Observer) -> Result<Outcome> {
        let epoch = self.epochs_done + 1;
        let steps = self.steps_per_epoch();
        let batch_size = self.config.batch_size;
        if self.step_in_epoch == 0 {
            let control = observer.on_event(&Event::EpochStarted { epoch });
            if self.answer(observer, control)? == Control::Stop {
                return Ok(Outcome::Stopped);
            }
            self.network.reset_metrics()?;
        }
        // The epoch's order depends only on (seed, epoch), so a resumed epoch sees the same one.
        for (i, slot) in self.order.iter_mut().enumerate() {
            *slot = i as u32;
        }
        Rng::new(mix64(self.config.seed ^ mix64(0x5348_5546_464c_4500 ^ epoch as u64))).shuffle(&mut self.order);
        self.network.backend.set_order(&mut self.train, &self.order)?;
        let mut done = self.step_in_epoch * batch_size;
        // A checkpoint asked for after the last step, which cannot be resumed, waits for EpochEnded.
        let mut checkpoint_at_end = false;
        for step in self.step_in_epoch + 1..=steps {
            let batch = batch_size.min(self.train_len - done);
            let global_step = (epoch - 1) * steps + step;
            let dropout_seed = mix64(self.config.seed ^ mix64(global_step as u64));
            self.network.train_step(&self.train, done, batch, dropout_seed)?;
            done += batch;
            self.step_in_epoch = step;
            let every = self.config.metrics_every;
            let running = if every > 0 && step % every == 0 && step < steps {
                let m = self.network.read_metrics(done)?;
                check_finite(&m, global_step)?;
                Some(m)
            } else {
                None
            };
            let event = Event::Step { epoch, step, steps_per_epoch: steps, samples_done: done, running };
            let control = observer.on_event(&event);
            if step < steps {
                if self.answer(observer, control)? == Control::Stop {
                    return Ok(Outcome::Stopped);
                }
            } else if control == Control::Checkpoint {
                checkpoint_at_end = true;
            } else if control == Control::Snapshot {
                // The epoch always finishes, so a Stop answered here is ignored like one above.
                self.answer(observer, control)?;
            }
        }
        let train = self.network.read_metrics(self.train_len)?;
        check_finite(&train, epoch * steps)?;
        let test = self.evaluate_test()?;
        self.epochs_done = epoch;
        self.step_in_epoch = 0;
        self.history.push((train, test));
        self.network.download_params(&mut self.last_good)?;
        let control = observer.on_event(&Event::EpochEnded { epoch, train, test });
        let mut stop = control == Control::Stop;
        if checkpoint_at_end || control == Control::Checkpoint {
            stop |= self.answer(observer, Control::Checkpoint)? == Control::Stop;
        }
        if control == Control::Snapshot {
            stop |= self.answer(observer, Control::Snapshot)? == Control::Stop;
        }
        Ok(if stop { Outcome::Stopped } else { Outcome::Completed })
    }

    /// Acts on an answer given at a position that can be resumed: hands the observer a checkpoint
    /// or snapshot if it asked, and returns `Stop` or `Continue` for the run.
    fn answer(&mut self, observer: &mut dyn Observer, control: Control) -> Result<Control> {
        let after = match control {
            Control::Continue | Control::Stop => control,
            Control::Checkpoint => {
                let state = self.state()?;
                observer.on_checkpoint(&state)
            }
            Control::Snapshot => {
                self.snapshot.resize(self.last_good.len(), 0.0);
                self.network.download_params(&mut self.snapshot)?;
                observer.on_snapshot(self.epochs_done, &self.snapshot)
            }
        };
        Ok(if after == Control::Stop { Control::Stop } else { Control::Continue })
    }

    /// Loss and accuracy on the test set (None without one).
    pub fn evaluate_test(&mut self) -> Result<Option<Metrics>> {
        match &self.test {
            Some(test) => Ok(Some(self.network.evaluate(test, self.test_len)?)),
            None => Ok(None),
        }
    }

    /// Class probabilities for images (N, H, W, C) in [0, 1].
    pub fn predict(&mut self, images: &[f32]) -> Result<Vec<f32>> {
        self.network.predict(images)
    }
}

fn check_fits(model: &Config, data: &Dataset, what: &str) -> Result<()> {
    if (data.height, data.width, data.channels) != (model.height, model.width, model.channels) {
        return Err(Error::ShapeMismatch {
            what: what.into(),
            expected: alloc::vec![model.height, model.width, model.channels],
            actual: alloc::vec![data.height, data.width, data.channels],
        });
    }
    if data.is_empty() {
        return Err(Error::invalid(what, "it has no samples"));
    }
    if data.classes_seen() > model.classes {
        return Err(Error::invalid(
            what,
            alloc::format!("labels go up to {} but the model has {} classes", data.classes_seen() - 1, model.classes),
        ));
    }
    Ok(())
}

fn check_finite(m: &Metrics, step: usize) -> Result<()> {
    if m.loss.is_finite() {
        Ok(())
    } else {
        Err(Error::NonFinite { what: "the training loss".into(), step: step as u64 })
    }
}
