// conv.cu: the convolution helpers. A convolution is im2col + SGEMM (matmul.cu) + bias_add;
// its backward passes are SGEMM + col2im (input) and SGEMM over im2col columns (weight), and
// channel_sum gives the bias gradient. CPU twins: src/backend/cpu/conv.rs (same names).
// common.cuh is prepended by the loader.

// Conv2dParams (the geometry) is defined in common.cuh, shared with spconv.cu.

// im2col of `nimg` consecutive images (the CPU twin does one image: nimg = 1).
// x [nimg, c_in, h_in, w_in] -> col [nimg, c_in*k_h*k_w, h_out*w_out]; row (ci*k_h+kh)*k_w+kw,
// column oh*w_out+ow; zeros where the window reads padding. One thread per (image, ci, oh, ow)
// writes its k_h*k_w column entries (adjacent threads write adjacent columns: coalesced).
extern "C" __global__ void im2col_f32(const float* __restrict__ x, Conv2dParams p,
                                      float* __restrict__ col, int nimg) {
    const i64 hw = (i64)p.h_out * p.w_out;
    const i64 plane = (i64)p.h_in * p.w_in;
    const i64 rows = (i64)p.c_in * p.k_h * p.k_w;
    const i64 total = (i64)nimg * p.c_in * hw;
    GRID_STRIDE(i, total) {
        const i64 s = i % hw;
        const i64 t = i / hw;  // image * c_in + ci
        const int ci = (int)(t % p.c_in);
        const i64 img = t / p.c_in;
        const int oh = (int)(s / p.w_out), ow = (int)(s % p.w_out);
        const int ih0 = oh * (int)p.stride - (int)p.pad;
        const int iw0 = ow * (int)p.stride - (int)p.pad;
        const float* xp = x + t * plane;  // (img, ci) plane
        float* cp = col + (img * rows + (i64)ci * p.k_h * p.k_w) * hw + s;
        for (int kh = 0; kh < (int)p.k_h; ++kh) {
            const int ih = ih0 + kh;
            const bool row_in = ih >= 0 && ih < (int)p.h_in;
            for (int kw = 0; kw < (int)p.k_w; ++kw) {
                const int iw = iw0 + kw;
                float v = 0.0f;
                if (row_in && iw >= 0 && iw < (int)p.w_in) v = xp[(i64)ih * p.w_in + iw];
                *cp = v;
                cp += hw;
            }
        }
    }
}

// col2im of `nimg` consecutive images: col [nimg, c_in*k_h*k_w, h_out*w_out] -> x [nimg, c_in,
// h_in, w_in], overwriting x with the sum of every column entry that im2col would have read
// from that pixel. Gather form: one thread per input pixel sums its contributions in (kh, kw)
// order, so there are no atomics and the result is deterministic.
extern "C" __global__ void col2im_f32(const float* __restrict__ col, Conv2dParams p,
                                      float* __restrict__ x, int nimg) {
    const i64 hw = (i64)p.h_out * p.w_out;
    const i64 plane = (i64)p.h_in * p.w_in;
    const i64 rows = (i64)p.c_in * p.k_h * p.k_w;
    const i64 total = (i64)nimg * p.c_in * plane;
    const int stride = (int)p.stride, pad = (int)p.pad;
    GRID_STRIDE(i, total) {
        const int iw = (int)(i % p.w_in);
        const int ih = (int)((i / p.w_in) % p.h_in);
        const i64 t = i / plane;  // image * c_in + ci
        const int ci = (int)(t % p.c_in);
        const i64 img = t / p.c_in;
        const float* cp = col + (img * rows + (i64)ci * p.k_h * p.k_w) * hw;
        float acc = 0.0f;
        for (int kh = 0; kh < (int)p.k_h; ++kh) {
            const int oh_s = ih + pad - kh;  // = oh * stride when this kh reads pixel ih
            if (oh_s < 0 || oh_s % stride != 0) continue;
            const int oh = oh_s / stride;
            if (oh >= (int)p.h_out) continue;
            for (int kw = 0; kw < (int)p.k_w; ++kw) {
                const int ow_s = iw + pad - kw;
                if (ow_s < 0 || ow_s % stride != 0) continue;
                const int ow = ow_s / stride;
                if (ow >= (int)p.w_out) continue;
                acc += cp[(i64)(kh * (int)p.k_w + kw) * hw + (i64)oh * p.w_out + ow];
            }
        }
        x[i] = acc;
    }
}

// y[n, c, s] += bias[c], in place.
extern "C" __global__ void bias_add_f32(float* __restrict__ y, const float* __restrict__ bias,
                                        int n, int c, i64 s) {
    const i64 total = (i64)n * c * s;
    GRID_STRIDE(i, total) { y[i] += bias[(i / s) % c]; }
}

// out[c] = sum over n and s of x[n, c, s]. Two deterministic strategies, chosen by the host:
// per_thread != 0: one thread per channel sums its n*s values in order (for small n*s, e.g.
// reducing split-K partial sums); per_thread == 0: one block per channel (grid-stride over
// channels), each thread sums a strided subset, then a block tree reduction.
extern "C" __global__ void channel_sum_f32(const float* __restrict__ x, int n, int c, i64 s,
                                           float* __restrict__ out, int per_thread) {
    if (per_thread) {
        GRID_STRIDE(ch, c) {
            float acc = 0.0f;
            for (int img = 0; img < n; ++img) {
                const float* xp = x + ((i64)img * c + ch) * s;
                for (i64 t = 0; t < s; ++t) acc += xp[t];
            }
            out[ch] = acc;
        }
        return;
    }
    __shared__ float scratch[33];
    const i64 count = (i64)n * s;
    for (int ch = blockIdx.x; ch < c; ch += gridDim.x) {
        float acc = 0.0f;
        for (i64 j = threadIdx.x; j < count; j += blockDim.x) {
            const i64 img = j / s, t = j - img * s;
            acc += x[(img * c + ch) * s + t];
        }
        acc = st_block_sum(acc, scratch);
        if (threadIdx.x == 0) out[ch] = acc;
    }
}
