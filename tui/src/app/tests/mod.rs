//! The app's state rules and screens, driven by injected messages (keys, mouse events, worker
//! reports as values) and drawn on ratatui's TestBackend, whose buffer is asserted on: the
//! helpers and what every view shares here, each view's own rules in the file named after it.
//! Leaves out the real terminal and threads (tests/tui_tmux.rs runs the real binary).

mod draw;
mod explore;
mod train;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use mnist_core::model::Metrics;
use mnist_core::train::Event;
use mnist_core::{Dataset, Split};
use ratatui::backend::TestBackend;
use ratatui::layout::Rect;
use ratatui::Terminal;

use super::layout::{layout, View};
use super::models::{self, Predictions};
use super::msg::{DataMsg, Effect, ExploreMsg, Msg, RunEnd, WorkerMsg};
use super::shared::{DataState, StatusKind};
use super::update::{update, App, CheckpointAction, Prompt};
use super::views;
use super::views::train::{ChartWindow, Field, Phase, Settings};
use super::worker::RunControl;
use super::{render, FrameLimiter, FRAME_INTERVAL};
use crate::cli::{BackendChoice, DataArgs, PrecisionChoice};

pub(super) fn settings() -> Settings {
    Settings {
        epochs: 2,
        batch_size: 128,
        backend: BackendChoice::Cpu,
        precision: PrecisionChoice::F32,
        seed: 1,
        data: "data/mnist.npz".into(),
        limit: 0,
        threads: 1,
        download: DataArgs { data: None, data_url: None, sha256: None, cache_dir: None, limit: None },
    }
}

pub(super) fn new_app() -> App {
    let (app, effects) = App::new(settings(), models::shipped(), "out".into());
    assert!(
        matches!(&effects[..], [Effect::LoadData(args)] if args.data.as_deref() == Some("data/mnist.npz".as_ref())),
        "{effects:?}"
    );
    app
}

/// Test images whose bright column encodes the label.
pub(super) fn tiny_split(n: usize) -> Arc<Split> {
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    let images = labels
        .iter()
        .flat_map(|&l| (0..784).map(move |p| if p % 28 == 4 + 2 * l as usize { 250 } else { 0 }))
        .collect();
    let data = Dataset::new(images, labels, 28, 28, 1).unwrap();
    Arc::new(Split { train: data.clone(), test: data })
}

/// An app whose data (`n` images, labels i % 10) has loaded, in the explore view with the
/// predictions `classes` (confidence 0.75).
pub(super) fn exploring(n: usize, classes: Vec<u8>) -> App {
    let mut app = new_app();
    let args = app.train.settings.data_args();
    send(&mut app, Msg::Data(DataMsg::Loaded { split: tiny_split(n), source: "data/mnist.npz".into(), args }));
    let generation = match &key(&mut app, KeyCode::Char('3'))[..] {
        [Effect::PredictAll { generation, .. }] => *generation,
        other => panic!("{other:?}"),
    };
    let predictions = Predictions { confidence: vec![0.75; classes.len()], classes };
    send(&mut app, Msg::Explore(ExploreMsg::Done { generation, result: Ok(predictions) }));
    app
}

/// The confusion matrix's rows as drawn: every run of cells between box borders that reads as
/// a class followed by ten counts.
pub(super) fn matrix_rows(screen: &str) -> Vec<Vec<u32>> {
    let mut rows = Vec::new();
    for line in screen.lines() {
        for segment in line.split('│') {
            let numbers: Vec<u32> = segment.split_whitespace().map_while(|t| t.parse().ok()).collect();
            if numbers.len() == 11 && segment.split_whitespace().count() == 11 && numbers[0] as usize == rows.len() {
                rows.push(numbers[1..].to_vec());
            }
        }
    }
    rows
}

/// Every key of `keys` with its description is on the screen.
pub(super) fn assert_legend(screen: &str, keys: &[(&str, &str)]) {
    for (k, what) in keys {
        assert_shows(screen, &[&format!("{k} {what}")]);
    }
}

/// An app whose data has loaded.
pub(super) fn app_with_data() -> App {
    let mut app = new_app();
    let args = app.train.settings.data_args();
    send(&mut app, Msg::Data(DataMsg::Loaded { split: tiny_split(20), source: "data/mnist.npz".into(), args }));
    app
}

pub(super) fn send(app: &mut App, msg: Msg) -> Vec<Effect> {
    update(app, msg)
}

pub(super) fn key(app: &mut App, code: KeyCode) -> Vec<Effect> {
    update(app, Msg::Key(KeyEvent::from(code)))
}

pub(super) fn chars(app: &mut App, text: &str) {
    for c in text.chars() {
        key(app, KeyCode::Char(c));
    }
}

/// Backspace `count` times: erases the end of the text being edited.
pub(super) fn erase(app: &mut App, count: usize) {
    for _ in 0..count {
        key(app, KeyCode::Backspace);
    }
}

pub(super) fn mouse(app: &mut App, kind: MouseEventKind, (column, row): (u16, u16)) {
    update(app, Msg::Mouse(MouseEvent { kind, column, row, modifiers: KeyModifiers::NONE }));
}

pub(super) fn screen(app: &App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| render::render(frame, app)).unwrap();
    let buffer = terminal.backend().buffer();
    let mut text = String::new();
    for y in 0..buffer.area.height {
        for x in 0..buffer.area.width {
            text.push_str(buffer.cell((x, y)).map_or(" ", |c| c.symbol()));
        }
        text.push('\n');
    }
    text
}

pub(super) fn assert_shows(screen: &str, expected: &[&str]) {
    for e in expected {
        assert!(screen.contains(e), "{e:?} is not on the screen:\n{screen}");
    }
}

/// Starts a run; returns the controls a worker would hold for it.
pub(super) fn start_run(app: &mut App) -> RunControl {
    let effects = key(app, KeyCode::Char('s'));
    match &effects[..] {
        [Effect::StartTraining { settings, .. }] => {
            assert_eq!(settings.epochs, app.train.settings.epochs);
            RunControl::default()
        }
        other => panic!("{other:?}"),
    }
}

/// A key whose run commands are applied to `control`, as the event loop's workers do.
pub(super) fn key_to_run(app: &mut App, code: KeyCode, control: &RunControl) -> Vec<Effect> {
    let effects = key(app, code);
    for effect in &effects {
        if let Effect::ControlRun(command) = effect {
            control.apply(*command);
        }
    }
    effects
}

pub(super) fn progress(app: &mut App, event: Event, at: Instant) {
    send(app, Msg::Worker(WorkerMsg::Progress { event, at }));
}

pub(super) fn metrics(loss: f32, accuracy: f32, samples: usize) -> Metrics {
    Metrics { loss, accuracy, samples }
}

/// A run of 2 epochs of 1000 samples in 10 steps, through the middle of epoch 2.
pub(super) fn feed_a_run(app: &mut App) -> Instant {
    let t0 = Instant::now();
    send(app, Msg::Worker(WorkerMsg::Ready { backend: "cpu", device: "cpu (1 threads)".into(), note: None }));
    progress(app, Event::Started { epochs: 2, steps_per_epoch: 10, train_samples: 1000, test_samples: 20 }, t0);
    progress(app, Event::EpochStarted { epoch: 1 }, t0);
    for step in 1..=10 {
        let running = (step < 10).then(|| metrics(2.0 - step as f32 * 0.1, 0.1 * step as f32, step * 100));
        progress(
            app,
            Event::Step { epoch: 1, step, steps_per_epoch: 10, samples_done: step * 100, running },
            t0 + Duration::from_millis(500 * step as u64),
        );
    }
    progress(
        app,
        Event::EpochEnded { epoch: 1, train: metrics(1.5, 0.5, 1000), test: Some(metrics(0.9, 0.8, 20)) },
        t0 + Duration::from_secs(5),
    );
    send(app, Msg::Worker(WorkerMsg::Snapshot { epoch: 1, params: models::shipped().unwrap().params.to_vec() }));
    progress(app, Event::EpochStarted { epoch: 2 }, t0 + Duration::from_secs(5));
    for step in 1..=5 {
        let running = Some(metrics(0.8, 0.8, step * 100));
        progress(
            app,
            Event::Step { epoch: 2, step, steps_per_epoch: 10, samples_done: step * 100, running },
            t0 + Duration::from_millis(5000 + 500 * step as u64),
        );
    }
    t0
}

#[test]
fn views_switch_by_number_tab_and_click_on_the_tab() {
    let mut app = new_app();
    key(&mut app, KeyCode::Char('2'));
    assert_eq!(app.view, View::Draw);
    key(&mut app, KeyCode::Tab);
    assert_eq!(app.view, View::Explore);
    key(&mut app, KeyCode::BackTab);
    assert_eq!(app.view, View::Draw);
    let tab = layout(app.screen).tabs[0];
    mouse(&mut app, MouseEventKind::Down(MouseButton::Left), (tab.x + 1, tab.y));
    assert_eq!(app.view, View::Train);
}

#[test]
fn quitting_is_immediate_when_idle_and_asks_first_during_training() {
    let mut app = app_with_data();
    key(&mut app, KeyCode::Char('q'));
    assert!(app.quit);

    let mut app = app_with_data();
    let control = start_run(&mut app);
    key(&mut app, KeyCode::Char('q'));
    assert!(!app.quit);
    assert_eq!(app.prompt, Some(Prompt::ConfirmQuit));
    assert_shows(
        &screen(&app, 120, 40),
        &["Quit?", "Training is running. Quit and stop it?", "y quit and stop training"],
    );
    key_to_run(&mut app, KeyCode::Char('n'), &control);
    assert!(!app.quit && app.prompt.is_none());
    assert!(!control.is_stopping());
    // Ctrl-C asks too; a second Ctrl-C quits.
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    send(&mut app, Msg::Key(ctrl_c));
    assert_eq!(app.prompt, Some(Prompt::ConfirmQuit));
    key_to_run(&mut app, KeyCode::Char('y'), &control);
    assert!(app.quit);
    assert!(control.is_stopping(), "quitting stops the worker");
}

#[test]
fn no_data_is_a_clear_message_in_every_view_not_a_crash() {
    let mut app = new_app();
    let args = app.train.settings.data_args();
    key(&mut app, KeyCode::Char('s'));
    send(
        &mut app,
        Msg::Data(DataMsg::Failed { message: "cannot use --data data/mnist.npz: No such file".into(), args }),
    );
    assert_eq!(app.train.phase, Phase::Idle);
    assert_eq!(app.shared.status.1, StatusKind::Error);
    // What to do first, then why (issue 17 #5).
    assert_shows(
        &screen(&app, 120, 40),
        &["No data. Set Data to a local mnist.npz", "cannot use --data data/mnist.npz: No such file"],
    );
    key(&mut app, KeyCode::Char('3'));
    assert_shows(&screen(&app, 120, 40), &["No test data: cannot use --data"]);
    // Trying again loads again.
    key(&mut app, KeyCode::Char('1'));
    assert!(matches!(&key(&mut app, KeyCode::Char('s'))[..], [Effect::LoadData(_)]));
    // The draw view still works with the shipped model.
    key(&mut app, KeyCode::Char('2'));
    key(&mut app, KeyCode::Char(' '));
    app.refresh_prediction();
    assert!(app.draw.probabilities.is_some());
}

#[test]
fn load_and_save_prompts_become_effects_and_report_errors() {
    let mut app = new_app();
    key(&mut app, KeyCode::Char('o'));
    assert!(
        matches!(&app.prompt, Some(Prompt::Checkpoint(p)) if p.action == CheckpointAction::Load && p.input == "out/mnist_cnn")
    );
    assert_shows(&screen(&app, 120, 40), &["Load a model", "> out/mnist_cnn_"]);
    erase(&mut app, "mnist_cnn".len());
    chars(&mut app, "other");
    let effects = key(&mut app, KeyCode::Enter);
    assert!(matches!(&effects[..], [Effect::LoadModel { prefix }] if prefix == "out/other"), "{effects:?}");
    send(&mut app, Msg::ModelLoaded(Err("cannot read model file out/other-symbol.json".into())));
    assert_eq!(app.shared.status.1, StatusKind::Error);
    assert!(screen(&app, 120, 40).contains("cannot read model file out/other-symbol.json"));
    key(&mut app, KeyCode::Esc); // the load prompt stays open after a failure (issue 17 #7)
    key(&mut app, KeyCode::Char('e'));
    assert!(matches!(&app.prompt, Some(Prompt::Checkpoint(p)) if p.action == CheckpointAction::Save));
    key(&mut app, KeyCode::Esc);
    assert!(app.prompt.is_none());
    // Esc quickly followed by a key arrives as Alt+key: it is not typed into a prompt.
    key(&mut app, KeyCode::Char('o'));
    send(&mut app, Msg::Key(KeyEvent::new(KeyCode::Char('2'), KeyModifiers::ALT)));
    assert_eq!(prompt_input(&app).as_deref(), Some("out/mnist_cnn"));
}

#[test]
fn redraws_are_capped_at_about_20_per_second() {
    let mut frames = FrameLimiter::default();
    let t0 = Instant::now();
    assert!(!frames.should_draw(t0), "nothing changed");
    frames.changed();
    assert!(frames.should_draw(t0));
    let mut drawn = 1;
    // 1000 changes over one second give at most 21 redraws.
    for ms in 1..=1000 {
        let now = t0 + Duration::from_millis(ms);
        frames.changed();
        if frames.should_draw(now) {
            drawn += 1;
        }
        assert!(frames.wait(now) <= FRAME_INTERVAL);
    }
    assert!((19..=21).contains(&drawn), "{drawn}");
}

/// Every view, in every state worth drawing, at every size from nothing up: never a panic,
/// and below the minimum a message saying so.
#[test]
fn any_window_size_renders_without_panicking() {
    let mut apps = vec![new_app()];
    let mut running = app_with_data();
    start_run(&mut running);
    feed_a_run(&mut running);
    running.draw.pad.line((2, 2), (25, 25), false);
    running.refresh_prediction();
    apps.push(running);
    let mut explore = app_with_data();
    let effects = key(&mut explore, KeyCode::Char('3'));
    if let [Effect::PredictAll { generation, .. }] = &effects[..] {
        let predictions = Predictions { classes: vec![1; 20], confidence: vec![0.5; 20] };
        send(&mut explore, Msg::Explore(ExploreMsg::Done { generation: *generation, result: Ok(predictions) }));
    }
    apps.push(explore);
    let mut prompting = new_app();
    key(&mut prompting, KeyCode::Char('o'));
    apps.push(prompting);
    for app in &mut apps {
        for view in View::ALL {
            app.view = view;
            for width in (0..=130).step_by(3) {
                for height in 0..=45 {
                    let shown = screen(app, width, height);
                    if width >= 40 && height >= 12 {
                        assert!(!shown.contains("Window too small"));
                    } else if width >= 30 && height >= 4 {
                        assert!(shown.contains("Window too"), "{width}x{height}:\n{shown}");
                    }
                }
            }
        }
    }
    // A drag event that arrives at a size with no pad is ignored.
    let mut app = new_app();
    app.view = View::Draw;
    app.screen = Rect::new(0, 0, 41, 13);
    mouse(&mut app, MouseEventKind::Down(MouseButton::Left), (5, 5));
    assert!(app.draw.pad.is_blank());
}

#[test]
fn the_shipped_model_is_in_use_from_the_start() {
    let app = new_app();
    assert!(app.shared.model.as_ref().unwrap().origin.starts_with("shipped"));
    let shown = screen(&app, 120, 40);
    assert_shows(
        &shown,
        &[
            "1 Train",
            "2 Draw",
            "3 Explore",
            "Settings",
            "Epochs",
            "Data       data/mnist.npz",
            "Not started",
            "Data: loading",
        ],
    );
    assert_shows(&shown, &["s start", "p/space pause/resume", "x stop", "q quit", "Tab/1-3 views", "No training yet"]);
}

#[test]
fn a_new_app_reports_a_bad_model_instead_of_failing() {
    let (mut app, _) = App::new(settings(), Err("the model is unreadable".into()), "out".into());
    assert_eq!(app.shared.status, ("the model is unreadable".into(), StatusKind::Error));
    app.view = View::Draw;
    assert!(screen(&app, 120, 40).contains("No model: o loads one"));
    key(&mut app, KeyCode::Char('e'));
    assert!(app.prompt.is_none() && app.shared.status.0.contains("No model to save"));
}

/// Issue 17 #6: Ctrl or Alt with a key is not the key: Ctrl-S starts no run, Ctrl-X stops none,
/// Alt-q does not quit, Alt-2 switches no view, Alt-c clears no pad; Shift-Tab and Ctrl-C work.
#[test]
fn control_and_alt_with_a_key_are_not_the_key() {
    let chord = |c: char, modifiers| Msg::Key(KeyEvent::new(KeyCode::Char(c), modifiers));
    let mut app = app_with_data();
    assert!(send(&mut app, chord('s', KeyModifiers::CONTROL)).is_empty());
    assert_eq!(app.train.phase, Phase::Idle);
    start_run(&mut app);
    for (c, modifiers) in [
        ('x', KeyModifiers::CONTROL),
        ('p', KeyModifiers::CONTROL),
        ('w', KeyModifiers::CONTROL),
        ('x', KeyModifiers::ALT),
        ('q', KeyModifiers::ALT),
        ('q', KeyModifiers::CONTROL),
        ('2', KeyModifiers::ALT),
        ('e', KeyModifiers::CONTROL),
    ] {
        assert!(send(&mut app, chord(c, modifiers)).is_empty(), "{c} with {modifiers:?}");
    }
    send(&mut app, Msg::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::ALT)));
    assert_eq!(app.train.phase, Phase::Running);
    assert_eq!(app.train.chart_window, ChartWindow::WholeRun);
    assert!(app.train.editing.is_none() && app.prompt.is_none() && !app.quit);
    assert_eq!(app.view, View::Train);

    key(&mut app, KeyCode::Char('2'));
    key(&mut app, KeyCode::Char(' '));
    send(&mut app, chord('c', KeyModifiers::ALT));
    send(&mut app, Msg::Key(KeyEvent::new(KeyCode::Down, KeyModifiers::CONTROL)));
    assert!(!app.draw.pad.is_blank());
    assert_eq!(app.draw.pad.cursor, (14, 14));
    send(&mut app, Msg::Key(KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT)));
    assert_eq!(app.view, View::Train);
    send(&mut app, chord('c', KeyModifiers::CONTROL));
    assert_eq!(app.prompt, Some(Prompt::ConfirmQuit));
}

/// What the save or load prompt holds typed, if one is open.
fn prompt_input(app: &App) -> Option<String> {
    match &app.prompt {
        Some(Prompt::Checkpoint(p)) => Some(p.input.clone()),
        _ => None,
    }
}

/// The screen's text with box borders gone and its rows joined: wrapped text reads whole.
fn unwrapped(screen: &str) -> String {
    let rows: Vec<&str> = screen.lines().map(|l| l.trim_matches(|c: char| c == '│' || c.is_whitespace())).collect();
    rows.join(" ")
}

/// Issue 17 #7: a prefix ending in / is a folder (FOLDER/mnist_cnn); a failed save or load keeps
/// the prompt open with the typed path and the error, whole (wrapped) and without a command-line
/// flag; Ctrl-U clears the field.
#[test]
fn checkpoint_prompts_take_folders_keep_the_path_on_failure_and_clear_with_ctrl_u() {
    let ctrl_u = Msg::Key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
    let mut app = new_app();
    key(&mut app, KeyCode::Char('e'));
    send(&mut app, ctrl_u.clone());
    assert_eq!(prompt_input(&app).as_deref(), Some(""));
    chars(&mut app, "models/");
    let effects = key(&mut app, KeyCode::Enter);
    assert!(matches!(&effects[..], [Effect::SaveModel { prefix, .. }] if prefix == "models/mnist_cnn"), "{effects:?}");
    send(&mut app, Msg::ModelSaved(Err("cannot create models: Permission denied (os error 13)".into())));
    assert_eq!(prompt_input(&app).as_deref(), Some("models/"), "the prompt stays open with the path");
    assert_shows(&screen(&app, 80, 24), &["> models/_", "cannot create models: Permission denied (os error 13)"]);
    erase(&mut app, 1);
    chars(&mut app, "/m");
    let effects = key(&mut app, KeyCode::Enter);
    assert!(matches!(&effects[..], [Effect::SaveModel { prefix, .. }] if prefix == "models/m"), "{effects:?}");
    send(&mut app, Msg::ModelSaved(Ok("models/m-symbol.json and models/m-0000.params".into())));
    assert!(app.prompt.is_none());
    assert!(app.shared.status.0.starts_with("Saved the model"));

    // A load that fails: the real error, as models::load gives it.
    key(&mut app, KeyCode::Char('o'));
    send(&mut app, ctrl_u);
    chars(&mut app, "/nonexistent/m");
    let effects = key(&mut app, KeyCode::Enter);
    let [Effect::LoadModel { prefix }] = &effects[..] else { panic!("{effects:?}") };
    let error = models::load(prefix).unwrap_err();
    assert!(!error.contains("--"), "no command-line flag in the app: {error}");
    send(&mut app, Msg::ModelLoaded(Err(error.clone())));
    assert_eq!(prompt_input(&app).as_deref(), Some("/nonexistent/m"));
    let shown = screen(&app, 80, 24);
    assert!(unwrapped(&shown).contains(&error), "{error:?} is not whole on the screen:\n{shown}");
    // Typed settings clear with Ctrl-U too.
    key(&mut app, KeyCode::Esc);
    key(&mut app, KeyCode::Enter);
    send(&mut app, Msg::Key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL)));
    assert_eq!(app.train.editing, Some((Field::Epochs, String::new())));
}

#[test]
fn a_typed_folder_is_a_folder_of_mnist_cnn() {
    use super::update::checkpoint_prefix;
    assert_eq!(checkpoint_prefix(" out/m ").as_deref(), Ok("out/m"));
    assert_eq!(checkpoint_prefix("out/").as_deref(), Ok("out/mnist_cnn"));
    assert_eq!(checkpoint_prefix(".").as_deref(), Ok("./mnist_cnn"));
    assert_eq!(checkpoint_prefix("a/..").as_deref(), Ok("a/../mnist_cnn"));
    assert_eq!(checkpoint_prefix("/").as_deref(), Ok("/mnist_cnn"));
    assert!(checkpoint_prefix("  ").unwrap_err().contains("Type a checkpoint prefix"));
}

/// A checkpoint that reads but cannot be set up (its parameters do not fit) is a failed load:
/// the model stays, and the prompt stays open with the reason.
#[test]
fn a_model_that_cannot_be_set_up_is_a_failed_load() {
    let mut app = new_app();
    key(&mut app, KeyCode::Char('o'));
    key(&mut app, KeyCode::Enter);
    let broken =
        models::Model { config: mnist_core::Config::default(), params: Arc::new(vec![0.0; 10]), origin: "x".into() };
    send(&mut app, Msg::ModelLoaded(Ok(broken)));
    assert!(app.shared.model.as_ref().unwrap().origin.starts_with("shipped"));
    assert_eq!(app.shared.status.1, StatusKind::Error);
    assert!(
        matches!(&app.prompt, Some(Prompt::Checkpoint(p)) if p.error.as_deref().is_some_and(|e| e.contains("cannot set up the model"))),
        "{:?}",
        app.prompt
    );
}
