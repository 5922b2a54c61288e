//! Direct convolution for thin stride-1 layers (few input channels times
//! kernel taps, such as a CRNN's first layer: 1 channel, 3x3), where im2col
//! would copy the input nine times over to feed a product with a tiny inner
//! dimension.
//!
//! The input sample is copied once into a zero-padded scratch plane; then
//! eight output columns of up to eight output channels are accumulated in
//! registers, one fused multiply-add per tap, taps in the order
//! (channel, kernel row, kernel column) starting from zero, and the bias (if
//! any) is added last. That is exactly the sequence of operations of the
//! im2col + GEMM path (padding taps included, as zeros), so both give the
//! same bits (tested in `conv2d`'s tests).

use super::conv2d::ConvGeom;
use super::scratch::with_scratch;
use super::small_gemm;
use std::cell::Cell;

/// The most taps (`c * kh * kw`) the direct path takes.
pub const MAX_TAPS: usize = 16;

thread_local! {
    /// Each thread's zero-padded input sample.
    static PADDED: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Whether [`conv2d_direct`] handles this geometry on this CPU: stride 1,
/// at most [`MAX_TAPS`] taps, and AVX2 with FMA.
pub fn applies(g: &ConvGeom) -> bool {
    g.sh == 1 && g.sw == 1 && g.col_rows() <= MAX_TAPS && small_gemm::available()
}

/// Convolves one sample `x` (c, h, w) with `weight` (o, c, kh, kw) and an
/// optional `bias` (o) into `y` (o, ho, wo). Panics unless [`applies`].
pub fn conv2d_direct(
    x: &[f32],
    g: &ConvGeom,
    weight: &[f32],
    o: usize,
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    assert!(applies(g), "conv2d_direct: geometry or CPU not supported");
    let taps = g.col_rows();
    assert!(x.len() >= g.in_len() && weight.len() >= o * taps);
    assert!(y.len() >= o * g.ho * g.wo && bias.is_none_or(|b| b.len() >= o));
    // Padded planes: every window of every output vector (8 columns, the
    // last one rounded up) lies inside.
    let rows = g.h + 2 * g.ph;
    let cols = g.wo.div_ceil(8) * 8 + g.kw - 1;
    let plane = rows * cols;
    with_scratch(&PADDED, g.c * plane, |padded| {
        padded.fill(0.0);
        for c in 0..g.c {
            for ih in 0..g.h {
                let src = &x[(c * g.h + ih) * g.w..(c * g.h + ih + 1) * g.w];
                let at = c * plane + (ih + g.ph) * cols + g.pw;
                padded[at..at + g.w].copy_from_slice(src);
            }
        }
        let mut offsets = [0usize; MAX_TAPS];
        for c in 0..g.c {
            for ki in 0..g.kh {
                for kj in 0..g.kw {
                    offsets[(c * g.kh + ki) * g.kw + kj] = c * plane + ki * cols + kj;
                }
            }
        }
        let p = Plan {
            padded,
            cols,
            offsets: &offsets[..taps],
            ho: g.ho,
            wo: g.wo,
        };
        let out_plane = g.ho * g.wo;
        let mut oc = 0;
        while oc < o {
            let ob = (o - oc).min(8);
            let w = &weight[oc * taps..(oc + ob) * taps];
            let b = bias.map(|b| &b[oc..oc + ob]);
            let out = &mut y[oc * out_plane..(oc + ob) * out_plane];
            // SAFETY: AVX2 and FMA are present (`applies`), and the plan's
            // reads stay inside `padded` by construction of `cols`.
            unsafe {
                match ob {
                    1 => x86::block::<1>(&p, w, b, out),
                    2 => x86::block::<2>(&p, w, b, out),
                    3 => x86::block::<3>(&p, w, b, out),
                    4 => x86::block::<4>(&p, w, b, out),
                    5 => x86::block::<5>(&p, w, b, out),
                    6 => x86::block::<6>(&p, w, b, out),
                    7 => x86::block::<7>(&p, w, b, out),
                    _ => x86::block::<8>(&p, w, b, out),
                }
            }
            oc += ob;
        }
    });
}

/// The padded input and where each tap reads.
struct Plan<'a> {
    padded: &'a [f32],
    cols: usize,
    offsets: &'a [usize],
    ho: usize,
    wo: usize,
}

#[cfg(not(target_arch = "x86_64"))]
mod x86 {
    /// Never called: [`super::applies`] is false off x86-64.
    pub(super) unsafe fn block<const OB: usize>(
        _: &super::Plan,
        _: &[f32],
        _: Option<&[f32]>,
        _: &mut [f32],
    ) {
        unreachable!()
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Plan;
    use std::arch::x86_64::*;

    /// `OB` output channels: weights `w` (OB, taps), bias `b` (OB), output
    /// `out` (OB, ho, wo).
    ///
    /// # Safety
    /// AVX2 and FMA must be present and `p` consistent (see `conv2d_direct`).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn block<const OB: usize>(
        p: &Plan,
        w: &[f32],
        b: Option<&[f32]>,
        out: &mut [f32],
    ) {
        let taps = p.offsets.len();
        let out_plane = p.ho * p.wo;
        assert!(w.len() >= OB * taps && out.len() >= OB * out_plane);
        assert!(p.padded.len() >= p.offsets.last().map_or(0, |&o| o + 1) + (p.ho - 1) * p.cols);
        let base = p.padded.as_ptr();
        for oh in 0..p.ho {
            let mut ow = 0;
            while ow < p.wo {
                let at = oh * p.cols + ow;
                let mut acc = [_mm256_setzero_ps(); OB];
                for (t, &off) in p.offsets.iter().enumerate() {
                    // SAFETY: the padded row holds `cols` >= ow + 8 + kw - 1
                    // values for every output vector and tap.
                    let xv = unsafe { _mm256_loadu_ps(base.add(off + at)) };
                    for (c, acc) in acc.iter_mut().enumerate() {
                        let wv = _mm256_set1_ps(w[c * taps + t]);
                        *acc = _mm256_fmadd_ps(wv, xv, *acc);
                    }
                }
                let lanes = (p.wo - ow).min(8);
                for (c, &acc) in acc.iter().enumerate() {
                    let v = match b {
                        Some(b) => _mm256_add_ps(acc, _mm256_set1_ps(b[c])),
                        None => acc,
                    };
                    let dst = &mut out[c * out_plane + oh * p.wo + ow..][..lanes];
                    if lanes == 8 {
                        // SAFETY: `dst` holds 8 values.
                        unsafe { _mm256_storeu_ps(dst.as_mut_ptr(), v) };
                    } else {
                        let mut tmp = [0.0f32; 8];
                        // SAFETY: `tmp` holds 8 values.
                        unsafe { _mm256_storeu_ps(tmp.as_mut_ptr(), v) };
                        dst.copy_from_slice(&tmp[..lanes]);
                    }
                }
                ow += 8;
            }
        }
    }
}
