//! `retort train`: train a CRNN recogniser with CTC.

use crate::data::batch::WidthPolicy;
use crate::error::{Error, Result};
use crate::nn::CrnnConfig;
use crate::optim::{LrSchedule, OptimizerConfig};
use crate::train::{resume, train, Budget, ModelSource, TrainConfig};
use clap::ValueEnum;
use std::path::{Path, PathBuf};

/// Optimisers selectable on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OptimizerKind {
    /// SGD with momentum (`--momentum`), as torch.optim.SGD.
    Sgd,
    /// Adam, as torch.optim.Adam (weight decay as L2).
    Adam,
    /// AdamW, as torch.optim.AdamW (decoupled weight decay).
    Adamw,
}

/// Learning-rate schedules selectable on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ScheduleKind {
    /// The same rate throughout.
    Constant,
    /// Multiply by `--gamma` every `--step-every` steps.
    Step,
    /// Cosine decay to `--min-lr` at the end of the budget.
    Cosine,
}

/// Arguments of `retort train`.
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// A preset (crnn-t, crnn-s), a model configuration JSON file, or a checkpoint folder to fine-tune.
    #[arg(long, required_unless_present = "resume")]
    pub model: Option<String>,
    /// Training data folders (each with labels.txt).
    #[arg(long, required_unless_present = "resume", num_args = 1..)]
    pub train: Vec<PathBuf>,
    /// Validation data folders.
    #[arg(long, required_unless_present = "resume", num_args = 1..)]
    pub val: Vec<PathBuf>,
    /// Output folder for checkpoints, metrics and plots.
    #[arg(long, required_unless_present = "resume")]
    pub out: Option<PathBuf>,
    /// Continue the interrupted run in this output folder from its last
    /// checkpoint (every other option is taken from its train_config.json).
    #[arg(long, conflicts_with_all = ["model", "train", "val", "out"])]
    pub resume: Option<PathBuf>,
    /// Charset file, one symbol per line (default: 0-9a-z).
    #[arg(long)]
    pub charset: Option<PathBuf>,
    /// Optimiser.
    #[arg(long, value_enum, default_value = "adam")]
    pub optimizer: OptimizerKind,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f32,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f32,
    /// Weight decay (L2 for SGD and Adam, decoupled for AdamW; AdamW defaults to 0.01).
    #[arg(long)]
    pub weight_decay: Option<f32>,
    /// Learning-rate schedule after warm-up.
    #[arg(long, value_enum, default_value = "cosine")]
    pub schedule: ScheduleKind,
    /// Step schedule: steps between decays.
    #[arg(long, default_value_t = 1000)]
    pub step_every: u64,
    /// Step schedule: decay factor.
    #[arg(long, default_value_t = 0.1)]
    pub gamma: f32,
    /// Cosine schedule: final learning rate.
    #[arg(long, default_value_t = 1e-5)]
    pub min_lr: f32,
    /// Linear warm-up steps.
    #[arg(long, default_value_t = 200)]
    pub warmup: u64,
    /// Clip the global gradient norm to this value (0 turns clipping off).
    #[arg(long, default_value_t = 5.0)]
    pub clip: f32,
    /// Train for this many epochs (default 10).
    #[arg(long, conflicts_with = "steps")]
    pub epochs: Option<u64>,
    /// Train for this many steps instead of epochs.
    #[arg(long)]
    pub steps: Option<u64>,
    /// Images per batch.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Validate and checkpoint every this many steps.
    #[arg(long, default_value_t = 500)]
    pub val_every: u64,
    /// Image widths: `pad` (batch padded to its widest line, at most 512), `pad:MAX`, or `fixed:W` (e.g. fixed:128).
    #[arg(long, default_value = "pad")]
    pub width: String,
    /// Strength of training-time augmentation (0 = none).
    #[arg(long, default_value_t = 0.3)]
    pub augment: f32,
    /// Skip bad label lines (counted and reported) instead of stopping.
    #[arg(long)]
    pub skip_bad: bool,
    /// Also keep a checkpoint snapshots/step-N every this many steps (e.g. to
    /// pick an early-stopped teacher for `retort distill`).
    #[arg(long)]
    pub snapshot_every: Option<u64>,
    /// Where to compute: cpu, cuda, cuda:N, or auto (the GPU when one is usable, otherwise the CPU).
    #[arg(long, default_value = "cpu")]
    pub device: crate::DeviceChoice,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Parses `pad`, `pad:MAX` or `fixed:W`.
pub fn parse_width(text: &str) -> Result<WidthPolicy> {
    let bad = || {
        Error::invalid(
            "--width",
            format!("`{text}` is not `pad`, `pad:MAX` or `fixed:W` (W, MAX positive integers)"),
        )
    };
    let number = |s: &str| s.parse::<usize>().ok().filter(|&v| v > 0).ok_or_else(bad);
    match text.split_once(':') {
        None if text == "pad" => Ok(WidthPolicy::Pad {
            max_width: 512,
            multiple: 4,
        }),
        Some(("pad", max)) => Ok(WidthPolicy::Pad {
            max_width: number(max)?,
            multiple: 4,
        }),
        Some(("fixed", w)) => Ok(WidthPolicy::Fixed(number(w)?)),
        _ => Err(bad()),
    }
}

/// Resolves `--model`: a folder is a checkpoint, a `.json` file a model configuration, anything else a preset.
pub fn model_source(spec: &str) -> Result<ModelSource> {
    let path = Path::new(spec);
    if path.is_dir() {
        return Ok(ModelSource::Checkpoint(path.to_path_buf()));
    }
    if spec.ends_with(".json") {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let cfg: CrnnConfig = serde_json::from_str(&text).map_err(|e| {
            Error::data(
                path,
                Some(e.line()),
                format!("not a model configuration: {e}"),
            )
        })?;
        cfg.validate()?;
        return Ok(ModelSource::Config(cfg));
    }
    CrnnConfig::preset(spec)?;
    Ok(ModelSource::Preset(spec.to_string()))
}

impl TrainArgs {
    /// The training configuration these arguments describe.
    pub fn to_config(&self) -> Result<TrainConfig> {
        let optimizer = match self.optimizer {
            OptimizerKind::Sgd => OptimizerConfig::sgd(self.momentum),
            OptimizerKind::Adam => OptimizerConfig::adam(),
            OptimizerKind::Adamw => OptimizerConfig::adamw(),
        };
        let optimizer = match self.weight_decay {
            Some(decay) => optimizer.with_weight_decay(decay),
            None => optimizer,
        };
        let schedule = match self.schedule {
            ScheduleKind::Constant => LrSchedule::Constant,
            ScheduleKind::Step => LrSchedule::Step {
                every: self.step_every,
                gamma: self.gamma,
            },
            ScheduleKind::Cosine => LrSchedule::Cosine {
                min_lr: self.min_lr,
            },
        };
        let missing = |what: &str| Error::invalid("train", format!("{what} is required"));
        Ok(TrainConfig {
            model: model_source(self.model.as_deref().ok_or_else(|| missing("--model"))?)?,
            train: self.train.clone(),
            val: self.val.clone(),
            out: self.out.clone().ok_or_else(|| missing("--out"))?,
            charset: self.charset.clone(),
            optimizer,
            lr: self.lr,
            schedule,
            warmup_steps: self.warmup,
            clip_norm: (self.clip > 0.0).then_some(self.clip),
            batch_size: self.batch_size,
            budget: match self.steps {
                Some(s) => Budget::Steps(s),
                None => Budget::Epochs(self.epochs.unwrap_or(10)),
            },
            seed: self.seed,
            val_every: self.val_every,
            log_every: 25,
            width: parse_width(&self.width)?,
            augment: self.augment,
            skip_bad: self.skip_bad,
            progress: !self.quiet,
            snapshot_every: self.snapshot_every,
            device: self.device,
        })
    }
}

/// Runs `retort train` (or `retort train --resume DIR`).
pub fn run(args: TrainArgs) -> Result<()> {
    let (s, out) = match &args.resume {
        Some(dir) => (resume(dir)?, dir.clone()),
        None => {
            let cfg = args.to_config()?;
            (train(&cfg)?, cfg.out)
        }
    };
    println!(
        "trained {} steps in {:.0} s ({:.1} images/s, {} parameters)",
        s.steps, s.seconds, s.images_per_s, s.parameters
    );
    println!(
        "best validation exact match {:.2}% (CER {:.2}%) in {}",
        100.0 * s.best_exact_match,
        100.0 * s.best_cer,
        out.join("best").display()
    );
    println!(
        "last validation exact match {:.2}% (CER {:.2}%) in {}",
        100.0 * s.last_exact_match,
        100.0 * s.last_cer,
        out.join("last").display()
    );
    Ok(())
}
