//! Data movement kernels: permute, and copies of blocks along one axis.

use crate::tensor::Shape;

/// The values of `x` (shape `s`) with axes reordered: output axis i is input axis `perm[i]`.
pub fn permute(x: &[f32], s: &Shape, perm: &[usize]) -> Vec<f32> {
    let rank = s.rank();
    let in_strides = s.strides();
    let mut dims = [1usize; 4];
    let mut strides = [0usize; 4];
    for (i, &p) in perm.iter().enumerate() {
        dims[4 - rank + i] = s.dim(p);
        strides[4 - rank + i] = in_strides[p];
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
