//! The weight gradient through F(4x4, 3x3): with `Y = Aᵀ [U ⊙ V] A` per
//! tile and `U = G k Gᵀ`, `dU = Σ_tiles (A dY Aᵀ) ⊙ V` and `dk = Gᵀ dU G`.
//!
//! Each entry's `dU_e` (o x c) is a product over all tiles of the batch,
//! `dM_e · V_eᵀ` with `dM = A dY Aᵀ`, taken a block of samples at a time
//! (a sample of `crnn-t` b3 or b4 has only 16 tiles: eight of them give
//! the products a depth of 128). A block's transforms run on all threads,
//! a sample each; then its 36 products on [`panel_gemm`] (which takes
//! `V_eᵀ`'s transposed layout by 8x8 transposes), an entry each (small
//! entries a group each), each added to that entry's sum of the blocks
//! before: every value is summed in one thread, block after block,
//! whatever the thread count.
//!
//! Against F(2x2) ([`super::super::winograd::weight_grad_winograd`]) the
//! products are 36 per 16 outputs instead of 64; the rounding is that of
//! the forward F(4x4) (transforms by up to 8 and 1/24).

use super::{x86, Layout, G, LANES, PHASES};
use crate::cpu::conv2d::ConvGeom;
use crate::cpu::gemm::MatRef;
use crate::cpu::panel_gemm;
use crate::cpu::scratch::with_scratch;
use crate::cpu::small_gemm::Kernel;
use rayon::prelude::*;
use std::cell::Cell;

/// Tiles (of all the block's samples) per block: the depth of its products.
const BLOCK_TILES: usize = 128;

/// The least work (multiply-adds) of one task of a block's products.
const TASK_PRODUCTS: usize = 64 * 1024;

/// Weight gradients with fewer kernels (`o * c`) keep F(2x2) or the direct
/// computation.
const MIN_KERNELS: usize = 512;

thread_local! {
    /// The calling thread's transformed inputs of a block (36 x c x tiles).
    static V: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    /// The calling thread's transformed output gradients of a block (36 x o x tiles).
    static DM: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Whether [`weight_grad_winograd4`] takes the gradient of `n` samples of
/// this geometry with `o` output channels: a 3x3 stride-1 padding-1 layer
/// whose tiles fill strips of 16 (as [`super::computes`] with any `o`), at
/// least `MIN_KERNELS` (512) kernels, on an AVX-512F or AVX2 CPU.
pub fn weight_grad_applies(g: &ConvGeom, o: usize, n: usize) -> bool {
    n > 0 && o > 0 && g.c * o >= MIN_KERNELS && super::tiles_fit(g)
}

/// The gradient `dw` (o, c, 3, 3) of a 3x3 stride-1 padding-1 convolution
/// of `x` (n, c, h, w) with output gradient `dy` (n, o, h, w); `dw` is
/// overwritten. Panics unless [`weight_grad_applies`] and the slices fit.
pub fn weight_grad_winograd4(dy: &[f32], x: &[f32], g: &ConvGeom, o: usize, dw: &mut [f32]) {
    let kernel = Kernel::best().expect("winograd4: no AVX2 or AVX-512");
    weight_grad_on(kernel, dy, x, g, o, dw);
}

/// [`weight_grad_winograd4`] on the build `kernel`, which the CPU runs.
fn weight_grad_on(kernel: Kernel, dy: &[f32], x: &[f32], g: &ConvGeom, o: usize, dw: &mut [f32]) {
    assert!(kernel.runs(), "winograd4: the CPU does not run {kernel:?}");
    let n = x.len() / g.in_len().max(1);
    assert!(
        weight_grad_applies(g, o, n),
        "winograd4 weight gradient: {g:?} with {o} outputs not computed"
    );
    let (c, plane) = (g.c, g.h * g.w);
    let (in_len, out_len) = (c * plane, o * plane);
    assert!(dy.len() >= n * out_len && dw.len() >= o * c * 9);
    let l = Layout::of(g);
    let tiles = l.strips * LANES;
    let per_block = (BLOCK_TILES / tiles).max(1);
    let depth = per_block * tiles;
    // One cache line more than the values, so that the 36 entries of a
    // tile's column fall in different L1 sets.
    let (v_stride, m_stride) = (c * depth + LANES, o * depth + LANES);
    // Entries a cache line apart as well, for the kernels' transform.
    let du_stride = (o * c).next_multiple_of(LANES) + LANES;
    // Entries in groups of at least TASK_PRODUCTS multiply-adds, each a
    // task (`crnn-s` b2's products are 16 x 128 x 8 each).
    let tasks = (36 * o * c * depth / TASK_PRODUCTS).clamp(1, 36);
    let group = 36usize.div_ceil(tasks);
    let mut du = vec![0.0f32; 36 * du_stride];
    with_scratch(&V, 36 * v_stride, |v| {
        with_scratch(&DM, 36 * m_stride, |dm| {
            for first in (0..n).step_by(per_block) {
                let samples = per_block.min(n - first);
                let k = samples * tiles;
                let (vs, ms) = (Shared(v.as_mut_ptr()), Shared(dm.as_mut_ptr()));
                (0..samples).into_par_iter().for_each(|s| {
                    let (xs, dys) = (&x[(first + s) * in_len..], &dy[(first + s) * out_len..]);
                    with_scratch(&PHASES, l.channel_phases_len(), |phases| {
                        // SAFETY: the CPU runs `kernel`; sample s writes
                        // its own `tiles` columns of each row (`depth`
                        // apart) of each entry of `v` and `dm`.
                        unsafe {
                            x86::input_transform(
                                kernel,
                                xs,
                                (g.h, g.w),
                                0..c,
                                &Layout { v_stride, ..l },
                                phases,
                                vs.ptr().add(s * tiles),
                                depth,
                            );
                            x86::output_grad_transform(
                                kernel,
                                dys,
                                (g.h, g.w),
                                0..o,
                                &l,
                                phases,
                                ms.ptr().add(s * tiles),
                                m_stride,
                                depth,
                            );
                        }
                    })
                });
                let (v, dm): (&[f32], &[f32]) = (v, dm);
                let product = |e: usize, du: &mut [f32]| {
                    let dm = MatRef {
                        data: &dm[e * m_stride..][..m_stride],
                        rows: o,
                        cols: k,
                        rs: depth,
                        cs: 1,
                    };
                    let v = MatRef {
                        data: &v[e * v_stride..][..v_stride],
                        rows: k,
                        cols: c,
                        rs: 1,
                        cs: depth,
                    };
                    panel_gemm::gemm_with(kernel, 1.0, dm, v, 1.0, du);
                };
                du.par_chunks_mut(group * du_stride)
                    .enumerate()
                    .for_each(|(part, du)| {
                        for (e, du) in du.chunks_mut(du_stride).enumerate() {
                            product(part * group + e, du);
                        }
                    });
            }
        })
    });
    kernels_from_entries(&du, du_stride, &mut dw[..o * c * 9]);
}

/// `dk = Gᵀ dU G` for each kernel of `dw` (its 3x3 values in turn), in
/// f64 and rounded once: `du` holds entry e = 6a + b of kernel k at
/// `du[e * stride + k]`. Kernels go [`CHUNK`] at a time (loops over
/// kernels the compiler vectorises), chunks on all threads.
fn kernels_from_entries(du: &[f32], stride: usize, dw: &mut [f32]) {
    dw.par_chunks_mut(9 * CHUNK)
        .enumerate()
        .for_each(|(chunk, dw)| {
            let (start, len) = (chunk * CHUNK, dw.len() / 9);
            // Row a of dU G, for every kernel of the chunk: Σ_b dU[a][b] G[b][s].
            let mut ug = [[[0.0f64; CHUNK]; 3]; 6];
            for (a, ug) in ug.iter_mut().enumerate() {
                for (s, ug) in ug.iter_mut().enumerate() {
                    for (b, row) in G.iter().enumerate() {
                        if row[s] == 0.0 {
                            continue;
                        }
                        let entry = &du[(6 * a + b) * stride + start..][..len];
                        for (ug, &d) in ug.iter_mut().zip(entry) {
                            *ug += d as f64 * row[s];
                        }
                    }
                }
            }
            let mut k = [[0.0f64; CHUNK]; 9];
            for r in 0..3 {
                for s in 0..3 {
                    let k = &mut k[3 * r + s];
                    for (a, row) in G.iter().enumerate() {
                        if row[r] == 0.0 {
                            continue;
                        }
                        for (k, &v) in k.iter_mut().zip(&ug[a][s]) {
                            *k += row[r] * v;
                        }
                    }
                }
            }
            for (i, dk) in dw.chunks_exact_mut(9).enumerate() {
                for (t, dk) in dk.iter_mut().enumerate() {
                    *dk = k[t][i] as f32;
                }
            }
        });
}

/// Kernels transformed together by [`kernels_from_entries`].
const CHUNK: usize = 64;

/// A block's buffer written by several threads at once, each sample's
/// columns by one ([`x86::input_transform`], [`x86::output_grad_transform`]).
#[derive(Clone, Copy)]
struct Shared(*mut f32);

// SAFETY: the threads holding copies write disjoint values, and nothing
// reads the buffer until they have all finished.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    /// The pointer (a method, so that closures capture the whole `Send` value).
    fn ptr(self) -> *mut f32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn values(len: usize, rng: &mut Rng) -> Vec<f32> {
        (0..len).map(|_| rng.range(-1.0, 1.0)).collect()
    }

    /// The direct sums in f64, and the sums of their terms' magnitudes.
    fn reference(dy: &[f32], x: &[f32], g: &ConvGeom, o: usize, n: usize) -> (Vec<f64>, Vec<f64>) {
        let (c, h, w) = (g.c, g.h, g.w);
        let (mut dw, mut scale) = (vec![0.0; o * c * 9], vec![0.0; o * c * 9]);
        for s in 0..n {
            for oc in 0..o {
                for ic in 0..c {
                    for ki in 0..3 {
                        for kj in 0..3 {
                            let at = (oc * c + ic) * 9 + 3 * ki + kj;
                            for r in 0..h {
                                for q in 0..w {
                                    let (ir, iq) =
                                        ((r + ki).wrapping_sub(1), (q + kj).wrapping_sub(1));
                                    if ir >= h || iq >= w {
                                        continue;
                                    }
                                    let term = x[((s * c + ic) * h + ir) * w + iq] as f64
                                        * dy[((s * o + oc) * h + r) * w + q] as f64;
                                    dw[at] += term;
                                    scale[at] += term.abs();
                                }
                            }
                        }
                    }
                }
            }
        }
        (dw, scale)
    }

    /// Rows of 8 and of 16 tiles, blocks of one and of several samples
    /// with a ragged last block, one and three threads: the direct sums to
    /// within the forward F(4x4)'s rounding.
    #[test]
    fn matches_the_direct_sums_up_to_rounding() {
        let mut rng = Rng::seed(41);
        let mut checked = 0;
        for (c, h, w, o, n) in [(16, 8, 32, 32, 11), (24, 4, 64, 24, 3), (8, 16, 64, 64, 2)] {
            let g = ConvGeom::new((c, h, w), (3, 3), (1, 1), (1, 1)).unwrap();
            if !weight_grad_applies(&g, o, n) {
                continue;
            }
            let x = values(n * g.in_len(), &mut rng);
            let dy = values(n * o * h * w, &mut rng);
            let (want, scale) = reference(&dy, &x, &g, o, n);
            for threads in [1, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let mut dw = vec![f32::NAN; want.len()];
                pool.install(|| weight_grad_winograd4(&dy, &x, &g, o, &mut dw));
                let worst = dw
                    .iter()
                    .zip(&want)
                    .zip(&scale)
                    .map(|((&got, &want), &s)| (got as f64 - want).abs() / s)
                    .fold(0.0, f64::max);
                assert!(
                    worst <= 2e-5,
                    "{g:?} o {o} n {n} threads {threads}: {worst:e}"
                );
                checked += 1;
            }
        }
        if checked == 0 {
            eprintln!("skipped: no AVX-512F or AVX2");
        }
    }

    /// The AVX2 build gives the AVX-512 build's bits (where the CPU runs
    /// both), rows of 8 and of 16 tiles.
    #[test]
    fn the_builds_agree() {
        let kernels = Kernel::all_available();
        if kernels.len() < 2 {
            eprintln!("skipped: the CPU runs {kernels:?}");
            return;
        }
        let mut rng = Rng::seed(43);
        for (c, h, w, o, n) in [(16, 8, 32, 48, 9), (32, 4, 64, 16, 3)] {
            let g = ConvGeom::new((c, h, w), (3, 3), (1, 1), (1, 1)).unwrap();
            let x = values(n * g.in_len(), &mut rng);
            let dy = values(n * o * h * w, &mut rng);
            let outs: Vec<Vec<u32>> = kernels
                .iter()
                .map(|&k| {
                    let mut dw = vec![0.0; o * c * 9];
                    weight_grad_on(k, &dy, &x, &g, o, &mut dw);
                    dw.iter().map(|v| v.to_bits()).collect()
                })
                .collect();
            assert!(outs.windows(2).all(|w| w[0] == w[1]), "{g:?} o {o}");
        }
    }

    /// The thread count changes no bit.
    #[test]
    fn same_bits_on_any_thread_count() {
        let mut rng = Rng::seed(42);
        let g = ConvGeom::new((16, 8, 32), (3, 3), (1, 1), (1, 1)).unwrap();
        let (n, o) = (19, 48);
        if !weight_grad_applies(&g, o, n) {
            eprintln!("skipped: no AVX-512F or AVX2");
            return;
        }
        let x = values(n * g.in_len(), &mut rng);
        let dy = values(n * o * 8 * 32, &mut rng);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut dw = vec![0.0; o * 16 * 9];
            pool.install(|| weight_grad_winograd4(&dy, &x, &g, o, &mut dw));
            dw.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(2));
        assert_eq!(run(1), run(5));
    }
}
