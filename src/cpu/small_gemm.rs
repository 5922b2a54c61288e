//! A GEMM for few output rows and a right-hand side with contiguous rows,
//! without packing: `c = alpha * a·b + beta * c`.
//!
//! `matrixmultiply` copies both operands into packed panels before every
//! product and computes 16 x 16 (AVX-512) or 8 x 8 (AVX2) output tiles. For
//! the products of batch-1 inference that is most of the cost: the LSTM's
//! per-step `h·W_hhᵀ` has one row (15 of 16 tile rows wasted, and the whole
//! 48 x 192 weight re-packed 64 times per line), and a convolution's
//! `W·col` has 8 to 32 rows and an im2col matrix of up to 300 k values that
//! would be copied once more. Here the right-hand side is read in place, row
//! by row (`b.cs == 1`), 16 columns (two AVX vectors) at a time, against a
//! register tile of up to [`MR`] rows of `a` broadcast one value at a time.
//!
//! Every output value is computed with the same operations in the same
//! order as `matrixmultiply`'s FMA kernels: a fused multiply-add chain over
//! k from zero, in blocks of [`KC`] = 256 (its `S_KC`), then
//! `c = alpha·acc + beta·c` (one FMA, `beta·c` rounded first; `alpha·acc`
//! when beta is 0, in which case `c` is not read) for the first block and
//! `c = alpha·acc + c` for the next ones. So with `alpha = 1` (every caller
//! in this crate) the results are bit-identical to `matrixmultiply` on a CPU
//! with FMA, and which of the two runs a product never changes a result
//! (tested in `gemm`'s tests).

/// Rows of `a` (and `c`) in one register tile: 6 rows x 2 vectors = 12 of
/// the 16 AVX registers hold accumulators.
pub const MR: usize = 6;
/// Columns of one register tile: two 8-lane vectors.
pub const NR: usize = 16;
/// k is summed in blocks of this many values, as `matrixmultiply`'s
/// single-precision `KC`.
pub const KC: usize = 256;

/// Whether the CPU runs the kernel (AVX2 and FMA; detected once by std).
#[inline]
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The operands of one product, as raw strided pointers.
#[derive(Clone, Copy)]
pub(crate) struct Operands {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub alpha: f32,
    /// `a[i, p]` at `a + i * rsa + p * csa`.
    pub a: *const f32,
    pub rsa: usize,
    pub csa: usize,
    /// `b[p, j]` at `b + p * rsb + j`.
    pub b: *const f32,
    pub rsb: usize,
    pub beta: f32,
    /// `c[i, j]` at `c + i * ldc + j`.
    pub c: *mut f32,
    pub ldc: usize,
}

/// The builds of the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// 8-lane vectors, tiles of up to 6 x 16 (AVX2 and FMA).
    Avx2,
    /// 16-lane vectors, tiles shaped to the rows ([`super::small_gemm_avx512`]).
    Avx512,
}

impl Kernel {
    /// The fastest build the CPU runs, if any.
    pub fn best() -> Option<Kernel> {
        if super::small_gemm_avx512::available() {
            Some(Kernel::Avx512)
        } else if available() {
            Some(Kernel::Avx2)
        } else {
            None
        }
    }

    /// Whether the CPU runs this build.
    pub fn runs(self) -> bool {
        match self {
            Kernel::Avx512 => super::small_gemm_avx512::available(),
            Kernel::Avx2 => available(),
        }
    }

    /// The builds the CPU runs, best first.
    pub fn all_available() -> Vec<Kernel> {
        let mut out = Vec::new();
        if super::small_gemm_avx512::available() {
            out.push(Kernel::Avx512);
        }
        if available() {
            out.push(Kernel::Avx2);
        }
        out
    }
}

/// Runs the product on the build `kernel`.
///
/// # Safety
/// The CPU must run `kernel` (see [`Kernel::all_available`]), every index
/// named in [`Operands`] for `i < m`, `p < k`, `j < n` must be in bounds of
/// live allocations, `c` must not overlap `a` or `b`, and `k > 0`.
pub(crate) unsafe fn gemm_with(kernel: Kernel, o: Operands) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match kernel {
            Kernel::Avx512 => super::small_gemm_avx512::gemm(o),
            Kernel::Avx2 => avx2(o),
        }
    }
}

#[cfg(target_arch = "x86_64")]
unsafe fn avx2(o: Operands) {
    // SAFETY: forwarded from the caller.
    unsafe { x86::gemm(o) }
}

/// Never called: [`available`] is false off x86-64.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn avx2(_: Operands) {
    unreachable!("small_gemm::gemm called on a CPU without AVX2 and FMA")
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Operands, KC, MR, NR};
    use std::arch::x86_64::*;

    /// Lane masks for the first `w` of 16 columns (w in 1..16).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn masks(w: usize) -> (__m256i, __m256i) {
        let lanes: [i32; 16] = std::array::from_fn(|l| if l < w { -1 } else { 0 });
        // SAFETY: both loads read inside `lanes`.
        unsafe {
            (
                _mm256_loadu_si256(lanes.as_ptr().cast()),
                _mm256_loadu_si256(lanes.as_ptr().add(8).cast()),
            )
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn gemm(o: Operands) {
        // Rows split into as few tiles as MR allows, of sizes as even as
        // possible (8 rows: 4 + 4, not 6 + 2).
        let tiles = o.m.div_ceil(MR);
        let mut j = 0;
        if o.m == 1 {
            // One row: 96 columns at a time, 12 independent chains.
            while j + WIDE <= o.n {
                // SAFETY: the columns lie inside the operands.
                unsafe {
                    wide_row(Operands {
                        b: o.b.add(j),
                        c: o.c.add(j),
                        ..o
                    })
                };
                j += WIDE;
            }
        }
        while j < o.n {
            let w = (o.n - j).min(NR);
            let mut i = 0;
            for t in 0..tiles {
                let r = (o.m * (t + 1)) / tiles - i;
                // SAFETY: the tile lies inside the operands (caller's contract).
                unsafe {
                    let t = Operands {
                        a: o.a.add(i * o.rsa),
                        b: o.b.add(j),
                        c: o.c.add(i * o.ldc + j),
                        ..o
                    };
                    if w == NR {
                        match r {
                            1 => tile::<1, false>(t, w),
                            2 => tile::<2, false>(t, w),
                            3 => tile::<3, false>(t, w),
                            4 => tile::<4, false>(t, w),
                            5 => tile::<5, false>(t, w),
                            _ => tile::<6, false>(t, w),
                        }
                    } else {
                        match r {
                            1 => tile::<1, true>(t, w),
                            2 => tile::<2, true>(t, w),
                            3 => tile::<3, true>(t, w),
                            4 => tile::<4, true>(t, w),
                            5 => tile::<5, true>(t, w),
                            _ => tile::<6, true>(t, w),
                        }
                    }
                }
                i += r;
            }
            j += w;
        }
    }

    /// Columns of [`wide_row`]: 12 vectors.
    const WIDE: usize = 96;

    /// The first [`WIDE`] columns of a one-row product, over all k: 12
    /// accumulators (a 1 x 16 tile has two, and waits on each FMA's
    /// latency), the same chain per value as [`tile`].
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn wide_row(t: Operands) {
        // SAFETY: every pointer below stays inside the operands' first
        // WIDE columns of row 0.
        unsafe {
            let alpha = _mm256_set1_ps(t.alpha);
            let mut k0 = 0;
            while k0 < t.k {
                let kc = (t.k - k0).min(KC);
                let mut acc = [_mm256_setzero_ps(); WIDE / 8];
                let mut ap = t.a.add(k0 * t.csa);
                let mut bp = t.b.add(k0 * t.rsb);
                for _ in 0..kc {
                    let av = _mm256_broadcast_ss(&*ap);
                    for (v, acc) in acc.iter_mut().enumerate() {
                        *acc = _mm256_fmadd_ps(av, _mm256_loadu_ps(bp.add(8 * v)), *acc);
                    }
                    ap = ap.add(t.csa);
                    bp = bp.add(t.rsb);
                }
                let beta = if k0 == 0 { t.beta } else { 1.0 };
                for (v, &a) in acc.iter().enumerate() {
                    let p = t.c.add(8 * v);
                    let out = if beta == 0.0 {
                        _mm256_mul_ps(alpha, a)
                    } else {
                        let cv = _mm256_mul_ps(_mm256_loadu_ps(p), _mm256_set1_ps(beta));
                        _mm256_fmadd_ps(alpha, a, cv)
                    };
                    _mm256_storeu_ps(p, out);
                }
                k0 += kc;
            }
        }
    }

    /// Loads 8 values, only the lanes of `m` when `MASKED` (others read 0).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn load<const MASKED: bool>(p: *const f32, m: __m256i) -> __m256 {
        // SAFETY: the caller's lanes are in bounds.
        unsafe {
            if MASKED {
                _mm256_maskload_ps(p, m)
            } else {
                _mm256_loadu_ps(p)
            }
        }
    }

    /// Stores 8 values, only the lanes of `m` when `MASKED`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn store<const MASKED: bool>(p: *mut f32, m: __m256i, v: __m256) {
        // SAFETY: the caller's lanes are in bounds.
        unsafe {
            if MASKED {
                _mm256_maskstore_ps(p, m, v)
            } else {
                _mm256_storeu_ps(p, v)
            }
        }
    }

    /// One `R x 16` tile of `c` (its first `w` columns when `MASKED`), over all k.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn tile<const R: usize, const MASKED: bool>(t: Operands, w: usize) {
        // SAFETY: every pointer below stays inside the tile's operands; the
        // masked loads and stores touch only the first `w` columns.
        unsafe {
            let (m0, m1) = if MASKED {
                masks(w)
            } else {
                (_mm256_set1_epi32(-1), _mm256_set1_epi32(-1))
            };
            let alpha = _mm256_set1_ps(t.alpha);
            let mut k0 = 0;
            while k0 < t.k {
                let kc = (t.k - k0).min(KC);
                let mut acc = [[_mm256_setzero_ps(); 2]; R];
                let mut ap = t.a.add(k0 * t.csa);
                let mut bp = t.b.add(k0 * t.rsb);
                for _ in 0..kc {
                    let b0 = load::<MASKED>(bp, m0);
                    let b1 = load::<MASKED>(bp.add(8), m1);
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let av = _mm256_set1_ps(*ap.add(r * t.rsa));
                        acc[0] = _mm256_fmadd_ps(av, b0, acc[0]);
                        acc[1] = _mm256_fmadd_ps(av, b1, acc[1]);
                    }
                    ap = ap.add(t.csa);
                    bp = bp.add(t.rsb);
                }
                // The first block applies the caller's beta, later ones add.
                let beta = if k0 == 0 { t.beta } else { 1.0 };
                for (r, acc) in acc.iter().enumerate() {
                    let cp = t.c.add(r * t.ldc);
                    for (v, (&a, m)) in acc.iter().zip([m0, m1]).enumerate() {
                        let p = cp.add(8 * v);
                        let out = if beta == 0.0 {
                            _mm256_mul_ps(alpha, a)
                        } else {
                            let cv = _mm256_mul_ps(load::<MASKED>(p, m), _mm256_set1_ps(beta));
                            _mm256_fmadd_ps(alpha, a, cv)
                        };
                        store::<MASKED>(p, m, out);
                    }
                }
                k0 += kc;
            }
        }
    }
}
