//! The counting allocator behind `bench`'s peak-heap column: a known allocation inside the
//! measured work shows up in the transient bytes, and a freed one is not counted after it.

use suptickets::bench::memory::{self, CountingAlloc, HeapPeak};

#[global_allocator]
static HEAP: CountingAlloc = CountingAlloc;

#[test]
fn peak_of_work_counts_its_allocations() {
    HEAP.activate();
    let ((), idle) = HeapPeak::measure(|| ());
    assert!(idle.transient_bytes.unwrap() < 1 << 20, "{idle:?}");
    let n = 16 << 20;
    let (len, hp) = HeapPeak::measure(|| {
        let v = vec![1u8; n];
        std::hint::black_box(&v);
        v.len()
    });
    assert_eq!(len, n);
    let t = hp.transient_bytes.unwrap();
    assert!(
        t >= n && t < n + (1 << 20),
        "transient {t} for a {n}-byte buffer"
    );
    assert!(hp.peak_bytes.unwrap() >= t);
    assert!(hp.allocations.unwrap() >= 1);
    // Freed: live bytes are back near where they were.
    assert!(
        memory::current() < n,
        "live {} after freeing",
        memory::current()
    );
    let keep = vec![0u8; n];
    let (_, after) = HeapPeak::measure(|| std::hint::black_box(keep.len()));
    assert!(after.peak_bytes.unwrap() >= n && after.transient_bytes.unwrap() < 1 << 20);
}
