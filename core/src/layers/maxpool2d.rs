//! Max pooling with a square, non-overlapping window on one NHWC sample; the argmax is saved
//! so the backward pass routes each gradient to the input that won.
//! Leaves out: overlapping windows and padding (Keras's MaxPooling2D(2x2) needs neither).

use crate::backend::PoolDims;

/// out: (H/P, W/P, C); argmax: same shape, index into the sample's input; inp: (H, W, C).
/// Channels are innermost in NHWC, so each window position updates a contiguous row of C
/// running maxima: eight channels at a time in vector registers (compare and blend) where
/// the CPU has AVX2, the remainder one by one.
pub fn maxpool2d_forward(out: &mut [f32], argmax: &mut [u32], inp: &[f32], d: &PoolDims) {
    #[cfg(target_arch = "x86_64")]
    if crate::layers::gemm::has_avx2() {
        // SAFETY: the CPU supports AVX2 (checked just above).
        unsafe { forward_avx2(out, argmax, inp, d) };
        return;
    }
    forward(out, argmax, inp, d);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn forward_avx2(out: &mut [f32], argmax: &mut [u32], inp: &[f32], d: &PoolDims) {
    forward(out, argmax, inp, d);
}

const LANES: usize = 8;

#[inline(always)]
fn forward(out: &mut [f32], argmax: &mut [u32], inp: &[f32], d: &PoolDims) {
    let (p, c) = (d.pool, d.channels);
    let vectors = c / LANES * LANES;
    for oy in 0..d.out_height() {
        for ox in 0..d.out_width() {
            let o = (oy * d.out_width() + ox) * c;
            let first = ((oy * p) * d.width + ox * p) * c;
            for c0 in (0..vectors).step_by(LANES) {
                let mut best: [f32; LANES] = inp[first + c0..][..LANES].try_into().unwrap_or([0.0; LANES]);
                let mut best_index = [0u32; LANES];
                for (l, b) in best_index.iter_mut().enumerate() {
                    *b = (first + c0 + l) as u32;
                }
                for dy in 0..p {
                    for dx in 0..p {
                        let start = ((oy * p + dy) * d.width + ox * p + dx) * c + c0;
                        let row: [f32; LANES] = inp[start..][..LANES].try_into().unwrap_or([0.0; LANES]);
                        for l in 0..LANES {
                            // `>` keeps the first of equal values; a NaN candidate never wins,
                            // but a NaN already in `best` stays (comparisons with it are false).
                            let better = row[l] > best[l];
                            best[l] = if better { row[l] } else { best[l] };
                            best_index[l] = if better { (start + l) as u32 } else { best_index[l] };
                        }
                    }
                }
                out[o + c0..][..LANES].copy_from_slice(&best);
                argmax[o + c0..][..LANES].copy_from_slice(&best_index);
            }
            for j in vectors..c {
                let (mut best, mut best_index) = (inp[first + j], (first + j) as u32);
                for dy in 0..p {
                    for dx in 0..p {
                        let at = ((oy * p + dy) * d.width + ox * p + dx) * c + j;
                        if inp[at] > best {
                            (best, best_index) = (inp[at], at as u32);
                        }
                    }
                }
                out[o + j] = best;
                argmax[o + j] = best_index;
            }
        }
    }
}

/// dinp: (H, W, C), overwritten: zero except dinp[argmax[o]] = dout[o].
pub fn maxpool2d_backward(dinp: &mut [f32], argmax: &[u32], dout: &[f32], d: &PoolDims) {
    dinp[..d.in_len()].fill(0.0);
    for (&i, &g) in argmax[..d.out_len()].iter().zip(dout) {
        dinp[i as usize] += g;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Rng;
    use crate::layers::gradcheck::*;
    use alloc::vec;
    use alloc::vec::Vec;

    fn naive(x: &[f64], d: &PoolDims) -> Vec<f64> {
        let mut y = vec![f64::NEG_INFINITY; d.out_len()];
        for yy in 0..d.out_height() * d.pool {
            for xx in 0..d.out_width() * d.pool {
                for c in 0..d.channels {
                    let o = ((yy / d.pool) * d.out_width() + xx / d.pool) * d.channels + c;
                    y[o] = y[o].max(x[(yy * d.width + xx) * d.channels + c]);
                }
            }
        }
        y
    }

    #[test]
    fn maxpool_gradients_match_finite_differences() {
        // Channel counts below, at and past a multiple of 8: the scalar and the vector paths.
        let shapes = [(4, 4, 1, 2), (5, 7, 3, 2), (6, 6, 2, 3), (4, 4, 8, 2), (5, 4, 11, 2), (4, 6, 16, 2)];
        for (seed, &(height, width, channels, pool)) in shapes.iter().enumerate() {
            let d = PoolDims { batch: 1, height, width, channels, pool };
            let mut rng = Rng::new(200 + seed as u64);
            let x = random_vec(&mut rng, d.in_len(), -1.0, 1.0);
            let r = random_vec(&mut rng, d.out_len(), -1.0, 1.0);
            let mut y = vec![0.0; d.out_len()];
            let mut argmax = vec![0u32; d.out_len()];
            maxpool2d_forward(&mut y, &mut argmax, &x, &d);
            let x64 = to_f64(&x);
            assert_close("maxpool forward", &y, &naive(&x64, &d), 0.0, 0.0);
            let mut dx = vec![f32::NAN; d.in_len()];
            maxpool2d_backward(&mut dx, &argmax, &r, &d);
            let g = numeric_grad(&|x: &[f64]| dot(&naive(x, &d), &r), &x64, 1e-6);
            assert_close("maxpool dinp", &dx, &g, 1e-6, 1e-6);
        }
    }

    /// Ties go to the first window position and a NaN in the first position stays, in the
    /// vector lanes (channels 0..8) as in the scalar remainder (channel 8).
    #[test]
    fn ties_and_nans_resolve_the_same_on_both_paths() {
        let d = PoolDims { batch: 1, height: 2, width: 2, channels: 9, pool: 2 };
        let mut x = vec![1.0f32; d.in_len()];
        x[0] = f32::NAN; // channel 0, first position
        x[8] = f32::NAN; // channel 8, first position
        x[3 * 9 + 1] = 2.0; // channel 1 wins at the last position
        x[3 * 9 + 8 - 8 + 7] = 3.0; // channel 7 wins at the last position
        let (mut y, mut argmax) = (vec![0.0; 9], vec![0u32; 9]);
        maxpool2d_forward(&mut y, &mut argmax, &x, &d);
        assert!(y[0].is_nan() && y[8].is_nan());
        assert_eq!((argmax[0], argmax[8]), (0, 8));
        assert_eq!((y[1], argmax[1]), (2.0, 28));
        assert_eq!((y[7], argmax[7]), (3.0, 34));
        for j in [2, 3, 4, 5, 6] {
            assert_eq!((y[j], argmax[j]), (1.0, j as u32), "channel {j}: the first of equal values");
        }
    }
}
