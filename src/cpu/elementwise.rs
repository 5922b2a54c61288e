//! Elementwise kernels: maps over one tensor, zips over two with broadcasting.

use crate::tensor::{broadcast_strides, Shape};
use rayon::prelude::*;

/// Below this many elements a map runs on the calling thread.
const PAR_MIN: usize = 1 << 15;

/// `f` applied to every value.
pub fn map(x: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    if x.len() < PAR_MIN {
        x.iter().map(|&v| f(v)).collect()
    } else {
        x.par_iter().map(|&v| f(v)).collect()
    }
}

/// `f` applied to pairs of values of two equally long slices.
pub fn zip(x: &[f32], y: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    debug_assert_eq!(x.len(), y.len());
    if x.len() < PAR_MIN {
        x.iter().zip(y).map(|(&a, &b)| f(a, b)).collect()
    } else {
        x.par_iter().zip(y).map(|(&a, &b)| f(a, b)).collect()
    }
}

/// `f` applied to three equally long slices.
pub fn zip3(x: &[f32], y: &[f32], z: &[f32], f: impl Fn(f32, f32, f32) -> f32) -> Vec<f32> {
    x.iter()
        .zip(y)
        .zip(z)
        .map(|((&a, &b), &c)| f(a, b, c))
        .collect()
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
