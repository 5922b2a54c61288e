//! Learning-rate plans: an optional linear warm-up followed by a schedule.

use crate::error::{Error, Result};

/// How the learning rate evolves after the warm-up.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LrSchedule {
    /// The base learning rate throughout.
    Constant,
    /// The base learning rate multiplied by `gamma` every `every` steps after
    /// the warm-up (`torch.optim.lr_scheduler.StepLR`).
    Step {
        /// Steps between two decays (at least 1).
        every: u64,
        /// Factor applied at each decay (positive and finite).
        gamma: f32,
    },
    /// Cosine annealing from the base learning rate, at the end of the
    /// warm-up, down to `min_lr` at `total_steps`, and `min_lr` beyond.
    Cosine {
        /// The final learning rate (between 0 and the base learning rate).
        min_lr: f32,
    },
}

/// A complete learning-rate plan: base rate, warm-up and schedule.
///
/// Steps are counted from 0: `lr_at(s)` is the rate of the update taken when
/// `s` updates have already been made (pass [`Optimizer::steps_taken`]
/// before calling [`Optimizer::step`]).
///
/// [`Optimizer::steps_taken`]: crate::optim::Optimizer::steps_taken
/// [`Optimizer::step`]: crate::optim::Optimizer::step
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LrPlan {
    /// The learning rate reached at the end of the warm-up.
    pub base_lr: f32,
    /// The schedule that follows the warm-up.
    pub schedule: LrSchedule,
    /// Steps of linear warm-up from 0: `lr_at(s) = base_lr · s / warmup_steps`
    /// for `s < warmup_steps`. 0 (the default) for none.
    #[serde(default)]
    pub warmup_steps: u64,
    /// The planned number of updates; the cosine schedule ends there.
    pub total_steps: u64,
}

impl LrPlan {
    /// A constant learning rate over `total_steps`, without warm-up.
    pub fn constant(base_lr: f32, total_steps: u64) -> LrPlan {
        LrPlan {
            base_lr,
            schedule: LrSchedule::Constant,
            warmup_steps: 0,
            total_steps,
        }
    }

    /// The learning rate of the update taken after `step` updates.
    ///
    /// Warm-up: `base_lr · step / warmup_steps` while `step < warmup_steps`
    /// (so the first update of a warm-up has rate 0, as in the usual
    /// `LambdaLR` warm-up). After it, with `s = step - warmup_steps` and
    /// `S = total_steps - warmup_steps`:
    /// constant `base_lr`; step `base_lr · gamma^⌊s / every⌋`; cosine
    /// `min_lr + (base_lr - min_lr) · (1 + cos(π · min(s / S, 1))) / 2`.
    pub fn lr_at(&self, step: u64) -> f32 {
        let base = self.base_lr as f64;
        if step < self.warmup_steps {
            return (base * step as f64 / self.warmup_steps as f64) as f32;
        }
        let s = step - self.warmup_steps;
        match self.schedule {
            LrSchedule::Constant => self.base_lr,
            LrSchedule::Step { every, gamma } => {
                let decays = s / every.max(1);
                let exponent = i32::try_from(decays).unwrap_or(i32::MAX);
                (base * (gamma as f64).powi(exponent)) as f32
            }
            LrSchedule::Cosine { min_lr } => {
                let span = self.total_steps.saturating_sub(self.warmup_steps);
                if s >= span {
                    return min_lr;
                }
                let progress = s as f64 / span as f64;
                let min = min_lr as f64;
                let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
                (min + (base - min) * cosine) as f32
            }
        }
    }

    /// Checks the plan: a positive finite base rate, at least one step, a
    /// warm-up no longer than the plan, a step schedule with `every >= 1` and
    /// a positive finite `gamma`, a cosine `min_lr` in `[0, base_lr]`.
    pub fn validate(&self) -> Result<()> {
        const OP: &str = "LrPlan";
        if !(self.base_lr.is_finite() && self.base_lr > 0.0) {
            return Err(Error::invalid(
                OP,
                format!("base_lr must be positive and finite, got {}", self.base_lr),
            ));
        }
        if self.total_steps == 0 {
            return Err(Error::invalid(OP, "total_steps must be at least 1"));
        }
        if self.warmup_steps > self.total_steps {
            return Err(Error::invalid(
                OP,
                format!(
                    "warmup_steps ({}) exceeds total_steps ({})",
                    self.warmup_steps, self.total_steps
                ),
            ));
        }
        match self.schedule {
            LrSchedule::Constant => {}
            LrSchedule::Step { every, gamma } => {
                if every == 0 {
                    return Err(Error::invalid(OP, "step schedule needs every >= 1"));
                }
                if !(gamma.is_finite() && gamma > 0.0) {
                    return Err(Error::invalid(
                        OP,
                        format!("step schedule gamma must be positive and finite, got {gamma}"),
                    ));
                }
            }
            LrSchedule::Cosine { min_lr } => {
                if !(0.0..=self.base_lr).contains(&min_lr) {
                    return Err(Error::invalid(
                        OP,
                        format!(
                            "cosine min_lr must be in [0, base_lr = {}], got {min_lr}",
                            self.base_lr
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}
