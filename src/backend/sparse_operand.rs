//! The sparse operand of the `spconv` passes, wherever it lives, and the structure of a mask
//! kept between mask updates.
//!
//! - [`SparseOperand`]: what [`Backend::spconv_fwd`](super::Backend::spconv_fwd) and its
//!   backward passes take: a host [`SparseWeight`] (any backend; the CUDA one uploads it) or a
//!   [`DeviceCsr`] already resident on the device (built there, never downloaded).
//! - [`CsrPlan`]: the CSR structure (row offsets and columns) of one mask, and of its
//!   transpose once the backward pass to the input has asked for it, built by
//!   [`Backend::csr_plan`](super::Backend::csr_plan). The mask changes only at mask updates
//!   while the weights change every step, so a layer keeps its plan (see
//!   [`crate::nn::Param::mask_csr`]) and each step only gathers the current weight values at
//!   the plan's entries ([`Backend::csr_gather`](super::Backend::csr_gather)).

use std::any::Any;
use std::fmt;
use std::sync::{Arc, OnceLock};

use rayon::prelude::*;

use super::SparseWeight;
use crate::error::{Error, Result};

/// A CSR resident on a device: its shape, and the backend's own representation (opaque here;
/// the backend that built it reads it back with `downcast_ref`).
#[derive(Clone)]
pub struct DeviceCsr {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Stored entries.
    pub nnz: usize,
    /// The backend's representation.
    pub inner: Arc<dyn Any + Send + Sync>,
}

impl fmt::Debug for DeviceCsr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DeviceCsr({}x{}, {} entries)",
            self.rows, self.cols, self.nnz
        )
    }
}

/// The sparse matrix argument of the `spconv` passes.
#[derive(Clone, Copy, Debug)]
pub enum SparseOperand<'a> {
    /// A CSR on the host (validated entry by entry, uploaded by a device backend).
    Host(&'a SparseWeight),
    /// A CSR built on the device by its backend (valid by construction).
    Device(&'a DeviceCsr),
}

impl<'a> From<&'a SparseWeight> for SparseOperand<'a> {
    fn from(w: &'a SparseWeight) -> Self {
        SparseOperand::Host(w)
    }
}

impl SparseOperand<'_> {
    /// (rows, columns, entries).
    pub fn dims(&self) -> (usize, usize, usize) {
        match self {
            SparseOperand::Host(w) => (w.rows, w.cols, w.nnz()),
            SparseOperand::Device(d) => (d.rows, d.cols, d.nnz),
        }
    }

    /// Errors unless this is a `rows`×`cols` CSR (a host one is also checked entry by entry,
    /// [`SparseWeight::check`]); `op` and `what` name the call and the argument.
    pub fn check(&self, rows: usize, cols: usize, op: &str, what: &str) -> Result<()> {
        match self {
            SparseOperand::Host(w) => w.check(rows, cols, op, what),
            SparseOperand::Device(d) if (d.rows, d.cols) == (rows, cols) => Ok(()),
            SparseOperand::Device(d) => Err(Error::Shape(format!(
                "{op}: {what} is a {}x{} device CSR with {} entries, expected a {rows}x{cols} one",
                d.rows, d.cols, d.nnz
            ))),
        }
    }
}

/// A sparse matrix with its values, owned (what [`CsrPlan`] gathers each step).
#[derive(Clone, Debug)]
pub enum SparseMatrix {
    /// On the host.
    Host(SparseWeight),
    /// On the device.
    Device(DeviceCsr),
}

impl SparseMatrix {
    /// The operand view of this matrix.
    pub fn operand(&self) -> SparseOperand<'_> {
        match self {
            SparseMatrix::Host(w) => SparseOperand::Host(w),
            SparseMatrix::Device(d) => SparseOperand::Device(d),
        }
    }
}

/// The CSR structure of one [rows, cols] mask (no values), for both orientations.
#[derive(Debug)]
pub struct CsrPlan {
    /// Rows of the mask (output channels).
    pub rows: usize,
    /// Columns of the mask (c_in·k_h·k_w, or input features).
    pub cols: usize,
    /// Active entries.
    pub nnz: usize,
    /// Where the structure lives.
    pub repr: CsrPlanRepr,
}

/// The backend-specific part of a [`CsrPlan`].
pub enum CsrPlanRepr {
    /// Built on the host by the CPU backend.
    Host(HostCsrPlan),
    /// Built on the device by its backend (opaque here).
    Device(Arc<dyn Any + Send + Sync>),
}

impl fmt::Debug for CsrPlanRepr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CsrPlanRepr::Host(_) => write!(f, "Host"),
            CsrPlanRepr::Device(_) => write!(f, "Device"),
        }
    }
}

/// The host structure: the CSR of the mask (its values are not read) and, built on first
/// use, that of the transpose.
pub struct HostCsrPlan {
    fwd: SparseWeight,
    t: OnceLock<SparseWeight>,
}

impl HostCsrPlan {
    /// The structure of the active (nonzero, NaN included) positions of `mask` ([rows, cols]).
    pub fn of_mask(mask: &[f32], rows: usize, cols: usize) -> Result<HostCsrPlan> {
        let mut fwd = SparseWeight::from_masked(mask, mask, rows, cols)?;
        fwd.values = Vec::new();
        Ok(HostCsrPlan {
            fwd,
            t: OnceLock::new(),
        })
    }

    /// Active entries.
    pub fn nnz(&self) -> usize {
        self.fwd.col_idx.len()
    }

    /// The CSR of `w` ([rows, cols] row-major) at the mask's entries, or of its transpose
    /// when `transposed`: the cached structure with the values gathered from `w`. Equal to
    /// `SparseWeight::from_masked(w, mask, ..)` (and its `transpose()`) bit for bit.
    pub fn gather(&self, w: &[f32], transposed: bool) -> Result<SparseWeight> {
        let (rows, cols) = (self.fwd.rows, self.fwd.cols);
        if w.len() != rows * cols {
            return Err(Error::Shape(format!(
                "csr_gather: weight has {} elements, the mask's CSR is {rows}x{cols}",
                w.len()
            )));
        }
        let s = if transposed {
            self.t.get_or_init(|| {
                let mut f = self.fwd.clone();
                f.values = vec![0.0; f.col_idx.len()];
                let mut t = f.transpose();
                t.values = Vec::new();
                t
            })
        } else {
            &self.fwd
        };
        let mut values = vec![0f32; s.col_idx.len()];
        // Line l's entries are positions (l, c) of the mask, or (c, l) for the transpose.
        let (line_stride, elem_stride) = if transposed { (1, cols) } else { (cols, 1) };
        split_rows_mut(&mut values, &s.row_ptr)
            .into_par_iter()
            .enumerate()
            .for_each(|(l, vals)| {
                let e0 = s.row_ptr[l] as usize;
                let cs = &s.col_idx[e0..e0 + vals.len()];
                for (v, &c) in vals.iter_mut().zip(cs) {
                    *v = w[l * line_stride + c as usize * elem_stride];
                }
            });
        Ok(SparseWeight {
            rows: s.rows,
            cols: s.cols,
            row_ptr: Arc::clone(&s.row_ptr),
            col_idx: Arc::clone(&s.col_idx),
            values,
        })
    }
}

/// `values` split at the row offsets (one slice per row).
fn split_rows_mut<'a>(mut values: &'a mut [f32], row_ptr: &[u32]) -> Vec<&'a mut [f32]> {
    let mut out = Vec::with_capacity(row_ptr.len().saturating_sub(1));
    for p in row_ptr.windows(2) {
        let (a, b) = values.split_at_mut((p[1] - p[0]) as usize);
        out.push(a);
        values = b;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gathered_csr_equals_a_fresh_build_and_its_transpose() {
        let (rows, cols) = (13, 29);
        let mask: Vec<f32> = (0..rows * cols)
            .map(|i| match (i * 7919) % 7 {
                0 => f32::NAN,
                1 | 2 => 1.0,
                _ => 0.0,
            })
            .collect();
        let plan = HostCsrPlan::of_mask(&mask, rows, cols).unwrap();
        for step in 0..3 {
            let w: Vec<f32> = (0..rows * cols)
                .map(|i| (i * (step + 3)) as f32 - 7.5)
                .collect();
            let fresh = SparseWeight::from_masked(&w, &mask, rows, cols).unwrap();
            assert_eq!(plan.nnz(), fresh.nnz());
            assert_eq!(plan.gather(&w, false).unwrap(), fresh);
            assert_eq!(plan.gather(&w, true).unwrap(), fresh.transpose());
        }
        let e = plan.gather(&[0.0; 5], false).unwrap_err().to_string();
        assert!(e.contains("13x29"), "{e}");
    }

    #[test]
    fn device_operands_are_checked_on_their_shape() {
        let d = DeviceCsr {
            rows: 2,
            cols: 3,
            nnz: 4,
            inner: Arc::new(()),
        };
        let op = SparseOperand::Device(&d);
        assert_eq!(op.dims(), (2, 3, 4));
        assert!(op.check(2, 3, "op", "w").is_ok());
        let e = op.check(3, 2, "op", "w").unwrap_err().to_string();
        assert!(e.contains("op: w is a 2x3 device CSR"), "{e}");
    }
}
