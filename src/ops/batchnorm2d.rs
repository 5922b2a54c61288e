//! 2-D batch normalisation, as `torch.nn.functional.batch_norm` on NCHW
//! input with per-channel affine parameters.
//!
//! Training normalises with the batch's statistics (biased variance) and
//! updates the running statistics in place; evaluation normalises with the
//! running statistics. The forward pass saves each channel's mean and inverse
//! standard deviation for the backward pass.

use crate::autograd::Tape;
use crate::cpu::batchnorm2d::{batch_stats, batchnorm2d_backward, batchnorm2d_forward};
use crate::error::{Error, Result};
use crate::tensor::{Shape, Tensor};

/// Running statistics and hyper-parameters of a BatchNorm2d (PyTorch
/// defaults: mean 0, var 1, momentum 0.1, eps 1e-5).
#[derive(Clone, Debug)]
pub struct RunningStats {
    /// Running mean per channel, shape (C).
    pub mean: Tensor,
    /// Running (unbiased) variance per channel, shape (C).
    pub var: Tensor,
    /// Weight of the newest batch in the running averages:
    /// `running = (1 - momentum) * running + momentum * batch`.
    pub momentum: f32,
    /// Added to the variance before its square root.
    pub eps: f32,
}

impl RunningStats {
    /// PyTorch's initial statistics for `channels` channels: mean 0, var 1,
    /// momentum 0.1, eps 1e-5.
    pub fn new(channels: usize) -> RunningStats {
        let shape = Shape::new(&[channels]).expect("a rank-1 shape is always valid");
        RunningStats {
            mean: Tensor::from_shape_vec(shape, vec![0.0; channels]),
            var: Tensor::from_shape_vec(shape, vec![1.0; channels]),
            momentum: 0.1,
            eps: 1e-5,
        }
    }
}

/// Checks the shapes of a batch norm's operands and returns (C, H*W).
fn check_shapes(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    stats: &RunningStats,
) -> Result<(usize, usize)> {
    const OP: &str = "batchnorm2d";
    x.expect_feature_maps(OP, "input")?;
    let d = x.dims();
    let c = d[1];
    for (what, t) in [
        ("gamma", gamma),
        ("beta", beta),
        ("running mean", &stats.mean),
        ("running var", &stats.var),
    ] {
        if t.dims() != [c] {
            return Err(Error::shape(
                OP,
                format!(
                    "{what} has shape {:?}, expected [{c}] for input {:?}",
                    t.shape(),
                    x.shape()
                ),
            ));
        }
    }
    if stats.eps.is_nan() || stats.eps < 0.0 {
        return Err(Error::invalid(
            OP,
            format!("eps {} must be non-negative", stats.eps),
        ));
    }
    Ok((c, d[2] * d[3]))
}

/// Checks that the running statistics live on the device of `x` (a layer
/// moves them with its parameters); an error naming `op` otherwise.
pub(crate) fn expect_stats_on_input_device(
    op: &'static str,
    x: &Tensor,
    stats: &RunningStats,
) -> Result<()> {
    for (what, t) in [("running mean", &stats.mean), ("running var", &stats.var)] {
        if t.device() != x.device() {
            return Err(Error::Device(format!(
                "{op}: the {what} is on {} but the input is on {}; move the running \
                 statistics with the layer (Tensor::moved_to)",
                t.device(),
                x.device()
            )));
        }
    }
    Ok(())
}

/// Normalises each channel of `x` (N, C, H, W), then scales by `gamma` (C)
/// and shifts by `beta` (C), as `torch.nn.BatchNorm2d`.
///
/// With `training`, the batch's mean and biased variance are used and the
/// running statistics are updated in place as PyTorch does (the running
/// variance takes the unbiased variance, `n / (n - 1)` times the biased one);
/// a channel with a single value is an error. Without, the running statistics
/// are used and left unchanged, and the backward pass is the affine map only.
pub fn batchnorm2d(
    tape: &mut Tape,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    stats: &mut RunningStats,
    training: bool,
) -> Result<Tensor> {
    batchnorm(tape, x, gamma, beta, stats, training, false)
}

/// [`batchnorm2d`] followed by a ReLU, as one op: one pass over the values
/// forward and none for the ReLU backward (the ReLU's input is recomputed
/// from `x` where the BatchNorm's backward reads it anyway). The same bits
/// as the two ops on the CPU; on a GPU it runs as the two.
pub fn batchnorm2d_relu(
    tape: &mut Tape,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    stats: &mut RunningStats,
    training: bool,
) -> Result<Tensor> {
    batchnorm(tape, x, gamma, beta, stats, training, true)
}

/// [`batchnorm2d`], with a ReLU after it when `relu`.
fn batchnorm(
    tape: &mut Tape,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    stats: &mut RunningStats,
    training: bool,
    relu: bool,
) -> Result<Tensor> {
    let (c, plane) = check_shapes(x, gamma, beta, stats)?;
    expect_stats_on_input_device("batchnorm2d", x, stats)?;
    let count = x.numel() / c;
    if training && count < 2 {
        return Err(Error::invalid(
            "batchnorm2d",
            format!(
                "training needs more than one value per channel, input {:?} has {count}",
                x.shape()
            ),
        ));
    }
    #[cfg(feature = "cuda")]
    if let Some(dev) = crate::tensor::cuda_device_of("batchnorm2d", &[x, gamma, beta])? {
        let y = gpu::batchnorm2d(tape, &dev, x, gamma, beta, stats, training, (c, plane))?;
        return if relu { super::relu(tape, &y) } else { Ok(y) };
    }
    let eps = stats.eps as f64;
    let (mean, rstd): (Vec<f32>, Vec<f32>) = if training {
        let batch = batch_stats(x.data(), c, plane);
        let m = stats.momentum;
        let unbias = count as f64 / (count - 1) as f64;
        for (r, &(mu, _)) in stats.mean.data_mut().iter_mut().zip(&batch) {
            *r = (1.0 - m) * *r + m * mu as f32;
        }
        for (r, &(_, var)) in stats.var.data_mut().iter_mut().zip(&batch) {
            *r = (1.0 - m) * *r + m * (var * unbias) as f32;
        }
        batch
            .iter()
            .map(|&(mu, var)| (mu as f32, (1.0 / (var + eps).sqrt()) as f32))
            .unzip()
    } else {
        let rstd = stats
            .var
            .data()
            .iter()
            .map(|&v| (1.0 / (v as f64 + eps).sqrt()) as f32)
            .collect();
        (stats.mean.to_vec(), rstd)
    };
    let y = batchnorm2d_forward(
        x.data(),
        c,
        plane,
        &mean,
        &rstd,
        gamma.data(),
        beta.data(),
        relu,
    );
    let y = Tensor::from_shape_vec(*x.shape(), y);
    let (x2, g2, c_shape) = (x.clone(), gamma.clone(), *gamma.shape());
    let relu_beta = relu.then(|| beta.clone());
    let name = if relu {
        "batchnorm2d_relu"
    } else {
        "batchnorm2d"
    };
    Ok(tape.record(name, y, &[x, gamma, beta], move |dy, needs| {
        let mut dgamma = vec![0.0f32; c];
        let mut dbeta = vec![0.0f32; c];
        let dx = batchnorm2d_backward(
            dy.data(),
            x2.data(),
            c,
            plane,
            &mean,
            &rstd,
            g2.data(),
            training,
            needs[0],
            relu_beta.as_ref().map(|b| b.data()),
            &mut dgamma,
            &mut dbeta,
        );
        Ok(vec![
            dx.map(|dx| Tensor::from_shape_vec(*x2.shape(), dx)),
            needs[1].then(|| Tensor::from_shape_vec(c_shape, dgamma)),
            needs[2].then(|| Tensor::from_shape_vec(c_shape, dbeta)),
        ])
    }))
}

#[cfg(feature = "cuda")]
mod gpu {
    use super::RunningStats;
    use crate::autograd::Tape;
    use crate::cuda::{batchnorm as kernels, CudaDevice, DeviceBuffer};
    use crate::error::Result;
    use crate::tensor::{CudaValues, Storage, Tensor};
    use std::sync::Arc;

    const OP: &str = "batchnorm2d";

    /// `t` (same identity and tracking) holding `buffer` on `dev` instead.
    fn replaced(t: &Tensor, dev: &Arc<CudaDevice>, buffer: DeviceBuffer<f32>) -> Tensor {
        t.with_storage(Storage::Cuda(CudaValues::new(dev.clone(), buffer)))
    }

    /// `super::batchnorm2d` on a GPU: the batch statistics and the update of
    /// the running statistics (new buffers replacing the old, as the CPU
    /// updates its values in place) or the running statistics, the affine
    /// map, and a backward pass, all on `dev`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn batchnorm2d(
        tape: &mut Tape,
        dev: &Arc<CudaDevice>,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        stats: &mut RunningStats,
        training: bool,
        (c, plane): (usize, usize),
    ) -> Result<Tensor> {
        let xb = x.cuda_buffer(OP)?;
        let (mean_b, var_b) = (stats.mean.cuda_buffer(OP)?, stats.var.cuda_buffer(OP)?);
        let s = if training {
            let batch = kernels::batch_stats(dev, xb, c, plane)?;
            let (mut mean, mut var) = (mean_b.try_clone()?, var_b.try_clone()?);
            let s = kernels::prepare_stats(
                dev,
                Some(&batch),
                &mut mean,
                &mut var,
                (stats.eps, stats.momentum),
                x.numel() / c,
            )?;
            stats.mean = replaced(&stats.mean, dev, mean);
            stats.var = replaced(&stats.var, dev, var);
            s
        } else {
            kernels::running_stats(dev, mean_b, var_b, stats.eps)?
        };
        let y = kernels::batchnorm2d_forward(
            dev,
            xb,
            c,
            plane,
            &s,
            gamma.cuda_buffer(OP)?,
            beta.cuda_buffer(OP)?,
        )?;
        let y = Tensor::from_cuda(*x.shape(), dev, y);
        let (x2, g2, c_shape, dev) = (x.clone(), gamma.clone(), *gamma.shape(), dev.clone());
        Ok(tape.record(OP, y, &[x, gamma, beta], move |dy, needs| {
            let mut dgamma = dev.zeros(c)?;
            let mut dbeta = dev.zeros(c)?;
            let dx = kernels::batchnorm2d_backward(
                &dev,
                dy.cuda_buffer(OP)?,
                x2.cuda_buffer(OP)?,
                (c, plane),
                &s,
                g2.cuda_buffer(OP)?,
                training,
                needs[0],
                &mut dgamma,
                &mut dbeta,
            )?;
            Ok(vec![
                dx.map(|dx| Tensor::from_cuda(*x2.shape(), &dev, dx)),
                needs[1].then(|| Tensor::from_cuda(c_shape, &dev, dgamma)),
                needs[2].then(|| Tensor::from_cuda(c_shape, &dev, dbeta)),
            ])
        }))
    }
}
