// Shared definitions for every kernel file: src/kernels.rs joins the files into one translation
// unit with this one first. No #include: NVRTC needs no header path, on CI or on a GPU host.
// Leaves out: anything layer-specific (one file per layer, like core/src/layers/).

typedef long long i64;
typedef unsigned long long u64;
typedef unsigned int u32;
typedef unsigned char u8;

// A grid-stride loop over [0, n): correct for any grid size, so the host may cap the grid.
// Lengths are 64-bit: a (B, 24, 24, 64) activation passes 2^31 values at large batches.
#define FOR_EACH(i, n) for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (i64)(n); i += (i64)gridDim.x * blockDim.x)

// Without headers there is no INFINITY or NAN macro; these are the IEEE bit patterns.
#define NEG_INF __int_as_float(0xff800000)
#define QUIET_NAN __int_as_float(0x7fc00000)

// x: (n) = value.
extern "C" __global__ void fill_f32(float* x, i64 n, float value) {
    FOR_EACH(i, n) x[i] = value;
}
