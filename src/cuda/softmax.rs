//! Row-wise softmax and log-softmax with a temperature on the GPU
//! (`kernels/softmax.cu`), forward and backward, as `cpu::softmax`: rows of
//! `k` values, `softmax(x / temperature)`.

use super::device::CudaDevice;
use super::launch::{expect_len, for_rows, int, launch};
use super::nvrtc::SOFTMAX;
use super::pool::DeviceBuffer;
use crate::error::{Error, Result};

type Buf = DeviceBuffer<f32>;

/// The number of rows of `k` values in `len` values (0 when `k` is 0).
fn rows_of(op: &'static str, len: usize, k: usize) -> Result<usize> {
    if k == 0 {
        return Ok(0);
    }
    if !len.is_multiple_of(k) {
        return Err(Error::shape(
            op,
            format!("{len} values are not rows of {k}"),
        ));
    }
    Ok(len / k)
}

fn forward(dev: &CudaDevice, x: &Buf, k: usize, temperature: f32, exp_out: i32) -> Result<Buf> {
    let rows = rows_of("cuda::softmax", x.len(), k)?;
    if rows == 0 {
        return dev.zeros(x.len());
    }
    let mut y = dev.alloc(x.len())?;
    let inv_t = 1.0 / temperature;
    let (xp, yp, r, kk) = (x.ptr(), y.ptr_mut(), int(rows), int(k));
    launch!(
        dev,
        SOFTMAX,
        "log_softmax_rows",
        for_rows(rows, k),
        xp,
        yp,
        r,
        kk,
        inv_t,
        exp_out
    )?;
    Ok(y)
}

/// `log_softmax(x / temperature)` of each row of `k` values.
pub fn log_softmax(dev: &CudaDevice, x: &Buf, k: usize, temperature: f32) -> Result<Buf> {
    forward(dev, x, k, temperature, 0)
}

/// `softmax(x / temperature)` of each row of `k` values (the exponential of [`log_softmax`]).
pub fn softmax(dev: &CudaDevice, x: &Buf, k: usize, temperature: f32) -> Result<Buf> {
    forward(dev, x, k, temperature, 1)
}

fn backward(
    dev: &CudaDevice,
    softmax: bool,
    y: &Buf,
    g: &Buf,
    k: usize,
    temperature: f32,
) -> Result<Buf> {
    let rows = rows_of("cuda::softmax_backward", y.len(), k)?;
    expect_len("cuda::softmax_backward", "g", g, y.len())?;
    if rows == 0 {
        return dev.zeros(y.len());
    }
    let mut dx = dev.alloc(y.len())?;
    let inv_t = 1.0 / temperature;
    let (yp, gp, dp, r, kk) = (y.ptr(), g.ptr(), dx.ptr_mut(), int(rows), int(k));
    let cfg = for_rows(rows, k);
    if softmax {
        launch!(
            dev,
            SOFTMAX,
            "softmax_backward_rows",
            cfg,
            yp,
            gp,
            dp,
            r,
            kk,
            inv_t
        )?;
    } else {
        launch!(
            dev,
            SOFTMAX,
            "log_softmax_backward_rows",
            cfg,
            yp,
            gp,
            dp,
            r,
            kk,
            inv_t
        )?;
    }
    Ok(dx)
}

/// Gradient of [`log_softmax`] from its output `y` and output gradient `g`:
/// `(g - softmax · Σg) / T`.
pub fn log_softmax_backward(
    dev: &CudaDevice,
    y: &Buf,
    g: &Buf,
    k: usize,
    temperature: f32,
) -> Result<Buf> {
    backward(dev, false, y, g, k, temperature)
}

/// Gradient of [`softmax`] from its output `y` and output gradient `g`:
/// `y · (g - Σ g·y) / T`.
pub fn softmax_backward(
    dev: &CudaDevice,
    y: &Buf,
    g: &Buf,
    k: usize,
    temperature: f32,
) -> Result<Buf> {
    backward(dev, true, y, g, k, temperature)
}
