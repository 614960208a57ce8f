//! The exported driver API end to end (as cudarc calls it): module load from PTX, allocation,
//! copies, a launch, then an out-of-bounds write that fails the launch, poisons the context
//! (sticky error) until the primary context is reset, and is logged to `VGPU_LOG`.

use std::ffi::{c_void, CStr};
use std::ptr::null_mut;

use vgpu::driver::*;

const PTX: &str = "
.version 8.0
.target sm_90
.address_size 64
.visible .entry scale(.param .u64 x, .param .f32 a, .param .u32 n)
{
    .reg .b32 %r<6>;
    .reg .b64 %rd<4>;
    .reg .f32 %f<4>;
    ld.param.u64 %rd1, [x];
    ld.param.f32 %f1, [a];
    ld.param.u32 %r1, [n];
    mov.u32 %r2, %tid.x;
    mov.u32 %r3, %ctaid.x;
    mov.u32 %r4, %ntid.x;
    mad.lo.u32 %r5, %r3, %r4, %r2;
    mul.wide.u32 %rd2, %r5, 4;
    add.s64 %rd3, %rd1, %rd2;
    ld.global.f32 %f2, [%rd3];
    mul.rn.f32 %f3, %f2, %f1;
    st.global.f32 [%rd3], %f3;
    ret;
}
\0";

fn name(code: CUresult) -> String {
    let mut p = std::ptr::null();
    // SAFETY: writes a static string pointer.
    assert_eq!(unsafe { cuGetErrorName(code, &mut p) }, SUCCESS);
    // SAFETY: static NUL-terminated string.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

#[test]
fn launch_copy_and_sticky_out_of_bounds_error() {
    let log = std::env::temp_dir().join(format!("vgpu-driver-test-{}.log", std::process::id()));
    std::env::set_var("VGPU_LOG", &log);
    std::env::set_var("VGPU_QUIET", "1");
    assert_eq!(cuInit(0), SUCCESS);
    let (mut n, mut dev, mut ctx) = (0, 0, null_mut());
    // SAFETY: valid out-pointers throughout; the kernel parameters match `scale`.
    unsafe {
        assert_eq!(cuDeviceGetCount(&mut n), SUCCESS);
        assert_eq!(n, 1);
        assert_eq!(cuDeviceGet(&mut dev, 0), SUCCESS);
        let mut major = 0;
        assert_eq!(cuDeviceGetAttribute(&mut major, 75, dev), SUCCESS);
        assert_eq!(major, 9);
        let mut buf = [0i8; 64];
        assert_eq!(cuDeviceGetName(buf.as_mut_ptr(), 64, dev), SUCCESS);
        assert!(CStr::from_ptr(buf.as_ptr())
            .to_string_lossy()
            .contains("virtual GPU"));
        assert_eq!(cuDevicePrimaryCtxRetain(&mut ctx, dev), SUCCESS);
        assert_eq!(cuCtxSetCurrent(ctx), SUCCESS);

        let mut module = null_mut();
        assert_eq!(
            cuModuleLoadData(&mut module, PTX.as_ptr() as *const c_void),
            SUCCESS
        );
        let mut f = null_mut();
        assert_eq!(
            cuModuleGetFunction(&mut f, module, c"scale".as_ptr()),
            SUCCESS
        );
        let mut missing = null_mut();
        assert_eq!(
            cuModuleGetFunction(&mut missing, module, c"nope".as_ptr()),
            NOT_FOUND
        );

        let host: Vec<f32> = (0..256).map(|i| i as f32).collect();
        let mut d = 0u64;
        assert_eq!(cuMemAlloc_v2(&mut d, 256 * 4), SUCCESS);
        assert_eq!(
            cuMemcpyHtoD_v2(d, host.as_ptr() as *const c_void, 1024),
            SUCCESS
        );
        let (mut a, mut len) = (2.0f32, 256u32);
        let mut args = [
            &mut d as *mut u64 as *mut c_void,
            &mut a as *mut f32 as *mut c_void,
            &mut len as *mut u32 as *mut c_void,
        ];
        let launch = |grid: u32, args: &mut [*mut c_void; 3]| {
            cuLaunchKernel(
                f,
                grid,
                1,
                1,
                128,
                1,
                1,
                0,
                null_mut(),
                args.as_mut_ptr(),
                null_mut(),
            )
        };
        assert_eq!(launch(2, &mut args), SUCCESS);
        let mut back = vec![0f32; 256];
        assert_eq!(
            cuMemcpyDtoH_v2(back.as_mut_ptr() as *mut c_void, d, 1024),
            SUCCESS
        );
        assert!(back.iter().enumerate().all(|(i, v)| *v == 2.0 * i as f32));
        let mut counters = [0u64; 12];
        assert_eq!(vgpu_counters(counters.as_mut_ptr(), 12), 12);
        assert_eq!(
            (counters[0], counters[3], counters[4], counters[5]),
            (1, 1, 1024, 1)
        );

        // Three blocks over 256 floats: block 2 runs off the end.
        let r = launch(3, &mut args);
        assert_eq!(name(r), "CUDA_ERROR_ILLEGAL_ADDRESS");
        assert_eq!(cuCtxSynchronize(), r, "the error is sticky");
        assert_eq!(
            cuMemcpyDtoH_v2(back.as_mut_ptr() as *mut c_void, d, 1024),
            r
        );
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.contains("launch of kernel scale failed (CUDA_ERROR_ILLEGAL_ADDRESS)"),
            "{text}"
        );
        assert!(
            text.contains("out-of-bounds global load of 4 bytes"),
            "{text}"
        );
        assert!(text.contains("block (2,0,0), thread (0,0,0)"), "{text}");
        assert!(
            text.contains("0 bytes after the end of allocation"),
            "{text}"
        );
        assert_eq!(cuDevicePrimaryCtxReset_v2(dev), SUCCESS);
        assert_eq!(cuCtxSynchronize(), SUCCESS);

        assert_eq!(cuMemFree_v2(d), SUCCESS);
        assert_eq!(cuMemFree_v2(d), INVALID_VALUE, "double free");
        assert_eq!(cuModuleUnload(module), SUCCESS);
        // An unimplemented symbol answers with an error instead of crashing.
        let stub: extern "C" fn() -> CUresult = vgpu::driver::stubs::cuGraphCreate;
        assert_eq!(stub(), NOT_SUPPORTED);
    }
    let _ = std::fs::remove_file(log);
}
