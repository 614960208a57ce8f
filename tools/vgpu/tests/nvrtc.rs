//! Real NVRTC output: every kernel family of the product (kernels/common.cuh + kernels/*.cu)
//! compiles to PTX that parses with no unsupported instruction, and two kernels run correctly.
//! Skipped (with a message) when libnvrtc cannot be loaded (`source tools/nvrtc-env.sh`).

mod common;

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::PathBuf;

use common::{Arg, Gpu};

extern "C" {
    fn dlopen(name: *const c_char, flags: c_int) -> *mut c_void;
    fn dlsym(lib: *mut c_void, name: *const c_char) -> *mut c_void;
}

type Create = unsafe extern "C" fn(
    *mut *mut c_void,
    *const c_char,
    *const c_char,
    c_int,
    *const *const c_char,
    *const *const c_char,
) -> c_int;
type Compile = unsafe extern "C" fn(*mut c_void, c_int, *const *const c_char) -> c_int;
type Size = unsafe extern "C" fn(*mut c_void, *mut usize) -> c_int;
type Get = unsafe extern "C" fn(*mut c_void, *mut c_char) -> c_int;

/// NVRTC's entry points, if the library loads.
struct Nvrtc {
    create: Create,
    compile: Compile,
    ptx_size: Size,
    ptx: Get,
    log_size: Size,
    log: Get,
}

fn nvrtc() -> Option<Nvrtc> {
    // SAFETY: dlopen/dlsym with NUL-terminated names; the symbols have the NVRTC signatures.
    unsafe {
        let lib = [c"libnvrtc.so.12", c"libnvrtc.so", c"libnvrtc.so.13"]
            .iter()
            .map(|n| dlopen(n.as_ptr(), 2))
            .find(|l| !l.is_null())?;
        let sym = |n: &CStr| {
            let p = dlsym(lib, n.as_ptr());
            assert!(!p.is_null(), "NVRTC lacks {n:?}");
            p
        };
        Some(Nvrtc {
            create: std::mem::transmute::<*mut c_void, Create>(sym(c"nvrtcCreateProgram")),
            compile: std::mem::transmute::<*mut c_void, Compile>(sym(c"nvrtcCompileProgram")),
            ptx_size: std::mem::transmute::<*mut c_void, Size>(sym(c"nvrtcGetPTXSize")),
            ptx: std::mem::transmute::<*mut c_void, Get>(sym(c"nvrtcGetPTX")),
            log_size: std::mem::transmute::<*mut c_void, Size>(sym(c"nvrtcGetProgramLogSize")),
            log: std::mem::transmute::<*mut c_void, Get>(sym(c"nvrtcGetProgramLog")),
        })
    }
}

fn kernels_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../kernels")
}

/// The family's source as the product's loader builds it (src/backend/cuda/loader.rs:
/// common.cuh, the shared headers the family uses, the family's .cu).
fn family_source(family: &str) -> String {
    let dir = kernels_dir();
    let read =
        |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    let mut out = format!("{}\n", read("common.cuh"));
    if matches!(family, "select" | "superpose") {
        out.push_str(&format!("#line 1 \"radix.cuh\"\n{}\n", read("radix.cuh")));
    }
    out.push_str(&format!(
        "#line 1 \"{family}.cu\"\n{}",
        read(&format!("{family}.cu"))
    ));
    out
}

fn compile(nv: &Nvrtc, family: &str, arch: &str) -> String {
    let src = CString::new(family_source(family)).unwrap();
    let name = CString::new(format!("{family}.cu")).unwrap();
    let opt = CString::new(format!("--gpu-architecture={arch}")).unwrap();
    let opts = [opt.as_ptr()];
    // SAFETY: NVRTC calls with valid program handles and buffers of the reported sizes.
    unsafe {
        let mut prog = std::ptr::null_mut();
        let r = (nv.create)(
            &mut prog,
            src.as_ptr(),
            name.as_ptr(),
            0,
            std::ptr::null(),
            std::ptr::null(),
        );
        assert_eq!(r, 0, "nvrtcCreateProgram");
        let r = (nv.compile)(prog, 1, opts.as_ptr());
        let mut n = 0usize;
        (nv.log_size)(prog, &mut n);
        let mut log = vec![0 as c_char; n.max(1)];
        (nv.log)(prog, log.as_mut_ptr());
        let log = CStr::from_ptr(log.as_ptr()).to_string_lossy().into_owned();
        assert_eq!(r, 0, "{family}.cu does not compile: {log}");
        (nv.ptx_size)(prog, &mut n);
        let mut ptx = vec![0 as c_char; n];
        (nv.ptx)(prog, ptx.as_mut_ptr());
        CStr::from_ptr(ptx.as_ptr()).to_string_lossy().into_owned()
    }
}

fn families() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(kernels_dir())
        .expect("kernels/")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".cu").map(str::to_string))
        .collect();
    v.sort();
    v
}

#[test]
fn every_family_parses_with_no_unsupported_instruction() {
    let Some(nv) = nvrtc() else {
        eprintln!("skipped: NVRTC not found (source tools/nvrtc-env.sh)");
        return;
    };
    for arch in ["compute_80", "compute_90"] {
        for f in families() {
            let ptx = compile(&nv, &f, arch);
            let m =
                vgpu::ptx::parse_module(&ptx).unwrap_or_else(|e| panic!("{f}.cu at {arch}: {e}"));
            assert!(!m.kernels.is_empty(), "{f}.cu has kernels");
            for k in &m.kernels {
                if !k.parallel_safe {
                    eprintln!("note: {f}.cu {} runs its blocks in order", k.name);
                }
                assert!(
                    k.unsupported.is_empty(),
                    "{f}.cu {} at {arch}: {:?}",
                    k.name,
                    k.unsupported
                );
            }
        }
    }
}

#[test]
fn elementwise_add_and_block_sum_run_correctly() {
    let Some(nv) = nvrtc() else {
        eprintln!("skipped: NVRTC not found (source tools/nvrtc-env.sh)");
        return;
    };
    let ptx = compile(&nv, "elementwise", "compute_90");
    let n = 1000usize;
    let a: Vec<f32> = (0..n).map(|i| i as f32 * 0.5).collect();
    let b: Vec<f32> = (0..n).map(|i| 1.0 / (i as f32 + 1.0)).collect();
    let mut g = Gpu::new();
    let (pa, pb) = (g.upload(&a), g.upload(&b));
    let pc = g.zeros(n * 4);
    let args = [Arg::U64(pa), Arg::U64(pb), Arg::U64(pc), Arg::U64(n as u64)];
    g.run(&ptx, "add_f32", 2, 256, &args).unwrap();
    let c = g.read_f32(pc, n);
    for i in 0..n {
        assert_eq!(c[i], a[i] + b[i], "add_f32 at {i}");
    }
    // sum_f32: 3 blocks, each sums its third; shuffles and barriers inside st_block_sum.
    let out = g.zeros(3 * 4);
    let args = [
        Arg::U64(pa),
        Arg::U64(n as u64),
        Arg::F32(2.0),
        Arg::U64(out),
    ];
    let counters = g.run(&ptx, "sum_f32", 3, 256, &args).unwrap();
    let r = g.read_f32(out, 3);
    for (z, got) in r.iter().enumerate() {
        let (lo, hi) = (z * n / 3, (z + 1) * n / 3);
        let want: f64 = a[lo..hi].iter().map(|v| *v as f64).sum::<f64>() * 2.0;
        assert!(
            (*got as f64 - want).abs() <= want * 1e-6,
            "block {z}: {got} vs {want}"
        );
    }
    assert!(counters.warp_syncs > 0 && counters.barriers > 0);
}
