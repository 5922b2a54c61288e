//! Kullback–Leibler divergence between distributions given as log-probabilities.

use super::cross_entropy::{reduce_rows, row_scale};
use super::Reduction;
use crate::autograd::Tape;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// `KL(p ‖ q) = Σ_k p_k (log p_k − log q_k)` over the last axis, for each row,
/// where `target_log_p` holds log p (the teacher) and `input_log_q` holds
/// log q (the student), as `F.kl_div(input, target, log_target=True)`.
/// `Mean` averages over rows (PyTorch's 'batchmean'). Gradients flow to both
/// arguments; detach the target to hold it fixed.
pub fn kl_div(
    tape: &mut Tape,
    input_log_q: &Tensor,
    target_log_p: &Tensor,
    reduction: Reduction,
) -> Result<Tensor> {
    if input_log_q.shape() != target_log_p.shape() || input_log_q.rank() == 0 {
        return Err(Error::shape(
            "kl_div",
            format!(
                "input {:?} and target {:?} must have the same shape with a class axis",
                input_log_q.shape(),
                target_log_p.shape()
            ),
        ));
    }
    let k = *input_log_q.dims().last().unwrap_or(&1);
    let rows = input_log_q.numel() / k.max(1);
    #[cfg(feature = "cuda")]
    if let Some(dev) = crate::tensor::cuda_device_of("kl_div", &[input_log_q, target_log_p])? {
        return gpu::kl_div(tape, &dev, input_log_q, target_log_p, k, reduction);
    }
    let (lq, lp) = (input_log_q.data(), target_log_p.data());
    let per_row: Vec<f32> = lq
        .chunks_exact(k.max(1))
        .zip(lp.chunks_exact(k.max(1)))
        .map(|(q, p)| q.iter().zip(p).map(|(&q, &p)| term(p, q)).sum())
        .collect();
    let value = reduce_rows(&per_row, input_log_q, reduction)?;
    let (q2, p2) = (input_log_q.clone(), target_log_p.clone());
    Ok(tape.record(
        "kl_div",
        value,
        &[input_log_q, target_log_p],
        move |g, needs| {
            let (lq, lp) = (q2.data(), p2.data());
            let per_element = |f: &dyn Fn(f32, f32) -> f32| {
                let v: Vec<f32> = (0..lq.len())
                    .map(|i| f(lp[i], lq[i]) * row_scale(g, i / k, rows, reduction))
                    .collect();
                Tensor::from_shape_vec(*q2.shape(), v)
            };
            let gq = needs[0].then(|| per_element(&|p, _| -p.exp()));
            let gp = needs[1].then(|| {
                per_element(&|p, q| {
                    let e = p.exp();
                    if e == 0.0 {
                        0.0
                    } else {
                        e * (p - q + 1.0)
                    }
                })
            });
            Ok(vec![gq, gp])
        },
    ))
}

/// One term p·(log p − log q), with the convention 0·log 0 = 0.
fn term(log_p: f32, log_q: f32) -> f32 {
    let p = log_p.exp();
    if p == 0.0 {
        0.0
    } else {
        p * (log_p - log_q)
    }
}

#[cfg(feature = "cuda")]
mod gpu {
    use super::super::cross_entropy::gpu::{reduce_items, upstream};
    use super::Reduction;
    use crate::autograd::Tape;
    use crate::cuda::kd::{kl_div_backward, kl_div_rows};
    use crate::cuda::CudaDevice;
    use crate::error::Result;
    use crate::tensor::{Shape, Tensor};
    use std::sync::Arc;

    /// `kl_div` on a GPU: the per-row divergence, the reduction, and both
    /// gradients from the kept inputs.
    pub(super) fn kl_div(
        tape: &mut Tape,
        dev: &Arc<CudaDevice>,
        input_log_q: &Tensor,
        target_log_p: &Tensor,
        k: usize,
        reduction: Reduction,
    ) -> Result<Tensor> {
        const OP: &str = "kl_div";
        let (q, p) = (input_log_q.cuda_buffer(OP)?, target_log_p.cuda_buffer(OP)?);
        let per_row = kl_div_rows(dev, q, p, k)?;
        let rows = per_row.len();
        let dims = input_log_q.dims();
        let row_shape = Shape::new(&dims[..dims.len().saturating_sub(1)])?;
        let value = reduce_items(dev, per_row, row_shape, reduction)?;
        let (q2, p2, dev) = (input_log_q.clone(), target_log_p.clone(), dev.clone());
        let up = upstream(reduction, rows);
        Ok(
            tape.record(OP, value, &[input_log_q, target_log_p], move |g, needs| {
                let (gq, gp) = kl_div_backward(
                    &dev,
                    q2.cuda_buffer(OP)?,
                    p2.cuda_buffer(OP)?,
                    k,
                    g.cuda_buffer(OP)?,
                    up,
                    [needs[0], needs[1]],
                )?;
                let shape = *q2.shape();
                Ok(vec![
                    gq.map(|v| Tensor::from_cuda(shape, &dev, v)),
                    gp.map(|v| Tensor::from_cuda(shape, &dev, v)),
                ])
            }),
        )
    }
}
