//! 2-D convolution on the CPU: im2col + GEMM forward, GEMM + col2im backward.
//!
//! Layouts are NCHW for images, (O, C, kh, kw) for weights. One sample's
//! im2col matrix has `C*kh*kw` rows (ordered c, ki, kj, as the weight's
//! columns) and `Ho*Wo` columns, so one sample's output is the product
//! `W (O x C*kh*kw) · col (C*kh*kw x Ho*Wo)`. The im2col matrices live in
//! per-thread scratch buffers, reused from call to call: the weight
//! gradient rebuilds them from the input rather than keeping a whole batch
//! of them from the forward pass. Where the CPU allows, stride-1 layers
//! skip im2col altogether: 3x3 ones with at least 8 input channels through
//! Winograd F(4x4, 3x3) (AVX2 or AVX-512) or F(2x2, 3x3) (AVX-512), the
//! others on AVX-512 through [`super::conv_direct`] — in the forward pass,
//! in the weight gradient ([`super::conv_weight_grad`], AVX-512) and in
//! the input gradient, which they compute as a forward convolution of the
//! output gradient.

use super::conv_direct;
use super::conv_weight_grad;
use super::gemm::{gemm, gemm_par, transpose_into, MatRef};
use super::scratch::with_scratch;
use super::uninit::{as_slots, assume_init_mut, filled};
use super::winograd;
use super::winograd4;
use rayon::prelude::*;
use std::cell::Cell;
use std::mem::MaybeUninit;

thread_local! {
    /// Each thread's im2col matrix (forward, weight gradient) or its
    /// gradient (input gradient), reused from call to call.
    static COL: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// The weight gradient through im2col (layers and CPUs that
/// [`super::conv_weight_grad`] does not take) is accumulated over at most
/// this many contiguous chunks of the batch, each into its own buffer, then the buffers are summed
/// in chunk order: the result is the same for every thread count.
pub const WEIGHT_GRAD_CHUNKS: usize = 16;

/// Geometry of a convolution (or of the windows of a pooling) on one sample.
/// Callers check that the kernel fits the padded input and strides are non-zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    /// Input channels.
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Vertical stride.
    pub sh: usize,
    /// Horizontal stride.
    pub sw: usize,
    /// Zero padding at the top and bottom.
    pub ph: usize,
    /// Zero padding at the left and right.
    pub pw: usize,
    /// Output height, `(h + 2 ph - kh) / sh + 1`.
    pub ho: usize,
    /// Output width, `(w + 2 pw - kw) / sw + 1`.
    pub wo: usize,
}

impl ConvGeom {
    /// The geometry of a `kh x kw` window sliding over a `c x h x w` input;
    /// `None` when a stride is zero or the window does not fit the padded input.
    pub fn new(
        (c, h, w): (usize, usize, usize),
        (kh, kw): (usize, usize),
        (sh, sw): (usize, usize),
        (ph, pw): (usize, usize),
    ) -> Option<ConvGeom> {
        if sh == 0 || sw == 0 || kh == 0 || kw == 0 {
            return None;
        }
        let ho = (h + 2 * ph).checked_sub(kh)? / sh + 1;
        let wo = (w + 2 * pw).checked_sub(kw)? / sw + 1;
        Some(ConvGeom {
            c,
            h,
            w,
            kh,
            kw,
            sh,
            sw,
            ph,
            pw,
            ho,
            wo,
        })
    }

    /// Rows of one sample's im2col matrix: `c * kh * kw`.
    pub fn col_rows(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// Columns of one sample's im2col matrix: `ho * wo`.
    pub fn col_cols(&self) -> usize {
        self.ho * self.wo
    }

    /// Values of one input sample: `c * h * w`.
    pub fn in_len(&self) -> usize {
        self.c * self.h * self.w
    }

    /// Whether im2col is the identity (a 1x1 kernel, stride 1, no padding):
    /// the input sample is then its own im2col matrix.
    pub fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.sh == 1 && self.sw == 1 && self.ph == 0 && self.pw == 0
    }
}

/// The output positions `lo..hi` whose input coordinate
/// `o * stride + k - pad` lies inside `0..len`.
pub(crate) fn valid_range(
    k: usize,
    pad: usize,
    stride: usize,
    len: usize,
    out: usize,
) -> (usize, usize) {
    let lo = if pad > k {
        (pad - k).div_ceil(stride)
    } else {
        0
    };
    let hi = if len + pad > k {
        (len + pad - k).div_ceil(stride).min(out)
    } else {
        0
    };
    (lo.min(hi), hi)
}

/// Writes the im2col matrix of one sample `x` (c, h, w) into `col`
/// (`col_rows x col_cols`, row-major); padding reads as zero.
pub fn im2col(x: &[f32], g: &ConvGeom, col: &mut [f32]) {
    let (hw, ncols) = (g.h * g.w, g.col_cols());
    for c in 0..g.c {
        let plane = &x[c * hw..(c + 1) * hw];
        for ki in 0..g.kh {
            let (oh_lo, oh_hi) = valid_range(ki, g.ph, g.sh, g.h, g.ho);
            for kj in 0..g.kw {
                let (ow_lo, ow_hi) = valid_range(kj, g.pw, g.sw, g.w, g.wo);
                let r = (c * g.kh + ki) * g.kw + kj;
                let row = &mut col[r * ncols..(r + 1) * ncols];
                for oh in 0..g.ho {
                    let out = &mut row[oh * g.wo..(oh + 1) * g.wo];
                    if oh < oh_lo || oh >= oh_hi || ow_lo >= ow_hi {
                        out.fill(0.0);
                        continue;
                    }
                    let ih = oh * g.sh + ki - g.ph;
                    let src = &plane[ih * g.w..(ih + 1) * g.w];
                    out[..ow_lo].fill(0.0);
                    out[ow_hi..].fill(0.0);
                    let iw0 = ow_lo * g.sw + kj - g.pw;
                    if g.sw == 1 {
                        out[ow_lo..ow_hi].copy_from_slice(&src[iw0..iw0 + ow_hi - ow_lo]);
                    } else {
                        for (o, v) in out[ow_lo..ow_hi]
                            .iter_mut()
                            .zip(src[iw0..].iter().step_by(g.sw))
                        {
                            *o = *v;
                        }
                    }
                }
            }
        }
    }
}

/// Adds the im2col-shaped `col` back onto one sample `dx` (c, h, w): the
/// adjoint of [`im2col`]. Entries that fell on padding are dropped.
pub fn col2im_add(col: &[f32], g: &ConvGeom, dx: &mut [f32]) {
    let (hw, ncols) = (g.h * g.w, g.col_cols());
    for c in 0..g.c {
        let plane = &mut dx[c * hw..(c + 1) * hw];
        for ki in 0..g.kh {
            let (oh_lo, oh_hi) = valid_range(ki, g.ph, g.sh, g.h, g.ho);
            for kj in 0..g.kw {
                let (ow_lo, ow_hi) = valid_range(kj, g.pw, g.sw, g.w, g.wo);
                if ow_lo >= ow_hi {
                    continue;
                }
                let r = (c * g.kh + ki) * g.kw + kj;
                let row = &col[r * ncols..(r + 1) * ncols];
                for oh in oh_lo..oh_hi {
                    let ih = oh * g.sh + ki - g.ph;
                    let dst = &mut plane[ih * g.w..(ih + 1) * g.w];
                    let src = &row[oh * g.wo + ow_lo..oh * g.wo + ow_hi];
                    let iw0 = ow_lo * g.sw + kj - g.pw;
                    if g.sw == 1 {
                        for (d, v) in dst[iw0..iw0 + src.len()].iter_mut().zip(src) {
                            *d += *v;
                        }
                    } else {
                        for (v, d) in src.iter().zip(dst[iw0..].iter_mut().step_by(g.sw)) {
                            *d += *v;
                        }
                    }
                }
            }
        }
    }
}

/// Forward convolution of `n` samples `x` (n, c, h, w) with `weight`
/// (o, c, kh, kw) and an optional `bias` (o) into `y` (n, o, ho, wo).
///
/// 3x3 stride-1 padding-1 layers that Winograd F(4x4, 3x3) takes
/// ([`winograd4::applies`]) run it, its weight transformed for the call;
/// other 3x3 stride-1 layers with enough channels and tiles run F(2x2, 3x3)
/// ([`winograd`]): the same convolution up to rounding, 1.2-1.8x faster
/// than the direct sum at the `crnn-t` shapes, F(4x4) 1.2-1.5x more. The
/// others run [`conv2d_forward_tapwise`].
pub fn conv2d_forward(
    x: &[f32],
    g: &ConvGeom,
    weight: &[f32],
    o: usize,
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    let n = y.len() / (o * g.col_cols()).max(1);
    if winograd4::applies(g, n, o) {
        let u = winograd4::transform_weight(weight, o, g.c);
        let x = &x[..n * g.in_len()];
        winograd4::conv2d_winograd4_then(x, g, &u, o, bias, None, &mut y[..n * o * g.col_cols()]);
    } else if winograd::applies(g, n) {
        winograd::conv2d_winograd(&x[..n * g.in_len()], g, weight, o, bias, y);
    } else {
        conv2d_forward_tapwise(x, g, weight, o, bias, y);
    }
}

/// [`conv2d_forward`] computing each output as im2col + GEMM does, whichever
/// kernel runs: a fused multiply-add chain over the taps in im2col order,
/// then the bias; the values of the reference path bit for bit.
///
/// Each sample's im2col matrix is built in a per-thread scratch buffer: the
/// weight gradient rebuilds it from `x` (see [`conv2d_backward_weight`]).
/// A stride-1 convolution on a CPU with AVX-512 (or, with AVX2, a thin one:
/// few input channels, e.g. the first layer of a CRNN, 1 channel 3x3) skips
/// im2col and runs [`conv_direct`] instead, which computes the same values. A single sample runs on the calling
/// thread (its product split across threads by rows when there are several).
pub fn conv2d_forward_tapwise(
    x: &[f32],
    g: &ConvGeom,
    weight: &[f32],
    o: usize,
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    // SAFETY: only f32 values are written.
    conv2d_forward_tapwise_slots(x, g, weight, o, bias, unsafe { as_slots(y) });
}

/// [`conv2d_forward_tapwise`] into slots that may start uninitialised: it
/// writes the outputs of the `y.len() / (o * ho * wo)` whole samples that
/// `y` holds, every value of them (the direct convolution once; the GEMM
/// path starts each row at its bias for its sums).
pub(crate) fn conv2d_forward_tapwise_slots(
    x: &[f32],
    g: &ConvGeom,
    weight: &[f32],
    o: usize,
    bias: Option<&[f32]>,
    y: &mut [MaybeUninit<f32>],
) {
    let (ck, ncols) = (g.col_rows(), g.col_cols());
    let out_len = o * ncols;
    let n = y.len() / out_len.max(1);
    if out_len == 0 || n == 0 {
        return;
    }
    let wm = MatRef::row_major(weight, o, ck);
    let threads = rayon::current_num_threads();
    let x_sample = |i: usize| &x[i * g.in_len()..(i + 1) * g.in_len()];
    let direct = conv_direct::applies(g);
    // With fewer samples than threads, split each product by rows instead.
    let run = |i: usize, out: &mut [MaybeUninit<f32>], split: bool| {
        if direct {
            if !split {
                conv_direct::conv2d_direct(x_sample(i), g, weight, o, bias, out);
                return;
            }
            // Output channels in one contiguous group per thread (each
            // output is computed alone, so the split changes no value).
            let per = o.div_ceil(threads);
            out.par_chunks_mut(per * ncols)
                .enumerate()
                .for_each(|(part, planes)| {
                    let (oc, ob) = (part * per, planes.len() / ncols);
                    conv_direct::conv2d_direct(
                        x_sample(i),
                        g,
                        &weight[oc * ck..(oc + ob) * ck],
                        ob,
                        bias.map(|b| &b[oc..oc + ob]),
                        planes,
                    );
                });
            return;
        }
        let product = |col: &[f32], out: &mut [MaybeUninit<f32>]| {
            // The product adds to its output: each row starts at its bias
            // (or 0), written once.
            for (ch, row) in out.chunks_exact_mut(ncols).enumerate() {
                filled(row, bias.map_or(0.0, |b| b[ch]));
            }
            // SAFETY: the rows, o of ncols values, are the whole output.
            let out = unsafe { assume_init_mut(out) };
            let beta = if bias.is_some() { 1.0 } else { 0.0 };
            let cm = MatRef::row_major(col, ck, ncols);
            if split {
                gemm_par(1.0, wm, cm, beta, out);
            } else {
                gemm(1.0, wm, cm, beta, out);
            }
        };
        if g.is_pointwise() {
            product(x_sample(i), out);
        } else {
            with_scratch(&COL, ck * ncols, |col| {
                im2col(x_sample(i), g, col);
                product(col, out);
            });
        }
    };
    if n == 1 {
        run(0, &mut y[..out_len], threads > 1);
        return;
    }
    let split = n < threads;
    y.par_chunks_mut(out_len)
        .enumerate()
        .for_each(|(i, out)| run(i, out, split));
}

/// The input gradient runs as a forward convolution (`transposed_wins`)
/// up to this many taps (`o * kh * kw`) at any batch size: against `Wᵀ·dy`
/// and col2im, 1.0-1.07x at `crnn-t` b2's 576 and 2x at `crnn-s` b2 for
/// one line (measured in one process in alternation, one thread).
pub const TRANSPOSED_DIRECT_MAX_TAPS: usize = 576;

/// ... and up to this many from [`TRANSPOSED_DIRECT_MIN_BATCH`] samples on:
/// `crnn-t` b3 and b4 (1152 taps) at batch 32 1.1-1.2x (one thread) and
/// 1.1x (two), at batch 4 1.04-1.08x; at batch 1 or 2 flipping the weight
/// costs more than the product gains (0.83-1.0x).
pub const TRANSPOSED_DIRECT_MAX_TAPS_BATCHED: usize = 1152;

/// See [`TRANSPOSED_DIRECT_MAX_TAPS_BATCHED`].
pub const TRANSPOSED_DIRECT_MIN_BATCH: usize = 4;

/// The geometry of the convolution of `dy` (o, ho, wo) that gives the input
/// gradient of a stride-1 convolution `g`: padding `k - 1 - p` on each side
/// turns the output size back into the input's, and the kernel is `g`'s
/// flipped and transposed ([`flip_transpose`]).
fn transposed(g: &ConvGeom, o: usize) -> Option<ConvGeom> {
    if g.sh != 1 || g.sw != 1 || g.ph >= g.kh || g.pw >= g.kw || g.is_pointwise() {
        return None;
    }
    let gt = ConvGeom::new(
        (o, g.ho, g.wo),
        (g.kh, g.kw),
        (1, 1),
        (g.kh - 1 - g.ph, g.kw - 1 - g.pw),
    )?;
    (gt.ho == g.h && gt.wo == g.w).then_some(gt)
}

/// Whether the forward convolution `gt` of `n` samples ([`transposed`]),
/// with `outputs` channels (the layer's inputs), is the faster way to the
/// input gradient: [`conv2d_forward`] runs it through [`winograd4`] or
/// [`winograd`], or [`conv_direct`] runs it with AVX-512 and it has few
/// enough taps for the batch size.
fn transposed_wins(gt: &ConvGeom, n: usize, outputs: usize) -> bool {
    if winograd4::applies(gt, n, outputs) || winograd::applies(gt, n) {
        return true;
    }
    let direct = conv_direct::Build::best_for(gt) == Some(conv_direct::Build::Avx512);
    let max_taps = if n >= TRANSPOSED_DIRECT_MIN_BATCH {
        TRANSPOSED_DIRECT_MAX_TAPS_BATCHED
    } else {
        TRANSPOSED_DIRECT_MAX_TAPS
    };
    direct && gt.col_rows() <= max_taps
}

/// `w'[c][o][i][j] = w[o][c][kh-1-i][kw-1-j]` for a weight `w` (o, c, kh, kw).
fn flip_transpose(weight: &[f32], g: &ConvGeom, o: usize) -> Vec<f32> {
    let (c, kh, kw) = (g.c, g.kh, g.kw);
    let mut out = vec![0.0f32; c * o * kh * kw];
    for oc in 0..o {
        for ic in 0..c {
            for i in 0..kh {
                for j in 0..kw {
                    out[((ic * o + oc) * kh + i) * kw + j] =
                        weight[((oc * c + ic) * kh + (kh - 1 - i)) * kw + (kw - 1 - j)];
                }
            }
        }
    }
    out
}

/// Gradient of the input: for each sample `dx_i = col2im(Wᵀ · dy_i)`, or
/// the same sums as a forward convolution of `dy` with the flipped,
/// transposed kernel (`transposed`) where that is faster
/// (`transposed_wins`): through [`winograd`] where it applies (equal up
/// to rounding), else tap by tap on [`conv_direct`]'s AVX-512 kernel (no
/// im2col-sized gradient matrix).
/// `dy` is (n, o, ho, wo), `weight` (o, c, kh, kw), `dx` (n, c, h, w) is overwritten.
pub fn conv2d_backward_input(dy: &[f32], g: &ConvGeom, weight: &[f32], o: usize, dx: &mut [f32]) {
    let (ck, ncols) = (g.col_rows(), g.col_cols());
    let in_len = g.in_len();
    if in_len == 0 {
        return;
    }
    let n = dx.len() / in_len;
    if let Some(gt) = transposed(g, o).filter(|gt| transposed_wins(gt, n, g.c)) {
        let flipped = flip_transpose(weight, g, o);
        conv2d_forward(&dy[..n * o * ncols], &gt, &flipped, g.c, None, dx);
        return;
    }
    let split = n < rayon::current_num_threads();
    let wt = MatRef::row_major(weight, o, ck).t();
    let product = |i: usize, out: &mut [f32]| {
        let dym = MatRef::row_major(&dy[i * o * ncols..(i + 1) * o * ncols], o, ncols);
        if split {
            gemm_par(1.0, wt, dym, 0.0, out);
        } else {
            gemm(1.0, wt, dym, 0.0, out);
        }
    };
    if g.is_pointwise() {
        dx.par_chunks_mut(in_len)
            .enumerate()
            .for_each(|(i, out)| product(i, out));
        return;
    }
    dx.par_chunks_mut(in_len).enumerate().for_each(|(i, out)| {
        // The product overwrites every value of the scratch (beta = 0).
        with_scratch(&COL, ck * ncols, |dcol| {
            product(i, dcol);
            out.fill(0.0);
            col2im_add(dcol, g, out);
        });
    });
}

/// Gradient of the weight: `dW = Σ_i dy_i · col_iᵀ`, with `col_i` the
/// im2col matrix of sample i of the input `x` (n, c, h, w); `dw`
/// (o, c, kh, kw) is overwritten. The result does not depend on the number
/// of threads:
///
/// - 3x3 stride-1 padding-1 layers with at least 512 kernels whose 4x4
///   tiles fill the transforms' strips run through F(4x4, 3x3)
///   ([`winograd4::weight_grad_winograd4`]; equal up to rounding, 1.35-1.55x
///   F(2x2) at the `crnn-t` shapes on one Zen 3 core);
/// - other 3x3 stride-1 layers with enough channels and tiles run through
///   F(2x2, 3x3) ([`winograd::weight_grad_winograd`]; equal up to
///   rounding, 1.2-1.6x the tap-by-tap path at the `crnn-t` shapes);
/// - other stride-1 layers, where the CPU allows, are computed transposed straight
///   from the padded input ([`super::conv_weight_grad`]): each sample's
///   product is added to the sum of those before, in order, and threads
///   share the taps;
/// - the others rebuild `col_i` one sample at a time (the input itself for
///   a pointwise geometry) and multiply on [`gemm`]; the sum runs over
///   [`WEIGHT_GRAD_CHUNKS`] fixed chunks of the batch, one per task, summed
///   in chunk order.
pub fn conv2d_backward_weight(dy: &[f32], x: &[f32], g: &ConvGeom, o: usize, dw: &mut [f32]) {
    let (ck, ncols, in_len) = (g.col_rows(), g.col_cols(), g.in_len());
    let dw = &mut dw[..o * ck];
    dw.fill(0.0);
    if ck * ncols == 0 || o == 0 || in_len == 0 {
        return;
    }
    let n = x.len() / in_len;
    if n == 0 {
        return;
    }
    if winograd4::weight_grad_applies(g, o, n) {
        winograd4::weight_grad_winograd4(&dy[..n * o * ncols], &x[..n * in_len], g, o, dw);
        return;
    }
    if winograd::weight_grad_applies(g, o, n) {
        winograd::weight_grad_winograd(&dy[..n * o * ncols], &x[..n * in_len], g, o, dw);
        return;
    }
    if conv_weight_grad::applies(g) {
        with_scratch(&COL, o * ck, |dwt| {
            conv_weight_grad::weight_grad_t(&dy[..n * o * ncols], &x[..n * in_len], g, o, dwt);
            transpose_into(MatRef::row_major(dwt, ck, o).t(), dw);
        });
        return;
    }
    let per_chunk = n.div_ceil(WEIGHT_GRAD_CHUNKS);
    let chunks = n.div_ceil(per_chunk);
    if chunks == 1 {
        weight_grad_im2col(dy, x, g, o, 0..n, true, dw);
        return;
    }
    let mut partial = vec![0.0f32; chunks * o * ck];
    partial
        .par_chunks_mut(o * ck)
        .enumerate()
        .for_each(|(j, out)| {
            let samples = j * per_chunk..((j + 1) * per_chunk).min(n);
            weight_grad_im2col(dy, x, g, o, samples, false, out)
        });
    for part in partial.chunks_exact(o * ck) {
        for (d, p) in dw.iter_mut().zip(part) {
            *d += *p;
        }
    }
}

/// `out = Σ_{i in samples} dy_i · col_iᵀ` through im2col and [`gemm`]
/// (the rows of `dy` split among threads when `split_rows`).
fn weight_grad_im2col(
    dy: &[f32],
    x: &[f32],
    g: &ConvGeom,
    o: usize,
    samples: std::ops::Range<usize>,
    split_rows: bool,
    out: &mut [f32],
) {
    let (ck, ncols, in_len) = (g.col_rows(), g.col_cols(), g.in_len());
    let pointwise = g.is_pointwise();
    let scratch_len = if pointwise { 0 } else { ck * ncols };
    with_scratch(&COL, scratch_len, |buf| {
        for i in samples.clone() {
            let xi = &x[i * in_len..(i + 1) * in_len];
            let col: &[f32] = if pointwise {
                xi
            } else {
                im2col(xi, g, buf);
                buf
            };
            let dym = MatRef::row_major(&dy[i * o * ncols..(i + 1) * o * ncols], o, ncols);
            let cm = MatRef::row_major(col, ck, ncols);
            let beta = if i == samples.start { 0.0 } else { 1.0 };
            if split_rows {
                gemm_par(1.0, dym, cm.t(), beta, out);
            } else {
                gemm(1.0, dym, cm.t(), beta, out);
            }
        }
    });
}

/// Gradient of the bias: the sum of `dy` (n, o, plane) over samples and
/// positions, into `db` (o).
pub fn conv2d_backward_bias(dy: &[f32], o: usize, plane: usize, db: &mut [f32]) {
    db.fill(0.0);
    if o == 0 || plane == 0 {
        return;
    }
    for sample in dy.chunks_exact(o * plane) {
        for (d, row) in db.iter_mut().zip(sample.chunks_exact(plane)) {
            *d += row.iter().sum::<f32>();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::gemm::gemm_packed;
    use crate::cpu::uninit::testing::written_over_nan;
    use crate::rng::Rng;

    fn values(len: usize, rng: &mut Rng) -> Vec<f32> {
        (0..len).map(|_| rng.range(-1.0, 1.0)).collect()
    }

    /// The input gradient, whichever way it is computed (the forward
    /// convolution of `dy` for stride-1 layers with AVX-512, col2im of
    /// `Wᵀ·dy` otherwise), matches col2im of `Wᵀ·dy` written out here, for
    /// several kernels, paddings (up to kernel - 1), sizes and channels.
    #[test]
    fn input_gradient_matches_col2im_of_the_weight_product() {
        let mut rng = Rng::seed(12);
        for (c, h, w, n) in [
            (1, 6, 9, 2),
            (3, 5, 17, 3),
            (8, 4, 33, 1),
            (20, 3, 7, 2),
            (4, 3, 18, TRANSPOSED_DIRECT_MIN_BATCH),
            // Winograd from 18 output channels on (16 x 4 x 4 tiles).
            (2, 8, 32, 4),
        ] {
            for ((kh, kw), (ph, pw)) in [
                ((3, 3), (1, 1)),
                ((3, 3), (0, 0)),
                ((3, 3), (2, 2)),
                ((1, 3), (0, 1)),
                ((5, 3), (2, 1)),
                ((3, 1), (1, 0)),
            ] {
                // 70 x 9 taps: the batched limit only.
                for o in [1, 7, 18, 70] {
                    let Some(g) = ConvGeom::new((c, h, w), (kh, kw), (1, 1), (ph, pw)) else {
                        continue;
                    };
                    let (ck, cols) = (g.col_rows(), g.col_cols());
                    let dy = values(n * o * cols, &mut rng);
                    let wt = values(o * ck, &mut rng);
                    let mut reference = vec![0.0; n * g.in_len()];
                    for (i, dxi) in reference.chunks_exact_mut(g.in_len()).enumerate() {
                        let mut dcol = vec![0.0; ck * cols];
                        gemm_packed(
                            1.0,
                            MatRef::row_major(&wt, o, ck).t(),
                            MatRef::row_major(&dy[i * o * cols..(i + 1) * o * cols], o, cols),
                            0.0,
                            &mut dcol,
                        );
                        col2im_add(&dcol, &g, dxi);
                    }
                    let mut dx = vec![f32::NAN; n * g.in_len()];
                    conv2d_backward_input(&dy, &g, &wt, o, &mut dx);
                    for (k, (a, b)) in dx.iter().zip(&reference).enumerate() {
                        assert!(
                            (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                            "{g:?} o {o} at {k}: {a} vs {b}"
                        );
                    }
                }
            }
        }
    }

    /// Each direct build gives the same bits as im2col + matrixmultiply,
    /// for ragged widths, several paddings, kernels and channel counts (up
    /// to 70 x 9 taps, across two 256-tap block boundaries), with and
    /// without bias.
    #[test]
    fn direct_paths_match_im2col_gemm() {
        let mut rng = Rng::seed(11);
        let mut checked = 0;
        for (c, h, w) in [
            (1, 32, 128),
            (1, 5, 13),
            (2, 7, 9),
            (1, 4, 3),
            (8, 6, 33),
            (33, 4, 17),
            (70, 3, 9),
        ] {
            for ((kh, kw), (ph, pw)) in [
                ((3, 3), (1, 1)),
                ((3, 3), (0, 0)),
                ((1, 3), (0, 1)),
                ((3, 1), (2, 0)),
            ] {
                for o in [1, 8, 11, 19] {
                    let Some(g) = ConvGeom::new((c, h, w), (kh, kw), (1, 1), (ph, pw)) else {
                        continue;
                    };
                    let x = values(g.in_len(), &mut rng);
                    let wt = values(o * g.col_rows(), &mut rng);
                    let bias = values(o, &mut rng);
                    for b in [None, Some(&bias[..])] {
                        let out = o * g.col_cols();
                        let mut reference = vec![0.0; out];
                        let mut col = vec![0.0; g.col_rows() * g.col_cols()];
                        im2col(&x, &g, &mut col);
                        let beta = match b {
                            Some(b) => {
                                for (row, &bv) in reference.chunks_mut(g.col_cols()).zip(b) {
                                    row.fill(bv);
                                }
                                1.0
                            }
                            None => 0.0,
                        };
                        gemm_packed(
                            1.0,
                            MatRef::row_major(&wt, o, g.col_rows()),
                            MatRef::row_major(&col, g.col_rows(), g.col_cols()),
                            beta,
                            &mut reference,
                        );
                        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                        for build in conv_direct::Build::available_for(&g) {
                            let direct = written_over_nan(out, |y| {
                                conv_direct::conv2d_direct_with(build, &x, &g, &wt, o, b, y)
                            });
                            assert_eq!(
                                bits(&direct),
                                bits(&reference),
                                "{build:?} {g:?} o {o} bias {}",
                                b.is_some()
                            );
                            checked += 1;
                        }
                    }
                }
            }
        }
        if checked == 0 {
            eprintln!("skipped: the CPU runs no direct convolution build");
        }
    }

    /// A batch through `conv2d_forward_tapwise` (whichever kernel it
    /// takes) equals each sample through im2col + matrixmultiply.
    #[test]
    fn tapwise_forward_matches_im2col_gemm_per_sample() {
        let mut rng = Rng::seed(12);
        let g = ConvGeom::new((16, 8, 32), (3, 3), (1, 1), (1, 1)).unwrap();
        let (n, o) = (3, 32);
        let x = values(n * g.in_len(), &mut rng);
        let wt = values(o * g.col_rows(), &mut rng);
        let out = o * g.col_cols();
        let mut y = vec![0.0; n * out];
        conv2d_forward_tapwise(&x, &g, &wt, o, None, &mut y);
        for i in 0..n {
            let mut col = vec![0.0; g.col_rows() * g.col_cols()];
            im2col(&x[i * g.in_len()..(i + 1) * g.in_len()], &g, &mut col);
            let mut want = vec![0.0; out];
            gemm_packed(
                1.0,
                MatRef::row_major(&wt, o, g.col_rows()),
                MatRef::row_major(&col, g.col_rows(), g.col_cols()),
                0.0,
                &mut want,
            );
            assert_eq!(&y[i * out..(i + 1) * out], &want[..], "sample {i}");
        }
    }

    /// The tap-by-tap convolution writes every output value, from slots
    /// that start as NaN, with or without a bias, on the direct path (a
    /// thin first layer; stride 1) and the im2col + GEMM one (stride 2), for
    /// one sample and several.
    #[test]
    fn tapwise_writes_every_output() {
        let mut rng = Rng::seed(17);
        for (c, stride) in [(1, 1), (3, 1), (4, 2)] {
            let g = ConvGeom::new((c, 10, 20), (3, 3), (stride, stride), (1, 1)).unwrap();
            let o = 5;
            for n in [1, 3] {
                let x = values(n * g.in_len(), &mut rng);
                let wt = values(o * g.col_rows(), &mut rng);
                let bias = values(o, &mut rng);
                for b in [None, Some(&bias[..])] {
                    let len = n * o * g.col_cols();
                    let y = written_over_nan(len, |y| {
                        conv2d_forward_tapwise_slots(&x, &g, &wt, o, b, y)
                    });
                    let mut want = vec![0.0; len];
                    conv2d_forward_tapwise(&x, &g, &wt, o, b, &mut want);
                    assert!(y.iter().all(|v| !v.is_nan()), "{g:?} n {n}");
                    assert_eq!(y, want, "{g:?} n {n}");
                }
            }
        }
    }

    /// From enough channels and tiles, `conv2d_forward` takes the Winograd
    /// path, which agrees with the tap-by-tap sums up to rounding.
    #[test]
    fn forward_through_winograd_matches_tapwise_within_rounding() {
        let mut rng = Rng::seed(13);
        let g = ConvGeom::new((16, 8, 32), (3, 3), (1, 1), (1, 1)).unwrap();
        let (n, o) = (4, 24);
        if !winograd::applies(&g, n) {
            eprintln!("skipped: no AVX-512F");
            return;
        }
        let x = values(n * g.in_len(), &mut rng);
        let wt = values(o * g.col_rows(), &mut rng);
        let bias = values(o, &mut rng);
        let mut y = vec![f32::NAN; n * o * g.col_cols()];
        let mut want = y.clone();
        conv2d_forward(&x, &g, &wt, o, Some(&bias), &mut y);
        conv2d_forward_tapwise(&x, &g, &wt, o, Some(&bias), &mut want);
        assert_ne!(y, want, "the Winograd path did not run");
        for (k, (a, b)) in y.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= 2e-5 * (1.0 + b.abs()),
                "at {k}: {a} vs {b}"
            );
        }
    }

    /// One sample split across threads (output channels per thread on the
    /// direct path, rows of the product otherwise) gives the bits of one thread.
    #[test]
    fn single_sample_split_across_threads_matches_one_thread() {
        let mut rng = Rng::seed(14);
        for (c, o, h, w) in [(1, 8, 32, 128), (16, 32, 8, 32), (3, 5, 7, 9)] {
            let g = ConvGeom::new((c, h, w), (3, 3), (1, 1), (1, 1)).unwrap();
            let x = values(g.in_len(), &mut rng);
            let wt = values(o * g.col_rows(), &mut rng);
            let bias = values(o, &mut rng);
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let mut y = vec![0.0; o * g.col_cols()];
                pool.install(|| conv2d_forward(&x, &g, &wt, o, Some(&bias), &mut y));
                y
            };
            assert_eq!(run(1), run(3), "{c} -> {o}, {h} x {w}");
        }
    }
}
