//! 2-D convolution, valid padding, stride 1, NHWC input and HWIO kernel (Keras's layouts),
//! for one sample: im2col into a scratch matrix, then one sgemm.
//! Leaves out: batching and threads (cpu/); padding and strides (the model needs neither).

use crate::layers::gemm::{gemm, Mat};
use crate::layers::relu::{relu_backward, relu_forward};
use crate::shape::Conv2dDims;

/// col: (OH*OW, K*K*C), row r = the receptive field of output pixel r in (ky, kx, c) order,
/// which is also the order of the kernel's first three axes.
pub fn im2col(col: &mut [f32], inp: &[f32], d: &Conv2dDims) {
    let (k, c, w) = (d.kernel, d.in_channels, d.width);
    let span = k * c; // one kernel row of the receptive field is contiguous in NHWC
    let patch = d.patch_len();
    for oy in 0..d.out_height() {
        for ox in 0..d.out_width() {
            let row = &mut col[(oy * d.out_width() + ox) * patch..][..patch];
            for ky in 0..k {
                let src = ((oy + ky) * w + ox) * c;
                row[ky * span..][..span].copy_from_slice(&inp[src..src + span]);
            }
        }
    }
}

/// The adjoint of `im2col`: dinp += scatter(dcol).
pub fn col2im_add(dinp: &mut [f32], dcol: &[f32], d: &Conv2dDims) {
    let (k, c, w) = (d.kernel, d.in_channels, d.width);
    let span = k * c;
    let patch = d.patch_len();
    for oy in 0..d.out_height() {
        for ox in 0..d.out_width() {
            let row = &dcol[(oy * d.out_width() + ox) * patch..][..patch];
            for ky in 0..k {
                let dst = ((oy + ky) * w + ox) * c;
                for (a, b) in dinp[dst..dst + span].iter_mut().zip(&row[ky * span..][..span]) {
                    *a += b;
                }
            }
        }
    }
}

/// out: (OH, OW, OC) = im2col(inp) @ kernel + bias, then ReLU if `relu`.
/// col: scratch (OH*OW, K*K*C); inp: (H, W, C); kernel: (K, K, C, OC); bias: (OC).
pub fn conv2d_forward(
    out: &mut [f32],
    col: &mut [f32],
    inp: &[f32],
    kernel: &[f32],
    bias: &[f32],
    d: &Conv2dDims,
    relu: bool,
) {
    let (rows, patch, oc) = (d.out_height() * d.out_width(), d.patch_len(), d.out_channels);
    im2col(col, inp, d);
    for row in out[..rows * oc].chunks_exact_mut(oc) {
        row.copy_from_slice(bias);
    }
    gemm(1.0, Mat::rows(col, rows, patch, patch), Mat::rows(kernel, patch, oc, oc), 1.0, out, oc);
    if relu {
        relu_forward(&mut out[..rows * oc]);
    }
}

/// Gradients for one sample. dout: (OH, OW, OC), masked by the ReLU in place.
/// dkernel (K, K, C, OC) and dbias (OC) ACCUMULATE (callers sum samples into them);
/// dinp (H, W, C), when given, is overwritten. col and dcol are (OH*OW, K*K*C) scratch.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward(
    dinp: Option<&mut [f32]>,
    dkernel: &mut [f32],
    dbias: &mut [f32],
    col: &mut [f32],
    dcol: &mut [f32],
    dout: &mut [f32],
    out: &[f32],
    inp: &[f32],
    kernel: &[f32],
    d: &Conv2dDims,
    relu: bool,
) {
    let (rows, patch, oc) = (d.out_height() * d.out_width(), d.patch_len(), d.out_channels);
    let dout = &mut dout[..rows * oc];
    if relu {
        relu_backward(dout, &out[..rows * oc]);
    }
    for row in dout.chunks_exact(oc) {
        for (b, g) in dbias.iter_mut().zip(row) {
            *b += g;
        }
    }
    // dkernel += col^T @ dout (the forward's im2col is recomputed: cheaper than storing it).
    im2col(col, inp, d);
    gemm(1.0, Mat::transposed(col, rows, patch, patch), Mat::rows(dout, rows, oc, oc), 1.0, dkernel, oc);
    if let Some(dinp) = dinp {
        // dcol = dout @ kernel^T, then scatter back onto the input's pixels.
        gemm(1.0, Mat::rows(dout, rows, oc, oc), Mat::transposed(kernel, patch, oc, oc), 0.0, dcol, patch);
        dinp[..d.in_len()].fill(0.0);
        col2im_add(dinp, dcol, d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Rng;
    use crate::layers::gradcheck::*;
    use alloc::vec;
    use alloc::vec::Vec;

    /// The textbook definition, in f64, as the independent reference.
    fn naive(x: &[f64], w: &[f64], b: &[f64], d: &Conv2dDims, relu: bool) -> Vec<f64> {
        let (k, c, oc) = (d.kernel, d.in_channels, d.out_channels);
        let mut y = vec![0.0; d.out_len()];
        for oy in 0..d.out_height() {
            for ox in 0..d.out_width() {
                for o in 0..oc {
                    let mut s = b[o];
                    for ky in 0..k {
                        for kx in 0..k {
                            for ci in 0..c {
                                s += x[((oy + ky) * d.width + ox + kx) * c + ci] * w[((ky * k + kx) * c + ci) * oc + o];
                            }
                        }
                    }
                    y[(oy * d.out_width() + ox) * oc + o] = if relu { s.max(0.0) } else { s };
                }
            }
        }
        y
    }

    fn check(d: Conv2dDims, relu: bool, seed: u64) {
        let mut rng = Rng::new(seed);
        let x = random_vec(&mut rng, d.in_len(), -1.0, 1.0);
        let w = random_vec(&mut rng, d.patch_len() * d.out_channels, -0.5, 0.5);
        let b = random_vec(&mut rng, d.out_channels, -0.1, 0.1);
        let r = random_vec(&mut rng, d.out_len(), -1.0, 1.0);
        let rows = d.out_height() * d.out_width();
        let mut col = vec![0.0; rows * d.patch_len()];
        let mut dcol = col.clone();
        let mut y = vec![0.0; d.out_len()];
        conv2d_forward(&mut y, &mut col, &x, &w, &b, &d, relu);
        let (x64, w64, b64) = (to_f64(&x), to_f64(&w), to_f64(&b));
        let y_ref = naive(&x64, &w64, &b64, &d, relu);
        assert_close("conv2d forward", &y, &y_ref, 1e-5, 1e-5);
        // Finite differences are meaningless at the ReLU's kink; these seeds stay clear of it.
        let pre = naive(&x64, &w64, &b64, &d, false);
        assert!(pre.iter().all(|v| v.abs() > 1e-4), "seed {seed} lands on the ReLU kink");

        let mut dx = vec![f32::NAN; d.in_len()];
        let mut dw = vec![0.0; w.len()];
        let mut db = vec![0.0; b.len()];
        let mut dy = r.clone();
        conv2d_backward(Some(&mut dx), &mut dw, &mut db, &mut col, &mut dcol, &mut dy, &y, &x, &w, &d, relu);
        let h = 1e-6;
        let gx = numeric_grad(&|x: &[f64]| dot(&naive(x, &w64, &b64, &d, relu), &r), &x64, h);
        let gw = numeric_grad(&|w: &[f64]| dot(&naive(&x64, w, &b64, &d, relu), &r), &w64, h);
        let gb = numeric_grad(&|b: &[f64]| dot(&naive(&x64, &w64, b, &d, relu), &r), &b64, h);
        assert_close("conv2d dinp", &dx, &gx, 1e-4, 1e-4);
        assert_close("conv2d dkernel", &dw, &gw, 1e-4, 1e-4);
        assert_close("conv2d dbias", &db, &gb, 1e-4, 1e-4);

        // Parameter gradients accumulate: a second call adds the same amount again.
        let mut dy = r.clone();
        conv2d_backward(None, &mut dw, &mut db, &mut col, &mut dcol, &mut dy, &y, &x, &w, &d, relu);
        let gw2: Vec<f64> = gw.iter().map(|g| 2.0 * g).collect();
        assert_close("conv2d dkernel accumulates", &dw, &gw2, 2e-4, 1e-4);
    }

    #[test]
    fn conv2d_gradients_match_finite_differences() {
        let shapes = [(5, 6, 1, 3), (6, 5, 2, 4), (7, 7, 3, 2), (4, 4, 4, 1)];
        for (seed, &(height, width, in_channels, out_channels)) in shapes.iter().enumerate() {
            for relu in [false, true] {
                let d = Conv2dDims { batch: 1, height, width, in_channels, out_channels, kernel: 3 };
                check(d, relu, seed as u64 * 2 + relu as u64);
            }
        }
        let d = Conv2dDims { batch: 1, height: 5, width: 5, in_channels: 2, out_channels: 3, kernel: 2 };
        check(d, false, 99);
    }
}
