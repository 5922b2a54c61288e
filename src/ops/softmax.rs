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
    let y = Tensor::from_shape_vec(*x.shape(), kernel::log_softmax(x.data(), k, temperature));
    let saved = y.detach();
    Ok(tape.record("log_softmax", y, &[x], move |g, _| {
        let grad = kernel::log_softmax_backward(saved.data(), g.data(), k, temperature);
        Ok(vec![Some(Tensor::from_shape_vec(*saved.shape(), grad))])
    }))
}
