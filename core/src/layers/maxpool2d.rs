//! Max pooling with a square, non-overlapping window on one NHWC sample; the argmax is saved
//! so the backward pass routes each gradient to the input that won.
//! Leaves out: overlapping windows and padding (Keras's MaxPooling2D(2x2) needs neither).

use crate::backend::PoolDims;

/// out: (H/P, W/P, C); argmax: same shape, index into the sample's input; inp: (H, W, C).
/// Channels are innermost in NHWC, so each window position updates a contiguous row of C
/// running maxima: the loop vectorises.
pub fn maxpool2d_forward(out: &mut [f32], argmax: &mut [u32], inp: &[f32], d: &PoolDims) {
    let (p, c) = (d.pool, d.channels);
    for oy in 0..d.out_height() {
        for ox in 0..d.out_width() {
            let o = (oy * d.out_width() + ox) * c;
            let (best, best_index) = (&mut out[o..o + c], &mut argmax[o..o + c]);
            let first = ((oy * p) * d.width + ox * p) * c;
            best.copy_from_slice(&inp[first..first + c]);
            for (j, slot) in best_index.iter_mut().enumerate() {
                *slot = (first + j) as u32;
            }
            for dy in 0..p {
                for dx in 0..p {
                    let start = ((oy * p + dy) * d.width + ox * p + dx) * c;
                    let row = &inp[start..start + c];
                    // `>` keeps the first of equal values; a NaN candidate never wins, but a
                    // NaN already in `best` stays (comparisons with it are false).
                    for j in 0..c {
                        if row[j] > best[j] {
                            best[j] = row[j];
                            best_index[j] = (start + j) as u32;
                        }
                    }
                }
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
        for (seed, &(height, width, channels, pool)) in [(4, 4, 1, 2), (5, 7, 3, 2), (6, 6, 2, 3)].iter().enumerate() {
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
}
