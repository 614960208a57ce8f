//! Integer arithmetic, comparisons and conversions on 64-bit register slots.
//!
//! A slot holds a value zero-extended from its type's width; signed types are sign-extended
//! from that width when read.

use super::float::{ftz32, round_f32, CANONICAL_NAN32};
use crate::ptx::inst::{AtomOp, Cmp, FFlags, MulMode, Rnd, Ty};

/// All-ones mask of a type's width.
#[inline]
pub fn mask(ty: Ty) -> u64 {
    match ty.bits() {
        64 => u64::MAX,
        b => (1u64 << b) - 1,
    }
}

/// `v` sign-extended from `bits`.
#[inline]
pub fn sext(v: u64, bits: u32) -> i64 {
    if bits >= 64 {
        v as i64
    } else {
        ((v << (64 - bits)) as i64) >> (64 - bits)
    }
}

/// `v` read as `ty`, widened to i128 (signed or unsigned as the type says).
#[inline]
fn wide(v: u64, ty: Ty) -> i128 {
    if ty.signed() {
        sext(v, ty.bits()) as i128
    } else {
        (v & mask(ty)) as i128
    }
}

/// Integer multiply (`mul.lo/hi/wide`).
pub fn mul(ty: Ty, mode: MulMode, a: u64, b: u64) -> u64 {
    let bits = ty.bits();
    match mode {
        MulMode::Lo => a.wrapping_mul(b) & mask(ty),
        MulMode::Hi => {
            let p = wide(a, ty).wrapping_mul(wide(b, ty));
            ((p >> bits) as u64) & mask(ty)
        }
        MulMode::Wide => {
            let p = wide(a, ty).wrapping_mul(wide(b, ty)) as u64;
            if bits >= 32 {
                p
            } else {
                p & ((1u64 << (2 * bits)) - 1)
            }
        }
    }
}

/// Integer division; division by zero gives all ones (unsigned) or -1 / +1 like the GPU's
/// software sequence would not trap either.
pub fn div(ty: Ty, a: u64, b: u64) -> u64 {
    let m = mask(ty);
    if ty.signed() {
        let (x, y) = (sext(a, ty.bits()), sext(b, ty.bits()));
        if y == 0 {
            return m;
        }
        (x.wrapping_div(y) as u64) & m
    } else {
        (a & m).checked_div(b & m).unwrap_or(m)
    }
}

/// Integer remainder; remainder by zero gives the dividend.
pub fn rem(ty: Ty, a: u64, b: u64) -> u64 {
    let m = mask(ty);
    if ty.signed() {
        let (x, y) = (sext(a, ty.bits()), sext(b, ty.bits()));
        if y == 0 {
            return a & m;
        }
        (x.wrapping_rem(y) as u64) & m
    } else {
        (a & m).checked_rem(b & m).unwrap_or(a & m)
    }
}

/// Integer min or max.
pub fn minmax(ty: Ty, a: u64, b: u64, is_max: bool) -> u64 {
    let (x, y) = (wide(a, ty), wide(b, ty));
    let r = if (x > y) == is_max { x } else { y };
    r as u64 & mask(ty)
}

/// Shift left; amounts of the width or more give 0.
pub fn shl(ty: Ty, a: u64, b: u64) -> u64 {
    let b = b & 0xFFFF_FFFF;
    if b >= ty.bits() as u64 {
        0
    } else {
        (a << b) & mask(ty)
    }
}

/// Shift right, arithmetic for signed types; amounts past the width saturate.
pub fn shr(ty: Ty, a: u64, b: u64) -> u64 {
    let (bits, b) = (ty.bits() as u64, b & 0xFFFF_FFFF);
    if ty.signed() {
        ((sext(a, bits as u32) >> b.min(bits - 1)) as u64) & mask(ty)
    } else if b >= bits {
        0
    } else {
        (a & mask(ty)) >> b
    }
}

/// Bit-field extract (`bfe`).
pub fn bfe(ty: Ty, a: u64, pos: u64, len: u64) -> u64 {
    let msb = ty.bits() as u64 - 1;
    let (pos, len) = (pos & 0xFF, len & 0xFF);
    let sbit = if !ty.signed() || len == 0 {
        0
    } else {
        (a >> (pos + len - 1).min(msb)) & 1
    };
    let mut d = 0u64;
    for i in 0..=msb {
        let bit = if i < len && pos + i <= msb {
            (a >> (pos + i)) & 1
        } else {
            sbit
        };
        d |= bit << i;
    }
    d
}

/// Bit-field insert (`bfi`): `a`'s low `len` bits into `b` at `pos`.
pub fn bfi(ty: Ty, a: u64, b: u64, pos: u64, len: u64) -> u64 {
    let msb = ty.bits() as u64 - 1;
    let (pos, len) = (pos & 0xFF, len & 0xFF);
    let mut d = b & mask(ty);
    for i in 0..len {
        if pos + i > msb {
            break;
        }
        d = (d & !(1 << (pos + i))) | (((a >> i) & 1) << (pos + i));
    }
    d
}

/// Byte permute (`prmt.b32`, default mode).
pub fn prmt(a: u64, b: u64, c: u64) -> u64 {
    let bytes = ((b & 0xFFFF_FFFF) << 32) | (a & 0xFFFF_FFFF);
    let mut d = 0u64;
    for i in 0..4 {
        let sel = (c >> (4 * i)) & 0xF;
        let byte = (bytes >> (8 * (sel & 7))) & 0xFF;
        let byte = if sel & 8 != 0 {
            if byte & 0x80 != 0 {
                0xFF
            } else {
                0
            }
        } else {
            byte
        };
        d |= byte << (8 * i);
    }
    d
}

/// `setp`'s comparison of `a` and `b` read as `ty`.
pub fn compare(cmp: Cmp, ty: Ty, a: u64, b: u64, f: FFlags) -> bool {
    if ty.float() {
        let (x, y) = if ty == Ty::F64 {
            (f64::from_bits(a), f64::from_bits(b))
        } else {
            let (x, y) = (f32::from_bits(a as u32), f32::from_bits(b as u32));
            let (x, y) = if f.has(FFlags::FTZ) {
                (ftz32(x), ftz32(y))
            } else {
                (x, y)
            };
            (x as f64, y as f64)
        };
        let un = x.is_nan() || y.is_nan();
        return match cmp {
            Cmp::Eq => !un && x == y,
            Cmp::Ne => !un && x != y,
            Cmp::Lt => !un && x < y,
            Cmp::Le => !un && x <= y,
            Cmp::Gt => !un && x > y,
            Cmp::Ge => !un && x >= y,
            Cmp::Equ => un || x == y,
            Cmp::Neu => un || x != y,
            Cmp::Ltu => un || x < y,
            Cmp::Leu => un || x <= y,
            Cmp::Gtu => un || x > y,
            Cmp::Geu => un || x >= y,
            Cmp::Num => !un,
            Cmp::Nan => un,
        };
    }
    let (x, y) = (wide(a, ty), wide(b, ty));
    match cmp {
        Cmp::Eq | Cmp::Equ => x == y,
        Cmp::Ne | Cmp::Neu => x != y,
        Cmp::Lt | Cmp::Ltu => x < y,
        Cmp::Le | Cmp::Leu => x <= y,
        Cmp::Gt | Cmp::Gtu => x > y,
        Cmp::Ge | Cmp::Geu => x >= y,
        Cmp::Num => true,
        Cmp::Nan => false,
    }
}

/// A float (f32/f64 bits) rounded to an integral float value per `.rni/.rzi/.rmi/.rpi`.
fn round_integral(x: f64, r: Rnd) -> f64 {
    match r {
        Rnd::Rzi => x.trunc(),
        Rnd::Rmi => x.floor(),
        Rnd::Rpi => x.ceil(),
        _ => x.round_ties_even(),
    }
}

/// Saturating float → integer conversion (NaN → 0).
fn float_to_int(x: f64, dst: Ty, r: Rnd) -> u64 {
    if x.is_nan() {
        return 0;
    }
    let v = round_integral(x, r);
    if dst.signed() {
        let lo = sext(1u64 << (dst.bits() - 1), dst.bits()) as f64;
        let hi = -lo - 1.0;
        (v.clamp(lo, hi) as i64 as u64) & mask(dst)
    } else {
        v.clamp(0.0, mask(dst) as f64) as u64
    }
}

/// Integer → f32 with rounding `r` (exact for |v| < 2^24).
fn int_to_f32(v: i128, r: Rnd) -> f32 {
    let f = v as f32;
    let back = f as i128;
    match r {
        Rnd::Rz if back.abs() > v.abs() => {
            if f > 0.0 {
                f.next_down()
            } else {
                f.next_up()
            }
        }
        Rnd::Rm if back > v => f.next_down(),
        Rnd::Rp if back < v => f.next_up(),
        _ => f,
    }
}

/// `cvt.rnd.sat.ftz.dst.src`.
pub fn cvt(dst: Ty, src: Ty, r: Rnd, f: FFlags, a: u64) -> Result<u64, String> {
    if dst == Ty::F16 || src == Ty::F16 {
        return Err("f16 conversions are not implemented".into());
    }
    let out = match (dst.float(), src.float()) {
        (false, false) => {
            let v = wide(a, src);
            if f.has(FFlags::SAT) {
                let (lo, hi) = if dst.signed() {
                    (
                        sext(1u64 << (dst.bits() - 1), dst.bits()) as i128,
                        (mask(dst) >> 1) as i128,
                    )
                } else {
                    (0, mask(dst) as i128)
                };
                v.clamp(lo, hi) as u64 & mask(dst)
            } else {
                v as u64 & mask(dst)
            }
        }
        (false, true) => {
            let x = if src == Ty::F64 {
                f64::from_bits(a)
            } else {
                let x = f32::from_bits(a as u32);
                (if f.has(FFlags::FTZ) { ftz32(x) } else { x }) as f64
            };
            float_to_int(x, dst, r)
        }
        (true, false) => {
            let v = wide(a, src);
            if dst == Ty::F64 {
                (v as f64).to_bits()
            } else {
                int_to_f32(v, r).to_bits() as u64
            }
        }
        (true, true) => float_to_float(dst, src, r, f, a),
    };
    Ok(out)
}

fn float_to_float(dst: Ty, src: Ty, r: Rnd, f: FFlags, a: u64) -> u64 {
    let x = if src == Ty::F64 {
        f64::from_bits(a)
    } else {
        let x = f32::from_bits(a as u32);
        (if f.has(FFlags::FTZ) { ftz32(x) } else { x }) as f64
    };
    let x = match r {
        Rnd::Rni | Rnd::Rzi | Rnd::Rmi | Rnd::Rpi => round_integral(x, r),
        _ => x,
    };
    let x = if f.has(FFlags::SAT) {
        if x.is_nan() {
            0.0
        } else {
            x.clamp(0.0, 1.0)
        }
    } else {
        x
    };
    if dst == Ty::F64 {
        return x.to_bits();
    }
    let y = match r {
        Rnd::Rz | Rnd::Rm | Rnd::Rp => round_f32(x, 0.0, r),
        _ => x as f32,
    };
    let y = if f.has(FFlags::FTZ) { ftz32(y) } else { y };
    if y.is_nan() {
        CANONICAL_NAN32 as u64
    } else {
        y.to_bits() as u64
    }
}

/// The new value of an atomic operation on `old` with operands `b` (and `c` for `cas`).
pub fn atom_new(op: AtomOp, ty: Ty, old: u64, b: u64, c: u64) -> u64 {
    let m = mask(ty);
    match (op, ty) {
        (AtomOp::Add, Ty::F32) => {
            let s = ftz32(ftz32(f32::from_bits(old as u32)) + ftz32(f32::from_bits(b as u32)));
            s.to_bits() as u64
        }
        (AtomOp::Add, Ty::F64) => (f64::from_bits(old) + f64::from_bits(b)).to_bits(),
        (AtomOp::Add, _) => old.wrapping_add(b) & m,
        (AtomOp::Min, Ty::F32 | Ty::F64) => super::float::minmax(ty, old, b, false, FFlags(0)),
        (AtomOp::Max, Ty::F32 | Ty::F64) => super::float::minmax(ty, old, b, true, FFlags(0)),
        (AtomOp::Min, _) => minmax(ty, old, b, false),
        (AtomOp::Max, _) => minmax(ty, old, b, true),
        (AtomOp::And, _) => old & b & m,
        (AtomOp::Or, _) => (old | b) & m,
        (AtomOp::Xor, _) => (old ^ b) & m,
        (AtomOp::Exch, _) => b & m,
        (AtomOp::Cas, _) => {
            if old & m == b & m {
                c & m
            } else {
                old
            }
        }
        (AtomOp::Inc, _) => {
            if old & m >= b & m {
                0
            } else {
                (old + 1) & m
            }
        }
        (AtomOp::Dec, _) => {
            if old & m == 0 || old & m > b & m {
                b & m
            } else {
                (old - 1) & m
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_ops() {
        assert_eq!(
            mul(Ty::S32, MulMode::Wide, (-3i32) as u32 as u64, 5),
            (-15i64) as u64
        );
        assert_eq!(
            mul(Ty::U32, MulMode::Hi, 0xFFFF_FFFF, 0xFFFF_FFFF),
            0xFFFF_FFFE
        );
        assert_eq!(
            div(Ty::S32, (-7i32) as u32 as u64, 2),
            (-3i32) as u32 as u64
        );
        assert_eq!(rem(Ty::S64, (-7i64) as u64, 2), (-1i64) as u64);
        assert_eq!(shr(Ty::S32, 0x8000_0000, 40), 0xFFFF_FFFF);
        assert_eq!(shr(Ty::U32, 0x8000_0000, 31), 1);
        assert_eq!(shl(Ty::B32, 1, 32), 0);
        assert_eq!(bfi(Ty::B32, 0b101, 0, 6, 26), 0b101 << 6);
        assert_eq!(bfe(Ty::S32, 0xF0, 4, 4), 0xFFFF_FFFF);
        assert_eq!(bfe(Ty::U32, 0xF0, 4, 4), 0xF);
        assert_eq!(prmt(0x4433_2211, 0x8877_6655, 0x3210), 0x4433_2211);
        assert!(compare(Cmp::Lt, Ty::S32, 0xFFFF_FFFF, 0, FFlags(0)));
        assert!(!compare(Cmp::Lt, Ty::U32, 0xFFFF_FFFF, 0, FFlags(0)));
    }

    #[test]
    fn conversions() {
        let f = |x: f32| x.to_bits() as u64;
        let ff = FFlags(0);
        assert_eq!(
            cvt(Ty::S32, Ty::F32, Rnd::Rzi, ff, f(-2.7)).unwrap(),
            (-2i32) as u32 as u64
        );
        assert_eq!(
            cvt(Ty::S32, Ty::F32, Rnd::Rzi, ff, f(3e10)).unwrap(),
            i32::MAX as u64
        );
        assert_eq!(cvt(Ty::S32, Ty::F32, Rnd::Rzi, ff, f(f32::NAN)).unwrap(), 0);
        assert_eq!(
            cvt(Ty::F32, Ty::F32, Rnd::Rmi, ff, f(-2.5)).unwrap(),
            f(-3.0)
        );
        assert_eq!(cvt(Ty::F32, Ty::F32, Rnd::Rni, ff, f(2.5)).unwrap(), f(2.0));
        assert_eq!(
            cvt(Ty::F32, Ty::F32, Rnd::None, FFlags(FFlags::SAT), f(1.5)).unwrap(),
            f(1.0)
        );
        assert_eq!(
            cvt(
                Ty::F32,
                Ty::F32,
                Rnd::None,
                FFlags(FFlags::SAT),
                f(f32::NAN)
            )
            .unwrap(),
            0
        );
        assert_eq!(
            cvt(Ty::S64, Ty::S32, Rnd::None, ff, 0xFFFF_FFFF).unwrap(),
            u64::MAX
        );
        assert_eq!(
            cvt(Ty::U32, Ty::U64, Rnd::None, ff, 0x1_0000_0005).unwrap(),
            5
        );
        let big = (1u64 << 24) + 1;
        assert_eq!(
            cvt(Ty::F32, Ty::U64, Rnd::Rp, ff, big).unwrap(),
            f(16_777_218.0)
        );
        assert_eq!(
            cvt(Ty::F32, Ty::U64, Rnd::Rz, ff, big).unwrap(),
            f(16_777_216.0)
        );
        assert_eq!(
            cvt(Ty::F32, Ty::S32, Rnd::Rn, ff, (-5i32) as u32 as u64).unwrap(),
            f(-5.0)
        );
    }
}
