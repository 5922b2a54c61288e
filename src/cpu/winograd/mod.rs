//! Winograd F(2x2, 3x3) convolution for 3x3 stride-1 layers: the forward
//! pass ([`conv2d_winograd`]) and the weight gradient
//! ([`weight_grad_winograd`]); the input gradient is a forward convolution.
//! Where F(4x4) ([`super::winograd4`]) takes a layer, it runs instead.
//!
//! Each output channel is cut into 2x2 tiles. A tile of output channel o is
//! `Aᵀ [Σ_c U_oc ⊙ V_c] A`, where `U_oc = G k_oc Gᵀ` is the 4x4 transform of
//! the 3x3 kernel from input channel c and `V_c = Bᵀ d_c B` that of the 4x4
//! patch of (zero-padded) input under the tile: 16 multiplies per tile and
//! channel pair instead of 36. Over all pairs the sums are 16 products
//! `M_e = U_e · V_e` (o x c times c x tiles), one per entry e = 4i + j of the
//! 4x4 transforms, run on [`gemm`](super::gemm::gemm).
//!
//! The transforms only add, subtract and halve, so the result is the
//! convolution up to rounding, but not the bits of the direct sum: the
//! tests hold it to im2col + GEMM within 8e-6 of the sum of the magnitudes
//! of each output's terms. Tiles are taken a block (whole rows of tiles of one sample)
//! at a time, so that the transforms and the products stay in L2; blocks
//! depend on the geometry only, and each value is summed by one thread in
//! a fixed order, so results do not depend on the thread count.
//!
//! The transforms are AVX-512 or AVX2 kernels (module `x86`), 16 tiles per
//! vector; the two give the same bits.

mod forward;
mod weight_grad;
mod x86;

pub use forward::{conv2d_winograd, conv2d_winograd_then, conv2d_winograd_with, transform_weight};
pub use weight_grad::{weight_grad_applies, weight_grad_winograd};

use super::conv2d::ConvGeom;
use super::small_gemm::Kernel;
use std::cell::Cell;
use std::ops::Range;

/// Layers with fewer input channels keep the direct convolution: the
/// transforms then cost about as much as the multiplies they save.
pub const MIN_CHANNELS: usize = 16;

/// Calls with fewer tiles in all (samples x tiles per sample) keep the
/// direct convolution: transforming the weight costs more than the
/// multiplies saved (`crnn-s` b3 and b4 for one line: 0.87-0.9x).
pub const MIN_TILES: usize = 256;

/// Lanes per strip of tiles in the transforms.
const LANES: usize = 16;

thread_local! {
    /// Each thread's padded input rows, split into even and odd columns.
    static ROWS: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    /// Each thread's transformed input block (entries x c x tiles).
    static V: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    /// Each thread's products or transformed output gradients (entries x o x tiles).
    static M: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Whether [`conv2d_winograd`] and [`weight_grad_winograd`] take `n` samples
/// of this geometry on this CPU: a 3x3 kernel, stride 1, at least
/// [`MIN_CHANNELS`] input channels and [`MIN_TILES`] tiles, AVX-512F or AVX2.
pub fn applies(g: &ConvGeom, n: usize) -> bool {
    n * g.ho.div_ceil(2) * g.wo.div_ceil(2) >= MIN_TILES && runs(g)
}

/// Fewer tiles than [`MIN_TILES`], but at least this many, run the Winograd
/// algorithm when the weight's transform is kept from call to call
/// ([`applies_frozen`]).
pub const MIN_TILES_FROZEN: usize = 64;

/// Whether `n` samples of this geometry are better convolved with a weight
/// transformed once and kept (a frozen model's evaluation on a few lines):
/// as [`applies`], but from [`MIN_TILES_FROZEN`] tiles up to (not
/// including) [`MIN_TILES`], where [`applies`] takes over, and with at
/// least one sample per worker thread (a `crnn-s` line on 2 threads, its
/// output channels split between them: 0.77x the direct convolution).
pub fn applies_frozen(g: &ConvGeom, n: usize) -> bool {
    let tiles = n * g.ho.div_ceil(2) * g.wo.div_ceil(2);
    (MIN_TILES_FROZEN..MIN_TILES).contains(&tiles) && n >= rayon::current_num_threads() && runs(g)
}

/// [`applies`] but for the number of tiles.
fn runs(g: &ConvGeom) -> bool {
    g.c >= MIN_CHANNELS && computes(g)
}

/// Whether the Winograd kernels compute this geometry on this CPU, fast or
/// not: a 3x3 kernel, stride 1, a non-empty output, AVX-512F or AVX2.
pub fn computes(g: &ConvGeom) -> bool {
    g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1 && g.ho > 0 && g.wo > 0 && kernel_runs()
}

/// Whether the CPU runs a build of the transforms.
fn kernel_runs() -> bool {
    Kernel::best().is_some()
}

/// The build of the transforms on this CPU: AVX-512F, else AVX2. Panics
/// where neither runs; the entry points assert [`computes`] first.
fn kernel() -> Kernel {
    #[cfg(test)]
    if let Some(k) = tests::BUILD.with(Cell::get) {
        return k;
    }
    Kernel::best().expect("the Winograd transforms run on AVX-512F or AVX2 (computes() checks)")
}

/// The tiling of one sample's output.
#[derive(Clone, Copy)]
struct Tiles {
    /// Rows of tiles.
    rows: usize,
    /// Tiles per row.
    cols: usize,
    /// Rows of tiles per block.
    rows_per_block: usize,
    /// Length of the even (and of the odd) half of a padded input row:
    /// `cols + 1` values read, then slack for a full strip.
    half: usize,
}

impl Tiles {
    /// Blocks of about `block_tiles` tiles (whole rows, at least one).
    fn of(g: &ConvGeom, block_tiles: usize) -> Tiles {
        let cols = g.wo.div_ceil(2);
        Tiles {
            rows: g.ho.div_ceil(2),
            cols,
            rows_per_block: (block_tiles / cols).max(1),
            half: cols + LANES,
        }
    }

    /// The blocks: ranges of rows of tiles.
    fn blocks(&self) -> impl Iterator<Item = Range<usize>> + '_ {
        (0..self.rows)
            .step_by(self.rows_per_block)
            .map(|r0| r0..(r0 + self.rows_per_block).min(self.rows))
    }
}

/// The distance between consecutive entries' matrices of `len` values: room
/// for a strip's whole store past the end ([`LANES`] values, see
/// `x86::input_tiles`), a 16-value multiple, then skewed by two cache lines
/// off any 4 KB multiple, so that the 16 loads or stores of one strip (one
/// per entry) do not all fall in the same L1 set.
fn skewed(len: usize) -> usize {
    let len = (len + LANES).next_multiple_of(LANES);
    if len % 1024 < 2 * LANES {
        len + 2 * LANES - len % 1024
    } else {
        len
    }
}

/// The padded rows under the tiles of `block` (rows of tiles) of one sample
/// `x` (c, h, w), each split into even and odd columns: `rows` holds
/// [`block_rows_len`] values, channel by channel.
fn split_block_rows(x: &[f32], g: &ConvGeom, t: &Tiles, block: Range<usize>, rows: &mut [f32]) {
    let per_channel = (2 * block.len() + 2) * 2 * t.half;
    for (ch, rows) in rows.chunks_exact_mut(per_channel).take(g.c).enumerate() {
        let plane = &x[ch * g.h * g.w..(ch + 1) * g.h * g.w];
        split_padded_rows(plane, g, t, 2 * block.start, rows);
    }
}

/// Values [`split_block_rows`] writes for a block of `rows` rows of tiles.
fn block_rows_len(g: &ConvGeom, t: &Tiles, rows: usize) -> usize {
    g.c * (2 * rows + 2) * 2 * t.half
}

/// Transforms the input patches under the tiles of a block of `block_rows`
/// rows of tiles, from its padded rows `rows` ([`split_block_rows`]):
/// columns `js` of `Bᵀ d B` for channel ch and tile t of the block
/// (row-major) go to `v[slot * stride + ch * tiles + t]`, slot
/// `i * js.len() + j - js.start` for entry (i, j).
fn input_block(
    rows: &[f32],
    g: &ConvGeom,
    t: &Tiles,
    block_rows: usize,
    js: Range<usize>,
    v: &mut [f32],
    stride: usize,
) {
    let tiles = block_rows * t.cols;
    let row_len = 2 * t.half;
    assert!(js.end <= 4 && !js.is_empty());
    assert!(rows.len() >= block_rows_len(g, t, block_rows));
    // Room for the last strip's whole store after each entry's values.
    assert!(stride >= g.c * tiles + LANES);
    assert!(v.len() >= (4 * js.len() - 1) * stride + g.c * tiles + LANES);
    let per_channel = (2 * block_rows + 2) * row_len;
    let kernel = kernel();
    for (ch, rows) in rows.chunks_exact(per_channel).take(g.c).enumerate() {
        for r in 0..block_rows {
            let four = &rows[2 * r * row_len..(2 * r + 4) * row_len];
            // SAFETY: computes() (a build of the transforms) was asserted by
            // both callers; the halves hold cols + 16 values, so the 16-value
            // loads from index t + 1 <= cols stay in `four`; stores reach
            // slot 4 * js.len() - 1 at offset < c * tiles + 16, and stay
            // within each slot's stride (asserted above).
            unsafe {
                x86::input_tiles(
                    kernel,
                    four,
                    t.half,
                    t.cols,
                    js.clone(),
                    v,
                    stride,
                    ch * tiles + r * t.cols,
                )
            }
        }
    }
}

/// Writes padded input rows `first..first + rows.len() / (2 * half)` of one
/// channel `x` (h, w) into `rows`, each as its even columns then its odd
/// columns (`half` values each, zeros past the input).
fn split_padded_rows(x: &[f32], g: &ConvGeom, t: &Tiles, first: usize, rows: &mut [f32]) {
    for (r, row) in rows.chunks_exact_mut(2 * t.half).enumerate() {
        row.fill(0.0);
        let Some(ih) = (first + r).checked_sub(g.ph).filter(|&ih| ih < g.h) else {
            continue;
        };
        let (even, odd) = row.split_at_mut(t.half);
        // Input column iw is padded column iw + pw: its pairs (2k, 2k + 1)
        // land at the same index of the two halves when pw is even.
        let (first_half, second_half, shift) = if g.pw.is_multiple_of(2) {
            (even, odd, 0)
        } else {
            (odd, even, 1)
        };
        deinterleave(
            &x[ih * g.w..(ih + 1) * g.w],
            &mut first_half[g.pw / 2..],
            &mut second_half[(g.pw + shift) / 2..],
        );
    }
}

/// `a[k] = x[2k]`, `b[k] = x[2k + 1]`.
fn deinterleave(x: &[f32], a: &mut [f32], b: &mut [f32]) {
    let pairs = x.len() / 2;
    assert!(a.len() >= x.len().div_ceil(2) && b.len() >= pairs);
    // SAFETY: computes() (a build of the transforms) was asserted by the
    // callers; the whole blocks' pairs are within `a` and `b` (asserted above).
    unsafe { x86::deinterleave(kernel(), x, a, b) };
    let done = x.len() / (2 * LANES) * LANES;
    for k in done..pairs {
        a[k] = x[2 * k];
        b[k] = x[2 * k + 1];
    }
    if x.len() % 2 == 1 {
        a[pairs] = x[x.len() - 1];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::gemm::testing::{bits, values};
    use crate::rng::Rng;

    thread_local! {
        /// The build this thread's transforms use instead of the best one.
        pub(super) static BUILD: Cell<Option<Kernel>> = const { Cell::new(None) };
    }

    /// Every build the CPU runs gives the same bits: forward (bias, and
    /// BatchNorm + ReLU) and weight gradient, rows of tiles that end in a
    /// partial strip, odd heights, paddings 0 and 1 (on one thread, whose
    /// build is set for the run).
    #[test]
    fn the_builds_agree() {
        let kernels = Kernel::all_available();
        if kernels.len() < 2 {
            eprintln!("skipped: the CPU runs {kernels:?}");
            return;
        }
        let mut rng = Rng::seed(31);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        for (c, h, w, o, n) in [(16, 8, 32, 32, 2), (17, 7, 30, 5, 3), (20, 9, 66, 8, 1)] {
            for pad in 0..2 {
                let g = ConvGeom::new((c, h, w), (3, 3), (1, 1), (pad, pad)).unwrap();
                let x = values(n * g.in_len(), &mut rng);
                let wt = values(o * c * 9, &mut rng);
                let bias = values(o, &mut rng);
                let dy = values(n * o * g.col_cols(), &mut rng);
                let (mean, scale, beta) = (
                    values(o, &mut rng),
                    values(o, &mut rng),
                    values(o, &mut rng),
                );
                let affine = crate::cpu::batchnorm2d::ChannelAffine {
                    mean: &mean,
                    scale: &scale,
                    beta: &beta,
                };
                let u = transform_weight(&wt, o, c);
                let runs: Vec<_> = kernels
                    .iter()
                    .map(|&k| {
                        pool.install(|| {
                            BUILD.with(|b| b.set(Some(k)));
                            let mut y = vec![0.0; n * o * g.col_cols()];
                            conv2d_winograd(&x, &g, &wt, o, Some(&bias), &mut y);
                            let mut z = vec![0.0; y.len()];
                            forward::conv2d_winograd_then(
                                &x,
                                &g,
                                &u,
                                o,
                                None,
                                Some(affine),
                                &mut z,
                            );
                            let mut dw = vec![0.0; o * c * 9];
                            weight_grad_winograd(&dy, &x, &g, o, &mut dw);
                            BUILD.with(|b| b.set(None));
                            (bits(&y), bits(&z), bits(&dw))
                        })
                    })
                    .collect();
                assert!(runs.windows(2).all(|r| r[0] == r[1]), "{g:?} o {o} n {n}");
            }
        }
    }
}
