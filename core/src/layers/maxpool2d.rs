//! Max pooling with a square, non-overlapping window on one NHWC sample; the argmax is saved
//! so the backward pass routes each gradient to the input that won.
//! Leaves out: overlapping windows and padding (Keras's MaxPooling2D(2x2) needs neither).

use crate::shape::PoolDims;

/// out: (H/P, W/P, C); argmax: same shape, index into the sample's input; inp: (H, W, C).
/// Channels are innermost in NHWC, so each window position updates a contiguous row of C
/// running maxima: eight channels at a time with AVX2 compares and blends where the CPU has
/// them (written with intrinsics: the autovectoriser did so in some builds and not others).
pub fn maxpool2d_forward(out: &mut [f32], argmax: &mut [u32], inp: &[f32], d: &PoolDims) {
    let (p, c) = (d.pool, d.channels);
    #[cfg(target_arch = "x86_64")]
    let vectors = if crate::layers::gemm::has_avx2() && p * p <= MAX_WINDOW { c / 8 * 8 } else { 0 };
    #[cfg(not(target_arch = "x86_64"))]
    let vectors = 0;
    for oy in 0..d.out_height() {
        for ox in 0..d.out_width() {
            let o = (oy * d.out_width() + ox) * c;
            let first = ((oy * p) * d.width + ox * p) * c;
            let window = |dy: usize, dx: usize| ((oy * p + dy) * d.width + ox * p + dx) * c;
            #[cfg(target_arch = "x86_64")]
            if vectors > 0 {
                let mut starts = [0usize; MAX_WINDOW];
                for (k, start) in starts.iter_mut().enumerate().take(p * p) {
                    *start = window(k / p, k % p);
                }
                for c0 in (0..vectors).step_by(8) {
                    // SAFETY: the CPU has AVX2 (`vectors` is 0 otherwise); max8 checks that
                    // every window's 8 channels lie inside `inp`.
                    unsafe {
                        x86::max8(
                            &mut out[o + c0..o + c0 + 8],
                            &mut argmax[o + c0..o + c0 + 8],
                            inp,
                            &starts[..p * p],
                            c0,
                        )
                    };
                }
            }
            for j in vectors..c {
                let (mut best, mut best_index) = (inp[first + j], (first + j) as u32);
                for dy in 0..p {
                    for dx in 0..p {
                        let at = window(dy, dx) + j;
                        // `>` keeps the first of equal values; a NaN candidate never wins,
                        // but a NaN already in `best` stays (comparisons with it are false).
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

/// The largest window (P x P) the vector path takes; larger ones go channel by channel.
#[cfg(target_arch = "x86_64")]
const MAX_WINDOW: usize = 16;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::*;

    /// out[l], argmax[l] = the max over the window positions `starts` (channel `offset` + l
    /// of each; the first position the initial best) and its index, for the 8 lanes l.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn max8(out: &mut [f32], argmax: &mut [u32], inp: &[f32], starts: &[usize], offset: usize) {
        assert!(out.len() == 8 && argmax.len() == 8 && !starts.is_empty());
        assert!(starts.iter().all(|&s| s + offset + 8 <= inp.len() && s + offset + 8 <= u32::MAX as usize));
        let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        // SAFETY: every load reads 8 floats at a start checked above; the stores write the
        // 8-long out and argmax.
        unsafe {
            let mut best = _mm256_loadu_ps(inp.as_ptr().add(starts[0] + offset));
            let mut index = _mm256_add_epi32(_mm256_set1_epi32((starts[0] + offset) as i32), lanes);
            for &start in &starts[1..] {
                let start = start + offset;
                let row = _mm256_loadu_ps(inp.as_ptr().add(start));
                // Ordered `>`: false when either side is NaN, like the scalar path.
                let better = _mm256_cmp_ps::<_CMP_GT_OQ>(row, best);
                best = _mm256_blendv_ps(best, row, better);
                let candidate = _mm256_add_epi32(_mm256_set1_epi32(start as i32), lanes);
                index = _mm256_blendv_epi8(index, candidate, _mm256_castps_si256(better));
            }
            _mm256_storeu_ps(out.as_mut_ptr(), best);
            _mm256_storeu_si256(argmax.as_mut_ptr().cast(), index);
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
        // Windows of 2, 3 and 5 (past the vector path's largest, 4x4, so channel by channel).
        let shapes = [
            (4, 4, 1, 2),
            (5, 7, 3, 2),
            (6, 6, 2, 3),
            (4, 4, 8, 2),
            (5, 4, 11, 2),
            (4, 6, 16, 2),
            (7, 6, 8, 3),
            (5, 5, 9, 5),
        ];
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
