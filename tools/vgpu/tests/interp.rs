//! The interpreter on small hand-written PTX kernels: rounding, shuffles, barriers, votes,
//! atomics, and the errors (divergent barrier, out-of-bounds and misaligned accesses, shuffles
//! reading exited lanes).

mod common;

use common::{Arg, Gpu, HEADER};
use vgpu::exec::FaultKind;

fn ptx(body: &str) -> String {
    format!("{HEADER}\n{body}")
}

/// Nearest f32 at or below / above the exact value `x` (f64).
fn down(x: f64) -> f32 {
    let r = x as f32;
    if (r as f64) > x {
        r.next_down()
    } else {
        r
    }
}
fn up(x: f64) -> f32 {
    let r = x as f32;
    if (r as f64) < x {
        r.next_up()
    } else {
        r
    }
}

const ROUNDING: &str = r#"
.visible .entry rounding(.param .u64 out, .param .u64 in)
{
    .reg .b64 %rd<4>;
    .reg .f32 %f<16>;
    .reg .b32 %r<4>;
    ld.param.u64 %rd1, [out];
    ld.param.u64 %rd2, [in];
    cvta.to.global.u64 %rd1, %rd1;
    cvta.to.global.u64 %rd2, %rd2;
    ld.global.v2.f32 {%f1, %f2}, [%rd2];
    add.rn.f32 %f3, %f1, %f2;
    st.global.f32 [%rd1], %f3;
    add.rz.f32 %f3, %f1, %f2;
    st.global.f32 [%rd1+4], %f3;
    add.rm.f32 %f3, %f1, %f2;
    st.global.f32 [%rd1+8], %f3;
    add.rp.f32 %f3, %f1, %f2;
    st.global.f32 [%rd1+12], %f3;
    mul.rm.f32 %f4, %f1, %f2;
    st.global.f32 [%rd1+16], %f4;
    mul.rp.f32 %f4, %f1, %f2;
    st.global.f32 [%rd1+20], %f4;
    fma.rn.f32 %f5, %f1, %f2, %f1;
    st.global.f32 [%rd1+24], %f5;
    fma.rz.f32 %f5, %f1, %f2, %f1;
    st.global.f32 [%rd1+28], %f5;
    div.rn.f32 %f6, %f1, %f2;
    st.global.f32 [%rd1+32], %f6;
    neg.f32 %f7, %f2;
    cvt.rzi.s32.f32 %r1, %f7;
    st.global.s32 [%rd1+36], %r1;
    cvt.rmi.f32.f32 %f8, %f7;
    st.global.f32 [%rd1+40], %f8;
    cvt.sat.f32.f32 %f9, %f2;
    st.global.f32 [%rd1+44], %f9;
    sqrt.rn.f32 %f10, %f2;
    st.global.f32 [%rd1+48], %f10;
    ex2.approx.ftz.f32 %f11, %f1;
    st.global.f32 [%rd1+52], %f11;
    cvt.rn.f32.s32 %f12, %r1;
    st.global.f32 [%rd1+56], %f12;
    max.f32 %f13, %f1, 0fFFC00000;
    st.global.f32 [%rd1+60], %f13;
    ret;
}
"#;

#[test]
fn float_rounding_modes() {
    let (a, b) = (1.0f32 / 3.0, 3.7f32);
    let mut g = Gpu::new();
    let input = g.upload(&[a, b]);
    let out = g.zeros(64);
    g.run(
        &ptx(ROUNDING),
        "rounding",
        1,
        1,
        &[Arg::U64(out), Arg::U64(input)],
    )
    .unwrap();
    let r = g.read_f32(out, 16);
    let sum = a as f64 + b as f64;
    assert_eq!(r[0], a + b);
    assert_eq!(r[1], down(sum));
    assert_eq!(r[2], down(sum));
    assert_eq!(r[3], up(sum));
    assert!(r[1] < r[3], "the sum is inexact, so rz and rp differ");
    let prod = a as f64 * b as f64;
    assert_eq!((r[4], r[5]), (down(prod), up(prod)));
    let fma = a as f64 * b as f64 + a as f64;
    assert_eq!(r[6], fma as f32);
    assert_eq!(r[7], down(fma));
    assert_eq!(r[8], a / b);
    assert_eq!(g.read_u32(out, 10)[9] as i32, -3);
    assert_eq!(r[10], -4.0);
    assert_eq!(r[11], 1.0);
    assert_eq!(r[12], b.sqrt());
    assert!((r[13] - a.exp2()).abs() <= f32::EPSILON * 2.0);
    assert_eq!(r[14], -3.0);
    assert_eq!(r[15], a, "max with a NaN returns the other operand");
}

const SHFL: &str = r#"
.visible .entry shfl(.param .u64 out)
{
    .reg .b32 %r<12>;
    .reg .pred %p<3>;
    .reg .b64 %rd<4>;
    ld.param.u64 %rd1, [out];
    mov.u32 %r1, %tid.x;
    mul.lo.u32 %r2, %r1, 10;
    shfl.sync.up.b32 %r3|%p1, %r2, 3, 0, -1;
    shfl.sync.down.b32 %r4|%p2, %r2, 5, 31, -1;
    shfl.sync.bfly.b32 %r5, %r2, 6, 31, -1;
    shfl.sync.idx.b32 %r6, %r2, 7, 31, -1;
    shfl.sync.idx.b32 %r7, %r2, 2, 0x181F, -1;
    selp.u32 %r8, 1, 0, %p1;
    selp.u32 %r9, 1, 0, %p2;
    mul.wide.u32 %rd2, %r1, 28;
    add.s64 %rd3, %rd1, %rd2;
    st.global.u32 [%rd3], %r3;
    st.global.u32 [%rd3+4], %r4;
    st.global.u32 [%rd3+8], %r5;
    st.global.u32 [%rd3+12], %r6;
    st.global.u32 [%rd3+16], %r7;
    st.global.u32 [%rd3+20], %r8;
    st.global.u32 [%rd3+24], %r9;
    ret;
}
"#;

#[test]
fn shuffle_modes_clamps_and_segments() {
    let mut g = Gpu::new();
    let out = g.zeros(64 * 28);
    g.run(&ptx(SHFL), "shfl", 1, 64, &[Arg::U64(out)]).unwrap();
    let r = g.read_u32(out, 64 * 7);
    for t in 0..64u32 {
        let (w0, l) = (t / 32 * 32, t % 32);
        let v = |lane: u32| (w0 + lane) * 10;
        let row = &r[t as usize * 7..t as usize * 7 + 7];
        let up = if l >= 3 { v(l - 3) } else { v(l) };
        let down = if l + 5 <= 31 { v(l + 5) } else { v(l) };
        assert_eq!(row[0], up, "up, thread {t}");
        assert_eq!(row[1], down, "down, thread {t}");
        assert_eq!(row[2], v(l ^ 6), "bfly, thread {t}");
        assert_eq!(row[3], v(7), "idx, thread {t}");
        assert_eq!(row[4], v((l & !7) | 2), "idx width 8, thread {t}");
        assert_eq!(row[5], (l >= 3) as u32, "up predicate, thread {t}");
        assert_eq!(row[6], (l + 5 <= 31) as u32, "down predicate, thread {t}");
    }
}

const REVERSE: &str = r#"
.visible .entry reverse(.param .u64 out)
{
    .reg .b32 %r<8>;
    .reg .b64 %rd<10>;
    .shared .align 4 .b8 buf[1024];
    mov.u32 %r1, %tid.x;
    mov.u32 %r2, %ntid.x;
    mov.u64 %rd1, buf;
    mul.wide.u32 %rd2, %r1, 4;
    add.s64 %rd3, %rd1, %rd2;
    st.shared.u32 [%rd3], %r1;
    bar.sync 0;
    sub.u32 %r3, %r2, %r1;
    sub.u32 %r3, %r3, 1;
    mul.wide.u32 %rd4, %r3, 4;
    add.s64 %rd5, %rd1, %rd4;
    ld.shared.u32 %r4, [%rd5];
    ld.param.u64 %rd6, [out];
    cvta.to.global.u64 %rd6, %rd6;
    mov.u32 %r5, %ctaid.x;
    mad.lo.u32 %r6, %r5, %r2, %r1;
    mul.wide.u32 %rd7, %r6, 4;
    add.s64 %rd8, %rd6, %rd7;
    st.global.u32 [%rd8], %r4;
    ret;
}
"#;

#[test]
fn barrier_orders_shared_memory_in_parallel_blocks_too() {
    for workers in [1, 3] {
        let mut g = Gpu::new();
        let out = g.zeros(3 * 256 * 4);
        let c = g
            .run_with(
                &ptx(REVERSE),
                "reverse",
                [3, 1, 1],
                [256, 1, 1],
                0,
                &[Arg::U64(out)],
                workers,
            )
            .unwrap();
        let r = g.read_u32(out, 3 * 256);
        for (i, v) in r.iter().enumerate() {
            assert_eq!(*v, 255 - (i as u32 % 256));
        }
        assert_eq!(c.barriers, 3);
        assert_eq!(c.shared_loads, 3 * 256);
        assert_eq!(c.global_store_bytes, 3 * 256 * 4);
    }
}

#[test]
fn divergent_barrier_is_an_error_not_a_hang() {
    let src = ptx(r#"
.visible .entry divergent()
{
    .reg .b32 %r<4>;
    .reg .pred %p<2>;
    mov.u32 %r1, %tid.x;
    setp.ge.u32 %p1, %r1, 16;
    @%p1 bra DONE;
    bar.sync 0;
DONE:
    ret;
}
"#);
    let e = Gpu::new().run(&src, "divergent", 1, 32, &[]).unwrap_err();
    assert_eq!(e.kind, FaultKind::Launch);
    assert!(
        e.msg
            .contains("bar.sync reached by 16 of the block's 32 threads"),
        "{}",
        e.msg
    );
    assert!(e.msg.contains("kernel divergent"), "{}", e.msg);
}

const OOB: &str = r#"
.visible .entry oob(.param .u64 out, .param .u32 offset)
{
    .reg .b32 %r<6>;
    .reg .b64 %rd<6>;
    .reg .f32 %f<2>;
    ld.param.u64 %rd1, [out];
    ld.param.u32 %r5, [offset];
    cvta.to.global.u64 %rd1, %rd1;
    mov.u32 %r1, %tid.x;
    mov.u32 %r2, %ctaid.x;
    mov.u32 %r3, %ntid.x;
    mad.lo.u32 %r4, %r2, %r3, %r1;
    mul.wide.u32 %rd2, %r4, 4;
    add.s64 %rd3, %rd1, %rd2;
    cvt.u64.u32 %rd4, %r5;
    add.s64 %rd3, %rd3, %rd4;
    mov.f32 %f1, 0f3F800000;
    st.global.f32 [%rd3], %f1;
    ret;
}
"#;

#[test]
fn out_of_bounds_write_names_kernel_thread_and_address() {
    let mut g = Gpu::new();
    let out = g.zeros(100 * 4);
    let e = g
        .run(&ptx(OOB), "oob", 2, 64, &[Arg::U64(out), Arg::U32(0)])
        .unwrap_err();
    let addr = out + 400;
    assert_eq!(e.kind, FaultKind::IllegalAddress(Some((addr, 4))));
    assert!(
        e.msg.contains("out-of-bounds global store of 4 bytes"),
        "{}",
        e.msg
    );
    assert!(e.msg.contains(&format!("{addr:#x}")), "{}", e.msg);
    assert!(
        e.msg.contains("kernel oob, block (1,0,0), thread (36,0,0)"),
        "{}",
        e.msg
    );
    assert!(g
        .mem
        .describe(addr, 4)
        .contains("0 bytes after the end of allocation"));
    // The writes before the faulting thread happened; within bounds everything is 1.0.
    assert!(g.read_f32(out, 100).iter().all(|v| *v == 1.0));
    let e = g
        .run(&ptx(OOB), "oob", 1, 32, &[Arg::U64(out), Arg::U32(2)])
        .unwrap_err();
    assert_eq!(e.kind, FaultKind::Misaligned);
    assert!(
        e.msg.contains("misaligned global store of 4 bytes"),
        "{}",
        e.msg
    );
}

const ATOMICS: &str = r#"
.visible .entry atomics(.param .u64 counters)
{
    .reg .b32 %r<10>;
    .reg .b64 %rd<4>;
    .reg .f32 %f<4>;
    .reg .pred %p<3>;
    .shared .align 4 .u32 total;
    ld.param.u64 %rd1, [counters];
    cvta.to.global.u64 %rd1, %rd1;
    mov.u32 %r1, %tid.x;
    setp.ne.u32 %p1, %r1, 0;
    @%p1 bra L1;
    mov.u32 %r9, 0;
    st.shared.u32 [total], %r9;
L1:
    bar.sync 0;
    atom.shared.add.u32 %r2, [total], 1;
    atom.global.add.u32 %r3, [%rd1], 1;
    atom.global.max.s32 %r4, [%rd1+4], %r1;
    atom.global.add.f32 %f1, [%rd1+8], 0f3F800000;
    add.u32 %r8, %r1, 1;
    atom.global.cas.b32 %r5, [%rd1+12], %r1, %r8;
    bar.sync 0;
    @%p1 bra L2;
    ld.shared.u32 %r6, [total];
    atom.global.add.u32 %r7, [%rd1+16], %r6;
L2:
    red.global.add.u32 [%rd1+20], 2;
    ret;
}
"#;

#[test]
fn atomics_shared_and_global() {
    for workers in [1, 2] {
        let mut g = Gpu::new();
        let c = g.zeros(24);
        let n = g
            .run_with(
                &ptx(ATOMICS),
                "atomics",
                [3, 1, 1],
                [64, 1, 1],
                0,
                &[Arg::U64(c)],
                workers,
            )
            .unwrap();
        let r = g.read_u32(c, 6);
        assert_eq!(r[0], 192);
        assert_eq!(r[1], 63);
        assert_eq!(f32::from_bits(r[2]), 192.0);
        assert_eq!(r[3], 64, "cas chain of block 0 only");
        assert_eq!(r[4], 192);
        assert_eq!(r[5], 384);
        assert_eq!(n.atomics, 3 * (64 * 6 + 1));
    }
}

const VOTE: &str = r#"
.visible .entry vote(.param .u64 out)
{
    .reg .b32 %r<8>;
    .reg .b64 %rd<4>;
    .reg .pred %p<5>;
    ld.param.u64 %rd1, [out];
    mov.u32 %r1, %laneid;
    setp.lt.u32 %p1, %r1, 5;
    vote.sync.ballot.b32 %r2, %p1, -1;
    vote.sync.all.pred %p2, %p1, -1;
    vote.sync.any.pred %p3, %p1, -1;
    vote.sync.ballot.b32 %r6, !%p1, -1;
    selp.u32 %r3, 1, 0, %p2;
    selp.u32 %r4, 1, 0, %p3;
    popc.b32 %r5, %r2;
    mov.u32 %r7, %tid.x;
    mul.wide.u32 %rd2, %r7, 32;
    add.s64 %rd3, %rd1, %rd2;
    st.global.v4.u32 [%rd3], {%r2, %r3, %r4, %r5};
    st.global.u32 [%rd3+16], %r6;
    ret;
}
"#;

#[test]
fn vote_ballot_all_any() {
    let mut g = Gpu::new();
    let out = g.zeros(48 * 32);
    // 48 threads: the second warp has 16 lanes, its ballot covers only those.
    g.run(&ptx(VOTE), "vote", 1, 48, &[Arg::U64(out)]).unwrap();
    let r = g.read_u32(out, 48 * 8);
    for t in 0..48 {
        let row = &r[t * 8..t * 8 + 5];
        let lanes = if t < 32 { 32 } else { 16 };
        assert_eq!(row[0], 0x1F);
        assert_eq!(row[1], 0);
        assert_eq!(row[2], 1);
        assert_eq!(row[3], 5);
        let others = if lanes == 32 { u32::MAX } else { 0xFFFF };
        assert_eq!(row[4], others & !0x1F, "thread {t}");
    }
}

#[test]
fn shuffle_reading_an_exited_lane_is_an_error() {
    let src = ptx(r#"
.visible .entry half()
{
    .reg .b32 %r<4>;
    .reg .pred %p<2>;
    mov.u32 %r1, %laneid;
    setp.ge.u32 %p1, %r1, 16;
    @%p1 ret;
    shfl.sync.down.b32 %r2, %r1, 8, 31, 0xffff;
    ret;
}
"#);
    let e = Gpu::new().run(&src, "half", 1, 32, &[]).unwrap_err();
    assert!(
        e.msg.contains("reads lane 16, which has exited"),
        "{}",
        e.msg
    );
    assert!(e.msg.contains("thread (8,0,0)"), "{}", e.msg);
}

#[test]
fn dynamic_shared_memory_and_its_bounds() {
    let src = ptx(r#"
.extern .shared .align 16 .b8 dyn[];
.visible .entry dynsh(.param .u64 out)
{
    .reg .b32 %r<4>;
    .reg .b64 %rd<6>;
    .shared .align 4 .b8 fixed[12];
    mov.u32 %r1, %tid.x;
    mov.u64 %rd1, dyn;
    mul.wide.u32 %rd2, %r1, 4;
    add.s64 %rd3, %rd1, %rd2;
    st.shared.u32 [%rd3], %r1;
    bar.sync 0;
    ld.shared.u32 %r2, [dyn+4];
    ld.param.u64 %rd4, [out];
    add.s64 %rd5, %rd4, %rd2;
    st.global.u32 [%rd5], %r2;
    ret;
}
"#);
    let mut g = Gpu::new();
    let out = g.zeros(32 * 4);
    g.run_with(
        &src,
        "dynsh",
        [1, 1, 1],
        [32, 1, 1],
        128,
        &[Arg::U64(out)],
        1,
    )
    .unwrap();
    assert!(g.read_u32(out, 32).iter().all(|v| *v == 1));
    let e = g
        .run_with(
            &src,
            "dynsh",
            [1, 1, 1],
            [32, 1, 1],
            64,
            &[Arg::U64(out)],
            1,
        )
        .unwrap_err();
    assert!(e.msg.contains("out-of-bounds shared store"), "{}", e.msg);
    assert!(e.msg.contains("12 static + 64 dynamic"), "{}", e.msg);
}

#[test]
fn kernels_with_float_atomics_or_read_atomic_results_run_in_order() {
    let m = vgpu::ptx::parse_module(&ptx(ATOMICS)).unwrap();
    assert!(!m.kernels[0].parallel_safe, "float atomic");
    let int_only = ptx(ATOMICS).replace("atom.global.add.f32 %f1, [%rd1+8], 0f3F800000;", "");
    let m = vgpu::ptx::parse_module(&int_only).unwrap();
    assert!(
        m.kernels[0].parallel_safe,
        "integer atomics whose results are never read"
    );
    let read = int_only.replace(
        "red.global.add.u32 [%rd1+20], 2;",
        "red.global.add.u32 [%rd1+20], %r3;",
    );
    let m = vgpu::ptx::parse_module(&read).unwrap();
    assert!(!m.kernels[0].parallel_safe, "an atomic's old value is read");
    let m = vgpu::ptx::parse_module(&ptx(REVERSE)).unwrap();
    assert!(m.kernels[0].parallel_safe);
}
