// Softmax + categorical cross-entropy on probabilities clipped to [1e-7, 1 - 1e-7], as Keras 2
// and layers/softmax_xent.rs compute them. The loss and correct counts go straight into the
// device metrics buffer, so the host reads nothing per step. The backward pass optionally
// multiplies by the loss scale (f16 training, precision.cu). Leaves out: class weights.

#define SOFTMAX_BLOCK 256
#define PROB_LO 1e-7f
#define PROB_HI (1.0f - 1e-7f)

// probs: (B, classes) = softmax(logits) per row; adds the rows' clipped cross-entropy to
// metrics[0] and the rows whose argmax is the label to metrics[1]. One thread per row (classes
// is small); launch with blockDim.x == SOFTMAX_BLOCK. A label >= classes adds NaN to the loss:
// the host cannot check device labels without a round trip, and NaN stops training loudly.
extern "C" __global__ void softmax_xent_forward(float* probs, float* metrics, const float* logits, const u32* labels, int batch, int classes) {
    __shared__ float loss_part[SOFTMAX_BLOCK];
    __shared__ float correct_part[SOFTMAX_BLOCK];
    int t = threadIdx.x;
    int row = blockIdx.x * SOFTMAX_BLOCK + t;
    float loss = 0.0f, correct = 0.0f;
    if (row < batch) {
        const float* z = logits + (i64)row * classes;
        float* p = probs + (i64)row * classes;
        int best = 0;
        for (int j = 1; j < classes; ++j) {
            if (z[j] > z[best]) best = j;
        }
        float max = z[best];
        float sum = 0.0f;
        for (int j = 0; j < classes; ++j) {
            p[j] = expf(z[j] - max);
            sum += p[j];
        }
        for (int j = 0; j < classes; ++j) p[j] /= sum;
        u32 label = labels[row];
        if (label < (u32)classes) {
            float py = p[label];
            // Rust's clamp: a NaN stays NaN (fminf/fmaxf would hide it).
            py = py < PROB_LO ? PROB_LO : (py > PROB_HI ? PROB_HI : py);
            loss = -logf(py);
            correct = (u32)best == label ? 1.0f : 0.0f;
        } else {
            loss = QUIET_NAN;
        }
    }
    loss_part[t] = loss;
    correct_part[t] = correct;
    __syncthreads();
    for (int half = SOFTMAX_BLOCK / 2; half > 0; half /= 2) {
        if (t < half) {
            loss_part[t] += loss_part[t + half];
            correct_part[t] += correct_part[t + half];
        }
        __syncthreads();
    }
    if (t == 0) {
        atomicAdd(&metrics[0], loss_part[0]);
        atomicAdd(&metrics[1], correct_part[0]);
    }
}

// softmax_xent_backward's loop with index type I (u32 when batch * classes fits).
template <typename I>
__device__ __forceinline__ void softmax_xent_backward_loop(float* dlogits, const float* probs, const u32* labels, I n, int classes, float scale,
                                                           const float* loss_scale) {
    float up = loss_scale ? loss_scale[0] : 1.0f;
    I stride = (I)gridDim.x * blockDim.x;
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        I row = i / (I)classes;
        int j = (int)(i - row * classes);
        u32 label = labels[row];
        if (label >= (u32)classes) {
            dlogits[i] = QUIET_NAN;
            continue;
        }
        float py = probs[row * classes + label];
        if (!(py >= PROB_LO && py <= PROB_HI)) {
            dlogits[i] = 0.0f;
        } else {
            float d = (probs[i] - ((u32)j == label ? 1.0f : 0.0f)) * scale;
            dlogits[i] = loss_scale ? d * up : d;
        }
    }
}

// dlogits: (B, classes), overwritten: (probs - onehot) * scale with scale = 1 / B; zero for a
// row whose true-class probability was clipped (the clip passes no gradient); NaN for a label
// >= classes. loss_scale: null, or the loss-scale state (precision.cu), whose scale (a power of
// two, so exact) then multiplies (probs - onehot) * scale: the gradient of the scaled loss. The
// zero and NaN cases stay as they are.
extern "C" __global__ void softmax_xent_backward(float* dlogits, const float* probs, const u32* labels, int batch, int classes, float scale,
                                                 const float* loss_scale) {
    i64 n = (i64)batch * classes;
    if (n <= 0x7fffffffLL) softmax_xent_backward_loop<u32>(dlogits, probs, labels, (u32)n, classes, scale, loss_scale);
    else softmax_xent_backward_loop<i64>(dlogits, probs, labels, n, classes, scale, loss_scale);
}
