//! The weight gradient: with `Y = Aᵀ [U ⊙ V] A` per tile and `U = G k Gᵀ`,
//! `dU = Σ_tiles (A dY Aᵀ) ⊙ V` and `dk = Gᵀ dU G`.
//!
//! Each entry's `dU_e` (o x c) is a product over all tiles of the batch,
//! `DY_e · V_eᵀ`, accumulated block by block in order. The four columns j
//! of the 4x4 entries are independent down to the transforms (column j of
//! `Bᵀ d B` needs only column j of `d B`), so the columns are split into one
//! group per thread (at most four), each a task that runs through the whole
//! batch: each value is summed in one thread, block after block, and the
//! grouping changes no value.

use super::{
    block_rows_len, computes, input_block, kernel, skewed, split_block_rows, x86, Tiles, LANES, M,
    ROWS, V,
};
use crate::cpu::conv2d::ConvGeom;
use crate::cpu::gemm::{gemm, MatRef};
use crate::cpu::scratch::with_scratch;
use rayon::prelude::*;
use std::ops::Range;

/// Tiles per block: the depth of each block's products (against 64 and
/// 256, `crnn-t` b2 1.05x).
pub const BLOCK_TILES: usize = 128;

/// Weight gradients with fewer kernels (`o * c`) keep the direct
/// computation: the products are then too small for the transforms to pay.
/// `crnn-s` b3 (16 -> 32 channels, 512 kernels) at batch 32: 1.2x.
pub const MIN_KERNELS: usize = 512;

/// Whether [`weight_grad_winograd`] takes the gradient of `n` samples of this
/// geometry with `o` output channels: [`applies`](super::applies), and at
/// least `MIN_KERNELS` (512) kernels.
pub fn weight_grad_applies(g: &ConvGeom, o: usize, n: usize) -> bool {
    super::applies(g, n) && g.c * o >= MIN_KERNELS
}

/// The gradient `dw` (o, c, 3, 3) of a 3x3 stride-1 convolution of `x`
/// (n, c, h, w) with output gradient `dy` (n, o, ho, wo); `dw` is
/// overwritten. Panics unless [`computes`](super::computes) (a 3x3 stride-1
/// layer on an AVX-512 or AVX2 CPU); [`weight_grad_applies`] says when it pays.
pub fn weight_grad_winograd(dy: &[f32], x: &[f32], g: &ConvGeom, o: usize, dw: &mut [f32]) {
    assert!(
        computes(g),
        "weight_grad_winograd: {g:?} is not a 3x3 stride-1 layer"
    );
    let (c, in_len, out_len) = (g.c, g.in_len(), o * g.ho * g.wo);
    let n = x.len() / in_len;
    assert!(dy.len() >= n * out_len && dw.len() >= o * c * 9);
    let t = Tiles::of(g, BLOCK_TILES);
    // dU, column j of the entries at [j][i][o][c]; the columns split into
    // one group per thread (at most four), each summing its own entries.
    let mut du = vec![0.0f32; 16 * o * c];
    let groups = column_groups(rayon::current_num_threads());
    let mut parts: Vec<(Range<usize>, &mut [f32])> = Vec::with_capacity(groups.len());
    let mut rest = &mut du[..];
    for js in groups {
        let (part, tail) = rest.split_at_mut(4 * js.len() * o * c);
        parts.push((js, part));
        rest = tail;
    }
    parts.par_iter_mut().for_each(|(js, du)| {
        let slots = 4 * js.len();
        for (xs, dys) in x.chunks_exact(in_len).zip(dy.chunks_exact(out_len)).take(n) {
            for block in t.blocks() {
                let tiles = block.len() * t.cols;
                let (v_stride, m_stride) = (skewed(c * tiles), skewed(o * tiles));
                with_scratch(&ROWS, block_rows_len(g, &t, block.len()), |rows| {
                    with_scratch(&V, slots * v_stride, |v| {
                        with_scratch(&M, slots * m_stride, |dm| {
                            split_block_rows(xs, g, &t, block.clone(), rows);
                            input_block(rows, g, &t, block.len(), js.clone(), v, v_stride);
                            let b = block.clone();
                            output_grad_block(dys, g, o, &t, b, js.clone(), dm, m_stride);
                            // Entry (i, j) is in slot i * js.len() + j - js.start of
                            // v and dm, and at (j - js.start) * 4 + i of du.
                            for (k, du) in du.chunks_exact_mut(o * c).enumerate() {
                                let slot = (k % 4) * js.len() + k / 4;
                                let dm = &dm[slot * m_stride..][..o * tiles];
                                let v = &v[slot * v_stride..][..c * tiles];
                                let (dm, v) = (
                                    MatRef::row_major(dm, o, tiles),
                                    MatRef::row_major(v, c, tiles),
                                );
                                gemm(1.0, dm, v.t(), 1.0, du);
                            }
                        })
                    })
                });
            }
        }
    });
    for (oc, dw) in dw[..o * c * 9].chunks_exact_mut(c * 9).enumerate() {
        for (ic, dk) in dw.chunks_exact_mut(9).enumerate() {
            let entry = |i: usize, j: usize| du[((4 * j + i) * o + oc) * c + ic];
            // Gᵀ u for a column or row u of four.
            let gt = |u: [f32; 4]| {
                [
                    u[0] + 0.5 * (u[1] + u[2]),
                    0.5 * (u[1] - u[2]),
                    0.5 * (u[1] + u[2]) + u[3],
                ]
            };
            let rows = [0, 1, 2, 3].map(|i| gt([0, 1, 2, 3].map(|j| entry(i, j))));
            for kj in 0..3 {
                let col = gt(rows.map(|row| row[kj]));
                for (ki, v) in col.into_iter().enumerate() {
                    dk[3 * ki + kj] = v;
                }
            }
        }
    }
}

/// The columns 0..4 of the entries in `threads` (at most four) contiguous
/// groups, as even as can be. Grouping changes no value: each entry is
/// transformed and summed the same way in any group.
fn column_groups(threads: usize) -> Vec<Range<usize>> {
    let groups = threads.clamp(1, 4);
    (0..groups)
        .map(|k| (4 * k / groups)..(4 * (k + 1) / groups))
        .collect()
}

/// Columns `js` of `A dY Aᵀ` for the tiles of `block` (rows of tiles) of
/// one sample's output gradient `dy` (o, ho, wo): entry (i, j) of output
/// channel oc and tile t of the block goes to
/// `dm[slot * stride + oc * tiles + t]`, slot `i * js.len() + j - js.start`.
#[allow(clippy::too_many_arguments)]
fn output_grad_block(
    dy: &[f32],
    g: &ConvGeom,
    o: usize,
    t: &Tiles,
    block: Range<usize>,
    js: Range<usize>,
    dm: &mut [f32],
    stride: usize,
) {
    let (plane, tiles) = (g.ho * g.wo, block.len() * t.cols);
    assert!(js.end <= 4 && !js.is_empty() && block.end <= t.rows && t.cols == g.wo.div_ceil(2));
    // Room for the last strip's whole store after each entry's values.
    assert!(stride >= o * tiles + LANES && dy.len() >= o * plane);
    assert!(dm.len() >= (4 * js.len() - 1) * stride + o * tiles + LANES);
    let kernel = kernel();
    for (oc, dy) in dy.chunks_exact(plane).take(o).enumerate() {
        for r in block.clone() {
            let at = oc * tiles + (r - block.start) * t.cols;
            // SAFETY: computes() (a build of the transforms) was asserted by the caller; loads
            // are masked to rows 2r and 2r + 1 (< ho) of the plane, stores
            // to the block's tiles of the slots and up to 16 values after
            // them, within each slot's stride (asserted above).
            unsafe {
                x86::output_grad_tiles(
                    kernel,
                    dy,
                    (g.ho, g.wo),
                    r,
                    t.cols,
                    js.clone(),
                    dm,
                    stride,
                    at,
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::conv2d::{col2im_add, im2col};
    use crate::cpu::gemm::gemm_packed;
    use crate::rng::Rng;

    fn values(len: usize, rng: &mut Rng) -> Vec<f32> {
        (0..len).map(|_| rng.range(-1.0, 1.0)).collect()
    }

    /// `Σ_i dy_i · col_iᵀ` through im2col, and the same sums of magnitudes.
    fn reference(dy: &[f32], x: &[f32], g: &ConvGeom, o: usize, n: usize) -> (Vec<f32>, Vec<f32>) {
        let (rows, cols) = (g.col_rows(), g.col_cols());
        let (mut dw, mut scale) = (vec![0.0; o * rows], vec![0.0; o * rows]);
        for i in 0..n {
            let mut col = vec![0.0; rows * cols];
            im2col(&x[i * g.in_len()..(i + 1) * g.in_len()], g, &mut col);
            let dyi = &dy[i * o * cols..(i + 1) * o * cols];
            let (cm, dm) = (
                MatRef::row_major(&col, rows, cols),
                MatRef::row_major(dyi, o, cols),
            );
            gemm_packed(1.0, dm, cm.t(), 1.0, &mut dw);
            let abs = |v: &[f32]| v.iter().map(|v| v.abs()).collect::<Vec<_>>();
            let (col, dyi) = (abs(&col), abs(dyi));
            let (cm, dm) = (
                MatRef::row_major(&col, rows, cols),
                MatRef::row_major(&dyi, o, cols),
            );
            gemm_packed(1.0, dm, cm.t(), 1.0, &mut scale);
        }
        (dw, scale)
    }

    /// Odd and even sizes (ragged last tiles), paddings 0 to 2, several
    /// blocks per sample, one and three threads.
    #[test]
    fn matches_im2col_weight_gradient_up_to_rounding() {
        let _ = col2im_add;
        let mut rng = Rng::seed(23);
        let mut checked = 0;
        for (c, h, w, o, n) in [
            (16, 8, 32, 32, 2),
            (17, 7, 13, 5, 3),
            (16, 3, 3, 19, 1),
            (20, 33, 9, 8, 2),
            (16, 4, 300, 3, 1),
        ] {
            for pad in 0..3 {
                let Some(g) = ConvGeom::new((c, h, w), (3, 3), (1, 1), (pad, pad)) else {
                    continue;
                };
                if !computes(&g) {
                    continue;
                }
                let x = values(n * g.in_len(), &mut rng);
                let dy = values(n * o * g.col_cols(), &mut rng);
                let (want, scale) = reference(&dy, &x, &g, o, n);
                for threads in [1, 3] {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    let mut dw = vec![f32::NAN; want.len()];
                    pool.install(|| weight_grad_winograd(&dy, &x, &g, o, &mut dw));
                    for (k, ((&got, &want), &s)) in dw.iter().zip(&want).zip(&scale).enumerate() {
                        assert!(
                            (got - want).abs() <= 1e-6 * (s + 1.0) * 8.0,
                            "{g:?} o {o} n {n} threads {threads} at {k}: {got} vs {want}"
                        );
                    }
                    checked += 1;
                }
            }
        }
        if checked == 0 {
            eprintln!("skipped: no AVX-512F or AVX2");
        }
    }

    /// The thread count changes no bit.
    #[test]
    fn same_bits_on_any_thread_count() {
        let mut rng = Rng::seed(24);
        let g = ConvGeom::new((16, 8, 32), (3, 3), (1, 1), (1, 1)).unwrap();
        if !computes(&g) {
            eprintln!("skipped: no AVX-512F or AVX2");
            return;
        }
        let (n, o) = (3, 24);
        let x = values(n * g.in_len(), &mut rng);
        let dy = values(n * o * g.col_cols(), &mut rng);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut dw = vec![0.0; o * 16 * 9];
            pool.install(|| weight_grad_winograd(&dy, &x, &g, o, &mut dw));
            dw.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(2));
        assert_eq!(run(1), run(5));
    }
}
