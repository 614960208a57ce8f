//! Sharding of a global batch: every rank iterates the same global batches (the loader's order
//! depends only on the seed and the epoch) and takes its own contiguous rows of each, so N ranks
//! at b/N rows see together exactly what one process sees at batch size b.

use std::ops::Range;

use crate::error::{Error, Result};

/// Rows `[rank·n/size, (rank+1)·n/size)` of a batch of `n` rows: disjoint, covering `0..n`, and
/// of sizes differing by at most one.
pub fn shard_range(n: usize, rank: usize, size: usize) -> Range<usize> {
    assert!(
        size > 0 && rank < size,
        "shard_range: rank {rank} of {size}"
    );
    rank * n / size..(rank + 1) * n / size
}

/// The rows `range` of a row-major buffer with `row_len` values per row.
pub fn rows(data: &[f32], row_len: usize, range: Range<usize>) -> &[f32] {
    &data[range.start * row_len..range.end * row_len]
}

/// Errors unless the global batch size splits evenly over `size` ranks.
pub fn check_batch_size(batch_size: usize, size: usize) -> Result<()> {
    if size > 1 && !batch_size.is_multiple_of(size) {
        return Err(Error::Config(format!(
            "--batch-size {batch_size} is the global batch size and must be a multiple of the \
             {size} processes (each takes batch-size / {size} rows of every batch)"
        )));
    }
    Ok(())
}

/// Whether the last, partial batch of an epoch of `n_train` examples at batch size `bs` must be
/// dropped on `size` ranks: one process drops a final batch of one example (a single sample
/// per channel in batch norm); several drop a final batch that would leave some rank fewer than
/// two rows, or (with `sync_bn`, whose gradient needs equal shards) one that does not split
/// evenly.
pub fn drop_last(n_train: usize, bs: usize, size: usize, sync_bn: bool) -> bool {
    let rem = n_train % bs;
    if rem == 0 || n_train <= 1 {
        return false;
    }
    rem < 2 * size || (size > 1 && sync_bn && !rem.is_multiple_of(size))
}

/// The weight of a rank's mean gradient in the global mean: its rows over the batch's rows.
pub fn shard_weight(rows: usize, batch_rows: usize) -> f32 {
    rows as f32 / batch_rows.max(1) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_every_batch() {
        for size in 1..=5 {
            for n in 0..23 {
                let mut next = 0;
                for r in 0..size {
                    let s = shard_range(n, r, size);
                    assert_eq!(s.start, next, "n {n} size {size} rank {r}");
                    assert!(s.len() == n / size || s.len() == n / size + 1);
                    next = s.end;
                }
                assert_eq!(next, n);
            }
        }
        // Even split: rank r takes rows [r·b/N, (r+1)·b/N).
        assert_eq!(shard_range(128, 1, 2), 64..128);
        assert_eq!(shard_range(12, 2, 4), 6..9);
    }

    #[test]
    fn rows_slices_whole_rows() {
        let x: Vec<f32> = (0..12).map(|v| v as f32).collect();
        assert_eq!(rows(&x, 3, 1..3), &[3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        assert!(rows(&x, 3, 2..2).is_empty());
    }

    #[test]
    fn batch_size_must_split() {
        assert!(check_batch_size(64, 2).is_ok());
        assert!(check_batch_size(7, 1).is_ok());
        let e = check_batch_size(30, 4).unwrap_err().to_string();
        assert!(e.contains("--batch-size 30"), "{e}");
    }

    #[test]
    fn last_batch_rules() {
        // One process: only a final batch of one example is dropped (as before).
        assert!(drop_last(129, 128, 1, false));
        assert!(!drop_last(130, 128, 1, false));
        assert!(!drop_last(256, 128, 1, false));
        // Two processes: every rank keeps at least two rows.
        assert!(drop_last(131, 128, 2, false));
        assert!(!drop_last(132, 128, 2, false));
        assert!(!drop_last(133, 128, 2, false));
        // With synchronised batch norm the last batch must split evenly.
        assert!(drop_last(133, 128, 2, true));
        assert!(!drop_last(134, 128, 2, true));
    }

    #[test]
    fn weights_sum_to_one() {
        for size in 1..=4 {
            let n = 11;
            let s: f32 = (0..size)
                .map(|r| shard_weight(shard_range(n, r, size).len(), n))
                .sum();
            assert!((s - 1.0).abs() < 1e-6);
        }
    }
}
