//! Matrix products through cuBLAS on row-major matrices, as
//! [`crate::cpu::gemm`]: a [`GpuMat`] is a row-major matrix in a device
//! buffer, read transposed after [`GpuMat::t`].
//!
//! cuBLAS is column-major; a row-major matrix is the column-major storage of
//! its transpose, so C = A·B is computed as Cᵀ = Bᵀ·Aᵀ with the operands swapped.

use super::device::CudaDevice;
use super::pool::DeviceBuffer;
use crate::error::{Error, Result};
use cudarc::cublas::result;
use cudarc::cublas::sys::cublasOperation_t;
use std::ffi::c_int;

/// A `rows x cols` matrix read from a device buffer starting at `offset`:
/// stored row-major, or, when transposed, the transpose of a row-major
/// `cols x rows` matrix.
#[derive(Clone, Copy, Debug)]
pub struct GpuMat<'a> {
    buf: &'a DeviceBuffer<f32>,
    offset: usize,
    rows: usize,
    cols: usize,
    transposed: bool,
}

impl<'a> GpuMat<'a> {
    /// The row-major `rows x cols` matrix at the start of `buf`.
    pub fn row_major(buf: &'a DeviceBuffer<f32>, rows: usize, cols: usize) -> Self {
        GpuMat::at(buf, 0, rows, cols)
    }

    /// The row-major `rows x cols` matrix starting at value `offset` of `buf`.
    pub fn at(buf: &'a DeviceBuffer<f32>, offset: usize, rows: usize, cols: usize) -> Self {
        GpuMat {
            buf,
            offset,
            rows,
            cols,
            transposed: false,
        }
    }

    /// The transpose (no data moves).
    pub fn t(self) -> Self {
        GpuMat {
            rows: self.cols,
            cols: self.rows,
            transposed: !self.transposed,
            ..self
        }
    }

    /// Values per stored row.
    fn ld(&self) -> usize {
        if self.transposed {
            self.rows
        } else {
            self.cols
        }
    }

    fn op(&self) -> cublasOperation_t {
        if self.transposed {
            cublasOperation_t::CUBLAS_OP_T
        } else {
            cublasOperation_t::CUBLAS_OP_N
        }
    }

    /// Checks that `count` matrices `stride` values apart fit the buffer.
    fn check(&self, what: &str, count: usize, stride: usize) -> Result<()> {
        let size = self.rows * self.cols;
        let end = self.offset + stride * count.saturating_sub(1) + size;
        if size > 0 && end > self.buf.len() {
            return Err(Error::shape(
                "cuda::gemm",
                format!(
                    "{what} ({} x {}, {count} at stride {stride} from {}) overruns a buffer of {}",
                    self.rows,
                    self.cols,
                    self.offset,
                    self.buf.len()
                ),
            ));
        }
        Ok(())
    }
}

fn dim(n: usize) -> Result<c_int> {
    c_int::try_from(n).map_err(|_| Error::shape("cuda::gemm", format!("{n} exceeds cuBLAS's int")))
}

/// `c = alpha·a·b + beta·c` for `a` (m x k), `b` (k x n) and `c` the
/// row-major m x n matrix at the start of `c`. With `beta` = 0, `c` is
/// overwritten (its values are not read).
pub fn gemm(
    dev: &CudaDevice,
    alpha: f32,
    a: GpuMat,
    b: GpuMat,
    beta: f32,
    c: &mut DeviceBuffer<f32>,
) -> Result<()> {
    gemm_strided_batched(dev, alpha, (a, 0), (b, 0), beta, (c, 0, 0), 1)
}

/// `count` products `c_i = alpha·a_i·b_i + beta·c_i`, where `a_i` is `a`
/// moved `i·stride_a` values on (likewise `b_i`, and `c_i` starts at
/// `c_offset + i·stride_c`); a stride of 0 uses one matrix for every product.
pub fn gemm_strided_batched(
    dev: &CudaDevice,
    alpha: f32,
    (a, stride_a): (GpuMat, usize),
    (b, stride_b): (GpuMat, usize),
    beta: f32,
    (c, c_offset, stride_c): (&mut DeviceBuffer<f32>, usize, usize),
    count: usize,
) -> Result<()> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if b.rows != k {
        return Err(Error::shape(
            "cuda::gemm",
            format!("cannot multiply {m} x {k} by {} x {n}", b.rows),
        ));
    }
    a.check("a", count, stride_a)?;
    b.check("b", count, stride_b)?;
    let c_end = c_offset + stride_c * count.saturating_sub(1) + m * n;
    if m * n > 0 && c_end > c.len() {
        return Err(Error::shape(
            "cuda::gemm",
            format!("c ({m} x {n}, {count} at stride {stride_c} from {c_offset}) overruns a buffer of {}", c.len()),
        ));
    }
    if m == 0 || n == 0 || count == 0 {
        return Ok(());
    }
    let a_ptr = a.buf.ptr_at(a.offset) as *const f32;
    let b_ptr = b.buf.ptr_at(b.offset) as *const f32;
    let c_ptr = (c.ptr_mut() + (c_offset * std::mem::size_of::<f32>()) as u64) as *mut f32;
    // Column-major Cᵀ (n x m) = Bᵀ (n x k) · Aᵀ (k x m).
    let (mc, nc, kc, count_c) = (dim(m)?, dim(n)?, dim(k)?, dim(count)?);
    let (lda, ldb) = (dim(a.ld().max(1))?, dim(b.ld().max(1))?);
    // SAFETY: the handle is live, the pointers address buffers checked above
    // to hold every matrix, and alpha and beta are host values (the default
    // pointer mode).
    dev.with_blas(|blas| unsafe {
        result::sgemm_strided_batched(
            *blas.handle(),
            b.op(),
            a.op(),
            nc,
            mc,
            kc,
            &alpha,
            b_ptr,
            ldb,
            stride_b as i64,
            a_ptr,
            lda,
            stride_a as i64,
            &beta,
            c_ptr,
            nc,
            stride_c as i64,
            count_c,
        )
    })?
    .map_err(|e| {
        Error::Device(format!(
            "cuBLAS sgemm ({m} x {k} by {k} x {n}, {count}): {e}"
        ))
    })
}
