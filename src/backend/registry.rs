//! The kernel registry: every `__global__` kernel in `kernels/*.cu`, the file (family) it lives
//! in, and the CPU twin with the same semantics, `pub fn <name>` in `src/backend/cpu/<family>.rs`.
//! `tests/registry.rs` checks this table against the `.cu` sources, the CPU twins and the
//! parity tests (`fn parity_<name>` in `tests/parity/<family>.rs`), in both directions.

/// One CUDA kernel and where its CPU twin lives.
#[derive(Clone, Copy, Debug)]
pub struct KernelInfo {
    /// The family: `kernels/<family>.cu`, `src/backend/cpu/<family>.rs`, `src/backend/cuda/<family>.rs`.
    pub family: &'static str,
    /// The `__global__` name, also the CPU twin's function name.
    pub name: &'static str,
    /// What it computes.
    pub doc: &'static str,
}

const fn k(family: &'static str, name: &'static str, doc: &'static str) -> KernelInfo {
    KernelInfo { family, name, doc }
}

/// Every kernel of the engine.
pub const KERNELS: &[KernelInfo] = &[
    k(
        "conv",
        "im2col_f32",
        "one image [c_in,h,w] -> columns [c_in*k*k, h_out*w_out], zeros for padding",
    ),
    k(
        "conv",
        "col2im_f32",
        "columns -> one image, summing overlapping contributions (overwrites the image)",
    ),
    k("conv", "bias_add_f32", "y[n,c,s] += bias[c]"),
    k(
        "conv",
        "channel_sum_f32",
        "out[c] = sum over n and s of x[n,c,s]",
    ),
    k(
        "spconv",
        "spconv_fwd_f32",
        "sparse conv forward, CSR weight: one thread per output, its row's entries in order",
    ),
    k(
        "spconv",
        "spconv_bwd_input_f32",
        "sparse conv dx from the transposed CSR: one thread per dx, r, s, then entries in order",
    ),
    k(
        "spconv",
        "spconv_bwd_weight_f32",
        "sparse conv weight gradient at the CSR entries (SDDMM): one warp per entry, fixed tree",
    ),
    k(
        "spconv",
        "spconv_scatter_f32",
        "dense [rows,cols] of a CSR (last entry per position, 0 elsewhere), one thread each",
    ),
    k(
        "spconv",
        "csr_count_f32",
        "active mask entries per line (CSR rows, or columns for the transpose), one thread each",
    ),
    k(
        "spconv",
        "csr_scan_u32",
        "row offsets: exclusive scan of the line counts in one block",
    ),
    k(
        "spconv",
        "csr_fill_f32",
        "CSR columns and values of each line in ascending order, one thread per line",
    ),
    k(
        "spconv",
        "csr_gather_f32",
        "CSR values regathered from the weight at a kept structure, one thread per line",
    ),
    k(
        "matmul",
        "sgemm_f32",
        "row-major C[m,n] = alpha*op(A)·op(B) + beta*C with transpose flags and leading dims",
    ),
    k(
        "batchnorm",
        "bn_stats_f32",
        "per-channel mean and biased variance of x[n,c,s]",
    ),
    k(
        "batchnorm",
        "bn_invstd_f32",
        "invstd[c] = 1/sqrt(var[c] + eps)",
    ),
    k(
        "batchnorm",
        "bn_fwd_f32",
        "y = (x - mean[c]) * invstd[c] * gamma[c] + beta[c]",
    ),
    k(
        "batchnorm",
        "bn_bwd_reduce_f32",
        "per channel: sum(dy) and sum(dy * xhat)",
    ),
    k(
        "batchnorm",
        "bn_bwd_dx_f32",
        "dx = gamma*invstd/(n*s) * (n*s*dy - sum_dy - xhat*sum_dy_xhat)",
    ),
    k("elementwise", "relu_fwd_f32", "y = max(x, 0)"),
    k("elementwise", "relu_bwd_f32", "dx = y > 0 ? dy : 0"),
    k("elementwise", "add_f32", "c = a + b"),
    k("elementwise", "mul_f32", "c = a * b"),
    k("elementwise", "axpby_f32", "y = a*x + b*y"),
    k(
        "elementwise",
        "sum_f32",
        "out[0] = sum of x (deterministic order on each backend)",
    ),
    k(
        "pool",
        "maxpool2d_fwd_f32",
        "max over each window (padding is -inf) and its first argmax h*w_in+w",
    ),
    k("pool", "maxpool2d_bwd_f32", "dx[argmax] += dy"),
    k(
        "pool",
        "avgpool2d_fwd_f32",
        "mean over each k*k window, padding counted as zeros",
    ),
    k(
        "pool",
        "avgpool2d_bwd_f32",
        "dx += dy / (k*k) over each window",
    ),
    k(
        "loss",
        "log_softmax_ce_fwd_f32",
        "row-wise log-softmax of logits[n,k] and per-row NLL of the label",
    ),
    k(
        "loss",
        "log_softmax_ce_bwd_f32",
        "dlogits = scale * (exp(logprobs) - onehot(label))",
    ),
    k(
        "loss",
        "ce_correct_f32",
        "count += rows of logprobs[n,k] whose arg-max (first of ties) is the label",
    ),
    k(
        "optim",
        "sgd_step_f32",
        "fused SGD: L2, momentum, optional Nesterov, update, then w,m *= mask",
    ),
    k(
        "select",
        "select_hist_f32",
        "radix-select pass: histogram of one digit of the selection keys matching a prefix",
    ),
    k(
        "select",
        "select_count_f32",
        "per-segment count of selection keys in [lo, hi] (ties at the threshold, nonzeros)",
    ),
    k(
        "select",
        "select_apply_f32",
        "masked top-k update: keys > T plus the first ties in flat order; prune or grow",
    ),
    k(
        "superpose",
        "superpose_hist_f32",
        "radix-select pass over the keys |A| of the averaged values A (CIA/CIMA/CAA) of S and W",
    ),
    k(
        "superpose",
        "superpose_count_f32",
        "per-segment count of averaged-value keys in [lo, hi] (ties at the threshold)",
    ),
    k(
        "superpose",
        "superpose_apply_f32",
        "fused write: S = A at keys > T plus the first ties in flat order, else 0; CAA counts",
    ),
];

/// The kernel families (one `.cu` file each).
pub fn families() -> Vec<&'static str> {
    let mut f: Vec<&'static str> = KERNELS.iter().map(|k| k.family).collect();
    f.dedup();
    f
}

/// Kernel names of one family.
pub fn kernels_of(family: &str) -> Vec<&'static str> {
    KERNELS
        .iter()
        .filter(|k| k.family == family)
        .map(|k| k.name)
        .collect()
}
