//! A stacked, optionally bidirectional LSTM, as `torch.nn.LSTM`.

use super::init::uniform;
use crate::autograd::{Param, Tape};
use crate::error::{Error, Result};
use crate::ops::dropout;
use crate::ops::lstm::{lstm, LstmLayer, LstmWeights};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// The weights of one direction of one layer (gate order i, f, g, o).
#[derive(Clone, Debug)]
pub struct LstmDirection {
    /// Input-to-hidden weights (4H, F): PyTorch's `weight_ih_l{k}`.
    pub w_ih: Param,
    /// Hidden-to-hidden weights (4H, H): `weight_hh_l{k}`.
    pub w_hh: Param,
    /// Input-to-hidden bias (4H): `bias_ih_l{k}`.
    pub b_ih: Param,
    /// Hidden-to-hidden bias (4H): `bias_hh_l{k}`.
    pub b_hh: Param,
}

impl LstmDirection {
    /// A direction reading `input` features into `hidden` units, every value
    /// uniform in `±1/sqrt(hidden)` as PyTorch.
    fn new(input: usize, hidden: usize, rng: &mut Rng) -> Result<LstmDirection> {
        let bound = 1.0 / (hidden as f32).sqrt();
        Ok(LstmDirection {
            w_ih: Param::new(uniform(&[4 * hidden, input], bound, rng)?),
            w_hh: Param::new(uniform(&[4 * hidden, hidden], bound, rng)?),
            b_ih: Param::new(uniform(&[4 * hidden], bound, rng)?),
            b_hh: Param::new(uniform(&[4 * hidden], bound, rng)?),
        })
    }

    /// The tensors, borrowed for the op.
    fn weights(&self) -> LstmWeights<'_> {
        LstmWeights {
            w_ih: self.w_ih.tensor(),
            w_hh: self.w_hh.tensor(),
            b_ih: self.b_ih.tensor(),
            b_hh: self.b_hh.tensor(),
        }
    }

    /// The four parameters with the PyTorch names of layer `k` (`suffix` is
    /// `""` or `"_reverse"`).
    fn params(&self, k: usize, suffix: &str) -> Vec<(String, &Param)> {
        vec![
            (format!("weight_ih_l{k}{suffix}"), &self.w_ih),
            (format!("weight_hh_l{k}{suffix}"), &self.w_hh),
            (format!("bias_ih_l{k}{suffix}"), &self.b_ih),
            (format!("bias_hh_l{k}{suffix}"), &self.b_hh),
        ]
    }

    /// The four parameters, mutably, in the order of `params`.
    fn params_mut(&mut self, k: usize, suffix: &str) -> Vec<(String, &mut Param)> {
        vec![
            (format!("weight_ih_l{k}{suffix}"), &mut self.w_ih),
            (format!("weight_hh_l{k}{suffix}"), &mut self.w_hh),
            (format!("bias_ih_l{k}{suffix}"), &mut self.b_ih),
            (format!("bias_hh_l{k}{suffix}"), &mut self.b_hh),
        ]
    }
}

/// One layer: the forward direction and, when bidirectional, the reverse one.
#[derive(Clone, Debug)]
pub struct LstmLayerParams {
    /// The direction that reads each sequence from its first step.
    pub forward: LstmDirection,
    /// The direction that reads each sequence from its last real step.
    pub reverse: Option<LstmDirection>,
}

/// A stacked LSTM over (T, N, F) sequences with per-sample lengths, as
/// `torch.nn.LSTM` on packed sequences. Parameters are named as PyTorch's:
/// `weight_ih_l{k}`, `weight_hh_l{k}`, `bias_ih_l{k}`, `bias_hh_l{k}`, and
/// the same with `_reverse` for the reverse direction.
#[derive(Clone, Debug)]
pub struct Lstm {
    /// The layers, bottom first.
    pub layers: Vec<LstmLayerParams>,
    input: usize,
    hidden: usize,
}

impl Lstm {
    /// `layers` layers of `hidden` units per direction over `input` features;
    /// every value uniform in `±1/sqrt(hidden)` as PyTorch. Zero sizes are an error.
    pub fn new(
        input: usize,
        hidden: usize,
        layers: usize,
        bidirectional: bool,
        rng: &mut Rng,
    ) -> Result<Lstm> {
        if input == 0 || hidden == 0 || layers == 0 {
            return Err(Error::invalid(
                "Lstm::new",
                format!("input {input}, hidden {hidden} and layers {layers} must be non-zero"),
            ));
        }
        let dirs = if bidirectional { 2 } else { 1 };
        let mut stack = Vec::with_capacity(layers);
        for k in 0..layers {
            let features = if k == 0 { input } else { dirs * hidden };
            let forward = LstmDirection::new(features, hidden, rng)?;
            let reverse = if bidirectional {
                Some(LstmDirection::new(features, hidden, rng)?)
            } else {
                None
            };
            stack.push(LstmLayerParams { forward, reverse });
        }
        Ok(Lstm {
            layers: stack,
            input,
            hidden,
        })
    }

    /// Input features per step.
    pub fn input_size(&self) -> usize {
        self.input
    }

    /// Hidden units per direction.
    pub fn hidden_size(&self) -> usize {
        self.hidden
    }

    /// Whether the layers read both ways.
    pub fn bidirectional(&self) -> bool {
        self.layers.first().is_some_and(|l| l.reverse.is_some())
    }

    /// Output features per step: `2H` when bidirectional, `H` otherwise.
    pub fn output_size(&self) -> usize {
        if self.bidirectional() {
            2 * self.hidden
        } else {
            self.hidden
        }
    }

    /// Runs the layers over `x` (T, N, F) with `lengths[n]` real steps for
    /// sample n (padding steps output 0); returns (T, N, output_size). In
    /// `training`, dropout with probability `dropout` is applied to the
    /// output of every layer but the last, as `torch.nn.LSTM(dropout=…)`.
    pub fn forward(
        &self,
        tape: &mut Tape,
        x: &Tensor,
        lengths: &[usize],
        dropout_p: f32,
        training: bool,
        rng: &mut Rng,
    ) -> Result<Tensor> {
        let layers: Vec<LstmLayer> = self
            .layers
            .iter()
            .map(|l| LstmLayer {
                forward: l.forward.weights(),
                reverse: l.reverse.as_ref().map(|r| r.weights()),
            })
            .collect();
        if !training || dropout_p == 0.0 {
            return lstm(tape, x, &layers, lengths);
        }
        let mut current = x.clone();
        for (k, layer) in layers.iter().enumerate() {
            if k > 0 {
                current = dropout(tape, &current, dropout_p, training, rng)?;
            }
            current = lstm(tape, &current, std::slice::from_ref(layer), lengths)?;
        }
        Ok(current)
    }

    /// The parameters under their PyTorch names, layer by layer, the forward
    /// direction before the reverse one (the order of PyTorch's state dict).
    pub fn params(&self) -> Vec<(String, &Param)> {
        let mut out = Vec::new();
        for (k, layer) in self.layers.iter().enumerate() {
            out.extend(layer.forward.params(k, ""));
            if let Some(r) = &layer.reverse {
                out.extend(r.params(k, "_reverse"));
            }
        }
        out
    }

    /// The parameters, mutably, in the order of [`Lstm::params`].
    pub fn params_mut(&mut self) -> Vec<(String, &mut Param)> {
        let mut out = Vec::new();
        for (k, layer) in self.layers.iter_mut().enumerate() {
            out.extend(layer.forward.params_mut(k, ""));
            if let Some(r) = &mut layer.reverse {
                out.extend(r.params_mut(k, "_reverse"));
            }
        }
        out
    }
}
