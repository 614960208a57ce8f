//! [`SparseWeight`]: a masked weight in compressed sparse rows (CSR), the format of the sparse
//! conv and linear kernels (family `spconv`).
//!
//! A conv weight [c_out, c_in, k_h, k_w] is the matrix [c_out, c_in·k_h·k_w] (one row per output
//! channel, the im2col row order); a linear weight [out, in] is itself. The structure is the
//! MASK, not the nonzeros of the weight: a regrown connection whose weight is still 0 keeps its
//! place, so the weight gradient is computed at every active position. Entries of a row are in
//! ascending column order. Indices are u32 and values f32: 8 bytes per active weight plus 4 per
//! row, i.e. 10% of the dense weight memory at 95% sparsity.

use std::sync::Arc;

use rayon::prelude::*;

use crate::error::{Error, Result};

/// A masked weight matrix in CSR form.
#[derive(Clone, Debug, PartialEq)]
pub struct SparseWeight {
    /// Rows (output channels).
    pub rows: usize,
    /// Columns (c_in·k_h·k_w, or the input features of a linear layer).
    pub cols: usize,
    /// Row r's entries are `row_ptr[r]..row_ptr[r + 1]` (length rows + 1). Shared: the CSR of
    /// a kept mask structure and each step's values gathered into it hold the same arrays.
    pub row_ptr: Arc<Vec<u32>>,
    /// Column of each entry, ascending within a row (shared like `row_ptr`).
    pub col_idx: Arc<Vec<u32>>,
    /// Value of each entry.
    pub values: Vec<f32>,
}

impl SparseWeight {
    /// The active positions of `mask` (nonzero entries; NaN counts as active) with the values of
    /// `w` there, both row-major [rows, cols].
    pub fn from_masked(w: &[f32], mask: &[f32], rows: usize, cols: usize) -> Result<Self> {
        Ok(
            Self::from_masked_within(w, mask, rows, cols, f64::INFINITY)?
                .expect("every density is within an infinite bound"),
        )
    }

    /// [`SparseWeight::from_masked`] when the mask's density is at most `max_density`, else
    /// None; the density comes from the same row count that sizes the CSR, so a layer that
    /// stays dense costs one pass over its mask.
    pub fn from_masked_within(
        w: &[f32],
        mask: &[f32],
        rows: usize,
        cols: usize,
        max_density: f64,
    ) -> Result<Option<Self>> {
        if w.len() != rows * cols || mask.len() != rows * cols {
            return Err(Error::Shape(format!(
                "SparseWeight::from_masked: weight has {} and mask {} elements, expected {rows}x{cols}",
                w.len(),
                mask.len()
            )));
        }
        if rows * cols > u32::MAX as usize {
            return Err(Error::Shape(format!(
                "SparseWeight::from_masked: {rows}x{cols} has more entries than u32 indices address"
            )));
        }
        let cols1 = cols.max(1);
        let counts: Vec<u32> = mask
            .par_chunks(cols1)
            .map(|m| m.iter().filter(|&&v| v != 0.0).count() as u32)
            .collect();
        let mut row_ptr = Vec::with_capacity(rows + 1);
        row_ptr.push(0u32);
        for c in &counts {
            row_ptr.push(row_ptr.last().unwrap() + c);
        }
        let nnz = *row_ptr.last().unwrap() as usize;
        if nnz as f64 > max_density * (rows * cols) as f64 {
            return Ok(None);
        }
        let mut col_idx = vec![0u32; nnz];
        let mut values = vec![0f32; nnz];
        // Split the entry arrays at the row boundaries and fill every row in parallel.
        let mut idx_rows: Vec<&mut [u32]> = Vec::with_capacity(rows);
        let mut val_rows: Vec<&mut [f32]> = Vec::with_capacity(rows);
        let (mut ci, mut vi) = (col_idx.as_mut_slice(), values.as_mut_slice());
        for &c in &counts {
            let (a, b) = ci.split_at_mut(c as usize);
            let (va, vb) = vi.split_at_mut(c as usize);
            idx_rows.push(a);
            val_rows.push(va);
            ci = b;
            vi = vb;
        }
        idx_rows
            .into_par_iter()
            .zip(val_rows)
            .enumerate()
            .for_each(|(r, (idx, val))| {
                let (m, wr) = (
                    &mask[r * cols..(r + 1) * cols],
                    &w[r * cols..(r + 1) * cols],
                );
                let mut e = 0;
                for (j, (&mv, &wv)) in m.iter().zip(wr).enumerate() {
                    if mv != 0.0 {
                        idx[e] = j as u32;
                        val[e] = wv;
                        e += 1;
                    }
                }
            });
        Ok(Some(SparseWeight {
            rows,
            cols,
            row_ptr: Arc::new(row_ptr),
            col_idx: Arc::new(col_idx),
            values,
        }))
    }

    /// Errors unless this is a valid `rows`×`cols` CSR (see [`check_csr`]); `op` and `what` name
    /// the call and the argument in the message.
    pub fn check(&self, rows: usize, cols: usize, op: &str, what: &str) -> Result<()> {
        if self.rows != rows || self.cols != cols {
            return Err(Error::Shape(format!(
                "{op}: {what} is a {}x{} CSR with {} entries, expected a {rows}x{cols} one",
                self.rows,
                self.cols,
                self.nnz()
            )));
        }
        check_csr(
            &self.row_ptr,
            &self.col_idx,
            self.values.len(),
            rows,
            cols,
            op,
            what,
        )
    }

    /// Number of stored (active) entries.
    pub fn nnz(&self) -> usize {
        self.values.len()
    }

    /// Active fraction nnz / (rows·cols).
    pub fn density(&self) -> f64 {
        self.nnz() as f64 / (self.rows * self.cols).max(1) as f64
    }

    /// Bytes of the format (indices, values and row pointers).
    pub fn bytes(&self) -> usize {
        4 * (self.row_ptr.len() + self.col_idx.len() + self.values.len())
    }

    /// Entries of row `r` as (columns, values).
    pub fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.row_ptr[r] as usize, self.row_ptr[r + 1] as usize);
        (&self.col_idx[a..b], &self.values[a..b])
    }

    /// The CSR of the transpose (rows = this matrix's columns); entries of each new row are in
    /// ascending order of the original row. Row blocks are counted and written in parallel;
    /// each block's entries land after the previous blocks', so the order is the sequential one.
    pub fn transpose(&self) -> SparseWeight {
        let blocks = rayon::current_num_threads().clamp(1, self.rows.max(1));
        let bounds: Vec<usize> = (0..=blocks).map(|b| self.rows * b / blocks).collect();
        // counts[b][c]: entries of column c in row block b.
        let counts: Vec<Vec<u32>> = (0..blocks)
            .into_par_iter()
            .map(|b| {
                let mut cnt = vec![0u32; self.cols];
                let (e0, e1) = (
                    self.row_ptr[bounds[b]] as usize,
                    self.row_ptr[bounds[b + 1]] as usize,
                );
                for &c in &self.col_idx[e0..e1] {
                    cnt[c as usize] += 1;
                }
                cnt
            })
            .collect();
        let mut row_ptr = vec![0u32; self.cols + 1];
        for c in 0..self.cols {
            row_ptr[c + 1] = row_ptr[c] + counts.iter().map(|cnt| cnt[c]).sum::<u32>();
        }
        // starts[b][c]: where block b writes its first entry of column c.
        let mut starts: Vec<Vec<u32>> = Vec::with_capacity(blocks);
        let mut next = row_ptr[..self.cols].to_vec();
        for cnt in &counts {
            starts.push(next.clone());
            for (n, &k) in next.iter_mut().zip(cnt) {
                *n += k;
            }
        }
        let nnz = self.nnz();
        let mut col_idx = vec![0u32; nnz];
        let mut values = vec![0f32; nnz];
        let (ci, vi) = (SyncPtr(col_idx.as_mut_ptr()), SyncPtr(values.as_mut_ptr()));
        starts.into_par_iter().enumerate().for_each(|(b, mut pos)| {
            for r in bounds[b]..bounds[b + 1] {
                let (cs, vs) = self.row(r);
                for (&c, &v) in cs.iter().zip(vs) {
                    let e = pos[c as usize] as usize;
                    // SAFETY: the (block, column) ranges [starts[b][c], +counts[b][c]) are
                    // disjoint and inside 0..nnz, so every e is written exactly once.
                    unsafe {
                        *ci.get().add(e) = r as u32;
                        *vi.get().add(e) = v;
                    }
                    pos[c as usize] += 1;
                }
            }
        });
        SparseWeight {
            rows: self.cols,
            cols: self.rows,
            row_ptr: Arc::new(row_ptr),
            col_idx: Arc::new(col_idx),
            values,
        }
    }

    /// A dense row-major [rows, cols] matrix with `entry_values[e]` at entry e's position and 0
    /// elsewhere (e.g. a weight gradient computed at the active positions only).
    pub fn scatter_dense(&self, entry_values: &[f32]) -> Vec<f32> {
        assert_eq!(
            entry_values.len(),
            self.nnz(),
            "scatter_dense: one value per entry"
        );
        let mut out = vec![0f32; self.rows * self.cols];
        out.par_chunks_mut(self.cols.max(1))
            .enumerate()
            .for_each(|(r, dst)| {
                let (a, b) = (self.row_ptr[r] as usize, self.row_ptr[r + 1] as usize);
                for e in a..b {
                    dst[self.col_idx[e] as usize] = entry_values[e];
                }
            });
        out
    }

    /// The dense matrix this represents (values at the active positions, 0 elsewhere).
    pub fn to_dense(&self) -> Vec<f32> {
        self.scatter_dense(&self.values)
    }
}

/// A raw pointer shared by the transpose's writers (disjoint ranges).
#[derive(Clone, Copy)]
struct SyncPtr<T>(*mut T);
// SAFETY: only used for writes to disjoint positions (see `transpose`).
unsafe impl<T> Send for SyncPtr<T> {}
unsafe impl<T> Sync for SyncPtr<T> {}
impl<T> SyncPtr<T> {
    fn get(self) -> *mut T {
        self.0
    }
}

/// Errors unless `row_ptr`, `col_idx` and `n_values` values form a valid `rows`×`cols` CSR:
/// `rows + 1` non-decreasing row offsets from 0 to nnz, one column and one value per entry, and
/// the columns of each row strictly ascending and below `cols`. The kernels rely on it: every
/// index they read through stays in bounds. `op` and `what` name the call and the argument.
pub fn check_csr(
    row_ptr: &[u32],
    col_idx: &[u32],
    n_values: usize,
    rows: usize,
    cols: usize,
    op: &str,
    what: &str,
) -> Result<()> {
    let nnz = col_idx.len();
    let problem = if row_ptr.len() != rows + 1 {
        Some(format!("{} row offsets for {rows} rows", row_ptr.len()))
    } else if row_ptr[0] != 0 || row_ptr[rows] as usize != nnz {
        Some(format!(
            "row offsets run from {} to {}, not from 0 to its {nnz} entries",
            row_ptr[0], row_ptr[rows]
        ))
    } else if n_values != nnz {
        Some(format!("{n_values} values for {nnz} entries"))
    } else if let Some(r) = (0..rows).find(|&r| row_ptr[r] > row_ptr[r + 1]) {
        Some(format!("row offsets decrease at row {r}"))
    } else {
        (0..rows).find_map(|r| {
            let cs = &col_idx[row_ptr[r] as usize..row_ptr[r + 1] as usize];
            if cs.windows(2).any(|p| p[0] >= p[1]) {
                Some(format!("the columns of row {r} are not strictly ascending"))
            } else {
                cs.last()
                    .filter(|&&c| c as usize >= cols)
                    .map(|c| format!("row {r} has column {c}, outside 0..{cols}"))
            }
        })
    };
    match problem {
        Some(why) => Err(Error::Shape(format!(
            "{op}: {what} is not a valid {rows}x{cols} CSR: {why}"
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_of_a_hand_made_mask_and_its_transpose() {
        // 2x3: mask [[1,0,1],[0,1,0]], weight 1..6 (the regrown 0.0 at (1,1) stays an entry).
        let w = [1.0, 2.0, 3.0, 4.0, 0.0, 6.0];
        let m = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0];
        let s = SparseWeight::from_masked(&w, &m, 2, 3).unwrap();
        assert_eq!(*s.row_ptr, vec![0, 2, 3]);
        assert_eq!(*s.col_idx, vec![0, 2, 1]);
        assert_eq!(s.values, vec![1.0, 3.0, 0.0]);
        assert_eq!(s.to_dense(), vec![1.0, 0.0, 3.0, 0.0, 0.0, 0.0]);
        assert!((s.density() - 0.5).abs() < 1e-12);
        assert_eq!(s.bytes(), 4 * (3 + 3 + 3));
        let t = s.transpose();
        assert_eq!((t.rows, t.cols), (3, 2));
        assert_eq!(*t.row_ptr, vec![0, 1, 2, 3]);
        assert_eq!(*t.col_idx, vec![0, 1, 0]);
        assert_eq!(t.values, vec![1.0, 0.0, 3.0]);
        assert_eq!(t.transpose(), s);
    }

    #[test]
    fn parallel_transpose_equals_the_dense_transpose() {
        let (rows, cols) = (37, 53);
        let w: Vec<f32> = (0..rows * cols).map(|i| i as f32 + 1.0).collect();
        let m: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 7919) % 5 == 0) as u8 as f32)
            .collect();
        let s = SparseWeight::from_masked(&w, &m, rows, cols).unwrap();
        let t = s.transpose();
        let (d, dt) = (s.to_dense(), t.to_dense());
        for r in 0..rows {
            for c in 0..cols {
                assert_eq!(d[r * cols + c], dt[c * rows + r]);
            }
        }
        assert_eq!(t.transpose(), s);
    }

    #[test]
    fn invalid_csrs_are_rejected_with_the_reason() {
        let s =
            SparseWeight::from_masked(&[1.0; 6], &[1.0, 0.0, 1.0, 0.0, 1.0, 0.0], 2, 3).unwrap();
        assert!(s.check(2, 3, "op", "w").is_ok());
        let e = s.check(3, 2, "op", "w").unwrap_err().to_string();
        assert!(e.contains("op: w is a 2x3 CSR"), "{e}");
        let bad = |row_ptr: &[u32], col_idx: &[u32], n_values: usize| {
            check_csr(row_ptr, col_idx, n_values, 2, 3, "op", "w")
                .unwrap_err()
                .to_string()
        };
        assert!(bad(&[0, 2], &[0, 2], 2).contains("2 row offsets for 2 rows"));
        assert!(bad(&[1, 2, 3], &[0, 2, 1], 3).contains("from 1 to 3"));
        assert!(bad(&[0, 2, 3], &[0, 2, 1], 2).contains("2 values for 3 entries"));
        assert!(bad(&[0, 3, 2], &[0, 1], 2).contains("decrease at row 1"));
        assert!(bad(&[0, 2, 3], &[2, 0, 1], 3).contains("row 0 are not strictly ascending"));
        assert!(bad(&[0, 2, 3], &[1, 1, 1], 3).contains("row 0 are not strictly ascending"));
        assert!(bad(&[0, 2, 3], &[0, 2, 3], 3).contains("row 1 has column 3"));
    }

    #[test]
    fn wrong_lengths_are_named() {
        let e = SparseWeight::from_masked(&[1.0; 5], &[1.0; 6], 2, 3).unwrap_err();
        assert!(e.to_string().contains("expected 2x3"), "{e}");
    }
}
