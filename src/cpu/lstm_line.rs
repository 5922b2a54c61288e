//! The recurrence of one LSTM direction over a single sequence (batch 1,
//! nothing saved for a backward pass) on AVX-512 or AVX2, for up to 64
//! hidden units: each step's `h·W_hhᵀ` is summed in registers and the cell
//! runs on those registers, instead of a GEMM call writing the gates and
//! the cell reading them back (a `crnn-s` line runs 64 such steps).
//!
//! The hidden units are taken a group of vectors at a time: the four
//! gates' accumulators of a group fill 8 of AVX-512's 32 registers (32
//! units) or 12 of AVX2's 16 (24 units), and the group's cell runs as soon
//! as its sums are done. The groups run in turn forwards and backwards
//! from step to step, so the group whose weights were read last is read
//! first again while they are still in L1: `crnn-s`'s 48 units take two
//! groups, and its `W_hh` (36 KB) is more than a 32 KB L1 holds. On a Zen 4
//! core, both directions of a `crnn-s` line (the input products included)
//! 53.1-53.4 µs best with all 48 units in one AVX-512 group, 48.0-50.1 µs
//! in two (in alternation; one-vector groups the same). The weight comes packed
//! ([`pack`]): each group's columns of `W_hhᵀ` one run after another, k by
//! k, so that a step reads it as one stream of whole cache lines (read in
//! place, a k row of a group was four 96-byte pieces of one 768-byte row:
//! a `crnn-s` direction's step 634 → 431 ns on a Zen 3 core). The new h
//! goes to a second buffer, since the later groups of the step still read
//! the old one.
//! The cell's math runs on all the group's vectors side by side, one
//! operation on each before the next (the three sigmoid gates together,
//! then g, then tanh of the new cells): a sigmoid is a chain of some 30
//! dependent operations, and one vector at a time a step waited on their
//! latency (on Zen 3, a `crnn-s` direction's step 521 → 475 ns, a line
//! ~3% faster).
//!
//! Every value is the same chain of IEEE operations as the general path:
//! the product's FMAs over k from zero, then `acc + pre` (the GEMM's
//! `alpha·acc + beta·c` with both 1), then [`super::fastmath`]'s `sigmoid`
//! and `tanh` written out lane-wise with the same operations in the same
//! order, so the two give the same bits (tested in `super::lstm`), and
//! the builds give each other's bits.

use super::small_gemm::Kernel;

/// The most hidden units [`run`] takes.
const MAX_HIDDEN: usize = 64;

/// Whether `kernel`'s build takes a direction of `hidden` units: whole
/// vectors of 16 (AVX-512) or 8 (AVX2) lanes, up to [`MAX_HIDDEN`].
fn takes(kernel: Kernel, hidden: usize) -> bool {
    let lanes = match kernel {
        Kernel::Avx512 => 16,
        Kernel::Avx2 => 8,
    };
    hidden > 0 && hidden.is_multiple_of(lanes) && hidden <= MAX_HIDDEN
}

/// The build [`run`] uses for `hidden` units on this CPU, if any.
fn build_for(hidden: usize) -> Option<Kernel> {
    // Best first, as `Kernel::all_available`, without its vector: this runs
    // twice a direction.
    [Kernel::Avx512, Kernel::Avx2]
        .into_iter()
        .find(|&k| k.runs() && takes(k, hidden))
}

/// Whether [`run`] takes a direction of `hidden` units on this CPU.
pub(crate) fn applies(hidden: usize) -> bool {
    build_for(hidden).is_some()
}

/// Vectors of hidden units per group of `kernel`'s build.
fn max_group(kernel: Kernel) -> usize {
    match kernel {
        Kernel::Avx512 => 2,
        Kernel::Avx2 => 3,
    }
}

/// Lanes of `kernel`'s vectors.
fn lanes(kernel: Kernel) -> usize {
    match kernel {
        Kernel::Avx512 => 16,
        Kernel::Avx2 => 8,
    }
}

/// `W_hh` (4H x H, row-major, gate blocks i, f, g, o) into `out` (4H·H
/// values) in the order [`run`] reads it on this CPU: for each group of
/// hidden units (the build's vectors, a few at a time), for each k, the
/// group's columns of each gate's block of `W_hhᵀ` (`W_hh[gate·H + u][k]`
/// for the group's units u). Panics unless [`applies`] to `hidden` and the
/// slices have those sizes.
pub(crate) fn pack(w_hh: &[f32], hidden: usize, out: &mut [f32]) {
    let kernel = build_for(hidden);
    let kernel = kernel.unwrap_or_else(|| panic!("lstm_line: {hidden} hidden units"));
    pack_on(kernel, w_hh, hidden, out);
}

/// [`pack`] for `kernel`'s build.
fn pack_on(kernel: Kernel, w_hh: &[f32], hidden: usize, out: &mut [f32]) {
    let (l, g4) = (lanes(kernel), 4 * hidden);
    assert!(takes(kernel, hidden) && w_hh.len() >= g4 * hidden && out.len() >= g4 * hidden);
    let mut slots = out.iter_mut();
    for u0 in (0..hidden).step_by(max_group(kernel) * l) {
        let units = u0..(u0 + max_group(kernel) * l).min(hidden);
        for k in 0..hidden {
            for gate in 0..4 {
                for u in units.clone() {
                    *slots.next().expect("sized above") = w_hh[(gate * hidden + u) * hidden + k];
                }
            }
        }
    }
}

/// Runs the `len` steps of one direction for one sample. `pre` holds the
/// gate pre-activations of each time step from the input (`len x 4H`, time
/// order, gate blocks i, f, g, o); `w_hh_t` is `W_hhᵀ` as [`pack`] leaves it;
/// step `s` reads time `s` (or `len - 1 - s` with `reverse`) and writes h
/// into that time's row of `out`: H values from `out + time * ld`. The
/// state starts at zero.
///
/// Panics unless [`applies`] to `hidden` and the slices have those sizes.
///
/// # Safety
/// `out` holds `len` rows, `ld >= hidden` apart, of at least `hidden`
/// values, which nothing else reads or writes until this returns.
pub(crate) unsafe fn run(
    pre: &[f32],
    w_hh_t: &[f32],
    hidden: usize,
    len: usize,
    reverse: bool,
    out: *mut f32,
    ld: usize,
) {
    let kernel = build_for(hidden);
    let kernel = kernel.unwrap_or_else(|| panic!("lstm_line: {hidden} hidden units"));
    // SAFETY: forwarded.
    unsafe { run_on(kernel, pre, w_hh_t, hidden, len, reverse, out, ld) };
}

/// [`run`] on `kernel`'s build. Panics unless the CPU runs it, it
/// [`takes`] `hidden`, and the slices have the sizes of [`run`].
///
/// # Safety
/// As [`run`].
#[allow(clippy::too_many_arguments)]
unsafe fn run_on(
    kernel: Kernel,
    pre: &[f32],
    w_hh_t: &[f32],
    hidden: usize,
    len: usize,
    reverse: bool,
    out: *mut f32,
    ld: usize,
) {
    assert!(
        kernel.runs() && takes(kernel, hidden),
        "lstm_line: {hidden} hidden units on {kernel:?}"
    );
    let g4 = 4 * hidden;
    assert!(pre.len() >= len * g4 && ld >= hidden && w_hh_t.len() >= hidden * g4);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU runs the build and it takes `hidden` (asserted), so
    // `hidden` is a whole number of its vectors; the sizes were checked,
    // `out`'s by the caller.
    unsafe {
        match kernel {
            Kernel::Avx512 => x86::run_512(pre, w_hh_t, hidden, len, reverse, out, ld),
            Kernel::Avx2 => x86::run_256(pre, w_hh_t, hidden, len, reverse, out, ld),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("no build of lstm_line runs off x86-64");
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use crate::cpu::lanes::Lanes;
    use std::arch::x86_64::*;

    /// The operations of `fastmath`'s functions beyond [`Lanes`]' arithmetic.
    pub(super) trait GateMath: Lanes {
        /// Lanes below `lo` set to `lo` and above `hi` to `hi`; NaN stays
        /// (ordered compares are false for it), as `clamp_nan`.
        unsafe fn clamp_nan(self, lo: f32, hi: f32) -> Self;
        /// The lanes with their sign bits flipped.
        unsafe fn neg(self) -> Self;
        /// `small` where `|x| < limit`, else `self`.
        unsafe fn where_abs_below(self, x: Self, limit: f32, small: Self) -> Self;
        /// 2^n for `t` holding `n + ROUND_MAGIC` (`fastmath::exp`'s scale).
        unsafe fn pow2_of_rounded(t: Self, round_magic: f32) -> Self;
    }

    impl GateMath for __m512 {
        #[inline(always)]
        unsafe fn clamp_nan(self, lo: f32, hi: f32) -> Self {
            unsafe {
                let lo = _mm512_set1_ps(lo);
                let hi = _mm512_set1_ps(hi);
                let v = _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_LT_OQ>(self, lo), self, lo);
                _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, hi), v, hi)
            }
        }
        #[inline(always)]
        unsafe fn neg(self) -> Self {
            unsafe {
                _mm512_castsi512_ps(_mm512_xor_si512(
                    _mm512_castps_si512(self),
                    _mm512_set1_epi32(i32::MIN),
                ))
            }
        }
        #[inline(always)]
        unsafe fn where_abs_below(self, x: Self, limit: f32, small: Self) -> Self {
            unsafe {
                let abs = _mm512_castsi512_ps(_mm512_and_si512(
                    _mm512_castps_si512(x),
                    _mm512_set1_epi32(i32::MAX),
                ));
                let below = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(abs, _mm512_set1_ps(limit));
                _mm512_mask_blend_ps(below, self, small)
            }
        }
        #[inline(always)]
        unsafe fn pow2_of_rounded(t: Self, round_magic: f32) -> Self {
            unsafe {
                let n = _mm512_sub_epi32(
                    _mm512_castps_si512(t),
                    _mm512_set1_epi32(round_magic.to_bits() as i32),
                );
                let bits = _mm512_slli_epi32::<23>(_mm512_add_epi32(n, _mm512_set1_epi32(127)));
                _mm512_castsi512_ps(bits)
            }
        }
    }

    impl GateMath for __m256 {
        #[inline(always)]
        unsafe fn clamp_nan(self, lo: f32, hi: f32) -> Self {
            unsafe {
                // max(a, b) is `a > b ? a : b` and min(a, b) `a < b ? a : b`:
                // with the bound first, a NaN lane gives the lane.
                let v = _mm256_max_ps(_mm256_set1_ps(lo), self);
                _mm256_min_ps(_mm256_set1_ps(hi), v)
            }
        }
        #[inline(always)]
        unsafe fn neg(self) -> Self {
            unsafe { _mm256_xor_ps(self, _mm256_set1_ps(-0.0)) }
        }
        #[inline(always)]
        unsafe fn where_abs_below(self, x: Self, limit: f32, small: Self) -> Self {
            unsafe {
                let abs = _mm256_andnot_ps(_mm256_set1_ps(-0.0), x);
                let below = _mm256_cmp_ps::<_CMP_LT_OQ>(abs, _mm256_set1_ps(limit));
                _mm256_blendv_ps(self, small, below)
            }
        }
        #[inline(always)]
        unsafe fn pow2_of_rounded(t: Self, round_magic: f32) -> Self {
            unsafe {
                let n = _mm256_sub_epi32(
                    _mm256_castps_si256(t),
                    _mm256_set1_epi32(round_magic.to_bits() as i32),
                );
                let bits = _mm256_slli_epi32::<23>(_mm256_add_epi32(n, _mm256_set1_epi32(127)));
                _mm256_castsi256_ps(bits)
            }
        }
    }

    /// `[e(0), e(1), …, e(N - 1)]` for an expression `e` of the index:
    /// one operation on every vector before the next, so that the `N`
    /// independent chains sit side by side in the instruction stream (a
    /// chain of a cell's math is a few dozen dependent operations; one at a
    /// time, a step waited on their latency). A loop, not a closure: see
    /// [`group`].
    macro_rules! each {
        (|$i:ident| $e:expr) => {{
            let mut out = [V::zero(); N];
            for $i in 0..N {
                out[$i] = $e;
            }
            out
        }};
    }

    /// `a * b + c`, rounded twice, as Rust computes `a * b + c`.
    #[inline(always)]
    unsafe fn mul_add<V: GateMath>(a: V, b: V, c: f32) -> V {
        unsafe { a.mul(b).add(V::splat(c)) }
    }

    /// `fastmath::exp`, lane-wise.
    #[inline(always)]
    unsafe fn exp<V: GateMath, const N: usize>(x: [V; N]) -> [V; N] {
        const LOG2E: f32 = std::f32::consts::LOG2_E;
        const LN2_HI: f32 = 0.693_359_4;
        const LN2_LO: f32 = -2.121_944_4e-4;
        const ROUND_MAGIC: f32 = 12_582_912.0;
        unsafe {
            let xc = each!(|i| x[i].clamp_nan(-87.0, 88.0));
            let t = each!(|i| mul_add(xc[i], V::splat(LOG2E), ROUND_MAGIC));
            let n = each!(|i| t[i].sub(V::splat(ROUND_MAGIC)));
            let r = each!(|i| xc[i].sub(n[i].mul(V::splat(LN2_HI))));
            let r = each!(|i| r[i].sub(n[i].mul(V::splat(LN2_LO))));
            let mut p = [V::splat(1.987_569_1e-4); N];
            for c in [
                1.398_199_9e-3,
                8.333_452e-3,
                4.166_579_6e-2,
                1.666_666_5e-1,
                0.5,
            ] {
                p = each!(|i| mul_add(p[i], r[i], c));
            }
            let er = each!(|i| p[i].mul(r[i].mul(r[i])).add(r[i]).add(V::splat(1.0)));
            each!(|i| er[i].mul(V::pow2_of_rounded(t[i], ROUND_MAGIC)))
        }
    }

    /// `fastmath::sigmoid`, lane-wise: 1 / (1 + e^-x).
    #[inline(always)]
    unsafe fn sigmoid<V: GateMath, const N: usize>(x: [V; N]) -> [V; N] {
        unsafe {
            let one = V::splat(1.0);
            let e = exp(each!(|i| x[i].neg()));
            each!(|i| one.div(one.add(e[i])))
        }
    }

    /// `fastmath::tanh`, lane-wise.
    #[inline(always)]
    unsafe fn tanh<V: GateMath, const N: usize>(x: [V; N]) -> [V; N] {
        const CLAMP: f32 = 7.905_311;
        unsafe {
            let xc = each!(|i| x[i].clamp_nan(-CLAMP, CLAMP));
            let x2 = each!(|i| xc[i].mul(xc[i]));
            let mut p = [V::splat(-2.760_768_5e-16); N];
            for c in [
                2.000_188e-13,
                -8.604_672e-11,
                5.122_297e-8,
                1.485_722_4e-5,
                6.372_619_3e-4,
                4.893_524_6e-3,
            ] {
                p = each!(|i| mul_add(p[i], x2[i], c));
            }
            let p = each!(|i| p[i].mul(xc[i]));
            let mut q = [V::splat(1.198_258_4e-6); N];
            for c in [1.185_347e-4, 2.268_434_6e-3, 4.893_525e-3] {
                q = each!(|i| mul_add(q[i], x2[i], c));
            }
            each!(|i| p[i].div(q[i]).where_abs_below(x[i], 4e-4, x[i]))
        }
    }

    /// The state of one direction between steps, and where a step writes.
    struct Step<'a> {
        /// Gate pre-activations of this step's time (4H).
        pre: *const f32,
        /// `W_hhᵀ`, packed ([`super::pack`]).
        w: *const f32,
        hidden: usize,
        /// h of the step before; `None` at the first step (h = 0).
        h_prev: Option<&'a [f32]>,
        /// The cell state (H), updated.
        c: &'a mut [f32],
        /// The new h (H).
        h_next: &'a mut [f32],
        /// This time's row of the output (H).
        y: *mut f32,
    }

    /// The step for the `G` vectors of hidden units from vector `q0`: the
    /// four gates' sums, then the cell.
    ///
    /// # Safety
    /// The CPU runs `V`'s build; `step`'s pointers hold the sizes of
    /// [`Step`], and `q0 + G` vectors fit in `hidden`.
    #[inline(always)]
    unsafe fn group<V: GateMath, const G: usize, const N: usize>(step: &mut Step, q0: usize) {
        const { assert!(N == 3 * G) };
        let (hidden, l) = (step.hidden, V::LANES);
        let at = |b: usize, j: usize| b * hidden + (q0 + j) * l;
        // The group's run of the packed weight: k by k, 4 gates of G vectors.
        let (width, run) = (G * l, step.w.add(4 * hidden * q0 * l));
        // Loops, not closures, around the vector operations: a closure is
        // not compiled with the build's features, and its intrinsics could
        // become calls.
        unsafe {
            let mut gates = [[V::zero(); G]; 4];
            for (b, gates) in gates.iter_mut().enumerate() {
                for (j, g) in gates.iter_mut().enumerate() {
                    *g = V::load(step.pre.add(at(b, j)));
                }
            }
            if let Some(h_prev) = step.h_prev {
                let mut acc = [[V::zero(); G]; 4];
                for (k, &hk) in h_prev[..hidden].iter().enumerate() {
                    let hv = V::splat(hk);
                    let wk = run.add(k * 4 * width);
                    for (b, acc) in acc.iter_mut().enumerate() {
                        for (j, acc) in acc.iter_mut().enumerate() {
                            *acc = V::fmadd(hv, V::load(wk.add(b * width + j * l)), *acc);
                        }
                    }
                }
                for (gates, acc) in gates.iter_mut().zip(&acc) {
                    for (g, &a) in gates.iter_mut().zip(acc) {
                        *g = a.add(*g);
                    }
                }
            }
            // The three sigmoid gates' vectors side by side (i, f, o), then g.
            let [gi, gf, gg, go] = gates;
            let ifo: [V; N] = {
                let g = [gi, gf, go];
                each!(|i| g[i / G][i % G])
            };
            let ifo = sigmoid(ifo);
            let g = tanh(gg);
            let mut c = [V::zero(); G];
            for (j, c) in c.iter_mut().enumerate() {
                let u = (q0 + j) * l;
                let (i, f) = (ifo[j], ifo[G + j]);
                *c = f.mul(V::load(step.c.as_ptr().add(u))).add(i.mul(g[j]));
                c.store(step.c.as_mut_ptr().add(u));
            }
            let tanh_c = tanh(c);
            for (j, &tc) in tanh_c.iter().enumerate() {
                let u = (q0 + j) * l;
                let h = ifo[2 * G + j].mul(tc);
                h.store(step.h_next.as_mut_ptr().add(u));
                h.store(step.y.add(u));
            }
        }
    }

    /// [`super::run`] with vectors `V`, at most `max_group` vectors of
    /// hidden units at a time.
    ///
    /// # Safety
    /// The CPU runs `V`'s build; `hidden` is a whole number of `V`s, at
    /// most [`super::MAX_HIDDEN`]; `pre` holds `len` rows of `4 * hidden`
    /// values, `w_hh_t` `hidden` such rows, `out` `len` rows of `hidden`,
    /// `ld` apart.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn run<V: GateMath>(
        pre: &[f32],
        w_hh_t: &[f32],
        hidden: usize,
        len: usize,
        reverse: bool,
        out: *mut f32,
        ld: usize,
        max_group: usize,
    ) {
        // SAFETY: the caller's contract; q0 + n <= vectors below.
        unsafe {
            let mut h = [[0.0f32; super::MAX_HIDDEN]; 2];
            let mut c = [0.0f32; super::MAX_HIDDEN];
            let vectors = hidden / V::LANES;
            for s in 0..len {
                let t = if reverse { len - 1 - s } else { s };
                let [h_a, h_b] = &mut h;
                let (h_prev, h_next) = if s % 2 == 0 { (h_b, h_a) } else { (h_a, h_b) };
                let mut step = Step {
                    pre: pre.as_ptr().add(t * 4 * hidden),
                    w: w_hh_t.as_ptr(),
                    hidden,
                    h_prev: (s > 0).then_some(&h_prev[..]),
                    c: &mut c,
                    h_next,
                    y: out.add(t * ld),
                };
                let groups = vectors.div_ceil(max_group);
                for u in 0..groups {
                    let u = if s % 2 == 0 { u } else { groups - 1 - u };
                    let q0 = u * max_group;
                    match max_group.min(vectors - q0) {
                        1 => group::<V, 1, 3>(&mut step, q0),
                        2 => group::<V, 2, 6>(&mut step, q0),
                        3 => group::<V, 3, 9>(&mut step, q0),
                        _ => group::<V, 4, 12>(&mut step, q0),
                    }
                }
            }
        }
    }

    /// [`run`] on AVX-512: up to 2 vectors (32 units) at a time.
    ///
    /// # Safety
    /// AVX-512F must be present; the sizes of [`run`].
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn run_512(
        pre: &[f32],
        w_hh_t: &[f32],
        hidden: usize,
        len: usize,
        reverse: bool,
        out: *mut f32,
        ld: usize,
    ) {
        // SAFETY: forwarded.
        unsafe {
            run::<__m512>(
                pre,
                w_hh_t,
                hidden,
                len,
                reverse,
                out,
                ld,
                super::max_group(super::Kernel::Avx512),
            )
        }
    }

    /// [`run`] on AVX2: up to 3 vectors (24 units) at a time, 12
    /// accumulators.
    ///
    /// # Safety
    /// AVX2 and FMA must be present; the sizes of [`run`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn run_256(
        pre: &[f32],
        w_hh_t: &[f32],
        hidden: usize,
        len: usize,
        reverse: bool,
        out: *mut f32,
        ld: usize,
    ) {
        // SAFETY: forwarded.
        unsafe {
            run::<__m256>(
                pre,
                w_hh_t,
                hidden,
                len,
                reverse,
                out,
                ld,
                super::max_group(super::Kernel::Avx2),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::gemm::testing::bits;
    use crate::rng::Rng;

    /// Each group's columns of `W_hhᵀ`, k by k, gate by gate, one group
    /// after another: AVX2's 48 units as two groups of 24, AVX-512's as
    /// 32 and 16.
    #[test]
    fn packs_each_group_k_by_k() {
        let hidden = 48;
        let w_hh: Vec<f32> = (0..4 * hidden * hidden).map(|i| i as f32).collect();
        let mut packed = vec![f32::NAN; w_hh.len()];
        pack_on(Kernel::Avx2, &w_hh, hidden, &mut packed);
        let w = |gate: usize, u: usize, k: usize| w_hh[(gate * hidden + u) * hidden + k];
        // Group 0 (units 0-23): k = 0, gate i, then f, ...
        assert_eq!(packed[..3], [w(0, 0, 0), w(0, 1, 0), w(0, 2, 0)]);
        assert_eq!(packed[24], w(1, 0, 0));
        assert_eq!(packed[4 * 24 + 5], w(0, 5, 1));
        // Group 1 (units 24-47) after all 48 k of group 0.
        let second = 4 * hidden * 24;
        assert_eq!(packed[second + 3 * 24 + 7], w(3, 31, 0));
        assert_eq!(packed[second + 47 * 4 * 24 + 2 * 24 + 23], w(2, 47, 47));
        assert!(packed.iter().all(|v| !v.is_nan()));

        // AVX-512: a group of 32 units, then one of 16.
        let mut packed = vec![f32::NAN; w_hh.len()];
        pack_on(Kernel::Avx512, &w_hh, hidden, &mut packed);
        assert_eq!(packed[..3], [w(0, 0, 0), w(0, 1, 0), w(0, 2, 0)]);
        assert_eq!(packed[32 + 31], w(1, 31, 0));
        assert_eq!(packed[4 * 32 + 5], w(0, 5, 1));
        let second = 4 * hidden * 32;
        assert_eq!(packed[second + 3 * 16 + 7], w(3, 39, 0));
        assert_eq!(packed[second + 47 * 4 * 16 + 2 * 16 + 15], w(2, 47, 47));
        assert!(packed.iter().all(|v| !v.is_nan()));
    }

    /// Every build the CPU runs gives the same bits for every hidden size
    /// it takes, both directions, pre-activations in the clamps of exp and
    /// tanh and below tanh's small-argument cutoff. (Each build against
    /// the general path: `super::lstm`'s tests.)
    #[test]
    fn the_builds_agree() {
        let kernels = Kernel::all_available();
        if kernels.len() < 2 {
            eprintln!("skipped: the CPU runs {kernels:?}");
            return;
        }
        let mut rng = Rng::seed(3);
        for hidden in (16..=MAX_HIDDEN).step_by(16) {
            let len = 7;
            let g4 = 4 * hidden;
            let mut pre: Vec<f32> = (0..len * g4).map(|_| rng.range(-3.0, 3.0)).collect();
            pre[..g4].iter_mut().for_each(|v| *v *= 1e-6);
            pre[g4..2 * g4].iter_mut().for_each(|v| *v *= 100.0);
            let w: Vec<f32> = (0..hidden * g4).map(|_| rng.range(-0.4, 0.4)).collect();
            for reverse in [false, true] {
                let outs: Vec<Vec<u32>> = kernels
                    .iter()
                    .map(|&k| {
                        let mut packed = vec![0.0; w.len()];
                        pack_on(k, &w, hidden, &mut packed);
                        let mut out = vec![0.0; len * hidden];
                        // SAFETY: `out` holds len rows of `hidden`.
                        unsafe {
                            run_on(
                                k,
                                &pre,
                                &packed,
                                hidden,
                                len,
                                reverse,
                                out.as_mut_ptr(),
                                hidden,
                            )
                        };
                        bits(&out)
                    })
                    .collect();
                assert!(
                    outs.windows(2).all(|w| w[0] == w[1]),
                    "hidden {hidden} reverse {reverse}"
                );
            }
        }
    }
}
