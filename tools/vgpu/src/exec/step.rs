//! Runs one thread from its program counter until it reaches a synchronisation point
//! (`bar.sync`, `shfl.sync`, `vote.sync`) or exits.

use super::alu::{self, mask, sext};
use super::float;
use super::mem;
use super::{Counters, FaultKind};
use crate::memory::{GlobalView, LOCAL_WINDOW, PARAM_WINDOW, SHARED_WINDOW};
use crate::ptx::inst::{Inst, MulMode, Op, Opnd, Space, Sreg, NO_REG};

/// A fault without its location (the block adds kernel, block, thread and line).
pub(crate) type Err0 = (FaultKind, String);

/// The launch geometry a thread can read through special registers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BlockInfo {
    pub ntid: [u32; 3],
    pub ctaid: [u32; 3],
    pub nctaid: [u32; 3],
    pub static_smem: u32,
    pub dyn_smem: u32,
    pub nsm: u32,
}

/// What a thread can touch besides its registers and local memory.
pub(crate) struct Env<'a> {
    pub code: &'a [Inst],
    pub global: &'a GlobalView,
    pub params: &'a [u8],
    pub shared: &'a mut [u8],
    pub info: BlockInfo,
    /// Index of the last global region hit (lookup cache).
    pub hint: usize,
    pub c: Counters,
    pub unsupported: &'a [String],
}

/// Why a thread stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// At a `bar.sync` (program counter still on it).
    Bar,
    /// At a `shfl.sync` / `vote.sync` (program counter still on it).
    Warp,
    /// Exited.
    Exit,
}

/// `%tid` of linear thread `t`.
pub(crate) fn tid(info: &BlockInfo, t: usize) -> [u32; 3] {
    let (nx, ny) = (info.ntid[0] as usize, info.ntid[1] as usize);
    [
        (t % nx) as u32,
        ((t / nx) % ny) as u32,
        (t / (nx * ny)) as u32,
    ]
}

fn sreg(env: &Env, t: usize, s: Sreg) -> u64 {
    let i = &env.info;
    let lane = (t % 32) as u32;
    (match s {
        Sreg::Tid(d) => tid(i, t)[d as usize],
        Sreg::Ntid(d) => i.ntid[d as usize],
        Sreg::Ctaid(d) => i.ctaid[d as usize],
        Sreg::Nctaid(d) => i.nctaid[d as usize],
        Sreg::Laneid => lane,
        Sreg::Warpid => (t / 32) as u32,
        Sreg::Nwarpid => (i.ntid.iter().product::<u32>()).div_ceil(32),
        Sreg::Smid | Sreg::Zero => 0,
        Sreg::Nsmid => i.nsm,
        Sreg::Lanemask(k) => {
            let bit = 1u64 << lane;
            (match k {
                0 => bit,
                1 => bit - 1,
                2 => (bit << 1) - 1,
                3 => !((bit << 1) - 1),
                _ => !(bit - 1),
            } & 0xFFFF_FFFF) as u32
        }
        Sreg::Clock => return env.c.instructions,
        Sreg::DynSmem => i.dyn_smem,
        Sreg::TotalSmem => i.static_smem + i.dyn_smem,
    }) as u64
}

/// The value of a source operand.
#[inline]
pub(crate) fn rd(regs: &[u64], o: &Opnd, env: &Env, t: usize) -> u64 {
    match *o {
        Opnd::Reg(r) => regs[r as usize],
        Opnd::Imm(v) => v,
        Opnd::NotReg(r) => (regs[r as usize] == 0) as u64,
        Opnd::Sreg(s) => sreg(env, t, s),
        _ => 0,
    }
}

#[inline]
fn wr(regs: &mut [u64], o: &Opnd, v: u64) {
    if let Opnd::Reg(r) = *o {
        regs[r as usize] = v;
    }
}

/// Integer, logic, compare, select, conversion and move instructions.
fn int_op(env: &Env, regs: &mut [u64], t: usize, i: &Inst) -> Result<(), Err0> {
    let a = rd(regs, &i.s[0], env, t);
    let b = rd(regs, &i.s[1], env, t);
    let c = rd(regs, &i.s[2], env, t);
    let v = match i.op {
        Op::Mov(ty) => a & mask(ty),
        Op::Add(ty) => a.wrapping_add(b) & mask(ty),
        Op::Sub(ty) => a.wrapping_sub(b) & mask(ty),
        Op::Mul(ty, m) => alu::mul(ty, m, a, b),
        Op::Mad(ty, m) => {
            let p = alu::mul(ty, m, a, b).wrapping_add(c);
            if m == MulMode::Wide && ty.bits() < 32 {
                p & ((1u64 << (2 * ty.bits())) - 1)
            } else if m == MulMode::Wide {
                p
            } else {
                p & mask(ty)
            }
        }
        Op::Div(ty) => alu::div(ty, a, b),
        Op::Rem(ty) => alu::rem(ty, a, b),
        Op::Min(ty) => alu::minmax(ty, a, b, false),
        Op::Max(ty) => alu::minmax(ty, a, b, true),
        Op::Abs(ty) => sext(a, ty.bits()).wrapping_abs() as u64 & mask(ty),
        Op::Neg(ty) => a.wrapping_neg() & mask(ty),
        Op::And(_) => a & b,
        Op::Or(_) => a | b,
        Op::Xor(_) => a ^ b,
        Op::Not(ty) => !a & mask(ty),
        Op::Cnot(ty) => (a & mask(ty) == 0) as u64,
        Op::Shl(ty) => alu::shl(ty, a, b),
        Op::Shr(ty) => alu::shr(ty, a, b),
        Op::Popc(ty) => (a & mask(ty)).count_ones() as u64,
        Op::Clz(ty) => ((a & mask(ty)).leading_zeros() - (64 - ty.bits())) as u64,
        Op::Brev(ty) => a.reverse_bits() >> (64 - ty.bits()),
        Op::Bfe(ty) => alu::bfe(ty, a, b, c),
        Op::Bfi(ty) => alu::bfi(ty, a, b, c, rd(regs, &i.s[3], env, t)),
        Op::Prmt => alu::prmt(a, b, c),
        Op::Setp(cmp, ty, bop) => {
            let p = alu::compare(cmp, ty, a, b, Default::default());
            let comb = |x: bool| match bop {
                None => x,
                Some(crate::ptx::inst::BoolOp::And) => x && c != 0,
                Some(crate::ptx::inst::BoolOp::Or) => x || c != 0,
                Some(crate::ptx::inst::BoolOp::Xor) => x ^ (c != 0),
            };
            wr(regs, &i.d2, comb(!p) as u64);
            comb(p) as u64
        }
        Op::Selp(ty) => (if c != 0 { a } else { b }) & mask(ty),
        Op::Cvt(d, s, r, f) => alu::cvt(d, s, r, f, a).map_err(|e| (FaultKind::Launch, e))?,
        Op::Cvta(space, to) => cvta(space, to, a),
        Op::Pack(w) => pack(regs, &i.s[0], w),
        Op::Unpack(w) => {
            unpack(regs, &i.d, w, a);
            return Ok(());
        }
        _ => {
            return Err((
                FaultKind::Launch,
                format!("internal: {:?} is not an integer op", i.op),
            ))
        }
    };
    wr(regs, &i.d, v);
    Ok(())
}

fn cvta(space: Space, to: bool, a: u64) -> u64 {
    let base = match space {
        Space::Shared => SHARED_WINDOW,
        Space::Local => LOCAL_WINDOW,
        Space::Param => PARAM_WINDOW,
        _ => 0,
    };
    if to {
        a.wrapping_sub(base)
    } else {
        a.wrapping_add(base)
    }
}

fn pack(regs: &[u64], o: &Opnd, w: u32) -> u64 {
    let mut v = 0u64;
    if let Opnd::Vec(r, n) = *o {
        for (k, reg) in r.iter().take(n as usize).enumerate() {
            let x = if *reg == NO_REG {
                0
            } else {
                regs[*reg as usize]
            };
            let m = if w == 64 { u64::MAX } else { (1u64 << w) - 1 };
            v |= (x & m) << (k as u32 * w);
        }
    }
    v
}

fn unpack(regs: &mut [u64], o: &Opnd, w: u32, v: u64) {
    if let Opnd::Vec(r, n) = *o {
        for (k, reg) in r.iter().take(n as usize).enumerate() {
            if *reg != NO_REG {
                let m = if w == 64 { u64::MAX } else { (1u64 << w) - 1 };
                regs[*reg as usize] = (v >> (k as u32 * w)) & m;
            }
        }
    }
}

/// Float arithmetic.
fn float_op(env: &Env, regs: &mut [u64], t: usize, i: &Inst) -> Result<(), Err0> {
    let a = rd(regs, &i.s[0], env, t);
    let b = rd(regs, &i.s[1], env, t);
    let r = match i.op {
        Op::FAdd(ty, r, f) => float::add(ty, a, b, false, r, f),
        Op::FSub(ty, r, f) => float::add(ty, a, b, true, r, f),
        Op::FMul(ty, r, f) => float::mul(ty, a, b, r, f),
        Op::FFma(ty, r, f) => float::fma(ty, a, b, rd(regs, &i.s[2], env, t), r, f),
        Op::FDiv(ty, r, f) => float::div(ty, a, b, r, f),
        Op::FMin(ty, f) => Ok(float::minmax(ty, a, b, false, f)),
        Op::FMax(ty, f) => Ok(float::minmax(ty, a, b, true, f)),
        Op::FUnary(u, ty, r, f) => float::unary(u, ty, a, r, f),
        _ => Err(format!("internal: {:?} is not a float op", i.op)),
    };
    wr(regs, &i.d, r.map_err(|e| (FaultKind::Launch, e))?);
    Ok(())
}

/// Runs thread `t` from `*pc` until it stops; counts executed instructions.
pub(crate) fn run_thread(
    env: &mut Env,
    regs: &mut [u64],
    local: &mut [u8],
    t: usize,
    pc: &mut u32,
) -> Result<Stop, Err0> {
    let code = env.code;
    let mut n = 0u64;
    let res = loop {
        let Some(i) = code.get(*pc as usize) else {
            break Ok(Stop::Exit);
        };
        n += 1;
        if i.guard != NO_REG && ((regs[i.guard as usize] != 0) == i.guard_neg) {
            *pc += 1;
            continue;
        }
        let r = match i.op {
            Op::Bra(target) => {
                *pc = target;
                continue;
            }
            Op::Exit => break Ok(Stop::Exit),
            Op::Bar => break Ok(Stop::Bar),
            Op::Shfl(_) | Op::Vote(_) => break Ok(Stop::Warp),
            Op::Ld(..) | Op::St(..) => mem::ld_st(env, regs, local, i),
            Op::Atom(..) | Op::Red(..) => mem::atomic(env, regs, local, i),
            Op::FAdd(..)
            | Op::FSub(..)
            | Op::FMul(..)
            | Op::FFma(..)
            | Op::FDiv(..)
            | Op::FMin(..)
            | Op::FMax(..)
            | Op::FUnary(..) => float_op(env, regs, t, i),
            Op::Nop => Ok(()),
            Op::Trap => Err((FaultKind::Launch, "trap instruction executed".to_string())),
            Op::Unsupported(k) => Err((
                FaultKind::Launch,
                format!(
                    "the virtual GPU does not implement this instruction: {}",
                    env.unsupported.get(k as usize).map_or("?", |s| s.as_str())
                ),
            )),
            _ => int_op(env, regs, t, i),
        };
        if let Err(e) = r {
            break Err(e);
        }
        *pc += 1;
    };
    env.c.instructions += n;
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_and_unpack() {
        let mut regs = vec![0x1111, 0x2222, 0];
        let v = pack(&regs, &Opnd::Vec([0, 1, NO_REG, NO_REG], 2), 32);
        assert_eq!(v, 0x2222_0000_1111);
        unpack(
            &mut regs,
            &Opnd::Vec([2, 0, NO_REG, NO_REG], 2),
            32,
            0x5_0000_0007,
        );
        assert_eq!((regs[2], regs[0]), (7, 5));
    }
}
