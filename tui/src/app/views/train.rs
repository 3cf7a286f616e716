//! The train view: the run's settings (edited before it starts), its phase and progress from
//! the worker's events, its keys (start, pause, stop, settings) and its drawing (settings,
//! gauges, loss and accuracy charts). Leaves out the worker thread (worker.rs) and the keys
//! every view shares (update.rs).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use mnist_core::model::Metrics;
use mnist_core::train::Event;
use mnist_core::Config;
use ratatui::layout::{Alignment, Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Chart, Dataset, Gauge, GraphType, LegendPosition, Paragraph, Wrap};
use ratatui::Frame;

use crate::app::layout::TrainLayout;
use crate::app::models::Model;
use crate::app::msg::{Effect, RunCommand, RunEnd, RunSettings, WorkerMsg};
use crate::app::series::{downsample, format_duration, recent, Smoother, Throughput, RECENT_POINTS, WHOLE_RUN_POINTS};
use crate::app::shared::{DataState, Shared};
use crate::app::widgets::{plural, KeyHelp, ACCENT, TRAIN_COLOUR, VALIDATION_COLOUR};
use crate::cli::{choice_name, BackendChoice, DataArgs, PrecisionChoice};

/// The view's keys, for the legend.
pub const KEYS: &[KeyHelp] = &[
    ("s", "start"),
    ("p/space", "pause/resume"),
    ("x", "stop"),
    ("w", "whole run/recent"),
    ("↑↓", "setting"),
    ("←→", "change"),
    ("Enter", "type it"),
];

/// The keys while a setting is typed.
pub const EDIT_KEYS: &[KeyHelp] =
    &[("type", "the value"), ("Enter", "set"), ("Esc", "cancel"), ("Backspace", "delete"), ("Ctrl-U", "clear")];

/// What to do when the data cannot be had: said before the reason, which can be long.
const NO_DATA_HINT: &str = "Set Data to a local mnist.npz (Enter to edit) and press s";

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
    /// The last finished epoch's parameters, handed to the other views as their model.
    snapshot: Option<(usize, Arc<Vec<f32>>)>,
    pub throughput: Throughput,
    pub samples_per_second: Option<f64>,
    pub eta: Option<Duration>,
}

impl Run {
    fn new(epochs: usize) -> Self {
        Run {
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
            snapshot: None,
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

    fn apply(&mut self, event: &Event, at: Instant) {
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

/// The train view's state.
pub struct TrainView {
    pub settings: Settings,
    pub selected_field: usize,
    /// A settings field being typed: (field, text so far).
    pub editing: Option<(Field, String)>,
    pub phase: Phase,
    pub run: Option<Run>,
    pub chart_window: ChartWindow,
    start_when_loaded: bool,
}

impl TrainView {
    pub fn new(settings: Settings) -> Self {
        TrainView {
            settings,
            selected_field: 0,
            editing: None,
            phase: Phase::Idle,
            run: None,
            chart_window: ChartWindow::WholeRun,
            start_when_loaded: false,
        }
    }

    /// The settings cannot change: a run goes or waits for its data.
    fn locked(&self) -> bool {
        self.phase.is_active() || self.phase == Phase::WaitingForData
    }

    /// Starts a run on the loaded data, or loads the data first when its settings changed.
    fn start(&mut self, shared: &mut Shared) -> Vec<Effect> {
        let args = self.settings.data_args();
        match &shared.data {
            DataState::Ready { split, args: loaded, .. } if *loaded == args => {
                let split = split.clone();
                self.run = Some(Run::new(self.settings.epochs));
                self.phase = Phase::Running;
                shared.info("Training started");
                vec![Effect::StartTraining { settings: self.settings.run_settings(), split }]
            }
            DataState::Loading(loading) if *loading == args => {
                self.start_when_loaded = true;
                self.phase = Phase::WaitingForData;
                shared.info("Loading the data; training starts when it is ready");
                Vec::new()
            }
            _ => {
                shared.data = DataState::Loading(args.clone());
                self.start_when_loaded = true;
                self.phase = Phase::WaitingForData;
                shared.info("Loading the data; training starts when it is ready");
                vec![Effect::LoadData(args)]
            }
        }
    }

    /// The data finished loading (or failed): a start waiting for it goes ahead (or is off).
    pub fn on_data(&mut self, shared: &mut Shared) -> Vec<Effect> {
        match &shared.data {
            DataState::Ready { split, source, .. } => {
                let text = format!(
                    "Data ready: {} train and {} test images from {source}",
                    split.train.len(),
                    split.test.len()
                );
                shared.info(text);
                if std::mem::take(&mut self.start_when_loaded) {
                    return self.start(shared);
                }
            }
            DataState::Failed { message, .. } => {
                shared.error(format!("No data. {NO_DATA_HINT}. {message}"));
                if std::mem::take(&mut self.start_when_loaded) {
                    self.phase = Phase::Idle;
                }
            }
            DataState::Loading(_) => {}
        }
        Vec::new()
    }

    /// A report from the training worker.
    pub fn on_worker(&mut self, shared: &mut Shared, msg: WorkerMsg) {
        let Some(run) = self.run.as_mut() else { return };
        match msg {
            WorkerMsg::Ready { backend, device, note } => {
                (run.backend, run.device) = (backend.to_string(), device);
                if let Some(note) = note {
                    shared.info(note);
                }
            }
            WorkerMsg::Progress { event, at } => run.apply(&event, at),
            WorkerMsg::Snapshot { epoch, params } => {
                let params = Arc::new(params);
                run.snapshot = Some((epoch, params.clone()));
                let origin = format!("being trained (epoch {epoch})");
                if let Err(e) = shared.set_model(Model { config: Config::default(), params, origin }) {
                    shared.error(e);
                }
            }
            WorkerMsg::Done { end } => {
                let epochs_done = run.last_epoch.map_or(0, |(e, _, _)| e);
                let test = run.last_epoch.and_then(|(_, _, t)| t);
                // The model is the last finished epoch's (a snapshot), unless one was loaded since;
                // saving it is offered by a notice, not a prompt that would take the next keys.
                let mut offer = "";
                if let (Some((epoch, params)), Some(model)) = (&run.snapshot, &mut shared.model) {
                    if Arc::ptr_eq(params, &model.params) {
                        model.origin = format!("trained here ({})", plural(*epoch, "epoch"));
                        offer = " - e saves the model";
                    }
                }
                let result =
                    test.map_or(String::new(), |t| format!(": test accuracy {:.4}, loss {:.4}", t.accuracy, t.loss));
                match end {
                    RunEnd::Completed => {
                        self.phase = Phase::Completed;
                        shared.info(format!("Training finished{result}{offer}"));
                    }
                    RunEnd::Stopped => {
                        self.phase = Phase::Stopped;
                        let epochs = plural(epochs_done, "epoch");
                        shared.info(format!("Training stopped after {epochs}{result}{offer}"));
                    }
                    RunEnd::Failed(message) => {
                        self.phase = Phase::Failed(message.clone());
                        shared.error(format!("{message}{offer}"));
                    }
                }
            }
        }
    }

    /// What quitting asks of a running worker.
    pub fn quit_effects(&self) -> Vec<Effect> {
        if self.run.is_some() {
            vec![Effect::ControlRun(RunCommand::Stop)]
        } else {
            Vec::new()
        }
    }

    /// A key while a setting is typed.
    pub fn on_edit_key(&mut self, shared: &mut Shared, key: KeyEvent, is_chord: bool) {
        let Some((field, mut text)) = self.editing.take() else { return };
        match key.code {
            KeyCode::Enter => match self.settings.set_text(field, &text) {
                Ok(()) => shared.info(format!("{} set to {}", field.label(), self.settings.value(field))),
                Err(e) => shared.error(e),
            },
            KeyCode::Esc => shared.info("Edit cancelled"),
            KeyCode::Char('u') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                self.editing = Some((field, String::new()));
            }
            KeyCode::Backspace => {
                text.pop();
                self.editing = Some((field, text));
            }
            KeyCode::Char(c) if !is_chord => {
                text.push(c);
                self.editing = Some((field, text));
            }
            _ => self.editing = Some((field, text)),
        }
    }

    pub fn on_key(&mut self, shared: &mut Shared, key: KeyEvent) -> Vec<Effect> {
        let locked = self.locked();
        let field = Field::ALL[self.selected_field.min(Field::ALL.len() - 1)];
        match key.code {
            KeyCode::Char('s') if locked => shared.info("A run is already going: x stops it"),
            KeyCode::Char('s') => return self.start(shared),
            KeyCode::Char('p') | KeyCode::Char(' ') => match (&self.phase, &mut self.run) {
                (Phase::Running, Some(_)) => {
                    self.phase = Phase::Paused;
                    shared.info("Paused (after the current step): p resumes");
                    return vec![Effect::ControlRun(RunCommand::Pause)];
                }
                (Phase::Paused, Some(run)) => {
                    run.throughput.restart();
                    self.phase = Phase::Running;
                    shared.info("Resumed");
                    return vec![Effect::ControlRun(RunCommand::Resume)];
                }
                _ => shared.info("Nothing to pause: s starts training"),
            },
            KeyCode::Char('x') => match (&self.phase, &self.run) {
                (Phase::Running | Phase::Paused, Some(_)) => {
                    self.phase = Phase::Stopping;
                    shared.info("Stopping after the current step");
                    return vec![Effect::ControlRun(RunCommand::Stop)];
                }
                (Phase::WaitingForData, _) => {
                    self.start_when_loaded = false;
                    self.phase = Phase::Idle;
                    shared.info("Start cancelled");
                }
                _ => shared.info("Nothing to stop"),
            },
            KeyCode::Char('w') => {
                self.chart_window = match self.chart_window {
                    ChartWindow::WholeRun => ChartWindow::Recent,
                    ChartWindow::Recent => ChartWindow::WholeRun,
                }
            }
            KeyCode::Up => self.selected_field = self.selected_field.saturating_sub(1),
            KeyCode::Down => self.selected_field = (self.selected_field + 1).min(Field::ALL.len() - 1),
            KeyCode::Left | KeyCode::Right | KeyCode::Enter if locked => {
                shared.info("Settings are locked while a run is going")
            }
            KeyCode::Left | KeyCode::Right => self.settings.adjust(field, key.code == KeyCode::Right),
            KeyCode::Enter => {
                let text = if field == Field::Data { self.settings.data.clone() } else { self.settings.value(field) };
                self.editing = Some((field, text));
                shared.info(format!("Editing {}: Enter sets it, Esc cancels", field.label()));
            }
            _ => {}
        }
        Vec::new()
    }

    pub fn render(&self, frame: &mut Frame, t: &TrainLayout, shared: &Shared) {
        self.render_settings(frame, t.settings);
        self.render_progress(frame, t.progress, shared);
        self.render_charts(frame, t);
    }

    fn render_settings(&self, frame: &mut Frame, area: Rect) {
        let locked = self.locked();
        let mut lines = Vec::new();
        for (i, field) in Field::ALL.iter().enumerate() {
            let selected = i == self.selected_field;
            let value = match &self.editing {
                Some((f, text)) if f == field => format!("{text}_"),
                _ => self.settings.value(*field),
            };
            let style = if selected {
                Style::new().fg(Color::Black).bg(if locked { Color::Gray } else { ACCENT })
            } else {
                Style::new()
            };
            lines.push(Line::from(vec![
                Span::raw(if selected { "> " } else { "  " }),
                Span::styled(format!("{:<11}{value}", field.label()), style),
            ]));
        }
        lines.push(Line::styled(
            if locked { "locked while training" } else { "s starts a run" },
            Style::new().fg(Color::Gray),
        ));
        frame.render_widget(Paragraph::new(lines).block(Block::bordered().title("Settings")), area);
    }

    fn render_progress(&self, frame: &mut Frame, area: Rect, shared: &Shared) {
        let block = Block::bordered().title("Progress");
        let inner = block.inner(area);
        frame.render_widget(block, area);
        let row = |i: u16| Rect::new(inner.x, inner.y + i, inner.width, 1).intersection(inner);
        let phase = match &self.phase {
            Phase::Idle => "Not started".to_string(),
            Phase::WaitingForData => "Waiting for the data".into(),
            Phase::Running => "Running".into(),
            Phase::Paused => "Paused".into(),
            Phase::Stopping => "Stopping".into(),
            Phase::Completed => "Finished".into(),
            Phase::Stopped => "Stopped".into(),
            Phase::Failed(m) => format!("Failed: {m}"),
        };
        let data_line = match &shared.data {
            DataState::Loading(_) => "Data: loading...".to_string(),
            DataState::Ready { source, .. } => format!("Data: {source}"),
            DataState::Failed { .. } => format!("No data. {NO_DATA_HINT}."),
        };
        let data_style = if matches!(shared.data, DataState::Failed { .. }) {
            Style::new().fg(Color::LightRed)
        } else {
            Style::new()
        };
        let model_line =
            format!("Model for draw/explore: {}", shared.model.as_ref().map_or("none", |m| m.origin.as_str()));
        let Some(run) = &self.run else {
            // Before any run there is room to wrap a long "No data" reason (after what to do).
            let mut lines = vec![Line::from(phase), Line::styled(data_line, data_style)];
            if let DataState::Failed { message } = &shared.data {
                lines.push(Line::styled(format!("Why: {message}"), data_style));
            }
            lines.push(Line::from(model_line));
            frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
            return;
        };
        let where_ = if run.epoch > 0 {
            format!(" - epoch {}/{} - step {}/{}", run.epoch, run.epochs, run.step, run.steps_per_epoch)
        } else {
            String::new()
        };
        frame.render_widget(
            Paragraph::new(Line::styled(format!("{phase}{where_}"), Style::new().add_modifier(Modifier::BOLD))),
            row(0),
        );
        let epoch_label = format!("epoch {:.0}%", run.epoch_fraction() * 100.0);
        frame.render_widget(
            Gauge::default().ratio(run.epoch_fraction()).label(epoch_label).gauge_style(Style::new().fg(TRAIN_COLOUR)),
            row(1),
        );
        let eta = match (&self.phase, run.eta) {
            (Phase::Running, Some(eta)) => format!("ETA {}", format_duration(eta)),
            (Phase::Running, None) => "ETA after warm-up".into(),
            (Phase::Completed, _) => "done".into(),
            _ => String::new(),
        };
        let run_label = format!("run {:.0}%  {eta}", run.run_fraction() * 100.0);
        frame.render_widget(
            Gauge::default().ratio(run.run_fraction()).label(run_label).gauge_style(Style::new().fg(ACCENT)),
            row(2),
        );
        // The rows under the gauges; when the panel is narrow (80 columns) the long ones say
        // less or take two rows, so that the numbers stay whole.
        let fits = |text: &str| text.chars().count() <= inner.width as usize;
        let mut lines = Vec::new();
        let rate = match (&self.phase, run.samples_per_second) {
            (Phase::Running, Some(r)) => format!("{r:.0} samples/s"),
            _ => "- samples/s".into(),
        };
        let wide = format!("{rate} - backend {} - device {}", run.backend, run.device);
        lines.push(Line::from(match run.backend.is_empty() {
            true if self.phase.is_active() => format!("{rate} - starting"),
            true => String::new(),
            false if fits(&wide) => wide,
            false => format!("{rate} - {}", run.device),
        }));
        match run.last_epoch {
            Some((e, train, test)) => {
                let train = format!("Epoch {e}: loss {:.4} acc {:.4}", train.loss, train.accuracy);
                let test = test.map(|t| format!("val_loss {:.4} val_acc {:.4}", t.loss, t.accuracy));
                match test {
                    Some(test) if fits(&format!("{train} - {test}")) => lines.push(format!("{train} - {test}").into()),
                    Some(test) => lines.extend([train.into(), format!("  {test}").into()]),
                    None => lines.push(train.into()),
                }
            }
            None => lines.push("No epoch finished yet".into()),
        }
        lines.push(Line::styled(data_line, data_style));
        let short_model = format!("Model: {}", shared.model.as_ref().map_or("none", |m| m.origin.as_str()));
        lines.push(Line::from(if fits(&model_line) { model_line } else { short_model }));
        for (i, line) in lines.into_iter().enumerate() {
            frame.render_widget(Paragraph::new(line), row(3 + i as u16));
        }
    }

    fn render_charts(&self, frame: &mut Frame, t: &TrainLayout) {
        let window = match self.chart_window {
            ChartWindow::WholeRun => "whole run",
            ChartWindow::Recent => "recent",
        };
        let (train_loss, val_loss, train_acc, val_acc) = match &self.run {
            Some(r) => (&r.train_loss[..], &r.val_loss[..], &r.train_accuracy[..], &r.val_accuracy[..]),
            None => (&[][..], &[][..], &[][..], &[][..]),
        };
        let epochs = self.run.as_ref().map_or(self.settings.epochs, |r| r.epochs);
        let loss = ChartSpec {
            title: format!("Loss ({window})"),
            y_title: "loss",
            train: train_loss,
            validation: val_loss,
            accuracy: false,
        };
        render_chart(frame, t.loss, &loss, self.chart_window, epochs);
        let accuracy = ChartSpec {
            title: format!("Accuracy ({window})"),
            y_title: "accuracy",
            train: train_acc,
            validation: val_acc,
            accuracy: true,
        };
        render_chart(frame, t.accuracy, &accuracy, self.chart_window, epochs);
    }
}

struct ChartSpec<'a> {
    title: String,
    y_title: &'static str,
    train: &'a [(f64, f64)],
    validation: &'a [(f64, f64)],
    accuracy: bool,
}

fn render_chart(frame: &mut Frame, area: Rect, spec: &ChartSpec, window: ChartWindow, epochs: usize) {
    let block = Block::bordered().title(spec.title.as_str());
    if spec.train.is_empty() && spec.validation.is_empty() {
        let text = Paragraph::new("No training yet: s starts a run")
            .alignment(Alignment::Center)
            .style(Style::new().fg(Color::Gray))
            .block(block);
        frame.render_widget(text, area);
        return;
    }
    let (train, x_bounds) = match window {
        ChartWindow::WholeRun => (downsample(spec.train, WHOLE_RUN_POINTS), [0.0, epochs.max(1) as f64]),
        ChartWindow::Recent => {
            let points = recent(spec.train, RECENT_POINTS).to_vec();
            let first = points.first().map_or(0.0, |p| p.0);
            let last = points.last().map_or(first, |p| p.0).max(spec.validation.last().map_or(0.0, |p| p.0));
            (points, [first, if last > first { last } else { first + 0.01 }])
        }
    };
    let validation: Vec<(f64, f64)> =
        spec.validation.iter().copied().filter(|p| p.0 >= x_bounds[0] && p.0 <= x_bounds[1]).collect();
    let values = train.iter().chain(&validation).map(|p| p.1).filter(|v| v.is_finite());
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if lo > hi { (0.0, 1.0) } else { (lo, hi) };
    let y_bounds = if spec.accuracy {
        let lo = (lo * 20.0).floor() / 20.0;
        [lo.min(0.95), 1.0]
    } else {
        [0.0, (hi * 1.1).max(0.01)]
    };
    let digits = if spec.accuracy { 3 } else { 2 };
    let y_labels = [y_bounds[0], (y_bounds[0] + y_bounds[1]) / 2.0, y_bounds[1]].map(|v| format!("{v:.digits$}"));
    let x_labels = [x_bounds[0], (x_bounds[0] + x_bounds[1]) / 2.0, x_bounds[1]].map(|v| format!("{v:.1}"));
    let datasets = vec![
        Dataset::default()
            .name("train (smoothed)")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::new().fg(TRAIN_COLOUR))
            .data(&train),
        Dataset::default()
            .name("validation")
            .marker(Marker::Dot)
            .graph_type(GraphType::Line)
            .style(Style::new().fg(VALIDATION_COLOUR))
            .data(&validation),
    ];
    let chart = Chart::new(datasets)
        .block(block)
        // Keep the legend (which colour is which) unless the chart is tiny.
        .hidden_legend_constraints((Constraint::Percentage(60), Constraint::Percentage(60)))
        // In the corner the curve leaves empty: loss falls, accuracy rises.
        .legend_position(Some(if spec.accuracy { LegendPosition::BottomRight } else { LegendPosition::TopRight }))
        .x_axis(Axis::default().title("epoch").bounds(x_bounds).labels(x_labels).style(Style::new().fg(Color::Gray)))
        .y_axis(
            Axis::default().title(spec.y_title).bounds(y_bounds).labels(y_labels).style(Style::new().fg(Color::Gray)),
        );
    frame.render_widget(chart, area);
}
