//! The distillation strategies, each a short loop over the losses, the
//! objective and the shared training loop ([`crate::distill::session`]).
//!
//! | strategy (`kind`) | paper | file |
//! | --- | --- | --- |
//! | `teacher_student` | Hinton et al. 2015; Romero et al. 2015; Cho & Hariharan, ICCV 2019 | `teacher_student.rs` |
//! | `mutual` | Zhang et al., CVPR 2018; PaddleOCR's teacher + 2 students | `mutual.rs` |
//! | `self_distill` | Phuong & Lampert, ICCV 2019 | `self_distill.rs` |
//! | `generations` | Furlanello et al., ICML 2018; Yang et al., AAAI 2019 | `generations.rs` |
//! | `noisy_student` | Xie et al., CVPR 2020 | `noisy_student.rs` |

mod generations;
mod mutual;
mod noisy_student;
mod self_distill;
mod teacher_student;

use super::config::{DistillConfig, Strategy};
use super::list_png_files;
use super::session::{MemberSummary, RunData};
use super::teachers::Teacher;
use crate::data::batch::Batch;
use crate::data::labels::Sample;
use crate::data::loader::{EpochIter, Loader, LoaderConfig};
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::train::evaluate;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// One model's result in a report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelReport {
    /// Its name (`student`, `model-2`, `gen-1`, a teacher's folder, …).
    pub name: String,
    /// Folder of its checkpoints (`best/`, `last/`), for trained models.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// Trainable parameters.
    pub parameters: usize,
    /// Validation exact match (the best checkpoint's, for trained models).
    pub exact_match: f64,
    /// Validation CER.
    pub cer: f64,
}

/// What a distillation run did; written to `report.json` in the output folder.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DistillReport {
    /// The strategy's `kind`.
    pub strategy: String,
    /// Wall time of the training loops, seconds.
    pub seconds: f64,
    /// Training images per second.
    pub images_per_s: f64,
    /// Steps per trained model.
    pub steps: u64,
    /// Every trained model.
    pub students: Vec<ModelReport>,
    /// The frozen teachers, measured on the same validation data.
    pub teachers: Vec<ModelReport>,
    /// Strategy-specific results (per exit, per generation, ensemble, rounds, loss terms).
    pub details: serde_json::Value,
}

impl DistillReport {
    /// The first (or only) trained model.
    pub fn student(&self) -> Option<&ModelReport> {
        self.students.first()
    }
}

pub(crate) fn report_member(m: &MemberSummary) -> ModelReport {
    ModelReport {
        name: m.name.clone(),
        dir: Some(m.dir.clone()),
        parameters: m.parameters,
        exact_match: m.best_exact_match,
        cer: m.best_cer,
    }
}

/// Measures the teachers on the run's validation data.
pub(crate) fn teacher_report(teachers: &mut [Teacher], data: &RunData) -> Result<Vec<ModelReport>> {
    teachers
        .iter_mut()
        .map(|t| {
            let r = evaluate(&mut t.model, &data.charset, &data.val, 1, 0)?;
            Ok(ModelReport {
                name: t.name.clone(),
                dir: None,
                parameters: t.model.num_parameters(),
                exact_match: r.metrics.exact_match(),
                cer: r.metrics.cer(),
            })
        })
        .collect()
}

/// A small batch (the first validation batch) to check objectives on
/// before training starts.
pub(crate) fn probe_batch(data: &RunData) -> Result<Batch> {
    data.val
        .epoch(0)
        .next()
        .ok_or_else(|| Error::invalid("distill", "the validation set is empty"))?
}

/// The PNG images directly inside `dirs` (see [`crate::distill::list_png_files`]),
/// as samples without labels.
pub fn unlabeled_samples(dirs: &[PathBuf]) -> Result<Vec<Sample>> {
    let mut out = Vec::new();
    for dir in dirs {
        out.extend(list_png_files(dir)?.into_iter().map(|path| Sample {
            path,
            label: String::new(),
            target: Vec::new(),
        }));
    }
    Ok(out)
}

/// Batches of unlabelled target images, endlessly (a new shuffled epoch
/// after each one).
pub(crate) struct TargetBatches {
    loader: Loader,
    epoch: usize,
    iter: EpochIter,
}

impl TargetBatches {
    pub(crate) fn new(dirs: &[PathBuf], cfg: &DistillConfig) -> Result<TargetBatches> {
        let loader = Loader::new(
            unlabeled_samples(dirs)?,
            LoaderConfig {
                batch_size: cfg.batch_size,
                shuffle: true,
                seed: cfg.seed ^ 0x7A12,
                width: cfg.width,
                buckets: true,
                ..LoaderConfig::default()
            },
        )?;
        let iter = loader.epoch(0);
        Ok(TargetBatches {
            loader,
            epoch: 0,
            iter,
        })
    }

    pub(crate) fn next(&mut self) -> Result<Batch> {
        if let Some(b) = self.iter.next() {
            return b;
        }
        self.epoch += 1;
        self.iter = self.loader.epoch(self.epoch);
        self.iter
            .next()
            .ok_or_else(|| Error::invalid("domain", "the target folders hold no image"))?
    }
}

/// Runs the strategy of `cfg`, writes `distill_config.json` (before) and
/// `report.json` (after) into `cfg.out`, and returns the report.
pub fn distill(cfg: &DistillConfig) -> Result<DistillReport> {
    cfg.validate()?;
    std::fs::create_dir_all(&cfg.out).map_err(|e| Error::io(&cfg.out, e))?;
    let echo = serde_json::to_vec_pretty(cfg)
        .map_err(|e| Error::invalid("distill", format!("cannot serialise the config: {e}")))?;
    write_atomic(&cfg.out.join("distill_config.json"), &echo)?;
    let report = match &cfg.strategy {
        Strategy::TeacherStudent {
            teachers,
            student,
            objective,
            hint_stage_steps,
            kd_epochs,
            cache_teacher,
        } => teacher_student::run(
            cfg,
            &teacher_student::TeacherStudent {
                teachers,
                student,
                objective,
                hint_stage_steps: *hint_stage_steps,
                kd_epochs: *kd_epochs,
                cache_teacher: *cache_teacher,
                tolerant: None,
            },
        )?,
        Strategy::Mutual { .. } => mutual::run(cfg)?,
        Strategy::SelfDistill { .. } => self_distill::run(cfg)?,
        Strategy::Generations { .. } => generations::run(cfg)?,
        Strategy::NoisyStudent { .. } => noisy_student::run(cfg)?,
    };
    write_report(&cfg.out, &report)?;
    Ok(report)
}

fn write_report(out: &Path, report: &DistillReport) -> Result<()> {
    let mut text = serde_json::to_vec_pretty(report)
        .map_err(|e| Error::invalid("distill", format!("cannot serialise the report: {e}")))?;
    text.push(b'\n');
    write_atomic(&out.join("report.json"), &text)
}

/// `model` rebuilt with `config` (e.g. with exits or dropout added): every
/// tensor the two share by name keeps `model`'s value, new ones are freshly
/// initialised from `rng`.
pub(crate) fn rebuild(
    model: &crate::nn::Crnn,
    config: crate::nn::CrnnConfig,
    rng: &mut crate::rng::Rng,
) -> Result<crate::nn::Crnn> {
    let mut out = crate::nn::Crnn::new(config, rng)?;
    let old: std::collections::HashMap<String, crate::tensor::Tensor> =
        model.state_dict().into_iter().collect();
    let merged: Vec<(String, crate::tensor::Tensor)> = out
        .state_dict()
        .into_iter()
        .map(|(name, t)| {
            let value = old.get(&name).cloned().unwrap_or(t);
            (name, value)
        })
        .collect();
    out.load_state_dict(&merged)?;
    Ok(out)
}
