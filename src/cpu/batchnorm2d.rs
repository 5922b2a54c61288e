//! 2-D batch normalisation on the CPU, in the manner of llm.c's layernorm:
//! the forward pass saves each channel's mean and inverse standard deviation
//! and the backward pass uses them.
//!
//! Layout (n, c, plane) with `plane = h * w`. Per-channel sums run over
//! channels in parallel, each in a fixed order with f64 accumulators (eight
//! interleaved lanes, summed pairwise at the end, so the loop vectorises);
//! element-wise passes run over groups of (sample, channel) planes in
//! parallel. No result depends on the thread count.

use super::uninit::build_chunked;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Interleaved f64 accumulators per channel sum.
const LANES: usize = 8;

/// Fewest values an element-wise parallel task handles.
const PAR_MIN_VALUES: usize = 1 << 14;

/// The planes of channel `ch` of `x` (n, c, plane), one per sample in order.
fn channel_planes<'a>(
    x: &'a [f32],
    c: usize,
    plane: usize,
    ch: usize,
) -> impl Iterator<Item = &'a [f32]> + 'a {
    x.chunks_exact(c * plane)
        .map(move |sample| &sample[ch * plane..(ch + 1) * plane])
}

/// The lanes summed pairwise.
#[inline(always)]
fn lanes_total(acc: &[f64; LANES]) -> f64 {
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
}

/// Adds `f(v)` of each value of `xs` to the lanes: value i to lane i % LANES.
#[inline(always)]
fn add_lanes(acc: &mut [f64; LANES], xs: &[f32], f: impl Fn(f32) -> f64) {
    let mut chunks = xs.chunks_exact(LANES);
    for ch in &mut chunks {
        for l in 0..LANES {
            acc[l] += f(ch[l]);
        }
    }
    for (a, &v) in acc.iter_mut().zip(chunks.remainder()) {
        *a += f(v);
    }
}

/// Adds `f(a, b)` of each pair of `xs`, `ys` to the lanes.
#[inline(always)]
fn add_lanes2(acc: &mut [f64; LANES], xs: &[f32], ys: &[f32], f: impl Fn(f32, f32) -> f64) {
    let n = xs.len().min(ys.len());
    let (xs, ys) = (&xs[..n], &ys[..n]);
    let mut cx = xs.chunks_exact(LANES);
    let mut cy = ys.chunks_exact(LANES);
    for (a, b) in (&mut cx).zip(&mut cy) {
        for l in 0..LANES {
            acc[l] += f(a[l], b[l]);
        }
    }
    for ((s, &a), &b) in acc.iter_mut().zip(cx.remainder()).zip(cy.remainder()) {
        *s += f(a, b);
    }
}

avx2_dispatch! {
    /// Sum and sum of squared deviations from the mean of channel `ch` of
    /// `x` (n, c, plane); returns (mean, biased variance).
    fn channel_stats(x: &[f32], c: usize, plane: usize, ch: usize) -> (f64, f64) {
        let count = (x.len() / c) as f64;
        let mut acc = [0.0f64; LANES];
        for p in channel_planes(x, c, plane, ch) {
            add_lanes(&mut acc, p, |v| v as f64);
        }
        let mean = lanes_total(&acc) / count;
        let mut acc = [0.0f64; LANES];
        for p in channel_planes(x, c, plane, ch) {
            add_lanes(&mut acc, p, |v| {
                let d = v as f64 - mean;
                d * d
            });
        }
        (mean, lanes_total(&acc) / count)
    }
}

/// Mean and biased variance (divided by the count) of each channel of `x`
/// (n, c, plane), computed in two passes with f64 sums.
pub fn batch_stats(x: &[f32], c: usize, plane: usize) -> Vec<(f64, f64)> {
    if c == 0 || plane == 0 {
        return vec![(0.0, 0.0); c];
    }
    (0..c)
        .into_par_iter()
        .map(|ch| channel_stats(x, c, plane, ch))
        .collect()
}

/// A new (n, c, plane) tensor of `len` values whose every plane is
/// written by `f(channel, plane index, out plane)`, in parallel over groups
/// of whole planes. `f` must write every value of the plane it is given.
fn build_planes(
    len: usize,
    c: usize,
    plane: usize,
    f: impl Fn(usize, usize, &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    let group = PAR_MIN_VALUES.div_ceil(plane).max(1);
    build_chunked(len, plane * group, |start, out| {
        let first = start / plane;
        for (k, yp) in out.chunks_mut(plane).enumerate() {
            let p = first + k;
            f(p % c, p, yp);
        }
    })
}

avx2_dispatch! {
    /// `y = (x - m) * scale + b` over one plane (`x` at least as long as `y`).
    fn affine_plane(y: &mut [MaybeUninit<f32>], x: &[f32], m: f32, scale: f32, b: f32) {
        let x = &x[..y.len()];
        for (o, &v) in y.iter_mut().zip(x) {
            o.write((v - m) * scale + b);
        }
    }
}

avx2_dispatch! {
    /// `y = max((x - m) * scale + b, 0)` over one plane: [`affine_plane`]
    /// and a ReLU after it, in one pass.
    fn affine_relu_plane_from(y: &mut [MaybeUninit<f32>], x: &[f32], m: f32, scale: f32, b: f32) {
        let x = &x[..y.len()];
        for (o, &v) in y.iter_mut().zip(x) {
            o.write(((v - m) * scale + b).max(0.0));
        }
    }
}

/// `y = (x - mean) * rstd * gamma + beta` per channel of `x` (n, c,
/// plane), followed by a ReLU when `relu` (in the same pass, the bits of
/// the two); returns `y`, the same size as `x`.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm2d_forward(
    x: &[f32],
    c: usize,
    plane: usize,
    mean: &[f32],
    rstd: &[f32],
    gamma: &[f32],
    beta: &[f32],
    relu: bool,
) -> Vec<f32> {
    if c == 0 || plane == 0 {
        return vec![0.0; x.len()];
    }
    let map = if relu {
        affine_relu_plane_from
    } else {
        affine_plane
    };
    build_planes(x.len(), c, plane, |ch, p, yp| {
        let xp = &x[p * plane..(p + 1) * plane];
        map(yp, xp, mean[ch], rstd[ch] * gamma[ch], beta[ch]);
    })
}

/// Σ g and Σ g * xhat over channel `ch`, with xhat = (x - m) * r and
/// `g = grad(dy, x)` the gradient at the BatchNorm's output.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn grad_sums(
    dy: &[f32],
    x: &[f32],
    c: usize,
    plane: usize,
    ch: usize,
    m: f32,
    r: f32,
    grad: impl Fn(f32, f32) -> f32,
) -> (f64, f64) {
    let mut acc_dy = [0.0f64; LANES];
    let mut acc_dx = [0.0f64; LANES];
    for (dp, xp) in channel_planes(dy, c, plane, ch).zip(channel_planes(x, c, plane, ch)) {
        add_lanes2(&mut acc_dy, dp, xp, |d, v| grad(d, v) as f64);
        add_lanes2(&mut acc_dx, dp, xp, |d, v| {
            (grad(d, v) * ((v - m) * r)) as f64
        });
    }
    (lanes_total(&acc_dy), lanes_total(&acc_dx))
}

/// `dx = scale * (g - mean_dy - xhat * mean_dy_xhat)` over one plane, with
/// `xhat = (x - m) * r` and `g = grad(dy, x)`, when the statistics came from
/// the batch (`batch`); `dx = scale * g` when they were constants.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn dx_values(
    dx: &mut [MaybeUninit<f32>],
    dy: &[f32],
    x: &[f32],
    batch: bool,
    (m, r, scale): (f32, f32, f32),
    mean_dy: f32,
    mean_dy_xhat: f32,
    grad: impl Fn(f32, f32) -> f32,
) {
    let n = dx.len();
    let (dy, x) = (&dy[..n], &x[..n]);
    if batch {
        for k in 0..n {
            let xhat = (x[k] - m) * r;
            dx[k].write(scale * (grad(dy[k], x[k]) - mean_dy - xhat * mean_dy_xhat));
        }
    } else {
        for k in 0..n {
            dx[k].write(scale * grad(dy[k], x[k]));
        }
    }
}

/// The gradient that reaches the BatchNorm's output through a ReLU after
/// it: `dy` where the ReLU's input `(x - m) * scale + b` (recomputed, the
/// forward's bits) is positive, else `dy * 0`, as the ReLU's own backward.
#[inline(always)]
fn through_relu(d: f32, v: f32, m: f32, scale: f32, b: f32) -> f32 {
    d * if (v - m) * scale + b > 0.0 { 1.0 } else { 0.0 }
}

avx2_dispatch! {
    /// [`grad_sums`] of `dy` itself.
    fn channel_grad_sums(
        dy: &[f32],
        x: &[f32],
        c: usize,
        plane: usize,
        ch: usize,
        m: f32,
        r: f32,
    ) -> (f64, f64) {
        grad_sums(dy, x, c, plane, ch, m, r, |d, _| d)
    }
}

avx2_dispatch! {
    /// [`grad_sums`] of the gradient through a ReLU after the BatchNorm
    /// ([`through_relu`], its affine `scale` and `b`).
    fn channel_grad_sums_relu(
        dy: &[f32],
        x: &[f32],
        c: usize,
        plane: usize,
        ch: usize,
        m: f32,
        r: f32,
        scale: f32,
        b: f32,
    ) -> (f64, f64) {
        grad_sums(dy, x, c, plane, ch, m, r, |d, v| through_relu(d, v, m, scale, b))
    }
}

avx2_dispatch! {
    /// [`dx_values`] of `dy` itself.
    fn dx_plane(
        dx: &mut [MaybeUninit<f32>],
        dy: &[f32],
        x: &[f32],
        batch: bool,
        m: f32,
        r: f32,
        scale: f32,
        mean_dy: f32,
        mean_dy_xhat: f32,
    ) {
        dx_values(dx, dy, x, batch, (m, r, scale), mean_dy, mean_dy_xhat, |d, _| d)
    }
}

avx2_dispatch! {
    /// [`dx_values`] of the gradient through a ReLU after the BatchNorm
    /// ([`through_relu`], its affine `scale` and `b`).
    fn dx_plane_relu(
        dx: &mut [MaybeUninit<f32>],
        dy: &[f32],
        x: &[f32],
        batch: bool,
        m: f32,
        r: f32,
        scale: f32,
        b: f32,
        mean_dy: f32,
        mean_dy_xhat: f32,
    ) {
        let grad = |d, v| through_relu(d, v, m, scale, b);
        dx_values(dx, dy, x, batch, (m, r, scale), mean_dy, mean_dy_xhat, grad)
    }
}

/// Gradients of [`batchnorm2d_forward`] given the output gradient `dy`.
///
/// With `batch_stats` the mean and `rstd` were computed from `x` itself
/// (training), so the input gradient carries their derivatives:
/// `dx = gamma * rstd * (dy - mean(dy) - xhat * mean(dy * xhat))`; without,
/// they were constants (evaluation) and `dx = gamma * rstd * dy`. Always
/// `dgamma = Σ dy * xhat` and `dbeta = Σ dy` per channel, with
/// `xhat = (x - mean) * rstd`. With `relu_beta` (the BatchNorm's `beta`,
/// for [`batchnorm2d_forward`] with `relu`) a ReLU followed it and `dy` is the
/// ReLU's output gradient: each value first goes through the ReLU's
/// backward, its input recomputed from `x`, the bits of the two ops run one
/// after the other. `dgamma` and `dbeta` are overwritten; `dx` is returned
/// when `want_dx`.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm2d_backward(
    dy: &[f32],
    x: &[f32],
    c: usize,
    plane: usize,
    mean: &[f32],
    rstd: &[f32],
    gamma: &[f32],
    batch_stats: bool,
    want_dx: bool,
    relu_beta: Option<&[f32]>,
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) -> Option<Vec<f32>> {
    if c == 0 || plane == 0 {
        return want_dx.then(|| vec![0.0; x.len()]);
    }
    let count = (x.len() / c) as f32;
    let sums: Vec<(f64, f64)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let (m, r) = (mean[ch], rstd[ch]);
            match relu_beta {
                Some(b) => channel_grad_sums_relu(dy, x, c, plane, ch, m, r, r * gamma[ch], b[ch]),
                None => channel_grad_sums(dy, x, c, plane, ch, m, r),
            }
        })
        .collect();
    for (ch, &(sdy, sdx)) in sums.iter().enumerate() {
        dbeta[ch] = sdy as f32;
        dgamma[ch] = sdx as f32;
    }
    if !want_dx {
        return None;
    }
    Some(build_planes(x.len(), c, plane, |ch, p, dxp| {
        let range = p * plane..(p + 1) * plane;
        let (m, r) = (mean[ch], rstd[ch]);
        let scale = gamma[ch] * r;
        let (mean_dy, mean_dy_xhat) = if batch_stats {
            (sums[ch].0 as f32 / count, sums[ch].1 as f32 / count)
        } else {
            (0.0, 0.0)
        };
        let (dy, x) = (&dy[range.clone()], &x[range]);
        match relu_beta {
            Some(b) => dx_plane_relu(
                dxp,
                dy,
                x,
                batch_stats,
                m,
                r,
                scale,
                b[ch],
                mean_dy,
                mean_dy_xhat,
            ),
            None => dx_plane(dxp, dy, x, batch_stats, m, r, scale, mean_dy, mean_dy_xhat),
        }
    }))
}

avx2_dispatch! {
    /// `y = max((y - m) * scale + b, 0)` in place over one plane: the
    /// values [`affine_plane`] and a ReLU after it give, in one pass.
    fn affine_relu_plane(y: &mut [f32], m: f32, scale: f32, b: f32) {
        for v in y.iter_mut() {
            *v = ((*v - m) * scale + b).max(0.0);
        }
    }
}

/// The per-channel affine map of an evaluation-mode BatchNorm:
/// `y = (x - mean) * scale + beta`.
#[derive(Clone, Copy)]
pub struct ChannelAffine<'a> {
    /// Running mean per channel.
    pub mean: &'a [f32],
    /// `rstd * gamma` per channel.
    pub scale: &'a [f32],
    /// Shift per channel.
    pub beta: &'a [f32],
}

/// Evaluation-mode BatchNorm followed by ReLU, in place on `y` (n, c,
/// plane): `y = max((y - mean) * (rstd * gamma) + beta, 0)` per channel,
/// bit for bit what [`batchnorm2d_forward`] then a ReLU give.
pub fn batchnorm2d_relu_inplace(
    y: &mut [f32],
    c: usize,
    plane: usize,
    mean: &[f32],
    rstd: &[f32],
    gamma: &[f32],
    beta: &[f32],
) {
    if c == 0 || plane == 0 {
        return;
    }
    let run = |p: usize, yp: &mut [f32]| {
        let ch = p % c;
        affine_relu_plane(yp, mean[ch], rstd[ch] * gamma[ch], beta[ch]);
    };
    if y.len() < 2 * PAR_MIN_VALUES {
        y.chunks_mut(plane)
            .enumerate()
            .for_each(|(p, yp)| run(p, yp));
    } else {
        y.par_chunks_mut(plane)
            .enumerate()
            .for_each(|(p, yp)| run(p, yp));
    }
}
