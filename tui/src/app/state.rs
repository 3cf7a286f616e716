//! The app's state and `update`, which applies one message (a key, a mouse event, a worker's
//! report) to it without I/O: anything that touches files, threads or the model's CPU work
//! is returned as an `Effect` for the event loop (mod.rs) to carry out.
//! Leaves out drawing (render.rs) and where things are on screen (layout.rs).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use clap::ValueEnum;
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use mnist_core::model::Metrics;
use mnist_core::train::Event;
use mnist_core::{Config, Split};
use ratatui::layout::{Position, Rect};

use super::layout::{self, layout};
use super::models::{Classifier, Model, Predictions};
use super::pad::Pad;
use super::series::{Smoother, Throughput};
use super::worker::{DataMsg, ExploreMsg, RunControl, RunEnd, RunSettings, WorkerMsg};
use crate::cli::{choice_name, BackendChoice, DataArgs, PrecisionChoice};

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

/// Work with side effects, done by the event loop.
#[derive(Debug, Clone)]
pub enum Effect {
    LoadData(DataArgs),
    StartTraining { settings: RunSettings, split: Arc<Split>, control: Arc<RunControl> },
    PredictAll { model: Model, split: Arc<Split>, generation: u64 },
    SaveModel { model: Model, prefix: String },
    LoadModel { prefix: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Train,
    Draw,
    Explore,
}

impl View {
    pub const ALL: [View; 3] = [View::Train, View::Draw, View::Explore];
    fn index(self) -> usize {
        View::ALL.iter().position(|&v| v == self).unwrap_or(0)
    }
}

/// The settings a run starts with, editable in the train view before it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Epochs,
    BatchSize,
    Backend,
    Precision,
    Seed,
    Data,
    Limit,
}

impl Field {
    pub const ALL: [Field; 7] =
        [Field::Epochs, Field::BatchSize, Field::Backend, Field::Precision, Field::Seed, Field::Data, Field::Limit];
    pub fn label(self) -> &'static str {
        match self {
            Field::Epochs => "Epochs",
            Field::BatchSize => "Batch size",
            Field::Backend => "Backend",
            Field::Precision => "Precision",
            Field::Seed => "Seed",
            Field::Data => "Data",
            Field::Limit => "Limit",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub epochs: usize,
    pub batch_size: usize,
    pub backend: BackendChoice,
    /// The GPU's GEMM inputs (f32 on the CPU, which has no other).
    pub precision: PrecisionChoice,
    pub seed: u64,
    /// A local .npz or idx folder; empty: the cached or downloaded mnist.npz.
    pub data: String,
    /// Train on the first N samples (and N/6 test samples); 0: all.
    pub limit: usize,
    pub threads: usize,
    /// --data-url, --sha256, --cache-dir as given on the command line.
    pub download: DataArgs,
}

impl Settings {
    pub fn data_args(&self) -> DataArgs {
        DataArgs {
            data: (!self.data.is_empty()).then(|| PathBuf::from(&self.data)),
            limit: (self.limit > 0).then_some(self.limit),
            ..self.download.clone()
        }
    }

    pub fn run_settings(&self) -> RunSettings {
        RunSettings {
            epochs: self.epochs,
            batch_size: self.batch_size,
            seed: self.seed,
            backend: self.backend,
            precision: self.precision,
            threads: self.threads,
        }
    }

    pub fn value(&self, field: Field) -> String {
        match field {
            Field::Epochs => self.epochs.to_string(),
            Field::BatchSize => self.batch_size.to_string(),
            Field::Backend => choice_name(self.backend),
            Field::Precision => self.precision.precision().name().into(),
            Field::Seed => self.seed.to_string(),
            Field::Data if self.data.is_empty() => "(download / cache)".into(),
            Field::Data => self.data.clone(),
            Field::Limit if self.limit == 0 => "all".into(),
            Field::Limit => self.limit.to_string(),
        }
    }

    /// The left and right arrows: numbers up and down (batch size and limit by doubling),
    /// the backend and precision round their choices; the data path is only typed.
    fn adjust(&mut self, field: Field, up: bool) {
        let step = |v: usize, lo: usize| {
            if up {
                v.saturating_add(1)
            } else {
                v.saturating_sub(1).max(lo)
            }
        };
        match field {
            Field::Epochs => self.epochs = step(self.epochs, 1).min(9999),
            Field::BatchSize => {
                self.batch_size = if up { (self.batch_size * 2).min(65536) } else { (self.batch_size / 2).max(1) }
            }
            Field::Backend => {
                self.backend = cycle([BackendChoice::Auto, BackendChoice::Cpu, BackendChoice::Cuda], self.backend, up)
            }
            Field::Precision => {
                self.precision =
                    cycle([PrecisionChoice::F32, PrecisionChoice::Bf16, PrecisionChoice::F16], self.precision, up)
            }
            Field::Seed => self.seed = if up { self.seed.saturating_add(1) } else { self.seed.saturating_sub(1) },
            Field::Data => {}
            Field::Limit => {
                self.limit = match (up, self.limit) {
                    (true, 0) => 1000,
                    (true, n) => n.saturating_mul(2),
                    (false, n) if n <= 1000 => 0,
                    (false, n) => n / 2,
                }
            }
        }
    }

    /// A typed value; an error says what is accepted.
    fn set_text(&mut self, field: Field, text: &str) -> Result<(), String> {
        let text = text.trim();
        let number = |what: &str, min: u64| match text.parse::<u64>() {
            Ok(n) if n >= min => Ok(n),
            _ => Err(format!("{what} must be a whole number of at least {min}")),
        };
        match field {
            Field::Epochs => self.epochs = number("epochs", 1)? as usize,
            Field::BatchSize => self.batch_size = number("batch size", 1)? as usize,
            Field::Seed => self.seed = number("seed", 0)?,
            Field::Limit => self.limit = if text == "all" { 0 } else { number("limit (0: all)", 0)? as usize },
            Field::Data => self.data = text.to_string(),
            // The names `--backend` and `--precision` take (clap's).
            Field::Backend => {
                self.backend = BackendChoice::from_str(text, false).map_err(|_| "backend must be cpu, cuda or auto")?
            }
            Field::Precision => {
                self.precision =
                    PrecisionChoice::from_str(text, false).map_err(|_| "precision must be f32, bf16 or f16")?
            }
        }
        Ok(())
    }
}

/// The choice after `current` in `all` (before it when going down), round the ends.
fn cycle<T: Copy + PartialEq, const N: usize>(all: [T; N], current: T, up: bool) -> T {
    let i = all.iter().position(|&c| c == current).unwrap_or(0);
    all[(i + if up { 1 } else { N - 1 }) % N]
}

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

#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    Idle,
    /// Start was asked for; the data is still loading.
    WaitingForData,
    Running,
    Paused,
    Stopping,
    Completed,
    Stopped,
    Failed(String),
}

impl Phase {
    /// A worker thread exists and has not reported its end.
    pub fn is_active(&self) -> bool {
        matches!(self, Phase::Running | Phase::Paused | Phase::Stopping)
    }
}

/// Chart x range: the whole run (downsampled) or the recent past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChartWindow {
    WholeRun,
    Recent,
}

/// What the train view shows of the current (or last) run.
#[derive(Debug)]
pub struct Run {
    pub control: Arc<RunControl>,
    pub backend: String,
    pub device: String,
    pub epochs: usize,
    pub steps_per_epoch: usize,
    pub train_samples: usize,
    pub test_samples: usize,
    /// The epoch in progress (1-based; 0 before the first) and its last finished step.
    pub epoch: usize,
    pub step: usize,
    pub samples_in_epoch: usize,
    smoother: Smoother,
    /// (epochs as a fraction, smoothed value) per metrics read.
    pub train_loss: Vec<(f64, f64)>,
    pub train_accuracy: Vec<(f64, f64)>,
    /// (epoch, value) per finished epoch.
    pub val_loss: Vec<(f64, f64)>,
    pub val_accuracy: Vec<(f64, f64)>,
    pub last_epoch: Option<(usize, Metrics, Option<Metrics>)>,
    pub throughput: Throughput,
    pub samples_per_second: Option<f64>,
    pub eta: Option<Duration>,
}

impl Run {
    fn new(control: Arc<RunControl>, epochs: usize) -> Self {
        Run {
            control,
            backend: String::new(),
            device: String::new(),
            epochs,
            steps_per_epoch: 0,
            train_samples: 0,
            test_samples: 0,
            epoch: 0,
            step: 0,
            samples_in_epoch: 0,
            smoother: Smoother::default(),
            train_loss: Vec::new(),
            train_accuracy: Vec::new(),
            val_loss: Vec::new(),
            val_accuracy: Vec::new(),
            last_epoch: None,
            throughput: Throughput::default(),
            samples_per_second: None,
            eta: None,
        }
    }

    /// Fraction of the current epoch done, 0..=1.
    pub fn epoch_fraction(&self) -> f64 {
        if self.train_samples == 0 {
            0.0
        } else {
            (self.samples_in_epoch as f64 / self.train_samples as f64).min(1.0)
        }
    }

    /// Fraction of the whole run done, 0..=1.
    pub fn run_fraction(&self) -> f64 {
        if self.epochs == 0 || self.epoch == 0 {
            return 0.0;
        }
        (((self.epoch - 1) as f64 + self.epoch_fraction()) / self.epochs as f64).min(1.0)
    }

    fn samples_done_in_run(&self) -> usize {
        self.epoch.saturating_sub(1) * self.train_samples + self.samples_in_epoch
    }

    fn apply(&mut self, event: &Event, at: std::time::Instant) {
        match *event {
            Event::Started { epochs, steps_per_epoch, train_samples, test_samples } => {
                (self.epochs, self.steps_per_epoch, self.train_samples, self.test_samples) =
                    (epochs, steps_per_epoch, train_samples, test_samples);
            }
            Event::EpochStarted { epoch } => {
                (self.epoch, self.step, self.samples_in_epoch) = (epoch, 0, 0);
                self.smoother.new_epoch();
            }
            Event::Step { epoch, step, samples_done, running, .. } => {
                (self.epoch, self.step, self.samples_in_epoch) = (epoch, step, samples_done);
                let x = epoch.saturating_sub(1) as f64 + self.epoch_fraction();
                if let Some(m) = running {
                    if let Some((loss, accuracy)) = self.smoother.push(samples_done, m.loss, m.accuracy) {
                        self.train_loss.push((x, loss));
                        self.train_accuracy.push((x, accuracy));
                    }
                }
                self.throughput.mark(at, self.samples_done_in_run());
                self.samples_per_second = self.throughput.samples_per_second();
                let remaining = (self.epochs * self.train_samples).saturating_sub(self.samples_done_in_run());
                self.eta = self.throughput.eta(remaining);
            }
            Event::EpochEnded { epoch, train, test } => {
                self.samples_in_epoch = self.train_samples;
                if let Some(t) = test {
                    self.val_loss.push((epoch as f64, t.loss as f64));
                    self.val_accuracy.push((epoch as f64, t.accuracy as f64));
                }
                self.last_epoch = Some((epoch, train, test));
            }
            Event::Finished { .. } => self.eta = None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// Quitting would stop a running training.
    ConfirmQuit,
    /// A checkpoint prefix to save to; `offered` when training just ended.
    SaveModel {
        input: String,
        offered: bool,
    },
    LoadModel {
        input: String,
    },
}

#[derive(Debug, Default)]
pub struct Explore {
    /// Position in the visible list (all, or only the misclassified).
    pub selected: usize,
    pub only_wrong: bool,
    /// For the model and data of `generation`.
    pub predictions: Option<(u64, Predictions)>,
    pub pending: Option<u64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusKind {
    Info,
    Error,
}

pub struct App {
    pub view: View,
    pub settings: Settings,
    pub selected_field: usize,
    /// A settings field being typed: (field, text so far).
    pub editing: Option<(Field, String)>,
    pub data: DataState,
    pub phase: Phase,
    pub run: Option<Run>,
    pub chart_window: ChartWindow,
    pub model: Option<Model>,
    pub classifier: Option<Classifier>,
    /// Bumped when the model or the data changes: explore predictions are for one generation.
    pub generation: u64,
    pub pad: Pad,
    /// The pad after MNIST-style preprocessing, and the model's probabilities for it.
    pub seen: Vec<f32>,
    pub probabilities: Option<Vec<f32>>,
    prediction_stale: bool,
    pub explore: Explore,
    pub prompt: Option<Prompt>,
    pub status: (String, StatusKind),
    /// The terminal's size at the last draw or resize, for mouse hit-testing.
    pub screen: Rect,
    pub out_dir: PathBuf,
    pub quit: bool,
    start_when_loaded: bool,
}

impl App {
    /// The app before any event; returns it with the effects to start with (loading the data).
    pub fn new(settings: Settings, model: Result<Model, String>, out_dir: PathBuf) -> (App, Vec<Effect>) {
        let args = settings.data_args();
        let mut app = App {
            view: View::Train,
            settings,
            selected_field: 0,
            editing: None,
            data: DataState::Loading(args.clone()),
            phase: Phase::Idle,
            run: None,
            chart_window: ChartWindow::WholeRun,
            model: None,
            classifier: None,
            generation: 0,
            pad: Pad::default(),
            seen: vec![0.0; 28 * 28],
            probabilities: None,
            prediction_stale: false,
            explore: Explore::default(),
            prompt: None,
            status: (
                "Ready: set up the run and press s to train, or draw a digit in the draw view (2)".into(),
                StatusKind::Info,
            ),
            screen: Rect::new(0, 0, 120, 40),
            out_dir,
            quit: false,
            start_when_loaded: false,
        };
        match model {
            Ok(model) => app.set_model(model),
            Err(e) => app.error(e),
        }
        (app, vec![Effect::LoadData(args)])
    }

    pub fn info(&mut self, text: impl Into<String>) {
        self.status = (text.into(), StatusKind::Info);
    }

    pub fn error(&mut self, text: impl Into<String>) {
        self.status = (text.into(), StatusKind::Error);
    }

    fn set_model(&mut self, model: Model) {
        match Classifier::new(&model) {
            Ok(c) => {
                self.classifier = Some(c);
                self.model = Some(model);
                self.generation += 1;
                self.prediction_stale = true;
            }
            Err(e) => self.error(e),
        }
    }

    /// Runs the model on the pad if it changed since the last call: one CPU forward pass,
    /// called once per frame by the event loop (so a burst of drag events costs one).
    pub fn refresh_prediction(&mut self) {
        if !std::mem::take(&mut self.prediction_stale) {
            return;
        }
        self.seen = self.pad.model_input();
        self.probabilities = match &mut self.classifier {
            Some(c) if !self.pad.is_blank() => match c.classify(&self.seen) {
                Ok(p) => Some(p),
                Err(e) => {
                    self.error(e);
                    None
                }
            },
            _ => None,
        };
    }

    fn pad_changed(&mut self) {
        self.prediction_stale = true;
    }

    /// Indices into the test set shown in the explore list.
    pub fn explore_indices(&self) -> Vec<usize> {
        let (Some(split), Some((_, p))) = (self.data.split(), &self.explore.predictions) else {
            return Vec::new();
        };
        let labels = &split.test.labels;
        (0..labels.len().min(p.classes.len()))
            .filter(|&i| !self.explore.only_wrong || p.classes[i] != labels[i])
            .collect()
    }
}

/// Applies one message; returns the effects to carry out.
pub fn update(app: &mut App, msg: Msg) -> Vec<Effect> {
    let mut effects = match msg {
        Msg::Key(key) if key.kind != KeyEventKind::Release => on_key(app, key),
        Msg::Key(_) => Vec::new(),
        Msg::Mouse(mouse) => on_mouse(app, mouse),
        Msg::Resize(w, h) => {
            app.screen = Rect::new(0, 0, w, h);
            Vec::new()
        }
        Msg::Worker(m) => on_worker(app, m),
        Msg::Data(m) => on_data(app, m),
        Msg::DataProgress { text, args } => {
            if matches!(&app.data, DataState::Loading(a) if *a == args) {
                app.info(text);
            }
            Vec::new()
        }
        Msg::Explore(ExploreMsg::Done { generation, result }) => {
            if app.explore.pending == Some(generation) {
                app.explore.pending = None;
                match result {
                    Ok(p) => {
                        app.explore.predictions = Some((generation, p));
                        app.explore.error = None;
                        app.explore.selected = 0;
                    }
                    Err(e) => app.explore.error = Some(e),
                }
            }
            Vec::new()
        }
        Msg::ModelLoaded(Ok(model)) => {
            let text = format!("Model {}", model.origin);
            app.set_model(model);
            app.info(text);
            Vec::new()
        }
        Msg::ModelLoaded(Err(e)) | Msg::ModelSaved(Err(e)) => {
            app.error(e);
            Vec::new()
        }
        Msg::ModelSaved(Ok(written)) => {
            app.info(format!("Saved the model: {written}"));
            Vec::new()
        }
    };
    effects.extend(explore_effects(app));
    effects
}

/// Asks for the explore view's predictions when it is shown and they are out of date.
fn explore_effects(app: &mut App) -> Vec<Effect> {
    let current = app.explore.predictions.as_ref().is_some_and(|(g, _)| *g == app.generation);
    if app.view != View::Explore || current || app.explore.pending == Some(app.generation) {
        return Vec::new();
    }
    let (Some(split), Some(model)) = (app.data.split(), &app.model) else {
        return Vec::new();
    };
    app.explore.pending = Some(app.generation);
    app.explore.error = None;
    vec![Effect::PredictAll { model: model.clone(), split: split.clone(), generation: app.generation }]
}

fn on_data(app: &mut App, msg: DataMsg) -> Vec<Effect> {
    // A reply for data settings that were changed since is stale.
    let (args, state) = match msg {
        DataMsg::Loaded { split, source, args } => (args.clone(), DataState::Ready { split, source, args }),
        DataMsg::Failed { message, args } => (args, DataState::Failed { message }),
    };
    if !matches!(&app.data, DataState::Loading(a) if *a == args) {
        return Vec::new();
    }
    app.data = state;
    app.generation += 1;
    match &app.data {
        DataState::Ready { split, source, .. } => {
            let text =
                format!("Data ready: {} train and {} test images from {source}", split.train.len(), split.test.len());
            app.info(text);
            if std::mem::take(&mut app.start_when_loaded) {
                return start_training(app);
            }
        }
        DataState::Failed { message, .. } => {
            let text = format!("No data: {message}. Set Data to a local mnist.npz (Enter to edit) and press s");
            app.error(text);
            if std::mem::take(&mut app.start_when_loaded) {
                app.phase = Phase::Idle;
            }
        }
        DataState::Loading(_) => {}
    }
    Vec::new()
}

fn on_worker(app: &mut App, msg: WorkerMsg) -> Vec<Effect> {
    let Some(run) = app.run.as_mut() else { return Vec::new() };
    match msg {
        WorkerMsg::Ready { backend, device, note } => {
            (run.backend, run.device) = (backend.to_string(), device);
            if let Some(note) = note {
                app.info(note);
            }
        }
        WorkerMsg::Progress { event, at } => run.apply(&event, at),
        WorkerMsg::Snapshot { epoch, params } => {
            let model = Model {
                config: Config::default(),
                params: Arc::new(params),
                origin: format!("being trained (epoch {epoch})"),
            };
            app.set_model(model);
        }
        WorkerMsg::Done { end, params } => {
            let epochs_done = run.last_epoch.map_or(0, |(e, _, _)| e);
            let test = run.last_epoch.and_then(|(_, _, t)| t);
            if let Some(params) = params {
                let origin = format!("trained here ({epochs_done} epochs)");
                app.set_model(Model { config: Config::default(), params: Arc::new(params), origin });
            }
            let result =
                test.map_or(String::new(), |t| format!(": test accuracy {:.4}, loss {:.4}", t.accuracy, t.loss));
            match end {
                RunEnd::Completed => {
                    app.phase = Phase::Completed;
                    app.info(format!("Training finished{result}"));
                }
                RunEnd::Stopped => {
                    app.phase = Phase::Stopped;
                    app.info(format!("Training stopped after {epochs_done} epochs{result}"));
                }
                RunEnd::Failed(message) => {
                    app.phase = Phase::Failed(message.clone());
                    app.error(message);
                }
            }
            if matches!(app.phase, Phase::Completed | Phase::Stopped) && app.model.is_some() && app.prompt.is_none() {
                let input = app.out_dir.join("mnist_cnn").display().to_string();
                app.prompt = Some(Prompt::SaveModel { input, offered: true });
            }
        }
    }
    Vec::new()
}

fn start_training(app: &mut App) -> Vec<Effect> {
    let args = app.settings.data_args();
    match &app.data {
        DataState::Ready { split, args: loaded, .. } if *loaded == args => {
            let split = split.clone();
            let control = Arc::new(RunControl::default());
            app.run = Some(Run::new(control.clone(), app.settings.epochs));
            app.phase = Phase::Running;
            app.info("Training started");
            vec![Effect::StartTraining { settings: app.settings.run_settings(), split, control }]
        }
        DataState::Loading(loading) if *loading == args => {
            app.start_when_loaded = true;
            app.phase = Phase::WaitingForData;
            app.info("Loading the data; training starts when it is ready");
            Vec::new()
        }
        _ => {
            app.data = DataState::Loading(args.clone());
            app.start_when_loaded = true;
            app.phase = Phase::WaitingForData;
            app.info("Loading the data; training starts when it is ready");
            vec![Effect::LoadData(args)]
        }
    }
}

fn request_quit(app: &mut App) {
    if app.phase.is_active() {
        app.prompt = Some(Prompt::ConfirmQuit);
    } else {
        app.quit = true;
    }
}

fn on_key(app: &mut App, key: KeyEvent) -> Vec<Effect> {
    let ctrl_c = key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c');
    if let Some(prompt) = app.prompt.take() {
        return on_prompt_key(app, prompt, key, ctrl_c);
    }
    if ctrl_c {
        request_quit(app);
        return Vec::new();
    }
    if let Some((field, text)) = app.editing.take() {
        on_edit_key(app, field, text, key);
        return Vec::new();
    }
    match key.code {
        KeyCode::Char('q') => request_quit(app),
        KeyCode::Tab => app.view = View::ALL[(app.view.index() + 1) % 3],
        KeyCode::BackTab => app.view = View::ALL[(app.view.index() + 2) % 3],
        KeyCode::Char(c @ '1'..='3') => app.view = View::ALL[c as usize - '1' as usize],
        KeyCode::Char('o') => {
            app.prompt = Some(Prompt::LoadModel { input: app.out_dir.join("mnist_cnn").display().to_string() })
        }
        KeyCode::Char('e') => match app.model {
            Some(_) => {
                app.prompt = Some(Prompt::SaveModel {
                    input: app.out_dir.join("mnist_cnn").display().to_string(),
                    offered: false,
                })
            }
            None => app.error("No model to save yet"),
        },
        _ => {
            return match app.view {
                View::Train => on_train_key(app, key),
                View::Draw => {
                    on_draw_key(app, key);
                    Vec::new()
                }
                View::Explore => {
                    on_explore_key(app, key);
                    Vec::new()
                }
            }
        }
    }
    Vec::new()
}

fn on_prompt_key(app: &mut App, prompt: Prompt, key: KeyEvent, ctrl_c: bool) -> Vec<Effect> {
    match prompt {
        Prompt::ConfirmQuit => match key.code {
            KeyCode::Char('y') | KeyCode::Enter => {
                if let Some(run) = &app.run {
                    run.control.stop.store(true, Ordering::SeqCst);
                    run.control.paused.store(false, Ordering::SeqCst);
                }
                app.quit = true;
            }
            // Ctrl-C twice quits at once.
            _ if ctrl_c => app.quit = true,
            _ => app.info("Quit cancelled"),
        },
        Prompt::SaveModel { input, offered } if !ctrl_c => return on_path_prompt(app, Some(offered), input, key),
        Prompt::LoadModel { input } if !ctrl_c => return on_path_prompt(app, None, input, key),
        _ => request_quit(app),
    }
    Vec::new()
}

/// The save prompt (`save` holds whether it was offered at the end of training) or the load
/// prompt: typing edits the checkpoint prefix, Enter acts, Esc cancels.
fn on_path_prompt(app: &mut App, save: Option<bool>, mut input: String, key: KeyEvent) -> Vec<Effect> {
    let rebuild = |input: String| match save {
        Some(offered) => Prompt::SaveModel { input, offered },
        None => Prompt::LoadModel { input },
    };
    match key.code {
        KeyCode::Enter if input.trim().is_empty() => {
            app.error("Type a checkpoint prefix, e.g. out/mnist_cnn");
            app.prompt = Some(rebuild(input));
        }
        KeyCode::Enter => {
            let prefix = input.trim().to_string();
            return match (save, app.model.clone()) {
                (Some(_), Some(model)) => vec![Effect::SaveModel { model, prefix }],
                (Some(_), None) => {
                    app.error("No model to save yet");
                    Vec::new()
                }
                (None, _) => vec![Effect::LoadModel { prefix }],
            };
        }
        KeyCode::Esc => {
            app.info(if save == Some(true) { "Not saved: press e to save the model later" } else { "Cancelled" })
        }
        KeyCode::Backspace => {
            input.pop();
            app.prompt = Some(rebuild(input));
        }
        KeyCode::Char(c) if !is_chord(&key) => {
            input.push(c);
            app.prompt = Some(rebuild(input));
        }
        _ => app.prompt = Some(rebuild(input)),
    }
    Vec::new()
}

/// Alt or Ctrl with a key: not text (a terminal sends Esc quickly followed by a key as Alt+key).
fn is_chord(key: &KeyEvent) -> bool {
    key.modifiers.intersects(KeyModifiers::ALT | KeyModifiers::CONTROL)
}

fn on_edit_key(app: &mut App, field: Field, mut text: String, key: KeyEvent) {
    match key.code {
        KeyCode::Enter => match app.settings.set_text(field, &text) {
            Ok(()) => app.info(format!("{} set to {}", field.label(), app.settings.value(field))),
            Err(e) => app.error(e),
        },
        KeyCode::Esc => app.info("Edit cancelled"),
        KeyCode::Backspace => {
            text.pop();
            app.editing = Some((field, text));
        }
        KeyCode::Char(c) if !is_chord(&key) => {
            text.push(c);
            app.editing = Some((field, text));
        }
        _ => app.editing = Some((field, text)),
    }
}

fn on_train_key(app: &mut App, key: KeyEvent) -> Vec<Effect> {
    let locked = app.phase.is_active() || app.phase == Phase::WaitingForData;
    let field = Field::ALL[app.selected_field.min(Field::ALL.len() - 1)];
    match key.code {
        KeyCode::Char('s') if locked => app.info("A run is already going: x stops it"),
        KeyCode::Char('s') => return start_training(app),
        KeyCode::Char('p') | KeyCode::Char(' ') => match (&app.phase, &app.run) {
            (Phase::Running, Some(run)) => {
                run.control.paused.store(true, Ordering::SeqCst);
                app.phase = Phase::Paused;
                app.info("Paused (after the current step): p resumes");
            }
            (Phase::Paused, Some(run)) => {
                run.control.paused.store(false, Ordering::SeqCst);
                if let Some(run) = app.run.as_mut() {
                    run.throughput.restart();
                }
                app.phase = Phase::Running;
                app.info("Resumed");
            }
            _ => app.info("Nothing to pause: s starts training"),
        },
        KeyCode::Char('x') => match (&app.phase, &app.run) {
            (Phase::Running | Phase::Paused, Some(run)) => {
                run.control.stop.store(true, Ordering::SeqCst);
                run.control.paused.store(false, Ordering::SeqCst);
                app.phase = Phase::Stopping;
                app.info("Stopping after the current step");
            }
            (Phase::WaitingForData, _) => {
                app.start_when_loaded = false;
                app.phase = Phase::Idle;
                app.info("Start cancelled");
            }
            _ => app.info("Nothing to stop"),
        },
        KeyCode::Char('w') => {
            app.chart_window = match app.chart_window {
                ChartWindow::WholeRun => ChartWindow::Recent,
                ChartWindow::Recent => ChartWindow::WholeRun,
            }
        }
        KeyCode::Up => app.selected_field = app.selected_field.saturating_sub(1),
        KeyCode::Down => app.selected_field = (app.selected_field + 1).min(Field::ALL.len() - 1),
        KeyCode::Left | KeyCode::Right | KeyCode::Enter if locked => {
            app.info("Settings are locked while a run is going")
        }
        KeyCode::Left | KeyCode::Right => app.settings.adjust(field, key.code == KeyCode::Right),
        KeyCode::Enter => {
            let text = if field == Field::Data { app.settings.data.clone() } else { app.settings.value(field) };
            app.editing = Some((field, text));
            app.info(format!("Editing {}: Enter sets it, Esc cancels", field.label()));
        }
        _ => {}
    }
    Vec::new()
}

fn on_draw_key(app: &mut App, key: KeyEvent) {
    let pad = &mut app.pad;
    match key.code {
        KeyCode::Left => pad.move_cursor(-1, 0),
        KeyCode::Right => pad.move_cursor(1, 0),
        KeyCode::Up => pad.move_cursor(0, -1),
        KeyCode::Down => pad.move_cursor(0, 1),
        KeyCode::Char(' ') => {
            let (x, y) = pad.cursor;
            pad.stamp(x, y, false);
        }
        KeyCode::Char('d') | KeyCode::Enter => {
            pad.pen_down = !pad.pen_down;
            if pad.pen_down {
                let (x, y) = pad.cursor;
                pad.stamp(x, y, false);
            }
        }
        KeyCode::Char('c') | KeyCode::Backspace | KeyCode::Delete => pad.clear(),
        KeyCode::Char('+') | KeyCode::Char('=') | KeyCode::Char(']') => pad.set_brush(pad.brush + 1),
        KeyCode::Char('-') | KeyCode::Char('[') => pad.set_brush(pad.brush.saturating_sub(1)),
        _ => return,
    }
    app.pad_changed();
}

fn on_explore_key(app: &mut App, key: KeyEvent) {
    let len = app.explore_indices().len();
    let e = &mut app.explore;
    let page = 10;
    match key.code {
        KeyCode::Up => e.selected = e.selected.saturating_sub(1),
        KeyCode::Down => e.selected += 1,
        KeyCode::PageUp => e.selected = e.selected.saturating_sub(page),
        KeyCode::PageDown => e.selected += page,
        KeyCode::Home => e.selected = 0,
        KeyCode::End => e.selected = len.saturating_sub(1),
        KeyCode::Char('m') => {
            e.only_wrong = !e.only_wrong;
            e.selected = 0;
        }
        _ => {}
    }
    let len = app.explore_indices().len();
    app.explore.selected = app.explore.selected.min(len.saturating_sub(1));
}

fn on_mouse(app: &mut App, mouse: MouseEvent) -> Vec<Effect> {
    let l = layout(app.screen);
    if l.too_small || app.prompt.is_some() {
        return Vec::new();
    }
    let (column, row) = (mouse.column, mouse.row);
    if let MouseEventKind::Down(MouseButton::Left) = mouse.kind {
        if let Some(view) = layout::tab_at(&l, column, row) {
            app.view = view;
            return Vec::new();
        }
    }
    match app.view {
        View::Draw => {
            let Some(pad) = l.draw.pad else { return Vec::new() };
            match mouse.kind {
                MouseEventKind::Down(button @ (MouseButton::Left | MouseButton::Right)) => {
                    if let Some((x, y)) = pad.pixel_at(column, row) {
                        app.pad.mouse_paint(x, y, false, button == MouseButton::Right);
                        app.pad_changed();
                    }
                }
                // A drag that leaves the pad keeps drawing along its edge.
                MouseEventKind::Drag(button @ (MouseButton::Left | MouseButton::Right))
                    if app.pad.last_drag.is_some() =>
                {
                    let (x, y) = pad.clamped_pixel_at(column, row);
                    app.pad.mouse_paint(x, y, true, button == MouseButton::Right);
                    app.pad_changed();
                }
                MouseEventKind::Up(_) => app.pad.last_drag = None,
                _ => {}
            }
        }
        View::Explore => {
            let list = l.explore.list;
            let inside = list.contains(Position::new(column, row));
            match mouse.kind {
                MouseEventKind::ScrollDown if inside => on_explore_key(app, KeyEvent::from(KeyCode::Down)),
                MouseEventKind::ScrollUp if inside => on_explore_key(app, KeyEvent::from(KeyCode::Up)),
                MouseEventKind::Down(MouseButton::Left) if inside && row > list.y && row + 1 < list.bottom() => {
                    let offset = super::render::list_offset(
                        app.explore.selected,
                        app.explore_indices().len(),
                        list.height.saturating_sub(2) as usize,
                    );
                    app.explore.selected = offset + (row - list.y - 1) as usize;
                    on_explore_key(app, KeyEvent::from(KeyCode::Null));
                }
                _ => {}
            }
        }
        View::Train => {}
    }
    Vec::new()
}
