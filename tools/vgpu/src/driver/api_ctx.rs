//! Exported driver functions: initialisation, device queries, contexts, error strings.

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_uint, c_void};

use super::{
    device, error_name, error_string, guard, out, register_exit_summary, CUresult,
    COMPUTE_CAPABILITY, CONTEXT, DEVICE_NAME, DRIVER_VERSION, INVALID_CONTEXT, INVALID_DEVICE,
    INVALID_VALUE, SUCCESS,
};
use crate::exec::{MAX_SHARED_OPTIN, MAX_THREADS_PER_BLOCK};

thread_local! {
    static CURRENT: Cell<usize> = const { Cell::new(0) };
}

fn check_dev(dev: c_int) -> Result<(), CUresult> {
    if dev == 0 {
        Ok(())
    } else {
        Err(INVALID_DEVICE)
    }
}

/// `cuInit`: always succeeds; registers the exit-time summary.
#[no_mangle]
pub extern "C" fn cuInit(_flags: c_uint) -> CUresult {
    guard("cuInit", || {
        register_exit_summary();
        drop(device());
        SUCCESS
    })
}

/// `cuDriverGetVersion`: 12090.
///
/// # Safety
/// `v` must be null or writable.
#[no_mangle]
pub unsafe extern "C" fn cuDriverGetVersion(v: *mut c_int) -> CUresult {
    // SAFETY: forwarded contract.
    unsafe { out(v, DRIVER_VERSION) }
}

/// `cuDeviceGetCount`: one device.
///
/// # Safety
/// `n` must be null or writable.
#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetCount(n: *mut c_int) -> CUresult {
    // SAFETY: forwarded contract.
    unsafe { out(n, 1) }
}

/// `cuDeviceGet`: ordinal 0 only.
///
/// # Safety
/// `d` must be null or writable.
#[no_mangle]
pub unsafe extern "C" fn cuDeviceGet(d: *mut c_int, ordinal: c_int) -> CUresult {
    if ordinal != 0 {
        return INVALID_DEVICE;
    }
    // SAFETY: forwarded contract.
    unsafe { out(d, 0) }
}

/// `cuDeviceGetName`.
///
/// # Safety
/// `name` must be null or hold `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetName(name: *mut c_char, len: c_int, dev: c_int) -> CUresult {
    if let Err(e) = check_dev(dev) {
        return e;
    }
    if name.is_null() || len <= 0 {
        return INVALID_VALUE;
    }
    let bytes = DEVICE_NAME.as_bytes();
    let n = bytes.len().min(len as usize - 1);
    // SAFETY: `name` holds `len` > n bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), name as *mut u8, n);
        *name.add(n) = 0;
    }
    SUCCESS
}

/// The value of a device attribute (`CUdevice_attribute` number).
pub fn attribute(attrib: c_int, sm_count: u32) -> c_int {
    let (major, minor) = COMPUTE_CAPABILITY;
    match attrib {
        1 => MAX_THREADS_PER_BLOCK as c_int,
        2 | 3 => 1024,
        4 => 64,
        5 => i32::MAX,
        6 | 7 => 65535,
        8 => 48 * 1024,
        9 => 64 * 1024,
        10 => 32,
        11 => i32::MAX,
        12 | 82 => 65536,
        13 => 1_755_000,
        14 => 512,
        15 | 19 | 31 | 41 | 78 | 79 | 80 | 95 => 1,
        16 => sm_count as c_int,
        36 => 2_619_000,
        37 => 5120,
        38 => 50 * 1024 * 1024,
        39 => 2048,
        40 => 2,
        75 => major,
        76 => minor,
        81 => (MAX_SHARED_OPTIN + 1024) as c_int,
        97 => MAX_SHARED_OPTIN as c_int,
        106 => 32,
        115 => 1, // memory pools: cudarc then uses cuMemAllocAsync / cuMemFreeAsync
        _ => 0,
    }
}

/// `cuDeviceGetAttribute`.
///
/// # Safety
/// `pi` must be null or writable.
#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetAttribute(
    pi: *mut c_int,
    attrib: c_int,
    dev: c_int,
) -> CUresult {
    if let Err(e) = check_dev(dev) {
        return e;
    }
    let sm = device().sm_count;
    // SAFETY: forwarded contract.
    unsafe { out(pi, attribute(attrib, sm)) }
}

/// `cuDeviceTotalMem_v2`.
///
/// # Safety
/// `bytes` must be null or writable.
#[no_mangle]
pub unsafe extern "C" fn cuDeviceTotalMem_v2(bytes: *mut usize, dev: c_int) -> CUresult {
    if let Err(e) = check_dev(dev) {
        return e;
    }
    let total = device().mem.limit;
    // SAFETY: forwarded contract.
    unsafe { out(bytes, total) }
}

/// `cuDeviceGetUuid`: a fixed UUID.
///
/// # Safety
/// `uuid` must be null or hold 16 bytes.
#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetUuid(uuid: *mut [u8; 16], dev: c_int) -> CUresult {
    if let Err(e) = check_dev(dev) {
        return e;
    }
    // SAFETY: forwarded contract.
    unsafe { out(uuid, *b"vgpu-suptickets\0") }
}

/// `cuDeviceGetUuid_v2`.
///
/// # Safety
/// As [`cuDeviceGetUuid`].
#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetUuid_v2(uuid: *mut [u8; 16], dev: c_int) -> CUresult {
    // SAFETY: forwarded contract.
    unsafe { cuDeviceGetUuid(uuid, dev) }
}

/// `cuDevicePrimaryCtxRetain`.
///
/// # Safety
/// `ctx` must be null or writable.
#[no_mangle]
pub unsafe extern "C" fn cuDevicePrimaryCtxRetain(ctx: *mut *mut c_void, dev: c_int) -> CUresult {
    if let Err(e) = check_dev(dev) {
        return e;
    }
    device().primary_refs += 1;
    // SAFETY: forwarded contract.
    unsafe { out(ctx, CONTEXT as *mut c_void) }
}

/// `cuDevicePrimaryCtxRelease_v2`.
#[no_mangle]
pub extern "C" fn cuDevicePrimaryCtxRelease_v2(dev: c_int) -> CUresult {
    if let Err(e) = check_dev(dev) {
        return e;
    }
    let mut d = device();
    d.primary_refs = d.primary_refs.saturating_sub(1);
    SUCCESS
}

/// `cuDevicePrimaryCtxReset_v2`: clears a sticky launch error.
#[no_mangle]
pub extern "C" fn cuDevicePrimaryCtxReset_v2(dev: c_int) -> CUresult {
    if let Err(e) = check_dev(dev) {
        return e;
    }
    device().sticky = SUCCESS;
    SUCCESS
}

/// `cuDevicePrimaryCtxGetState`.
///
/// # Safety
/// The pointers must be null or writable.
#[no_mangle]
pub unsafe extern "C" fn cuDevicePrimaryCtxGetState(
    dev: c_int,
    flags: *mut c_uint,
    active: *mut c_int,
) -> CUresult {
    if let Err(e) = check_dev(dev) {
        return e;
    }
    let refs = device().primary_refs;
    // SAFETY: forwarded contract.
    unsafe {
        out(flags, 0);
        out(active, (refs > 0) as c_int)
    }
}

/// `cuDevicePrimaryCtxSetFlags_v2`: accepted and ignored.
#[no_mangle]
pub extern "C" fn cuDevicePrimaryCtxSetFlags_v2(dev: c_int, _flags: c_uint) -> CUresult {
    check_dev(dev).err().unwrap_or(SUCCESS)
}

/// `cuCtxGetCurrent`.
///
/// # Safety
/// `ctx` must be null or writable.
#[no_mangle]
pub unsafe extern "C" fn cuCtxGetCurrent(ctx: *mut *mut c_void) -> CUresult {
    let c = CURRENT.with(|c| c.get());
    // SAFETY: forwarded contract.
    unsafe { out(ctx, c as *mut c_void) }
}

/// `cuCtxSetCurrent`.
#[no_mangle]
pub extern "C" fn cuCtxSetCurrent(ctx: *mut c_void) -> CUresult {
    let c = ctx as usize;
    if c != 0 && c != CONTEXT {
        return INVALID_CONTEXT;
    }
    CURRENT.with(|cur| cur.set(c));
    SUCCESS
}

/// `cuCtxPushCurrent_v2` (one level: sets the current context).
#[no_mangle]
pub extern "C" fn cuCtxPushCurrent_v2(ctx: *mut c_void) -> CUresult {
    cuCtxSetCurrent(ctx)
}

/// `cuCtxPopCurrent_v2`.
///
/// # Safety
/// `ctx` must be null or writable.
#[no_mangle]
pub unsafe extern "C" fn cuCtxPopCurrent_v2(ctx: *mut *mut c_void) -> CUresult {
    let c = CURRENT.with(|c| c.replace(0));
    if !ctx.is_null() {
        // SAFETY: non-null and writable per the contract.
        unsafe { ctx.write(c as *mut c_void) };
    }
    SUCCESS
}

/// `cuCtxGetDevice`.
///
/// # Safety
/// `dev` must be null or writable.
#[no_mangle]
pub unsafe extern "C" fn cuCtxGetDevice(dev: *mut c_int) -> CUresult {
    // SAFETY: forwarded contract.
    unsafe { out(dev, 0) }
}

/// `cuCtxSynchronize`: work is already done; returns a sticky error if any.
#[no_mangle]
pub extern "C" fn cuCtxSynchronize() -> CUresult {
    device().check().err().unwrap_or(SUCCESS)
}

/// `cuCtxSetFlags` / `cuCtxSetCacheConfig` / `cuCtxSetLimit`: accepted and ignored.
#[no_mangle]
pub extern "C" fn cuCtxSetFlags(_flags: c_uint) -> CUresult {
    SUCCESS
}

/// `cuCtxSetCacheConfig`: accepted and ignored.
#[no_mangle]
pub extern "C" fn cuCtxSetCacheConfig(_config: c_int) -> CUresult {
    SUCCESS
}

/// `cuCtxGetCacheConfig`: "prefer none".
///
/// # Safety
/// `config` must be null or writable.
#[no_mangle]
pub unsafe extern "C" fn cuCtxGetCacheConfig(config: *mut c_int) -> CUresult {
    // SAFETY: forwarded contract.
    unsafe { out(config, 0) }
}

/// `cuCtxSetLimit`: accepted and ignored.
#[no_mangle]
pub extern "C" fn cuCtxSetLimit(_limit: c_int, _value: usize) -> CUresult {
    SUCCESS
}

/// `cuCtxGetLimit`: stack 1 KiB, printf FIFO 1 MiB, heap 8 MiB, others 0.
///
/// # Safety
/// `value` must be null or writable.
#[no_mangle]
pub unsafe extern "C" fn cuCtxGetLimit(value: *mut usize, limit: c_int) -> CUresult {
    let v = match limit {
        0 => 1024,
        1 => 1 << 20,
        2 => 8 << 20,
        _ => 0,
    };
    // SAFETY: forwarded contract.
    unsafe { out(value, v) }
}

/// `cuCtxGetStreamPriorityRange`: (0, -5) like recent GPUs.
///
/// # Safety
/// The pointers must be null or writable.
#[no_mangle]
pub unsafe extern "C" fn cuCtxGetStreamPriorityRange(
    least: *mut c_int,
    greatest: *mut c_int,
) -> CUresult {
    // SAFETY: forwarded contract (null pointers are allowed by the API).
    unsafe {
        if !least.is_null() {
            least.write(0);
        }
        if !greatest.is_null() {
            greatest.write(-5);
        }
    }
    SUCCESS
}

/// `cuCtxGetApiVersion`.
///
/// # Safety
/// `v` must be null or writable.
#[no_mangle]
pub unsafe extern "C" fn cuCtxGetApiVersion(_ctx: *mut c_void, v: *mut c_uint) -> CUresult {
    // SAFETY: forwarded contract.
    unsafe { out(v, 3020) }
}

/// `cuGetErrorName`.
///
/// # Safety
/// `s` must be null or writable.
#[no_mangle]
pub unsafe extern "C" fn cuGetErrorName(code: CUresult, s: *mut *const c_char) -> CUresult {
    match error_name(code) {
        // SAFETY: forwarded contract; the string is static.
        Some(n) => unsafe { out(s, n.as_ptr()) },
        None => INVALID_VALUE,
    }
}

/// `cuGetErrorString`.
///
/// # Safety
/// `s` must be null or writable.
#[no_mangle]
pub unsafe extern "C" fn cuGetErrorString(code: CUresult, s: *mut *const c_char) -> CUresult {
    match error_string(code) {
        // SAFETY: forwarded contract; the string is static.
        Some(n) => unsafe { out(s, n.as_ptr()) },
        None => INVALID_VALUE,
    }
}

/// `cuProfilerStart`: no-op.
#[no_mangle]
pub extern "C" fn cuProfilerStart() -> CUresult {
    SUCCESS
}

/// `cuProfilerStop`: no-op.
#[no_mangle]
pub extern "C" fn cuProfilerStop() -> CUresult {
    SUCCESS
}

/// `cuGetExportTable`: NVIDIA-internal tables (NVRTC asks for them); quietly not supported.
#[no_mangle]
pub extern "C" fn cuGetExportTable(_table: *mut *const c_void, _id: *const c_void) -> CUresult {
    super::NOT_SUPPORTED
}
