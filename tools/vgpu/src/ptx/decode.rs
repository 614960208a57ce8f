//! Opcode and operand decoding: [`RawInst`] → [`Inst`].
//!
//! Anything not understood becomes [`Op::Unsupported`] (with the reason kept in the kernel's
//! `unsupported` list), so a module still loads and only a launch that executes such an
//! instruction fails, naming it.

use std::collections::HashMap;

use super::inst::{
    AtomOp, BoolOp, Cmp, FFlags, Inst, MulMode, Op, Opnd, Rnd, ShflMode, Space, Ty, Unary,
    VoteMode, NO_REG,
};
use super::parse::{Raw, RawInst, SymInfo};

type DResult<T> = Result<T, String>;

/// Decoding context: the kernel's variables and labels.
struct Ctx<'a> {
    syms: &'a HashMap<String, SymInfo>,
    labels: &'a HashMap<String, u32>,
    ops: &'a [Raw],
}

impl Ctx<'_> {
    fn raw(&self, i: usize) -> DResult<&Raw> {
        self.ops
            .get(i)
            .ok_or_else(|| format!("operand {} missing", i + 1))
    }

    fn sym(&self, name: &str) -> DResult<u64> {
        self.syms
            .get(name)
            .map(|s| s.offset)
            .ok_or_else(|| format!("unknown symbol {name}"))
    }

    /// Source operand `i` read as `ty` (immediates converted to its bit pattern).
    fn src(&self, i: usize, ty: Ty) -> DResult<Opnd> {
        Ok(match self.raw(i)? {
            Raw::Reg(r) => Opnd::Reg(*r),
            Raw::NotReg(r) => Opnd::NotReg(*r),
            Raw::Sreg(s) => Opnd::Sreg(*s),
            Raw::Int(v) => match ty {
                Ty::F32 => Opnd::Imm((*v as i64 as f32).to_bits() as u64),
                Ty::F64 => Opnd::Imm((*v as i64 as f64).to_bits()),
                _ => Opnd::Imm(*v),
            },
            Raw::FBits(b, is_double) => Opnd::Imm(match (ty.bits(), *is_double) {
                (64, false) => (f32::from_bits(*b as u32) as f64).to_bits(),
                (32, true) => (f64::from_bits(*b) as f32).to_bits() as u64,
                _ => *b,
            }),
            Raw::Float(f) => Opnd::Imm(if ty.bits() == 64 {
                f.to_bits()
            } else {
                (*f as f32).to_bits() as u64
            }),
            Raw::Sym(name, off) => Opnd::Imm(self.sym(name)?.wrapping_add(*off as u64)),
            Raw::Addr(r, sym, off) => {
                let base = match sym {
                    Some(s) => self.sym(s)?,
                    None => 0,
                };
                Opnd::Addr(r.unwrap_or(NO_REG), base as i64 + off)
            }
            Raw::Vec(v) => vector(v)?,
            Raw::Pair(..) => return Err("unexpected register pair".into()),
        })
    }

    /// Destination operand `i`: (main, optional predicate of `d|p`).
    fn dst(&self, i: usize) -> DResult<(Opnd, Opnd)> {
        Ok(match self.raw(i)? {
            Raw::Reg(r) => (Opnd::Reg(*r), Opnd::None),
            Raw::Pair(d, p) => (Opnd::Reg(*d), Opnd::Reg(*p)),
            Raw::Vec(v) => (vector(v)?, Opnd::None),
            Raw::Sym(s, _) if s == "_" => (Opnd::None, Opnd::None),
            o => return Err(format!("bad destination {o:?}")),
        })
    }
}

fn vector(v: &[Option<u32>]) -> DResult<Opnd> {
    if v.is_empty() || v.len() > 4 {
        return Err(format!("vector of {} elements", v.len()));
    }
    let mut regs = [NO_REG; 4];
    for (slot, r) in regs.iter_mut().zip(v) {
        *slot = r.unwrap_or(NO_REG);
    }
    Ok(Opnd::Vec(regs, v.len() as u8))
}

/// The modifiers of an opcode, with helpers to pick them out.
struct Mods<'a>(Vec<&'a str>);

impl Mods<'_> {
    fn has(&self, m: &str) -> bool {
        self.0.contains(&m)
    }
    /// The last type modifier.
    fn ty(&self) -> DResult<Ty> {
        self.0
            .iter()
            .rev()
            .find_map(|m| Ty::parse(m))
            .ok_or_else(|| "no type".to_string())
    }
    /// All type modifiers in order.
    fn types(&self) -> Vec<Ty> {
        self.0.iter().filter_map(|m| Ty::parse(m)).collect()
    }
    fn rnd(&self) -> Rnd {
        for m in &self.0 {
            let r = match *m {
                "rn" => Rnd::Rn,
                "rz" => Rnd::Rz,
                "rm" => Rnd::Rm,
                "rp" => Rnd::Rp,
                "rni" => Rnd::Rni,
                "rzi" => Rnd::Rzi,
                "rmi" => Rnd::Rmi,
                "rpi" => Rnd::Rpi,
                _ => continue,
            };
            return r;
        }
        Rnd::None
    }
    fn flags(&self) -> FFlags {
        let mut f = 0;
        for m in &self.0 {
            f |= match *m {
                "ftz" => FFlags::FTZ,
                "sat" => FFlags::SAT,
                "approx" | "full" => FFlags::APPROX,
                "NaN" => FFlags::NAN,
                _ => 0,
            };
        }
        FFlags(f)
    }
    fn space(&self) -> Space {
        for m in &self.0 {
            match *m {
                "global" => return Space::Global,
                "shared" => return Space::Shared,
                "local" => return Space::Local,
                "param" => return Space::Param,
                "const" => return Space::Const,
                _ => {}
            }
        }
        Space::Generic
    }
    fn vec(&self) -> u8 {
        if self.has("v4") {
            4
        } else if self.has("v2") {
            2
        } else {
            1
        }
    }
}

fn cmp_of(s: &str) -> Option<Cmp> {
    Some(match s {
        "eq" => Cmp::Eq,
        "ne" => Cmp::Ne,
        "lt" | "lo" => Cmp::Lt,
        "le" | "ls" => Cmp::Le,
        "gt" | "hi" => Cmp::Gt,
        "ge" | "hs" => Cmp::Ge,
        "equ" => Cmp::Equ,
        "neu" => Cmp::Neu,
        "ltu" => Cmp::Ltu,
        "leu" => Cmp::Leu,
        "gtu" => Cmp::Gtu,
        "geu" => Cmp::Geu,
        "num" => Cmp::Num,
        "nan" => Cmp::Nan,
        _ => return None,
    })
}

fn atom_op(m: &Mods) -> DResult<AtomOp> {
    for s in &m.0 {
        return Ok(match *s {
            "add" => AtomOp::Add,
            "min" => AtomOp::Min,
            "max" => AtomOp::Max,
            "and" => AtomOp::And,
            "or" => AtomOp::Or,
            "xor" => AtomOp::Xor,
            "exch" => AtomOp::Exch,
            "cas" => AtomOp::Cas,
            "inc" => AtomOp::Inc,
            "dec" => AtomOp::Dec,
            _ => continue,
        });
    }
    Err("no atomic operation".into())
}

/// An instruction with operands `d, a, b, c` in the usual positions.
fn alu(c: &Ctx, op: Op, ty: Ty, nsrc: usize) -> DResult<Inst> {
    let (d, d2) = c.dst(0)?;
    let mut s = [Opnd::None; 4];
    for (i, slot) in s.iter_mut().enumerate().take(nsrc) {
        *slot = c.src(i + 1, ty)?;
    }
    Ok(inst(op, d, d2, s))
}

fn inst(op: Op, d: Opnd, d2: Opnd, s: [Opnd; 4]) -> Inst {
    Inst {
        op,
        guard: NO_REG,
        guard_neg: false,
        d,
        d2,
        s,
        line: 0,
    }
}

/// Float or integer arithmetic (`add`, `sub`, `mul`, `mad`, `fma`, `div`, `rem`, `min`, `max`).
fn arith(c: &Ctx, base: &str, m: &Mods) -> DResult<Inst> {
    let ty = m.ty()?;
    let (r, f) = (m.rnd(), m.flags());
    let mode = if m.has("hi") {
        MulMode::Hi
    } else if m.has("wide") {
        MulMode::Wide
    } else {
        MulMode::Lo
    };
    if m.has("cc") || (m.has("sat") && !ty.float()) {
        return Err("carry / integer saturation".into());
    }
    let (op, n) = match (base, ty.float()) {
        ("add", true) => (Op::FAdd(ty, r, f), 2),
        ("sub", true) => (Op::FSub(ty, r, f), 2),
        ("mul", true) => (Op::FMul(ty, r, f), 2),
        ("mad" | "fma", true) => (Op::FFma(ty, r, f), 3),
        ("div", true) => (Op::FDiv(ty, r, f), 2),
        ("min", true) => (Op::FMin(ty, f), 2),
        ("max", true) => (Op::FMax(ty, f), 2),
        ("add", false) => (Op::Add(ty), 2),
        ("sub", false) => (Op::Sub(ty), 2),
        ("mul", false) => (Op::Mul(ty, mode), 2),
        ("mad", false) => (Op::Mad(ty, mode), 3),
        ("div", false) => (Op::Div(ty), 2),
        ("rem", false) => (Op::Rem(ty), 2),
        ("min", false) => (Op::Min(ty), 2),
        ("max", false) => (Op::Max(ty), 2),
        _ => return Err("bad type".into()),
    };
    // mul.wide / mad.wide read their sources at the narrow type.
    alu(c, op, ty, n)
}

fn unary(c: &Ctx, base: &str, m: &Mods) -> DResult<Inst> {
    let ty = m.ty()?;
    let u = match base {
        "rcp" => Unary::Rcp,
        "sqrt" => Unary::Sqrt,
        "rsqrt" => Unary::Rsqrt,
        "ex2" => Unary::Ex2,
        "lg2" => Unary::Lg2,
        "sin" => Unary::Sin,
        "cos" => Unary::Cos,
        "tanh" => Unary::Tanh,
        "abs" if ty.float() => Unary::Abs,
        "neg" if ty.float() => Unary::Neg,
        "abs" => return alu(c, Op::Abs(ty), ty, 1),
        "neg" => return alu(c, Op::Neg(ty), ty, 1),
        _ => return Err("unknown".into()),
    };
    if !ty.float() || ty == Ty::F16 {
        return Err("bad type".into());
    }
    alu(c, Op::FUnary(u, ty, m.rnd(), m.flags()), ty, 1)
}

fn setp(c: &Ctx, m: &Mods) -> DResult<Inst> {
    let cmp = m.0.iter().find_map(|s| cmp_of(s)).ok_or("no comparison")?;
    let bop = m.0.iter().find_map(|s| match *s {
        "and" => Some(BoolOp::And),
        "or" => Some(BoolOp::Or),
        "xor" => Some(BoolOp::Xor),
        _ => None,
    });
    let ty = m.ty()?;
    let mut i = alu(c, Op::Setp(cmp, ty, bop), ty, 2)?;
    if bop.is_some() {
        i.s[2] = c.src(3, Ty::Pred)?;
    }
    Ok(i)
}

fn cvt(c: &Ctx, m: &Mods) -> DResult<Inst> {
    let t = m.types();
    if t.len() != 2 || m.0.iter().any(|s| s.contains('x')) {
        return Err("unsupported conversion".into());
    }
    let (d, _) = c.dst(0)?;
    Ok(inst(
        Op::Cvt(t[0], t[1], m.rnd(), m.flags()),
        d,
        Opnd::None,
        [c.src(1, t[1])?, Opnd::None, Opnd::None, Opnd::None],
    ))
}

fn memory(c: &Ctx, base: &str, m: &Mods) -> DResult<Inst> {
    let (ty, space, vec) = (m.ty()?, m.space(), m.vec());
    let op = if base == "st" {
        Op::St(space, ty, vec)
    } else {
        Op::Ld(space, ty, vec)
    };
    if base == "st" {
        // st [addr], value: the value travels in `d`.
        let a = c.src(0, Ty::U64)?;
        let v = c.src(1, ty)?;
        return Ok(inst(
            op,
            v,
            Opnd::None,
            [a, Opnd::None, Opnd::None, Opnd::None],
        ));
    }
    let (d, _) = c.dst(0)?;
    Ok(inst(
        op,
        d,
        Opnd::None,
        [c.src(1, Ty::U64)?, Opnd::None, Opnd::None, Opnd::None],
    ))
}

fn atomic(c: &Ctx, base: &str, m: &Mods) -> DResult<Inst> {
    let (ty, space, op) = (m.ty()?, m.space(), atom_op(m)?);
    if base == "red" {
        let a = c.src(0, Ty::U64)?;
        let b = c.src(1, ty)?;
        return Ok(inst(
            Op::Red(space, op, ty),
            Opnd::None,
            Opnd::None,
            [a, b, Opnd::None, Opnd::None],
        ));
    }
    let (d, _) = c.dst(0)?;
    let mut s = [c.src(1, Ty::U64)?, c.src(2, ty)?, Opnd::None, Opnd::None];
    if op == AtomOp::Cas {
        s[2] = c.src(3, ty)?;
    }
    Ok(inst(Op::Atom(space, op, ty), d, Opnd::None, s))
}

fn warp(c: &Ctx, base: &str, m: &Mods) -> DResult<Inst> {
    if !m.has("sync") {
        return Err("warp operations without .sync (pre-sm_70)".into());
    }
    if base == "shfl" {
        let mode = if m.has("up") {
            ShflMode::Up
        } else if m.has("down") {
            ShflMode::Down
        } else if m.has("bfly") {
            ShflMode::Bfly
        } else if m.has("idx") {
            ShflMode::Idx
        } else {
            return Err("no shuffle mode".into());
        };
        return alu(c, Op::Shfl(mode), Ty::B32, 4);
    }
    let mode = if m.has("all") {
        VoteMode::All
    } else if m.has("any") {
        VoteMode::Any
    } else if m.has("uni") {
        VoteMode::Uni
    } else if m.has("ballot") {
        VoteMode::Ballot
    } else {
        return Err("no vote mode".into());
    };
    alu(c, Op::Vote(mode), Ty::B32, 2)
}

fn decode_op(c: &Ctx, opcode: &str) -> DResult<Inst> {
    let mut parts = opcode.split('.');
    let base = parts.next().unwrap_or_default();
    let m = Mods(parts.collect());
    let none = [Opnd::None; 4];
    match base {
        "mov" => {
            let ty = m.ty()?;
            let (d, _) = c.dst(0)?;
            let a = c.src(1, ty)?;
            let op = match (d, a) {
                (Opnd::Vec(_, n), _) => Op::Unpack(ty.bits() / n as u32),
                (_, Opnd::Vec(_, n)) => Op::Pack(ty.bits() / n as u32),
                _ => Op::Mov(ty),
            };
            Ok(inst(
                op,
                d,
                Opnd::None,
                [a, Opnd::None, Opnd::None, Opnd::None],
            ))
        }
        "add" | "sub" | "mul" | "mad" | "fma" | "div" | "rem" | "min" | "max" => arith(c, base, &m),
        "rcp" | "sqrt" | "rsqrt" | "ex2" | "lg2" | "sin" | "cos" | "tanh" | "abs" | "neg" => {
            unary(c, base, &m)
        }
        "and" | "or" | "xor" | "not" | "cnot" | "shl" | "shr" | "popc" | "clz" | "brev" | "bfe"
        | "bfi" => {
            let ty = m.ty()?;
            let (op, n) = match base {
                "and" => (Op::And(ty), 2),
                "or" => (Op::Or(ty), 2),
                "xor" => (Op::Xor(ty), 2),
                "not" => (Op::Not(ty), 1),
                "cnot" => (Op::Cnot(ty), 1),
                "shl" => (Op::Shl(ty), 2),
                "shr" => (Op::Shr(ty), 2),
                "popc" => (Op::Popc(ty), 1),
                "clz" => (Op::Clz(ty), 1),
                "brev" => (Op::Brev(ty), 1),
                "bfe" => (Op::Bfe(ty), 3),
                _ => (Op::Bfi(ty), 4),
            };
            // Shift amounts and bfe/bfi positions are 32-bit.
            let mut i = alu(c, op, ty, n)?;
            match op {
                Op::Shl(_) | Op::Shr(_) => i.s[1] = c.src(2, Ty::U32)?,
                Op::Bfe(_) => {
                    i.s[1] = c.src(2, Ty::U32)?;
                    i.s[2] = c.src(3, Ty::U32)?;
                }
                Op::Bfi(_) => {
                    i.s[2] = c.src(3, Ty::U32)?;
                    i.s[3] = c.src(4, Ty::U32)?;
                }
                _ => {}
            }
            Ok(i)
        }
        "prmt" if m.0.len() == 1 => alu(c, Op::Prmt, Ty::B32, 3),
        "setp" => setp(c, &m),
        "selp" => {
            let ty = m.ty()?;
            let mut i = alu(c, Op::Selp(ty), ty, 2)?;
            i.s[2] = c.src(3, Ty::Pred)?;
            Ok(i)
        }
        "cvt" => cvt(c, &m),
        "cvta" => {
            let to = m.has("to");
            alu(c, Op::Cvta(m.space(), to), Ty::U64, 1)
        }
        "ld" | "ldu" | "st" => memory(c, base, &m),
        "atom" | "red" => atomic(c, base, &m),
        "bra" | "brx" if base == "bra" => match c.raw(0)? {
            Raw::Sym(l, 0) => {
                let t = c
                    .labels
                    .get(l)
                    .ok_or_else(|| format!("unknown label {l}"))?;
                Ok(inst(Op::Bra(*t), Opnd::None, Opnd::None, none))
            }
            o => Err(format!("bad branch target {o:?}")),
        },
        "ret" | "exit" => Ok(inst(Op::Exit, Opnd::None, Opnd::None, none)),
        "bar" | "barrier" if m.has("sync") || m.0.is_empty() || m.0 == ["aligned"] => {
            let mut s = [c.src(0, Ty::U32)?, Opnd::None, Opnd::None, Opnd::None];
            if c.ops.len() > 1 {
                s[1] = c.src(1, Ty::U32)?;
            }
            Ok(inst(Op::Bar, Opnd::None, Opnd::None, s))
        }
        "shfl" | "vote" => warp(c, base, &m),
        "membar" | "fence" | "nanosleep" | "pmevent" | "prefetch" | "prefetchu" => {
            Ok(inst(Op::Nop, Opnd::None, Opnd::None, none))
        }
        "trap" | "brkpt" => Ok(inst(Op::Trap, Opnd::None, Opnd::None, none)),
        _ => Err("unknown instruction".into()),
    }
}

/// Decodes one instruction; what cannot be decoded becomes [`Op::Unsupported`].
pub fn decode(
    ri: &RawInst,
    syms: &HashMap<String, SymInfo>,
    labels: &HashMap<String, u32>,
    unsupported: &mut Vec<String>,
) -> Inst {
    let c = Ctx {
        syms,
        labels,
        ops: &ri.ops,
    };
    let mut i = decode_op(&c, &ri.opcode).unwrap_or_else(|why| {
        unsupported.push(format!("line {}: {} ({why})", ri.line, ri.opcode));
        inst(
            Op::Unsupported(unsupported.len() as u32 - 1),
            Opnd::None,
            Opnd::None,
            [Opnd::None; 4],
        )
    });
    if let Some((g, neg)) = ri.guard {
        i.guard = g;
        i.guard_neg = neg;
    }
    i.line = ri.line;
    i
}
