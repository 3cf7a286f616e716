//! The layout conversions between our (Keras) tensors and ONNX's: conv kernels HWIO <-> OIHW,
//! dense kernels (in, out) <-> Gemm's transposed (out, in), and dense rows over any flatten
//! order -> our HWC order. The only place these conversions live; each has a round-trip test.

/// A named axis of an image tensor: batch, channels, rows, columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Axis {
    N,
    C,
    H,
    W,
}

/// w: (KH, KW, I, O) -> out: (O, I, KH, KW)
pub(crate) fn hwio_to_oihw(out: &mut [f32], w: &[f32], [kh_n, kw_n, i_n, o_n]: [usize; 4]) {
    for kh in 0..kh_n {
        for kw in 0..kw_n {
            for i in 0..i_n {
                for o in 0..o_n {
                    out[((o * i_n + i) * kh_n + kh) * kw_n + kw] = w[((kh * kw_n + kw) * i_n + i) * o_n + o];
                }
            }
        }
    }
}

/// w: (O, I, KH, KW) -> out: (KH, KW, I, O)
pub(crate) fn oihw_to_hwio(out: &mut [f32], w: &[f32], [o_n, i_n, kh_n, kw_n]: [usize; 4]) {
    for o in 0..o_n {
        for i in 0..i_n {
            for kh in 0..kh_n {
                for kw in 0..kw_n {
                    out[((kh * kw_n + kw) * i_n + i) * o_n + o] = w[((o * i_n + i) * kh_n + kh) * kw_n + kw];
                }
            }
        }
    }
}

/// w: (R, C) -> out: (C, R); Gemm's `transB = 1` stores a dense kernel as (out, in).
pub(crate) fn transpose(out: &mut [f32], w: &[f32], rows: usize, cols: usize) {
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = w[r * cols + c];
        }
    }
}

/// w: (F, OUT) whose rows follow a flatten of the axes `order` (a permutation of C, H and W,
/// outermost first) -> out: (F, OUT) with rows in our HWC order. `(h, w, c)` are the sizes.
/// With `order == [H, W, C]` this is a copy.
pub(crate) fn dense_rows_to_hwc(out: &mut [f32], w: &[f32], order: [Axis; 3], (h_n, w_n, c_n): (usize, usize, usize)) {
    let outputs = w.len().checked_div(h_n * w_n * c_n).unwrap_or(0);
    let size = |a: Axis| match a {
        Axis::H => h_n,
        Axis::W => w_n,
        Axis::C => c_n,
        Axis::N => 1,
    };
    for h in 0..h_n {
        for x in 0..w_n {
            for c in 0..c_n {
                let index = |a: Axis| match a {
                    Axis::H => h,
                    Axis::W => x,
                    Axis::C => c,
                    Axis::N => 0,
                };
                let theirs = (index(order[0]) * size(order[1]) + index(order[1])) * size(order[2]) + index(order[2]);
                let ours = (h * w_n + x) * c_n + c;
                out[ours * outputs..(ours + 1) * outputs].copy_from_slice(&w[theirs * outputs..(theirs + 1) * outputs]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    fn counting(n: usize) -> Vec<f32> {
        (0..n).map(|i| i as f32).collect()
    }

    #[test]
    fn conv_kernels_round_trip_and_land_where_onnx_reads_them() {
        let (kh, kw, i, o) = (3, 2, 4, 5);
        let hwio = counting(kh * kw * i * o);
        let mut oihw = vec![0.0; hwio.len()];
        hwio_to_oihw(&mut oihw, &hwio, [kh, kw, i, o]);
        // Element (kh=2, kw=1, i=3, o=4) of HWIO is at ((2*2+1)*4+3)*5+4; in OIHW at ((4*4+3)*3+2)*2+1.
        assert_eq!(oihw[((4 * 4 + 3) * 3 + 2) * 2 + 1], hwio[((2 * 2 + 1) * 4 + 3) * 5 + 4]);
        let mut back = vec![0.0; hwio.len()];
        oihw_to_hwio(&mut back, &oihw, [o, i, kh, kw]);
        assert_eq!(back, hwio);
    }

    #[test]
    fn transposes_round_trip() {
        let w = counting(3 * 7);
        let (mut t, mut back) = (vec![0.0; w.len()], vec![0.0; w.len()]);
        transpose(&mut t, &w, 3, 7);
        assert_eq!(t[5 * 3 + 2], w[2 * 7 + 5]);
        transpose(&mut back, &t, 7, 3);
        assert_eq!(back, w);
    }

    /// Rows of a dense kernel as seen by a flatten in `order`, built from our HWC rows.
    fn rows_in(order: [Axis; 3], ours: &[f32], (h_n, w_n, c_n): (usize, usize, usize), outputs: usize) -> Vec<f32> {
        let mut theirs = vec![0.0; ours.len()];
        for h in 0..h_n {
            for x in 0..w_n {
                for c in 0..c_n {
                    let at = |a: Axis| match a {
                        Axis::H => (h, h_n),
                        Axis::W => (x, w_n),
                        _ => (c, c_n),
                    };
                    let [(i0, _), (i1, s1), (i2, s2)] = order.map(at);
                    let t = (i0 * s1 + i1) * s2 + i2;
                    let o = (h * w_n + x) * c_n + c;
                    theirs[t * outputs..(t + 1) * outputs].copy_from_slice(&ours[o * outputs..(o + 1) * outputs]);
                }
            }
        }
        theirs
    }

    #[test]
    fn dense_rows_of_any_flatten_order_become_hwc() {
        let dims = (2, 3, 4);
        let outputs = 5;
        let ours = counting(2 * 3 * 4 * outputs);
        use Axis::*;
        for order in [[H, W, C], [C, H, W], [W, H, C], [C, W, H], [H, C, W], [W, C, H]] {
            let theirs = rows_in(order, &ours, dims, outputs);
            if order != [H, W, C] {
                assert_ne!(theirs, ours, "{order:?} must reorder");
            }
            let mut back = vec![0.0; ours.len()];
            dense_rows_to_hwc(&mut back, &theirs, order, dims);
            assert_eq!(back, ours, "{order:?}");
        }
        // PyTorch's NCHW flatten: row c*H*W + h*W + w holds our row (h*W + w)*C + c.
        let theirs = rows_in([C, H, W], &ours, dims, outputs);
        let (c, h, w) = (3, 1, 2);
        let row = |k: &[f32], r: usize| k[r * outputs..(r + 1) * outputs].to_vec();
        assert_eq!(row(&theirs, c * 6 + h * 3 + w), row(&ours, (h * 3 + w) * 4 + c));
    }
}
