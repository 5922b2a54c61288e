//! Dropout (Srivastava et al. 2014), inverted: kept values are scaled by
//! 1 / (1 - p) in training so that evaluation is the identity.

use crate::autograd::Tape;
use crate::error::{Error, Result};
use crate::ops::mul_const;
use crate::rng::Rng;
use crate::tensor::Tensor;

/// Zeroes each value with probability `p` and scales the rest by 1/(1-p)
/// when `training`; returns `x` unchanged otherwise. The mask is drawn from `rng`.
pub fn dropout(
    tape: &mut Tape,
    x: &Tensor,
    p: f32,
    training: bool,
    rng: &mut Rng,
) -> Result<Tensor> {
    if !(0.0..=1.0).contains(&p) {
        return Err(Error::invalid(
            "dropout",
            format!("probability {p} is outside [0, 1]"),
        ));
    }
    if !training || p == 0.0 {
        return Ok(x.clone());
    }
    let keep_scale = if p < 1.0 { 1.0 / (1.0 - p) } else { 0.0 };
    let mask: Vec<f32> = (0..x.numel())
        .map(|_| if rng.uniform() < p { 0.0 } else { keep_scale })
        .collect();
    // Drawn on the host whatever the device, so that the same units drop;
    // on a GPU it is uploaded once and `mul_const` applies it there.
    let mask = Tensor::from_vec(mask, x.dims())?.to_device(x.device())?;
    mul_const(tape, x, &mask)
}
