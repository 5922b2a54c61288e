//! Broadcasting of shapes, as NumPy and PyTorch do it: dimensions are aligned
//! from the right and a dimension of size 1 stretches to the other's size.

use super::shape::{Shape, MAX_RANK};
use crate::error::{Error, Result};

/// The shape two operands broadcast to, or an error naming both.
pub fn broadcast_shapes(op: &'static str, a: &Shape, b: &Shape) -> Result<Shape> {
    let rank = a.rank().max(b.rank());
    let (pa, pb) = (a.padded4(), b.padded4());
    let mut out = [1; MAX_RANK];
    for i in 0..MAX_RANK {
        out[i] = match (pa[i], pb[i]) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(Error::shape(
                    op,
                    format!("shapes {a:?} and {b:?} do not broadcast"),
                ))
            }
        };
    }
    Shape::new(&out[MAX_RANK - rank..])
}

/// Strides (in elements) for reading a tensor of shape `src` as if it had the
/// broadcast shape `dst` (rank-4 padded): 0 where `src` is stretched.
pub fn broadcast_strides(src: &Shape, dst: &Shape) -> [usize; MAX_RANK] {
    let ps = src.padded4();
    let pd = dst.padded4();
    let mut strides = [0; MAX_RANK];
    let mut acc = 1;
    for i in (0..MAX_RANK).rev() {
        strides[i] = if ps[i] == 1 && pd[i] != 1 { 0 } else { acc };
        acc *= ps[i];
    }
    strides
}

/// Copies `data` of shape `src` into a new buffer of the broadcast shape `dst`.
pub fn expand(data: &[f32], src: &Shape, dst: &Shape) -> Vec<f32> {
    if src.numel() == dst.numel() {
        return data.to_vec();
    }
    let d = dst.padded4();
    let s = broadcast_strides(src, dst);
    let mut out = Vec::with_capacity(dst.numel());
    for i0 in 0..d[0] {
        for i1 in 0..d[1] {
            for i2 in 0..d[2] {
                let base = i0 * s[0] + i1 * s[1] + i2 * s[2];
                for i3 in 0..d[3] {
                    out.push(data[base + i3 * s[3]]);
                }
            }
        }
    }
    out
}

/// Sums `data` of the broadcast shape `big` down to `small`, the reverse of
/// [`expand`]: the gradient of a broadcast operand.
pub fn reduce_sum_to(data: &[f32], big: &Shape, small: &Shape) -> Vec<f32> {
    if big.numel() == small.numel() {
        return data.to_vec();
    }
    let d = big.padded4();
    let s = broadcast_strides(small, big);
    let mut out = vec![0.0f32; small.numel()];
    let mut k = 0;
    for i0 in 0..d[0] {
        for i1 in 0..d[1] {
            for i2 in 0..d[2] {
                let base = i0 * s[0] + i1 * s[1] + i2 * s[2];
                for i3 in 0..d[3] {
                    out[base + i3 * s[3]] += data[k];
                    k += 1;
                }
            }
        }
    }
    out
}
