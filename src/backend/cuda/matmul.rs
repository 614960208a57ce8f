//! Launch wrapper of `sgemm_f32` (kernels/matmul.cu) and the linear layer built on it.

use cudarc::driver::{CudaView, CudaViewMut, LaunchConfig, PushKernelArg};

use super::{check_len, cuda_err, to_i32, to_i64, CudaBackend};
use crate::backend::check;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Tile of C computed by one block of `sgemm_f32` (rows and columns).
const TILE: usize = 64;

/// One (batched) SGEMM: row-major C = alpha·op(A)·op(B) + beta·C with op(A) m×k, op(B) k×n.
///
/// `batch` (A, B) pairs sit `stride_a` / `stride_b` elements apart; they are split into
/// `groups` contiguous groups, and group z writes the sum of its pairs' products to
/// C + z·stride_c. `groups == batch` is an ordinary batched GEMM, `groups < batch` a
/// deterministic split-K over the batch (see kernels/matmul.cu).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gemm {
    /// A is stored k×m (op(A) = Aᵀ) instead of m×k.
    pub trans_a: bool,
    /// B is stored n×k (op(B) = Bᵀ) instead of k×n.
    pub trans_b: bool,
    /// Rows of C.
    pub m: usize,
    /// Columns of C.
    pub n: usize,
    /// The reduction length.
    pub k: usize,
    /// Scale of the product.
    pub alpha: f32,
    /// Scale of the old C (0 overwrites C without reading it).
    pub beta: f32,
    /// Leading dimension (row stride) of A as stored.
    pub lda: usize,
    /// Leading dimension of B as stored.
    pub ldb: usize,
    /// Leading dimension of C.
    pub ldc: usize,
    /// Number of (A, B) pairs.
    pub batch: usize,
    /// Number of outputs (1 ≤ groups ≤ batch).
    pub groups: usize,
    /// Elements between consecutive A matrices.
    pub stride_a: usize,
    /// Elements between consecutive B matrices.
    pub stride_b: usize,
    /// Elements between consecutive C matrices.
    pub stride_c: usize,
}

impl Gemm {
    /// A single, packed GEMM: alpha 1, beta 0, leading dimensions of contiguous operands.
    pub fn new(trans_a: bool, trans_b: bool, m: usize, n: usize, k: usize) -> Gemm {
        Gemm {
            trans_a,
            trans_b,
            m,
            n,
            k,
            alpha: 1.0,
            beta: 0.0,
            lda: if trans_a { m } else { k },
            ldb: if trans_b { k } else { n },
            ldc: n,
            batch: 1,
            groups: 1,
            stride_a: 0,
            stride_b: 0,
            stride_c: 0,
        }
    }

    /// Elements of A the kernel reads (0 when it reads none).
    fn a_extent(&self) -> usize {
        let (rows, cols) = if self.trans_a {
            (self.k, self.m)
        } else {
            (self.m, self.k)
        };
        (self.batch - 1) * self.stride_a + (rows - 1) * self.lda + cols
    }

    fn b_extent(&self) -> usize {
        let (rows, cols) = if self.trans_b {
            (self.n, self.k)
        } else {
            (self.k, self.n)
        };
        (self.batch - 1) * self.stride_b + (rows - 1) * self.ldb + cols
    }

    fn c_extent(&self) -> usize {
        (self.groups - 1) * self.stride_c + (self.m - 1) * self.ldc + self.n
    }

    /// Errors unless the leading dimensions, strides and group count are consistent.
    fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Shape(format!("sgemm_f32 {self:?}: {msg}")));
        let a_cols = if self.trans_a { self.m } else { self.k };
        let b_cols = if self.trans_b { self.k } else { self.n };
        if self.lda < a_cols {
            return bad(format!("lda {} < {a_cols}", self.lda));
        }
        if self.ldb < b_cols {
            return bad(format!("ldb {} < {b_cols}", self.ldb));
        }
        if self.ldc < self.n {
            return bad(format!("ldc {} < n {}", self.ldc, self.n));
        }
        if self.batch == 0 || self.groups == 0 || self.groups > self.batch {
            return bad("need 1 <= groups <= batch".into());
        }
        if self.groups > 1 && self.m > 0 && self.stride_c < (self.m - 1) * self.ldc + self.n {
            return bad("the C matrices of different groups overlap".into());
        }
        if self.groups > 65_535 || self.m.div_ceil(TILE) > 65_535 {
            return bad("too many groups or rows for one launch".into());
        }
        Ok(())
    }
}

impl CudaBackend {
    /// Launches `sgemm_f32` on device views, after checking every index the kernel will form
    /// against the view lengths.
    pub(crate) fn launch_sgemm(
        &self,
        g: &Gemm,
        a: &CudaView<'_, f32>,
        b: &CudaView<'_, f32>,
        c: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        g.validate()?;
        if g.m == 0 || g.n == 0 {
            return Ok(());
        }
        if g.k > 0 {
            check_len(a.len(), g.a_extent(), "sgemm_f32: A")?;
            check_len(b.len(), g.b_extent(), "sgemm_f32: B")?;
        }
        check_len(c.len(), g.c_extent(), "sgemm_f32: C")?;
        let (ta, tb) = (g.trans_a as i32, g.trans_b as i32);
        let (m, n, k) = (
            to_i32(g.m, "sgemm m")?,
            to_i32(g.n, "sgemm n")?,
            to_i32(g.k, "sgemm k")?,
        );
        let (lda, ldb, ldc) = (
            to_i32(g.lda, "sgemm lda")?,
            to_i32(g.ldb, "sgemm ldb")?,
            to_i32(g.ldc, "sgemm ldc")?,
        );
        let (sa, sb, sc) = (to_i64(g.stride_a), to_i64(g.stride_b), to_i64(g.stride_c));
        let batch = to_i32(g.batch, "sgemm batch")?;
        let cfg = LaunchConfig {
            grid_dim: (
                g.n.div_ceil(TILE) as u32,
                g.m.div_ceil(TILE) as u32,
                g.groups as u32,
            ),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let f = self.loader.function("sgemm_f32")?;
        let mut l = self.stream.launch_builder(&f);
        l.arg(&ta).arg(&tb).arg(&m).arg(&n).arg(&k).arg(&g.alpha);
        l.arg(a).arg(&lda).arg(&sa);
        l.arg(b).arg(&ldb).arg(&sb);
        l.arg(&g.beta).arg(c).arg(&ldc).arg(&sc).arg(&batch);
        // SAFETY: the arguments match the kernel's signature in kernels/matmul.cu one for one
        // (ints as i32, strides as i64, pointers as device views), and `validate` plus the
        // length checks above bound every element the kernel reads or writes.
        unsafe { l.launch(cfg) }.map_err(cuda_err("launch sgemm_f32"))?;
        Ok(())
    }

    /// Runs the CPU twin's `sgemm_f32` on device tensors: row-major
    /// C = alpha·op(A)·op(B) + beta·C (op(A) m×k; `trans_a`: A stored k×m with leading
    /// dimension `lda`); beta == 0 overwrites C.
    #[allow(clippy::too_many_arguments)]
    pub fn sgemm_f32(
        &self,
        trans_a: bool,
        trans_b: bool,
        m: usize,
        n: usize,
        k: usize,
        alpha: f32,
        a: &Tensor,
        lda: usize,
        b: &Tensor,
        ldb: usize,
        beta: f32,
        c: &mut Tensor,
        ldc: usize,
    ) -> Result<()> {
        let g = Gemm {
            alpha,
            beta,
            lda,
            ldb,
            ldc,
            ..Gemm::new(trans_a, trans_b, m, n, k)
        };
        self.sgemm(&g, a, b, c)
    }

    /// Runs a (batched, possibly split-K) [`Gemm`] on device tensors.
    pub fn sgemm(&self, g: &Gemm, a: &Tensor, b: &Tensor, c: &mut Tensor) -> Result<()> {
        let av = self.buf(a, "sgemm_f32: A")?.view();
        let bv = self.buf(b, "sgemm_f32: B")?.view();
        let cb = self.buf_mut(c, "sgemm_f32: C")?;
        self.launch_sgemm(g, &av, &bv, &mut cb.view_mut())
    }
}

/// y[n, out] = x[n, in] · w[out, in]ᵀ + bias[out].
pub(super) fn linear_fwd(
    be: &CudaBackend,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    let (n, din, dout) = check::linear_fwd(x, w, bias)?;
    let xv = be.buf(x, "linear_fwd: x")?.view();
    let wv = be.buf(w, "linear_fwd: w")?.view();
    let mut y = be.alloc(n * dout, "linear_fwd: y")?;
    be.launch_sgemm(
        &Gemm::new(false, true, n, dout, din),
        &xv,
        &wv,
        &mut y.view_mut(),
    )?;
    if let Some(bias) = bias {
        let bv = be.buf(bias, "linear_fwd: bias")?.view();
        be.launch_bias_add(&mut y.view_mut(), &bv, n, dout, 1)?;
    }
    Ok(be.wrap(y, &[n, dout]))
}

/// dx[n, in] = dy[n, out] · w[out, in].
pub(super) fn linear_bwd_input(be: &CudaBackend, dy: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (n, dout, din) = check::linear_bwd_input(dy, w)?;
    let dyv = be.buf(dy, "linear_bwd_input: dy")?.view();
    let wv = be.buf(w, "linear_bwd_input: w")?.view();
    let mut dx = be.alloc(n * din, "linear_bwd_input: dx")?;
    be.launch_sgemm(
        &Gemm::new(false, false, n, din, dout),
        &dyv,
        &wv,
        &mut dx.view_mut(),
    )?;
    Ok(be.wrap(dx, &[n, din]))
}

/// dw[out, in] = dy[n, out]ᵀ · x[n, in], zeroed where the mask is 0 when a mask is given.
pub(super) fn linear_bwd_weight(
    be: &CudaBackend,
    x: &Tensor,
    dy: &Tensor,
    mask: Option<&Tensor>,
) -> Result<Tensor> {
    let (n, din, dout) = check::linear_bwd_weight(x, dy, mask)?;
    let xv = be.buf(x, "linear_bwd_weight: x")?.view();
    let dyv = be.buf(dy, "linear_bwd_weight: dy")?.view();
    let mut dw = be.alloc(dout * din, "linear_bwd_weight: dw")?;
    // With n == 0 the reduction is empty and the kernel writes zeros.
    be.launch_sgemm(
        &Gemm::new(true, false, dout, din, n),
        &dyv,
        &xv,
        &mut dw.view_mut(),
    )?;
    let dw = be.wrap(dw, &[dout, din]);
    match mask {
        Some(mask) => super::elementwise::binary(be, "mul_f32", &dw, mask),
        None => Ok(dw),
    }
}
