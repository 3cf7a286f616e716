//! Pure training time per epoch on the GPU (469 steps of the default model on real MNIST, no
//! validation), stream synchronised around each epoch, median of several: with step graphs,
//! without, with the f32 GEMMs all on cuBLAS or the tall ones on tiles of 128 or 64 rows, with
//! bf16 and f16 GEMMs (`--precision`), and (a diagnostic) with TF32 GEMMs; one
//! GPU_SPEED line for the GPU check's table.
//! SKIPPED without a GPU or the data.
//! Leaves out: accuracy (cuda_mnist.rs) and the CPU (there is nothing to time here).

mod common;

use std::time::Instant;

use mnist_core::codec::mnist;
use mnist_core::model::Network;
use mnist_core::{Backend, Config, Rng};
use mnist_cuda::{CudaBackend, F32Gemm, Precision};

/// Seconds of each of `epochs` epochs (the first is a warm-up, left out of the median).
fn epoch_seconds(
    mut backend: CudaBackend,
    images: &[u8],
    labels: &[u8],
    sample_len: usize,
    epochs: usize,
) -> (Vec<f64>, String) {
    let mut data = backend.upload_dataset(images, labels, sample_len).unwrap();
    let n = labels.len();
    let batch = 128;
    let mut net = Network::new(backend, Config::default(), batch).unwrap();
    net.init(1).unwrap();
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut seconds = Vec::new();
    for epoch in 0..epochs {
        Rng::new(epoch as u64).shuffle(&mut order);
        net.backend.set_order(&mut data, &order).unwrap();
        net.backend.synchronize().unwrap();
        let started = Instant::now();
        let mut start = 0;
        let mut step = 0u64;
        while start < n {
            let b = batch.min(n - start);
            net.train_step(&data, start, b, (epoch as u64) << 32 | step).unwrap();
            start += b;
            step += 1;
        }
        net.backend.synchronize().unwrap();
        seconds.push(started.elapsed().as_secs_f64());
    }
    let loss = net.read_metrics(epochs * n).unwrap().loss;
    assert!(loss.is_finite(), "training diverged: mean loss {loss}");
    (seconds, format!("{:?}", net.backend.step_graph_stats()))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[test]
fn training_epoch_time() {
    let Some(mut gpu) = common::gpu("training_epoch_time") else {
        return;
    };
    let Some(path) = mnist_tests::mnist_data() else { return };
    let split = mnist::from_npz(&std::fs::read(path).unwrap()).unwrap();
    let train = &split.train;
    let device = gpu.device_name();
    let epochs = 6;
    gpu.set_step_graphs(true);
    let (with_graphs, stats) = epoch_seconds(gpu, &train.images, &train.labels, train.sample_len(), epochs);
    let mut eager = CudaBackend::new(0).unwrap();
    eager.set_step_graphs(false);
    let (op_by_op, _) = epoch_seconds(eager, &train.images, &train.labels, train.sample_len(), epochs);
    // A diagnostic, not the default: how much of the step the f32 GEMMs take.
    let mut tf32 = CudaBackend::new(0).unwrap();
    tf32.set_tf32(true).unwrap();
    let (with_tf32, _) = epoch_seconds(tf32, &train.images, &train.labels, train.sample_len(), epochs);
    // The f32 GEMMs' kernels: cuBLAS for all, or the tall products on our tiled kernel in
    // tiles of 128 or 64 rows (the default picks one per product).
    let F32Gemm::Tiled { min_rows, .. } = F32Gemm::default() else {
        panic!("the default f32 GEMMs are not the tiled kernel's")
    };
    let mut sgemm = Vec::new();
    for choice in
        [F32Gemm::Cublas, F32Gemm::Tiled { min_rows, rows: Some(128) }, F32Gemm::Tiled { min_rows, rows: Some(64) }]
    {
        let mut gpu = CudaBackend::new(0).unwrap();
        gpu.set_f32_gemm(choice).unwrap();
        sgemm.push(epoch_seconds(gpu, &train.images, &train.labels, train.sample_len(), epochs).0);
    }
    let mut half = Vec::new();
    for precision in [Precision::Bf16, Precision::F16] {
        let mut gpu = CudaBackend::new(0).unwrap();
        gpu.set_precision(precision).unwrap();
        half.push(epoch_seconds(gpu, &train.images, &train.labels, train.sample_len(), epochs).0);
    }
    let (bf16, f16) = (&half[0], &half[1]);
    eprintln!(
        "with graphs: {with_graphs:.3?}\nop by op:    {op_by_op:.3?}\ntf32 gemms:  {with_tf32:.3?}\ncublas sgemm: {:.3?}\ntiled 128:   {:.3?}\ntiled 64:    {:.3?}\nbf16 gemms:  {bf16:.3?}\nf16 gemms:   {f16:.3?}\ngraphs: {stats}",
        sgemm[0], sgemm[1], sgemm[2]
    );
    // One line the GPU check script greps for its table.
    println!(
        "GPU_SPEED device=\"{device}\" train_epoch_s={:.4} without_graphs={:.4} with_tf32_gemms={:.4} cublas_sgemm={:.4} tiled128={:.4} tiled64={:.4} bf16_epoch_s={:.4} f16_epoch_s={:.4} epochs={} graphs={stats}",
        median(with_graphs[1..].to_vec()),
        median(op_by_op[1..].to_vec()),
        median(with_tf32[1..].to_vec()),
        median(sgemm[0][1..].to_vec()),
        median(sgemm[1][1..].to_vec()),
        median(sgemm[2][1..].to_vec()),
        median(bf16[1..].to_vec()),
        median(f16[1..].to_vec()),
        epochs - 1
    );
}
