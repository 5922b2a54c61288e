//! Direct convolution for stride-1 layers: no im2col matrix.
//!
//! The input sample is copied once into a zero-padded scratch plane per
//! channel. With AVX-512, a stride-1 convolution of up to
//! [`MAX_TAPS_AVX512`] taps is then the unpacked
//! product of [`super::small_gemm_avx512`] with an implicit right-hand
//! side: its row `p` is tap `p` = (channel, kernel row, kernel column) of
//! the padded input, shifted by the tap's offset, and its columns are the
//! output positions, 16 of one output row per vector. Without AVX-512, thin
//! layers (at most [`MAX_TAPS`] taps, such as a CRNN's 1-channel 3x3 first
//! layer) run an AVX2 kernel: eight output columns of up to eight output
//! channels accumulated in registers, one fused multiply-add per tap.
//!
//! Both compute every output as the im2col + GEMM path does — a fused
//! multiply-add chain over the taps in the order (channel, kernel row,
//! kernel column) from zero, in blocks of 256 taps, padding taps included
//! as zeros, then the bias — so all paths give the same bits (tested in
//! `conv2d`'s tests).

use super::conv2d::ConvGeom;
use super::scratch::with_scratch;
use super::small_gemm;
use super::small_gemm_avx512::{self as avx512, Columns, Lanes, Listed, Product, StridedA};
use super::uninit::filled;
use std::cell::Cell;
use std::mem::MaybeUninit;

/// The most taps (`c * kh * kw`) the AVX2 path takes.
pub const MAX_TAPS: usize = 16;

/// The most taps the AVX-512 path takes: beyond, the shifted input rows a
/// tile streams (every tap's vectors) outgrow L2. Against im2col and
/// matrixmultiply's packed product, measured in one process in alternation
/// (one thread): `crnn-t` b4 (1152 taps) 1.13-1.16x, b2 and b3 at batch 4
/// 1.1-1.5x, `crnn-s` layers for one line 1.5-2x.
pub const MAX_TAPS_AVX512: usize = 1152;

thread_local! {
    /// Each thread's zero-padded input sample.
    static PADDED: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// The builds of the direct convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Build {
    /// Stride 1 and at most [`MAX_TAPS_AVX512`] taps, AVX-512F.
    Avx512,
    /// Stride 1 and at most [`MAX_TAPS`] taps, AVX2 and FMA.
    Avx2,
}

impl Build {
    /// Whether this build runs `g` on this CPU.
    pub fn runs(self, g: &ConvGeom) -> bool {
        let taps = g.col_rows();
        if g.sh != 1 || g.sw != 1 || taps == 0 {
            return false;
        }
        match self {
            Build::Avx512 => taps <= MAX_TAPS_AVX512 && avx512::available(),
            Build::Avx2 => taps <= MAX_TAPS && small_gemm::available(),
        }
    }

    /// The fastest build that runs `g` on this CPU, if any.
    pub fn best_for(g: &ConvGeom) -> Option<Build> {
        [Build::Avx512, Build::Avx2].into_iter().find(|b| b.runs(g))
    }

    /// The builds that run `g` on this CPU, best first.
    pub fn available_for(g: &ConvGeom) -> Vec<Build> {
        [Build::Avx512, Build::Avx2]
            .into_iter()
            .filter(|b| b.runs(g))
            .collect()
    }
}

/// Whether [`conv2d_direct`] handles this geometry on this CPU: stride 1,
/// and AVX-512 with at most [`MAX_TAPS_AVX512`] taps, or AVX2 with FMA and
/// at most [`MAX_TAPS`] taps.
pub fn applies(g: &ConvGeom) -> bool {
    Build::best_for(g).is_some()
}

/// Convolves one sample `x` (c, h, w) with `weight` (o, c, kh, kw) and an
/// optional `bias` (o) into `y` (o, ho, wo), writing every one of those
/// values (`y` may start uninitialised). Panics unless [`applies`].
pub fn conv2d_direct(
    x: &[f32],
    g: &ConvGeom,
    weight: &[f32],
    o: usize,
    bias: Option<&[f32]>,
    y: &mut [MaybeUninit<f32>],
) {
    let build = Build::best_for(g).expect("conv2d_direct: geometry or CPU not supported");
    conv2d_direct_with(build, x, g, weight, o, bias, y);
}

/// [`conv2d_direct`] on the build `build`, which must run `g` ([`Build::runs`]).
pub fn conv2d_direct_with(
    build: Build,
    x: &[f32],
    g: &ConvGeom,
    weight: &[f32],
    o: usize,
    bias: Option<&[f32]>,
    y: &mut [MaybeUninit<f32>],
) {
    assert!(
        build.runs(g),
        "conv2d_direct: {build:?} does not run {g:?} on this CPU"
    );
    let taps = g.col_rows();
    assert!(x.len() >= g.in_len() && weight.len() >= o * taps);
    assert!(y.len() >= o * g.ho * g.wo && bias.is_none_or(|b| b.len() >= o));
    match build {
        Build::Avx512 => implicit_gemm(x, g, weight, o, bias, y),
        Build::Avx2 => thin(x, g, weight, o, bias, y),
    }
}

/// Copies sample `x` into `padded` (c planes of `rows x cols`, zero
/// around), the input at row `ph` and column `pw` of each plane.
pub(super) fn pad(x: &[f32], g: &ConvGeom, padded: &mut [f32], rows: usize, cols: usize) {
    padded.fill(0.0);
    let plane = rows * cols;
    for c in 0..g.c {
        for ih in 0..g.h {
            let src = &x[(c * g.h + ih) * g.w..(c * g.h + ih + 1) * g.w];
            let at = c * plane + (ih + g.ph) * cols + g.pw;
            padded[at..at + g.w].copy_from_slice(src);
        }
    }
}

/// Where each tap (channel, kernel row, kernel column) of output (0, 0)
/// reads in padded planes of `rows x cols`.
pub(super) fn tap_offsets(
    g: &ConvGeom,
    rows: usize,
    cols: usize,
) -> impl Iterator<Item = usize> + '_ {
    let plane = rows * cols;
    (0..g.c).flat_map(move |c| {
        (0..g.kh).flat_map(move |ki| (0..g.kw).map(move |kj| c * plane + ki * cols + kj))
    })
}

/// The output positions of one sample as 16-lane vectors, row by row:
/// vector `v` covers output row `v / per_row`.
struct OutputRows {
    ho: usize,
    wo: usize,
    /// Columns of a padded input row.
    cols: usize,
    per_row: usize,
}

impl Columns for OutputRows {
    fn count(&self) -> usize {
        self.ho * self.per_row
    }
    fn lanes(&self, v: usize) -> Lanes {
        let (oh, u) = (v / self.per_row, v % self.per_row);
        Lanes {
            b: oh * self.cols + 16 * u,
            c: oh * self.wo + 16 * u,
            lanes: (self.wo - 16 * u).min(16),
        }
    }
}

/// The AVX-512 path: the weight (o x taps) times the implicit im2col matrix.
fn implicit_gemm(
    x: &[f32],
    g: &ConvGeom,
    weight: &[f32],
    o: usize,
    bias: Option<&[f32]>,
    y: &mut [MaybeUninit<f32>],
) {
    let (rows, cols) = (g.h + 2 * g.ph, g.w + 2 * g.pw);
    let out_plane = g.ho * g.wo;
    let offsets: Vec<usize> = tap_offsets(g, rows, cols).collect();
    // The product adds to its output: each plane starts at its bias (or 0).
    for (ch, plane) in y.chunks_exact_mut(out_plane).take(o).enumerate() {
        filled(plane, bias.map_or(0.0, |b| b[ch]));
    }
    let beta = if bias.is_some() { 1.0 } else { 0.0 };
    with_scratch(&PADDED, g.c * rows * cols, |padded| {
        pad(x, g, padded, rows, cols);
        let product = Product {
            m: o,
            k: offsets.len(),
            alpha: 1.0,
            a: StridedA {
                a: weight.as_ptr(),
                rsa: offsets.len(),
                csa: 1,
            },
            rows: Listed {
                b: padded.as_ptr(),
                offsets: offsets.as_ptr(),
            },
            beta,
            c: y.as_mut_ptr().cast(),
            ldc: out_plane,
        };
        let outputs = OutputRows {
            ho: g.ho,
            wo: g.wo,
            cols,
            per_row: g.wo.div_ceil(16),
        };
        // SAFETY: AVX-512 is present (`Build::runs`); tap p of output
        // (oh, ow) reads padded[offsets[p] + oh * cols + ow], inside the
        // padded planes since ow + kj < cols and oh + ki < rows; `y` holds
        // o planes of ho x wo; `weight` o x taps values (checked by the caller).
        unsafe { avx512::product(product, &outputs) };
    });
}

/// The AVX2 path for thin layers.
fn thin(
    x: &[f32],
    g: &ConvGeom,
    weight: &[f32],
    o: usize,
    bias: Option<&[f32]>,
    y: &mut [MaybeUninit<f32>],
) {
    let taps = g.col_rows();
    // Padded planes: every window of every output vector (8 columns, the
    // last one rounded up) lies inside.
    let rows = g.h + 2 * g.ph;
    let cols = g.wo.div_ceil(8) * 8 + g.kw - 1;
    with_scratch(&PADDED, g.c * rows * cols, |padded| {
        pad(x, g, padded, rows, cols);
        let mut offsets = [0usize; MAX_TAPS];
        for (slot, off) in offsets.iter_mut().zip(tap_offsets(g, rows, cols)) {
            *slot = off;
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
            // SAFETY: AVX2 and FMA are present (`Build::runs`), and the
            // plan's reads stay inside `padded` by construction of `cols`.
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
        _: &mut [std::mem::MaybeUninit<f32>],
    ) {
        unreachable!()
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Plan;
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

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
        out: &mut [MaybeUninit<f32>],
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
                        unsafe { _mm256_storeu_ps(dst.as_mut_ptr().cast(), v) };
                    } else {
                        let mut tmp = [0.0f32; 8];
                        // SAFETY: `tmp` holds 8 values.
                        unsafe { _mm256_storeu_ps(tmp.as_mut_ptr(), v) };
                        for (slot, &t) in dst.iter_mut().zip(&tmp) {
                            slot.write(t);
                        }
                    }
                }
                ow += 8;
            }
        }
    }
}
