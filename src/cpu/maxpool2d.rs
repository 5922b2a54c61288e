//! 2-D max pooling on the CPU, one (sample, channel) plane per task.
//!
//! The forward pass can record, for each output, the index inside its input
//! plane of the value it took; the backward pass routes each output gradient
//! to that index.

use super::conv2d::ConvGeom;
use rayon::prelude::*;

/// Max pooling of `planes` planes `x` (planes, h, w) into `y` (planes, ho, wo),
/// with the window geometry `g` (its `c` is ignored). Padding counts as
/// `-inf`; within a window the first maximum in row-major order wins, and a
/// NaN wins over every number, as PyTorch. When `argmax` is given (one entry
/// per output) it receives the index in the input plane of each chosen value.
///
/// Every window must overlap the input (PyTorch's `padding <= kernel / 2`
/// ensures it); a window that does not gives `-inf` and index 0.
pub fn maxpool2d_forward(x: &[f32], g: &ConvGeom, y: &mut [f32], argmax: Option<&mut [u32]>) {
    let (in_plane, out_plane) = (g.h * g.w, g.ho * g.wo);
    if in_plane == 0 || out_plane == 0 {
        return;
    }
    let pool_plane = |xp: &[f32], yp: &mut [f32], mut ap: Option<&mut [u32]>| {
        for oh in 0..g.ho {
            let h0 = (oh * g.sh) as isize - g.ph as isize;
            let h_lo = h0.max(0) as usize;
            let h_hi = ((h0 + g.kh as isize).max(0) as usize).min(g.h);
            for ow in 0..g.wo {
                let w0 = (ow * g.sw) as isize - g.pw as isize;
                let w_lo = w0.max(0) as usize;
                let w_hi = ((w0 + g.kw as isize).max(0) as usize).min(g.w);
                let mut best = f32::NEG_INFINITY;
                let mut best_i = h_lo * g.w + w_lo;
                for ih in h_lo..h_hi {
                    for iw in w_lo..w_hi {
                        let v = xp[ih * g.w + iw];
                        if v > best || v.is_nan() {
                            best = v;
                            best_i = ih * g.w + iw;
                        }
                    }
                }
                if h_lo >= h_hi || w_lo >= w_hi {
                    best_i = 0;
                }
                let o = oh * g.wo + ow;
                yp[o] = best;
                if let Some(a) = ap.as_deref_mut() {
                    a[o] = best_i as u32;
                }
            }
        }
    };
    let xs = x.par_chunks(in_plane);
    match argmax {
        Some(a) => xs
            .zip(y.par_chunks_mut(out_plane))
            .zip(a.par_chunks_mut(out_plane))
            .for_each(|((xp, yp), ap)| pool_plane(xp, yp, Some(ap))),
        None => xs
            .zip(y.par_chunks_mut(out_plane))
            .for_each(|(xp, yp)| pool_plane(xp, yp, None)),
    }
}

/// Gradient of max pooling: each output gradient `dy` (planes, ho, wo) is
/// added at its `argmax` index into `dx` (planes, h, w), which is overwritten.
pub fn maxpool2d_backward(dy: &[f32], argmax: &[u32], g: &ConvGeom, dx: &mut [f32]) {
    let (in_plane, out_plane) = (g.h * g.w, g.ho * g.wo);
    if in_plane == 0 || out_plane == 0 {
        return;
    }
    dx.par_chunks_mut(in_plane)
        .zip(dy.par_chunks(out_plane))
        .zip(argmax.par_chunks(out_plane))
        .for_each(|((dxp, dyp), ap)| {
            dxp.fill(0.0);
            for (&d, &i) in dyp.iter().zip(ap) {
                dxp[i as usize] += d;
            }
        });
}
