//! AVX-512 kernels of the Winograd transforms: 16 tiles per vector.

use super::LANES;
use std::arch::x86_64::*;
use std::ops::Range;

/// The first `n` lanes (all from 16 on).
fn mask(n: usize) -> __mmask16 {
    if n >= LANES {
        0xffff
    } else {
        ((1u32 << n) - 1) as __mmask16
    }
}

/// Deinterleaves whole blocks of 32 values; returns the pairs done.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn deinterleave(x: &[f32], a: &mut [f32], b: &mut [f32]) -> usize {
    let evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odds = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let blocks = x.len() / (2 * LANES);
    for i in 0..blocks {
        let lo = _mm512_loadu_ps(x.as_ptr().add(2 * LANES * i));
        let hi = _mm512_loadu_ps(x.as_ptr().add(2 * LANES * i + LANES));
        _mm512_storeu_ps(
            a.as_mut_ptr().add(LANES * i),
            _mm512_permutex2var_ps(lo, evens, hi),
        );
        _mm512_storeu_ps(
            b.as_mut_ptr().add(LANES * i),
            _mm512_permutex2var_ps(lo, odds, hi),
        );
    }
    blocks * LANES
}

/// Columns `js` of `Bᵀ d B`; see `super::input_tiles`.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn input_tiles(
    four: &[f32],
    half: usize,
    cols: usize,
    js: Range<usize>,
    v: &mut [f32],
    stride: usize,
    at: usize,
) {
    let (p, out) = (four.as_ptr(), v.as_mut_ptr());
    for t in (0..cols).step_by(LANES) {
        let k = mask(cols - t);
        // d[i]: the four columns of row i of the patches.
        let d = [0, 1, 2, 3].map(|i| {
            let even = p.add(i * 2 * half + t);
            let odd = even.add(half);
            [
                _mm512_loadu_ps(even),
                _mm512_loadu_ps(odd),
                _mm512_loadu_ps(even.add(1)),
                _mm512_loadu_ps(odd.add(1)),
            ]
        });
        for j in js.clone() {
            // Row i of the patch times column j of B, then Bᵀ times that column.
            let a = d.map(|row| bt_row(j, row));
            for i in 0..4 {
                let slot = i * js.len() + j - js.start;
                _mm512_mask_storeu_ps(out.add(slot * stride + at + t), k, bt_row(i, a));
            }
        }
    }
}

/// Row `j` of `Bᵀ` times the column `v`: `v0 - v2`, `v1 + v2`, `v2 - v1`, `v1 - v3`.
#[inline]
#[target_feature(enable = "avx512f")]
fn bt_row(j: usize, v: [__m512; 4]) -> __m512 {
    match j {
        0 => _mm512_sub_ps(v[0], v[2]),
        1 => _mm512_add_ps(v[1], v[2]),
        2 => _mm512_sub_ps(v[2], v[1]),
        _ => _mm512_sub_ps(v[1], v[3]),
    }
}

/// Row `i` of `A` times the column `(v0, v1)`: `v0`, `v0 + v1`, `v0 - v1`, `-v1`.
#[inline]
#[target_feature(enable = "avx512f")]
fn a_row(i: usize, v0: __m512, v1: __m512) -> __m512 {
    match i {
        0 => v0,
        1 => _mm512_add_ps(v0, v1),
        2 => _mm512_sub_ps(v0, v1),
        _ => _mm512_sub_ps(_mm512_setzero_ps(), v1),
    }
}

/// Columns `js` of `A dY Aᵀ`; see `super::weight_grad`'s `output_grad_block`.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn output_grad_tiles(
    dy: &[f32],
    (ho, wo): (usize, usize),
    r: usize,
    cols: usize,
    js: Range<usize>,
    dm: &mut [f32],
    stride: usize,
    at: usize,
) {
    let evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odds = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let (p, out) = (dy.as_ptr(), dm.as_mut_ptr());
    for t in (0..cols).step_by(LANES) {
        let width = (wo - 2 * t).min(2 * LANES);
        // Row a of the tiles of dY: its left and right columns (zero past the plane).
        let rows = [0, 1].map(|a| {
            let oh = 2 * r + a;
            if oh >= ho {
                return [_mm512_setzero_ps(); 2];
            }
            let src = p.add(oh * wo + 2 * t);
            let lo = _mm512_maskz_loadu_ps(mask(width), src);
            let hi = _mm512_maskz_loadu_ps(mask(width.saturating_sub(LANES)), src.add(LANES));
            [
                _mm512_permutex2var_ps(lo, evens, hi),
                _mm512_permutex2var_ps(lo, odds, hi),
            ]
        });
        let k = mask(cols - t);
        for j in js.clone() {
            // Row a of dY times column j of Aᵀ, then A times that column.
            let z = rows.map(|[left, right]| a_row(j, left, right));
            for i in 0..4 {
                let slot = i * js.len() + j - js.start;
                _mm512_mask_storeu_ps(out.add(slot * stride + at + t), k, a_row(i, z[0], z[1]));
            }
        }
    }
}

/// `Aᵀ m A` then its `Post`; see `super::forward`'s `output_tiles`.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn output_tiles(
    m: &[f32],
    stride: usize,
    at: usize,
    cols: usize,
    post: super::forward::Post,
    (ho, wo): (usize, usize),
    r: usize,
    y: &mut [f32],
) {
    let (p, out) = (m.as_ptr(), y.as_mut_ptr());
    let bias = _mm512_set1_ps(post.bias);
    let zero = _mm512_setzero_ps();
    let relu_affine = post
        .relu_affine
        .map(|[m, s, b]| [_mm512_set1_ps(m), _mm512_set1_ps(s), _mm512_set1_ps(b)]);
    // The bits of `batchnorm2d_relu_inplace`: subtract, multiply, add, then
    // vmaxps with zero second (which a NaN or -0 gives).
    let finish = |v: __m512| match relu_affine {
        Some([m, s, b]) => _mm512_max_ps(
            _mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(v, m), s), b),
            zero,
        ),
        None => v,
    };
    let low = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    let high = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    for t in (0..cols).step_by(LANES) {
        let width = (wo - 2 * t).min(2 * LANES);
        // Rows 0 and 1 of Aᵀ m, column j.
        let base = p.add(at + t);
        let mut q = [[_mm512_setzero_ps(); 2]; 4];
        for (j, qj) in q.iter_mut().enumerate() {
            let m0 = _mm512_loadu_ps(base.add(j * stride));
            let m1 = _mm512_loadu_ps(base.add((4 + j) * stride));
            let m2 = _mm512_loadu_ps(base.add((8 + j) * stride));
            let m3 = _mm512_loadu_ps(base.add((12 + j) * stride));
            *qj = [
                _mm512_add_ps(_mm512_add_ps(m0, m1), m2),
                _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3),
            ];
        }
        let rows = [q.map(|qj| qj[0]), q.map(|qj| qj[1])];
        for (dr, qr) in rows.iter().enumerate() {
            let oh = 2 * r + dr;
            if oh >= ho {
                break;
            }
            let left = _mm512_add_ps(_mm512_add_ps(qr[0], qr[1]), qr[2]);
            let right = _mm512_sub_ps(_mm512_sub_ps(qr[1], qr[2]), qr[3]);
            let (left, right) = (
                finish(_mm512_add_ps(left, bias)),
                finish(_mm512_add_ps(right, bias)),
            );
            let dst = out.add(oh * wo + 2 * t);
            _mm512_mask_storeu_ps(dst, mask(width), _mm512_permutex2var_ps(left, low, right));
            if width > LANES {
                let rest = mask(width - LANES);
                _mm512_mask_storeu_ps(
                    dst.add(LANES),
                    rest,
                    _mm512_permutex2var_ps(left, high, right),
                );
            }
        }
    }
}
