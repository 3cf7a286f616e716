//! The app's background threads: the training worker (core's Trainer on the chosen backend,
//! its events forwarded with their time, pause and stop through shared flags, a parameter
//! snapshot at every epoch end), the data loader and the explore view's batch prediction, and
//! the event loop's `Workers` that start them for `update`'s effects.
//! Leaves out what the events mean to the screen (update.rs, views/).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mnist_core::train::{Control, Event, Observer, Outcome, TrainConfig, Trainer};
use mnist_core::{Backend, Config, CpuBackend, Split};

use super::models::{self, Model};
use super::msg::{DataMsg, Effect, ExploreMsg, Msg, RunCommand, RunEnd, RunSettings, WorkerMsg};
use super::widgets::plural;
use crate::backend_choice::{choose, Chosen};
use crate::cli::DataArgs;
use crate::download::ProgressEvent;

/// Shared with the training worker, which checks these after every step; set only through
/// `apply` (the effects of the train view's keys).
#[derive(Debug, Default)]
pub struct RunControl {
    paused: AtomicBool,
    stop: AtomicBool,
}

impl RunControl {
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }
    pub fn is_stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
    pub fn apply(&self, command: RunCommand) {
        match command {
            RunCommand::Pause => self.paused.store(true, Ordering::SeqCst),
            RunCommand::Resume => self.paused.store(false, Ordering::SeqCst),
            RunCommand::Stop => {
                self.stop.store(true, Ordering::SeqCst);
                self.paused.store(false, Ordering::SeqCst);
            }
        }
    }
}

/// The event loop's hands: carries out `update`'s effects (threads for the slow ones, file I/O
/// inline, a checkpoint is a few MB) and holds the running training worker's controls.
pub struct Workers {
    tx: Sender<Msg>,
    run: Option<Arc<RunControl>>,
}

impl Workers {
    pub fn new(tx: Sender<Msg>) -> Self {
        Workers { tx, run: None }
    }

    pub fn carry_out(&mut self, effect: Effect) {
        let tx = &self.tx;
        match effect {
            Effect::LoadData(args) => spawn_data_loader(args, tx.clone()),
            Effect::StartTraining { settings, split } => {
                let control = Arc::new(RunControl::default());
                self.run = Some(control.clone());
                spawn_training(settings, split, control, tx.clone())
            }
            Effect::ControlRun(command) => {
                if let Some(run) = &self.run {
                    run.apply(command);
                }
            }
            Effect::PredictAll { model, split, generation } => spawn_predict_all(model, split, generation, tx.clone()),
            Effect::SaveModel { model, prefix } => {
                let _ = tx.send(Msg::ModelSaved(models::save(&model, &prefix)));
            }
            Effect::LoadModel { prefix } => {
                let _ = tx.send(Msg::ModelLoaded(models::load(&prefix)));
            }
        }
    }
}

/// Runs `work`, turning a panic into an error message: the app shows it instead of waiting
/// forever for a thread that died (the panic hook leaves the terminal to the UI thread).
fn catch_panic<T>(what: &str, work: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).map_err(|payload| {
        let message =
            payload.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| payload.downcast_ref::<String>().cloned());
        format!("{what} crashed: {} (a bug: please report it)", message.unwrap_or_else(|| "no message".into()))
    })
}

/// A line for the status bar about a download in progress, if the event is worth one.
fn describe_download(event: &ProgressEvent) -> Option<String> {
    match event {
        ProgressEvent::Started { url, .. } => Some(format!("Downloading MNIST from {url}")),
        ProgressEvent::Resumed { url, offset, .. } => {
            Some(format!("Resuming the MNIST download from {url} at byte {offset}"))
        }
        ProgressEvent::Bytes { done, total: Some(total) } if *total > 0 => {
            Some(format!("Downloading MNIST: {}%", done * 100 / total))
        }
        ProgressEvent::Bytes { done, .. } => Some(format!("Downloading MNIST: {} kB", done / 1000)),
        ProgressEvent::Retrying { attempt, attempts, delay, reason, .. } => {
            Some(format!("Download failed ({reason}); attempt {attempt} of {attempts} in {:.0}s", delay.as_secs_f64()))
        }
        ProgressEvent::Discarded { reason, .. } => {
            Some(format!("The cached MNIST was bad ({reason}); fetching it again"))
        }
        ProgressEvent::NextUrl { reason, next } => Some(format!("{reason}; trying {next}")),
        ProgressEvent::Waiting { .. } => Some("Waiting for another process downloading MNIST".into()),
        ProgressEvent::Verified { .. } | ProgressEvent::Done { .. } => None,
    }
}

pub fn spawn_data_loader(args: DataArgs, tx: Sender<Msg>) {
    std::thread::spawn(move || {
        // Download progress cannot go to stderr (under the app's screen): it goes to the status
        // bar, at most 5 times a second.
        let mut last_sent: Option<Instant> = None;
        let mut progress = |event: ProgressEvent| {
            let due = last_sent.is_none_or(|t| t.elapsed() >= Duration::from_millis(200))
                || !matches!(event, ProgressEvent::Bytes { .. });
            if let Some(text) = describe_download(&event).filter(|_| due) {
                last_sent = Some(Instant::now());
                let _ = tx.send(Msg::DataProgress { text, args: args.clone() });
            }
        };
        let loaded = catch_panic("loading the data", || crate::datasource::load_with_progress(&args, &mut progress));
        let msg = match loaded {
            Ok(Ok(loaded)) => DataMsg::Loaded { split: Arc::new(loaded.split), source: loaded.source, args },
            Ok(Err(failure)) => DataMsg::Failed { message: failure.message, args },
            Err(message) => DataMsg::Failed { message, args },
        };
        let _ = tx.send(Msg::Data(msg));
    });
}

pub fn spawn_predict_all(model: Model, split: Arc<Split>, generation: u64, tx: Sender<Msg>) {
    std::thread::spawn(move || {
        let result =
            catch_panic("predicting the test set", || models::predict_all(&model, &split.test)).and_then(|r| r);
        let _ = tx.send(Msg::Explore(ExploreMsg::Done { generation, result }));
    });
}

pub fn spawn_training(settings: RunSettings, split: Arc<Split>, control: Arc<RunControl>, tx: Sender<Msg>) {
    std::thread::spawn(move || {
        let send = |m: WorkerMsg| {
            let _ = tx.send(Msg::Worker(m));
        };
        let failed = |message: String| WorkerMsg::Done { end: RunEnd::Failed(message) };
        let trained = catch_panic("the training worker", || match choose(settings.backend, settings.precision) {
            // The command line's wording ("--precision", "--backend"): the app's settings have
            // the same names.
            Err(failure) => send(failed(failure.message)),
            // Reading the running metrics is a device round trip: every step on the CPU (cheap),
            // sparser on a GPU.
            Ok(Chosen::Cuda(gpu)) => {
                send(WorkerMsg::Ready { backend: "cuda", device: gpu.device_name(), note: None });
                train_on(*gpu, 10, &settings, &split, &control, &tx)
            }
            Ok(Chosen::Cpu { fallback }) => {
                let note = fallback.map(|why| format!("training on the CPU because {why}"));
                let cpu = CpuBackend::new(settings.threads);
                // Named here, not by core's device_name ("cpu (1 threads)"), for "1 thread".
                let device = format!("cpu ({})", plural(cpu.threads(), "thread"));
                send(WorkerMsg::Ready { backend: "cpu", device, note });
                train_on(cpu, 1, &settings, &split, &control, &tx)
            }
        });
        if let Err(message) = trained {
            send(failed(message));
        }
    });
}

/// Forwards events, blocks while paused, answers each epoch end with a snapshot request (its
/// parameters go to the UI as the model to use) and stops the run when told to.
struct Forwarder<'a> {
    tx: &'a Sender<Msg>,
    control: &'a RunControl,
}

impl Forwarder<'_> {
    fn go_on(&self) -> Control {
        if self.control.is_stopping() {
            Control::Stop
        } else {
            Control::Continue
        }
    }
}

impl Observer for Forwarder<'_> {
    fn on_event(&mut self, event: &Event) -> Control {
        let _ = self.tx.send(Msg::Worker(WorkerMsg::Progress { event: event.clone(), at: Instant::now() }));
        while self.control.is_paused() && !self.control.is_stopping() {
            std::thread::sleep(Duration::from_millis(20));
        }
        match event {
            Event::EpochEnded { .. } => Control::Snapshot,
            _ => self.go_on(),
        }
    }

    fn on_snapshot(&mut self, epochs_done: usize, params: &[f32]) -> Control {
        let _ = self.tx.send(Msg::Worker(WorkerMsg::Snapshot { epoch: epochs_done, params: params.to_vec() }));
        self.go_on()
    }
}

/// Trains on `backend` (announced already), reading the running metrics every `metrics_every`
/// steps, until the run ends; its end is the last message.
fn train_on<B: Backend>(
    backend: B,
    metrics_every: usize,
    settings: &RunSettings,
    split: &Split,
    control: &RunControl,
    tx: &Sender<Msg>,
) {
    let send = |m: WorkerMsg| {
        let _ = tx.send(Msg::Worker(m));
    };
    let config = TrainConfig {
        epochs: settings.epochs,
        batch_size: settings.batch_size,
        seed: settings.seed,
        metrics_every,
        ..TrainConfig::default()
    };
    let mut trainer = match Trainer::new(backend, Config::default(), config, &split.train, Some(&split.test)) {
        Ok(t) => t,
        Err(e) => return send(WorkerMsg::Done { end: RunEnd::Failed(format!("cannot start training: {e}")) }),
    };
    let end = match trainer.run(&mut Forwarder { tx, control }) {
        Ok(Outcome::Completed) => RunEnd::Completed,
        Ok(Outcome::Stopped) => RunEnd::Stopped,
        // The UI keeps the last finished epoch's snapshot as its model.
        Err(e) => RunEnd::Failed(format!("training failed: {e}")),
    };
    send(WorkerMsg::Done { end });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{BackendChoice, PrecisionChoice};
    use mnist_core::Dataset;
    use std::sync::mpsc;

    /// Images whose bright column encodes the label.
    fn tiny_split(train: usize, test: usize) -> Split {
        let make = |n: usize| {
            let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
            let images = labels
                .iter()
                .flat_map(|&l| (0..784).map(move |p| if p % 28 == 4 + 2 * l as usize { 250 } else { 0 }))
                .collect();
            Dataset::new(images, labels, 28, 28, 1).unwrap()
        };
        Split { train: make(train), test: make(test) }
    }

    fn settings(epochs: usize) -> RunSettings {
        RunSettings {
            epochs,
            batch_size: 32,
            seed: 3,
            backend: BackendChoice::Cpu,
            precision: PrecisionChoice::F32,
            threads: 1,
        }
    }

    #[test]
    fn half_precision_on_the_cpu_is_refused_with_a_reason() {
        let (tx, rx) = mpsc::channel();
        let settings = RunSettings { precision: PrecisionChoice::Bf16, ..settings(1) };
        spawn_training(settings, Arc::new(tiny_split(64, 10)), Arc::default(), tx);
        let msgs = collect(&rx);
        assert!(
            matches!(&msgs[..], [WorkerMsg::Done { end: RunEnd::Failed(m) }] if m.contains("--precision bf16 needs --backend cuda")),
            "{msgs:?}"
        );
    }

    fn collect(rx: &mpsc::Receiver<Msg>) -> Vec<WorkerMsg> {
        let mut out = Vec::new();
        while let Ok(Msg::Worker(m)) = rx.recv_timeout(Duration::from_secs(120)) {
            let done = matches!(m, WorkerMsg::Done { .. });
            out.push(m);
            if done {
                break;
            }
        }
        out
    }

    #[test]
    fn a_run_reports_once_snapshots_every_epoch_and_completes() {
        let (tx, rx) = mpsc::channel();
        spawn_training(settings(2), Arc::new(tiny_split(96, 20)), Arc::default(), tx);
        let msgs = collect(&rx);
        assert!(matches!(&msgs[0], WorkerMsg::Ready { backend: "cpu", .. }), "{:?}", msgs[0]);
        // Issue 17 #9: one thread is "1 thread".
        assert!(matches!(&msgs[0], WorkerMsg::Ready { device, .. } if device == "cpu (1 thread)"), "{:?}", msgs[0]);
        let started =
            msgs.iter().filter(|m| matches!(m, WorkerMsg::Progress { event: Event::Started { .. }, .. })).count();
        assert_eq!(started, 1);
        let snapshots: Vec<usize> = msgs
            .iter()
            .filter_map(|m| if let WorkerMsg::Snapshot { epoch, .. } = m { Some(*epoch) } else { None })
            .collect();
        assert_eq!(snapshots, [1, 2]);
        let steps = msgs
            .iter()
            .filter(|m| matches!(m, WorkerMsg::Progress { event: Event::Step { running: Some(_), .. }, .. }))
            .count();
        assert!(steps >= 4, "running metrics every step but the last of each epoch: {steps}");
        match msgs.last() {
            Some(WorkerMsg::Done { end: RunEnd::Completed }) => {}
            other => panic!("{other:?}"),
        }
        match msgs.iter().rev().find(|m| matches!(m, WorkerMsg::Snapshot { .. })) {
            Some(WorkerMsg::Snapshot { params: p, .. }) => assert_eq!(p.len(), Config::default().param_count()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pause_holds_the_worker_and_stop_ends_the_run() {
        let (tx, rx) = mpsc::channel();
        let control = Arc::new(RunControl::default());
        control.apply(RunCommand::Pause);
        spawn_training(settings(50), Arc::new(tiny_split(320, 20)), control.clone(), tx);
        // Paused at the first event: nothing after Started arrives.
        let mut seen = Vec::new();
        while let Ok(Msg::Worker(m)) = rx.recv_timeout(Duration::from_millis(700)) {
            seen.push(m);
        }
        assert!(seen.iter().all(|m| !matches!(m, WorkerMsg::Progress { event: Event::Step { .. }, .. })), "{seen:?}");
        control.apply(RunCommand::Resume);
        control.apply(RunCommand::Stop);
        let msgs = collect(&rx);
        assert!(matches!(msgs.last(), Some(WorkerMsg::Done { end: RunEnd::Stopped })), "{:?}", msgs.last());
    }

    /// One run, no restarts: every finished epoch is handed over once, in order, and a stop ends
    /// the run there with nothing after it.
    #[test]
    fn a_stopped_run_has_handed_over_each_finished_epoch_once() {
        let (tx, rx) = mpsc::channel();
        let control = Arc::new(RunControl::default());
        spawn_training(settings(50), Arc::new(tiny_split(320, 20)), control.clone(), tx);
        let mut msgs = Vec::new();
        while let Ok(Msg::Worker(m)) = rx.recv_timeout(Duration::from_secs(120)) {
            let first_snapshot = matches!(m, WorkerMsg::Snapshot { .. });
            msgs.push(m);
            if first_snapshot {
                control.apply(RunCommand::Stop);
                break;
            }
        }
        msgs.extend(collect(&rx));
        let ended: Vec<usize> = msgs
            .iter()
            .filter_map(|m| match m {
                WorkerMsg::Progress { event: Event::EpochEnded { epoch, .. }, .. } => Some(*epoch),
                _ => None,
            })
            .collect();
        let snapshots: Vec<usize> = msgs
            .iter()
            .filter_map(|m| if let WorkerMsg::Snapshot { epoch, .. } = m { Some(*epoch) } else { None })
            .collect();
        assert!(!ended.is_empty() && ended.len() < 50, "{ended:?}");
        assert_eq!(snapshots, ended);
        assert_eq!(snapshots, (1..=ended.len()).collect::<Vec<_>>());
        let started =
            msgs.iter().filter(|m| matches!(m, WorkerMsg::Progress { event: Event::Started { .. }, .. })).count();
        assert_eq!(started, 1);
        assert!(matches!(msgs.last(), Some(WorkerMsg::Done { end: RunEnd::Stopped })), "{:?}", msgs.last());
    }

    #[test]
    fn a_panic_becomes_a_message() {
        let caught = catch_panic("the test", || -> u32 { panic!("boom {}", 7) });
        assert_eq!(caught, Err("the test crashed: boom 7 (a bug: please report it)".into()));
        assert_eq!(catch_panic("the test", || 5), Ok(5));
    }

    #[test]
    fn download_progress_reads_as_a_status_line() {
        let bytes = ProgressEvent::Bytes { done: 5_500_000, total: Some(11_000_000) };
        assert_eq!(describe_download(&bytes).as_deref(), Some("Downloading MNIST: 50%"));
        let retry = ProgressEvent::Retrying {
            url: "u".into(),
            attempt: 2,
            attempts: 4,
            delay: Duration::from_secs(2),
            reason: "refused".into(),
        };
        assert_eq!(describe_download(&retry).as_deref(), Some("Download failed (refused); attempt 2 of 4 in 2s"));
    }

    #[test]
    fn a_bad_batch_size_fails_with_a_message() {
        let (tx, rx) = mpsc::channel();
        spawn_training(RunSettings { batch_size: 0, ..settings(1) }, Arc::new(tiny_split(10, 10)), Arc::default(), tx);
        let msgs = collect(&rx);
        assert!(
            matches!(msgs.last(), Some(WorkerMsg::Done { end: RunEnd::Failed(m), .. }) if m.contains("batch size")),
            "{msgs:?}"
        );
    }
}
