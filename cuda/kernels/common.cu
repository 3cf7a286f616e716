// Shared definitions for every kernel file: src/kernels.rs joins the files into one translation
// unit with this one first. No #include: NVRTC needs no header path, on CI or on a GPU host; so
// the f32 to f16/bf16 conversions are written here in integer arithmetic, not cuda_fp16.h's.
// Leaves out: anything layer-specific (one file per layer, like core/src/layers/).

typedef long long i64;
typedef unsigned long long u64;
typedef unsigned int u32;
typedef unsigned short u16;  // f16 and bf16 values, as their bits
typedef unsigned char u8;

// A grid-stride loop over [0, n): correct for any grid size, so the host may cap the grid.
// Lengths are 64-bit: a (B, 24, 24, 64) activation passes 2^31 values at large batches.
#define FOR_EACH(i, n) for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (i64)(n); i += (i64)gridDim.x * blockDim.x)

// Without headers there is no INFINITY or NAN macro; these are the IEEE bit patterns.
#define NEG_INF __int_as_float(0xff800000)
#define QUIET_NAN __int_as_float(0x7fc00000)

// Element i of an NHWC tensor with `sample_len` values per sample and `row_len` (W * C) per
// row: its sample s, its offset r within the sample, and r's (y, x, c). With index type I (u32
// when every index fits: 64-bit divisions are subroutines of ~70 instructions).
template <typename I>
struct NhwcIndex {
    I s;
    int r, y, x, c;
};
template <typename I>
__device__ __forceinline__ NhwcIndex<I> nhwc_index(I i, I sample_len, int row_len, int channels) {
    NhwcIndex<I> at;
    at.s = i / sample_len;
    at.r = (int)(i - at.s * sample_len);
    at.y = at.r / row_len;
    int rem = at.r - at.y * row_len;
    at.x = rem / channels;
    at.c = rem - at.x * channels;
    return at;
}

// x: (n) = value.
extern "C" __global__ void fill_f32(float* x, i64 n, float value) {
    FOR_EACH(i, n) x[i] = value;
}

// f32 to IEEE binary16 bits, rounded to nearest even, with integer operations only (so the g++
// emulation runs this very code). Values that round above 65504 become +-inf, values at or
// below half the smallest subnormal (2^-25: a tie, and zero is even) signed zeros; a NaN stays
// a quiet NaN with its sign.
__device__ __forceinline__ u16 f32_to_f16_bits(float x) {
    u32 b = __float_as_uint(x);
    u32 sign = (b >> 16) & 0x8000u;
    u32 a = b & 0x7fffffffu;
    if (a > 0x7f800000u) return (u16)(sign | 0x7e00u);   // NaN
    if (a >= 0x477ff000u) return (u16)(sign | 0x7c00u);  // >= 65520, 65504 + half an ulp (ties to even): inf
    if (a >= 0x38800000u) {
        // Normal (>= 2^-14): rebias the exponent (127 - 15) and round off 13 significand bits; a
        // carry out of the significand correctly bumps the exponent.
        a -= 0x38000000u;
        return (u16)(sign | ((a + 0xfffu + ((a >> 13) & 1u)) >> 13));
    }
    if (a <= 0x33000000u) return (u16)sign;  // <= 2^-25 (f32 subnormals included): zero
    // Subnormal: the count of 2^-24 units, the 24-bit significand shifted right by 14 to 24.
    u32 mant = (a & 0x7fffffu) | 0x800000u;
    int shift = 126 - (int)(a >> 23);
    u32 m = mant >> shift, rest = mant & ((1u << shift) - 1u), half = 1u << (shift - 1);
    if (rest > half || (rest == half && (m & 1u))) ++m;  // m may reach 1024: 2^-14's bits, as it should
    return (u16)(sign | m);
}

// f32 to bfloat16 bits (f32's upper half), rounded to nearest even; a carry out of the largest
// finite values gives +-inf, as it should. NaN goes first, so the carry cannot make it inf.
__device__ __forceinline__ u16 f32_to_bf16_bits(float x) {
    u32 b = __float_as_uint(x);
    if ((b & 0x7fffffffu) > 0x7f800000u) return (u16)((b >> 16) | 0x40u);  // quiet NaN, sign kept
    return (u16)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}

// The format a kernel's bf16 flag picks: bfloat16 when nonzero, else IEEE f16.
__device__ __forceinline__ u16 f32_to_half_bits(float x, int bf16) {
    return bf16 ? f32_to_bf16_bits(x) : f32_to_f16_bits(x);
}
