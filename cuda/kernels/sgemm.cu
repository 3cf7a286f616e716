// Row-major f32 GEMM for the convolution's tall products (conv2: m = 73,728 rows of a batch,
// k and n a few hundred), where cuBLAS's SIMT SGEMMs ran at ~40% of an H100's f32 peak:
// C (m x n) = act(alpha A op(B) + beta C + bias), A stored m x k (row stride lda), op(B) = B
// stored k x n (ldb), or with trans_b B^T for B stored n x k (ldb); bias (n values) may be null,
// act is ReLU when relu != 0 (bias_act's rounding, in the same pass that writes C). Tiles of
// ROWS x 64 of C, k in steps of 16, double-buffered in shared memory: while one step's tiles
// are multiplied, the next step's are loaded into registers. Each of 128 threads sums a
// (ROWS / 16) x 8 block of C with fmaf (explicit, so the unit's --fmad=false, which only stops
// contraction, does not halve it).
// The host sees to: k % 16 == 0, n % 4 == 0, lda, ldb and ldc multiples of 4, 16-byte aligned
// pointers (bias too), and every size within an int; m is any size.
// Leaves out: transposed A (the kernel gradient's sum over 73,728 rows stays on cuBLAS's split-K).

#define SGEMM_THREADS 128
#define SGEMM_COLS 64
#define SGEMM_STEP 16

#if defined(__CUDACC__)
#define SGEMM_UNROLL _Pragma("unroll")
#else
#define SGEMM_UNROLL
#endif

// One k step's multiply-adds on a pair of shared tiles: the thread's block of C (rows (r / 4) *
// 64 + tm * 4 + r % 4, columns h * 32 + tn * 4 + j) over its first HALVES groups of 4 columns
// (2, or 1 where the tile's right half lies past n: dcol's last tile of 288 columns). A warp
// reads 64 contiguous bytes of A and 128 of B per k.
template <int ROWS, int HALVES>
__device__ __forceinline__ void sgemm_multiply(const float (*a_tile)[ROWS + 4], const float (*b_tile)[SGEMM_COLS + 4], int tm, int tn,
                                               float (&acc)[ROWS / 16][8]) {
    SGEMM_UNROLL
    for (int kk = 0; kk < SGEMM_STEP; ++kk) {
        float av[ROWS / 16], bv[8];
        SGEMM_UNROLL
        for (int h = 0; h < ROWS / 64; ++h) {
            float4 v = *(const float4*)&a_tile[kk][h * 64 + tm * 4];
            av[h * 4 + 0] = v.x, av[h * 4 + 1] = v.y, av[h * 4 + 2] = v.z, av[h * 4 + 3] = v.w;
        }
        SGEMM_UNROLL
        for (int h = 0; h < HALVES; ++h) {
            float4 v = *(const float4*)&b_tile[kk][h * 32 + tn * 4];
            bv[h * 4 + 0] = v.x, bv[h * 4 + 1] = v.y, bv[h * 4 + 2] = v.z, bv[h * 4 + 3] = v.w;
        }
        SGEMM_UNROLL
        for (int r = 0; r < ROWS / 16; ++r) {
            SGEMM_UNROLL
            for (int j = 0; j < 4 * HALVES; ++j) acc[r][j] = __fmaf_rn(av[r], bv[j], acc[r][j]);
        }
    }
}

// A convolution's forward A operand read straight from its NHWC input (valid padding, stride 1)
// instead of an im2col matrix: row r is output pixel r's receptive field, column q = (ky * K +
// kx) * C + c, im2col's layout. When col is not null the blocks of the first column tile also
// write the rows there, as im2col would, for the backward's kernel gradient: the forward then
// needs no im2col pass (conv2: 38 us, and the product no longer reads its 85 MB). Needs C % 4
// == 0 (a float4 never straddles two kernel positions) and a 16-byte aligned image.
struct Im2colRows {
    const float* image;
    int height, width, channels, ksize;
    float* col;
};

template <int ROWS, bool IM2COL>
__device__ __forceinline__ void sgemm_tile(int m, int n, int k, const float* a, int lda, const float* b, int ldb, int trans_b,
                                           float* c, int ldc, float alpha, float beta, const float* bias, int relu, Im2colRows conv) {
    constexpr int THREAD_ROWS = ROWS / 16;  // 8 or 4: groups of 4 rows, 64 apart
    constexpr int A_LOADS = ROWS / 32;      // float4s of A per thread and k step
    // Rows padded by 4 floats: a transposed float4 store then meets 2-way bank conflicts, not 4;
    // rows stay 16-byte aligned for the float4 reads.
    __shared__ __align__(16) float a_tile[2][SGEMM_STEP][ROWS + 4];
    __shared__ __align__(16) float b_tile[2][SGEMM_STEP][SGEMM_COLS + 4];
    int tiles_n = (n + SGEMM_COLS - 1) / SGEMM_COLS;
    // Consecutive blocks share a tile row of A (it stays in L2 across the n tiles).
    int tile_m = blockIdx.x / tiles_n;
    int row0 = tile_m * ROWS, col0 = (blockIdx.x - tile_m * tiles_n) * SGEMM_COLS;
    int t = threadIdx.x;

    // Loads: A's rows a_row + 32 i, the a_quad-th float4 of each k step's 16 values (a row's 64
    // bytes come from 4 neighbouring threads). Rows past m read row 0 and are never stored.
    // With IM2COL, a_at is each row's window corner in the image, and (a_c, a_kx, a_ky) the
    // position of the next step's float4 in the window.
    int a_quad = t & 3, a_row = t >> 2;
    const float* a_at[A_LOADS];
    int a_c = 0, a_kx = 0, a_ky = 0;
    if (IM2COL) {
        int ow = conv.width - conv.ksize + 1, pixels = (conv.height - conv.ksize + 1) * ow;
        SGEMM_UNROLL
        for (int i = 0; i < A_LOADS; ++i) {
            int r = row0 + a_row + 32 * i;
            // Output pixel r's (sample, y, x): an NHWC index of one channel.
            NhwcIndex<u32> at = nhwc_index<u32>((u32)(r < m ? r : 0), (u32)pixels, ow, 1);
            a_at[i] = conv.image + (((u64)at.s * conv.height + at.y) * conv.width + at.x) * conv.channels;
        }
        int span = conv.ksize * conv.channels, q = a_quad * 4;
        a_ky = q / span;
        q -= a_ky * span;
        a_kx = q / conv.channels;
        a_c = q - a_kx * conv.channels;
    } else {
        SGEMM_UNROLL
        for (int i = 0; i < A_LOADS; ++i) {
            int r = row0 + a_row + 32 * i;
            a_at[i] = a + (u64)(r < m ? r : 0) * lda + a_quad * 4;
        }
    }
    // B: two float4s per thread, q = t and t + 128. Untransposed, row q / 16 of the step and
    // column quad q % 16; transposed, column q / 4 and the (q % 4)-th float4 of its k values.
    const float* b_at[2];
    bool b_ok[2];
    SGEMM_UNROLL
    for (int i = 0; i < 2; ++i) {
        int q = t + SGEMM_THREADS * i;
        int col = trans_b ? col0 + (q >> 2) : col0 + (q & 15) * 4;
        b_ok[i] = col < n;
        b_at[i] = trans_b ? b + (u64)(b_ok[i] ? col : 0) * ldb + (q & 3) * 4 : b + (u64)(q >> 4) * ldb + (b_ok[i] ? col : 0);
    }
    u64 b_step = trans_b ? SGEMM_STEP : (u64)SGEMM_STEP * ldb;

    float4 a_next[A_LOADS], b_next[2];
    // Steps are loaded in order 0, 1, 2, ... (IM2COL's window position advances by one step).
    auto load = [&](int step) {
        if (IM2COL) {
            int offset = (a_ky * conv.width + a_kx) * conv.channels + a_c;
            SGEMM_UNROLL
            for (int i = 0; i < A_LOADS; ++i) a_next[i] = *(const float4*)(a_at[i] + offset);
            if (conv.col && col0 == 0) {
                SGEMM_UNROLL
                for (int i = 0; i < A_LOADS; ++i) {
                    int r = row0 + a_row + 32 * i;
                    if (r < m) *(float4*)(conv.col + (u64)r * k + step * SGEMM_STEP + a_quad * 4) = a_next[i];
                }
            }
            a_c += SGEMM_STEP;
            while (a_c >= conv.channels) {
                a_c -= conv.channels;
                if (++a_kx == conv.ksize) {
                    a_kx = 0;
                    ++a_ky;
                }
            }
        } else {
            SGEMM_UNROLL
            for (int i = 0; i < A_LOADS; ++i) a_next[i] = *(const float4*)(a_at[i] + step * SGEMM_STEP);
        }
        SGEMM_UNROLL
        for (int i = 0; i < 2; ++i) b_next[i] = b_ok[i] ? *(const float4*)(b_at[i] + step * b_step) : make_float4(0.f, 0.f, 0.f, 0.f);
    };
    auto store = [&](int buf) {
        SGEMM_UNROLL
        for (int i = 0; i < A_LOADS; ++i) {
            int r = a_row + 32 * i;
            a_tile[buf][a_quad * 4 + 0][r] = a_next[i].x;
            a_tile[buf][a_quad * 4 + 1][r] = a_next[i].y;
            a_tile[buf][a_quad * 4 + 2][r] = a_next[i].z;
            a_tile[buf][a_quad * 4 + 3][r] = a_next[i].w;
        }
        SGEMM_UNROLL
        for (int i = 0; i < 2; ++i) {
            int q = t + SGEMM_THREADS * i;
            if (trans_b) {
                int col = q >> 2, kq = (q & 3) * 4;
                b_tile[buf][kq + 0][col] = b_next[i].x;
                b_tile[buf][kq + 1][col] = b_next[i].y;
                b_tile[buf][kq + 2][col] = b_next[i].z;
                b_tile[buf][kq + 3][col] = b_next[i].w;
            } else {
                *(float4*)&b_tile[buf][q >> 4][(q & 15) * 4] = b_next[i];
            }
        }
    };

    // This thread's block of C (see sgemm_multiply).
    int tm = t >> 3, tn = t & 7;
    float acc[THREAD_ROWS][8];
    SGEMM_UNROLL
    for (int r = 0; r < THREAD_ROWS; ++r) {
        SGEMM_UNROLL
        for (int j = 0; j < 8; ++j) acc[r][j] = 0.f;
    }

    bool right_half = col0 + 32 < n;  // the same for the whole block

    int steps = k / SGEMM_STEP;
    load(0);
    store(0);
    __syncthreads();
    for (int step = 0; step < steps; ++step) {
        int buf = step & 1;
        if (step + 1 < steps) load(step + 1);
        if (right_half) sgemm_multiply<ROWS, 2>(a_tile[buf], b_tile[buf], tm, tn, acc);
        else sgemm_multiply<ROWS, 1>(a_tile[buf], b_tile[buf], tm, tn, acc);
        // The other buffer was last read in the previous step, before its closing barrier.
        if (step + 1 < steps) store(buf ^ 1);
        __syncthreads();
    }

    SGEMM_UNROLL
    for (int r = 0; r < THREAD_ROWS; ++r) {
        int row = row0 + (r >> 2) * 64 + tm * 4 + (r & 3);
        if (row >= m) continue;
        SGEMM_UNROLL
        for (int h = 0; h < 2; ++h) {
            int col = col0 + h * 32 + tn * 4;
            if (col >= n) continue;
            float4* out = (float4*)(c + (u64)row * ldc + col);
            float4 v = make_float4(alpha * acc[r][h * 4 + 0], alpha * acc[r][h * 4 + 1], alpha * acc[r][h * 4 + 2],
                                   alpha * acc[r][h * 4 + 3]);
            if (beta != 0.f) {
                float4 old = *out;
                v.x += beta * old.x, v.y += beta * old.y, v.z += beta * old.z, v.w += beta * old.w;
            }
            if (bias) {
                float4 add = *(const float4*)(bias + col);
                v.x += add.x, v.y += add.y, v.z += add.z, v.w += add.w;
            }
            if (relu) v = make_float4(fmaxf(v.x, 0.0f), fmaxf(v.y, 0.0f), fmaxf(v.z, 0.0f), fmaxf(v.w, 0.0f));
            *out = v;
        }
    }
}

// Tiles of 128 x 64 (fewer loads per multiply) and of 64 x 64 (twice the blocks, for products
// whose 128-row tiles would leave the last wave of blocks mostly empty); one block per tile,
// tiles_n = ceil(n / 64) consecutive blocks per tile row.
extern "C" __global__ void __launch_bounds__(SGEMM_THREADS) sgemm_rows128(int m, int n, int k, const float* a, int lda, const float* b, int ldb,
                                                                          int trans_b, float* c, int ldc, float alpha, float beta,
                                                                          const float* bias, int relu) {
    sgemm_tile<128, false>(m, n, k, a, lda, b, ldb, trans_b, c, ldc, alpha, beta, bias, relu, Im2colRows{});
}
extern "C" __global__ void __launch_bounds__(SGEMM_THREADS) sgemm_rows64(int m, int n, int k, const float* a, int lda, const float* b, int ldb,
                                                                         int trans_b, float* c, int ldc, float alpha, float beta,
                                                                         const float* bias, int relu) {
    sgemm_tile<64, false>(m, n, k, a, lda, b, ldb, trans_b, c, ldc, alpha, beta, bias, relu, Im2colRows{});
}

// A convolution's forward, out (m = samples * OH * OW, n = OC) = act(im2col(image) kernel
// (k = K*K*C rows, ldb) + bias), with A read through Im2colRows (col: where to leave the im2col
// matrix, or null).
extern "C" __global__ void __launch_bounds__(SGEMM_THREADS) conv_sgemm_rows128(int m, int n, int k, const float* image, int height, int width,
                                                                               int channels, int ksize, float* col, const float* b, int ldb,
                                                                               float* c, int ldc, const float* bias, int relu) {
    Im2colRows conv{image, height, width, channels, ksize, col};
    sgemm_tile<128, true>(m, n, k, nullptr, k, b, ldb, 0, c, ldc, 1.0f, 0.0f, bias, relu, conv);
}
extern "C" __global__ void __launch_bounds__(SGEMM_THREADS) conv_sgemm_rows64(int m, int n, int k, const float* image, int height, int width,
                                                                              int channels, int ksize, float* col, const float* b, int ldb,
                                                                              float* c, int ldc, const float* bias, int relu) {
    Im2colRows conv{image, height, width, channels, ksize, col};
    sgemm_tile<64, true>(m, n, k, nullptr, k, b, ldb, 0, c, ldc, 1.0f, 0.0f, bias, relu, conv);
}
