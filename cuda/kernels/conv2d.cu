// Convolution helpers around cuBLAS (layers/conv2d.rs): im2col, its adjoint col2im, the bias +
// ReLU epilogue and the ReLU mask. Valid padding, stride 1, NHWC input, HWIO kernel.
// Leaves out: the GEMMs (cuBLAS, src/gemm.rs) and bias gradients (a GEMM with a ones vector).

// col: (S*OH*OW, K*K*C); row r = the receptive field of output pixel r in (ky, kx, c) order,
// the order of the kernel's leading axes. inp: (S, H, W, C).
extern "C" __global__ void im2col(float* col, const float* inp, i64 samples, int height, int width, int channels, int kernel) {
    int oh = height - kernel + 1, ow = width - kernel + 1;
    int span = kernel * channels;  // one kernel row of a receptive field is contiguous in NHWC
    int patch = kernel * span;
    i64 pixels = (i64)oh * ow;
    i64 in_len = (i64)height * width * channels;
    FOR_EACH(e, samples * pixels * patch) {
        i64 r = e / patch;
        int p = (int)(e - r * patch);
        i64 s = r / pixels;
        int pix = (int)(r - s * pixels);
        int oy = pix / ow, ox = pix - oy * ow;
        int ky = p / span, q = p - ky * span;  // q = kx * C + c
        col[e] = inp[s * in_len + ((i64)(oy + ky) * width + ox) * channels + q];
    }
}

// dinp: (S, H, W, C), overwritten with the adjoint of im2col: each input value sums the dcol
// entries that copied it, in the CPU's order (ky, kx descending) so the sums match bit for bit.
extern "C" __global__ void col2im(float* dinp, const float* dcol, i64 samples, int height, int width, int channels, int kernel) {
    int oh = height - kernel + 1, ow = width - kernel + 1;
    int span = kernel * channels;
    int patch = kernel * span;
    i64 in_len = (i64)height * width * channels;
    FOR_EACH(i, samples * in_len) {
        i64 s = i / in_len;
        int rem = (int)(i - s * in_len);
        int y = rem / (width * channels);
        rem -= y * width * channels;
        int x = rem / channels, c = rem - x * channels;
        float acc = 0.0f;
        for (int ky = kernel - 1; ky >= 0; --ky) {
            int oy = y - ky;
            if (oy < 0 || oy >= oh) continue;
            for (int kx = kernel - 1; kx >= 0; --kx) {
                int ox = x - kx;
                if (ox < 0 || ox >= ow) continue;
                acc += dcol[(s * oh * ow + (i64)oy * ow + ox) * patch + ky * span + kx * channels + c];
            }
        }
        dinp[i] = acc;
    }
}

// out: (rows, channels) += bias (channels), then ReLU when relu != 0. Shared by conv and dense.
extern "C" __global__ void bias_act(float* out, const float* bias, i64 n, int channels, int relu) {
    FOR_EACH(i, n) {
        float v = out[i] + bias[i % channels];
        out[i] = relu ? fmaxf(v, 0.0f) : v;
    }
}

// dout *= (out > 0), in place (layers/relu.rs): out is the ReLU's output.
extern "C" __global__ void relu_backward(float* dout, const float* out, i64 n) {
    FOR_EACH(i, n) {
        if (out[i] <= 0.0f) dout[i] = 0.0f;
    }
}
