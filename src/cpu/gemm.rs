//! Single-precision GEMM on the CPU through `matrixmultiply::sgemm`.
//!
//! Matrices are described by a pointer-free view: a slice, its row stride and
//! its column stride, so transposes cost nothing.

use rayon::prelude::*;

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
    // SAFETY: the views were bounds-checked above and `c` holds m*n values;
    // matrixmultiply reads a and b and writes c within those bounds only.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.data.as_ptr(),
            a.rs as isize,
            a.cs as isize,
            b.data.as_ptr(),
            b.rs as isize,
            b.cs as isize,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// [`gemm`] with the rows of `a` and `c` split across rayon threads. Each
/// output row is computed by exactly one thread in the same order as the
/// serial version: the result does not depend on the thread count.
pub fn gemm_par(alpha: f32, a: MatRef, b: MatRef, beta: f32, c: &mut [f32]) {
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
