//! Quick timing of training steps on synthetic data (development aid).
use mnist_core::*;
use std::time::Instant;
fn main() {
    let threads: usize = std::env::args().nth(1).map_or(0, |s| s.parse().unwrap());
    let n = 128 * 20;
    let mut rng = Rng::new(3);
    let images: Vec<u8> = (0..n * 784).map(|_| (rng.next_u64() % 256) as u8).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    let mut be = CpuBackend::new(threads);
    let data = be.upload_dataset(&images, &labels, 784).unwrap();
    let mut net = model::Network::new(be, Config::default(), 128).unwrap();
    net.init(1).unwrap();
    for s in 0..3 { net.train_step(&data, s * 128, 128, s as u64).unwrap(); }
    let t = Instant::now();
    let steps = 17;
    for s in 0..steps { net.train_step(&data, (s + 3) * 128, 128, s as u64).unwrap(); }
    let dt = t.elapsed().as_secs_f64();
    println!("threads={} {:.1} ms/step {:.0} samples/s", net.backend.threads(), dt * 1e3 / steps as f64, (steps * 128) as f64 / dt);
}
