//! Real MNIST ($MNIST_DATA) on the GPU: one epoch of the default model must reach the CPU's
//! accuracy band (test accuracy >= 0.975, the sample's first epoch gives 0.9758); prints the
//! epoch's wall time for the GPU check's table. SKIPPED without a GPU or without the data.
//! Leaves out: twelve epochs (the check script runs `mnist train --backend cuda` for that).

mod common;

use std::time::Instant;

use mnist_core::codec::mnist;
use mnist_core::train::{Control, Event, Observer, TrainConfig, Trainer};
use mnist_core::Config;

/// Times each epoch from EpochStarted to EpochEnded (validation included: the end is the first
/// point synchronised with the device) and logs the results. cuda_speed.rs times pure training.
struct Timer {
    started: Instant,
    train_seconds: Vec<f64>,
}

impl Observer for Timer {
    fn on_event(&mut self, event: &Event) -> Control {
        match event {
            Event::EpochStarted { .. } => self.started = Instant::now(),
            // Only the epoch's end is synchronised with the device (its metrics are read back):
            // timing the last Step event would measure enqueueing, not training.
            Event::EpochEnded { epoch, train, test } => {
                self.train_seconds.push(self.started.elapsed().as_secs_f64());
                let test = test.unwrap_or_default();
                eprintln!(
                    "epoch {epoch}: {:.3}s with validation loss {:.4} acc {:.4} val_loss {:.4} val_acc {:.4}",
                    self.train_seconds.last().copied().unwrap_or(f64::NAN),
                    train.loss,
                    train.accuracy,
                    test.loss,
                    test.accuracy
                );
            }
            _ => {}
        }
        Control::Continue
    }
}

#[test]
fn one_epoch_on_the_gpu_reaches_the_cpus_accuracy() {
    let Some(gpu) = common::gpu("one_epoch_on_the_gpu_reaches_the_cpus_accuracy") else {
        return;
    };
    let Some(path) = mnist_tests::mnist_data() else { return };
    let device = mnist_core::Backend::device_name(&gpu);
    let split = mnist::from_npz(&std::fs::read(path).unwrap()).unwrap();
    let config = TrainConfig { epochs: 1, ..TrainConfig::default() };
    let setup = Instant::now();
    let mut trainer = Trainer::new(gpu, Config::default(), config, &split.train, Some(&split.test)).unwrap();
    let setup = setup.elapsed().as_secs_f64();
    let mut timer = Timer { started: Instant::now(), train_seconds: Vec::new() };
    trainer.run(&mut timer).unwrap();
    let (train, test) = *trainer.history().last().unwrap();
    let test = test.unwrap();
    // One line the GPU check script greps for its table.
    println!(
        "GPU_EPOCH device=\"{device}\" setup_s={setup:.3} epoch_with_validation_s={:.3} loss={:.4} val_acc={:.4} graphs={:?}",
        timer.train_seconds[0],
        train.loss,
        test.accuracy,
        trainer.network.backend.step_graph_stats()
    );
    assert!(train.loss.is_finite());
    assert!(test.accuracy >= 0.975, "test accuracy after one epoch on the GPU: {}", test.accuracy);
}
