// Adadelta with Keras 2 semantics (optim.rs), one thread per parameter, in the CPU's operation
// order; compiled without FMA contraction, so given equal gradients the update is bit-equal.
// With a loss scale (precision.cu) it also skips overflowed steps and unscales the gradients.
// Leaves out: other optimizers.

// a = rho a + (1 - rho) g^2; u = g sqrt(du + eps) / sqrt(a + eps); p -= lr u;
// du = rho du + (1 - rho) u^2. keep = 1 - rho, computed by the host in f32 like the CPU.
// loss_scale: null (f32 training: g = grads[i]), or the loss-scale state [scale, good_steps,
// overflow, skipped_steps] (precision.cu): when its overflow flag is set the step is skipped
// (nothing written), else g = grads[i] / scale, exact for a power-of-two scale. Launch before
// update_loss_scale, which clears the flag.
extern "C" __global__ void adadelta(float* params, float* accum_grad, float* accum_update, const float* grads, i64 n,
                                    float learning_rate, float rho, float keep, float epsilon, const float* loss_scale) {
    if (loss_scale && loss_scale[2] != 0.0f) return;
    float scale = loss_scale ? loss_scale[0] : 1.0f;
    FOR_EACH(i, n) {
        float g = loss_scale ? grads[i] / scale : grads[i];
        float a = rho * accum_grad[i] + keep * g * g;
        float update = g * sqrtf(accum_update[i] + epsilon) / sqrtf(a + epsilon);
        params[i] -= learning_rate * update;
        accum_update[i] = rho * accum_update[i] + keep * update * update;
        accum_grad[i] = a;
    }
}
