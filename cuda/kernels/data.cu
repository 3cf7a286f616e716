// Batches from the dataset resident on the device: gather by the epoch's order and scale to
// [0, 1], as CpuBackend::load_batch does. Leaves out: shuffling (the host uploads the order).

// load_batch's loop with index type I (u32 when count * sample_len fits: an i64 division per
// value otherwise). The dataset index src * sample_len + j stays 64-bit (a multiply, no division).
template <typename I>
__device__ __forceinline__ void load_batch_loop(float* x, u32* labels, const u8* images, const u8* all_labels, const u32* order,
                                                i64 start, I count, I sample_len) {
    I n = count * sample_len;
    I stride = (I)gridDim.x * blockDim.x;
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        I s = i / sample_len;
        I j = i - s * sample_len;
        u64 src = order[start + (i64)s];
        // The same f32 product as the CPU: byte times the rounded constant 1/255.
        x[i] = (float)images[src * (u64)sample_len + (u64)j] * (1.0f / 255.0f);
        if (j == 0) labels[s] = all_labels[src];
    }
}

// x: (count, sample_len) = images[order[start + s]] / 255; labels: (count) likewise.
// images: (N, sample_len) u8; all_labels: (N) u8; order: (N) u32, checked < N by the host.
// start_at: null, or where a recorded step (CUDA graph) keeps its start, which then wins.
extern "C" __global__ void load_batch(float* x, u32* labels, const u8* images, const u8* all_labels, const u32* order,
                                      i64 start, const u64* start_at, i64 count, i64 sample_len) {
    if (start_at) start = (i64)*start_at;
    if (count * sample_len <= 0x7fffffffLL) load_batch_loop<u32>(x, labels, images, all_labels, order, start, (u32)count, (u32)sample_len);
    else load_batch_loop<i64>(x, labels, images, all_labels, order, start, count, sample_len);
}
