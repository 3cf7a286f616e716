//! CPU vs CUDA, op by op: each property runs one generic body (`fn ..<B: Backend>`) on both
//! backends with proptest's random shapes and values, and compares within common::RTOL (exact
//! where the math is exact: masks, pooling, gathers). Without a GPU each test prints SKIPPED.
//! Leaves out: whole training steps (cuda_network.rs) and real data (cuda_mnist.rs).

mod common;

use std::cell::RefCell;

use common::{assert_close, assert_same, buffer, host, indices_host, labels_on, RTOL};
use mnist_core::backend::METRICS_LEN;
use mnist_core::optim::Adadelta;
use mnist_core::shape::{Conv2dDims, DenseDims, PoolDims};
use mnist_core::{Backend, Result, Rng, Span};
use mnist_cuda::{CudaBackend, CudaOptions, F32Gemm};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Each property as two tests: CPU vs CUDA (SKIPPED without a GPU), and CPU vs a 1-thread CPU
/// in the GPU's place, which runs everywhere and proves the property itself sound (a failure
/// on the GPU is then the GPU's).
macro_rules! cpu_and_gpu_tests {
    ($($property:ident: $gpu_test:ident ($gpu_cases:expr), $self_test:ident;)*) => {$(
        #[test]
        fn $gpu_test() {
            if let Some(gpu) = common::gpu(stringify!($gpu_test)) {
                $property(gpu, $gpu_cases);
            }
        }
        #[test]
        fn $self_test() {
            $property(common::reference_cpu(1), 8);
        }
    )*};
}

cpu_and_gpu_tests! {
    load_batch_property: load_batch_matches_cpu(24), load_batch_property_is_sound;
    conv2d_property: conv2d_matches_cpu(48), conv2d_property_is_sound;
    conv2d_changed_input_property: conv2d_backward_sees_a_changed_input(16), conv2d_changed_input_property_is_sound;
    maxpool2d_property: maxpool2d_matches_cpu_exactly(32), maxpool2d_property_is_sound;
    dropout_property: dropout_masks_match_cpu_exactly(32), dropout_property_is_sound;
    dense_property: dense_matches_cpu(48), dense_property_is_sound;
    softmax_xent_property: softmax_xent_matches_cpu(32), softmax_xent_property_is_sound;
    adadelta_property: adadelta_matches_cpu(24), adadelta_property_is_sound;
}

/// Runs `property` on `cases` random inputs (PROPTEST_CASES overrides; GPU time is scarce).
fn check<S: Strategy>(strategy: S, cases: u32, property: impl Fn(S::Value) -> std::result::Result<(), TestCaseError>) {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(cases);
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    if let Err(e) = runner.run(&strategy, property) {
        panic!("{e}");
    }
}

fn values(rng: &mut Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| lo + (hi - lo) * rng.next_f32()).collect()
}

/// Parameters with padding around the spans, so offsets are exercised: (buffer, kernel, bias).
/// The kernel starts at value 3, which no float4 load can take, or (`params_at`) at
/// `kernel_offset`.
fn params_with_spans(rng: &mut Rng, kernel_len: usize, bias_len: usize) -> (Vec<f32>, Span, Span) {
    params_at(rng, 3, kernel_len, bias_len)
}

fn params_at(rng: &mut Rng, kernel_offset: usize, kernel_len: usize, bias_len: usize) -> (Vec<f32>, Span, Span) {
    let kernel = Span { offset: kernel_offset, len: kernel_len };
    // 4 values apart: a kernel at a multiple of 4 values leaves its bias at one too (float4s).
    let bias = Span { offset: kernel_offset + kernel_len.next_multiple_of(4) + 4, len: bias_len };
    let mut p = values(rng, bias.offset + bias_len + 1, -0.5, 0.5);
    for v in &mut p[bias.range()] {
        *v *= 0.2;
    }
    (p, kernel, bias)
}

// ---- load_batch -------------------------------------------------------------------------

struct BatchOut {
    x: Vec<f32>,
    labels: Vec<u32>,
}

fn load_batch_body<B: Backend>(
    be: &mut B,
    images: &[u8],
    labels: &[u8],
    sample_len: usize,
    order: &[u32],
    start: usize,
    count: usize,
) -> Result<BatchOut> {
    let mut data = be.upload_dataset(images, labels, sample_len)?;
    be.set_order(&mut data, order)?;
    let mut x = buffer(be, &vec![-1.0; count * sample_len + 3])?;
    let mut l = be.alloc_indices(count)?;
    be.load_batch(&mut x, &mut l, &data, start, count)?;
    Ok(BatchOut { x: host(be, &x, count * sample_len + 3)?, labels: indices_host(be, &l, count)? })
}

fn load_batch_property<G: Backend>(gpu: G, cases: u32) {
    let (gpu, cpu) = (RefCell::new(gpu), RefCell::new(common::reference_cpu(2)));
    let strategy = (1usize..60, 1usize..40, any::<u64>())
        .prop_flat_map(|(n, sample_len, seed)| (Just(n), Just(sample_len), Just(seed), 0..n))
        .prop_flat_map(|(n, s, seed, start)| (Just(n), Just(s), Just(seed), Just(start), 1..=n - start));
    check(strategy, cases, |(n, sample_len, seed, start, count)| {
        let mut rng = Rng::new(seed);
        let images: Vec<u8> = (0..n * sample_len).map(|_| (rng.next_u64() >> 56) as u8).collect();
        let labels: Vec<u8> = (0..n).map(|_| rng.below(10) as u8).collect();
        let mut order: Vec<u32> = (0..n as u32).collect();
        rng.shuffle(&mut order);
        let g = load_batch_body(&mut *gpu.borrow_mut(), &images, &labels, sample_len, &order, start, count).unwrap();
        let c = load_batch_body(&mut *cpu.borrow_mut(), &images, &labels, sample_len, &order, start, count).unwrap();
        assert_same("load_batch x", &g.x, &c.x);
        prop_assert_eq!(g.labels, c.labels);
        Ok(())
    });
}

// ---- conv2d -----------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct ConvCase {
    d: Conv2dDims,
    relu: bool,
    with_dinp: bool,
    seed: u64,
    kernel_offset: usize, // where the kernel starts among the parameters (3: unaligned)
}

/// A square `kernel` over an input `dh` x `dw` larger than it.
fn conv_dims(batch: usize, kernel: usize, dh: usize, dw: usize, in_channels: usize, out_channels: usize) -> Conv2dDims {
    Conv2dDims { batch, height: kernel + dh, width: kernel + dw, in_channels, out_channels, kernel }
}

fn conv_strategy() -> impl Strategy<Value = ConvCase> {
    (
        1usize..4,
        1usize..=3,
        0usize..7,
        0usize..7,
        // Up to 8 channels: patches (K*K*C) on both sides of DIRECT_CONV_MAX_PATCH (32), so
        // the direct kernel and im2col + GEMM are both compared.
        1usize..9,
        1usize..6,
        any::<bool>(),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(batch, kernel, dh, dw, in_channels, out_channels, relu, with_dinp, seed)| ConvCase {
            d: conv_dims(batch, kernel, dh, dw, in_channels, out_channels),
            relu,
            with_dinp,
            seed,
            kernel_offset: 3,
        })
}

struct ConvOut {
    out: Vec<f32>,
    dinp: Option<Vec<f32>>,
    dparams: Vec<f32>,
    dout_masked: Vec<f32>,
}

/// Forward, then backward from the given `out` (the CPU's, for both backends, so both apply
/// the same ReLU mask even where a pre-activation rounds to either side of zero).
fn conv_body<B: Backend>(be: &mut B, c: &ConvCase, out_for_backward: Option<&[f32]>) -> Result<ConvOut> {
    let d = c.d;
    let mut rng = Rng::new(c.seed);
    let inp = values(&mut rng, d.batch * d.in_len(), -1.0, 1.0);
    let (params, kernel, bias) = params_at(&mut rng, c.kernel_offset, d.patch_len() * d.out_channels, d.out_channels);
    let dout = values(&mut rng, d.batch * d.out_len(), -1.0, 1.0);
    let (inp_b, params_b) = (buffer(be, &inp)?, buffer(be, &params)?);
    let mut out_b = be.alloc(d.batch * d.out_len())?;
    let mut saved = be.alloc_conv2d_saved(d)?;
    be.conv2d_forward(&mut out_b, &mut saved, &inp_b, &params_b, kernel, bias, d, c.relu)?;
    let out = host(be, &out_b, d.batch * d.out_len())?;
    let out_b = buffer(be, out_for_backward.unwrap_or(&out))?;
    let mut dparams_b = buffer(be, &vec![7.0; params.len()])?; // outside the spans stays 7
    let mut dout_b = buffer(be, &dout)?;
    let mut dinp_b = buffer(be, &vec![f32::NAN; inp.len()])?;
    be.conv2d_backward(
        c.with_dinp.then_some(&mut dinp_b),
        &mut dparams_b,
        &mut dout_b,
        &saved,
        &out_b,
        &inp_b,
        &params_b,
        kernel,
        bias,
        d,
        c.relu,
    )?;
    Ok(ConvOut {
        out,
        dinp: if c.with_dinp { Some(host(be, &dinp_b, inp.len())?) } else { None },
        dparams: host(be, &dparams_b, params.len())?,
        dout_masked: host(be, &dout_b, dout.len())?,
    })
}

fn conv2d_property<G: Backend>(gpu: G, cases: u32) {
    let (gpu, cpu) = (RefCell::new(gpu), RefCell::new(common::reference_cpu(2)));
    check(conv_strategy(), cases, |case| {
        let c = conv_body(&mut *cpu.borrow_mut(), &case, None).unwrap();
        let g = conv_body(&mut *gpu.borrow_mut(), &case, Some(&c.out)).unwrap();
        compare_conv(&g, &c)
    });
}

/// The GPU's conv2d results against the CPU's: within RTOL, the masked dout exactly.
fn compare_conv(g: &ConvOut, c: &ConvOut) -> std::result::Result<(), TestCaseError> {
    assert_close("conv2d out", &g.out, &c.out, RTOL);
    assert_same("conv2d dout after the ReLU mask", &g.dout_masked, &c.dout_masked);
    assert_close("conv2d dparams (dkernel, dbias, untouched rest)", &g.dparams, &c.dparams, RTOL);
    match (&g.dinp, &c.dinp) {
        (Some(gd), Some(cd)) => assert_close("conv2d dinp", gd, cd, RTOL),
        (None, None) => {}
        _ => prop_assert!(false, "dinp written on one backend only"),
    }
    Ok(())
}

/// Our tiled f32 GEMM (sgemm.cu) against the CPU, through conv2d, whose forward (A B) and
/// dinp (A B^T) products it takes: patches of 16 to 288 values (multiples of 16), 16 or 32 output
/// channels, rows and columns ragged against the tiles of 64 and 128 rows. A kernel at value 3 of
/// the parameters cannot be read as float4s: those products must go to cuBLAS, and still match.
#[test]
fn conv2d_on_the_tiled_sgemm_matches_cpu() {
    let Some(gpu) = common::gpu("conv2d_on_the_tiled_sgemm_matches_cpu") else {
        return;
    };
    let (gpu, cpu) = (RefCell::new(gpu), RefCell::new(common::reference_cpu(2)));
    let strategy = (
        (1usize..4, 1usize..=3, 0usize..16, 0usize..16, 1usize..=2, prop_oneof![Just(16usize), Just(32)]),
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>(), any::<u64>()),
    );
    check(
        strategy,
        32,
        |((batch, kernel, dh, dw, halves, out_channels), (relu, with_dinp, aligned, rows128, seed))| {
            let d = conv_dims(batch, kernel, dh, dw, 16 * halves, out_channels);
            let case = ConvCase { d, relu, with_dinp, seed, kernel_offset: if aligned { 4 } else { 3 } };
            let rows = if rows128 { 128 } else { 64 };
            let tiled = F32Gemm::Tiled { min_rows: 0, rows: Some(rows) };
            // A backend per case: the f32 GEMMs' kernels are fixed when one starts.
            *gpu.borrow_mut() =
                CudaBackend::with_options(0, CudaOptions { f32_gemm: tiled, ..common::env_options() }).unwrap();
            let before = gpu.borrow().tiled_sgemm_count();
            let c = conv_body(&mut *cpu.borrow_mut(), &case, None).unwrap();
            let g = conv_body(&mut *gpu.borrow_mut(), &case, Some(&c.out)).unwrap();
            // The forward's product unless the patch takes the direct kernel; dinp's when asked.
            let products = (d.patch_len() > 32) as u64 + with_dinp as u64;
            let tiled = gpu.borrow().tiled_sgemm_count() - before;
            prop_assert_eq!(tiled, if aligned { products } else { 0 }, "products on the tiled kernel");
            compare_conv(&g, &c)
        },
    );
}

/// conv2d with the im2col scratch capped at 1 to 3 samples' matrices, so that both passes run
/// in chunks of samples (as a batch past 256 MiB of scratch does; the backward then sums the
/// kernel gradient over chunks and recomputes each chunk's matrix), on cuBLAS or the tiled
/// kernel, against the CPU.
#[test]
fn conv2d_in_sample_chunks_matches_cpu() {
    let Some(gpu) = common::gpu("conv2d_in_sample_chunks_matches_cpu") else {
        return;
    };
    let (gpu, cpu) = (RefCell::new(gpu), RefCell::new(common::reference_cpu(2)));
    let strategy = (
        (
            2usize..7,
            1usize..=3,
            0usize..8,
            0usize..8,
            prop_oneof![Just(5usize), Just(16)],
            prop_oneof![Just(5usize), Just(16)],
        ),
        (any::<bool>(), any::<bool>(), any::<bool>(), 1usize..4, any::<u64>()),
    );
    check(
        strategy,
        24,
        |((batch, kernel, dh, dw, in_channels, out_channels), (relu, with_dinp, tiled, chunk, seed))| {
            let d = conv_dims(batch, kernel, dh, dw, in_channels, out_channels);
            let case = ConvCase { d, relu, with_dinp, seed, kernel_offset: 4 };
            let choice = if tiled { F32Gemm::Tiled { min_rows: 0, rows: None } } else { F32Gemm::Cublas };
            // A backend per case: the f32 GEMMs' kernels are fixed when one starts.
            let mut g =
                CudaBackend::with_options(0, CudaOptions { f32_gemm: choice, ..common::env_options() }).unwrap();
            g.set_im2col_cap(chunk * d.out_height() * d.out_width() * d.patch_len());
            *gpu.borrow_mut() = g;
            let c = conv_body(&mut *cpu.borrow_mut(), &case, None).unwrap();
            let g = conv_body(&mut *gpu.borrow_mut(), &case, Some(&c.out)).unwrap();
            compare_conv(&g, &c)
        },
    );
}

/// What happens between a conv2d_forward and its backward. The forward's saved state (on CUDA,
/// its im2col matrix, which conv_body's cases reuse) holds for the backward of the same input,
/// unchanged; after each of these the backward must not read a stale one.
#[derive(Debug, Clone, Copy)]
enum Between {
    /// `upload` new values into the input (its saved state no longer applies: the backward gets
    /// one that no forward filled).
    Upload,
    /// `fill` the input (a kernel writes it; as for Upload).
    Fill,
    /// `dropout_forward` on the input (a kernel reads and writes it; as for Upload).
    Dropout,
    /// A forward of another input of the same shape into the same saved state (which then
    /// holds that input's).
    OtherForward,
}

/// Forward on input A, then `between`, then backward from the input as it is then: both
/// backends must give the gradients of that input. No ReLU, so the forward's rounding cannot
/// move a mask. Returns (dparams, dinp).
fn conv_changed_input_body<B: Backend>(be: &mut B, between: Between, seed: u64) -> Result<(Vec<f32>, Vec<f32>)> {
    // A patch of 3 * 3 * 5 = 45 > 32: im2col + GEMM, the path that keeps the matrix.
    let d = Conv2dDims { batch: 3, height: 7, width: 6, in_channels: 5, out_channels: 4, kernel: 3 };
    let mut rng = Rng::new(seed);
    let (a, b) = (values(&mut rng, d.batch * d.in_len(), -1.0, 1.0), values(&mut rng, d.batch * d.in_len(), -1.0, 1.0));
    let (params, kernel, bias) = params_with_spans(&mut rng, d.patch_len() * d.out_channels, d.out_channels);
    let dout = values(&mut rng, d.batch * d.out_len(), -1.0, 1.0);
    let (mut inp_b, params_b) = (buffer(be, &a)?, buffer(be, &params)?);
    let mut out_b = be.alloc(d.batch * d.out_len())?;
    let mut saved = be.alloc_conv2d_saved(d)?;
    be.conv2d_forward(&mut out_b, &mut saved, &inp_b, &params_b, kernel, bias, d, false)?;
    match between {
        Between::Upload => be.upload(&mut inp_b, &b)?,
        Between::Fill => be.fill(&mut inp_b, 0.25)?,
        Between::Dropout => be.dropout_forward(&mut inp_b, a.len(), 0.5, seed)?,
        Between::OtherForward => {
            let other = buffer(be, &b)?;
            let mut other_out = be.alloc(d.batch * d.out_len())?;
            be.conv2d_forward(&mut other_out, &mut saved, &other, &params_b, kernel, bias, d, false)?;
        }
    }
    if !matches!(between, Between::OtherForward) {
        saved = be.alloc_conv2d_saved(d)?; // the input changed: the forward's state is stale
    }
    let mut dparams_b = buffer(be, &vec![7.0; params.len()])?;
    let mut dout_b = buffer(be, &dout)?;
    let mut dinp_b = buffer(be, &vec![f32::NAN; a.len()])?;
    be.conv2d_backward(
        Some(&mut dinp_b),
        &mut dparams_b,
        &mut dout_b,
        &saved,
        &out_b,
        &inp_b,
        &params_b,
        kernel,
        bias,
        d,
        false,
    )?;
    Ok((host(be, &dparams_b, params.len())?, host(be, &dinp_b, a.len())?))
}

fn conv2d_changed_input_property<G: Backend>(gpu: G, cases: u32) {
    let (gpu, cpu) = (RefCell::new(gpu), RefCell::new(common::reference_cpu(2)));
    let between =
        prop_oneof![Just(Between::Upload), Just(Between::Fill), Just(Between::Dropout), Just(Between::OtherForward)];
    check((between, any::<u64>()), cases, |(between, seed)| {
        let (gp, gd) = conv_changed_input_body(&mut *gpu.borrow_mut(), between, seed).unwrap();
        let (cp, cd) = conv_changed_input_body(&mut *cpu.borrow_mut(), between, seed).unwrap();
        assert_close(&format!("conv2d dparams after {between:?}"), &gp, &cp, RTOL);
        assert_close(&format!("conv2d dinp after {between:?}"), &gd, &cd, RTOL);
        Ok(())
    });
}

// ---- maxpool2d --------------------------------------------------------------------------

fn maxpool_body<B: Backend>(be: &mut B, d: PoolDims, seed: u64) -> Result<(Vec<f32>, Vec<f32>)> {
    let mut rng = Rng::new(seed);
    let mut inp = values(&mut rng, d.batch * d.in_len(), -1.0, 1.0);
    // Ties and repeated values: `>` must keep the first, as on the CPU.
    for v in inp.iter_mut().step_by(5) {
        *v = 0.25;
    }
    let dout = values(&mut rng, d.batch * d.out_len(), -1.0, 1.0);
    let inp_b = buffer(be, &inp)?;
    let mut out_b = be.alloc(d.batch * d.out_len())?;
    let mut argmax = be.alloc_indices(d.batch * d.out_len())?;
    be.maxpool2d_forward(&mut out_b, &mut argmax, &inp_b, d)?;
    let dout_b = buffer(be, &dout)?;
    let mut dinp_b = buffer(be, &vec![f32::NAN; inp.len()])?;
    be.maxpool2d_backward(&mut dinp_b, &argmax, &dout_b, d)?;
    Ok((host(be, &out_b, d.batch * d.out_len())?, host(be, &dinp_b, inp.len())?))
}

fn maxpool2d_property<G: Backend>(gpu: G, cases: u32) {
    let (gpu, cpu) = (RefCell::new(gpu), RefCell::new(common::reference_cpu(2)));
    let strategy = (1usize..4, 1usize..4, 0usize..8, 0usize..8, 1usize..5, any::<u64>()).prop_map(
        |(batch, pool, dh, dw, channels, seed)| {
            (PoolDims { batch, height: pool + dh, width: pool + dw, channels, pool }, seed)
        },
    );
    check(strategy, cases, |(d, seed)| {
        let (go, gd) = maxpool_body(&mut *gpu.borrow_mut(), d, seed).unwrap();
        let (co, cd) = maxpool_body(&mut *cpu.borrow_mut(), d, seed).unwrap();
        assert_same("maxpool2d out", &go, &co);
        assert_same("maxpool2d dinp (argmax routing)", &gd, &cd);
        Ok(())
    });
}

// ---- dropout ----------------------------------------------------------------------------

fn dropout_body<B: Backend>(be: &mut B, x: &[f32], len: usize, rate: f32, seed: u64) -> Result<(Vec<f32>, Vec<f32>)> {
    let mut xb = buffer(be, x)?;
    be.dropout_forward(&mut xb, len, rate, seed)?;
    let fwd = host(be, &xb, x.len())?;
    let mut db = buffer(be, x)?;
    be.dropout_backward(&mut db, len, rate, seed)?;
    Ok((fwd, host(be, &db, x.len())?))
}

fn dropout_property<G: Backend>(gpu: G, cases: u32) {
    let (gpu, cpu) = (RefCell::new(gpu), RefCell::new(common::reference_cpu(2)));
    let rates = prop_oneof![Just(0.0f32), Just(0.25), Just(0.5), 0.0f32..0.95];
    check((1usize..5000, 0usize..10, rates, any::<u64>()), cases, |(len, extra, rate, seed)| {
        let x = values(&mut Rng::new(seed ^ 1), len + extra, -2.0, 2.0);
        let (gf, gb) = dropout_body(&mut *gpu.borrow_mut(), &x, len, rate, seed).unwrap();
        let (cf, cb) = dropout_body(&mut *cpu.borrow_mut(), &x, len, rate, seed).unwrap();
        assert_same("dropout forward (mask, scale, untouched tail)", &gf, &cf);
        assert_same("dropout backward", &gb, &cb);
        Ok(())
    });
}

// ---- dense ------------------------------------------------------------------------------

fn dense_body<B: Backend>(
    be: &mut B,
    d: DenseDims,
    relu: bool,
    with_dinp: bool,
    seed: u64,
    out_for_backward: Option<&[f32]>,
) -> Result<ConvOut> {
    let mut rng = Rng::new(seed);
    let inp = values(&mut rng, d.batch * d.inputs, -1.0, 1.0);
    let (params, kernel, bias) = params_with_spans(&mut rng, d.inputs * d.outputs, d.outputs);
    let dout = values(&mut rng, d.batch * d.outputs, -1.0, 1.0);
    let (inp_b, params_b) = (buffer(be, &inp)?, buffer(be, &params)?);
    let mut out_b = be.alloc(d.batch * d.outputs)?;
    be.dense_forward(&mut out_b, &inp_b, &params_b, kernel, bias, d, relu)?;
    let out = host(be, &out_b, d.batch * d.outputs)?;
    let out_b = buffer(be, out_for_backward.unwrap_or(&out))?;
    let mut dparams_b = buffer(be, &vec![7.0; params.len()])?;
    let mut dout_b = buffer(be, &dout)?;
    let mut dinp_b = buffer(be, &vec![f32::NAN; inp.len()])?;
    be.dense_backward(
        with_dinp.then_some(&mut dinp_b),
        &mut dparams_b,
        &mut dout_b,
        &out_b,
        &inp_b,
        &params_b,
        kernel,
        bias,
        d,
        relu,
    )?;
    Ok(ConvOut {
        out,
        dinp: if with_dinp { Some(host(be, &dinp_b, inp.len())?) } else { None },
        dparams: host(be, &dparams_b, params.len())?,
        dout_masked: host(be, &dout_b, dout.len())?,
    })
}

fn dense_property<G: Backend>(gpu: G, cases: u32) {
    let (gpu, cpu) = (RefCell::new(gpu), RefCell::new(common::reference_cpu(2)));
    let strategy = (1usize..40, 1usize..300, 1usize..40, any::<bool>(), any::<bool>(), any::<u64>());
    check(strategy, cases, |(batch, inputs, outputs, relu, with_dinp, seed)| {
        let d = DenseDims { batch, inputs, outputs };
        let c = dense_body(&mut *cpu.borrow_mut(), d, relu, with_dinp, seed, None).unwrap();
        let g = dense_body(&mut *gpu.borrow_mut(), d, relu, with_dinp, seed, Some(&c.out)).unwrap();
        assert_close("dense out", &g.out, &c.out, RTOL);
        assert_same("dense dout after the ReLU mask", &g.dout_masked, &c.dout_masked);
        assert_close("dense dparams (dkernel, dbias, untouched rest)", &g.dparams, &c.dparams, RTOL);
        if let (Some(gd), Some(cd)) = (&g.dinp, &c.dinp) {
            assert_close("dense dinp", gd, cd, RTOL);
        }
        prop_assert_eq!(g.dinp.is_some(), c.dinp.is_some());
        Ok(())
    });
}

// ---- softmax_xent -----------------------------------------------------------------------

fn softmax_body<B: Backend>(
    be: &mut B,
    logits: &[f32],
    labels: &[u8],
    classes: usize,
    probs_for_backward: Option<&[f32]>,
) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
    let batch = labels.len();
    let logits_b = buffer(be, logits)?;
    let labels_b = labels_on(be, labels)?;
    let mut probs_b = be.alloc(batch * classes)?;
    let mut metrics = buffer(be, &[1.5, 2.0])?; // sums add to what is there
    be.softmax_xent_forward(&mut probs_b, &mut metrics, &logits_b, &labels_b, batch, classes)?;
    let probs = host(be, &probs_b, batch * classes)?;
    let probs_b = buffer(be, probs_for_backward.unwrap_or(&probs))?;
    let mut dlogits = buffer(be, &vec![f32::NAN; batch * classes])?;
    be.softmax_xent_backward(&mut dlogits, &probs_b, &labels_b, batch, classes)?;
    Ok((probs, host(be, &metrics, METRICS_LEN)?, host(be, &dlogits, batch * classes)?))
}

fn softmax_xent_property<G: Backend>(gpu: G, cases: u32) {
    let (gpu, cpu) = (RefCell::new(gpu), RefCell::new(common::reference_cpu(2)));
    // Up to 600 rows: several blocks of the forward's reduction, the last one partial.
    check((1usize..600, 2usize..20, 0.5f32..40.0, any::<u64>()), cases, |(batch, classes, spread, seed)| {
        let mut rng = Rng::new(seed);
        // A wide spread makes some rows certain, so the clip and its zero gradient happen.
        let logits = values(&mut rng, batch * classes, -spread, spread);
        let labels: Vec<u8> = (0..batch).map(|_| rng.below(classes as u32) as u8).collect();
        let (cp, cm, cd) = softmax_body(&mut *cpu.borrow_mut(), &logits, &labels, classes, None).unwrap();
        let (gp, gm, gd) = softmax_body(&mut *gpu.borrow_mut(), &logits, &labels, classes, Some(&cp)).unwrap();
        assert_close("softmax probs", &gp, &cp, RTOL);
        assert_close("softmax metrics [loss sum, correct]", &gm, &cm, RTOL);
        assert_close("softmax dlogits", &gd, &cd, RTOL);
        Ok(())
    });
}

// ---- adadelta ---------------------------------------------------------------------------

fn adadelta_body<B: Backend>(be: &mut B, n: usize, hyper: Adadelta, seed: u64, steps: usize) -> Result<Vec<Vec<f32>>> {
    let mut rng = Rng::new(seed);
    let mut p = buffer(be, &values(&mut rng, n, -1.0, 1.0))?;
    let mut a = be.alloc(n)?;
    let mut u = be.alloc(n)?;
    for _ in 0..steps {
        let g = buffer(be, &values(&mut rng, n, -1.0, 1.0))?;
        be.adadelta_step(&mut p, &mut a, &mut u, &g, hyper)?;
    }
    Ok(vec![host(be, &p, n)?, host(be, &a, n)?, host(be, &u, n)?])
}

fn adadelta_property<G: Backend>(gpu: G, cases: u32) {
    let (gpu, cpu) = (RefCell::new(gpu), RefCell::new(common::reference_cpu(2)));
    check(
        (1usize..3000, 0.05f32..1.0, 0.5f32..0.99, 1e-8f32..1e-5, 1usize..4, any::<u64>()),
        cases,
        |(n, learning_rate, rho, epsilon, steps, seed)| {
            let hyper = Adadelta { learning_rate, rho, epsilon };
            let g = adadelta_body(&mut *gpu.borrow_mut(), n, hyper, seed, steps).unwrap();
            let c = adadelta_body(&mut *cpu.borrow_mut(), n, hyper, seed, steps).unwrap();
            for (what, (gv, cv)) in ["params", "accum_grad", "accum_update"].iter().zip(g.iter().zip(&c)) {
                assert_close(&format!("adadelta {what}"), gv, cv, RTOL);
            }
            Ok(())
        },
    );
}
