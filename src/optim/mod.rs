//! Optimizers (SGD with momentum, Adam, AdamW) with exactly the update rules
//! of `torch.optim`, learning-rate plans, and gradient-norm clipping.
//!
//! ```
//! use retort::optim::{LrPlan, Optimizer, OptimizerConfig};
//! use retort::{ops, Param, Tape, Tensor};
//!
//! let mut w = Param::new(Tensor::from_vec(vec![1.0, -2.0], &[2])?);
//! let mut opt = Optimizer::new(OptimizerConfig::adam())?;
//! let plan = LrPlan::constant(0.1, 100);
//! for _ in 0..3 {
//!     let mut tape = Tape::new();
//!     let sq = ops::square(&mut tape, w.tensor())?;
//!     let loss = ops::sum_all(&mut tape, &sq)?;
//!     let grads = tape.backward(&loss)?;
//!     let lr = plan.lr_at(opt.steps_taken());
//!     opt.step(&mut [&mut w], &grads, lr)?;
//! }
//! assert_eq!(opt.steps_taken(), 3);
//! # Ok::<(), retort::Error>(())
//! ```

mod adam;
mod clip;
#[cfg(feature = "cuda")]
mod gpu;
mod schedule;
mod sgd;

pub use clip::{clip_grad_norm, grad_norm};
pub use schedule::{LrPlan, LrSchedule};

use crate::autograd::{Gradients, Param};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

fn default_beta1() -> f32 {
    0.9
}

fn default_beta2() -> f32 {
    0.999
}

fn default_eps() -> f32 {
    1e-8
}

fn default_adamw_weight_decay() -> f32 {
    0.01
}

/// Which optimizer to use, with its hyper-parameters (the learning rate is
/// given at each step). In JSON: `{"kind": "sgd", "momentum": 0.9, …}`,
/// `{"kind": "adam", …}`, `{"kind": "adamw", …}` (also `"adam_w"`); fields
/// left out take the `torch.optim` defaults.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OptimizerConfig {
    /// Stochastic gradient descent with (optionally Nesterov) momentum, as `torch.optim.SGD`.
    Sgd {
        /// Momentum factor in `[0, 1)`; 0 for plain SGD.
        #[serde(default)]
        momentum: f32,
        /// L2 penalty added to the gradient (`g + wd·p`), at least 0.
        #[serde(default)]
        weight_decay: f32,
        /// Nesterov momentum (needs a positive momentum).
        #[serde(default)]
        nesterov: bool,
    },
    /// Adam, as `torch.optim.Adam` (amsgrad off).
    Adam {
        /// Decay of the first-moment estimate, in `[0, 1)` (default 0.9).
        #[serde(default = "default_beta1")]
        beta1: f32,
        /// Decay of the second-moment estimate, in `[0, 1)` (default 0.999).
        #[serde(default = "default_beta2")]
        beta2: f32,
        /// Added to the denominator, positive (default 1e-8).
        #[serde(default = "default_eps")]
        eps: f32,
        /// L2 penalty added to the gradient, as `torch.optim.Adam` (default 0).
        #[serde(default)]
        weight_decay: f32,
    },
    /// AdamW, as `torch.optim.AdamW` (amsgrad off).
    #[serde(rename = "adamw", alias = "adam_w")]
    AdamW {
        /// Decay of the first-moment estimate, in `[0, 1)` (default 0.9).
        #[serde(default = "default_beta1")]
        beta1: f32,
        /// Decay of the second-moment estimate, in `[0, 1)` (default 0.999).
        #[serde(default = "default_beta2")]
        beta2: f32,
        /// Added to the denominator, positive (default 1e-8).
        #[serde(default = "default_eps")]
        eps: f32,
        /// Decoupled weight decay: `p ← p·(1 - lr·wd)` before the Adam
        /// update, as `torch.optim.AdamW` (default 0.01).
        #[serde(default = "default_adamw_weight_decay")]
        weight_decay: f32,
    },
}

impl OptimizerConfig {
    /// SGD with `momentum`, no weight decay, no Nesterov.
    pub fn sgd(momentum: f32) -> Self {
        OptimizerConfig::Sgd {
            momentum,
            weight_decay: 0.0,
            nesterov: false,
        }
    }

    /// Adam with the `torch.optim.Adam` defaults: betas (0.9, 0.999), eps
    /// 1e-8, no weight decay.
    pub fn adam() -> Self {
        OptimizerConfig::Adam {
            beta1: default_beta1(),
            beta2: default_beta2(),
            eps: default_eps(),
            weight_decay: 0.0,
        }
    }

    /// AdamW with the `torch.optim.AdamW` defaults: betas (0.9, 0.999), eps
    /// 1e-8, weight decay 0.01.
    pub fn adamw() -> Self {
        OptimizerConfig::AdamW {
            beta1: default_beta1(),
            beta2: default_beta2(),
            eps: default_eps(),
            weight_decay: default_adamw_weight_decay(),
        }
    }

    /// The names of the per-parameter buffers this optimizer keeps, in the
    /// order they are stored (the names of `torch.optim` state entries).
    fn buffer_names(&self) -> &'static [&'static str] {
        match self {
            OptimizerConfig::Sgd { momentum, .. } if *momentum != 0.0 => &["momentum_buffer"],
            OptimizerConfig::Sgd { .. } => &[],
            OptimizerConfig::Adam { .. } | OptimizerConfig::AdamW { .. } => {
                &["exp_avg", "exp_avg_sq"]
            }
        }
    }

    /// Whether a per-parameter step count is part of the state (Adam's bias correction).
    /// The hyper-parameters of one update at learning rate `lr`.
    fn rule(&self, lr: f32) -> Rule {
        match *self {
            OptimizerConfig::Sgd {
                momentum,
                weight_decay,
                nesterov,
            } => Rule::Sgd(sgd::SgdHyper {
                lr,
                momentum,
                weight_decay,
                nesterov,
            }),
            OptimizerConfig::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
            }
            | OptimizerConfig::AdamW {
                beta1,
                beta2,
                eps,
                weight_decay,
            } => Rule::Adam(adam::AdamHyper {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
                decoupled: matches!(self, OptimizerConfig::AdamW { .. }),
            }),
        }
    }

    fn keeps_step(&self) -> bool {
        !matches!(self, OptimizerConfig::Sgd { .. })
    }

    /// The same optimiser with another weight decay (L2 for SGD and Adam,
    /// decoupled for AdamW).
    pub fn with_weight_decay(mut self, decay: f32) -> Self {
        match &mut self {
            OptimizerConfig::Sgd { weight_decay, .. }
            | OptimizerConfig::Adam { weight_decay, .. }
            | OptimizerConfig::AdamW { weight_decay, .. } => *weight_decay = decay,
        }
        self
    }

    /// Checks the hyper-parameters: momentum and betas in `[0, 1)`, eps
    /// positive, weight decay at least 0, all finite; Nesterov needs a
    /// positive momentum.
    pub fn validate(&self) -> Result<()> {
        const OP: &str = "OptimizerConfig";
        let unit = |name: &str, v: f32| {
            if (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(Error::invalid(
                    OP,
                    format!("{name} must be in [0, 1), got {v}"),
                ))
            }
        };
        let decay = |v: f32| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(Error::invalid(
                    OP,
                    format!("weight_decay must be finite and at least 0, got {v}"),
                ))
            }
        };
        match *self {
            OptimizerConfig::Sgd {
                momentum,
                weight_decay,
                nesterov,
            } => {
                unit("momentum", momentum)?;
                decay(weight_decay)?;
                if nesterov && momentum <= 0.0 {
                    return Err(Error::invalid(OP, "nesterov momentum needs momentum > 0"));
                }
            }
            OptimizerConfig::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
            }
            | OptimizerConfig::AdamW {
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                unit("beta1", beta1)?;
                unit("beta2", beta2)?;
                if !(eps.is_finite() && eps > 0.0) {
                    return Err(Error::invalid(
                        OP,
                        format!("eps must be positive and finite, got {eps}"),
                    ));
                }
                decay(weight_decay)?;
            }
        }
        Ok(())
    }
}

/// One update's rule and hyper-parameters, for the CPU and GPU updates alike.
#[derive(Clone, Copy, Debug)]
enum Rule {
    Sgd(sgd::SgdHyper),
    Adam(adam::AdamHyper),
}

/// Everything an [`Optimizer`] needs to continue exactly where it stopped:
/// the number of steps taken and named f32 buffers.
///
/// Buffers are named `"{i}.{name}"` after the position `i` of the parameter
/// and the `torch.optim` state entry: `momentum_buffer` (SGD with momentum),
/// `exp_avg`, `exp_avg_sq` and `step` (Adam, AdamW; `step` holds one value,
/// the parameter's own update count, as torch keeps it, exact up to 2^24).
/// Parameters that never had a gradient have no entries.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OptimizerState {
    /// Number of [`Optimizer::step`] calls made.
    pub step: u64,
    /// The per-parameter buffers, ordered by parameter position then name.
    pub buffers: Vec<(String, Vec<f32>)>,
}

/// The state of one parameter: its update count and buffers (named by
/// [`OptimizerConfig::buffer_names`]).
#[derive(Clone, Debug)]
struct ParamState {
    step: u64,
    /// On the device of the parameter (moved there at its next update).
    buffers: Vec<Tensor>,
}

/// An optimizer: a configuration, the state of each parameter (by position)
/// and the number of steps taken.
#[derive(Clone, Debug)]
pub struct Optimizer {
    config: OptimizerConfig,
    /// Per-parameter state by position; `None` until the parameter's first update.
    state: Vec<Option<ParamState>>,
    /// The number of parameters, fixed by the first step (unknown again after
    /// [`Optimizer::load_state`] until the next step).
    num_params: Option<usize>,
    step: u64,
}

impl Optimizer {
    /// An optimizer with `config`, which must pass [`OptimizerConfig::validate`].
    pub fn new(config: OptimizerConfig) -> Result<Optimizer> {
        config.validate()?;
        Ok(Optimizer {
            config,
            state: Vec::new(),
            num_params: None,
            step: 0,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &OptimizerConfig {
        &self.config
    }

    /// One update of every parameter that has a gradient in `grads`, with
    /// learning rate `lr`, exactly as `torch.optim` (the SGD momentum buffer
    /// starts as the first gradient; Adam's bias correction uses each
    /// parameter's own update count).
    ///
    /// Parameters are identified by their position in `params`, which must
    /// keep the same order and count from step to step. A parameter without
    /// a gradient is left unchanged, and so is its state.
    ///
    /// Errors, changing nothing, when the number of parameters differs from
    /// the previous step, a gradient's shape differs from its parameter's, a
    /// restored buffer does not fit its parameter, or `lr` is negative or not
    /// finite.
    pub fn step(&mut self, params: &mut [&mut Param], grads: &Gradients, lr: f32) -> Result<()> {
        const OP: &str = "Optimizer::step";
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(Error::invalid(
                OP,
                format!("learning rate must be finite and at least 0, got {lr}"),
            ));
        }
        if let Some(n) = self.num_params {
            if n != params.len() {
                return Err(Error::invalid(
                    OP,
                    format!(
                        "{} parameters given, but the optimizer was stepped with {n}",
                        params.len()
                    ),
                ));
            }
        }
        if self.state.len() > params.len() {
            return Err(Error::invalid(
                OP,
                format!(
                    "{} parameters given, but the optimizer state has entries for {}",
                    params.len(),
                    self.state.len()
                ),
            ));
        }
        for (i, p) in params.iter().enumerate() {
            let Some(g) = p.grad(grads) else { continue };
            if g.shape() != p.tensor().shape() {
                return Err(Error::shape(
                    OP,
                    format!(
                        "gradient of shape {:?} for parameter {i} of shape {:?}",
                        g.shape(),
                        p.tensor().shape()
                    ),
                ));
            }
            if let Some(Some(st)) = self.state.get(i) {
                let numel = p.tensor().numel();
                if let Some(b) = st.buffers.iter().find(|b| b.numel() != numel) {
                    return Err(Error::invalid(
                        OP,
                        format!(
                            "optimizer state of parameter {i} holds {} values, the parameter {numel}",
                            b.numel()
                        ),
                    ));
                }
            }
        }

        self.num_params = Some(params.len());
        self.state.resize(params.len(), None);
        let names = self.config.buffer_names();
        for (i, p) in params.iter_mut().enumerate() {
            let Some(g) = grads.get(p.tensor()) else {
                continue;
            };
            let device = p.device();
            let first = self.state[i].is_none();
            if first {
                let zeros = Tensor::zeros(&[g.numel()])?.to_device(device)?;
                self.state[i] = Some(ParamState {
                    step: 0,
                    buffers: vec![zeros; names.len()],
                });
            }
            let Some(st) = self.state[i].as_mut() else {
                continue;
            };
            for b in &mut st.buffers {
                if b.device() != device {
                    *b = b.to_device(device)?;
                }
            }
            st.step += 1;
            #[cfg(feature = "cuda")]
            if let Some(dev) = crate::tensor::cuda_device_of(OP, &[p.tensor(), g])? {
                gpu::update(&dev, self.config.rule(lr), p, g, st, first)?;
                continue;
            }
            let values = p.values_mut();
            match self.config.rule(lr) {
                Rule::Sgd(h) => {
                    let buf = st.buffers.first_mut().map(|b| b.data_mut());
                    sgd::update(h, values, g.data(), buf, first);
                }
                Rule::Adam(h) => {
                    let (m, v) = st.buffers.split_at_mut(1);
                    adam::update(
                        h,
                        values,
                        g.data(),
                        m[0].data_mut(),
                        v[0].data_mut(),
                        st.step,
                    );
                }
            }
        }
        self.step += 1;
        Ok(())
    }

    /// Number of [`Optimizer::step`] calls made (restored by [`Optimizer::load_state`]).
    pub fn steps_taken(&self) -> u64 {
        self.step
    }

    /// A copy of the state, for a checkpoint; [`Optimizer::load_state`]
    /// restores it so that training continues bit for bit.
    pub fn state(&self) -> OptimizerState {
        let names = self.config.buffer_names();
        let mut buffers = Vec::new();
        for (i, st) in self.state.iter().enumerate() {
            let Some(st) = st else { continue };
            for (name, buf) in names.iter().zip(&st.buffers) {
                buffers.push((format!("{i}.{name}"), buf.to_vec()));
            }
            if self.config.keeps_step() {
                buffers.push((format!("{i}.step"), vec![st.step as f32]));
            }
        }
        OptimizerState {
            step: self.step,
            buffers,
        }
    }

    /// Restores a state made by [`Optimizer::state`] of an optimizer of the
    /// same kind. Errors, changing nothing, on a name this optimizer does not
    /// keep, a missing or duplicated buffer, buffers of one parameter with
    /// different lengths, or a step count that is not a whole number between 1
    /// and the state's `step`. Whether the buffers fit the parameters is
    /// checked at the next [`Optimizer::step`].
    pub fn load_state(&mut self, state: OptimizerState) -> Result<()> {
        const OP: &str = "Optimizer::load_state";
        let names = self.config.buffer_names();
        let keeps_step = self.config.keeps_step();
        // Per parameter: the buffers by name index, and the step count.
        type Slot = (Vec<Option<Vec<f32>>>, Option<u64>);
        let mut slots: Vec<Option<Slot>> = Vec::new();
        for (full, values) in state.buffers {
            let bad = || Error::invalid(OP, format!("unexpected optimizer buffer {full:?}"));
            let (index, name) = full.split_once('.').ok_or_else(bad)?;
            let index: usize = index.parse().map_err(|_| bad())?;
            if index >= 1 << 24 {
                return Err(bad());
            }
            if slots.len() <= index {
                slots.resize(index + 1, None);
            }
            let slot = slots[index].get_or_insert_with(|| (vec![None; names.len()], None));
            if name == "step" && keeps_step {
                let count = match values.as_slice() {
                    [v] if v.fract() == 0.0 && *v >= 1.0 && (*v as f64) <= state.step as f64 => {
                        *v as u64
                    }
                    _ => {
                        return Err(Error::invalid(
                            OP,
                            format!(
                            "{full:?} must hold one whole number between 1 and {}, got {values:?}",
                            state.step
                        ),
                        ))
                    }
                };
                if slot.1.replace(count).is_some() {
                    return Err(Error::invalid(OP, format!("duplicate buffer {full:?}")));
                }
                continue;
            }
            let k = names.iter().position(|n| *n == name).ok_or_else(bad)?;
            if slot.0[k].replace(values).is_some() {
                return Err(Error::invalid(OP, format!("duplicate buffer {full:?}")));
            }
        }
        let mut restored = Vec::with_capacity(slots.len());
        for (i, slot) in slots.into_iter().enumerate() {
            let Some((bufs, step)) = slot else {
                restored.push(None);
                continue;
            };
            let mut buffers = Vec::with_capacity(names.len());
            for (name, b) in names.iter().zip(bufs) {
                buffers.push(
                    b.ok_or_else(|| Error::invalid(OP, format!("missing buffer \"{i}.{name}\"")))?,
                );
            }
            if buffers.iter().any(|b| b.len() != buffers[0].len()) {
                return Err(Error::invalid(
                    OP,
                    format!("buffers of parameter {i} have different lengths"),
                ));
            }
            let buffers = buffers
                .into_iter()
                .map(|b| {
                    let len = b.len();
                    Tensor::from_vec(b, &[len])
                })
                .collect::<Result<Vec<_>>>()?;
            let step = match (keeps_step, step) {
                (true, Some(s)) => s,
                (true, None) => {
                    return Err(Error::invalid(OP, format!("missing buffer \"{i}.step\"")))
                }
                // SGD keeps no count: a momentum buffer means at least one update.
                (false, _) => 1,
            };
            restored.push(Some(ParamState { step, buffers }));
        }
        self.state = restored;
        self.num_params = None;
        self.step = state.step;
        Ok(())
    }
}
