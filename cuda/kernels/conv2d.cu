// Convolution helpers around the GEMMs (layers/conv2d.rs): im2col (f32, or converted to f16/bf16
// for a half-precision GEMM), its adjoint col2im, the bias + ReLU epilogue, a direct convolution
// and kernel (and bias) gradient for small patches, and bias gradients fused with the ReLU mask
// (shared with dense layers). Valid padding, stride 1, NHWC input, HWIO kernel.
// Leaves out: the GEMMs (sgemm.cu, and cuBLAS through src/gemm.rs).

#if defined(__CUDACC__)
#define UNROLL _Pragma("unroll")
#else
#define UNROLL
#endif

// im2col_copy's element conversions: none (im2col), or f32 to f16/bf16 bits (im2col_half).
struct SameValue {
    template <typename T>
    __device__ __forceinline__ T operator()(T v) const { return v; }
};
struct HalfBits {
    int bf16;
    __device__ __forceinline__ u16 operator()(float v) const { return f32_to_half_bits(v, bf16); }
};
// Four values at once: one 16-byte load becomes one 8-byte store (element 0 in the low bits).
struct HalfBits4 {
    int bf16;
    __device__ __forceinline__ uint2 operator()(float4 v) const {
        uint2 out;
        out.x = (u32)f32_to_half_bits(v.x, bf16) | ((u32)f32_to_half_bits(v.y, bf16) << 16);
        out.y = (u32)f32_to_half_bits(v.z, bf16) | ((u32)f32_to_half_bits(v.w, bf16) << 16);
        return out;
    }
};

// im2col's copy loop in input units of In (float, or float4 when C % 4 == 0 and both pointers
// are 16-byte aligned), each value stored as convert(value), and index type I (u32 when every
// index fits, since 64-bit divisions are subroutines of ~70 instructions: they, not memory,
// bounded the old kernel at ~400 GB/s). Consecutive threads write consecutive col entries
// (coalesced) and read consecutive input values within a run of K*C (one kernel row of the
// receptive field, contiguous in NHWC).
template <typename I, typename Out, typename In, typename Convert>
__device__ __forceinline__ void im2col_copy(Out* col, const In* inp, I samples, int height, int width, int channels, int kernel,
                                            Convert convert) {
    int oh = height - kernel + 1, ow = width - kernel + 1;
    int span = kernel * channels;  // channels in units of In
    int patch = kernel * span;
    I pixels = (I)oh * ow;
    I in_len = (I)height * width * channels;
    I n = samples * pixels * patch;
    I stride = (I)gridDim.x * blockDim.x;
    for (I e = (I)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += stride) {
        I r = e / patch;
        int p = (int)(e - r * patch);
        I s = r / pixels;
        int pix = (int)(r - s * pixels);
        int oy = pix / ow, ox = pix - oy * ow;
        int ky = p / span, q = p - ky * span;  // q = kx * C + c
        col[e] = convert(inp[s * in_len + ((I)(oy + ky) * width + ox) * channels + q]);
    }
}

// im2col_copy with u32 indices and no divisions per value, where the grid covers at least one
// whole row: each thread copies one patch position p of rows r, r + lanes, r + 2 * lanes, ...
// (lanes = whole rows per pass of the grid), with p's offset in the window and the step from
// row to row in (sample, y, x) worked out once. With four divisions per value, conv2's copy was
// bound by them on an H100 (64% of issue slots, 41% of DRAM bandwidth). A grid smaller than a
// row takes im2col_copy's loop. Only for u32: the i64 fallback's registers (60 with this
// loop in it) would set the whole kernel's occupancy.
template <typename Out, typename In, typename Convert>
__device__ __forceinline__ void im2col_rows(Out* col, const In* inp, u32 samples, int height, int width, int channels, int kernel,
                                            Convert convert) {
    int oh = height - kernel + 1, ow = width - kernel + 1;
    int span = kernel * channels;  // channels in units of In
    u32 patch = (u32)(kernel * span);
    u32 lanes = gridDim.x * blockDim.x / patch;
    if (lanes == 0) {
        im2col_copy<u32>(col, inp, samples, height, width, channels, kernel, convert);
        return;
    }
    u32 t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= lanes * patch) return;  // the rest of a partial row: idle
    u32 pixels = (u32)oh * ow;
    u32 in_len = (u32)height * width * channels;
    u32 rows = samples * pixels;
    u32 r = t / patch;
    u32 p = t - r * patch;
    u32 ky = p / span;
    u32 window_offset = ky * width * channels + (p - ky * span);  // p - ky * span = kx * C + c
    u32 s = r / pixels;
    int pix = (int)(r - s * pixels);
    int oy = pix / ow, ox = pix - oy * ow;
    u32 step_s = lanes / pixels;
    int step_pix = (int)(lanes - step_s * pixels);
    int step_y = step_pix / ow, step_x = step_pix - step_y * ow;
    for (; r < rows; r += lanes) {
        col[r * patch + p] = convert(inp[s * in_len + ((u32)oy * width + ox) * channels + window_offset]);
        // The next row, lanes further on: (s, oy, ox) += (step_s, step_y, step_x) with carries
        // (each digit stays below twice its base, so one subtraction suffices).
        ox += step_x;
        oy += step_y;
        s += step_s;
        if (ox >= ow) {
            ox -= ow;
            ++oy;
        }
        if (oy >= oh) {
            oy -= oh;
            ++s;
        }
    }
}

// col: (S*OH*OW, K*K*C); row r = the receptive field of output pixel r in (ky, kx, c) order,
// the order of the kernel's leading axes. inp: (S, H, W, C). Any grid (grid-stride loops).
extern "C" __global__ void im2col(float* col, const float* inp, i64 samples, int height, int width, int channels, int kernel) {
    i64 n = samples * (i64)(height - kernel + 1) * (width - kernel + 1) * kernel * kernel * channels;
    // u32 indices while n plus one grid stride cannot wrap (grids are capped at 2^16 * 1024).
    bool narrow = n <= 0x7fffffffLL;
    if ((channels & 3) == 0 && (((u64)col | (u64)inp) & 15) == 0) {
        float4* c4 = (float4*)col;
        const float4* i4 = (const float4*)inp;
        if (narrow) im2col_rows(c4, i4, (u32)samples, height, width, channels / 4, kernel, SameValue());
        else im2col_copy<i64>(c4, i4, samples, height, width, channels / 4, kernel, SameValue());
    } else if (narrow) {
        im2col_rows(col, inp, (u32)samples, height, width, channels, kernel, SameValue());
    } else {
        im2col_copy<i64>(col, inp, samples, height, width, channels, kernel, SameValue());
    }
}

// col: im2col's matrix, each value converted to f16 bits (bf16 != 0: bfloat16) as to_half
// does: a half-precision GEMM operand without an f32 copy in between. Four values per thread
// (a 16-byte load, an 8-byte store) when C % 4 == 0 and the pointers allow, as im2col does:
// one value per thread took 150 us for conv2 on an H100, three times im2col's float4 copy.
// Any grid.
extern "C" __global__ void im2col_half(u16* col, const float* inp, i64 samples, int height, int width, int channels, int kernel, int bf16) {
    i64 n = samples * (i64)(height - kernel + 1) * (width - kernel + 1) * kernel * kernel * channels;
    bool narrow = n <= 0x7fffffffLL;
    if ((channels & 3) == 0 && (((u64)col & 7) | ((u64)inp & 15)) == 0) {
        uint2* c4 = (uint2*)col;
        const float4* i4 = (const float4*)inp;
        HalfBits4 convert = {bf16};
        if (narrow) im2col_rows(c4, i4, (u32)samples, height, width, channels / 4, kernel, convert);
        else im2col_copy<i64>(c4, i4, samples, height, width, channels / 4, kernel, convert);
    } else {
        HalfBits convert = {bf16};
        if (narrow) im2col_rows(col, inp, (u32)samples, height, width, channels, kernel, convert);
        else im2col_copy<i64>(col, inp, samples, height, width, channels, kernel, convert);
    }
}

// col2im's sums: one float, or four consecutive channels' floats added lane by lane.
__device__ __forceinline__ float add_values(float a, float b) { return a + b; }
__device__ __forceinline__ float4 add_values(float4 a, float4 b) { return make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w); }
__device__ __forceinline__ void zero_value(float& v) { v = 0.0f; }
__device__ __forceinline__ void zero_value(float4& v) { v = make_float4(0.0f, 0.0f, 0.0f, 0.0f); }

// col2im's loop with index type I (u32 when every index fits: see im2col_copy), in units of T
// (float, or float4 when C % 4 == 0 and both pointers are 16-byte aligned: a quarter of the
// threads and index divisions, each channel's sum in the same order).
template <typename I, typename T>
__device__ __forceinline__ void col2im_sum(T* dinp, const T* dcol, I samples, int height, int width, int channels, int kernel) {
    int oh = height - kernel + 1, ow = width - kernel + 1;
    int span = kernel * channels;  // channels in units of T
    int patch = kernel * span;
    int row_len = width * channels;
    I in_len = (I)height * row_len;
    I pixels = (I)oh * ow;
    I n = samples * in_len;
    I stride = (I)gridDim.x * blockDim.x;
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        NhwcIndex<I> at = nhwc_index(i, in_len, row_len, channels);
        int y = at.y, x = at.x;
        const T* d = dcol + at.s * pixels * patch + at.c;
        T acc;
        zero_value(acc);
        for (int ky = kernel - 1; ky >= 0; --ky) {
            int oy = y - ky;
            if (oy < 0 || oy >= oh) continue;
            for (int kx = kernel - 1; kx >= 0; --kx) {
                int ox = x - kx;
                if (ox < 0 || ox >= ow) continue;
                acc = add_values(acc, d[((I)oy * ow + ox) * patch + ky * span + kx * channels]);
            }
        }
        dinp[i] = acc;
    }
}

// dinp: (S, H, W, C), overwritten with the adjoint of im2col: each input value sums the dcol
// entries that copied it, in the CPU's order (ky, kx descending) so the sums match bit for bit.
// Consecutive threads take consecutive c (or groups of four): coalesced dcol reads within each
// C run. One float per thread took 62 us for conv2 on an H100, twice its memory time.
extern "C" __global__ void col2im(float* dinp, const float* dcol, i64 samples, int height, int width, int channels, int kernel) {
    i64 n_in = samples * height * width * channels;
    i64 n_col = samples * (i64)(height - kernel + 1) * (width - kernel + 1) * kernel * kernel * channels;
    bool narrow = n_in <= 0x7fffffffLL && n_col <= 0x7fffffffLL;
    if ((channels & 3) == 0 && (((u64)dinp | (u64)dcol) & 15) == 0) {
        float4* d4 = (float4*)dinp;
        const float4* c4 = (const float4*)dcol;
        if (narrow) col2im_sum<u32>(d4, c4, (u32)samples, height, width, channels / 4, kernel);
        else col2im_sum<i64>(d4, c4, samples, height, width, channels / 4, kernel);
    } else if (narrow) {
        col2im_sum<u32>(dinp, dcol, (u32)samples, height, width, channels, kernel);
    } else {
        col2im_sum<i64>(dinp, dcol, samples, height, width, channels, kernel);
    }
}

// conv2d_direct's loop with index type I (u32 when every index fits: see im2col_copy).
template <typename I>
__device__ __forceinline__ void conv2d_direct_loop(float* out, const float* inp, const float* kernel, const float* bias, I samples,
                                                   int height, int width, int channels, int kernel_size, int out_channels, int relu) {
    int oh = height - kernel_size + 1, ow = width - kernel_size + 1;
    int span = kernel_size * channels;  // one kernel row of a receptive field is contiguous in NHWC
    I pixels = (I)oh * ow;
    I in_len = (I)height * width * channels;
    I n = samples * pixels * out_channels;
    I stride = (I)gridDim.x * blockDim.x;
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        I r = i / (I)out_channels;
        int o = (int)(i - r * out_channels);
        I s = r / pixels;
        int pix = (int)(r - s * pixels);
        int oy = pix / ow, ox = pix - oy * ow;
        const float* x = inp + s * in_len + ((I)oy * width + ox) * channels;
        float acc = 0.0f;
        for (int ky = 0; ky < kernel_size; ++ky) {
            for (int q = 0; q < span; ++q) acc += x[(i64)ky * width * channels + q] * kernel[(ky * span + q) * out_channels + o];
        }
        float v = acc + bias[o];
        out[i] = relu ? fmaxf(v, 0.0f) : v;
    }
}

// conv2d_direct with four consecutive output channels per thread (OC % 4 == 0, out and kernel
// 16-byte aligned): each input value loaded once for four channels, the kernel's four values
// in one 16-byte load, one 16-byte store, and a quarter of the index divisions. One value per
// thread took 47 us for conv1 on an H100, ~10x its memory time. Each channel's sum runs in
// conv2d_direct_loop's order, so the outputs are the same bits.
__device__ __forceinline__ void conv2d_direct_quads(float* out, const float* inp, const float* kernel, const float* bias, u32 samples,
                                                    int height, int width, int channels, int kernel_size, int out_channels, int relu) {
    int oh = height - kernel_size + 1, ow = width - kernel_size + 1;
    int span = kernel_size * channels;
    int quads = out_channels / 4;
    u32 pixels = (u32)oh * ow;
    u32 in_len = (u32)height * width * channels;
    u32 n = samples * pixels * quads;
    u32 stride = gridDim.x * blockDim.x;
    const float4* kernel4 = (const float4*)kernel;
    float4* out4 = (float4*)out;
    for (u32 i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        u32 r = i / quads;
        int o4 = (int)(i - r * quads);
        u32 s = r / pixels;
        int pix = (int)(r - s * pixels);
        int oy = pix / ow, ox = pix - oy * ow;
        const float* x = inp + s * in_len + ((u32)oy * width + ox) * channels;
        float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        for (int ky = 0; ky < kernel_size; ++ky) {
#if defined(__CUDACC__)
#pragma unroll 4
#endif
            for (int q = 0; q < span; ++q) {
                float v = x[ky * width * channels + q];
                float4 k = kernel4[(ky * span + q) * quads + o4];
                acc.x += v * k.x;
                acc.y += v * k.y;
                acc.z += v * k.z;
                acc.w += v * k.w;
            }
        }
        int o = o4 * 4;
        float4 y = make_float4(acc.x + bias[o], acc.y + bias[o + 1], acc.z + bias[o + 2], acc.w + bias[o + 3]);
        if (relu) y = make_float4(fmaxf(y.x, 0.0f), fmaxf(y.y, 0.0f), fmaxf(y.z, 0.0f), fmaxf(y.w, 0.0f));
        out4[i] = y;
    }
}

// out: (S, OH, OW, OC) = inp (S, H, W, C) convolved with kernel (K, K, C, OC), plus bias, then
// ReLU when relu != 0: four output values per thread when OC % 4 == 0 and the pointers allow,
// else one. For layers with a small patch (conv1: K*K*C = 9), where im2col + GEMM + bias_act
// would move several times the memory the math needs. Any grid (grid-stride loops).
extern "C" __global__ void conv2d_direct(float* out, const float* inp, const float* kernel, const float* bias, i64 samples,
                                         int height, int width, int channels, int kernel_size, int out_channels, int relu) {
    i64 n_out = samples * (i64)(height - kernel_size + 1) * (width - kernel_size + 1) * out_channels;
    i64 n_in = samples * height * width * channels;
    bool narrow = n_out <= 0x7fffffffLL && n_in <= 0x7fffffffLL;
    if ((out_channels & 3) == 0 && (((u64)out | (u64)kernel) & 15) == 0 && narrow)
        conv2d_direct_quads(out, inp, kernel, bias, (u32)samples, height, width, channels, kernel_size, out_channels, relu);
    else if (narrow) conv2d_direct_loop<u32>(out, inp, kernel, bias, (u32)samples, height, width, channels, kernel_size, out_channels, relu);
    else conv2d_direct_loop<i64>(out, inp, kernel, bias, samples, height, width, channels, kernel_size, out_channels, relu);
}

#define DKERNEL_MAX_PATCH 32   // DIRECT_CONV_MAX_PATCH in src/backend.rs
#define DKERNEL_MAX_BLOCK 256  // BLOCK in src/backend.rs

#define DKERNEL_CHUNK 9  // patch positions one pass over the rows keeps in registers: conv1's 3x3x1

// Kernel and bias gradients for a small patch (conv1), stage 1, without an im2col matrix: block b
// writes partial[p * OC + o][b], the sum over output pixels r in [b * rows_per_block, (b + 1) *
// rows_per_block) of im2col(inp)[r][p] * dout[r][o], for every patch position p (patch =
// K*K*C <= DKERNEL_MAX_PATCH) and output channel o, and partial[patch * OC + o][b], the sum of
// dout[r][o] (the bias gradient). With relu != 0, dout is first masked in place by (out > 0),
// as bias_grad_partial does; the bias sums run in its order too (same rows per block and lanes:
// the same bits), in the pass that reads dout anyway. The block is `lanes` lanes of
// blockDim.x / lanes threads (exactly OC when lanes > 1; blockDim.x <= DKERNEL_MAX_BLOCK);
// thread o of lane l sums rows first + l, first + l + lanes, ...: one coalesced dout read per
// row, the patch's input values shared by the warp (broadcast), and no divisions inside the row
// loop. The sums live in registers, DKERNEL_CHUNK patch positions per pass over the rows: with
// all DKERNEL_MAX_PATCH at once the kernel took 168 registers, one block per SM, and 160 us for
// conv1 on an H100. The lanes' sums are added in lane order in shared memory. Stage 2 is
// bias_grad_finish over the patch * OC pairs; every sum in a fixed order, so deterministic.
template <typename I, int Rows>
__device__ __forceinline__ void dkernel_partial_sums(float* __restrict__ partial, float* __restrict__ dout, const float* __restrict__ inp,
                                                     const float* __restrict__ out, I samples, int height, int width, int channels,
                                                     int kernel_size, int out_channels, int rows_per_block, int lanes, int relu,
                                                     float* lane_sums) {
    int oh = height - kernel_size + 1, ow = width - kernel_size + 1;
    int span = kernel_size * channels;
    int patch = kernel_size * span;
    I pixels = (I)oh * ow;
    I in_len = (I)height * width * channels;
    I first = (I)blockIdx.x * rows_per_block;
    I last = first + rows_per_block < samples * pixels ? first + rows_per_block : samples * pixels;
    int group = blockDim.x / lanes;
    int lane = threadIdx.x / group, k = threadIdx.x - lane * group;
    I start_sample = (first + lane) / pixels;
    int start_pix = (int)(first + lane - start_sample * pixels);
    for (int o = k; o < out_channels && lane < lanes; o += group) {
        float bias_sum = 0.0f;
        for (int base = 0; base < patch; base += DKERNEL_CHUNK) {
            int off[DKERNEL_CHUNK];  // input offset of patch position base + p from the pixel's window corner
            float acc[DKERNEL_CHUNK];
            UNROLL
            for (int p = 0; p < DKERNEL_CHUNK; ++p) {
                int ky = (base + p) / span, q = base + p - ky * span;  // q = kx * C + c
                off[p] = base + p < patch ? ky * width * channels + q : 0;
                acc[p] = 0.0f;
            }
            I s = start_sample;
            int oy = start_pix / ow, ox = start_pix - oy * ow;
            // Rows rows per round: their dout loads are all issued before the first is used,
            // so each thread waits on memory once per round, not once per row.
            for (I r = first + lane; r < last; r += Rows * lanes) {
                float g[Rows];
                I x[Rows];  // offsets into inp
                UNROLL
                for (int u = 0; u < Rows; ++u) {
                    I at = (r + u * lanes) * out_channels + o;
                    g[u] = r + u * lanes < last ? dout[at] : 0.0f;
                    // The mask, written back once (the first pass); later passes mask again.
                    if (relu && r + u * lanes < last && out[at] <= 0.0f) {
                        if (base == 0) dout[at] = 0.0f;
                        g[u] = 0.0f;
                    }
                    x[u] = s * in_len + ((I)oy * width + ox) * channels;
                    // Next pixel of this lane: lanes further on, without a division.
                    ox += lanes;
                    while (ox >= ow) {
                        ox -= ow;
                        if (++oy == oh) {
                            oy = 0;
                            ++s;
                        }
                    }
                }
                UNROLL
                for (int u = 0; u < Rows; ++u) {
                    if (r + u * lanes >= last) break;
                    if (base == 0) bias_sum += g[u];
                    UNROLL
                    for (int p = 0; p < DKERNEL_CHUNK; ++p) {
                        if (base + p < patch) acc[p] += inp[x[u] + off[p]] * g[u];
                    }
                }
            }
            UNROLL
            for (int p = 0; p < DKERNEL_CHUNK; ++p) {
                if (base + p >= patch) continue;
                if (lanes == 1) partial[((i64)(base + p) * out_channels + o) * gridDim.x + blockIdx.x] = acc[p];
                else lane_sums[(lane * (patch + 1) + base + p) * out_channels + o] = acc[p];  // o == k: one channel per thread
            }
        }
        // The bias, as patch position `patch`.
        if (lanes == 1) partial[((i64)patch * out_channels + o) * gridDim.x + blockIdx.x] = bias_sum;
        else lane_sums[(lane * (patch + 1) + patch) * out_channels + o] = bias_sum;
    }
    if (lanes == 1) return;  // uniform across the block: no barrier needed
    __syncthreads();
    int pairs = (patch + 1) * out_channels;
    for (int j = threadIdx.x; j < pairs; j += blockDim.x) {
        float sum = 0.0f;
        for (int l = 0; l < lanes; ++l) sum += lane_sums[l * pairs + j];
        partial[(i64)j * gridDim.x + blockIdx.x] = sum;
    }
}

// With u32 indices (when every row and input index fits) each thread loads 4 rows' dout values
// per round; the i64 fallback one. Both fit 64 registers without spills (ptxas -v), so 4 blocks
// of 256 stay on each SM; i64 with 4 rows took 86.
extern "C" __global__ void __launch_bounds__(DKERNEL_MAX_BLOCK, 4) conv2d_dkernel_partial(float* __restrict__ partial, float* __restrict__ dout, const float* __restrict__ inp,
                                                  const float* __restrict__ out, i64 samples, int height, int width, int channels,
                                                  int kernel_size, int out_channels, int rows_per_block, int lanes, int relu) {
    __shared__ float lane_sums[DKERNEL_MAX_BLOCK * (DKERNEL_MAX_PATCH + 1)];
    i64 rows = samples * (height - kernel_size + 1) * (width - kernel_size + 1);
    // Row and input indices, plus one round's overshoot past the last row, stay below 2^31.
    if (rows * out_channels <= 0x7fffffffLL - 4096 && samples * height * width * channels <= 0x7fffffffLL - 4096)
        dkernel_partial_sums<u32, 4>(partial, dout, inp, out, (u32)samples, height, width, channels, kernel_size, out_channels, rows_per_block, lanes,
                                     relu, lane_sums);
    else dkernel_partial_sums<i64, 1>(partial, dout, inp, out, samples, height, width, channels, kernel_size, out_channels, rows_per_block, lanes, relu,
                                      lane_sums);
}

// out: (rows, channels) += bias (channels), then ReLU when relu != 0. Shared by conv and dense.
// bias_act's loop with index type I (u32 when n fits: an i64 `%` per value bounded it).
template <typename I>
__device__ __forceinline__ void bias_act_loop(float* out, const float* bias, I n, int channels, int relu) {
    I stride = (I)gridDim.x * blockDim.x;
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        float v = out[i] + bias[i % (I)channels];
        out[i] = relu ? fmaxf(v, 0.0f) : v;
    }
}

extern "C" __global__ void bias_act(float* out, const float* bias, i64 n, int channels, int relu) {
    if (n <= 0x7fffffffLL) bias_act_loop<u32>(out, bias, (u32)n, channels, relu);
    else bias_act_loop<i64>(out, bias, n, channels, relu);
}

#define BIAS_PARTIAL_MAX_BLOCK 1024

// Bias gradients, stage 1, fused with the ReLU's backward (layers/relu.rs): dout: (rows,
// channels), masked in place by (out > 0) when relu != 0; block b writes partial[c][b], the sum
// of column c over rows [b * rows_per_block, (b + 1) * rows_per_block). The block is `lanes`
// lanes of blockDim.x / lanes threads; with lanes > 1 a lane must have exactly `channels`
// threads. Lane l sums rows first + l, first + l + lanes, ... of its columns (a warp reads
// consecutive columns of a row, the block `lanes` consecutive rows: coalesced, many loads in
// flight); the lanes' sums are then added in lane order in shared memory. Every sum has a
// fixed order: the result is deterministic (no atomics), as graph replays must be to match op
// by op. With Half, the masked dout is also written to half_dout as f16/bf16 bits (bf16 != 0:
// bfloat16), as to_half would, for half-precision GEMMs: one pass over dout instead of two
// (to_half took 17 us for conv2's dout on an H100). Any grid; blockDim.x <=
// BIAS_PARTIAL_MAX_BLOCK.
template <bool Half>
__device__ __forceinline__ void bias_grad_sums(float* __restrict__ partial, float* __restrict__ dout, const float* __restrict__ out, i64 rows,
                                               int channels, int rows_per_block, int relu, int lanes, u16* __restrict__ half_dout,
                                               int bf16, float* lane_sums) {
    int width = blockDim.x / lanes;
    int lane = threadIdx.x / width, k = threadIdx.x - lane * width;
    i64 first = (i64)blockIdx.x * rows_per_block;
    i64 last = first + rows_per_block < rows ? first + rows_per_block : rows;
    for (int c = k; c < channels && lane < lanes; c += width) {
        float sum = 0.0f;
        i64 r = first + lane;
        // Four rows' loads before their adds (same order of adds as one row at a time).
        for (; r + 3 * lanes < last; r += 4 * lanes) {
            i64 i = r * channels + c, step = (i64)lanes * channels;
            float g0 = dout[i], g1 = dout[i + step], g2 = dout[i + 2 * step], g3 = dout[i + 3 * step];
            if (relu) {
                float o0 = out[i], o1 = out[i + step], o2 = out[i + 2 * step], o3 = out[i + 3 * step];
                if (o0 <= 0.0f) { g0 = 0.0f; dout[i] = 0.0f; }
                if (o1 <= 0.0f) { g1 = 0.0f; dout[i + step] = 0.0f; }
                if (o2 <= 0.0f) { g2 = 0.0f; dout[i + 2 * step] = 0.0f; }
                if (o3 <= 0.0f) { g3 = 0.0f; dout[i + 3 * step] = 0.0f; }
            }
            if (Half) {
                half_dout[i] = f32_to_half_bits(g0, bf16);
                half_dout[i + step] = f32_to_half_bits(g1, bf16);
                half_dout[i + 2 * step] = f32_to_half_bits(g2, bf16);
                half_dout[i + 3 * step] = f32_to_half_bits(g3, bf16);
            }
            sum += g0;
            sum += g1;
            sum += g2;
            sum += g3;
        }
        for (; r < last; r += lanes) {
            i64 i = r * channels + c;
            float g = dout[i];
            if (relu && out[i] <= 0.0f) {
                g = 0.0f;
                dout[i] = 0.0f;
            }
            if (Half) half_dout[i] = f32_to_half_bits(g, bf16);
            sum += g;
        }
        if (lanes == 1) partial[(i64)c * gridDim.x + blockIdx.x] = sum;
        else lane_sums[threadIdx.x] = sum;  // c == k: one column per thread
    }
    if (lanes == 1) return;  // uniform across the block: no barrier needed
    __syncthreads();
    if ((int)threadIdx.x < channels) {
        float sum = 0.0f;
        for (int l = 0; l < lanes; ++l) sum += lane_sums[l * width + threadIdx.x];
        partial[(i64)threadIdx.x * gridDim.x + blockIdx.x] = sum;
    }
}

// Two kernels, not one with a null half_dout: the conversions take the half one to 40
// registers (ptxas -v), which would cost the f32 one (32) a quarter of its blocks per SM.
extern "C" __global__ void bias_grad_partial(float* __restrict__ partial, float* __restrict__ dout, const float* __restrict__ out,
                                             i64 rows, int channels, int rows_per_block, int relu, int lanes) {
    __shared__ float lane_sums[BIAS_PARTIAL_MAX_BLOCK];
    bias_grad_sums<false>(partial, dout, out, rows, channels, rows_per_block, relu, lanes, nullptr, 0, lane_sums);
}

extern "C" __global__ void bias_grad_partial_half(float* __restrict__ partial, float* __restrict__ dout, const float* __restrict__ out,
                                                  i64 rows, int channels, int rows_per_block, int relu, int lanes,
                                                  u16* __restrict__ half_dout, int bf16) {
    __shared__ float lane_sums[BIAS_PARTIAL_MAX_BLOCK];
    bias_grad_sums<true>(partial, dout, out, rows, channels, rows_per_block, relu, lanes, half_dout, bf16, lane_sums);
}

#define BIAS_FINISH_BLOCK 256

// Bias gradients, stage 2: dbias (channels), overwritten; block c sums partial[c][0..blocks)
// with a fixed-shape tree. Launch with one block per channel of BIAS_FINISH_BLOCK threads.
extern "C" __global__ void bias_grad_finish(float* dbias, const float* partial, int blocks) {
    __shared__ float part[BIAS_FINISH_BLOCK];
    int t = threadIdx.x;
    const float* row = partial + (i64)blockIdx.x * blocks;
    float sum = 0.0f;
    for (int b = t; b < blocks; b += BIAS_FINISH_BLOCK) sum += row[b];
    part[t] = sum;
    __syncthreads();
    for (int half = BIAS_FINISH_BLOCK / 2; half > 0; half /= 2) {
        if (t < half) part[t] += part[t + half];
        __syncthreads();
    }
    if (t == 0) dbias[blockIdx.x] = part[0];
}
