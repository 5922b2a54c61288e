//! Values that change over a run: loss weights and the temperature.
//!
//! In a configuration a schedule is either a plain number (a constant) or an
//! object with one key naming its shape:
//!
//! - `{"linear": {"from": 0.0, "to": 1.0, "steps": 1000}}`: a straight line
//!   from `from` to `to` over the first `steps` steps (the whole run when
//!   `steps` is left out), `to` afterwards;
//! - `{"dan_ramp": {"max": 1.0, "gamma": 10.0}}`: `max · (2 / (1 + exp(−γ·p)) − 1)`
//!   with `p` the fraction of the run done, the ramp of the domain-adaptation
//!   weight in Long et al. (DAN, ICML 2015, §4, after Ganin & Lempitsky 2015);
//! - `{"step_off": {"value": 1.0, "after_epoch": 5}}` or `… "after_step": 800`:
//!   `value` until then, 0 afterwards (early-stopped KD, Cho & Hariharan, ICCV 2019).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Where a run stands when a schedule is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunPoint {
    /// Optimiser steps taken so far.
    pub step: u64,
    /// Steps the run will take in all.
    pub total: u64,
    /// The epoch the current batch belongs to (from 0).
    pub epoch: u64,
}

/// A shaped schedule, as it is written in JSON (one key naming the shape).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Shape {
    /// From `from` to `to` linearly over `steps` steps (the whole run if absent).
    Linear {
        /// Value at step 0.
        from: f32,
        /// Value at the end of the ramp and afterwards.
        to: f32,
        /// Length of the ramp in steps.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        steps: Option<u64>,
    },
    /// `max · (2 / (1 + exp(−gamma · p)) − 1)`, p = step / total.
    DanRamp {
        /// The value approached at the end of the run.
        max: f32,
        /// Steepness (10 in the paper).
        #[serde(default = "default_gamma")]
        gamma: f32,
    },
    /// `value`, then 0 from `after_step` steps or `after_epoch` epochs on.
    StepOff {
        /// The value while on.
        value: f32,
        /// The first step at which the value is 0.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after_step: Option<u64>,
        /// The first epoch at which the value is 0.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after_epoch: Option<u64>,
    },
}

fn default_gamma() -> f32 {
    10.0
}

/// A loss weight or temperature over the run: a constant or a [`Shape`].
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Schedule {
    /// The same value throughout.
    Constant(f32),
    /// A value that changes with the run's progress.
    Shaped(Shape),
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        match value {
            serde_json::Value::Number(n) => n
                .as_f64()
                .map(|v| Schedule::Constant(v as f32))
                .ok_or_else(|| serde::de::Error::custom("not a finite number")),
            serde_json::Value::Object(_) => serde_json::from_value::<Shape>(value)
                .map(Schedule::Shaped)
                .map_err(|e| {
                    serde::de::Error::custom(format!(
                        "a schedule is a number or one of {{\"linear\": …}}, {{\"dan_ramp\": …}}, {{\"step_off\": …}}: {e}"
                    ))
                }),
            other => Err(serde::de::Error::custom(format!(
                "a schedule is a number or an object, got {other}"
            ))),
        }
    }
}

impl From<f32> for Schedule {
    fn from(v: f32) -> Schedule {
        Schedule::Constant(v)
    }
}

impl Schedule {
    /// The value at `at`.
    pub fn at(&self, at: RunPoint) -> f32 {
        match self {
            Schedule::Constant(v) => *v,
            Schedule::Shaped(Shape::Linear { from, to, steps }) => {
                let span = steps.unwrap_or(at.total).max(1);
                let p = (at.step as f64 / span as f64).min(1.0) as f32;
                from + (to - from) * p
            }
            Schedule::Shaped(Shape::DanRamp { max, gamma }) => {
                let p = at.step as f64 / at.total.max(1) as f64;
                max * (2.0 / (1.0 + (-(*gamma as f64) * p).exp()) - 1.0) as f32
            }
            Schedule::Shaped(Shape::StepOff {
                value,
                after_step,
                after_epoch,
            }) => {
                let off = after_step.is_some_and(|s| at.step >= s)
                    || after_epoch.is_some_and(|e| at.epoch >= e);
                if off {
                    0.0
                } else {
                    *value
                }
            }
        }
    }

    /// Whether the value is 0 throughout the rest of the run from `at` on,
    /// so that the work behind the term can be skipped.
    pub fn is_off_from(&self, at: RunPoint) -> bool {
        match self {
            Schedule::Constant(v) => *v == 0.0,
            Schedule::Shaped(Shape::StepOff { value, .. }) => *value == 0.0 || self.at(at) == 0.0,
            Schedule::Shaped(Shape::Linear { from, to, steps }) => {
                *to == 0.0 && (*from == 0.0 || at.step >= steps.unwrap_or(at.total))
            }
            Schedule::Shaped(Shape::DanRamp { max, .. }) => *max == 0.0,
        }
    }

    /// The values the schedule passes through that bound it: both ends of a
    /// ramp, the value of a step.
    fn extremes(&self) -> Vec<f32> {
        match self {
            Schedule::Constant(v) => vec![*v],
            Schedule::Shaped(Shape::Linear { from, to, .. }) => vec![*from, *to],
            Schedule::Shaped(Shape::DanRamp { max, gamma }) => vec![*max, *gamma],
            Schedule::Shaped(Shape::StepOff {
                value,
                after_step,
                after_epoch,
            }) => {
                if after_step.is_none() && after_epoch.is_none() {
                    return vec![f32::NAN];
                }
                vec![*value]
            }
        }
    }

    /// Checks a loss weight: finite and at least 0 everywhere. `what` names
    /// the weight in the message (e.g. `strategy.objective.kd.weight`).
    pub fn validate_weight(&self, what: &str) -> Result<()> {
        if let Schedule::Shaped(Shape::StepOff {
            after_step: None,
            after_epoch: None,
            ..
        }) = self
        {
            return Err(Error::invalid(
                "config",
                format!("{what}: step_off needs after_step or after_epoch"),
            ));
        }
        if let Some(bad) = self
            .extremes()
            .into_iter()
            .find(|v| !(v.is_finite() && *v >= 0.0))
        {
            return Err(Error::invalid(
                "config",
                format!("{what} must be finite and at least 0, got {bad}"),
            ));
        }
        Ok(())
    }

    /// Checks a temperature: a positive constant or a linear anneal between
    /// two positive values.
    pub fn validate_temperature(&self, what: &str) -> Result<()> {
        match self {
            Schedule::Constant(_) | Schedule::Shaped(Shape::Linear { .. }) => {}
            _ => {
                return Err(Error::invalid(
                    "config",
                    format!("{what}: a temperature is a number or {{\"linear\": {{\"from\": …, \"to\": …}}}}"),
                ))
            }
        }
        if let Some(bad) = self
            .extremes()
            .into_iter()
            .find(|v| !(v.is_finite() && *v > 0.0))
        {
            return Err(Error::invalid(
                "config",
                format!("{what} must be positive and finite, got {bad}"),
            ));
        }
        Ok(())
    }
}
