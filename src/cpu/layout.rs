//! Data movement kernels: permute, and copies of blocks along one axis.

use super::gemm::{transpose_to_slots, MatRef};
use super::uninit::vec_written_by;
use crate::tensor::Shape;
use std::mem::MaybeUninit;

/// The values of `x` (shape `s`) with axes reordered: output axis i is input axis `perm[i]`.
pub fn permute(x: &[f32], s: &Shape, perm: &[usize]) -> Vec<f32> {
    let axes = merged_axes(s, perm);
    let mut dims = [1usize; 4];
    let mut strides = [0usize; 4];
    for (i, &(d, st)) in axes.iter().enumerate() {
        dims[4 - axes.len() + i] = d;
        strides[4 - axes.len() + i] = st;
    }
    if dims.contains(&0) {
        return Vec::new();
    }
    if strides[3] != 1 {
        if let Some(a) = (0..3).find(|&a| strides[a] == 1) {
            return by_transposes(x, dims, strides, a);
        }
    }
    let mut out = Vec::with_capacity(x.len());
    for i0 in 0..dims[0] {
        for i1 in 0..dims[1] {
            for i2 in 0..dims[2] {
                let base = i0 * strides[0] + i1 * strides[1] + i2 * strides[2];
                if strides[3] == 1 {
                    out.extend_from_slice(&x[base..base + dims[3]]);
                } else {
                    out.extend((0..dims[3]).map(|i3| x[base + i3 * strides[3]]));
                }
            }
        }
    }
    out
}

/// The output axes of a permutation as (size, input stride), without axes
/// of size 1 and with neighbours that are neighbours in the input too made
/// one axis: (N, C, H, T) → (T, N, C, H) at N = 1 is the transpose of a
/// (C·H, T) matrix.
fn merged_axes(s: &Shape, perm: &[usize]) -> Vec<(usize, usize)> {
    let in_strides = s.strides();
    let mut axes: Vec<(usize, usize)> = Vec::with_capacity(perm.len());
    for &p in perm {
        let (d, st) = (s.dim(p), in_strides[p]);
        if d == 1 {
            continue;
        }
        match axes.last_mut() {
            Some(last) if last.1 == st * d => *last = (last.0 * d, st),
            _ => axes.push((d, st)),
        }
    }
    axes
}

/// [`permute`] when the last output axis is not contiguous in the input
/// but output axis `a` is: for each index of the other two axes, the
/// (dims\[a\], dims\[3\]) matrix they leave is a transpose (8 x 8 blocks).
fn by_transposes(x: &[f32], dims: [usize; 4], strides: [usize; 4], a: usize) -> Vec<f32> {
    let out_strides = [dims[1] * dims[2] * dims[3], dims[2] * dims[3], dims[3], 1];
    let fill = |out: &mut [MaybeUninit<f32>]| {
        let [u, v] = match a {
            0 => [1, 2],
            1 => [0, 2],
            _ => [0, 1],
        };
        for iu in 0..dims[u] {
            for iv in 0..dims[v] {
                let base = iu * strides[u] + iv * strides[v];
                let last = base + (dims[a] - 1) + (dims[3] - 1) * strides[3];
                let block = MatRef {
                    data: &x[base..=last],
                    rows: dims[a],
                    cols: dims[3],
                    rs: 1,
                    cs: strides[3],
                };
                let at = iu * out_strides[u] + iv * out_strides[v];
                transpose_to_slots(block, &mut out[at..], out_strides[a]);
            }
        }
    };
    // SAFETY: the blocks, one per index of axes u and v, each (dims[a],
    // dims[3]) at output strides (out_strides[a], 1), tile the output.
    unsafe { vec_written_by(dims.iter().product(), fill) }
}

/// The inverse of a permutation.
pub fn inverse_permutation(perm: &[usize]) -> Vec<usize> {
    let mut inv = vec![0; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inv[p] = i;
    }
    inv
}

/// Splits a shape around `axis` into (outer count, axis size, inner count).
pub fn around_axis(s: &Shape, axis: usize) -> (usize, usize, usize) {
    let d = s.dims();
    (
        d[..axis].iter().product(),
        d[axis],
        d[axis + 1..].iter().product(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Output element by element from the definition.
    fn naive(x: &[f32], s: &Shape, perm: &[usize]) -> Vec<f32> {
        let dims: Vec<usize> = perm.iter().map(|&p| s.dim(p)).collect();
        let strides = s.strides();
        let mut out = Vec::new();
        let mut idx = vec![0usize; dims.len()];
        for _ in 0..x.len() {
            out.push(
                x[idx
                    .iter()
                    .zip(perm)
                    .map(|(&i, &p)| i * strides[p])
                    .sum::<usize>()],
            );
            for k in (0..idx.len()).rev() {
                idx[k] += 1;
                if idx[k] < dims[k] {
                    break;
                }
                idx[k] = 0;
            }
        }
        out
    }

    #[test]
    fn permute_matches_the_definition() {
        let shapes: [&[usize]; 7] = [
            &[1, 32, 4, 32],
            &[3, 9, 2, 17],
            &[2, 16, 8],
            &[5, 1, 24],
            &[19, 13],
            &[1, 1, 1, 1],
            &[4, 0, 3],
        ];
        for dims in shapes {
            let s = Shape::new(dims).unwrap();
            let x: Vec<f32> = (0..s.numel()).map(|i| i as f32).collect();
            let mut perm: Vec<usize> = (0..dims.len()).collect();
            // Every permutation, by Heap's algorithm over indices.
            let mut c = vec![0usize; perm.len()];
            let mut i = 0;
            assert_eq!(
                permute(&x, &s, &perm),
                naive(&x, &s, &perm),
                "{dims:?} {perm:?}"
            );
            while i < perm.len() {
                if c[i] < i {
                    perm.swap(if i % 2 == 0 { 0 } else { c[i] }, i);
                    assert_eq!(
                        permute(&x, &s, &perm),
                        naive(&x, &s, &perm),
                        "{dims:?} {perm:?}"
                    );
                    c[i] += 1;
                    i = 0;
                } else {
                    c[i] = 0;
                    i += 1;
                }
            }
        }
    }
}
