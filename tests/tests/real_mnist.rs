//! Real MNIST ($MNIST_DATA): one epoch of the default model must reach the sample's
//! first-epoch test accuracy (0.9758, we require >= 0.975); twelve epochs (ignored by default,
//! run with `--ignored`) must reach 0.990.

use mnist_core::codec::mnist;
use mnist_core::train::{Control, Event, Observer, TrainConfig, Trainer};
use mnist_core::{Config, CpuBackend};
use std::time::Instant;

struct Log(Instant);
impl Observer for Log {
    fn on_event(&mut self, event: &Event) -> Control {
        if let Event::EpochEnded { epoch, train, test } = event {
            let test = test.unwrap();
            eprintln!(
                "epoch {epoch}: {:.1}s loss {:.4} acc {:.4} val_loss {:.4} val_acc {:.4}",
                self.0.elapsed().as_secs_f64(),
                train.loss,
                train.accuracy,
                test.loss,
                test.accuracy
            );
        }
        Control::Continue
    }
}

fn train(epochs: usize) -> Option<f32> {
    let path = mnist_tests::mnist_data()?;
    let split = mnist::from_npz(&std::fs::read(path).unwrap()).unwrap();
    assert_eq!((split.train.len(), split.test.len()), (60_000, 10_000));
    let config = TrainConfig { epochs, ..TrainConfig::default() };
    let mut trainer =
        Trainer::new(CpuBackend::new(0), Config::default(), config, &split.train, Some(&split.test)).unwrap();
    trainer.run(&mut Log(Instant::now())).unwrap();
    let (train, test) = *trainer.history().last().unwrap();
    assert!(train.loss.is_finite());
    Some(test.unwrap().accuracy)
}

#[test]
fn one_epoch_reaches_the_samples_first_epoch_accuracy() {
    if let Some(accuracy) = train(1) {
        assert!(accuracy >= 0.975, "test accuracy after one epoch: {accuracy}");
    }
}

#[test]
#[ignore = "about 10 minutes on 2 cores; run with --ignored"]
fn twelve_epochs_reach_0990() {
    if let Some(accuracy) = train(12) {
        assert!(accuracy >= 0.990, "test accuracy after twelve epochs: {accuracy}");
    }
}
