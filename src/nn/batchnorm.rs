//! Batch normalisation over the channels of NCHW images, as `torch.nn.BatchNorm2d`.

use crate::autograd::{Param, Tape};
use crate::error::{Error, Result};
use crate::ops::batchnorm2d::{batchnorm2d, batchnorm2d_relu, RunningStats};
use crate::tensor::Tensor;

/// A BatchNorm2d: affine `weight` (gamma) and `bias` (beta) per channel and
/// running statistics (`running_mean`, `running_var` in a state dict).
#[derive(Clone, Debug)]
pub struct BatchNorm2d {
    /// Scale per channel (PyTorch's `weight`), initialised to 1.
    pub weight: Param,
    /// Shift per channel (PyTorch's `bias`), initialised to 0.
    pub bias: Param,
    /// Running mean and variance, momentum 0.1, eps 1e-5.
    pub stats: RunningStats,
}

impl BatchNorm2d {
    /// A batch norm over `channels` channels with PyTorch's initial values:
    /// weight 1, bias 0, running mean 0, running var 1. Zero channels is an error.
    pub fn new(channels: usize) -> Result<BatchNorm2d> {
        if channels == 0 {
            return Err(Error::invalid(
                "BatchNorm2d::new",
                "the number of channels must be non-zero",
            ));
        }
        Ok(BatchNorm2d {
            weight: Param::new(Tensor::ones(&[channels])?),
            bias: Param::new(Tensor::zeros(&[channels])?),
            stats: RunningStats::new(channels),
        })
    }

    /// The number of channels.
    pub fn channels(&self) -> usize {
        self.weight.dims()[0]
    }

    /// Normalises `x` (N, C, H, W): with the batch's statistics and an update
    /// of the running ones when `training`, with the running ones otherwise.
    pub fn forward(&mut self, tape: &mut Tape, x: &Tensor, training: bool) -> Result<Tensor> {
        batchnorm2d(
            tape,
            x,
            self.weight.tensor(),
            self.bias.tensor(),
            &mut self.stats,
            training,
        )
    }

    /// [`BatchNorm2d::forward`] and a ReLU, as one op
    /// ([`batchnorm2d_relu`]: fewer passes over the values, the same result).
    pub fn forward_relu(&mut self, tape: &mut Tape, x: &Tensor, training: bool) -> Result<Tensor> {
        batchnorm2d_relu(
            tape,
            x,
            self.weight.tensor(),
            self.bias.tensor(),
            &mut self.stats,
            training,
        )
    }

    /// The parameters under their PyTorch names (`weight`, `bias`).
    pub fn params(&self) -> Vec<(String, &Param)> {
        vec![
            ("weight".to_string(), &self.weight),
            ("bias".to_string(), &self.bias),
        ]
    }

    /// The parameters, mutably, in the order of [`BatchNorm2d::params`].
    pub fn params_mut(&mut self) -> Vec<(String, &mut Param)> {
        vec![
            ("weight".to_string(), &mut self.weight),
            ("bias".to_string(), &mut self.bias),
        ]
    }
}
