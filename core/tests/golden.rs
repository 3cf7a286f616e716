//! The golden test: a tiny variant of the model on one fixed batch, compared with numbers from
//! fixtures/golden/make_golden.py (float64 numpy forward, finite-difference gradients, the
//! same dropout hash, three Adadelta steps). On failure it prints the first differing pairs.

use mnist_core::model::Network;
use mnist_core::{Backend, Config, CpuBackend};
use std::collections::HashMap;

fn golden() -> HashMap<String, Vec<f64>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/golden/golden.txt");
    let text = std::fs::read_to_string(path).expect("fixtures/golden/golden.txt");
    let mut lines = text.lines();
    let mut out = HashMap::new();
    while let Some(header) = lines.next() {
        let (name, count) = header.split_once(' ').expect("a `name count` line");
        let values: Vec<f64> = lines.next().expect("values").split(' ').map(|v| v.parse().unwrap()).collect();
        assert_eq!(values.len(), count.parse::<usize>().unwrap(), "{name}");
        out.insert(name.to_string(), values);
    }
    out
}

fn tiny() -> Config {
    Config {
        height: 8,
        width: 8,
        channels: 1,
        conv1_filters: 3,
        conv2_filters: 4,
        kernel: 3,
        pool: 2,
        dropout1: 0.25,
        hidden: 6,
        dropout2: 0.5,
        classes: 3,
    }
}

fn compare(what: &str, got: &[f32], want: &[f64], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let mut max_diff = 0.0f64;
    let mut bad = Vec::new();
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let d = (g as f64 - w).abs();
        max_diff = max_diff.max(d);
        #[allow(clippy::neg_cmp_op_on_partial_ord)] // a NaN must count as a difference
        if !(d <= atol + rtol * w.abs()) {
            bad.push(format!("[{i}] ours {g:e} golden {w:e}"));
        }
    }
    if !bad.is_empty() {
        panic!(
            "{what}: {} of {} differ, max diff {max_diff:e}; first: {}",
            bad.len(),
            got.len(),
            bad[..bad.len().min(6)].join(", ")
        );
    }
    eprintln!("{what}: {} values match, max diff {max_diff:e}", got.len());
}

fn setup(threads: usize) -> (Network<CpuBackend>, <CpuBackend as Backend>::Dataset, HashMap<String, Vec<f64>>) {
    let g = golden();
    let images: Vec<u8> = g["images"].iter().map(|&v| v as u8).collect();
    let labels: Vec<u8> = g["labels"].iter().map(|&v| v as u8).collect();
    let mut backend = CpuBackend::new(threads);
    let data = backend.upload_dataset(&images, &labels, 64).unwrap();
    let mut net = Network::new(backend, tiny(), 4).unwrap();
    let params: Vec<f32> = g["params"].iter().map(|&v| v as f32).collect();
    net.set_params(&params).unwrap();
    (net, data, g)
}

#[test]
fn logits_loss_and_gradients_match_numpy() {
    for threads in [1, 2, 3] {
        let (mut net, data, g) = setup(threads);
        let loss = net.compute_gradients(&data, 0, 4, None).unwrap();
        compare("loss", &[loss], &g["loss"], 1e-6, 1e-5);
        compare("logits", &net.last_logits(4).unwrap(), &g["logits"], 1e-6, 1e-5);
        compare("gradients", &net.grads().unwrap(), &g["grads"], 1e-6, 1e-4);
        let images: Vec<f32> = g["images"].iter().map(|&v| v as f32 / 255.0).collect();
        compare("predicted probabilities", &net.predict(&images).unwrap(), &g["probs"], 1e-6, 1e-5);
    }
}

#[test]
fn three_adadelta_steps_with_dropout_match_numpy() {
    let (mut net, data, g) = setup(2);
    let mut losses = Vec::new();
    for seed in 1..=3u64 {
        net.reset_metrics().unwrap();
        net.train_step(&data, 0, 4, seed).unwrap();
        losses.push(net.read_metrics(4).unwrap().loss);
    }
    compare("step losses", &losses, &g["step_losses"], 1e-6, 1e-5);
    compare("parameters after three steps", &net.params().unwrap(), &g["params_after_steps"], 2e-6, 1e-4);
}
