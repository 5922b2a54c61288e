//! Elementwise kernels: maps over one tensor, zips over two with broadcasting.

use super::uninit::build_chunked;
use crate::tensor::{broadcast_strides, Shape};
use std::mem::MaybeUninit;

/// Values per parallel task; inputs shorter than two tasks run on the
/// calling thread. Each value is computed on its own, so the split never
/// changes a result.
const PAR_CHUNK: usize = 1 << 15;

/// A vector of `n` values written by `fill(start, out)` over consecutive
/// chunks `out` of the output starting at index `start`, in parallel for
/// long outputs. `fill` must write every value of each chunk it is given.
fn build(n: usize, fill: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync) -> Vec<f32> {
    build_chunked(n, PAR_CHUNK, fill)
}

/// Runs `body` from an AVX2 build when the CPU has AVX2 (same operations,
/// more lanes; see [`crate::cpu::simd`]).
#[inline(always)]
fn with_avx2<R>(body: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        unsafe fn avx2<R>(body: impl FnOnce() -> R) -> R {
            body()
        }
        if super::simd::has_avx2() {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { avx2(body) };
        }
    }
    body()
}

/// `f` applied to every value.
pub fn map(x: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    build(x.len(), |start, out| {
        let x = &x[start..start + out.len()];
        with_avx2(
            #[inline(always)]
            || {
                for (o, &v) in out.iter_mut().zip(x) {
                    o.write(f(v));
                }
            },
        )
    })
}

/// `f` applied to pairs of values of two equally long slices.
pub fn zip(x: &[f32], y: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    assert_eq!(x.len(), y.len(), "zip of slices of different lengths");
    build(x.len(), |start, out| {
        let end = start + out.len();
        let (x, y) = (&x[start..end], &y[start..end]);
        with_avx2(
            #[inline(always)]
            || {
                for ((o, &a), &b) in out.iter_mut().zip(x).zip(y) {
                    o.write(f(a, b));
                }
            },
        )
    })
}

/// `f` applied to three equally long slices.
pub fn zip3(x: &[f32], y: &[f32], z: &[f32], f: impl Fn(f32, f32, f32) -> f32 + Sync) -> Vec<f32> {
    assert!(
        x.len() == y.len() && x.len() == z.len(),
        "zip3 of slices of different lengths"
    );
    build(x.len(), |start, out| {
        let end = start + out.len();
        let (x, y, z) = (&x[start..end], &y[start..end], &z[start..end]);
        with_avx2(
            #[inline(always)]
            || {
                for (((o, &a), &b), &c) in out.iter_mut().zip(x).zip(y).zip(z) {
                    o.write(f(a, b, c));
                }
            },
        )
    })
}

/// `f(x, y)` where `x` of shape `xs` and `y` of shape `ys` are read as the
/// broadcast shape `out`.
pub fn zip_broadcast(
    x: &[f32],
    xs: &Shape,
    y: &[f32],
    ys: &Shape,
    out: &Shape,
    f: impl Fn(f32, f32) -> f32 + Sync,
) -> Vec<f32> {
    if xs == out && ys == out {
        return zip(x, y, f);
    }
    let d = out.padded4();
    let sx = broadcast_strides(xs, out);
    let sy = broadcast_strides(ys, out);
    let mut res = Vec::with_capacity(out.numel());
    for i0 in 0..d[0] {
        for i1 in 0..d[1] {
            for i2 in 0..d[2] {
                let bx = i0 * sx[0] + i1 * sx[1] + i2 * sx[2];
                let by = i0 * sy[0] + i1 * sy[1] + i2 * sy[2];
                for i3 in 0..d[3] {
                    res.push(f(x[bx + i3 * sx[3]], y[by + i3 * sy[3]]));
                }
            }
        }
    }
    res
}

/// The logistic function 1 / (1 + e^-x), computed without overflow.
#[inline]
pub fn logistic(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// A function of one value, as the ops of `ops::unary` (`neg` is `Scale(-1)`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unary {
    /// `x * s`.
    Scale(f32),
    /// `x + s`.
    AddScalar(f32),
    /// `e^x`.
    Exp,
    /// `ln x`.
    Log,
    /// `max(x, 0)`, gradient 0 at 0.
    Relu,
    /// The logistic sigmoid.
    Sigmoid,
    /// `tanh x`.
    Tanh,
    /// `x²`.
    Square,
    /// `√x`.
    Sqrt,
    /// `|x|`, gradient 0 at 0.
    Abs,
    /// `x^p`.
    Pow(f32),
}
