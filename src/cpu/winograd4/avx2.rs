//! The AVX2 build of F(4x4, 3x3): 16 tiles as two 8-lane registers
//! ([`Y2`](crate::cpu::lanes::Y2)), and register tiles of the products that fit in 16 registers.

use super::{Layout, LANES, ROWS};
use std::arch::x86_64::*;

/// The AVX-512 `split_row` on AVX2, storing the same values in the same
/// order: padded column `4k + p` (input column `4k + p - 1`) of the row at
/// `out[p * phase + k]`, each 32 input columns' 8 values of a phase
/// followed by 8 zeros that the next 32 overwrite. The 32 columns are a
/// 4 x 8 transpose: each vector of 8 permuted to its phases' pairs, then
/// the pairs transposed as 4 x 4 doubles.
///
/// # Safety
/// AVX2; `out` holds `4 * phase` values with `phase == 8 * ceil(w / 32) + 16`.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) unsafe fn split_row(row: &[f32], w: usize, phase: usize, out: &mut [f32]) {
    assert!(out.len() >= 4 * phase && phase > 8 * w.div_ceil(32) + 8);
    let (x, o) = (row.as_ptr(), out.as_mut_ptr());
    let n = row.len();
    // SAFETY: loads are masked to the row (masked-off lanes are not read);
    // stores reach index 8 * ceil(w / 32) + 8 < phase of each phase.
    unsafe {
        let lanes: [i32; 16] = std::array::from_fn(|l| -((l < 8) as i32));
        let pairs = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        let zero = _mm256_setzero_ps();
        *o = 0.0;
        for chunk in 0..w.div_ceil(32) {
            let at = 32 * chunk;
            // A padding row (no values) splits into zeros; 32 values of
            // the row load whole (the per-vector mask arithmetic below was
            // most of a chunk's instructions).
            let phases = if n == 0 {
                [_mm256_setzero_pd(); 4]
            } else {
                let d: [__m256d; 4] = if at + 32 <= n {
                    std::array::from_fn(|q| {
                        let v = _mm256_loadu_ps(x.add(at + 8 * q));
                        _mm256_castps_pd(_mm256_permutevar8x32_ps(v, pairs))
                    })
                } else {
                    std::array::from_fn(|q| {
                        let live = n.saturating_sub(at + 8 * q).min(8);
                        let v = match live {
                            0 => zero,
                            8 => _mm256_loadu_ps(x.add(at + 8 * q)),
                            _ => {
                                let mask = _mm256_loadu_si256(lanes.as_ptr().add(8 - live).cast());
                                _mm256_maskload_ps(x.add(at + 8 * q), mask)
                            }
                        };
                        _mm256_castps_pd(_mm256_permutevar8x32_ps(v, pairs))
                    })
                };
                let t0 = _mm256_unpacklo_pd(d[0], d[1]);
                let t1 = _mm256_unpackhi_pd(d[0], d[1]);
                let t2 = _mm256_unpacklo_pd(d[2], d[3]);
                let t3 = _mm256_unpackhi_pd(d[2], d[3]);
                [
                    _mm256_permute2f128_pd::<0x20>(t0, t2),
                    _mm256_permute2f128_pd::<0x20>(t1, t3),
                    _mm256_permute2f128_pd::<0x31>(t0, t2),
                    _mm256_permute2f128_pd::<0x31>(t1, t3),
                ]
            };
            for (p, &q) in phases.iter().enumerate() {
                // Input column 4k + p is padded column 4k + p + 1.
                let (phase_of, shift) = if p == 3 { (0, 1) } else { (p + 1, 0) };
                let dst = o.add(phase_of * phase + 8 * chunk + shift);
                _mm256_storeu_ps(dst, _mm256_castpd_ps(q));
                _mm256_storeu_ps(dst.add(8), zero);
            }
        }
    }
}

/// [`split_row`] in plain code: the reference it is tested against.
#[cfg(test)]
fn split_row_plain(row: &[f32], w: usize, phase: usize, out: &mut [f32]) {
    out[0] = 0.0;
    for chunk in 0..w.div_ceil(32) {
        for p in 0..4 {
            let (phase_of, shift) = if p == 3 { (0, 1) } else { (p + 1, 0) };
            let dst = &mut out[phase_of * phase + 8 * chunk + shift..][..16];
            for (k, v) in dst[..8].iter_mut().enumerate() {
                *v = row.get(32 * chunk + 4 * k + p).copied().unwrap_or(0.0);
            }
            dst[8..].fill(0.0);
        }
    }
}

/// The 36 products of one block for `S` strips (1 to 3), each with its own
/// `v` and `m` (as the AVX-512 `products_strips`): rows in passes of 4
/// (one strip: 8 accumulators) or 2 (two or three strips: 8 or 12), each
/// k step a broadcast of `u` per row, then `2 S` loads of `v`, a strip at
/// a time (loading every strip's vectors first spilled three accumulators
/// a step with three strips: distill-step 1.18x, batch-32 inference 1.12x
/// without the spills). The same FMAs
/// in the same order per value as the AVX-512 build.
///
/// # Safety
/// AVX2 and FMA; the operands hold those values.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn products<const S: usize>(
    u: &[f32],
    u_entry: usize,
    c: usize,
    v: [&[f32]; S],
    l: &Layout,
    m: [&mut [f32]; S],
) {
    let v = v.map(|v| v.as_ptr());
    let m = m.map(|m| m.as_mut_ptr());
    // SAFETY: the caller's contract.
    unsafe {
        for e in 0..36 {
            let up = u.as_ptr().add(e * u_entry);
            let vp = v.map(|v| v.add(e * l.v_stride));
            let mp = m.map(|m| m.add(e * l.m_stride));
            if S == 1 {
                for r0 in (0..ROWS).step_by(4) {
                    rows::<4, S>(up.add(r0 * c), c, vp, l, mp.map(|m| m.add(LANES * r0)));
                }
            } else {
                for r0 in (0..ROWS).step_by(2) {
                    rows::<2, S>(up.add(r0 * c), c, vp, l, mp.map(|m| m.add(LANES * r0)));
                }
            }
        }
    }
}

/// `R` rows of `u` (from `up`, `c` apart) times `S` strips of one entry,
/// row r of strip s to `m[s] + 16 r`.
#[inline(always)]
unsafe fn rows<const R: usize, const S: usize>(
    up: *const f32,
    c: usize,
    vp: [*const f32; S],
    l: &Layout,
    m: [*mut f32; S],
) {
    let tiles = l.strips * LANES;
    // SAFETY: the caller's contract (AVX2 and FMA by its target feature).
    unsafe {
        let mut acc = [[[_mm256_setzero_ps(); 2]; S]; R];
        for k in 0..c {
            // The rows' values first, then one strip's two vectors at a
            // time: 12 accumulators, 2 values and 2 vectors fit the 16
            // registers (all strips' vectors at once spilled 3 a step).
            let a: [__m256; R] = std::array::from_fn(|r| _mm256_broadcast_ss(&*up.add(r * c + k)));
            for s in 0..S {
                let at = vp[s].add(k * tiles);
                let b = [_mm256_loadu_ps(at), _mm256_loadu_ps(at.add(8))];
                for (acc, &a) in acc.iter_mut().zip(&a) {
                    acc[s][0] = _mm256_fmadd_ps(a, b[0], acc[s][0]);
                    acc[s][1] = _mm256_fmadd_ps(a, b[1], acc[s][1]);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (s, acc) in acc.iter().enumerate() {
                let at = m[s].add(LANES * r);
                _mm256_storeu_ps(at, acc[0]);
                _mm256_storeu_ps(at.add(8), acc[1]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::small_gemm::Kernel;

    /// Each build's vector split stores what the plain one does, for rows
    /// of every length up to three chunks, a padding row (empty) included,
    /// over a buffer of stale values.
    #[test]
    fn split_row_matches_the_plain_split() {
        for kernel in Kernel::all_available() {
            split_row_on_matches_the_plain_split(kernel);
        }
    }

    fn split_row_on_matches_the_plain_split(kernel: Kernel) {
        for w in [32usize, 64, 96] {
            let phase = 8 * w.div_ceil(32) + 16;
            for len in [0, 1, 7, 8, 9, 31, 32, 33, 40, 63, w] {
                let len = len.min(w);
                let row: Vec<f32> = (0..len).map(|i| i as f32 + 0.5).collect();
                let mut want = vec![-1.0; 4 * phase];
                let mut got = want.clone();
                split_row_plain(&row, w, phase, &mut want);
                // SAFETY: the CPU runs `kernel`; `got` holds 4 phases.
                unsafe {
                    match kernel {
                        Kernel::Avx2 => split_row(&row, w, phase, &mut got),
                        Kernel::Avx512 => super::super::x86::split_row(&row, w, phase, &mut got),
                    }
                };
                assert_eq!(got, want, "{kernel:?}: w {w} row of {len}");
            }
        }
    }
}
