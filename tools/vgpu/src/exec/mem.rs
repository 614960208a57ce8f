//! Checked memory accesses of one thread: `ld`, `st`, `atom`, `red`.
//!
//! Every access is resolved to a host pointer only after checking that it lies inside one
//! allocation (global), inside the block's shared memory, the thread's local memory or the
//! parameter buffer, and that it is naturally aligned; otherwise the launch fails with the
//! address, width and state space.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::alu::{atom_new, mask, sext};
use super::step::{rd, Env, Err0};
use super::FaultKind;
use crate::memory::{LOCAL_WINDOW, PARAM_WINDOW, SHARED_WINDOW, WINDOW_SIZE};
use crate::ptx::inst::{AtomOp, Inst, Op, Opnd, Space, Ty, NO_REG};

/// What an access does (for messages).
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Load,
    Store,
    Atomic,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Load => "load",
            Kind::Store => "store",
            Kind::Atomic => "atomic",
        }
    }
}

/// The effective address of an `[reg + off]` operand.
#[inline]
fn address(regs: &[u64], o: &Opnd) -> u64 {
    match *o {
        Opnd::Addr(r, off) => {
            let base = if r == NO_REG { 0 } else { regs[r as usize] };
            base.wrapping_add(off as u64)
        }
        Opnd::Reg(r) => regs[r as usize],
        Opnd::Imm(v) => v,
        _ => 0,
    }
}

/// Splits a generic address into its space and the address within it.
fn generic(addr: u64) -> (Space, u64) {
    for (base, space) in [
        (SHARED_WINDOW, Space::Shared),
        (LOCAL_WINDOW, Space::Local),
        (PARAM_WINDOW, Space::Param),
    ] {
        if addr >= base && addr < base + WINDOW_SIZE {
            return (space, addr - base);
        }
    }
    (Space::Global, addr)
}

#[cold]
fn oob(kind: Kind, space: Space, addr: u64, len: u64, what: String) -> Err0 {
    let fk = FaultKind::IllegalAddress((space == Space::Global).then_some((addr, len as usize)));
    (
        fk,
        format!(
            "out-of-bounds {} {} of {len} bytes at {addr:#x}{what}",
            space.name(),
            kind.name()
        ),
    )
}

#[cold]
fn misaligned(kind: Kind, space: Space, addr: u64, len: u64) -> Err0 {
    (
        FaultKind::Misaligned,
        format!(
            "misaligned {} {} of {len} bytes at {addr:#x} (needs {len}-byte alignment)",
            space.name(),
            kind.name()
        ),
    )
}

/// Resolves an access of `len` bytes to a host pointer, checking bounds and alignment.
#[inline]
fn resolve(
    env: &mut Env,
    local: &mut [u8],
    space: Space,
    addr: u64,
    len: u64,
    kind: Kind,
) -> Result<*mut u8, Err0> {
    let (space, a) = match space {
        Space::Generic => generic(addr),
        s => (s, addr),
    };
    if a % len.min(16) != 0 {
        return Err(misaligned(kind, space, addr, len));
    }
    let inside = |size: usize| a.checked_add(len).is_some_and(|e| e <= size as u64);
    match space {
        Space::Global | Space::Const | Space::Generic => {
            if kind != Kind::Load && space == Space::Const {
                return Err(oob(
                    kind,
                    space,
                    addr,
                    len,
                    ": constant memory is read-only".into(),
                ));
            }
            env.global
                .find(a, len, &mut env.hint)
                .ok_or_else(|| oob(kind, Space::Global, a, len, String::new()))
        }
        Space::Shared if inside(env.shared.len()) => {
            // SAFETY: checked to lie inside the block's shared buffer.
            Ok(unsafe { env.shared.as_mut_ptr().add(a as usize) })
        }
        Space::Shared => {
            let why = format!(
                " (shared offset; the block has {} bytes: {} static + {} dynamic)",
                env.shared.len(),
                env.info.static_smem,
                env.info.dyn_smem
            );
            Err(oob(kind, space, a, len, why))
        }
        Space::Local if inside(local.len()) => {
            // SAFETY: checked to lie inside the thread's local buffer.
            Ok(unsafe { local.as_mut_ptr().add(a as usize) })
        }
        Space::Local => {
            let why = format!(" (the thread has {} bytes of local memory)", local.len());
            Err(oob(kind, space, a, len, why))
        }
        Space::Param if kind == Kind::Load && inside(env.params.len()) => {
            // SAFETY: checked to lie inside the parameter buffer, which is only read.
            Ok(unsafe { (env.params.as_ptr() as *mut u8).add(a as usize) })
        }
        Space::Param => {
            let why = format!(" (the kernel has {} bytes of parameters)", env.params.len());
            Err(oob(kind, space, a, len, why))
        }
    }
}

#[inline]
fn read(p: *const u8, width: u32) -> u64 {
    // SAFETY: `resolve` checked that `width` bytes at `p` are inside a live buffer.
    unsafe {
        match width {
            1 => p.read() as u64,
            2 => (p as *const u16).read_unaligned() as u64,
            4 => (p as *const u32).read_unaligned() as u64,
            _ => (p as *const u64).read_unaligned(),
        }
    }
}

#[inline]
fn write(p: *mut u8, width: u32, v: u64) {
    // SAFETY: as for `read`.
    unsafe {
        match width {
            1 => p.write(v as u8),
            2 => (p as *mut u16).write_unaligned(v as u16),
            4 => (p as *mut u32).write_unaligned(v as u32),
            _ => (p as *mut u64).write_unaligned(v),
        }
    }
}

#[inline]
fn count(env: &mut Env, space: Space, addr: u64, len: u64, kind: Kind) {
    let space = if space == Space::Generic {
        generic(addr).0
    } else {
        space
    };
    match (space, kind) {
        (Space::Global | Space::Const, Kind::Load) => env.c.global_load_bytes += len,
        (Space::Global | Space::Const, Kind::Store) => env.c.global_store_bytes += len,
        (Space::Shared, Kind::Load) => env.c.shared_loads += 1,
        (Space::Shared, Kind::Store) => env.c.shared_stores += 1,
        _ => {}
    }
    if kind == Kind::Atomic {
        env.c.atomics += 1;
    }
}

/// Executes a load or store.
#[inline]
pub(crate) fn ld_st(
    env: &mut Env,
    regs: &mut [u64],
    local: &mut [u8],
    i: &Inst,
) -> Result<(), Err0> {
    let (store, space, ty, vec) = match i.op {
        Op::Ld(s, t, v) => (false, s, t, v),
        Op::St(s, t, v) => (true, s, t, v),
        _ => unreachable!("ld_st only runs ld/st"),
    };
    let w = ty.bytes();
    let len = w as u64 * vec as u64;
    let addr = address(regs, &i.s[0]);
    let kind = if store { Kind::Store } else { Kind::Load };
    let p = resolve(env, local, space, addr, len, kind)?;
    count(env, space, addr, len, kind);
    let regs_of = |o: &Opnd| match *o {
        Opnd::Vec(r, n) => (r, n as usize),
        Opnd::Reg(r) => ([r, NO_REG, NO_REG, NO_REG], 1),
        _ => ([NO_REG; 4], 1),
    };
    if store {
        if let Opnd::Vec(r, n) = i.d {
            for (k, reg) in r.iter().take(n as usize).enumerate() {
                let v = if *reg == NO_REG {
                    0
                } else {
                    regs[*reg as usize]
                };
                // SAFETY: k * w < len, inside the checked range.
                write(unsafe { p.add(k * w as usize) }, w, v);
            }
        } else {
            let v = rd(regs, &i.d, env, 0);
            write(p, w, v);
        }
        return Ok(());
    }
    let (r, n) = regs_of(&i.d);
    for (k, reg) in r.iter().take(n).enumerate() {
        // SAFETY: k * w < len, inside the checked range.
        let v = read(unsafe { p.add(k * w as usize) }, w);
        let v = match ty {
            Ty::S8 | Ty::S16 => sext(v, ty.bits()) as u64 & 0xFFFF_FFFF,
            _ => v,
        };
        if *reg != NO_REG {
            regs[*reg as usize] = v;
        }
    }
    Ok(())
}

/// Executes `atom` / `red` with host atomics (blocks may run on several host threads).
pub(crate) fn atomic(
    env: &mut Env,
    regs: &mut [u64],
    local: &mut [u8],
    i: &Inst,
) -> Result<(), Err0> {
    let (space, op, ty, ret) = match i.op {
        Op::Atom(s, o, t) => (s, o, t, true),
        Op::Red(s, o, t) => (s, o, t, false),
        _ => unreachable!("atomic only runs atom/red"),
    };
    let w = ty.bytes();
    if w != 4 && w != 8 {
        return Err((
            FaultKind::Launch,
            format!("{w}-byte atomics are not implemented"),
        ));
    }
    let addr = address(regs, &i.s[0]);
    let p = resolve(env, local, space, addr, w as u64, Kind::Atomic)?;
    count(env, space, addr, w as u64, Kind::Atomic);
    let b = rd(regs, &i.s[1], env, 0);
    let c = if op == AtomOp::Cas {
        rd(regs, &i.s[2], env, 0)
    } else {
        0
    };
    let old = if w == 4 {
        // SAFETY: `p` is 4-byte aligned (checked) and inside a live 8-byte-aligned buffer.
        let a = unsafe { AtomicU32::from_ptr(p as *mut u32) };
        let r = a.fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
            Some(atom_new(op, ty, old as u64, b, c) as u32)
        });
        r.unwrap_or_else(|v| v) as u64
    } else {
        // SAFETY: as above with 8-byte alignment.
        let a = unsafe { AtomicU64::from_ptr(p as *mut u64) };
        let r = a.fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
            Some(atom_new(op, ty, old, b, c))
        });
        r.unwrap_or_else(|v| v)
    };
    if ret {
        if let Opnd::Reg(d) = i.d {
            regs[d as usize] = old & mask(ty);
        }
    }
    Ok(())
}
