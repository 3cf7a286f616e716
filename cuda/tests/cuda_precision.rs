//! bf16 and f16 GEMMs (`CudaOptions::precision`) against the CPU's f32 reference:
//! - every GEMM-backed op (conv2d through im2col + GEMM, dense), forward and backward, within
//!   its format's rounding, and visibly not f32 (so the half path really ran);
//! - f16's loss scaling: the scaled loss gradient, a step whose gradients overflow is skipped
//!   (parameters bit-unchanged, scale halved, step counted), and a clean step's update equals the
//!   CPU's (the gradients were unscaled);
//! - one real-MNIST epoch in each format reaching the CPU's accuracy band (needs $MNIST_DATA).
//!
//! SKIPPED without a GPU. Leaves out: timing (cuda_speed.rs).

mod common;

use common::{buffer, host, labels_on};
use mnist_core::codec::mnist;
use mnist_core::model::Network;
use mnist_core::shape::{Conv2dDims, DenseDims};
use mnist_core::train::{Recorder, TrainConfig, Trainer};
use mnist_core::{Backend, Config, Dataset, Result, Rng, Span};
use mnist_cuda::{CudaBackend, CudaOptions, LossScale, Precision};

/// Unit roundoff of each format's significand (bf16: 8 bits, f16: 11 bits).
fn unit_roundoff(p: Precision) -> f64 {
    match p {
        Precision::F32 => 2f64.powi(-24),
        Precision::Bf16 => 2f64.powi(-8),
        Precision::F16 => 2f64.powi(-11),
    }
}

fn gpu_in(test: &str, precision: Precision) -> Option<CudaBackend> {
    common::gpu_with(test, CudaOptions { precision, ..common::env_options() })
}

/// ||gpu - cpu|| / ||cpu|| over the whole tensor.
fn relative_l2(gpu: &[f32], cpu: &[f32]) -> f64 {
    assert_eq!(gpu.len(), cpu.len());
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for (&g, &c) in gpu.iter().zip(cpu) {
        diff += (g as f64 - c as f64).powi(2);
        norm += (c as f64).powi(2);
    }
    (diff / norm.max(f64::MIN_POSITIVE)).sqrt()
}

/// A GEMM's result: within 3 unit roundoffs of the f32 one (rounding both inputs gives about
/// 0.8 u in the L2 norm), and at least u/100 away from it: f32 GEMMs land near 1e-7, far below.
fn assert_half_gemm(what: &str, p: Precision, gpu: &[f32], cpu: &[f32]) {
    let (error, u) = (relative_l2(gpu, cpu), unit_roundoff(p));
    eprintln!("{p:?} {what}: relative L2 error {error:.2e} (u = {u:.2e})");
    assert!(gpu.iter().all(|v| v.is_finite()), "{p:?} {what}: non-finite values");
    assert!(error <= 3.0 * u, "{p:?} {what}: error {error:.2e} beyond 3u = {:.2e}", 3.0 * u);
    assert!(error >= u / 100.0, "{p:?} {what}: error {error:.2e} is f32's, not {p:?}'s: the half path did not run");
}

/// Outputs of the ops that are not GEMMs (bias gradients) stay f32.
fn assert_f32(what: &str, gpu: &[f32], cpu: &[f32]) {
    let error = relative_l2(gpu, cpu);
    assert!(error <= 1e-5, "{what}: error {error:.2e}, but this sum is f32 in every precision");
}

fn values(rng: &mut Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| lo + (hi - lo) * rng.next_f32()).collect()
}

/// Everything the GEMM-backed ops produce: [conv out, conv dinp, conv dkernel, dense out,
/// dense dinp, dense dkernel] and the two bias gradients.
struct OpResults {
    gemm: Vec<(&'static str, Vec<f32>)>,
    bias: Vec<(&'static str, Vec<f32>)>,
}

/// conv2d with a 72-value patch (so im2col + GEMM, not the direct kernel) and a dense layer,
/// forward with bias and ReLU, then backward, on fixed random inputs. The backward passes leave
/// the ReLU out: its mask comes from the forward's outputs, and the ~0.1% of them within
/// half-precision rounding of zero would flip whole gradient entries, measuring the mask rather
/// than the GEMMs.
///
/// `round`, for the CPU twin, rounds what the GPU's GEMMs would see in half precision: the
/// inputs, the kernels and the output gradients (not the biases, which stay f32 on the GPU).
fn gemm_ops<B: Backend>(mut be: B, round: fn(f32) -> f32) -> Result<OpResults> {
    let mut rng = Rng::new(11);
    let c = Conv2dDims { batch: 3, height: 12, width: 11, in_channels: 8, out_channels: 16, kernel: 3 };
    let conv_kernel = Span { offset: 5, len: c.patch_len() * c.out_channels };
    let conv_bias = Span { offset: conv_kernel.offset + conv_kernel.len, len: c.out_channels };
    let d = DenseDims { batch: 7, inputs: 300, outputs: 24 };
    let dense_kernel = Span { offset: conv_bias.offset + conv_bias.len + 3, len: d.inputs * d.outputs };
    let dense_bias = Span { offset: dense_kernel.offset + dense_kernel.len, len: d.outputs };
    let mut host_params = values(&mut rng, dense_bias.offset + dense_bias.len, -0.3, 0.3);
    for span in [conv_kernel, dense_kernel] {
        host_params[span.range()].iter_mut().for_each(|v| *v = round(*v));
    }
    let params = buffer(&mut be, &host_params)?;
    let values = |rng: &mut Rng, n, lo, hi| values(rng, n, lo, hi).into_iter().map(round).collect::<Vec<f32>>();
    let mut dparams = be.alloc(dense_bias.offset + dense_bias.len)?;

    let conv_in = buffer(&mut be, &values(&mut rng, c.batch * c.in_len(), 0.0, 1.0))?;
    let mut conv_out = be.alloc(c.batch * c.out_len())?;
    let mut conv_saved = be.alloc_conv2d_saved(c)?;
    be.conv2d_forward(&mut conv_out, &mut conv_saved, &conv_in, &params, conv_kernel, conv_bias, c, true)?;
    let mut conv_dout = buffer(&mut be, &values(&mut rng, c.batch * c.out_len(), -1.0, 1.0))?;
    let mut conv_dinp = be.alloc(c.batch * c.in_len())?;
    be.conv2d_backward(
        Some(&mut conv_dinp),
        &mut dparams,
        &mut conv_dout,
        &conv_saved,
        &conv_out,
        &conv_in,
        &params,
        conv_kernel,
        conv_bias,
        c,
        false,
    )?;

    let dense_in = buffer(&mut be, &values(&mut rng, d.batch * d.inputs, -1.0, 1.0))?;
    let mut dense_out = be.alloc(d.batch * d.outputs)?;
    be.dense_forward(&mut dense_out, &dense_in, &params, dense_kernel, dense_bias, d, true)?;
    let mut dense_dout = buffer(&mut be, &values(&mut rng, d.batch * d.outputs, -1.0, 1.0))?;
    let mut dense_dinp = be.alloc(d.batch * d.inputs)?;
    be.dense_backward(
        Some(&mut dense_dinp),
        &mut dparams,
        &mut dense_dout,
        &dense_out,
        &dense_in,
        &params,
        dense_kernel,
        dense_bias,
        d,
        false,
    )?;

    let grads = host(&mut be, &dparams, dense_bias.offset + dense_bias.len)?;
    Ok(OpResults {
        gemm: vec![
            ("conv2d out", host(&mut be, &conv_out, c.batch * c.out_len())?),
            ("conv2d dinp", host(&mut be, &conv_dinp, c.batch * c.in_len())?),
            ("conv2d dkernel", grads[conv_kernel.range()].to_vec()),
            ("dense out", host(&mut be, &dense_out, d.batch * d.outputs)?),
            ("dense dinp", host(&mut be, &dense_dinp, d.batch * d.inputs)?),
            ("dense dkernel", grads[dense_kernel.range()].to_vec()),
        ],
        bias: vec![
            ("conv2d dbias", grads[conv_bias.range()].to_vec()),
            ("dense dbias", grads[dense_bias.range()].to_vec()),
        ],
    })
}

fn no_rounding(v: f32) -> f32 {
    v
}
fn to_bf16(v: f32) -> f32 {
    half::bf16::from_f32(v).to_f32()
}
fn to_f16(v: f32) -> f32 {
    half::f16::from_f32(v).to_f32()
}

/// The GPU test's bounds, proven sound on the CPU (so it runs everywhere): the f32 CPU with
/// every GEMM operand rounded to bf16 or f16 first, as the GPU rounds them, lands within the
/// same bounds of the plain f32 CPU.
#[test]
fn half_precision_bounds_are_sound() {
    let cpu = gemm_ops(common::reference_cpu(1), no_rounding).unwrap();
    for (precision, round) in [(Precision::Bf16, to_bf16 as fn(f32) -> f32), (Precision::F16, to_f16)] {
        let rounded = gemm_ops(common::reference_cpu(1), round).unwrap();
        for ((what, r), (_, c)) in rounded.gemm.iter().zip(&cpu.gemm) {
            assert_half_gemm(what, precision, r, c);
        }
    }
}

#[test]
fn half_precision_gemm_ops_match_the_cpu_within_their_rounding() {
    let cpu = gemm_ops(common::reference_cpu(1), no_rounding).unwrap();
    for precision in [Precision::Bf16, Precision::F16] {
        let Some(gpu) = gpu_in("half_precision_gemm_ops_match_the_cpu_within_their_rounding", precision) else {
            return;
        };
        let gpu = gemm_ops(gpu, no_rounding).unwrap();
        for ((what, g), (_, c)) in gpu.gemm.iter().zip(&cpu.gemm) {
            assert_half_gemm(what, precision, g, c);
        }
        for ((what, g), (_, c)) in gpu.bias.iter().zip(&cpu.bias) {
            assert_f32(what, g, c);
        }
    }
}

fn synthetic(config: &Config, n: usize, seed: u64) -> Dataset {
    let mut rng = Rng::new(seed);
    let labels: Vec<u8> = (0..n).map(|_| rng.below(config.classes as u32) as u8).collect();
    let images = (0..n * config.input_len()).map(|_| (rng.next_u64() >> 56) as u8).collect();
    Dataset::new(images, labels, config.height, config.width, config.channels).unwrap()
}

/// One training step of the Keras model from seed 1's weights; returns the weights before and after.
fn one_step<B: Backend>(net: &mut Network<B>, data: &B::Dataset, batch: usize) -> Result<(Vec<f32>, Vec<f32>)> {
    net.init(1)?;
    let before = net.params()?;
    net.train_step(data, 0, batch, 7)?;
    Ok((before, net.params()?))
}

#[test]
fn f16_loss_scaling_scales_skips_overflow_and_unscales() {
    let Some(mut gpu) = gpu_in("f16_loss_scaling_scales_skips_overflow_and_unscales", Precision::F16) else {
        return;
    };
    assert_eq!(gpu.loss_scale().unwrap(), Some(LossScale { scale: 65536.0, skipped_steps: 0 }));
    assert!(gpu.set_loss_scale(3.0).is_err(), "not a power of two");

    // The loss gradient leaves softmax_xent_backward multiplied by the scale, exactly.
    let (batch, classes) = (5, 10);
    let mut rng = Rng::new(3);
    let raw = values(&mut rng, batch * classes, 0.01, 1.0);
    let probs: Vec<f32> =
        raw.chunks(classes).flat_map(|r| r.iter().map(|v| v / r.iter().sum::<f32>()).collect::<Vec<_>>()).collect();
    let label_bytes = [3u8, 0, 9, 4, 4];
    let dlogits = |be: &mut CudaBackend| -> Vec<f32> {
        let p = buffer(be, &probs).unwrap();
        let labels = labels_on(be, &label_bytes).unwrap();
        let mut d = be.alloc(batch * classes).unwrap();
        be.softmax_xent_backward(&mut d, &p, &labels, batch, classes).unwrap();
        host(be, &d, batch * classes).unwrap()
    };
    let scaled = dlogits(&mut gpu);
    let mut f32_gpu = common::gpu("f16_loss_scaling_scales_skips_overflow_and_unscales").unwrap();
    let plain = dlogits(&mut f32_gpu);
    for (s, p) in scaled.iter().zip(&plain) {
        assert_eq!(s.to_bits(), (p * 65536.0).to_bits(), "scaled {s} vs plain {p}");
    }

    // At 2^24 the loss gradient (up to ~0.9 / 32 x 2^24) overflows f16 in the last layer's GEMM:
    // the step is skipped and the scale halved.
    let config = Config::default();
    let data = synthetic(&config, 64, 5);
    let batch = 32;
    let dev = gpu.upload_dataset(&data.images, &data.labels, data.sample_len()).unwrap();
    let mut net = Network::new(gpu, config, batch).unwrap();
    net.backend.set_loss_scale(16_777_216.0).unwrap();
    let (before, after) = one_step(&mut net, &dev, batch).unwrap();
    assert!(
        before.iter().zip(&after).all(|(a, b)| a.to_bits() == b.to_bits()),
        "an overflowing step must change nothing"
    );
    assert_eq!(net.backend.loss_scale().unwrap(), Some(LossScale { scale: 8_388_608.0, skipped_steps: 1 }));

    // At 2^10 the step runs, and its update is the CPU's within f16's rounding: the gradients
    // were unscaled before Adadelta (unscaled ones would move small weights ~1000x further).
    net.backend.set_loss_scale(1024.0).unwrap();
    let (gpu_before, gpu_after) = one_step(&mut net, &dev, batch).unwrap();
    assert_eq!(net.backend.loss_scale().unwrap(), Some(LossScale { scale: 1024.0, skipped_steps: 0 }));
    let mut cpu = common::reference_cpu(2);
    let cpu_dev = cpu.upload_dataset(&data.images, &data.labels, data.sample_len()).unwrap();
    let mut cpu_net = Network::new(cpu, config, batch).unwrap();
    let (cpu_before, cpu_after) = one_step(&mut cpu_net, &cpu_dev, batch).unwrap();
    assert_eq!(gpu_before, cpu_before, "both start from seed 1's weights");
    let delta = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| y - x).collect::<Vec<f32>>();
    let (gpu_delta, cpu_delta) = (delta(&gpu_before, &gpu_after), delta(&cpu_before, &cpu_after));
    let error = relative_l2(&gpu_delta, &cpu_delta);
    eprintln!("f16 step update vs the CPU's: relative L2 error {error:.2e}");
    assert!(error <= 0.05, "f16 step update differs from the CPU's by {error:.2e}");
}

#[test]
fn one_epoch_in_each_half_precision_reaches_the_cpus_accuracy() {
    let test = "one_epoch_in_each_half_precision_reaches_the_cpus_accuracy";
    if common::gpu(test).is_none() {
        return;
    }
    let Some(path) = mnist_tests::mnist_data() else { return };
    let split = mnist::from_npz(&std::fs::read(path).unwrap()).unwrap();
    for precision in [Precision::Bf16, Precision::F16] {
        let gpu = gpu_in(test, precision).unwrap();
        let config = TrainConfig { epochs: 1, ..TrainConfig::default() };
        let mut trainer = Trainer::new(gpu, Config::default(), config, &split.train, Some(&split.test)).unwrap();
        let started = std::time::Instant::now();
        trainer.run(&mut Recorder::default()).unwrap();
        let seconds = started.elapsed().as_secs_f64();
        let (train, test_metrics) = *trainer.history().last().unwrap();
        let test_metrics = test_metrics.unwrap();
        let scale = trainer.network.backend.loss_scale().unwrap();
        // One line per format for the GPU check's table.
        println!(
            "GPU_PRECISION precision={} epoch_with_validation_s={seconds:.3} loss={:.4} val_acc={:.4} loss_scale={scale:?}",
            precision.name(),
            train.loss,
            test_metrics.accuracy
        );
        assert!(
            test_metrics.accuracy >= 0.975,
            "{precision:?}: test accuracy after one epoch {}",
            test_metrics.accuracy
        );
    }
}
