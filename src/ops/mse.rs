//! Mean squared error, as torch.nn.MSELoss.

use super::Reduction;
use crate::autograd::Tape;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// `(a − b)²` elementwise, then the reduction: `Mean` over every element,
/// `Sum`, or `None` (elementwise, same shape as the inputs).
pub fn mse_loss(tape: &mut Tape, a: &Tensor, b: &Tensor, reduction: Reduction) -> Result<Tensor> {
    if a.shape() != b.shape() {
        return Err(Error::shape(
            "mse_loss",
            format!("{:?} and {:?} differ", a.shape(), b.shape()),
        ));
    }
    #[cfg(feature = "cuda")]
    if let Some(dev) = crate::tensor::cuda_device_of("mse_loss", &[a, b])? {
        return gpu::mse_loss(tape, &dev, a, b, reduction);
    }
    let diff: Vec<f32> = a.data().iter().zip(b.data()).map(|(x, y)| x - y).collect();
    let n = diff.len();
    let value = match reduction {
        Reduction::None => Tensor::from_vec(diff.iter().map(|d| d * d).collect(), a.dims())?,
        Reduction::Sum => Tensor::scalar(diff.iter().map(|d| d * d).sum()),
        Reduction::Mean => {
            Tensor::scalar(diff.iter().map(|d| d * d).sum::<f32>() / n.max(1) as f32)
        }
    };
    let shape = *a.shape();
    Ok(tape.record("mse_loss", value, &[a, b], move |g, needs| {
        let gd = g.data();
        let grad_a: Vec<f32> = diff
            .iter()
            .enumerate()
            .map(|(i, d)| {
                2.0 * d
                    * match reduction {
                        Reduction::None => gd[i],
                        Reduction::Sum => gd[0],
                        Reduction::Mean => gd[0] / n.max(1) as f32,
                    }
            })
            .collect();
        let gb =
            needs[1].then(|| Tensor::from_shape_vec(shape, grad_a.iter().map(|v| -v).collect()));
        let ga = needs[0].then(|| Tensor::from_shape_vec(shape, grad_a));
        Ok(vec![ga, gb])
    }))
}

#[cfg(feature = "cuda")]
mod gpu {
    use super::super::cross_entropy::gpu::{reduce_items, upstream};
    use super::Reduction;
    use crate::autograd::Tape;
    use crate::cuda::loss::{mse_backward, mse_forward};
    use crate::cuda::CudaDevice;
    use crate::error::Result;
    use crate::tensor::Tensor;
    use std::sync::Arc;

    /// `mse_loss` on a GPU: the difference (kept for the backward pass) and
    /// its square, reduced.
    pub(super) fn mse_loss(
        tape: &mut Tape,
        dev: &Arc<CudaDevice>,
        a: &Tensor,
        b: &Tensor,
        reduction: Reduction,
    ) -> Result<Tensor> {
        const OP: &str = "mse_loss";
        let (diff, sq) = mse_forward(dev, a.cuda_buffer(OP)?, b.cuda_buffer(OP)?)?;
        let shape = *a.shape();
        let value = reduce_items(dev, sq, shape, reduction)?;
        let up = upstream(reduction, diff.len());
        let dev = dev.clone();
        Ok(tape.record(OP, value, &[a, b], move |g, needs| {
            let (ga, gb) = mse_backward(&dev, &diff, g.cuda_buffer(OP)?, up, [needs[0], needs[1]])?;
            Ok(vec![
                ga.map(|v| Tensor::from_cuda(shape, &dev, v)),
                gb.map(|v| Tensor::from_cuda(shape, &dev, v)),
            ])
        }))
    }
}
