// radix.cuh: the device side of the one radix-select driver (src/backend/radix.rs): "the k
// largest u32 keys of a group, ties to the lower flat index" over any key. The loader prepends
// it, after common.cuh, to the families that select by key (select.cu, superpose.cu); their
// kernels are thin wrappers that describe their keys with an Op type and run these passes.
//
// An Op provides
//   struct Elem;                                        // what the key leaves for the write
//   unsigned key_of(i64 i, Elem& e) const;              // the key of position i (0: ineligible)
//   bool write(i64 i, const Elem& e, unsigned k, bool sel) const;  // the action; true: counted
// The passes:
//   st_radix_hist   hist[(key >> shift) & (2^bits - 1)] += 1 for every key matching prefix
//                   under prefix_mask (accumulated into a histogram the host zeroes);
//   st_radix_count  counts[b] = keys in [lo, hi] in segment b = [b*len/G, (b+1)*len/G) of the
//                   G = gridDim.x segments (one block each);
//   st_radix_apply  one block per segment, walking it in order: a key equal to t gets the rank
//                   tie_before[b] + (ties earlier in the segment), via a warp ballot and a
//                   scan of per-warp counts; selected = key > t, or key == t and rank <
//                   tie_take; out[b] = positions of segment b whose write returned true.
// The CPU twins of every pass: src/backend/cpu/radix.rs (hist_by, count_by) and the TieWalk of
// src/backend/radix.rs. Counts use integer atomics only, whose sums do not depend on the order
// of the additions, so every result is deterministic.

// Sum of an unsigned `v` over the 32 lanes of a warp; lane 0 holds the result.
__device__ __forceinline__ unsigned int st_warp_sum_u32(unsigned int v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    return v;
}

// The histogram pass. bits <= 11. Grid-stride; any grid size.
template <class Op>
__device__ __forceinline__ void st_radix_hist(const Op& op, unsigned int prefix,
                                              unsigned int prefix_mask, int shift, int bits,
                                              unsigned int* __restrict__ hist, i64 len) {
    __shared__ unsigned int h[2048];
    const unsigned int nb = 1u << bits;
    for (unsigned int b = threadIdx.x; b < nb; b += blockDim.x) h[b] = 0u;
    __syncthreads();
    GRID_STRIDE(i, len) {
        typename Op::Elem e;
        const unsigned int k = op.key_of(i, e);
        if ((k & prefix_mask) == prefix) atomicAdd(&h[(k >> shift) & (nb - 1u)], 1u);
    }
    __syncthreads();
    for (unsigned int b = threadIdx.x; b < nb; b += blockDim.x) {
        const unsigned int c = h[b];
        if (c) atomicAdd(&hist[b], c);
    }
}

// The count pass, one block per segment.
template <class Op>
__device__ __forceinline__ void st_radix_count(const Op& op, unsigned int lo, unsigned int hi,
                                               unsigned int* __restrict__ counts, i64 len) {
    __shared__ unsigned int total;
    if (threadIdx.x == 0) total = 0u;
    __syncthreads();
    const i64 g = gridDim.x;
    const i64 begin = (i64)blockIdx.x * len / g, end = ((i64)blockIdx.x + 1) * len / g;
    unsigned int c = 0u;
    for (i64 i = begin + threadIdx.x; i < end; i += blockDim.x) {
        typename Op::Elem e;
        const unsigned int k = op.key_of(i, e);
        c += (k >= lo && k <= hi) ? 1u : 0u;
    }
    c = st_warp_sum_u32(c);
    if ((threadIdx.x & 31) == 0 && c) atomicAdd(&total, c);
    __syncthreads();
    if (threadIdx.x == 0) counts[blockIdx.x] = total;
}

// The apply pass, one block per segment (the segments of st_radix_count). blockDim.x must be
// a multiple of 32 (at most 1024).
template <class Op>
__device__ __forceinline__ void st_radix_apply(const Op& op, unsigned int t,
                                               const unsigned int* tie_before,
                                               unsigned int tie_take, unsigned int* out,
                                               i64 len) {
    __shared__ unsigned int warp_ties[32];
    __shared__ unsigned int total;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    if (threadIdx.x == 0) total = 0u;
    __syncthreads();
    const i64 g = gridDim.x;
    const i64 begin = (i64)blockIdx.x * len / g, end = ((i64)blockIdx.x + 1) * len / g;
    unsigned int ties = tie_before[blockIdx.x];
    unsigned int n = 0u;
    for (i64 t0 = begin; t0 < end; t0 += blockDim.x) {
        const i64 i = t0 + threadIdx.x;
        const bool valid = i < end;
        typename Op::Elem e = {};
        unsigned int k = 0u;
        if (valid) k = op.key_of(i, e);
        const bool is_tie = valid && k == t;
        const unsigned int ballot = __ballot_sync(0xffffffffu, is_tie);
        __syncthreads();  // the previous tile is done reading warp_ties
        if (lane == 0) warp_ties[warp] = __popc(ballot);
        __syncthreads();
        unsigned int before = 0u, tile = 0u;
        for (int v = 0; v < nwarps; ++v) {
            const unsigned int c = warp_ties[v];
            before += v < warp ? c : 0u;
            tile += c;
        }
        const unsigned int rank = ties + before + __popc(ballot & ((1u << lane) - 1u));
        const bool sel = valid && (k > t || (is_tie && rank < tie_take));
        if (valid && op.write(i, e, k, sel)) ++n;
        ties += tile;
    }
    n = st_warp_sum_u32(n);
    if (lane == 0 && n) atomicAdd(&total, n);
    __syncthreads();
    if (threadIdx.x == 0) out[blockIdx.x] = total;
}
