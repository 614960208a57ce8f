//! Heap accounting for `bench`: a counting global allocator and a resettable high-water mark.
//!
//! The `suptickets` binary installs [`CountingAlloc`] as its global allocator; `bench` then
//! reports the peak heap of a training step (dense and sparse) as the allocator saw it. Library
//! users who do not install it get `None` from [`is_active`]-guarded readers instead of zeros.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static ACTIVE: AtomicBool = AtomicBool::new(false);
static CALLS: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting live bytes and their peak.
pub struct CountingAlloc;

fn grow(bytes: usize) {
    CALLS.fetch_add(1, Ordering::Relaxed);
    let now = CURRENT.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

fn shrink(bytes: usize) {
    CURRENT.fetch_sub(bytes, Ordering::Relaxed);
}

// SAFETY: every call forwards to `System` with the same layout; the counters only observe.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grow(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grow(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) };
        shrink(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            shrink(layout.size());
            grow(new_size);
        }
        p
    }
}

impl CountingAlloc {
    /// Marks the allocator as installed; call once at start-up from the binary that installs it.
    pub fn activate(&self) {
        ACTIVE.store(true, Ordering::Relaxed);
    }
}

/// Whether the running program installed [`CountingAlloc`] (and activated it).
pub fn is_active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// Live heap bytes now.
pub fn current() -> usize {
    CURRENT.load(Ordering::Relaxed)
}

/// Allocations (and growing reallocations) made so far.
pub fn allocations() -> usize {
    CALLS.load(Ordering::Relaxed)
}

/// Restarts the high-water mark from the live bytes now; returns them.
pub fn reset_peak() -> usize {
    let now = current();
    PEAK.store(now, Ordering::Relaxed);
    now
}

/// The highest live heap bytes since the last [`reset_peak`].
pub fn peak() -> usize {
    PEAK.load(Ordering::Relaxed).max(current())
}

/// Peak heap of a piece of work: the high-water mark while it ran and its rise above the bytes
/// live when it started (both `None` when the counting allocator is not installed).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct HeapPeak {
    /// Highest live heap bytes while the work ran.
    pub peak_bytes: Option<usize>,
    /// `peak_bytes` minus the bytes live when the work started.
    pub transient_bytes: Option<usize>,
    /// Heap allocations the work made (all threads).
    pub allocations: Option<usize>,
}

impl HeapPeak {
    /// Measures `work`.
    pub fn measure<T>(work: impl FnOnce() -> T) -> (T, HeapPeak) {
        let (base, calls) = (reset_peak(), allocations());
        let out = work();
        let hp = if is_active() {
            let p = peak();
            HeapPeak {
                peak_bytes: Some(p),
                transient_bytes: Some(p.saturating_sub(base)),
                allocations: Some(allocations() - calls),
            }
        } else {
            HeapPeak::default()
        };
        (out, hp)
    }

    /// The larger of two measurements, field by field.
    pub fn max(self, o: HeapPeak) -> HeapPeak {
        let m = |a: Option<usize>, b: Option<usize>| match (a, b) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        HeapPeak {
            peak_bytes: m(self.peak_bytes, o.peak_bytes),
            transient_bytes: m(self.transient_bytes, o.transient_bytes),
            allocations: m(self.allocations, o.allocations),
        }
    }
}
