// Batches from the dataset resident on the device: gather by the epoch's order and scale to
// [0, 1], as CpuBackend::load_batch does. Leaves out: shuffling (the host uploads the order).

// x: (count, sample_len) = images[order[start + s]] / 255; labels: (count) likewise.
// images: (N, sample_len) u8; all_labels: (N) u8; order: (N) u32, checked < N by the host.
// start_at: null, or where a recorded step (CUDA graph) keeps its start, which then wins.
extern "C" __global__ void load_batch(float* x, u32* labels, const u8* images, const u8* all_labels, const u32* order,
                                      i64 start, const u64* start_at, i64 count, i64 sample_len) {
    if (start_at) start = (i64)*start_at;
    FOR_EACH(i, count * sample_len) {
        i64 s = i / sample_len;
        i64 j = i - s * sample_len;
        u64 src = order[start + s];
        // The same f32 product as the CPU: byte times the rounded constant 1/255.
        x[i] = (float)images[src * sample_len + j] * (1.0f / 255.0f);
        if (j == 0) labels[s] = all_labels[src];
    }
}
