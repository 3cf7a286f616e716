//! Development aid: one epoch on raw u8 dumps of MNIST in /tmp.
use mnist_core::train::*;
use mnist_core::*;
use std::time::Instant;
struct P(Instant);
impl Observer for P {
    fn on_event(&mut self, e: &Event) -> Control {
        match e {
            Event::Step { step, running: Some(m), .. } => println!("step {step} loss {:.4} acc {:.4} {:.1}s", m.loss, m.accuracy, self.0.elapsed().as_secs_f64()),
            Event::EpochEnded { .. } => println!("{e:?} {:.1}s", self.0.elapsed().as_secs_f64()),
            _ => {}
        }
        Control::Continue
    }
}
fn main() {
    let epochs: usize = std::env::args().nth(1).map_or(1, |s| s.parse().unwrap());
    let rd = |n: &str| std::fs::read(format!("/tmp/{n}.raw")).unwrap();
    let train = Dataset::new(rd("x_train"), rd("y_train"), 28, 28, 1).unwrap();
    let test = Dataset::new(rd("x_test"), rd("y_test"), 28, 28, 1).unwrap();
    let cfg = TrainConfig { epochs, metrics_every: 100, ..Default::default() };
    let mut t = Trainer::new(CpuBackend::new(0), Config::default(), cfg, &train, Some(&test)).unwrap();
    t.run(&mut P(Instant::now())).unwrap();
}
