// common.cuh: helpers shared by every kernel family. src/backend/cuda/loader.rs prepends this
// file to kernels/<family>.cu before NVRTC compiles it, so the .cu files use these names
// without an #include. No system headers: NVRTC provides the math built-ins (expf, logf,
// sqrtf, fmaxf) and the warp intrinsics itself.
//
// Conventions for every kernel: element counts and offsets are 64-bit (`i64`), matrix sizes
// and leading dimensions 32-bit; launches use 1-d grid-stride loops unless the kernel says
// otherwise, so any grid size covers any length. Reductions are deterministic: the order in
// which partial sums combine depends only on the launch shape, never on timing (no atomics).

typedef long long i64;

// -infinity and a quiet NaN without <math.h>.
#define ST_NEG_INF (__int_as_float(0xff800000))
#define ST_NAN (__int_as_float(0x7fc00000))

// Mirrors `Conv2dParams` in src/backend/params.rs field for field (#[repr(C)], 11 x u32): the
// geometry of a 2-d convolution (conv.cu, spconv.cu).
struct Conv2dParams {
    unsigned int n, c_in, h_in, w_in, c_out, k_h, k_w, stride, pad, h_out, w_out;
};

// Grid-stride loop over i in [0, n).
#define GRID_STRIDE(i, n)                                                                          \
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (i64)(n);                       \
         i += (i64)gridDim.x * blockDim.x)

// Sum of `v` over the 32 lanes of a warp; lane 0 holds the result.
__device__ __forceinline__ float st_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    return v;
}

// Max of `v` over the 32 lanes of a warp; lane 0 holds the result.
__device__ __forceinline__ float st_warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_down_sync(0xffffffffu, v, o));
    return v;
}

// Sum of `v` over the whole block; every thread gets the result. blockDim.x must be a multiple
// of 32 (at most 1024) and every thread of the block must call it. `scratch` holds 33 floats
// of shared memory; it may be reused right after the call returns.
__device__ float st_block_sum(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = st_warp_sum(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float t = lane < nwarps ? scratch[lane] : 0.0f;
        t = st_warp_sum(t);
        if (lane == 0) scratch[32] = t;
    }
    __syncthreads();
    const float r = scratch[32];
    __syncthreads();
    return r;
}

// Max of `v` over the whole block; same contract as st_block_sum.
__device__ float st_block_max(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = st_warp_max(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float t = lane < nwarps ? scratch[lane] : ST_NEG_INF;
        t = st_warp_max(t);
        if (lane == 0) scratch[32] = t;
    }
    __syncthreads();
    const float r = scratch[32];
    __syncthreads();
    return r;
}
