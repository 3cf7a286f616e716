//! Direct convolution for layers with a short receptive field (K*K*C <= 16, e.g. conv1: 3x3
//! over one channel), where im2col + sgemm wastes its time packing a 9-long k dimension:
//! output channels 8 at a time in registers, the receptive field walked in place.
//! Leaves out: long receptive fields (conv2d.rs, conv2d_winograd.rs), padding and strides.

use crate::layers::relu::relu_backward;
use crate::shape::Conv2dDims;

const LANES: usize = 8;
type Lanes = [f32; LANES];
/// The longest receptive field handled: one accumulator register per (ky, kx, c).
const MAX_PATCH: usize = 16;

/// Whether this path handles `d`; conv2d.rs handles every shape.
pub fn applies(d: &Conv2dDims) -> bool {
    d.patch_len() <= MAX_PATCH && d.out_channels.is_multiple_of(LANES) && d.out_channels > 0
}

#[inline(always)]
fn load(src: &[f32], at: usize) -> Lanes {
    src[at..at + LANES].try_into().unwrap_or([0.0; LANES])
}

/// Calls `$f::<P>($args)` with the const P equal to `$patch` (1..=MAX_PATCH), so that the
/// receptive field's loops unroll and its accumulators live in registers.
macro_rules! with_patch {
    ($patch:expr, $f:ident, $args:tt) => {
        with_patch!(@arms $patch, $f, $args, 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16)
    };
    (@arms $patch:expr, $f:ident, $args:tt, $($p:literal)*) => {
        match $patch {
            $($p => $f::<$p> $args,)*
            _ => unreachable!("`applies` admits receptive fields of 1..=MAX_PATCH"),
        }
    };
}

/// Where each (ky, kx, c) of the receptive field sits relative to its output pixel's corner.
#[inline(always)]
fn offsets<const P: usize>(d: &Conv2dDims) -> [usize; P] {
    let (k, c) = (d.kernel, d.in_channels);
    core::array::from_fn(|j| ((j / (k * c)) * d.width + (j / c) % k) * c + j % c)
}

/// out: (OH, OW, OC) = conv(inp, kernel) + bias, then ReLU if `relu`.
/// inp: (H, W, C); kernel: (K, K, C, OC); bias: (OC).
pub fn conv2d_direct_forward(out: &mut [f32], inp: &[f32], kernel: &[f32], bias: &[f32], d: &Conv2dDims, relu: bool) {
    #[cfg(target_arch = "x86_64")]
    if crate::layers::gemm::has_avx2() {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above).
        unsafe { with_patch!(d.patch_len(), forward_avx2, (out, inp, kernel, bias, d, relu)) };
        return;
    }
    with_patch!(d.patch_len(), forward, (out, inp, kernel, bias, d, relu));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_avx2<const P: usize>(
    out: &mut [f32],
    inp: &[f32],
    kernel: &[f32],
    bias: &[f32],
    d: &Conv2dDims,
    relu: bool,
) {
    forward::<P>(out, inp, kernel, bias, d, relu);
}

#[inline(always)]
fn forward<const P: usize>(out: &mut [f32], inp: &[f32], kernel: &[f32], bias: &[f32], d: &Conv2dDims, relu: bool) {
    let (oc, ow, offsets) = (d.out_channels, d.out_width(), offsets::<P>(d));
    let last = offsets[P - 1];
    for o0 in (0..oc).step_by(LANES) {
        // This block of output channels' weights, one vector per (ky, kx, c), in registers.
        let mut weights = [[0.0; LANES]; P];
        for (j, w) in weights.iter_mut().enumerate() {
            *w = load(kernel, j * oc + o0);
        }
        let b = load(bias, o0);
        for oy in 0..d.out_height() {
            for ox in 0..ow {
                let corner = (oy * d.width + ox) * d.in_channels;
                let field = &inp[corner..=corner + last];
                let mut acc = b;
                for (w, &at) in weights.iter().zip(&offsets) {
                    let x = field[at];
                    for (a, &w) in acc.iter_mut().zip(w) {
                        *a += x * w;
                    }
                }
                let at = (oy * ow + ox) * oc + o0;
                for (y, &a) in out[at..at + LANES].iter_mut().zip(&acc) {
                    // `a < 0` keeps a NaN, as relu_forward does.
                    *y = if relu && a < 0.0 { 0.0 } else { a };
                }
            }
        }
    }
}

/// Gradients for one sample. dout: (OH, OW, OC), masked by the ReLU in place.
/// dkernel (K, K, C, OC) and dbias (OC) ACCUMULATE; dinp (H, W, C), when given, is overwritten.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_direct_backward(
    dinp: Option<&mut [f32]>,
    dkernel: &mut [f32],
    dbias: &mut [f32],
    dout: &mut [f32],
    out: &[f32],
    inp: &[f32],
    kernel: &[f32],
    d: &Conv2dDims,
    relu: bool,
) {
    let dout = &mut dout[..d.out_len()];
    if relu {
        relu_backward(dout, &out[..d.out_len()]);
    }
    #[cfg(target_arch = "x86_64")]
    if crate::layers::gemm::has_avx2() {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above).
        unsafe { with_patch!(d.patch_len(), parameter_gradients_avx2, (dkernel, dbias, dout, inp, d)) };
    } else {
        with_patch!(d.patch_len(), parameter_gradients, (dkernel, dbias, dout, inp, d));
    }
    #[cfg(not(target_arch = "x86_64"))]
    with_patch!(d.patch_len(), parameter_gradients, (dkernel, dbias, dout, inp, d));
    if let Some(dinp) = dinp {
        input_gradient(dinp, dout, kernel, d);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn parameter_gradients_avx2<const P: usize>(
    dkernel: &mut [f32],
    dbias: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    d: &Conv2dDims,
) {
    parameter_gradients::<P>(dkernel, dbias, dout, inp, d);
}

/// dkernel[(ky, kx, c)] += sum over pixels of inp[pixel + (ky, kx), c] * dout[pixel];
/// dbias += sum of dout.
#[inline(always)]
fn parameter_gradients<const P: usize>(
    dkernel: &mut [f32],
    dbias: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    d: &Conv2dDims,
) {
    let (oc, ow, offsets) = (d.out_channels, d.out_width(), offsets::<P>(d));
    let last = offsets[P - 1];
    for o0 in (0..oc).step_by(LANES) {
        let mut acc = [[0.0; LANES]; P];
        let mut bias_acc = [0.0; LANES];
        for oy in 0..d.out_height() {
            for ox in 0..ow {
                let g = load(dout, (oy * ow + ox) * oc + o0);
                for (a, &g) in bias_acc.iter_mut().zip(&g) {
                    *a += g;
                }
                let corner = (oy * d.width + ox) * d.in_channels;
                let field = &inp[corner..=corner + last];
                for (a, &at) in acc.iter_mut().zip(&offsets) {
                    let x = field[at];
                    for (a, &g) in a.iter_mut().zip(&g) {
                        *a += x * g;
                    }
                }
            }
        }
        for (j, a) in acc.iter().enumerate() {
            for (w, a) in dkernel[j * oc + o0..][..LANES].iter_mut().zip(a) {
                *w += a;
            }
        }
        for (b, a) in dbias[o0..o0 + LANES].iter_mut().zip(&bias_acc) {
            *b += a;
        }
    }
}

/// dinp[pixel + (ky, kx), c] = sum over pixels of dout[pixel] . kernel[(ky, kx, c)]. A first
/// layer needs no input gradient, so this is kept plain.
fn input_gradient(dinp: &mut [f32], dout: &[f32], kernel: &[f32], d: &Conv2dDims) {
    let (k, c, oc, ow) = (d.kernel, d.in_channels, d.out_channels, d.out_width());
    let dinp = &mut dinp[..d.in_len()];
    dinp.fill(0.0);
    for oy in 0..d.out_height() {
        for ox in 0..ow {
            let g = &dout[(oy * ow + ox) * oc..][..oc];
            for ky in 0..k {
                let row = ((oy + ky) * d.width + ox) * c;
                for (j, x) in dinp[row..row + k * c].iter_mut().enumerate() {
                    let w = &kernel[((ky * k) * c + j) * oc..][..oc];
                    *x += g.iter().zip(w).map(|(g, w)| g * w).sum::<f32>();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Rng;
    use crate::layers::conv2d;
    use crate::layers::gradcheck::*;
    use alloc::vec;

    /// Forward and every gradient against conv2d.rs's im2col path (itself checked against
    /// finite differences), with and without ReLU, on every receptive field this path takes.
    #[test]
    fn matches_the_im2col_convolution() {
        let shapes = [(28, 28, 1, 32, 3), (9, 7, 1, 8, 3), (6, 6, 4, 16, 2), (5, 8, 16, 8, 1), (7, 7, 1, 24, 4)];
        for (seed, &(height, width, in_channels, out_channels, kernel)) in shapes.iter().enumerate() {
            for relu in [false, true] {
                let d = Conv2dDims { batch: 1, height, width, in_channels, out_channels, kernel };
                assert!(applies(&d), "{d:?}");
                let mut rng = Rng::new(seed as u64 * 2 + relu as u64);
                let x = random_vec(&mut rng, d.in_len(), -1.0, 1.0);
                let w = random_vec(&mut rng, d.patch_len() * out_channels, -0.5, 0.5);
                let b = random_vec(&mut rng, out_channels, -0.1, 0.1);
                let r = random_vec(&mut rng, d.out_len(), -1.0, 1.0);
                let rows = d.out_height() * d.out_width();
                let (mut col, mut dcol) = (vec![0.0; rows * d.patch_len()], vec![0.0; rows * d.patch_len()]);
                let mut want = vec![0.0; d.out_len()];
                conv2d::conv2d_forward(&mut want, &mut col, &x, &w, &b, &d, relu);
                let mut y = vec![f32::NAN; d.out_len()];
                conv2d_direct_forward(&mut y, &x, &w, &b, &d, relu);
                assert_close("direct forward", &y, &to_f64(&want), 1e-5, 1e-5);

                let (mut dw_want, mut db_want, mut dx_want) =
                    (vec![0.0; w.len()], vec![0.0; b.len()], vec![0.0; x.len()]);
                let mut dy = r.clone();
                conv2d::conv2d_backward(
                    Some(&mut dx_want),
                    &mut dw_want,
                    &mut db_want,
                    &mut col,
                    &mut dcol,
                    &mut dy,
                    &want,
                    &x,
                    &w,
                    &d,
                    relu,
                );
                let (mut dw, mut db, mut dx) = (vec![0.0; w.len()], vec![0.0; b.len()], vec![f32::NAN; x.len()]);
                let mut dy = r.clone();
                conv2d_direct_backward(Some(&mut dx), &mut dw, &mut db, &mut dy, &y, &x, &w, &d, relu);
                assert_close("direct dinp", &dx, &to_f64(&dx_want), 1e-5, 1e-4);
                assert_close("direct dkernel", &dw, &to_f64(&dw_want), 1e-4, 1e-4);
                assert_close("direct dbias", &db, &to_f64(&db_want), 1e-4, 1e-4);

                // Parameter gradients accumulate.
                let mut dy = r.clone();
                conv2d_direct_backward(None, &mut dw, &mut db, &mut dy, &y, &x, &w, &d, relu);
                let twice: alloc::vec::Vec<f64> = dw_want.iter().map(|&g| 2.0 * g as f64).collect();
                assert_close("direct dkernel accumulates", &dw, &twice, 2e-4, 1e-4);
            }
        }
    }
}
