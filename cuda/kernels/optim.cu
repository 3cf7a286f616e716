// Adadelta with Keras 2 semantics (optim.rs), one thread per parameter, in the CPU's operation
// order; compiled without FMA contraction, so given equal gradients the update is bit-equal.
// Leaves out: other optimizers.

// a = rho a + (1 - rho) g^2; u = g sqrt(du + eps) / sqrt(a + eps); p -= lr u;
// du = rho du + (1 - rho) u^2. keep = 1 - rho, computed by the host in f32 like the CPU.
extern "C" __global__ void adadelta(float* params, float* accum_grad, float* accum_update, const float* grads, i64 n,
                                    float learning_rate, float rho, float keep, float epsilon) {
    FOR_EACH(i, n) {
        float g = grads[i];
        float a = rho * accum_grad[i] + keep * g * g;
        float update = g * sqrtf(accum_update[i] + epsilon) / sqrtf(a + epsilon);
        params[i] -= learning_rate * update;
        accum_update[i] = rho * accum_update[i] + keep * update * update;
        accum_grad[i] = a;
    }
}
