//! When `mnist train` takes a checkpoint and stops: an observer wrapping the log printer that asks
//! the Trainer for a checkpoint after every epoch, every --checkpoint-interval within one and
//! when SIGTERM/SIGINT arrives (then it stops). Leaves out the files (checkpoints.rs) and printing.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mnist_core::train::{Control, Event, Observer, TrainerState};

use crate::checkpoints;
use crate::Failure;

/// Where and how often to write checkpoints.
struct Saving {
    dir: PathBuf,
    interval: Duration,
    last: Instant,
    /// The checkpoint asked for was asked to stop the run, too.
    stop_after: bool,
}

pub struct CheckpointPolicy<O: Observer> {
    /// The wrapped observer: it sees every event; of its answers only `Stop` counts.
    pub inner: O,
    stop: Arc<AtomicBool>,
    saving: Option<Saving>,
    /// The newest checkpoint this run wrote.
    pub last_saved: Option<PathBuf>,
    /// Why a checkpoint could not be written; the run was stopped there.
    pub failure: Option<Failure>,
}

impl<O: Observer> CheckpointPolicy<O> {
    /// Stops the run once `stop` is set (by a signal); with `checkpoints` (a folder and an
    /// interval) also saves a checkpoint there after every epoch, every interval and on a stop.
    pub fn new(inner: O, stop: Arc<AtomicBool>, checkpoints: Option<(PathBuf, Duration)>) -> Self {
        let saving =
            checkpoints.map(|(dir, interval)| Saving { dir, interval, last: Instant::now(), stop_after: false });
        CheckpointPolicy { inner, stop, saving, last_saved: None, failure: None }
    }
}

impl<O: Observer> Observer for CheckpointPolicy<O> {
    fn on_event(&mut self, event: &Event) -> Control {
        let stopping = self.inner.on_event(event) == Control::Stop || self.stop.load(Ordering::SeqCst);
        let Some(saving) = &mut self.saving else {
            return if stopping { Control::Stop } else { Control::Continue };
        };
        let due = match event {
            // The run is over (its last epoch was saved at its EpochEnded).
            Event::Finished { .. } => false,
            Event::EpochEnded { .. } => true,
            Event::Step { .. } => stopping || saving.last.elapsed() >= saving.interval,
            Event::Started { .. } | Event::EpochStarted { .. } => stopping,
        };
        if due {
            saving.stop_after = stopping;
            Control::Checkpoint
        } else if stopping {
            Control::Stop
        } else {
            Control::Continue
        }
    }

    fn on_checkpoint(&mut self, state: &TrainerState) -> Control {
        let Some(saving) = &mut self.saving else { return Control::Continue };
        match checkpoints::save(&saving.dir, state) {
            Ok(path) => self.last_saved = Some(path),
            Err(failure) => {
                self.failure = Some(failure);
                return Control::Stop;
            }
        }
        saving.last = Instant::now();
        if std::mem::take(&mut saving.stop_after) || self.stop.load(Ordering::SeqCst) {
            Control::Stop
        } else {
            Control::Continue
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mnist_core::train::{Outcome, Recorder, TrainConfig, Trainer};
    use mnist_core::{Config, CpuBackend, Dataset};

    fn tiny_trainer(epochs: usize) -> Trainer<CpuBackend> {
        let model =
            Config { height: 12, width: 12, conv1_filters: 2, conv2_filters: 2, hidden: 8, ..Config::default() };
        let labels: Vec<u8> = (0..40).map(|i| (i % 10) as u8).collect();
        let images = labels.iter().flat_map(|&l| (0..144).map(move |p| if p % 12 == l as usize { 250 } else { 0 }));
        let data = Dataset::new(images.collect(), labels, 12, 12, 1).unwrap();
        let config = TrainConfig { epochs, batch_size: 16, ..TrainConfig::default() };
        Trainer::new(CpuBackend::new(1), model, config, &data, None).unwrap()
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mnist-policy-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn saved(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn without_a_folder_the_stop_flag_stops_and_nothing_is_saved() {
        let stop = Arc::new(AtomicBool::new(false));
        let mut policy = CheckpointPolicy::new(Recorder::default(), stop.clone(), None);
        assert_eq!(policy.on_event(&Event::EpochStarted { epoch: 1 }), Control::Continue);
        assert_eq!(
            policy.on_event(&Event::EpochEnded { epoch: 1, train: Default::default(), test: None }),
            Control::Continue
        );
        stop.store(true, Ordering::SeqCst);
        assert_eq!(policy.on_event(&Event::EpochStarted { epoch: 2 }), Control::Stop);
        assert_eq!(policy.inner.events.len(), 3, "the wrapped observer sees every event");
    }

    #[test]
    fn saves_after_every_epoch_and_keeps_the_two_newest() {
        let dir = temp_dir("epochs");
        let mut policy =
            CheckpointPolicy::new(Recorder::default(), Arc::default(), Some((dir.clone(), Duration::from_secs(600))));
        assert_eq!(tiny_trainer(3).run(&mut policy).unwrap(), Outcome::Completed);
        assert!(policy.failure.is_none());
        assert_eq!(saved(&dir), ["checkpoint-e0002-s000000.ckpt", "checkpoint-e0003-s000000.ckpt"]);
        assert_eq!(policy.last_saved, Some(dir.join("checkpoint-e0003-s000000.ckpt")));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Notes the position of every checkpoint handed to the policy it wraps.
    struct Positions(Vec<(usize, usize)>, CheckpointPolicy<Recorder>);
    impl Observer for Positions {
        fn on_event(&mut self, event: &Event) -> Control {
            self.1.on_event(event)
        }
        fn on_checkpoint(&mut self, state: &TrainerState) -> Control {
            self.0.push((state.epochs_done, state.step_in_epoch));
            self.1.on_checkpoint(state)
        }
    }

    #[test]
    fn a_zero_interval_saves_after_every_step_that_can_be_resumed() {
        let dir = temp_dir("steps");
        let policy = CheckpointPolicy::new(Recorder::default(), Arc::default(), Some((dir.clone(), Duration::ZERO)));
        let mut observer = Positions(Vec::new(), policy);
        // 40 samples in batches of 16: steps 1 and 2 can be resumed; step 3 ends the epoch, so
        // its checkpoint is the one after EpochEnded.
        assert_eq!(tiny_trainer(1).run(&mut observer).unwrap(), Outcome::Completed);
        assert_eq!(observer.0, [(0, 1), (0, 2), (1, 0)]);
        assert_eq!(saved(&dir), ["checkpoint-e0000-s000002.ckpt", "checkpoint-e0001-s000000.ckpt"]);
        assert!(observer.1.failure.is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_stop_saves_where_it_lands_and_stops_there() {
        let dir = temp_dir("stop");
        let stop = Arc::new(AtomicBool::new(true));
        let mut policy =
            CheckpointPolicy::new(Recorder::default(), stop, Some((dir.clone(), Duration::from_secs(600))));
        let mut trainer = tiny_trainer(2);
        assert_eq!(trainer.run(&mut policy).unwrap(), Outcome::Stopped);
        // Stopped at Started, before any step.
        assert_eq!((trainer.epochs_done(), trainer.step_in_epoch()), (0, 0));
        assert_eq!(saved(&dir), ["checkpoint-e0000-s000000.ckpt"]);
        assert_eq!(policy.last_saved, Some(dir.join("checkpoint-e0000-s000000.ckpt")));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_checkpoint_that_cannot_be_written_stops_the_run_with_the_reason() {
        let dir = temp_dir("unwritable");
        std::fs::write(&dir, b"a file, not a folder").unwrap();
        let mut policy =
            CheckpointPolicy::new(Recorder::default(), Arc::default(), Some((dir.clone(), Duration::from_secs(600))));
        let mut trainer = tiny_trainer(2);
        assert_eq!(trainer.run(&mut policy).unwrap(), Outcome::Stopped);
        assert_eq!(trainer.epochs_done(), 1, "stopped at the first checkpoint");
        let failure = policy.failure.expect("a failure");
        assert_eq!(failure.code, crate::EXIT_BAD_INPUT);
        assert!(failure.message.contains("--checkpoint-dir"), "{}", failure.message);
        std::fs::remove_file(&dir).unwrap();
    }
}
