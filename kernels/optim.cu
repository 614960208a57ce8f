// optim.cu: the fused, masked SGD step. CPU twin: src/backend/cpu/optim.rs.
// common.cuh is prepended by the loader.

// Mirrors `SgdParams` in src/backend/params.rs field for field (#[repr(C)]: 3 x f32, u32).
struct SgdParams {
    float lr, momentum, weight_decay;
    unsigned int nesterov;
};

// g' = g + weight_decay*w; m = momentum*m + g'; step = nesterov ? g' + momentum*m : m;
// w = w - lr*step; then, when has_mask != 0, w *= mask and m *= mask (mask is not read
// otherwise: the host then passes any valid pointer, e.g. g's).
extern "C" __global__ void sgd_step_f32(float* __restrict__ w, const float* __restrict__ g,
                                        float* __restrict__ m, const float* __restrict__ mask,
                                        int has_mask, SgdParams p, i64 len) {
    GRID_STRIDE(i, len) {
        const float wi = w[i];
        const float gi = g[i] + p.weight_decay * wi;
        float mi = p.momentum * m[i] + gi;
        const float step = p.nesterov ? gi + p.momentum * mi : mi;
        float nw = wi - p.lr * step;
        if (has_mask) {
            const float mk = mask[i];
            nw *= mk;
            mi *= mk;
        }
        w[i] = nw;
        m[i] = mi;
    }
}
