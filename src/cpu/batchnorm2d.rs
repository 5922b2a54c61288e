//! 2-D batch normalisation on the CPU, in the manner of llm.c's layernorm:
//! the forward pass saves each channel's mean and inverse standard deviation
//! and the backward pass uses them.
//!
//! Layout (n, c, plane) with `plane = h * w`. Per-channel sums run over
//! channels in parallel, each in a fixed order with f64 accumulators;
//! element-wise passes run over (sample, channel) planes in parallel.

use rayon::prelude::*;

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

/// Mean and biased variance (divided by the count) of each channel of `x`
/// (n, c, plane), computed in two passes with f64 sums.
pub fn batch_stats(x: &[f32], c: usize, plane: usize) -> Vec<(f64, f64)> {
    if c == 0 || plane == 0 {
        return vec![(0.0, 0.0); c];
    }
    let count = (x.len() / c) as f64;
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let sum: f64 = channel_planes(x, c, plane, ch)
                .flatten()
                .map(|&v| v as f64)
                .sum();
            let mean = sum / count;
            let sq: f64 = channel_planes(x, c, plane, ch)
                .flatten()
                .map(|&v| (v as f64 - mean).powi(2))
                .sum();
            (mean, sq / count)
        })
        .collect()
}

/// `y = (x - mean) * rstd * gamma + beta` per channel of `x` (n, c, plane).
#[allow(clippy::too_many_arguments)]
pub fn batchnorm2d_forward(
    x: &[f32],
    c: usize,
    plane: usize,
    mean: &[f32],
    rstd: &[f32],
    gamma: &[f32],
    beta: &[f32],
    y: &mut [f32],
) {
    if c == 0 || plane == 0 {
        return;
    }
    y.par_chunks_mut(plane)
        .zip(x.par_chunks(plane))
        .enumerate()
        .for_each(|(i, (yp, xp))| {
            let ch = i % c;
            let scale = rstd[ch] * gamma[ch];
            let (m, b) = (mean[ch], beta[ch]);
            for (o, &v) in yp.iter_mut().zip(xp) {
                *o = (v - m) * scale + b;
            }
        });
}

/// Gradients of [`batchnorm2d_forward`] given the output gradient `dy`.
///
/// With `batch_stats` the mean and `rstd` were computed from `x` itself
/// (training), so the input gradient carries their derivatives:
/// `dx = gamma * rstd * (dy - mean(dy) - xhat * mean(dy * xhat))`; without,
/// they were constants (evaluation) and `dx = gamma * rstd * dy`. Always
/// `dgamma = Σ dy * xhat` and `dbeta = Σ dy` per channel, with
/// `xhat = (x - mean) * rstd`. `dx`, `dgamma` and `dbeta` are overwritten.
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
    dx: Option<&mut [f32]>,
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    if c == 0 || plane == 0 {
        return;
    }
    let count = (x.len() / c) as f32;
    let sums: Vec<(f64, f64)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let (m, r) = (mean[ch], rstd[ch]);
            let mut sum_dy = 0.0f64;
            let mut sum_dy_xhat = 0.0f64;
            for (dp, xp) in channel_planes(dy, c, plane, ch).zip(channel_planes(x, c, plane, ch)) {
                for (&d, &v) in dp.iter().zip(xp) {
                    sum_dy += d as f64;
                    sum_dy_xhat += (d * ((v - m) * r)) as f64;
                }
            }
            (sum_dy, sum_dy_xhat)
        })
        .collect();
    for (ch, &(sdy, sdx)) in sums.iter().enumerate() {
        dbeta[ch] = sdy as f32;
        dgamma[ch] = sdx as f32;
    }
    let Some(dx) = dx else {
        return;
    };
    dx.par_chunks_mut(plane)
        .zip(dy.par_chunks(plane))
        .zip(x.par_chunks(plane))
        .enumerate()
        .for_each(|(i, ((dxp, dp), xp))| {
            let ch = i % c;
            let (m, r) = (mean[ch], rstd[ch]);
            let scale = gamma[ch] * r;
            if batch_stats {
                let mean_dy = sums[ch].0 as f32 / count;
                let mean_dy_xhat = sums[ch].1 as f32 / count;
                for ((o, &d), &v) in dxp.iter_mut().zip(dp).zip(xp) {
                    let xhat = (v - m) * r;
                    *o = scale * (d - mean_dy - xhat * mean_dy_xhat);
                }
            } else {
                for (o, &d) in dxp.iter_mut().zip(dp) {
                    *o = scale * d;
                }
            }
        });
}
