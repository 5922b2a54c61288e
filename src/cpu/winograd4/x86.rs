//! The kernels of F(4x4, 3x3): 16 tiles per vector of [`Lanes16`], one
//! AVX-512 register or two AVX2 ones ([`super::avx2`]). The transforms are
//! written once over [`Lanes16`]; the products have a register tile per
//! build. Both builds run the same IEEE operations in the same order on
//! each lane, so they give the same bits.

use super::{Layout, Pool, LANES, ROWS};
use crate::cpu::lanes::{on_build, Lanes16, Y2};
use crate::cpu::small_gemm::Kernel;
use std::arch::x86_64::*;
use std::mem::MaybeUninit;
use std::ops::Range;

/// [`Lanes16`] with the split of an input row into its four phases.
pub(super) trait SplitRow: Lanes16 {
    /// See [`split_row`].
    unsafe fn split_row(row: &[f32], w: usize, phase: usize, out: &mut [f32]);
}

impl SplitRow for __m512 {
    #[inline(always)]
    unsafe fn split_row(row: &[f32], w: usize, phase: usize, out: &mut [f32]) {
        // SAFETY: forwarded (AVX-512F by the caller's target feature).
        unsafe { split_row(row, w, phase, out) }
    }
}

impl SplitRow for Y2 {
    #[inline(always)]
    unsafe fn split_row(row: &[f32], w: usize, phase: usize, out: &mut [f32]) {
        // SAFETY: forwarded (AVX2 by the caller's target feature).
        unsafe { super::avx2::split_row(row, w, phase, out) }
    }
}

/// [`split_row`] for every row of a plane (h, w), with a padding row
/// above and below: padded row pr at `out[pr * 4 * phase]`.
///
/// # Safety
/// The build's features; `plane` holds h rows and `out` `h + 2` split rows.
#[inline(always)]
unsafe fn split_plane<L: SplitRow>(
    plane: &[f32],
    (h, w): (usize, usize),
    phase: usize,
    out: &mut [f32],
) {
    for (pr, out) in out.chunks_exact_mut(4 * phase).take(h + 2).enumerate() {
        let ih = pr.wrapping_sub(1);
        let row = if ih < h {
            &plane[ih * w..(ih + 1) * w]
        } else {
            &[]
        };
        // SAFETY: forwarded.
        unsafe { L::split_row(row, w, phase, out) };
    }
}

/// Splits one input row (`w` values, or none for a padding row) into the
/// four phases of its padded row: padded column `4k + p` (input column
/// `4k + p - 1`) at `out[p * phase + k]`, zeros past the row. Each 32
/// input columns give 8 values of each phase and 8 zeros after them, which
/// the next 32 overwrite.
///
/// # Safety
/// AVX-512F; `out` holds `4 * phase` values with `phase == 8 * ceil(w / 32) + 16`.
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) unsafe fn split_row(row: &[f32], w: usize, phase: usize, out: &mut [f32]) {
    let (x, o) = (row.as_ptr(), out.as_mut_ptr());
    let n = row.len();
    let lanes = |at: usize| -> __mmask16 {
        let left = n.saturating_sub(at).min(LANES);
        ((1u32 << left) - 1) as __mmask16
    };
    // SAFETY: loads are masked to the row; stores reach index
    // 8 * ceil(w / 32) + 8 < phase of each phase (caller's contract).
    unsafe {
        let zero = _mm512_setzero_ps();
        let step = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 0, 0, 0, 0, 0, 0, 0);
        *o = 0.0;
        for chunk in 0..w.div_ceil(32) {
            let at = 32 * chunk;
            // 32 values of the row load whole (the masks cost more than the
            // permutes). A load with every lane masked off is not issued: on
            // an address past the row (or a padding row, which has none) it
            // would still cost a fault-suppression assist.
            let v: [__m512; 2] = if at + 32 <= n {
                [0, 1].map(|q| _mm512_loadu_ps(x.add(at + 16 * q)))
            } else {
                [0, 1].map(|q| match lanes(at + 16 * q) {
                    0 => zero,
                    k => _mm512_maskz_loadu_ps(k, x.add(at + 16 * q)),
                })
            };
            for p in 0..4 {
                let pick = _mm512_add_epi32(step, _mm512_set1_epi32(p as i32));
                let q = _mm512_maskz_permutex2var_ps(0x00ff, v[0], pick, v[1]);
                // Input column 4k + p is padded column 4k + p + 1.
                let (phase_of, shift) = if p == 3 { (0, 1) } else { (p + 1, 0) };
                _mm512_storeu_ps(o.add(phase_of * phase + 8 * chunk + shift), q);
            }
        }
    }
}

/// `Bᵀ d`, d a column of 6 vectors.
#[inline(always)]
unsafe fn bt<L: Lanes16>(d: [L; 6]) -> [L; 6] {
    // SAFETY: register arithmetic only (the build's features by the caller's target feature).
    unsafe {
        let four = L::splat(4.0);
        let five = L::splat(5.0);
        let two = L::splat(2.0);
        let t1 = L::fnmadd(four, d[2], d[4]);
        let t2 = L::fnmadd(four, d[1], d[3]);
        let t3 = d[4].sub(d[2]);
        let t4 = two.mul(d[3].sub(d[1]));
        [
            L::fmadd(four, d[0], L::fnmadd(five, d[2], d[4])),
            t1.add(t2),
            t1.sub(t2),
            t3.add(t4),
            t3.sub(t4),
            L::fmadd(four, d[1], L::fnmadd(five, d[3], d[5])),
        ]
    }
}

/// `Aᵀ m`, m a column of 6 vectors.
#[inline(always)]
unsafe fn at<L: Lanes16>(m: [L; 6]) -> [L; 4] {
    // SAFETY: register arithmetic only.
    unsafe {
        let s12 = m[1].add(m[2]);
        let d12 = m[1].sub(m[2]);
        let s34 = m[3].add(m[4]);
        let d34 = m[3].sub(m[4]);
        [
            m[0].add(s12).add(s34),
            L::fmadd(L::splat(2.0), d34, d12),
            L::fmadd(L::splat(4.0), s34, s12),
            L::fmadd(L::splat(8.0), d34, d12).add(m[5]),
        ]
    }
}

/// 16 tiles' values at offset `at` from `first` (8 from `first` and 8
/// from `second` when `second` is not null).
#[inline(always)]
unsafe fn patch_column<L: Lanes16>(first: *const f32, second: *const f32, at: usize) -> L {
    // SAFETY: the caller's loads lie in the phases.
    unsafe {
        if second.is_null() {
            L::load(first.add(at))
        } else {
            L::load_halves(first.add(at), second.add(at))
        }
    }
}

/// `V`: `Bᵀ d B` of every tile's 6x6 patch of the channels `channels` of
/// `x` (planes of h x w), entry e = 6i + j of channel ch and strip s at
/// `v[e * v_stride + ch * ld + 16 s]` (`ld`: the sample's tiles, or more
/// where several samples' tiles share the rows); nothing else of `v` is
/// touched, so threads may fill disjoint ranges of channels (or samples)
/// at once. Each channel's padded rows are split into phases
/// ([`split_plane`]) in `phases`, then read from there while they are in L1.
///
/// # Safety
/// The CPU runs `kernel`; `x` holds the planes up to `channels.end`,
/// `phases` `h + 2` split rows, `v` 36 entries of `v_stride >=
/// channels.end * ld` values, `ld` at least the tiles, of which no other
/// thread reads or writes the values of `channels` meanwhile.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn input_transform(
    kernel: Kernel,
    x: &[f32],
    hw: (usize, usize),
    channels: Range<usize>,
    l: &Layout,
    phases: &mut [f32],
    v: *mut f32,
    ld: usize,
) {
    on_build!(
        kernel,
        input_transform_with(
            x: &[f32],
            hw: (usize, usize),
            channels: Range<usize>,
            l: &Layout,
            phases: &mut [f32],
            v: *mut f32,
            ld: usize,
        )
    )
}

/// [`input_transform`] on one build.
#[inline(always)]
unsafe fn input_transform_with<L: SplitRow>(
    x: &[f32],
    (h, w): (usize, usize),
    channels: Range<usize>,
    l: &Layout,
    phases: &mut [f32],
    out: *mut f32,
    ld: usize,
) {
    // SAFETY: every load lies in the phases of a padded row, at most 16
    // values from index cols / 16 * 16 + 1 <= phase - 16 (the caller's
    // layout); stores stay within entry e's rows of `channels`.
    unsafe {
        for ch in channels {
            split_plane::<L>(&x[ch * h * w..(ch + 1) * h * w], (h, w), l.phase, phases);
            let channel = phases.as_ptr();
            for s in 0..l.strips {
                let (first, second) = strip_patch(channel, l, s);
                // Rows: column j of Bᵀ d.
                // (Uninitialised, not zeros: an array of AVX2 vectors set to
                // zero and then overwritten cost a `memset` call per strip.)
                let mut cols = [[MaybeUninit::<L>::uninit(); 6]; 6];
                for (j, col) in cols.iter_mut().enumerate() {
                    let at = (j % 4) * l.phase + j / 4;
                    let values = bt(std::array::from_fn(|i| {
                        patch_column(first, second, i * 4 * l.phase + at)
                    }));
                    for (slot, v) in col.iter_mut().zip(values) {
                        slot.write(v);
                    }
                }
                // Then each row i of (Bᵀ d) times B; every value of `cols`
                // was written above.
                let rows = (0..6).map(|i| bt(std::array::from_fn(|j| cols[j][i].assume_init())));
                for (i, r) in rows.enumerate() {
                    for (j, &val) in r.iter().enumerate() {
                        val.store(out.add((6 * i + j) * l.v_stride + ch * ld + LANES * s));
                    }
                }
            }
        }
    }
}

/// Where padded row 0 of strip `s`'s tiles starts in a channel's phases
/// (`channel`), and that of its second row of tiles when rows hold 8 (else
/// null): 4 padded rows on per row of tiles.
///
/// # Safety
/// `channel` holds the split rows of the plane of `l`.
#[inline(always)]
unsafe fn strip_patch(channel: *const f32, l: &Layout, s: usize) -> (*const f32, *const f32) {
    // SAFETY: the strip's rows lie in the phases (the caller's contract).
    unsafe {
        if l.cols == 8 {
            let first = channel.add(8 * s * 4 * l.phase);
            (first, first.add(4 * 4 * l.phase))
        } else {
            let (tr, tc) = ((LANES * s) / l.cols, (LANES * s) % l.cols);
            (channel.add(4 * tr * 4 * l.phase + tc), std::ptr::null())
        }
    }
}

/// `A d`, d a column of 4 vectors: `A` is `Aᵀ`'s transpose (6x4), rows
/// (1, 0, 0, 0), (1, 1, 1, 1), (1, -1, 1, -1), (1, 2, 4, 8), (1, -2, 4, -8)
/// and (0, 0, 0, 1).
#[inline(always)]
unsafe fn a<L: Lanes16>(d: [L; 4]) -> [L; 6] {
    // SAFETY: register arithmetic only.
    unsafe {
        let s02 = d[0].add(d[2]);
        let s13 = d[1].add(d[3]);
        let e = L::fmadd(L::splat(4.0), d[2], d[0]);
        let o = L::splat(2.0).mul(L::fmadd(L::splat(4.0), d[3], d[1]));
        [d[0], s02.add(s13), s02.sub(s13), e.add(o), e.sub(o), d[3]]
    }
}

/// `A dY Aᵀ` of every 4x4 tile of the output gradient's channels
/// `channels` (`dy`, planes of h x w): the gradient of the products `M`
/// that [`output_transform`] reads. Entry e = 6i + j of channel ch and
/// strip s goes to `dm[e * stride + ch * ld + 16 s]`; nothing else of `dm`
/// is touched. The rows go through the phases as in [`input_transform`]
/// (output row r is padded row r + 1 there).
///
/// # Safety
/// As [`input_transform`], with `dm` holding 36 entries of `stride >=
/// channels.end * ld` values.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn output_grad_transform(
    kernel: Kernel,
    dy: &[f32],
    hw: (usize, usize),
    channels: Range<usize>,
    l: &Layout,
    phases: &mut [f32],
    dm: *mut f32,
    stride: usize,
    ld: usize,
) {
    on_build!(
        kernel,
        output_grad_transform_with(
            dy: &[f32],
            hw: (usize, usize),
            channels: Range<usize>,
            l: &Layout,
            phases: &mut [f32],
            dm: *mut f32,
            stride: usize,
            ld: usize,
        )
    )
}

/// [`output_grad_transform`] on one build.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn output_grad_transform_with<L: SplitRow>(
    dy: &[f32],
    (h, w): (usize, usize),
    channels: Range<usize>,
    l: &Layout,
    phases: &mut [f32],
    out: *mut f32,
    stride: usize,
    ld: usize,
) {
    // SAFETY: loads lie in the phases of padded rows 1..=h (as in
    // `input_transform_with`); stores stay within entry e's rows of
    // `channels` (the caller's contract).
    unsafe {
        for ch in channels {
            split_plane::<L>(&dy[ch * h * w..(ch + 1) * h * w], (h, w), l.phase, phases);
            let channel = phases.as_ptr();
            for s in 0..l.strips {
                let (first, second) = strip_patch(channel, l, s);
                // Column j of A dY: output column 4t + j of a tile is padded
                // column 4t + j + 1, row i padded row i + 1.
                let mut cols = [[MaybeUninit::<L>::uninit(); 6]; 4];
                for (j, col) in cols.iter_mut().enumerate() {
                    let at = ((j + 1) % 4) * l.phase + (j + 1) / 4;
                    let values = a(std::array::from_fn(|i| {
                        patch_column(first, second, (i + 1) * 4 * l.phase + at)
                    }));
                    for (slot, v) in col.iter_mut().zip(values) {
                        slot.write(v);
                    }
                }
                // Row i of (A dY) times Aᵀ; every value of `cols` was written.
                let rows = (0..6).map(|i| a(std::array::from_fn(|j| cols[j][i].assume_init())));
                for (i, r) in rows.enumerate() {
                    for (j, &val) in r.iter().enumerate() {
                        val.store(out.add((6 * i + j) * stride + ch * ld + LANES * s));
                    }
                }
            }
        }
    }
}

/// The 36 products of one block: the 16 rows of `u` from its start
/// (entry e at `u[e * u_entry]`, rows `c` apart) times one strip of `v`
/// (entry e at `v[e * v_stride]`, rows `tiles` apart), row r of entry e to
/// `m[e * m_stride + 16 r]`: 16 accumulators, each k step one load of `v`
/// and 16 FMAs that broadcast `u` (8 rows: 0.6x as fast, latency-bound).
///
/// # Safety
/// AVX-512F; the operands hold those values.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn products_512(
    u: &[f32],
    u_entry: usize,
    c: usize,
    v: &[f32],
    l: &Layout,
    m: &mut [f32],
) {
    let tiles = l.strips * LANES;
    let (u, v, m) = (u.as_ptr(), v.as_ptr(), m.as_mut_ptr());
    // SAFETY: the caller's contract.
    unsafe {
        for e in 0..36 {
            let (up, vp) = (u.add(e * u_entry), v.add(e * l.v_stride));
            let mut acc = [_mm512_setzero_ps(); ROWS];
            for k in 0..c {
                let b = _mm512_loadu_ps(vp.add(k * tiles));
                for (r, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm512_fmadd_ps(_mm512_set1_ps(*up.add(r * c + k)), b, *acc);
                }
            }
            let mp = m.add(e * l.m_stride);
            for (r, &acc) in acc.iter().enumerate() {
                _mm512_storeu_ps(mp.add(LANES * r), acc);
            }
        }
    }
}

/// [`products`] for `S` (2 or 3) strips at once, each with its own `v`
/// and `m`, in two passes of 8 rows: `8 x S` accumulators, each k step
/// `S` loads of `v` and 8 broadcasts of `u` for `8 S` FMAs, so each value
/// of `u` read serves `16 S` tiles (the 16-row tile: 16; `crnn-t`'s
/// 128-channel `U` no longer fits L2 and was re-read for every 16 tiles).
/// The same FMAs in the same order per value as [`products`].
///
/// # Safety
/// AVX-512F; the operands hold those values.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn products_strips_512<const S: usize>(
    u: &[f32],
    u_entry: usize,
    c: usize,
    v: [&[f32]; S],
    l: &Layout,
    m: [&mut [f32]; S],
) {
    const HALF: usize = ROWS / 2;
    let tiles = l.strips * LANES;
    let u = u.as_ptr();
    let v = v.map(|v| v.as_ptr());
    let m = m.map(|m| m.as_mut_ptr());
    // SAFETY: the caller's contract.
    unsafe {
        for half in 0..2 {
            for e in 0..36 {
                let up = u.add(e * u_entry + half * HALF * c);
                let vp = v.map(|v| v.add(e * l.v_stride));
                let mut acc = [[_mm512_setzero_ps(); S]; HALF];
                for k in 0..c {
                    let b: [__m512; S] =
                        std::array::from_fn(|s| _mm512_loadu_ps(vp[s].add(k * tiles)));
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let a = _mm512_set1_ps(*up.add(r * c + k));
                        for (acc, &b) in acc.iter_mut().zip(&b) {
                            *acc = _mm512_fmadd_ps(a, b, *acc);
                        }
                    }
                }
                for (r, acc) in acc.iter().enumerate() {
                    for (s, &acc) in acc.iter().enumerate() {
                        let at = m[s].add(e * l.m_stride + LANES * (half * HALF + r));
                        _mm512_storeu_ps(at, acc);
                    }
                }
            }
        }
    }
}

/// `Aᵀ m A` of one output channel (`row` of the block) over its strip
/// (`strip` of the sample), then `+ bias`, the
/// BatchNorm and ReLU if given, and `pool`, into the output plane (`w`
/// values a row).
///
/// # Safety
/// The CPU runs `kernel`; `m` holds the block's 36 products; the strip's
/// (pooled) tiles lie in the plane at `plane`; only their values are
/// written, and no other thread touches those meanwhile.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn output_transform(
    kernel: Kernel,
    m: &[f32],
    l: &Layout,
    at: (usize, usize),
    post: (f32, Option<[f32; 3]>),
    pool: Pool,
    w: usize,
    plane: *mut f32,
) {
    on_build!(
        kernel,
        output_transform_with(
            m: &[f32],
            l: &Layout,
            at: (usize, usize),
            post: (f32, Option<[f32; 3]>),
            pool: Pool,
            w: usize,
            plane: *mut f32,
        )
    )
}

/// [`output_transform`] on one build.
#[inline(always)]
unsafe fn output_transform_with<L: Lanes16>(
    m: &[f32],
    l: &Layout,
    (row, strip): (usize, usize),
    (bias, relu_affine): (f32, Option<[f32; 3]>),
    pool: Pool,
    w: usize,
    y: *mut f32,
) {
    // SAFETY: loads within the block's products; stores within the rows of
    // the strip's tiles (caller's contract).
    unsafe {
        let base = m.as_ptr().add(LANES * row);
        // Columns: Aᵀ times column j of m.
        // (Uninitialised, as in `input_transform_with`.)
        let mut q = [[MaybeUninit::<L>::uninit(); 4]; 6];
        for (j, q) in q.iter_mut().enumerate() {
            let mut col = [L::zero(); 6];
            for (i, v) in col.iter_mut().enumerate() {
                *v = L::load(base.add((6 * i + j) * l.m_stride));
            }
            for (slot, v) in q.iter_mut().zip(at(col)) {
                slot.write(v);
            }
        }
        let bias = L::splat(bias);
        let affine = relu_affine.map(|a| a.map(|v| L::splat(v)));
        // Row i of the tiles: (Aᵀ m A)[i][j] for j = 0..4. (Uninitialised
        // slots: an array of zeros overwritten here cost a 1 KB `memset`
        // call per strip and row, ~1% of batch-32 inference. Loops, not
        // closures, which would not be inlined with the build's features.)
        let mut slots = [[MaybeUninit::<L>::uninit(); 4]; 4];
        for (i, row) in slots.iter_mut().enumerate() {
            let mut col = [L::zero(); 6];
            for (j, v) in col.iter_mut().enumerate() {
                // Every value of `q` was written above.
                *v = q[j][i].assume_init();
            }
            for (slot, v) in row.iter_mut().zip(at(col)) {
                slot.write(finish(v, bias, affine));
            }
        }
        // Every slot was written just above.
        let rows = [
            written(&slots[0]),
            written(&slots[1]),
            written(&slots[2]),
            written(&slots[3]),
        ];
        // Row tr of tiles and first tile tc of the strip (two rows of 8
        // tiles: lanes 8-15 are row tr + 1).
        let (tr, tc) = if l.cols == 8 {
            (2 * strip, 0)
        } else {
            ((LANES * strip) / l.cols, (LANES * strip) % l.cols)
        };
        match pool {
            Pool::None => {
                for (i, z) in rows.iter().enumerate() {
                    store_row(
                        L::interleave4(*z),
                        l.cols,
                        y,
                        (4 * tr + i) * w,
                        4 * w,
                        4 * tc,
                    );
                }
            }
            Pool::Rows => {
                for (i, pair) in rows.chunks_exact(2).enumerate() {
                    let z = max4(pair[0], pair[1]);
                    store_row(
                        L::interleave4(z),
                        l.cols,
                        y,
                        (2 * tr + i) * w,
                        2 * w,
                        4 * tc,
                    );
                }
            }
            Pool::Both => {
                for (i, pair) in rows.chunks_exact(2).enumerate() {
                    let z = max4(pair[0], pair[1]);
                    let p = [z[0].max(z[1]), z[2].max(z[3])];
                    let out = L::interleave2(p);
                    if l.cols == 8 {
                        // Tiles 0-7 (16 values) on row tr, 8-15 on row tr + 1.
                        out[0].store(y.add((2 * tr + i) * w));
                        out[1].store(y.add((2 * tr + 2 + i) * w));
                    } else {
                        let dst = y.add((2 * tr + i) * w + 2 * tc);
                        out[0].store(dst);
                        out[1].store(dst.add(LANES));
                    }
                }
            }
        }
    }
}

/// The four values of `slots`.
///
/// # Safety
/// Every slot has been written.
#[inline(always)]
unsafe fn written<L: Copy>(slots: &[MaybeUninit<L>; 4]) -> [L; 4] {
    // SAFETY: the caller's contract.
    unsafe {
        [
            slots[0].assume_init(),
            slots[1].assume_init(),
            slots[2].assume_init(),
            slots[3].assume_init(),
        ]
    }
}

/// `v + bias`, then with `affine` = (mean, scale, beta) `max((v - mean) *
/// scale + beta, 0)`: the bits of `batchnorm2d_relu_inplace` (vmaxps with
/// zero second, which a NaN or -0 gives).
#[inline(always)]
unsafe fn finish<L: Lanes16>(v: L, bias: L, affine: Option<[L; 3]>) -> L {
    // SAFETY: register arithmetic only.
    unsafe {
        let v = v.add(bias);
        match affine {
            Some([mean, scale, beta]) => v.sub(mean).mul(scale).add(beta).max(L::zero()),
            None => v,
        }
    }
}

/// Lane-wise maxima of two rows of four vectors.
#[inline(always)]
unsafe fn max4<L: Lanes16>(a: [L; 4], b: [L; 4]) -> [L; 4] {
    // SAFETY: register arithmetic only.
    unsafe {
        [
            a[0].max(b[0]),
            a[1].max(b[1]),
            a[2].max(b[2]),
            a[3].max(b[3]),
        ]
    }
}

/// Stores the 64 values of one row of a strip's tiles (four per tile) at
/// `y + at + first` (tiles 0-7 at `y + at`, 8-15 at `y + at + next` when
/// rows hold 8 tiles, `first` then 0).
#[inline(always)]
unsafe fn store_row<L: Lanes16>(
    out: [L; 4],
    cols: usize,
    y: *mut f32,
    at: usize,
    next: usize,
    first: usize,
) {
    // SAFETY: the caller's stores lie in the plane.
    unsafe {
        if cols == 8 {
            out[0].store(y.add(at));
            out[1].store(y.add(at + LANES));
            out[2].store(y.add(at + next));
            out[3].store(y.add(at + next + LANES));
        } else {
            for (k, &v) in out.iter().enumerate() {
                v.store(y.add(at + first + LANES * k));
            }
        }
    }
}
