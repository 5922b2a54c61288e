//! What a training run is told: data, model, optimiser, schedule and budget.

use crate::data::batch::WidthPolicy;
use crate::error::{Error, Result};
use crate::nn::CrnnConfig;
use crate::optim::{LrSchedule, OptimizerConfig};
use crate::DeviceChoice;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where the model to train comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ModelSource {
    /// A preset by name (`crnn-t`, `crnn-s`), sized to the charset.
    Preset(String),
    /// A full model configuration (its class count must fit the charset).
    Config(CrnnConfig),
    /// Continue from the weights of a checkpoint folder (fine-tuning).
    Checkpoint(PathBuf),
}

/// How long to train.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Budget {
    /// Whole passes over the training data.
    Epochs(u64),
    /// Optimiser steps (batches).
    Steps(u64),
}

/// A training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// The model.
    pub model: ModelSource,
    /// Training data folders (PaddleOCR format), mixed.
    pub train: Vec<PathBuf>,
    /// Validation data folders.
    pub val: Vec<PathBuf>,
    /// Output folder: `best/`, `last/`, `metrics.jsonl`, `training.svg`.
    pub out: PathBuf,
    /// Charset file (one symbol per line); the default 36 lower-case alphanumerics otherwise.
    #[serde(default)]
    pub charset: Option<PathBuf>,
    /// Optimiser and its hyper-parameters.
    pub optimizer: OptimizerConfig,
    /// Peak learning rate.
    pub lr: f32,
    /// Learning-rate schedule after warm-up.
    pub schedule: LrSchedule,
    /// Linear warm-up steps.
    #[serde(default)]
    pub warmup_steps: u64,
    /// Gradient-norm clipping threshold.
    #[serde(default)]
    pub clip_norm: Option<f32>,
    /// Images per batch.
    pub batch_size: usize,
    /// How long to train.
    pub budget: Budget,
    /// Seed of every random choice (initialisation, shuffling, augmentation, dropout).
    pub seed: u64,
    /// Validate (and checkpoint) every this many steps, and at the end.
    pub val_every: u64,
    /// Log the training loss every this many steps.
    #[serde(default = "default_log_every")]
    pub log_every: u64,
    /// How images are sized into batches.
    pub width: WidthPolicy,
    /// Strength of training-time augmentation (0 = none).
    #[serde(default)]
    pub augment: f32,
    /// Skip bad label lines instead of stopping (they are counted and reported).
    #[serde(default)]
    pub skip_bad: bool,
    /// Show a progress bar.
    #[serde(default = "default_true")]
    pub progress: bool,
    /// Also keep a checkpoint `snapshots/step-N/` every this many steps, e.g.
    /// to pick an early-stopped teacher later (none when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_every: Option<u64>,
    /// Where to compute: `"cpu"` (default), `"cuda"`, `"cuda:N"` or `"auto"`.
    #[serde(default, skip_serializing_if = "DeviceChoice::is_cpu")]
    pub device: DeviceChoice,
}

fn default_log_every() -> u64 {
    25
}

fn default_true() -> bool {
    true
}

impl TrainConfig {
    /// A configuration with the usual defaults for a preset model: Adam at
    /// 1e-3 with 200 warm-up steps and a cosine decay, batch 32, clipping at 5,
    /// padded widths, light augmentation, 10 epochs.
    pub fn new(model: &str, train: Vec<PathBuf>, val: Vec<PathBuf>, out: PathBuf) -> TrainConfig {
        TrainConfig {
            model: ModelSource::Preset(model.to_string()),
            train,
            val,
            out,
            charset: None,
            optimizer: OptimizerConfig::adam(),
            lr: 1e-3,
            schedule: LrSchedule::Cosine { min_lr: 1e-5 },
            warmup_steps: 200,
            clip_norm: Some(5.0),
            batch_size: 32,
            budget: Budget::Epochs(10),
            seed: 0,
            val_every: 500,
            log_every: default_log_every(),
            width: WidthPolicy::Pad {
                max_width: 512,
                multiple: 4,
            },
            augment: 0.3,
            skip_bad: false,
            progress: true,
            snapshot_every: None,
            device: DeviceChoice::Cpu,
        }
    }

    /// Checks ranges and combinations before any work starts.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::invalid("train", m));
        if self.train.is_empty() {
            return bad("no training data folder given".into());
        }
        if self.val.is_empty() {
            return bad("no validation data folder given".into());
        }
        if self.batch_size == 0 {
            return bad("batch size must be at least 1".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("learning rate must be positive, got {}", self.lr));
        }
        if self.val_every == 0 || self.log_every == 0 || self.snapshot_every == Some(0) {
            return bad("val_every, log_every and snapshot_every must be at least 1".into());
        }
        if let Some(c) = self.clip_norm {
            if c.is_nan() || c <= 0.0 {
                return bad(format!("clip norm must be positive, got {c}"));
            }
        }
        if !(0.0..=2.0).contains(&self.augment) {
            return bad(format!(
                "augment strength {} is outside [0, 2]",
                self.augment
            ));
        }
        match self.budget {
            Budget::Epochs(0) | Budget::Steps(0) => {
                bad("the budget must be at least one epoch or step".into())
            }
            _ => self.optimizer.validate(),
        }
    }
}
