//! Launch wrappers of kernels/spconv.cu (`spconv_fwd_f32`, `spconv_bwd_input_f32`,
//! `spconv_bwd_weight_f32`, `spconv_scatter_f32`) and the sparse convolution passes of the
//! [`Backend`](crate::backend::Backend):
//! - forward: one thread per output over its CSR row;
//! - backward to the input: one thread per dx element over the transposed CSR;
//! - backward to the weight: one warp per CSR entry (SDDMM), then a scatter of the entry
//!   gradients into the dense-shaped, zero-elsewhere dw.
//!
//! The sparse operand is either a [`DeviceCsr`] built on the device from the mask (training:
//! the structure is built once per mask, the values regathered each step, see
//! `spconv_csr.rs`; nothing comes back to the host) or a host [`SparseWeight`], validated and
//! uploaded for the call ([`DevCsr`]): 8 bytes per active weight plus 4 per row (4 per entry
//! less for the weight gradient, which needs no values).

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaView, CudaViewMut, PushKernelArg};

use super::{check_len, cuda_err, to_i32, to_i64, CudaBackend, DevBuf};
use crate::backend::{check, check_csr, Conv2dParams, DeviceCsr, SparseOperand, SparseWeight};
use crate::error::{Error, Result};
use crate::tensor::{numel, Tensor};

/// A CSR matrix on the device. [`DevCsr::upload`] and [`DevCsr::of`] build one after
/// validating the host arrays with [`check_csr`]; [`CudaBackend::dev_csr_of_mask`] builds
/// one on the device by construction; so every index a kernel reads through it (row offsets,
/// columns) is in bounds for its `rows`×`cols`. The structure is shared (a kept structure
/// with values regathered each step).
#[derive(Clone)]
pub(crate) struct DevCsr {
    pub(super) rows: usize,
    pub(super) cols: usize,
    pub(super) nnz: usize,
    pub(super) row_ptr: Arc<CudaSlice<u32>>,
    pub(super) col_idx: Arc<CudaSlice<u32>>,
    /// The entry values; `None` when the kernel does not read them (the weight gradient).
    pub(super) values: Option<Arc<DevBuf>>,
}

impl DevCsr {
    /// Validates a `rows`×`cols` CSR given in parts and uploads it (values only when given).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn upload(
        be: &CudaBackend,
        row_ptr: &[u32],
        col_idx: &[u32],
        values: Option<&[f32]>,
        rows: usize,
        cols: usize,
        op: &str,
        what: &str,
    ) -> Result<DevCsr> {
        let n_values = values.map_or(col_idx.len(), <[f32]>::len);
        check_csr(row_ptr, col_idx, n_values, rows, cols, op, what)?;
        Self::copy(
            be,
            row_ptr,
            col_idx,
            values,
            rows,
            cols,
            &format!("{op}: {what}"),
        )
    }

    /// `w` as a `rows`×`cols` CSR on the device: a device operand as it is (it must be one
    /// this backend built), a host one validated and uploaded (with its values when `values`).
    pub(crate) fn of(
        be: &CudaBackend,
        w: SparseOperand<'_>,
        rows: usize,
        cols: usize,
        values: bool,
        op: &str,
        what: &str,
    ) -> Result<DevCsr> {
        w.check(rows, cols, op, what)?;
        let w = match w {
            SparseOperand::Device(d) => return Self::resident(d, &format!("{op}: {what}")),
            SparseOperand::Host(w) => w,
        };
        let v = values.then_some(w.values.as_slice());
        Self::copy(
            be,
            &w.row_ptr,
            &w.col_idx,
            v,
            rows,
            cols,
            &format!("{op}: {what}"),
        )
    }

    /// The CSR inside a device operand built by this backend.
    fn resident(d: &DeviceCsr, label: &str) -> Result<DevCsr> {
        match d.inner.downcast_ref::<DevCsr>() {
            Some(c) if (c.rows, c.cols, c.nnz) == (d.rows, d.cols, d.nnz) => Ok(c.clone()),
            _ => Err(Error::Device(format!(
                "{label}: {d:?} was not built by the CUDA backend"
            ))),
        }
    }

    /// This CSR as a backend-neutral operand.
    pub(super) fn into_operand(self) -> DeviceCsr {
        DeviceCsr {
            rows: self.rows,
            cols: self.cols,
            nnz: self.nnz,
            inner: Arc::new(self),
        }
    }

    /// Copies a CSR that passed [`check_csr`] to the device.
    fn copy(
        be: &CudaBackend,
        row_ptr: &[u32],
        col_idx: &[u32],
        values: Option<&[f32]>,
        rows: usize,
        cols: usize,
        label: &str,
    ) -> Result<DevCsr> {
        Ok(DevCsr {
            rows,
            cols,
            nnz: col_idx.len(),
            row_ptr: Arc::new(be.upload_u32(row_ptr, &format!("{label} row offsets"))?),
            col_idx: Arc::new(be.upload_u32(col_idx, &format!("{label} columns"))?),
            values: match values {
                Some(v) => Some(Arc::new(be.upload_buf(v, &format!("{label} values"))?)),
                None => None,
            },
        })
    }

    /// A CSR built on the device by [`CudaBackend::dev_csr_of_mask`] (`shape`: rows, cols,
    /// entries), whose kernels produce a valid CSR by construction.
    pub(super) fn from_device(
        (rows, cols, nnz): (usize, usize, usize),
        row_ptr: CudaSlice<u32>,
        col_idx: CudaSlice<u32>,
        values: CudaSlice<f32>,
    ) -> DevCsr {
        DevCsr {
            rows,
            cols,
            nnz,
            row_ptr: Arc::new(row_ptr),
            col_idx: Arc::new(col_idx),
            values: Some(Arc::new(DevBuf {
                slice: values,
                len: nnz,
            })),
        }
    }

    /// This CSR copied to the host (with zero values when it has none).
    pub(super) fn download(&self, be: &CudaBackend) -> Result<SparseWeight> {
        let what = "DevCsr::download";
        let row_ptr = be.download_u32(&self.row_ptr, self.rows + 1, what)?;
        let col_idx = be.download_u32(&self.col_idx, self.nnz, what)?;
        let values = match (&self.values, self.nnz) {
            (Some(v), n) if n > 0 => be
                .stream
                .clone_dtoh(&v.view())
                .map_err(cuda_err(format!("{what}: values")))?,
            _ => vec![0.0; self.nnz],
        };
        Ok(SparseWeight {
            rows: self.rows,
            cols: self.cols,
            row_ptr: Arc::new(row_ptr),
            col_idx: Arc::new(col_idx),
            values,
        })
    }

    /// The row offsets (`rows + 1`).
    fn row_ptr(&self) -> CudaView<'_, u32> {
        self.row_ptr.slice(..self.rows + 1)
    }

    /// The column of each entry (one unread placeholder when there are none).
    fn col_idx(&self) -> CudaView<'_, u32> {
        self.col_idx.slice(..self.nnz.max(1))
    }

    /// The entry values, or an error naming the kernel that needs them.
    fn values(&self, what: &str) -> Result<CudaView<'_, f32>> {
        match &self.values {
            Some(v) => Ok(v.view()),
            None => Err(Error::Cuda(format!(
                "{what}: the CSR was uploaded without its values"
            ))),
        }
    }

    /// Errors unless this CSR is `rows`×`cols`.
    fn expect(&self, rows: usize, cols: usize, what: &str) -> Result<()> {
        if (self.rows, self.cols) != (rows, cols) {
            return Err(Error::Shape(format!(
                "{what}: the CSR is {}x{}, the geometry needs {rows}x{cols}",
                self.rows, self.cols
            )));
        }
        Ok(())
    }
}

impl CudaBackend {
    /// `spconv_fwd_f32`: y = spconv(x, w) + bias over the whole batch (overwrites y).
    pub(crate) fn launch_spconv_fwd(
        &self,
        x: &CudaView<'_, f32>,
        w: &DevCsr,
        bias: Option<&CudaView<'_, f32>>,
        p: &Conv2dParams,
        y: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        p.check("spconv_fwd_f32")?;
        w.expect(p.c_out as usize, p.col_rows(), "spconv_fwd_f32: weight")?;
        check_len(x.len(), numel(&p.x_shape()), "spconv_fwd_f32: x")?;
        check_len(y.len(), numel(&p.y_shape()), "spconv_fwd_f32: y")?;
        if let Some(b) = bias {
            check_len(b.len(), p.c_out as usize, "spconv_fwd_f32: bias")?;
        }
        let total = numel(&p.y_shape());
        if total == 0 {
            return Ok(());
        }
        let (rp, ci, vals) = (w.row_ptr(), w.col_idx(), w.values("spconv_fwd_f32")?);
        let has_bias = bias.is_some() as i32;
        // Without a bias the kernel never reads the bias pointer (has_bias = 0); x stands in.
        let bias_arg = bias.unwrap_or(x);
        let f = self.loader.function("spconv_fwd_f32")?;
        let mut l = self.stream.launch_builder(&f);
        l.arg(x).arg(&rp).arg(&ci).arg(&vals);
        l.arg(bias_arg).arg(&has_bias).arg(p).arg(y);
        // SAFETY: arguments match `spconv_fwd_f32(const float*, const unsigned*, const
        // unsigned*, const float*, const float*, int, Conv2dParams, float*)`; the parameters are
        // consistent, x and y hold the batch, bias c_out values when read, and the CSR was
        // validated as c_out x (c_in*k_h*k_w) before its upload.
        unsafe { l.launch(self.cfg_1d(total)) }.map_err(cuda_err("launch spconv_fwd_f32"))?;
        Ok(())
    }

    /// `spconv_bwd_input_f32`: dx from dy and the TRANSPOSED weight (overwrites dx).
    pub(crate) fn launch_spconv_bwd_input(
        &self,
        dy: &CudaView<'_, f32>,
        wt: &DevCsr,
        p: &Conv2dParams,
        dx: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        p.check("spconv_bwd_input_f32")?;
        wt.expect(
            p.col_rows(),
            p.c_out as usize,
            "spconv_bwd_input_f32: transposed weight",
        )?;
        check_len(dy.len(), numel(&p.y_shape()), "spconv_bwd_input_f32: dy")?;
        check_len(dx.len(), numel(&p.x_shape()), "spconv_bwd_input_f32: dx")?;
        let total = numel(&p.x_shape());
        if total == 0 {
            return Ok(());
        }
        let (rp, ci, vals) = (
            wt.row_ptr(),
            wt.col_idx(),
            wt.values("spconv_bwd_input_f32")?,
        );
        let f = self.loader.function("spconv_bwd_input_f32")?;
        let mut l = self.stream.launch_builder(&f);
        l.arg(dy).arg(&rp).arg(&ci).arg(&vals).arg(p).arg(dx);
        // SAFETY: arguments match `spconv_bwd_input_f32(const float*, const unsigned*, const
        // unsigned*, const float*, Conv2dParams, float*)`; the parameters are consistent, dy and
        // dx hold the batch and the CSR was validated as (c_in*k_h*k_w) x c_out.
        unsafe { l.launch(self.cfg_1d(total)) }.map_err(cuda_err("launch spconv_bwd_input_f32"))?;
        Ok(())
    }

    /// `spconv_bwd_weight_f32`: the gradient of every CSR entry into `dvalues` (one per entry).
    pub(crate) fn launch_spconv_bwd_weight(
        &self,
        x: &CudaView<'_, f32>,
        dy: &CudaView<'_, f32>,
        w: &DevCsr,
        p: &Conv2dParams,
        dvalues: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        p.check("spconv_bwd_weight_f32")?;
        w.expect(
            p.c_out as usize,
            p.col_rows(),
            "spconv_bwd_weight_f32: weight",
        )?;
        check_len(x.len(), numel(&p.x_shape()), "spconv_bwd_weight_f32: x")?;
        check_len(dy.len(), numel(&p.y_shape()), "spconv_bwd_weight_f32: dy")?;
        check_len(dvalues.len(), w.nnz, "spconv_bwd_weight_f32: dvalues")?;
        if w.nnz == 0 {
            return Ok(());
        }
        let (rp, ci) = (w.row_ptr(), w.col_idx());
        let nnz = to_i64(w.nnz);
        let f = self.loader.function("spconv_bwd_weight_f32")?;
        let mut l = self.stream.launch_builder(&f);
        l.arg(x)
            .arg(dy)
            .arg(&rp)
            .arg(&ci)
            .arg(&nnz)
            .arg(p)
            .arg(dvalues);
        // One warp per entry: a block of BLOCK threads (a multiple of 32) holds BLOCK / 32.
        let cfg = self.cfg_1d(w.nnz * 32);
        // SAFETY: arguments match `spconv_bwd_weight_f32(const float*, const float*, const
        // unsigned*, const unsigned*, i64, Conv2dParams, float*)`; the parameters are
        // consistent, x and dy hold the batch, the CSR (nnz entries) was validated as
        // c_out x (c_in*k_h*k_w), dvalues holds nnz values and the block size is a multiple of 32.
        unsafe { l.launch(cfg) }.map_err(cuda_err("launch spconv_bwd_weight_f32"))?;
        Ok(())
    }

    /// `spconv_scatter_f32`: the dense [rows, cols] matrix of the CSR structure of `w` with
    /// `values` (one per entry) at its entries and 0 elsewhere (overwrites dense).
    pub(crate) fn launch_spconv_scatter(
        &self,
        w: &DevCsr,
        values: &CudaView<'_, f32>,
        dense: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        check_len(values.len(), w.nnz, "spconv_scatter_f32: values")?;
        let total = w.rows * w.cols;
        check_len(dense.len(), total, "spconv_scatter_f32: dense")?;
        if total == 0 {
            return Ok(());
        }
        let rows = to_i32(w.rows, "spconv_scatter_f32: rows")?;
        let cols = to_i32(w.cols, "spconv_scatter_f32: cols")?;
        let (rp, ci) = (w.row_ptr(), w.col_idx());
        let f = self.loader.function("spconv_scatter_f32")?;
        let mut l = self.stream.launch_builder(&f);
        l.arg(&rp)
            .arg(&ci)
            .arg(values)
            .arg(&rows)
            .arg(&cols)
            .arg(dense);
        // SAFETY: arguments match `spconv_scatter_f32(const unsigned*, const unsigned*, const
        // float*, int, int, float*)`; the CSR was validated as rows x cols (so its binary
        // searches stay inside each row), values holds nnz values and dense rows*cols.
        unsafe { l.launch(self.cfg_1d(total)) }.map_err(cuda_err("launch spconv_scatter_f32"))?;
        Ok(())
    }

    /// Runs the CPU twin's `spconv_fwd_f32` on device tensors; the CSR (c_out rows) is
    /// uploaded from the host for this call.
    #[allow(clippy::too_many_arguments)]
    pub fn spconv_fwd_f32(
        &self,
        x: &Tensor,
        row_ptr: &[u32],
        col_idx: &[u32],
        values: &[f32],
        bias: Option<&Tensor>,
        p: &Conv2dParams,
        y: &mut Tensor,
    ) -> Result<()> {
        let op = "spconv_fwd_f32";
        let (rows, cols) = (p.c_out as usize, p.col_rows());
        let w = DevCsr::upload(
            self,
            row_ptr,
            col_idx,
            Some(values),
            rows,
            cols,
            op,
            "weight",
        )?;
        let xv = self.buf(x, "spconv_fwd_f32: x")?.view();
        let bv = match bias {
            Some(b) => Some(self.buf(b, "spconv_fwd_f32: bias")?.view()),
            None => None,
        };
        let yb = self.buf_mut(y, "spconv_fwd_f32: y")?;
        self.launch_spconv_fwd(&xv, &w, bv.as_ref(), p, &mut yb.view_mut())
    }

    /// Runs the CPU twin's `spconv_bwd_input_f32` on device tensors; the transposed CSR
    /// (c_in·k_h·k_w rows) is uploaded from the host for this call.
    pub fn spconv_bwd_input_f32(
        &self,
        dy: &Tensor,
        t_row_ptr: &[u32],
        t_col_idx: &[u32],
        t_values: &[f32],
        p: &Conv2dParams,
        dx: &mut Tensor,
    ) -> Result<()> {
        let op = "spconv_bwd_input_f32";
        let (rows, cols) = (p.col_rows(), p.c_out as usize);
        let what = "transposed weight";
        let wt = DevCsr::upload(
            self,
            t_row_ptr,
            t_col_idx,
            Some(t_values),
            rows,
            cols,
            op,
            what,
        )?;
        let dyv = self.buf(dy, "spconv_bwd_input_f32: dy")?.view();
        let dxb = self.buf_mut(dx, "spconv_bwd_input_f32: dx")?;
        self.launch_spconv_bwd_input(&dyv, &wt, p, &mut dxb.view_mut())
    }

    /// Runs the CPU twin's `spconv_bwd_weight_f32` on device tensors: `dvalues` holds one
    /// gradient per entry; the CSR structure is uploaded from the host for this call.
    pub fn spconv_bwd_weight_f32(
        &self,
        x: &Tensor,
        dy: &Tensor,
        row_ptr: &[u32],
        col_idx: &[u32],
        p: &Conv2dParams,
        dvalues: &mut Tensor,
    ) -> Result<()> {
        let op = "spconv_bwd_weight_f32";
        let (rows, cols) = (p.c_out as usize, p.col_rows());
        let w = DevCsr::upload(self, row_ptr, col_idx, None, rows, cols, op, "weight")?;
        let xv = self.buf(x, "spconv_bwd_weight_f32: x")?.view();
        let dyv = self.buf(dy, "spconv_bwd_weight_f32: dy")?.view();
        let db = self.buf_mut(dvalues, "spconv_bwd_weight_f32: dvalues")?;
        self.launch_spconv_bwd_weight(&xv, &dyv, &w, p, &mut db.view_mut())
    }

    /// Runs the CPU twin's `spconv_scatter_f32` on device tensors: `values` (one per entry)
    /// into the dense `rows`×`cols` tensor `dense`; the CSR structure is uploaded from the host.
    pub fn spconv_scatter_f32(
        &self,
        row_ptr: &[u32],
        col_idx: &[u32],
        values: &Tensor,
        rows: usize,
        cols: usize,
        dense: &mut Tensor,
    ) -> Result<()> {
        let op = "spconv_scatter_f32";
        let w = DevCsr::upload(self, row_ptr, col_idx, None, rows, cols, op, "matrix")?;
        let vv = self.buf(values, "spconv_scatter_f32: values")?.view();
        let db = self.buf_mut(dense, "spconv_scatter_f32: dense")?;
        self.launch_spconv_scatter(&w, &vv, &mut db.view_mut())
    }
}

/// y = spconv(x, w) + bias (the forward pass); a host CSR is uploaded for the call.
pub(super) fn spconv_fwd(
    be: &CudaBackend,
    x: &Tensor,
    w: SparseOperand<'_>,
    bias: Option<&Tensor>,
    p: &Conv2dParams,
) -> Result<Tensor> {
    let op = "spconv_fwd";
    check::spconv_fwd(x, w, bias, p)?;
    let w = DevCsr::of(be, w, p.c_out as usize, p.col_rows(), true, op, "weight")?;
    let xv = be.buf(x, "spconv_fwd: x")?.view();
    let bv = match bias {
        Some(b) => Some(be.buf(b, "spconv_fwd: bias")?.view()),
        None => None,
    };
    let mut y = be.alloc(numel(&p.y_shape()), "spconv_fwd: y")?;
    be.launch_spconv_fwd(&xv, &w, bv.as_ref(), p, &mut y.view_mut())?;
    Ok(be.wrap(y, &p.y_shape()))
}

/// dx of the sparse conv from dy and `wt`, the transposed CSR (a host one uploaded).
pub(super) fn spconv_bwd_input(
    be: &CudaBackend,
    dy: &Tensor,
    wt: SparseOperand<'_>,
    p: &Conv2dParams,
) -> Result<Tensor> {
    let op = "spconv_bwd_input";
    check::spconv_bwd_input(dy, wt, p)?;
    let what = "transposed weight";
    let wt = DevCsr::of(be, wt, p.col_rows(), p.c_out as usize, true, op, what)?;
    let dyv = be.buf(dy, "spconv_bwd_input: dy")?.view();
    let mut dx = be.alloc(numel(&p.x_shape()), "spconv_bwd_input: dx")?;
    be.launch_spconv_bwd_input(&dyv, &wt, p, &mut dx.view_mut())?;
    Ok(be.wrap(dx, &p.x_shape()))
}

/// The weight gradient at the active positions of `w`, dense-shaped [c_out, c_in, k_h, k_w]
/// with zeros elsewhere: per-entry gradients, then a scatter. A host CSR's structure is
/// uploaded for the call (its values are not needed).
pub(super) fn spconv_bwd_weight(
    be: &CudaBackend,
    x: &Tensor,
    dy: &Tensor,
    w: SparseOperand<'_>,
    p: &Conv2dParams,
) -> Result<Tensor> {
    let op = "spconv_bwd_weight";
    check::spconv_bwd_weight(x, dy, w, p)?;
    let w = DevCsr::of(be, w, p.c_out as usize, p.col_rows(), false, op, "weight")?;
    let xv = be.buf(x, "spconv_bwd_weight: x")?.view();
    let dyv = be.buf(dy, "spconv_bwd_weight: dy")?.view();
    let mut dvalues = be.alloc(w.nnz, "spconv_bwd_weight: entry gradients")?;
    be.launch_spconv_bwd_weight(&xv, &dyv, &w, p, &mut dvalues.view_mut())?;
    let mut dw = be.alloc(numel(&p.w_shape()), "spconv_bwd_weight: dw")?;
    be.launch_spconv_scatter(&w, &dvalues.view(), &mut dw.view_mut())?;
    Ok(be.wrap(dw, &p.w_shape()))
}
