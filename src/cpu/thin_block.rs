//! A thin CRNN block in evaluation mode, in one pass: a 3x3 convolution
//! of at most [`MAX_CHANNELS`] input channels (stride 1, padding 1, no
//! bias), BatchNorm on running statistics, ReLU and a 2x2 max-pool of
//! stride 2, on AVX-512 or AVX2 — a CRNN's first block, and `crnn-s`'s
//! second where Winograd F(4x4) does not take it.
//!
//! Separately, the convolution writes O full-size planes, BatchNorm and
//! ReLU read and write them again and the pool reads them a third time;
//! with few input channels the convolution itself is only 9-72
//! multiply-adds per value, so those passes and the zeroing of the planes
//! were much of the block (a `crnn-s` line: b1 28 µs of its 240, b2 40).
//! Here two rows of 32 output columns of each channel are computed,
//! normalised, and pooled to 16 values before anything is stored, from the
//! zero-padded input planes in L1, each input vector shared by four output
//! channels (b2 at batch 1: 27 µs with two, 23-24 with four; b1 9-10 µs,
//! 1.02-1.27x the kernel for one input channel that held its rows in
//! registers, which this replaced).
//!
//! Every value is computed as the separate ops compute it: the fused
//! multiply-add chain over the taps in (channel, kernel row, kernel column)
//! order from zero, padding taps included as zeros; then
//! `max((v - mean) * scale + beta, 0)` with `scale = rstd * gamma`; then the
//! window's maximum (after the ReLU there is no NaN and no -0, so the order
//! of the maxima does not matter). The block gives their bits (tested).

use super::batchnorm2d::ChannelAffine;
use super::conv2d::ConvGeom;
use super::scratch::with_scratch;
use super::small_gemm::Kernel;
use rayon::prelude::*;
use std::cell::Cell;
use std::mem::MaybeUninit;

/// Whether [`thin_block_eval`] runs the convolution `g` followed by a 2x2
/// stride-2 pool on this CPU: 1 to [`MAX_CHANNELS`] input channels, 3x3,
/// stride 1, padding 1, even height and width, and AVX-512F or AVX2 with
/// FMA (the two builds give the same bits).
pub fn applies(g: &ConvGeom) -> bool {
    (1..=MAX_CHANNELS).contains(&g.c)
        && (g.kh, g.kw, g.sh, g.sw, g.ph, g.pw) == (3, 3, 1, 1, 1, 1)
        && g.h >= 2
        && g.w >= 2
        && g.h.is_multiple_of(2)
        && g.w.is_multiple_of(2)
        && Kernel::best().is_some()
}

/// The most input channels taken (`crnn-s` b2: 27 µs against 40 for the
/// separate ops at batch 1, 0.92 against 1.46 ms at batch 32; with many
/// more the padded planes a tap reads outgrow L1).
pub const MAX_CHANNELS: usize = 8;

thread_local! {
    /// Each thread's zero-padded input plane.
    static PADDED: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Row length of the padded plane for width `w`: 16 zeros on the left (so
/// the data starts on a cache line), the row, at least 32 zeros on the
/// right (the last 32-column group reads up to 31 columns past the row).
fn padded_row(w: usize) -> usize {
    (16 + w + 32).next_multiple_of(16)
}

/// `y` (N, O, H/2, W/2) = pool(relu(affine(conv(x, weight)))) for `x`
/// (N, C, H, W) and `weight` (O, C, 3, 3), samples in parallel (a lone
/// sample's output channels shared among the threads). Writes every value
/// of `y`, which may start uninitialised (a vector not zeroed first).
///
/// Panics unless [`applies`] holds for `g` and the slices fit.
pub fn thin_block_eval(
    x: &[f32],
    g: &ConvGeom,
    weight: &[f32],
    o: usize,
    affine: ChannelAffine,
    y: &mut [MaybeUninit<f32>],
) {
    let kernel = Kernel::best().expect("thin_block_eval: no AVX2 or AVX-512");
    eval_on(kernel, x, g, weight, o, affine, y);
}

/// [`thin_block_eval`] on the build `kernel`, which the CPU runs.
fn eval_on(
    kernel: Kernel,
    x: &[f32],
    g: &ConvGeom,
    weight: &[f32],
    o: usize,
    affine: ChannelAffine,
    y: &mut [MaybeUninit<f32>],
) {
    assert!(
        kernel.runs(),
        "thin_block_eval: the CPU does not run {kernel:?}"
    );
    assert!(applies(g), "thin_block_eval: geometry {g:?} not handled");
    let (in_len, out_len) = (g.in_len(), o * (g.h / 2) * (g.w / 2));
    assert!(weight.len() >= 9 * g.c * o && affine.mean.len() >= o);
    assert!(affine.scale.len() >= o && affine.beta.len() >= o);
    let n = y.len() / out_len.max(1);
    assert!(x.len() >= n * in_len && y.len() == n * out_len);
    let plane_out = (g.h / 2) * (g.w / 2);
    let threads = rayon::current_num_threads();
    // A lone sample's output channels are shared among the threads (each
    // channel's values are computed the same way in any share).
    let share = if n == 1 && threads > 1 {
        o.div_ceil(threads)
    } else {
        o
    };
    let run = |(xs, ys): (&[f32], &mut [MaybeUninit<f32>])| {
        let len = g.c * (g.h + 2) * padded_row(g.w) + 16;
        with_scratch(&PADDED, len, |padded| {
            pad_planes(xs, g, padded);
            let planes = (&*padded, g.c, g.h, g.w);
            let channels = |o0: usize, ys: &mut [MaybeUninit<f32>]| {
                let count = ys.len() / plane_out.max(1);
                let affine = ChannelAffine {
                    mean: &affine.mean[o0..],
                    scale: &affine.scale[o0..],
                    beta: &affine.beta[o0..],
                };
                let weight = &weight[9 * g.c * o0..];
                // SAFETY: the CPU runs `kernel` (checked); `weight` and
                // `affine` hold the `count` channels from o0 (checked for
                // all `o` above), `ys` their planes.
                unsafe {
                    match kernel {
                        Kernel::Avx512 => x86::sample_channels(planes, weight, count, affine, ys),
                        Kernel::Avx2 => {
                            x86::sample_channels_avx2(planes, weight, count, affine, ys)
                        }
                    }
                }
            };
            if share < o {
                ys.par_chunks_mut(share * plane_out)
                    .enumerate()
                    .for_each(|(part, ys)| channels(part * share, ys));
            } else {
                channels(0, ys);
            }
        })
    };
    if n == 1 {
        run((&x[..in_len], y));
    } else {
        x.par_chunks(in_len)
            .zip(y.par_chunks_mut(out_len))
            .for_each(run);
    }
}

/// The `c` planes of one sample `x` (c, h, w) into `padded`: each in
/// (h + 2) rows of [`padded_row`] values, zero around the data.
fn pad_planes(x: &[f32], g: &ConvGeom, padded: &mut [f32]) {
    let (h, w, ld) = (g.h, g.w, padded_row(g.w));
    padded.fill(0.0);
    for (ic, xc) in x.chunks_exact(h * w).take(g.c).enumerate() {
        for (r, row) in xc.chunks_exact(w).enumerate() {
            let at = ic * (h + 2) * ld + (r + 1) * ld + 16;
            padded[at..at + w].copy_from_slice(row);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{padded_row, ChannelAffine};
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    /// Channel `ch`'s two conv rows of 32 columns `acc` ([row][vector])
    /// through the affine map and ReLU, pooled 2x2 into the 16 values at
    /// `at` (the lanes of `mask`).
    ///
    /// # Safety
    /// AVX-512F; `ch` within the affine map; `at` valid for the masked lanes.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn pool_store(
        acc: [[__m512; 2]; 2],
        affine: ChannelAffine,
        ch: usize,
        at: *mut f32,
        mask: __mmask16,
    ) {
        let even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
        let odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
        let zero = _mm512_setzero_ps();
        // SAFETY: forwarded from the caller.
        unsafe {
            let m = _mm512_set1_ps(*affine.mean.get_unchecked(ch));
            let s = _mm512_set1_ps(*affine.scale.get_unchecked(ch));
            let b = _mm512_set1_ps(*affine.beta.get_unchecked(ch));
            let act = |v: __m512| {
                _mm512_max_ps(
                    _mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(v, m), s), b),
                    zero,
                )
            };
            let rows: [__m512; 2] =
                std::array::from_fn(|v| _mm512_max_ps(act(acc[0][v]), act(acc[1][v])));
            let pooled = _mm512_max_ps(
                _mm512_permutex2var_ps(rows[0], even, rows[1]),
                _mm512_permutex2var_ps(rows[0], odd, rows[1]),
            );
            _mm512_mask_storeu_ps(at, mask, pooled);
        }
    }

    /// One sample of `c` padded input planes (each (H + 2) rows of
    /// [`padded_row`]) into `y` (O, H/2, W/2). The input vectors are read
    /// from the planes (L1) at each tap and shared by four output channels
    /// at a time when their count is a multiple of four (16 accumulator
    /// chains, which hide the FMA latency that 8 left bare: `crnn-s` b2
    /// 1.14-1.16x), else by two (fewer repeated channels in the last group).
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn sample_channels(
        (padded, c, h, w): (&[f32], usize, usize, usize),
        weight: &[f32],
        o: usize,
        affine: ChannelAffine,
        y: &mut [MaybeUninit<f32>],
    ) {
        // SAFETY: forwarded from the caller.
        unsafe {
            if o.is_multiple_of(4) {
                sample_channel_groups::<4>(padded, c, h, w, weight, o, affine, y)
            } else {
                sample_channel_groups::<2>(padded, c, h, w, weight, o, affine, y)
            }
        }
    }

    /// [`sample_channels`] with the output channels `G` at a time.
    ///
    /// # Safety
    /// As [`sample_channels`].
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn sample_channel_groups<const G: usize>(
        padded: &[f32],
        c: usize,
        h: usize,
        w: usize,
        weight: &[f32],
        o: usize,
        affine: ChannelAffine,
        y: &mut [MaybeUninit<f32>],
    ) {
        let ld = padded_row(w);
        let plane = (h + 2) * ld;
        let (ho, wo) = (h / 2, w / 2);
        let zero = _mm512_setzero_ps();
        // SAFETY: every load reads padded rows 2 pr ..= 2 pr + 3 <= H + 1 of
        // a plane ic < c at columns 15 ..= 16 + x0 + 32 < ld (x0 < w); weights
        // (o, c, 9) are read at channels below o; stores are masked to the
        // live pooled columns of row pr of each channel's plane in `y`.
        unsafe {
            for pr in 0..ho {
                for x0 in (0..w).step_by(32) {
                    let live = (wo - x0 / 2).min(16);
                    let mask = ((1u32 << live) - 1) as __mmask16;
                    for o0 in (0..o).step_by(G) {
                        // The group's channels; past the last, repeats of it.
                        let group: [usize; G] = std::array::from_fn(|j| (o0 + j).min(o - 1));
                        // [output channel of the group][conv row][vector]
                        let mut acc = [[[zero; 2]; 2]; G];
                        for ic in 0..c {
                            let top = padded.as_ptr().add(ic * plane + 2 * pr * ld + 16 + x0);
                            let k = group.map(|oc| weight.as_ptr().add((oc * c + ic) * 9));
                            // Taps in (channel, kernel row, kernel column) order.
                            for tap in 0..9 {
                                let (ky, kx) = (tap / 3, tap % 3);
                                let wv = k.map(|k| _mm512_set1_ps(*k.add(tap)));
                                for cr in 0..2 {
                                    for v in 0..2 {
                                        let at = top.add((cr + ky) * ld + 16 * v + kx).sub(1);
                                        let xv = _mm512_loadu_ps(at);
                                        for (acc, wv) in acc.iter_mut().zip(wv) {
                                            acc[cr][v] = _mm512_fmadd_ps(wv, xv, acc[cr][v]);
                                        }
                                    }
                                }
                            }
                        }
                        for (&ch, acc) in group.iter().zip(&acc).take(o - o0) {
                            let at = y
                                .as_mut_ptr()
                                .cast::<f32>()
                                .add(ch * ho * wo + pr * wo + x0 / 2);
                            pool_store(*acc, affine, ch, at, mask);
                        }
                    }
                }
            }
        }
    }

    /// Channel `ch`'s two conv rows of 16 columns `acc` ([row][vector])
    /// through the affine map and ReLU, pooled 2x2 into the first `live`
    /// of the 8 values at `at`.
    ///
    /// # Safety
    /// AVX2; `ch` within the affine map; `at` valid for `live` values.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn pool_store_avx2(
        acc: [[__m256; 2]; 2],
        affine: ChannelAffine,
        ch: usize,
        at: *mut f32,
        live: usize,
    ) {
        // SAFETY: forwarded from the caller.
        unsafe {
            let zero = _mm256_setzero_ps();
            let m = _mm256_set1_ps(*affine.mean.get_unchecked(ch));
            let s = _mm256_set1_ps(*affine.scale.get_unchecked(ch));
            let b = _mm256_set1_ps(*affine.beta.get_unchecked(ch));
            let act = |v: __m256| {
                _mm256_max_ps(
                    _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(v, m), s), b),
                    zero,
                )
            };
            let rows: [__m256; 2] =
                std::array::from_fn(|v| _mm256_max_ps(act(acc[0][v]), act(acc[1][v])));
            // Even and odd columns: [0 2 8 10 | 4 6 12 14] and [1 3 9 11 | 5 7 13 15].
            let even = _mm256_shuffle_ps::<0x88>(rows[0], rows[1]);
            let odd = _mm256_shuffle_ps::<0xDD>(rows[0], rows[1]);
            let pooled = _mm256_castpd_ps(_mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(
                _mm256_max_ps(even, odd),
            )));
            if live == 8 {
                _mm256_storeu_ps(at, pooled);
            } else {
                let lanes: [i32; 16] = std::array::from_fn(|l| -((l < 8) as i32));
                let mask = _mm256_loadu_si256(lanes.as_ptr().add(8 - live).cast());
                _mm256_maskstore_ps(at, mask, pooled);
            }
        }
    }

    /// [`sample_channels`] on AVX2: two conv rows of 16 columns of two
    /// output channels at a time (8 accumulator chains), the same FMAs in
    /// the same order per value.
    ///
    /// # Safety
    /// AVX2 and FMA; otherwise as [`sample_channels`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn sample_channels_avx2(
        (padded, c, h, w): (&[f32], usize, usize, usize),
        weight: &[f32],
        o: usize,
        affine: ChannelAffine,
        y: &mut [MaybeUninit<f32>],
    ) {
        const G: usize = 2;
        let ld = padded_row(w);
        let plane = (h + 2) * ld;
        let (ho, wo) = (h / 2, w / 2);
        // SAFETY: every load reads padded rows 2 pr ..= 2 pr + 3 <= H + 1 of
        // a plane ic < c at columns 15 ..= 16 + x0 + 16 < ld (x0 < w); weights
        // (o, c, 9) are read at channels below o; stores reach the live
        // pooled columns of row pr of each channel's plane in `y`.
        unsafe {
            let zero = _mm256_setzero_ps();
            for pr in 0..ho {
                for x0 in (0..w).step_by(16) {
                    let live = (wo - x0 / 2).min(8);
                    for o0 in (0..o).step_by(G) {
                        // The group's channels; past the last, repeats of it.
                        let group: [usize; G] = std::array::from_fn(|j| (o0 + j).min(o - 1));
                        // [output channel of the group][conv row][vector]
                        let mut acc = [[[zero; 2]; 2]; G];
                        for ic in 0..c {
                            let top = padded.as_ptr().add(ic * plane + 2 * pr * ld + 16 + x0);
                            let k = group.map(|oc| weight.as_ptr().add((oc * c + ic) * 9));
                            // Taps in (channel, kernel row, kernel column) order.
                            for tap in 0..9 {
                                let (ky, kx) = (tap / 3, tap % 3);
                                let wv = k.map(|k| _mm256_broadcast_ss(&*k.add(tap)));
                                for cr in 0..2 {
                                    for v in 0..2 {
                                        let at = top.add((cr + ky) * ld + 8 * v + kx).sub(1);
                                        let xv = _mm256_loadu_ps(at);
                                        for (acc, wv) in acc.iter_mut().zip(wv) {
                                            acc[cr][v] = _mm256_fmadd_ps(wv, xv, acc[cr][v]);
                                        }
                                    }
                                }
                            }
                        }
                        for (&ch, acc) in group.iter().zip(&acc).take(o - o0) {
                            let at = y
                                .as_mut_ptr()
                                .cast::<f32>()
                                .add(ch * ho * wo + pr * wo + x0 / 2);
                            pool_store_avx2(*acc, affine, ch, at, live);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod x86 {
    use super::ChannelAffine;

    /// Never called: [`super::applies`] is false off x86-64.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn sample_channels(
        _: (&[f32], usize, usize, usize),
        _: &[f32],
        _: usize,
        _: ChannelAffine,
        _: &mut [std::mem::MaybeUninit<f32>],
    ) {
        unreachable!("thin_block_eval called without AVX-512")
    }

    /// Never called: [`super::applies`] is false off x86-64.
    pub(super) unsafe fn sample_channels_avx2(
        _: (&[f32], usize, usize, usize),
        _: &[f32],
        _: usize,
        _: ChannelAffine,
        _: &mut [std::mem::MaybeUninit<f32>],
    ) {
        unreachable!("thin_block_eval called without AVX2")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::batchnorm2d::batchnorm2d_relu_inplace;
    use crate::cpu::conv2d::conv2d_forward_tapwise;
    use crate::cpu::gemm::testing::bits;
    use crate::cpu::maxpool2d::maxpool2d_forward;
    use crate::cpu::uninit::testing::written_over_nan;
    use crate::rng::Rng;

    fn values(n: usize, rng: &mut Rng, scale: f32) -> Vec<f32> {
        (0..n).map(|_| rng.range(-scale, scale)).collect()
    }

    /// The separate kernels: convolution, BatchNorm + ReLU in place, pool.
    fn separate(x: &[f32], g: &ConvGeom, w: &[f32], o: usize, a: ChannelAffine) -> Vec<f32> {
        let n = x.len() / g.in_len();
        let mut y = vec![0.0; n * o * g.h * g.w];
        conv2d_forward_tapwise(x, g, w, o, None, &mut y);
        let ones = vec![1.0; o];
        batchnorm2d_relu_inplace(&mut y, o, g.h * g.w, a.mean, a.scale, &ones, a.beta);
        let pool = ConvGeom::new((o, g.h, g.w), (2, 2), (2, 2), (0, 0)).unwrap();
        let mut pooled = vec![0.0; n * o * (g.h / 2) * (g.w / 2)];
        maxpool2d_forward(&y, &pool, &mut pooled, None);
        pooled
    }

    /// On every build and 1 to 3 threads (a lone sample's channels shared
    /// among them).
    #[test]
    fn one_pass_gives_the_bits_of_the_separate_kernels() {
        let mut rng = Rng::seed(17);
        for (n, c, o, h, w) in [
            (1, 1, 8, 32, 128),
            (3, 1, 5, 6, 34),
            (2, 1, 1, 2, 2),
            (1, 1, 32, 4, 64),
            (4, 1, 3, 8, 18),
            (1, 8, 16, 16, 64),
            (2, 3, 5, 6, 34),
            (1, 3, 8, 6, 34),
            (1, 2, 1, 4, 4),
        ] {
            let g = ConvGeom::new((c, h, w), (3, 3), (1, 1), (1, 1)).unwrap();
            if !applies(&g) {
                eprintln!("no AVX2 or AVX-512: the one-pass block is not run here");
                return;
            }
            let x = values(n * c * h * w, &mut rng, 1.0);
            let wt = values(o * c * 9, &mut rng, 0.5);
            let (mean, scale, beta) = (
                values(o, &mut rng, 0.2),
                values(o, &mut rng, 2.0),
                values(o, &mut rng, 0.3),
            );
            let a = ChannelAffine {
                mean: &mean,
                scale: &scale,
                beta: &beta,
            };
            let want = separate(&x, &g, &wt, o, a);
            for (kernel, threads) in Kernel::all_available()
                .into_iter()
                .flat_map(|k| [1, 2, 3].map(|t| (k, t)))
            {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let y = written_over_nan(n * o * (h / 2) * (w / 2), |y| {
                    pool.install(|| eval_on(kernel, &x, &g, &wt, o, a, y))
                });
                assert_eq!(
                    bits(&y),
                    bits(&want),
                    "{kernel:?} on {threads} threads: n {n} c {c} o {o} {h}x{w}"
                );
                if y.len() >= 64 {
                    assert!(y.iter().any(|&v| v > 0.0) && y.contains(&0.0));
                }
            }
        }
    }

    #[test]
    fn other_geometries_are_not_taken() {
        for (c, h, w, k, p) in [
            (9, 8, 8, 3, 1),
            (1, 7, 8, 3, 1),
            (1, 8, 9, 3, 1),
            (1, 8, 8, 5, 2),
        ] {
            let g = ConvGeom::new((c, h, w), (k, k), (1, 1), (p, p)).unwrap();
            assert!(!applies(&g), "{g:?}");
        }
    }
}
