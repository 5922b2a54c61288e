//! Packed-panel GEMM on AVX-512 or AVX2 for products too large for the
//! unpacked kernel ([`super::small_gemm`]): many rows of `a`, or a
//! right-hand side that does not stay in L2 while every row tile streams it.
//!
//! The classic blocking: a block of up to `nc` columns and [`KC`] rows of
//! `b` is copied into panels of up to `nv` vectors of columns, each panel's
//! k steps contiguous (a column tile then reads one line stream from L1 or
//! L2, whatever the strides or the transposition of `b`); a group of up to
//! [`MC`] rows of `a` into row tiles of up to `mr` rows, each k step's
//! values of a tile side by side. Each register tile of up to `mr` rows
//! and `nv` vectors sums its accumulators over the block's k steps,
//! prefetching the panel a few steps ahead (and, first, its part of `c`
//! into L2 when it will read it). The tile is 8 rows by three
//! 16-lane vectors with AVX-512, 6 rows by two 8-lane vectors with AVX2
//! (12 of the 16 registers accumulate) — the [`Shape`]s.
//!
//! Every output value is the chain of [`super::small_gemm`] and
//! `matrixmultiply` (FMAs over k from zero in blocks of [`KC`], then
//! `alpha·acc + beta·c`, later blocks adding to `c`), so the three give the
//! same bits and the choice between them never changes a result.

use super::gemm::{transpose_to, MatRef};
use super::scratch::{line_start, with_scratch, ALIGN_SLACK};
use super::small_gemm::{Kernel, KC};
use super::split::{even_part, even_parts};
use std::cell::Cell;

/// Rows of `a` packed at once: 128 x [`KC`] values, 128 KB.
pub const MC: usize = 128;

/// The register tile and column block of one build of the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Rows of a register tile.
    pub mr: usize,
    /// Lanes of a vector.
    pub lanes: usize,
    /// Vectors of columns in a register tile.
    pub nv: usize,
    /// Columns of `b` packed at once.
    pub nc: usize,
}

impl Shape {
    /// The shape of `kernel`'s build: 8 x 48 tiles with AVX-512, 6 x 16
    /// with AVX2; blocks of [`KC`] x 768 values (768 KB; on a Zen 3 core,
    /// L2 512 KB, 1.05-1.15x blocks of 384 columns on 1024-column
    /// products: fewer passes over the rows of `a`).
    pub fn of(kernel: Kernel) -> Shape {
        match kernel {
            Kernel::Avx512 => Shape {
                mr: 8,
                lanes: 16,
                nv: 3,
                nc: 768,
            },
            Kernel::Avx2 => Shape {
                mr: 6,
                lanes: 8,
                nv: 2,
                nc: 768,
            },
        }
    }
}

thread_local! {
    /// Each thread's packed block of `b`.
    static B_PANELS: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    /// Each thread's packed group of rows of `a`.
    static A_TILES: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// `c = alpha * a·b + beta * c` (`c` row-major, `b.cols` values a row) on
/// the build `kernel`.
///
/// Panics if the CPU does not run `kernel` ([`Kernel::runs`]), if the inner
/// dimensions differ or if `c` is too small; the views are checked by the
/// caller ([`super::gemm::gemm`]).
pub fn gemm_with(kernel: Kernel, alpha: f32, a: MatRef, b: MatRef, beta: f32, c: &mut [f32]) {
    assert!(kernel.runs(), "panel_gemm: the CPU does not run {kernel:?}");
    assert_eq!(a.cols, b.rows, "gemm inner dimensions");
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(c.len() >= m * n, "gemm output too small");
    if m == 0 || n == 0 || k == 0 {
        scale(&mut c[..m * n], beta);
        return;
    }
    let shape = Shape::of(kernel);
    let widest = shape.lanes * column_block_vectors(shape, n);
    with_scratch(&B_PANELS, KC * widest, |b_panels| {
        with_scratch(&A_TILES, KC * MC.min(m), |a_tiles| {
            for span in block_spans(shape, k, n) {
                let block = Block::new(kernel, shape, span, alpha, beta);
                let panels = &mut b_panels[..span.panel_len(shape)];
                block.pack(b, panels);
                block.multiply(a, c, n, panels, a_tiles);
            }
        })
    });
}

/// A right-hand side packed once into the panels of [`gemm_with`], for
/// many products by the same `b` (an LSTM's `W_hhᵀ` at every time step):
/// [`gemm_prepacked`] multiplies by it without copying it again.
pub struct PackedB {
    kernel: Kernel,
    rows: usize,
    cols: usize,
    /// The panels of every block of [`block_spans`], one after another,
    /// from `start` (the first value on a cache line).
    panels: Vec<f32>,
    start: usize,
}

impl PackedB {
    /// `b` packed for the build `kernel`. Panics if the CPU does not run it.
    pub fn new(kernel: Kernel, b: MatRef) -> PackedB {
        assert!(kernel.runs(), "panel_gemm: the CPU does not run {kernel:?}");
        let shape = Shape::of(kernel);
        let spans: Vec<BlockSpan> = block_spans(shape, b.rows, b.cols).collect();
        let len: usize = spans.iter().map(|s| s.panel_len(shape)).sum();
        let mut panels = vec![0.0f32; len + ALIGN_SLACK];
        let start = line_start(&panels);
        let mut rest = &mut panels[start..start + len];
        for span in spans {
            let (block_panels, tail) = rest.split_at_mut(span.panel_len(shape));
            Block::new(kernel, shape, span, 1.0, 0.0).pack(b, block_panels);
            rest = tail;
        }
        PackedB {
            kernel,
            rows: b.rows,
            cols: b.cols,
            panels,
            start,
        }
    }

    /// Rows of `b` (the product's inner dimension).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns of `b` (and of the product).
    pub fn cols(&self) -> usize {
        self.cols
    }
}

/// [`gemm_with`] by a right-hand side packed beforehand: the same values,
/// bit for bit. Panics if the inner dimensions differ or `c` is too small.
pub fn gemm_prepacked(alpha: f32, a: MatRef, b: &PackedB, beta: f32, c: &mut [f32]) {
    assert_eq!(a.cols, b.rows, "gemm inner dimensions");
    let (m, k, n) = (a.rows, b.rows, b.cols);
    assert!(c.len() >= m * n, "gemm output too small");
    if m == 0 || n == 0 || k == 0 {
        scale(&mut c[..m * n], beta);
        return;
    }
    let shape = Shape::of(b.kernel);
    with_scratch(&A_TILES, KC * MC.min(m), |a_tiles| {
        let mut panels = &b.panels[b.start..];
        for span in block_spans(shape, k, n) {
            let (block_panels, rest) = panels.split_at(span.panel_len(shape));
            let block = Block::new(b.kernel, shape, span, alpha, beta);
            block.multiply(a, c, n, block_panels, a_tiles);
            panels = rest;
        }
    });
}

/// `c *= beta`: an empty product.
fn scale(c: &mut [f32], beta: f32) {
    for v in c {
        *v *= beta;
    }
}

/// Vectors of columns in each block of `n` columns: as even as the blocks'
/// limit (`nc`) allows; at least one (no columns: no blocks).
fn column_block_vectors(shape: Shape, n: usize) -> usize {
    let vectors = n.div_ceil(shape.lanes);
    let blocks = vectors.div_ceil(shape.nc / shape.lanes).max(1);
    vectors.div_ceil(blocks).max(1)
}

/// Where one block of `b` lies: `kc` rows from `k0`, `cols` columns from `j0`.
#[derive(Clone, Copy)]
struct BlockSpan {
    j0: usize,
    cols: usize,
    k0: usize,
    kc: usize,
}

impl BlockSpan {
    /// Values of the block's panels: whole vectors of columns, kc steps.
    fn panel_len(self, shape: Shape) -> usize {
        shape.lanes * self.cols.div_ceil(shape.lanes) * self.kc
    }
}

/// The blocks of a `k x n` right-hand side in the order the products run
/// them: column blocks, and within each the k blocks from the first (so
/// each output value's chain runs over k in order).
fn block_spans(shape: Shape, k: usize, n: usize) -> impl Iterator<Item = BlockSpan> {
    let vectors = n.div_ceil(shape.lanes);
    even_parts(vectors, column_block_vectors(shape, n)).flat_map(move |(v0, nv)| {
        let j0 = shape.lanes * v0;
        let cols = (shape.lanes * nv).min(n - j0);
        (0..k).step_by(KC).map(move |k0| BlockSpan {
            j0,
            cols,
            k0,
            kc: (k - k0).min(KC),
        })
    })
}

/// One block of `b`: `kc` rows from `k0`, `cols` columns from `j0`, and
/// the beta it applies to `c` (the caller's for the first k block, then 1).
struct Block {
    kernel: Kernel,
    shape: Shape,
    j0: usize,
    cols: usize,
    k0: usize,
    kc: usize,
    alpha: f32,
    beta: f32,
}

impl Block {
    /// The block of `span` in a product `alpha·a·b + beta·c`.
    fn new(kernel: Kernel, shape: Shape, span: BlockSpan, alpha: f32, beta: f32) -> Block {
        let BlockSpan { j0, cols, k0, kc } = span;
        Block {
            kernel,
            shape,
            j0,
            cols,
            k0,
            kc,
            alpha,
            // The caller's beta for the first k block, then the sums add.
            beta: if k0 == 0 { beta } else { 1.0 },
        }
    }

    /// The column tiles of the block: `(first column within the block,
    /// vectors)`, at most `nv` vectors each.
    fn column_tiles(&self) -> impl Iterator<Item = (usize, usize)> {
        let lanes = self.shape.lanes;
        even_parts(self.cols.div_ceil(lanes), self.shape.nv).map(move |(v0, v)| (lanes * v0, v))
    }

    /// Packs the block of `b` into `panels` (column tile jt at `jt * kc`).
    fn pack(&self, b: MatRef, panels: &mut [f32]) {
        let lanes = self.shape.lanes;
        for (jt, v) in self.column_tiles() {
            let panel = &mut panels[jt * self.kc..][..lanes * v * self.kc];
            self.pack_panel(b, jt, lanes * v, panel);
        }
    }

    /// Multiplies the packed block by every row of `a` into `c` (rows `n`
    /// values apart), packing `a` a group of rows at a time into `tiles`.
    fn multiply(&self, a: MatRef, c: &mut [f32], n: usize, panels: &[f32], tiles: &mut [f32]) {
        let m = a.rows;
        let (mr, lanes) = (self.shape.mr, self.shape.lanes);
        // Row tiles as `even_parts(m, mr)`, in groups of about MC rows.
        let tiles_total = m.div_ceil(mr);
        let row_tile = |t: usize| even_part(m, tiles_total, t);
        for t0 in (0..tiles_total).step_by(MC / mr) {
            let group = t0..(t0 + MC / mr).min(tiles_total);
            let g0 = row_tile(t0).0;
            for (i0, r) in group.clone().map(row_tile) {
                let tile = &mut tiles[(i0 - g0) * self.kc..][..r * self.kc];
                self.pack_rows(a, i0, r, tile);
            }
            for (jt, v) in self.column_tiles() {
                let panel = &panels[jt * self.kc..][..lanes * v * self.kc];
                let cols = (lanes * v).min(self.cols - jt);
                for (i0, r) in group.clone().map(row_tile) {
                    let tile = &tiles[(i0 - g0) * self.kc..][..r * self.kc];
                    let out = &mut c[i0 * n + self.j0 + jt..][..(r - 1) * n + cols];
                    // SAFETY: the CPU runs the kernel (checked by `gemm_with`);
                    // the tile holds r x kc values, the panel kc x lanes·v, and
                    // `out` r rows of n values, the last of them `cols` long.
                    unsafe { x86::tile(r, v, self, tile, panel, out, n, cols) };
                }
            }
        }
    }

    /// Copies the block's k steps of the `r` rows of `a` from `i0` into
    /// `tile`: step q's values at `q * r`.
    fn pack_rows(&self, a: MatRef, i0: usize, r: usize, tile: &mut [f32]) {
        let data = &a.data[i0 * a.rs + self.k0 * a.cs..];
        let tile = &mut tile[..r * self.kc];
        // Both layouts with the tile's height a constant: fixed-size copies
        // (a slice copy of a run-time length is a call to memmove per step).
        macro_rules! rows {
            ($f:ident, $stride:expr, $($r:literal)*) => {
                match r {
                    $($r => $f::<$r>(data, $stride, tile),)*
                    _ => unreachable!("{r} rows in a tile"),
                }
            };
        }
        if a.rs == 1 {
            // `a` stored transposed (`dgᵀ` of a weight gradient): each step's
            // values of the r rows are side by side already.
            rows!(copy_rows, a.cs, 1 2 3 4 5 6 7 8);
        } else if a.cs == 1 {
            // Row-major `a`: r streams read side by side (a general
            // transpose of a kc x r view has no whole 8 x 8 blocks here).
            rows!(interleave_rows, a.rs, 1 2 3 4 5 6 7 8);
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
            // Whole rows of a tile as fixed-size copies: `copy_from_slice`
            // of a run-time length is a call to memmove per k step.
            macro_rules! widths {
                ($($w:literal)*) => {
                    match live {
                        $($w if width == $w => copy_rows::<$w>(view.data, b.rs, panel),)*
                        _ => {
                            for (q, dst) in panel.chunks_exact_mut(width).enumerate() {
                                dst[..live].copy_from_slice(&view.data[q * b.rs..][..live]);
                            }
                        }
                    }
                };
            }
            widths!(8 16 32 48);
        } else {
            transpose_to(view, panel, width);
        }
    }
}

/// Rows of `W` values, `rs` apart from `data`, one after another into
/// `panel` (as many as it holds).
fn copy_rows<const W: usize>(data: &[f32], rs: usize, panel: &mut [f32]) {
    for (q, dst) in panel.chunks_exact_mut(W).enumerate() {
        dst.copy_from_slice(&data[q * rs..][..W]);
    }
}

/// `R` rows, `rs` apart from `data`, interleaved into `tile`: step q's
/// values of the R rows at `tile[q * R..][..R]`.
fn interleave_rows<const R: usize>(data: &[f32], rs: usize, tile: &mut [f32]) {
    let kc = tile.len() / R;
    let rows: [&[f32]; R] = std::array::from_fn(|i| &data[i * rs..][..kc]);
    #[allow(unused_mut)]
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if R > 1 && super::simd::has_avx2() {
        // SAFETY: AVX2 is present; the rows hold kc values and the tile kc·R.
        done = unsafe { x86::interleave_by_transposes(&rows, tile) };
    }
    for (q, step) in tile.chunks_exact_mut(R).enumerate().skip(done) {
        for (v, row) in step.iter_mut().zip(&rows) {
            *v = row[q];
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Block, Kernel};
    use std::arch::x86_64::*;

    /// The first steps of [`super::interleave_rows`] (up to 8 rows), 8 at a
    /// time: the rows' next 8 values (zeros past the R-th row) as an 8 x 8
    /// transpose, whose vector for step q goes to `tile[q * R..]` whole;
    /// its 8 - R values past the step are overwritten by the next step's
    /// store (or by the caller, past the last block). Returns the steps
    /// written: the blocks whose last store stays inside the tile.
    ///
    /// # Safety
    /// AVX2 is present; each row holds `tile.len() / R` values.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn interleave_by_transposes<const R: usize>(
        rows: &[&[f32]; R],
        tile: &mut [f32],
    ) -> usize {
        const { assert!(R <= 8) };
        let kc = tile.len() / R;
        let out = tile.as_mut_ptr();
        let mut q0 = 0;
        while q0 + 8 <= kc && (q0 + 7) * R + 8 <= tile.len() {
            let mut r = [_mm256_setzero_ps(); 8];
            for i in 0..R {
                // SAFETY: q0 + 8 <= kc, the row's length.
                r[i] = unsafe { _mm256_loadu_ps(rows[i].as_ptr().add(q0)) };
            }
            let steps = crate::cpu::gemm::transpose8x8(r);
            for (s, v) in steps.into_iter().enumerate() {
                // SAFETY: the 8 values from (q0 + s) * R <= (q0 + 7) * R lie
                // inside the tile (the loop's condition).
                unsafe { _mm256_storeu_ps(out.add((q0 + s) * R), v) };
            }
            q0 += 8;
        }
        q0
    }

    /// The register tile prefetches its panel this many k steps ahead.
    const PREFETCH_STEPS: usize = 8;

    /// Calls the register tile of `r` rows and `v` vectors of the block's
    /// build.
    ///
    /// # Safety
    /// The CPU runs the block's build; `tile` holds `r * kc` values, `panel`
    /// `kc * lanes * v`, and `out` `r` rows `ldc` apart, the last
    /// `cols <= lanes * v` long.
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
        let lanes = block.shape.lanes;
        debug_assert!(tile.len() >= r * block.kc && panel.len() >= lanes * v * block.kc);
        debug_assert!(out.len() > (r - 1) * ldc && cols <= lanes * v);
        let (a, b, c) = (tile.as_ptr(), panel.as_ptr(), out.as_mut_ptr());
        macro_rules! shape {
            ($r:literal, $v:literal) => {
                match block.kernel {
                    Kernel::Avx512 => kernel512::<$r, $v>(block, a, b, c, ldc, cols),
                    Kernel::Avx2 => kernel256::<$r, $v>(block, a, b, c, ldc, cols),
                }
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

    /// `R` rows by `V` 16-lane vectors over the block's k steps, then
    /// `alpha·acc + beta·c` into the first `cols` columns of `c`.
    #[target_feature(enable = "avx512f")]
    unsafe fn kernel512<const R: usize, const V: usize>(
        block: &Block,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        cols: usize,
    ) {
        // SAFETY: reads stay inside the tile and the panel (caller's
        // contract; prefetches, of the panel ahead and of `c`, may point
        // past them, which cannot fault); stores are masked to the first
        // `cols` columns of the R rows.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); V]; R];
            if block.beta != 0.0 {
                // The tile reads its part of `c` after the k steps (a later
                // k block, or the caller's beta): in L3 or memory for a
                // large product. Asked into L2 now, the reads at the end do
                // not stall (1024-row products of two k blocks 1.01-1.05x).
                for r in 0..R {
                    let row = c.wrapping_add(r * ldc);
                    for v in 0..V {
                        _mm_prefetch::<_MM_HINT_T1>(row.wrapping_add(16 * v).cast());
                    }
                    // The row's last line when it does not start on one.
                    _mm_prefetch::<_MM_HINT_T1>(row.wrapping_add(16 * V - 1).cast());
                }
            }
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

    /// `R` rows by `V` 8-lane vectors over the block's k steps, then
    /// `alpha·acc + beta·c` into the first `cols` columns of `c`.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn kernel256<const R: usize, const V: usize>(
        block: &Block,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        cols: usize,
    ) {
        // SAFETY: as `kernel512`; the stores of a vector are masked to its
        // live lanes.
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); V]; R];
            let (mut ap, mut bp) = (a, b);
            for _ in 0..block.kc {
                _mm_prefetch::<_MM_HINT_T0>(bp.wrapping_add(8 * PREFETCH_STEPS * V).cast());
                let bv: [__m256; V] = std::array::from_fn(|v| _mm256_loadu_ps(bp.add(8 * v)));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let av = _mm256_broadcast_ss(&*ap.add(r));
                    for (acc, &bv) in acc.iter_mut().zip(&bv) {
                        *acc = _mm256_fmadd_ps(av, bv, *acc);
                    }
                }
                ap = ap.add(R);
                bp = bp.add(8 * V);
            }
            let alpha = _mm256_set1_ps(block.alpha);
            let beta = block.beta;
            let lanes: [i32; 16] = std::array::from_fn(|l| -((l < 8) as i32));
            for (r, acc) in acc.iter().enumerate() {
                for (v, &acc) in acc.iter().enumerate() {
                    let live = cols.saturating_sub(8 * v).min(8);
                    let mask = _mm256_loadu_si256(lanes.as_ptr().add(8 - live).cast());
                    let at = c.add(r * ldc + 8 * v);
                    let value = if beta == 0.0 {
                        _mm256_mul_ps(alpha, acc)
                    } else {
                        let old = _mm256_maskload_ps(at, mask);
                        let old = _mm256_mul_ps(old, _mm256_set1_ps(beta));
                        _mm256_fmadd_ps(alpha, acc, old)
                    };
                    if live == 8 {
                        _mm256_storeu_ps(at, value);
                    } else {
                        _mm256_maskstore_ps(at, mask, value);
                    }
                }
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod x86 {
    use super::Block;

    /// Never called: no build of the kernel runs off x86-64 (`Kernel::best` is `None`).
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
        unreachable!("panel_gemm called on a CPU without AVX2")
    }
}

#[cfg(test)]
mod tests {
    use super::super::gemm::testing::{bits, values, Operands};
    use super::*;
    use crate::rng::Rng;

    /// matrixmultiply's bits for every ragged row tile (1 to 6 rows), column
    /// tile and k block (whole blocks of 8 steps and not), more than one
    /// group of rows and block of columns, each beta and alpha, and every
    /// layout of both operands.
    #[test]
    fn matches_matrixmultiply_bit_for_bit() {
        let mut rng = Rng::seed(17);
        let shapes = [
            (1, 1, 1),
            (2, 41, 9),
            (7, 255, 15),
            (9, 256, 17),
            (8, 257, 48),
            (23, 3, 49),
            (130, 520, 97),
            (300, 40, 770),
            (17, 600, 1601),
        ];
        for (kernel, &(m, k, n)) in Kernel::all_available()
            .into_iter()
            .flat_map(|kernel| shapes.iter().map(move |s| (kernel, s)))
        {
            for &(alpha, beta) in &[(1.0, 0.0), (1.0, 1.0), (1.0, 0.5), (0.5, 0.25)] {
                for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                    let operands = Operands::new((m, k, n), ta, tb, &mut rng);
                    let (a, b) = operands.views();
                    let c0 = values(m * n, &mut rng);
                    let (mut want, mut got) = (c0.clone(), c0);
                    super::super::gemm::gemm_packed(alpha, a, b, beta, &mut want);
                    gemm_with(kernel, alpha, a, b, beta, &mut got);
                    assert_eq!(
                        bits(&want),
                        bits(&got),
                        "{kernel:?}: {m}x{k}x{n} alpha {alpha} beta {beta} ta {ta} tb {tb}"
                    );
                }
            }
        }
    }

    /// A right-hand side packed once gives every product by it the bits of
    /// [`gemm_with`]: several blocks of columns and of k, ragged row tiles,
    /// both layouts of `b`, each beta, the same panels for several `a`; an
    /// empty `b` packs to nothing and scales `c`.
    #[test]
    fn prepacked_matches_packing_each_time() {
        let mut rng = Rng::seed(29);
        for kernel in Kernel::all_available() {
            for (k, n) in [(300, 1601), (257, 48), (3, 17)] {
                for tb in [false, true] {
                    let bd = values(k * n, &mut rng);
                    let b = if tb {
                        MatRef::row_major(&bd, n, k).t()
                    } else {
                        MatRef::row_major(&bd, k, n)
                    };
                    let packed = PackedB::new(kernel, b);
                    assert_eq!((packed.rows(), packed.cols()), (k, n));
                    for (m, beta) in [(1, 0.0), (13, 1.0), (140, 0.5)] {
                        let ad = values(m * k, &mut rng);
                        let a = MatRef::row_major(&ad, m, k);
                        let c0 = values(m * n, &mut rng);
                        let (mut want, mut got) = (c0.clone(), c0);
                        gemm_with(kernel, 1.0, a, b, beta, &mut want);
                        gemm_prepacked(1.0, a, &packed, beta, &mut got);
                        assert_eq!(bits(&want), bits(&got), "{kernel:?} {m}x{k}x{n} tb {tb}");
                    }
                }
            }
            let empty = PackedB::new(kernel, MatRef::row_major(&[], 0, 3));
            let mut c = vec![2.0; 6];
            gemm_prepacked(1.0, MatRef::row_major(&[], 2, 0), &empty, 0.5, &mut c);
            assert_eq!(c, vec![1.0; 6]);
            let none = PackedB::new(kernel, MatRef::row_major(&[], 4, 0));
            assert_eq!((none.rows(), none.cols()), (4, 0));
        }
    }

    /// Values past `m x n` in `c` are left alone, and an empty product
    /// scales `c` by beta.
    #[test]
    fn writes_only_the_product_and_scales_an_empty_one() {
        let mut rng = Rng::seed(19);
        for kernel in Kernel::all_available() {
            for (m, k, n) in [(11, 300, 37), (7, 20, 13)] {
                let (ad, bd) = (values(m * k, &mut rng), values(k * n, &mut rng));
                let (a, b) = (MatRef::row_major(&ad, m, k), MatRef::row_major(&bd, k, n));
                for beta in [0.0, 0.5] {
                    let mut c = vec![7.0; m * n + 5];
                    gemm_with(kernel, 1.0, a, b, beta, &mut c);
                    assert!(
                        c[m * n..].iter().all(|&v| v == 7.0),
                        "{kernel:?} {m}x{k}x{n}"
                    );
                }
            }
            let mut c = vec![2.0; 6];
            let empty = MatRef::row_major(&[], 2, 0);
            gemm_with(
                kernel,
                1.0,
                empty,
                MatRef::row_major(&[], 0, 3),
                0.5,
                &mut c,
            );
            assert_eq!(c, vec![1.0; 6]);
        }
    }
}
