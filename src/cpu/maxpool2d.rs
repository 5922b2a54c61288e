//! 2-D max pooling on the CPU.
//!
//! The forward pass can record, for each output, the index inside its input
//! plane of the value it took; the backward pass routes each output gradient
//! to that index.
//!
//! Non-overlapping, unpadded windows (kernel = stride, the CRNN's 2x2 and
//! 2x1 pools) take a fast path that walks whole rows; other geometries take
//! the general path. Both pick the same value and index. Planes are split
//! across threads in groups of at least `PAR_MIN_VALUES` values, and each
//! plane is computed the same way whatever the split.

use super::conv2d::ConvGeom;
use super::uninit::{build_chunked, filled};
use rayon::prelude::*;

/// Fewest input values a parallel task handles: smaller inputs run on the
/// calling thread and larger ones are not cut into tiny tasks.
const PAR_MIN_VALUES: usize = 1 << 15;

/// Whether `v` replaces the running maximum `best`: a larger value or a NaN
/// (so the first maximum in row-major order wins, and the last NaN).
/// Branch-free: both comparisons are evaluated and or-ed.
#[inline(always)]
fn takes(v: f32, best: f32) -> bool {
    (v > best) | v.is_nan()
}

/// A kernel pooling one plane: geometry, input, output, optional argmax.
type PlaneFn = fn(&ConvGeom, &[f32], &mut [f32], Option<&mut [u32]>);

/// General geometry: one plane, any stride, kernel and padding.
fn pool_plane_general(g: &ConvGeom, xp: &[f32], yp: &mut [f32], mut ap: Option<&mut [u32]>) {
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
                    if takes(v, best) {
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
}

/// Whether the windows tile the input without overlap or padding
/// (kernel = stride, no padding); trailing rows or columns that fit no
/// window are simply not read.
fn is_tiling(g: &ConvGeom) -> bool {
    g.ph == 0 && g.pw == 0 && g.kh == g.sh && g.kw == g.sw
}

/// Non-overlapping, unpadded windows of any size: every window lies inside
/// the plane, so its first element starts the maximum.
fn pool_plane_tiling(g: &ConvGeom, xp: &[f32], yp: &mut [f32], mut ap: Option<&mut [u32]>) {
    let (w, kh, kw) = (g.w, g.kh, g.kw);
    for oh in 0..g.ho {
        for ow in 0..g.wo {
            let first = oh * kh * w + ow * kw;
            let mut best = xp[first];
            let mut best_i = first;
            for ki in 0..kh {
                for kj in 0..kw {
                    let i = first + ki * w + kj;
                    let v = xp[i];
                    let t = takes(v, best);
                    best = if t { v } else { best };
                    best_i = if t { i } else { best_i };
                }
            }
            let o = oh * g.wo + ow;
            yp[o] = best;
            if let Some(a) = ap.as_deref_mut() {
                a[o] = best_i as u32;
            }
        }
    }
}

/// The maximum of `vals` (in window row-major order) and its position in
/// `offs`, the first maximum winning, the last NaN over everything.
#[inline(always)]
fn window_max<const K: usize>(vals: [f32; K], offs: [u32; K]) -> (f32, u32) {
    let (mut best, mut bi) = (vals[0], offs[0]);
    for k in 1..K {
        let t = takes(vals[k], best);
        best = if t { vals[k] } else { best };
        bi = if t { offs[k] } else { bi };
    }
    (best, bi)
}

avx2_dispatch! {
    /// 2x2 windows, stride 2, no padding: one output row from two input rows
    /// `r0`, `r1` (2 wo values each used) starting at plane index `base`.
    fn pool_row_2x2(r0: &[f32], r1: &[f32], w: u32, base: u32, y: &mut [f32], a: Option<&mut [u32]>) {
        let wo = y.len();
        let (r0, r1) = (&r0[..2 * wo], &r1[..2 * wo]);
        match a {
            Some(a) => {
                let a = &mut a[..wo];
                for ow in 0..wo {
                    let j = 2 * ow;
                    let o = base + j as u32;
                    let (v, i) = window_max(
                        [r0[j], r0[j + 1], r1[j], r1[j + 1]],
                        [o, o + 1, o + w, o + w + 1],
                    );
                    y[ow] = v;
                    a[ow] = i;
                }
            }
            None => {
                for ((o, a), b) in y.iter_mut().zip(r0.chunks_exact(2)).zip(r1.chunks_exact(2)) {
                    *o = window_max([a[0], a[1], b[0], b[1]], [0; 4]).0;
                }
            }
        }
    }
}

avx2_dispatch! {
    /// 2x1 windows, stride (2, 1), no padding: one output row from two input
    /// rows `r0`, `r1` (wo values each) starting at plane index `base`.
    fn pool_row_2x1(r0: &[f32], r1: &[f32], w: u32, base: u32, y: &mut [f32], a: Option<&mut [u32]>) {
        let wo = y.len();
        let (r0, r1) = (&r0[..wo], &r1[..wo]);
        match a {
            Some(a) => {
                let a = &mut a[..wo];
                for ow in 0..wo {
                    let o = base + ow as u32;
                    let (v, i) = window_max([r0[ow], r1[ow]], [o, o + w]);
                    y[ow] = v;
                    a[ow] = i;
                }
            }
            None => {
                for ow in 0..wo {
                    y[ow] = window_max([r0[ow], r1[ow]], [0; 2]).0;
                }
            }
        }
    }
}

/// Windows of two rows (2x2 or 2x1) with stride = kernel and no padding,
/// one output row at a time.
fn pool_plane_two_rows(g: &ConvGeom, xp: &[f32], yp: &mut [f32], mut ap: Option<&mut [u32]>) {
    let (w, wo) = (g.w, g.wo);
    let row = if g.kw == 2 {
        pool_row_2x2
    } else {
        pool_row_2x1
    };
    #[cfg(target_arch = "x86_64")]
    if ap.is_none() && super::simd::has_avx512() {
        for oh in 0..g.ho {
            let base = 2 * oh * w;
            let (r0, r1) = (&xp[base..base + w], &xp[base + w..base + 2 * w]);
            // SAFETY: AVX-512F is present; the rows hold `kw * wo` values each
            // (the windows lie inside the plane) and the row of `yp` holds wo.
            unsafe { x86::pool_row_values(r0, r1, g.kw, &mut yp[oh * wo..(oh + 1) * wo]) };
        }
        return;
    }
    for oh in 0..g.ho {
        let base = 2 * oh * w;
        let y = &mut yp[oh * wo..(oh + 1) * wo];
        let a = ap.as_deref_mut().map(|a| &mut a[oh * wo..(oh + 1) * wo]);
        row(
            &xp[base..base + w],
            &xp[base + w..base + 2 * w],
            w as u32,
            base as u32,
            y,
            a,
        );
    }
}

/// The values alone (no argmax) of rows of 2x2 or 2x1 windows, 16 windows
/// a vector: the same choices as [`takes`] in the same order, so the same
/// bits as the scalar rows.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// `best` replaced by `v` where [`super::takes`] holds.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn take(v: __m512, best: __m512) -> __m512 {
        let larger = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, best);
        let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
        _mm512_mask_mov_ps(best, larger | nan, v)
    }

    /// One output row `y` from input rows `r0`, `r1` through windows two
    /// rows high and `kw` (1 or 2) columns wide.
    ///
    /// # Safety
    /// AVX-512F must be present, and `r0`, `r1` must hold `kw * y.len()` values.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) unsafe fn pool_row_values(r0: &[f32], r1: &[f32], kw: usize, y: &mut [f32]) {
        let wo = y.len();
        debug_assert!(r0.len() >= kw * wo && r1.len() >= kw * wo);
        let even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
        let odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
        let mask_of = |lanes: usize| ((1u32 << lanes.min(16)) - 1) as __mmask16;
        let (p0, p1) = (r0.as_ptr(), r1.as_ptr());
        // SAFETY: loads are masked to the first kw * wo values of each row,
        // stores to the first wo of `y`.
        unsafe {
            for j in (0..wo).step_by(16) {
                let out = mask_of(wo - j);
                let best = if kw == 1 {
                    let a = _mm512_maskz_loadu_ps(out, p0.add(j));
                    let b = _mm512_maskz_loadu_ps(out, p1.add(j));
                    if _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(b, b) == 0 {
                        _mm512_max_ps(b, a)
                    } else {
                        take(b, a)
                    }
                } else {
                    let left = mask_of(2 * (wo - j));
                    let right = mask_of((2 * (wo - j)).saturating_sub(16));
                    let row = |p: *const f32| {
                        let lo = _mm512_maskz_loadu_ps(left, p.add(2 * j));
                        let hi = _mm512_maskz_loadu_ps(right, p.add(2 * j + 16));
                        (
                            _mm512_permutex2var_ps(lo, even, hi),
                            _mm512_permutex2var_ps(lo, odd, hi),
                        )
                    };
                    let ((a, b), (c, d)) = (row(p0), row(p1));
                    // Without NaNs `take` is `max` (the first of equals
                    // stays, as vmaxps keeps its second operand).
                    let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(a, b)
                        | _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(c, d);
                    if nan == 0 {
                        _mm512_max_ps(d, _mm512_max_ps(c, _mm512_max_ps(b, a)))
                    } else {
                        take(d, take(c, take(b, a)))
                    }
                };
                _mm512_mask_storeu_ps(y.as_mut_ptr().add(j), out, best);
            }
        }
    }
}

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
    let pool_plane: PlaneFn = if !is_tiling(g) {
        pool_plane_general
    } else if g.kh == 2 && (g.kw == 2 || g.kw == 1) {
        pool_plane_two_rows
    } else {
        pool_plane_tiling
    };
    let planes = x.len() / in_plane;
    // Planes per task: enough values to be worth a task.
    let group = PAR_MIN_VALUES.div_ceil(in_plane).max(1);
    if planes <= group {
        let ys = y.chunks_mut(out_plane);
        match argmax {
            Some(a) => x
                .chunks(in_plane)
                .zip(ys)
                .zip(a.chunks_mut(out_plane))
                .for_each(|((xp, yp), ap)| pool_plane(g, xp, yp, Some(ap))),
            None => x
                .chunks(in_plane)
                .zip(ys)
                .for_each(|(xp, yp)| pool_plane(g, xp, yp, None)),
        }
        return;
    }
    let xs = x.par_chunks(in_plane * group);
    let ys = y.par_chunks_mut(out_plane * group);
    let run = |xg: &[f32], yg: &mut [f32], ag: Option<&mut [u32]>| match ag {
        Some(ag) => xg
            .chunks(in_plane)
            .zip(yg.chunks_mut(out_plane))
            .zip(ag.chunks_mut(out_plane))
            .for_each(|((xp, yp), ap)| pool_plane(g, xp, yp, Some(ap))),
        None => xg
            .chunks(in_plane)
            .zip(yg.chunks_mut(out_plane))
            .for_each(|(xp, yp)| pool_plane(g, xp, yp, None)),
    };
    match argmax {
        Some(a) => xs
            .zip(ys)
            .zip(a.par_chunks_mut(out_plane * group))
            .for_each(|((xg, yg), ag)| run(xg, yg, Some(ag))),
        None => xs.zip(ys).for_each(|(xg, yg)| run(xg, yg, None)),
    }
}

/// Gradient of max pooling: each output gradient `dy` (planes, ho, wo) is
/// added at its `argmax` index into a zero gradient of the input
/// (planes, h, w), which is returned (`planes * h * w` values).
pub fn maxpool2d_backward(dy: &[f32], argmax: &[u32], g: &ConvGeom, planes: usize) -> Vec<f32> {
    let (in_plane, out_plane) = (g.h * g.w, g.ho * g.wo);
    if in_plane == 0 || out_plane == 0 {
        return vec![0.0; planes * in_plane];
    }
    let group = PAR_MIN_VALUES.div_ceil(in_plane).max(1);
    build_chunked(planes * in_plane, in_plane * group, |start, out| {
        let first = start / in_plane;
        for (k, dxp) in out.chunks_mut(in_plane).enumerate() {
            let p = first + k;
            let dxp = filled(dxp, 0.0);
            let range = p * out_plane..(p + 1) * out_plane;
            for (&d, &i) in dy[range.clone()].iter().zip(&argmax[range]) {
                dxp[i as usize] += d;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast paths pick the same value and index as the general one,
    /// and without indices the same value, with ties, signed zeros,
    /// infinities and NaNs of several payloads in the windows.
    #[test]
    fn fast_paths_match_the_general_path() {
        let with_nans = [
            0.0,
            1.0,
            -1.0,
            f32::NAN,
            f32::NEG_INFINITY,
            f32::INFINITY,
            -0.0,
            f32::from_bits(0xffc0_0001),
        ];
        // Whole vectors without a NaN take the vector paths' plain maxima.
        let without_nans = [0.0, -0.0, 1.0, -1.0, f32::NEG_INFINITY, f32::INFINITY];
        let mut state = 12345u64;
        let mut next = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            (state >> 33) as usize
        };
        for (specials, (kh, kw)) in [&with_nans[..], &without_nans[..]]
            .into_iter()
            .flat_map(|s| [(2, 2), (2, 1), (3, 2), (1, 3)].map(|k| (s, k)))
        {
            for (h, w) in [(4, 6), (5, 7), (6, 3), (4, 70), (3, 37), (4, 64)] {
                let g = ConvGeom::new((1, h, w), (kh, kw), (kh, kw), (0, 0)).unwrap();
                let x: Vec<f32> = (0..h * w)
                    .map(|_| specials[next() % specials.len()])
                    .collect();
                let n = g.ho * g.wo;
                let (mut y0, mut a0) = (vec![0.0; n], vec![0u32; n]);
                pool_plane_general(&g, &x, &mut y0, Some(&mut a0));
                let (mut y1, mut a1) = (vec![0.0; n], vec![0u32; n]);
                maxpool2d_forward(&x, &g, &mut y1, Some(&mut a1));
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&y0), bits(&y1), "{kh}x{kw} on {h}x{w}");
                assert_eq!(a0, a1, "{kh}x{kw} on {h}x{w}");
                let mut y2 = vec![0.0; n];
                maxpool2d_forward(&x, &g, &mut y2, None);
                assert_eq!(bits(&y0), bits(&y2), "{kh}x{kw} on {h}x{w}, values only");
            }
        }
    }
}
