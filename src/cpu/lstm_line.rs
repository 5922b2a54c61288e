//! The recurrence of one LSTM direction over a single sequence (batch 1,
//! nothing saved for a backward pass) on AVX-512, for up to 64 hidden
//! units: each step's `h·W_hhᵀ` is summed in registers and the cell runs
//! on those registers, instead of a GEMM call writing the gates and the
//! cell reading them back (a `crnn-s` line runs 64 such steps).
//!
//! Every value is the same chain of IEEE operations as the general path:
//! the product's FMAs over k from zero, then `acc + pre` (the GEMM's
//! `alpha·acc + beta·c` with both 1), then [`super::fastmath`]'s `sigmoid`
//! and `tanh` written out lane-wise with the same operations in the same
//! order, so the two give the same bits (tested in `super::lstm`).

/// Whether [`run`] takes a direction of `hidden` units on this CPU.
pub(crate) fn applies(hidden: usize) -> bool {
    super::simd::has_avx512() && hidden.is_multiple_of(16) && (16..=64).contains(&hidden)
}

/// Runs the `len` steps of one direction for one sample. `pre` holds the
/// gate pre-activations of each time step from the input (`len x 4H`, time
/// order, gate blocks i, f, g, o); `w_hh_t` is `W_hhᵀ` row-major (`H x 4H`);
/// step `s` reads time `s` (or `len - 1 - s` with `reverse`) and writes h
/// into that time's row of `out` (`len x H`). The state starts at zero.
///
/// Panics unless [`applies`] to `hidden` and the slices have those sizes.
pub(crate) fn run(
    pre: &[f32],
    w_hh_t: &[f32],
    hidden: usize,
    len: usize,
    reverse: bool,
    out: &mut [f32],
) {
    assert!(applies(hidden), "lstm_line: {hidden} hidden units");
    let g4 = 4 * hidden;
    assert!(pre.len() >= len * g4 && out.len() >= len * hidden && w_hh_t.len() >= hidden * g4);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX-512F is present (`applies`); the sizes were checked above.
    unsafe {
        match hidden / 16 {
            1 => x86::run::<1>(pre, w_hh_t, len, reverse, out),
            2 => x86::run::<2>(pre, w_hh_t, len, reverse, out),
            3 => x86::run::<3>(pre, w_hh_t, len, reverse, out),
            _ => x86::run::<4>(pre, w_hh_t, len, reverse, out),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("lstm_line::applies is false off x86-64");
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// `x` with values below `lo` set to `lo` and above `hi` to `hi`; NaN
    /// stays (ordered compares are false for it), as `clamp_nan`.
    #[inline(always)]
    unsafe fn clamp_nan(x: __m512, lo: f32, hi: f32) -> __m512 {
        let lo = _mm512_set1_ps(lo);
        let hi = _mm512_set1_ps(hi);
        let v = _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, lo), x, lo);
        _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, hi), v, hi)
    }

    /// `a * b + c`, rounded twice, as Rust computes `a * b + c`.
    #[inline(always)]
    unsafe fn mul_add(a: __m512, b: __m512, c: f32) -> __m512 {
        _mm512_add_ps(_mm512_mul_ps(a, b), _mm512_set1_ps(c))
    }

    /// `fastmath::exp`, lane-wise.
    #[inline(always)]
    unsafe fn exp(x: __m512) -> __m512 {
        const LOG2E: f32 = std::f32::consts::LOG2_E;
        const LN2_HI: f32 = 0.693_359_4;
        const LN2_LO: f32 = -2.121_944_4e-4;
        const ROUND_MAGIC: f32 = 12_582_912.0;
        let xc = clamp_nan(x, -87.0, 88.0);
        let t = mul_add(xc, _mm512_set1_ps(LOG2E), ROUND_MAGIC);
        let n = _mm512_sub_ps(t, _mm512_set1_ps(ROUND_MAGIC));
        let r = _mm512_sub_ps(
            _mm512_sub_ps(xc, _mm512_mul_ps(n, _mm512_set1_ps(LN2_HI))),
            _mm512_mul_ps(n, _mm512_set1_ps(LN2_LO)),
        );
        let mut p = _mm512_set1_ps(1.987_569_1e-4);
        p = mul_add(p, r, 1.398_199_9e-3);
        p = mul_add(p, r, 8.333_452e-3);
        p = mul_add(p, r, 4.166_579_6e-2);
        p = mul_add(p, r, 1.666_666_5e-1);
        p = mul_add(p, r, 0.5);
        let er = _mm512_add_ps(
            _mm512_add_ps(_mm512_mul_ps(p, _mm512_mul_ps(r, r)), r),
            _mm512_set1_ps(1.0),
        );
        let ni = _mm512_sub_epi32(
            _mm512_castps_si512(t),
            _mm512_set1_epi32(ROUND_MAGIC.to_bits() as i32),
        );
        let scale = _mm512_slli_epi32::<23>(_mm512_add_epi32(ni, _mm512_set1_epi32(127)));
        _mm512_mul_ps(er, _mm512_castsi512_ps(scale))
    }

    /// `fastmath::sigmoid`, lane-wise: 1 / (1 + e^-x), -x by its sign bit.
    #[inline(always)]
    unsafe fn sigmoid(x: __m512) -> __m512 {
        let neg = _mm512_castsi512_ps(_mm512_xor_si512(
            _mm512_castps_si512(x),
            _mm512_set1_epi32(i32::MIN),
        ));
        let one = _mm512_set1_ps(1.0);
        _mm512_div_ps(one, _mm512_add_ps(one, exp(neg)))
    }

    /// `fastmath::tanh`, lane-wise.
    #[inline(always)]
    unsafe fn tanh(x: __m512) -> __m512 {
        const CLAMP: f32 = 7.905_311;
        let xc = clamp_nan(x, -CLAMP, CLAMP);
        let x2 = _mm512_mul_ps(xc, xc);
        let mut p = _mm512_set1_ps(-2.760_768_5e-16);
        p = mul_add(p, x2, 2.000_188e-13);
        p = mul_add(p, x2, -8.604_672e-11);
        p = mul_add(p, x2, 5.122_297e-8);
        p = mul_add(p, x2, 1.485_722_4e-5);
        p = mul_add(p, x2, 6.372_619_3e-4);
        p = mul_add(p, x2, 4.893_524_6e-3);
        p = _mm512_mul_ps(p, xc);
        let mut q = _mm512_set1_ps(1.198_258_4e-6);
        q = mul_add(q, x2, 1.185_347e-4);
        q = mul_add(q, x2, 2.268_434_6e-3);
        q = mul_add(q, x2, 4.893_525e-3);
        let y = _mm512_div_ps(p, q);
        let abs = _mm512_castsi512_ps(_mm512_and_si512(
            _mm512_castps_si512(x),
            _mm512_set1_epi32(i32::MAX),
        ));
        let tiny = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(abs, _mm512_set1_ps(4e-4));
        _mm512_mask_blend_ps(tiny, y, x)
    }

    /// [`super::run`] for `16 * Q` hidden units (`4 * Q` gate vectors).
    ///
    /// # Safety
    /// AVX-512F must be present; `pre` must hold `len` rows of `64 * Q`
    /// values, `w_hh_t` `16 * Q` such rows, `out` `len` rows of `16 * Q`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn run<const Q: usize>(
        pre: &[f32],
        w_hh_t: &[f32],
        len: usize,
        reverse: bool,
        out: &mut [f32],
    ) {
        let (h_len, g4) = (16 * Q, 64 * Q);
        // h of the step before, in memory for the product's broadcasts.
        let mut h = [0.0f32; 64];
        let mut c = [_mm512_setzero_ps(); Q];
        let w = w_hh_t.as_ptr();
        for s in 0..len {
            let t = if reverse { len - 1 - s } else { s };
            let row = pre.as_ptr().add(t * g4);
            let mut gates: [[__m512; Q]; 4] = std::array::from_fn(|b| {
                std::array::from_fn(|q| _mm512_loadu_ps(row.add(16 * (b * Q + q))))
            });
            if s > 0 {
                let mut acc = [[_mm512_setzero_ps(); Q]; 4];
                for (k, &hk) in h[..h_len].iter().enumerate() {
                    let hv = _mm512_set1_ps(hk);
                    let wk = w.add(k * g4);
                    for (b, acc) in acc.iter_mut().enumerate() {
                        for (q, acc) in acc.iter_mut().enumerate() {
                            let wv = _mm512_loadu_ps(wk.add(16 * (b * Q + q)));
                            *acc = _mm512_fmadd_ps(hv, wv, *acc);
                        }
                    }
                }
                for (gates, acc) in gates.iter_mut().zip(&acc) {
                    for (g, &a) in gates.iter_mut().zip(acc) {
                        *g = _mm512_add_ps(a, *g);
                    }
                }
            }
            let y = out.as_mut_ptr().add(t * h_len);
            for q in 0..Q {
                let i = sigmoid(gates[0][q]);
                let f = sigmoid(gates[1][q]);
                let g = tanh(gates[2][q]);
                let o = sigmoid(gates[3][q]);
                c[q] = _mm512_add_ps(_mm512_mul_ps(f, c[q]), _mm512_mul_ps(i, g));
                let hv = _mm512_mul_ps(o, tanh(c[q]));
                _mm512_storeu_ps(h.as_mut_ptr().add(16 * q), hv);
                _mm512_storeu_ps(y.add(16 * q), hv);
            }
        }
    }
}
