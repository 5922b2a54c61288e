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
    if src.numel() == 1 {
        return vec![data[0]; dst.numel()];
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

/// The sum of `data` in 16 interleaved partial sums (which the compiler
/// keeps in vector registers), added up in a fixed order at the end.
fn sum_lanes(data: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0.0f32; LANES];
    let chunks = data.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (a, v) in acc.iter_mut().zip(chunk) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Sums `data` of the broadcast shape `big` down to `small`, the reverse of
/// [`expand`]: the gradient of a broadcast operand.
pub fn reduce_sum_to(data: &[f32], big: &Shape, small: &Shape) -> Vec<f32> {
    if big.numel() == small.numel() {
        return data.to_vec();
    }
    if small.numel() == 1 {
        return vec![sum_lanes(data)];
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

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(dims: &[usize]) -> Shape {
        Shape::new(dims).unwrap()
    }

    #[test]
    fn summing_to_one_value_matches_the_exact_sum() {
        for len in [1, 15, 16, 17, 100, 4099] {
            let data: Vec<f32> = (0..len)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
                .collect();
            let exact: f64 = data.iter().map(|&v| v as f64).sum();
            let got = reduce_sum_to(&data, &shape(&[len]), &shape(&[1]));
            assert_eq!(got.len(), 1);
            assert!(
                (got[0] as f64 - exact).abs() < 1e-3,
                "{len}: {} vs {exact}",
                got[0]
            );
        }
    }

    #[test]
    fn expanding_one_value_fills_the_shape() {
        assert_eq!(expand(&[2.5], &shape(&[1]), &shape(&[2, 3])), vec![2.5; 6]);
        assert_eq!(
            expand(&[1.0, 2.0], &shape(&[2, 1]), &shape(&[2, 2])),
            vec![1.0, 1.0, 2.0, 2.0]
        );
    }
}
