//! The training loop: data, model, steps, validation, checkpoints, record.

use super::config::{Budget, ModelSource, TrainConfig};
use super::evaluate::evaluate;
use super::log::MetricsLog;
use super::plot::write_training_plot;
use super::state_file::{optimizer_tensors, read_state, write_state};
use super::step::train_step;
use crate::checkpoint;
use crate::data::augment::{augment, AugmentConfig};
use crate::data::charset::Charset;
use crate::data::labels::{load_datasets, Sample};
use crate::data::loader::{AugmentFn, Loader, LoaderConfig};
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::nn::{Crnn, CrnnConfig};
use crate::optim::{LrPlan, Optimizer, OptimizerState};
use crate::rng::Rng;
use crate::tensor::{Device, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Non-finite losses in a row after which a run stops.
const MAX_BAD_STEPS: u32 = 5;

/// How a finished run went.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainSummary {
    /// Optimiser steps taken.
    pub steps: u64,
    /// Best validation exact match (its checkpoint is in `best/`).
    pub best_exact_match: f64,
    /// CER of the best checkpoint.
    pub best_cer: f64,
    /// Validation exact match of the final model (`last/`).
    pub last_exact_match: f64,
    /// CER of the final model.
    pub last_cer: f64,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Training throughput.
    pub images_per_s: f64,
    /// Parameters of the model.
    pub parameters: usize,
}

/// The file in `last/` from which `--resume` continues a run.
pub const RESUME_FILE: &str = "resume.safetensors";
const PROGRESS_KEY: &str = "retort.progress";

/// Where a run stands, saved with every `last/` checkpoint so that a resumed
/// run continues exactly: same data position, same random numbers, same record.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Progress {
    /// Optimiser steps taken.
    step: u64,
    /// Epoch and index of the next batch to train on.
    epoch: usize,
    batch: usize,
    /// Best validation (exact match, CER) so far.
    best: Option<(f64, f64)>,
    /// Latest validation.
    last: Option<(f64, f64)>,
    /// State of the random numbers used by the steps (dropout).
    rng: [u64; 4],
    /// The curves and the metrics log up to this point.
    loss_curve: Vec<(u64, f32)>,
    val_curve: Vec<(u64, f64, f64)>,
    log: String,
    optimizer_step: u64,
}

/// Saves model, optimiser and progress into one file, written atomically, so
/// that what is resumed from is always one consistent moment of the run.
fn save_resume(
    path: &Path,
    model: &Crnn,
    optimizer: &Optimizer,
    progress: &Progress,
) -> Result<()> {
    let mut tensors: Vec<(String, Tensor)> = model
        .state_dict()
        .into_iter()
        .map(|(name, t)| (format!("model.{name}"), t))
        .collect();
    let (optimizer_step, buffers) = optimizer_tensors("optim.", optimizer)?;
    tensors.extend(buffers);
    let progress = Progress {
        optimizer_step,
        ..progress.clone()
    };
    write_state(path, &tensors, PROGRESS_KEY, &progress)
}

/// Reads a file written by [`save_resume`] into `model` and `optimizer`.
fn load_resume(path: &Path, model: &mut Crnn, optimizer: &mut Optimizer) -> Result<Progress> {
    let (progress, tensors): (Progress, _) = read_state(path, PROGRESS_KEY)?;
    let mut weights = Vec::new();
    let mut buffers = Vec::new();
    for (name, t) in tensors {
        if let Some(n) = name.strip_prefix("model.") {
            weights.push((n.to_string(), t));
        } else if let Some(n) = name.strip_prefix("optim.") {
            buffers.push((n.to_string(), t.to_vec()));
        } else {
            return Err(Error::data(path, None, format!("unexpected tensor {name}")));
        }
    }
    model
        .load_state_dict(&weights)
        .map_err(|e| Error::data(path, None, format!("model does not fit the run: {e}")))?;
    optimizer
        .load_state(OptimizerState {
            step: progress.optimizer_step,
            buffers,
        })
        .map_err(|e| Error::data(path, None, format!("optimizer state does not fit: {e}")))?;
    Ok(progress)
}

/// The run's charset: the file named in the configuration, or the default
/// 36 lower-case alphanumerics.
pub(crate) fn load_charset(charset: Option<&Path>) -> Result<Charset> {
    match charset {
        Some(path) => Charset::from_file(path),
        None => Ok(Charset::default_alnum()),
    }
}

/// A model as `source` says, sized to `charset`: a preset or a config freshly
/// initialised from `rng`, or a checkpoint's weights (whose charset must be
/// `charset`).
pub(crate) fn build_model(source: &ModelSource, charset: &Charset, rng: &mut Rng) -> Result<Crnn> {
    let classes = charset.num_classes();
    let model_cfg = match source {
        ModelSource::Preset(name) => CrnnConfig::preset(name)?.with_classes(classes),
        ModelSource::Config(c) => c.clone(),
        ModelSource::Checkpoint(dir) => {
            let ck = checkpoint::load(dir)?;
            if ck.charset != charset.symbols() {
                return Err(Error::data(
                    dir,
                    None,
                    "the checkpoint's charset differs from the training charset",
                ));
            }
            return Ok(ck.model);
        }
    };
    if model_cfg.num_classes != classes {
        return Err(Error::invalid(
            "train",
            format!(
                "the model has {} classes but the charset needs {classes} (symbols + blank)",
                model_cfg.num_classes
            ),
        ));
    }
    Crnn::new(model_cfg, rng)
}

/// Prints a line above the progress bar, or on stderr when the bar is
/// hidden (which would swallow it).
pub(crate) fn say(bar: &ProgressBar, text: String) {
    if bar.is_hidden() {
        eprintln!("{text}");
    } else {
        bar.println(text);
    }
}

/// Where the last good checkpoint is, for the message of a stopped run.
pub(crate) fn last_good(last: &Path) -> String {
    if last.join("model.safetensors").is_file() {
        format!("the last good checkpoint is in {}", last.display())
    } else {
        format!(
            "no checkpoint was saved before (none in {})",
            last.display()
        )
    }
}

/// A progress bar over `total` steps, hidden when not `enabled`.
pub(crate) fn progress_bar(total: u64, enabled: bool) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg} ETA {eta}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// The batches of a run: its training folders (plus `extra` samples, e.g.
/// pseudo-labels) shuffled in width buckets and augmented as `cfg` says, its
/// validation folders in order; and the steps its budget gives. Bad label
/// lines skipped with `skip_bad` are reported on stderr.
pub(crate) fn training_data(
    cfg: &TrainConfig,
    charset: &Charset,
    extra: Vec<Sample>,
) -> Result<(Loader, Loader, u64)> {
    let train_set = load_datasets(&cfg.train, charset, cfg.skip_bad)?;
    let val_set = load_datasets(&cfg.val, charset, cfg.skip_bad)?;
    for (name, set) in [("training", &train_set), ("validation", &val_set)] {
        if let Some(first) = set.skipped.first() {
            eprintln!(
                "skipped {} bad {name} line(s), first: {first}",
                set.skipped.len()
            );
        }
    }
    let augment_fn: Option<AugmentFn> = (cfg.augment > 0.0).then(|| {
        let acfg = AugmentConfig {
            strength: cfg.augment,
            ..AugmentConfig::default()
        };
        Arc::new(move |img: &_, rng: &mut Rng| augment(img, &acfg, rng)) as AugmentFn
    });
    let mut samples = train_set.samples;
    samples.extend(extra);
    let loader = Loader::new(
        samples,
        LoaderConfig {
            batch_size: cfg.batch_size,
            shuffle: true,
            seed: cfg.seed,
            width: cfg.width,
            augment: augment_fn,
            buckets: true,
            ..LoaderConfig::default()
        },
    )?;
    let val_loader = Loader::new(
        val_set.samples,
        LoaderConfig {
            batch_size: cfg.batch_size.max(32),
            shuffle: false,
            width: cfg.width,
            ..LoaderConfig::default()
        },
    )?;
    let total = match cfg.budget {
        Budget::Steps(n) => n,
        Budget::Epochs(e) => e * loader.batches_per_epoch() as u64,
    };
    Ok((loader, val_loader, total))
}

/// Trains a model as `cfg` says, writing checkpoints (`best/`, `last/`), the
/// metrics log (`metrics.jsonl`), the curves (`training.svg`) and the
/// configuration (`train_config.json`) into `cfg.out`.
pub fn train(cfg: &TrainConfig) -> Result<TrainSummary> {
    run(cfg, false)
}

/// Continues the run in `out` from its last checkpoint: the configuration
/// (`train_config.json`), model, optimiser state, schedule position, random
/// state and data position are restored, so that the run ends with the same
/// weights as one that was never interrupted (with the same thread count).
pub fn resume(out: &Path) -> Result<TrainSummary> {
    let path = out.join("train_config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let cfg: TrainConfig = serde_json::from_str(&text).map_err(|e| {
        Error::data(
            &path,
            Some(e.line()),
            format!("not a training configuration: {e}"),
        )
    })?;
    run(&cfg, true)
}

fn run(cfg: &TrainConfig, resuming: bool) -> Result<TrainSummary> {
    cfg.validate()?;
    let device = cfg.device.resolve()?;
    let started = Instant::now();
    std::fs::create_dir_all(&cfg.out).map_err(|e| Error::io(&cfg.out, e))?;
    let charset = load_charset(cfg.charset.as_deref())?;
    let mut rng = Rng::seed(cfg.seed);
    let mut model = build_model(&cfg.model, &charset, &mut rng.fork(1))?;
    model.to_device(device)?;
    if device != Device::Cpu {
        eprintln!("training on {device}");
    }
    let (loader, val_loader, total) = training_data(cfg, &charset, Vec::new())?;
    let plan = LrPlan {
        base_lr: cfg.lr,
        schedule: cfg.schedule.clone(),
        warmup_steps: cfg.warmup_steps.min(total / 2),
        total_steps: total,
    };
    plan.validate()?;
    let mut optimizer = Optimizer::new(cfg.optimizer.clone())?;
    let mut step_rng = rng.fork(2);
    let mut progress = Progress::default();
    let resume_path = cfg.out.join("last").join(RESUME_FILE);
    if resuming {
        progress = load_resume(&resume_path, &mut model, &mut optimizer)?;
        step_rng = Rng::from_state(progress.rng);
        eprintln!(
            "resuming at step {} (epoch {}, batch {})",
            progress.step, progress.epoch, progress.batch
        );
    } else {
        let config_json = serde_json::to_vec_pretty(cfg).map_err(|e| {
            Error::invalid("train", format!("cannot serialise the configuration: {e}"))
        })?;
        write_atomic(&cfg.out.join("train_config.json"), &config_json)?;
    }

    let mut log = MetricsLog::resumed(
        &cfg.out.join("metrics.jsonl"),
        std::mem::take(&mut progress.log),
    );
    let bar = progress_bar(total, cfg.progress);
    let (mut step, mut bad_in_row, mut images) = (progress.step, 0u32, 0usize);
    let mut loss_ema: Option<f32> = None;
    let mut loss_curve = std::mem::take(&mut progress.loss_curve);
    let mut val_curve = std::mem::take(&mut progress.val_curve);
    let mut best = progress.best.unwrap_or((-1.0f64, f64::MAX));
    let mut last = progress.last.unwrap_or((0.0, 1.0));
    let mut train_secs = 0.0f64;
    let mut window = (Instant::now(), 0usize);
    let (mut epoch, mut start) = (progress.epoch, progress.batch);
    'epochs: while step < total {
        for (offset, batch) in loader.epoch_from(epoch, start).enumerate() {
            let batch_index = start + offset;
            let batch = batch?;
            let lr = plan.lr_at(step);
            let t0 = Instant::now();
            let stats = train_step(
                &mut model,
                &mut optimizer,
                &batch,
                lr,
                cfg.clip_norm,
                &mut step_rng,
            )?;
            train_secs += t0.elapsed().as_secs_f64();
            if stats.skipped {
                bad_in_row += 1;
                say(
                    &bar,
                    format!(
                        "warning: step {step}: non-finite loss or gradient ({}), update skipped",
                        stats.loss
                    ),
                );
                if bad_in_row >= MAX_BAD_STEPS {
                    bar.abandon();
                    return Err(Error::invalid(
                        "train",
                        format!(
                            "stopped after {bad_in_row} non-finite steps in a row; {}",
                            last_good(&cfg.out.join("last"))
                        ),
                    ));
                }
                continue;
            }
            bad_in_row = 0;
            step += 1;
            images += batch.widths.len();
            window.1 += batch.widths.len();
            let ema = loss_ema.map_or(stats.loss, |e| 0.95 * e + 0.05 * stats.loss);
            loss_ema = Some(ema);
            let ips = window.1 as f64 / window.0.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!("loss {ema:.4} lr {lr:.2e} {ips:.0} img/s"));
            bar.set_position(step);
            if step % cfg.log_every == 0 {
                loss_curve.push((step, stats.loss));
                log.push(
                    json!({"step": step, "epoch": epoch, "loss": stats.loss, "loss_ema": ema,
                    "lr": lr, "grad_norm": stats.grad_norm, "images_per_s": ips}),
                )?;
                window = (Instant::now(), 0);
            }
            if step % cfg.val_every == 0 || step == total {
                let report = evaluate(&mut model, &charset, &val_loader, 1, 0)?;
                let (em, cer) = (report.metrics.exact_match(), report.metrics.cer());
                last = (em, cer);
                val_curve.push((step, em, cer));
                log.push(
                    json!({"step": step, "epoch": epoch, "val_exact_match": em, "val_cer": cer,
                    "val_n": report.metrics.n}),
                )?;
                say(
                    &bar,
                    format!(
                        "step {step}: validation exact match {:.2}%, CER {:.2}%",
                        100.0 * em,
                        100.0 * cer
                    ),
                );
                if em > best.0 || (em == best.0 && cer < best.1) {
                    best = (em, cer);
                    checkpoint::save(&cfg.out.join("best"), &model, charset.symbols())?;
                }
                checkpoint::save(&cfg.out.join("last"), &model, charset.symbols())?;
                let at = Progress {
                    step,
                    epoch,
                    batch: batch_index + 1,
                    best: Some(best),
                    last: Some(last),
                    rng: step_rng.state(),
                    loss_curve: loss_curve.clone(),
                    val_curve: val_curve.clone(),
                    log: log.text().to_string(),
                    optimizer_step: 0,
                };
                save_resume(&resume_path, &model, &optimizer, &at)?;
                write_training_plot(&cfg.out.join("training.svg"), &loss_curve, &val_curve)?;
                window = (Instant::now(), 0);
            }
            if cfg.snapshot_every.is_some_and(|every| step % every == 0) {
                let dir = cfg.out.join("snapshots").join(format!("step-{step}"));
                checkpoint::save(&dir, &model, charset.symbols())?;
            }
            if step >= total {
                break 'epochs;
            }
        }
        epoch += 1;
        start = 0;
    }
    bar.finish_and_clear();
    Ok(TrainSummary {
        steps: step,
        best_exact_match: best.0.max(0.0),
        best_cer: if best.1 == f64::MAX { 1.0 } else { best.1 },
        last_exact_match: last.0,
        last_cer: last.1,
        seconds: started.elapsed().as_secs_f64(),
        images_per_s: images as f64 / train_secs.max(1e-9),
        parameters: model.num_parameters(),
    })
}
