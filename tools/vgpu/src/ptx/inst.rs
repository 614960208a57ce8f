//! The pre-decoded instruction form the interpreter executes.
//!
//! A module is parsed once ([`crate::ptx::parse`]); every instruction becomes an [`Inst`]
//! whose operation ([`Op`]) already carries its types and modifiers and whose operands are
//! register slots, immediates or resolved addresses, so executing one is a `match` and a few
//! array reads, never text handling.

/// A PTX scalar type (`.b32`, `.s64`, `.f32`, `.pred`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    /// Untyped bits.
    B8,
    /// Untyped bits.
    B16,
    /// Untyped bits.
    B32,
    /// Untyped bits.
    B64,
    /// Unsigned integer.
    U8,
    /// Unsigned integer.
    U16,
    /// Unsigned integer.
    U32,
    /// Unsigned integer.
    U64,
    /// Signed integer.
    S8,
    /// Signed integer.
    S16,
    /// Signed integer.
    S32,
    /// Signed integer.
    S64,
    /// Half float (only moved and converted).
    F16,
    /// Single float.
    F32,
    /// Double float.
    F64,
    /// Predicate.
    Pred,
}

impl Ty {
    /// Parses a type suffix without its dot (`"u32"`).
    pub fn parse(s: &str) -> Option<Ty> {
        Some(match s {
            "b8" => Ty::B8,
            "b16" => Ty::B16,
            "b32" => Ty::B32,
            "b64" => Ty::B64,
            "u8" => Ty::U8,
            "u16" => Ty::U16,
            "u32" => Ty::U32,
            "u64" => Ty::U64,
            "s8" => Ty::S8,
            "s16" => Ty::S16,
            "s32" => Ty::S32,
            "s64" => Ty::S64,
            "f16" => Ty::F16,
            "f32" => Ty::F32,
            "f64" => Ty::F64,
            "pred" => Ty::Pred,
            _ => return None,
        })
    }

    /// Width in bits (1 for predicates).
    pub fn bits(self) -> u32 {
        match self {
            Ty::B8 | Ty::U8 | Ty::S8 => 8,
            Ty::B16 | Ty::U16 | Ty::S16 | Ty::F16 => 16,
            Ty::B32 | Ty::U32 | Ty::S32 | Ty::F32 => 32,
            Ty::B64 | Ty::U64 | Ty::S64 | Ty::F64 => 64,
            Ty::Pred => 1,
        }
    }

    /// Width in bytes (memory accesses).
    pub fn bytes(self) -> u32 {
        self.bits().div_ceil(8)
    }

    /// True for signed integers.
    pub fn signed(self) -> bool {
        matches!(self, Ty::S8 | Ty::S16 | Ty::S32 | Ty::S64)
    }

    /// True for floating-point types.
    pub fn float(self) -> bool {
        matches!(self, Ty::F16 | Ty::F32 | Ty::F64)
    }
}

/// A floating-point rounding modifier (`.rn`, `.rz`, `.rm`, `.rp`, or the integer-rounding
/// `.rni` ... of `cvt`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rnd {
    /// No modifier (round to nearest even where rounding applies).
    None,
    /// To nearest, ties to even.
    Rn,
    /// Towards zero.
    Rz,
    /// Towards minus infinity.
    Rm,
    /// Towards plus infinity.
    Rp,
    /// To an integral value, nearest even.
    Rni,
    /// To an integral value, towards zero.
    Rzi,
    /// To an integral value, towards minus infinity.
    Rmi,
    /// To an integral value, towards plus infinity.
    Rpi,
}

/// Float modifiers packed as bits: flush subnormals, saturate, approximate, propagate NaN.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FFlags(pub u8);

impl FFlags {
    /// `.ftz`: subnormal inputs and results become signed zeros.
    pub const FTZ: u8 = 1;
    /// `.sat`: results clamp to [0, 1] (NaN becomes 0).
    pub const SAT: u8 = 2;
    /// `.approx` / `.full`: an approximation is allowed.
    pub const APPROX: u8 = 4;
    /// `.NaN` on min/max: a NaN input gives NaN.
    pub const NAN: u8 = 8;

    /// True when `flag` is set.
    pub fn has(self, flag: u8) -> bool {
        self.0 & flag != 0
    }
}

/// A comparison of `setp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    /// Equal (ordered for floats).
    Eq,
    /// Not equal (ordered for floats).
    Ne,
    /// Less (signed/unsigned by type; `lo` is unsigned).
    Lt,
    /// Less or equal.
    Le,
    /// Greater.
    Gt,
    /// Greater or equal.
    Ge,
    /// Unordered or equal.
    Equ,
    /// Unordered or not equal.
    Neu,
    /// Unordered or less.
    Ltu,
    /// Unordered or less or equal.
    Leu,
    /// Unordered or greater.
    Gtu,
    /// Unordered or greater or equal.
    Geu,
    /// Both ordered (no NaN).
    Num,
    /// Either is NaN.
    Nan,
}

/// A boolean combination (`setp.lt.and`, `and.pred`, `vote`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BoolOp {
    /// Logical and.
    And,
    /// Logical or.
    Or,
    /// Exclusive or.
    Xor,
}

/// A memory state space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Space {
    /// Generic addressing (resolved by address window).
    Generic,
    /// Device global memory.
    Global,
    /// Per-block shared memory.
    Shared,
    /// Per-thread local memory.
    Local,
    /// Kernel parameters.
    Param,
    /// Constant memory (module `.const` variables; read-only global).
    Const,
}

impl Space {
    /// The PTX name.
    pub fn name(self) -> &'static str {
        match self {
            Space::Generic => "generic",
            Space::Global => "global",
            Space::Shared => "shared",
            Space::Local => "local",
            Space::Param => "param",
            Space::Const => "const",
        }
    }
}

/// The operation of `atom` / `red`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtomOp {
    /// Addition.
    Add,
    /// Minimum.
    Min,
    /// Maximum.
    Max,
    /// Bitwise and.
    And,
    /// Bitwise or.
    Or,
    /// Bitwise xor.
    Xor,
    /// Exchange.
    Exch,
    /// Compare and swap.
    Cas,
    /// Wrapping increment.
    Inc,
    /// Wrapping decrement.
    Dec,
}

/// The mode of `shfl.sync`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShflMode {
    /// From a lower lane.
    Up,
    /// From a higher lane.
    Down,
    /// From lane ^ b.
    Bfly,
    /// From an indexed lane.
    Idx,
}

/// The mode of `vote.sync`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteMode {
    /// Every participating predicate is true.
    All,
    /// Some participating predicate is true.
    Any,
    /// All participating predicates are equal.
    Uni,
    /// The mask of lanes whose predicate is true.
    Ballot,
}

/// Integer multiply variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MulMode {
    /// Low half of the product.
    Lo,
    /// High half of the product.
    Hi,
    /// Full product at twice the width.
    Wide,
}

/// A math function of one float operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unary {
    /// Reciprocal.
    Rcp,
    /// Square root.
    Sqrt,
    /// Reciprocal square root.
    Rsqrt,
    /// Base-2 exponential.
    Ex2,
    /// Base-2 logarithm.
    Lg2,
    /// Sine.
    Sin,
    /// Cosine.
    Cos,
    /// Hyperbolic tangent.
    Tanh,
    /// Absolute value.
    Abs,
    /// Negation.
    Neg,
}

/// One decoded operation with its types and modifiers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op {
    /// `mov`: d = a (also addresses of variables; vector packing by [`Op::Pack`]).
    Mov(Ty),
    /// `mov.b64 d, {a, b}`: packs lanes of `width` bits.
    Pack(u32),
    /// `mov.b64 {a, b}, d`: unpacks lanes of `width` bits.
    Unpack(u32),
    /// Integer add.
    Add(Ty),
    /// Integer subtract.
    Sub(Ty),
    /// Integer multiply.
    Mul(Ty, MulMode),
    /// Integer multiply-add.
    Mad(Ty, MulMode),
    /// Integer division (unsigned or signed by type).
    Div(Ty),
    /// Integer remainder.
    Rem(Ty),
    /// Integer minimum.
    Min(Ty),
    /// Integer maximum.
    Max(Ty),
    /// Integer absolute value.
    Abs(Ty),
    /// Integer negation.
    Neg(Ty),
    /// Float add.
    FAdd(Ty, Rnd, FFlags),
    /// Float subtract.
    FSub(Ty, Rnd, FFlags),
    /// Float multiply.
    FMul(Ty, Rnd, FFlags),
    /// Float fused multiply-add (`fma`, `mad.f32`).
    FFma(Ty, Rnd, FFlags),
    /// Float division.
    FDiv(Ty, Rnd, FFlags),
    /// Float minimum.
    FMin(Ty, FFlags),
    /// Float maximum.
    FMax(Ty, FFlags),
    /// One-operand float math.
    FUnary(Unary, Ty, Rnd, FFlags),
    /// Bitwise and (`.pred` too).
    And(Ty),
    /// Bitwise or.
    Or(Ty),
    /// Bitwise xor.
    Xor(Ty),
    /// Bitwise not.
    Not(Ty),
    /// Cnot: d = (a == 0).
    Cnot(Ty),
    /// Shift left.
    Shl(Ty),
    /// Shift right (arithmetic for signed types).
    Shr(Ty),
    /// Population count.
    Popc(Ty),
    /// Count leading zeros.
    Clz(Ty),
    /// Bit reverse.
    Brev(Ty),
    /// Bit-field extract.
    Bfe(Ty),
    /// Bit-field insert.
    Bfi(Ty),
    /// Byte permute (default mode).
    Prmt,
    /// Compare into a predicate, optionally combined with another predicate.
    Setp(Cmp, Ty, Option<BoolOp>),
    /// Select by predicate.
    Selp(Ty),
    /// Type conversion: (destination, source, rounding, flags).
    Cvt(Ty, Ty, Rnd, FFlags),
    /// Address conversion: `to` = from generic to the space, else from the space to generic.
    Cvta(Space, bool),
    /// Load of `vec` elements of `ty`.
    Ld(Space, Ty, u8),
    /// Store of `vec` elements of `ty`.
    St(Space, Ty, u8),
    /// Atomic read-modify-write returning the old value.
    Atom(Space, AtomOp, Ty),
    /// Atomic reduction (no result).
    Red(Space, AtomOp, Ty),
    /// Branch to an instruction index.
    Bra(u32),
    /// Thread exit (`ret` in an entry, `exit`).
    Exit,
    /// Block barrier (`bar.sync` / `barrier.sync`): barrier id in operand a.
    Bar,
    /// Warp shuffle.
    Shfl(ShflMode),
    /// Warp vote.
    Vote(VoteMode),
    /// Memory fence / no-op.
    Nop,
    /// `trap`: fails the launch.
    Trap,
    /// An instruction the interpreter does not implement (index into the kernel's texts);
    /// executing it fails the launch with that text.
    Unsupported(u32),
}

/// No register (unused slot of an address or vector).
pub const NO_REG: u32 = u32::MAX;

/// A special register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sreg {
    /// `%tid.{x,y,z}`.
    Tid(u8),
    /// `%ntid.{x,y,z}`.
    Ntid(u8),
    /// `%ctaid.{x,y,z}`.
    Ctaid(u8),
    /// `%nctaid.{x,y,z}`.
    Nctaid(u8),
    /// `%laneid`.
    Laneid,
    /// `%warpid`.
    Warpid,
    /// `%nwarpid`.
    Nwarpid,
    /// `%smid` (always 0).
    Smid,
    /// `%nsmid`.
    Nsmid,
    /// `%lanemask_eq/lt/le/gt/ge` (0..=4).
    Lanemask(u8),
    /// `%clock`, `%clock64`, `%globaltimer`: the thread's executed instruction count.
    Clock,
    /// `%gridid` (always 0) and other zero-valued registers.
    Zero,
    /// `%dynamic_smem_size`.
    DynSmem,
    /// `%total_smem_size`.
    TotalSmem,
}

/// An operand.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Opnd {
    /// Absent.
    None,
    /// A register slot.
    Reg(u32),
    /// A negated predicate register (`!%p`).
    NotReg(u32),
    /// An immediate (integers sign-extended to 64 bits; floats as their bits).
    Imm(u64),
    /// A special register.
    Sreg(Sreg),
    /// A memory address `[reg + off]` (`reg` may be [`NO_REG`]; symbols are resolved into
    /// `off`).
    Addr(u32, i64),
    /// A vector of registers (`{a, b, c, d}`, [`NO_REG`] for `_`), `n` used.
    Vec([u32; 4], u8),
}

/// One decoded instruction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Inst {
    /// The operation.
    pub op: Op,
    /// Guard predicate slot, or [`NO_REG`]; `guard_neg` negates it.
    pub guard: u32,
    /// True for `@!%p`.
    pub guard_neg: bool,
    /// Destination (or the stored value of `st`: see each op).
    pub d: Opnd,
    /// Second destination (`setp`'s `|q`, `shfl`'s predicate).
    pub d2: Opnd,
    /// Sources a, b, c, e.
    pub s: [Opnd; 4],
    /// Line in the PTX text (for messages).
    pub line: u32,
}

/// A kernel parameter.
#[derive(Clone, Debug)]
pub struct Param {
    /// Its name.
    pub name: String,
    /// Size in bytes.
    pub size: usize,
    /// Offset in the parameter buffer.
    pub offset: usize,
}

/// A decoded `.entry` function.
#[derive(Clone, Debug)]
pub struct Kernel {
    /// The entry's name.
    pub name: String,
    /// Its parameters in order.
    pub params: Vec<Param>,
    /// Total size of the parameter buffer.
    pub param_bytes: usize,
    /// The instructions.
    pub code: Vec<Inst>,
    /// Register slots per thread (predicates included).
    pub nregs: usize,
    /// Bytes of statically declared shared memory (dynamic shared memory starts after it).
    pub shared_static: usize,
    /// Alignment of the dynamic shared memory (`extern .shared`) start.
    pub dyn_shared_align: usize,
    /// Bytes of local memory per thread.
    pub local_bytes: usize,
    /// Texts of unsupported instructions (see [`Op::Unsupported`]).
    pub unsupported: Vec<String>,
    /// `.reqntid` / `.maxntid` if declared (x*y*z).
    pub max_threads: Option<u32>,
    /// True when blocks may run on several host threads with the same results: no float
    /// atomics, and no atomic's returned old value is ever read (integer atomics commute).
    pub parallel_safe: bool,
}

impl Kernel {
    /// Computes [`Kernel::parallel_safe`] from the code.
    pub fn is_parallel_safe(code: &[Inst]) -> bool {
        let mut atom_dests = Vec::new();
        for i in code {
            match i.op {
                Op::Atom(_, _, ty) | Op::Red(_, _, ty) if ty.float() => return false,
                Op::Atom(..) => {
                    if let Opnd::Reg(r) = i.d {
                        atom_dests.push(r);
                    }
                }
                _ => {}
            }
        }
        let reads = |i: &Inst, r: u32| {
            let src = |o: &Opnd| match *o {
                Opnd::Reg(x) | Opnd::NotReg(x) | Opnd::Addr(x, _) => x == r,
                Opnd::Vec(v, n) => v[..n as usize].contains(&r),
                _ => false,
            };
            i.guard == r || i.s.iter().any(src) || (matches!(i.op, Op::St(..)) && src(&i.d))
        };
        atom_dests
            .iter()
            .all(|&r| !code.iter().any(|i| reads(i, r)))
    }
}

/// A parsed module.
#[derive(Clone, Debug, Default)]
pub struct Module {
    /// Its entries.
    pub kernels: Vec<Kernel>,
    /// `.target` (e.g. `sm_90`).
    pub target: String,
}

impl Module {
    /// The kernel named `name`.
    pub fn kernel(&self, name: &str) -> Option<&Kernel> {
        self.kernels.iter().find(|k| k.name == name)
    }
}
