//! Exported driver functions: modules, functions, launches, streams and events.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::time::Instant;

use super::{
    device, guard, out, report, CUresult, Device, Function, ILLEGAL_ADDRESS, INVALID_HANDLE,
    INVALID_PTX, INVALID_VALUE, LAUNCH_FAILED, MISALIGNED_ADDRESS, NOT_FOUND, SUCCESS,
};
use crate::exec::{self, Config, FaultKind};
use crate::ptx::{inst::Kernel, parse_module};

type Stream = *mut c_void;
type Event = *mut c_void;

fn load_module(module: *mut *mut c_void, image: *const c_void) -> CUresult {
    guard("cuModuleLoadData", || {
        if module.is_null() || image.is_null() {
            return INVALID_VALUE;
        }
        // SAFETY: a PTX image is a NUL-terminated string (the only kind accepted here).
        let text = unsafe { CStr::from_ptr(image as *const c_char) }.to_string_lossy();
        if !text.contains(".entry") && !text.contains(".version") {
            report("cuModuleLoadData: the image is not PTX text (cubin/fatbin are not supported)");
            return INVALID_PTX;
        }
        let m = match parse_module(&text) {
            Ok(m) => m,
            Err(e) => {
                report(&format!("cuModuleLoadData: cannot parse the PTX: {e}"));
                return INVALID_PTX;
            }
        };
        for k in &m.kernels {
            for u in &k.unsupported {
                report(&format!(
                    "note: kernel {} uses an instruction the virtual GPU does not implement \
                     (a launch fails if it executes): {u}",
                    k.name
                ));
            }
        }
        let mut d = device();
        if let Err(e) = d.check() {
            return e;
        }
        let id = d.add_module(m);
        // SAFETY: checked non-null; points to a CUmodule per the API contract.
        unsafe { out(module, id as *mut c_void) }
    })
}

/// `cuModuleLoadData`: parses PTX text into a module.
///
/// # Safety
/// `image` must be a NUL-terminated PTX string; `module` writable.
#[no_mangle]
pub unsafe extern "C" fn cuModuleLoadData(
    module: *mut *mut c_void,
    image: *const c_void,
) -> CUresult {
    load_module(module, image)
}

/// `cuModuleLoadDataEx`: as [`cuModuleLoadData`]; JIT options are ignored.
///
/// # Safety
/// As [`cuModuleLoadData`].
#[no_mangle]
pub unsafe extern "C" fn cuModuleLoadDataEx(
    module: *mut *mut c_void,
    image: *const c_void,
    _n: c_uint,
    _options: *mut c_int,
    _values: *mut *mut c_void,
) -> CUresult {
    load_module(module, image)
}

/// `cuModuleUnload`.
#[no_mangle]
pub extern "C" fn cuModuleUnload(module: *mut c_void) -> CUresult {
    if device().remove_module(module as usize) {
        SUCCESS
    } else {
        INVALID_HANDLE
    }
}

/// `cuModuleGetFunction`.
///
/// # Safety
/// `name` must be a NUL-terminated string; `f` writable.
#[no_mangle]
pub unsafe extern "C" fn cuModuleGetFunction(
    f: *mut *mut c_void,
    module: *mut c_void,
    name: *const c_char,
) -> CUresult {
    if name.is_null() || f.is_null() {
        return INVALID_VALUE;
    }
    // SAFETY: NUL-terminated per the contract.
    let name = unsafe { CStr::from_ptr(name) }.to_string_lossy();
    match device().function(module as usize, &name) {
        // SAFETY: checked non-null.
        Ok(id) => unsafe { out(f, id as *mut c_void) },
        Err(e) => {
            if e == NOT_FOUND {
                report(&format!(
                    "cuModuleGetFunction: no kernel named {name} in the module"
                ));
            }
            e
        }
    }
}

/// `cuModuleGetGlobal_v2`: module variables are not supported.
#[no_mangle]
pub extern "C" fn cuModuleGetGlobal_v2(
    _p: *mut u64,
    _b: *mut usize,
    _m: *mut c_void,
    _n: *const c_char,
) -> CUresult {
    NOT_FOUND
}

fn kernel_of(d: &Device, f: *mut c_void) -> Result<Function, CUresult> {
    d.get_function(f as usize).ok_or(INVALID_HANDLE)
}

/// `cuFuncGetAttribute`.
///
/// # Safety
/// `pi` must be null or writable.
#[no_mangle]
pub unsafe extern "C" fn cuFuncGetAttribute(
    pi: *mut c_int,
    attrib: c_int,
    f: *mut c_void,
) -> CUresult {
    let d = device();
    let func = match kernel_of(&d, f) {
        Ok(k) => k,
        Err(e) => return e,
    };
    let k = &func.module.kernels[func.index];
    let v = match attrib {
        0 => k.max_threads.unwrap_or(1024).min(1024) as c_int,
        1 => k.shared_static as c_int,
        3 => k.local_bytes as c_int,
        4 => (k.nregs.min(255)) as c_int,
        5 | 6 => 90,
        8 => (exec::MAX_SHARED_OPTIN as usize - k.shared_static) as c_int,
        _ => 0,
    };
    // SAFETY: forwarded contract.
    unsafe { out(pi, v) }
}

/// `cuFuncSetAttribute` / `cuFuncSetCacheConfig`: accepted (limits are checked at launch).
#[no_mangle]
pub extern "C" fn cuFuncSetAttribute(_f: *mut c_void, _attrib: c_int, _value: c_int) -> CUresult {
    SUCCESS
}

/// `cuFuncSetCacheConfig`: accepted and ignored.
#[no_mangle]
pub extern "C" fn cuFuncSetCacheConfig(_f: *mut c_void, _config: c_int) -> CUresult {
    SUCCESS
}

/// Builds the parameter buffer from `kernelParams` (one pointer per parameter) or from the
/// `extra` buffer (`CU_LAUNCH_PARAM_BUFFER_POINTER` / `_SIZE`).
///
/// # Safety
/// The pointers must follow the cuLaunchKernel contract for `k`'s parameters.
unsafe fn param_buffer(
    k: &Kernel,
    params: *mut *mut c_void,
    extra: *mut *mut c_void,
) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; k.param_bytes];
    if !params.is_null() {
        for (i, p) in k.params.iter().enumerate() {
            // SAFETY: `params` holds one pointer per kernel parameter.
            let src = unsafe { *params.add(i) } as *const u8;
            if src.is_null() {
                return Err(format!(
                    "kernel parameter {i} ({}) is a null pointer",
                    p.name
                ));
            }
            // SAFETY: each points to a value of the parameter's size.
            let v = unsafe { std::slice::from_raw_parts(src, p.size) };
            buf[p.offset..p.offset + p.size].copy_from_slice(v);
        }
        return Ok(buf);
    }
    if extra.is_null() {
        return if k.params.is_empty() {
            Ok(buf)
        } else {
            Err("neither kernelParams nor extra given".into())
        };
    }
    let (mut ptr, mut size) = (std::ptr::null::<u8>(), 0usize);
    let mut i = 0;
    loop {
        // SAFETY: `extra` is a key/value list terminated by CU_LAUNCH_PARAM_END (0).
        let key = unsafe { *extra.add(i) } as usize;
        match key {
            0 => break,
            // SAFETY: as above.
            1 => ptr = unsafe { *extra.add(i + 1) } as *const u8,
            // SAFETY: the value of BUFFER_SIZE points to a size_t.
            2 => size = unsafe { *(*extra.add(i + 1) as *const usize) },
            _ => return Err(format!("unknown extra launch key {key}")),
        }
        i += 2;
    }
    if ptr.is_null() || size < k.param_bytes {
        return Err(format!(
            "extra parameter buffer of {size} bytes, {} needed",
            k.param_bytes
        ));
    }
    // SAFETY: the buffer holds `size` >= param_bytes bytes.
    buf.copy_from_slice(unsafe { std::slice::from_raw_parts(ptr, k.param_bytes) });
    Ok(buf)
}

/// Runs one launch under the device lock; maps faults to result codes.
fn launch(
    f: *mut c_void,
    cfg: Config,
    stream: Stream,
    params: *mut *mut c_void,
    extra: *mut *mut c_void,
) -> CUresult {
    let mut d = device();
    if let Err(e) = d.check() {
        return e;
    }
    if !d.valid_stream(stream as usize) {
        return INVALID_HANDLE;
    }
    let func = match kernel_of(&d, f) {
        Ok(k) => k,
        Err(e) => return e,
    };
    let k = &func.module.kernels[func.index];
    // SAFETY: forwarded cuLaunchKernel contract.
    let buf = match unsafe { param_buffer(k, params, extra) } {
        Ok(b) => b,
        Err(e) => {
            report(&format!("cuLaunchKernel {}: {e}", k.name));
            return INVALID_VALUE;
        }
    };
    let t0 = Instant::now();
    let view = d.mem.view();
    let r = exec::launch(k, &cfg, &buf, &view, d.workers, d.fill, d.sm_count);
    let wall = t0.elapsed();
    let (counters, code) = match r {
        Ok(c) => (c, SUCCESS),
        Err(fault) => {
            let (code, name) = match fault.kind {
                FaultKind::IllegalAddress(_) => (ILLEGAL_ADDRESS, "CUDA_ERROR_ILLEGAL_ADDRESS"),
                FaultKind::Misaligned => (MISALIGNED_ADDRESS, "CUDA_ERROR_MISALIGNED_ADDRESS"),
                FaultKind::Launch => (LAUNCH_FAILED, "CUDA_ERROR_LAUNCH_FAILED"),
                FaultKind::Config => (INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE"),
            };
            let mut msg = format!("launch of kernel {} failed ({name}): {}", k.name, fault.msg);
            if let FaultKind::IllegalAddress(Some((a, len))) = fault.kind {
                msg += &format!("\n  address {a:#x}: {}", d.mem.describe(a, len));
            }
            report(&msg);
            if code != INVALID_VALUE && d.sticky_errors {
                d.sticky = code;
            }
            (Default::default(), code)
        }
    };
    let name = k.name.clone();
    d.stats
        .launch(&name, &cfg, &counters, wall, code == SUCCESS);
    code
}

/// `cuLaunchKernel`: runs the whole grid before returning.
///
/// # Safety
/// `params` / `extra` must follow the CUDA contract for the kernel's parameters.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn cuLaunchKernel(
    f: *mut c_void,
    gx: c_uint,
    gy: c_uint,
    gz: c_uint,
    bx: c_uint,
    by: c_uint,
    bz: c_uint,
    shared: c_uint,
    stream: Stream,
    params: *mut *mut c_void,
    extra: *mut *mut c_void,
) -> CUresult {
    let cfg = Config {
        grid: [gx, gy, gz],
        block: [bx, by, bz],
        dyn_shared: shared,
    };
    guard("cuLaunchKernel", || launch(f, cfg, stream, params, extra))
}

/// `cuLaunchCooperativeKernel`: as [`cuLaunchKernel`] (grid-wide sync is not implemented).
///
/// # Safety
/// As [`cuLaunchKernel`].
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn cuLaunchCooperativeKernel(
    f: *mut c_void,
    gx: c_uint,
    gy: c_uint,
    gz: c_uint,
    bx: c_uint,
    by: c_uint,
    bz: c_uint,
    shared: c_uint,
    stream: Stream,
    params: *mut *mut c_void,
) -> CUresult {
    // SAFETY: forwarded contract.
    unsafe {
        cuLaunchKernel(
            f,
            gx,
            gy,
            gz,
            bx,
            by,
            bz,
            shared,
            stream,
            params,
            std::ptr::null_mut(),
        )
    }
}

/// `cuLaunchHostFunc`: calls `func(data)` now (all earlier work on the stream is done).
///
/// # Safety
/// `func` must be callable with `data`.
#[no_mangle]
pub unsafe extern "C" fn cuLaunchHostFunc(
    _s: Stream,
    func: Option<unsafe extern "C" fn(*mut c_void)>,
    data: *mut c_void,
) -> CUresult {
    match func {
        // SAFETY: forwarded contract.
        Some(f) => unsafe { f(data) },
        None => return INVALID_VALUE,
    }
    SUCCESS
}

/// `cuOccupancyMaxActiveBlocksPerMultiprocessor`: 2048 threads per SM over the block size.
///
/// # Safety
/// `n` must be null or writable.
#[no_mangle]
pub unsafe extern "C" fn cuOccupancyMaxActiveBlocksPerMultiprocessor(
    n: *mut c_int,
    _f: *mut c_void,
    block: c_int,
    _smem: usize,
) -> CUresult {
    // SAFETY: forwarded contract.
    unsafe { out(n, (2048 / block.max(1)).clamp(1, 32)) }
}

/// `cuStreamCreate`.
///
/// # Safety
/// `s` must be null or writable.
#[no_mangle]
pub unsafe extern "C" fn cuStreamCreate(s: *mut Stream, _flags: c_uint) -> CUresult {
    let id = device().new_stream();
    // SAFETY: forwarded contract.
    unsafe { out(s, id as Stream) }
}

/// `cuStreamCreateWithPriority`.
///
/// # Safety
/// `s` must be null or writable.
#[no_mangle]
pub unsafe extern "C" fn cuStreamCreateWithPriority(
    s: *mut Stream,
    flags: c_uint,
    _prio: c_int,
) -> CUresult {
    // SAFETY: forwarded contract.
    unsafe { cuStreamCreate(s, flags) }
}

/// `cuStreamDestroy_v2`.
#[no_mangle]
pub extern "C" fn cuStreamDestroy_v2(s: Stream) -> CUresult {
    if device().remove_stream(s as usize) {
        SUCCESS
    } else {
        INVALID_HANDLE
    }
}

/// `cuStreamSynchronize`: returns a sticky error if any.
#[no_mangle]
pub extern "C" fn cuStreamSynchronize(s: Stream) -> CUresult {
    let d = device();
    if !d.valid_stream(s as usize) {
        return INVALID_HANDLE;
    }
    d.check().err().unwrap_or(SUCCESS)
}

/// `cuStreamQuery`: always complete.
#[no_mangle]
pub extern "C" fn cuStreamQuery(s: Stream) -> CUresult {
    cuStreamSynchronize(s)
}

/// `cuStreamWaitEvent`: work is already complete.
#[no_mangle]
pub extern "C" fn cuStreamWaitEvent(s: Stream, e: Event, _flags: c_uint) -> CUresult {
    let mut d = device();
    if !d.valid_stream(s as usize) || d.event_mut(e as usize).is_none() {
        return INVALID_HANDLE;
    }
    SUCCESS
}

/// `cuStreamIsCapturing`: never capturing.
///
/// # Safety
/// `status` must be null or writable.
#[no_mangle]
pub unsafe extern "C" fn cuStreamIsCapturing(_s: Stream, status: *mut c_int) -> CUresult {
    // SAFETY: forwarded contract.
    unsafe { out(status, 0) }
}

/// `cuEventCreate`.
///
/// # Safety
/// `e` must be null or writable.
#[no_mangle]
pub unsafe extern "C" fn cuEventCreate(e: *mut Event, _flags: c_uint) -> CUresult {
    let id = device().new_event();
    // SAFETY: forwarded contract.
    unsafe { out(e, id as Event) }
}

/// `cuEventDestroy_v2`.
#[no_mangle]
pub extern "C" fn cuEventDestroy_v2(e: Event) -> CUresult {
    if device().remove_event(e as usize) {
        SUCCESS
    } else {
        INVALID_HANDLE
    }
}

/// `cuEventRecord`: records the host time.
#[no_mangle]
pub extern "C" fn cuEventRecord(e: Event, _s: Stream) -> CUresult {
    match device().event_mut(e as usize) {
        Some(slot) => {
            *slot = Some(Instant::now());
            SUCCESS
        }
        None => INVALID_HANDLE,
    }
}

/// `cuEventRecordWithFlags`.
#[no_mangle]
pub extern "C" fn cuEventRecordWithFlags(e: Event, s: Stream, _flags: c_uint) -> CUresult {
    cuEventRecord(e, s)
}

/// `cuEventSynchronize` / `cuEventQuery`: complete (sticky error if any).
#[no_mangle]
pub extern "C" fn cuEventSynchronize(e: Event) -> CUresult {
    let mut d = device();
    if d.event_mut(e as usize).is_none() {
        return INVALID_HANDLE;
    }
    d.check().err().unwrap_or(SUCCESS)
}

/// `cuEventQuery`.
#[no_mangle]
pub extern "C" fn cuEventQuery(e: Event) -> CUresult {
    cuEventSynchronize(e)
}

/// `cuEventElapsedTime`: host milliseconds between the two records.
///
/// # Safety
/// `ms` must be null or writable.
#[no_mangle]
pub unsafe extern "C" fn cuEventElapsedTime(ms: *mut f32, start: Event, end: Event) -> CUresult {
    let mut d = device();
    let a = d.event_mut(start as usize).and_then(|s| *s);
    let b = d.event_mut(end as usize).and_then(|s| *s);
    match (a, b) {
        // SAFETY: forwarded contract.
        (Some(a), Some(b)) => unsafe {
            out(ms, b.saturating_duration_since(a).as_secs_f32() * 1e3)
        },
        _ => INVALID_HANDLE,
    }
}

/// `cuEventElapsedTime_v2`.
///
/// # Safety
/// As [`cuEventElapsedTime`].
#[no_mangle]
pub unsafe extern "C" fn cuEventElapsedTime_v2(ms: *mut f32, start: Event, end: Event) -> CUresult {
    // SAFETY: forwarded contract.
    unsafe { cuEventElapsedTime(ms, start, end) }
}
