//! Adadelta with Keras 2 semantics (accumulators start at zero, epsilon inside both square
//! roots, the learning rate scales the step). Works on any slice of the flat buffers.
//! Leaves out: other optimizers, weight decay, learning-rate schedules.

/// Adadelta hyper-parameters (Keras 2 semantics).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Adadelta {
    pub learning_rate: f32,
    pub rho: f32,
    pub epsilon: f32,
}

impl Default for Adadelta {
    /// Keras 2.2's defaults, the ones the sample trained with.
    fn default() -> Self {
        Adadelta { learning_rate: 1.0, rho: 0.95, epsilon: 1e-7 }
    }
}

/// One update: a = rho a + (1 - rho) g^2; u = g sqrt(du + eps) / sqrt(a + eps);
/// p -= lr u; du = rho du + (1 - rho) u^2.
pub fn adadelta_update(
    params: &mut [f32],
    accum_grad: &mut [f32],
    accum_update: &mut [f32],
    grads: &[f32],
    h: Adadelta,
) {
    let keep = 1.0 - h.rho;
    for (((p, a), du), &g) in params.iter_mut().zip(accum_grad).zip(accum_update).zip(grads) {
        *a = h.rho * *a + keep * g * g;
        let update = g * libm::sqrtf(*du + h.epsilon) / libm::sqrtf(*a + h.epsilon);
        *p -= h.learning_rate * update;
        *du = h.rho * *du + keep * update * update;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_hand_computed_keras_steps() {
        let h = Adadelta::default();
        let (mut p, mut a, mut du) = ([1.0f32], [0.0f32], [0.0f32]);
        adadelta_update(&mut p, &mut a, &mut du, &[0.5], h);
        // a = 0.05 * 0.25 = 0.0125; u = 0.5 * sqrt(1e-7) / sqrt(0.0125 + 1e-7)
        let a1 = 0.0125f64;
        let u1 = 0.5 * (1e-7f64).sqrt() / (a1 + 1e-7).sqrt();
        assert!((a[0] as f64 - a1).abs() < 1e-6 * a1);
        assert!((p[0] as f64 - (1.0 - u1)).abs() < 1e-7);
        let du1 = 0.05 * u1 * u1;
        assert!((du[0] as f64 - du1).abs() < 1e-5 * du1);
        adadelta_update(&mut p, &mut a, &mut du, &[-0.25], h);
        let a2 = 0.95 * a1 + 0.05 * 0.0625;
        let u2 = -0.25 * (du1 + 1e-7).sqrt() / (a2 + 1e-7).sqrt();
        assert!((p[0] as f64 - (1.0 - u1 - u2)).abs() < 1e-7);
    }
}
