//! Interpreter throughput on a synthetic inner loop (shared load, global load, fma, integer
//! add, compare, branch): `cargo run --release --example speed [workers]`.

use std::time::Instant;

use vgpu::exec::{launch, Config};
use vgpu::memory::DeviceMemory;
use vgpu::ptx::parse_module;

const PTX: &str = r#"
.version 8.0
.target sm_90
.address_size 64
.visible .entry spin(.param .u64 x, .param .u32 iters)
{
    .reg .b32 %r<8>;
    .reg .b64 %rd<8>;
    .reg .f32 %f<8>;
    .reg .pred %p<2>;
    .shared .align 4 .b8 s[1024];
    ld.param.u64 %rd1, [x];
    ld.param.u32 %r2, [iters];
    mov.u32 %r1, %tid.x;
    mul.wide.u32 %rd2, %r1, 4;
    mov.u64 %rd3, s;
    add.s64 %rd4, %rd3, %rd2;
    st.shared.u32 [%rd4], %r1;
    add.s64 %rd5, %rd1, %rd2;
    mov.f32 %f1, 0f00000000;
    mov.u32 %r3, 0;
    bar.sync 0;
LOOP:
    ld.shared.f32 %f2, [%rd4];
    ld.global.f32 %f3, [%rd5];
    fma.rn.f32 %f1, %f2, %f3, %f1;
    add.s32 %r3, %r3, 1;
    setp.lt.s32 %p1, %r3, %r2;
    @%p1 bra LOOP;
    st.global.f32 [%rd5], %f1;
    ret;
}
"#;

fn main() {
    let workers: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let m = parse_module(PTX).expect("parses");
    let k = m.kernel("spin").expect("kernel");
    let mut mem = DeviceMemory::new(1 << 24, 0);
    let x = mem.alloc(256 * 4).expect("alloc");
    let mut params = x.to_le_bytes().to_vec();
    params.extend(2000u32.to_le_bytes());
    let cfg = Config {
        grid: [32, 1, 1],
        block: [256, 1, 1],
        dyn_shared: 0,
    };
    let view = mem.view();
    let t = Instant::now();
    let c = launch(k, &cfg, &params, &view, workers, 0, 4).expect("runs");
    let s = t.elapsed().as_secs_f64();
    println!(
        "{} instructions in {:.2} s: {:.1} M instructions/s ({workers} worker(s))",
        c.instructions,
        s,
        c.instructions as f64 / s / 1e6
    );
}
