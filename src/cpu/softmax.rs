//! Row-wise softmax and log-softmax over the last axis, with a temperature.

use rayon::prelude::*;

const PAR_MIN_ROWS: usize = 256;

fn rows_mut(out: &mut [f32], k: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    if out.len() / k.max(1) < PAR_MIN_ROWS {
        out.chunks_mut(k).enumerate().for_each(|(i, r)| f(i, r));
    } else {
        out.par_chunks_mut(k).enumerate().for_each(|(i, r)| f(i, r));
    }
}

/// `log_softmax(x / temperature)` of each row of `k` values.
pub fn log_softmax(x: &[f32], k: usize, temperature: f32) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    if k == 0 {
        return out;
    }
    let inv_t = 1.0 / temperature;
    rows_mut(&mut out, k, |i, row| {
        let src = &x[i * k..(i + 1) * k];
        let max = src.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v * inv_t));
        let sum: f32 = src.iter().map(|&v| (v * inv_t - max).exp()).sum();
        let lse = max + sum.ln();
        for (o, &v) in row.iter_mut().zip(src) {
            *o = v * inv_t - lse;
        }
    });
    out
}

/// `softmax(x / temperature)` of each row of `k` values.
pub fn softmax(x: &[f32], k: usize, temperature: f32) -> Vec<f32> {
    let mut out = log_softmax(x, k, temperature);
    out.iter_mut().for_each(|v| *v = v.exp());
    out
}

/// Gradient of `log_softmax(x / T)` given the output `y` and its gradient `g`:
/// `(g - softmax · Σg) / T`.
pub fn log_softmax_backward(y: &[f32], g: &[f32], k: usize, temperature: f32) -> Vec<f32> {
    let mut out = vec![0.0; y.len()];
    let inv_t = 1.0 / temperature;
    rows_mut(&mut out, k, |i, row| {
        let (yr, gr) = (&y[i * k..(i + 1) * k], &g[i * k..(i + 1) * k]);
        let gsum: f32 = gr.iter().sum();
        for ((o, &yv), &gv) in row.iter_mut().zip(yr).zip(gr) {
            *o = (gv - yv.exp() * gsum) * inv_t;
        }
    });
    out
}

/// Gradient of `softmax(x / T)` given the output `y` and its gradient `g`:
/// `y · (g - Σ g·y) / T`.
pub fn softmax_backward(y: &[f32], g: &[f32], k: usize, temperature: f32) -> Vec<f32> {
    let mut out = vec![0.0; y.len()];
    let inv_t = 1.0 / temperature;
    rows_mut(&mut out, k, |i, row| {
        let (yr, gr) = (&y[i * k..(i + 1) * k], &g[i * k..(i + 1) * k]);
        let dot: f32 = yr.iter().zip(gr).map(|(a, b)| a * b).sum();
        for ((o, &yv), &gv) in row.iter_mut().zip(yr).zip(gr) {
            *o = yv * (gv - dot) * inv_t;
        }
    });
    out
}
