//! The same code trains on Fashion-MNIST from LeCun-format idx.gz files (Debian's
//! dataset-fashion-mnist): a short run on a slice must clearly learn.

use mnist_core::codec::mnist;
use mnist_core::train::{Recorder, TrainConfig, Trainer};
use mnist_core::{Config, CpuBackend};
#[test]
fn trains_on_fashion_mnist_idx_files() {
    let Some(dir) = mnist_tests::fashion_dir() else { return };
    let split = mnist::load(dir).unwrap();
    let (train, test) = (split.train.take(6000), split.test.take(2000));
    let config = TrainConfig { epochs: 1, ..TrainConfig::default() };
    let mut trainer = Trainer::new(CpuBackend::new(0), Config::default(), config, &train, Some(&test)).unwrap();
    trainer.run(&mut Recorder::default()).unwrap();
    let test = trainer.history()[0].1.unwrap();
    eprintln!("Fashion-MNIST, 6000 training images, 1 epoch: test accuracy {:.4}", test.accuracy);
    // Chance is 0.10; a few hundred steps of this CNN reach about 0.7-0.8.
    assert!(test.accuracy > 0.6, "test accuracy {}", test.accuracy);
}
