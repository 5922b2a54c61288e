//! Vectors of f32 for kernels written once for AVX-512 and AVX2: [`Lanes`]
//! (arithmetic, loads and stores) for `__m512`, `__m256` and [`Y2`], and
//! [`Lanes16`] (16 lanes, with the shuffles of the Winograd transforms) for
//! one AVX-512 register (`__m512`) or two AVX2 ones ([`Y2`]). Every build
//! runs the same IEEE operation on each lane, so a kernel gives the same
//! bits on either; [`on_build!`] runs a generic function on the build a
//! [`Kernel`](super::small_gemm::Kernel) names.

use std::arch::x86_64::*;

/// Calls `generic::<__m512>(args)` from an AVX-512F build or
/// `generic::<Y2>(args)` from an AVX2 one, as `kernel` says; the caller
/// guarantees that the CPU runs it.
macro_rules! on_build {
    ($kernel:expr, $generic:ident($($arg:ident: $ty:ty),* $(,)?)) => {{
        #[target_feature(enable = "avx512f")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn on_512($($arg: $ty),*) {
            // SAFETY: forwarded.
            unsafe { $generic::<std::arch::x86_64::__m512>($($arg),*) }
        }
        #[target_feature(enable = "avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn on_256($($arg: $ty),*) {
            // SAFETY: forwarded.
            unsafe { $generic::<$crate::cpu::lanes::Y2>($($arg),*) }
        }
        // SAFETY: the CPU runs `kernel` (the caller's contract).
        unsafe {
            match $kernel {
                $crate::cpu::small_gemm::Kernel::Avx512 => on_512($($arg),*),
                $crate::cpu::small_gemm::Kernel::Avx2 => on_256($($arg),*),
            }
        }
    }};
}
pub(crate) use on_build;

/// A vector of f32 lanes and its arithmetic. The methods are register
/// arithmetic or plain loads and stores; callers run them only where the
/// CPU has the build's features.
pub(crate) trait Lanes: Copy {
    /// Lanes of a vector.
    const LANES: usize;
    unsafe fn zero() -> Self;
    unsafe fn splat(v: f32) -> Self;
    /// [`LANES`](Lanes::LANES) values from `p`.
    unsafe fn load(p: *const f32) -> Self;
    unsafe fn store(self, p: *mut f32);
    unsafe fn add(self, b: Self) -> Self;
    unsafe fn sub(self, b: Self) -> Self;
    unsafe fn mul(self, b: Self) -> Self;
    unsafe fn div(self, b: Self) -> Self;
    /// `max(self, b)` with `vmaxps` semantics (`b` where either is NaN).
    unsafe fn max(self, b: Self) -> Self;
    /// `a·b + c`, fused.
    unsafe fn fmadd(a: Self, b: Self, c: Self) -> Self;
    /// `c - a·b`, fused.
    unsafe fn fnmadd(a: Self, b: Self, c: Self) -> Self;
}

/// 16 lanes of f32 and the shuffles, partial loads and stores the Winograd
/// transforms need.
pub(crate) trait Lanes16: Lanes {
    /// 8 values from `lo`, then 8 from `hi`.
    unsafe fn load_halves(lo: *const f32, hi: *const f32) -> Self;
    /// The lanes of `a` and `b` side by side: `a0 b0 a1 b1 ...`, 32 values.
    unsafe fn interleave2(ab: [Self; 2]) -> [Self; 2];
    /// The lanes of four vectors side by side: `a0 b0 c0 d0 a1 ...`, 64 values.
    unsafe fn interleave4(abcd: [Self; 4]) -> [Self; 4];
    /// The first `n` lanes from `p` (all from 16 on), the others zero;
    /// nothing past them is read.
    unsafe fn load_first(p: *const f32, n: usize) -> Self;
    /// Stores the first `n` lanes at `p` (all from 16 on).
    unsafe fn store_first(self, p: *mut f32, n: usize);
    /// Stores at least the first `n` lanes at `p`: exactly those with
    /// AVX-512, all 16 with AVX2 (whose masked store is slow on AMD
    /// cores: 0.78x the im2col path for a Winograd weight gradient of rows
    /// of 15 tiles). The 16 values from `p` must be the caller's to write.
    unsafe fn store_first_or_all(self, p: *mut f32, n: usize);
    /// The even and the odd values of the 32 in `lo`, `hi`: the inverse
    /// of [`interleave2`](Lanes16::interleave2).
    unsafe fn deinterleave2(lohi: [Self; 2]) -> [Self; 2];
}

impl Lanes for __m512 {
    const LANES: usize = 16;
    #[inline(always)]
    unsafe fn zero() -> Self {
        unsafe { _mm512_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        unsafe { _mm512_set1_ps(v) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        unsafe { _mm512_storeu_ps(p, self) }
    }
    #[inline(always)]
    unsafe fn add(self, b: Self) -> Self {
        unsafe { _mm512_add_ps(self, b) }
    }
    #[inline(always)]
    unsafe fn sub(self, b: Self) -> Self {
        unsafe { _mm512_sub_ps(self, b) }
    }
    #[inline(always)]
    unsafe fn mul(self, b: Self) -> Self {
        unsafe { _mm512_mul_ps(self, b) }
    }
    #[inline(always)]
    unsafe fn div(self, b: Self) -> Self {
        unsafe { _mm512_div_ps(self, b) }
    }
    #[inline(always)]
    unsafe fn max(self, b: Self) -> Self {
        unsafe { _mm512_max_ps(self, b) }
    }
    #[inline(always)]
    unsafe fn fmadd(a: Self, b: Self, c: Self) -> Self {
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn fnmadd(a: Self, b: Self, c: Self) -> Self {
        unsafe { _mm512_fnmadd_ps(a, b, c) }
    }
}

impl Lanes16 for __m512 {
    #[inline(always)]
    unsafe fn load_halves(lo: *const f32, hi: *const f32) -> Self {
        unsafe {
            let lo = _mm256_loadu_ps(lo);
            let hi = _mm256_loadu_ps(hi);
            _mm512_castpd_ps(_mm512_insertf64x4::<1>(
                _mm512_castpd256_pd512(_mm256_castps_pd(lo)),
                _mm256_castps_pd(hi),
            ))
        }
    }
    #[inline(always)]
    unsafe fn interleave2([a, b]: [Self; 2]) -> [Self; 2] {
        unsafe {
            let lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
            let hi =
                _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
            [
                _mm512_permutex2var_ps(a, lo, b),
                _mm512_permutex2var_ps(a, hi, b),
            ]
        }
    }
    #[inline(always)]
    unsafe fn interleave4([a, b, c, d]: [Self; 4]) -> [Self; 4] {
        unsafe {
            let ab = Self::interleave2([a, b]);
            let cd = Self::interleave2([c, d]);
            let lo = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11);
            let hi = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
            let quad = |h: usize, idx: __m512i| {
                _mm512_castpd_ps(_mm512_permutex2var_pd(
                    _mm512_castps_pd(ab[h]),
                    idx,
                    _mm512_castps_pd(cd[h]),
                ))
            };
            [quad(0, lo), quad(0, hi), quad(1, lo), quad(1, hi)]
        }
    }
    #[inline(always)]
    unsafe fn load_first(p: *const f32, n: usize) -> Self {
        unsafe { _mm512_maskz_loadu_ps(first(n), p) }
    }
    #[inline(always)]
    unsafe fn store_first(self, p: *mut f32, n: usize) {
        unsafe { _mm512_mask_storeu_ps(p, first(n), self) }
    }
    #[inline(always)]
    unsafe fn store_first_or_all(self, p: *mut f32, n: usize) {
        unsafe { self.store_first(p, n) }
    }
    #[inline(always)]
    unsafe fn deinterleave2([lo, hi]: [Self; 2]) -> [Self; 2] {
        unsafe {
            let evens =
                _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
            let odds = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
            [
                _mm512_permutex2var_ps(lo, evens, hi),
                _mm512_permutex2var_ps(lo, odds, hi),
            ]
        }
    }
}

/// The mask of the first `n` of 16 lanes (all from 16 on).
#[inline(always)]
fn first(n: usize) -> __mmask16 {
    if n >= 16 {
        0xffff
    } else {
        ((1u32 << n) - 1) as __mmask16
    }
}

impl Lanes for __m256 {
    const LANES: usize = 8;
    #[inline(always)]
    unsafe fn zero() -> Self {
        unsafe { _mm256_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        unsafe { _mm256_set1_ps(v) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        unsafe { _mm256_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        unsafe { _mm256_storeu_ps(p, self) }
    }
    #[inline(always)]
    unsafe fn add(self, b: Self) -> Self {
        unsafe { _mm256_add_ps(self, b) }
    }
    #[inline(always)]
    unsafe fn sub(self, b: Self) -> Self {
        unsafe { _mm256_sub_ps(self, b) }
    }
    #[inline(always)]
    unsafe fn mul(self, b: Self) -> Self {
        unsafe { _mm256_mul_ps(self, b) }
    }
    #[inline(always)]
    unsafe fn div(self, b: Self) -> Self {
        unsafe { _mm256_div_ps(self, b) }
    }
    #[inline(always)]
    unsafe fn max(self, b: Self) -> Self {
        unsafe { _mm256_max_ps(self, b) }
    }
    #[inline(always)]
    unsafe fn fmadd(a: Self, b: Self, c: Self) -> Self {
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn fnmadd(a: Self, b: Self, c: Self) -> Self {
        unsafe { _mm256_fnmadd_ps(a, b, c) }
    }
}

/// 16 lanes as two AVX registers: lanes 0-7, then 8-15.
#[derive(Clone, Copy)]
pub(crate) struct Y2(pub(crate) [__m256; 2]);

/// `a0 b0 a1 b1 ...` of two 8-lane vectors of 32-bit values (`ps`) or of
/// 64-bit ones (`pd`, pairs of values): the first 8 values, then the next 8.
#[inline(always)]
unsafe fn zip_ps(a: __m256, b: __m256) -> [__m256; 2] {
    // SAFETY: register shuffles only (AVX by the caller's target feature).
    unsafe {
        let lo = _mm256_unpacklo_ps(a, b);
        let hi = _mm256_unpackhi_ps(a, b);
        [
            _mm256_permute2f128_ps::<0x20>(lo, hi),
            _mm256_permute2f128_ps::<0x31>(lo, hi),
        ]
    }
}

#[inline(always)]
unsafe fn zip_pd(a: __m256, b: __m256) -> [__m256; 2] {
    // SAFETY: as `zip_ps`.
    unsafe {
        let (a, b) = (_mm256_castps_pd(a), _mm256_castps_pd(b));
        let lo = _mm256_unpacklo_pd(a, b);
        let hi = _mm256_unpackhi_pd(a, b);
        [
            _mm256_castpd_ps(_mm256_permute2f128_pd::<0x20>(lo, hi)),
            _mm256_castpd_ps(_mm256_permute2f128_pd::<0x31>(lo, hi)),
        ]
    }
}

impl Lanes for Y2 {
    const LANES: usize = 16;
    #[inline(always)]
    unsafe fn zero() -> Self {
        unsafe { Y2([_mm256_setzero_ps(); 2]) }
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        unsafe { Y2([_mm256_set1_ps(v); 2]) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        unsafe { Y2([_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))]) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        unsafe {
            _mm256_storeu_ps(p, self.0[0]);
            _mm256_storeu_ps(p.add(8), self.0[1]);
        }
    }
    #[inline(always)]
    unsafe fn add(self, b: Self) -> Self {
        unsafe {
            Y2([
                _mm256_add_ps(self.0[0], b.0[0]),
                _mm256_add_ps(self.0[1], b.0[1]),
            ])
        }
    }
    #[inline(always)]
    unsafe fn sub(self, b: Self) -> Self {
        unsafe {
            Y2([
                _mm256_sub_ps(self.0[0], b.0[0]),
                _mm256_sub_ps(self.0[1], b.0[1]),
            ])
        }
    }
    #[inline(always)]
    unsafe fn mul(self, b: Self) -> Self {
        unsafe {
            Y2([
                _mm256_mul_ps(self.0[0], b.0[0]),
                _mm256_mul_ps(self.0[1], b.0[1]),
            ])
        }
    }
    #[inline(always)]
    unsafe fn div(self, b: Self) -> Self {
        unsafe {
            Y2([
                _mm256_div_ps(self.0[0], b.0[0]),
                _mm256_div_ps(self.0[1], b.0[1]),
            ])
        }
    }
    #[inline(always)]
    unsafe fn max(self, b: Self) -> Self {
        unsafe {
            Y2([
                _mm256_max_ps(self.0[0], b.0[0]),
                _mm256_max_ps(self.0[1], b.0[1]),
            ])
        }
    }
    #[inline(always)]
    unsafe fn fmadd(a: Self, b: Self, c: Self) -> Self {
        unsafe {
            Y2([
                _mm256_fmadd_ps(a.0[0], b.0[0], c.0[0]),
                _mm256_fmadd_ps(a.0[1], b.0[1], c.0[1]),
            ])
        }
    }
    #[inline(always)]
    unsafe fn fnmadd(a: Self, b: Self, c: Self) -> Self {
        unsafe {
            Y2([
                _mm256_fnmadd_ps(a.0[0], b.0[0], c.0[0]),
                _mm256_fnmadd_ps(a.0[1], b.0[1], c.0[1]),
            ])
        }
    }
}

impl Lanes16 for Y2 {
    #[inline(always)]
    unsafe fn load_halves(lo: *const f32, hi: *const f32) -> Self {
        unsafe { Y2([_mm256_loadu_ps(lo), _mm256_loadu_ps(hi)]) }
    }
    #[inline(always)]
    unsafe fn interleave2([a, b]: [Self; 2]) -> [Self; 2] {
        unsafe { [Y2(zip_ps(a.0[0], b.0[0])), Y2(zip_ps(a.0[1], b.0[1]))] }
    }
    #[inline(always)]
    unsafe fn interleave4([a, b, c, d]: [Self; 4]) -> [Self; 4] {
        unsafe {
            let ab = Self::interleave2([a, b]);
            let cd = Self::interleave2([c, d]);
            // Pairs (a_i, b_i) and (c_i, d_i) side by side, four tiles a vector.
            let quad = |h: usize, q: usize| Y2(zip_pd(ab[h].0[q], cd[h].0[q]));
            [quad(0, 0), quad(0, 1), quad(1, 0), quad(1, 1)]
        }
    }
    #[inline(always)]
    unsafe fn load_first(p: *const f32, n: usize) -> Self {
        unsafe {
            let [lo, hi] = halves(n);
            // A load with every lane masked off is not issued: past the
            // end of the data it would still cost a fault-suppression assist.
            let load = |at: usize, m: __m256i, k: usize| match k {
                0 => _mm256_setzero_ps(),
                8 => _mm256_loadu_ps(p.add(at)),
                _ => _mm256_maskload_ps(p.add(at), m),
            };
            let (kl, kh) = (n.min(8), n.clamp(8, 16) - 8);
            Y2([load(0, lo, kl), load(8, hi, kh)])
        }
    }
    #[inline(always)]
    unsafe fn store_first(self, p: *mut f32, n: usize) {
        unsafe {
            if n >= 16 {
                return self.store(p);
            }
            let [lo, hi] = halves(n);
            _mm256_maskstore_ps(p, lo, self.0[0]);
            if n > 8 {
                _mm256_maskstore_ps(p.add(8), hi, self.0[1]);
            }
        }
    }
    #[inline(always)]
    unsafe fn store_first_or_all(self, p: *mut f32, _n: usize) {
        unsafe { self.store(p) }
    }
    #[inline(always)]
    unsafe fn deinterleave2([lo, hi]: [Self; 2]) -> [Self; 2] {
        unsafe {
            let (evens_lo, odds_lo) = unzip_ps(lo.0[0], lo.0[1]);
            let (evens_hi, odds_hi) = unzip_ps(hi.0[0], hi.0[1]);
            [Y2([evens_lo, evens_hi]), Y2([odds_lo, odds_hi])]
        }
    }
}

/// The even and the odd values of `a0 .. a7 b0 .. b7`, in order.
#[inline(always)]
unsafe fn unzip_ps(a: __m256, b: __m256) -> (__m256, __m256) {
    // SAFETY: register shuffles only (AVX2 by the caller's target feature).
    unsafe {
        // Per 128-bit half: a0 a2 b0 b2 | a4 a6 b4 b6; then the middle
        // 64-bit pairs swapped.
        let evens = _mm256_shuffle_ps::<0b10_00_10_00>(a, b);
        let odds = _mm256_shuffle_ps::<0b11_01_11_01>(a, b);
        let order = |v: __m256| {
            _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(v)))
        };
        (order(evens), order(odds))
    }
}

/// `vmaskmovps` masks of the first `n` of 16 lanes, as two 8-lane halves.
#[inline(always)]
unsafe fn halves(n: usize) -> [__m256i; 2] {
    // SAFETY: register arithmetic only (AVX2 by the caller's target feature).
    unsafe {
        let n = _mm256_set1_epi32(n.min(16) as i32);
        let lo = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let hi = _mm256_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15);
        [_mm256_cmpgt_epi32(n, lo), _mm256_cmpgt_epi32(n, hi)]
    }
}
