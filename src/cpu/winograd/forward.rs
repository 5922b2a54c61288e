//! The forward pass: `Y = Aᵀ [U ⊙ V] A` for every tile.

use super::{
    block_rows_len, computes, input_block, kernel, skewed, split_block_rows, x86, Tiles, LANES, M,
    ROWS, V,
};
use crate::cpu::batchnorm2d::ChannelAffine;
use crate::cpu::conv2d::ConvGeom;
use crate::cpu::gemm::{gemm, MatRef};
use crate::cpu::scratch::with_scratch;
use crate::cpu::small_gemm::Kernel;
use rayon::prelude::*;

/// Tiles per block: the products and transformed inputs of a block stay
/// in L2. Against 64, `crnn-t` b2 1.03-1.07x, the others (64 tiles a
/// sample) the same (in one process in alternation, one thread).
pub const BLOCK_TILES: usize = 128;

/// `U`, 16 matrices (o x c): entry e = 4a + b of `G k Gᵀ` for every kernel
/// `k` (3x3) of `weight` (o, c, 3, 3).
pub fn transform_weight(weight: &[f32], o: usize, c: usize) -> Vec<f32> {
    let mut u = vec![0.0f32; 16 * o * c];
    for (oc, kernels) in weight[..o * c * 9].chunks_exact(c * 9).enumerate() {
        transform_kernels(kernels, c, &mut u, oc * c, o * c);
    }
    u
}

avx2_dispatch! {
    /// `G k Gᵀ` for the `c` kernels (3x3 each) of one output channel, 16
    /// input channels at a time: entry e of kernel ic goes to
    /// `u[e * stride + at + ic]`.
    fn transform_kernels(kernels: &[f32], c: usize, u: &mut [f32], at: usize, stride: usize) {
        for c0 in (0..c).step_by(LANES) {
            let n = (c - c0).min(LANES);
            let mut k = [[0.0f32; LANES]; 9];
            for (l, kernel) in kernels[c0 * 9..(c0 + n) * 9].chunks_exact(9).enumerate() {
                for (tap, &v) in kernel.iter().enumerate() {
                    k[tap][l] = v;
                }
            }
            // gk[a][j]: row a of G times column j of the kernel.
            let mut gk = [[[0.0f32; LANES]; 3]; 4];
            for j in 0..3 {
                for l in 0..LANES {
                    let (q0, q1, q2) = (k[j][l], k[3 + j][l], k[6 + j][l]);
                    gk[0][j][l] = q0;
                    gk[1][j][l] = 0.5 * (q0 + q1 + q2);
                    gk[2][j][l] = 0.5 * (q0 - q1 + q2);
                    gk[3][j][l] = q2;
                }
            }
            for (a, row) in gk.iter().enumerate() {
                let mut out = [[0.0f32; LANES]; 4];
                for l in 0..LANES {
                    let (q0, q1, q2) = (row[0][l], row[1][l], row[2][l]);
                    out[0][l] = q0;
                    out[1][l] = 0.5 * (q0 + q1 + q2);
                    out[2][l] = 0.5 * (q0 - q1 + q2);
                    out[3][l] = q2;
                }
                for (b, vals) in out.iter().enumerate() {
                    let start = (4 * a + b) * stride + at + c0;
                    u[start..start + n].copy_from_slice(&vals[..n]);
                }
            }
        }
    }
}

/// Convolves `n` samples `x` (n, c, h, w) with a 3x3 `weight` (o, c, 3, 3)
/// and an optional `bias` (o) into `y` (n, o, ho, wo), stride 1, padding
/// from `g`. Panics unless [`computes`](super::computes) (a 3x3 stride-1
/// layer on an AVX-512 or AVX2 CPU); [`applies`](super::applies) says when it
/// pays. Samples run in parallel; with fewer samples than threads, each
/// block's output channels are split instead.
pub fn conv2d_winograd(
    x: &[f32],
    g: &ConvGeom,
    weight: &[f32],
    o: usize,
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    assert!(
        weight.len() >= o * g.c * 9,
        "conv2d_winograd: weight too short"
    );
    conv2d_winograd_with(x, g, &transform_weight(weight, o, g.c), o, bias, y);
}

/// [`conv2d_winograd`] with the weight already transformed by
/// [`transform_weight`] (a frozen model can keep it from call to call).
pub fn conv2d_winograd_with(
    x: &[f32],
    g: &ConvGeom,
    u: &[f32],
    o: usize,
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    conv2d_winograd_then(x, g, u, o, bias, None, y);
}

/// [`conv2d_winograd_with`] followed, when `relu_affine` is given, by an
/// evaluation BatchNorm's affine map and a ReLU in the output transform:
/// `max((v - mean) * scale + beta, 0)` of each value `v` it would store,
/// the bits of the separate pass
/// ([`batchnorm2d_relu_inplace`](crate::cpu::batchnorm2d::batchnorm2d_relu_inplace))
/// without a second pass over the output.
pub fn conv2d_winograd_then(
    x: &[f32],
    g: &ConvGeom,
    u: &[f32],
    o: usize,
    bias: Option<&[f32]>,
    relu_affine: Option<ChannelAffine>,
    y: &mut [f32],
) {
    assert!(
        computes(g),
        "conv2d_winograd: {g:?} is not computed here (a 3x3 stride-1 layer, AVX-512F or AVX2)"
    );
    let (in_len, out_len) = (g.in_len(), o * g.ho * g.wo);
    let n = x.len() / in_len;
    assert!(y.len() >= n * out_len && u.len() >= 16 * o * g.c);
    assert!(bias.is_none_or(|b| b.len() >= o));
    assert!(relu_affine.is_none_or(|a| a.mean.len().min(a.scale.len()).min(a.beta.len()) >= o));
    if o == 0 || n == 0 {
        return;
    }
    let split = n < rayon::current_num_threads();
    y[..n * out_len]
        .par_chunks_mut(out_len)
        .zip(x.par_chunks(in_len))
        .for_each(|(ys, xs)| sample(xs, g, u, o, (bias, relu_affine), split, ys));
}

/// One sample, block by block.
fn sample(
    x: &[f32],
    g: &ConvGeom,
    u: &[f32],
    o: usize,
    (bias, relu_affine): (Option<&[f32]>, Option<ChannelAffine>),
    split: bool,
    y: &mut [f32],
) {
    let t = Tiles::of(g, BLOCK_TILES);
    let c = g.c;
    let plane = g.ho * g.wo;
    let kernel = kernel();
    for block in t.blocks() {
        let tiles = block.len() * t.cols;
        let v_stride = skewed(c * tiles);
        with_scratch(&V, 16 * v_stride, |v| {
            with_scratch(&ROWS, block_rows_len(g, &t, block.len()), |rows| {
                split_block_rows(x, g, &t, block.clone(), rows);
                input_block(rows, g, &t, block.len(), 0..4, v, v_stride);
            });
            let v: &[f32] = v;
            let outputs = |oc: usize, ys: &mut [f32]| {
                let ob = ys.len() / plane;
                let m_stride = skewed(ob * tiles);
                with_scratch(&M, 16 * m_stride + LANES, |m| {
                    for e in 0..16 {
                        let ue = MatRef {
                            data: &u[(e * o + oc) * c..(e * o + oc + ob) * c],
                            rows: ob,
                            cols: c,
                            rs: c,
                            cs: 1,
                        };
                        let ve = MatRef::row_major(&v[e * v_stride..][..c * tiles], c, tiles);
                        gemm(1.0, ue, ve, 0.0, &mut m[e * m_stride..][..ob * tiles]);
                    }
                    for (j, yp) in ys.chunks_exact_mut(plane).enumerate() {
                        let ch = oc + j;
                        let post = Post {
                            bias: bias.map_or(0.0, |b| b[ch]),
                            relu_affine: relu_affine.map(|a| [a.mean[ch], a.scale[ch], a.beta[ch]]),
                        };
                        for r in block.clone() {
                            let at = j * tiles + (r - block.start) * t.cols;
                            let hw = (g.ho, g.wo);
                            output_tiles(kernel, m, m_stride, at, t.cols, post, hw, r, yp);
                        }
                    }
                });
            };
            if split {
                let per = o.div_ceil(rayon::current_num_threads());
                y.par_chunks_mut(per * plane)
                    .enumerate()
                    .for_each(|(part, ys)| outputs(part * per, ys));
            } else {
                outputs(0, y);
            }
        });
    }
}

/// What one output channel's values get after `Aᵀ m A`.
#[derive(Clone, Copy)]
pub(super) struct Post {
    /// Added first.
    pub bias: f32,
    /// Then, if given, `max((v - mean) * scale + beta, 0)` with these three.
    pub relu_affine: Option<[f32; 3]>,
}

/// `Aᵀ m A` and `post` for the `cols` tiles of row of tiles `r` of one
/// output channel, whose products start at `m[e * stride + at]`, into the
/// plane `y` (ho, wo), on the transforms' build `kernel`; outputs past the
/// plane's edge are dropped. Reads up to 16 values past the last product
/// of entry 15 (their outputs are dropped).
#[allow(clippy::too_many_arguments)]
fn output_tiles(
    kernel: Kernel,
    m: &[f32],
    stride: usize,
    at: usize,
    cols: usize,
    post: Post,
    (ho, wo): (usize, usize),
    r: usize,
    y: &mut [f32],
) {
    assert!(cols == 0 || m.len() >= 15 * stride + at + cols.next_multiple_of(LANES));
    assert!(2 * r < ho && cols == wo.div_ceil(2) && y.len() >= ho * wo);
    // SAFETY: `kernel` is the build `kernel()` found, after
    // conv2d_winograd_with asserted computes(); loads are bounded by the
    // first assert, stores are masked to the plane's row `2r` (and `2r + 1`
    // if < ho).
    unsafe { x86::output_tiles(kernel, m, stride, at, cols, post, (ho, wo), r, y) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::conv2d::im2col;
    use crate::cpu::gemm::gemm_packed;
    use crate::rng::Rng;

    fn values(len: usize, rng: &mut Rng) -> Vec<f32> {
        (0..len).map(|_| rng.range(-1.0, 1.0)).collect()
    }

    /// im2col + GEMM per sample, and the sum of the magnitudes of each
    /// output's terms (the scale of its rounding error).
    fn reference(x: &[f32], g: &ConvGeom, w: &[f32], o: usize, n: usize) -> (Vec<f32>, Vec<f32>) {
        let (rows, cols) = (g.col_rows(), g.col_cols());
        let mut y = vec![0.0; n * o * cols];
        let mut scale = vec![0.0; n * o * cols];
        let abs_w: Vec<f32> = w.iter().map(|v| v.abs()).collect();
        for i in 0..n {
            let mut col = vec![0.0; rows * cols];
            im2col(&x[i * g.in_len()..(i + 1) * g.in_len()], g, &mut col);
            let out = &mut y[i * o * cols..(i + 1) * o * cols];
            gemm_packed(
                1.0,
                MatRef::row_major(w, o, rows),
                MatRef::row_major(&col, rows, cols),
                0.0,
                out,
            );
            for v in &mut col {
                *v = v.abs();
            }
            let out = &mut scale[i * o * cols..(i + 1) * o * cols];
            gemm_packed(
                1.0,
                MatRef::row_major(&abs_w, o, rows),
                MatRef::row_major(&col, rows, cols),
                0.0,
                out,
            );
        }
        (y, scale)
    }

    /// Odd and even sizes (ragged last tiles in both directions), paddings
    /// 0 to 2, several blocks per sample, bias or not, one and three threads.
    #[test]
    fn matches_im2col_gemm_up_to_rounding() {
        if !super::super::kernel_runs() {
            eprintln!("skipped: no AVX-512F or AVX2");
            return;
        }
        let mut rng = Rng::seed(21);
        for (c, h, w, o, n) in [
            (16, 8, 32, 32, 2),
            (17, 7, 13, 5, 3),
            (16, 3, 3, 19, 1),
            (20, 33, 9, 8, 2),
            (32, 4, 130, 3, 1),
        ] {
            for pad in 0..3 {
                let Some(g) = ConvGeom::new((c, h, w), (3, 3), (1, 1), (pad, pad)) else {
                    continue;
                };
                let x = values(n * g.in_len(), &mut rng);
                let wt = values(o * c * 9, &mut rng);
                let bias = values(o, &mut rng);
                let (want, scale) = reference(&x, &g, &wt, o, n);
                for b in [None, Some(&bias[..])] {
                    for threads in [1, 3] {
                        let pool = rayon::ThreadPoolBuilder::new()
                            .num_threads(threads)
                            .build()
                            .unwrap();
                        let mut y = vec![f32::NAN; want.len()];
                        pool.install(|| conv2d_winograd(&x, &g, &wt, o, b, &mut y));
                        for (k, ((&got, &want), &s)) in y.iter().zip(&want).zip(&scale).enumerate()
                        {
                            let want = want + b.map_or(0.0, |b| b[k / g.col_cols() % o]);
                            assert!(
                                (got - want).abs() <= 1e-6 * (s + 1.0) * 8.0,
                                "{g:?} o {o} n {n} threads {threads} at {k}: {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// The thread count changes no bit.
    #[test]
    fn same_bits_on_any_thread_count() {
        if !super::super::kernel_runs() {
            eprintln!("skipped: no AVX-512F or AVX2");
            return;
        }
        let mut rng = Rng::seed(22);
        for n in [1, 4] {
            let g = ConvGeom::new((16, 8, 32), (3, 3), (1, 1), (1, 1)).unwrap();
            let o = 24;
            let x = values(n * g.in_len(), &mut rng);
            let wt = values(o * 16 * 9, &mut rng);
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let mut y = vec![0.0; n * o * g.col_cols()];
                pool.install(|| conv2d_winograd(&x, &g, &wt, o, None, &mut y));
                y.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            };
            assert_eq!(run(1), run(2), "batch {n}");
            assert_eq!(run(1), run(3), "batch {n}");
        }
    }
}
