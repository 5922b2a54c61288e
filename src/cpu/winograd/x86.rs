//! The kernels of the Winograd transforms: 16 tiles per vector of
//! [`Lanes16`], one AVX-512 register or two AVX2 ones, as the
//! [`Kernel`] passed in names (the caller guarantees the CPU runs it).
//! Both builds run the same IEEE operations in the same order on each
//! lane, so they give the same bits.

use super::LANES;
use crate::cpu::lanes::{on_build, Lanes16};
use crate::cpu::small_gemm::Kernel;
use std::ops::Range;

/// Deinterleaves the whole blocks of 32 values of `x` into `a` (even
/// values) and `b` (odd values): `x.len() / 32 * 16` pairs.
///
/// # Safety
/// The CPU runs `kernel`; `a` and `b` hold the pairs.
pub(super) unsafe fn deinterleave(kernel: Kernel, x: &[f32], a: &mut [f32], b: &mut [f32]) {
    on_build!(kernel, deinterleave_with(x: &[f32], a: &mut [f32], b: &mut [f32]))
}

#[inline(always)]
unsafe fn deinterleave_with<L: Lanes16>(x: &[f32], a: &mut [f32], b: &mut [f32]) {
    // SAFETY: loads within the whole blocks of `x`, stores within the
    // pairs of `a` and `b` (the caller's contract).
    unsafe {
        for i in 0..x.len() / (2 * LANES) {
            let lo = L::load(x.as_ptr().add(2 * LANES * i));
            let hi = L::load(x.as_ptr().add(2 * LANES * i + LANES));
            let [evens, odds] = L::deinterleave2([lo, hi]);
            evens.store(a.as_mut_ptr().add(LANES * i));
            odds.store(b.as_mut_ptr().add(LANES * i));
        }
    }
}

/// Columns `js` of `Bᵀ d B`; see `super::input_block`. The last strip of
/// tiles may be stored whole ([`Lanes16::store_first_or_all`]): up to 15
/// values past the row's tiles, which the next row's stores overwrite.
///
/// # Safety
/// The CPU runs `kernel`; the bounds `super::input_block` asserts.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn input_tiles(
    kernel: Kernel,
    four: &[f32],
    half: usize,
    cols: usize,
    js: Range<usize>,
    v: &mut [f32],
    stride: usize,
    at: usize,
) {
    on_build!(
        kernel,
        input_tiles_with(
            four: &[f32],
            half: usize,
            cols: usize,
            js: Range<usize>,
            v: &mut [f32],
            stride: usize,
            at: usize,
        )
    )
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn input_tiles_with<L: Lanes16>(
    four: &[f32],
    half: usize,
    cols: usize,
    js: Range<usize>,
    v: &mut [f32],
    stride: usize,
    at: usize,
) {
    let (p, out) = (four.as_ptr(), v.as_mut_ptr());
    // SAFETY: the caller's contract.
    unsafe {
        for t in (0..cols).step_by(LANES) {
            // d[i]: the four columns of row i of the patches. (Loops, not
            // closures: a closure here is not compiled with the build's
            // features, and its intrinsics become calls.)
            let mut d = [[L::zero(); 4]; 4];
            for (i, d) in d.iter_mut().enumerate() {
                let even = p.add(i * 2 * half + t);
                let odd = even.add(half);
                *d = [
                    L::load(even),
                    L::load(odd),
                    L::load(even.add(1)),
                    L::load(odd.add(1)),
                ];
            }
            for j in js.clone() {
                // Row i of the patch times column j of B, then Bᵀ times that column.
                let mut a = [L::zero(); 4];
                for (a, &row) in a.iter_mut().zip(&d) {
                    *a = bt_row(j, row);
                }
                for i in 0..4 {
                    let slot = i * js.len() + j - js.start;
                    bt_row(i, a).store_first_or_all(out.add(slot * stride + at + t), cols - t);
                }
            }
        }
    }
}

/// Row `j` of `Bᵀ` times the column `v`: `v0 - v2`, `v1 + v2`, `v2 - v1`, `v1 - v3`.
#[inline(always)]
unsafe fn bt_row<L: Lanes16>(j: usize, v: [L; 4]) -> L {
    // SAFETY: register arithmetic only (the build's features by the caller's target feature).
    unsafe {
        match j {
            0 => v[0].sub(v[2]),
            1 => v[1].add(v[2]),
            2 => v[2].sub(v[1]),
            _ => v[1].sub(v[3]),
        }
    }
}

/// Row `i` of `A` times the column `(v0, v1)`: `v0`, `v0 + v1`, `v0 - v1`, `0 - v1`.
#[inline(always)]
unsafe fn a_row<L: Lanes16>(i: usize, v0: L, v1: L) -> L {
    // SAFETY: as `bt_row`.
    unsafe {
        match i {
            0 => v0,
            1 => v0.add(v1),
            2 => v0.sub(v1),
            _ => L::zero().sub(v1),
        }
    }
}

/// Columns `js` of `A dY Aᵀ`; see `super::weight_grad`'s `output_grad_block`.
/// The last strip may be stored whole, as in [`input_tiles`].
///
/// # Safety
/// The CPU runs `kernel`; row `2r` of the plane `dy` (ho, wo) exists, and
/// the bounds `output_grad_block` asserts.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn output_grad_tiles(
    kernel: Kernel,
    dy: &[f32],
    hw: (usize, usize),
    r: usize,
    cols: usize,
    js: Range<usize>,
    dm: &mut [f32],
    stride: usize,
    at: usize,
) {
    on_build!(
        kernel,
        output_grad_tiles_with(
            dy: &[f32],
            hw: (usize, usize),
            r: usize,
            cols: usize,
            js: Range<usize>,
            dm: &mut [f32],
            stride: usize,
            at: usize,
        )
    )
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn output_grad_tiles_with<L: Lanes16>(
    dy: &[f32],
    (ho, wo): (usize, usize),
    r: usize,
    cols: usize,
    js: Range<usize>,
    dm: &mut [f32],
    stride: usize,
    at: usize,
) {
    let (p, out) = (dy.as_ptr(), dm.as_mut_ptr());
    // SAFETY: loads are limited to the plane's rows 2r and 2r + 1 (< ho),
    // stores to the caller's slots.
    unsafe {
        for t in (0..cols).step_by(LANES) {
            let width = (wo - 2 * t).min(2 * LANES);
            // Row a of the tiles of dY: its left and right columns (zero
            // past the plane). Loops, not closures, as in `input_tiles_with`.
            let mut rows = [[L::zero(); 2]; 2];
            for (a, row) in rows.iter_mut().enumerate() {
                let oh = 2 * r + a;
                if oh < ho {
                    let src = p.add(oh * wo + 2 * t);
                    let lo = L::load_first(src, width);
                    let hi = L::load_first(src.add(LANES), width.saturating_sub(LANES));
                    *row = L::deinterleave2([lo, hi]);
                }
            }
            for j in js.clone() {
                // Row a of dY times column j of Aᵀ, then A times that column.
                let z0 = a_row(j, rows[0][0], rows[0][1]);
                let z1 = a_row(j, rows[1][0], rows[1][1]);
                for i in 0..4 {
                    let slot = i * js.len() + j - js.start;
                    a_row(i, z0, z1).store_first_or_all(out.add(slot * stride + at + t), cols - t);
                }
            }
        }
    }
}

/// `Aᵀ m A` then its `Post`; see `super::forward`'s `output_tiles`.
///
/// # Safety
/// The CPU runs `kernel`; the bounds `output_tiles` asserts.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn output_tiles(
    kernel: Kernel,
    m: &[f32],
    stride: usize,
    at: usize,
    cols: usize,
    post: super::forward::Post,
    hw: (usize, usize),
    r: usize,
    y: &mut [f32],
) {
    on_build!(
        kernel,
        output_tiles_with(
            m: &[f32],
            stride: usize,
            at: usize,
            cols: usize,
            post: super::forward::Post,
            hw: (usize, usize),
            r: usize,
            y: &mut [f32],
        )
    )
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn output_tiles_with<L: Lanes16>(
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
    // SAFETY: the caller's contract; stores are limited to the plane's row
    // 2r and 2r + 1 if < ho.
    unsafe {
        let bias = L::splat(post.bias);
        // A match, not `Option::map`: no closure around vector operations.
        #[allow(clippy::manual_map)]
        let affine = match post.relu_affine {
            Some([m, s, b]) => Some([L::splat(m), L::splat(s), L::splat(b)]),
            None => None,
        };
        for t in (0..cols).step_by(LANES) {
            let width = (wo - 2 * t).min(2 * LANES);
            // Rows 0 and 1 of Aᵀ m, column j. Loops, not closures, as in
            // `input_tiles_with`.
            let base = p.add(at + t);
            let (mut row0, mut row1) = ([L::zero(); 4], [L::zero(); 4]);
            for (j, (q0, q1)) in row0.iter_mut().zip(&mut row1).enumerate() {
                let m0 = L::load(base.add(j * stride));
                let m1 = L::load(base.add((4 + j) * stride));
                let m2 = L::load(base.add((8 + j) * stride));
                let m3 = L::load(base.add((12 + j) * stride));
                *q0 = m0.add(m1).add(m2);
                *q1 = m1.sub(m2).sub(m3);
            }
            let rows = [row0, row1];
            for (dr, qr) in rows.iter().enumerate() {
                let oh = 2 * r + dr;
                if oh >= ho {
                    break;
                }
                let left = qr[0].add(qr[1]).add(qr[2]);
                let right = qr[1].sub(qr[2]).sub(qr[3]);
                let left = finish(left.add(bias), affine);
                let right = finish(right.add(bias), affine);
                let dst = out.add(oh * wo + 2 * t);
                let [low, high] = L::interleave2([left, right]);
                low.store_first(dst, width);
                if width > LANES {
                    high.store_first(dst.add(LANES), width - LANES);
                }
            }
        }
    }
}

/// `v`, then with `affine` = (mean, scale, beta) the bits of
/// `batchnorm2d_relu_inplace`: subtract, multiply, add, then `vmaxps` with
/// zero second (which a NaN or -0 gives).
#[inline(always)]
unsafe fn finish<L: Lanes16>(v: L, affine: Option<[L; 3]>) -> L {
    // SAFETY: register arithmetic only (the build's features by the caller's target feature).
    unsafe {
        match affine {
            Some([m, s, b]) => v.sub(m).mul(s).add(b).max(L::zero()),
            None => v,
        }
    }
}
