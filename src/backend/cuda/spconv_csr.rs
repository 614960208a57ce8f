//! The CSR of a masked weight built on the device (kernels `csr_count_f32`, `csr_scan_u32`,
//! `csr_fill_f32` of kernels/spconv.cu; CPU twins in src/backend/cpu/spconv.rs): line counts,
//! an exclusive scan into row offsets, then each line's columns and values in ascending order,
//! the order of [`SparseWeight::from_masked`] (rows) and [`SparseWeight::transpose`] (columns),
//! so the result is identical to the host build. Only the entry count (4 bytes) comes back, to
//! size the entry arrays.
//!
//! Training keeps the structure between mask updates ([`CsrPlan`], built by `csr_plan` from the
//! mask alone, the transpose's on first use) and each step gathers the weight's values into it
//! (`csr_gather_f32`): no copy in either direction.

use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaSlice, CudaView, LaunchConfig, PushKernelArg};

use super::spconv::DevCsr;
use super::{check_len, cuda_err, to_i32, CudaBackend, BLOCK};
use crate::backend::cpu::spconv::{
    csr_count_f32, csr_fill_f32 as fill_twin, csr_scan_u32, CsrLines,
};
use crate::backend::{CsrPlan, CsrPlanRepr, SparseMatrix, SparseWeight};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The device structure of one mask: its CSR (values unused) and, once asked for, that of its
/// transpose, built from the mask (a copy-on-write handle: a later mask update writes a copy).
struct DevCsrPlan {
    fwd: DevCsr,
    mask: Tensor,
    t: Mutex<Option<DevCsr>>,
}

/// The kernels' int arguments for `v`, after checking that a mask of `mask_len` holds it.
fn lines_args(v: CsrLines, mask_len: usize, what: &str) -> Result<[i32; 4]> {
    let last = if v.lines * v.len == 0 {
        0
    } else {
        (v.lines - 1) * v.line_stride + (v.len - 1) * v.elem_stride + 1
    };
    if last > mask_len {
        return Err(Error::Shape(format!(
            "{what}: {v:?} reads {last} elements of a mask of {mask_len}"
        )));
    }
    Ok([
        to_i32(v.lines, &format!("{what}: lines"))?,
        to_i32(v.len, &format!("{what}: line length"))?,
        to_i32(v.line_stride, &format!("{what}: line stride"))?,
        to_i32(v.elem_stride, &format!("{what}: element stride"))?,
    ])
}

impl CudaBackend {
    /// `csr_count_f32`: counts[l] = active entries of line l.
    fn launch_csr_count(
        &self,
        mask: &CudaView<'_, f32>,
        v: CsrLines,
        counts: &mut CudaSlice<u32>,
    ) -> Result<()> {
        let [lines, len, ls, es] = lines_args(v, mask.len(), "csr_count_f32")?;
        check_len(counts.len(), v.lines.max(1), "csr_count_f32: counts")?;
        let f = self.loader.function("csr_count_f32")?;
        let mut l = self.stream.launch_builder(&f);
        l.arg(mask)
            .arg(&lines)
            .arg(&len)
            .arg(&ls)
            .arg(&es)
            .arg(counts);
        // SAFETY: arguments match `csr_count_f32(const float*, int, int, int, int, unsigned*)`;
        // every position read is below mask.len() (lines_args) and counts holds `lines`.
        unsafe { l.launch(self.cfg_1d(v.lines)) }.map_err(cuda_err("launch csr_count_f32"))?;
        Ok(())
    }

    /// `csr_scan_u32`: row_ptr (n + 1) = exclusive scan of counts (n), in one block.
    fn launch_csr_scan(
        &self,
        counts: &CudaSlice<u32>,
        n: usize,
        row_ptr: &mut CudaSlice<u32>,
    ) -> Result<()> {
        check_len(counts.len(), n.max(1), "csr_scan_u32: counts")?;
        check_len(row_ptr.len(), n + 1, "csr_scan_u32: row_ptr")?;
        let ni = to_i32(n, "csr_scan_u32: n")?;
        let f = self.loader.function("csr_scan_u32")?;
        let mut l = self.stream.launch_builder(&f);
        l.arg(counts).arg(&ni).arg(row_ptr);
        let cfg = LaunchConfig {
            grid_dim: (1, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: arguments match `csr_scan_u32(const unsigned*, int, unsigned*)`; counts holds
        // n, row_ptr n + 1, and BLOCK <= 1024 (the kernel's shared partial sums).
        unsafe { l.launch(cfg) }.map_err(cuda_err("launch csr_scan_u32"))?;
        Ok(())
    }

    /// `csr_fill_f32`: columns and values of each line at its row offsets.
    fn launch_csr_fill(
        &self,
        (w, mask): (&CudaView<'_, f32>, &CudaView<'_, f32>),
        row_ptr: &CudaSlice<u32>,
        v: CsrLines,
        col_idx: &mut CudaSlice<u32>,
        values: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let [lines, len, ls, es] = lines_args(v, mask.len(), "csr_fill_f32")?;
        check_len(w.len(), mask.len(), "csr_fill_f32: weight")?;
        check_len(row_ptr.len(), v.lines + 1, "csr_fill_f32: row_ptr")?;
        let f = self.loader.function("csr_fill_f32")?;
        let mut l = self.stream.launch_builder(&f);
        l.arg(w).arg(mask).arg(row_ptr);
        l.arg(&lines).arg(&len).arg(&ls).arg(&es);
        l.arg(col_idx).arg(values);
        // SAFETY: arguments match `csr_fill_f32(const float* x2, const unsigned*, int x4,
        // unsigned*, float*)`; every caller passes the scan of csr_count_f32 over this mask
        // (checked on the host by the test entry, built on the device by `csr_of_mask`), so
        // line l writes row_ptr[l]..row_ptr[l + 1], inside col_idx and values (row_ptr[lines]).
        unsafe { l.launch(self.cfg_1d(v.lines)) }.map_err(cuda_err("launch csr_fill_f32"))?;
        Ok(())
    }

    /// `csr_gather_f32`: the values of `w` at the entries of `s`, a structure built for `v`.
    fn launch_csr_gather(
        &self,
        w: &CudaView<'_, f32>,
        s: &DevCsr,
        v: CsrLines,
        values: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let [lines, _, ls, es] = lines_args(v, w.len(), "csr_gather_f32")?;
        check_len(s.row_ptr.len(), v.lines + 1, "csr_gather_f32: row_ptr")?;
        check_len(values.len(), s.nnz.max(1), "csr_gather_f32: values")?;
        if (s.rows, s.cols) != (v.lines, v.len) {
            return Err(Error::Shape(format!(
                "csr_gather_f32: a {}x{} structure for {v:?}",
                s.rows, s.cols
            )));
        }
        let f = self.loader.function("csr_gather_f32")?;
        let mut l = self.stream.launch_builder(&f);
        l.arg(w).arg(s.row_ptr.as_ref()).arg(s.col_idx.as_ref());
        l.arg(&lines).arg(&ls).arg(&es).arg(values);
        // SAFETY: arguments match `csr_gather_f32(const float*, const unsigned* x2, int x3,
        // float*)`; `s` was built on the device for this view (`dev_csr_of_mask`) or validated
        // on upload as a lines x len CSR, so its columns are below len, every position read is
        // inside w (lines_args) and every entry written inside values (nnz).
        unsafe { l.launch(self.cfg_1d(v.lines)) }.map_err(cuda_err("launch csr_gather_f32"))?;
        Ok(())
    }

    /// Builds on the device the CSR of `w` at the active positions of `mask` (both
    /// [rows, cols] row-major), or of its transpose when `transposed`; only the entry count is
    /// read back.
    pub(crate) fn dev_csr_of_mask(
        &self,
        w: &Tensor,
        mask: &Tensor,
        (rows, cols): (usize, usize),
        transposed: bool,
    ) -> Result<DevCsr> {
        let op = "csr_of_mask";
        if w.numel() != rows * cols || mask.numel() != rows * cols {
            return Err(Error::Shape(format!(
                "{op}: weight has {} and mask {} elements, expected {rows}x{cols}",
                w.numel(),
                mask.numel()
            )));
        }
        let v = match transposed {
            false => CsrLines::rows(rows, cols),
            true => CsrLines::cols(rows, cols),
        };
        let wv = self.buf(w, &format!("{op}: weight"))?.view();
        let mv = self.buf(mask, &format!("{op}: mask"))?.view();
        let mut counts = self.alloc_u32(v.lines, &format!("{op}: line counts"))?;
        self.launch_csr_count(&mv, v, &mut counts)?;
        let mut row_ptr = self.alloc_u32(v.lines + 1, &format!("{op}: row offsets"))?;
        self.launch_csr_scan(&counts, v.lines, &mut row_ptr)?;
        let nnz =
            self.stream
                .clone_dtoh(&row_ptr.slice(v.lines..v.lines + 1))
                .map_err(cuda_err(format!("{op}: read the entry count")))?[0] as usize;
        let mut col_idx = self.alloc_u32(nnz, &format!("{op}: columns"))?;
        let mut values = self
            .stream
            .alloc_zeros::<f32>(nnz.max(1))
            .map_err(cuda_err(format!("{op}: allocate {nnz} values")))?;
        self.launch_csr_fill((&wv, &mv), &row_ptr, v, &mut col_idx, &mut values)?;
        Ok(DevCsr::from_device(
            (v.lines, v.len, nnz),
            row_ptr,
            col_idx,
            values,
        ))
    }

    /// The structure of `mask` ([rows, cols]) with `nnz` active entries, built on the device
    /// (the transpose's on first use by [`CudaBackend::dev_csr_gather`]).
    pub(super) fn dev_csr_plan(
        &self,
        mask: &Tensor,
        (rows, cols): (usize, usize),
        nnz: usize,
    ) -> Result<CsrPlan> {
        let fwd = self.dev_csr_of_mask(mask, mask, (rows, cols), false)?;
        if fwd.nnz != nnz {
            return Err(Error::Shape(format!(
                "csr_plan: the mask has {} active entries, the caller counted {nnz}",
                fwd.nnz
            )));
        }
        let plan = DevCsrPlan {
            fwd,
            mask: mask.clone(),
            t: Mutex::new(None),
        };
        Ok(CsrPlan {
            rows,
            cols,
            nnz,
            repr: CsrPlanRepr::Device(Arc::new(plan)),
        })
    }

    /// The CSR of `w` at `plan`'s structure (its transpose's when `transposed`): the kept
    /// structure with values gathered on the device.
    pub(super) fn dev_csr_gather(
        &self,
        plan: &CsrPlan,
        w: &Tensor,
        transposed: bool,
    ) -> Result<SparseMatrix> {
        let op = "csr_gather";
        let dp = match &plan.repr {
            CsrPlanRepr::Device(d) => d.downcast_ref::<DevCsrPlan>(),
            CsrPlanRepr::Host(_) => None,
        }
        .ok_or_else(|| Error::Device(format!("{op}: the CSR structure was not built by CUDA")))?;
        let (rows, cols) = (plan.rows, plan.cols);
        check_len(w.numel(), rows * cols, &format!("{op}: weight"))?;
        let (s, v) = if transposed {
            let mut t = dp.t.lock().expect("the transposed structure lock");
            if t.is_none() {
                *t = Some(self.dev_csr_of_mask(&dp.mask, &dp.mask, (rows, cols), true)?);
            }
            (t.clone().expect("just built"), CsrLines::cols(rows, cols))
        } else {
            (dp.fwd.clone(), CsrLines::rows(rows, cols))
        };
        let wv = self.buf(w, &format!("{op}: weight"))?.view();
        let mut values = self.alloc(s.nnz, &format!("{op}: values"))?;
        self.launch_csr_gather(&wv, &s, v, &mut values.slice)?;
        let out = DevCsr {
            values: Some(Arc::new(values)),
            ..s
        };
        Ok(SparseMatrix::Device(out.into_operand()))
    }

    /// Runs the CPU twin's `csr_gather_f32`: the structure (`row_ptr`, `col_idx` of view `v`)
    /// is checked on the host against the twin's fill of `mask`, as the kernel writes through
    /// it, then uploaded; the gathered values come back.
    #[allow(clippy::too_many_arguments)]
    pub fn csr_gather_f32(
        &self,
        w: &Tensor,
        mask: &[f32],
        row_ptr: &[u32],
        col_idx: &[u32],
        v: CsrLines,
        values: &mut [f32],
    ) -> Result<()> {
        let op = "csr_gather_f32";
        let mut counts = vec![0u32; v.lines];
        lines_args(v, mask.len(), op)?;
        csr_count_f32(mask, v, &mut counts);
        let mut want = vec![0u32; v.lines + 1];
        csr_scan_u32(&counts, &mut want);
        let nnz = want[v.lines] as usize;
        let (mut ci, mut scratch) = (vec![0u32; nnz], vec![0f32; nnz]);
        fill_twin(mask, mask, &want, v, &mut ci, &mut scratch);
        if want != row_ptr || ci != col_idx {
            return Err(Error::Shape(format!(
                "{op}: the structure is not the CSR of the mask's {v:?}"
            )));
        }
        check_len(values.len(), nnz, &format!("{op}: values"))?;
        let s = DevCsr {
            rows: v.lines,
            cols: v.len,
            nnz,
            row_ptr: Arc::new(self.upload_u32(row_ptr, "csr_gather_f32: row_ptr")?),
            col_idx: Arc::new(self.upload_u32(col_idx, "csr_gather_f32: col_idx")?),
            values: None,
        };
        let wv = self.buf(w, "csr_gather_f32: weight")?.view();
        let mut out = self.alloc(nnz, "csr_gather_f32: values")?;
        self.launch_csr_gather(&wv, &s, v, &mut out.slice)?;
        if nnz > 0 {
            let got = self
                .stream
                .clone_dtoh(&out.slice.slice(..nnz))
                .map_err(cuda_err("csr_gather_f32: download values"))?;
            values.copy_from_slice(&got);
        }
        Ok(())
    }

    /// A sparse matrix this backend built on the device ([`crate::backend::Backend::csr_gather`])
    /// copied back to the host (for tests); a host one as it is.
    pub fn csr_to_host(&self, m: &SparseMatrix) -> Result<SparseWeight> {
        match m {
            SparseMatrix::Host(w) => Ok(w.clone()),
            SparseMatrix::Device(d) => DevCsr::of(
                self,
                m.operand(),
                d.rows,
                d.cols,
                true,
                "csr_to_host",
                "matrix",
            )?
            .download(self),
        }
    }

    /// [`CudaBackend::dev_csr_of_mask`] copied back as a [`SparseWeight`] (for tests).
    pub fn csr_of_mask(
        &self,
        w: &Tensor,
        mask: &Tensor,
        rows: usize,
        cols: usize,
        transposed: bool,
    ) -> Result<SparseWeight> {
        self.dev_csr_of_mask(w, mask, (rows, cols), transposed)?
            .download(self)
    }

    /// Runs the CPU twin's `csr_count_f32` on a device mask (counts come back to the host).
    pub fn csr_count_f32(&self, mask: &Tensor, v: CsrLines, counts: &mut [u32]) -> Result<()> {
        check_len(counts.len(), v.lines, "csr_count_f32: counts")?;
        let mv = self.buf(mask, "csr_count_f32: mask")?.view();
        let mut c = self.alloc_u32(v.lines, "csr_count_f32: counts")?;
        self.launch_csr_count(&mv, v, &mut c)?;
        counts.copy_from_slice(&self.download_u32(&c, v.lines, "csr_count_f32: counts")?);
        Ok(())
    }

    /// Runs the CPU twin's `csr_scan_u32` (counts uploaded, offsets downloaded).
    pub fn csr_scan_u32(&self, counts: &[u32], row_ptr: &mut [u32]) -> Result<()> {
        let n = counts.len();
        check_len(row_ptr.len(), n + 1, "csr_scan_u32: row_ptr")?;
        let c = self.upload_u32(counts, "csr_scan_u32: counts")?;
        let mut rp = self.alloc_u32(n + 1, "csr_scan_u32: row_ptr")?;
        self.launch_csr_scan(&c, n, &mut rp)?;
        row_ptr.copy_from_slice(&self.download_u32(&rp, n + 1, "csr_scan_u32: row_ptr")?);
        Ok(())
    }

    /// Runs the CPU twin's `csr_fill_f32`; `row_ptr` must be the scan of the mask's line
    /// counts (checked here against the CPU twins, as the kernel writes through it).
    pub fn csr_fill_f32(
        &self,
        (w, mask): (&Tensor, &Tensor),
        row_ptr: &[u32],
        v: CsrLines,
        col_idx: &mut [u32],
        values: &mut [f32],
    ) -> Result<()> {
        let host_mask = mask.to_vec()?;
        lines_args(v, host_mask.len(), "csr_fill_f32")?;
        let mut counts = vec![0u32; v.lines];
        csr_count_f32(&host_mask, v, &mut counts);
        let mut want = vec![0u32; v.lines + 1];
        csr_scan_u32(&counts, &mut want);
        if want != row_ptr {
            return Err(Error::Shape(
                "csr_fill_f32: row_ptr is not the scan of the mask's line counts".into(),
            ));
        }
        let nnz = want[v.lines] as usize;
        check_len(col_idx.len(), nnz, "csr_fill_f32: col_idx")?;
        check_len(values.len(), nnz, "csr_fill_f32: values")?;
        let wv = self.buf(w, "csr_fill_f32: weight")?.view();
        let mv = self.buf(mask, "csr_fill_f32: mask")?.view();
        let rp = self.upload_u32(row_ptr, "csr_fill_f32: row_ptr")?;
        let mut ci = self.alloc_u32(nnz, "csr_fill_f32: col_idx")?;
        let mut vals = self
            .stream
            .alloc_zeros::<f32>(nnz.max(1))
            .map_err(cuda_err("csr_fill_f32: allocate values"))?;
        self.launch_csr_fill((&wv, &mv), &rp, v, &mut ci, &mut vals)?;
        col_idx.copy_from_slice(&self.download_u32(&ci, nnz, "csr_fill_f32: col_idx")?);
        if nnz > 0 {
            let got = self
                .stream
                .clone_dtoh(&vals.slice(..nnz))
                .map_err(cuda_err("csr_fill_f32: download values"))?;
            values.copy_from_slice(&got);
        }
        Ok(())
    }
}
