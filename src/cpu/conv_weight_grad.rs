//! The weight gradient of a stride-1 convolution without an im2col matrix.
//!
//! For one sample, `dW += dy · colᵀ` (o x taps, summed over the output
//! positions). Here it is computed transposed, `dWᵀ += col · dyᵀ`, on the
//! tile of [`super::small_gemm_avx512`]: the rows of `col` (one per tap)
//! are the zero-padded input shifted by the tap's offset, copied into each
//! row tile's panel straight from the padded planes (`ShiftedRows`), and
//! `dyᵀ` (positions x o, a copy of this sample's `dy`) is the right-hand
//! side, its rows read in place. im2col, and the packing of its transpose
//! that the `dy · colᵀ` product needs, both go away.
//!
//! Every value is the same chain of operations as `dy · colᵀ` on
//! `matrixmultiply` (FMAs over the positions from zero in blocks of 256,
//! then added to the sum so far), so the two paths give the same bits.

use super::conv2d::ConvGeom;
use super::conv_direct::{pad, tap_offsets};
use super::gemm::{transpose_into, MatRef};
use super::scratch::with_scratch;
use super::small_gemm_avx512::{self as avx512, Contiguous, LeftRows, Panel, Product, Strided};
use rayon::prelude::*;
use std::cell::Cell;

thread_local! {
    /// Each thread's zero-padded input sample.
    static PADDED: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    /// Each thread's `dyᵀ` of one sample.
    static DY_T: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Whether [`weight_grad_t`] handles this geometry on this CPU: stride 1
/// and AVX-512F. (Measured against im2col and matrixmultiply, one thread,
/// batch 32: `crnn-t` b1 (9 taps) 1.65x, b2 1.45x, b3 1.18x, b4 1.52x.)
pub fn applies(g: &ConvGeom) -> bool {
    g.sh == 1 && g.sw == 1 && g.col_rows() > 0 && avx512::available()
}

/// `dwt = Σ_i col_i · dy_iᵀ` over the samples of `x` (n, c, h, w) and `dy`
/// (n, o, ho, wo), with `dwt` (taps x o) the transposed weight gradient:
/// the samples in order, each added to the sum of those before. The taps
/// are shared among rayon's threads in whole row tiles, each thread
/// padding every sample and transposing its `dy` for itself; each value is
/// computed by one thread, so the bits do not depend on how many. Panics
/// unless [`applies`].
pub fn weight_grad_t(dy: &[f32], x: &[f32], g: &ConvGeom, o: usize, dwt: &mut [f32]) {
    assert!(
        applies(g),
        "conv_weight_grad: geometry or CPU not supported"
    );
    let (taps, positions, in_len) = (g.col_rows(), g.ho * g.wo, g.in_len());
    assert!(in_len > 0 && o > 0 && positions > 0);
    let n = x.len() / in_len;
    assert!(dy.len() >= n * o * positions && dwt.len() >= taps * o);
    let (rows, cols) = (g.h + 2 * g.ph, g.w + 2 * g.pw);
    let offsets: Vec<usize> = tap_offsets(g, rows, cols).collect();
    let threads = rayon::current_num_threads();
    // Whole row tiles of 8 taps per thread, unless there are few taps.
    let per_thread = match taps.div_ceil(threads) {
        few @ 0..=8 => few,
        many => many.div_ceil(8) * 8,
    };
    let run = |t0: usize, part: &mut [f32]| {
        let t1 = (t0 + part.len() / o).min(taps);
        with_scratch(&PADDED, g.c * rows * cols, |padded| {
            with_scratch(&DY_T, positions * o, |dyt| {
                for i in 0..n {
                    pad(&x[i * in_len..(i + 1) * in_len], g, padded, rows, cols);
                    let dyi = &dy[i * o * positions..(i + 1) * o * positions];
                    transpose_into(MatRef::row_major(dyi, o, positions).t(), dyt);
                    let product = Product {
                        m: t1 - t0,
                        k: positions,
                        alpha: 1.0,
                        a: ShiftedRows {
                            x: padded.as_ptr(),
                            offsets: offsets[t0..].as_ptr(),
                            wo: g.wo,
                            cols,
                        },
                        rows: Strided {
                            b: dyt.as_ptr(),
                            rsb: o,
                        },
                        beta: if i == 0 { 0.0 } else { 1.0 },
                        c: part.as_mut_ptr(),
                        ldc: o,
                    };
                    // SAFETY: AVX-512 is present (`applies`); tap t of
                    // position (oh, ow) reads padded[offsets[t] + oh * cols +
                    // ow], inside the padded planes since ow + kj < cols and
                    // oh + ki < rows; `dyt` holds positions x o values and
                    // `part` the rows t0..t1 of dwt (o values each).
                    unsafe { avx512::product(product, &Contiguous { n: o }) };
                }
            })
        })
    };
    let dwt = &mut dwt[..taps * o];
    if n == 0 {
        dwt.fill(0.0);
        return;
    }
    if threads <= 1 || per_thread >= taps {
        run(0, dwt);
    } else {
        dwt.par_chunks_mut(per_thread * o)
            .enumerate()
            .for_each(|(j, part)| run(j * per_thread, part));
    }
}

/// The rows of `col` for one sample: row t, step q = (oh, ow) at
/// `x + offsets[t] + oh * cols + ow`, for output rows `wo` positions wide.
#[derive(Clone, Copy)]
struct ShiftedRows {
    x: *const f32,
    offsets: *const usize,
    wo: usize,
    cols: usize,
}

impl LeftRows for ShiftedRows {
    #[inline(always)]
    unsafe fn rows_from(self, i: usize) -> Self {
        // SAFETY: the caller keeps i below m, and `offsets` holds m values.
        let offsets = unsafe { self.offsets.add(i) };
        ShiftedRows { offsets, ..self }
    }

    /// Copies the rows output row by output row, 8 positions of (up to) 8
    /// rows at a time through one 8 x 8 transpose in AVX registers.
    unsafe fn panel(self, m: usize, k: usize, scratch: &mut [f32]) -> Panel {
        debug_assert!(m <= 8 && k.is_multiple_of(self.wo) && scratch.len() >= 8 * k);
        // SAFETY: rows and steps inside `x` by the caller's contract; the
        // panel writes go below 8 * k (see `interleave`).
        unsafe {
            let starts: [*const f32; 8] =
                std::array::from_fn(|r| self.x.add(*self.offsets.add(r.min(m - 1))));
            for oh in 0..k / self.wo {
                let row = std::array::from_fn(|r| starts[r].add(oh * self.cols));
                interleave(row, m, self.wo, scratch.as_mut_ptr().add(oh * self.wo * m));
            }
        }
        Panel {
            a: scratch.as_ptr(),
            step: m,
        }
    }
}

/// Writes `len` values of each of the first `m` (up to 8) rows `rows` to
/// `out` interleaved: value j of row r at `out[j * m + r]`. Whole blocks of
/// 8 store 8 values per position, the last `8 - m` of them overwritten by
/// the next position's (so up to `8 - m` values past `len * m` are
/// clobbered; the caller's buffer has room).
///
/// # Safety
/// The CPU must have AVX2 (every AVX-512F CPU has, and [`applies`] checks
/// for AVX-512F); each row must hold `len` values; `out` must hold
/// `len * m + 8` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn interleave(rows: [*const f32; 8], m: usize, len: usize, out: *mut f32) {
    use std::arch::x86_64::*;
    let blocks = len / 8 * 8;
    // SAFETY: as the caller's contract; rows r >= m repeat row m - 1 (loads
    // in bounds), their values land in lanes that are overwritten or past
    // the end.
    unsafe {
        for j in (0..blocks).step_by(8) {
            let t =
                super::gemm::transpose8x8(std::array::from_fn(|r| _mm256_loadu_ps(rows[r].add(j))));
            for (u, v) in t.into_iter().enumerate() {
                _mm256_storeu_ps(out.add((j + u) * m), v);
            }
        }
        for j in blocks..len {
            for (r, row) in rows.iter().enumerate().take(m) {
                *out.add(j * m + r) = *row.add(j);
            }
        }
    }
}

/// Never called: [`applies`] is false off x86-64.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn interleave(_: [*const f32; 8], _: usize, _: usize, _: *mut f32) {
    unreachable!()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::conv2d::im2col;
    use crate::cpu::gemm::gemm_packed;
    use crate::rng::Rng;

    fn values(len: usize, rng: &mut Rng) -> Vec<f32> {
        (0..len).map(|_| rng.range(-1.0, 1.0)).collect()
    }

    /// `Σ_i dy_i · col_iᵀ` through im2col and matrixmultiply, then transposed.
    fn reference(dy: &[f32], x: &[f32], g: &ConvGeom, o: usize) -> Vec<f32> {
        let (taps, positions) = (g.col_rows(), g.col_cols());
        let mut dw = vec![0.0; o * taps];
        let mut col = vec![0.0; taps * positions];
        for (i, xi) in x.chunks_exact(g.in_len()).enumerate() {
            im2col(xi, g, &mut col);
            let dyi = MatRef::row_major(
                &dy[i * o * positions..(i + 1) * o * positions],
                o,
                positions,
            );
            let beta = if i == 0 { 0.0 } else { 1.0 };
            gemm_packed(
                1.0,
                dyi,
                MatRef::row_major(&col, taps, positions).t(),
                beta,
                &mut dw,
            );
        }
        let mut dwt = vec![0.0; taps * o];
        transpose_into(MatRef::row_major(&dw, o, taps).t(), &mut dwt);
        dwt
    }

    /// The same bits as im2col and matrixmultiply, over channel counts
    /// that leave ragged row tiles, widths with and without whole blocks
    /// of 8, more than 256 positions (several k blocks), paddings, one
    /// and several samples, on one thread and with the taps split among three.
    #[test]
    fn matches_im2col_and_matrixmultiply_bit_for_bit() {
        if !crate::cpu::small_gemm_avx512::available() {
            eprintln!("skipped: the CPU lacks AVX-512F");
            return;
        }
        let mut rng = Rng::seed(23);
        let mut checked = 0;
        for (c, h, w) in [(2, 5, 9), (3, 4, 16), (8, 6, 33), (5, 17, 20), (33, 3, 7)] {
            for ((kh, kw), (ph, pw)) in [((3, 3), (1, 1)), ((3, 3), (0, 0)), ((2, 5), (1, 2))] {
                let Some(g) = ConvGeom::new((c, h, w), (kh, kw), (1, 1), (ph, pw)) else {
                    continue;
                };
                if !applies(&g) {
                    continue;
                }
                for (o, n) in [(1, 1), (16, 2), (19, 3), (40, 1)] {
                    let x = values(n * g.in_len(), &mut rng);
                    let dy = values(n * o * g.col_cols(), &mut rng);
                    let want = reference(&dy, &x, &g, o);
                    for threads in [1, 3] {
                        let mut got = values(g.col_rows() * o, &mut rng);
                        let pool = rayon::ThreadPoolBuilder::new()
                            .num_threads(threads)
                            .build()
                            .unwrap();
                        pool.install(|| weight_grad_t(&dy, &x, &g, o, &mut got));
                        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                        assert_eq!(
                            bits(&want),
                            bits(&got),
                            "{g:?} o {o} n {n} threads {threads}"
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked >= 80, "only {checked} cases ran");
    }
}
