//! Recycled host buffers for CPU tensors: a training step allocates the same activation and
//! gradient sizes every step, so a dropped CPU tensor's buffer is kept (up to a byte cap) and
//! handed to the next kernel output of the same length. That removes the allocation and, more
//! importantly, the page clearing of a zeroed allocation (`vec![0.0; n]`) from the steady-state
//! step: a kernel that writes every element of its output takes a [`reused`] buffer, whose stale
//! contents it overwrites; a kernel that accumulates takes [`zeroed`].
//!
//! The cap is `SUPTICKETS_BUFFER_POOL_MB` (default 1024 MiB; 0 turns recycling off). Buffers
//! shorter than [`MIN_LEN`] elements are left to the allocator.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// Shortest buffer (in elements) worth recycling.
pub const MIN_LEN: usize = 4096;

#[derive(Default)]
struct Pool {
    by_len: HashMap<usize, Vec<Vec<f32>>>,
    bytes: usize,
}

fn pool() -> &'static Mutex<Pool> {
    static POOL: OnceLock<Mutex<Pool>> = OnceLock::new();
    POOL.get_or_init(|| Mutex::new(Pool::default()))
}

fn cap_bytes() -> usize {
    static CAP: OnceLock<usize> = OnceLock::new();
    *CAP.get_or_init(|| {
        std::env::var("SUPTICKETS_BUFFER_POOL_MB")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .unwrap_or(1024)
            << 20
    })
}

fn take(len: usize) -> Option<Vec<f32>> {
    if len < MIN_LEN {
        return None;
    }
    let mut p = pool().lock().unwrap_or_else(|e| e.into_inner());
    let v = p.by_len.get_mut(&len)?.pop()?;
    p.bytes -= 4 * v.capacity();
    Some(v)
}

/// Whether `SUPTICKETS_BUFFER_POISON=1`: [`reused`] then fills every buffer with NaN, so a
/// kernel that reads its output before writing it shows up as NaN in the tests (tools/test.sh
/// runs the CPU kernel tests this way).
fn poison() -> bool {
    static POISON: OnceLock<bool> = OnceLock::new();
    *POISON.get_or_init(|| std::env::var("SUPTICKETS_BUFFER_POISON").is_ok_and(|v| v == "1"))
}

/// A buffer of `len` elements whose contents are unspecified (finite or not): for outputs the
/// kernel writes in full.
pub fn reused(len: usize) -> Vec<f32> {
    if poison() {
        let mut v = take(len).unwrap_or_default();
        v.clear();
        v.resize(len, f32::NAN);
        return v;
    }
    take(len).unwrap_or_else(|| vec![0.0; len])
}

/// A buffer of `len` zeros: for outputs the kernel accumulates into.
pub fn zeroed(len: usize) -> Vec<f32> {
    match take(len) {
        Some(mut v) => {
            v.fill(0.0);
            v
        }
        None => vec![0.0; len],
    }
}

/// Keeps `v` for a later output of the same length (dropped if the pool is full).
pub fn recycle(v: Vec<f32>) {
    if v.len() < MIN_LEN || v.len() != v.capacity() {
        return;
    }
    let bytes = 4 * v.capacity();
    let mut p = pool().lock().unwrap_or_else(|e| e.into_inner());
    if p.bytes + bytes > cap_bytes() {
        return;
    }
    p.bytes += bytes;
    p.by_len.entry(v.len()).or_default().push(v);
}

/// Bytes held for reuse now.
pub fn pooled_bytes() -> usize {
    pool().lock().unwrap_or_else(|e| e.into_inner()).bytes
}

/// Returns every held buffer to the allocator.
pub fn clear() {
    let mut p = pool().lock().unwrap_or_else(|e| e.into_inner());
    p.by_len.clear();
    p.bytes = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recycled_buffer_is_handed_out_again_and_zeroed_on_request() {
        let len = MIN_LEN + 17; // a length no other test uses
        let v = vec![3.0f32; len];
        let ptr = v.as_ptr();
        recycle(v);
        let again = reused(len);
        assert_eq!(again.as_ptr(), ptr, "the same allocation comes back");
        assert_eq!(again.len(), len);
        recycle(again);
        let z = zeroed(len);
        assert_eq!(z.as_ptr(), ptr);
        assert!(z.iter().all(|&x| x == 0.0));
        // Short buffers are not kept.
        let small = vec![1.0f32; 8];
        recycle(small);
        let fresh = reused(8);
        assert_eq!(fresh.len(), 8);
        assert!(poison() || fresh.iter().all(|&x| x == 0.0));
    }
}
