//! Test helpers: a device memory and a way to run a PTX kernel on it.
#![allow(dead_code)]

use vgpu::exec::{self, Config, Counters, Fault};
use vgpu::memory::DeviceMemory;
use vgpu::ptx::parse_module;

/// A kernel argument.
#[derive(Clone, Copy, Debug)]
pub enum Arg {
    /// A pointer or 64-bit integer.
    U64(u64),
    /// A 32-bit integer.
    U32(u32),
    /// A float.
    F32(f32),
}

/// A device memory plus helpers to fill and read it.
pub struct Gpu {
    pub mem: DeviceMemory,
}

impl Gpu {
    pub fn new() -> Gpu {
        Gpu {
            mem: DeviceMemory::new(1 << 30, 0xFF),
        }
    }

    pub fn upload<T: Copy>(&mut self, v: &[T]) -> u64 {
        let bytes = std::mem::size_of_val(v);
        let p = self.mem.alloc(bytes.max(1)).unwrap();
        // SAFETY: plain-old-data viewed as bytes.
        let src = unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, bytes) };
        self.mem.bytes_mut(p, bytes).unwrap().copy_from_slice(src);
        p
    }

    pub fn zeros(&mut self, bytes: usize) -> u64 {
        let p = self.mem.alloc(bytes).unwrap();
        self.mem.bytes_mut(p, bytes).unwrap().fill(0);
        p
    }

    pub fn read_u32(&mut self, p: u64, n: usize) -> Vec<u32> {
        let b = self.mem.bytes_mut(p, 4 * n).unwrap();
        b.chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    pub fn read_f32(&mut self, p: u64, n: usize) -> Vec<f32> {
        self.read_u32(p, n)
            .into_iter()
            .map(f32::from_bits)
            .collect()
    }

    /// Runs `kernel` of `ptx` with `args` over `grid` x `block` (1-d).
    pub fn run(
        &mut self,
        ptx: &str,
        kernel: &str,
        grid: u32,
        block: u32,
        args: &[Arg],
    ) -> Result<Counters, Fault> {
        self.run_with(ptx, kernel, [grid, 1, 1], [block, 1, 1], 0, args, 1)
    }

    /// Runs with full geometry, dynamic shared memory and `workers` host threads.
    #[allow(clippy::too_many_arguments)]
    pub fn run_with(
        &mut self,
        ptx: &str,
        kernel: &str,
        grid: [u32; 3],
        block: [u32; 3],
        dyn_shared: u32,
        args: &[Arg],
        workers: usize,
    ) -> Result<Counters, Fault> {
        let m = parse_module(ptx).unwrap_or_else(|e| panic!("PTX does not parse: {e}"));
        let k = m
            .kernel(kernel)
            .unwrap_or_else(|| panic!("no kernel {kernel}"));
        assert!(k.unsupported.is_empty(), "unsupported: {:?}", k.unsupported);
        assert_eq!(k.params.len(), args.len(), "argument count");
        let mut buf = vec![0u8; k.param_bytes];
        for (p, a) in k.params.iter().zip(args) {
            let bytes = match *a {
                Arg::U64(v) => v.to_le_bytes().to_vec(),
                Arg::U32(v) => v.to_le_bytes().to_vec(),
                Arg::F32(v) => v.to_le_bytes().to_vec(),
            };
            assert_eq!(bytes.len(), p.size, "size of parameter {}", p.name);
            buf[p.offset..p.offset + p.size].copy_from_slice(&bytes);
        }
        let cfg = Config {
            grid,
            block,
            dyn_shared,
        };
        let view = self.mem.view();
        exec::launch(k, &cfg, &buf, &view, workers, 0xFF, 4)
    }
}

/// The usual PTX header.
pub const HEADER: &str = ".version 8.0\n.target sm_90\n.address_size 64\n";
