//! Development aid: time each backend op of a training step at batch 128.
use mnist_core::backend::*;
use mnist_core::shape::{Conv2dDims, DenseDims, PoolDims};
use mnist_core::*;
use std::time::Instant;
fn t(name: &str, reps: usize, mut f: impl FnMut()) {
    f();
    let s = Instant::now();
    for _ in 0..reps {
        f();
    }
    println!("{name:24} {:8.2} ms", s.elapsed().as_secs_f64() * 1e3 / reps as f64);
}
fn main() {
    let threads: usize = std::env::args().nth(1).map_or(0, |s| s.parse().unwrap());
    let mut be = CpuBackend::new(threads);
    let b = 128;
    let c = Config::default();
    let l = c.layout();
    let params: Vec<f32> = model::init_params(&c, 1);
    let mut grads = vec![0.0; params.len()];
    let x: Vec<f32> = (0..b * 784).map(|i| (i % 255) as f32 / 255.0).collect();
    let c1 = Conv2dDims { batch: b, height: 28, width: 28, in_channels: 1, out_channels: 32, kernel: 3 };
    let c2 = Conv2dDims { batch: b, height: 26, width: 26, in_channels: 32, out_channels: 64, kernel: 3 };
    let mut a1 = vec![0.0; b * c1.out_len()];
    let mut a2 = vec![0.0; b * c2.out_len()];
    let mut da1 = a1.clone();
    let mut da2 = a2.clone();
    let (mut s1, mut s2) = (be.alloc_conv2d_saved(c1).unwrap(), be.alloc_conv2d_saved(c2).unwrap());
    t("conv1 fwd", 5, || be.conv2d_forward(&mut a1, &mut s1, &x, &params, l.span(0), l.span(1), c1, true).unwrap());
    t("conv2 fwd", 5, || be.conv2d_forward(&mut a2, &mut s2, &a1, &params, l.span(2), l.span(3), c2, true).unwrap());
    t("conv2 bwd", 5, || {
        da2.fill(0.1);
        be.conv2d_backward(Some(&mut da1), &mut grads, &mut da2, &s2, &a2, &a1, &params, l.span(2), l.span(3), c2, true)
            .unwrap()
    });
    be.set_fast_convolutions(false);
    t("conv2 fwd ref", 5, || {
        be.conv2d_forward(&mut a2, &mut s2, &a1, &params, l.span(2), l.span(3), c2, true).unwrap()
    });
    t("conv2 bwd ref", 5, || {
        da2.fill(0.1);
        be.conv2d_backward(Some(&mut da1), &mut grads, &mut da2, &s2, &a2, &a1, &params, l.span(2), l.span(3), c2, true)
            .unwrap()
    });
    be.set_fast_convolutions(true);
    t("conv2 fwd", 5, || be.conv2d_forward(&mut a2, &mut s2, &a1, &params, l.span(2), l.span(3), c2, true).unwrap());
    t("conv2 bwd", 5, || {
        da2.fill(0.1);
        be.conv2d_backward(Some(&mut da1), &mut grads, &mut da2, &s2, &a2, &a1, &params, l.span(2), l.span(3), c2, true)
            .unwrap()
    });
    t("conv1 bwd", 5, || {
        da1.fill(0.1);
        be.conv2d_backward(None, &mut grads, &mut da1, &s1, &a1, &x, &params, l.span(0), l.span(1), c1, true).unwrap()
    });
    let pd = PoolDims { batch: b, height: 24, width: 24, channels: 64, pool: 2 };
    let mut pooled = vec![0.0; b * 9216];
    let mut am = vec![0u32; b * 9216];
    t("pool fwd", 5, || be.maxpool2d_forward(&mut pooled, &mut am, &a2, pd).unwrap());
    t("pool bwd", 5, || be.maxpool2d_backward(&mut da2, &am, &pooled, pd).unwrap());
    t("dropout", 5, || be.dropout_forward(&mut pooled, b * 9216, 0.25, 3).unwrap());
    let dd = DenseDims { batch: b, inputs: 9216, outputs: 128 };
    let mut h = vec![0.0; b * 128];
    let mut dh = vec![0.1; b * 128];
    let mut dp = pooled.clone();
    t("dense1 fwd", 5, || be.dense_forward(&mut h, &pooled, &params, l.span(4), l.span(5), dd, true).unwrap());
    t("dense1 bwd", 5, || {
        dh.fill(0.1);
        be.dense_backward(Some(&mut dp), &mut grads, &mut dh, &h, &pooled, &params, l.span(4), l.span(5), dd, true)
            .unwrap()
    });
    let mut p2 = params.clone();
    let mut ag = vec![0.0; params.len()];
    let mut au = vec![0.0; params.len()];
    t("adadelta", 5, || be.adadelta_step(&mut p2, &mut ag, &mut au, &grads, Adadelta::default()).unwrap());
}
