// Mixed precision: f32 to f16/bf16 conversion of GEMM operands, and dynamic loss scaling for f16
// training, like PyTorch's GradScaler. A step multiplies the loss gradient by the scale
// (softmax_xent_backward), flags non-finite gradients (check_finite), skips or unscales the
// update (adadelta), then moves the scale (update_loss_scale): halved on an overflow, doubled
// after growth_interval clean steps. The state lives on the device, so a step needs no host read.
// Leaves out: the half-precision GEMMs (cuBLAS), and conversions back to f32.

// to_half's loop with index type I (u32 when n fits: see im2col_copy).
template <typename I>
__device__ __forceinline__ void to_half_loop(u16* dst, const float* src, I n, int bf16) {
    I stride = (I)gridDim.x * blockDim.x;
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) dst[i] = f32_to_half_bits(src[i], bf16);
}

// dst: (n) = src converted to f16 bits, or to bfloat16 bits when bf16 != 0 (round to nearest
// even; overflow to +-inf; NaN stays NaN).
extern "C" __global__ void to_half(u16* dst, const float* src, i64 n, int bf16) {
    if (n <= 0x7fffffffLL) to_half_loop<u32>(dst, src, (u32)n, bf16);
    else to_half_loop<i64>(dst, src, n, bf16);
}

// The loss-scale state, one f32 buffer: [scale, good_steps, overflow, skipped_steps]. Counts are
// exact in f32 up to 2^24.

// Sets state[2] (overflow) to 1 when any x[i] is NaN or +-inf; never clears it, so one flag can
// cover several launches (one per gradient buffer). Every writer stores the same value: the race
// is benign, no atomics. The test is on the bits, so no finite-math assumption can drop it.
extern "C" __global__ void check_finite(float* state, const float* x, i64 n) {
    FOR_EACH(i, n) {
        if ((__float_as_uint(x[i]) & 0x7f800000u) == 0x7f800000u) state[2] = 1.0f;
    }
}

// One step of the loss scale, after the step's check_finite and adadelta launches: on an
// overflow halve the scale (not below 1), count a skipped step and clear the flag; otherwise
// count a clean step and, after growth_interval of them, double the scale (not above 2^24).
// A power-of-two scale stays one, so scaling and unscaling are exact. Launch 1x1.
extern "C" __global__ void update_loss_scale(float* state, int growth_interval) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    if (state[2] != 0.0f) {
        state[0] = fmaxf(state[0] * 0.5f, 1.0f);
        state[1] = 0.0f;
        state[2] = 0.0f;
        state[3] += 1.0f;
    } else {
        state[1] += 1.0f;
        if (state[1] >= (float)growth_interval) {
            state[0] = fminf(state[0] * 2.0f, 16777216.0f);
            state[1] = 0.0f;
        }
    }
}
