//! ReLU, fused into the conv and dense layers' epilogues (Keras's `activation='relu'`).
//! Leaves out: a standalone op; the backward pass masks by the layer's saved output.

/// x = max(x, 0), in place. A NaN stays NaN (f32::max would hide it), so a diverging run
/// is seen in the loss instead of being silently zeroed.
pub fn relu_forward(x: &mut [f32]) {
    for v in x {
        if *v < 0.0 {
            *v = 0.0;
        }
    }
}

/// dout *= (out > 0), in place. `out` is the ReLU's output, so no input needs saving.
pub fn relu_backward(dout: &mut [f32], out: &[f32]) {
    for (d, &o) in dout.iter_mut().zip(out) {
        if o <= 0.0 {
            *d = 0.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relu_masks_by_output() {
        let mut x = [-1.0, 0.0, 2.0];
        relu_forward(&mut x);
        assert_eq!(x, [0.0, 0.0, 2.0]);
        let mut nan = [f32::NAN];
        relu_forward(&mut nan);
        assert!(nan[0].is_nan());
        let mut d = [5.0, 5.0, 5.0];
        relu_backward(&mut d, &x);
        assert_eq!(d, [0.0, 0.0, 5.0]);
    }
}
