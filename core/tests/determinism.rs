//! Same seed and thread count -> bit-identical parameters; another seed -> different ones.

use mnist_core::train::{Control, Event, Observer, Outcome, TrainConfig, Trainer, TrainerState};
use mnist_core::{Config, CpuBackend, Dataset, Rng};

fn synthetic(n: usize, seed: u64) -> Dataset {
    let mut rng = Rng::new(seed);
    let labels: Vec<u8> = (0..n).map(|_| rng.below(10) as u8).collect();
    // Images that depend on the label, so the model has something to learn.
    let images = labels
        .iter()
        .flat_map(|&l| (0..784).map(move |i| if i % 10 == l as usize { 200u8 } else { (i * 7 % 50) as u8 }))
        .collect();
    Dataset::new(images, labels, 28, 28, 1).unwrap()
}

struct Quiet;
impl Observer for Quiet {
    fn on_event(&mut self, _: &Event) -> Control {
        Control::Continue
    }
}

fn train(seed: u64, threads: usize) -> Vec<f32> {
    let data = synthetic(300, 9);
    let config = TrainConfig { epochs: 2, batch_size: 64, seed, ..Default::default() };
    let mut trainer = Trainer::new(CpuBackend::new(threads), Config::default(), config, &data, None).unwrap();
    trainer.run(&mut Quiet).unwrap();
    trainer.network.params().unwrap()
}

#[test]
fn same_seed_same_threads_gives_identical_parameters() {
    for threads in [1, 2] {
        let a = train(5, threads);
        let b = train(5, threads);
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()), "runs with {threads} threads differ");
    }
    let c = train(6, 2);
    assert!(train(5, 2) != c, "a different seed should give different parameters");
}

#[test]
fn a_diverging_run_stops_with_the_last_good_parameters() {
    let data = synthetic(300, 9);
    let optimizer = mnist_core::Adadelta { learning_rate: 1e36, ..Default::default() };
    let config = TrainConfig { epochs: 3, batch_size: 64, seed: 2, optimizer, metrics_every: 1 };
    let mut trainer = Trainer::new(CpuBackend::new(2), Config::default(), config, &data, None).unwrap();
    let initial = trainer.network.params().unwrap();
    let error = trainer.run(&mut Quiet).unwrap_err();
    assert!(matches!(error, mnist_core::Error::NonFinite { .. }), "{error}");
    assert!(error.to_string().contains("NaN or infinite"), "{error}");
    assert_eq!(trainer.network.params().unwrap(), initial, "the last good state is the initial one");
}

/// Stops the run at a given global step.
struct StopAt(usize, usize);
impl Observer for StopAt {
    fn on_event(&mut self, event: &Event) -> Control {
        if let Event::Step { .. } = event {
            self.1 += 1;
            if self.1 == self.0 {
                return Control::Stop;
            }
        }
        Control::Continue
    }
}

#[test]
fn a_run_resumed_from_a_checkpoint_ends_bit_identical() {
    let data = synthetic(300, 9);
    let test = synthetic(50, 4);
    let config = TrainConfig { epochs: 2, batch_size: 64, seed: 11, ..Default::default() };
    let mut straight = Trainer::new(CpuBackend::new(2), Config::default(), config, &data, Some(&test)).unwrap();
    straight.run(&mut Quiet).unwrap();

    // Stop mid-way through the second epoch (5 steps per epoch), save, restore into a fresh
    // trainer, finish.
    let mut first = Trainer::new(CpuBackend::new(2), Config::default(), config, &data, Some(&test)).unwrap();
    assert_eq!(first.run(&mut StopAt(7, 0)).unwrap(), mnist_core::train::Outcome::Stopped);
    assert_eq!((first.epochs_done(), first.step_in_epoch()), (1, 2));
    let bytes = mnist_core::codec::checkpoint::encode(&first.state().unwrap()).unwrap();
    drop(first);
    let state = mnist_core::codec::checkpoint::decode(&bytes).unwrap();
    let mut resumed = Trainer::resume(CpuBackend::new(2), &state, &data, Some(&test)).unwrap();
    resumed.run(&mut Quiet).unwrap();

    let (a, b) = (straight.network.params().unwrap(), resumed.network.params().unwrap());
    assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()), "resumed parameters differ");
    assert_eq!(straight.history(), resumed.history(), "the epoch metrics must match too");
}

/// Answers each event with `answer(index, event)` and `then` to every checkpoint and snapshot
/// it is handed, keeping them with the index of the event that asked.
struct Scripted<F: FnMut(usize, &Event) -> Control> {
    answer: F,
    then: Control,
    events: Vec<Event>,
    checkpoints: Vec<(usize, TrainerState)>,
    snapshots: Vec<(usize, usize, Vec<f32>)>,
}

fn scripted<F: FnMut(usize, &Event) -> Control>(answer: F, then: Control) -> Scripted<F> {
    Scripted { answer, then, events: Vec::new(), checkpoints: Vec::new(), snapshots: Vec::new() }
}

impl<F: FnMut(usize, &Event) -> Control> Observer for Scripted<F> {
    fn on_event(&mut self, event: &Event) -> Control {
        self.events.push(event.clone());
        (self.answer)(self.events.len() - 1, event)
    }
    fn on_checkpoint(&mut self, state: &TrainerState) -> Control {
        self.checkpoints.push((self.events.len() - 1, state.clone()));
        self.then
    }
    fn on_snapshot(&mut self, epochs_done: usize, params: &[f32]) -> Control {
        self.snapshots.push((self.events.len() - 1, epochs_done, params.to_vec()));
        self.then
    }
}

/// A small model on 12x12 images so the tests below can afford a run per event position.
fn tiny_model() -> Config {
    Config { height: 12, width: 12, conv1_filters: 4, conv2_filters: 4, hidden: 16, ..Config::default() }
}

fn tiny_data(n: usize, seed: u64) -> Dataset {
    let mut rng = Rng::new(seed);
    let labels: Vec<u8> = (0..n).map(|_| rng.below(10) as u8).collect();
    let images = labels
        .iter()
        .flat_map(|&l| (0..144).map(move |i| if i % 10 == l as usize { 220u8 } else { (i * 13 % 40) as u8 }))
        .collect();
    Dataset::new(images, labels, 12, 12, 1).unwrap()
}

/// 100 samples in batches of 32: four steps an epoch (the last of 4), two epochs, a test set.
struct Tiny {
    train: Dataset,
    test: Dataset,
    config: TrainConfig,
}

impl Tiny {
    fn new() -> Self {
        let config = TrainConfig { epochs: 2, batch_size: 32, seed: 3, metrics_every: 2, ..Default::default() };
        Tiny { train: tiny_data(100, 1), test: tiny_data(20, 2), config }
    }
    fn trainer(&self) -> Trainer<CpuBackend> {
        Trainer::new(CpuBackend::new(2), tiny_model(), self.config, &self.train, Some(&self.test)).unwrap()
    }
}

fn bits(state: &TrainerState) -> Vec<u8> {
    mnist_core::codec::checkpoint::encode(state).unwrap()
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// The events of an uninterrupted run, and where a Stop answered to each one lands: the same
/// event, except after an epoch's last Step, where the run goes on to that epoch's EpochEnded.
fn events_and_stop_positions(tiny: &Tiny) -> (Vec<Event>, Vec<usize>) {
    let mut recorder = mnist_core::train::Recorder::default();
    tiny.trainer().run(&mut recorder).unwrap();
    let events = recorder.events;
    let lands = (0..events.len())
        .map(|k| match events[k] {
            Event::Step { step, steps_per_epoch, .. } if step == steps_per_epoch => k + 1,
            _ => k,
        })
        .collect();
    (events, lands)
}

/// The trainer after a Stop answered to event `k` (at the end of the run for Finished).
fn stopped_at(tiny: &Tiny, k: usize) -> Trainer<CpuBackend> {
    let mut trainer = tiny.trainer();
    let mut observer = scripted(|i, _| if i == k { Control::Stop } else { Control::Continue }, Control::Continue);
    trainer.run(&mut observer).unwrap();
    trainer
}

#[test]
fn a_checkpoint_at_any_event_equals_stop_then_state_and_resumes_bit_identical() {
    let tiny = Tiny::new();
    let (events, lands) = events_and_stop_positions(&tiny);
    assert_eq!(events.len(), 1 + 2 * (1 + 4 + 1) + 1);
    let mut straight = tiny.trainer();
    straight.run(&mut Quiet).unwrap();
    let finished = straight.network.params().unwrap();
    for k in 0..events.len() {
        let expected = stopped_at(&tiny, lands[k]).state().unwrap();

        // Checkpoint, then stop: handed the same state, and stopped at that position.
        let mut trainer = tiny.trainer();
        let mut observer = scripted(|i, _| if i == k { Control::Checkpoint } else { Control::Continue }, Control::Stop);
        let outcome = trainer.run(&mut observer).unwrap();
        assert_eq!(observer.checkpoints.len(), 1, "one checkpoint after {:?}", events[k]);
        let (asked_at, state) = &observer.checkpoints[0];
        assert_eq!(*asked_at, lands[k], "a checkpoint asked after {:?}", events[k]);
        assert!(bits(state) == bits(&expected), "the checkpoint after {:?} differs from stop + state()", events[k]);
        assert!(bits(&trainer.state().unwrap()) == bits(&expected), "on_checkpoint's Stop after {:?}", events[k]);
        let finished_event = matches!(events[k], Event::Finished { .. });
        assert_eq!(outcome == Outcome::Stopped, !finished_event, "after {:?}", events[k]);

        // A run resumed from that checkpoint ends where the uninterrupted one does.
        let mut resumed = Trainer::resume(CpuBackend::new(2), state, &tiny.train, Some(&tiny.test)).unwrap();
        resumed.run(&mut Quiet).unwrap();
        assert!(same_bits(&resumed.network.params().unwrap(), &finished), "resumed after {:?}", events[k]);
        assert_eq!(resumed.history(), straight.history());

        // Checkpoint and go on: the run is untouched.
        let mut trainer = tiny.trainer();
        let mut observer =
            scripted(|i, _| if i == k { Control::Checkpoint } else { Control::Continue }, Control::Continue);
        assert_eq!(trainer.run(&mut observer).unwrap(), Outcome::Completed);
        assert_eq!(observer.events, events, "the events of a run that checkpoints after {:?}", events[k]);
        assert!(same_bits(&trainer.network.params().unwrap(), &finished), "checkpointed after {:?}", events[k]);
    }
}

#[test]
fn a_snapshot_at_any_event_holds_the_parameters_then_and_stops_only_where_a_stop_would() {
    let tiny = Tiny::new();
    let (events, lands) = events_and_stop_positions(&tiny);
    for k in 0..events.len() {
        let mut at_stop = stopped_at(&tiny, lands[k]);
        let expected = at_stop.network.params().unwrap();
        let epochs_done = match events[k] {
            Event::Started { .. } => 0,
            Event::EpochStarted { epoch } | Event::Step { epoch, .. } => epoch - 1,
            Event::EpochEnded { epoch, .. } => epoch,
            Event::Finished { epochs_done } => epochs_done,
        };
        let mut trainer = tiny.trainer();
        let mut observer = scripted(|i, _| if i == k { Control::Snapshot } else { Control::Continue }, Control::Stop);
        let outcome = trainer.run(&mut observer).unwrap();
        // After an epoch's last Step the snapshot is taken there (the model of that epoch) and
        // its Stop is ignored like any Stop there; at Finished the run is over anyway.
        let last_step = lands[k] != k;
        let finished_event = matches!(events[k], Event::Finished { .. });
        assert_eq!(observer.snapshots.len(), 1);
        let (asked_at, got_epochs, params) = &observer.snapshots[0];
        assert_eq!((*asked_at, *got_epochs), (k, epochs_done), "after {:?}", events[k]);
        assert!(same_bits(params, &expected), "the snapshot after {:?} differs", events[k]);
        assert_eq!(outcome == Outcome::Stopped, !last_step && !finished_event, "after {:?}", events[k]);
        if !last_step {
            assert!(
                bits(&trainer.state().unwrap()) == bits(&at_stop.state().unwrap()),
                "stopped after {:?}",
                events[k]
            );
        }
    }
}

#[test]
fn a_checkpoint_asked_at_an_epochs_last_step_comes_once_after_its_epoch_ended_with_the_other_answers() {
    let tiny = Tiny::new();
    let (events, _) = events_and_stop_positions(&tiny);
    let last_step = events.iter().position(|e| matches!(e, Event::Step { step: 4, .. })).unwrap();
    assert!(matches!(events[last_step + 1], Event::EpochEnded { epoch: 1, .. }));
    for at_end in [Control::Continue, Control::Stop, Control::Checkpoint, Control::Snapshot] {
        let mut trainer = tiny.trainer();
        let answer = |i: usize, _: &Event| match i {
            i if i == last_step => Control::Checkpoint,
            i if i == last_step + 1 => at_end,
            _ => Control::Continue,
        };
        let mut observer = scripted(answer, Control::Continue);
        let outcome = trainer.run(&mut observer).unwrap();
        let asked: Vec<usize> = observer.checkpoints.iter().map(|(i, _)| *i).collect();
        assert_eq!(asked, [last_step + 1], "EpochEnded answered {at_end:?}");
        assert_eq!(observer.checkpoints[0].1.epochs_done, 1);
        assert_eq!(observer.snapshots.len(), usize::from(at_end == Control::Snapshot), "{at_end:?}");
        assert_eq!(outcome == Outcome::Stopped, at_end == Control::Stop, "{at_end:?}");
    }
}

#[test]
fn checkpoints_and_snapshots_after_every_event_leave_a_full_size_run_bit_identical() {
    let data = synthetic(300, 9);
    let test = synthetic(50, 4);
    let config = TrainConfig { epochs: 2, batch_size: 64, seed: 11, metrics_every: 2, ..Default::default() };
    let run = |answer: Control| {
        let mut trainer = Trainer::new(CpuBackend::new(2), Config::default(), config, &data, Some(&test)).unwrap();
        let mut observer = scripted(|_, _| answer, Control::Continue);
        assert_eq!(trainer.run(&mut observer).unwrap(), Outcome::Completed);
        let handed = observer.checkpoints.len() + observer.snapshots.len();
        (trainer.network.params().unwrap(), trainer.history().to_vec(), observer.events, handed)
    };
    let (params, history, events, _) = run(Control::Continue);
    for answer in [Control::Checkpoint, Control::Snapshot] {
        let (p, h, e, handed) = run(answer);
        assert!(same_bits(&p, &params), "answering {answer:?} changed the parameters");
        assert_eq!((h, e), (history.clone(), events.clone()), "answering {answer:?} changed the run");
        // Every event hands one over, except that the checkpoints asked after each epoch's
        // last step are taken with the one after its EpochEnded.
        let expected = if answer == Control::Checkpoint { events.len() - 2 } else { events.len() };
        assert_eq!(handed, expected, "{answer:?}");
    }
}
