// Max pooling with a square, non-overlapping window (layers/maxpool2d.rs), NHWC; the argmax is
// the index within the sample's input. Leaves out: overlapping windows and padding.

// A pooling's sizes with index type I: the output's height and width, and per sample the
// input's and the output's lengths.
template <typename I>
struct PoolSizes {
    int oh, ow;
    I in_len, out_len;
    __device__ PoolSizes(int height, int width, int channels, int pool)
        : oh(height / pool), ow(width / pool), in_len((I)height * width * channels), out_len((I)(height / pool) * (width / pool) * channels) {}
};

// maxpool2d_forward's loop with index type I (u32 when every index fits: see maxpool2d_backward).
template <typename I>
__device__ __forceinline__ void maxpool2d_forward_loop(float* out, u32* argmax, const float* inp, I batch, int height, int width, int channels, int pool) {
    PoolSizes<I> z(height, width, channels, pool);
    I out_len = z.out_len, in_len = z.in_len, n = batch * out_len;
    I stride = (I)gridDim.x * blockDim.x;
    for (I o = (I)blockIdx.x * blockDim.x + threadIdx.x; o < n; o += stride) {
        NhwcIndex<I> at = nhwc_index(o, out_len, z.ow * channels, channels);
        int oy = at.y, ox = at.x, c = at.c;
        const float* x = inp + at.s * in_len;
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

// One channel of maxpool2d_forward_quads' window scan: maxpool2d_forward_loop's steps.
__device__ __forceinline__ void pool_step(float v, int i, float& best, int& best_index) {
    if (v > best) {
        best = v;
        best_index = i;
    }
}

// maxpool2d_forward for four consecutive channels per thread (C % 4 == 0, every pointer
// 16-byte aligned, u32 indices): 16-byte loads and stores and a quarter of the index divisions
// (one channel per thread took 22 us for conv2's output on an H100, twice its memory time).
// Each channel runs maxpool2d_forward_loop's comparisons in its order: the same results.
__device__ __forceinline__ void maxpool2d_forward_quads(float* out, u32* argmax, const float* inp, u32 batch, int height, int width, int channels, int pool) {
    int quads = channels / 4;
    PoolSizes<u32> z(height, width, quads, pool);  // out_len in quads
    u32 n = batch * z.out_len, in_len = z.in_len * 4;
    u32 stride = gridDim.x * blockDim.x;
    for (u32 o = blockIdx.x * blockDim.x + threadIdx.x; o < n; o += stride) {
        NhwcIndex<u32> at = nhwc_index(o, z.out_len, z.ow * quads, quads);
        int oy = at.y, ox = at.x, c = at.c * 4;
        const float* x = inp + at.s * in_len;
        float4 best = make_float4(NEG_INF, NEG_INF, NEG_INF, NEG_INF);
        int corner = ((oy * pool) * width + ox * pool) * channels + c;
        int bx = corner, by = corner + 1, bz = corner + 2, bw = corner + 3;
        for (int dy = 0; dy < pool; ++dy) {
            for (int dx = 0; dx < pool; ++dx) {
                int i = ((oy * pool + dy) * width + ox * pool + dx) * channels + c;
                float4 v = *(const float4*)(x + i);
                pool_step(v.x, i, best.x, bx);
                pool_step(v.y, i + 1, best.y, by);
                pool_step(v.z, i + 2, best.z, bz);
                pool_step(v.w, i + 3, best.w, bw);
            }
        }
        // An all-NaN (or all -inf) window: its argmax is the corner, its value the corner's.
        ((float4*)out)[o] = make_float4(best.x == NEG_INF ? x[bx] : best.x, best.y == NEG_INF ? x[by] : best.y,
                                        best.z == NEG_INF ? x[bz] : best.z, best.w == NEG_INF ? x[bw] : best.w);
        ((uint4*)argmax)[o] = make_uint4((u32)bx, (u32)by, (u32)bz, (u32)bw);
    }
}

// out, argmax: (B, H/P, W/P, C); inp: (B, H, W, C). `>` keeps the first of equal values and a
// NaN never wins silently, as on the CPU. Four channels per thread when C % 4 == 0 and the
// pointers allow, else one; any grid (grid-stride loops).
extern "C" __global__ void maxpool2d_forward(float* out, u32* argmax, const float* inp, i64 batch, int height, int width, int channels, int pool) {
    i64 n_in = batch * height * width * channels;  // >= the output's length
    bool aligned = (((u64)out | (u64)argmax | (u64)inp) & 15) == 0;
    if (n_in <= 0x7fffffffLL && (channels & 3) == 0 && aligned)
        maxpool2d_forward_quads(out, argmax, inp, (u32)batch, height, width, channels, pool);
    else if (n_in <= 0x7fffffffLL) maxpool2d_forward_loop<u32>(out, argmax, inp, (u32)batch, height, width, channels, pool);
    else maxpool2d_forward_loop<i64>(out, argmax, inp, batch, height, width, channels, pool);
}

// maxpool2d_backward's loop with index type I (u32 when every index fits: a 64-bit division
// per value, not memory, bounded the i64-only kernel).
template <typename I>
__device__ __forceinline__ void maxpool2d_backward_gather(float* dinp, const u32* argmax, const float* dout, I batch, int height, int width, int channels, int pool) {
    PoolSizes<I> z(height, width, channels, pool);
    I n = batch * z.in_len;
    I stride = (I)gridDim.x * blockDim.x;
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        NhwcIndex<I> at = nhwc_index(i, z.in_len, width * channels, channels);
        int oy = at.y / pool, ox = at.x / pool;
        float g = 0.0f;
        if (oy < z.oh && ox < z.ow) {
            I o = at.s * z.out_len + ((I)oy * z.ow + ox) * channels + at.c;
            if (argmax[o] == (u32)at.r) g = 0.0f + dout[o];
        }
        dinp[i] = g;
    }
}

// maxpool2d_backward when the pool divides H and W, so every input value lies in exactly one
// window: one thread per window (output value) reads its argmax and dout once and writes the
// window's pool * pool input values. A quarter of the gather's threads and index divisions for
// a 2x2 pool (the gather took 50 us for conv2's 4.7 M values on an H100, ~5x its memory time).
// For each (dy, dx), consecutive threads (consecutive c) write consecutive values (coalesced).
template <typename I>
__device__ __forceinline__ void maxpool2d_backward_windows(float* dinp, const u32* argmax, const float* dout, I batch, int height, int width, int channels, int pool) {
    PoolSizes<I> z(height, width, channels, pool);
    I n = batch * z.out_len;
    I stride = (I)gridDim.x * blockDim.x;
    for (I o = (I)blockIdx.x * blockDim.x + threadIdx.x; o < n; o += stride) {
        NhwcIndex<I> at = nhwc_index(o, z.out_len, z.ow * channels, channels);
        int oy = at.y, ox = at.x, c = at.c;
        u32 best = argmax[o];
        float g = 0.0f + dout[o];
        float* d = dinp + at.s * z.in_len;
        for (int dy = 0; dy < pool; ++dy) {
            for (int dx = 0; dx < pool; ++dx) {
                int i = ((oy * pool + dy) * width + ox * pool + dx) * channels + c;
                d[i] = (u32)i == best ? g : 0.0f;
            }
        }
    }
}

// dinp: (B, H, W, C), overwritten: each input value gets its window's dout when it is that
// window's argmax, else zero (also outside every window, at a ragged edge). No zero-fill first
// and no atomics: one thread per window when the pool divides H and W, else one per input
// value (the gather). `0.0f +` rounds like the CPU's zero-fill and add (a -0.0 gradient
// becomes +0.0). Only an argmax inside its own window counts, which is where maxpool2d_forward
// puts it. The launch needs B * H/P * W/P * C threads for the windows, B * H * W * C for the
// gather (either is correct on any grid: grid-stride loops).
extern "C" __global__ void maxpool2d_backward(float* dinp, const u32* argmax, const float* dout, i64 batch, int height, int width, int channels, int pool) {
    i64 n = batch * height * width * channels;
    bool windows = height % pool == 0 && width % pool == 0;
    if (n <= 0x7fffffffLL) {
        if (windows) maxpool2d_backward_windows<u32>(dinp, argmax, dout, (u32)batch, height, width, channels, pool);
        else maxpool2d_backward_gather<u32>(dinp, argmax, dout, (u32)batch, height, width, channels, pool);
    } else {
        if (windows) maxpool2d_backward_windows<i64>(dinp, argmax, dout, batch, height, width, channels, pool);
        else maxpool2d_backward_gather<i64>(dinp, argmax, dout, batch, height, width, channels, pool);
    }
}
