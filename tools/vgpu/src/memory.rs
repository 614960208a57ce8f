//! Device memory: `cuMemAlloc`'ed allocations at fake device addresses, and the checked view
//! of them a launch uses.
//!
//! Addresses are never reused (a freed range stays unmapped, so a use after free is caught),
//! allocations are 512-byte aligned with at least 256 unmapped bytes between them (so running
//! off the end of one never lands in the next), and fresh memory is filled with a byte pattern
//! (0xFF by default: every f32 reads as NaN), so reading memory no kernel or copy wrote shows.

use std::collections::BTreeMap;

/// First device address handed out.
pub const GLOBAL_BASE: u64 = 0x0000_7f00_0000_0000;
/// Where shared memory appears in the generic address space (`cvta.shared`).
pub const SHARED_WINDOW: u64 = 0x0000_1000_0000_0000;
/// Where local memory appears in the generic address space (`cvta.local`).
pub const LOCAL_WINDOW: u64 = 0x0000_2000_0000_0000;
/// Where kernel parameters appear in the generic address space (`cvta.param`).
pub const PARAM_WINDOW: u64 = 0x0000_3000_0000_0000;
/// Size of each of the three windows above.
pub const WINDOW_SIZE: u64 = 1 << 32;

/// One live allocation.
struct Allocation {
    len: usize,
    /// Backing store, 8-byte aligned so 4- and 8-byte atomics can use host atomics.
    data: Vec<u64>,
}

/// All device allocations of the virtual GPU.
pub struct DeviceMemory {
    allocs: BTreeMap<u64, Allocation>,
    freed: BTreeMap<u64, usize>,
    next: u64,
    /// Bytes currently allocated.
    pub used: usize,
    /// Bytes the device reports as total memory.
    pub limit: usize,
    fill: u8,
}

/// A mapped range as a launch sees it.
#[derive(Clone, Copy, Debug)]
pub struct Region {
    /// First device address.
    pub start: u64,
    /// One past the last device address.
    pub end: u64,
    ptr: *mut u8,
}

/// The global memory a launch may touch: every live allocation, sorted by address.
pub struct GlobalView {
    regions: Vec<Region>,
}

// SAFETY: the pointers stay valid for the launch (the device lock is held while the view
// exists and allocations cannot be freed meanwhile). Blocks running on several host threads
// access them only through `load`/`store` (plain accesses of disjoint or kernel-racy words,
// as on the GPU) and through host atomics for `atom`/`red`.
unsafe impl Send for GlobalView {}
// SAFETY: see above.
unsafe impl Sync for GlobalView {}

impl DeviceMemory {
    /// An empty device of `limit` bytes whose fresh allocations read as `fill` bytes.
    pub fn new(limit: usize, fill: u8) -> DeviceMemory {
        DeviceMemory {
            allocs: BTreeMap::new(),
            freed: BTreeMap::new(),
            next: GLOBAL_BASE,
            used: 0,
            limit,
            fill,
        }
    }

    /// Allocates `len` bytes, or `None` when the device is full.
    pub fn alloc(&mut self, len: usize) -> Option<u64> {
        if self.used.checked_add(len)? > self.limit {
            return None;
        }
        let base = self.next;
        let words = len.div_ceil(8).max(1);
        let pattern = u64::from_ne_bytes([self.fill; 8]);
        self.allocs.insert(
            base,
            Allocation {
                len,
                data: vec![pattern; words],
            },
        );
        self.used += len;
        self.next = (base + len as u64 + 256).div_ceil(512) * 512;
        Some(base)
    }

    /// Frees the allocation starting at `base`; false if there is none.
    pub fn free(&mut self, base: u64) -> bool {
        match self.allocs.remove(&base) {
            Some(a) => {
                self.used -= a.len;
                self.freed.insert(base, a.len);
                true
            }
            None => false,
        }
    }

    /// Number of live allocations.
    pub fn count(&self) -> usize {
        self.allocs.len()
    }

    /// The bytes `[addr, addr + len)`, which must lie inside one live allocation.
    pub fn bytes_mut(&mut self, addr: u64, len: usize) -> Result<&mut [u8], String> {
        let why = self.describe(addr, len);
        let (base, a) = self
            .allocs
            .range_mut(..=addr)
            .next_back()
            .ok_or_else(|| why.clone())?;
        let off = (addr - base) as usize;
        if off.checked_add(len).is_none_or(|e| e > a.len) {
            return Err(why);
        }
        let ptr = a.data.as_mut_ptr() as *mut u8;
        // SAFETY: `off + len <= a.len <= 8 * data.len()`, and the borrow of `self` covers it.
        Ok(unsafe { std::slice::from_raw_parts_mut(ptr.add(off), len) })
    }

    /// Says where `[addr, addr + len)` is relative to the allocations (for error messages).
    pub fn describe(&self, addr: u64, len: usize) -> String {
        if let Some((b, a)) = self.allocs.range(..=addr).next_back() {
            let end = b + a.len as u64;
            if addr + len as u64 <= end {
                return format!("inside allocation {b:#x} ({} bytes)", a.len);
            }
            if addr < end {
                return format!(
                    "runs {} bytes past the end of allocation {b:#x} ({} bytes)",
                    addr + len as u64 - end,
                    a.len
                );
            }
            if addr < end + 4096 {
                return format!(
                    "{} bytes after the end of allocation {b:#x} ({} bytes)",
                    addr - end,
                    a.len
                );
            }
        }
        if let Some((b, l)) = self.freed.range(..=addr).next_back() {
            if addr < b + *l as u64 {
                return format!("inside freed allocation {b:#x} ({l} bytes): use after free");
            }
        }
        if let Some((b, _)) = self.allocs.range(addr..).next() {
            if b - addr < 4096 {
                return format!("{} bytes before allocation {b:#x}", b - addr);
            }
        }
        "not in any allocation".to_string()
    }

    /// The view of every live allocation for a launch.
    pub fn view(&mut self) -> GlobalView {
        let regions = self
            .allocs
            .iter_mut()
            .map(|(b, a)| Region {
                start: *b,
                end: b + a.len as u64,
                ptr: a.data.as_mut_ptr() as *mut u8,
            })
            .collect();
        GlobalView { regions }
    }
}

impl GlobalView {
    /// The host pointer for `[addr, addr + len)` if it lies in one allocation; `hint` caches
    /// the index of the last region found.
    #[inline]
    pub fn find(&self, addr: u64, len: u64, hint: &mut usize) -> Option<*mut u8> {
        let hit = |r: &Region| addr >= r.start && addr.checked_add(len).is_some_and(|e| e <= r.end);
        if let Some(r) = self.regions.get(*hint) {
            if hit(r) {
                // SAFETY: `addr - start < end - start`, the region's length.
                return Some(unsafe { r.ptr.add((addr - r.start) as usize) });
            }
        }
        let i = self
            .regions
            .partition_point(|r| r.start <= addr)
            .checked_sub(1)?;
        let r = &self.regions[i];
        if !hit(r) {
            return None;
        }
        *hint = i;
        // SAFETY: as above.
        Some(unsafe { r.ptr.add((addr - r.start) as usize) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_are_separated_and_checked() {
        let mut m = DeviceMemory::new(1 << 20, 0xFF);
        let a = m.alloc(10).unwrap();
        let b = m.alloc(4).unwrap();
        assert!(b >= a + 10 + 256);
        assert!(m.bytes_mut(a, 10).is_ok());
        assert!(m.bytes_mut(a + 8, 4).is_err());
        assert_eq!(m.bytes_mut(b, 4).unwrap(), &[0xFF; 4]);
        let v = m.view();
        let mut h = 0;
        assert!(v.find(a + 6, 4, &mut h).is_some());
        assert!(v.find(a + 8, 4, &mut h).is_none());
        assert!(m.free(a));
        assert!(m.describe(a, 4).contains("use after free"));
        assert!(m.alloc(1 << 21).is_none());
    }
}
