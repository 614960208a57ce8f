// elementwise.cu: element-wise maps and the full sum. CPU twins: src/backend/cpu/elementwise.rs.
// common.cuh is prepended by the loader. All maps are 1-d grid-stride loops over `len`.

// y = max(x, 0) (NaN -> 0, like Rust's f32::max).
extern "C" __global__ void relu_fwd_f32(const float* __restrict__ x, float* __restrict__ y,
                                        i64 len) {
    GRID_STRIDE(i, len) {
        const float v = x[i];
        y[i] = v > 0.0f ? v : 0.0f;
    }
}

// dx = y > 0 ? dy : 0 (y is the forward output).
extern "C" __global__ void relu_bwd_f32(const float* __restrict__ dy, const float* __restrict__ y,
                                        float* __restrict__ dx, i64 len) {
    GRID_STRIDE(i, len) { dx[i] = y[i] > 0.0f ? dy[i] : 0.0f; }
}

// c = a + b.
extern "C" __global__ void add_f32(const float* __restrict__ a, const float* __restrict__ b,
                                   float* __restrict__ c, i64 len) {
    GRID_STRIDE(i, len) { c[i] = a[i] + b[i]; }
}

// c = a * b.
extern "C" __global__ void mul_f32(const float* __restrict__ a, const float* __restrict__ b,
                                   float* __restrict__ c, i64 len) {
    GRID_STRIDE(i, len) { c[i] = a[i] * b[i]; }
}

// y = a*x + b*y, in place.
extern "C" __global__ void axpby_f32(float a, const float* __restrict__ x, float b,
                                     float* __restrict__ y, i64 len) {
    GRID_STRIDE(i, len) { y[i] = a * x[i] + b * y[i]; }
}

// out[blockIdx.x] = scale * (sum of x over this block's contiguous segment). Block z of G
// (G = gridDim.x) owns [z*len/G, (z+1)*len/G); each thread sums a strided subset of it, then a
// block tree reduction: deterministic for a given (len, G, blockDim). The host reduces a large
// x with G blocks into G partial sums, then launches again with one block over the partials
// (the CPU twin returns the value; here the single-block launch writes out[0]).
extern "C" __global__ void sum_f32(const float* __restrict__ x, i64 len, float scale,
                                   float* __restrict__ out) {
    __shared__ float scratch[33];
    const i64 g = gridDim.x;
    const i64 begin = (i64)blockIdx.x * len / g, end = ((i64)blockIdx.x + 1) * len / g;
    float acc = 0.0f;
    for (i64 i = begin + threadIdx.x; i < end; i += blockDim.x) acc += x[i];
    acc = st_block_sum(acc, scratch);
    if (threadIdx.x == 0) out[blockIdx.x] = scale * acc;
}
