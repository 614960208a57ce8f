//! PTX module parser: directives, `.entry` signatures, declarations and statements.
//!
//! Registers are resolved to slots here (with nested `{ }` scopes); instructions become
//! [`RawInst`]s that [`crate::ptx::decode`] turns into [`Inst`]s once labels are known.

use std::collections::HashMap;

use super::decode::decode;
use super::inst::{Inst, Kernel, Module, Param, Space, Sreg, Ty};
use super::lex::{lex, Tok, Token};

/// An operand as written, with registers already resolved.
#[derive(Clone, Debug, PartialEq)]
pub enum Raw {
    /// A register slot.
    Reg(u32),
    /// `!%p`.
    NotReg(u32),
    /// A special register.
    Sreg(Sreg),
    /// A symbol (variable or label) plus an offset.
    Sym(String, i64),
    /// An integer immediate.
    Int(u64),
    /// A hex float immediate: bits, is-double.
    FBits(u64, bool),
    /// A decimal float immediate.
    Float(f64),
    /// `[reg + sym + off]`.
    Addr(Option<u32>, Option<String>, i64),
    /// `{a, b, ...}` (`None` for `_`).
    Vec(Vec<Option<u32>>),
    /// `d|p`.
    Pair(u32, u32),
}

/// An instruction as written.
#[derive(Clone, Debug)]
pub struct RawInst {
    /// Guard `(slot, negated)`.
    pub guard: Option<(u32, bool)>,
    /// Opcode with modifiers (`ld.global.nc.f32`).
    pub opcode: String,
    /// Operands.
    pub ops: Vec<Raw>,
    /// Source line.
    pub line: u32,
}

/// Where a named variable lives.
#[derive(Clone, Copy, Debug)]
pub struct SymInfo {
    /// Its state space.
    pub space: Space,
    /// Its offset in that space.
    pub offset: u64,
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
}

type PResult<T> = Result<T, String>;

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.tok)
    }
    fn line(&self) -> u32 {
        self.toks
            .get(self.pos)
            .or(self.toks.last())
            .map_or(0, |t| t.line)
    }
    fn next(&mut self) -> PResult<Tok> {
        let t = self
            .toks
            .get(self.pos)
            .map(|t| t.tok.clone())
            .ok_or_else(|| "unexpected end of PTX".to_string())?;
        self.pos += 1;
        Ok(t)
    }
    fn err<T>(&self, what: &str) -> PResult<T> {
        Err(format!(
            "line {}: {what} (found {:?})",
            self.line(),
            self.peek()
        ))
    }
    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(&Tok::Punct(c)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, c: char) -> PResult<()> {
        if self.eat(c) {
            Ok(())
        } else {
            self.err(&format!("expected {c:?}"))
        }
    }
    fn ident(&mut self) -> PResult<String> {
        match self.next()? {
            Tok::Ident(s) => Ok(s),
            t => Err(format!(
                "line {}: expected a name, found {t:?}",
                self.line()
            )),
        }
    }
    fn int(&mut self) -> PResult<u64> {
        match self.next()? {
            Tok::Int(v) => Ok(v),
            t => Err(format!(
                "line {}: expected an integer, found {t:?}",
                self.line()
            )),
        }
    }
    /// Skips to the end of the current statement (`;`), inclusive.
    fn skip_statement(&mut self) -> PResult<()> {
        while self.next()? != Tok::Punct(';') {}
        Ok(())
    }
    /// Skips the remaining tokens on the current line (`.loc`, `.file`).
    fn skip_line(&mut self, line: u32) {
        while self.pos < self.toks.len() && self.toks[self.pos].line == line {
            self.pos += 1;
        }
    }
}

/// A `.shared` / `.local` / `.param` declaration's shape.
struct VarDecl {
    name: String,
    align: usize,
    size: usize,
    /// `[]`: unsized (dynamic shared memory).
    unsized_array: bool,
}

/// Parses `[.align N] .type [.ptr ...] name[dims]` after the state space directive.
fn var_decl(p: &mut Parser) -> PResult<VarDecl> {
    let (mut align, mut elem) = (0usize, 0usize);
    loop {
        match p.peek() {
            Some(Tok::Ident(s)) if s == ".align" => {
                p.pos += 1;
                align = p.int()? as usize;
            }
            Some(Tok::Ident(s)) if s.starts_with('.') => {
                let s = s.clone();
                p.pos += 1;
                if let Some(t) = Ty::parse(&s[1..]) {
                    elem = t.bytes() as usize;
                } else if let Some(n) = s.strip_prefix(".v") {
                    // .v2 / .v4 vector variables: the element type follows.
                    let n: usize = n.parse().map_err(|_| format!("bad vector {s}"))?;
                    let t = p.ident()?;
                    let t = Ty::parse(&t[1..]).ok_or_else(|| format!("bad type {t}"))?;
                    elem = t.bytes() as usize * n;
                }
            }
            _ => break,
        }
    }
    let name = p.ident()?;
    let (mut count, mut unsized_array) = (1usize, false);
    while p.eat('[') {
        if p.eat(']') {
            unsized_array = true;
            continue;
        }
        count *= p.int()? as usize;
        p.expect(']')?;
    }
    if elem == 0 {
        return p.err(&format!("declaration of {name} has no type"));
    }
    Ok(VarDecl {
        name,
        align: if align == 0 { elem } else { align },
        size: elem * count,
        unsized_array,
    })
}

fn special(name: &str) -> Option<Sreg> {
    let dim = |s: &str| match s {
        "x" => Some(0u8),
        "y" => Some(1),
        "z" => Some(2),
        _ => None,
    };
    if let Some((base, d)) = name.split_once('.') {
        let d = dim(d)?;
        return Some(match base {
            "%tid" => Sreg::Tid(d),
            "%ntid" => Sreg::Ntid(d),
            "%ctaid" => Sreg::Ctaid(d),
            "%nctaid" => Sreg::Nctaid(d),
            _ => return None,
        });
    }
    Some(match name {
        "%laneid" => Sreg::Laneid,
        "%warpid" => Sreg::Warpid,
        "%nwarpid" => Sreg::Nwarpid,
        "%smid" => Sreg::Smid,
        "%nsmid" => Sreg::Nsmid,
        "%lanemask_eq" => Sreg::Lanemask(0),
        "%lanemask_lt" => Sreg::Lanemask(1),
        "%lanemask_le" => Sreg::Lanemask(2),
        "%lanemask_gt" => Sreg::Lanemask(3),
        "%lanemask_ge" => Sreg::Lanemask(4),
        "%clock" | "%clock64" | "%globaltimer" | "%globaltimer_lo" => Sreg::Clock,
        "%gridid" => Sreg::Zero,
        "%dynamic_smem_size" => Sreg::DynSmem,
        "%total_smem_size" => Sreg::TotalSmem,
        _ => return None,
    })
}

/// The state of one function body being parsed.
struct Body {
    scopes: Vec<HashMap<String, u32>>,
    nregs: u32,
    syms: HashMap<String, SymInfo>,
    shared: usize,
    dyn_align: usize,
    local: usize,
    insts: Vec<RawInst>,
    labels: HashMap<String, u32>,
}

impl Body {
    fn reg(&self, name: &str) -> Option<u32> {
        self.scopes.iter().rev().find_map(|s| s.get(name).copied())
    }
    fn declare(&mut self, name: String) {
        let slot = self.nregs;
        self.nregs += 1;
        self.scopes
            .last_mut()
            .expect("a scope is open")
            .insert(name, slot);
    }
}

fn align_up(v: usize, a: usize) -> usize {
    v.div_ceil(a.max(1)) * a.max(1)
}

/// Parses `.reg .type name<N>, other;`.
fn reg_decl(p: &mut Parser, b: &mut Body) -> PResult<()> {
    let ty = p.ident()?;
    if ty.starts_with(".v") {
        return p.err("vector registers are not supported");
    }
    loop {
        let name = p.ident()?;
        if p.eat('<') {
            let n = p.int()?;
            p.expect('>')?;
            for i in 0..n {
                b.declare(format!("{name}{i}"));
            }
        } else {
            b.declare(name);
        }
        if !p.eat(',') {
            break;
        }
    }
    p.expect(';')
}

/// Parses one operand.
fn operand(p: &mut Parser, b: &Body) -> PResult<Raw> {
    let reg = |b: &Body, name: &str, line: u32| -> PResult<Raw> {
        if let Some(r) = b.reg(name) {
            return Ok(Raw::Reg(r));
        }
        if let Some(s) = special(name) {
            return Ok(Raw::Sreg(s));
        }
        if name.starts_with('%') {
            if name.starts_with("%envreg") || name.starts_with("%pm") {
                return Ok(Raw::Sreg(Sreg::Zero));
            }
            return Err(format!("line {line}: undeclared register {name}"));
        }
        Ok(Raw::Sym(name.to_string(), 0))
    };
    let line = p.line();
    match p.next()? {
        Tok::Punct('[') => {
            let (mut r, mut sym, mut off) = (None, None, 0i64);
            loop {
                let neg = p.eat('-');
                match p.next()? {
                    Tok::Ident(n) => match reg(b, &n, line)? {
                        Raw::Reg(x) => r = Some(x),
                        Raw::Sym(s, _) => sym = Some(s),
                        _ => return Err(format!("line {line}: bad address operand {n}")),
                    },
                    Tok::Int(v) => off += if neg { -(v as i64) } else { v as i64 },
                    t => return Err(format!("line {line}: bad address token {t:?}")),
                }
                if p.eat(']') {
                    break;
                }
                p.expect('+')?;
            }
            Ok(Raw::Addr(r, sym, off))
        }
        Tok::Punct('{') => {
            let mut v = Vec::new();
            loop {
                let n = p.ident()?;
                v.push(if n == "_" { None } else { b.reg(&n) });
                if v.last() == Some(&None) && n != "_" {
                    return Err(format!("line {line}: undeclared register {n}"));
                }
                if p.eat('}') {
                    break;
                }
                p.expect(',')?;
            }
            Ok(Raw::Vec(v))
        }
        Tok::Punct('!') => match reg(b, &p.ident()?, line)? {
            Raw::Reg(r) => Ok(Raw::NotReg(r)),
            o => Err(format!("line {line}: cannot negate {o:?}")),
        },
        Tok::Punct('-') => match p.next()? {
            Tok::Int(v) => Ok(Raw::Int((v as i64).wrapping_neg() as u64)),
            Tok::Float(f) => Ok(Raw::Float(-f)),
            t => Err(format!("line {line}: bad negative literal {t:?}")),
        },
        Tok::Int(v) => Ok(Raw::Int(v)),
        Tok::FloatBits(v, d) => Ok(Raw::FBits(v, d)),
        Tok::Float(f) => Ok(Raw::Float(f)),
        Tok::Ident(n) => {
            let r = reg(b, &n, line)?;
            if p.eat('|') {
                let q = p.ident()?;
                return match (r, b.reg(&q)) {
                    (Raw::Reg(d), Some(q)) => Ok(Raw::Pair(d, q)),
                    _ => Err(format!("line {line}: bad register pair {n}|{q}")),
                };
            }
            if let Raw::Sym(s, _) = &r {
                if p.eat('+') {
                    let off = p.int()? as i64;
                    return Ok(Raw::Sym(s.clone(), off));
                }
            }
            Ok(r)
        }
        t => Err(format!("line {line}: unexpected operand {t:?}")),
    }
}

/// Parses one instruction (after its guard).
fn instruction(p: &mut Parser, b: &mut Body, guard: Option<(u32, bool)>) -> PResult<()> {
    let line = p.line();
    let opcode = p.ident()?;
    let mut ops = Vec::new();
    if !p.eat(';') {
        loop {
            ops.push(operand(p, b)?);
            if p.eat(';') {
                break;
            }
            p.expect(',')?;
        }
    }
    b.insts.push(RawInst {
        guard,
        opcode,
        ops,
        line,
    });
    Ok(())
}

/// Parses a shared or local declaration inside a body.
fn space_decl(p: &mut Parser, b: &mut Body, space: Space) -> PResult<()> {
    let v = var_decl(p)?;
    if p.eat('=') {
        return p.err("initialised shared/local variables are not supported");
    }
    p.expect(';')?;
    let offset = match space {
        Space::Shared if v.unsized_array => {
            b.dyn_align = b.dyn_align.max(v.align);
            u64::MAX // patched once the static size is known
        }
        Space::Shared => {
            let o = align_up(b.shared, v.align);
            b.shared = o + v.size;
            o as u64
        }
        _ => {
            let o = align_up(b.local, v.align);
            b.local = o + v.size;
            o as u64
        }
    };
    b.syms.insert(v.name, SymInfo { space, offset });
    Ok(())
}

/// Parses statements up to the closing brace of the body.
fn body(p: &mut Parser, b: &mut Body) -> PResult<()> {
    p.expect('{')?;
    b.scopes.push(HashMap::new());
    while !b.scopes.is_empty() {
        let line = p.line();
        match p.next()? {
            Tok::Punct('{') => b.scopes.push(HashMap::new()),
            Tok::Punct('}') => {
                b.scopes.pop();
            }
            Tok::Punct('@') => {
                let neg = p.eat('!');
                let name = p.ident()?;
                let r = b
                    .reg(&name)
                    .ok_or_else(|| format!("line {line}: undeclared guard {name}"))?;
                instruction(p, b, Some((r, neg)))?;
            }
            Tok::Ident(s) => match s.as_str() {
                ".reg" => reg_decl(p, b)?,
                ".shared" => space_decl(p, b, Space::Shared)?,
                ".local" => space_decl(p, b, Space::Local)?,
                ".pragma" => p.skip_statement()?,
                ".loc" | ".file" => p.skip_line(line),
                ".extern" => {} // `.extern .shared ... name[]`
                _ if p.peek() == Some(&Tok::Punct(':')) => {
                    p.pos += 1;
                    b.labels.insert(s, b.insts.len() as u32);
                }
                _ if s.starts_with('.') => return p.err(&format!("unsupported directive {s}")),
                _ => {
                    p.pos -= 1;
                    instruction(p, b, None)?;
                }
            },
            t => return Err(format!("line {line}: unexpected {t:?} in a function body")),
        }
    }
    Ok(())
}

/// Parses `( .param ... , ... )` of an entry.
fn params(p: &mut Parser, b: &mut Body) -> PResult<(Vec<Param>, usize)> {
    let (mut out, mut off) = (Vec::new(), 0usize);
    p.expect('(')?;
    if p.eat(')') {
        return Ok((out, 0));
    }
    loop {
        let d = p.ident()?;
        if d != ".param" {
            return p.err("expected .param");
        }
        let v = var_decl(p)?;
        off = align_up(off, v.align);
        b.syms.insert(
            v.name.clone(),
            SymInfo {
                space: Space::Param,
                offset: off as u64,
            },
        );
        out.push(Param {
            name: v.name,
            size: v.size,
            offset: off,
        });
        off += v.size;
        if p.eat(')') {
            return Ok((out, off));
        }
        p.expect(',')?;
    }
}

/// Parses an `.entry` (after the keyword) into a kernel.
fn entry(p: &mut Parser, module_shared: &[(String, usize, usize, bool)]) -> PResult<Kernel> {
    let name = p.ident()?;
    let mut b = Body {
        scopes: Vec::new(),
        nregs: 0,
        syms: HashMap::new(),
        shared: 0,
        dyn_align: 16,
        local: 0,
        insts: Vec::new(),
        labels: HashMap::new(),
    };
    for (n, size, align, unsized_array) in module_shared {
        let offset = if *unsized_array {
            b.dyn_align = b.dyn_align.max(*align);
            u64::MAX // dynamic shared memory: patched once the static size is known
        } else {
            let o = align_up(b.shared, *align);
            b.shared = o + size;
            o as u64
        };
        let space = Space::Shared;
        b.syms.insert(n.clone(), SymInfo { space, offset });
    }
    let (params, param_bytes) = params(p, &mut b)?;
    let mut max_threads = None;
    while let Some(Tok::Ident(d)) = p.peek() {
        let d = d.clone();
        p.pos += 1;
        match d.as_str() {
            ".maxntid" | ".reqntid" => {
                let mut n = p.int()?;
                while p.eat(',') {
                    n *= p.int()?;
                }
                max_threads = Some(n as u32);
            }
            ".minnctapersm" | ".maxnreg" | ".maxnctapersm" => {
                p.int()?;
            }
            ".noreturn" => {}
            _ => return p.err(&format!("unsupported entry directive {d}")),
        }
    }
    body(p, &mut b)?;
    let dyn_start = align_up(b.shared, b.dyn_align) as u64;
    for s in b.syms.values_mut() {
        if s.space == Space::Shared && s.offset == u64::MAX {
            s.offset = dyn_start;
        }
    }
    let mut unsupported = Vec::new();
    let code: Vec<Inst> = b
        .insts
        .iter()
        .map(|ri| decode(ri, &b.syms, &b.labels, &mut unsupported))
        .collect();
    let parallel_safe = Kernel::is_parallel_safe(&code);
    Ok(Kernel {
        parallel_safe,
        name,
        params,
        param_bytes,
        code,
        nregs: b.nregs as usize,
        shared_static: b.shared,
        dyn_shared_align: b.dyn_align,
        local_bytes: b.local,
        unsupported,
        max_threads,
    })
}

/// Parses PTX text into a module of decoded kernels.
pub fn parse_module(src: &str) -> PResult<Module> {
    let mut p = Parser {
        toks: lex(src)?,
        pos: 0,
    };
    let mut m = Module::default();
    let mut module_shared = Vec::new();
    while p.pos < p.toks.len() {
        let line = p.line();
        let d = p.ident()?;
        match d.as_str() {
            ".version" => {
                p.next()?;
            }
            ".target" => {
                m.target = p.ident()?;
                while p.eat(',') {
                    p.ident()?;
                }
            }
            ".address_size" => {
                if p.int()? != 64 {
                    return p.err("only .address_size 64 is supported");
                }
            }
            ".visible" | ".weak" | ".extern" | ".common" => {}
            ".entry" => m.kernels.push(entry(&mut p, &module_shared)?),
            ".shared" => {
                let v = var_decl(&mut p)?;
                p.expect(';')?;
                module_shared.push((v.name, v.size, v.align, v.unsized_array));
            }
            ".file" | ".loc" | ".section" => p.skip_line(line),
            ".func" | ".global" | ".const" => {
                return Err(format!(
                    "line {line}: {d} at module scope is not supported by the virtual GPU \
                     (device-function calls and module variables are not implemented)"
                ))
            }
            _ => return Err(format!("line {line}: unsupported directive {d}")),
        }
    }
    Ok(m)
}
