// select.cu: deterministic masked top-k for pruning and growth (SPEC §3). CPU twins:
// src/backend/cpu/select.rs; the host logic that drives these kernels: src/backend/radix.rs.
// The loader prepends common.cuh and radix.cuh (the three passes, over the SelectOp below).
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

// The select family's keys and action for the radix passes (radix.cuh). `score` holds the
// scores (the weights for magnitude pruning; unread with a hash key), `mask_in` the masks
// read for eligibility; w, mask and m are written by the apply pass only.
struct SelectOp {
    const float* score;
    const float* mask_in;
    float* w;
    float* mask;
    float* m;
    SelectKey key;
    int has_m;
    int action;  // 0: keep (prune the eligible positions not selected), 1: grow
    struct Elem {};
    __device__ __forceinline__ unsigned int key_of(i64 i, Elem&) const {
        const float s = key.score == 1u ? 0.0f : score[i];
        return st_select_key(s, mask_in[i], key, i);
    }
    // keep: an eligible position that is not selected gets mask 0, weight 0 and momentum 0;
    // grow: a selected position gets mask 1, weight 0 and momentum 0. True when rewritten.
    __device__ __forceinline__ bool write(i64 i, const Elem&, unsigned int k, bool sel) const {
        const bool rewrite = action == 0 ? (k != 0u && !sel) : sel;
        if (rewrite) {
            w[i] = 0.0f;
            mask[i] = action == 0 ? 0.0f : 1.0f;
            if (has_m) m[i] = 0.0f;
        }
        return rewrite;
    }
};

// hist[(key >> shift) & (2^bits - 1)] += 1 for every key whose bits under prefix_mask equal
// prefix (accumulates into hist, which the host zeroes; several tensors may share it). The
// score is not read with a hash key. bits <= 11. Grid-stride; any grid size.
extern "C" __global__ void select_hist_f32(const float* __restrict__ score,
                                           const float* __restrict__ mask, SelectKey key,
                                           unsigned int prefix, unsigned int prefix_mask,
                                           int shift, int bits, unsigned int* __restrict__ hist,
                                           i64 len) {
    const SelectOp op = {score, mask, nullptr, nullptr, nullptr, key, 0, 0};
    st_radix_hist(op, prefix, prefix_mask, shift, bits, hist, len);
}

// counts[b] = number of keys in [lo, hi] in segment b = [b*len/G, (b+1)*len/G) of the G =
// gridDim.x segments (one block each).
extern "C" __global__ void select_count_f32(const float* __restrict__ score,
                                            const float* __restrict__ mask, SelectKey key,
                                            unsigned int lo, unsigned int hi,
                                            unsigned int* __restrict__ counts, i64 len) {
    const SelectOp op = {score, mask, nullptr, nullptr, nullptr, key, 0, 0};
    st_radix_count(op, lo, hi, counts, len);
}

// Selection and update, one block per segment (the same G segments as select_count_f32): a
// key equal to t gets the rank tie_before[b] + (ties earlier in the segment); selected: key >
// t, or key == t and rank < tie_take. action 0 (keep/prune): an eligible (key != 0) element
// that is not selected gets mask 0, weight 0 and momentum 0. action 1 (grow): a selected
// element gets mask 1, weight 0 and momentum 0. changed[b] = elements of segment b rewritten.
// The scores are read from w when score_is_w != 0 (score is then not read); m is touched only
// when has_m != 0. blockDim.x must be a multiple of 32 (at most 1024).
extern "C" __global__ void select_apply_f32(const float* score, float* w, float* mask, float* m,
                                            int score_is_w, int has_m, SelectKey key,
                                            unsigned int t, const unsigned int* tie_before,
                                            unsigned int tie_take, int action,
                                            unsigned int* changed, i64 len) {
    const SelectOp op = {score_is_w ? w : score, mask, w, mask, m, key, has_m, action};
    st_radix_apply(op, t, tie_before, tie_take, changed, len);
}
