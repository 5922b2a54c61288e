//! 2-D batch normalisation on the GPU (`kernels/batchnorm.cu`) over
//! (n, c, plane) with `plane = h·w`, as `cpu::batchnorm2d` and the
//! statistics handling of `ops::batchnorm2d`. Channel sums run in f64.

use super::device::CudaDevice;
use super::launch::{expect_len, for_elements, for_rows, int, launch};
use super::nvrtc::BATCHNORM;
use super::pool::DeviceBuffer;
use crate::error::Result;

type Buf = DeviceBuffer<f32>;

/// The per-channel statistics a normalisation uses.
#[derive(Debug)]
pub struct ChannelStats {
    /// Mean per channel (c).
    pub mean: Buf,
    /// `1 / sqrt(var + eps)` per channel (c).
    pub rstd: Buf,
}

/// Mean and biased variance of each channel of `x` (n, c, plane), in f64:
/// `2c` values, (mean, variance) per channel, as `cpu::batchnorm2d::batch_stats`.
pub fn batch_stats(dev: &CudaDevice, x: &Buf, c: usize, plane: usize) -> Result<DeviceBuffer<f64>> {
    let mut stats = dev.zeros::<f64>(2 * c)?;
    if c == 0 || plane == 0 {
        return Ok(stats);
    }
    let n = x.len() / (c * plane);
    expect_len("cuda::batch_stats", "x", x, n * c * plane)?;
    let (xp, nn, cc, pl, sp) = (x.ptr(), int(n), int(c), int(plane), stats.ptr_mut());
    launch!(
        dev,
        BATCHNORM,
        "bn_batch_stats",
        for_rows(c, n * plane),
        xp,
        nn,
        cc,
        pl,
        sp
    )?;
    Ok(stats)
}

/// The statistics `ops::batchnorm2d` normalises with. In training, from the
/// batch `stats` of [`batch_stats`] over `count` values per channel, and the
/// running statistics (c each) move towards them with `momentum` (the
/// variance unbiased by `count / (count - 1)`); in evaluation (`stats` is
/// `None`), from the running statistics, left unchanged.
pub fn prepare_stats(
    dev: &CudaDevice,
    stats: Option<&DeviceBuffer<f64>>,
    running_mean: &mut Buf,
    running_var: &mut Buf,
    (eps, momentum): (f32, f32),
    count: usize,
) -> Result<ChannelStats> {
    let c = running_mean.len();
    expect_len("cuda::prepare_stats", "running_var", running_var, c)?;
    let sp = match stats {
        Some(s) => {
            expect_len("cuda::prepare_stats", "stats", s, 2 * c)?;
            s.ptr()
        }
        None => 0,
    };
    let unbias = count as f64 / (count.max(2) - 1) as f64;
    let running = (running_mean.ptr_mut(), running_var.ptr_mut());
    launch_prepare(
        dev,
        c,
        sp,
        running,
        eps,
        (momentum, unbias, stats.is_some()),
    )
}

/// The statistics evaluation mode normalises with, from the running
/// statistics `running_mean` and `running_var` (c each), which are only
/// read: the mean as it is and `1 / sqrt(var + eps)` in f64, as
/// [`prepare_stats`] without batch statistics (which needs them writable).
pub fn running_stats(
    dev: &CudaDevice,
    running_mean: &Buf,
    running_var: &Buf,
    eps: f32,
) -> Result<ChannelStats> {
    let c = running_mean.len();
    expect_len("cuda::running_stats", "running_var", running_var, c)?;
    // Without `training`, bn_prepare reads the running statistics and never
    // writes them, nor reads the batch statistics (a null pointer here).
    let running = (running_mean.ptr(), running_var.ptr());
    launch_prepare(dev, c, 0, running, eps, (0.0, 1.0, false))
}

/// Runs `bn_prepare` over `c` channels: batch statistics at `sp` (0 for
/// none), running mean and variance at `running`, and, when `training`,
/// the running update with `momentum` and the variance factor `unbias`.
fn launch_prepare(
    dev: &CudaDevice,
    c: usize,
    sp: u64,
    (rm, rv): (u64, u64),
    eps: f32,
    (momentum, unbias, training): (f32, f64, bool),
) -> Result<ChannelStats> {
    let mut mean = dev.alloc(c)?;
    let mut rstd = dev.alloc(c)?;
    if c == 0 {
        return Ok(ChannelStats { mean, rstd });
    }
    let (cc, eps, training) = (int(c), eps as f64, i32::from(training));
    let (mp, rp) = (mean.ptr_mut(), rstd.ptr_mut());
    launch!(
        dev,
        BATCHNORM,
        "bn_prepare",
        for_elements(c),
        sp,
        rm,
        rv,
        cc,
        eps,
        momentum,
        unbias,
        training,
        mp,
        rp
    )?;
    Ok(ChannelStats { mean, rstd })
}

#[allow(clippy::too_many_arguments)]
fn affine(
    dev: &CudaDevice,
    x: u64,
    y: u64,
    len: usize,
    (c, plane): (usize, usize),
    s: &ChannelStats,
    gamma: &Buf,
    beta: &Buf,
    relu: i32,
) -> Result<()> {
    const OP: &str = "cuda::batchnorm2d_forward";
    for (what, b) in [
        ("mean", &s.mean),
        ("rstd", &s.rstd),
        ("gamma", gamma),
        ("beta", beta),
    ] {
        expect_len(OP, what, b, c)?;
    }
    if c == 0 || plane == 0 || len == 0 {
        return Ok(());
    }
    let (mp, rp, gp, bp, cc, pl, total) = (
        s.mean.ptr(),
        s.rstd.ptr(),
        gamma.ptr(),
        beta.ptr(),
        int(c),
        int(plane),
        int(len),
    );
    launch!(
        dev,
        BATCHNORM,
        "bn_forward",
        for_elements(len),
        x,
        mp,
        rp,
        gp,
        bp,
        cc,
        pl,
        relu,
        y,
        total
    )
}

/// `y = (x - mean) · rstd · gamma + beta` per channel of `x` (n, c, plane),
/// as `cpu::batchnorm2d::batchnorm2d_forward`.
pub fn batchnorm2d_forward(
    dev: &CudaDevice,
    x: &Buf,
    c: usize,
    plane: usize,
    s: &ChannelStats,
    gamma: &Buf,
    beta: &Buf,
) -> Result<Buf> {
    if c == 0 || plane == 0 {
        return dev.zeros(x.len());
    }
    let mut y = dev.alloc(x.len())?;
    affine(
        dev,
        x.ptr(),
        y.ptr_mut(),
        x.len(),
        (c, plane),
        s,
        gamma,
        beta,
        0,
    )?;
    Ok(y)
}

/// Evaluation-mode BatchNorm then ReLU, in place on `y` (n, c, plane), as
/// `cpu::batchnorm2d::batchnorm2d_relu_inplace`.
pub fn batchnorm2d_relu_inplace(
    dev: &CudaDevice,
    y: &mut Buf,
    c: usize,
    plane: usize,
    s: &ChannelStats,
    gamma: &Buf,
    beta: &Buf,
) -> Result<()> {
    let p = y.ptr_mut();
    affine(dev, p, p, y.len(), (c, plane), s, gamma, beta, 1)
}

/// Gradients of [`batchnorm2d_forward`] from `dy`, as
/// `cpu::batchnorm2d::batchnorm2d_backward`: `dgamma` and `dbeta` (c) are
/// overwritten; `dx` is returned when `want_dx`, carrying the derivatives of
/// the statistics when they came from the batch (`batch_stats`).
#[allow(clippy::too_many_arguments)]
pub fn batchnorm2d_backward(
    dev: &CudaDevice,
    dy: &Buf,
    x: &Buf,
    (c, plane): (usize, usize),
    s: &ChannelStats,
    gamma: &Buf,
    batch_stats: bool,
    want_dx: bool,
    dgamma: &mut Buf,
    dbeta: &mut Buf,
) -> Result<Option<Buf>> {
    const OP: &str = "cuda::batchnorm2d_backward";
    if c == 0 || plane == 0 {
        return if want_dx {
            dev.zeros(x.len()).map(Some)
        } else {
            Ok(None)
        };
    }
    let n = x.len() / (c * plane);
    expect_len(OP, "x", x, n * c * plane)?;
    expect_len(OP, "dy", dy, x.len())?;
    for (what, b) in [("mean", &s.mean), ("rstd", &s.rstd), ("gamma", gamma)] {
        expect_len(OP, what, b, c)?;
    }
    expect_len(OP, "dgamma", dgamma, c)?;
    expect_len(OP, "dbeta", dbeta, c)?;
    let mut sums = dev.alloc::<f64>(2 * c)?;
    let (dyp, xp, mp, rp, nn, cc, pl) = (
        dy.ptr(),
        x.ptr(),
        s.mean.ptr(),
        s.rstd.ptr(),
        int(n),
        int(c),
        int(plane),
    );
    let (sp, dgp, dbp) = (sums.ptr_mut(), dgamma.ptr_mut(), dbeta.ptr_mut());
    launch!(
        dev,
        BATCHNORM,
        "bn_grad_sums",
        for_rows(c, n * plane),
        dyp,
        xp,
        mp,
        rp,
        nn,
        cc,
        pl,
        sp,
        dgp,
        dbp
    )?;
    if !want_dx {
        return Ok(None);
    }
    let mut dx = dev.alloc(x.len())?;
    if x.is_empty() {
        return Ok(Some(dx));
    }
    let (gp, count, batch, dxp, total) = (
        gamma.ptr(),
        (n * plane) as f32,
        i32::from(batch_stats),
        dx.ptr_mut(),
        int(x.len()),
    );
    launch!(
        dev,
        BATCHNORM,
        "bn_backward_dx",
        for_elements(x.len()),
        dyp,
        xp,
        mp,
        rp,
        gp,
        sp,
        cc,
        pl,
        count,
        batch,
        dxp,
        total
    )?;
    Ok(Some(dx))
}
