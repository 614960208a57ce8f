//! Keeps freed tensor buffers in the process heap instead of returning them to the kernel.
//!
//! A training step allocates and frees activations of tens of MB each (VGG-16 at batch 128:
//! 33 MB per conv output). With glibc's defaults every such buffer is a fresh `mmap`, so each
//! step pays a page fault and a page clear per 4 KiB touched: 27% of the samples of a sparse
//! VGG-16 inference profile (`perf record`, BENCHMARKS.md). Raising the mmap threshold and the
//! trim threshold lets the heap reuse the pages; measured on VGG-16 at 95% sparsity, the
//! sparse training step went from 635-680 ms to 530-542 ms and the dense one from 1.90-2.05 s
//! to 1.75-1.79 s (`suptickets bench`, four alternating runs).

/// Applies the settings (glibc on Linux; elsewhere nothing). Call once, early in `main`.
pub fn keep_freed_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before other threads start.
    unsafe {
        // 32 MiB is the largest mmap threshold glibc accepts (HEAP_MAX_SIZE / 2); with the
        // dynamic threshold, larger freed chunks then raise it further as they are reused.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}
