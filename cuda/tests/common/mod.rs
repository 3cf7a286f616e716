//! Shared by the CPU-vs-CUDA tests: a GPU backend or a loud SKIPPED line, the tolerance check,
//! and small generic helpers that run the same steps on any Backend.
//! Leaves out: the assertions themselves (each test file owns its properties).
#![allow(dead_code)]

use std::cell::RefCell;
use std::sync::{Mutex, MutexGuard};

use mnist_core::{Backend, Result};
use mnist_cuda::{CudaBackend, CudaOptions, F32Gemm};

/// One GPU test at a time in each test binary. libtest runs tests on parallel threads, and on
/// an H100 (2026-11-26) `recorded_steps_replay_like_steps_run_op_by_op` failed in 2 of 4 runs
/// of the whole binary, never in 6 runs alone: cuBLAS returned INTERNAL_ERROR inside its step
/// graph capture while other tests' backends started and allocated on other threads (the
/// product runs one backend). The first `gpu()` on a test's thread takes the lock; it is
/// released when that thread ends (libtest gives every test its own thread).
static GPU_TESTS: Mutex<()> = Mutex::new(());

thread_local! {
    static HELD: RefCell<Option<MutexGuard<'static, ()>>> = const { RefCell::new(None) };
}

fn hold_gpu_lock() {
    HELD.with(|held| {
        let mut held = held.borrow_mut();
        if held.is_none() {
            // A test that failed while holding it poisons nothing the others use.
            *held = Some(GPU_TESTS.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        }
    });
}

/// The options the GPU tests start backends with: the defaults, except what the variables
/// MNIST_CUDA_SGEMM (`cublas`, `tiled128` or `tiled64`: the f32 GEMMs' kernels) and
/// MNIST_CUDA_GRAPHS (`0`: every step op by op) ask for, for timing and profiling. The library
/// itself reads no variables.
pub fn env_options() -> CudaOptions {
    let F32Gemm::Tiled { min_rows, .. } = F32Gemm::default() else {
        panic!("the default f32 GEMMs are not the tiled kernel's")
    };
    let f32_gemm = match std::env::var("MNIST_CUDA_SGEMM").as_deref() {
        Ok("cublas") => F32Gemm::Cublas,
        Ok("tiled128") => F32Gemm::Tiled { min_rows, rows: Some(128) },
        Ok("tiled64") => F32Gemm::Tiled { min_rows, rows: Some(64) },
        _ => F32Gemm::default(),
    };
    let step_graphs = std::env::var("MNIST_CUDA_GRAPHS").as_deref() != Ok("0");
    CudaOptions { f32_gemm, step_graphs, ..CudaOptions::default() }
}

/// A CUDA backend on `env_options()`, or None after printing why the test did not run. With
/// MNIST_REQUIRE_GPU=1 (the GPU check script sets it) a missing GPU fails the test instead.
/// Holds this thread's turn on the GPU (see GPU_TESTS) for the rest of the test.
pub fn gpu(test: &str) -> Option<CudaBackend> {
    gpu_with(test, env_options())
}

/// `gpu` with these options.
pub fn gpu_with(test: &str, options: CudaOptions) -> Option<CudaBackend> {
    hold_gpu_lock();
    match CudaBackend::with_options(0, options) {
        Ok(backend) => Some(backend),
        Err(e) if std::env::var("MNIST_REQUIRE_GPU").as_deref() == Ok("1") => {
            panic!("MNIST_REQUIRE_GPU=1 but {test} has no GPU: {e}")
        }
        Err(e) => {
            // Straight to stderr: libtest hides eprintln! of passing tests, and this must be seen.
            let line = format!("SKIPPED: no CUDA GPU ({e}); {test} compared nothing\n");
            let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
            None
        }
    }
}

/// The relative tolerance of every CPU-vs-CUDA comparison.
pub const RTOL: f64 = 1e-4;

/// Asserts |gpu - cpu| <= rtol * (|cpu| + 0.1 * max|cpu|) element by element: relative, with an
/// absolute floor of a tenth of the tensor's scale so values that cancel to near zero in a long
/// sum (whose rounding depends on the summation order, which cuBLAS and the CPU choose
/// differently) are judged against the size of what was summed. On failure prints the first
/// differing pairs and the largest error.
pub fn assert_close(what: &str, gpu: &[f32], cpu: &[f32], rtol: f64) {
    assert_close_except(what, gpu, cpu, rtol, 0.1, 0);
}

/// `assert_close` with the absolute floor at `floor * max|cpu|` and up to `outliers` values
/// allowed beyond it (for whole-network results, where a ReLU or max-pool decision that sits
/// within rounding of a tie can go either way: see cuda_network.rs).
pub fn assert_close_except(what: &str, gpu: &[f32], cpu: &[f32], rtol: f64, floor: f64, outliers: usize) {
    assert_eq!(gpu.len(), cpu.len(), "{what}: lengths differ");
    let scale = cpu.iter().fold(0.0f64, |m, &v| m.max((v as f64).abs()));
    let mut bad = Vec::new();
    let mut worst = 0.0f64;
    for (i, (&g, &c)) in gpu.iter().zip(cpu).enumerate() {
        let allowed = rtol * ((c as f64).abs() + floor * scale);
        let diff = (g as f64 - c as f64).abs();
        let same_nan = g.is_nan() && c.is_nan();
        if !same_nan {
            worst = worst.max(if allowed > 0.0 {
                diff / allowed * rtol
            } else if diff > 0.0 {
                f64::INFINITY
            } else {
                0.0
            });
        }
        if !(same_nan || diff <= allowed) {
            bad.push((i, g, c));
        }
    }
    if !bad.is_empty() {
        eprintln!(
            "{what}: {} of {} values beyond rtol {rtol:e} ({outliers} allowed; worst error {worst:.2e} in rtol units)",
            bad.len(),
            gpu.len()
        );
    }
    assert!(
        bad.len() <= outliers,
        "{what}: {} of {} values differ beyond rtol {rtol:e} (worst error {worst:.2e} in rtol units); first (index, gpu, cpu): {:?}",
        bad.len(),
        gpu.len(),
        &bad[..bad.len().min(6)]
    );
}

/// Asserts bit-for-bit equality (NaNs equal to NaNs).
pub fn assert_same(what: &str, gpu: &[f32], cpu: &[f32]) {
    assert_eq!(gpu.len(), cpu.len(), "{what}: lengths differ");
    let bad: Vec<_> = gpu
        .iter()
        .zip(cpu)
        .enumerate()
        .filter(|(_, (g, c))| g.to_bits() != c.to_bits() && !(g.is_nan() && c.is_nan()))
        .map(|(i, (g, c))| (i, *g, *c))
        .take(6)
        .collect();
    assert!(bad.is_empty(), "{what}: values differ; first (index, gpu, cpu): {bad:?}");
}

/// A device buffer holding `values`.
pub fn buffer<B: Backend>(be: &mut B, values: &[f32]) -> Result<B::Buffer> {
    let mut b = be.alloc(values.len())?;
    be.upload(&mut b, values)?;
    Ok(b)
}

/// The first `len` values of a device buffer.
pub fn host<B: Backend>(be: &mut B, buffer: &B::Buffer, len: usize) -> Result<Vec<f32>> {
    let mut v = vec![0.0; len];
    be.download(&mut v, buffer)?;
    Ok(v)
}

/// Device indices holding `labels`: the trait uploads indices only through load_batch.
pub fn labels_on<B: Backend>(be: &mut B, labels: &[u8]) -> Result<B::Indices> {
    let data = be.upload_dataset(&vec![0; labels.len()], labels, 1)?;
    let mut x = be.alloc(labels.len())?;
    let mut out = be.alloc_indices(labels.len())?;
    be.load_batch(&mut x, &mut out, &data, 0, labels.len())?;
    Ok(out)
}

/// Indices read back through softmax_xent_backward: with every probability 0.5 and 256
/// classes, row r's gradient is negative exactly at column indices[r] (values must be < 256).
pub fn indices_host<B: Backend>(be: &mut B, indices: &B::Indices, len: usize) -> Result<Vec<u32>> {
    let classes = 256;
    let probs = buffer(be, &vec![0.5; len * classes])?;
    let mut d = be.alloc(len * classes)?;
    be.softmax_xent_backward(&mut d, &probs, indices, len, classes)?;
    let d = host(be, &d, len * classes)?;
    Ok(d.chunks(classes).map(|row| row.iter().position(|&v| v < 0.0).map_or(u32::MAX, |p| p as u32)).collect())
}

/// The CPU backend on its simple reference path (im2col convolutions, not Winograd or direct): what
/// every CUDA result is judged against, so the tolerances measure the GPU alone.
pub fn reference_cpu(threads: usize) -> mnist_core::CpuBackend {
    let mut cpu = mnist_core::CpuBackend::new(threads);
    cpu.set_fast_convolutions(false);
    cpu
}
