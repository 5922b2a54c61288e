//! The CRNN text-line recogniser: conv blocks, a (Bi)LSTM over the image
//! columns and a linear head, as in `reference-models.md`, with optional
//! early exits (Phuong & Lampert, "Distillation-based training for
//! multi-exit architectures", ICCV 2019): extra CTC classifiers after
//! intermediate conv blocks, at which inference may stop.

use super::{BatchNorm2d, Conv2d, CrnnConfig, Linear, Lstm};
use crate::autograd::{Param, Tape};
use crate::error::{Error, Result};
use crate::ops::conv2d::{conv_block_eval, Conv2dSpec};
use crate::ops::maxpool2d::{maxpool2d, Pool2dSpec};
use crate::ops::{dropout, permute, reshape};
use crate::rng::Rng;
use crate::tensor::{Device, Tensor};
use std::collections::{BTreeMap, HashMap};

/// What [`Crnn::forward`] returns.
#[derive(Clone, Debug)]
pub struct CrnnOutput {
    /// Class scores before softmax, (T, N, K) (class 0 is the blank).
    pub logits: Tensor,
    /// Real time steps per sample: [`CrnnConfig::time_steps`] of its pixel
    /// width, clamped to [1, T]; the CTC input lengths.
    pub lengths: Vec<usize>,
    /// Named intermediate values for distillation: `"b1"` … `"bk"`, each
    /// block's output (N, C, H, W) after its pool, and `"rnn"`, the LSTM
    /// output (T, N, 2H) before dropout and head.
    pub features: BTreeMap<String, Tensor>,
    /// The logits (T, N, K) of each early exit, by block name (`"b2"`, …;
    /// see [`CrnnConfig::exits`]); frames align 1:1 with `logits` and share
    /// `lengths`. Empty for a model without exits.
    pub exits: BTreeMap<String, Tensor>,
}

/// A CRNN built from a [`CrnnConfig`]. Parameter names follow
/// `reference-models.md` (`cnn.b{i}.conv.weight`, `cnn.b{i}.bn.weight`,
/// `rnn.weight_ih_l0`, …, `head.weight`), so that PyTorch state dicts load;
/// early exits add `exits.b{i}.weight` and `exits.b{i}.bias` after the head.
///
/// `clone` copies the values but keeps each parameter's identity, so the
/// clone's gradients are keyed like the original's. For an independent
/// copy (e.g. two models on one tape), build a new model with [`Crnn::new`]
/// and [`Crnn::load_state_dict`] the other's [`Crnn::state_dict`].
#[derive(Clone, Debug)]
pub struct Crnn {
    /// The configuration the model was built from.
    pub config: CrnnConfig,
    /// The conv blocks `b1`…`bk`: conv 3x3 pad 1 without bias, then its BatchNorm.
    pub blocks: Vec<(Conv2d, BatchNorm2d)>,
    /// The LSTM over the columns (`rnn`).
    pub lstm: Lstm,
    /// The linear map to class scores (`head`).
    pub head: Linear,
    /// The early exits in the order of [`CrnnConfig::exits`]: each block
    /// name with its classifier `exits.{name}`, a linear map (with bias) from
    /// the block's column features (channels · height) to class scores.
    pub exits: Vec<(String, Linear)>,
}

impl Crnn {
    /// A model for `config` (checked with [`CrnnConfig::validate`]) with
    /// PyTorch's default initialisation drawn from `rng`: the blocks, the
    /// LSTM and the head first, then the exits in config order, so that a
    /// configuration without exits draws exactly what it always drew and
    /// adding exits leaves every other initial value unchanged.
    pub fn new(config: CrnnConfig, rng: &mut Rng) -> Result<Crnn> {
        config.validate()?;
        let mut blocks = Vec::with_capacity(config.blocks.len());
        let mut channels = config.in_channels;
        for b in &config.blocks {
            let conv = Conv2d::new(
                channels,
                b.out_channels,
                (3, 3),
                Conv2dSpec::new((1, 1), (1, 1)),
                false,
                rng,
            )?;
            blocks.push((conv, BatchNorm2d::new(b.out_channels)?));
            channels = b.out_channels;
        }
        let lstm = Lstm::new(
            config.sequence_features(),
            config.hidden,
            config.layers,
            config.bidirectional,
            rng,
        )?;
        let head = Linear::new(config.rnn_features(), config.num_classes, true, rng)?;
        let mut exits = Vec::with_capacity(config.exits.len());
        for name in &config.exits {
            let features = config.exit_features(name).ok_or_else(|| {
                Error::invalid("Crnn::new", format!("exit `{name}` is not a block"))
            })?;
            exits.push((
                name.clone(),
                Linear::new(features, config.num_classes, true, rng)?,
            ));
        }
        Ok(Crnn {
            config,
            blocks,
            lstm,
            head,
            exits,
        })
    }

    /// Runs the model on `images` (N, in_channels, height, W), whose sample n
    /// is `widths[n]` pixels wide on the left and padding beyond.
    ///
    /// In `training`, BatchNorm uses (and updates) batch statistics and
    /// dropout (`config.dropout`, drawn from `rng`) is applied between LSTM
    /// layers and before the head; otherwise the running statistics are used,
    /// nothing is updated and `rng` is not touched. The LSTM reads only each
    /// sample's real time steps; the logits of padding steps are the head's bias.
    ///
    /// Every early exit's logits are computed too ([`CrnnOutput::exits`]),
    /// without dropout (the exits draw nothing from `rng`, so a model with
    /// exits gives the same final logits as the same weights without). The
    /// exits see the convolution of the padding, so their padding frames hold
    /// arbitrary scores: mask them with `lengths` as every loss here does.
    ///
    /// Errors: a wrong image shape, a width count other than N, a width
    /// larger than W, or W too narrow for the pools.
    pub fn forward(
        &mut self,
        tape: &mut Tape,
        images: &Tensor,
        widths: &[usize],
        training: bool,
        rng: &mut Rng,
    ) -> Result<CrnnOutput> {
        let lengths = self.check_inputs("Crnn::forward", images, widths)?;
        let p = self.config.dropout;
        let mut features = BTreeMap::new();
        let x = self.run_blocks(tape, images, self.blocks.len(), training, &mut features)?;
        let mut exits = BTreeMap::new();
        for (name, head) in &self.exits {
            let at = features.get(name).ok_or_else(|| {
                Error::invalid("Crnn::forward", format!("exit `{name}` is not a block"))
            })?;
            exits.insert(name.clone(), exit_logits(tape, head, at)?);
        }
        let seq = columns(tape, &x)?;
        let rnn = self.lstm.forward(tape, &seq, &lengths, p, training, rng)?;
        features.insert("rnn".to_string(), rnn.clone());
        let rnn = dropout(tape, &rnn, p, training, rng)?;
        let logits = self.head.forward(tape, &rnn)?;
        Ok(CrnnOutput {
            logits,
            lengths,
            features,
            exits,
        })
    }

    /// Runs the model only up to the early exit `exit` (a block name of
    /// [`CrnnConfig::exits`], e.g. `"b3"`) and its classifier: this is how
    /// inference stops early (Phuong & Lampert, ICCV 2019, §3: each exit is
    /// a complete classifier on its own).
    ///
    /// The returned `logits` are the exit's (T, N, K), with the same frames
    /// and `lengths` as [`Crnn::forward`] would give; `features` holds the
    /// blocks computed so far (`"b1"` … up to the exit's block, no `"rnn"`)
    /// and `exits` this exit's logits alone. `training` and the input checks
    /// are as in [`Crnn::forward`]; `rng` is not touched (exits have no
    /// dropout). An unknown exit is an error that lists the model's exits.
    pub fn forward_to_exit(
        &mut self,
        tape: &mut Tape,
        images: &Tensor,
        widths: &[usize],
        exit: &str,
        training: bool,
        rng: &mut Rng,
    ) -> Result<CrnnOutput> {
        const OP: &str = "Crnn::forward_to_exit";
        let _ = rng;
        let e = self.exit_index(exit)?;
        let block = self
            .config
            .exit_block(exit)
            .ok_or_else(|| Error::invalid(OP, format!("exit `{exit}` is not a block")))?;
        let lengths = self.check_inputs(OP, images, widths)?;
        let mut features = BTreeMap::new();
        let x = self.run_blocks(tape, images, block + 1, training, &mut features)?;
        let logits = exit_logits(tape, &self.exits[e].1, &x)?;
        let mut exits = BTreeMap::new();
        exits.insert(exit.to_string(), logits.clone());
        Ok(CrnnOutput {
            logits,
            lengths,
            features,
            exits,
        })
    }

    /// The position in [`Crnn::exits`] of the exit called `name`; an
    /// unknown name is an error that lists the model's exits (or says it
    /// has none).
    pub fn exit_index(&self, name: &str) -> Result<usize> {
        if let Some(i) = self.exits.iter().position(|(n, _)| n == name) {
            return Ok(i);
        }
        let known = if self.exits.is_empty() {
            "the model has no exits".to_string()
        } else {
            let names: Vec<&str> = self.exits.iter().map(|(n, _)| n.as_str()).collect();
            format!("the model's exits are {}", names.join(", "))
        };
        Err(Error::invalid(
            "Crnn",
            format!("unknown exit `{name}`: {known}"),
        ))
    }

    /// Checks images and widths for `op` (see [`Crnn::forward`]); returns
    /// the CTC input length of each sample.
    fn check_inputs(
        &self,
        op: &'static str,
        images: &Tensor,
        widths: &[usize],
    ) -> Result<Vec<usize>> {
        let cfg = &self.config;
        let &[n, c, h, w] = images.dims() else {
            return Err(Error::shape(
                op,
                format!(
                    "images have shape {:?}, expected (N, {}, {}, W)",
                    images.shape(),
                    cfg.in_channels,
                    cfg.height
                ),
            ));
        };
        if c != cfg.in_channels || h != cfg.height || n == 0 {
            return Err(Error::shape(
                op,
                format!(
                    "images have shape {:?}, expected (N, {}, {}, W) with N >= 1",
                    images.shape(),
                    cfg.in_channels,
                    cfg.height
                ),
            ));
        }
        if widths.len() != n {
            return Err(Error::shape(
                op,
                format!("{} widths given for a batch of {n} images", widths.len()),
            ));
        }
        if let Some((i, &wi)) = widths.iter().enumerate().find(|(_, &wi)| wi > w) {
            return Err(Error::shape(
                op,
                format!("image {i} has width {wi}, more than the batch width {w}"),
            ));
        }
        if w < cfg.min_width() {
            return Err(Error::shape(
                op,
                format!(
                    "batch width {w} is too narrow: the pools need at least {} pixels",
                    cfg.min_width()
                ),
            ));
        }
        let steps = cfg.time_steps(w);
        Ok(widths
            .iter()
            .map(|&wi| cfg.time_steps(wi).clamp(1, steps))
            .collect())
    }

    /// Runs the first `count` conv blocks on `images`, recording each
    /// block's output in `features` as `"b{i}"`; returns the last output.
    fn run_blocks(
        &mut self,
        tape: &mut Tape,
        images: &Tensor,
        count: usize,
        training: bool,
        features: &mut BTreeMap<String, Tensor>,
    ) -> Result<Tensor> {
        let pools: Vec<Option<(usize, usize)>> =
            self.config.blocks.iter().map(|b| b.pool).collect();
        // Batches come in from host memory; the model computes where it lives.
        let mut x = images.to_device(self.device())?;
        for (i, ((conv, bn), pool)) in self.blocks.iter_mut().zip(pools).take(count).enumerate() {
            let pool = pool.map(|k| Pool2dSpec::new(k, k));
            x = if training {
                let y = conv.forward(tape, &x)?;
                let y = bn.forward_relu(tape, &y, true)?;
                match pool {
                    Some(p) => maxpool2d(tape, &y, p)?,
                    None => y,
                }
            } else {
                // One pass over the output instead of three (a thin block
                // with its pool: one pass over the input); the same bits,
                // and recorded as the separate ops when a gradient is wanted.
                conv_block_eval(
                    tape,
                    &x,
                    conv.weight.tensor(),
                    conv.bias.as_ref().map(|b| b.tensor()),
                    conv.spec,
                    bn.weight.tensor(),
                    bn.bias.tensor(),
                    &bn.stats,
                    pool,
                )?
            };
            features.insert(format!("b{}", i + 1), x.clone());
        }
        Ok(x)
    }

    /// The trainable parameters under their PyTorch names, in a stable
    /// order: per block `cnn.b{i}.conv.weight`, `cnn.b{i}.bn.weight`,
    /// `cnn.b{i}.bn.bias`; then `rnn.weight_ih_l0`, `rnn.weight_hh_l0`,
    /// `rnn.bias_ih_l0`, `rnn.bias_hh_l0`, the same with `_reverse`, the
    /// next layers; then `head.weight`, `head.bias`; then per early exit, in
    /// the order of [`CrnnConfig::exits`], `exits.b{i}.weight`,
    /// `exits.b{i}.bias`.
    pub fn params(&self) -> Vec<(String, &Param)> {
        let mut out = Vec::new();
        for (i, (conv, bn)) in self.blocks.iter().enumerate() {
            let b = i + 1;
            for (name, p) in conv.params() {
                out.push((format!("cnn.b{b}.conv.{name}"), p));
            }
            for (name, p) in bn.params() {
                out.push((format!("cnn.b{b}.bn.{name}"), p));
            }
        }
        for (name, p) in self.lstm.params() {
            out.push((format!("rnn.{name}"), p));
        }
        for (name, p) in self.head.params() {
            out.push((format!("head.{name}"), p));
        }
        for (exit, head) in &self.exits {
            for (name, p) in head.params() {
                out.push((format!("exits.{exit}.{name}"), p));
            }
        }
        out
    }

    /// The trainable parameters, mutably, in the order of [`Crnn::params`].
    pub fn params_mut(&mut self) -> Vec<(String, &mut Param)> {
        let mut out = Vec::new();
        for (i, (conv, bn)) in self.blocks.iter_mut().enumerate() {
            let b = i + 1;
            for (name, p) in conv.params_mut() {
                out.push((format!("cnn.b{b}.conv.{name}"), p));
            }
            for (name, p) in bn.params_mut() {
                out.push((format!("cnn.b{b}.bn.{name}"), p));
            }
        }
        for (name, p) in self.lstm.params_mut() {
            out.push((format!("rnn.{name}"), p));
        }
        for (name, p) in self.head.params_mut() {
            out.push((format!("head.{name}"), p));
        }
        for (exit, head) in &mut self.exits {
            for (name, p) in head.params_mut() {
                out.push((format!("exits.{exit}.{name}"), p));
            }
        }
        out
    }

    /// Everything a checkpoint holds, in PyTorch's state-dict order: the
    /// parameters of [`Crnn::params`] with each BatchNorm's
    /// `cnn.b{i}.bn.running_mean` and `cnn.b{i}.bn.running_var` after its
    /// `bias` (PyTorch's `num_batches_tracked` is not kept), the exits last.
    /// The tensors are detached copies sharing storage with the model's values.
    pub fn state_dict(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (i, (conv, bn)) in self.blocks.iter().enumerate() {
            let b = i + 1;
            for (name, p) in conv.params() {
                out.push((format!("cnn.b{b}.conv.{name}"), p.tensor().detach()));
            }
            for (name, p) in bn.params() {
                out.push((format!("cnn.b{b}.bn.{name}"), p.tensor().detach()));
            }
            out.push((format!("cnn.b{b}.bn.running_mean"), bn.stats.mean.detach()));
            out.push((format!("cnn.b{b}.bn.running_var"), bn.stats.var.detach()));
        }
        for (name, p) in self.lstm.params() {
            out.push((format!("rnn.{name}"), p.tensor().detach()));
        }
        for (name, p) in self.head.params() {
            out.push((format!("head.{name}"), p.tensor().detach()));
        }
        for (exit, head) in &self.exits {
            for (name, p) in head.params() {
                out.push((format!("exits.{exit}.{name}"), p.tensor().detach()));
            }
        }
        out
    }

    /// Sets every parameter and running statistic from `tensors` (names as
    /// in [`Crnn::state_dict`]; names ending in `num_batches_tracked` are
    /// ignored). Every name is required, none may be extra or repeated, and
    /// every shape must match; otherwise nothing is changed and the error
    /// lists the missing, unexpected, repeated and mis-shaped names.
    /// Parameters keep their identities.
    pub fn load_state_dict(&mut self, tensors: &[(String, Tensor)]) -> Result<()> {
        let expected: Vec<(String, Vec<usize>)> = self
            .state_dict()
            .into_iter()
            .map(|(name, t)| (name, t.dims().to_vec()))
            .collect();
        let mut given: HashMap<&str, &Tensor> = HashMap::new();
        let mut repeated = Vec::new();
        for (name, t) in tensors {
            if name.ends_with("num_batches_tracked") {
                continue;
            }
            if given.insert(name.as_str(), t).is_some() {
                repeated.push(name.clone());
            }
        }
        let mut missing = Vec::new();
        let mut wrong = Vec::new();
        for (name, dims) in &expected {
            match given.get(name.as_str()) {
                None => missing.push(name.clone()),
                Some(t) if t.dims() != dims.as_slice() => wrong.push(format!(
                    "{name} is {:?} but the model expects {dims:?}",
                    t.dims()
                )),
                Some(_) => {}
            }
        }
        let known: std::collections::HashSet<&str> =
            expected.iter().map(|(n, _)| n.as_str()).collect();
        let mut extra: Vec<String> = given
            .keys()
            .filter(|n| !known.contains(**n))
            .map(|n| n.to_string())
            .collect();
        extra.sort();
        if !(missing.is_empty() && extra.is_empty() && wrong.is_empty() && repeated.is_empty()) {
            let mut parts = Vec::new();
            if !missing.is_empty() {
                parts.push(format!("missing tensors: {}", listing(&missing, ", ")));
            }
            if !extra.is_empty() {
                parts.push(format!("unexpected tensors: {}", listing(&extra, ", ")));
            }
            if !repeated.is_empty() {
                parts.push(format!("repeated tensors: {}", listing(&repeated, ", ")));
            }
            if !wrong.is_empty() {
                parts.push(format!("wrong shapes: {}", listing(&wrong, "; ")));
            }
            return Err(Error::invalid("load_state_dict", parts.join("; ")));
        }
        let value = |name: &str| -> Result<&Tensor> {
            given
                .get(name)
                .copied()
                .ok_or_else(|| Error::invalid("load_state_dict", format!("missing tensor {name}")))
        };
        for (name, p) in self.params_mut() {
            p.set(value(&name)?)?;
        }
        let device = self.device();
        for (i, (_, bn)) in self.blocks.iter_mut().enumerate() {
            let b = i + 1;
            bn.stats.mean = value(&format!("cnn.b{b}.bn.running_mean"))?
                .detach()
                .to_device(device)?;
            bn.stats.var = value(&format!("cnn.b{b}.bn.running_var"))?
                .detach()
                .to_device(device)?;
        }
        Ok(())
    }

    /// The device holding the parameters.
    pub fn device(&self) -> Device {
        self.blocks
            .first()
            .map_or(Device::Cpu, |(conv, _)| conv.weight.device())
    }

    /// Moves every parameter and running statistic to `device`; parameters
    /// keep their identities. Images given to [`Crnn::forward`] are moved
    /// to this device as they come in.
    pub fn to_device(&mut self, device: Device) -> Result<()> {
        for (_, p) in self.params_mut() {
            p.move_to(device)?;
        }
        for (_, bn) in &mut self.blocks {
            bn.stats.mean = bn.stats.mean.to_device(device)?;
            bn.stats.var = bn.stats.var.to_device(device)?;
        }
        Ok(())
    }

    /// The number of trainable values (running statistics not counted), as
    /// `sum(p.numel() for p in model.parameters())` in PyTorch.
    pub fn num_parameters(&self) -> usize {
        self.params().iter().map(|(_, p)| p.tensor().numel()).sum()
    }
}

/// The columns of a feature map as a sequence: (N, C, H, W) → (W, N, C·H),
/// feature c·H + h of step t being x[n, c, h, t] (`reference-models.md`).
fn columns(tape: &mut Tape, x: &Tensor) -> Result<Tensor> {
    let (n, fc, fh, ft) = (x.dims()[0], x.dims()[1], x.dims()[2], x.dims()[3]);
    // (N, C, H, T) -> (T, N, C, H) -> (T, N, C*H).
    let seq = permute(tape, x, &[3, 0, 1, 2])?;
    reshape(tape, &seq, &[ft, n, fc * fh])
}

/// An exit's logits (T, N, K): its block's output `x` read as columns
/// ([`columns`], exactly as the LSTM's input) through its classifier.
fn exit_logits(tape: &mut Tape, head: &Linear, x: &Tensor) -> Result<Tensor> {
    let seq = columns(tape, x)?;
    head.forward(tape, &seq)
}

/// The first few `items` joined by `sep`, with a count of the rest.
fn listing(items: &[String], sep: &str) -> String {
    const SHOWN: usize = 8;
    let mut text = items[..items.len().min(SHOWN)].join(sep);
    if items.len() > SHOWN {
        text.push_str(&format!("{sep}and {} more", items.len() - SHOWN));
    }
    text
}
