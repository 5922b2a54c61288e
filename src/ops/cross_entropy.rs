//! Cross-entropy from logits with label smoothing, as torch.nn.CrossEntropyLoss.

use super::Reduction;
use crate::autograd::Tape;
use crate::cpu::softmax::log_softmax;
use crate::error::{Error, Result};
use crate::tensor::{Shape, Tensor};

/// Cross-entropy of `logits` (…, K) against class indices `targets` (one per
/// row), with label smoothing ε (Szegedy et al. 2016): the target distribution
/// is (1-ε)·onehot + ε/K, so the loss of a row is
/// `-(1-ε)·log p_y - (ε/K)·Σ_k log p_k`. `Mean` averages over rows.
pub fn cross_entropy(
    tape: &mut Tape,
    logits: &Tensor,
    targets: &[usize],
    label_smoothing: f32,
    reduction: Reduction,
) -> Result<Tensor> {
    let k = match logits.dims().last() {
        Some(&k) if k > 0 => k,
        _ => {
            return Err(Error::shape(
                "cross_entropy",
                format!("logits need a class axis, got {:?}", logits.shape()),
            ))
        }
    };
    let rows = logits.numel() / k;
    if targets.len() != rows {
        return Err(Error::shape(
            "cross_entropy",
            format!(
                "{} targets for {rows} rows of logits {:?}",
                targets.len(),
                logits.shape()
            ),
        ));
    }
    if let Some(&bad) = targets.iter().find(|&&t| t >= k) {
        return Err(Error::invalid(
            "cross_entropy",
            format!("target class {bad} is not below the {k} classes"),
        ));
    }
    if !(0.0..=1.0).contains(&label_smoothing) {
        return Err(Error::invalid(
            "cross_entropy",
            format!("label smoothing {label_smoothing} is outside [0, 1]"),
        ));
    }
    let eps = label_smoothing;
    #[cfg(feature = "cuda")]
    if let Some(dev) = crate::tensor::cuda_device_of("cross_entropy", &[logits])? {
        return gpu::cross_entropy(tape, &dev, logits, targets, k, eps, reduction);
    }
    let lp = log_softmax(logits.data(), k, 1.0);
    let per_row: Vec<f32> = lp
        .chunks_exact(k)
        .zip(targets)
        .map(|(row, &y)| {
            let smooth: f32 = row.iter().sum::<f32>() / k as f32;
            -(1.0 - eps) * row[y] - eps * smooth
        })
        .collect();
    let value = reduce_rows(&per_row, logits, reduction)?;
    let targets = targets.to_vec();
    let shape = *logits.shape();
    Ok(tape.record("cross_entropy", value, &[logits], move |g, _| {
        let mut grad = vec![0.0; lp.len()];
        for (r, (row, &y)) in lp.chunks_exact(k).zip(&targets).enumerate() {
            let scale = row_scale(g, r, rows, reduction);
            let out = &mut grad[r * k..(r + 1) * k];
            for (c, (o, &l)) in out.iter_mut().zip(row).enumerate() {
                let target = eps / k as f32 + if c == y { 1.0 - eps } else { 0.0 };
                *o = (l.exp() - target) * scale;
            }
        }
        Ok(vec![Some(Tensor::from_shape_vec(shape, grad))])
    }))
}

/// Applies a reduction to one loss per row of `input` (rows = all but the last axis).
pub(crate) fn reduce_rows(per_row: &[f32], input: &Tensor, reduction: Reduction) -> Result<Tensor> {
    let dims = input.dims();
    let row_shape = Shape::new(&dims[..dims.len().saturating_sub(1)])?;
    let value = match reduction {
        Reduction::None => Tensor::from_shape_vec(row_shape, per_row.to_vec()),
        Reduction::Sum => Tensor::scalar(per_row.iter().sum()),
        Reduction::Mean => {
            Tensor::scalar(per_row.iter().sum::<f32>() / per_row.len().max(1) as f32)
        }
    };
    Ok(value)
}

/// The factor by which row `r`'s gradient is scaled, given the gradient `g` of the reduced loss.
pub(crate) fn row_scale(g: &Tensor, r: usize, rows: usize, reduction: Reduction) -> f32 {
    match reduction {
        Reduction::None => g.data()[r],
        Reduction::Sum => g.data()[0],
        Reduction::Mean => g.data()[0] / rows.max(1) as f32,
    }
}

/// The GPU path of the losses: cross-entropy here, and the reduction of
/// per-row (or per-value) losses that `kl_div` and `mse_loss` share.
#[cfg(feature = "cuda")]
pub(crate) mod gpu {
    use super::Reduction;
    use crate::autograd::Tape;
    use crate::cuda::elementwise::{unary_in_place, Unary};
    use crate::cuda::loss::{cross_entropy_backward, cross_entropy_rows, Upstream};
    use crate::cuda::{reduce, softmax, CudaDevice, DeviceBuffer};
    use crate::error::Result;
    use crate::tensor::{Shape, Tensor};
    use std::sync::Arc;

    /// `values` (one loss per item, `none_shape` as a tensor) reduced as
    /// `reduction` says, as `reduce_rows` and `mse_loss` do on the CPU: kept
    /// as they are, summed, or summed and divided by the item count.
    pub(crate) fn reduce_items(
        dev: &Arc<CudaDevice>,
        values: DeviceBuffer<f32>,
        none_shape: Shape,
        reduction: Reduction,
    ) -> Result<Tensor> {
        let count = values.len();
        if reduction == Reduction::None {
            return Ok(Tensor::from_cuda(none_shape, dev, values));
        }
        let mut total = reduce::sum_all(dev, &values)?;
        if reduction == Reduction::Mean {
            unary_in_place(dev, Unary::Scale(1.0 / count.max(1) as f32), &mut total)?;
        }
        Ok(Tensor::from_cuda(Shape::scalar(), dev, total))
    }

    /// How the gradient of a loss reduced from `count` items reaches each item.
    pub(crate) fn upstream(reduction: Reduction, count: usize) -> Upstream {
        match reduction {
            Reduction::None => Upstream::PerItem,
            Reduction::Sum => Upstream::Shared { divisor: 1.0 },
            Reduction::Mean => Upstream::Shared {
                divisor: count.max(1) as f32,
            },
        }
    }

    /// `cross_entropy` of logits on a GPU: log-softmax, the per-row loss,
    /// the reduction; the backward pass from the kept log-probabilities.
    pub(super) fn cross_entropy(
        tape: &mut Tape,
        dev: &Arc<CudaDevice>,
        logits: &Tensor,
        targets: &[usize],
        k: usize,
        eps: f32,
        reduction: Reduction,
    ) -> Result<Tensor> {
        const OP: &str = "cross_entropy";
        let lp = softmax::log_softmax(dev, logits.cuda_buffer(OP)?, k, 1.0)?;
        let per_row = cross_entropy_rows(dev, &lp, targets, k, eps)?;
        let rows = per_row.len();
        let dims = logits.dims();
        let row_shape = Shape::new(&dims[..dims.len().saturating_sub(1)])?;
        let value = reduce_items(dev, per_row, row_shape, reduction)?;
        let (targets, shape, dev) = (targets.to_vec(), *logits.shape(), dev.clone());
        let up = upstream(reduction, rows);
        Ok(tape.record(OP, value, &[logits], move |g, _| {
            let grad = cross_entropy_backward(&dev, &lp, &targets, k, eps, g.cuda_buffer(OP)?, up)?;
            Ok(vec![Some(Tensor::from_cuda(shape, &dev, grad))])
        }))
    }
}
