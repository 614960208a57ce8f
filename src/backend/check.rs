//! The checked entry layer of the [`super::Backend`] operations: one shape and parameter check
//! per operation, written once and called by every backend before it dispatches (the CPU and
//! CUDA backends call `check::<operation>` first thing). A check returns the sizes the
//! operation needs. What is left to a backend is memory safety: the device of each tensor and
//! the lengths of the buffers its kernels read and write.
//!
//! Every message names the operation and the argument (`conv2d_fwd: x shape ...`).

use super::cpu::loss::label_index;
use super::{Conv2dParams, Pool2dParams, SparseOperand};
use crate::error::{Error, Result};
use crate::tensor::{numel, Tensor};

/// Errors unless `t` has exactly `shape`.
pub(crate) fn shape(t: &Tensor, shape: &[usize], op: &str, what: &str) -> Result<()> {
    if t.shape() != shape {
        return Err(Error::Shape(format!(
            "{op}: {what} shape {:?} does not match {:?}",
            t.shape(),
            shape
        )));
    }
    Ok(())
}

/// Errors unless `a` and `b` have the same shape.
pub(crate) fn same_shape(a: &Tensor, b: &Tensor, op: &str, an: &str, bn: &str) -> Result<()> {
    if a.shape() != b.shape() {
        return Err(Error::Shape(format!(
            "{op}: {an} shape {:?} differs from {bn} shape {:?}",
            a.shape(),
            b.shape()
        )));
    }
    Ok(())
}

/// `copy_into`: the range `at..at + x.numel()` lies inside `dst` (flat); returns it.
pub(crate) fn copy_into(x: &Tensor, dst: &Tensor, at: usize) -> Result<std::ops::Range<usize>> {
    let end = at.checked_add(x.numel()).filter(|&e| e <= dst.numel());
    end.map(|end| at..end).ok_or_else(|| {
        Error::Shape(format!(
            "copy_into: {} elements at offset {at} do not fit a destination of shape {:?}",
            x.numel(),
            dst.shape()
        ))
    })
}

/// Errors unless the optional `t` has `shape`.
fn optional(t: Option<&Tensor>, want: &[usize], op: &str, what: &str) -> Result<()> {
    t.map_or(Ok(()), |t| shape(t, want, op, what))
}

/// (n, c, s) of a tensor [n, c, rest...] viewed as n × c × product(rest).
pub(crate) fn ncs(x: &Tensor, op: &str) -> Result<(usize, usize, usize)> {
    match x.shape() {
        [n, c, rest @ ..] => Ok((*n, *c, numel(rest))),
        s => Err(Error::Shape(format!(
            "{op}: x must have at least 2 dimensions [n, c, ...], got {s:?}"
        ))),
    }
}

/// Errors unless every label is an integer in [0, k) (`labels` on the host).
pub(crate) fn labels(labels: &[f32], k: usize, op: &str) -> Result<()> {
    if let Some((i, &l)) = labels
        .iter()
        .enumerate()
        .find(|(_, &l)| label_index(l, k).is_none())
    {
        return Err(Error::Shape(format!(
            "{op}: labels[{i}] = {l} is not a class index in [0, {k})"
        )));
    }
    Ok(())
}

/// `conv2d_fwd(x, w, bias, p)`.
pub(crate) fn conv2d_fwd(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    p: &Conv2dParams,
) -> Result<()> {
    let op = "conv2d_fwd";
    p.check(op)?;
    shape(x, &p.x_shape(), op, "x")?;
    shape(w, &p.w_shape(), op, "weight")?;
    optional(bias, &[p.c_out as usize], op, "bias")
}

/// `conv2d_bwd_input(dy, w, p)`.
pub(crate) fn conv2d_bwd_input(dy: &Tensor, w: &Tensor, p: &Conv2dParams) -> Result<()> {
    let op = "conv2d_bwd_input";
    p.check(op)?;
    shape(dy, &p.y_shape(), op, "dy")?;
    shape(w, &p.w_shape(), op, "weight")
}

/// `conv2d_bwd_weight(x, dy, p, mask)`.
pub(crate) fn conv2d_bwd_weight(
    x: &Tensor,
    dy: &Tensor,
    p: &Conv2dParams,
    mask: Option<&Tensor>,
) -> Result<()> {
    let op = "conv2d_bwd_weight";
    p.check(op)?;
    shape(x, &p.x_shape(), op, "x")?;
    shape(dy, &p.y_shape(), op, "dy")?;
    optional(mask, &p.w_shape(), op, "mask")
}

/// `spconv_fwd(x, w, bias, p)`: `w` is the [c_out, c_in·k·k] CSR of the weight.
pub(crate) fn spconv_fwd(
    x: &Tensor,
    w: SparseOperand<'_>,
    bias: Option<&Tensor>,
    p: &Conv2dParams,
) -> Result<()> {
    let op = "spconv_fwd";
    p.check(op)?;
    shape(x, &p.x_shape(), op, "x")?;
    w.check(p.c_out as usize, p.col_rows(), op, "weight")?;
    optional(bias, &[p.c_out as usize], op, "bias")
}

/// `spconv_bwd_input(dy, wt, p)`: `wt` is the [c_in·k·k, c_out] CSR of the transposed weight.
pub(crate) fn spconv_bwd_input(dy: &Tensor, wt: SparseOperand<'_>, p: &Conv2dParams) -> Result<()> {
    let op = "spconv_bwd_input";
    p.check(op)?;
    shape(dy, &p.y_shape(), op, "dy")?;
    wt.check(p.col_rows(), p.c_out as usize, op, "transposed weight")
}

/// `spconv_bwd_weight(x, dy, w, p)`.
pub(crate) fn spconv_bwd_weight(
    x: &Tensor,
    dy: &Tensor,
    w: SparseOperand<'_>,
    p: &Conv2dParams,
) -> Result<()> {
    let op = "spconv_bwd_weight";
    p.check(op)?;
    shape(x, &p.x_shape(), op, "x")?;
    shape(dy, &p.y_shape(), op, "dy")?;
    w.check(p.c_out as usize, p.col_rows(), op, "weight")
}

/// `linear_fwd(x, w, bias)` with x [n, in], w [out, in]: returns (n, in, out).
pub(crate) fn linear_fwd(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
) -> Result<(usize, usize, usize)> {
    let op = "linear_fwd";
    let (n, d_in) = x.dims2("linear_fwd: x")?;
    let (d_out, w_in) = w.dims2("linear_fwd: weight")?;
    if w_in != d_in {
        return Err(Error::Shape(format!(
            "{op}: weight shape {:?} does not match x shape {:?} (weight must be [out, {d_in}])",
            w.shape(),
            x.shape()
        )));
    }
    optional(bias, &[d_out], op, "bias")?;
    Ok((n, d_in, d_out))
}

/// `linear_bwd_input(dy, w)` with dy [n, out], w [out, in]: returns (n, out, in).
pub(crate) fn linear_bwd_input(dy: &Tensor, w: &Tensor) -> Result<(usize, usize, usize)> {
    let (n, d_out) = dy.dims2("linear_bwd_input: dy")?;
    let (w_out, d_in) = w.dims2("linear_bwd_input: weight")?;
    if w_out != d_out {
        return Err(Error::Shape(format!(
            "linear_bwd_input: weight shape {:?} does not match dy shape {:?} (weight must be [{d_out}, in])",
            w.shape(),
            dy.shape()
        )));
    }
    Ok((n, d_out, d_in))
}

/// `linear_bwd_weight(x, dy, mask)` with x [n, in], dy [n, out]: returns (n, in, out).
pub(crate) fn linear_bwd_weight(
    x: &Tensor,
    dy: &Tensor,
    mask: Option<&Tensor>,
) -> Result<(usize, usize, usize)> {
    let op = "linear_bwd_weight";
    let (n, d_in) = x.dims2("linear_bwd_weight: x")?;
    let (dn, d_out) = dy.dims2("linear_bwd_weight: dy")?;
    if dn != n {
        return Err(Error::Shape(format!(
            "{op}: dy shape {:?} does not match x shape {:?} (batch)",
            dy.shape(),
            x.shape()
        )));
    }
    optional(mask, &[d_out, d_in], op, "mask")?;
    Ok((n, d_in, d_out))
}

/// A batch-norm operation `op` on x [n, c, ...] with per-channel tensors `per_channel`
/// ([c] each): returns (n, c, s).
pub(crate) fn batchnorm(
    x: &Tensor,
    per_channel: &[(&Tensor, &str)],
    op: &str,
) -> Result<(usize, usize, usize)> {
    let (n, c, s) = ncs(x, op)?;
    for (t, what) in per_channel {
        shape(t, &[c], op, what)?;
    }
    Ok((n, c, s))
}

/// A pooling operation `op` whose input (`fwd`) or output gradient (`!fwd`) is `t`.
pub(crate) fn pool(t: &Tensor, p: &Pool2dParams, fwd: bool, op: &str) -> Result<()> {
    p.check(op)?;
    if fwd {
        shape(t, &p.x_shape(), op, "x")
    } else {
        shape(t, &p.y_shape(), op, "dy")
    }
}

/// `cross_entropy_fwd` / `cross_entropy_bwd` (`op`) on logits [n, k] (`what` names them) and
/// labels [n]; the forward pass also refuses empty logits. Returns (n, k); the label values
/// are checked by [`labels`] once they are on the host.
pub(crate) fn cross_entropy(
    x: &Tensor,
    labels: &Tensor,
    op: &str,
    what: &str,
) -> Result<(usize, usize)> {
    let (n, k) = x.dims2(&format!("{op}: {what}"))?;
    shape(labels, &[n], op, "labels")?;
    if op == "cross_entropy_fwd" && (n == 0 || k == 0) {
        return Err(Error::Shape(format!("{op}: empty {what} {:?}", x.shape())));
    }
    Ok((n, k))
}

/// `sgd_step(w, g, m, mask)`: g, m and the mask have w's shape.
pub(crate) fn sgd_step(w: &Tensor, g: &Tensor, m: &Tensor, mask: Option<&Tensor>) -> Result<()> {
    let op = "sgd_step";
    same_shape(g, w, op, "g", "w")?;
    same_shape(m, w, op, "m", "w")?;
    mask.map_or(Ok(()), |k| same_shape(k, w, op, "mask", "w"))
}

/// `count_correct`: logprobs [n, k], labels [n], count [1]; returns (n, k).
pub(crate) fn count_correct(
    logprobs: &Tensor,
    labels: &Tensor,
    count: &Tensor,
) -> Result<(usize, usize)> {
    let op = "count_correct";
    let (n, k) = logprobs.dims2(&format!("{op}: logprobs"))?;
    shape(labels, &[n], op, "labels")?;
    shape(count, &[1], op, "count")?;
    Ok((n, k))
}
