//! Packed-panel GEMM on AVX-512 for products too large for the unpacked
//! kernel ([`super::small_gemm`]): many rows of `a`, or a right-hand side
//! that does not stay in L2 while every row tile streams it.
//!
//! The classic blocking: a block of up to [`NC`] columns and [`KC`] rows of
//! `b` is copied into panels of up to 48 columns, each panel's k steps
//! contiguous (a column tile then reads one line stream from L1 or L2,
//! whatever the strides or the transposition of `b`); a group of up to
//! [`MC`] rows of `a` into row tiles of up to 8 rows, each k step's values
//! of a tile side by side. Each register tile of up to 8 rows and 3
//! vectors sums its 24 accumulators over the block's k steps, prefetching
//! the panel a few steps ahead.
//!
//! Every output value is the chain of [`super::small_gemm`] and
//! `matrixmultiply` (FMAs over k from zero in blocks of [`KC`], then
//! `alpha·acc + beta·c`, later blocks adding to `c`), so the three give the
//! same bits and the choice between them never changes a result.

use super::gemm::{transpose_to, MatRef};
use super::scratch::with_scratch;
use super::small_gemm::KC;
use std::cell::Cell;

/// Columns of `b` packed at once: a block of [`KC`] x 768 values is 768 KB,
/// well inside L2 beside the rows of `a` being multiplied.
pub const NC: usize = 768;

/// Rows of `a` packed at once: 128 x [`KC`] values, 128 KB.
pub const MC: usize = 128;

/// Rows of a register tile.
const MR: usize = 8;

/// 16-lane vectors of columns in a register tile (48 columns).
const NV: usize = 3;

/// Whether the CPU runs this kernel (AVX-512F; detected once by std).
#[inline]
pub fn available() -> bool {
    super::small_gemm_avx512::available()
}

thread_local! {
    /// Each thread's packed block of `b`.
    static B_PANELS: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    /// Each thread's packed group of rows of `a`.
    static A_TILES: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Splits `total` into the fewest parts of at most `max`, of even sizes:
/// `(start, len)` pairs.
fn even_parts(total: usize, max: usize) -> impl Iterator<Item = (usize, usize)> {
    let parts = total.div_ceil(max);
    (0..parts).map(move |u| even_part(total, parts, u))
}

/// Part `u` of `total` split into `parts` parts of even sizes.
fn even_part(total: usize, parts: usize, u: usize) -> (usize, usize) {
    let start = total * u / parts;
    (start, total * (u + 1) / parts - start)
}

/// `c = alpha * a·b + beta * c` (`c` row-major, `b.cols` values a row).
///
/// Panics if the CPU lacks AVX-512 ([`available`]), if the inner
/// dimensions differ or if `c` is too small; the views are checked by the
/// caller ([`super::gemm::gemm`]).
pub fn gemm(alpha: f32, a: MatRef, b: MatRef, beta: f32, c: &mut [f32]) {
    assert!(available(), "panel_gemm on a CPU without AVX-512");
    assert_eq!(a.cols, b.rows, "gemm inner dimensions");
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(c.len() >= m * n, "gemm output too small");
    if m == 0 || n == 0 || k == 0 {
        for v in &mut c[..m * n] {
            *v *= beta;
        }
        return;
    }
    let vectors = n.div_ceil(16);
    let block_vectors = vectors.div_ceil(vectors.div_ceil(NC / 16));
    with_scratch(&B_PANELS, KC * 16 * block_vectors, |b_panels| {
        with_scratch(&A_TILES, KC * MC.min(m), |a_tiles| {
            for (v0, nv) in even_parts(vectors, block_vectors) {
                let j0 = 16 * v0;
                let cols = (16 * nv).min(n - j0);
                for k0 in (0..k).step_by(KC) {
                    let kc = (k - k0).min(KC);
                    let block = Block {
                        j0,
                        cols,
                        k0,
                        kc,
                        alpha,
                        beta: if k0 == 0 { beta } else { 1.0 },
                    };
                    block.run(a, b, c, b_panels, a_tiles);
                }
            }
        })
    });
}

/// One block of `b`: `kc` rows from `k0`, `cols` columns from `j0`, and
/// the beta it applies to `c` (the caller's for the first k block, then 1).
struct Block {
    j0: usize,
    cols: usize,
    k0: usize,
    kc: usize,
    alpha: f32,
    beta: f32,
}

impl Block {
    /// The column tiles of the block: `(first column within the block,
    /// vectors)`, at most [`NV`] vectors each.
    fn column_tiles(&self) -> impl Iterator<Item = (usize, usize)> {
        even_parts(self.cols.div_ceil(16), NV).map(|(v0, v)| (16 * v0, v))
    }

    /// Packs the block into `panels`, multiplies it by every row of `a`
    /// into `c`.
    fn run(&self, a: MatRef, b: MatRef, c: &mut [f32], panels: &mut [f32], tiles: &mut [f32]) {
        let (m, n) = (a.rows, b.cols);
        for (jt, v) in self.column_tiles() {
            let panel = &mut panels[jt * self.kc..][..16 * v * self.kc];
            self.pack_panel(b, jt, 16 * v, panel);
        }
        // Row tiles as `even_parts(m, MR)`, in groups of MC rows.
        let tiles_total = m.div_ceil(MR);
        let row_tile = |t: usize| even_part(m, tiles_total, t);
        for t0 in (0..tiles_total).step_by(MC / MR) {
            let group = t0..(t0 + MC / MR).min(tiles_total);
            let g0 = row_tile(t0).0;
            for (i0, r) in group.clone().map(row_tile) {
                let tile = &mut tiles[(i0 - g0) * self.kc..][..r * self.kc];
                self.pack_rows(a, i0, r, tile);
            }
            for (jt, v) in self.column_tiles() {
                let panel = &panels[jt * self.kc..][..16 * v * self.kc];
                let cols = (16 * v).min(self.cols - jt);
                for (i0, r) in group.clone().map(row_tile) {
                    let tile = &tiles[(i0 - g0) * self.kc..][..r * self.kc];
                    let out = &mut c[i0 * n + self.j0 + jt..][..(r - 1) * n + cols];
                    // SAFETY: the CPU runs AVX-512 (checked by `gemm`); the
                    // tile holds r x kc values, the panel kc x 16v, and `out`
                    // r rows of n values, the last of them `cols` long.
                    unsafe { x86::tile(r, v, self, tile, panel, out, n, cols) };
                }
            }
        }
    }

    /// Copies the block's k steps of the `r` rows of `a` from `i0` into
    /// `tile`: step q's values at `q * r`.
    fn pack_rows(&self, a: MatRef, i0: usize, r: usize, tile: &mut [f32]) {
        let data = &a.data[i0 * a.rs + self.k0 * a.cs..];
        if a.rs == 1 {
            // `a` stored transposed (`dgᵀ` of a weight gradient): each step's
            // values of the r rows are side by side already.
            for (q, dst) in tile.chunks_exact_mut(r).enumerate() {
                dst.copy_from_slice(&data[q * a.cs..][..r]);
            }
        } else {
            let steps = MatRef {
                data,
                rows: self.kc,
                cols: r,
                rs: a.cs,
                cs: a.rs,
            };
            transpose_to(steps, tile, r);
        }
    }

    /// Copies the block's `width` columns from `jt` (zeros past the end of
    /// `b`) into `panel`: k step q at `q * width`.
    fn pack_panel(&self, b: MatRef, jt: usize, width: usize, panel: &mut [f32]) {
        let j = self.j0 + jt;
        let live = width.min(self.cols - jt);
        if live < width {
            panel.fill(0.0);
        }
        let view = MatRef {
            data: &b.data[self.k0 * b.rs + j * b.cs..],
            rows: self.kc,
            cols: live,
            ..b
        };
        if b.cs == 1 {
            for (q, dst) in panel.chunks_exact_mut(width).enumerate() {
                dst[..live].copy_from_slice(&view.data[q * b.rs..][..live]);
            }
        } else {
            transpose_to(view, panel, width);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Block;
    use std::arch::x86_64::*;

    /// The register tile prefetches its panel this many k steps ahead.
    const PREFETCH_STEPS: usize = 8;

    /// Calls the register tile of `r` rows and `v` vectors.
    ///
    /// # Safety
    /// AVX-512F; `tile` holds `r * kc` values, `panel` `kc * 16 * v`, and
    /// `out` `r` rows `ldc` apart, the last `cols <= 16 * v` long.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn tile(
        r: usize,
        v: usize,
        block: &Block,
        tile: &[f32],
        panel: &[f32],
        out: &mut [f32],
        ldc: usize,
        cols: usize,
    ) {
        debug_assert!(tile.len() >= r * block.kc && panel.len() >= 16 * v * block.kc);
        debug_assert!(out.len() > (r - 1) * ldc && cols <= 16 * v);
        let (a, b, c) = (tile.as_ptr(), panel.as_ptr(), out.as_mut_ptr());
        macro_rules! shape {
            ($r:literal, $v:literal) => {
                kernel::<$r, $v>(block, a, b, c, ldc, cols)
            };
        }
        macro_rules! rows {
            ($v:literal) => {
                match r {
                    1 => shape!(1, $v),
                    2 => shape!(2, $v),
                    3 => shape!(3, $v),
                    4 => shape!(4, $v),
                    5 => shape!(5, $v),
                    6 => shape!(6, $v),
                    7 => shape!(7, $v),
                    8 => shape!(8, $v),
                    _ => unreachable!("{r} rows"),
                }
            };
        }
        // SAFETY: forwarded from the caller.
        unsafe {
            match v {
                1 => rows!(1),
                2 => rows!(2),
                3 => rows!(3),
                _ => unreachable!("{v} vectors"),
            }
        }
    }

    /// `R` rows by `V` vectors over the block's k steps, then
    /// `alpha·acc + beta·c` into the first `cols` columns of `c`.
    #[target_feature(enable = "avx512f")]
    unsafe fn kernel<const R: usize, const V: usize>(
        block: &Block,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        cols: usize,
    ) {
        // SAFETY: reads stay inside the tile and the panel (caller's
        // contract; prefetches may point past them, which cannot fault);
        // stores are masked to the first `cols` columns of the R rows.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); V]; R];
            let (mut ap, mut bp) = (a, b);
            for _ in 0..block.kc {
                for v in 0..V {
                    _mm_prefetch::<_MM_HINT_T0>(
                        bp.wrapping_add(16 * (PREFETCH_STEPS * V + v)).cast(),
                    );
                }
                let bv: [__m512; V] = std::array::from_fn(|v| _mm512_loadu_ps(bp.add(16 * v)));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let av = _mm512_set1_ps(*ap.add(r));
                    for (acc, &bv) in acc.iter_mut().zip(&bv) {
                        *acc = _mm512_fmadd_ps(av, bv, *acc);
                    }
                }
                ap = ap.add(R);
                bp = bp.add(16 * V);
            }
            let alpha = _mm512_set1_ps(block.alpha);
            let beta = block.beta;
            for (r, acc) in acc.iter().enumerate() {
                for (v, &acc) in acc.iter().enumerate() {
                    let live = cols.saturating_sub(16 * v).min(16);
                    let mask = ((1u32 << live) - 1) as __mmask16;
                    let at = c.add(r * ldc + 16 * v);
                    let value = if beta == 0.0 {
                        _mm512_mul_ps(alpha, acc)
                    } else {
                        let old = _mm512_maskz_loadu_ps(mask, at);
                        let old = _mm512_mul_ps(old, _mm512_set1_ps(beta));
                        _mm512_fmadd_ps(alpha, acc, old)
                    };
                    _mm512_mask_storeu_ps(at, mask, value);
                }
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod x86 {
    use super::Block;

    /// Never called: [`super::available`] is false off x86-64.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn tile(
        _: usize,
        _: usize,
        _: &Block,
        _: &[f32],
        _: &[f32],
        _: &mut [f32],
        _: usize,
        _: usize,
    ) {
        unreachable!("panel_gemm called on a CPU without AVX-512")
    }
}

#[cfg(test)]
mod tests {
    use super::super::gemm::testing::{bits, values, Operands};
    use super::*;
    use crate::rng::Rng;

    /// matrixmultiply's bits for every ragged row tile, column tile and k
    /// block, more than one group of rows and block of columns, each beta
    /// and alpha, and every layout of both operands.
    #[test]
    fn matches_matrixmultiply_bit_for_bit() {
        if !available() {
            eprintln!("skipped: the CPU lacks AVX-512");
            return;
        }
        let mut rng = Rng::seed(17);
        let shapes = [
            (1, 1, 1),
            (7, 255, 15),
            (9, 256, 17),
            (8, 257, 48),
            (23, 3, 49),
            (130, 520, 97),
            (300, 40, 770),
            (17, 600, 1601),
        ];
        for &(m, k, n) in &shapes {
            for &(alpha, beta) in &[(1.0, 0.0), (1.0, 1.0), (1.0, 0.5), (0.5, 0.25)] {
                for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                    let operands = Operands::new((m, k, n), ta, tb, &mut rng);
                    let (a, b) = operands.views();
                    let c0 = values(m * n, &mut rng);
                    let (mut want, mut got) = (c0.clone(), c0);
                    super::super::gemm::gemm_packed(alpha, a, b, beta, &mut want);
                    gemm(alpha, a, b, beta, &mut got);
                    assert_eq!(
                        bits(&want),
                        bits(&got),
                        "{m}x{k}x{n} alpha {alpha} beta {beta} ta {ta} tb {tb}"
                    );
                }
            }
        }
    }

    /// Values past `m x n` in `c` are left alone, and an empty product
    /// scales `c` by beta.
    #[test]
    fn writes_only_the_product_and_scales_an_empty_one() {
        if !available() {
            eprintln!("skipped: the CPU lacks AVX-512");
            return;
        }
        let mut rng = Rng::seed(19);
        let (m, k, n) = (11, 300, 37);
        let (ad, bd) = (values(m * k, &mut rng), values(k * n, &mut rng));
        let (a, b) = (MatRef::row_major(&ad, m, k), MatRef::row_major(&bd, k, n));
        let mut c = vec![7.0; m * n + 5];
        gemm(1.0, a, b, 0.0, &mut c);
        assert!(c[m * n..].iter().all(|&v| v == 7.0));
        let mut c = vec![2.0; 6];
        let empty = MatRef::row_major(&[], 2, 0);
        gemm(1.0, empty, MatRef::row_major(&[], 0, 3), 0.5, &mut c);
        assert_eq!(c, vec![1.0; 6]);
    }
}
