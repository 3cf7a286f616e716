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
use mnist_cuda::{CudaBackend, CudaOptions, F32Gemm, Precision};

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
    let options = common::env_options();
    let Some(gpu) = common::gpu_with("training_epoch_time", CudaOptions { step_graphs: true, ..options }) else {
        return;
    };
    let Some(path) = mnist_tests::mnist_data() else { return };
    let split = mnist::from_npz(&std::fs::read(path).unwrap()).unwrap();
    let train = &split.train;
    let device = gpu.device_name();
    let epochs = 6;
    let (with_graphs, stats) = epoch_seconds(gpu, &train.images, &train.labels, train.sample_len(), epochs);
    let eager = CudaBackend::with_options(0, CudaOptions { step_graphs: false, ..options }).unwrap();
    let (op_by_op, _) = epoch_seconds(eager, &train.images, &train.labels, train.sample_len(), epochs);
    // A diagnostic, not the default: how much of the step the f32 GEMMs take.
    let tf32 = CudaBackend::with_options(0, CudaOptions { tf32: true, ..options }).unwrap();
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
        let gpu = CudaBackend::with_options(0, CudaOptions { f32_gemm: choice, ..options }).unwrap();
        sgemm.push(epoch_seconds(gpu, &train.images, &train.labels, train.sample_len(), epochs).0);
    }
    let mut half = Vec::new();
    for precision in [Precision::Bf16, Precision::F16] {
        let gpu = CudaBackend::with_options(0, CudaOptions { precision, ..options }).unwrap();
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

/// The workload of cuda/gpu-check/profile.sh, ignored otherwise: one epoch over the first 6,400
/// real training samples in batches of 128 on `common::env_options()` (profile.sh sets
/// MNIST_CUDA_GRAPHS=0, so a profiler sees every launch) in the precision MNIST_CUDA_PRECISION
/// names (f32, bf16 or f16; f32 when unset). Checks only that the loss stays finite.
#[test]
#[ignore = "a profiling workload for cuda/gpu-check/profile.sh"]
fn profile_one_epoch() {
    let precision = match std::env::var("MNIST_CUDA_PRECISION").as_deref() {
        Ok("bf16") => Precision::Bf16,
        Ok("f16") => Precision::F16,
        Ok("f32") | Err(_) => Precision::F32,
        Ok(other) => panic!("MNIST_CUDA_PRECISION={other}: f32, bf16 or f16"),
    };
    let options = CudaOptions { precision, ..common::env_options() };
    let Some(gpu) = common::gpu_with("profile_one_epoch", options) else {
        return;
    };
    let Some(path) = mnist_tests::mnist_data() else { return };
    let split = mnist::from_npz(&std::fs::read(path).unwrap()).unwrap();
    let n = 6400.min(split.train.len());
    let sample_len = split.train.sample_len();
    let (images, labels) = (&split.train.images[..n * sample_len], &split.train.labels[..n]);
    let (seconds, stats) = epoch_seconds(gpu, images, labels, sample_len, 1);
    println!("profile_one_epoch {options:?}: {n} samples in {:.3} s; graphs {stats}", seconds[0]);
}
