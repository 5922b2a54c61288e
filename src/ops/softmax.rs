//! Softmax and log-softmax over the last (class) axis, with a temperature:
//! `softmax(x / T)`, as used by soft-target distillation (Hinton et al. 2015).

use crate::autograd::Tape;
use crate::cpu::softmax as kernel;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

fn class_count(op: &'static str, x: &Tensor, temperature: f32) -> Result<usize> {
    if !(temperature > 0.0 && temperature.is_finite()) {
        return Err(Error::invalid(
            op,
            format!("temperature must be positive and finite, got {temperature}"),
        ));
    }
    match x.dims().last() {
        Some(&k) if k > 0 => Ok(k),
        _ => Err(Error::shape(
            op,
            format!("needs a non-empty class axis, got {:?}", x.shape()),
        )),
    }
}

/// `softmax(x / temperature)` over the last axis.
pub fn softmax(tape: &mut Tape, x: &Tensor, temperature: f32) -> Result<Tensor> {
    let k = class_count("softmax", x, temperature)?;
    #[cfg(feature = "cuda")]
    if let Some(dev) = crate::tensor::cuda_device_of("softmax", &[x])? {
        return gpu::softmax(tape, &dev, false, x, k, temperature);
    }
    let y = Tensor::from_shape_vec(*x.shape(), kernel::softmax(x.data(), k, temperature));
    let saved = y.detach();
    Ok(tape.record("softmax", y, &[x], move |g, _| {
        let grad = kernel::softmax_backward(saved.data(), g.data(), k, temperature);
        Ok(vec![Some(Tensor::from_shape_vec(*saved.shape(), grad))])
    }))
}

/// `log_softmax(x / temperature)` over the last axis, computed stably.
pub fn log_softmax(tape: &mut Tape, x: &Tensor, temperature: f32) -> Result<Tensor> {
    let k = class_count("log_softmax", x, temperature)?;
    #[cfg(feature = "cuda")]
    if let Some(dev) = crate::tensor::cuda_device_of("log_softmax", &[x])? {
        return gpu::softmax(tape, &dev, true, x, k, temperature);
    }
    let y = Tensor::from_shape_vec(*x.shape(), kernel::log_softmax(x.data(), k, temperature));
    let saved = y.detach();
    Ok(tape.record("log_softmax", y, &[x], move |g, _| {
        let grad = kernel::log_softmax_backward(saved.data(), g.data(), k, temperature);
        Ok(vec![Some(Tensor::from_shape_vec(*saved.shape(), grad))])
    }))
}

#[cfg(feature = "cuda")]
mod gpu {
    use crate::autograd::Tape;
    use crate::cuda::{softmax as kernels, CudaDevice};
    use crate::error::Result;
    use crate::tensor::Tensor;
    use std::sync::Arc;

    /// `softmax(x / temperature)` (or its logarithm, with `log`) over rows of
    /// `k` values; the backward works from the saved output.
    pub(super) fn softmax(
        tape: &mut Tape,
        dev: &Arc<CudaDevice>,
        log: bool,
        x: &Tensor,
        k: usize,
        temperature: f32,
    ) -> Result<Tensor> {
        let op = if log { "log_softmax" } else { "softmax" };
        let xb = x.cuda_buffer(op)?;
        let y = if log {
            kernels::log_softmax(dev, xb, k, temperature)?
        } else {
            kernels::softmax(dev, xb, k, temperature)?
        };
        let y = Tensor::from_cuda(*x.shape(), dev, y);
        let (saved, dev) = (y.detach(), dev.clone());
        Ok(tape.record(op, y, &[x], move |g, _| {
            let (yb, gb) = (saved.cuda_buffer(op)?, g.cuda_buffer(op)?);
            let grad = if log {
                kernels::log_softmax_backward(&dev, yb, gb, k, temperature)?
            } else {
                kernels::softmax_backward(&dev, yb, gb, k, temperature)?
            };
            Ok(vec![Some(Tensor::from_cuda(*saved.shape(), &dev, grad))])
        }))
    }
}
