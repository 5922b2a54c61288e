//! The schema of `retort distill --config FILE.json`: data, optimiser and
//! budget as for `retort train`, then one strategy with its losses. Every
//! object refuses unknown keys. The README documents every key; `examples/`
//! holds one file per strategy.

use super::schedule::Schedule;
use crate::data::batch::WidthPolicy;
use crate::error::{Error, Result};
use crate::optim::{LrSchedule, OptimizerConfig};
use crate::train::{Budget, ModelSource};
use crate::DeviceChoice;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A distillation run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistillConfig {
    /// Training data folders (PaddleOCR format), mixed.
    pub train: Vec<PathBuf>,
    /// Validation data folders.
    pub val: Vec<PathBuf>,
    /// Output folder.
    pub out: PathBuf,
    /// Charset file; the default 36 lower-case alphanumerics otherwise.
    #[serde(default)]
    pub charset: Option<PathBuf>,
    /// Optimiser of every trained model (default Adam).
    #[serde(default = "OptimizerConfig::adam")]
    pub optimizer: OptimizerConfig,
    /// Peak learning rate (default 1e-3).
    #[serde(default = "default_lr")]
    pub lr: f32,
    /// Learning-rate schedule after warm-up (default cosine to 1e-5).
    #[serde(default = "default_lr_schedule")]
    pub schedule: LrSchedule,
    /// Linear warm-up steps (default 200).
    #[serde(default = "default_warmup")]
    pub warmup_steps: u64,
    /// Gradient-norm clipping (default 5; `null` for none).
    #[serde(default = "default_clip")]
    pub clip_norm: Option<f32>,
    /// Images per batch (default 32).
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// How long each trained model trains.
    pub budget: Budget,
    /// Seed of every random choice.
    #[serde(default)]
    pub seed: u64,
    /// Validate and checkpoint every this many steps, and at the end (default 500).
    #[serde(default = "default_val_every")]
    pub val_every: u64,
    /// Log the loss terms every this many steps (default 25).
    #[serde(default = "default_log_every")]
    pub log_every: u64,
    /// How images are sized into batches (default padded, at most 512 wide).
    #[serde(default = "default_width")]
    pub width: WidthPolicy,
    /// Augmentation strength (default 0; teacher outputs are cached only at 0).
    #[serde(default)]
    pub augment: f32,
    /// Skip bad label lines instead of stopping.
    #[serde(default)]
    pub skip_bad: bool,
    /// Show progress bars (default true).
    #[serde(default = "default_true")]
    pub progress: bool,
    /// What to distil, and how.
    pub strategy: Strategy,
    /// Where to compute: `"cpu"` (default), `"cuda"`, `"cuda:N"` or `"auto"`.
    #[serde(default, skip_serializing_if = "DeviceChoice::is_cpu")]
    pub device: DeviceChoice,
    /// Continue each training loop from its `resume.safetensors` where one
    /// exists (set by `retort distill --resume`, never read from a file).
    #[serde(skip)]
    pub resume: bool,
}

/// A frozen teacher: a checkpoint folder, or a preset name with `weights`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeacherSpec {
    /// A checkpoint folder (e.g. `runs/t/best`, or an earlier snapshot
    /// `runs/t/snapshots/step-500` for an early-stopped teacher) or a preset.
    pub model: String,
    /// Weights file for a preset (or to replace a folder's weights).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<PathBuf>,
    /// Share of this teacher in the averaged soft targets (default 1).
    #[serde(default = "one")]
    pub weight: f32,
}

/// Which logit-level KD loss.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KdLoss {
    /// Per frame, padded frames masked ([`super::soft_kd`]).
    #[default]
    Soft,
    /// On time-averaged distributions, no frame alignment ([`super::sequence_kd`]).
    Sequence,
}

/// Soft-target KD towards a teacher's (or a peer's) output distribution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdSpec {
    /// `soft` (default) or `sequence`.
    #[serde(default)]
    pub loss: KdLoss,
    /// Weight of the term (default 1).
    #[serde(default = "one_schedule")]
    pub weight: Schedule,
    /// Softmax temperature (default 4).
    #[serde(default = "default_temperature")]
    pub temperature: Schedule,
}

impl Default for KdSpec {
    fn default() -> KdSpec {
        KdSpec {
            loss: KdLoss::Soft,
            weight: one_schedule(),
            temperature: default_temperature(),
        }
    }
}

/// A feature-level loss between a teacher layer and a student layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchLoss {
    /// FitNets MSE through a learned adaptor ([`super::hint_loss`]).
    Hint,
    /// Attention transfer, p = 2 ([`super::attention_transfer`]); maps only.
    Attention,
    /// FSP matrices of two layers each ([`super::fsp_loss`]); maps only.
    Fsp,
    /// Similarity-preserving batch Gram matrices ([`super::similarity_preserving`]).
    Similarity,
}

/// One layer name, or two for FSP (`["b2", "b3"]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LayerRef {
    /// One layer: `b1` … `bk` or `rnn`.
    One(String),
    /// Two layers of equal spatial size, for FSP.
    Pair([String; 2]),
}

impl LayerRef {
    /// The named layers.
    pub fn names(&self) -> Vec<&str> {
        match self {
            LayerRef::One(a) => vec![a.as_str()],
            LayerRef::Pair([a, b]) => vec![a.as_str(), b.as_str()],
        }
    }
}

/// An intermediate match, as TextBrewer's `intermediate_matches`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchSpec {
    /// The teacher's layer(s).
    pub teacher_layer: LayerRef,
    /// The student's layer(s).
    pub student_layer: LayerRef,
    /// The loss.
    pub loss: MatchLoss,
    /// Weight (default 1000 for attention, as the paper, else 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<Schedule>,
    /// Which teacher of the list (default 0, the first).
    #[serde(default)]
    pub teacher: usize,
}

impl MatchSpec {
    /// The weight, with the loss's default when none was given.
    pub fn weight(&self) -> Schedule {
        self.weight.clone().unwrap_or(match self.loss {
            MatchLoss::Attention => Schedule::Constant(super::ATTENTION_DEFAULT_WEIGHT),
            _ => Schedule::Constant(1.0),
        })
    }
}

/// Which domain-alignment loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DomainLoss {
    /// Multi-kernel MMD ([`super::mk_mmd`]).
    Mmd,
    /// CORAL ([`super::coral`]).
    Coral,
}

/// Aligns the student's features on labelled batches with its features on
/// unlabelled images of the target domain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainSpec {
    /// Folders of unlabelled target images (PNG; a labels.txt there is ignored).
    pub target: Vec<PathBuf>,
    /// `mmd` or `coral`.
    pub loss: DomainLoss,
    /// The student layer to align (default `rnn`).
    #[serde(default = "default_domain_layer")]
    pub layer: String,
    /// Weight (default the DAN ramp to 1).
    #[serde(default = "default_domain_weight")]
    pub weight: Schedule,
}

/// What a student learns from: CTC on the labels, KD on the teachers'
/// outputs, intermediate matches and domain alignment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Objective {
    /// Weight of the CTC loss on the labels (default 1).
    #[serde(default = "one_schedule")]
    pub ctc_weight: Schedule,
    /// Logit-level KD (none when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kd: Option<KdSpec>,
    /// Feature-level matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub intermediate_matches: Vec<MatchSpec>,
    /// Domain alignment with unlabelled target images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<DomainSpec>,
}

impl Default for Objective {
    fn default() -> Objective {
        Objective {
            ctc_weight: one_schedule(),
            kd: Some(KdSpec::default()),
            intermediate_matches: Vec::new(),
            domain: None,
        }
    }
}

impl Objective {
    /// CTC + soft KD at `temperature` + a FitNets hint between `layer` of the
    /// teacher and of the student (the reference distill-step's objective).
    pub fn kd_with_hint(temperature: f32, layer: &str) -> Objective {
        Objective {
            ctc_weight: one_schedule(),
            kd: Some(KdSpec {
                temperature: Schedule::Constant(temperature),
                ..KdSpec::default()
            }),
            intermediate_matches: vec![MatchSpec {
                teacher_layer: LayerRef::One(layer.into()),
                student_layer: LayerRef::One(layer.into()),
                loss: MatchLoss::Hint,
                weight: None,
                teacher: 0,
            }],
            domain: None,
        }
    }
}

/// The tolerant-teacher term (Yang et al., AAAI 2019).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TolerantSpec {
    /// η, the weight of the top-score difference.
    pub eta: f32,
    /// Secondary classes k (default [`super::TOLERANT_DEFAULT_SECONDARY`]).
    #[serde(default = "default_secondary")]
    pub secondary: usize,
}

/// Noise of the noisy student (Xie et al. 2020).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoiseSpec {
    /// Augmentation strength (default 0.6).
    #[serde(default = "default_noise_augment")]
    pub augment: f32,
    /// Dropout between LSTM layers and before the head (default 0.1).
    #[serde(default = "default_noise_dropout")]
    pub dropout: f32,
}

impl Default for NoiseSpec {
    fn default() -> NoiseSpec {
        NoiseSpec {
            augment: default_noise_augment(),
            dropout: default_noise_dropout(),
        }
    }
}

/// The strategies, chosen by `"kind"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Strategy {
    /// Frozen teachers teach one student.
    TeacherStudent {
        /// The teachers (at least one).
        teachers: Vec<TeacherSpec>,
        /// The student (trained from a preset, a config or a checkpoint).
        student: ModelSource,
        /// The student's losses.
        #[serde(default)]
        objective: Objective,
        /// FitNets' first stage: this many steps on the hint terms alone
        /// before the whole objective (0: none).
        #[serde(default)]
        hint_stage_steps: u64,
        /// Early-stopped KD: the teacher terms are used in the first this
        /// many epochs only (all epochs when absent).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kd_epochs: Option<u64>,
        /// Keep the teachers' logits across epochs when nothing changes them
        /// (no augmentation, no feature matches) (default true).
        #[serde(default = "default_true")]
        cache_teacher: bool,
    },
    /// Deep mutual learning: several models learn together from scratch.
    Mutual {
        /// The models (at least two).
        models: Vec<ModelSource>,
        /// KD towards each peer's (detached) output.
        #[serde(default)]
        kd: KdSpec,
        /// Weight of each model's CTC loss (default 1).
        #[serde(default = "one_schedule")]
        ctc_weight: Schedule,
        /// A frozen teacher that every model also learns from (PaddleOCR's form).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        teacher: Option<TeacherSpec>,
        /// KD towards the teacher (default: as `kd`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        teacher_kd: Option<KdSpec>,
    },
    /// Self-distillation: the final exit teaches early exits of the same model.
    SelfDistill {
        /// The model.
        model: ModelSource,
        /// Blocks after which an exit sits (e.g. `["b3"]`).
        exits: Vec<String>,
        /// KD from the final exit to each early one.
        #[serde(default)]
        kd: KdSpec,
        /// Weight of each exit's CTC loss (default 1).
        #[serde(default = "one_schedule")]
        ctc_weight: Schedule,
    },
    /// Born-again generations: generation k+1 learns from generation k.
    Generations {
        /// The architecture of every generation.
        model: ModelSource,
        /// Generations to train (at least 2 when `first` is absent, 1 otherwise).
        generations: usize,
        /// A trained generation 0 to start from, instead of training one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        first: Option<TeacherSpec>,
        /// KD from each generation to the next.
        #[serde(default)]
        kd: KdSpec,
        /// Weight of CTC (default 1).
        #[serde(default = "one_schedule")]
        ctc_weight: Schedule,
        /// Train every generation but the last as a tolerant teacher.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tolerant: Option<TolerantSpec>,
    },
    /// Noisy student: the teacher labels unlabelled images; a student learns
    /// from labelled and pseudo-labelled lines under noise, then teaches.
    NoisyStudent {
        /// The first teacher.
        teacher: TeacherSpec,
        /// The student architecture (trained from scratch each round).
        student: ModelSource,
        /// Folders of unlabelled images.
        unlabeled: Vec<PathBuf>,
        /// Keep pseudo-labels of at least this confidence (default 0.9).
        #[serde(default = "default_threshold")]
        threshold: f32,
        /// Rounds of label-then-learn (default 1).
        #[serde(default = "one_usize")]
        rounds: usize,
        /// The student's noise.
        #[serde(default)]
        noise: NoiseSpec,
        /// KD from the round's teacher on top of the pseudo-labels (default none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kd: Option<KdSpec>,
    },
}

impl Strategy {
    /// Teacher → student with one teacher checkpoint folder, the defaults
    /// otherwise (no hint stage, KD all along, teacher logits cached).
    pub fn teacher_student(teacher: &Path, student: ModelSource, objective: Objective) -> Strategy {
        Strategy::TeacherStudent {
            teachers: vec![TeacherSpec {
                model: teacher.display().to_string(),
                weights: None,
                weight: 1.0,
            }],
            student,
            objective,
            hint_stage_steps: 0,
            kd_epochs: None,
            cache_teacher: true,
        }
    }

    /// The strategy's name as written in `kind`.
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::TeacherStudent { .. } => "teacher_student",
            Strategy::Mutual { .. } => "mutual",
            Strategy::SelfDistill { .. } => "self_distill",
            Strategy::Generations { .. } => "generations",
            Strategy::NoisyStudent { .. } => "noisy_student",
        }
    }
}

fn one() -> f32 {
    1.0
}
fn one_usize() -> usize {
    1
}
fn one_schedule() -> Schedule {
    Schedule::Constant(1.0)
}
fn default_temperature() -> Schedule {
    Schedule::Constant(4.0)
}
fn default_lr() -> f32 {
    1e-3
}
fn default_lr_schedule() -> LrSchedule {
    LrSchedule::Cosine { min_lr: 1e-5 }
}
fn default_warmup() -> u64 {
    200
}
fn default_clip() -> Option<f32> {
    Some(5.0)
}
fn default_batch() -> usize {
    32
}
fn default_val_every() -> u64 {
    500
}
fn default_log_every() -> u64 {
    25
}
fn default_width() -> WidthPolicy {
    WidthPolicy::Pad {
        max_width: 512,
        multiple: 4,
    }
}
fn default_true() -> bool {
    true
}
fn default_domain_layer() -> String {
    "rnn".into()
}
fn default_domain_weight() -> Schedule {
    Schedule::Shaped(super::schedule::Shape::DanRamp {
        max: 1.0,
        gamma: 10.0,
    })
}
fn default_secondary() -> usize {
    super::TOLERANT_DEFAULT_SECONDARY
}
fn default_noise_augment() -> f32 {
    0.6
}
fn default_noise_dropout() -> f32 {
    0.1
}
fn default_threshold() -> f32 {
    0.9
}

fn invalid(message: String) -> Result<()> {
    Err(Error::invalid("config", message))
}

fn check_kd(kd: &KdSpec, at: &str) -> Result<()> {
    kd.weight.validate_weight(&format!("{at}.weight"))?;
    kd.temperature
        .validate_temperature(&format!("{at}.temperature"))
}

fn check_teacher(t: &TeacherSpec, at: &str) -> Result<()> {
    if !(t.weight.is_finite() && t.weight > 0.0) {
        return invalid(format!("{at}.weight must be positive, got {}", t.weight));
    }
    Ok(())
}

fn check_objective(o: &Objective, teachers: usize, at: &str) -> Result<()> {
    o.ctc_weight.validate_weight(&format!("{at}.ctc_weight"))?;
    if let Some(kd) = &o.kd {
        check_kd(kd, &format!("{at}.kd"))?;
    }
    for (i, m) in o.intermediate_matches.iter().enumerate() {
        let here = format!("{at}.intermediate_matches[{i}]");
        m.weight().validate_weight(&format!("{here}.weight"))?;
        if m.teacher >= teachers {
            return invalid(format!(
                "{here}.teacher is {} but there are {teachers} teacher(s)",
                m.teacher
            ));
        }
        let pair = m.loss == MatchLoss::Fsp;
        for (side, layer) in [
            ("teacher_layer", &m.teacher_layer),
            ("student_layer", &m.student_layer),
        ] {
            match (pair, layer) {
                (true, LayerRef::One(_)) => {
                    return invalid(format!(
                        "{here}.{side}: fsp needs two layers, e.g. [\"b2\", \"b3\"]"
                    ))
                }
                (false, LayerRef::Pair(_)) => {
                    return invalid(format!(
                        "{here}.{side}: only fsp takes two layers; give one name"
                    ))
                }
                _ => {}
            }
        }
    }
    if let Some(d) = &o.domain {
        if d.target.is_empty() {
            return invalid(format!("{at}.domain.target lists no folder"));
        }
        d.weight.validate_weight(&format!("{at}.domain.weight"))?;
    }
    Ok(())
}

impl DistillConfig {
    /// Reads and checks a configuration file; errors name the file (and the
    /// line for JSON errors).
    pub fn from_file(path: &Path) -> Result<DistillConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let cfg: DistillConfig = serde_json::from_str(&text).map_err(|e| {
            Error::data(
                path,
                Some(e.line()),
                format!("not a distillation config: {e}"),
            )
        })?;
        cfg.validate()
            .map_err(|e| Error::data(path, None, e.to_string()))?;
        Ok(cfg)
    }

    /// Checks ranges and combinations that need no file: weights at least
    /// 0, temperatures positive, counts in range, FSP with two layers.
    pub fn validate(&self) -> Result<()> {
        self.as_train("validate", ModelSource::Preset("crnn-s".into()))
            .validate()?;
        match &self.strategy {
            Strategy::TeacherStudent {
                teachers,
                objective,
                ..
            } => {
                if teachers.is_empty() {
                    return invalid("strategy.teachers lists no teacher".into());
                }
                for (i, t) in teachers.iter().enumerate() {
                    check_teacher(t, &format!("strategy.teachers[{i}]"))?;
                }
                check_objective(objective, teachers.len(), "strategy.objective")
            }
            Strategy::Mutual {
                models,
                kd,
                ctc_weight,
                teacher,
                teacher_kd,
            } => {
                if models.len() < 2 {
                    return invalid(format!(
                        "strategy.models: mutual learning needs at least 2 models, got {}",
                        models.len()
                    ));
                }
                check_kd(kd, "strategy.kd")?;
                ctc_weight.validate_weight("strategy.ctc_weight")?;
                if let Some(t) = teacher {
                    check_teacher(t, "strategy.teacher")?;
                }
                if let Some(k) = teacher_kd {
                    check_kd(k, "strategy.teacher_kd")?;
                }
                Ok(())
            }
            Strategy::SelfDistill {
                exits,
                kd,
                ctc_weight,
                ..
            } => {
                if exits.is_empty() {
                    return invalid("strategy.exits lists no exit (e.g. [\"b3\"])".into());
                }
                check_kd(kd, "strategy.kd")?;
                ctc_weight.validate_weight("strategy.ctc_weight")
            }
            Strategy::Generations {
                generations,
                first,
                kd,
                ctc_weight,
                tolerant,
                ..
            } => {
                let least = if first.is_some() { 1 } else { 2 };
                if *generations < least {
                    return invalid(format!(
                        "strategy.generations must be at least {least}, got {generations}"
                    ));
                }
                if let Some(t) = first {
                    check_teacher(t, "strategy.first")?;
                }
                check_kd(kd, "strategy.kd")?;
                ctc_weight.validate_weight("strategy.ctc_weight")?;
                if let Some(t) = tolerant {
                    if !(t.eta.is_finite() && t.eta >= 0.0) {
                        return invalid(format!(
                            "strategy.tolerant.eta must be at least 0, got {}",
                            t.eta
                        ));
                    }
                    if t.secondary == 0 {
                        return invalid("strategy.tolerant.secondary must be at least 1".into());
                    }
                }
                Ok(())
            }
            Strategy::NoisyStudent {
                teacher,
                unlabeled,
                threshold,
                rounds,
                noise,
                kd,
                ..
            } => {
                check_teacher(teacher, "strategy.teacher")?;
                if unlabeled.is_empty() {
                    return invalid("strategy.unlabeled lists no folder".into());
                }
                if !(0.0..=1.0).contains(threshold) {
                    return invalid(format!(
                        "strategy.threshold must be in [0, 1], got {threshold}"
                    ));
                }
                if *rounds == 0 {
                    return invalid("strategy.rounds must be at least 1".into());
                }
                if !(0.0..=2.0).contains(&noise.augment) {
                    return invalid(format!(
                        "strategy.noise.augment must be in [0, 2], got {}",
                        noise.augment
                    ));
                }
                if !(0.0..1.0).contains(&noise.dropout) {
                    return invalid(format!(
                        "strategy.noise.dropout must be in [0, 1), got {}",
                        noise.dropout
                    ));
                }
                if let Some(k) = kd {
                    check_kd(k, "strategy.kd")?;
                }
                Ok(())
            }
        }
    }

    /// A run with the data, optimiser and budget of `train` (its model and
    /// snapshots aside) and `strategy`.
    pub fn from_train(train: &crate::train::TrainConfig, strategy: Strategy) -> DistillConfig {
        DistillConfig {
            train: train.train.clone(),
            val: train.val.clone(),
            out: train.out.clone(),
            charset: train.charset.clone(),
            optimizer: train.optimizer.clone(),
            lr: train.lr,
            schedule: train.schedule.clone(),
            warmup_steps: train.warmup_steps,
            clip_norm: train.clip_norm,
            batch_size: train.batch_size,
            budget: train.budget,
            seed: train.seed,
            val_every: train.val_every,
            log_every: train.log_every,
            width: train.width,
            augment: train.augment,
            skip_bad: train.skip_bad,
            progress: train.progress,
            strategy,
            device: train.device,
            resume: false,
        }
    }

    /// The training settings of this run as a [`crate::train::TrainConfig`]
    /// for one model, written to `out`.
    pub fn as_train(&self, out: &str, model: ModelSource) -> crate::train::TrainConfig {
        crate::train::TrainConfig {
            model,
            train: self.train.clone(),
            val: self.val.clone(),
            out: self.out.join(out),
            charset: self.charset.clone(),
            optimizer: self.optimizer.clone(),
            lr: self.lr,
            schedule: self.schedule.clone(),
            warmup_steps: self.warmup_steps,
            clip_norm: self.clip_norm,
            batch_size: self.batch_size,
            budget: self.budget,
            seed: self.seed,
            val_every: self.val_every,
            log_every: self.log_every,
            width: self.width,
            augment: self.augment,
            skip_bad: self.skip_bad,
            progress: self.progress,
            snapshot_every: None,
            device: self.device,
        }
    }
}
