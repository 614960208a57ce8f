// pool.cu: 2-d max and average pooling over NCHW. CPU twins: src/backend/cpu/pool.rs.
// common.cuh is prepended by the loader. Forward passes use one thread per output element;
// backward passes one thread per input element (gather form: no atomics, deterministic).

// Mirrors `Pool2dParams` in src/backend/params.rs field for field (#[repr(C)], 9 x u32).
struct Pool2dParams {
    unsigned int n, c, h_in, w_in, k, stride, pad, h_out, w_out;
};

// Range of output rows (or columns) whose window covers input row i: o with
// o*stride - pad <= i <= o*stride - pad + k - 1, clipped to [0, out). Empty when lo > hi.
__device__ __forceinline__ void pool_cover(int i, const Pool2dParams& p, int out, int* lo,
                                           int* hi) {
    const int st = (int)p.stride, a = i + (int)p.pad;  // o*stride <= a, o*stride >= a - k + 1
    const int first = a - (int)p.k + 1;
    *lo = first <= 0 ? 0 : (first + st - 1) / st;
    *hi = min(a / st, out - 1);
}

// y = max over each window (padding reads as -inf); idx = h*w_in + w of the first maximum in
// row-major window order, as an f32, inside its (n, c) plane. A NaN counts as larger than any
// number, so the first NaN of a window wins (as in PyTorch and the CPU twin); a window of
// nothing but -inf reports its first in-bounds position.
extern "C" __global__ void maxpool2d_fwd_f32(const float* __restrict__ x, Pool2dParams p,
                                             float* __restrict__ y, float* __restrict__ idx) {
    const i64 total = (i64)p.n * p.c * p.h_out * p.w_out;
    GRID_STRIDE(i, total) {
        const int ow = (int)(i % p.w_out);
        const int oh = (int)((i / p.w_out) % p.h_out);
        const i64 nc = i / ((i64)p.h_out * p.w_out);
        const float* xp = x + nc * p.h_in * p.w_in;
        const int h0 = oh * (int)p.stride - (int)p.pad, w0 = ow * (int)p.stride - (int)p.pad;
        float best = ST_NEG_INF;
        int best_i = -1;
        bool nan = false;
        for (int kh = 0; kh < (int)p.k && !nan; ++kh) {
            const int h = h0 + kh;
            if (h < 0 || h >= (int)p.h_in) continue;
            for (int kw = 0; kw < (int)p.k; ++kw) {
                const int w = w0 + kw;
                if (w < 0 || w >= (int)p.w_in) continue;
                const int pos = h * (int)p.w_in + w;
                const float v = xp[pos];
                if (v != v) {  // NaN: it wins, and later NaNs do not replace it
                    best = v;
                    best_i = pos;
                    nan = true;
                    break;
                }
                if (best_i < 0 || v > best) {
                    best = v;
                    best_i = pos;
                }
            }
        }
        y[i] = best;
        idx[i] = (float)best_i;
    }
}

// dx[pixel] = sum of dy over the windows whose argmax is that pixel (overwrites dx).
extern "C" __global__ void maxpool2d_bwd_f32(const float* __restrict__ dy,
                                             const float* __restrict__ idx, Pool2dParams p,
                                             float* __restrict__ dx) {
    const i64 plane_in = (i64)p.h_in * p.w_in, plane_out = (i64)p.h_out * p.w_out;
    const i64 total = (i64)p.n * p.c * plane_in;
    GRID_STRIDE(i, total) {
        const int w = (int)(i % p.w_in);
        const int h = (int)((i / p.w_in) % p.h_in);
        const i64 nc = i / plane_in;
        const float me = (float)(h * (int)p.w_in + w);
        int oh_lo, oh_hi, ow_lo, ow_hi;
        pool_cover(h, p, (int)p.h_out, &oh_lo, &oh_hi);
        pool_cover(w, p, (int)p.w_out, &ow_lo, &ow_hi);
        const float* dyp = dy + nc * plane_out;
        const float* ip = idx + nc * plane_out;
        float acc = 0.0f;
        for (int oh = oh_lo; oh <= oh_hi; ++oh)
            for (int ow = ow_lo; ow <= ow_hi; ++ow) {
                const i64 o = (i64)oh * p.w_out + ow;
                if (ip[o] == me) acc += dyp[o];
            }
        dx[i] = acc;
    }
}

// y = (sum over each k*k window, padding counted as zeros) / (k*k).
extern "C" __global__ void avgpool2d_fwd_f32(const float* __restrict__ x, Pool2dParams p,
                                             float* __restrict__ y) {
    const i64 total = (i64)p.n * p.c * p.h_out * p.w_out;
    const float div = (float)(p.k * p.k);
    GRID_STRIDE(i, total) {
        const int ow = (int)(i % p.w_out);
        const int oh = (int)((i / p.w_out) % p.h_out);
        const i64 nc = i / ((i64)p.h_out * p.w_out);
        const float* xp = x + nc * p.h_in * p.w_in;
        const int h0 = oh * (int)p.stride - (int)p.pad, w0 = ow * (int)p.stride - (int)p.pad;
        float acc = 0.0f;
        for (int kh = 0; kh < (int)p.k; ++kh) {
            const int h = h0 + kh;
            if (h < 0 || h >= (int)p.h_in) continue;
            for (int kw = 0; kw < (int)p.k; ++kw) {
                const int w = w0 + kw;
                if (w < 0 || w >= (int)p.w_in) continue;
                acc += xp[h * (int)p.w_in + w];
            }
        }
        y[i] = acc / div;
    }
}

// dx[pixel] = sum over the windows covering it of dy / (k*k) (overwrites dx).
extern "C" __global__ void avgpool2d_bwd_f32(const float* __restrict__ dy, Pool2dParams p,
                                             float* __restrict__ dx) {
    const i64 plane_in = (i64)p.h_in * p.w_in, plane_out = (i64)p.h_out * p.w_out;
    const i64 total = (i64)p.n * p.c * plane_in;
    const float div = (float)(p.k * p.k);
    GRID_STRIDE(i, total) {
        const int w = (int)(i % p.w_in);
        const int h = (int)((i / p.w_in) % p.h_in);
        const i64 nc = i / plane_in;
        int oh_lo, oh_hi, ow_lo, ow_hi;
        pool_cover(h, p, (int)p.h_out, &oh_lo, &oh_hi);
        pool_cover(w, p, (int)p.w_out, &ow_lo, &ow_hi);
        const float* dyp = dy + nc * plane_out;
        float acc = 0.0f;
        for (int oh = oh_lo; oh <= oh_hi; ++oh)
            for (int ow = ow_lo; ow <= ow_hi; ++ow) acc += dyp[(i64)oh * p.w_out + ow] / div;
        dx[i] = acc;
    }
}
