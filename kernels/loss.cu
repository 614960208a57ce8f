// loss.cu: log-softmax cross entropy. CPU twins: src/backend/cpu/loss.rs.
// common.cuh is prepended by the loader. Labels are f32 holding exact class indices.

// Row-wise log-softmax of logits [n, k] into logprobs, and row_nll[r] = -logprobs[r, label[r]].
// One block per row (grid-stride over rows): block max, block sum of exp(x - max), then
// logprobs = (x - max) - log(sum), as the CPU twin. A label that is not an integer in [0, k)
// gives a NaN row_nll (as the CPU twin), and is never used as an index.
extern "C" __global__ void log_softmax_ce_fwd_f32(const float* __restrict__ logits,
                                                  const float* __restrict__ labels, int n, int k,
                                                  float* __restrict__ logprobs,
                                                  float* __restrict__ row_nll) {
    __shared__ float scratch[33];
    for (int r = blockIdx.x; r < n; r += gridDim.x) {
        const float* xr = logits + (i64)r * k;
        float* lr = logprobs + (i64)r * k;
        float mx = ST_NEG_INF;
        for (int j = threadIdx.x; j < k; j += blockDim.x) mx = fmaxf(mx, xr[j]);
        mx = st_block_max(mx, scratch);
        float se = 0.0f;
        for (int j = threadIdx.x; j < k; j += blockDim.x) se += expf(xr[j] - mx);
        se = st_block_sum(se, scratch);
        const float log_sum = logf(se);
        for (int j = threadIdx.x; j < k; j += blockDim.x) lr[j] = (xr[j] - mx) - log_sum;
        if (threadIdx.x == 0) {
            const float lf = labels[r];
            const bool ok = lf >= 0.0f && lf < (float)k && floorf(lf) == lf;
            row_nll[r] = ok ? -((xr[(int)lf] - mx) - log_sum) : ST_NAN;
        }
    }
}

// count[0] += number of rows of logprobs [n, k] whose arg-max (the first of equal maxima; a NaN
// never wins) is the row's label; a label that is not an integer in [0, k) never counts. One
// thread per row (grid-stride). The count is integer-valued and every partial is an integer, so
// the float additions are exact (below 2^24) and their order does not matter.
extern "C" __global__ void ce_correct_f32(const float* __restrict__ logprobs,
                                          const float* __restrict__ labels, int n, int k,
                                          float* __restrict__ count) {
    GRID_STRIDE(r, n) {
        const float* row = logprobs + r * k;
        int best = 0;
        for (int j = 1; j < k; ++j) best = row[j] > row[best] ? j : best;
        const float lf = labels[r];
        const bool ok = lf >= 0.0f && lf < (float)k && floorf(lf) == lf;
        if (ok && (int)lf == best) atomicAdd(count, 1.0f);
    }
}

// dlogits = scale * (exp(logprobs) - onehot(label)).
extern "C" __global__ void log_softmax_ce_bwd_f32(const float* __restrict__ logprobs,
                                                  const float* __restrict__ labels, int n, int k,
                                                  float scale, float* __restrict__ dlogits) {
    const i64 total = (i64)n * k;
    GRID_STRIDE(i, total) {
        const int j = (int)(i % k);
        const i64 r = i / k;
        float v = expf(logprobs[i]);
        if ((float)j == labels[r]) v -= 1.0f;
        dlogits[i] = scale * v;
    }
}
