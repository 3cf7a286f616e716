// Max pooling with a square, non-overlapping window (layers/maxpool2d.rs), NHWC; the argmax is
// the index within the sample's input. Leaves out: overlapping windows and padding.

// out, argmax: (B, H/P, W/P, C); inp: (B, H, W, C). `>` keeps the first of equal values and a
// NaN never wins silently, as on the CPU.
extern "C" __global__ void maxpool2d_forward(float* out, u32* argmax, const float* inp, i64 batch, int height, int width, int channels, int pool) {
    int oh = height / pool, ow = width / pool;
    i64 out_len = (i64)oh * ow * channels;
    i64 in_len = (i64)height * width * channels;
    FOR_EACH(o, batch * out_len) {
        i64 b = o / out_len;
        int r = (int)(o - b * out_len);
        int oy = r / (ow * channels);
        r -= oy * ow * channels;
        int ox = r / channels, c = r - ox * channels;
        const float* x = inp + b * in_len;
        float best = NEG_INF;
        int best_index = ((oy * pool) * width + ox * pool) * channels + c;
        for (int dy = 0; dy < pool; ++dy) {
            for (int dx = 0; dx < pool; ++dx) {
                int i = ((oy * pool + dy) * width + ox * pool + dx) * channels + c;
                if (x[i] > best) {
                    best = x[i];
                    best_index = i;
                }
            }
        }
        out[o] = best == NEG_INF ? x[best_index] : best;
        argmax[o] = (u32)best_index;
    }
}

// dinp (B, in_len) must be zeroed first; adds dout[o] at each window's argmax. Windows do not
// overlap, so each target gets at most one add and the result is exact. An argmax outside the
// sample is skipped (the CPU reports it as an error; the device cannot without a round trip).
extern "C" __global__ void maxpool2d_backward(float* dinp, const u32* argmax, const float* dout, i64 batch, i64 in_len, i64 out_len) {
    FOR_EACH(o, batch * out_len) {
        i64 b = o / out_len;
        u32 i = argmax[o];
        if ((i64)i < in_len) atomicAdd(&dinp[b * in_len + i], dout[o]);
    }
}
