//! A 2-D convolution layer, as `torch.nn.Conv2d` (no dilation, no groups).

use super::init::{default_bound, uniform};
use crate::autograd::{Param, Tape};
use crate::error::{Error, Result};
use crate::ops::conv2d::{conv2d, Conv2dSpec};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// A convolution with a weight (out, in, kh, kw), an optional bias (out),
/// stride and padding. Parameter names `weight` and `bias`, as PyTorch.
#[derive(Clone, Debug)]
pub struct Conv2d {
    /// Kernel, (out channels, in channels, kernel height, kernel width).
    pub weight: Param,
    /// Per-output-channel bias; `None` for a conv that feeds a BatchNorm.
    pub bias: Option<Param>,
    /// Stride and zero padding.
    pub spec: Conv2dSpec,
}

impl Conv2d {
    /// A convolution from `in_channels` to `out_channels` with a `kernel`
    /// (height, width), initialised as `torch.nn.Conv2d`: weight and bias
    /// uniform in `±1/sqrt(in_channels * kh * kw)` (kaiming uniform with
    /// `a = sqrt(5)`). Zero sizes are an error.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: (usize, usize),
        spec: Conv2dSpec,
        bias: bool,
        rng: &mut Rng,
    ) -> Result<Conv2d> {
        if in_channels == 0 || out_channels == 0 || kernel.0 == 0 || kernel.1 == 0 {
            return Err(Error::invalid(
                "Conv2d::new",
                format!(
                    "channels {in_channels} -> {out_channels} and kernel {kernel:?} must be non-zero"
                ),
            ));
        }
        let bound = default_bound(in_channels * kernel.0 * kernel.1);
        let weight = Param::new(uniform(
            &[out_channels, in_channels, kernel.0, kernel.1],
            bound,
            rng,
        )?);
        let bias = if bias {
            Some(Param::new(uniform(&[out_channels], bound, rng)?))
        } else {
            None
        };
        Ok(Conv2d { weight, bias, spec })
    }

    /// Convolves `x` (N, in, H, W) into (N, out, Ho, Wo).
    pub fn forward(&self, tape: &mut Tape, x: &Tensor) -> Result<Tensor> {
        conv2d(
            tape,
            x,
            self.weight.tensor(),
            self.bias.as_ref().map(|b| b.tensor()),
            self.spec,
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

    /// The parameters, mutably, in the order of [`Conv2d::params`].
    pub fn params_mut(&mut self) -> Vec<(String, &mut Param)> {
        let mut out = vec![("weight".to_string(), &mut self.weight)];
        if let Some(b) = &mut self.bias {
            out.push(("bias".to_string(), b));
        }
        out
    }
}
