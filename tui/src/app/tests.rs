//! The app's state rules and screens, driven by injected messages (keys, mouse events, worker
//! reports as values) and drawn on ratatui's TestBackend, whose buffer is asserted on.
//! Leaves out the real terminal and threads (tests/tui_tmux.rs runs the real binary).

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
use super::update::{update, App, Prompt};
use super::views::train::{ChartWindow, Field, Phase, Settings};
use super::worker::RunControl;
use super::{render, FrameLimiter, FRAME_INTERVAL};
use crate::cli::{BackendChoice, DataArgs, PrecisionChoice};

fn settings() -> Settings {
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

fn new_app() -> App {
    let (app, effects) = App::new(settings(), models::shipped(), "out".into());
    assert!(
        matches!(&effects[..], [Effect::LoadData(args)] if args.data.as_deref() == Some("data/mnist.npz".as_ref())),
        "{effects:?}"
    );
    app
}

/// Test images whose bright column encodes the label.
fn tiny_split(n: usize) -> Arc<Split> {
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    let images = labels
        .iter()
        .flat_map(|&l| (0..784).map(move |p| if p % 28 == 4 + 2 * l as usize { 250 } else { 0 }))
        .collect();
    let data = Dataset::new(images, labels, 28, 28, 1).unwrap();
    Arc::new(Split { train: data.clone(), test: data })
}

/// An app whose data has loaded.
fn app_with_data() -> App {
    let mut app = new_app();
    let args = app.train.settings.data_args();
    send(&mut app, Msg::Data(DataMsg::Loaded { split: tiny_split(20), source: "data/mnist.npz".into(), args }));
    app
}

fn send(app: &mut App, msg: Msg) -> Vec<Effect> {
    update(app, msg)
}

fn key(app: &mut App, code: KeyCode) -> Vec<Effect> {
    update(app, Msg::Key(KeyEvent::from(code)))
}

fn chars(app: &mut App, text: &str) {
    for c in text.chars() {
        key(app, KeyCode::Char(c));
    }
}

/// Backspace `count` times: erases the end of the text being edited.
fn erase(app: &mut App, count: usize) {
    for _ in 0..count {
        key(app, KeyCode::Backspace);
    }
}

fn mouse(app: &mut App, kind: MouseEventKind, (column, row): (u16, u16)) {
    update(app, Msg::Mouse(MouseEvent { kind, column, row, modifiers: KeyModifiers::NONE }));
}

fn screen(app: &App, width: u16, height: u16) -> String {
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

fn assert_shows(screen: &str, expected: &[&str]) {
    for e in expected {
        assert!(screen.contains(e), "{e:?} is not on the screen:\n{screen}");
    }
}

/// Starts a run; returns the controls a worker would hold for it.
fn start_run(app: &mut App) -> RunControl {
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
fn key_to_run(app: &mut App, code: KeyCode, control: &RunControl) -> Vec<Effect> {
    let effects = key(app, code);
    for effect in &effects {
        if let Effect::ControlRun(command) = effect {
            control.apply(*command);
        }
    }
    effects
}

fn progress(app: &mut App, event: Event, at: Instant) {
    send(app, Msg::Worker(WorkerMsg::Progress { event, at }));
}

fn metrics(loss: f32, accuracy: f32, samples: usize) -> Metrics {
    Metrics { loss, accuracy, samples }
}

/// A run of 2 epochs of 1000 samples in 10 steps, through the middle of epoch 2.
fn feed_a_run(app: &mut App) -> Instant {
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
fn settings_change_with_arrows_and_typing_and_lock_while_running() {
    let mut app = app_with_data();
    key(&mut app, KeyCode::Right);
    assert_eq!(app.train.settings.epochs, 3);
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Right);
    assert_eq!(app.train.settings.batch_size, 256);
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Right);
    assert_eq!(app.train.settings.backend, BackendChoice::Cuda);
    // Precision goes round f32, bf16, f16; typed, it takes those names only.
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Left);
    assert_eq!(app.train.settings.precision, PrecisionChoice::F16);
    assert_shows(&screen(&app, 120, 40), &["Precision  f16"]);
    key(&mut app, KeyCode::Enter);
    erase(&mut app, 3);
    chars(&mut app, "fp8");
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.train.settings.precision, PrecisionChoice::F16);
    assert!(app.shared.status.0.contains("precision must be f32, bf16 or f16"), "{}", app.shared.status.0);
    assert!(app.train.editing.is_none());
    key(&mut app, KeyCode::Enter);
    erase(&mut app, 3);
    chars(&mut app, "bf16");
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.train.settings.precision, PrecisionChoice::Bf16);
    key(&mut app, KeyCode::Up);
    // Typing a value: Enter starts, Backspace deletes, Enter sets.
    key(&mut app, KeyCode::Up);
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.train.editing, Some((Field::BatchSize, "256".into())));
    assert_shows(&screen(&app, 120, 40), &["Batch size 256_", "Enter set"]);
    erase(&mut app, 3);
    chars(&mut app, "64");
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.train.settings.batch_size, 64);
    assert!(app.train.editing.is_none());
    // A bad value is refused with a reason; Esc cancels.
    key(&mut app, KeyCode::Enter);
    chars(&mut app, "x");
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.train.settings.batch_size, 64);
    assert_eq!(app.shared.status.1, StatusKind::Error);
    assert!(app.shared.status.0.contains("batch size must be"), "{}", app.shared.status.0);
    key(&mut app, KeyCode::Enter);
    chars(&mut app, "9");
    key(&mut app, KeyCode::Esc);
    assert_eq!(app.train.settings.batch_size, 64);
    // The data path takes any text, q included.
    for _ in 0..4 {
        key(&mut app, KeyCode::Down);
    }
    key(&mut app, KeyCode::Enter);
    erase(&mut app, "data/mnist.npz".len());
    chars(&mut app, "/q/mnist.npz");
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.train.settings.data, "/q/mnist.npz");
    assert!(!app.quit);

    let mut app = app_with_data();
    start_run(&mut app);
    key(&mut app, KeyCode::Right);
    assert_eq!(app.train.settings.epochs, 2, "locked");
    key(&mut app, KeyCode::Enter);
    assert!(app.train.editing.is_none());
}

#[test]
fn start_waits_for_the_data_and_reloads_it_when_its_settings_changed() {
    let mut app = new_app();
    assert!(key(&mut app, KeyCode::Char('s')).is_empty());
    assert_eq!(app.train.phase, Phase::WaitingForData);
    let args = app.train.settings.data_args();
    let effects = send(&mut app, Msg::Data(DataMsg::Loaded { split: tiny_split(20), source: "x".into(), args }));
    assert!(matches!(&effects[..], [Effect::StartTraining { .. }]), "{effects:?}");
    assert_eq!(app.train.phase, Phase::Running);

    // A new limit means other data: it is loaded first, and a stale reply is ignored.
    let mut app = app_with_data();
    app.train.settings.limit = 500;
    let effects = key(&mut app, KeyCode::Char('s'));
    assert!(matches!(&effects[..], [Effect::LoadData(a)] if a.limit == Some(500)), "{effects:?}");
    let old = DataArgs { limit: None, ..app.train.settings.data_args() };
    assert!(
        send(&mut app, Msg::Data(DataMsg::Loaded { split: tiny_split(5), source: "old".into(), args: old })).is_empty()
    );
    assert!(matches!(app.shared.data, DataState::Loading(_)));
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
    assert_shows(&screen(&app, 120, 40), &["No data: cannot use --data data/mnist.npz: No such file", "Set Data"]);
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
fn pause_resume_and_stop_drive_the_workers_flags() {
    let mut app = app_with_data();
    let control = start_run(&mut app);
    key_to_run(&mut app, KeyCode::Char('p'), &control);
    assert_eq!(app.train.phase, Phase::Paused);
    assert!(control.is_paused());
    key_to_run(&mut app, KeyCode::Char(' '), &control);
    assert_eq!(app.train.phase, Phase::Running);
    assert!(!control.is_paused());
    key_to_run(&mut app, KeyCode::Char('p'), &control);
    key_to_run(&mut app, KeyCode::Char('x'), &control);
    assert_eq!(app.train.phase, Phase::Stopping);
    assert!(control.is_stopping() && !control.is_paused(), "a paused worker must wake to stop");
    send(
        &mut app,
        Msg::Worker(WorkerMsg::Done { end: RunEnd::Stopped, params: Some(models::shipped().unwrap().params.to_vec()) }),
    );
    assert_eq!(app.train.phase, Phase::Stopped);
    // Stopped with a model: the save prompt is offered.
    assert!(matches!(&app.prompt, Some(Prompt::SaveModel { offered: true, .. })));
}

#[test]
fn worker_events_fill_the_curves_gauges_and_eta_and_snapshots_reach_the_draw_view() {
    let mut app = app_with_data();
    start_run(&mut app);
    let t0 = Instant::now();
    send(&mut app, Msg::Worker(WorkerMsg::Ready { backend: "cpu", device: "cpu (1 threads)".into(), note: None }));
    progress(&mut app, Event::Started { epochs: 2, steps_per_epoch: 10, train_samples: 1000, test_samples: 20 }, t0);
    progress(&mut app, Event::EpochStarted { epoch: 1 }, t0);
    progress(
        &mut app,
        Event::Step {
            epoch: 1,
            step: 1,
            steps_per_epoch: 10,
            samples_done: 100,
            running: Some(metrics(2.0, 0.1, 100)),
        },
        t0,
    );
    progress(
        &mut app,
        Event::Step {
            epoch: 1,
            step: 2,
            steps_per_epoch: 10,
            samples_done: 200,
            running: Some(metrics(1.5, 0.3, 200)),
        },
        t0 + Duration::from_secs(1),
    );
    let run = app.train.run.as_ref().unwrap();
    assert_eq!(run.eta, None, "no ETA during the warm-up");
    assert_eq!(run.samples_per_second, Some(100.0));
    assert_eq!(run.train_loss.len(), 2);
    // The second interval's own loss is 1.0; smoothing moves 30% of the way to it.
    assert!((run.train_loss[1].1 - 1.7).abs() < 1e-6, "{:?}", run.train_loss);
    assert!((run.train_loss[1].0 - 0.2).abs() < 1e-9);
    assert!(screen(&app, 120, 40).contains("ETA after warm-up"));

    let mut app = app_with_data();
    start_run(&mut app);
    let t0 = feed_a_run(&mut app);
    let run = app.train.run.as_ref().unwrap();
    assert_eq!((run.epoch, run.step), (2, 5));
    assert!((run.run_fraction() - 0.75).abs() < 1e-9);
    assert_eq!(run.val_accuracy, vec![(1.0, 0.8f32 as f64)]);
    assert_eq!(run.samples_per_second, Some(200.0));
    assert_eq!(run.eta, Some(Duration::from_secs_f64(500.0 / 200.0)));
    assert_eq!(app.shared.model.as_ref().unwrap().origin, "being trained (epoch 1)");
    let shown = screen(&app, 120, 40);
    assert_shows(
        &shown,
        &[
            "Running - epoch 2/2 - step 5/10",
            "run 75%",
            "ETA 2s",
            "200 samples/s",
            "backend cpu - device cpu (1 threads)",
        ],
    );
    assert_shows(&shown, &["Epoch 1: loss 1.5000 acc 0.5000 - val_loss 0.9000 val_acc 0.8000"]);
    assert_shows(
        &shown,
        &["Loss (whole run)", "Accuracy (whole run)", "epoch", "loss", "accuracy", "train (smoothed)", "validation"],
    );
    // Paused: no ETA, and the rate restarts after resuming.
    key(&mut app, KeyCode::Char('p'));
    assert!(!screen(&app, 120, 40).contains("ETA 2s"));
    key(&mut app, KeyCode::Char('p'));
    assert_eq!(app.train.run.as_ref().unwrap().throughput.samples_per_second(), None);
    key(&mut app, KeyCode::Char('w'));
    assert_eq!(app.train.chart_window, ChartWindow::Recent);
    assert_shows(&screen(&app, 120, 40), &["Loss (recent)", "Accuracy (recent)"]);

    progress(
        &mut app,
        Event::EpochEnded { epoch: 2, train: metrics(0.7, 0.8, 1000), test: Some(metrics(0.5, 0.9, 20)) },
        t0 + Duration::from_secs(10),
    );
    progress(&mut app, Event::Finished { epochs_done: 2 }, t0 + Duration::from_secs(10));
    send(
        &mut app,
        Msg::Worker(WorkerMsg::Done {
            end: RunEnd::Completed,
            params: Some(models::shipped().unwrap().params.to_vec()),
        }),
    );
    assert_eq!(app.train.phase, Phase::Completed);
    assert!(app.shared.status.0.contains("Training finished: test accuracy 0.9000"), "{}", app.shared.status.0);
    assert_eq!(app.shared.model.as_ref().unwrap().origin, "trained here (2 epochs)");
    // Export is offered; Enter saves to the suggested prefix.
    assert_shows(&screen(&app, 120, 40), &["Training ended: save the model?", "> out/mnist_cnn_"]);
    let effects = key(&mut app, KeyCode::Enter);
    assert!(matches!(&effects[..], [Effect::SaveModel { prefix, .. }] if prefix == "out/mnist_cnn"), "{effects:?}");
    send(&mut app, Msg::ModelSaved(Ok("out/mnist_cnn-symbol.json and out/mnist_cnn-0000.params".into())));
    assert!(app.shared.status.0.starts_with("Saved the model"));
}

#[test]
fn the_mouse_draws_on_the_pad_filling_gaps_between_drag_events() {
    let mut app = new_app();
    key(&mut app, KeyCode::Char('2'));
    key(&mut app, KeyCode::Char('-')); // brush 1: exactly the dragged pixels
    let pad = layout(app.screen).draw.pad.unwrap();
    mouse(&mut app, MouseEventKind::Down(MouseButton::Left), pad.cell_of(3, 5));
    mouse(&mut app, MouseEventKind::Drag(MouseButton::Left), pad.cell_of(20, 5));
    mouse(&mut app, MouseEventKind::Drag(MouseButton::Left), pad.cell_of(20, 22));
    mouse(&mut app, MouseEventKind::Up(MouseButton::Left), pad.cell_of(20, 22));
    for x in 3..=20 {
        assert_eq!(app.draw.pad.pixel(x, 5), 1.0, "gap at ({x}, 5)");
    }
    for y in 5..=22 {
        assert_eq!(app.draw.pad.pixel(20, y), 1.0, "gap at (20, {y})");
    }
    // After the release, a drag without a press does not draw.
    mouse(&mut app, MouseEventKind::Drag(MouseButton::Left), pad.cell_of(3, 25));
    assert_eq!(app.draw.pad.pixel(3, 25), 0.0);
    // The right button erases.
    mouse(&mut app, MouseEventKind::Down(MouseButton::Right), pad.cell_of(10, 5));
    assert_eq!(app.draw.pad.pixel(10, 5), 0.0);

    app.refresh_prediction();
    let p = app.draw.probabilities.clone().expect("a prediction");
    assert_eq!(p.len(), 10);
    assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-3);
    assert!(app.draw.seen.iter().any(|&v| v > 0.5));
    let shown = screen(&app, 120, 40);
    assert_shows(
        &shown,
        &["Pad 28x28 - brush 1 - pen up", "Model input", "Prediction: ", "Probabilities", "Model: shipped", "██"],
    );
    assert_eq!(shown.matches('%').count(), 11, "ten bars and the prediction:\n{shown}");
}

#[test]
fn the_keyboard_draws_a_one_that_the_shipped_model_reads_as_one() {
    let mut app = new_app();
    key(&mut app, KeyCode::Char('2'));
    for _ in 0..10 {
        key(&mut app, KeyCode::Up);
    }
    key(&mut app, KeyCode::Char('d')); // pen down
    for _ in 0..20 {
        key(&mut app, KeyCode::Down);
    }
    key(&mut app, KeyCode::Char('d'));
    app.refresh_prediction();
    let (class, probability) = models::argmax(app.draw.probabilities.as_ref().unwrap());
    assert_eq!(class, 1, "{:?}", app.draw.probabilities);
    assert!(probability > 0.5);
    assert_shows(&screen(&app, 120, 40), &["Prediction: 1"]);
    // Space dabs at the cursor; c clears, and a blank pad has no prediction.
    key(&mut app, KeyCode::Right);
    key(&mut app, KeyCode::Right);
    key(&mut app, KeyCode::Right);
    key(&mut app, KeyCode::Char(' '));
    assert!(app.draw.pad.pixel(app.draw.pad.cursor.0, app.draw.pad.cursor.1) > 0.0);
    key(&mut app, KeyCode::Char('+'));
    assert_eq!(app.draw.pad.brush, 3);
    key(&mut app, KeyCode::Char('c'));
    app.refresh_prediction();
    assert!(app.draw.pad.is_blank() && app.draw.probabilities.is_none());
    assert_shows(&screen(&app, 120, 40), &["Draw a digit on the pad"]);
}

#[test]
fn explore_asks_for_predictions_once_filters_mistakes_and_ignores_stale_results() {
    let mut app = app_with_data();
    assert!(key(&mut app, KeyCode::Char('2')).is_empty(), "no predictions outside the explore view");
    let effects = key(&mut app, KeyCode::Char('3'));
    let generation = match &effects[..] {
        [Effect::PredictAll { generation, split, .. }] => {
            assert_eq!(split.test.len(), 20);
            *generation
        }
        other => panic!("{other:?}"),
    };
    assert!(key(&mut app, KeyCode::Down).is_empty(), "asked only once");
    assert_shows(&screen(&app, 120, 40), &["Predicting 20 test images"]);
    // Labels are i % 10; the fake model gets 3, 13 and 17 wrong.
    let mut classes: Vec<u8> = (0..20).map(|i| (i % 10) as u8).collect();
    (classes[3], classes[13], classes[17]) = (5, 1, 2);
    let predictions = Predictions { classes, confidence: vec![0.75; 20] };
    send(&mut app, Msg::Explore(ExploreMsg::Done { generation: generation + 7, result: Ok(predictions.clone()) }));
    assert!(app.explore.predictions.is_none(), "a stale result is dropped");
    send(&mut app, Msg::Explore(ExploreMsg::Done { generation, result: Ok(predictions) }));
    assert_eq!(app.explore.indices(&app.shared).len(), 20);
    let shown = screen(&app, 120, 40);
    assert_shows(
        &shown,
        &[
            "Test images: 20",
            "#0",
            "true 0 pred 0  75.0%",
            "Image #0",
            "Confusion matrix",
            "accuracy 0.8500: 3 of 20 wrong",
            "True label: 0",
        ],
    );
    key(&mut app, KeyCode::Char('m'));
    assert_eq!(app.explore.indices(&app.shared), vec![3, 13, 17]);
    key(&mut app, KeyCode::End);
    assert_eq!(app.explore.selected, 2);
    key(&mut app, KeyCode::Down);
    assert_eq!(app.explore.selected, 2, "stays on the last");
    assert_shows(&screen(&app, 120, 40), &["Misclassified: 3 of 20", "Image #17", "Predicted:  2 (75.0%)", "WRONG"]);
    // A click on a list row selects it.
    let list = layout(app.screen).explore.list;
    mouse(&mut app, MouseEventKind::Down(MouseButton::Left), (list.x + 2, list.y + 1));
    assert_eq!(app.explore.selected, 0);
    // A new model makes the predictions stale: asked again.
    let effects = send(&mut app, Msg::ModelLoaded(Ok(models::shipped().unwrap())));
    assert!(matches!(&effects[..], [Effect::PredictAll { generation: g, .. }] if *g > generation), "{effects:?}");
}

#[test]
fn load_and_save_prompts_become_effects_and_report_errors() {
    let mut app = new_app();
    key(&mut app, KeyCode::Char('o'));
    assert!(matches!(&app.prompt, Some(Prompt::LoadModel { input }) if input == "out/mnist_cnn"));
    assert_shows(&screen(&app, 120, 40), &["Load a model", "> out/mnist_cnn_"]);
    erase(&mut app, "mnist_cnn".len());
    chars(&mut app, "other");
    let effects = key(&mut app, KeyCode::Enter);
    assert!(matches!(&effects[..], [Effect::LoadModel { prefix }] if prefix == "out/other"), "{effects:?}");
    send(&mut app, Msg::ModelLoaded(Err("cannot read model file out/other-symbol.json".into())));
    assert_eq!(app.shared.status.1, StatusKind::Error);
    assert!(screen(&app, 120, 40).contains("cannot read model file out/other-symbol.json"));
    key(&mut app, KeyCode::Char('e'));
    assert!(matches!(&app.prompt, Some(Prompt::SaveModel { offered: false, .. })));
    key(&mut app, KeyCode::Esc);
    assert!(app.prompt.is_none());
    // Esc quickly followed by a key arrives as Alt+key: it is not typed into a prompt.
    key(&mut app, KeyCode::Char('o'));
    send(&mut app, Msg::Key(KeyEvent::new(KeyCode::Char('2'), KeyModifiers::ALT)));
    assert!(matches!(&app.prompt, Some(Prompt::LoadModel { input }) if input == "out/mnist_cnn"));
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

#[test]
fn keys_with_a_stopped_worker_do_not_send_flags_again() {
    let mut app = app_with_data();
    let control = start_run(&mut app);
    send(&mut app, Msg::Worker(WorkerMsg::Done { end: RunEnd::Failed("training failed: NaN".into()), params: None }));
    assert_eq!(app.train.phase, Phase::Failed("training failed: NaN".into()));
    assert!(app.prompt.is_none(), "nothing new to save");
    key_to_run(&mut app, KeyCode::Char('p'), &control);
    assert!(!control.is_paused());
    key(&mut app, KeyCode::Char('q'));
    assert!(app.quit, "a failed run does not hold up quitting");
}
