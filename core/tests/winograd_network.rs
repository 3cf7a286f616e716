//! The CPU backend's Winograd convolutions against its im2col reference, through whole
//! networks: logits, loss and every parameter gradient of one batch, on 1, 2 and 3 threads
//! (which split the batch and sum partial kernel gradients), and a few training steps.

use mnist_core::model::Network;
use mnist_core::{Backend, Config, CpuBackend, Rng};

/// |got - want| <= tol * max|want| for each named slice: Winograd F(4x4, 3x3) rounds to
/// ~1e-5 of a tensor's scale, not of each value.
fn assert_near(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let (i, diff) = got.iter().zip(want).map(|(a, b)| (a - b).abs()).enumerate().fold((0, 0.0f32), |m, (i, d)| {
        if d > m.1 || d.is_nan() {
            (i, d)
        } else {
            m
        }
    });
    assert!(
        diff <= tol * scale,
        "{what}: max diff {diff:e} at [{i}] (ours {}, reference {}), scale {scale:e}",
        got[i],
        want[i]
    );
    eprintln!("{what}: max diff {diff:e} of scale {scale:e}");
}

fn network(
    config: Config,
    batch: usize,
    threads: usize,
    winograd: bool,
    images: &[u8],
    labels: &[u8],
) -> (Network<CpuBackend>, <CpuBackend as Backend>::Dataset) {
    let mut backend = CpuBackend::new(threads);
    backend.set_fast_convolutions(winograd);
    let data = backend.upload_dataset(images, labels, config.input_len()).unwrap();
    let mut net = Network::new(backend, config, batch).unwrap();
    net.init(3).unwrap();
    (net, data)
}

fn random_data(config: &Config, n: usize, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut rng = Rng::new(seed);
    let images = (0..n * config.input_len()).map(|_| (rng.next_u64() >> 56) as u8).collect();
    let labels = (0..n).map(|_| rng.below(config.classes as u32) as u8).collect();
    (images, labels)
}

fn compare(config: Config, batch: usize) {
    let (images, labels) = random_data(&config, batch, 17);
    let (mut reference, data) = network(config, batch, 1, false, &images, &labels);
    let want_loss = reference.compute_gradients(&data, 0, batch, Some(5)).unwrap();
    let (want_logits, want_grads) = (reference.last_logits(batch).unwrap(), reference.grads().unwrap());
    for threads in [1, 2, 3] {
        let (mut net, data) = network(config, batch, threads, true, &images, &labels);
        let loss = net.compute_gradients(&data, 0, batch, Some(5)).unwrap();
        assert_near(&format!("loss, {threads} threads"), &[loss], &[want_loss], 1e-5);
        assert_near(&format!("logits, {threads} threads"), &net.last_logits(batch).unwrap(), &want_logits, 3e-5);
        let grads = net.grads().unwrap();
        for (slot, span) in config.layout().slots.iter().map(|s| (s.name.clone(), s.span())) {
            assert_near(&format!("d{slot}, {threads} threads"), &grads[span.range()], &want_grads[span.range()], 1e-4);
        }
    }
}

#[test]
fn small_model_gradients_match_im2col() {
    let config = Config { height: 13, width: 11, conv1_filters: 8, conv2_filters: 16, hidden: 12, ..Config::default() };
    compare(config, 5);
}

#[test]
fn keras_model_gradients_match_im2col() {
    compare(Config::default(), 8);
}

/// Training losses track the reference step for step. (Parameters are not compared: a
/// ReLU or max-pool tie decided differently by a rounding flips a whole gradient row, and
/// Adadelta's first steps magnify tiny gradients, so parameters drift apart chaotically.)
#[test]
fn training_losses_track_im2col() {
    let config = Config::default();
    let (images, labels) = random_data(&config, 64, 23);
    let (mut reference, data) = network(config, 32, 2, false, &images, &labels);
    let (mut net, data_w) = network(config, 32, 2, true, &images, &labels);
    for step in 0..6u64 {
        let start = (step as usize % 2) * 32;
        for n in [&mut reference, &mut net] {
            n.reset_metrics().unwrap();
        }
        reference.train_step(&data, start, 32, step).unwrap();
        net.train_step(&data_w, start, 32, step).unwrap();
        let (want, got) = (reference.read_metrics(32).unwrap().loss, net.read_metrics(32).unwrap().loss);
        assert_near(&format!("loss of step {step}"), &[got], &[want], 1e-4);
    }
}
