//! 2-D convolution on the GPU (`kernels/conv.cu` and cuBLAS): im2col + GEMM
//! forward, GEMM + col2im backward, with the semantics and layouts of
//! `cpu::conv2d`: images (n, c, h, w), weights (o, c, kh, kw), outputs
//! (n, o, ho, wo), im2col matrices of `c·kh·kw` rows and `ho·wo` columns.
//! The im2col matrices of the whole batch are built at once, in buffers
//! from the device's cache.

use super::device::CudaDevice;
use super::gemm::{gemm, gemm_strided_batched, GpuMat};
use super::launch::{expect_len, for_elements, geom, int, launch};
use super::layout::permute;
use super::nvrtc::CONV;
use super::pool::DeviceBuffer;
use super::reduce::reduce_sum_to_into;
use crate::cpu::conv2d::ConvGeom;
use crate::error::{Error, Result};
use crate::tensor::Shape;

type Buf = DeviceBuffer<f32>;

/// The im2col matrices of `n` samples of `x`, sample i at
/// `i * sample_stride`, row r at `+ r * row_stride`.
fn im2col_strided(
    dev: &CudaDevice,
    x: &Buf,
    g: &ConvGeom,
    n: usize,
    (sample_stride, row_stride): (usize, usize),
) -> Result<Buf> {
    expect_len("cuda::im2col", "x", x, n * g.in_len())?;
    let total = n * g.col_rows() * g.col_cols();
    let mut col = dev.alloc(total)?;
    if total == 0 {
        return Ok(col);
    }
    let (xp, gg, nn, cp, ss, rs) = (
        x.ptr(),
        geom(g),
        int(n),
        col.ptr_mut(),
        int(sample_stride),
        int(row_stride),
    );
    launch!(
        dev,
        CONV,
        "im2col",
        for_elements(total),
        xp,
        gg,
        nn,
        cp,
        ss,
        rs
    )?;
    Ok(col)
}

/// The im2col matrices of the `n` samples of `x` (n, c, h, w), one after
/// the other: (n, c·kh·kw, ho·wo), as `cpu::conv2d::im2col` per sample.
pub fn im2col(dev: &CudaDevice, x: &Buf, g: &ConvGeom, n: usize) -> Result<Buf> {
    im2col_strided(dev, x, g, n, (g.col_rows() * g.col_cols(), g.col_cols()))
}

fn col2im_into(dev: &CudaDevice, col: &Buf, g: &ConvGeom, n: usize, dx: &mut Buf) -> Result<()> {
    expect_len("cuda::col2im", "col", col, n * g.col_rows() * g.col_cols())?;
    expect_len("cuda::col2im", "dx", dx, n * g.in_len())?;
    if dx.is_empty() {
        return Ok(());
    }
    let (cp, gg, nn, dp) = (col.ptr(), geom(g), int(n), dx.ptr_mut());
    let (ss, rs) = (int(g.col_rows() * g.col_cols()), int(g.col_cols()));
    launch!(
        dev,
        CONV,
        "col2im",
        for_elements(dx.len()),
        cp,
        gg,
        nn,
        dp,
        ss,
        rs
    )
}

/// The adjoint of [`im2col`]: the (n, c, h, w) sums of the entries of `col`
/// over the input values they were read from (`cpu::conv2d::col2im_add` into zeros).
pub fn col2im(dev: &CudaDevice, col: &Buf, g: &ConvGeom, n: usize) -> Result<Buf> {
    let mut dx = dev.alloc(n * g.in_len())?;
    col2im_into(dev, col, g, n, &mut dx)?;
    Ok(dx)
}

/// The number of samples in an output of `len` values, checked against `x`.
fn samples(op: &'static str, len: usize, per_sample: usize) -> Result<usize> {
    if per_sample == 0 || !len.is_multiple_of(per_sample) {
        return Err(Error::shape(
            op,
            format!("{len} values are not whole samples of {per_sample}"),
        ));
    }
    Ok(len / per_sample)
}

/// Forward convolution of `x` (n, c, h, w) with `weight` (o, c, kh, kw) and
/// an optional `bias` (o) into `y` (n, o, ho, wo), as `cpu::conv2d::conv2d_forward`.
pub fn conv2d_forward(
    dev: &CudaDevice,
    x: &Buf,
    g: &ConvGeom,
    weight: &Buf,
    o: usize,
    bias: Option<&Buf>,
    y: &mut Buf,
) -> Result<()> {
    const OP: &str = "cuda::conv2d_forward";
    let (ck, ncols) = (g.col_rows(), g.col_cols());
    if o * ncols == 0 || y.is_empty() {
        return Ok(());
    }
    let n = samples(OP, y.len(), o * ncols)?;
    expect_len(OP, "x", x, n * g.in_len())?;
    expect_len(OP, "weight", weight, o * ck)?;
    let beta = match bias {
        Some(b) => {
            expect_len(OP, "bias", b, o)?;
            let (bp, oo, plane, yp, total) =
                (b.ptr(), int(o), int(ncols), y.ptr_mut(), int(y.len()));
            launch!(
                dev,
                CONV,
                "fill_planes",
                for_elements(y.len()),
                bp,
                oo,
                plane,
                yp,
                total
            )?;
            1.0
        }
        None => 0.0,
    };
    let w = GpuMat::row_major(weight, o, ck);
    let col;
    let b_src = if g.is_pointwise() {
        x
    } else {
        col = im2col(dev, x, g, n)?;
        &col
    };
    let b = GpuMat::row_major(b_src, ck, ncols);
    gemm_strided_batched(
        dev,
        1.0,
        (w, 0),
        (b, ck * ncols),
        beta,
        (y, 0, o * ncols),
        n,
    )
}

/// Gradient of the input: `dx_i = col2im(Wᵀ · dy_i)`, with `dy` (n, o, ho,
/// wo), `weight` (o, c, kh, kw); `dx` (n, c, h, w) is overwritten.
pub fn conv2d_backward_input(
    dev: &CudaDevice,
    dy: &Buf,
    g: &ConvGeom,
    weight: &Buf,
    o: usize,
    dx: &mut Buf,
) -> Result<()> {
    const OP: &str = "cuda::conv2d_backward_input";
    let (ck, ncols) = (g.col_rows(), g.col_cols());
    if g.in_len() == 0 || dx.is_empty() {
        return Ok(());
    }
    let n = samples(OP, dx.len(), g.in_len())?;
    expect_len(OP, "dy", dy, n * o * ncols)?;
    expect_len(OP, "weight", weight, o * ck)?;
    let wt = GpuMat::row_major(weight, o, ck).t();
    let dym = GpuMat::row_major(dy, o, ncols);
    if g.is_pointwise() {
        return gemm_strided_batched(
            dev,
            1.0,
            (wt, 0),
            (dym, o * ncols),
            0.0,
            (dx, 0, ck * ncols),
            n,
        );
    }
    let mut dcol = dev.alloc(n * ck * ncols)?;
    gemm_strided_batched(
        dev,
        1.0,
        (wt, 0),
        (dym, o * ncols),
        0.0,
        (&mut dcol, 0, ck * ncols),
        n,
    )?;
    col2im_into(dev, &dcol, g, n, dx)
}

/// Gradient of the weight: `dW = Σ_i dy_i · col_iᵀ` as one product over the
/// batch, with the im2col matrices of `x` (n, c, h, w) laid side by side;
/// `dw` (o, c, kh, kw) is overwritten.
pub fn conv2d_backward_weight(
    dev: &CudaDevice,
    dy: &Buf,
    x: &Buf,
    g: &ConvGeom,
    o: usize,
    dw: &mut Buf,
) -> Result<()> {
    const OP: &str = "cuda::conv2d_backward_weight";
    let (ck, ncols) = (g.col_rows(), g.col_cols());
    expect_len(OP, "dw", dw, o * ck)?;
    if dw.is_empty() {
        return Ok(());
    }
    let n = if g.in_len() == 0 {
        0
    } else {
        samples(OP, x.len(), g.in_len())?
    };
    expect_len(OP, "dy", dy, n * o * ncols)?;
    if n * ncols == 0 {
        dw.zero()?;
        return Ok(());
    }
    // (c·kh·kw, n·ho·wo): sample i's columns at i·ho·wo of every row.
    let cols = im2col_strided(dev, x, g, n, (ncols, n * ncols))?;
    // dy as (o, n·ho·wo).
    let dyp = permute(dev, dy, &Shape::new(&[n, o, ncols])?, &[1, 0, 2])?;
    gemm(
        dev,
        1.0,
        GpuMat::row_major(&dyp, o, n * ncols),
        GpuMat::row_major(&cols, ck, n * ncols).t(),
        0.0,
        dw,
    )
}

/// Gradient of the bias: the sum of `dy` (n, o, plane) over samples and
/// positions, into `db` (o).
pub fn conv2d_backward_bias(
    dev: &CudaDevice,
    dy: &Buf,
    o: usize,
    plane: usize,
    db: &mut Buf,
) -> Result<()> {
    expect_len("cuda::conv2d_backward_bias", "db", db, o)?;
    if o * plane == 0 {
        return db.zero();
    }
    let n = samples("cuda::conv2d_backward_bias", dy.len(), o * plane)?;
    reduce_sum_to_into(
        dev,
        dy,
        &Shape::new(&[n, o, plane])?,
        &Shape::new(&[1, o, 1])?,
        db,
    )
}
