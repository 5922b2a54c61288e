//! A fully connected layer, as `torch.nn.Linear`.

use super::init::{default_bound, uniform};
use crate::autograd::{Param, Tape};
use crate::error::{Error, Result};
use crate::ops::linear;
use crate::rng::Rng;
use crate::tensor::Tensor;

/// `y = x · weightᵀ + bias` over the last axis, with `weight` (out, in) and
/// an optional `bias` (out).
#[derive(Clone, Debug)]
pub struct Linear {
    /// Weight, (out features, in features).
    pub weight: Param,
    /// Bias, (out features), if any.
    pub bias: Option<Param>,
}

impl Linear {
    /// A linear map from `in_features` to `out_features`, initialised as
    /// `torch.nn.Linear`: weight and bias uniform in `±1/sqrt(in_features)`.
    /// Zero sizes are an error.
    pub fn new(
        in_features: usize,
        out_features: usize,
        bias: bool,
        rng: &mut Rng,
    ) -> Result<Linear> {
        if in_features == 0 || out_features == 0 {
            return Err(Error::invalid(
                "Linear::new",
                format!("features {in_features} -> {out_features} must be non-zero"),
            ));
        }
        let bound = default_bound(in_features);
        let weight = Param::new(uniform(&[out_features, in_features], bound, rng)?);
        let bias = if bias {
            Some(Param::new(uniform(&[out_features], bound, rng)?))
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }

    /// Applies the map to `x` (…, in), giving (…, out).
    pub fn forward(&self, tape: &mut Tape, x: &Tensor) -> Result<Tensor> {
        linear(
            tape,
            x,
            self.weight.tensor(),
            self.bias.as_ref().map(|b| b.tensor()),
        )
    }

    /// The parameters under their PyTorch names (`weight`, then `bias` if any).
    pub fn params(&self) -> Vec<(String, &Param)> {
        let mut out = vec![("weight".to_string(), &self.weight)];
        if let Some(b) = &self.bias {
            out.push(("bias".to_string(), b));
        }
        out
    }

    /// The parameters, mutably, in the order of [`Linear::params`].
    pub fn params_mut(&mut self) -> Vec<(String, &mut Param)> {
        let mut out = vec![("weight".to_string(), &mut self.weight)];
        if let Some(b) = &mut self.bias {
            out.push(("bias".to_string(), b));
        }
        out
    }
}
