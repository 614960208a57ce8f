//! The [`Backend`] trait: one method per kernel family operation, implemented by the rayon CPU
//! backend ([`cpu`]) and the CUDA backend (`cuda`, NVRTC-compiled kernels in `kernels/`).
//!
//! Conventions shared by both implementations (and checked by the parity tests):
//! - tensors are contiguous row-major f32; images are NCHW; linear weights are `[out, in]`;
//! - class labels are passed as an f32 tensor of shape `[n]` holding exact integers;
//! - max-pool indices are f32 positions `h * w_in + w` inside each (n, c) input plane, and a
//!   tie inside a window goes to the first maximum in row-major window order;
//! - batch norm treats a tensor `[n, c, rest...]` as n × c × s with s = product(rest), so the same
//!   kernels serve BatchNorm2d (`[n,c,h,w]`) and BatchNorm1d (`[n,c]`); variance is biased (÷ n·s)
//!   in the normalisation, as in PyTorch.
//!
//! Inputs are checked once for every backend by `check` (src/backend/check.rs: shapes,
//! convolution and pooling geometry, class labels), which each backend calls before it
//! dispatches; a backend itself checks only memory safety (the device of each tensor, buffer
//! lengths against what its kernels read and write).

mod check;
pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod fused;
mod params;
pub mod radix;
pub mod registry;
mod sparse_operand;
pub mod sparse_policy;
mod sparse_weight;

pub(crate) use check::labels as check_labels;
pub use fused::{BnAct, BnActBackward, BnActSaved};
pub use params::{Conv2dParams, Pool2dParams, SgdParams};
pub use sparse_operand::{
    CsrPlan, CsrPlanRepr, DeviceCsr, HostCsrPlan, SparseMatrix, SparseOperand,
};
pub use sparse_weight::{check_csr, SparseWeight};

use crate::device::Device;
use crate::error::Result;
use crate::tensor::Tensor;

/// What the training-mode batch-norm forward pass returns.
#[derive(Clone, Debug)]
pub struct BnForward {
    /// Normalised, scaled and shifted output, same shape as the input.
    pub y: Tensor,
    /// Per-channel batch mean, shape [c].
    pub mean: Tensor,
    /// Per-channel biased batch variance, shape [c].
    pub var: Tensor,
    /// Per-channel 1 / sqrt(var + eps), shape [c] (saved for the backward pass).
    pub invstd: Tensor,
}

/// What the batch-norm backward pass returns.
#[derive(Clone, Debug)]
pub struct BnBackward {
    /// Gradient with respect to the input.
    pub dx: Tensor,
    /// Gradient with respect to gamma, shape [c].
    pub dgamma: Tensor,
    /// Gradient with respect to beta, shape [c].
    pub dbeta: Tensor,
}

/// Every kernel the engine runs. Each method validates shapes and devices and returns a
/// clear error (naming the argument) instead of panicking.
pub trait Backend: Send + Sync {
    /// `cpu` or `cuda:N`.
    fn name(&self) -> String;
    /// The device this backend runs on.
    fn device(&self) -> Device;

    // ---- memory -------------------------------------------------------------------------
    /// A tensor of zeros.
    fn zeros(&self, shape: &[usize]) -> Result<Tensor>;
    /// Copies host data into a new tensor on this device.
    fn upload(&self, data: &[f32], shape: &[usize]) -> Result<Tensor>;
    /// Copies a tensor of this device to the host.
    fn download(&self, t: &Tensor) -> Result<Vec<f32>>;

    // ---- conv (kernels/conv.cu, cpu/conv.rs) ---------------------------------------------
    /// y[n, c_out, h_out, w_out] = conv(x, w) + bias.
    fn conv2d_fwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        p: &Conv2dParams,
    ) -> Result<Tensor>;
    /// dx = transposed convolution of dy with w.
    fn conv2d_bwd_input(&self, dy: &Tensor, w: &Tensor, p: &Conv2dParams) -> Result<Tensor>;
    /// dw = correlation of x with dy, summed over the batch. With a mask, entries where the
    /// mask is 0 may be left at 0 (the dense gradient is returned when `mask` is None).
    fn conv2d_bwd_weight(
        &self,
        x: &Tensor,
        dy: &Tensor,
        p: &Conv2dParams,
        mask: Option<&Tensor>,
    ) -> Result<Tensor>;
    /// Sum over every dimension except dimension 1: [n, c, rest...] -> [c] (bias gradients).
    fn channel_sum(&self, x: &Tensor) -> Result<Tensor>;

    // ---- spconv (kernels/spconv.cu, cpu/spconv.rs) -------------------------------------------
    /// y = conv(x, w) + bias with the weight in CSR form: only the active weights are read. A
    /// linear layer is the 1×1 case on [n, in, 1, 1].
    fn spconv_fwd(
        &self,
        x: &Tensor,
        w: SparseOperand<'_>,
        bias: Option<&Tensor>,
        p: &Conv2dParams,
    ) -> Result<Tensor>;
    /// dx of the sparse conv; `wt` is the transposed CSR (rows = im2col rows, columns = c_out).
    fn spconv_bwd_input(
        &self,
        dy: &Tensor,
        wt: SparseOperand<'_>,
        p: &Conv2dParams,
    ) -> Result<Tensor>;
    /// The weight gradient at the active positions of `w` only, returned dense-shaped
    /// [c_out, c_in, k_h, k_w] with zeros at the inactive positions (an SDDMM).
    fn spconv_bwd_weight(
        &self,
        x: &Tensor,
        dy: &Tensor,
        w: SparseOperand<'_>,
        p: &Conv2dParams,
    ) -> Result<Tensor>;
    /// The CSR structure of the active (nonzero, NaN included) positions of `mask` viewed as
    /// [rows, cols], which has `nnz` of them ([`Backend::count_nonzero`]), built where the mask
    /// lives (on the device: no copy to the host). The transpose's structure is built on first
    /// use by [`Backend::csr_gather`].
    fn csr_plan(&self, mask: &Tensor, rows: usize, cols: usize, nnz: usize) -> Result<CsrPlan>;
    /// The CSR of `w` at `plan`'s entries (of its transpose when `transposed`): the structure
    /// is reused, only the values are gathered from `w`. Equal to the CSR built from `w` and
    /// the mask afresh.
    fn csr_gather(&self, plan: &CsrPlan, w: &Tensor, transposed: bool) -> Result<SparseMatrix>;

    // ---- matmul (kernels/matmul.cu, cpu/matmul.rs) -------------------------------------------
    /// y[n, out] = x[n, in] · w[out, in]^T + bias[out].
    fn linear_fwd(&self, x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Tensor>;
    /// dx[n, in] = dy[n, out] · w[out, in].
    fn linear_bwd_input(&self, dy: &Tensor, w: &Tensor) -> Result<Tensor>;
    /// dw[out, in] = dy^T · x (masked entries may be left at 0 when a mask is given).
    fn linear_bwd_weight(&self, x: &Tensor, dy: &Tensor, mask: Option<&Tensor>) -> Result<Tensor>;

    // ---- batchnorm (kernels/batchnorm.cu, cpu/batchnorm.rs) ----------------------------------
    /// Training-mode batch norm with batch statistics.
    fn batchnorm_fwd_train(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        eps: f32,
    ) -> Result<BnForward>;
    /// Eval-mode batch norm with the given running statistics.
    fn batchnorm_fwd_eval(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        mean: &Tensor,
        var: &Tensor,
        eps: f32,
    ) -> Result<Tensor>;
    /// Backward of training-mode batch norm (batch statistics depend on x).
    fn batchnorm_bwd(
        &self,
        dy: &Tensor,
        x: &Tensor,
        gamma: &Tensor,
        mean: &Tensor,
        invstd: &Tensor,
    ) -> Result<BnBackward>;

    /// Training-mode batch norm fused with what follows it: y = bn(x), plus `residual` when
    /// given, then ReLU when `relu` (mean, var and invstd as [`Backend::batchnorm_fwd_train`]).
    /// Values equal the composition of the unfused ops, which is the default implementation.
    fn bn_act_fwd_train(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        residual: Option<&Tensor>,
        relu: bool,
        eps: f32,
    ) -> Result<BnForward> {
        fused::bn_act_fwd_composed(self, x, gamma, beta, residual, relu, eps)
    }
    /// Backward of [`Backend::bn_act_fwd_train`] given dy, the gradient of its output. Values
    /// equal the composition of the unfused ops, which is the default implementation.
    fn bn_act_bwd(&self, dy: &Tensor, saved: &BnActSaved, act: BnAct) -> Result<BnActBackward> {
        fused::bn_act_bwd_composed(self, dy, saved, act)
    }

    // ---- elementwise (kernels/elementwise.cu, cpu/elementwise.rs) ----------------------------
    /// max(x, 0).
    fn relu_fwd(&self, x: &Tensor) -> Result<Tensor>;
    /// dy where y > 0, else 0 (y is the forward output).
    fn relu_bwd(&self, dy: &Tensor, y: &Tensor) -> Result<Tensor>;
    /// a + b (same shapes).
    fn add(&self, a: &Tensor, b: &Tensor) -> Result<Tensor>;
    /// a ⊙ b (same shapes).
    fn mul(&self, a: &Tensor, b: &Tensor) -> Result<Tensor>;
    /// y = a·x + b·y in place (same shapes).
    fn axpby(&self, a: f32, x: &Tensor, b: f32, y: &mut Tensor) -> Result<()>;
    /// Copies the elements of `x` into `dst[at..at + x.numel()]` (flat), where the tensors
    /// live: e.g. a step's loss into the epoch's record of losses, read back once.
    fn copy_into(&self, x: &Tensor, dst: &mut Tensor, at: usize) -> Result<()>;

    // ---- pooling (kernels/pool.cu, cpu/pool.rs) ----------------------------------------------
    /// Max-pool; returns (y, argmax positions inside each input plane, as f32).
    fn maxpool2d_fwd(&self, x: &Tensor, p: &Pool2dParams) -> Result<(Tensor, Tensor)>;
    /// Scatters dy to the argmax positions (adding where windows overlap).
    fn maxpool2d_bwd(&self, dy: &Tensor, idx: &Tensor, p: &Pool2dParams) -> Result<Tensor>;
    /// Average pool (padding counts as zeros; divisor k*k).
    fn avgpool2d_fwd(&self, x: &Tensor, p: &Pool2dParams) -> Result<Tensor>;
    /// Backward of the average pool.
    fn avgpool2d_bwd(&self, dy: &Tensor, p: &Pool2dParams) -> Result<Tensor>;

    // ---- loss (kernels/loss.cu, cpu/loss.rs) -------------------------------------------------
    /// Row-wise log-softmax of logits [n, k] and the mean negative log-likelihood of `labels`.
    /// Returns (loss of shape [1], log-probabilities [n, k]). A label that is not a class index
    /// in [0, k) is an error on the CPU backend (labels live on the host) and a NaN loss on a
    /// device, which does not read labels back: validate them before the upload, as
    /// `Batch::to_tensors` does.
    fn cross_entropy_fwd(&self, logits: &Tensor, labels: &Tensor) -> Result<(Tensor, Tensor)>;
    /// d(scale · mean NLL)/d logits = scale · (softmax − onehot) / n.
    fn cross_entropy_bwd(&self, logprobs: &Tensor, labels: &Tensor, scale: f32) -> Result<Tensor>;
    /// Adds to `count` (shape [1], on this backend) the number of rows of `logprobs` [n, k]
    /// whose arg-max (the first of equal maxima) is the row's label: the training accuracy
    /// counted where the log-probabilities live, so only the count needs to leave the device.
    fn count_correct(&self, logprobs: &Tensor, labels: &Tensor, count: &mut Tensor) -> Result<()>;

    // ---- optimizer (kernels/optim.cu, cpu/optim.rs) ------------------------------------------
    /// One fused SGD step on `w` and its momentum buffer `m`, then w *= mask and m *= mask.
    fn sgd_step(
        &self,
        w: &mut Tensor,
        g: &Tensor,
        m: &mut Tensor,
        mask: Option<&Tensor>,
        p: &SgdParams,
    ) -> Result<()>;

    // ---- select (kernels/select.cu, cpu/select.rs) -------------------------------------------
    /// Number of nonzero entries of each tensor (NaN counts as nonzero, -0.0 does not). Exact
    /// for any size; a reduction on the device, only the counts come back.
    fn count_nonzero(&self, xs: &[&Tensor]) -> Result<Vec<usize>>;
    /// Deterministic masked top-k (docs/computation.md, Methods), group by group: among the group's
    /// eligible positions (active ones for [`SelectAction::Keep`], inactive ones for
    /// [`SelectAction::Grow`]) select the `k` best, ordered by (score descending, flat index in the
    /// concatenation of the group's targets ascending), then apply the action. `Keep` keeps min(k,
    /// eligible) positions; `Grow` errors when a group has fewer than `k` eligible positions, so
    /// growth is exact. Returns, per group and per target, how many positions changed (pruned for
    /// `Keep`, grown for `Grow`).
    fn select_update(
        &self,
        groups: &mut [SelectGroup<'_>],
        action: SelectAction,
    ) -> Result<Vec<Vec<usize>>>;

    // ---- superpose (kernels/superpose.cu, cpu/superpose.rs) ----------------------------------
    /// Sup-tickets superposition (docs/computation.md, Sup-tickets), group by group, fused: every
    /// position of the group's targets gets the averaged value A (see [`SuperposeParams`]) of its
    /// running superposed weight `s`, the ticket's weight `w` (and, for CAA, its mask and
    /// activation count); then `s` keeps A at the `k` positions of largest |A| (ties to the lower
    /// flat index in the concatenation of the group's targets, as [`Backend::select_update`]) and
    /// gets 0 everywhere else, and the CAA count is updated. A is never stored before the final
    /// write: a few read passes find the threshold, one pass writes. Returns, per group and per
    /// target, how many positions were kept (they add up to the group's `k`).
    fn superpose_update(
        &self,
        groups: &mut [SuperposeGroup<'_>],
        p: &SuperposeParams,
    ) -> Result<Vec<Vec<usize>>>;
}

// ---- selection types (prune and grow) -----------------------------------------------------------

/// How a selection scores an element; the kernels turn a score into a u32 key that orders the
/// same way (see `kernels/select.cu`), and key 0 marks a position that cannot be selected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Score {
    /// |x| of the target's score tensor (of its weight when it has none). Non-negative floats
    /// order like their bit patterns; a NaN ranks above +inf.
    Abs,
    /// A counter-based hash of (seed, flat index in the group), uniform in [0, 1): a uniformly
    /// random selection that is identical on every backend.
    Hash(u64),
}

/// What [`Backend::select_update`] does with the selection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectAction {
    /// Prune: among active positions (mask ≠ 0) keep the k best (all of them when fewer than k
    /// are active); every other active position gets mask 0, weight 0 and momentum 0.
    Keep,
    /// Grow: among inactive positions (mask = 0) activate the k best: mask 1, weight 0 and
    /// momentum 0.
    Grow,
}

/// One tensor taking part in a selection: its scores, and the state the action rewrites.
#[derive(Debug)]
pub struct SelectTarget<'a> {
    /// The scores (same shape as the weight); `None` scores by the weight itself (magnitude
    /// pruning). Not read with [`Score::Hash`].
    pub score: Option<&'a Tensor>,
    /// The weight.
    pub weight: &'a mut Tensor,
    /// The 0/1 mask (same shape).
    pub mask: &'a mut Tensor,
    /// The momentum buffer (same shape), if the optimizer has created one.
    pub momentum: Option<&'a mut Tensor>,
}

/// Tensors that compete for one top-k: all maskable tensors for global pruning, one tensor per
/// group for per-layer pruning and growth.
#[derive(Debug)]
pub struct SelectGroup<'a> {
    /// The tensors, in flat-index order (ties go to the earlier tensor, then the lower index).
    pub targets: Vec<SelectTarget<'a>>,
    /// How many positions to select.
    pub k: usize,
    /// How positions are scored.
    pub score: Score,
}

/// The key parameters of one tensor in the select kernels; mirrors `struct SelectKey` in
/// `kernels/select.cu` field for field.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SelectKey {
    /// Seed of the hash score.
    pub seed: u64,
    /// Flat index of the tensor's first element in its group (hash score input).
    pub base: i64,
    /// 0: |x|; 1: hash of (seed, base + i).
    pub score: u32,
    /// 0: every position; 1: positions with mask ≠ 0; 2: positions with mask = 0.
    pub eligible: u32,
}

// ---- superposition types (Sup-tickets) ----------------------------------------------------------

/// How [`Backend::superpose_update`] averages; mirrors `struct SuperposeParams` in
/// `kernels/superpose.cu` field for field.
///
/// - `method` 0 (CIA, CIMA): A = (a·S + b·W) / d. CIA for ticket k: a = k, b = 1, d = k + 1
///   (Eq. 4); CIMA: a = β, b = 1 − β, d = 1.
/// - `method` 1 (CAA): at an active position (mask ≠ 0, or no mask) n' = n + 1 and
///   A = (n·S + W) / n' (the running mean over the tickets where the connection was active);
///   at an inactive one A = S and n' = n. `a`, `b`, `d` are not read.
///
/// Products, sums and the quotient are each rounded once (no fused multiply-add), on both
/// backends, so the selection is identical.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SuperposeParams {
    /// Weight of the running superposed value S (method 0).
    pub a: f32,
    /// Weight of the ticket's value W (method 0).
    pub b: f32,
    /// Divisor (method 0).
    pub d: f32,
    /// 0: linear combination (CIA, CIMA); 1: connection-aware average (CAA).
    pub method: u32,
}

impl SuperposeParams {
    /// CIA for ticket `k` ≥ 1: S_k = (k·S_{k−1} + W_k) / (k + 1).
    pub fn cia(k: usize) -> SuperposeParams {
        SuperposeParams {
            a: k as f32,
            b: 1.0,
            d: (k + 1) as f32,
            method: 0,
        }
    }

    /// CIMA with decay β: S_k = β·S_{k−1} + (1 − β)·W_k.
    pub fn cima(beta: f32) -> SuperposeParams {
        SuperposeParams {
            a: beta,
            b: 1.0 - beta,
            d: 1.0,
            method: 0,
        }
    }

    /// CAA: the per-connection mean over the tickets in which the connection was active.
    pub fn caa() -> SuperposeParams {
        SuperposeParams {
            a: 0.0,
            b: 0.0,
            d: 1.0,
            method: 1,
        }
    }
}

/// One tensor taking part in a superposition.
#[derive(Debug)]
pub struct SuperposeTarget<'a> {
    /// The running superposed weights S (rewritten: the re-pruned average).
    pub s: &'a mut Tensor,
    /// The ticket's weights W (same shape).
    pub w: &'a Tensor,
    /// The ticket's 0/1 mask (same shape); `None` means every position is active. Read by CAA
    /// only.
    pub mask: Option<&'a Tensor>,
    /// The per-connection activation counts (same shape, exact integers in f32); required by
    /// CAA, not read otherwise.
    pub count: Option<&'a mut Tensor>,
}

/// Tensors whose averaged values compete for one top-k: all maskable tensors for the global
/// re-pruning, one tensor per group for the layerwise one.
#[derive(Debug)]
pub struct SuperposeGroup<'a> {
    /// The tensors, in flat-index order (ties go to the earlier tensor, then the lower index).
    pub targets: Vec<SuperposeTarget<'a>>,
    /// How many positions keep their averaged value.
    pub k: usize,
}
