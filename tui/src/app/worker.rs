//! The app's background threads: the training worker (core's Trainer on the chosen backend,
//! its events forwarded with their time, pause and stop through shared flags, a parameter
//! snapshot at every epoch end), the data loader and the explore view's batch prediction.
//! Leaves out what the events mean to the screen (state.rs).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mnist_core::train::{Control, Event, Observer, Outcome, TrainConfig, Trainer};
use mnist_core::{Backend, Config, CpuBackend, Split};

use super::models::{self, Model, Predictions};
use super::state::Msg;
use crate::backend_choice::{choose, Chosen};
use crate::cli::{BackendChoice, DataArgs, PrecisionChoice};
use crate::download::ProgressEvent;

/// Shared with the UI: the worker checks these after every step.
#[derive(Debug, Default)]
pub struct RunControl {
    pub paused: AtomicBool,
    pub stop: AtomicBool,
}

impl RunControl {
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }
    pub fn is_stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
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
    /// The parameters after `epoch` epochs.
    Snapshot {
        epoch: usize,
        params: Vec<f32>,
    },
    Done {
        end: RunEnd,
        params: Option<Vec<f32>>,
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
        let failed = |message: String| WorkerMsg::Done { end: RunEnd::Failed(message), params: None };
        let trained = catch_panic("the training worker", || match choose(settings.backend, settings.precision) {
            // The command line's wording ("--precision", "--backend"): the app's settings have
            // the same names.
            Err(failure) => send(failed(failure.message)),
            Ok(Chosen::Cuda(gpu)) => train_on(*gpu, "cuda", None, &settings, &split, &control, &tx),
            Ok(Chosen::Cpu { fallback }) => {
                let note = fallback.map(|why| format!("training on the CPU because {why}"));
                train_on(CpuBackend::new(settings.threads), "cpu", note, &settings, &split, &control, &tx)
            }
        });
        if let Err(message) = trained {
            send(failed(message));
        }
    });
}

/// Forwards events, blocks while paused, and stops at each epoch end so the worker can take a
/// parameter snapshot (the trainer continues where it stopped on the next `run`).
struct Forwarder<'a> {
    tx: &'a Sender<Msg>,
    control: &'a RunControl,
    started_sent: bool,
    epoch_ended: bool,
}

impl Observer for Forwarder<'_> {
    fn on_event(&mut self, event: &Event) -> Control {
        // Each `run` after a snapshot announces the start again: the UI needs it once.
        let repeat = matches!(event, Event::Started { .. }) && std::mem::replace(&mut self.started_sent, true);
        if !repeat {
            let _ = self.tx.send(Msg::Worker(WorkerMsg::Progress { event: event.clone(), at: Instant::now() }));
        }
        while self.control.is_paused() && !self.control.is_stopping() {
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Event::EpochEnded { .. } = event {
            self.epoch_ended = true;
            return Control::Stop;
        }
        if self.control.is_stopping() {
            Control::Stop
        } else {
            Control::Continue
        }
    }
}

fn train_on<B: Backend>(
    backend: B,
    label: &'static str,
    note: Option<String>,
    settings: &RunSettings,
    split: &Split,
    control: &RunControl,
    tx: &Sender<Msg>,
) {
    let send = |m: WorkerMsg| {
        let _ = tx.send(Msg::Worker(m));
    };
    send(WorkerMsg::Ready { backend: label, device: backend.device_name(), note });
    let config = TrainConfig {
        epochs: settings.epochs,
        batch_size: settings.batch_size,
        seed: settings.seed,
        // Reading the running metrics is a device round trip: every step on the CPU (cheap),
        // sparser on a GPU.
        metrics_every: if label == "cpu" { 1 } else { 10 },
        ..TrainConfig::default()
    };
    let mut trainer = match Trainer::new(backend, Config::default(), config, &split.train, Some(&split.test)) {
        Ok(t) => t,
        Err(e) => {
            return send(WorkerMsg::Done { end: RunEnd::Failed(format!("cannot start training: {e}")), params: None })
        }
    };
    let mut forwarder = Forwarder { tx, control, started_sent: false, epoch_ended: false };
    let end = loop {
        match trainer.run(&mut forwarder) {
            Ok(Outcome::Completed) => break RunEnd::Completed,
            Ok(Outcome::Stopped) => {
                if std::mem::take(&mut forwarder.epoch_ended) {
                    if let Ok(params) = trainer.network.params() {
                        send(WorkerMsg::Snapshot { epoch: trainer.epochs_done(), params });
                    }
                }
                if control.is_stopping() {
                    break RunEnd::Stopped;
                }
            }
            // After a NaN the trainer holds the last good epoch's parameters.
            Err(e) => break RunEnd::Failed(format!("training failed: {e}")),
        }
    };
    send(WorkerMsg::Done { end, params: trainer.network.params().ok() });
}

#[cfg(test)]
mod tests {
    use super::*;
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
            matches!(&msgs[..], [WorkerMsg::Done { end: RunEnd::Failed(m), params: None }] if m.contains("--precision bf16 needs --backend cuda")),
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
            Some(WorkerMsg::Done { end: RunEnd::Completed, params: Some(p) }) => {
                assert_eq!(p.len(), Config::default().param_count())
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pause_holds_the_worker_and_stop_ends_the_run() {
        let (tx, rx) = mpsc::channel();
        let control = Arc::new(RunControl::default());
        control.paused.store(true, Ordering::SeqCst);
        spawn_training(settings(50), Arc::new(tiny_split(320, 20)), control.clone(), tx);
        // Paused at the first event: nothing after Started arrives.
        let mut seen = Vec::new();
        while let Ok(Msg::Worker(m)) = rx.recv_timeout(Duration::from_millis(700)) {
            seen.push(m);
        }
        assert!(seen.iter().all(|m| !matches!(m, WorkerMsg::Progress { event: Event::Step { .. }, .. })), "{seen:?}");
        control.paused.store(false, Ordering::SeqCst);
        control.stop.store(true, Ordering::SeqCst);
        let msgs = collect(&rx);
        assert!(
            matches!(msgs.last(), Some(WorkerMsg::Done { end: RunEnd::Stopped, params: Some(_) })),
            "{:?}",
            msgs.last()
        );
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
