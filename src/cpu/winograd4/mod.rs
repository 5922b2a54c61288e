//! Winograd F(4x4, 3x3) forward convolution through a 3x3, stride-1,
//! padding-1 layer: a recorded forward pass, the input gradient run as a
//! forward convolution, an evaluation block with its BatchNorm, ReLU and
//! max-pool; and the weight gradient ([`weight_grad_winograd4`]).
//!
//! Each output channel is cut into 4x4 tiles; a tile of output channel o
//! is `Aᵀ [Σ_c U_oc ⊙ V_c] A` with `U_oc = G k_oc Gᵀ` (6x6) and
//! `V_c = Bᵀ d_c B` for the 6x6 patch of padded input under the tile
//! (interpolation points 0, ±1, ±2 and ∞): 36 multiplies per tile and
//! channel pair where F(2x2, 3x3) ([`super::winograd`]) needs 64 for the
//! same 16 outputs and the direct sum 144. On a `crnn-s` line's b3 and b4
//! that is 0.56x the products of F(2x2), with transforms of about the same
//! cost per output.
//!
//! The price is rounding: the transforms multiply by up to 8 and the
//! kernel's by 1/24, so outputs are the convolution to within about 1e-5
//! of the sum of the magnitudes of their terms (F(2x2) keeps 8e-6 and only
//! adds, subtracts and halves), far inside what training or a trained
//! model notices (cuDNN's F(4x4) makes the same trade). The choice depends
//! on the geometry and the output channels only ([`applies`]), so a
//! recorded forward pass computes the same values as an evaluation (its
//! backward pass is that of the exact convolution).
//!
//! A few samples per thread (enough for three strips of 16 tiles): each
//! one's padded input rows split into four phases (column `4k + p` at
//! `phase_p[k]`) and its transformed input `V` of all tiles (36 matrices,
//! c x tiles); then per block of 16 output channels the 36 products of
//! two or three strips at once (a lone strip: 16 rows by one strip), and
//! each strip's output transform, with the bias, an evaluation BatchNorm
//! and ReLU and a max-pool ([`Pool`]) applied before anything is stored.
//! A lone sample on several threads (a line) transforms the two halves of
//! its channels on two threads and shares its blocks among all of them,
//! or a single block's runs of strips (`crnn-s` b2: 16 outputs, four
//! strips). On a Zen 3 core's two threads a `crnn-s` line's best 93-94 vs
//! 99-100 µs in alternation (the medians follow the host's noise).
//! Tiles go 16 to a vector, a row of tiles at a time, or two rows of 8
//! tiles. A vector is one AVX-512 register or two AVX2 ones: the
//! transforms are written once for both (`x86`), the products have a
//! register tile per build (`avx2` for AVX2: 16 registers, not 32); the
//! two builds give the same bits. On an AMD EPYC (Zen 3, AVX2), against the
//! im2col products it replaces there, in one process in alternation: a
//! `crnn-s` line 1.45x, batch-32 inference 1.4x, distill-step 1.25x,
//! train-step 1.1-1.2x (and 1.1x more with the input gradient through it).

mod avx2;
mod weight_grad;
mod x86;

pub use weight_grad::{weight_grad_applies, weight_grad_winograd4};

use super::batchnorm2d::ChannelAffine;
use super::conv2d::ConvGeom;
use super::scratch::with_scratch;
use super::small_gemm::Kernel;
use super::uninit::as_slots;
use rayon::prelude::*;
use std::cell::Cell;
use std::mem::MaybeUninit;

/// Output channels per block of products (the rows of the register tile).
const ROWS: usize = 16;
/// Tiles per vector.
const LANES: usize = 16;

thread_local! {
    /// Each thread's phase-split padded rows of one input channel.
    static PHASES: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    /// Each thread's transformed input (36 x c x tiles).
    static V: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    /// Each thread's products of one block (36 x 16 x 16).
    static M: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Whether [`conv2d_winograd4_then`] computes `o` output channels of this
/// geometry on this CPU: a 3x3 kernel, stride 1, padding 1, height and
/// width multiples of 4 with 8 tiles per row (and an even number of rows
/// of tiles) or a multiple of 16, `o` a multiple of 16, and AVX-512F or
/// AVX2 with FMA (the two builds give the same bits).
pub fn computes(g: &ConvGeom, o: usize) -> bool {
    tiles_fit(g) && o > 0 && o.is_multiple_of(ROWS)
}

/// Whether this geometry's tiles fill the transforms' strips on this CPU:
/// [`computes`] but for the output channels.
fn tiles_fit(g: &ConvGeom) -> bool {
    let (rows, cols) = (g.h / 4, g.w / 4);
    (g.kh, g.kw, g.sh, g.sw, g.ph, g.pw) == (3, 3, 1, 1, 1, 1)
        && g.c > 0
        && g.h.is_multiple_of(4)
        && g.w.is_multiple_of(4)
        && rows > 0
        && ((cols == 8 && rows.is_multiple_of(2)) || (cols > 0 && cols.is_multiple_of(LANES)))
        && Kernel::best().is_some()
}

/// Fewer input channels keep the direct convolution (or a thin block).
pub const MIN_CHANNELS: usize = 8;

/// Whether `n` samples of this geometry with `o` output channels are
/// convolved here: [`computes`] and at least [`MIN_CHANNELS`] input
/// channels. On one thread, in one process in alternation: one `crnn-s`
/// line's b3 1.65-1.75x and b4 1.45-1.65x F(2x2) (itself 1.2-1.5x the
/// direct convolution there), b2 with its pool in the output transform
/// 1.25-1.45x the thin block; at batch 4 and 32 the `crnn-t` layers
/// 1.2-1.5x F(2x2) and the `crnn-s` ones 1.5-1.9x (each sample's products
/// are as small as a line's either way, so F(2x2) gains nothing from the
/// batch). `n` only has to be positive.
pub fn applies(g: &ConvGeom, n: usize, o: usize) -> bool {
    g.c >= MIN_CHANNELS && n > 0 && computes(g, o)
}

/// `G`, 6x3, of F(4x4, 3x3) for the points 0, 1, -1, 2, -2 (and ∞).
const G: [[f64; 3]; 6] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// `U`, 36 matrices (o x c): entry e = 6a + b of `G k Gᵀ` for every kernel
/// `k` (3x3) of `weight` (o, c, 3, 3), computed in f64 and rounded once.
/// Kernels go 64 at a time, tap-major, so that each step
/// is one loop over kernels that the compiler vectorises (a training step
/// transforms its weights at every call: 128 x 128 kernels in 0.53-0.59 ms
/// instead of 2.8 ms kernel by kernel, with the same operations in the
/// same order, so the same bits).
pub fn transform_weight(weight: &[f32], o: usize, c: usize) -> Vec<f32> {
    assert!(weight.len() >= o * c * 9, "winograd4: weight too short");
    let count = o * c;
    let mut u = vec![0.0f32; 36 * count];
    let mut taps = [[0.0f64; TRANSFORM_CHUNK]; 9];
    let mut gk = [[0.0f64; TRANSFORM_CHUNK]; 3];
    for start in (0..count).step_by(TRANSFORM_CHUNK) {
        let len = TRANSFORM_CHUNK.min(count - start);
        for (i, k) in weight[9 * start..9 * (start + len)]
            .chunks_exact(9)
            .enumerate()
        {
            for (t, &v) in k.iter().enumerate() {
                taps[t][i] = v as f64;
            }
        }
        for a in 0..6 {
            // Row a of G k, for every kernel: sum over r of G[a][r] k[r][s].
            for (s, gk) in gk.iter_mut().enumerate() {
                for i in 0..len {
                    gk[i] = (0..3).map(|r| G[a][r] * taps[3 * r + s][i]).sum();
                }
            }
            for b in 0..6 {
                let out = &mut u[(6 * a + b) * count + start..][..len];
                for (i, out) in out.iter_mut().enumerate() {
                    let v: f64 = (0..3).map(|s| gk[s][i] * G[b][s]).sum();
                    *out = v as f32;
                }
            }
        }
    }
    u
}

/// Kernels transformed together by [`transform_weight`].
const TRANSFORM_CHUNK: usize = 64;

/// A max-pool of stride equal to its window applied to each output tile
/// before it is stored (after the ReLU: values without NaN or -0, so the
/// order of the maxima does not matter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pool {
    /// No pooling: (h, w) planes.
    None,
    /// 2x1 windows, heights only: (h / 2, w) planes.
    Rows,
    /// 2x2 windows: (h / 2, w / 2) planes.
    Both,
}

impl Pool {
    /// The output plane of an (h, w) convolution.
    pub fn plane(self, h: usize, w: usize) -> (usize, usize) {
        match self {
            Pool::None => (h, w),
            Pool::Rows => (h / 2, w),
            Pool::Both => (h / 2, w / 2),
        }
    }
}

/// Convolves `n` samples `x` (n, c, h, w) with the transformed weight `u`
/// ([`transform_weight`]) into `y` (n, o, h, w), adding `bias` (o) and then,
/// with `relu_affine`, `max((v - mean) * scale + beta, 0)` per channel.
/// Samples run in parallel, up to three together on one thread (enough
/// for three strips of 16 tiles); a lone sample's blocks of 16 output
/// channels run in parallel instead (a `crnn-s` line on 2 threads of a
/// Zen 3 core pair: best 148-151 µs against 180-193 on one). Panics unless
/// [`computes`] holds and the slices fit.
pub fn conv2d_winograd4_then(
    x: &[f32],
    g: &ConvGeom,
    u: &[f32],
    o: usize,
    bias: Option<&[f32]>,
    relu_affine: Option<ChannelAffine>,
    y: &mut [f32],
) {
    // SAFETY: the kernels store f32 values only.
    let y = unsafe { as_slots(y) };
    conv2d_winograd4_pooled(x, g, u, o, bias, relu_affine, Pool::None, y);
}

/// [`conv2d_winograd4_then`] followed by `pool` into `y` (n, o, plane):
/// an evaluation block's convolution, BatchNorm, ReLU and max-pool in one
/// pass over the output. Writes every value of `y`, which may start
/// uninitialised (a vector not zeroed first). Panics unless
/// `relu_affine` is given with a pool.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_winograd4_pooled(
    x: &[f32],
    g: &ConvGeom,
    u: &[f32],
    o: usize,
    bias: Option<&[f32]>,
    relu_affine: Option<ChannelAffine>,
    pool: Pool,
    y: &mut [MaybeUninit<f32>],
) {
    let kernel = Kernel::best().expect("winograd4: no AVX2 or AVX-512");
    pooled_on(kernel, x, g, u, o, bias, relu_affine, pool, y);
}

/// [`conv2d_winograd4_pooled`] on the build `kernel`, which the CPU runs.
#[allow(clippy::too_many_arguments)]
fn pooled_on(
    kernel: Kernel,
    x: &[f32],
    g: &ConvGeom,
    u: &[f32],
    o: usize,
    bias: Option<&[f32]>,
    relu_affine: Option<ChannelAffine>,
    pool: Pool,
    y: &mut [MaybeUninit<f32>],
) {
    assert!(kernel.runs(), "winograd4: the CPU does not run {kernel:?}");
    assert!(
        computes(g, o),
        "winograd4: {g:?} with {o} outputs not computed"
    );
    assert!(
        pool == Pool::None || relu_affine.is_some(),
        "winograd4: a pool without the ReLU"
    );
    let (ph, pw) = pool.plane(g.h, g.w);
    let (in_len, out_len) = (g.in_len(), o * ph * pw);
    let n = y.len() / out_len;
    assert!(x.len() >= n * in_len && y.len() == n * out_len && u.len() >= 36 * o * g.c);
    assert!(bias.is_none_or(|b| b.len() >= o));
    assert!(relu_affine.is_none_or(|a| a.mean.len().min(a.scale.len()).min(a.beta.len()) >= o));
    let post = Post {
        bias,
        relu_affine,
        pool,
    };
    let group = Layout::of(g)
        .sample_group()
        .min(n.div_ceil(rayon::current_num_threads()));
    let some = |(xs, ys): (&[f32], &mut [MaybeUninit<f32>])| samples(kernel, xs, g, u, o, post, ys);
    if n <= group {
        some((&x[..n * in_len], y));
    } else {
        x[..n * in_len]
            .par_chunks(group * in_len)
            .zip(y.par_chunks_mut(group * out_len))
            .for_each(some);
    }
}

/// What each output value gets after `Aᵀ m A`.
#[derive(Clone, Copy)]
struct Post<'a> {
    bias: Option<&'a [f32]>,
    relu_affine: Option<ChannelAffine<'a>>,
    pool: Pool,
}

impl Post<'_> {
    /// Output channel `ch`'s bias, and its `[mean, scale, beta]` if any.
    fn of(&self, ch: usize) -> (f32, Option<[f32; 3]>) {
        (
            self.bias.map_or(0.0, |b| b[ch]),
            self.relu_affine
                .map(|a| [a.mean[ch], a.scale[ch], a.beta[ch]]),
        )
    }
}

/// The layout of one sample's tiles and buffers.
#[derive(Clone, Copy)]
struct Layout {
    /// Rows of tiles and tiles per row.
    rows: usize,
    cols: usize,
    /// Length of one phase of one padded row (slack past the data: zeros).
    phase: usize,
    /// Vectors of 16 tiles.
    strips: usize,
    /// Distance between the entries' matrices of `V` and of `M`.
    v_stride: usize,
    m_stride: usize,
}

impl Layout {
    fn of(g: &ConvGeom) -> Layout {
        let (rows, cols) = (g.h / 4, g.w / 4);
        let strips = rows * cols / LANES;
        Layout {
            rows,
            cols,
            phase: 8 * g.w.div_ceil(32) + LANES,
            strips,
            v_stride: g.c * strips * LANES + LANES,
            m_stride: ROWS * LANES + LANES,
        }
    }

    /// Samples convolved together on one thread: enough for the products
    /// to take three strips of 16 tiles at once (`x86::products_strips_512`, `avx2::products`)
    /// when a sample has fewer, and no more (their transformed inputs must
    /// stay in L2 while each block of `U` passes over them).
    fn sample_group(&self) -> usize {
        3usize.div_ceil(self.strips).max(1)
    }

    /// Values of the phase-split padded rows of one channel.
    fn channel_phases_len(&self) -> usize {
        (4 * self.rows + 2) * 4 * self.phase
    }
}

/// A few samples: each one's input transform, then per block of 16 output
/// channels the products of all their strips of 16 tiles, up to three
/// strips at a time, and each strip's output transform.
fn samples(
    kernel: Kernel,
    x: &[f32],
    g: &ConvGeom,
    u: &[f32],
    o: usize,
    post: Post,
    y: &mut [MaybeUninit<f32>],
) {
    let l = Layout::of(g);
    let c = g.c;
    let in_len = c * g.h * g.w;
    let n = x.len() / in_len;
    let (ph, pw) = post.pool.plane(g.h, g.w);
    let out_len = o * ph * pw;
    assert!(n > 0 && x.len() == n * in_len && y.len() >= n * out_len);
    let v_len = 36 * l.v_stride;
    with_scratch(&V, n * v_len, |v| {
        // Channels c0..c1 of sample `s` into its `V` (36 entries of c x tiles).
        let transform = |s: usize, (c0, c1): (usize, usize), vs: SharedOut| {
            with_scratch(&PHASES, l.channel_phases_len(), |phases| {
                // SAFETY: the CPU runs `kernel` (asserted by `pooled_on`);
                // `phases` holds the padded rows of one channel, `vs` the
                // sample's 36 entries, whose rows of c0..c1 only this call
                // touches.
                unsafe {
                    x86::input_transform(
                        kernel,
                        &x[s * in_len..(s + 1) * in_len],
                        (g.h, g.w),
                        c0..c1,
                        &l,
                        phases,
                        vs.ptr(),
                        l.strips * LANES,
                    )
                }
            })
        };
        if n == 1 && c > 1 && rayon::current_num_threads() > 1 {
            // A lone sample: its channels in two halves on two threads.
            let vs = SharedOut(v.as_mut_ptr());
            rayon::join(
                || transform(0, (0, c / 2), vs),
                || transform(0, (c / 2, c), vs),
            );
        } else {
            for (s, vs) in v.chunks_exact_mut(v_len).enumerate().take(n) {
                transform(s, (0, c), SharedOut(vs.as_mut_ptr()));
            }
        }
        let v: &[f32] = v;
        let blocks = o / ROWS;
        let block = Block {
            kernel,
            l: &l,
            c,
            o,
            u,
            v,
            samples: n,
            post,
            plane: ph * pw,
            pw,
        };
        if n == 1 && blocks > 1 && rayon::current_num_threads() > 1 {
            // A lone sample: its blocks of output channels (contiguous
            // planes) side by side on the pool's threads.
            y[..out_len]
                .par_chunks_mut(ROWS * ph * pw)
                .enumerate()
                .for_each(|(b, ys)| block.run(ROWS * b, ys));
        } else {
            for o0 in (0..o).step_by(ROWS) {
                block.run(o0, &mut y[o0 * ph * pw..]);
            }
        }
    });
}

/// A buffer written from several threads at once, each to values of its
/// own: a sample's transformed input `V` ([`x86::input_transform`], the
/// rows of a range of channels), a lone block's outputs (a run's strips).
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);

// SAFETY: the threads holding copies write disjoint values (the contracts
// of `x86::input_transform` and `x86::output_transform`), and nothing reads
// the buffer until they have all finished.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The pointer (a method, so that closures capture the whole `Send` value).
    fn ptr(self) -> *mut f32 {
        self.0
    }
}

/// What one block of 16 output channels reads: the transformed inputs `v`
/// of a few samples (36 entries each), the whole `u`.
struct Block<'a> {
    kernel: Kernel,
    l: &'a Layout,
    c: usize,
    o: usize,
    u: &'a [f32],
    v: &'a [f32],
    samples: usize,
    post: Post<'a>,
    /// Values of one (pooled) output plane, and of one of its rows.
    plane: usize,
    pw: usize,
}

impl Block<'_> {
    /// The products of output channels `o0..o0 + 16` with every strip of
    /// the samples, up to three strips at a time, and each strip's output
    /// transform into `ys`: the outputs from channel `o0` of the first
    /// sample on (sample s's channel `o0 + r` at `(s * o + r) * plane`).
    fn run(&self, o0: usize, ys: &mut [MaybeUninit<f32>]) {
        let (l, c, o, kernel) = (self.l, self.c, self.o, self.kernel);
        let (v_len, m_len) = (36 * l.v_stride, 36 * l.m_stride);
        // Every (sample, strip), in runs of 2 or 3 (or a lone strip).
        let strips = self.samples * l.strips;
        let runs = if strips == 1 { 1 } else { strips.div_ceil(3) };
        let uo = &self.u[o0 * c..];
        let v = self.v;
        let (ys_len, out) = (ys.len(), SharedOut(ys.as_mut_ptr().cast()));
        let one_run = |run: usize| {
            with_scratch(&M, 3 * m_len, |m| {
                let (first, count) = (
                    strips * run / runs,
                    strips * (run + 1) / runs - strips * run / runs,
                );
                let at = |i: usize| {
                    let (sample, strip) = ((first + i) / l.strips, (first + i) % l.strips);
                    (sample, strip, &v[sample * v_len + strip * LANES..])
                };
                let (m0, rest) = m.split_at_mut(m_len);
                let (m1, m2) = rest.split_at_mut(m_len);
                // SAFETY: the CPU runs `kernel` (asserted by `pooled_on`);
                // rows o0..o0 + 16 of each U entry (c values each), each
                // strip of each V entry, and each `m` block holds 36
                // blocks of 16 x 16.
                unsafe {
                    match (kernel, count) {
                        (Kernel::Avx512, 1) => x86::products_512(uo, o * c, c, at(0).2, l, m0),
                        (Kernel::Avx512, 2) => x86::products_strips_512::<2>(
                            uo,
                            o * c,
                            c,
                            [at(0).2, at(1).2],
                            l,
                            [m0, m1],
                        ),
                        (Kernel::Avx512, _) => x86::products_strips_512::<3>(
                            uo,
                            o * c,
                            c,
                            [at(0).2, at(1).2, at(2).2],
                            l,
                            [m0, m1, m2],
                        ),
                        (Kernel::Avx2, 1) => avx2::products::<1>(uo, o * c, c, [at(0).2], l, [m0]),
                        (Kernel::Avx2, 2) => {
                            avx2::products::<2>(uo, o * c, c, [at(0).2, at(1).2], l, [m0, m1])
                        }
                        (Kernel::Avx2, _) => avx2::products::<3>(
                            uo,
                            o * c,
                            c,
                            [at(0).2, at(1).2, at(2).2],
                            l,
                            [m0, m1, m2],
                        ),
                    }
                }
                for (i, ms) in m.chunks_exact(m_len).take(count).enumerate() {
                    let (sample, strip, _) = at(i);
                    for row in 0..ROWS {
                        let at = (sample * o + row) * self.plane;
                        assert!(at + self.plane <= ys_len);
                        // SAFETY: as above; the strip's tiles lie in the
                        // plane, inside `ys`, and no other run writes them.
                        unsafe {
                            x86::output_transform(
                                kernel,
                                ms,
                                l,
                                (row, strip),
                                self.post.of(o0 + row),
                                self.post.pool,
                                self.pw,
                                out.ptr().add(at),
                            )
                        };
                    }
                }
            })
        };
        if self.samples == 1 && o == ROWS && runs > 1 && rayon::current_num_threads() > 1 {
            // A lone sample's only block: its runs of strips (disjoint
            // tiles, so disjoint outputs) on the pool's threads.
            (0..runs).into_par_iter().for_each(one_run);
        } else {
            (0..runs).for_each(one_run);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::gemm::testing::{bits, values};
    use crate::cpu::uninit::testing::written_over_nan;
    use crate::rng::Rng;

    /// The AVX2 build gives the AVX-512 build's bits (where the CPU runs
    /// both): every strip count of the products, rows of 8 and 16 tiles,
    /// each pool, with and without bias and BatchNorm.
    #[test]
    fn avx2_build_gives_the_avx512_bits() {
        if !(Kernel::Avx512.runs() && Kernel::Avx2.runs()) {
            eprintln!("skipped: the CPU does not run both builds");
            return;
        }
        let mut rng = Rng::seed(13);
        for (g, o) in [
            (geom(16, 8, 32), 32),
            (geom(8, 16, 64), 16),
            (geom(3, 4, 128), 16),
        ] {
            let u = transform_weight(&values(o * g.c * 9, &mut rng), o, g.c);
            let bias = values(o, &mut rng);
            let (mean, beta) = (values(o, &mut rng), values(o, &mut rng));
            let scale = values(o, &mut rng);
            let affine = ChannelAffine {
                mean: &mean,
                scale: &scale,
                beta: &beta,
            };
            for n in 1..=4 {
                let x = values(n * g.c * g.h * g.w, &mut rng);
                for (pool, relu_affine) in [
                    (Pool::None, None),
                    (Pool::None, Some(affine)),
                    (Pool::Rows, Some(affine)),
                    (Pool::Both, Some(affine)),
                ] {
                    let (ph, pw) = pool.plane(g.h, g.w);
                    let run = |kernel| {
                        let b = Some(&bias[..]);
                        bits(&written_over_nan(n * o * ph * pw, |y| {
                            pooled_on(kernel, &x, &g, &u, o, b, relu_affine, pool, y)
                        }))
                    };
                    assert_eq!(
                        run(Kernel::Avx2),
                        run(Kernel::Avx512),
                        "{g:?} o {o} n {n} {pool:?}"
                    );
                }
            }
        }
    }

    fn geom(c: usize, h: usize, w: usize) -> ConvGeom {
        ConvGeom {
            c,
            h,
            w,
            kh: 3,
            kw: 3,
            sh: 1,
            sw: 1,
            ph: 1,
            pw: 1,
            ho: h,
            wo: w,
        }
    }

    /// The direct sum in f64 per output, and the sum of its terms' magnitudes.
    fn reference(x: &[f32], g: &ConvGeom, w: &[f32], o: usize) -> (Vec<f64>, Vec<f64>) {
        let (h, wd, c) = (g.h, g.w, g.c);
        let mut y = vec![0.0; o * h * wd];
        let mut scale = vec![0.0; o * h * wd];
        for oc in 0..o {
            for r in 0..h {
                for col in 0..wd {
                    let (mut s, mut a) = (0.0f64, 0.0f64);
                    for ic in 0..c {
                        for i in 0..3 {
                            for j in 0..3 {
                                let (ir, jc) = ((r + i) as isize - 1, (col + j) as isize - 1);
                                if ir < 0 || jc < 0 || ir >= h as isize || jc >= wd as isize {
                                    continue;
                                }
                                let xv = x[ic * h * wd + ir as usize * wd + jc as usize] as f64;
                                let t = w[((oc * c + ic) * 3 + i) * 3 + j] as f64 * xv;
                                s += t;
                                a += t.abs();
                            }
                        }
                    }
                    y[(oc * h + r) * wd + col] = s;
                    scale[(oc * h + r) * wd + col] = a;
                }
            }
        }
        (y, scale)
    }

    /// Holds `x` convolved with `w` (o outputs) to the direct sum within
    /// `tol` of each output's magnitude sum (plus a floor for tiny sums).
    fn check(kernel: Kernel, g: &ConvGeom, o: usize, seed: u64) {
        let mut rng = Rng::seed(seed);
        let x = values(g.c * g.h * g.w, &mut rng);
        let w = values(o * g.c * 9, &mut rng);
        let bias = values(o, &mut rng);
        let (want, scale) = reference(&x, g, &w, o);
        let u = transform_weight(&w, o, g.c);
        let y = written_over_nan(o * g.h * g.w, |y| {
            pooled_on(kernel, &x, g, &u, o, Some(&bias), None, Pool::None, y)
        });
        let plane = g.h * g.w;
        for (i, (&got, (&want, &scale))) in y.iter().zip(want.iter().zip(&scale)).enumerate() {
            let want = want + bias[i / plane] as f64;
            let err = (got as f64 - want).abs();
            assert!(
                err <= 1e-5 * (scale + 1.0),
                "{g:?} o={o}: output {i} is {got}, want {want} (magnitude sum {scale})"
            );
        }
    }

    #[test]
    fn matches_the_direct_sum_on_rows_of_8_and_16_tiles() {
        for kernel in Kernel::all_available() {
            check(kernel, &geom(16, 8, 32), 32, 1);
            check(kernel, &geom(32, 8, 32), 32, 2);
            check(kernel, &geom(3, 16, 32), 16, 3);
            check(kernel, &geom(8, 16, 64), 16, 4);
            check(kernel, &geom(5, 4, 128), 48, 5);
            check(kernel, &geom(2, 12, 64), 16, 6);
        }
    }

    #[test]
    fn applies_the_batchnorm_and_relu_to_each_output() {
        if Kernel::best().is_none() {
            return;
        }
        let g = geom(16, 8, 32);
        let o = 16;
        let mut rng = Rng::seed(7);
        let x = values(g.c * g.h * g.w, &mut rng);
        let w = values(o * g.c * 9, &mut rng);
        let (mean, scale, beta) = (
            values(o, &mut rng),
            values(o, &mut rng),
            values(o, &mut rng),
        );
        let u = transform_weight(&w, o, g.c);
        let mut plain = vec![0.0; o * g.h * g.w];
        conv2d_winograd4_then(&x, &g, &u, o, None, None, &mut plain);
        let mut fused = vec![f32::NAN; plain.len()];
        let affine = ChannelAffine {
            mean: &mean,
            scale: &scale,
            beta: &beta,
        };
        conv2d_winograd4_then(&x, &g, &u, o, None, Some(affine), &mut fused);
        for (i, (&p, &f)) in plain.iter().zip(&fused).enumerate() {
            let ch = i / (g.h * g.w);
            let want = ((p - mean[ch]) * scale[ch] + beta[ch]).max(0.0);
            assert_eq!(f.to_bits(), want.to_bits(), "output {i}");
        }
    }

    #[test]
    fn pools_each_tile_as_a_separate_max_pool() {
        if Kernel::best().is_none() {
            return;
        }
        for (g, o) in [
            (geom(16, 8, 32), 16),
            (geom(8, 16, 64), 16),
            (geom(4, 4, 128), 16),
        ] {
            let mut rng = Rng::seed(11);
            let x = values(g.c * g.h * g.w, &mut rng);
            let w = values(o * g.c * 9, &mut rng);
            let (mean, beta) = (values(o, &mut rng), values(o, &mut rng));
            let scale = vec![1.5; o];
            let affine = ChannelAffine {
                mean: &mean,
                scale: &scale,
                beta: &beta,
            };
            let u = transform_weight(&w, o, g.c);
            let mut full = vec![0.0; o * g.h * g.w];
            conv2d_winograd4_then(&x, &g, &u, o, None, Some(affine), &mut full);
            for (pool, (kh, kw)) in [(Pool::Rows, (2, 1)), (Pool::Both, (2, 2))] {
                let (ph, pw) = pool.plane(g.h, g.w);
                let y = written_over_nan(o * ph * pw, |y| {
                    conv2d_winograd4_pooled(&x, &g, &u, o, None, Some(affine), pool, y)
                });
                for (i, &got) in y.iter().enumerate() {
                    let (ch, r, c) = (i / (ph * pw), i / pw % ph, i % pw);
                    let window =
                        (0..kh).flat_map(|a| (0..kw).map(move |b| (kh * r + a, kw * c + b)));
                    let want = window
                        .map(|(a, b)| full[(ch * g.h + a) * g.w + b])
                        .fold(f32::NEG_INFINITY, f32::max);
                    assert_eq!(got.to_bits(), want.to_bits(), "{pool:?} {g:?}: output {i}");
                }
            }
        }
    }

    /// A sample's outputs have the same bits alone and in a group, whether
    /// its strips of 16 tiles run on the 16-row tile (a lone strip) or two
    /// or three at a time beside other samples' strips.
    #[test]
    fn samples_are_independent() {
        let mut rng = Rng::seed(9);
        // One strip per sample (rows of 8 tiles), four (rows of 16), and two
        // (rows of 32, 3 channels).
        for (kernel, g) in Kernel::all_available().into_iter().flat_map(|k| {
            [
                (k, geom(16, 8, 32)),
                (k, geom(8, 16, 64)),
                (k, geom(3, 4, 128)),
            ]
        }) {
            let o = 32;
            let (in_len, out_len) = (g.c * g.h * g.w, o * g.h * g.w);
            let u = transform_weight(&values(o * g.c * 9, &mut rng), o, g.c);
            let post = Post {
                bias: None,
                relu_affine: None,
                pool: Pool::None,
            };
            for n in 1..=4 {
                let x = values(n * in_len, &mut rng);
                let all =
                    written_over_nan(n * out_len, |y| samples(kernel, &x, &g, &u, o, post, y));
                for (i, want) in all.chunks_exact(out_len).enumerate() {
                    let xi = &x[i * in_len..(i + 1) * in_len];
                    let one =
                        written_over_nan(out_len, |y| samples(kernel, xi, &g, &u, o, post, y));
                    assert_eq!(
                        bits(&one),
                        bits(want),
                        "{kernel:?} {g:?}: sample {i} of {n}"
                    );
                }
                let via_batch = written_over_nan(n * out_len, |y| {
                    pooled_on(kernel, &x, &g, &u, o, None, None, Pool::None, y)
                });
                assert_eq!(
                    bits(&via_batch),
                    bits(&all),
                    "{kernel:?} {g:?}: {n} samples"
                );
            }
        }
    }

    /// A lone sample's blocks of output channels split across threads
    /// change no bit: 1, 2 and 3 threads, with each pool.
    #[test]
    fn a_lone_sample_has_the_same_bits_on_any_thread_count() {
        let mut rng = Rng::seed(15);
        let geoms = [geom(16, 8, 32), geom(8, 16, 64), geom(3, 4, 128)];
        // 16 outputs: one block, its runs of strips shared among the
        // threads; 48: its blocks shared.
        for (kernel, g, o) in Kernel::all_available()
            .into_iter()
            .flat_map(|k| geoms.iter().flat_map(move |&g| [(k, g, 16), (k, g, 48)]))
        {
            let u = transform_weight(&values(o * g.c * 9, &mut rng), o, g.c);
            let x = values(g.c * g.h * g.w, &mut rng);
            let (mean, scale, beta) = (vec![0.1; o], vec![1.5; o], vec![0.2; o]);
            let affine = ChannelAffine {
                mean: &mean,
                scale: &scale,
                beta: &beta,
            };
            for (pool, relu_affine) in [(Pool::None, None), (Pool::Both, Some(affine))] {
                let (ph, pw) = pool.plane(g.h, g.w);
                let run = |threads: usize| {
                    let pool_of_threads = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    bits(&written_over_nan(o * ph * pw, |y| {
                        pool_of_threads.install(|| {
                            pooled_on(kernel, &x, &g, &u, o, None, relu_affine, pool, y)
                        })
                    }))
                };
                let one = run(1);
                assert_eq!(run(2), one, "{kernel:?} {g:?} {pool:?}: 2 threads");
                assert_eq!(run(3), one, "{kernel:?} {g:?} {pool:?}: 3 threads");
            }
        }
    }

    #[test]
    fn takes_only_what_it_computes() {
        let ok = geom(16, 8, 32);
        assert_eq!(computes(&ok, 32), Kernel::best().is_some());
        assert!(!computes(&ok, 24), "outputs not a multiple of 16");
        assert!(!computes(&geom(16, 8, 48), 32), "12 tiles per row");
        assert!(!computes(&geom(16, 4, 32), 32), "one row of 8 tiles");
        assert!(
            !computes(&geom(16, 6, 64), 32),
            "height not a multiple of 4"
        );
        assert!(
            !computes(&ConvGeom { ph: 0, ho: 6, ..ok }, 32),
            "no padding"
        );
    }
}
