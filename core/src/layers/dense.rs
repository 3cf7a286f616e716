//! Fully connected layer on a block of rows: out (B, O) = inp (B, I) @ kernel (I, O) + bias.
//! Backward is split in three so the CPU backend can parallelise each over a different axis.
//! Leaves out: threads (cpu/).

use crate::layers::gemm::{gemm, Mat};
use crate::layers::relu::relu_forward;

/// out: (B, O); inp: (B, I); kernel: (I, O); bias: (O). B is `out.len() / bias.len()`.
pub fn dense_forward(out: &mut [f32], inp: &[f32], kernel: &[f32], bias: &[f32], inputs: usize, relu: bool) {
    let outputs = bias.len();
    let batch = out.len() / outputs;
    for row in out.chunks_exact_mut(outputs) {
        row.copy_from_slice(bias);
    }
    gemm(1.0, Mat::rows(inp, batch, inputs, inputs), Mat::rows(kernel, inputs, outputs, outputs), 1.0, out, outputs);
    if relu {
        relu_forward(out);
    }
}

/// Columns `columns` of one output row: out (len(columns)) = inp (I) @ kernel[:, columns] +
/// bias[columns], so threads can share one row. kernel: (I, O); bias: (O).
pub fn dense_forward_columns(
    out: &mut [f32],
    inp: &[f32],
    kernel: &[f32],
    bias: &[f32],
    columns: core::ops::Range<usize>,
    relu: bool,
) {
    let (inputs, outputs, width) = (inp.len(), bias.len(), columns.len());
    if width == 0 {
        return;
    }
    out[..width].copy_from_slice(&bias[columns.clone()]);
    gemm(
        1.0,
        Mat::rows(inp, 1, inputs, inputs),
        Mat::rows(&kernel[columns.start..], inputs, width, outputs),
        1.0,
        out,
        width,
    );
    if relu {
        relu_forward(&mut out[..width]);
    }
}

/// dinp (B, I) = dout (B, O) @ kernel^T, overwritten. dout must already be ReLU-masked.
pub fn dense_backward_input(dinp: &mut [f32], dout: &[f32], kernel: &[f32], inputs: usize, outputs: usize) {
    let batch = dout.len() / outputs;
    gemm(
        1.0,
        Mat::rows(dout, batch, outputs, outputs),
        Mat::transposed(kernel, inputs, outputs, outputs),
        0.0,
        dinp,
        inputs,
    );
}

/// Rows `first_input..first_input + dkernel_rows.len() / O` of dkernel = inp^T @ dout over
/// the batch, overwritten. inp: (B, I); dout: (B, O), ReLU-masked.
pub fn dense_backward_kernel(
    dkernel_rows: &mut [f32],
    inp: &[f32],
    dout: &[f32],
    first_input: usize,
    inputs: usize,
    outputs: usize,
) {
    let batch = dout.len() / outputs;
    let rows = dkernel_rows.len() / outputs;
    let inp_columns = Mat::transposed(&inp[first_input..], batch, rows, inputs);
    gemm(1.0, inp_columns, Mat::rows(dout, batch, outputs, outputs), 0.0, dkernel_rows, outputs);
}

/// dbias (O) = column sums of dout (B, O), overwritten.
pub fn dense_backward_bias(dbias: &mut [f32], dout: &[f32]) {
    dbias.fill(0.0);
    for row in dout.chunks_exact(dbias.len()) {
        for (b, g) in dbias.iter_mut().zip(row) {
            *b += g;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Rng;
    use crate::layers::gradcheck::*;
    use crate::layers::relu::relu_backward;
    use alloc::vec;
    use alloc::vec::Vec;

    fn naive(x: &[f64], w: &[f64], b: &[f64], batch: usize, relu: bool) -> Vec<f64> {
        let (o, i) = (b.len(), x.len() / batch);
        let mut y = vec![0.0; batch * o];
        for n in 0..batch {
            for j in 0..o {
                let s = b[j] + (0..i).map(|p| x[n * i + p] * w[p * o + j]).sum::<f64>();
                y[n * o + j] = if relu { s.max(0.0) } else { s };
            }
        }
        y
    }

    #[test]
    fn dense_gradients_match_finite_differences() {
        for (seed, &(batch, inputs, outputs, relu)) in
            [(1, 4, 3, false), (3, 7, 5, true), (4, 9, 2, false), (2, 16, 6, true)].iter().enumerate()
        {
            let mut rng = Rng::new(100 + seed as u64);
            let x = random_vec(&mut rng, batch * inputs, -1.0, 1.0);
            let w = random_vec(&mut rng, inputs * outputs, -0.5, 0.5);
            let b = random_vec(&mut rng, outputs, -0.1, 0.1);
            let r = random_vec(&mut rng, batch * outputs, -1.0, 1.0);
            let (x64, w64, b64) = (to_f64(&x), to_f64(&w), to_f64(&b));
            let pre = naive(&x64, &w64, &b64, batch, false);
            assert!(pre.iter().all(|v| v.abs() > 1e-4), "seed {seed} lands on the ReLU kink");

            let mut y = vec![0.0; batch * outputs];
            dense_forward(&mut y, &x, &w, &b, inputs, relu);
            assert_close("dense forward", &y, &naive(&x64, &w64, &b64, batch, relu), 1e-5, 1e-5);
            // Row by row in two column blocks (how threads share a one-image batch): the same.
            let split = outputs / 2;
            for (row, want) in y.chunks_exact(outputs).enumerate() {
                let mut got = vec![f32::NAN; outputs];
                let (left, right) = got.split_at_mut(split);
                dense_forward_columns(left, &x[row * inputs..][..inputs], &w, &b, 0..split, relu);
                dense_forward_columns(right, &x[row * inputs..][..inputs], &w, &b, split..outputs, relu);
                assert_eq!(got, want, "dense forward by columns, row {row}");
            }

            let mut dy = r.clone();
            if relu {
                relu_backward(&mut dy, &y);
            }
            let mut dx = vec![f32::NAN; x.len()];
            let mut dw = vec![f32::NAN; w.len()];
            let mut db = vec![f32::NAN; b.len()];
            dense_backward_input(&mut dx, &dy, &w, inputs, outputs);
            // The kernel gradient in two row blocks, as the CPU backend splits it.
            let split = inputs / 2;
            let (top, bottom) = dw.split_at_mut(split * outputs);
            dense_backward_kernel(top, &x, &dy, 0, inputs, outputs);
            dense_backward_kernel(bottom, &x, &dy, split, inputs, outputs);
            dense_backward_bias(&mut db, &dy);

            let h = 1e-6;
            let gx = numeric_grad(&|x: &[f64]| dot(&naive(x, &w64, &b64, batch, relu), &r), &x64, h);
            let gw = numeric_grad(&|w: &[f64]| dot(&naive(&x64, w, &b64, batch, relu), &r), &w64, h);
            let gb = numeric_grad(&|b: &[f64]| dot(&naive(&x64, &w64, b, batch, relu), &r), &b64, h);
            assert_close("dense dinp", &dx, &gx, 1e-4, 1e-4);
            assert_close("dense dkernel", &dw, &gw, 1e-4, 1e-4);
            assert_close("dense dbias", &db, &gb, 1e-4, 1e-4);
        }
    }
}
