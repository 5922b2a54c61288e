//! The AVX-512 build of [`super::small_gemm`]: the same unpacked product
//! (`b` read in place), with register tiles of 16-lane vectors shaped to
//! the number of rows. One row of `a` (the LSTM's per-step `h·W_hhᵀ` at
//! batch 1) gets up to 16 vectors, i.e. 256 columns, in flight at once, so
//! the product is bound by loads, not by the latency of one FMA chain.
//!
//! The right-hand side need not be a strided matrix: `Product` takes where
//! each of its rows starts (`RowStarts`) and where each 16-column vector
//! sits in a row of `b` and of `c` (`Columns`). A strided matrix is one
//! case; a convolution read straight from its zero-padded input (row `p` =
//! tap `p`, shifted by the tap's offset; columns = output positions, row by
//! output row) is another ([`super::conv_direct`]): an implicit im2col.
//! Nor need the left-hand side: the generic tile reads each row tile's rows
//! of `a` from a panel that `LeftRows` fills, a strided matrix's rows
//! (`StridedA`) or a convolution's input rows shifted by each tap
//! ([`super::conv_weight_grad`], whose `a` is the im2col matrix itself).
//!
//! Every output value is the same chain of operations as in
//! [`super::small_gemm`] (FMAs over k from zero in blocks of
//! [`KC`](super::small_gemm::KC), then `alpha·acc + beta·c`), so the two
//! builds, and `matrixmultiply`, give the same bits.

use super::small_gemm::Operands;

/// Whether the CPU runs this kernel (AVX-512F; detected once by std).
#[inline]
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Where row `p` of the right-hand side starts.
pub(crate) trait RowStarts: Copy {
    /// # Safety
    /// `p` must be below the product's k.
    unsafe fn row(self, p: usize) -> *const f32;
}

/// Rows `rsb` values apart from `b`.
#[derive(Clone, Copy)]
pub(crate) struct Strided {
    pub b: *const f32,
    pub rsb: usize,
}

impl RowStarts for Strided {
    #[inline(always)]
    unsafe fn row(self, p: usize) -> *const f32 {
        // SAFETY: the caller keeps p below k; the product's contract bounds it.
        unsafe { self.b.add(p * self.rsb) }
    }
}

/// Row `p` at `b + offsets[p]`.
#[derive(Clone, Copy)]
pub(crate) struct Listed {
    pub b: *const f32,
    /// k offsets.
    pub offsets: *const usize,
}

impl RowStarts for Listed {
    #[inline(always)]
    unsafe fn row(self, p: usize) -> *const f32 {
        // SAFETY: `offsets` holds k values and the caller keeps p below k.
        unsafe { self.b.add(*self.offsets.add(p)) }
    }
}

/// One vector of up to 16 output columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Lanes {
    /// Offset of its first column from the start of each row of `b`.
    pub b: usize,
    /// Offset of its first column from the start of each row of `c`.
    pub c: usize,
    /// Live lanes (the first `lanes` of 16).
    pub lanes: usize,
}

/// The output columns of a product, as vectors.
pub(crate) trait Columns {
    /// Number of vectors.
    fn count(&self) -> usize;
    /// Vector `v < count()`.
    fn lanes(&self, v: usize) -> Lanes;
}

/// Where a tile reads its rows' values of `a`: those of k step q at
/// `a + q * step + r` for its row r.
#[derive(Clone, Copy)]
pub(crate) struct Panel {
    pub a: *const f32,
    pub step: usize,
}

/// The rows of the left-hand side `a`, as a tile reads them.
pub(crate) trait LeftRows: Copy {
    /// The rows from row `i` on.
    ///
    /// # Safety
    /// `i` must be below the product's m.
    unsafe fn rows_from(self, i: usize) -> Self;

    /// The first `m` rows over the `k` steps as a [`Panel`]: read in place,
    /// or copied into `scratch` (which holds at least `m * k` values).
    ///
    /// # Safety
    /// The rows and steps must lie inside the product's `a`.
    unsafe fn panel(self, m: usize, k: usize, scratch: &mut [f32]) -> Panel;
}

/// A strided left-hand side: `a[i, p]` at `a + i * rsa + p * csa`.
#[derive(Clone, Copy)]
pub(crate) struct StridedA {
    pub a: *const f32,
    pub rsa: usize,
    pub csa: usize,
}

impl LeftRows for StridedA {
    #[inline(always)]
    unsafe fn rows_from(self, i: usize) -> Self {
        // SAFETY: the caller keeps i below m.
        let a = unsafe { self.a.add(i * self.rsa) };
        StridedA { a, ..self }
    }

    /// One row is read in place; more rows are copied column by column:
    /// value (i, q) at `q * m + i`, so that a tile reads its rows' values of
    /// one k step at constant offsets from one pointer (8 x 8 AVX2 blocks
    /// when the rows are contiguous, as a convolution's weight is).
    #[inline]
    unsafe fn panel(self, m: usize, k: usize, scratch: &mut [f32]) -> Panel {
        if m == 1 {
            return Panel {
                a: self.a,
                step: self.csa,
            };
        }
        // SAFETY: values (i, q) for i < m, q < k, at i * rsa + q * csa, are in
        // bounds (caller's contract); the last of them ends the slice.
        let a = unsafe {
            std::slice::from_raw_parts(self.a, (m - 1) * self.rsa + (k - 1) * self.csa + 1)
        };
        let rows_t = super::gemm::MatRef {
            data: a,
            rows: k,
            cols: m,
            rs: self.csa,
            cs: self.rsa,
        };
        super::gemm::transpose_into(rows_t, &mut scratch[..m * k]);
        Panel {
            a: scratch.as_ptr(),
            step: m,
        }
    }
}

/// The first `n` columns of each row, 16 to a vector, at the same offsets
/// in `b` and `c`.
pub(crate) struct Contiguous {
    pub n: usize,
}

impl Columns for Contiguous {
    fn count(&self) -> usize {
        self.n.div_ceil(16)
    }
    fn lanes(&self, v: usize) -> Lanes {
        Lanes {
            b: 16 * v,
            c: 16 * v,
            lanes: (self.n - 16 * v).min(16),
        }
    }
}

/// `c = alpha * a·b + beta * c` with `b` given by row starts and columns.
#[derive(Clone, Copy)]
pub(crate) struct Product<B, A = StridedA> {
    pub m: usize,
    pub k: usize,
    pub alpha: f32,
    pub a: A,
    pub rows: B,
    pub beta: f32,
    /// Row `i` of `c` starts at `c + i * ldc`.
    pub c: *mut f32,
    pub ldc: usize,
}

/// The order in which a strided product's register tiles run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum TileOrder {
    /// Each row tile sweeps every column: its rows of `a` stay in L1 while
    /// `b` streams past (all of `b` once per row tile).
    RowsOuter,
    /// Each column strip (k steps by a tile's vectors) visits every row
    /// tile before the next strip: `b` is read from memory once, each strip
    /// then from cache by the other row tiles.
    ColumnsOuter,
}

/// Runs a strided product, row tiles outer.
///
/// # Safety
/// [`available`] must be true; the rest as [`super::small_gemm::gemm_with`].
pub(crate) unsafe fn gemm(o: Operands) {
    // SAFETY: forwarded from the caller.
    unsafe { gemm_ordered(o, TileOrder::RowsOuter) }
}

/// Runs a strided product with its tiles in `order`; the same bits either way.
///
/// # Safety
/// As [`gemm`].
pub(crate) unsafe fn gemm_ordered(o: Operands, order: TileOrder) {
    let p = Product {
        m: o.m,
        k: o.k,
        alpha: o.alpha,
        a: StridedA {
            a: o.a,
            rsa: o.rsa,
            csa: o.csa,
        },
        rows: Strided { b: o.b, rsb: o.rsb },
        beta: o.beta,
        c: o.c,
        ldc: o.ldc,
    };
    // SAFETY: forwarded from the caller.
    unsafe { strided(p, o.n, order) }
}

/// Runs a product whose right-hand side is a strided matrix with `n`
/// contiguous columns: [`product`] with the column offsets known to the
/// compiler (constant displacements and one mask), so that a wide tile's
/// accumulators and operands stay in registers: 2.6x faster than the
/// generic tile for the batch-1 LSTM step (1 x 48 by 48 x 192).
///
/// # Safety
/// As [`product`] for `n` contiguous columns at the same offsets in `b` and `c`.
#[cfg(target_arch = "x86_64")]
unsafe fn strided(p: Product<Strided>, n: usize, order: TileOrder) {
    // SAFETY: forwarded from the caller.
    unsafe { x86::strided(p, n, order) }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn strided(_: Product<Strided>, _: usize, _: TileOrder) {
    unreachable!("small_gemm_avx512 called on a CPU without AVX-512")
}

/// Runs `p` over the columns `cols`.
///
/// # Safety
/// [`available`] must be true, `k > 0`, and for `i < m`, `p < k` and every
/// live lane of every vector of `cols`, `a[i, p]`, `rows.row(p) + lanes.b`
/// and `c + i * ldc + lanes.c` must be in bounds of live allocations, `c`
/// overlapping neither.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn product<A: LeftRows, B: RowStarts, C: Columns>(p: Product<B, A>, cols: &C) {
    // SAFETY: forwarded from the caller.
    unsafe { x86::product(p, cols) }
}

/// Never called: [`available`] is false off x86-64.
///
/// # Safety
/// None needed; it panics.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) unsafe fn product<A: LeftRows, B: RowStarts, C: Columns>(_: Product<B, A>, _: &C) {
    unreachable!("small_gemm_avx512 called on a CPU without AVX-512")
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::scratch::with_scratch;
    use super::super::small_gemm::KC;
    use super::super::split::even_parts;
    use super::{Columns, Lanes, LeftRows, Panel, Product, RowStarts, Strided, TileOrder};
    use std::arch::x86_64::*;
    use std::cell::Cell;

    /// The generic tile prefetches the right-hand side's row this many k
    /// steps ahead: its rows are far apart (a convolution's shifted input
    /// rows, the weight gradient's `dyᵀ` rows), and the hardware
    /// prefetcher leaves the tile waiting on L2 (measured in one process in
    /// alternation: `crnn-t` b1 forward 1.1-1.25x, weight gradients
    /// 1.02-1.3x, the other layers within ±5%).
    const PREFETCH_STEPS: usize = 6;
    /// Rows of `a` per register tile.
    const MAX_ROWS: usize = 8;

    /// The most 16-lane vectors of columns a tile of `r` rows holds: at
    /// most 24 accumulators (of 32 registers), 16 vectors for one row.
    const fn max_vectors(r: usize) -> usize {
        match r {
            1 => 16,
            2 => 8,
            3 | 4 => 6,
            5 | 6 => 4,
            _ => 3,
        }
    }

    /// Splits the `p.m` rows and `vectors` column vectors of `p` into tiles:
    /// rows in as few tiles as MAX_ROWS allows, of even sizes; columns
    /// likewise in as few tiles as the tile's row count allows. Calls
    /// `tile(rows, v0, v)` for each: the tile's rows of `p`, and its `v`
    /// vectors from vector `v0` (`v` within `max_vectors(rows.m)`).
    ///
    /// # Safety
    /// `p` must satisfy the contract of [`super::product`].
    unsafe fn for_tiles<A: LeftRows, B: RowStarts>(
        p: Product<B, A>,
        vectors: usize,
        mut tile: impl FnMut(Product<B, A>, usize, usize),
    ) {
        // SAFETY: forwarded from the caller.
        for rows in unsafe { row_tiles(p) } {
            for (v0, v) in even_parts(vectors, max_vectors(rows.m)) {
                tile(rows, v0, v);
            }
        }
    }

    /// The tiles of [`for_tiles`] with the loops the other way round: each
    /// strip of columns (as many vectors as the tallest row tile holds)
    /// runs every row tile before the next strip starts.
    ///
    /// # Safety
    /// As [`for_tiles`].
    unsafe fn for_column_strips<A: LeftRows, B: RowStarts>(
        p: Product<B, A>,
        vectors: usize,
        mut tile: impl FnMut(Product<B, A>, usize, usize),
    ) {
        // Row tiles differ by one row at most; the tallest holds the fewest vectors.
        let tallest = p.m.div_ceil(p.m.div_ceil(MAX_ROWS));
        for (v0, v) in even_parts(vectors, max_vectors(tallest)) {
            // SAFETY: forwarded from the caller.
            for rows in unsafe { row_tiles(p) } {
                tile(rows, v0, v);
            }
        }
    }

    /// The rows of `p` in as few tiles as [`MAX_ROWS`] allows, of even
    /// sizes: each tile the product of its rows.
    ///
    /// # Safety
    /// `p` must satisfy the contract of [`super::product`].
    unsafe fn row_tiles<A: LeftRows, B: RowStarts>(
        p: Product<B, A>,
    ) -> impl Iterator<Item = Product<B, A>> {
        even_parts(p.m, MAX_ROWS).map(move |(i, r)| {
            // SAFETY: rows i..i + r lie inside the operands (the caller's contract).
            unsafe {
                Product {
                    m: r,
                    a: p.a.rows_from(i),
                    c: p.c.add(i * p.ldc),
                    ..p
                }
            }
        })
    }

    thread_local! {
        /// Each thread's panel of the rows of `a` of one row tile.
        static A_PANEL: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    }

    /// [`for_tiles`] with each tile's rows of `a` in a [`Panel`]
    /// ([`LeftRows::panel`]), made once per row tile before its first column
    /// tile. The generic tile needs it (with its column offsets in
    /// registers, reading `a` at `r * rsa` spilled accumulators:
    /// convolutions 1.1-1.5x faster packed); the strided tile does not
    /// (packing there cost up to a third at the LSTM's shapes).
    ///
    /// # Safety
    /// As [`for_tiles`].
    #[inline]
    unsafe fn for_packed_tiles<A: LeftRows, B: RowStarts>(
        p: Product<B, A>,
        vectors: usize,
        mut tile: impl FnMut(Product<B, A>, Panel, usize, usize),
    ) {
        with_scratch(&A_PANEL, MAX_ROWS * p.k, |scratch| {
            let mut panel = Panel {
                a: std::ptr::null(),
                step: 0,
            };
            // SAFETY: forwarded; a row tile's column tiles come in order
            // from v0 = 0, which makes the panel they read.
            unsafe {
                for_tiles(p, vectors, |rows, v0, v| {
                    if v0 == 0 {
                        panel = rows.a.panel(rows.m, rows.k, scratch);
                    }
                    tile(rows, panel, v0, v)
                });
            }
        })
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn product<A: LeftRows, B: RowStarts, C: Columns>(
        p: Product<B, A>,
        cols: &C,
    ) {
        // SAFETY: forwarded; each tile's `v` is within `max_vectors(r)`.
        unsafe {
            for_packed_tiles(p, cols.count(), |rows, panel, v0, v| {
                dispatch(rows, panel, cols, v0, v)
            });
        }
    }

    /// [`super::strided`]: the tiling of [`product`], each tile given its
    /// first column and the lanes of its last vector.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn strided(p: Product<Strided>, n: usize, order: TileOrder) {
        let vectors = n.div_ceil(16);
        let tail = n - 16 * (vectors - 1);
        let tile = |rows, v0, v| {
            let lanes = if v0 + v == vectors { tail } else { 16 };
            // SAFETY: forwarded; each tile's `v` is within `max_vectors(r)`.
            unsafe { dispatch_strided(rows, 16 * v0, v, ((1u32 << lanes) - 1) as u16) }
        };
        // SAFETY: forwarded from the caller.
        unsafe {
            match order {
                TileOrder::RowsOuter => for_tiles(p, vectors, tile),
                TileOrder::ColumnsOuter => for_column_strips(p, vectors, tile),
            }
        }
    }

    /// Calls `$tile!(R, V)` for the tile shape of `$m` rows and `$v`
    /// vectors (`R` and `V` as literals, within [`max_vectors`]).
    macro_rules! by_shape {
        ($m:expr, $v:expr, $tile:ident) => {
            match $m {
                1 => by_shape!(@v $v, $tile, 1: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16),
                2 => by_shape!(@v $v, $tile, 2: 1 2 3 4 5 6 7 8),
                3 => by_shape!(@v $v, $tile, 3: 1 2 3 4 5 6),
                4 => by_shape!(@v $v, $tile, 4: 1 2 3 4 5 6),
                5 => by_shape!(@v $v, $tile, 5: 1 2 3 4),
                6 => by_shape!(@v $v, $tile, 6: 1 2 3 4),
                7 => by_shape!(@v $v, $tile, 7: 1 2 3),
                _ => by_shape!(@v $v, $tile, 8: 1 2 3),
            }
        };
        (@v $v:expr, $tile:ident, $r:literal: $($n:literal)*) => {
            match $v {
                $($n => $tile!($r, $n),)*
                v => unreachable!("{v} vectors for {} rows", $r),
            }
        };
    }

    /// Calls the strided tile of `p.m` rows and `v` vectors from column `col0`.
    #[target_feature(enable = "avx512f")]
    unsafe fn dispatch_strided(p: Product<Strided>, col0: usize, v: usize, last: __mmask16) {
        macro_rules! strided {
            ($r:literal, $n:literal) => {
                tile_strided::<$r, $n>(p, col0, last)
            };
        }
        // SAFETY: forwarded from the caller.
        unsafe { by_shape!(p.m, v, strided) }
    }

    /// [`tile`] for `V` vectors of contiguous columns from `col0` of a
    /// strided `b`, all full but the last (its lanes in `last`): the same
    /// operations in the same order, so the same bits.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn tile_strided<const R: usize, const V: usize>(
        p: Product<Strided>,
        col0: usize,
        last: __mmask16,
    ) {
        let mask = |v: usize| if v + 1 == V { last } else { 0xffff };
        // SAFETY: every access below is masked to live lanes and stays inside
        // the tile's rows and k range (caller's contract).
        unsafe {
            let alpha = _mm512_set1_ps(p.alpha);
            let mut k0 = 0;
            while k0 < p.k {
                let kc = (p.k - k0).min(KC);
                let mut acc = [[_mm512_setzero_ps(); V]; R];
                let mut ap = p.a.a.add(k0 * p.a.csa);
                let mut bp = p.rows.b.add(k0 * p.rows.rsb + col0);
                for _ in 0..kc {
                    let mut b = [_mm512_setzero_ps(); V];
                    for (v, b) in b.iter_mut().enumerate() {
                        *b = if v + 1 == V {
                            _mm512_maskz_loadu_ps(last, bp.add(16 * v))
                        } else {
                            _mm512_loadu_ps(bp.add(16 * v))
                        };
                    }
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let av = _mm512_set1_ps(*ap.add(r * p.a.rsa));
                        for (acc, &b) in acc.iter_mut().zip(&b) {
                            *acc = _mm512_fmadd_ps(av, b, *acc);
                        }
                    }
                    ap = ap.add(p.a.csa);
                    bp = bp.add(p.rows.rsb);
                }
                // The first block applies the caller's beta, later ones add.
                let beta = if k0 == 0 { p.beta } else { 1.0 };
                for (r, acc) in acc.iter().enumerate() {
                    let cp = p.c.add(r * p.ldc + col0);
                    for (v, &acc) in acc.iter().enumerate() {
                        let at = cp.add(16 * v);
                        let out = if beta == 0.0 {
                            _mm512_mul_ps(alpha, acc)
                        } else {
                            let c = _mm512_maskz_loadu_ps(mask(v), at);
                            let cv = _mm512_mul_ps(c, _mm512_set1_ps(beta));
                            _mm512_fmadd_ps(alpha, acc, cv)
                        };
                        _mm512_mask_storeu_ps(at, mask(v), out);
                    }
                }
                k0 += kc;
            }
        }
    }

    /// Calls the tile of `p.m` rows and the `v` vectors from `v0`, its rows
    /// of `a` read from `panel`.
    #[target_feature(enable = "avx512f")]
    unsafe fn dispatch<A: LeftRows, B: RowStarts, C: Columns>(
        p: Product<B, A>,
        panel: Panel,
        cols: &C,
        v0: usize,
        v: usize,
    ) {
        macro_rules! listed {
            ($r:literal, $n:literal) => {
                tile::<A, B, $r, $n>(p, panel, std::array::from_fn(|u| cols.lanes(v0 + u)))
            };
        }
        // SAFETY: forwarded from the caller.
        unsafe { by_shape!(p.m, v, listed) }
    }

    /// One tile of `R` rows of `c` and the `V` column vectors `lanes`, over
    /// all k, the rows of `a` read from `panel`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn tile<A: LeftRows, B: RowStarts, const R: usize, const V: usize>(
        p: Product<B, A>,
        panel: Panel,
        lanes: [Lanes; V],
    ) {
        let masks: [__mmask16; V] = std::array::from_fn(|v| ((1u32 << lanes[v].lanes) - 1) as u16);
        // SAFETY: every access below is masked to live lanes and stays inside
        // the tile's rows and k range (caller's contract).
        unsafe {
            let alpha = _mm512_set1_ps(p.alpha);
            let mut k0 = 0;
            while k0 < p.k {
                let kc = (p.k - k0).min(KC);
                let mut acc = [[_mm512_setzero_ps(); V]; R];
                let mut ap = panel.a.add(k0 * panel.step);
                for q in k0..k0 + kc {
                    let bp = p.rows.row(q);
                    if q + PREFETCH_STEPS < p.k {
                        let np = p.rows.row(q + PREFETCH_STEPS);
                        for l in &lanes {
                            _mm_prefetch::<_MM_HINT_T0>(np.add(l.b).cast());
                        }
                    }
                    let mut b = [_mm512_setzero_ps(); V];
                    for (v, b) in b.iter_mut().enumerate() {
                        *b = _mm512_maskz_loadu_ps(masks[v], bp.add(lanes[v].b));
                    }
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let av = _mm512_set1_ps(*ap.add(r));
                        for (acc, &b) in acc.iter_mut().zip(&b) {
                            *acc = _mm512_fmadd_ps(av, b, *acc);
                        }
                    }
                    ap = ap.add(panel.step);
                }
                // The first block applies the caller's beta, later ones add.
                let beta = if k0 == 0 { p.beta } else { 1.0 };
                for (r, acc) in acc.iter().enumerate() {
                    let cp = p.c.add(r * p.ldc);
                    for v in 0..V {
                        let at = cp.add(lanes[v].c);
                        let out = if beta == 0.0 {
                            _mm512_mul_ps(alpha, acc[v])
                        } else {
                            let c = _mm512_maskz_loadu_ps(masks[v], at);
                            let cv = _mm512_mul_ps(c, _mm512_set1_ps(beta));
                            _mm512_fmadd_ps(alpha, acc[v], cv)
                        };
                        _mm512_mask_storeu_ps(at, masks[v], out);
                    }
                }
                k0 += kc;
            }
        }
    }
}
