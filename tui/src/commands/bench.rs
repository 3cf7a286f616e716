//! `mnist bench`: times training steps of the default model on the CPU (or, with --backend,
//! the GPU in any --precision) and prints samples/s and the implied time of one 60,000-sample
//! epoch (median of repeats), for comparison with anchors; with --inference, the latency of
//! one image and the time to classify the test set.

use std::time::Instant;

use mnist_core::model::Network;
use mnist_core::{Backend, Config, CpuBackend, Dataset, Rng};

use crate::backend_choice::{self, Chosen};
use crate::cli::{choice_name, BenchArgs};
use crate::failure::core_failure;
use crate::Failure;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub fn run(args: BenchArgs) -> Result<String, Failure> {
    match backend_choice::choose(args.backend, args.precision)? {
        Chosen::Cuda(gpu) => {
            let settings = format!("precision={}", gpu.precision().name());
            if args.inference {
                inference(*gpu, &args, &format!("mnist_cuda_inference {settings}"))
            } else {
                training(*gpu, &args, &format!("mnist_cuda {settings}"))
            }
        }
        Chosen::Cpu { fallback } => {
            if let Some(why) = fallback {
                eprintln!("note: --backend auto: timing the CPU because {why}");
            }
            on_cpu(&args)
        }
    }
}

fn on_cpu(args: &BenchArgs) -> Result<String, Failure> {
    let mut backend = CpuBackend::new(args.threads);
    backend.set_fast_convolutions(args.conv == crate::cli::ConvAlgorithm::Fast);
    let settings = format!("conv={} threads={}", choice_name(args.conv), backend.threads());
    if args.inference {
        inference(backend, args, &format!("mnist_cpu_inference {settings}"))
    } else {
        training(backend, args, &format!("mnist_cpu {settings}"))
    }
}

/// Training throughput: the median over --repeats of --steps timed steps, after --warmup.
/// Each repeat ends by reading the running metrics back, so a GPU's queued work is counted.
fn training<B: Backend>(mut backend: B, args: &BenchArgs, label: &str) -> Result<String, Failure> {
    let batch = args.batch_size.max(1);
    let needed = batch * (args.steps + args.warmup).max(1);
    let data = match &args.data {
        Some(path) => crate::datasource::load_path(path)?.split.train,
        None => synthetic(needed.min(60_000)),
    };
    let device = backend.device_name();
    let dev =
        backend.upload_dataset(&data.images, &data.labels, data.sample_len()).map_err(|e| core_failure("bench", e))?;
    let mut net = Network::new(backend, Config::default(), batch).map_err(|e| core_failure("bench", e))?;
    net.init(1).map_err(|e| core_failure("bench", e))?;
    let batches = data.len() / batch;
    if batches == 0 {
        return Err(Failure::new(crate::EXIT_BAD_INPUT, format!("bench needs at least {batch} samples")));
    }
    let mut step = 0usize;
    let mut run_steps = |net: &mut Network<B>, n: usize| -> Result<(), Failure> {
        for _ in 0..n {
            net.train_step(&dev, (step % batches) * batch, batch, step as u64).map_err(|e| core_failure("bench", e))?;
            step += 1;
        }
        net.read_metrics(step * batch).map_err(|e| core_failure("bench", e))?;
        Ok(())
    };
    run_steps(&mut net, args.warmup)?;
    let mut rates = Vec::new();
    for _ in 0..args.repeats.max(1) {
        let t = Instant::now();
        run_steps(&mut net, args.steps.max(1))?;
        rates.push((args.steps.max(1) * batch) as f64 / t.elapsed().as_secs_f64());
    }
    let median = median(rates);
    // 71.6 MFLOP per sample for a training step of the default model (forward + backward).
    let gflops = median * 71.6e6 / 1e9;
    println!("device: {device}");
    println!("{label} batch={batch} samples_per_s={median:.1} epoch_s={:.2} gflop_s={gflops:.1}", 60_000.0 / median);
    Ok(String::new())
}

/// Inference: the median latency of single-image predictions, and the median time to
/// classify the test set (with an untrained model: the arithmetic is the same).
fn inference<B: Backend>(backend: B, args: &BenchArgs, label: &str) -> Result<String, Failure> {
    let test = match &args.data {
        Some(path) => crate::datasource::load_path(path)?.split.test,
        None => synthetic(10_000),
    };
    let images: Vec<f32> = test.images.iter().map(|&b| b as f32 / 255.0).collect();
    let device = backend.device_name();
    let mut net =
        Network::new(backend, Config::default(), args.batch_size.max(1)).map_err(|e| core_failure("bench", e))?;
    net.init(1).map_err(|e| core_failure("bench", e))?;
    let n_in = Config::default().input_len();
    let mut predict = |images: &[f32]| -> Result<f64, Failure> {
        let t = Instant::now();
        let probs = net.predict(images).map_err(|e| core_failure("bench", e))?;
        std::hint::black_box(probs);
        Ok(t.elapsed().as_secs_f64())
    };
    for i in 0..args.warmup.max(1) {
        predict(&images[i * n_in..][..n_in])?;
    }
    let mut single = Vec::new();
    for i in 0..200.min(test.len()) {
        single.push(predict(&images[i * n_in..][..n_in])?);
    }
    let mut whole = Vec::new();
    for _ in 0..args.repeats.max(1) {
        whole.push(predict(&images)?);
    }
    let (single, whole) = (median(single), median(whole));
    println!("device: {device}");
    println!(
        "{label} single_image_ms={:.3} images={} batch={} set_s={whole:.3} images_per_s={:.0}",
        single * 1e3,
        test.len(),
        args.batch_size.max(1),
        test.len() as f64 / whole
    );
    Ok(String::new())
}

fn synthetic(n: usize) -> Dataset {
    let mut rng = Rng::new(7);
    let labels: Vec<u8> = (0..n).map(|_| rng.below(10) as u8).collect();
    let images = (0..n * 784).map(|_| (rng.next_u64() >> 56) as u8).collect();
    Dataset::new(images, labels, 28, 28, 1).expect("consistent sizes")
}
