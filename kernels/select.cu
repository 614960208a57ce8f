// select.cu: deterministic masked top-k for pruning and growth (SPEC §3). CPU twins and the
// host logic that drives these kernels: src/backend/cpu/select.rs. common.cuh is prepended by
// the loader.
//
// Every position i of a tensor gets a u32 key: 0 when it is not eligible (by its mask value),
// else 1 + an order-preserving image of its score: the bits of |x| (non-negative floats order
// like their bit patterns) or 31 bits of a counter-based hash of (seed, base + i). Selecting
// "the k best" = the k largest keys, ties to the lower flat index, identically on CPU and GPU:
//   1. select_hist_f32, three times (11 + 11 + 10 bits, most significant digit first): the
//      host walks each small histogram and fixes one digit of T, the k-th largest key;
//   2. select_count_f32: keys equal to T per segment; the host scans them into exclusive
//      per-segment offsets across the group's tensors;
//   3. select_apply_f32: keys > T, and the first `tie_take` keys equal to T in flat order
//      (ranked in order inside each segment), are selected, and the action is applied.
// Counts use integer atomics only, whose sums do not depend on the order of the additions, so
// every result is deterministic.

// Mirrors `SelectKey` in src/backend/mod.rs field for field (#[repr(C)]: u64, i64, u32, u32).
struct SelectKey {
    unsigned long long seed;
    long long base;
    unsigned int score;     // 0: |x|, 1: hash of (seed, base + i)
    unsigned int eligible;  // 0: every position, 1: mask != 0, 2: mask == 0
};

// 1 + the top 31 bits of SplitMix64 at counter gi of stream seed (twin: hash_key).
__device__ __forceinline__ unsigned int st_hash_key(unsigned long long seed,
                                                    unsigned long long gi) {
    unsigned long long z = seed + (gi + 1ull) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (unsigned int)(z >> 33) + 1u;
}

// The key of a position with score value s and mask value mk (twin: select_key).
__device__ __forceinline__ unsigned int st_select_key(float s, float mk, const SelectKey& k,
                                                      i64 i) {
    const bool eligible = k.eligible == 0 ? true : (k.eligible == 1 ? mk != 0.0f : mk == 0.0f);
    if (!eligible) return 0u;
    if (k.score == 1u) return st_hash_key(k.seed, (unsigned long long)(k.base + i));
    return (__float_as_uint(s) & 0x7fffffffu) + 1u;
}

// Sum of an unsigned `v` over the 32 lanes of a warp; lane 0 holds the result.
__device__ __forceinline__ unsigned int st_warp_sum_u32(unsigned int v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    return v;
}

// hist[(key >> shift) & (2^bits - 1)] += 1 for every key whose bits under prefix_mask equal
// prefix (accumulates into hist, which the host zeroes; several tensors may share it). The
// score is not read with a hash key. bits <= 11. Grid-stride; any grid size.
extern "C" __global__ void select_hist_f32(const float* __restrict__ score,
                                           const float* __restrict__ mask, SelectKey key,
                                           unsigned int prefix, unsigned int prefix_mask,
                                           int shift, int bits, unsigned int* __restrict__ hist,
                                           i64 len) {
    __shared__ unsigned int h[2048];
    const unsigned int nb = 1u << bits;
    for (unsigned int b = threadIdx.x; b < nb; b += blockDim.x) h[b] = 0u;
    __syncthreads();
    GRID_STRIDE(i, len) {
        const float s = key.score == 1u ? 0.0f : score[i];
        const unsigned int k = st_select_key(s, mask[i], key, i);
        if ((k & prefix_mask) == prefix) atomicAdd(&h[(k >> shift) & (nb - 1u)], 1u);
    }
    __syncthreads();
    for (unsigned int b = threadIdx.x; b < nb; b += blockDim.x) {
        const unsigned int c = h[b];
        if (c) atomicAdd(&hist[b], c);
    }
}

// counts[b] = number of keys in [lo, hi] in segment b = [b*len/G, (b+1)*len/G) of the G =
// gridDim.x segments (one block each).
extern "C" __global__ void select_count_f32(const float* __restrict__ score,
                                            const float* __restrict__ mask, SelectKey key,
                                            unsigned int lo, unsigned int hi,
                                            unsigned int* __restrict__ counts, i64 len) {
    __shared__ unsigned int total;
    if (threadIdx.x == 0) total = 0u;
    __syncthreads();
    const i64 g = gridDim.x;
    const i64 begin = (i64)blockIdx.x * len / g, end = ((i64)blockIdx.x + 1) * len / g;
    unsigned int c = 0u;
    for (i64 i = begin + threadIdx.x; i < end; i += blockDim.x) {
        const float s = key.score == 1u ? 0.0f : score[i];
        const unsigned int k = st_select_key(s, mask[i], key, i);
        c += (k >= lo && k <= hi) ? 1u : 0u;
    }
    c = st_warp_sum_u32(c);
    if ((threadIdx.x & 31) == 0 && c) atomicAdd(&total, c);
    __syncthreads();
    if (threadIdx.x == 0) counts[blockIdx.x] = total;
}

// Selection and update, one block per segment (the same G segments as select_count_f32). The
// block walks its segment in order, blockDim.x elements at a time; a key equal to t gets the
// rank tie_before[b] + (ties earlier in the segment), found with a warp ballot and a scan of
// the per-warp counts. Selected: key > t, or key == t and rank < tie_take.
// action 0 (keep/prune): an eligible (key != 0) element that is not selected gets mask 0,
// weight 0 and momentum 0. action 1 (grow): a selected element gets mask 1, weight 0 and
// momentum 0. changed[b] = elements of segment b rewritten. The scores are read from w when
// score_is_w != 0 (score is then not read); m is touched only when has_m != 0.
// blockDim.x must be a multiple of 32 (at most 1024).
extern "C" __global__ void select_apply_f32(const float* score, float* w, float* mask, float* m,
                                            int score_is_w, int has_m, SelectKey key,
                                            unsigned int t, const unsigned int* tie_before,
                                            unsigned int tie_take, int action,
                                            unsigned int* changed, i64 len) {
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
        unsigned int k = 0u;
        if (valid) {
            const float s = key.score == 1u ? 0.0f : (score_is_w ? w[i] : score[i]);
            k = st_select_key(s, mask[i], key, i);
        }
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
        const bool rewrite = action == 0 ? (valid && k != 0u && !sel) : sel;
        if (rewrite) {
            w[i] = 0.0f;
            mask[i] = action == 0 ? 0.0f : 1.0f;
            if (has_m) m[i] = 0.0f;
            ++n;
        }
        ties += tile;
    }
    n = st_warp_sum_u32(n);
    if (lane == 0 && n) atomicAdd(&total, n);
    __syncthreads();
    if (threadIdx.x == 0) changed[blockIdx.x] = total;
}
