//! Single-precision GEMM on the CPU: products with few rows or a small
//! right-hand side run on this crate's unpacked kernel
//! ([`super::small_gemm`]; on AVX-512 CPUs also those with at most 64 rows
//! and a wide right-hand side, column strips outside the row tiles), the
//! others on its packed-panel kernel
//! ([`super::panel_gemm`]) on AVX-512 CPUs and for wide products with few
//! rows on AVX2 ones, the rest through `matrixmultiply::sgemm`. All give
//! bit-identical values (with `alpha = 1` on a CPU with FMA), so the
//! choice never changes a result.
//!
//! Matrices are described by a pointer-free view: a slice, its row stride and
//! its column stride, so transposes cost nothing.

use super::panel_gemm;
use super::scratch::with_scratch;
use super::small_gemm;
use super::small_gemm_avx512::{self, TileOrder};
use rayon::prelude::*;
use std::cell::Cell;
use std::mem::MaybeUninit;

/// Products of at most this many rows run on [`small_gemm`] whatever its
/// build: there `matrixmultiply`'s 16-row (AVX-512) or 8-row tiles are
/// mostly padding and its packing costs as much as the product (e.g. the
/// LSTM's per-step `h·W_hhᵀ` at batch 1: 12x faster unpacked).
pub const SMALL_M: usize = 8;

/// With the AVX-512 build, products whose right-hand side holds at most this
/// many values (768 KB: it stays in L2 while every tile of rows streams it)
/// run unpacked whatever their number of rows: 1.1-1.5x matrixmultiply's
/// packed AVX-512 kernel at the reference shapes, from the LSTM's
/// 1024 x 128 x 192 input projection to a 128 x 576 x 256 convolution; with
/// larger ones (128 x 1152 x 256) packing wins (`benches/kernels.rs`, `gemm/*`).
pub const UNPACKED_AVX512_B: usize = 192 * 1024;

/// With the AVX2 build (no AVX-512), products whose right-hand side has
/// contiguous rows and holds at most this many values (512 KB, a Zen 3
/// core's L2) run unpacked whatever their number of rows. On an AMD EPYC
/// (Zen 3, AVX2), against matrixmultiply's packed AVX2 kernel
/// (`benches/kernels.rs`, GEMM summary): `crnn-s` b2 for one line (16 x 72
/// x 1024) 1.62x, b4 (32 x 288 x 256) 1.25x, `crnn-t` b1 (32 x 9 x 4096)
/// 1.81x, the kept-`W_ihᵀ` LSTM input for one line 1.21x, `crnn-t`'s LSTM
/// step at batch 32 1.24x; larger ones even (128 x 576 x 256) or slower
/// (128 x 1152 x 256: 0.83x, also a k block at a time). A line 1.15-1.18x.
pub const UNPACKED_AVX2_B: usize = 128 * 1024;

/// ... while `a` holds at most this many values (128 KB): the kernel reads
/// all of `a` again for every 16 columns, and a larger one, with the
/// right-hand side streaming beside it, no longer stays in L2. Such
/// products go to [`panel_gemm`] instead. On a Zen 3 core, panel ÷ the
/// unpacked kernel (best of 9 rounds, one process): `crnn-t`'s second LSTM
/// layer input for a batch (1024 x 256 x 512, a frozen teacher's kept
/// `W_ihᵀ`) 1.38x, 1024 x 128 x 512 1.21x, 256 x 256 x 512 1.17x,
/// 1024 x 192 x 256 1.19x, `crnn-s`'s LSTM input at batch 32 (1024 x 128 x
/// 192) 1.04-1.15x; with `a` up to this size the unpacked kernel keeps its
/// lead (64 x 128 x 192 1.11x the panels, 128 x 128 x 192 1.11x) or the
/// two are even (128 x 256 x 256).
pub const UNPACKED_AVX2_A: usize = 32 * 1024;

/// A product `x·Wᵀ` with fewer rows than this (one line's LSTM input
/// projection, 32 x 128 x 192ᵀ) and more than [`SMALL_M`] is better
/// computed turned around, `(W·xᵀ)ᵀ`, when `W` has at least this many rows:
/// then the copied operand is the small `x`, not the weight ([`gemm`] does
/// it where the weight is too large to copy).
pub const UNPACKED_TRANSPOSED_MIN_M: usize = 64;

/// With the AVX-512 build, a right-hand side stored transposed is copied
/// row-major for the unpacked kernel when it holds at most this many
/// values: the copy is then a few µs at most. A linear layer for one line
/// (32 x 96 x 37, the `crnn-s` head): 1.55x matrixmultiply; 32 x 256 x 37:
/// 1.2x; 32 x 96 x 128: 1.25x; the head at batch 32 (1024 x 96 x 37): 1.3x
/// the packed panels. Larger ones go to the panels, which pack them anyway
/// (1024 x 128 x 192 even, 1024 x 256 x 512 1.05x, 256 x 256 x 512 1.18x,
/// 64 x 256 x 512 1.47x the copy; in one process in alternation).
/// The AVX2 build takes the same: the F(2x2) weight gradient's products
/// `dM_e·V_eᵀ` (o x tiles x c) on a Zen 3 core against matrixmultiply's
/// packing, whole weight gradients at N = 32 in one process in
/// alternation: `crnn-t` b2 (64 x 128 x 32) 1.24-1.34x, b3 (128 x 64 x 64)
/// 1.18-1.25x, b4 (128 x 64 x 128) 1.13-1.17x on 1 thread and 0.98-1.15x on
/// 2, `crnn-s` b3 and b4 1.37-1.65x; train-step 1.06x.
pub const UNPACKED_TRANSPOSED_SMALL_B: usize = 16 * 1024;

/// With the AVX-512 build, a left-hand side without contiguous rows (`dgᵀ`
/// in a weight gradient) is read in place only up to this many rows: the
/// tile then reads each k step's values of its rows `m` values apart, and
/// from 512 rows (2 KB apart, the LSTM's `dW_hh` of `crnn-t`, 512 x 1024 x
/// 128) those steps crowd a few cache sets: 0.62x matrixmultiply, against
/// 1.06-1.29x at the 192 rows of `crnn-s`'s weight gradients.
pub const STRIDED_A_MAX_M: usize = 256;

/// With the AVX-512 build, a right-hand side larger than
/// [`UNPACKED_AVX512_B`] is still read in place when `a` has at most this
/// many rows, one k block of [`small_gemm::KC`] rows of `b` at a time (a
/// block, e.g. 256 x 256 values, stays in L2 while each row tile reads it):
/// with operands on cache lines 1.14-1.19x matrixmultiply for 128 x 1152 x
/// 256, 1.19-1.33x for 64 x 288 x 1024, 1.10x for 256 x 512 x 512; with
/// rows 16 bytes off a line 0.95-1.09x; with 1024 rows the two are even.
pub const K_BLOCKED_MAX_M: usize = 256;

/// ... and at most this many columns: from 1024 (rows 4 KB apart, which
/// crowd a few L1 sets) the packed panels of [`panel_gemm`] win (64 x 288 x
/// 1024 1.16x, 128 x 576 x 1024 1.23x; at 512 columns the two are even).
pub const K_BLOCKED_MAX_N: usize = 512;

/// Whether `a·b` (`m x k x n`) runs on the unpacked kernel `kernel`.
fn unpacked_wins(kernel: small_gemm::Kernel, a: MatRef, b: MatRef) -> bool {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let copies_b = b.cs != 1 && b.cols != 1;
    let strided_a = a.cs != 1 && a.cols != 1;
    m <= SMALL_M
        || (kernel == small_gemm::Kernel::Avx2
            && k * n <= UNPACKED_AVX2_B
            && m * k <= UNPACKED_AVX2_A
            && !strided_a
            && (!copies_b || k * n <= UNPACKED_TRANSPOSED_SMALL_B))
        || (kernel == small_gemm::Kernel::Avx512
            && k * n <= UNPACKED_AVX512_B
            && (!strided_a || m <= STRIDED_A_MAX_M)
            && (!copies_b || k * n <= UNPACKED_TRANSPOSED_SMALL_B))
}

/// With the AVX-512 build, a product whose right-hand side is too large
/// for the unpacked kernel's usual order ([`UNPACKED_AVX512_B`], and past
/// [`K_BLOCKED_MAX_N`] columns) still reads it in place when `a` has at
/// most this many rows and k lies in [`COLUMN_STRIPS_K`]: one strip of
/// columns (k x 48 values, 37-72 KB) at a time, every row tile reading
/// the strip from cache (`small_gemm_avx512::TileOrder::ColumnsOuter`).
/// `b` is then read once and never copied. On a Zen 5 core, median of 21
/// calls, warm and with an 8 MB write between calls, two rounds each,
/// against the packed panels: `crnn-t` b2 (64 x 288 x 1024) 1.06-1.15x,
/// 32 x 288 x 1024 1.13-1.15x, 16 x 288 x 1024 1.3-1.5x, 48 x 288 x 1024
/// 1.06-1.10x, 64 x 200 x 1024 1.05-1.10x, 64 x 320 x 1024 1.01-1.12x; even
/// at 64 x 144 x 1024, 64 x 400 x 1024, 96 x 288 x 1024, 64 x 288 x 2048 and
/// 64 x 72 x 4096, slower at 128 x 1152 x 256 (0.7-0.8x).
pub const COLUMN_STRIPS_MAX_M: usize = 64;
const _: () = assert!(COLUMN_STRIPS_MAX_M <= STRIDED_A_MAX_M);

/// ... see [`COLUMN_STRIPS_MAX_M`]: the inner dimensions it takes.
pub const COLUMN_STRIPS_K: std::ops::RangeInclusive<usize> = 192..=384;

/// ... see [`COLUMN_STRIPS_MAX_M`]: the most columns it takes.
pub const COLUMN_STRIPS_MAX_N: usize = 1024;

/// Whether `a·b`, past the unpacked and k-blocked paths, runs on the
/// unpacked AVX-512 kernel with column strips outside the row tiles
/// ([`COLUMN_STRIPS_MAX_M`]).
fn column_strips_win(kernel: small_gemm::Kernel, a: MatRef, b: MatRef) -> bool {
    // With so few rows, `a` is read in place whatever its layout
    // (COLUMN_STRIPS_MAX_M <= STRIDED_A_MAX_M).
    kernel == small_gemm::Kernel::Avx512
        && b.cs == 1
        && a.rows <= COLUMN_STRIPS_MAX_M
        && COLUMN_STRIPS_K.contains(&a.cols)
        && b.cols <= COLUMN_STRIPS_MAX_N
}

/// Whether `a·b` runs on the unpacked kernel `kernel` a k block at a time
/// ([`gemm_k_blocked`]): both operands with contiguous rows, a right-hand
/// side too large for [`unpacked_wins`], and few rows.
fn k_blocked_wins(kernel: small_gemm::Kernel, a: MatRef, b: MatRef) -> bool {
    kernel == small_gemm::Kernel::Avx512
        && a.cs == 1
        && b.cs == 1
        && a.rows <= K_BLOCKED_MAX_M
        && b.cols <= K_BLOCKED_MAX_N
        && a.cols > small_gemm::KC
}

/// With the AVX2 build, a product past the unpacked paths runs on
/// [`panel_gemm`] (rather than matrixmultiply) from this many columns...
pub const PANEL_AVX2_MIN_N: usize = 1024;

/// ... when `a` has at most this many rows (one group of packed rows).
/// On a Zen 3 core, in one process in alternation: 64 x 288 x 1024 (a
/// `crnn-t` b2 convolution) 1.14-1.29x matrixmultiply, 32 x 288 x 1024
/// 1.06-1.14x, 128 x 576 x 1024 1.04-1.15x, 64 x 72 x 4096 1.02-1.16x;
/// with more rows or fewer columns the two are even or matrixmultiply's
/// 8 x 8 kernel wins (256 x 512 x 1024 0.92-0.97x, 128 x 576 x 256
/// 0.85-1.0x).
pub const PANEL_AVX2_MAX_M: usize = panel_gemm::MC;

/// Whether a product past the unpacked paths runs on [`panel_gemm`]'s build
/// `kernel` rather than matrixmultiply: on AVX2 also those left out of the
/// unpacked kernel for the size of `a` ([`UNPACKED_AVX2_A`]), and every
/// product with `b` stored transposed (`x·Wᵀ` of a tracked LSTM's input
/// projection), whose panels the 8 x 8 transposes fill. On a Zen 3 core,
/// panel ÷ matrixmultiply per round (median of 15, two runs; best-of
/// rounds in brackets): 32 x 128 x 192 1.09 and 1.13 (1.12x), 1024 x 128 x
/// 192 1.01 and 1.04 (1.09x), 1024 x 96 x 192 1.02 and 1.13 (1.12x), 32 x
/// 256 x 512 1.04 and 1.02 (1.10x), 1024 x 512 x 512 0.98-1.07 over four
/// runs (0.97-1.06x), 1024 x 256 x 512 0.99-1.03 (1.06-1.10x).
fn panel_wins(kernel: small_gemm::Kernel, a: MatRef, b: MatRef) -> bool {
    match kernel {
        small_gemm::Kernel::Avx512 => true,
        small_gemm::Kernel::Avx2 => {
            (b.cols >= PANEL_AVX2_MIN_N && a.rows <= PANEL_AVX2_MAX_M)
                || (b.rs == 1 && b.cs != 1)
                || (a.cs == 1
                    && b.rows * b.cols <= UNPACKED_AVX2_B
                    && a.rows * a.cols > UNPACKED_AVX2_A)
        }
    }
}

/// A read-only matrix view: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    /// Backing values.
    pub data: &'a [f32],
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Row stride in elements.
    pub rs: usize,
    /// Column stride in elements.
    pub cs: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major `rows x cols` matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        MatRef {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose (no copy).
    pub fn t(self) -> Self {
        MatRef {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    fn check(&self) {
        if self.rows > 0 && self.cols > 0 {
            let last = (self.rows - 1) * self.rs + (self.cols - 1) * self.cs;
            assert!(last < self.data.len(), "matrix view out of bounds");
        }
    }
}

/// `c = alpha * a · b + beta * c`, with `c` row-major `a.rows x b.cols`.
///
/// Panics if the views do not fit their slices; callers check shapes first.
pub fn gemm(alpha: f32, a: MatRef, b: MatRef, beta: f32, c: &mut [f32]) {
    assert_eq!(a.cols, b.rows, "gemm inner dimensions");
    assert!(c.len() >= a.rows * b.cols, "gemm output too small");
    a.check();
    b.check();
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for v in &mut c[..m * n] {
            *v *= beta;
        }
        return;
    }
    if let Some(kernel) = small_gemm::Kernel::best() {
        if turns_around(a, b) {
            gemm_turned(alpha, a, b, beta, c, gemm);
            return;
        }
        if unpacked_wins(kernel, a, b) && gemm_unpacked_with(kernel, alpha, a, b, beta, c) {
            return;
        }
        if k_blocked_wins(kernel, a, b) {
            gemm_k_blocked(kernel, alpha, a, b, beta, c);
            return;
        }
        if column_strips_win(kernel, a, b) {
            // SAFETY: the views were bounds-checked above, `c` holds m*n
            // values, k > 0 and the CPU runs AVX-512 (the rule's kernel).
            let o = operands(alpha, a, (b.data, b.rs, n), beta, c);
            unsafe { small_gemm_avx512::gemm_ordered(o, TileOrder::ColumnsOuter) };
            return;
        }
        if panel_wins(kernel, a, b) {
            panel_gemm::gemm_with(kernel, alpha, a, b, beta, c);
            return;
        }
    }
    gemm_packed(alpha, a, b, beta, c);
}

/// [`gemm`] always through `matrixmultiply::sgemm` (packed panels), whatever
/// the shape: the path large products take, and the reference the unpacked
/// kernel is checked and timed against.
///
/// Panics if the views do not fit their slices.
pub fn gemm_packed(alpha: f32, a: MatRef, b: MatRef, beta: f32, c: &mut [f32]) {
    assert_eq!(a.cols, b.rows, "gemm inner dimensions");
    assert!(c.len() >= a.rows * b.cols, "gemm output too small");
    a.check();
    b.check();
    // SAFETY: the views were bounds-checked above and `c` holds m*n values;
    // matrixmultiply reads a and b and writes c within those bounds only.
    unsafe {
        matrixmultiply::sgemm(
            a.rows,
            a.cols,
            b.cols,
            alpha,
            a.data.as_ptr(),
            a.rs as isize,
            a.cs as isize,
            b.data.as_ptr(),
            b.rs as isize,
            b.cs as isize,
            beta,
            c.as_mut_ptr(),
            b.cols as isize,
            1,
        );
    }
}

/// [`gemm`] on [`small_gemm`]'s build `kernel` (which the CPU must run),
/// whatever the number of rows, when `b` has contiguous rows or columns;
/// `false` (nothing done) for other layouts. The caller has checked the
/// shapes and that k > 0.
fn gemm_unpacked_with(
    kernel: small_gemm::Kernel,
    alpha: f32,
    a: MatRef,
    b: MatRef,
    beta: f32,
    c: &mut [f32],
) -> bool {
    let (k, n) = (a.cols, b.cols);
    debug_assert!(small_gemm::Kernel::all_available().contains(&kernel) && k > 0);
    if b.cs == 1 || b.cols == 1 {
        // SAFETY: the views were bounds-checked by `gemm`, `c` holds m*n
        // values, and the CPU has AVX2 and FMA.
        unsafe { small_gemm::gemm_with(kernel, operands(alpha, a, (b.data, b.rs, n), beta, c)) };
        return true;
    }
    if b.rs == 1 || b.rows == 1 {
        // A transposed (column-major) right-hand side, as `x·Wᵀ`: copied
        // row-major once, the same traffic as matrixmultiply's packing.
        with_scratch(&TRANSPOSED, k * n, |buf| {
            transpose_into(b, buf);
            // SAFETY: `buf` holds b.rows x b.cols values row-major; the
            // rest as above.
            unsafe { small_gemm::gemm_with(kernel, operands(alpha, a, (buf, n, n), beta, c)) };
        });
        return true;
    }
    false
}

/// [`gemm`] on the unpacked kernel `kernel` (which the CPU must run) with
/// `b` read in place (`b.cs == 1`), one k block of [`small_gemm::KC`] at a
/// time: the first block applies `beta`, the later ones add to `c`. The
/// kernel's own chain does the same within one call (accumulators from
/// zero per block, then `alpha·acc + beta·c`), so the bits do not change;
/// only the order in which the tiles visit the blocks does. The caller has
/// checked the shapes and that k > 0.
fn gemm_k_blocked(
    kernel: small_gemm::Kernel,
    alpha: f32,
    a: MatRef,
    b: MatRef,
    beta: f32,
    c: &mut [f32],
) {
    debug_assert!(b.cs == 1 && small_gemm::Kernel::all_available().contains(&kernel));
    let (k, n) = (a.cols, b.cols);
    for k0 in (0..k).step_by(small_gemm::KC) {
        let kc = (k - k0).min(small_gemm::KC);
        let a_block = MatRef {
            data: &a.data[k0 * a.cs..],
            cols: kc,
            ..a
        };
        let b_rows = &b.data[k0 * b.rs..];
        let beta = if k0 == 0 { beta } else { 1.0 };
        // SAFETY: the views were bounds-checked by `gemm` (a block's rows
        // and columns are a part of them), `c` holds m*n values, and the
        // CPU runs `kernel`.
        unsafe {
            small_gemm::gemm_with(kernel, operands(alpha, a_block, (b_rows, b.rs, n), beta, c))
        };
    }
}

thread_local! {
    /// Scratch for a right-hand side copied row-major, reused across calls.
    static TRANSPOSED: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// The raw operands of `c = alpha * a·b + beta * c` for a `k x n` right-hand
/// side stored in `b` with contiguous rows `rsb` apart.
fn operands(
    alpha: f32,
    a: MatRef,
    (b, rsb, n): (&[f32], usize, usize),
    beta: f32,
    c: &mut [f32],
) -> small_gemm::Operands {
    small_gemm::Operands {
        m: a.rows,
        k: a.cols,
        n,
        alpha,
        a: a.data.as_ptr(),
        rsa: a.rs,
        csa: a.cs,
        b: b.as_ptr(),
        rsb,
        beta,
        c: c.as_mut_ptr(),
        ldc: n,
    }
}

/// Writes the values of `b` row-major into `out` (`b.rows * b.cols`
/// values). A transposed row-major matrix (`b.rs == 1`) goes in 8 x 8
/// blocks through AVX registers when the CPU has AVX2.
pub(crate) fn transpose_into(b: MatRef, out: &mut [f32]) {
    transpose_to(b, out, b.cols);
}

/// [`transpose_into`] with the rows of `out` `ldo >= b.cols` values apart.
pub(crate) fn transpose_to(b: MatRef, out: &mut [f32], ldo: usize) {
    // SAFETY: only values of `b` are written.
    transpose_to_slots(b, unsafe { super::uninit::as_slots(out) }, ldo);
}

/// [`transpose_to`] into slots that may start uninitialised: it writes
/// `b.rows` rows of `b.cols` values, `ldo` apart, and nothing between.
pub(crate) fn transpose_to_slots(b: MatRef, out: &mut [MaybeUninit<f32>], ldo: usize) {
    let (rows, cols) = (b.rows, b.cols);
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(ldo >= cols, "transpose_to: rows overlap");
    let out = &mut out[..(rows - 1) * ldo + cols];
    let (mut p0, mut j0) = (0, 0);
    #[cfg(target_arch = "x86_64")]
    if b.rs == 1 && super::simd::has_avx2() {
        // Whole 8 x 8 blocks; the ragged right and bottom edges below.
        (p0, j0) = (rows / 8 * 8, cols / 8 * 8);
        assert!(p0 == 0 || j0 == 0 || (j0 - 1) * b.cs + p0 <= b.data.len());
        // SAFETY: AVX2 is present; block (p, j) reads b.data[(j + t) * cs + p
        // .. + 8] for t < 8, inside the view (checked above), and writes
        // out[(p + t) * ldo + j .. + 8], inside `out`.
        unsafe { transpose_blocks(b.data.as_ptr(), b.cs, out.as_mut_ptr().cast(), ldo, p0, j0) };
    }
    for p in 0..rows {
        let from = if p < p0 { j0 } else { 0 };
        for j in from..cols {
            out[p * ldo + j].write(b.data[p * b.rs + j * b.cs]);
        }
    }
}

/// The transpose of the 8 x 8 matrix whose rows are `r`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) fn transpose8x8(r: [std::arch::x86_64::__m256; 8]) -> [std::arch::x86_64::__m256; 8] {
    use std::arch::x86_64::*;
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
    let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    [
        _mm256_permute2f128_ps::<0x20>(u0, u4),
        _mm256_permute2f128_ps::<0x20>(u1, u5),
        _mm256_permute2f128_ps::<0x20>(u2, u6),
        _mm256_permute2f128_ps::<0x20>(u3, u7),
        _mm256_permute2f128_ps::<0x31>(u0, u4),
        _mm256_permute2f128_ps::<0x31>(u1, u5),
        _mm256_permute2f128_ps::<0x31>(u2, u6),
        _mm256_permute2f128_ps::<0x31>(u3, u7),
    ]
}

/// The 8 x 8 blocks of `transpose_to` for `p < p_end`, `j < j_end`, the
/// rows of `dst` `ldo` values apart.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn transpose_blocks(
    src: *const f32,
    ld: usize,
    dst: *mut f32,
    ldo: usize,
    p_end: usize,
    j_end: usize,
) {
    use std::arch::x86_64::*;
    let block = |p: usize, j: usize| {
        // SAFETY: in bounds by the caller's contract.
        unsafe {
            let r: [__m256; 8] =
                std::array::from_fn(|t| _mm256_loadu_ps(src.add((j + t) * ld + p)));
            let o = transpose8x8(r);
            for (t, v) in o.into_iter().enumerate() {
                _mm256_storeu_ps(dst.add((p + t) * ldo + j), v);
            }
        }
    };
    if p_end > 8 && (ldo * 4).is_multiple_of(ALIASING_ROW_BYTES) {
        // Eight output rows at a time, each written front to back.
        for p in (0..p_end).step_by(8) {
            for j in (0..j_end).step_by(8) {
                block(p, j);
            }
        }
    } else {
        // Eight input rows at a time, each read front to back.
        for j in (0..j_end).step_by(8) {
            for p in (0..p_end).step_by(8) {
                block(p, j);
            }
        }
    }
}

/// Output rows of a transpose whose starts lie a multiple of this many
/// bytes apart share a few L1 sets: written eight columns at a time, all of
/// them at once, they evict one another before their lines fill, so such a
/// transpose writes eight whole rows at a time instead. On a Zen 5 core,
/// medians of 201 alternating calls: a `crnn-s` batch's columns (32 x 32 x
/// 4 x 32 to 32 x 32 x 128, the LSTM's input) 6-9x, 32 x 512 x 1 x 32 to
/// 32 x 32 x 512 4-7x, 512 x 512 4.6-5.1x, 256 x 4096 1.1-2.5x; a
/// weight gradient's `dyᵀ` (o x positions to positions x o) with o = 256
/// 2.3-4.4x, o = 512 7x; with rows less aligned reading eight rows at a
/// time stays ahead (o = 64, 96 and 128: 0.4-0.5x the other way; 4096 x 32
/// to 32 x 4096 0.6x, 1000 x 300 0.7-0.8x).
const ALIASING_ROW_BYTES: usize = 1024;

/// Whether [`gemm`] computes `a·b` turned around ([`gemm_turned`]): `x·Wᵀ`
/// with few rows of `x` and many of `W` (one line's LSTM input projection),
/// where the product as given would pack a weight too large to copy for
/// the unpacked kernel and the turned one copies the small `x` for it. On a
/// Zen 4 core (AVX-512), turned ÷ as given, best of 15 batches: 16 x 128 x
/// 192ᵀ 1.2-1.3x, 32 x 128 x 192ᵀ (`crnn-s`) 1.0-1.07x, 32 x 512 x 512ᵀ
/// (`crnn-t`) 1.13-1.22x, 32 x 96 x 192ᵀ 1.1x, an im2col weight gradient
/// `dy·colᵀ` of 16 x 1024 x 72ᵀ 1.6x. With a weight small enough to copy,
/// as given stays ahead (32 x 48 x 192ᵀ, `crnn-s`'s recurrence at batch 32:
/// 0.93-0.98x turned), and with at most [`SMALL_M`] rows (4 x 128 x 192ᵀ
/// 0.55x, 8 x 128 x 192ᵀ 0.75-0.85x).
fn turns_around(a: MatRef, b: MatRef) -> bool {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    a.cs == 1
        && b.rs == 1
        && b.cs != 1
        && m > SMALL_M
        && m < UNPACKED_TRANSPOSED_MIN_M
        && n >= UNPACKED_TRANSPOSED_MIN_M
        && k * n > UNPACKED_TRANSPOSED_SMALL_B
        && k * m <= UNPACKED_TRANSPOSED_SMALL_B
        && small_gemm::Kernel::best().is_some()
}

thread_local! {
    /// Scratch for the transposed output of a product turned around.
    static TURNED: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// `c = alpha·a·b + beta·c` as `cᵀ = alpha·bᵀ·aᵀ + beta·cᵀ` through
/// `product`, `cᵀ` in scratch: every output value is the same chain of
/// operations as in the product as given, so the same bits.
fn gemm_turned(
    alpha: f32,
    a: MatRef,
    b: MatRef,
    beta: f32,
    c: &mut [f32],
    product: fn(f32, MatRef, MatRef, f32, &mut [f32]),
) {
    let (m, n) = (a.rows, b.cols);
    let c = &mut c[..m * n];
    with_scratch(&TURNED, m * n, |turned| {
        // With beta 0 the products do not read c.
        if beta != 0.0 {
            transpose_into(MatRef::row_major(c, m, n).t(), turned);
        }
        product(alpha, b.t(), a.t(), beta, turned);
        transpose_into(MatRef::row_major(turned, n, m).t(), c);
    });
}

/// [`gemm`] with the rows of `a` and `c` split across rayon threads. Each
/// output row is computed by exactly one thread in the same order as the
/// serial version: the result does not depend on the thread count. A
/// product [`gemm`] turns around is turned before it is split.
pub fn gemm_par(alpha: f32, a: MatRef, b: MatRef, beta: f32, c: &mut [f32]) {
    if turns_around(a, b) {
        gemm_turned(alpha, a, b, beta, c, gemm_par);
        return;
    }
    let (m, n) = (a.rows, b.cols);
    let threads = rayon::current_num_threads();
    let min_rows = 16;
    if threads <= 1 || m < 2 * min_rows || n == 0 {
        gemm(alpha, a, b, beta, c);
        return;
    }
    let rows_per = m.div_ceil(threads).max(min_rows);
    c[..m * n]
        .par_chunks_mut(rows_per * n)
        .enumerate()
        .for_each(|(i, chunk)| {
            let r0 = i * rows_per;
            let rows = chunk.len() / n;
            let sub = MatRef {
                data: &a.data[r0 * a.rs..],
                rows,
                cols: a.cols,
                rs: a.rs,
                cs: a.cs,
            };
            gemm(alpha, sub, b, beta, chunk);
        });
}

/// What the GEMM paths' tests share: random operands in every layout and
/// bitwise comparison.
#[cfg(test)]
pub(crate) mod testing {
    use super::MatRef;
    use crate::rng::Rng;

    /// `len` values drawn uniformly from [-1, 1).
    pub(crate) fn values(len: usize, rng: &mut Rng) -> Vec<f32> {
        (0..len).map(|_| rng.range(-1.0, 1.0)).collect()
    }

    /// The bits of each value, for `assert_eq!`.
    pub(crate) fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// Random operands of an `m x k x n` product, `a` stored transposed
    /// (column-major) when `ta`, `b` when `tb`.
    pub(crate) struct Operands {
        a: Vec<f32>,
        b: Vec<f32>,
        shape: (usize, usize, usize),
        transposed: (bool, bool),
    }

    impl Operands {
        pub(crate) fn new(
            (m, k, n): (usize, usize, usize),
            ta: bool,
            tb: bool,
            rng: &mut Rng,
        ) -> Self {
            Operands {
                a: values(m * k, rng),
                b: values(k * n, rng),
                shape: (m, k, n),
                transposed: (ta, tb),
            }
        }

        /// The views `a` (m x k) and `b` (k x n).
        pub(crate) fn views(&self) -> (MatRef<'_>, MatRef<'_>) {
            let (m, k, n) = self.shape;
            let stored = |data, rows, cols, t| {
                if t {
                    MatRef::row_major(data, cols, rows).t()
                } else {
                    MatRef::row_major(data, rows, cols)
                }
            };
            (
                stored(&self.a, m, k, self.transposed.0),
                stored(&self.b, k, n, self.transposed.1),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{bits, values, Operands};
    use super::*;
    use crate::rng::Rng;

    /// `matrixmultiply::sgemm` on the same views: the reference.
    fn reference(a: MatRef, b: MatRef, beta: f32, c: &mut [f32]) {
        gemm_packed(1.0, a, b, beta, c);
    }

    /// A pool of two worker threads, for `gemm_par`.
    fn two_threads() -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("a pool of two threads")
    }

    /// `gemm`, and `gemm_par` in `pool`, give matrixmultiply's bits for
    /// `a·b` with each beta (with beta 0, NaNs in `c` that must not be read).
    fn gemm_and_gemm_par_match_matrixmultiply(
        a: MatRef,
        b: MatRef,
        pool: &rayon::ThreadPool,
        rng: &mut Rng,
    ) {
        let (m, k, n) = (a.rows, a.cols, b.cols);
        for beta in [0.0, 1.0, 0.5] {
            let c0 = if beta == 0.0 {
                vec![f32::NAN; m * n]
            } else {
                values(m * n, rng)
            };
            let mut want = c0.clone();
            reference(a, b, beta, &mut want);
            let mut got = c0.clone();
            gemm(1.0, a, b, beta, &mut got);
            assert_eq!(bits(&want), bits(&got), "{m}x{k}x{n} beta {beta}");
            let mut par = c0;
            pool.install(|| gemm_par(1.0, a, b, beta, &mut par));
            let threads = pool.current_num_threads();
            assert_eq!(
                bits(&want),
                bits(&par),
                "{m}x{k}x{n} beta {beta}, {threads} threads"
            );
        }
    }

    /// The unpacked kernel gives the same bits as matrixmultiply, for every
    /// tile remainder, k across the 256 blocks, each beta and both layouts
    /// of each operand.
    #[test]
    fn small_path_matches_matrixmultiply_bit_for_bit() {
        if !small_gemm::available() {
            eprintln!("skipped: the CPU lacks AVX2 or FMA");
            return;
        }
        let mut rng = Rng::seed(7);
        for kernel in small_gemm::Kernel::all_available() {
            for &m in &[1, 2, 5, 6, 7, 9, 13, 32, 64] {
                for &k in &[1, 3, 9, 48, 256, 257, 600] {
                    for &n in &[1, 7, 16, 17, 37, 192, 300, 512] {
                        for &beta in &[0.0, 1.0, 0.5] {
                            for (ta, tb) in [(false, false), (true, false), (false, true)] {
                                let operands = Operands::new((m, k, n), ta, tb, &mut rng);
                                let (a, b) = operands.views();
                                let c0 = values(m * n, &mut rng);
                                let (mut want, mut got) = (c0.clone(), c0);
                                reference(a, b, beta, &mut want);
                                assert!(gemm_unpacked_with(kernel, 1.0, a, b, beta, &mut got));
                                assert_eq!(
                                    bits(&want),
                                    bits(&got),
                                    "{kernel:?}: m {m} k {k} n {n} beta {beta} ta {ta} tb {tb}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// The unpacked kernel a k block at a time gives matrixmultiply's bits:
    /// k across one, two and three blocks, ragged columns, each beta; and
    /// `gemm` dispatches a large right-hand side with few rows to it.
    #[test]
    fn k_blocked_path_matches_matrixmultiply_bit_for_bit() {
        let mut rng = Rng::seed(11);
        for kernel in small_gemm::Kernel::all_available() {
            for &(m, k, n) in &[(9, 257, 17), (33, 520, 300), (16, 600, 400), (3, 256, 33)] {
                for &beta in &[0.0, 1.0, 0.5] {
                    let operands = Operands::new((m, k, n), false, false, &mut rng);
                    let (a, b) = operands.views();
                    let c0 = values(m * n, &mut rng);
                    let (mut want, mut got) = (c0.clone(), c0.clone());
                    reference(a, b, beta, &mut want);
                    gemm_k_blocked(kernel, 1.0, a, b, beta, &mut got);
                    assert_eq!(
                        bits(&want),
                        bits(&got),
                        "{kernel:?}: {m}x{k}x{n} beta {beta}"
                    );
                    if k * n > UNPACKED_AVX512_B && kernel == small_gemm::Kernel::Avx512 {
                        assert!(k_blocked_wins(kernel, a, b) && !unpacked_wins(kernel, a, b));
                        let mut via_gemm = c0;
                        gemm(1.0, a, b, beta, &mut via_gemm);
                        assert_eq!(bits(&want), bits(&via_gemm));
                    }
                }
            }
        }
    }

    /// Products of few rows by a right-hand side too wide for the unpacked
    /// kernel's usual order run column strips outer and give
    /// matrixmultiply's bits: ragged rows and columns, k inside and across
    /// a 256 block, `a` stored either way, each beta (NaNs in `c` unread
    /// with beta 0), through `gemm` and `gemm_par` on two threads.
    #[test]
    fn column_strip_products_match_matrixmultiply_bit_for_bit() {
        let mut rng = Rng::seed(17);
        let pool = two_threads();
        for &(m, k, n, ta) in &[
            (64, 288, 1024, false),
            (9, 200, 1001, false),
            (37, 384, 777, true),
            (16, 256, 1024, false),
        ] {
            let operands = Operands::new((m, k, n), ta, false, &mut rng);
            let (a, b) = operands.views();
            if small_gemm::Kernel::best() == Some(small_gemm::Kernel::Avx512) {
                let kernel = small_gemm::Kernel::Avx512;
                assert!(column_strips_win(kernel, a, b), "{m}x{k}x{n}");
                assert!(
                    !unpacked_wins(kernel, a, b) && !k_blocked_wins(kernel, a, b),
                    "{m}x{k}x{n}"
                );
            }
            gemm_and_gemm_par_match_matrixmultiply(a, b, &pool, &mut rng);
        }
    }

    /// Products past both unpacked paths (many rows, a wide right-hand side,
    /// a strided left-hand side of many rows) give matrixmultiply's bits
    /// through `gemm`, whichever kernel takes them.
    #[test]
    fn large_products_match_matrixmultiply_bit_for_bit() {
        let mut rng = Rng::seed(13);
        for &(m, k, n, ta, tb) in &[
            (300, 300, 700, false, false),
            (64, 288, 1024, false, false),
            (520, 260, 130, true, false),
            (40, 512, 512, false, true),
        ] {
            let operands = Operands::new((m, k, n), ta, tb, &mut rng);
            let (a, b) = operands.views();
            let c0 = values(m * n, &mut rng);
            let (mut want, mut got) = (c0.clone(), c0);
            reference(a, b, 0.5, &mut want);
            gemm(1.0, a, b, 0.5, &mut got);
            assert_eq!(bits(&want), bits(&got), "{m}x{k}x{n} ta {ta} tb {tb}");
        }
    }

    /// `x·Wᵀ` with few rows of `x` and many of `W` is computed turned
    /// around and gives matrixmultiply's bits, through `gemm` and through
    /// `gemm_par` on two threads, for each beta (with beta 0 the NaNs in
    /// `c` are not read).
    #[test]
    fn turned_products_match_matrixmultiply_bit_for_bit() {
        let mut rng = Rng::seed(17);
        let pool = two_threads();
        for &(m, k, n) in &[(32, 128, 192), (9, 300, 64), (63, 256, 100), (16, 1024, 72)] {
            let operands = Operands::new((m, k, n), false, true, &mut rng);
            let (a, b) = operands.views();
            assert_eq!(turns_around(a, b), small_gemm::Kernel::best().is_some());
            gemm_and_gemm_par_match_matrixmultiply(a, b, &pool, &mut rng);
        }
        // Few rows (the unpacked kernel as given wins), a short `W`, or one
        // small enough to copy: as given.
        for (m, k, n) in [(8, 128, 192), (32, 128, 63), (32, 48, 192)] {
            let operands = Operands::new((m, k, n), false, true, &mut rng);
            let (a, b) = operands.views();
            assert!(!turns_around(a, b), "{m}x{k}x{n}");
        }
    }

    #[test]
    fn transpose_matches_the_definition() {
        let mut rng = Rng::seed(5);
        for (rows, cols) in [
            (1, 1),
            (8, 8),
            (16, 24),
            (13, 37),
            (128, 192),
            (7, 9),
            // Output rows 1 KB or 2 KB apart: eight rows at a time.
            (32, 256),
            (37, 512),
        ] {
            let d = values(rows * cols, &mut rng);
            for b in [
                MatRef::row_major(&d, cols, rows).t(),
                MatRef::row_major(&d, rows, cols),
            ] {
                let mut out = vec![0.0; rows * cols];
                transpose_into(b, &mut out);
                for p in 0..rows {
                    for j in 0..cols {
                        assert_eq!(out[p * cols + j], b.data[p * b.rs + j * b.cs]);
                    }
                }
            }
        }
    }

    /// Splitting rows across threads gives the same values as one product
    /// (here the whole on matrixmultiply, the parts on the unpacked kernel).
    #[test]
    fn row_split_matches_whole() {
        let mut rng = Rng::seed(3);
        let (m, k, n) = (48, 70, 40);
        let ad = values(m * k, &mut rng);
        let bd = values(k * n, &mut rng);
        let (a, b) = (MatRef::row_major(&ad, m, k), MatRef::row_major(&bd, k, n));
        let mut whole = vec![0.0; m * n];
        gemm(1.0, a, b, 0.0, &mut whole);
        let mut parts = vec![0.0; m * n];
        for (i, chunk) in parts.chunks_mut(SMALL_M * n).enumerate() {
            let rows = chunk.len() / n;
            let sub = MatRef {
                data: &ad[i * SMALL_M * k..],
                rows,
                cols: k,
                rs: k,
                cs: 1,
            };
            gemm(1.0, sub, b, 0.0, chunk);
        }
        assert_eq!(whole, parts);
    }
}
