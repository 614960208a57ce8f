// batchnorm.cu: batch normalisation over x viewed as [n, c, s] (s = product of the trailing
// dimensions: BatchNorm2d has s = h*w, BatchNorm1d s = 1). CPU twins: src/backend/cpu/batchnorm.rs.
// common.cuh is prepended by the loader. Per-channel reductions run one block per channel
// (grid-stride over channels; blockDim.x a multiple of 32) and are deterministic.

// mean[c] and biased variance var[c] (divided by n*s), two passes (mean, then squared deviations).
extern "C" __global__ void bn_stats_f32(const float* __restrict__ x, int n, int c, i64 s,
                                        float* __restrict__ mean, float* __restrict__ var) {
    __shared__ float scratch[33];
    const i64 count = (i64)n * s;
    const float fcount = (float)count;
    for (int ch = blockIdx.x; ch < c; ch += gridDim.x) {
        float acc = 0.0f;
        for (i64 j = threadIdx.x; j < count; j += blockDim.x) {
            const i64 img = j / s;
            acc += x[(img * c + ch) * s + (j - img * s)];
        }
        const float mu = st_block_sum(acc, scratch) / fcount;
        acc = 0.0f;
        for (i64 j = threadIdx.x; j < count; j += blockDim.x) {
            const i64 img = j / s;
            const float d = x[(img * c + ch) * s + (j - img * s)] - mu;
            acc += d * d;
        }
        const float v = st_block_sum(acc, scratch) / fcount;
        if (threadIdx.x == 0) {
            mean[ch] = mu;
            var[ch] = v;
        }
    }
}

// invstd[c] = 1 / sqrt(var[c] + eps) (IEEE sqrt and division: NVRTC's default --prec-sqrt/div).
extern "C" __global__ void bn_invstd_f32(const float* __restrict__ var, float eps,
                                         float* __restrict__ invstd, int c) {
    GRID_STRIDE(i, c) { invstd[i] = 1.0f / sqrtf(var[i] + eps); }
}

// y = (x - mean[c]) * invstd[c] * gamma[c] + beta[c], evaluated as the CPU twin does:
// x * scale + shift with scale = invstd * gamma and shift = beta - mean * scale.
extern "C" __global__ void bn_fwd_f32(const float* __restrict__ x, int n, int c, i64 s,
                                      const float* __restrict__ mean,
                                      const float* __restrict__ invstd,
                                      const float* __restrict__ gamma,
                                      const float* __restrict__ beta, float* __restrict__ y) {
    const i64 total = (i64)n * c * s;
    GRID_STRIDE(i, total) {
        const int ch = (int)((i / s) % c);
        const float scale = invstd[ch] * gamma[ch];
        const float shift = beta[ch] - mean[ch] * scale;
        y[i] = x[i] * scale + shift;
    }
}

// Per channel: sum_dy[c] = sum(dy), sum_dy_xhat[c] = sum(dy * xhat), xhat = (x - mean) * invstd.
extern "C" __global__ void bn_bwd_reduce_f32(const float* __restrict__ dy,
                                             const float* __restrict__ x, int n, int c, i64 s,
                                             const float* __restrict__ mean,
                                             const float* __restrict__ invstd,
                                             float* __restrict__ sum_dy,
                                             float* __restrict__ sum_dy_xhat) {
    __shared__ float scratch[33];
    const i64 count = (i64)n * s;
    for (int ch = blockIdx.x; ch < c; ch += gridDim.x) {
        const float mu = mean[ch], is = invstd[ch];
        float a = 0.0f, b = 0.0f;
        for (i64 j = threadIdx.x; j < count; j += blockDim.x) {
            const i64 img = j / s;
            const i64 o = (img * c + ch) * s + (j - img * s);
            const float g = dy[o];
            a += g;
            b += g * ((x[o] - mu) * is);
        }
        a = st_block_sum(a, scratch);
        b = st_block_sum(b, scratch);
        if (threadIdx.x == 0) {
            sum_dy[ch] = a;
            sum_dy_xhat[ch] = b;
        }
    }
}

// dx = gamma*invstd/(n*s) * (n*s*dy - sum_dy - xhat*sum_dy_xhat).
extern "C" __global__ void bn_bwd_dx_f32(const float* __restrict__ dy,
                                         const float* __restrict__ x, int n, int c, i64 s,
                                         const float* __restrict__ mean,
                                         const float* __restrict__ invstd,
                                         const float* __restrict__ gamma,
                                         const float* __restrict__ sum_dy,
                                         const float* __restrict__ sum_dy_xhat,
                                         float* __restrict__ dx) {
    const i64 total = (i64)n * c * s;
    const float count = (float)((i64)n * s);
    GRID_STRIDE(i, total) {
        const int ch = (int)((i / s) % c);
        const float is = invstd[ch];
        const float xhat = (x[i] - mean[ch]) * is;
        dx[i] = gamma[ch] * is / count * (count * dy[i] - sum_dy[ch] - xhat * sum_dy_xhat[ch]);
    }
}
