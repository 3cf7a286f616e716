//! CI's kernel check without a GPU: every kernel compiles with NVRTC (13.0 from the PyPI wheel,
//! see cuda/ci/fetch_nvrtc.sh) to PTX and to sm_90 CUBIN. Where libnvrtc cannot be loaded this
//! prints SKIPPED, unless MNIST_REQUIRE_NVRTC=1 (CI), where it fails. Leaves out: running them.

use std::time::Instant;

use mnist_cuda::kernels::{self, Target, KERNEL_NAMES};

/// NVRTC is there, or the test must be skipped loudly (or fail, when CI requires it).
fn nvrtc_or_skip() -> bool {
    if kernels::nvrtc_present() {
        return true;
    }
    let why = format!(
        "libnvrtc could not be loaded (LD_LIBRARY_PATH={:?})",
        std::env::var("LD_LIBRARY_PATH").unwrap_or_default()
    );
    if std::env::var("MNIST_REQUIRE_NVRTC").as_deref() == Ok("1") {
        panic!("MNIST_REQUIRE_NVRTC=1 but {why}; run cuda/ci/fetch_nvrtc.sh DIR and eval its output");
    }
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("SKIPPED: no NVRTC ({why}); the kernels were not compiled\n").as_bytes(),
    ); // libtest hides eprintln!
    false
}

fn include_dirs() -> Vec<String> {
    std::env::var("MNIST_CUDA_INCLUDE").ok().into_iter().collect()
}

#[test]
fn every_kernel_compiles_to_ptx_and_sm90_cubin() {
    if !nvrtc_or_skip() {
        return;
    }
    let version = kernels::nvrtc_version().unwrap();
    let hopper = (9, 0);
    for target in [Target::Ptx { compute_capability: hopper }, Target::Cubin { compute_capability: hopper }] {
        let started = Instant::now();
        let image = kernels::compile(target, &include_dirs()).unwrap_or_else(|e| panic!("{e}"));
        let ms = started.elapsed().as_secs_f64() * 1e3;
        eprintln!(
            "NVRTC {}.{}: {target:?} of {} kernels in {ms:.0} ms, {} bytes",
            version.0,
            version.1,
            KERNEL_NAMES.len(),
            image.len()
        );
        if let Target::Cubin { .. } = target {
            assert_eq!(&image[..4], b"\x7fELF", "a CUBIN is an ELF image");
        } else {
            assert!(String::from_utf8_lossy(&image).contains(".target sm_90"), "PTX for compute_90");
        }
        // Every kernel is in the image under its unmangled (extern "C") name.
        for name in KERNEL_NAMES {
            let found = image.windows(name.len() + 1).any(|w| {
                &w[..name.len()] == name.as_bytes() && !w[name.len()].is_ascii_alphanumeric() && w[name.len()] != b'_'
            });
            assert!(found, "{name} is missing from the {target:?} image");
        }
    }
}

#[test]
fn a_kernel_error_fails_with_nvrtcs_log() {
    if !nvrtc_or_skip() {
        return;
    }
    let err = kernels::compile_source(
        "broken.cu",
        "extern \"C\" __global__ void k(float* x) { x[0] = undefined_name; }",
        Target::Ptx { compute_capability: (9, 0) },
        &[],
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("broken.cu") && text.contains("undefined_name"), "{text}");
}

/// The headers that later f16 kernels will need resolve through MNIST_CUDA_INCLUDE (the
/// runtime wheel's include folder); today's kernels include nothing.
#[test]
fn cuda_headers_resolve_through_mnist_cuda_include() {
    if !nvrtc_or_skip() {
        return;
    }
    if include_dirs().is_empty() {
        if std::env::var("MNIST_REQUIRE_NVRTC").as_deref() == Ok("1") {
            panic!("MNIST_REQUIRE_NVRTC=1 but MNIST_CUDA_INCLUDE is not set; eval cuda/ci/fetch_nvrtc.sh's output");
        }
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"SKIPPED: MNIST_CUDA_INCLUDE is not set; the header include was not tried\n",
        ); // libtest hides eprintln!
        return;
    }
    let src =
        "#include <cuda_fp16.h>\nextern \"C\" __global__ void half_probe(__half* x) { x[0] = __float2half(1.0f); }\n";
    kernels::compile_source("half_probe.cu", src, Target::Cubin { compute_capability: (9, 0) }, &include_dirs())
        .unwrap_or_else(|e| panic!("{e}"));
}
