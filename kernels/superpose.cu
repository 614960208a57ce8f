// superpose.cu: Sup-tickets superposition (SPEC §5 d-e): averaging a ticket W_k into the running
// superposed ticket S and re-pruning S to its target count, fused. CPU twins:
// src/backend/cpu/superpose.rs; the host logic that drives these kernels: src/backend/radix.rs.
// The loader prepends common.cuh and radix.cuh (the three passes, over the SuperposeOp below).
//
// Every position i gets the averaged value A_i (st_superpose_value: CIA / CIMA as a linear
// combination, CAA as a per-connection running mean with an activation count), computed on the
// fly from (S, W, mask, count) and never stored until the last pass, and the key
// 1 + bits(|A_i|), the key of the select family with every position eligible. Keeping the k
// largest |A| (ties to the lower flat index) is then the select family's radix select:
//   1. superpose_hist_f32, three times (11 + 11 + 10 bits, most significant digit first): the
//      host walks each small histogram and fixes one digit of T, the k-th largest key;
//   2. superpose_count_f32 (only when the ties at T are split): keys equal to T per segment;
//      the host scans them into exclusive per-segment offsets across the group's tensors;
//   3. superpose_apply_f32: writes S_i = A_i where the key is > T or is one of the first
//      `tie_take` keys equal to T in flat order, 0 elsewhere, and the CAA count.
// So a tensor is read four or five times and written once, whatever the number of tickets.
// Arithmetic uses the _rn intrinsics so that NVRTC cannot contract a*b + c into an FMA: the
// averaged values, hence the keys and the selection, are bit-identical to the CPU twins.

// Mirrors `SuperposeParams` in src/backend/mod.rs field for field (#[repr(C)]: 3 x f32, u32).
struct SuperposeParams {
    float a, b, d;
    unsigned int method;  // 0: A = (a*S + b*W) / d; 1: CAA
};

// The averaged value of one position and its new activation count (twin: superpose_value).
// method 0: A = (a*S + b*W) / d, count unchanged. method 1 (CAA): active (mask != 0, or no
// mask): n' = n + 1 and A = (n*S + W) / n'; inactive: A = S, n' = n.
__device__ __forceinline__ float st_superpose_value(float s, float w, float mk, float n,
                                                    const SuperposeParams& p, float* n_out) {
    if (p.method == 1u) {
        if (mk != 0.0f) {
            const float n1 = __fadd_rn(n, 1.0f);
            *n_out = n1;
            return __fdiv_rn(__fadd_rn(__fmul_rn(n, s), w), n1);
        }
        *n_out = n;
        return s;
    }
    *n_out = n;
    return __fdiv_rn(__fadd_rn(__fmul_rn(p.a, s), __fmul_rn(p.b, w)), p.d);
}

// The selection key of an averaged value: 1 + the bits of |a| (twin: select::abs_key).
__device__ __forceinline__ unsigned int st_superpose_key(float a) {
    return (__float_as_uint(a) & 0x7fffffffu) + 1u;
}

// The averaged value of position i (mask and count read only when present and needed).
__device__ __forceinline__ float st_superpose_at(const float* s, const float* w, const float* mask,
                                                 const float* count, int has_mask, int has_count,
                                                 const SuperposeParams& p, i64 i, float* n_out) {
    const float mk = has_mask ? mask[i] : 1.0f;
    const float n = has_count ? count[i] : 0.0f;
    return st_superpose_value(s[i], w[i], mk, n, p, n_out);
}

// The superpose family's keys and write for the radix passes (radix.cuh): the key of position
// i is that of its averaged value A_i, which the apply pass writes (with the CAA count). mask
// is read only with has_mask, count only with has_count; s and count_out are written by the
// apply pass only.
struct SuperposeOp {
    const float* s_in;
    const float* w;
    const float* mask;
    const float* count;
    int has_mask;
    int has_count;
    SuperposeParams p;
    float* s;
    float* count_out;
    struct Elem {
        float a, n1;
    };
    __device__ __forceinline__ unsigned int key_of(i64 i, Elem& e) const {
        e.a = st_superpose_at(s_in, w, mask, count, has_mask, has_count, p, i, &e.n1);
        return st_superpose_key(e.a);
    }
    // s[i] = selected ? A_i : 0 and, with has_count, the new count. True when selected.
    __device__ __forceinline__ bool write(i64 i, const Elem& e, unsigned int, bool sel) const {
        s[i] = sel ? e.a : 0.0f;
        if (has_count) count_out[i] = e.n1;
        return sel;
    }
};

// hist[(key >> shift) & (2^bits - 1)] += 1 for every key of the averaged values whose bits
// under prefix_mask equal prefix (accumulates into hist, which the host zeroes; the tensors of
// a group share it). mask is read only with has_mask, count only with has_count (CAA).
// bits <= 11. Grid-stride; any grid size.
extern "C" __global__ void superpose_hist_f32(const float* __restrict__ s,
                                              const float* __restrict__ w,
                                              const float* __restrict__ mask,
                                              const float* __restrict__ count, int has_mask,
                                              int has_count, SuperposeParams p,
                                              unsigned int prefix, unsigned int prefix_mask,
                                              int shift, int bits,
                                              unsigned int* __restrict__ hist, i64 len) {
    const SuperposeOp op = {s, w, mask, count, has_mask, has_count, p, nullptr, nullptr};
    st_radix_hist(op, prefix, prefix_mask, shift, bits, hist, len);
}

// counts[b] = number of keys of the averaged values in [lo, hi] in segment b = [b*len/G,
// (b+1)*len/G) of the G = gridDim.x segments (one block each).
extern "C" __global__ void superpose_count_f32(const float* __restrict__ s,
                                               const float* __restrict__ w,
                                               const float* __restrict__ mask,
                                               const float* __restrict__ count, int has_mask,
                                               int has_count, SuperposeParams p,
                                               unsigned int lo, unsigned int hi,
                                               unsigned int* __restrict__ counts, i64 len) {
    const SuperposeOp op = {s, w, mask, count, has_mask, has_count, p, nullptr, nullptr};
    st_radix_count(op, lo, hi, counts, len);
}

// The fused write, one block per segment (the same G segments as superpose_count_f32): a key
// equal to t gets the rank tie_before[b] + (ties earlier in the segment); selected: key > t, or
// key == t and rank < tie_take. Every position gets s[i] = selected ? A_i : 0 and, with
// has_count, count[i] = its new activation count. kept[b] = positions of segment b selected.
// blockDim.x must be a multiple of 32 (<= 1024).
extern "C" __global__ void superpose_apply_f32(float* s, const float* w, const float* mask,
                                               float* count, int has_mask, int has_count,
                                               SuperposeParams p, unsigned int t,
                                               const unsigned int* tie_before,
                                               unsigned int tie_take, unsigned int* kept,
                                               i64 len) {
    const SuperposeOp op = {s, w, mask, count, has_mask, has_count, p, s, count};
    st_radix_apply(op, t, tie_before, tie_take, kept, len);
}
