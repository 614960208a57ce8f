// spconv.cu: the sparse convolution, with the weight in CSR form (rows = output channels o,
// columns = (c, r, s) in im2col order, u32 indices, entries of a row in ascending column order).
// CPU twins: src/backend/cpu/spconv.rs (same names, same loops, same summation order for every
// output of the forward and input-backward passes). common.cuh is prepended by the loader.
//
// The host validates every CSR before uploading it (row_ptr non-decreasing from 0 to nnz,
// columns in range and ascending), so the index reads below stay in bounds. No atomics: each
// output is written by exactly one thread (or warp), so every result is deterministic.

// The (c, r, s) of im2col column `col`.
__device__ __forceinline__ void st_decode_col(unsigned int col, const Conv2dParams& p, int* c,
                                              int* r, int* s) {
    const unsigned int kk = p.k_h * p.k_w;
    *c = (int)(col / kk);
    const unsigned int rs = col - (unsigned int)*c * kk;
    *r = (int)(rs / p.k_w);
    *s = (int)(rs - (unsigned int)*r * p.k_w);
}

// y[b, o, yo, xo] = bias[o] + sum over the entries e of row o (ascending) of
// values[e] * x[b, c, yo*stride + r - pad, xo*stride + s - pad] (nothing outside the image).
// bias is read only when has_bias != 0. One thread per output element (grid-stride): the
// threads of a warp share o (uniform CSR reads) and read neighbouring x.
extern "C" __global__ void spconv_fwd_f32(const float* __restrict__ x,
                                          const unsigned int* __restrict__ row_ptr,
                                          const unsigned int* __restrict__ col_idx,
                                          const float* __restrict__ values,
                                          const float* __restrict__ bias, int has_bias,
                                          Conv2dParams p, float* __restrict__ y) {
    const i64 hw = (i64)p.h_out * p.w_out;
    const i64 plane = (i64)p.h_in * p.w_in;
    const i64 total = (i64)p.n * p.c_out * hw;
    const int h = (int)p.h_in, w = (int)p.w_in;
    GRID_STRIDE(i, total) {
        const int xo = (int)(i % p.w_out);
        const int yo = (int)((i / p.w_out) % p.h_out);
        const i64 t = i / hw;  // b * c_out + o
        const int o = (int)(t % p.c_out);
        const i64 b = t / p.c_out;
        const float* xb = x + b * p.c_in * plane;
        const int iy0 = yo * (int)p.stride - (int)p.pad;
        const int ix0 = xo * (int)p.stride - (int)p.pad;
        float acc = has_bias ? bias[o] : 0.0f;
        const unsigned int end = row_ptr[o + 1];
        for (unsigned int e = row_ptr[o]; e < end; ++e) {
            int c, r, s;
            st_decode_col(col_idx[e], p, &c, &r, &s);
            const int iy = iy0 + r, ix = ix0 + s;
            if (iy >= 0 && iy < h && ix >= 0 && ix < w)
                acc += values[e] * xb[(i64)c * plane + (i64)iy * w + ix];
        }
        y[i] = acc;
    }
}

// dx[b, c, yi, xi] = sum over r, then s (ascending), then the entries e of row (c, r, s) of the
// TRANSPOSED weight (columns = output channels o, ascending) of t_values[e] * dy[b, o, yo, xo],
// where yo*stride + r - pad = yi and xo*stride + s - pad = xi. Stride-aware: only the r and s
// congruent to yi + pad and xi + pad modulo the stride are visited (in ascending order, as the
// twin skips the others). One thread per dx element (grid-stride); no atomics.
extern "C" __global__ void spconv_bwd_input_f32(const float* __restrict__ dy,
                                                const unsigned int* __restrict__ t_row_ptr,
                                                const unsigned int* __restrict__ t_col_idx,
                                                const float* __restrict__ t_values,
                                                Conv2dParams p, float* __restrict__ dx) {
    const i64 plane = (i64)p.h_in * p.w_in;
    const i64 hwo = (i64)p.h_out * p.w_out;
    const i64 total = (i64)p.n * p.c_in * plane;
    const int kh = (int)p.k_h, kw = (int)p.k_w, st = (int)p.stride;
    const int ho = (int)p.h_out, wo = (int)p.w_out;
    GRID_STRIDE(i, total) {
        const int xi = (int)(i % p.w_in);
        const int yi = (int)((i / p.w_in) % p.h_in);
        const i64 t = i / plane;  // b * c_in + c
        const int c = (int)(t % p.c_in);
        const i64 b = t / p.c_in;
        const float* dyb = dy + b * p.c_out * hwo;
        const int yp = yi + (int)p.pad, xp = xi + (int)p.pad;
        float acc = 0.0f;
        for (int r = yp % st; r < kh && r <= yp; r += st) {
            const int yo = (yp - r) / st;
            if (yo >= ho) continue;
            for (int s = xp % st; s < kw && s <= xp; s += st) {
                const int xo = (xp - s) / st;
                if (xo >= wo) continue;
                const unsigned int k = (unsigned int)((c * kh + r) * kw + s);
                const float* dyp = dyb + (i64)yo * wo + xo;
                const unsigned int end = t_row_ptr[k + 1];
                for (unsigned int e = t_row_ptr[k]; e < end; ++e)
                    acc += t_values[e] * dyp[(i64)t_col_idx[e] * hwo];
            }
        }
        dx[i] = acc;
    }
}

// dvalues[e] = sum over (b, yo, xo) of dy[b, o, yo, xo] * x[b, c, yo*stride + r - pad,
// xo*stride + s - pad] for entry e = (o, (c, r, s)) of the CSR with nnz entries: the weight
// gradient at the active positions only (an SDDMM). One warp per entry (grid-stride over
// entries; blockDim.x a multiple of 32): lane l sums the flat positions l, l + 32, ... in
// order, then a fixed shuffle tree adds the 32 partial sums, so the result depends on nothing
// but the inputs (not on the grid). The entry's row o is found by binary search in row_ptr.
extern "C" __global__ void spconv_bwd_weight_f32(const float* __restrict__ x,
                                                 const float* __restrict__ dy,
                                                 const unsigned int* __restrict__ row_ptr,
                                                 const unsigned int* __restrict__ col_idx,
                                                 i64 nnz, Conv2dParams p,
                                                 float* __restrict__ dvalues) {
    const int lane = threadIdx.x & 31;
    const i64 warps = ((i64)gridDim.x * blockDim.x) >> 5;
    const i64 plane = (i64)p.h_in * p.w_in;
    const i64 hwo = (i64)p.h_out * p.w_out;
    const i64 count = (i64)p.n * hwo;
    const int h = (int)p.h_in, w = (int)p.w_in, wo = (int)p.w_out;
    for (i64 e = ((i64)blockIdx.x * blockDim.x + threadIdx.x) >> 5; e < nnz; e += warps) {
        // The row of entry e: the last o with row_ptr[o] <= e (empty rows are skipped over).
        int lo = 0, hi = (int)p.c_out - 1;
        while (lo < hi) {
            const int mid = (lo + hi + 1) >> 1;
            if ((i64)row_ptr[mid] <= e) lo = mid;
            else hi = mid - 1;
        }
        const int o = lo;
        int c, r, s;
        st_decode_col(col_idx[e], p, &c, &r, &s);
        const int ry = r - (int)p.pad, sx = s - (int)p.pad;
        float acc = 0.0f;
        for (i64 j = lane; j < count; j += 32) {
            const i64 b = j / hwo;
            const i64 pix = j - b * hwo;
            const int yo = (int)(pix / wo), xo = (int)(pix - (i64)yo * wo);
            const int iy = yo * (int)p.stride + ry, ix = xo * (int)p.stride + sx;
            if (iy >= 0 && iy < h && ix >= 0 && ix < w)
                acc += dy[(b * p.c_out + o) * hwo + pix] *
                       x[(b * p.c_in + c) * plane + (i64)iy * w + ix];
        }
        acc = st_warp_sum(acc);
        if (lane == 0) dvalues[e] = acc;
    }
}

// dense[row, col] = values[e] for the last entry e of row `row` at column `col`, 0 where the
// row has none: the dense [rows, cols] matrix of a CSR (the weight gradient from the entry
// gradients). One thread per dense element finds its entry by binary search over the row's
// ascending columns, so every element is written exactly once (no zeroing, no atomics).
extern "C" __global__ void spconv_scatter_f32(const unsigned int* __restrict__ row_ptr,
                                              const unsigned int* __restrict__ col_idx,
                                              const float* __restrict__ values, int rows,
                                              int cols, float* __restrict__ dense) {
    const i64 total = (i64)rows * cols;
    GRID_STRIDE(i, total) {
        const int row = (int)(i / cols);
        const unsigned int col = (unsigned int)(i - (i64)row * cols);
        const unsigned int a = row_ptr[row];
        unsigned int lo = a, hi = row_ptr[row + 1];
        while (lo < hi) {  // lo = the first entry whose column is > col
            const unsigned int mid = lo + ((hi - lo) >> 1);
            if (col_idx[mid] <= col) lo = mid + 1;
            else hi = mid;
        }
        dense[i] = (lo > a && col_idx[lo - 1] == col) ? values[lo - 1] : 0.0f;
    }
}

// ---- the CSR of a mask, built on the device (CPU twins: csr_* in src/backend/cpu/spconv.rs) --
// The mask is viewed as `lines` lines of `len` elements, element j of line l at
// l * line_stride + j * elem_stride: the rows of a [rows, cols] mask (cols, 1) give its CSR, its
// columns (1, cols) the CSR of its transpose. An entry is active when the mask is nonzero (NaN
// counts), as SparseWeight::from_masked.

// counts[l] = the active entries of line l. One thread per line.
extern "C" __global__ void csr_count_f32(const float* __restrict__ mask, int lines, int len,
                                         int line_stride, int elem_stride,
                                         unsigned int* __restrict__ counts) {
    GRID_STRIDE(l, lines) {
        unsigned int c = 0;
        for (int j = 0; j < len; ++j) c += mask[l * line_stride + (i64)j * elem_stride] != 0.0f;
        counts[l] = c;
    }
}

// row_ptr[0] = 0, row_ptr[i + 1] = counts[0] + ... + counts[i] (n + 1 offsets). One block:
// each thread sums a contiguous chunk, thread 0 scans the block's partial sums in order, then
// each thread writes its chunk's running sums. Integer sums: exact in any order.
extern "C" __global__ void csr_scan_u32(const unsigned int* __restrict__ counts, int n,
                                        unsigned int* __restrict__ row_ptr) {
    __shared__ unsigned int part[1024];
    if (blockIdx.x != 0) return;
    const int t = threadIdx.x, b = blockDim.x;
    const int chunk = (n + b - 1) / b;
    const int a = min(n, t * chunk), e = min(n, a + chunk);
    unsigned int s = 0;
    for (int i = a; i < e; ++i) s += counts[i];
    part[t] = s;
    __syncthreads();
    if (t == 0) {
        unsigned int run = 0;
        for (int i = 0; i < b; ++i) {
            const unsigned int v = part[i];
            part[i] = run;
            run += v;
        }
        row_ptr[0] = 0;
    }
    __syncthreads();
    unsigned int run = part[t];
    for (int i = a; i < e; ++i) {
        run += counts[i];
        row_ptr[i + 1] = run;
    }
}

// The entries of line l, in ascending element order, at row_ptr[l]..row_ptr[l + 1]: the
// element index j as the column and w at the same position as the value. row_ptr must be the
// scan of csr_count_f32 over the same mask (so every line writes inside its own range). One
// thread per line.
extern "C" __global__ void csr_fill_f32(const float* __restrict__ w,
                                        const float* __restrict__ mask,
                                        const unsigned int* __restrict__ row_ptr, int lines,
                                        int len, int line_stride, int elem_stride,
                                        unsigned int* __restrict__ col_idx,
                                        float* __restrict__ values) {
    GRID_STRIDE(l, lines) {
        unsigned int e = row_ptr[l];
        for (int j = 0; j < len; ++j) {
            const i64 i = l * line_stride + (i64)j * elem_stride;
            if (mask[i] != 0.0f) {
                col_idx[e] = (unsigned int)j;
                values[e] = w[i];
                ++e;
            }
        }
    }
}

// values[e] = w at the position of entry e, for a structure csr_fill_f32 built from the same
// view (the mask only changes at mask updates; the weights every step): line l's entries are
// row_ptr[l]..row_ptr[l + 1], entry e is element col_idx[e] of its line. One thread per line.
extern "C" __global__ void csr_gather_f32(const float* __restrict__ w,
                                          const unsigned int* __restrict__ row_ptr,
                                          const unsigned int* __restrict__ col_idx, int lines,
                                          int line_stride, int elem_stride,
                                          float* __restrict__ values) {
    GRID_STRIDE(l, lines) {
        const unsigned int e1 = row_ptr[l + 1];
        for (unsigned int e = row_ptr[l]; e < e1; ++e)
            values[e] = w[l * line_stride + (i64)col_idx[e] * elem_stride];
    }
}
