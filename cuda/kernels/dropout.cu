// Inverted dropout with the CPU's mask (layers/dropout.rs): element i survives when the top 32
// bits of mix64(seed + (i + 1) * golden) are >= threshold, in exact 64-bit integer math, so CPU
// and GPU masks are identical. Leaves out: storing masks (the backward recomputes them).

// data.rs's mix64: the splitmix64 finaliser. Unsigned overflow wraps in C++, as wrapping_* does.
__device__ __forceinline__ u64 mix64(u64 z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// x: (n) *= keep(seed, i) * scale, in place; scale = 1 / (1 - rate), computed by the host in
// f32 as the CPU does. The backward pass is the same launch on the gradient. seed_at: null, or
// where a recorded step (CUDA graph) keeps this layer's seed, which then wins.
extern "C" __global__ void dropout(float* x, i64 n, u64 seed, const u64* seed_at, u32 threshold, float scale) {
    if (seed_at) seed = *seed_at;
    FOR_EACH(i, n) {
        u64 hash = mix64(seed + ((u64)i + 1ull) * 0x9e3779b97f4a7c15ull);
        x[i] = (u32)(hash >> 32) >= threshold ? x[i] * scale : 0.0f;
    }
}
