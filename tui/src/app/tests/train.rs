//! The train view's rules and screen: settings, starting, pause and stop, the worker's events.

use super::*;

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
    send(&mut app, Msg::Worker(WorkerMsg::Done { end: RunEnd::Stopped }));
    assert_eq!(app.train.phase, Phase::Stopped);
    // Stopped before an epoch ended: nothing new to save, and nothing offered.
    assert!(app.prompt.is_none());
    assert!(!app.shared.status.0.contains("e saves"), "{}", app.shared.status.0);
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
    send(&mut app, Msg::Worker(WorkerMsg::Snapshot { epoch: 2, params: models::shipped().unwrap().params.to_vec() }));
    progress(&mut app, Event::Finished { epochs_done: 2 }, t0 + Duration::from_secs(10));
    send(&mut app, Msg::Worker(WorkerMsg::Done { end: RunEnd::Completed }));
    assert_eq!(app.train.phase, Phase::Completed);
    assert!(app.shared.status.0.contains("Training finished: test accuracy 0.9000"), "{}", app.shared.status.0);
    assert_eq!(app.shared.model.as_ref().unwrap().origin, "trained here (2 epochs)");
    // Export is offered by a notice; e opens the prompt and Enter saves to the suggested prefix.
    assert_shows(&screen(&app, 120, 40), &["e saves the model"]);
    key(&mut app, KeyCode::Char('e'));
    assert_shows(&screen(&app, 120, 40), &["Save the model", "> out/mnist_cnn_"]);
    let effects = key(&mut app, KeyCode::Enter);
    assert!(matches!(&effects[..], [Effect::SaveModel { prefix, .. }] if prefix == "out/mnist_cnn"), "{effects:?}");
    send(&mut app, Msg::ModelSaved(Ok("out/mnist_cnn-symbol.json and out/mnist_cnn-0000.params".into())));
    assert!(app.shared.status.0.starts_with("Saved the model"));
}

#[test]
fn keys_with_a_stopped_worker_do_not_send_flags_again() {
    let mut app = app_with_data();
    let control = start_run(&mut app);
    send(&mut app, Msg::Worker(WorkerMsg::Done { end: RunEnd::Failed("training failed: NaN".into()) }));
    assert_eq!(app.train.phase, Phase::Failed("training failed: NaN".into()));
    assert!(app.prompt.is_none(), "nothing new to save");
    key_to_run(&mut app, KeyCode::Char('p'), &control);
    assert!(!control.is_paused());
    key(&mut app, KeyCode::Char('q'));
    assert!(app.quit, "a failed run does not hold up quitting");
}

/// Issue 17 #1: a stop before the first epoch ends keeps the model there was, and a stop in
/// the middle of an epoch keeps the last finished epoch's.
#[test]
fn only_a_finished_epoch_replaces_the_model() {
    let mut app = app_with_data();
    let shipped = app.shared.model.clone().unwrap();
    let control = start_run(&mut app);
    send(&mut app, Msg::Worker(WorkerMsg::Ready { backend: "cpu", device: "cpu (1 thread)".into(), note: None }));
    progress(
        &mut app,
        Event::Started { epochs: 2, steps_per_epoch: 10, train_samples: 1000, test_samples: 20 },
        Instant::now(),
    );
    key_to_run(&mut app, KeyCode::Char('x'), &control);
    send(&mut app, Msg::Worker(WorkerMsg::Done { end: RunEnd::Stopped }));
    let model = app.shared.model.as_ref().unwrap();
    assert_eq!(model.origin, shipped.origin);
    assert_eq!(model.params, shipped.params);

    // Stopped half-way through epoch 2: the model is epoch 1's, named as such.
    start_run(&mut app);
    feed_a_run(&mut app);
    let epoch_1 = app.shared.model.as_ref().unwrap().params.clone();
    send(&mut app, Msg::Worker(WorkerMsg::Done { end: RunEnd::Stopped }));
    let model = app.shared.model.as_ref().unwrap();
    assert_eq!(model.params, epoch_1);
    assert_eq!(model.origin, "trained here (1 epoch)");
}

/// Issue 17 #2: the end of a run offers the save with a notice; keys typed in another view go on
/// doing what they do there, and `e` opens the save prompt.
#[test]
fn the_end_of_a_run_offers_saving_without_taking_the_keys() {
    let mut app = app_with_data();
    start_run(&mut app);
    feed_a_run(&mut app);
    key(&mut app, KeyCode::Char('2'));
    send(&mut app, Msg::Worker(WorkerMsg::Done { end: RunEnd::Stopped }));
    assert!(app.prompt.is_none(), "{:?}", app.prompt);
    assert!(app.shared.status.0.contains("e saves the model"), "{}", app.shared.status.0);
    let mut effects = key(&mut app, KeyCode::Char('c'));
    effects.extend(key(&mut app, KeyCode::Char('d')));
    effects.extend(key(&mut app, KeyCode::Enter));
    assert!(effects.is_empty(), "{effects:?}");
    assert!(app.prompt.is_none());
    assert!(!app.draw.pad.pen_down, "d then Enter: pen down, then up again");
    assert!(!app.draw.pad.is_blank(), "the dabs of d and Enter are on the pad");
    key(&mut app, KeyCode::Char('e'));
    assert_shows(&screen(&app, 120, 40), &["Save the model", "> out/mnist_cnn_"]);
    let effects = key(&mut app, KeyCode::Enter);
    assert!(matches!(&effects[..], [Effect::SaveModel { prefix, .. }] if prefix == "out/mnist_cnn"), "{effects:?}");
}

/// Issue 17 #4: at 80x24 the train view shows the settings, the run's progress with its last
/// epoch's numbers, both charts and every key of the legend.
#[test]
fn at_80x24_train_shows_settings_progress_charts_and_every_key() {
    let mut app = app_with_data();
    start_run(&mut app);
    feed_a_run(&mut app);
    let shown = screen(&app, 80, 24);
    assert_shows(&shown, &["Epochs     2", "Limit      all", "Running - epoch 2/2 - step 5/10", "run 75%", "ETA 2s"]);
    assert_shows(&shown, &["200 samples/s", "loss 1.5000 acc 0.5000", "val_loss 0.9000 val_acc 0.8000"]);
    assert_shows(&shown, &["Loss (whole run)", "Accuracy (whole run)"]);
    assert_legend(&shown, views::train::KEYS);
    assert_legend(&shown, render::GLOBAL_KEYS);
}

/// Issue 17 #5: with no data the way out comes first, whole, even at 80 columns and after a
/// long download error; the error itself still shows in full where there is room to wrap it.
#[test]
fn with_no_data_the_way_out_comes_first_and_whole() {
    let mut app = new_app();
    let args = app.train.settings.data_args();
    let message = "cannot download MNIST from https://s3.amazonaws.com/img-datasets/mnist.npz (Name or service \
                   not known) nor from https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz \
                   (Name or service not known): gave up after 4 attempts";
    send(&mut app, Msg::Data(DataMsg::Failed { message: message.into(), args }));
    let hint = "Set Data to a local mnist.npz (Enter to edit) and press s";
    for view in View::ALL {
        app.view = view;
        assert_shows(&screen(&app, 80, 24), &[hint]);
    }
    app.view = View::Train;
    let shown = screen(&app, 80, 24);
    let (first_hint, first_error) = (shown.find("Set Data to a local"), shown.find("cannot download"));
    assert!(first_hint.is_some() && first_hint < first_error, "{shown}");
    app.view = View::Explore;
    assert_shows(&screen(&app, 80, 24), &["gave up after 4 attempts"]);
}

/// Issue 17 #9: while paused, quitting says so; a run that failed before its backend started
/// shows no stale "- samples/s - starting".
#[test]
fn the_quit_question_and_the_progress_say_how_the_run_stands() {
    let mut app = app_with_data();
    start_run(&mut app);
    key(&mut app, KeyCode::Char('p'));
    key(&mut app, KeyCode::Char('q'));
    assert_shows(&screen(&app, 120, 40), &["Training is paused. Quit and stop it?"]);
    key(&mut app, KeyCode::Char('n'));
    key(&mut app, KeyCode::Char('x'));
    key(&mut app, KeyCode::Char('q'));
    assert_shows(&screen(&app, 120, 40), &["Training is stopping. Quit now?"]);

    let mut app = app_with_data();
    app.train.settings.backend = BackendChoice::Cuda;
    start_run(&mut app);
    assert_shows(&screen(&app, 120, 40), &["- samples/s - starting"]);
    let why = "--backend cuda: no usable GPU (CUDA driver not found)";
    send(&mut app, Msg::Worker(WorkerMsg::Done { end: RunEnd::Failed(why.into()) }));
    let shown = screen(&app, 120, 40);
    assert_shows(&shown, &["Failed: --backend cuda: no usable GPU"]);
    assert!(!shown.contains("starting") && !shown.contains("samples/s"), "{shown}");
}
