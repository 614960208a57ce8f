// matmul.cu: single-precision GEMM (no cuBLAS). CPU twin: src/backend/cpu/matmul.rs.
// common.cuh is prepended by the loader.
//
// Row-major C = alpha * op(A) * op(B) + beta * C, op(A) m x k, op(B) k x n, C m x n:
//   trans_a == 0: A is stored m x k (element (i, l) at A[i*lda + l]);
//   trans_a != 0: A is stored k x m (element (i, l) of op(A) at A[l*lda + i]); same for B.
// beta == 0 overwrites C (whatever it held, NaN included).
//
// Batching: `batch` pairs (A + b*stride_a, B + b*stride_b), b in [0, batch), are split into
// gridDim.z contiguous groups; group z accumulates the products of its pairs in registers and
// writes C + z*stride_c. With gridDim.z == batch that is an ordinary batched GEMM (one output
// per pair, e.g. a convolution over the images of a batch); with gridDim.z < batch it is a
// deterministic split-K over the batch (e.g. a weight gradient summed over images, each group
// writing a partial sum that channel_sum_f32 then adds up). gridDim.z == batch == 1: plain GEMM.
//
// Tiling: a 256-thread block computes a 64 x 64 tile of C, staging 64 x 16 slices of op(A)
// and 16 x 64 slices of op(B) in shared memory; each thread owns a 4 x 4 register block at
// rows ty + 16r and columns tx + 16c (so a warp reads 16 consecutive B values and 2 broadcast
// A values per step: no bank conflicts, and its C stores are 16-float coalesced runs).

#define SG_BM 64
#define SG_BN 64
#define SG_BK 16
#define SG_THREADS 256

extern "C" __global__ void __launch_bounds__(SG_THREADS)
sgemm_f32(int trans_a, int trans_b, int m, int n, int k, float alpha,
          const float* __restrict__ A, int lda, i64 stride_a,
          const float* __restrict__ B, int ldb, i64 stride_b,
          float beta, float* __restrict__ C, int ldc, i64 stride_c, int batch) {
    __shared__ float As[SG_BK][SG_BM + 4];
    __shared__ float Bs[SG_BK][SG_BN + 4];
    const int tid = threadIdx.x;
    const int tx = tid & 15, ty = tid >> 4;
    const int row0 = blockIdx.y * SG_BM, col0 = blockIdx.x * SG_BN;
    const int z = blockIdx.z, nz = gridDim.z;
    const int b_begin = (int)((i64)z * batch / nz);
    const int b_end = (int)((i64)(z + 1) * batch / nz);

    float acc[4][4];
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int c = 0; c < 4; ++c) acc[r][c] = 0.0f;

    for (int b = b_begin; b < b_end; ++b) {
        const float* Ab = A + (i64)b * stride_a;
        const float* Bb = B + (i64)b * stride_b;
        for (int k0 = 0; k0 < k; k0 += SG_BK) {
            // op(A) tile: 64 rows x 16 k, 4 elements per thread. Adjacent threads read adjacent
            // addresses: along k when A is m x k, along m when A is stored k x m.
#pragma unroll
            for (int e0 = 0; e0 < SG_BM * SG_BK; e0 += SG_THREADS) {
                const int e = e0 + tid;
                int i, l;
                if (trans_a) { i = e & (SG_BM - 1); l = e / SG_BM; }
                else { l = e & (SG_BK - 1); i = e / SG_BK; }
                const int gi = row0 + i, gl = k0 + l;
                float v = 0.0f;
                if (gi < m && gl < k)
                    v = trans_a ? Ab[(i64)gl * lda + gi] : Ab[(i64)gi * lda + gl];
                As[l][i] = v;
            }
            // op(B) tile: 16 k x 64 columns.
#pragma unroll
            for (int e0 = 0; e0 < SG_BK * SG_BN; e0 += SG_THREADS) {
                const int e = e0 + tid;
                int j, l;
                if (trans_b) { l = e & (SG_BK - 1); j = e / SG_BK; }
                else { j = e & (SG_BN - 1); l = e / SG_BN; }
                const int gj = col0 + j, gl = k0 + l;
                float v = 0.0f;
                if (gj < n && gl < k)
                    v = trans_b ? Bb[(i64)gj * ldb + gl] : Bb[(i64)gl * ldb + gj];
                Bs[l][j] = v;
            }
            __syncthreads();
#pragma unroll
            for (int l = 0; l < SG_BK; ++l) {
                float a[4], bv[4];
#pragma unroll
                for (int r = 0; r < 4; ++r) a[r] = As[l][ty + 16 * r];
#pragma unroll
                for (int c = 0; c < 4; ++c) bv[c] = Bs[l][tx + 16 * c];
#pragma unroll
                for (int r = 0; r < 4; ++r)
#pragma unroll
                    for (int c = 0; c < 4; ++c) acc[r][c] = fmaf(a[r], bv[c], acc[r][c]);
            }
            __syncthreads();
        }
    }

    float* Cz = C + (i64)z * stride_c;
#pragma unroll
    for (int r = 0; r < 4; ++r) {
        const int gi = row0 + ty + 16 * r;
        if (gi >= m) continue;
#pragma unroll
        for (int c = 0; c < 4; ++c) {
            const int gj = col0 + tx + 16 * c;
            if (gj >= n) continue;
            const i64 o = (i64)gi * ldc + gj;
            float v = alpha * acc[r][c];
            if (beta != 0.0f) v += beta * Cz[o];
            Cz[o] = v;
        }
    }
}
