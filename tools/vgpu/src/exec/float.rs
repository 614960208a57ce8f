//! IEEE single/double arithmetic with PTX's rounding modifiers.
//!
//! `.rn` uses the host's correctly rounded operations (`f32::mul_add` is a correctly rounded
//! fused multiply-add). The directed modes (`.rz`, `.rm`, `.rp`) compute the exact result as
//! an unevaluated f64 sum `hi + lo` (error-free transformations) and round that once.
//! `.approx` math (`ex2`, `lg2`, `sin`, `cos`, `rsqrt`, `tanh`, `div.approx`, `rcp.approx`)
//! is computed with the host's correctly rounded or libm function: the hardware is allowed an
//! error of a few ulp there, the interpreter is at least that accurate. `.ftz` flushes
//! subnormal inputs and results to signed zero; NaN results are the canonical 0x7FFFFFFF.

use crate::ptx::inst::{FFlags, Rnd, Ty, Unary};

/// The canonical NaN the GPU produces.
pub const CANONICAL_NAN32: u32 = 0x7FFF_FFFF;

/// Flushes a subnormal to a signed zero.
#[inline]
pub fn ftz32(x: f32) -> f32 {
    if x.is_subnormal() {
        f32::from_bits(x.to_bits() & 0x8000_0000)
    } else {
        x
    }
}

/// Rounds the exact value `hi + lo` (|lo| at most half an ulp of `hi`) to f32 in `mode`.
pub fn round_f32(hi: f64, lo: f64, mode: Rnd) -> f32 {
    let r = hi as f32;
    if !hi.is_finite() {
        return r;
    }
    if r.is_infinite() {
        // Overflow: directed modes stop at the largest finite value on their side.
        let max = f32::MAX.copysign(r);
        return match mode {
            Rnd::Rz => max,
            Rnd::Rm if r > 0.0 => max,
            Rnd::Rp if r < 0.0 => max,
            _ => r,
        };
    }
    let d0 = hi - r as f64; // exact
                            // The sign of (exact - r): adding `lo` rounds, but never changes the sign of the sum.
    let d = d0 + lo;
    if d == 0.0 {
        return r;
    }
    match mode {
        Rnd::Rz if (d > 0.0) != (r > 0.0) && r != 0.0 => {
            if r > 0.0 {
                r.next_down()
            } else {
                r.next_up()
            }
        }
        Rnd::Rm if d < 0.0 => r.next_down(),
        Rnd::Rp if d > 0.0 => r.next_up(),
        Rnd::Rn | Rnd::None if d0 != 0.0 && lo != 0.0 => {
            // `hi as f32` is wrong only when `hi` is an exact tie and `lo` breaks it away.
            let next = if d0 > 0.0 { r.next_up() } else { r.next_down() };
            let tie = d0.abs() * 2.0 == (next as f64 - r as f64).abs();
            if tie && (lo > 0.0) == (d0 > 0.0) {
                next
            } else {
                r
            }
        }
        _ => r,
    }
}

/// `a * b + c` rounded once, with the host's FMA instruction when it has one.
#[inline]
fn fma_rn32(a: f32, b: f32, c: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "fma")]
        fn hw(a: f32, b: f32, c: f32) -> f32 {
            a.mul_add(b, c)
        }
        if std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports FMA (checked just above).
            return unsafe { hw(a, b, c) };
        }
    }
    a.mul_add(b, c)
}

/// Exact sum of two f64 as `(s, err)` (Knuth's two-sum).
#[inline]
fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    let err = (a - (s - bb)) + (b - bb);
    (s, if s.is_finite() { err } else { 0.0 })
}

fn canon32(x: f32) -> u64 {
    if x.is_nan() {
        CANONICAL_NAN32 as u64
    } else {
        x.to_bits() as u64
    }
}

fn finish32(x: f32, f: FFlags) -> u64 {
    let mut x = if f.has(FFlags::FTZ) { ftz32(x) } else { x };
    if f.has(FFlags::SAT) {
        x = if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) };
    }
    canon32(x)
}

fn inputs32(a: u64, b: u64, f: FFlags) -> (f32, f32) {
    let (a, b) = (f32::from_bits(a as u32), f32::from_bits(b as u32));
    if f.has(FFlags::FTZ) {
        (ftz32(a), ftz32(b))
    } else {
        (a, b)
    }
}

/// Whether `mode` asks for directed rounding.
fn directed(mode: Rnd) -> bool {
    matches!(mode, Rnd::Rz | Rnd::Rm | Rnd::Rp)
}

/// `add` / `sub` (`neg_b`) of f32 or f64 bit patterns.
pub fn add(ty: Ty, a: u64, b: u64, neg_b: bool, mode: Rnd, f: FFlags) -> Result<u64, String> {
    if ty == Ty::F64 {
        let (x, y) = (f64::from_bits(a), f64::from_bits(b));
        let y = if neg_b { -y } else { y };
        no_directed64(mode)?;
        return Ok((x + y).to_bits());
    }
    let (x, y) = inputs32(a, b, f);
    let y = if neg_b { -y } else { y };
    let r = if directed(mode) {
        let (s, e) = two_sum(x as f64, y as f64);
        let r = round_f32(s, e, mode);
        if r == 0.0 && s == 0.0 && e == 0.0 && x != 0.0 && mode == Rnd::Rm {
            -0.0
        } else {
            r
        }
    } else {
        x + y
    };
    Ok(finish32(r, f))
}

/// `mul` of f32 or f64 bit patterns.
pub fn mul(ty: Ty, a: u64, b: u64, mode: Rnd, f: FFlags) -> Result<u64, String> {
    if ty == Ty::F64 {
        no_directed64(mode)?;
        return Ok((f64::from_bits(a) * f64::from_bits(b)).to_bits());
    }
    let (x, y) = inputs32(a, b, f);
    let r = if directed(mode) {
        round_f32(x as f64 * y as f64, 0.0, mode)
    } else {
        x * y
    };
    Ok(finish32(r, f))
}

/// `fma` / `mad.f32`: a * b + c with one rounding.
pub fn fma(ty: Ty, a: u64, b: u64, c: u64, mode: Rnd, f: FFlags) -> Result<u64, String> {
    if ty == Ty::F64 {
        no_directed64(mode)?;
        return Ok(f64::from_bits(a)
            .mul_add(f64::from_bits(b), f64::from_bits(c))
            .to_bits());
    }
    let (x, y) = inputs32(a, b, f);
    let z = f32::from_bits(c as u32);
    let z = if f.has(FFlags::FTZ) { ftz32(z) } else { z };
    let r = if directed(mode) {
        // The product of two f32 is exact in f64; two-sum makes the addition exact.
        let p = x as f64 * y as f64;
        let (s, e) = two_sum(p, z as f64);
        let r = round_f32(s, e, mode);
        if r == 0.0 && s == 0.0 && e == 0.0 && mode == Rnd::Rm && (p != 0.0 || z != 0.0) {
            -0.0
        } else {
            r
        }
    } else {
        fma_rn32(x, y, z)
    };
    Ok(finish32(r, f))
}

/// `div`: `.rn` / directed are exact IEEE division; `.approx` / `.full` use the same.
pub fn div(ty: Ty, a: u64, b: u64, mode: Rnd, f: FFlags) -> Result<u64, String> {
    if ty == Ty::F64 {
        no_directed64(mode)?;
        return Ok((f64::from_bits(a) / f64::from_bits(b)).to_bits());
    }
    let (x, y) = inputs32(a, b, f);
    let r = if directed(mode) {
        let q = x as f64 / y as f64;
        // Sign of (q * y - x) tells on which side of q the exact quotient lies.
        let rem = q.mul_add(y as f64, -(x as f64));
        let lo = if rem == 0.0 || !q.is_finite() {
            0.0
        } else {
            -rem.signum() * (y as f64).signum() * f64::MIN_POSITIVE
        };
        round_f32(q, lo, mode)
    } else {
        x / y
    };
    Ok(finish32(r, f))
}

/// `min` / `max` (`is_max`): a NaN operand yields the other one (both NaN: NaN), unless `.NaN`
/// asks for NaN propagation; -0 is below +0.
pub fn minmax(ty: Ty, a: u64, b: u64, is_max: bool, f: FFlags) -> u64 {
    let pick = |x: f64, y: f64| -> bool {
        // true: take x
        if x == y {
            (x.is_sign_negative() && !is_max) || (x.is_sign_positive() && is_max)
        } else {
            (x > y) == is_max
        }
    };
    if ty == Ty::F64 {
        let (x, y) = (f64::from_bits(a), f64::from_bits(b));
        let r = match (x.is_nan(), y.is_nan()) {
            (true, true) => f64::NAN,
            (true, false) | (false, true) if f.has(FFlags::NAN) => f64::NAN,
            (true, false) => y,
            (false, true) => x,
            _ if pick(x, y) => x,
            _ => y,
        };
        return r.to_bits();
    }
    let (x, y) = inputs32(a, b, f);
    let r = match (x.is_nan(), y.is_nan()) {
        (true, true) => f32::NAN,
        (true, false) | (false, true) if f.has(FFlags::NAN) => f32::NAN,
        (true, false) => y,
        (false, true) => x,
        _ if pick(x as f64, y as f64) => x,
        _ => y,
    };
    canon32(r)
}

fn no_directed64(mode: Rnd) -> Result<(), String> {
    if directed(mode) {
        Err("f64 arithmetic with directed rounding is not implemented".into())
    } else {
        Ok(())
    }
}

/// One-operand math (`rcp`, `sqrt`, `rsqrt`, `ex2`, `lg2`, `sin`, `cos`, `tanh`, `abs`,
/// `neg`).
pub fn unary(u: Unary, ty: Ty, a: u64, mode: Rnd, f: FFlags) -> Result<u64, String> {
    if ty == Ty::F64 {
        let x = f64::from_bits(a);
        if directed(mode) && !matches!(u, Unary::Abs | Unary::Neg) {
            return Err("f64 math with directed rounding is not implemented".into());
        }
        let r = match u {
            Unary::Rcp => 1.0 / x,
            Unary::Sqrt => x.sqrt(),
            Unary::Rsqrt => 1.0 / x.sqrt(),
            Unary::Ex2 => x.exp2(),
            Unary::Lg2 => x.log2(),
            Unary::Sin => x.sin(),
            Unary::Cos => x.cos(),
            Unary::Tanh => x.tanh(),
            Unary::Abs => x.abs(),
            Unary::Neg => -x,
        };
        return Ok(r.to_bits());
    }
    let x = f32::from_bits(a as u32);
    let x = if f.has(FFlags::FTZ) { ftz32(x) } else { x };
    let r = match u {
        Unary::Rcp if directed(mode) => return div(ty, 1f32.to_bits() as u64, a, mode, f),
        Unary::Rcp => 1.0 / x,
        Unary::Sqrt if directed(mode) => {
            let s = (x as f64).sqrt();
            let rem = s.mul_add(s, -(x as f64));
            let lo = if rem == 0.0 || !s.is_finite() {
                0.0
            } else {
                -rem.signum() * f64::MIN_POSITIVE
            };
            round_f32(s, lo, mode)
        }
        Unary::Sqrt => x.sqrt(),
        Unary::Rsqrt => (1.0 / (x as f64).sqrt()) as f32,
        Unary::Ex2 => x.exp2(),
        Unary::Lg2 => x.log2(),
        Unary::Sin => x.sin(),
        Unary::Cos => x.cos(),
        Unary::Tanh => x.tanh(),
        // abs/neg only change the sign bit (NaN payloads kept).
        Unary::Abs => return Ok(((a as u32) & 0x7FFF_FFFF) as u64),
        Unary::Neg => return Ok(((a as u32) ^ 0x8000_0000) as u64),
    };
    Ok(finish32(r, f))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(x: f32) -> u64 {
        x.to_bits() as u64
    }
    fn v(x: u64) -> f32 {
        f32::from_bits(x as u32)
    }

    #[test]
    fn directed_rounding_of_add_mul_fma() {
        let one = b(1.0);
        let tiny = b(f32::EPSILON / 4.0);
        let ff = FFlags::default();
        assert_eq!(v(add(Ty::F32, one, tiny, false, Rnd::Rn, ff).unwrap()), 1.0);
        assert_eq!(v(add(Ty::F32, one, tiny, false, Rnd::Rz, ff).unwrap()), 1.0);
        assert_eq!(v(add(Ty::F32, one, tiny, false, Rnd::Rm, ff).unwrap()), 1.0);
        assert_eq!(
            v(add(Ty::F32, one, tiny, false, Rnd::Rp, ff).unwrap()),
            1.0f32.next_up()
        );
        assert_eq!(
            v(add(Ty::F32, one, tiny, true, Rnd::Rm, ff).unwrap()),
            1.0f32.next_down()
        );
        assert_eq!(
            v(add(Ty::F32, one, tiny, true, Rnd::Rz, ff).unwrap()),
            1.0f32.next_down()
        );
        assert_eq!(v(add(Ty::F32, one, tiny, true, Rnd::Rp, ff).unwrap()), 1.0);
        let third = b(1.0 / 3.0);
        let three = b(3.0);
        let lo = v(mul(Ty::F32, third, three, Rnd::Rm, ff).unwrap());
        let hi = v(mul(Ty::F32, third, three, Rnd::Rp, ff).unwrap());
        assert!(lo < hi && lo.next_up() == hi);
        let m = v(fma(Ty::F32, third, three, b(-1.0), Rnd::Rm, ff).unwrap());
        assert_eq!(m, ((1.0f32 / 3.0) as f64 * 3.0 - 1.0) as f32);
        assert_eq!(
            v(fma(Ty::F32, b(2.0), b(3.0), b(1.0), Rnd::Rn, ff).unwrap()),
            7.0
        );
    }

    #[test]
    fn division_and_sqrt_directed() {
        let ff = FFlags::default();
        let lo = v(div(Ty::F32, b(1.0), b(3.0), Rnd::Rm, ff).unwrap());
        let hi = v(div(Ty::F32, b(1.0), b(3.0), Rnd::Rp, ff).unwrap());
        assert!(lo < hi && lo.next_up() == hi);
        assert_eq!(v(div(Ty::F32, b(1.0), b(4.0), Rnd::Rp, ff).unwrap()), 0.25);
        let s = v(unary(Unary::Sqrt, Ty::F32, b(2.0), Rnd::Rz, ff).unwrap());
        assert!((s as f64) < 2f64.sqrt() && (s.next_up() as f64) > 2f64.sqrt());
    }

    #[test]
    fn ftz_sat_nan_minmax() {
        let sub = b(f32::from_bits(1));
        let ftz = FFlags(FFlags::FTZ);
        assert_eq!(
            v(add(Ty::F32, sub, b(0.0), false, Rnd::Rn, ftz).unwrap()),
            0.0
        );
        assert_eq!(
            v(add(Ty::F32, sub, b(0.0), false, Rnd::Rn, FFlags(0)).unwrap()).to_bits(),
            1
        );
        let sat = FFlags(FFlags::SAT);
        assert_eq!(
            v(add(Ty::F32, b(0.75), b(0.5), false, Rnd::Rn, sat).unwrap()),
            1.0
        );
        let nan = add(
            Ty::F32,
            b(f32::INFINITY),
            b(f32::INFINITY),
            true,
            Rnd::Rn,
            FFlags(0),
        )
        .unwrap();
        assert_eq!(nan as u32, CANONICAL_NAN32);
        assert_eq!(
            v(minmax(Ty::F32, b(f32::NAN), b(2.0), true, FFlags(0))),
            2.0
        );
        assert!(v(minmax(Ty::F32, b(-0.0), b(0.0), true, FFlags(0))).is_sign_positive());
        assert!(v(minmax(Ty::F32, b(0.0), b(-0.0), false, FFlags(0))).is_sign_negative());
    }
}
