//! Exported driver functions: allocation, copies, memsets, pointer attributes.

use std::ffi::{c_int, c_uint, c_void};

use super::{
    device, guard, out, report, CUresult, Device, CONTEXT, INVALID_HANDLE, INVALID_VALUE,
    OUT_OF_MEMORY, SUCCESS,
};
use crate::stats::Copy;

type DevPtr = u64;
type Stream = *mut c_void;

/// The device is usable (no sticky error) and `stream`, if given, is one of its streams.
fn check_ready(d: &Device, stream: Option<Stream>) -> Result<(), CUresult> {
    d.check()?;
    match stream {
        Some(s) if !d.valid_stream(s as usize) => Err(INVALID_HANDLE),
        _ => Ok(()),
    }
}

fn alloc(what: &str, dptr: *mut DevPtr, bytes: usize, stream: Option<Stream>) -> CUresult {
    guard(what, || {
        let mut d = device();
        if let Err(e) = check_ready(&d, stream) {
            return e;
        }
        if bytes == 0 || dptr.is_null() {
            return INVALID_VALUE;
        }
        match d.mem.alloc(bytes) {
            // SAFETY: `dptr` is non-null and points to a CUdeviceptr per the API contract.
            Some(p) => unsafe { out(dptr, p) },
            None => {
                report(&format!(
                    "{what}: out of memory allocating {bytes} bytes ({} of {} bytes in use; set VGPU_MEM_MB)",
                    d.mem.used, d.mem.limit
                ));
                OUT_OF_MEMORY
            }
        }
    })
}

fn free(what: &str, p: DevPtr) -> CUresult {
    guard(what, || {
        let mut d = device();
        if !d.mem.free(p) {
            report(&format!(
                "{what}: {p:#x} is not the start of a live allocation ({})",
                d.mem.describe(p, 1)
            ));
            return INVALID_VALUE;
        }
        d.check().err().unwrap_or(SUCCESS)
    })
}

/// `cuMemAlloc_v2`.
///
/// # Safety
/// `dptr` must be null or writable.
#[no_mangle]
pub unsafe extern "C" fn cuMemAlloc_v2(dptr: *mut DevPtr, bytes: usize) -> CUresult {
    alloc("cuMemAlloc", dptr, bytes, None)
}

/// `cuMemAllocAsync` (completes immediately).
///
/// # Safety
/// `dptr` must be null or writable.
#[no_mangle]
pub unsafe extern "C" fn cuMemAllocAsync(
    dptr: *mut DevPtr,
    bytes: usize,
    stream: Stream,
) -> CUresult {
    alloc("cuMemAllocAsync", dptr, bytes, Some(stream))
}

/// `cuMemFree_v2`.
#[no_mangle]
pub extern "C" fn cuMemFree_v2(p: DevPtr) -> CUresult {
    free("cuMemFree", p)
}

/// `cuMemFreeAsync` (completes immediately).
#[no_mangle]
pub extern "C" fn cuMemFreeAsync(p: DevPtr, _stream: Stream) -> CUresult {
    free("cuMemFreeAsync", p)
}

/// `cuMemGetInfo_v2`.
///
/// # Safety
/// The pointers must be null or writable.
#[no_mangle]
pub unsafe extern "C" fn cuMemGetInfo_v2(free: *mut usize, total: *mut usize) -> CUresult {
    let d = device();
    // SAFETY: forwarded contract.
    unsafe {
        out(free, d.mem.limit - d.mem.used);
        out(total, d.mem.limit)
    }
}

/// Copies `bytes` between host and device (or device and device) with range checks.
fn copy(
    what: &str,
    kind: Copy,
    dst: u64,
    src: u64,
    bytes: usize,
    stream: Option<Stream>,
) -> CUresult {
    guard(what, || {
        let mut d = device();
        if let Err(e) = check_ready(&d, stream) {
            return e;
        }
        if bytes == 0 {
            return SUCCESS;
        }
        let bad = |d: &Device, side: &str, a: u64| {
            report(&format!(
                "{what}: the {side} range {a:#x}..+{bytes} is not inside one allocation ({})",
                d.mem.describe(a, bytes)
            ));
            INVALID_VALUE
        };
        match kind {
            Copy::HtoD => match d.mem.bytes_mut(dst, bytes) {
                // SAFETY: the host source holds `bytes` bytes per the API contract.
                Ok(t) => t.copy_from_slice(unsafe {
                    std::slice::from_raw_parts(src as *const u8, bytes)
                }),
                Err(_) => return bad(&d, "destination", dst),
            },
            Copy::DtoH => match d.mem.bytes_mut(src, bytes) {
                // SAFETY: the host destination holds `bytes` bytes per the API contract.
                Ok(s) => unsafe { std::slice::from_raw_parts_mut(dst as *mut u8, bytes) }
                    .copy_from_slice(s),
                Err(_) => return bad(&d, "source", src),
            },
            _ => {
                let tmp = match d.mem.bytes_mut(src, bytes) {
                    Ok(s) => s.to_vec(),
                    Err(_) => return bad(&d, "source", src),
                };
                match d.mem.bytes_mut(dst, bytes) {
                    Ok(t) => t.copy_from_slice(&tmp),
                    Err(_) => return bad(&d, "destination", dst),
                }
            }
        }
        d.stats.copy(kind, bytes as u64);
        SUCCESS
    })
}

/// `cuMemcpyHtoD_v2`.
///
/// # Safety
/// `src` must hold `bytes` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn cuMemcpyHtoD_v2(
    dst: DevPtr,
    src: *const c_void,
    bytes: usize,
) -> CUresult {
    copy("cuMemcpyHtoD", Copy::HtoD, dst, src as u64, bytes, None)
}

/// `cuMemcpyHtoDAsync_v2` (completes immediately).
///
/// # Safety
/// `src` must hold `bytes` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn cuMemcpyHtoDAsync_v2(
    dst: DevPtr,
    src: *const c_void,
    bytes: usize,
    s: Stream,
) -> CUresult {
    copy(
        "cuMemcpyHtoDAsync",
        Copy::HtoD,
        dst,
        src as u64,
        bytes,
        Some(s),
    )
}

/// `cuMemcpyDtoH_v2`.
///
/// # Safety
/// `dst` must hold `bytes` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn cuMemcpyDtoH_v2(dst: *mut c_void, src: DevPtr, bytes: usize) -> CUresult {
    copy("cuMemcpyDtoH", Copy::DtoH, dst as u64, src, bytes, None)
}

/// `cuMemcpyDtoHAsync_v2` (completes immediately).
///
/// # Safety
/// `dst` must hold `bytes` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn cuMemcpyDtoHAsync_v2(
    dst: *mut c_void,
    src: DevPtr,
    bytes: usize,
    s: Stream,
) -> CUresult {
    copy(
        "cuMemcpyDtoHAsync",
        Copy::DtoH,
        dst as u64,
        src,
        bytes,
        Some(s),
    )
}

/// `cuMemcpyDtoD_v2`.
#[no_mangle]
pub extern "C" fn cuMemcpyDtoD_v2(dst: DevPtr, src: DevPtr, bytes: usize) -> CUresult {
    copy("cuMemcpyDtoD", Copy::DtoD, dst, src, bytes, None)
}

/// `cuMemcpyDtoDAsync_v2` (completes immediately).
#[no_mangle]
pub extern "C" fn cuMemcpyDtoDAsync_v2(
    dst: DevPtr,
    src: DevPtr,
    bytes: usize,
    s: Stream,
) -> CUresult {
    copy("cuMemcpyDtoDAsync", Copy::DtoD, dst, src, bytes, Some(s))
}

/// `cuMemcpy` / `cuMemcpyAsync` with unified addressing: device addresses only.
#[no_mangle]
pub extern "C" fn cuMemcpy(dst: DevPtr, src: DevPtr, bytes: usize) -> CUresult {
    copy("cuMemcpy", Copy::DtoD, dst, src, bytes, None)
}

/// `cuMemcpyAsync`: device addresses only.
#[no_mangle]
pub extern "C" fn cuMemcpyAsync(dst: DevPtr, src: DevPtr, bytes: usize, s: Stream) -> CUresult {
    copy("cuMemcpyAsync", Copy::DtoD, dst, src, bytes, Some(s))
}

/// Fills `n` elements of `width` bytes with `value`.
fn memset(
    what: &str,
    dst: DevPtr,
    value: u32,
    width: usize,
    n: usize,
    stream: Option<Stream>,
) -> CUresult {
    guard(what, || {
        let mut d = device();
        if let Err(e) = check_ready(&d, stream) {
            return e;
        }
        if n == 0 {
            return SUCCESS;
        }
        let bytes = n * width;
        let pattern = value.to_le_bytes();
        match d.mem.bytes_mut(dst, bytes) {
            Ok(t) => t
                .chunks_exact_mut(width)
                .for_each(|c| c.copy_from_slice(&pattern[..width])),
            Err(_) => {
                report(&format!(
                    "{what}: the range {dst:#x}..+{bytes} is not inside one allocation ({})",
                    d.mem.describe(dst, bytes)
                ));
                return INVALID_VALUE;
            }
        }
        d.stats.copy(Copy::Memset, bytes as u64);
        SUCCESS
    })
}

/// `cuMemsetD8_v2`.
#[no_mangle]
pub extern "C" fn cuMemsetD8_v2(dst: DevPtr, v: u8, n: usize) -> CUresult {
    memset("cuMemsetD8", dst, v as u32, 1, n, None)
}

/// `cuMemsetD8Async`.
#[no_mangle]
pub extern "C" fn cuMemsetD8Async(dst: DevPtr, v: u8, n: usize, s: Stream) -> CUresult {
    memset("cuMemsetD8Async", dst, v as u32, 1, n, Some(s))
}

/// `cuMemsetD16_v2`.
#[no_mangle]
pub extern "C" fn cuMemsetD16_v2(dst: DevPtr, v: u16, n: usize) -> CUresult {
    memset("cuMemsetD16", dst, v as u32, 2, n, None)
}

/// `cuMemsetD16Async`.
#[no_mangle]
pub extern "C" fn cuMemsetD16Async(dst: DevPtr, v: u16, n: usize, s: Stream) -> CUresult {
    memset("cuMemsetD16Async", dst, v as u32, 2, n, Some(s))
}

/// `cuMemsetD32_v2`.
#[no_mangle]
pub extern "C" fn cuMemsetD32_v2(dst: DevPtr, v: c_uint, n: usize) -> CUresult {
    memset("cuMemsetD32", dst, v, 4, n, None)
}

/// `cuMemsetD32Async`.
#[no_mangle]
pub extern "C" fn cuMemsetD32Async(dst: DevPtr, v: c_uint, n: usize, s: Stream) -> CUresult {
    memset("cuMemsetD32Async", dst, v, 4, n, Some(s))
}

/// `cuPointerGetAttribute`: context, memory type (device), device pointer, ordinal, range.
///
/// # Safety
/// `data` must point to storage of the attribute's type.
#[no_mangle]
pub unsafe extern "C" fn cuPointerGetAttribute(
    data: *mut c_void,
    attrib: c_int,
    ptr: DevPtr,
) -> CUresult {
    let mut d = device();
    if data.is_null() || d.mem.bytes_mut(ptr, 1).is_err() {
        return INVALID_VALUE;
    }
    // SAFETY: the caller passes storage of the attribute's documented type.
    unsafe {
        match attrib {
            1 => out(data as *mut usize, CONTEXT),
            2 => out(data as *mut c_uint, 2), // CU_MEMORYTYPE_DEVICE
            3 => out(data as *mut u64, ptr),
            9 => out(data as *mut c_int, 0),
            _ => {
                report(&format!(
                    "cuPointerGetAttribute: attribute {attrib} is not implemented"
                ));
                super::NOT_SUPPORTED
            }
        }
    }
}

/// vgpu extension: copies the process counters into `out` (up to `len` values, in order:
/// launches, failed launches, instructions, htod copies, htod bytes, dtoh copies, dtoh bytes,
/// dtod copies, dtod bytes, memsets, memset bytes, live allocations); returns how many
/// values exist.
///
/// # Safety
/// `out` must hold `len` u64.
#[no_mangle]
pub unsafe extern "C" fn vgpu_counters(out: *mut u64, len: usize) -> usize {
    let d = device();
    let s = &d.stats;
    let instructions: u64 = s.kernels.values().map(|k| k.counters.instructions).sum();
    let mut v = vec![s.launches, s.failures, instructions];
    for (n, b) in s.copies {
        v.extend([n, b]);
    }
    v.push(d.mem.count() as u64);
    if !out.is_null() {
        for (i, x) in v.iter().take(len).enumerate() {
            // SAFETY: `out` holds `len` values.
            unsafe { out.add(i).write(*x) };
        }
    }
    v.len()
}
