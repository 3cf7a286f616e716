//! Same seed and thread count -> bit-identical parameters; another seed -> different ones.

use mnist_core::train::{Control, Event, Observer, TrainConfig, Trainer};
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
