//! `CudaBackend::new` and `cuda_available` answer in both worlds: with a GPU they succeed and
//! agree on the device; without one they return one clear sentence instead of panicking.
//! Leaves out: what the backend computes (cuda_vs_cpu.rs and friends).

use mnist_core::Backend;
use mnist_cuda::{cuda_available, CudaBackend};

#[test]
fn new_and_cuda_available_agree_and_never_panic() {
    let available = cuda_available();
    let backend = CudaBackend::new(0);
    match (&available, &backend) {
        (Ok(name), Ok(backend)) => {
            let device = backend.device_name();
            assert!(device.starts_with(name.as_str()), "{device} vs {name}");
            eprintln!("GPU: {device}");
        }
        (Err(a), Err(b)) => {
            for e in [a, b] {
                let text = e.to_string();
                assert!(text.contains("no usable CUDA GPU"), "{text}");
                assert!(!text.contains('\n'), "one line: {text}");
            }
            if std::env::var("MNIST_REQUIRE_GPU").as_deref() == Ok("1") {
                panic!("MNIST_REQUIRE_GPU=1 but: {b}");
            }
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("SKIPPED: no CUDA GPU ({b}); checked only the error path\n").as_bytes(),
            ); // libtest hides eprintln!
        }
        _ => panic!(
            "cuda_available {:?} but CudaBackend::new {:?}",
            available,
            backend.as_ref().map(|b| b.device_name())
        ),
    }
}

#[test]
fn a_missing_device_ordinal_is_an_error() {
    let e = CudaBackend::new(1 << 20).err().expect("no machine has a millionth GPU");
    assert!(e.to_string().contains("cuda init"), "{e}");
}
