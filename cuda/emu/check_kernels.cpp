// A no-GPU check of the kernels' logic: compiles cuda/kernels/*.cu as plain C++ with a tiny
// CUDA emulation (blocks run one after another; threads of kernels that use __syncthreads run
// as real threads with a barrier) and compares each kernel with a naive reference. Leaves out:
// cuBLAS, launches from Rust, and anything about GPU timing or memory; the GPU tests do those.
#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

struct uint3 { unsigned x, y, z; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) uint2 { unsigned x, y; };
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
struct alignas(16) uint4 { unsigned x, y, z, w; };
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
static thread_local uint3 threadIdx, blockIdx;
static uint3 blockDim, gridDim;
static std::barrier<>* block_barrier = nullptr;
static std::mutex atomic_lock;

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static  // shared by the emulated threads; blocks run one at a time
#define __align__(n) __attribute__((aligned(n)))
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline void __syncthreads() { block_barrier->arrive_and_wait(); }
inline float __int_as_float(unsigned v) { float f; std::memcpy(&f, &v, 4); return f; }
inline float __uint_as_float(unsigned v) { float f; std::memcpy(&f, &v, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned v; std::memcpy(&v, &f, 4); return v; }
inline float atomicAdd(float* p, float v) { std::lock_guard<std::mutex> g(atomic_lock); float old = *p; *p = old + v; return old; }

#include "../kernels/common.cu"
#include "../kernels/data.cu"
#include "../kernels/conv2d.cu"
#include "../kernels/maxpool2d.cu"
#include "../kernels/dropout.cu"
#include "../kernels/softmax_xent.cu"
#include "../kernels/optim.cu"
#include "../kernels/precision.cu"
#include "../kernels/sgemm.cu"

// Runs `kernel` on grid x block; `threads` runs each block's threads concurrently (needed for
// __syncthreads), otherwise one after another.
static void launch(unsigned grid, unsigned block, bool threads, const std::function<void()>& kernel) {
    gridDim = {grid, 1, 1};
    blockDim = {block, 1, 1};
    for (unsigned b = 0; b < grid; ++b) {
        if (!threads) {
            for (unsigned t = 0; t < block; ++t) {
                blockIdx = {b, 0, 0};
                threadIdx = {t, 0, 0};
                kernel();
            }
            continue;
        }
        std::barrier<> barrier(block);
        block_barrier = &barrier;
        std::vector<std::thread> pool;
        for (unsigned t = 0; t < block; ++t) {
            pool.emplace_back([&, b, t] { blockIdx = {b, 0, 0}; threadIdx = {t, 0, 0}; kernel(); });
        }
        for (auto& th : pool) th.join();
    }
}

// The Rust side's launch shape, with a small block cap so grid-stride loops wrap.
static unsigned blocks_for(i64 n) { i64 b = (n + 255) / 256; return (unsigned)(b < 1 ? 1 : (b > 3 ? 3 : b)); }

static int passed = 0, failures = 0;
static void expect(bool ok, const char* what) {
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", what);
    ++(ok ? passed : failures);
}
static bool close(const std::vector<float>& got, const std::vector<double>& want, double tol) {
    if (got.size() != want.size()) return false;
    for (size_t i = 0; i < got.size(); ++i) {
        if (!(std::fabs(got[i] - want[i]) <= tol * (1.0 + std::fabs(want[i])))) {
            std::printf("     first difference at %zu: %g vs %g\n", i, got[i], want[i]);
            return false;
        }
    }
    return true;
}

// Bit-equal (NaNs included), as the kernels' exact paths must be.
template <typename T>
static bool same(const std::vector<T>& a, const std::vector<T>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

static std::mt19937_64 rng(12345);
static std::vector<float> random_floats(size_t n, float lo, float hi) {
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

static void check_load_batch() {
    const i64 n = 37, sample = 11, start = 5, count = 20;
    std::vector<u8> images(n * sample), labels(n);
    for (auto& b : images) b = (u8)(rng() & 255);
    for (auto& l : labels) l = (u8)(rng() % 10);
    std::vector<u32> order(n);
    for (i64 i = 0; i < n; ++i) order[i] = (u32)((i * 17 + 3) % n);
    std::vector<float> x(count * sample, -1.0f);
    std::vector<u32> got_labels(count, 99);
    // The start as an argument, then from device memory (a recorded step's), which wins.
    const u64 start_at = start;
    for (const u64* at : {(const u64*)nullptr, &start_at}) {
        std::fill(x.begin(), x.end(), -1.0f);
        std::fill(got_labels.begin(), got_labels.end(), 99u);
        launch(blocks_for(count * sample), 256, false, [&] { load_batch(x.data(), got_labels.data(), images.data(), labels.data(), order.data(), at ? 999 : start, at, count, sample); });
        bool ok = true;
        for (i64 s = 0; s < count; ++s) {
            u32 src = order[start + s];
            ok &= got_labels[s] == labels[src];
            for (i64 j = 0; j < sample; ++j) ok &= x[s * sample + j] == (float)images[src * sample + j] * (1.0f / 255.0f);
        }
        expect(ok, at ? "load_batch reads its start from start_at" : "load_batch gathers by order and scales by 1/255");
    }
}

static void check_conv() {
    const int samples = 3, h = 7, w = 6, c = 2, k = 3, oc = 4;
    const int oh = h - k + 1, ow = w - k + 1, patch = k * k * c, rows = oh * ow;
    auto inp = random_floats((size_t)samples * h * w * c, -1, 1);
    auto kern = random_floats((size_t)patch * oc, -0.5, 0.5);
    auto bias = random_floats(oc, -0.1f, 0.1f);
    std::vector<float> col((size_t)samples * rows * patch, NAN);
    launch(blocks_for((i64)col.size()), 256, false, [&] { im2col(col.data(), inp.data(), samples, h, w, c, k); });
    // out = col @ kernel (a naive GEMM stands in for cuBLAS), then the bias + ReLU epilogue.
    std::vector<float> out((size_t)samples * rows * oc);
    for (int r = 0; r < samples * rows; ++r)
        for (int o = 0; o < oc; ++o) {
            float s = 0;
            for (int p = 0; p < patch; ++p) s += col[(size_t)r * patch + p] * kern[(size_t)p * oc + o];
            out[(size_t)r * oc + o] = s;
        }
    launch(blocks_for((i64)out.size()), 256, false, [&] { bias_act(out.data(), bias.data(), (i64)out.size(), oc, 1); });
    std::vector<double> want(out.size());
    for (int s = 0; s < samples; ++s)
        for (int y = 0; y < oh; ++y)
            for (int x = 0; x < ow; ++x)
                for (int o = 0; o < oc; ++o) {
                    double acc = bias[o];
                    for (int ky = 0; ky < k; ++ky)
                        for (int kx = 0; kx < k; ++kx)
                            for (int ci = 0; ci < c; ++ci)
                                acc += (double)inp[(((size_t)s * h + y + ky) * w + x + kx) * c + ci] * kern[((size_t)(ky * k + kx) * c + ci) * oc + o];
                    want[(((size_t)s * oh + y) * ow + x) * oc + o] = acc > 0 ? acc : 0;
                }
    expect(close(out, want, 1e-5), "im2col + GEMM + bias_act(relu) is the NHWC/HWIO convolution");
    std::vector<float> direct(out.size(), NAN);
    launch(blocks_for((i64)direct.size()), 256, false, [&] { conv2d_direct(direct.data(), inp.data(), kern.data(), bias.data(), samples, h, w, c, k, oc, 1); });
    expect(close(direct, want, 1e-5), "conv2d_direct(relu) is the NHWC/HWIO convolution");
    launch(blocks_for((i64)direct.size()), 256, false, [&] { conv2d_direct(direct.data(), inp.data(), kern.data(), bias.data(), samples, h, w, c, k, oc, 0); });
    for (int s = 0; s < samples; ++s)
        for (int y = 0; y < oh; ++y)
            for (int x = 0; x < ow; ++x)
                for (int o = 0; o < oc; ++o) {
                    double acc = bias[o];
                    for (int ky = 0; ky < k; ++ky)
                        for (int kx = 0; kx < k; ++kx)
                            for (int ci = 0; ci < c; ++ci)
                                acc += (double)inp[(((size_t)s * h + y + ky) * w + x + kx) * c + ci] * kern[((size_t)(ky * k + kx) * c + ci) * oc + o];
                    want[(((size_t)s * oh + y) * ow + x) * oc + o] = acc;
                }
    expect(close(direct, want, 1e-5), "conv2d_direct without ReLU");

    // Kernel gradients without im2col: dkernel (patch, OC) = col^T @ dout, with one lane of
    // threads owning several channels, and with lanes of exactly OC threads; rows per block
    // that leave ragged lanes and blocks, and lanes that step over several output rows.
    {
        auto dout = random_floats(out.size(), -1, 1);
        const int pairs = patch * oc;
        struct DkShape { int lanes, threads, rows_per_block; };
        // A ReLU's output: about half exactly zero.
        auto relu_out = random_floats(out.size(), -1, 1);
        for (float& v : relu_out) v = std::fmax(v, 0.0f);
        for (DkShape ds : {DkShape{1, 3, 4}, DkShape{3, 12, 7}, DkShape{8, 32, 40}, DkShape{16, 64, 200}})
            for (int relu : {0, 1}) {
                const int blocks = (samples * rows + ds.rows_per_block - 1) / ds.rows_per_block;
                std::vector<float> partial((size_t)(pairs + oc) * blocks, NAN), dkernel(pairs, NAN), masked = dout;
                launch(blocks, ds.threads, true, [&] {
                    conv2d_dkernel_partial(partial.data(), masked.data(), inp.data(), relu_out.data(), samples, h, w, c, k, oc, ds.rows_per_block,
                                           ds.lanes, relu);
                });
                launch(pairs, BIAS_FINISH_BLOCK, true, [&] { bias_grad_finish(dkernel.data(), partial.data(), blocks); });
                std::vector<double> want_dk(pairs, 0.0);
                for (int r = 0; r < samples * rows; ++r)
                    for (int p = 0; p < patch; ++p)
                        for (int o = 0; o < oc; ++o) {
                            float g = relu && relu_out[(size_t)r * oc + o] <= 0 ? 0.0f : dout[(size_t)r * oc + o];
                            want_dk[(size_t)p * oc + o] += (double)col[(size_t)r * patch + p] * g;
                        }
                char what[160];
                std::snprintf(what, sizeof what, "conv2d_dkernel_partial + bias_grad_finish is col^T @ dout%s (%d lanes, %d rows/block)",
                              relu ? " (ReLU-masked)" : "", ds.lanes, ds.rows_per_block);
                expect(close(dkernel, want_dk, 1e-5), what);
                // Its bias rows and masked dout are bias_grad_partial's, bit for bit (same lanes
                // and rows per block).
                std::vector<float> bias_partial((size_t)oc * blocks, NAN), bias_masked = dout;
                launch(blocks, ds.threads, true, [&] {
                    bias_grad_partial(bias_partial.data(), bias_masked.data(), relu_out.data(), samples * rows, oc, ds.rows_per_block, relu, ds.lanes);
                });
                bool same_bias = std::memcmp(bias_partial.data(), partial.data() + (size_t)pairs * blocks, bias_partial.size() * sizeof(float)) == 0;
                std::snprintf(what, sizeof what, "conv2d_dkernel_partial's bias sums%s equal bias_grad_partial's bit for bit (%d lanes, %d rows/block)",
                              relu ? " (ReLU)" : "", ds.lanes, ds.rows_per_block);
                expect(same_bias, what);
                std::snprintf(what, sizeof what, "conv2d_dkernel_partial %s dout as bias_grad_partial does (%d lanes)", relu ? "masks" : "leaves alone",
                              ds.lanes);
                expect(std::memcmp(masked.data(), bias_masked.data(), masked.size() * sizeof(float)) == 0, what);
            }
    }

    // A patch that is not a multiple of DKERNEL_CHUNK (2x2x3 = 12: a full pass and a partial one).
    {
        const int k2 = 2, c2 = 3, oh2 = h - k2 + 1, ow2 = w - k2 + 1, patch2 = k2 * k2 * c2, pairs = patch2 * oc;
        auto inp2 = random_floats((size_t)samples * h * w * c2, -1, 1);
        auto dout = random_floats((size_t)samples * oh2 * ow2 * oc, -1, 1);
        const int lanes = 4, rows_per_block = 9, blocks = (samples * oh2 * ow2 + rows_per_block - 1) / rows_per_block;
        auto relu_out = random_floats(dout.size(), -1, 1);
        std::vector<float> partial((size_t)(pairs + oc) * blocks, NAN), dkernel(pairs, NAN), dbias(oc, NAN), masked = dout;
        launch(blocks, lanes * oc, true, [&] {
            conv2d_dkernel_partial(partial.data(), masked.data(), inp2.data(), relu_out.data(), samples, h, w, c2, k2, oc, rows_per_block, lanes, 1);
        });
        for (size_t i = 0; i < dout.size(); ++i)
            if (relu_out[i] <= 0) dout[i] = 0.0f;  // the reference below sums the masked dout
        launch(oc, BIAS_FINISH_BLOCK, true, [&] { bias_grad_finish(dbias.data(), partial.data() + (size_t)pairs * blocks, blocks); });
        std::vector<double> want_db(oc, 0.0);
        for (size_t i = 0; i < dout.size(); ++i) want_db[i % oc] += dout[i];
        expect(same(masked, dout) && close(dbias, want_db, 1e-5), "conv2d_dkernel_partial with a patch of 12 masks dout once and sums the bias");
        launch(pairs, BIAS_FINISH_BLOCK, true, [&] { bias_grad_finish(dkernel.data(), partial.data(), blocks); });
        std::vector<double> want_dk(pairs, 0.0);
        for (int s = 0; s < samples; ++s)
            for (int y = 0; y < oh2; ++y)
                for (int x = 0; x < ow2; ++x)
                    for (int ky = 0; ky < k2; ++ky)
                        for (int kx = 0; kx < k2; ++kx)
                            for (int ci = 0; ci < c2; ++ci)
                                for (int o = 0; o < oc; ++o)
                                    want_dk[((size_t)(ky * k2 + kx) * c2 + ci) * oc + o] +=
                                        (double)inp2[(((size_t)s * h + y + ky) * w + x + kx) * c2 + ci] * dout[(((size_t)s * oh2 + y) * ow2 + x) * oc + o];
        expect(close(dkernel, want_dk, 1e-5), "conv2d_dkernel_partial + bias_grad_finish with a patch of 12 (a partial register chunk)");
    }

    // col2im is im2col's adjoint: <im2col(x), y> == <x, col2im(y)>.
    auto dcol = random_floats(col.size(), -1, 1);
    std::vector<float> dinp(inp.size(), NAN);
    launch(blocks_for((i64)dinp.size()), 256, false, [&] { col2im(dinp.data(), dcol.data(), samples, h, w, c, k); });
    double lhs = 0, rhs = 0;
    for (size_t i = 0; i < col.size(); ++i) lhs += (double)col[i] * dcol[i];
    for (size_t i = 0; i < inp.size(); ++i) rhs += (double)inp[i] * dinp[i];
    expect(std::fabs(lhs - rhs) < 1e-4 * (1 + std::fabs(lhs)), "col2im is the adjoint of im2col");

    // Bias gradients: column sums of dout (rows, channels), masked by the ReLU when asked.
    // Shapes: 40 channels on one 32-thread lane (threads own two columns); lanes of exactly
    // `channels` threads, with rows per block that leave ragged lanes and blocks and that run
    // the four-row loop.
    struct BiasShape { int channels, lanes, threads, rows_per_block; i64 rows; };
    const BiasShape bias_shapes[] = {{40, 1, 32, 7, 50}, {10, 3, 30, 7, 50}, {8, 4, 32, 37, 101}, {16, 2, 32, 64, 64}, {5, 6, 30, 24, 200}};
    for (const BiasShape& bs : bias_shapes) {
        const int channels = bs.channels;
        const i64 grad_rows = bs.rows;
        const int blocks = (int)((grad_rows + bs.rows_per_block - 1) / bs.rows_per_block);
        auto relu_out = random_floats(grad_rows * channels, -1, 1);  // about half are <= 0
        // half: -1 is bias_grad_partial (no half copy of dout), 0 and 1 bias_grad_partial_half
        // writing an f16 or a bf16 one.
        for (int relu : {0, 1})
            for (int half : {-1, 0, 1}) {
                std::vector<float> dout = random_floats(grad_rows * channels, -1, 1), masked = dout;
                std::vector<float> partial(blocks * channels, NAN), dbias(channels, NAN);
                std::vector<u16> halves(grad_rows * channels, 0xdead);
                launch(blocks, bs.threads, true, [&] {
                    if (half < 0) bias_grad_partial(partial.data(), masked.data(), relu_out.data(), grad_rows, channels, bs.rows_per_block, relu, bs.lanes);
                    else bias_grad_partial_half(partial.data(), masked.data(), relu_out.data(), grad_rows, channels, bs.rows_per_block, relu, bs.lanes, halves.data(), half);
                });
                launch(channels, BIAS_FINISH_BLOCK, true, [&] { bias_grad_finish(dbias.data(), partial.data(), blocks); });
                std::vector<double> want(channels, 0.0);
                bool ok = true, halves_ok = true;
                for (i64 i = 0; i < grad_rows * channels; ++i) {
                    float g = relu && relu_out[i] <= 0 ? 0.0f : dout[i];
                    ok &= masked[i] == g;
                    halves_ok &= halves[i] == (half < 0 ? 0xdead : f32_to_half_bits(g, half));
                    want[i % channels] += g;
                }
                char what[160];
                std::snprintf(what, sizeof what, "bias_grad_partial %s dout (%d channels, %d lanes)", relu ? "masks" : "leaves alone", channels, bs.lanes);
                expect(ok, what);
                std::snprintf(what, sizeof what, "bias gradients%s are column sums (%d channels, %d lanes, %d rows/block)", relu ? " (ReLU)" : "", channels, bs.lanes, bs.rows_per_block);
                expect(close(dbias, want, 1e-4), what);
                std::snprintf(what, sizeof what, "bias_grad_partial%s %s (%d channels, %d lanes)", relu ? " (ReLU)" : "",
                              half < 0 ? "writes no half copy" : half ? "_half writes the masked dout as bf16 bits" : "_half writes the masked dout as f16 bits",
                              channels, bs.lanes);
                expect(halves_ok, what);
            }
    }
}

static void check_im2col_shapes() {
    struct Shape { int samples, h, w, c, k; bool misalign; };
    const Shape shapes[] = {{2, 6, 5, 3, 3, false}, {2, 6, 5, 4, 3, true}, {3, 7, 6, 4, 3, false}, {2, 5, 7, 8, 2, false}, {1, 4, 4, 8, 4, false}};
    for (const Shape& sh : shapes) {
        const int oh = sh.h - sh.k + 1, ow = sh.w - sh.k + 1, patch = sh.k * sh.k * sh.c;
        auto store = random_floats((size_t)sh.samples * sh.h * sh.w * sh.c + 1, -1, 1);
        const float* inp = store.data() + (sh.misalign ? 1 : 0);
        std::vector<float> col((size_t)sh.samples * oh * ow * patch, NAN);
        for (unsigned grid : {1u, 2u, 5u, 20u})
            for (unsigned block : {32u, 64u}) {
                std::fill(col.begin(), col.end(), NAN);
                launch(grid, block, false, [&] { im2col(col.data(), inp, sh.samples, sh.h, sh.w, sh.c, sh.k); });
                bool ok = true;
                for (int s = 0; s < sh.samples; ++s)
                    for (int y = 0; y < oh; ++y)
                        for (int x = 0; x < ow; ++x)
                            for (int ky = 0; ky < sh.k; ++ky)
                                for (int kx = 0; kx < sh.k; ++kx)
                                    for (int c = 0; c < sh.c; ++c) {
                                        size_t r = ((size_t)s * oh + y) * ow + x;
                                        float want = inp[(((size_t)s * sh.h + y + ky) * sh.w + x + kx) * sh.c + c];
                                        ok &= col[r * patch + (ky * sh.k + kx) * sh.c + c] == want;
                                    }
                char what[128];
                std::snprintf(what, sizeof what, "im2col C=%d K=%d%s on %ux%u", sh.c, sh.k, sh.misalign ? " misaligned" : "", grid, block);
                expect(ok, what);
            }
        // col2im on the same shape: float4 sums (when C % 4 == 0 and aligned) are the scalar
        // loop's bits, on grids that wrap; and the result is im2col's adjoint.
        auto dcol = random_floats(col.size(), -1, 1);
        std::vector<float> dstore((size_t)sh.samples * sh.h * sh.w * sh.c + 1, NAN), scalar((size_t)sh.samples * sh.h * sh.w * sh.c, NAN);
        float* dinp = dstore.data() + (sh.misalign ? 1 : 0);
        launch(3, 32, false, [&] { col2im(dinp, dcol.data(), sh.samples, sh.h, sh.w, sh.c, sh.k); });
        launch(3, 32, false, [&] { col2im_sum<u32>(scalar.data(), dcol.data(), (u32)sh.samples, sh.h, sh.w, sh.c, sh.k); });
        std::vector<float> wide(scalar.size(), NAN);
        launch(3, 32, false, [&] { col2im_sum<i64>(wide.data(), dcol.data(), (i64)sh.samples, sh.h, sh.w, sh.c, sh.k); });
        double lhs = 0, rhs = 0;
        for (size_t i = 0; i < col.size(); ++i) lhs += (double)col[i] * dcol[i];
        for (size_t i = 0; i < scalar.size(); ++i) rhs += (double)inp[i] * dinp[i];
        char what[128];
        std::snprintf(what, sizeof what, "col2im C=%d K=%d%s is im2col's adjoint and the scalar and i64 loops' bits", sh.c, sh.k, sh.misalign ? " misaligned" : "");
        expect(std::memcmp(dinp, scalar.data(), scalar.size() * sizeof(float)) == 0 && same(scalar, wide) && std::fabs(lhs - rhs) < 1e-4 * (1 + std::fabs(lhs)), what);
    }
}

static void check_maxpool() {
    // 7x5: ragged edges (the backward's gather); 6x4: the pool divides both (one thread per
    // window). C = 4 and 8: the forward's four channels per thread.
    struct Shape { int h, w, c; };
    for (Shape sh : {Shape{7, 5, 3}, Shape{6, 4, 3}, Shape{7, 5, 4}, Shape{6, 4, 8}}) {
        const int batch = 2, h = sh.h, w = sh.w, c = sh.c, p = 2, oh = h / p, ow = w / p;
        const i64 in_len = h * w * c, out_len = oh * ow * c;
        auto inp = random_floats(batch * in_len, -1, 1);
        inp[3] = NAN;  // a NaN never wins
        // A window of NaNs and -inf in channel 1: its argmax stays the corner.
        for (int dy = 0; dy < p; ++dy)
            for (int dx = 0; dx < p; ++dx) inp[((size_t)dy * w + dx) * c + 1] = (dx + dy) % 2 ? -INFINITY : NAN;
        std::vector<float> out(batch * out_len);
        std::vector<u32> argmax(batch * out_len);
        launch(blocks_for(batch * out_len), 256, false, [&] { maxpool2d_forward(out.data(), argmax.data(), inp.data(), batch, h, w, c, p); });
        std::vector<float> out1(out.size(), 7);
        std::vector<u32> argmax1(argmax.size(), 7);
        launch(3, 32, false, [&] { maxpool2d_forward_loop<u32>(out1.data(), argmax1.data(), inp.data(), batch, h, w, c, p); });
        bool ok = true;
        for (int b = 0; b < batch; ++b)
            for (int y = 0; y < oh; ++y)
                for (int x = 0; x < ow; ++x)
                    for (int ch = 0; ch < c; ++ch) {
                        float best = -INFINITY;
                        int bi = ((y * p) * w + x * p) * c + ch;
                        for (int dy = 0; dy < p; ++dy)
                            for (int dx = 0; dx < p; ++dx) {
                                int i = ((y * p + dy) * w + x * p + dx) * c + ch;
                                if (inp[b * in_len + i] > best) { best = inp[b * in_len + i]; bi = i; }
                            }
                        i64 o = b * out_len + (y * ow + x) * c + ch;
                        float want = best == -INFINITY ? inp[b * in_len + bi] : best;
                        ok &= argmax[o] == (u32)bi && (out[o] == want || (std::isnan(out[o]) && std::isnan(want)));
                    }
        ok &= same(out, out1) && same(argmax, argmax1);
        char what[128];
        std::snprintf(what, sizeof what, "maxpool2d_forward: max and argmax within the sample, as the one-channel loop (%dx%dx%d)", h, w, c);
        expect(ok, what);
        auto dout = random_floats(out.size(), -1, 1);
        dout[1] = -0.0f;  // becomes +0.0, as the CPU's zero-fill and add make it
        std::vector<float> dinp(inp.size(), NAN);  // overwritten, a ragged edge included
        launch(blocks_for(batch * in_len), 256, false, [&] { maxpool2d_backward(dinp.data(), argmax.data(), dout.data(), batch, h, w, c, p); });
        std::vector<double> want(inp.size(), 0.0);
        for (int b = 0; b < batch; ++b)
            for (i64 o = 0; o < out_len; ++o) want[b * in_len + argmax[b * out_len + o]] += dout[b * out_len + o];
        ok = close(dinp, want, 0);
        for (float v : dinp) ok &= !std::signbit(v) || v != 0.0f;
        std::snprintf(what, sizeof what, "maxpool2d_backward routes each gradient to its argmax (%dx%dx%d)", h, w, c);
        expect(ok, what);
        std::vector<float> gathered(inp.size(), NAN);
        launch(blocks_for(batch * in_len), 256, false, [&] { maxpool2d_backward_gather<u32>(gathered.data(), argmax.data(), dout.data(), batch, h, w, c, p); });
        std::snprintf(what, sizeof what, "maxpool2d_backward equals the per-input gather bit for bit (%dx%dx%d)", h, w, c);
        expect(same(dinp, gathered), what);
    }
}

static void check_dropout() {
    // Masks computed by mnist_core::layers::dropout::keep (Rust) for 64 consecutive indices
    // from `first` (a multiple of 64); the last case needs 64-bit indices.
    struct Case { u64 seed; float rate; i64 first; u32 threshold; u64 bits; };
    const Case cases[] = {
        {0x123456789abcdef0ull, 0.25f, 0ll, 1073741824u, 0xd6f85bbd5efd39faull},
        {0x7ull, 0.5f, 1000000ll, 2147483648u, 0x2c3268c94470e6a1ull},
        {0xffffffffffffffffull, 0.75f, 4294967232ll, 3221225472u, 0xa012100408854014ull},
    };
    for (const Case& cs : cases) {
        // The seed as an argument, then from device memory (a recorded step's), which wins.
        for (const u64* seed_at : {(const u64*)nullptr, &cs.seed}) {
            const i64 n = cs.first + 64;
            const float scale = 1.0f / (1.0f - cs.rate);
            std::vector<float> x(64, 1.0f);
            // Run only the block that covers [first, n): x is addressed as if it started at 0.
            float* base = x.data() - cs.first;
            gridDim = {(unsigned)((n + 63) / 64), 1, 1};
            blockDim = {64, 1, 1};
            for (unsigned t = 0; t < 64; ++t) {
                blockIdx = {(unsigned)(cs.first / 64), 0, 0};
                threadIdx = {t, 0, 0};
                dropout(base, n, seed_at ? ~cs.seed : cs.seed, seed_at, cs.threshold, scale);
            }
            bool ok = true;
            for (int i = 0; i < 64; ++i) ok &= x[i] == (((cs.bits >> i) & 1) ? scale : 0.0f);
            char what[112];
            std::snprintf(what, sizeof what, "dropout mask equals the CPU's (seed %llx%s, from %lld)", (unsigned long long)cs.seed, seed_at ? " from seed_at" : "", (long long)cs.first);
            expect(ok, what);
        }
    }
}

static void check_softmax() {
    const int batch = 300, classes = 10;  // two blocks; the second has idle rows
    auto logits = random_floats(batch * classes, -4, 4);
    logits[0] = 200;  // a clipped row (p = 1)
    std::vector<u32> labels(batch);
    for (auto& l : labels) l = (u32)(rng() % classes);
    labels[0] = 0;
    std::vector<float> probs(logits.size()), metrics = {0.5f, 1.0f};
    launch((batch + 255) / 256, 256, true, [&] { softmax_xent_forward(probs.data(), metrics.data(), logits.data(), labels.data(), batch, classes); });
    std::vector<double> want(probs.size());
    double loss = 0.5, correct = 1.0;
    for (int r = 0; r < batch; ++r) {
        const float* z = &logits[r * classes];
        int best = 0;
        for (int j = 1; j < classes; ++j) if (z[j] > z[best]) best = j;
        double sum = 0;
        for (int j = 0; j < classes; ++j) sum += std::exp((double)z[j] - z[best]);
        for (int j = 0; j < classes; ++j) want[r * classes + j] = std::exp((double)z[j] - z[best]) / sum;
        double py = std::fmin(std::fmax(want[r * classes + labels[r]], 1e-7), 1 - 1e-7);
        loss -= std::log(py);
        correct += best == (int)labels[r];
    }
    expect(close(probs, want, 1e-6), "softmax_xent_forward: probabilities");
    expect(std::fabs(metrics[0] - loss) < 1e-4 * loss && metrics[1] == correct, "softmax_xent_forward: adds loss sum and correct count to metrics");

    std::vector<float> dlogits(probs.size(), NAN);
    float scale = 1.0f / batch;
    launch(blocks_for(batch * classes), 256, false, [&] { softmax_xent_backward(dlogits.data(), probs.data(), labels.data(), batch, classes, scale, nullptr); });
    std::vector<double> dwant(probs.size());
    for (int r = 0; r < batch; ++r) {
        float py = probs[r * classes + labels[r]];
        bool clipped = !(py >= 1e-7f && py <= 1.0f - 1e-7f);
        for (int j = 0; j < classes; ++j)
            dwant[r * classes + j] = clipped ? 0.0 : ((double)probs[r * classes + j] - (j == (int)labels[r])) * scale;
    }
    expect(close(dlogits, dwant, 1e-6) && dlogits[0] == 0.0f, "softmax_xent_backward: (p - onehot) / B, zero for a clipped row");
    // With a loss scale (a power of two): exactly that multiple, the clipped row still zero.
    std::vector<float> scaled(probs.size(), NAN), want_scaled(probs.size());
    const float loss_scale[4] = {256, 0, 0, 0};
    launch(blocks_for(batch * classes), 256, false, [&] { softmax_xent_backward(scaled.data(), probs.data(), labels.data(), batch, classes, scale, loss_scale); });
    for (size_t i = 0; i < probs.size(); ++i) want_scaled[i] = dlogits[i] * 256.0f;
    expect(same(scaled, want_scaled) && scaled[0] == 0.0f, "softmax_xent_backward with loss scale 256 is exactly 256x the unscaled result");

    std::vector<u32> bad = {0, 12};
    std::vector<float> m2 = {0, 0}, p2(2 * classes);
    launch(1, 256, true, [&] { softmax_xent_forward(p2.data(), m2.data(), logits.data(), bad.data(), 2, classes); });
    expect(std::isnan(m2[0]), "a label >= classes makes the loss NaN");
}

static void check_adadelta() {
    const i64 n = 1000;
    auto params = random_floats(n, -1, 1), grads = random_floats(n, -1, 1);
    auto a = random_floats(n, 0, 0.1f), du = random_floats(n, 0, 0.01f);
    auto p0 = params, a0 = a, du0 = du;
    const float lr = 1.0f, rho = 0.95f, keep = 1.0f - rho, eps = 1e-7f;
    launch(blocks_for(n), 256, false, [&] { adadelta(params.data(), a.data(), du.data(), grads.data(), n, lr, rho, keep, eps, nullptr); });
    bool ok = true;
    for (i64 i = 0; i < n; ++i) {
        // optim.rs in the same f32 operation order: bit-equal.
        float g = grads[i];
        float ai = rho * a0[i] + keep * g * g;
        float u = g * std::sqrt(du0[i] + eps) / std::sqrt(ai + eps);
        ok &= a[i] == ai && params[i] == p0[i] - lr * u && du[i] == rho * du0[i] + keep * u * u;
    }
    expect(ok, "adadelta equals optim.rs's f32 arithmetic");

    // Loss scaling: an overflowed step writes nothing; otherwise the gradients are unscaled, and
    // for a power-of-two scale that is exact: the same step as unscaled gradients, bit for bit.
    auto p1 = params, a1 = a, du1 = du;
    std::vector<float> overflowed = {1024, 5, 1, 2}, state_before = overflowed;
    launch(blocks_for(n), 256, false, [&] { adadelta(params.data(), a.data(), du.data(), grads.data(), n, lr, rho, keep, eps, overflowed.data()); });
    expect(same(params, p1) && same(a, a1) && same(du, du1) && same(overflowed, state_before), "adadelta skips the step (writes nothing) when the overflow flag is set");
    std::vector<float> scaled_grads(n), clean = {1024, 5, 0, 2};
    for (i64 i = 0; i < n; ++i) scaled_grads[i] = grads[i] * 1024.0f;
    auto ps = p1, as = a1, dus = du1;
    launch(blocks_for(n), 256, false, [&] { adadelta(params.data(), a.data(), du.data(), grads.data(), n, lr, rho, keep, eps, nullptr); });
    launch(blocks_for(n), 256, false, [&] { adadelta(ps.data(), as.data(), dus.data(), scaled_grads.data(), n, lr, rho, keep, eps, clean.data()); });
    expect(same(params, ps) && same(a, as) && same(du, dus) && !same(params, p1), "adadelta with loss scale 1024 on 1024x gradients equals the unscaled step bit for bit");

    std::vector<float> x(1000, 3.0f);
    launch(blocks_for(1000), 256, false, [&] { fill_f32(x.data(), 999, 2.5f); });
    expect(x[0] == 2.5f && x[998] == 2.5f && x[999] == 3.0f, "fill_f32 fills exactly n values");
}

// f16 bits by g++'s _Float16 conversion (IEEE, round to nearest even): the f16 reference.
static u16 f16_reference(float x) {
    _Float16 h = (_Float16)x;
    u16 b;
    std::memcpy(&b, &h, 2);
    return b;
}

// bf16 bits without the kernel's carry trick: of the two bf16 values around |x| (f32's upper
// halves), the nearer by an exact comparison in double, ties to the even one; above the largest
// finite value the next one up is 2^128, which IEEE rounding uses to decide overflow to inf.
static u16 bf16_reference(float x) {
    u32 b = __float_as_uint(x), sign = (b >> 16) & 0x8000u, a = b & 0x7fffffffu;
    if (a > 0x7f800000u) return (u16)(sign | 0x7fc0u);
    u32 lo = a >> 16, hi = lo + 1;
    if ((a & 0xffffu) == 0) return (u16)(sign | lo);
    auto value = [](u32 h) { return h == 0x7f80u ? std::ldexp(1.0, 128) : (double)__uint_as_float(h << 16); };
    double v = __uint_as_float(a), below = v - value(lo), above = value(hi) - v;
    u32 r = below < above ? lo : above < below ? hi : ((lo & 1) ? hi : lo);
    return (u16)(sign | r);
}

// The kernel's half bits equal the reference's; for a NaN, any quiet NaN of the same sign.
static bool half_matches(u16 got, u16 want, float x, int bf16) {
    if (!std::isnan(x)) return got == want;
    u16 exp = bf16 ? 0x7f80 : 0x7c00, quiet = bf16 ? 0x40 : 0x200;
    return (got & exp) == exp && (got & quiet) && (got & 0x8000) == ((__float_as_uint(x) >> 16) & 0x8000);
}

// Special values, both formats' boundaries, exact ties between neighbours (and one f32 ulp
// either side) at many exponents, and random bit patterns; each with both signs.
static std::vector<float> half_test_values() {
    std::vector<float> v;
    for (u32 b : {0x00000000u, 0x7f800000u, 0x7fc00000u, 0x7f800001u, 0x7fbfffffu, 0x7fa00000u, 0x7fffffffu, 0x7fff8000u,
                  0x00000001u, 0x007fffffu, 0x00800000u, 0x7f7fffffu, 0x7f7f7fffu, 0x7f7f8000u, 0x7f7f8001u, 0x7f7e8000u, 0x7f7effffu})
        v.push_back(__uint_as_float(b));
    const float sub = std::ldexp(1.0f, -24);  // the smallest f16 subnormal
    for (float x : {65504.0f, 65505.0f, 65519.0f, std::nextafter(65520.0f, 0.0f), 65520.0f, std::nextafter(65520.0f, 1e30f), 65536.0f, 1e10f,
                    sub, sub / 2, std::nextafter(sub / 2, 0.0f), std::nextafter(sub / 2, 1.0f), sub / 4, 1.5f * sub, 2.5f * sub, 1023 * sub,
                    1023.5f * sub, std::ldexp(1.0f, -14), std::nextafter(std::ldexp(1.0f, -14), 0.0f), 1.0f, 2048.0f, 2049.0f, 2051.0f})
        v.push_back(x);
    auto with_neighbours = [&](float x) {
        v.push_back(x);
        v.push_back(std::nextafter(x, 0.0f));
        v.push_back(std::nextafter(x, 1e38f));
    };
    for (int k : {0, 1, 2, 3, 510, 511, 1022, 1023}) {
        for (int e = -14; e <= 15; ++e) with_neighbours(std::ldexp(1.0f + (2 * k + 1) / 2048.0f, e));  // f16 normal ties
        with_neighbours((2 * k + 1) * (sub / 2));  // f16 subnormal ties
    }
    for (int k : {0, 1, 2, 63, 126, 127})
        for (int e : {-149, -140, -127, -126, -100, -20, 0, 1, 15, 16, 60, 126, 127}) {
            with_neighbours(std::ldexp(1.0f + (2 * k + 1) / 256.0f, e));                 // bf16 ties (e = -149: underflows to 0)
            with_neighbours(__uint_as_float(((u32)k << 16) | 0x8000u));              // bf16 ties among f32 subnormals
        }
    for (int i = 0; i < 100000; ++i) v.push_back(__uint_as_float((u32)rng()));
    size_t n = v.size();
    for (size_t i = 0; i < n; ++i) v.push_back(-v[i]);
    return v;
}

static void check_half_conversions() {
    auto values = half_test_values();
    for (int bf16 : {0, 1}) {
        auto reference = bf16 ? bf16_reference : f16_reference;
        bool ok = true;
        for (float x : values) {
            u16 got = f32_to_half_bits(x, bf16), want = reference(x);
            if (!half_matches(got, want, x, bf16) && ok) {
                std::printf("     first difference at %a (bits %08x): %04x vs %04x\n", x, __float_as_uint(x), got, want);
                ok = false;
            }
        }
        // Every 201st f32 bit pattern (odd stride: all residues, exponents and signs).
        u64 swept = 0;
        for (u64 b = 0; b < (1ull << 32); b += 201, ++swept) {
            float x = __uint_as_float((u32)b);
            u16 got = f32_to_half_bits(x, bf16), want = reference(x);
            if (!half_matches(got, want, x, bf16) && ok) {
                std::printf("     first difference at %a (bits %08x): %04x vs %04x\n", x, (u32)b, got, want);
                ok = false;
            }
        }
        char what[160];
        std::snprintf(what, sizeof what, "f32_to_%s_bits equals %s on %zu chosen values and %llu swept bit patterns", bf16 ? "bf16" : "f16",
                      bf16 ? "the nearest-even reference" : "_Float16", values.size(), (unsigned long long)swept);
        expect(ok, what);
    }
    expect(f32_to_f16_bits(65504.0f) == 0x7bff && f32_to_f16_bits(std::nextafter(65520.0f, 0.0f)) == 0x7bff && f32_to_f16_bits(65520.0f) == 0x7c00 &&
               f32_to_f16_bits(-65520.0f) == 0xfc00 && f32_to_f16_bits(std::ldexp(1.0f, -24)) == 0x0001 && f32_to_f16_bits(std::ldexp(1.0f, -25)) == 0x0000 &&
               f32_to_f16_bits(-std::ldexp(1.0f, -25)) == 0x8000 && f32_to_f16_bits(std::ldexp(1.5f, -24)) == 0x0002 && f32_to_f16_bits(std::ldexp(1.0f, -14)) == 0x0400 &&
               f32_to_f16_bits(std::ldexp(2047.0f, -25)) == 0x0400 && f32_to_f16_bits(__uint_as_float(0xff800001u)) == 0xfe00,
           "f32_to_f16_bits: 65504, 65520 to inf, 2^-24, 2^-25 to zero, ties to even, 2^-14, NaN (spot values)");
    expect(f32_to_bf16_bits(__uint_as_float(0x7f7fffffu)) == 0x7f80 && f32_to_bf16_bits(__uint_as_float(0x3f808000u)) == 0x3f80 &&
               f32_to_bf16_bits(__uint_as_float(0x3f818000u)) == 0x3f82 && f32_to_bf16_bits(__uint_as_float(0x7fffffffu)) == 0x7fff &&
               f32_to_bf16_bits(__uint_as_float(0xff800001u)) == 0xffc0 && f32_to_bf16_bits(__uint_as_float(0x7f7f8000u)) == 0x7f80,
           "f32_to_bf16_bits: overflow to inf, ties to even, NaN stays NaN (spot values)");
}

// Values over a wide range of magnitudes: f16 subnormals, normals and overflows.
static std::vector<float> wide_floats(size_t n) {
    auto v = random_floats(n, -1, 1);
    for (auto& x : v) x = std::ldexp(x, (int)(rng() % 50) - 30);
    return v;
}

static void check_to_half() {
    const i64 n = 3 * 256 * 2 + 37;  // blocks_for caps the grid at 3 blocks: threads wrap twice
    auto values = half_test_values();
    std::vector<float> src(values.begin(), values.begin() + n / 2);
    auto wide = wide_floats(n - src.size());
    src.insert(src.end(), wide.begin(), wide.end());
    for (int bf16 : {0, 1}) {
        std::vector<u16> dst(n + 1, 0xdead);
        launch(blocks_for(n), 256, false, [&] { to_half(dst.data(), src.data(), n, bf16); });
        bool ok = dst[n] == 0xdead;
        for (i64 i = 0; i < n; ++i) ok &= dst[i] == f32_to_half_bits(src[i], bf16);
        expect(ok, bf16 ? "to_half (bf16) converts exactly n values" : "to_half (f16) converts exactly n values");
    }
}

static void check_im2col_half() {
    struct Shape { int samples, h, w, c, k; };
    for (Shape sh : {Shape{2, 7, 6, 3, 3}, Shape{2, 6, 5, 4, 3}, Shape{3, 5, 7, 8, 2}}) {
        const size_t cols = (size_t)sh.samples * (sh.h - sh.k + 1) * (sh.w - sh.k + 1) * sh.k * sh.k * sh.c;
        auto inp = wide_floats((size_t)sh.samples * sh.h * sh.w * sh.c);
        inp[1] = INFINITY;
        inp[2] = NAN;
        std::vector<float> col(cols, NAN);
        launch(blocks_for((i64)cols), 256, false, [&] { im2col(col.data(), inp.data(), sh.samples, sh.h, sh.w, sh.c, sh.k); });
        for (int bf16 : {0, 1}) {
            std::vector<u16> colh(cols, 0xdead);
            launch(blocks_for((i64)cols), 256, false, [&] { im2col_half(colh.data(), inp.data(), sh.samples, sh.h, sh.w, sh.c, sh.k, bf16); });
            bool ok = true;
            for (size_t i = 0; i < cols; ++i) ok &= colh[i] == f32_to_half_bits(col[i], bf16);
            char what[128];
            std::snprintf(what, sizeof what, "im2col_half (%s) is im2col then to_half (%d samples, %dx%d, C=%d, K=%d)", bf16 ? "bf16" : "f16",
                          sh.samples, sh.h, sh.w, sh.c, sh.k);
            expect(ok, what);
        }
    }
}

static void check_loss_scaling() {
    // check_finite: a clean buffer (huge, tiny and signed-zero values included) sets nothing and
    // clears nothing; one inf or NaN anywhere in [0, n) sets the flag; past n it is not read.
    const i64 n = 3 * 256 * 2 + 37;
    auto x = wide_floats(n + 1);
    x[3] = __uint_as_float(0x7f7fffffu);
    x[4] = -__uint_as_float(0x7f7fffffu);
    x[5] = __uint_as_float(1);
    x[6] = -0.0f;
    x[n] = NAN;
    const std::vector<float> fresh = {8, 3, 0, 2};
    std::vector<float> state = fresh;
    launch(blocks_for(n), 256, false, [&] { check_finite(state.data(), x.data(), n); });
    bool clean = same(state, fresh);
    state[2] = 1.0f;
    launch(blocks_for(n), 256, false, [&] { check_finite(state.data(), x.data(), n); });
    expect(clean && state[2] == 1.0f, "check_finite: finite values leave the flag alone (set or not), index n is not read");
    bool ok = true;
    for (i64 at : {(i64)0, (i64)300, (i64)800, n - 1})  // 800: past the first grid stride (768)
        for (u32 bad : {0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00000u, 0x7f800001u}) {
            auto y = x;
            y[at] = __uint_as_float(bad);
            state = fresh;
            launch(blocks_for(n), 256, false, [&] { check_finite(state.data(), y.data(), n); });
            ok &= state[0] == 8 && state[1] == 3 && state[2] == 1.0f && state[3] == 2;
        }
    expect(ok, "check_finite: one inf or NaN (first, middle, past a grid-stride wrap, last) sets state[2]");

    // update_loss_scale: state = [scale, good_steps, overflow, skipped_steps], growth_interval 3.
    struct Step { bool overflow; float scale, good, skipped; };
    const Step steps[] = {
        {false, 65536, 1, 0}, {false, 65536, 2, 0}, {false, 131072, 0, 0},  // grows after exactly 3 clean steps
        {false, 131072, 1, 0}, {true, 65536, 0, 1},                          // an overflow halves and restarts the count
        {false, 65536, 1, 1}, {false, 65536, 2, 1}, {true, 32768, 0, 2}, {false, 32768, 1, 2},
    };
    state = {65536, 0, 0, 0};
    ok = true;
    int at = 0;
    auto step = [&](bool overflow, float scale, float good, float skipped) {
        if (overflow) state[2] = 1.0f;
        launch(1, 1, false, [&] { update_loss_scale(state.data(), 3); });
        bool right = state[0] == scale && state[1] == good && state[2] == 0.0f && state[3] == skipped;
        if (!right && ok) std::printf("     step %d: got [%g, %g, %g, %g]\n", at, state[0], state[1], state[2], state[3]);
        ok &= right;
        ++at;
    };
    for (const Step& st : steps) step(st.overflow, st.scale, st.good, st.skipped);
    state = {2, 1, 0, 7};
    step(true, 1, 0, 8);  // halves to the floor
    step(true, 1, 0, 9);  // and stays there
    state = {8388608, 0, 0, 0};  // 2^23
    for (int i = 0; i < 3; ++i) step(false, i < 2 ? 8388608.0f : 16777216.0f, i < 2 ? i + 1.0f : 0.0f, 0);
    for (int i = 0; i < 3; ++i) step(false, 16777216.0f, i < 2 ? i + 1.0f : 0.0f, 0);  // capped at 2^24
    expect(ok, "update_loss_scale: halve on overflow (floor 1), double after exactly growth_interval clean steps (cap 2^24), count skips, clear the flag");
    state = {4, 0, 0, 0};
    launch(2, 4, false, [&] { update_loss_scale(state.data(), 100); });
    expect(state[0] == 4 && state[1] == 1 && state[3] == 0, "update_loss_scale: only thread 0 of block 0 acts");
}

// The i64 fallbacks (taken only past 2^31 values, too large to emulate) against the u32 paths
// the checks above exercise: the same index arithmetic, so bit-equal results.
static void check_wide_paths() {
    const int samples = 3, h = 7, w = 6, c = 2, k = 3, oc = 4, p = 2;
    const int oh = h - k + 1, ow = w - k + 1;
    auto inp = random_floats((size_t)samples * h * w * c, -1, 1);
    auto kern = random_floats((size_t)k * k * c * oc, -0.5, 0.5);
    auto bias = random_floats(oc, -0.1f, 0.1f);
    std::vector<float> narrow((size_t)samples * oh * ow * oc, NAN), wide = narrow;
    launch(blocks_for((i64)narrow.size()), 256, false, [&] { conv2d_direct(narrow.data(), inp.data(), kern.data(), bias.data(), samples, h, w, c, k, oc, 1); });
    launch(blocks_for((i64)wide.size()), 256, false, [&] { conv2d_direct_loop<i64>(wide.data(), inp.data(), kern.data(), bias.data(), samples, h, w, c, k, oc, 1); });
    expect(same(narrow, wide), "conv2d_direct: i64 fallback equals the u32 path");

    // conv2d_dkernel_partial: the i64 fallback (one row per round) sums the same rows in the
    // same order as the u32 path (four rows per round), so the partial sums are bit-equal.
    {
        auto dout = random_floats((size_t)samples * oh * ow * oc, -1, 1);
        auto relu_out = random_floats(dout.size(), -1, 1);
        const int pairs = (k * k * c + 1) * oc, lanes = 2, threads = lanes * oc, rows_per_block = 13;
        const int blocks = (samples * oh * ow + rows_per_block - 1) / rows_per_block;
        std::vector<float> pn((size_t)pairs * blocks, NAN), pw = pn, dn = dout, dw = dout;
        launch(blocks, threads, true, [&] {
            conv2d_dkernel_partial(pn.data(), dn.data(), inp.data(), relu_out.data(), samples, h, w, c, k, oc, rows_per_block, lanes, 1);
        });
        static float lane_sums[DKERNEL_MAX_BLOCK * (DKERNEL_MAX_PATCH + 1)];
        launch(blocks, threads, true, [&] {
            dkernel_partial_sums<i64, 1>(pw.data(), dw.data(), inp.data(), relu_out.data(), (i64)samples, h, w, c, k, oc, rows_per_block, lanes, 1, lane_sums);
        });
        expect(same(pn, pw) && same(dn, dw), "conv2d_dkernel_partial: i64 fallback equals the u32 path (ReLU)");
    }

    narrow = random_floats(narrow.size(), -1, 1);
    wide = narrow;
    launch(blocks_for((i64)narrow.size()), 256, false, [&] { bias_act(narrow.data(), bias.data(), (i64)narrow.size(), oc, 1); });
    launch(blocks_for((i64)wide.size()), 256, false, [&] { bias_act_loop<i64>(wide.data(), bias.data(), (i64)wide.size(), oc, 1); });
    expect(same(narrow, wide), "bias_act: i64 fallback equals the u32 path");

    const i64 pooled = (i64)samples * (h / p) * (w / p) * c;
    std::vector<float> pn(pooled, NAN), pw(pooled, NAN);
    std::vector<u32> an(pooled, 7), aw(pooled, 7);
    launch(blocks_for(pooled), 256, false, [&] { maxpool2d_forward(pn.data(), an.data(), inp.data(), samples, h, w, c, p); });
    launch(blocks_for(pooled), 256, false, [&] { maxpool2d_forward_loop<i64>(pw.data(), aw.data(), inp.data(), samples, h, w, c, p); });
    expect(same(pn, pw) && same(an, aw), "maxpool2d_forward: i64 fallback equals the u32 path");

    const i64 n = 37, sample = 11, start = 5, count = 20;
    std::vector<u8> images(n * sample), labels(n);
    for (auto& b : images) b = (u8)(rng() & 255);
    for (auto& l : labels) l = (u8)(rng() % 10);
    std::vector<u32> order(n);
    for (i64 i = 0; i < n; ++i) order[i] = (u32)((i * 17 + 3) % n);
    std::vector<float> xn(count * sample, NAN), xw = xn;
    std::vector<u32> ln(count, 99), lw(count, 99);
    launch(blocks_for(count * sample), 256, false, [&] { load_batch(xn.data(), ln.data(), images.data(), labels.data(), order.data(), start, nullptr, count, sample); });
    launch(blocks_for(count * sample), 256, false, [&] { load_batch_loop<i64>(xw.data(), lw.data(), images.data(), labels.data(), order.data(), start, count, sample); });
    expect(same(xn, xw) && same(ln, lw), "load_batch: i64 fallback equals the u32 path");

    const int batch = 5, classes = 10;
    auto probs = random_floats(batch * classes, 0, 1);
    std::vector<u32> lab = {0, 3, 9, 12, 4};  // 12: a label >= classes (NaN row)
    std::vector<float> dn(batch * classes, 1.0f), dw = dn;
    const float loss_scale[4] = {64, 0, 0, 0};
    for (const float* ls : {(const float*)nullptr, loss_scale}) {
        launch(blocks_for(batch * classes), 256, false, [&] { softmax_xent_backward(dn.data(), probs.data(), lab.data(), batch, classes, 0.2f, ls); });
        launch(blocks_for(batch * classes), 256, false, [&] { softmax_xent_backward_loop<i64>(dw.data(), probs.data(), lab.data(), (i64)batch * classes, classes, 0.2f, ls); });
        expect(same(dn, dw), ls ? "softmax_xent_backward (loss scale): i64 fallback equals the u32 path" : "softmax_xent_backward: i64 fallback equals the u32 path");
    }

    const i64 m = 1000;
    auto src = random_floats(m, -70000, 70000);
    for (int bf16 : {0, 1}) {
        std::vector<u16> hn(m, 0), hw(m, 1);
        launch(blocks_for(m), 256, false, [&] { to_half(hn.data(), src.data(), m, bf16); });
        launch(blocks_for(m), 256, false, [&] { to_half_loop<i64>(hw.data(), src.data(), m, bf16); });
        expect(same(hn, hw), bf16 ? "to_half (bf16): i64 fallback equals the u32 path" : "to_half (f16): i64 fallback equals the u32 path");
        std::vector<u16> cn((size_t)samples * oh * ow * k * k * c, 0), cw(cn.size(), 1);
        launch(blocks_for((i64)cn.size()), 256, false, [&] { im2col_half(cn.data(), inp.data(), samples, h, w, c, k, bf16); });
        launch(blocks_for((i64)cw.size()), 256, false, [&] { im2col_copy<i64>(cw.data(), inp.data(), (i64)samples, h, w, c, k, HalfBits{bf16}); });
        expect(same(cn, cw), bf16 ? "im2col_half (bf16): i64 fallback equals the u32 path" : "im2col_half (f16): i64 fallback equals the u32 path");
    }
}

// sgemm_rows128 and sgemm_rows64 against C = act(alpha A op(B) + beta C + bias) summed in the
// kernel's order (one fmaf per k, k ascending, then alpha, beta, bias and ReLU), so bit for bit:
// rows past a whole tile, columns past a whole tile (and in a tile's left half only: n = 288,
// 36, 8), padded leading dimensions, both B layouts, beta 0 and not, bias and ReLU or not.
static void check_sgemm() {
    std::mt19937 gen(7);
    std::uniform_real_distribution<float> uni(-1.f, 1.f);
    struct Case { int m, n, k, trans_b; float alpha, beta; bool bias; int relu; };
    const Case cases[] = {
        {1, 4, 16, 0, 1.f, 0.f, false, 0},    {130, 64, 32, 0, 1.f, 0.f, true, 1}, {200, 68, 48, 1, 1.f, 0.f, false, 0},
        {64, 132, 16, 1, 0.5f, 1.f, true, 0}, {257, 8, 64, 0, 1.f, 1.f, false, 1}, {96, 288, 16, 1, 1.f, 0.f, false, 0},
        {70, 36, 32, 0, 1.f, 0.f, true, 1},
    };
    for (const Case& c : cases) {
        for (int rows : {128, 64}) {
            int lda = c.k + 4, ldb = (c.trans_b ? c.k : c.n) + 8, ldc = c.n + 4;
            std::vector<float> a((size_t)c.m * lda), b((size_t)(c.trans_b ? c.n : c.k) * ldb), c0((size_t)c.m * ldc), bias(c.n);
            for (float& v : a) v = uni(gen);
            for (float& v : b) v = uni(gen);
            for (float& v : c0) v = uni(gen);
            for (float& v : bias) v = uni(gen);
            const float* bias_at = c.bias ? bias.data() : nullptr;
            std::vector<float> want = c0, got = c0;
            for (int i = 0; i < c.m; ++i) {
                for (int j = 0; j < c.n; ++j) {
                    float acc = 0.f;
                    for (int p = 0; p < c.k; ++p) {
                        float bv = c.trans_b ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j];
                        acc = std::fma(a[(size_t)i * lda + p], bv, acc);
                    }
                    float v = c.alpha * acc;
                    if (c.beta != 0.f) v += c.beta * c0[(size_t)i * ldc + j];
                    if (c.bias) v += bias[j];
                    want[(size_t)i * ldc + j] = c.relu ? std::fmax(v, 0.f) : v;
                }
            }
            unsigned tiles = (unsigned)(((c.m + rows - 1) / rows) * ((c.n + 63) / 64));
            launch(tiles, SGEMM_THREADS, true, [&] {
                if (rows == 128) sgemm_rows128(c.m, c.n, c.k, a.data(), lda, b.data(), ldb, c.trans_b, got.data(), ldc, c.alpha, c.beta, bias_at, c.relu);
                else sgemm_rows64(c.m, c.n, c.k, a.data(), lda, b.data(), ldb, c.trans_b, got.data(), ldc, c.alpha, c.beta, bias_at, c.relu);
            });
            char what[160];
            std::snprintf(what, sizeof what, "sgemm_rows%d m=%d n=%d k=%d trans_b=%d beta=%g bias=%d relu=%d: bit for bit, padding untouched",
                          rows, c.m, c.n, c.k, c.trans_b, c.beta, (int)c.bias, c.relu);
            expect(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) == 0, what);
        }
    }
}

// conv_sgemm_rows128/64 against im2col followed by sgemm_rows128/64 (the same values summed in
// the same order, so bit for bit), and the im2col matrix it leaves against im2col's: channels
// of 4 to 32, kernels of 1 to 4 (a k step spanning several kernel positions when C < 16), rows
// ragged against both tile heights, bias and ReLU.
static void check_conv_sgemm() {
    struct Shape { int samples, h, w, c, k, oc; };
    const Shape shapes[] = {{2, 9, 7, 4, 2, 8}, {3, 6, 6, 16, 3, 16}, {1, 12, 11, 32, 1, 64}, {2, 7, 8, 4, 4, 12}, {2, 10, 9, 8, 2, 68}};
    for (const Shape& sh : shapes) {
        const int oh = sh.h - sh.k + 1, ow = sh.w - sh.k + 1, patch = sh.k * sh.k * sh.c, m = sh.samples * oh * ow;
        auto image = random_floats((size_t)sh.samples * sh.h * sh.w * sh.c, -1, 1);
        auto kern = random_floats((size_t)patch * sh.oc, -0.5, 0.5);
        auto bias = random_floats(sh.oc, -0.1f, 0.1f);
        std::vector<float> col((size_t)m * patch, NAN);
        launch(blocks_for((i64)col.size()), 256, false, [&] { im2col(col.data(), image.data(), sh.samples, sh.h, sh.w, sh.c, sh.k); });
        for (int rows : {128, 64}) {
            const unsigned tiles = (unsigned)(((m + rows - 1) / rows) * ((sh.oc + 63) / 64));
            std::vector<float> want((size_t)m * sh.oc, NAN), got = want, left((size_t)m * patch, NAN);
            launch(tiles, SGEMM_THREADS, true, [&] {
                if (rows == 128) sgemm_rows128(m, sh.oc, patch, col.data(), patch, kern.data(), sh.oc, 0, want.data(), sh.oc, 1.f, 0.f, bias.data(), 1);
                else sgemm_rows64(m, sh.oc, patch, col.data(), patch, kern.data(), sh.oc, 0, want.data(), sh.oc, 1.f, 0.f, bias.data(), 1);
            });
            launch(tiles, SGEMM_THREADS, true, [&] {
                if (rows == 128)
                    conv_sgemm_rows128(m, sh.oc, patch, image.data(), sh.h, sh.w, sh.c, sh.k, left.data(), kern.data(), sh.oc, got.data(), sh.oc, bias.data(), 1);
                else
                    conv_sgemm_rows64(m, sh.oc, patch, image.data(), sh.h, sh.w, sh.c, sh.k, left.data(), kern.data(), sh.oc, got.data(), sh.oc, bias.data(), 1);
            });
            char what[160];
            std::snprintf(what, sizeof what, "conv_sgemm_rows%d (C=%d, K=%d, OC=%d) equals im2col + sgemm_rows%d bit for bit", rows, sh.c, sh.k, sh.oc, rows);
            expect(same(got, want), what);
            std::snprintf(what, sizeof what, "conv_sgemm_rows%d (C=%d, K=%d) leaves im2col's matrix", rows, sh.c, sh.k);
            expect(same(left, col), what);
        }
    }
}

int main() {
    check_load_batch();
    check_conv();
    check_im2col_shapes();
    check_maxpool();
    check_dropout();
    check_softmax();
    check_adadelta();
    check_half_conversions();
    check_to_half();
    check_im2col_half();
    check_loss_scaling();
    check_wide_paths();
    check_sgemm();
    check_conv_sgemm();
    std::printf("%d passed, %d failed\n", passed, failures);
    return failures ? 1 : 0;
}
