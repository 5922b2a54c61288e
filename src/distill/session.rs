//! The loop every strategy shares: batches, learning rate, the step the
//! strategy supplies, validation of each trained model, checkpoints, the
//! metrics log and a progress bar that shows every loss term.

use super::config::DistillConfig;
use super::schedule::RunPoint;
use crate::autograd::{Gradients, Param};
use crate::checkpoint;
use crate::data::batch::Batch;
use crate::data::charset::Charset;
use crate::data::labels::Sample;
use crate::data::loader::Loader;
use crate::distill::Adaptor;
use crate::error::{Error, Result};
use crate::nn::Crnn;
use crate::ops::batchnorm2d::RunningStats;
use crate::optim::{LrPlan, Optimizer};
use crate::rng::Rng;
use crate::train::{apply_gradients, evaluate, write_training_plot, MetricsLog};
use serde::Serialize;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Non-finite steps in a row after which a run stops.
const MAX_BAD_STEPS: u32 = 5;

/// One model a strategy trains, with its optimiser and any trainable
/// adaptors, and where its checkpoints go (`dir/best`, `dir/last`).
#[derive(Debug)]
pub struct Member {
    /// Name in logs and reports (`student`, `model-1`, `gen-2`, …).
    pub name: String,
    /// Folder of its checkpoints.
    pub dir: PathBuf,
    /// The model.
    pub model: Crnn,
    /// Adaptors trained with it (hints); not saved in its checkpoint.
    pub adaptors: Vec<Adaptor>,
    /// Its optimiser.
    pub optimizer: Optimizer,
}

impl Member {
    /// A member with a fresh optimiser as `cfg` says, its model moved to
    /// the run's device.
    pub fn new(name: &str, dir: PathBuf, mut model: Crnn, cfg: &DistillConfig) -> Result<Member> {
        model.to_device(cfg.device.resolve()?)?;
        Ok(Member {
            name: name.to_string(),
            dir,
            model,
            adaptors: Vec::new(),
            optimizer: Optimizer::new(cfg.optimizer.clone())?,
        })
    }

    /// Clips this member's part of `grads` and updates its model and
    /// adaptors; `false` when its gradient was not finite (nothing updated).
    pub fn update(&mut self, grads: &mut Gradients, lr: f32, clip: Option<f32>) -> Result<bool> {
        let mut params: Vec<&mut Param> = self
            .model
            .params_mut()
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        for a in &mut self.adaptors {
            params.extend(a.params_mut().into_iter().map(|(_, p)| p));
        }
        Ok(apply_gradients(&mut params, &mut self.optimizer, grads, lr, clip)?.is_some())
    }

    /// Moves the model and adaptors to `device` (parameters keep their
    /// identities, so the optimiser state still fits).
    pub fn to_device(&mut self, device: crate::tensor::Device) -> Result<()> {
        self.model.to_device(device)?;
        for a in &mut self.adaptors {
            for (_, p) in a.params_mut() {
                p.move_to(device)?;
            }
        }
        Ok(())
    }

    fn running_stats(&self) -> Vec<RunningStats> {
        self.model
            .blocks
            .iter()
            .map(|(_, bn)| bn.stats.clone())
            .collect()
    }

    fn restore_stats(&mut self, saved: &[RunningStats]) {
        for ((_, bn), s) in self.model.blocks.iter_mut().zip(saved) {
            bn.stats = s.clone();
        }
    }
}

/// Ends a step: unless the total (the first term) is not finite, runs the
/// backward pass of `loss` and updates every member from its gradients.
pub fn finish_step(
    members: &mut [Member],
    mut tape: crate::autograd::Tape,
    loss: &crate::tensor::Tensor,
    terms: Vec<(String, f32)>,
    lr: f32,
    clip: Option<f32>,
) -> Result<StepReport> {
    if !terms.first().is_some_and(|(_, v)| v.is_finite()) {
        return Ok(StepReport {
            terms,
            skipped: true,
        });
    }
    let mut grads = tape.backward(loss)?;
    drop(tape);
    let mut ok = true;
    for m in members.iter_mut() {
        ok &= m.update(&mut grads, lr, clip)?;
    }
    Ok(StepReport {
        terms,
        skipped: !ok,
    })
}

/// The file in a loop's log folder from which `retort distill --resume`
/// continues it: every member's model, adaptors and optimiser, and the
/// loop's progress, written atomically at each validation.
pub const LOOP_RESUME_FILE: &str = "resume.safetensors";
const PROGRESS_KEY: &str = "retort.distill.progress";

/// Where a loop stands, saved with its members at each validation.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
struct LoopProgress {
    step: u64,
    epoch: usize,
    batch: usize,
    best: Vec<(f64, f64)>,
    last: Vec<(f64, f64)>,
    rng: [u64; 4],
    loss_curve: Vec<(u64, f32)>,
    val_curve: Vec<(u64, f64, f64)>,
    log: String,
    optimizer_steps: Vec<u64>,
    images: usize,
    seconds: f64,
    terms: Vec<(String, f32)>,
}

fn save_loop(path: &std::path::Path, members: &[Member], progress: &LoopProgress) -> Result<()> {
    let mut tensors: Vec<(String, crate::tensor::Tensor)> = Vec::new();
    let mut progress = progress.clone();
    progress.optimizer_steps.clear();
    for (i, m) in members.iter().enumerate() {
        for (name, t) in m.model.state_dict() {
            tensors.push((format!("{i}.model.{name}"), t));
        }
        for (j, a) in m.adaptors.iter().enumerate() {
            for (name, p) in a.params() {
                tensors.push((format!("{i}.adaptor{j}.{name}"), p.tensor().detach()));
            }
        }
        let (step, buffers) =
            crate::train::optimizer_tensors(&format!("{i}.optim."), &m.optimizer)?;
        progress.optimizer_steps.push(step);
        tensors.extend(buffers);
    }
    crate::train::write_state(path, &tensors, PROGRESS_KEY, &progress)
}

/// One member's model tensors and optimiser buffers, as read from a resume file.
type MemberState = (
    Vec<(String, crate::tensor::Tensor)>,
    Vec<(String, Vec<f32>)>,
);

fn load_loop(path: &std::path::Path, members: &mut [Member]) -> Result<LoopProgress> {
    let bad = |m: String| Error::data(path, None, m);
    let (progress, tensors): (LoopProgress, _) = crate::train::read_state(path, PROGRESS_KEY)?;
    if progress.best.len() != members.len() || progress.optimizer_steps.len() != members.len() {
        return Err(bad(format!(
            "holds {} model(s) but the run trains {}",
            progress.best.len(),
            members.len()
        )));
    }
    let mut per: Vec<MemberState> = vec![(Vec::new(), Vec::new()); members.len()];
    let mut adaptor_values: std::collections::HashMap<String, crate::tensor::Tensor> =
        std::collections::HashMap::new();
    for (name, t) in tensors {
        let (index, rest) = name
            .split_once('.')
            .and_then(|(i, r)| Some((i.parse::<usize>().ok()?, r)))
            .filter(|(i, _)| *i < members.len())
            .ok_or_else(|| bad(format!("unexpected tensor {name}")))?;
        if let Some(n) = rest.strip_prefix("model.") {
            per[index].0.push((n.to_string(), t));
        } else if let Some(n) = rest.strip_prefix("optim.") {
            per[index].1.push((n.to_string(), t.to_vec()));
        } else if rest.starts_with("adaptor") {
            adaptor_values.insert(name.clone(), t);
        } else {
            return Err(bad(format!("unexpected tensor {name}")));
        }
    }
    for (i, (m, (weights, buffers))) in members.iter_mut().zip(per).enumerate() {
        m.model
            .load_state_dict(&weights)
            .map_err(|e| bad(format!("{} does not fit the run: {e}", m.name)))?;
        for (j, a) in m.adaptors.iter_mut().enumerate() {
            for (name, p) in a.params_mut() {
                let key = format!("{i}.adaptor{j}.{name}");
                let t = adaptor_values
                    .get(&key)
                    .ok_or_else(|| bad(format!("missing tensor {key}")))?;
                p.set(t)
                    .map_err(|e| bad(format!("{key} does not fit: {e}")))?;
            }
        }
        m.optimizer
            .load_state(crate::optim::OptimizerState {
                step: progress.optimizer_steps[i],
                buffers,
            })
            .map_err(|e| bad(format!("optimizer state of {} does not fit: {e}", m.name)))?;
    }
    Ok(progress)
}

/// What a strategy's step did: the value of each loss term (the first is the
/// total, named `loss`), and whether the update was skipped because a value
/// or gradient was not finite.
#[derive(Clone, Debug, Default)]
pub struct StepReport {
    /// (term, value), the total first.
    pub terms: Vec<(String, f32)>,
    /// Whether nothing was updated.
    pub skipped: bool,
}

/// The data of a run: charset, training and validation batches, and the
/// number of steps the budget gives.
#[derive(Clone, Debug)]
pub struct RunData {
    /// The charset of every model of the run.
    pub charset: Charset,
    /// Training batches (shuffled, augmented as configured).
    pub train: Loader,
    /// Validation batches (in order, never augmented).
    pub val: Loader,
    /// Steps of each training run.
    pub total_steps: u64,
}

/// Loads the run's charset (the config's file or the default).
pub fn load_run_charset(cfg: &DistillConfig) -> Result<Charset> {
    crate::train::load_charset(cfg.charset.as_deref())
}

/// The data of `cfg`, with `extra` samples mixed into training (pseudo-labels)
/// and the augmentation strength `augment`.
pub fn load_run_data(
    cfg: &DistillConfig,
    charset: &Charset,
    extra: Vec<Sample>,
    augment_strength: f32,
) -> Result<RunData> {
    let train_cfg = crate::train::TrainConfig {
        augment: augment_strength,
        ..cfg.as_train("", crate::train::ModelSource::Preset("crnn-s".into()))
    };
    let (train, val, total_steps) = crate::train::training_data(&train_cfg, charset, extra)?;
    Ok(RunData {
        charset: charset.clone(),
        train,
        val,
        total_steps,
    })
}

/// How one trained model did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MemberSummary {
    /// Its name.
    pub name: String,
    /// Folder holding `best/` and `last/`.
    pub dir: PathBuf,
    /// Trainable parameters of the model (adaptors not counted).
    pub parameters: usize,
    /// Best validation exact match and its CER.
    pub best_exact_match: f64,
    /// CER at the best exact match.
    pub best_cer: f64,
    /// Validation of the final model.
    pub last_exact_match: f64,
    /// CER of the final model.
    pub last_cer: f64,
}

/// How a training loop went.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LoopSummary {
    /// Steps taken.
    pub steps: u64,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Training images per second (every member's step together).
    pub images_per_s: f64,
    /// Each member.
    pub members: Vec<MemberSummary>,
    /// The last logged value of each loss term.
    pub final_terms: Vec<(String, f32)>,
}

/// Trains `members` for the run's budget, calling `step` for every batch
/// with the batch, where the run stands, the learning rate and the step
/// random numbers. Every `val_every` steps and at the end, each member is
/// validated and saved to `dir/last` (and `dir/best` when it improved).
/// `log_dir` receives `metrics.jsonl` and `training.svg`.
pub fn train_members<F>(
    cfg: &DistillConfig,
    data: &RunData,
    members: &mut [Member],
    log_dir: &Path,
    mut step: F,
) -> Result<LoopSummary>
where
    F: FnMut(&mut [Member], &Batch, RunPoint, f32, &mut Rng) -> Result<StepReport>,
{
    let started = Instant::now();
    std::fs::create_dir_all(log_dir).map_err(|e| Error::io(log_dir, e))?;
    let total = data.total_steps;
    let plan = LrPlan {
        base_lr: cfg.lr,
        schedule: cfg.schedule.clone(),
        warmup_steps: cfg.warmup_steps.min(total / 2),
        total_steps: total,
    };
    plan.validate()?;
    let resume_path = log_dir.join(LOOP_RESUME_FILE);
    let mut progress = LoopProgress {
        best: vec![(-1.0f64, f64::MAX); members.len()],
        last: vec![(0.0f64, 1.0f64); members.len()],
        rng: Rng::seed(cfg.seed).fork(2).state(),
        ..LoopProgress::default()
    };
    if cfg.resume && resume_path.is_file() {
        progress = load_loop(&resume_path, members)?;
        eprintln!(
            "resuming {} at step {} of {total}",
            log_dir.display(),
            progress.step
        );
    }
    let prior_seconds = progress.seconds;
    let mut log = MetricsLog::resumed(
        &log_dir.join("metrics.jsonl"),
        std::mem::take(&mut progress.log),
    );
    let bar = crate::train::progress_bar(total, cfg.progress);
    let mut rng = Rng::from_state(progress.rng);
    let mut best = std::mem::take(&mut progress.best);
    let mut last = std::mem::take(&mut progress.last);
    let (mut steps, mut bad_in_row, mut images) = (progress.step, 0u32, progress.images);
    let mut ema: Vec<(String, f32)> = std::mem::take(&mut progress.terms);
    let mut loss_curve = std::mem::take(&mut progress.loss_curve);
    let mut val_curve = std::mem::take(&mut progress.val_curve);
    let (mut epoch, mut start) = (progress.epoch, progress.batch);
    'epochs: while steps < total {
        for (offset, batch) in data.train.epoch_from(epoch, start).enumerate() {
            let batch_index = start + offset;
            let batch = batch?;
            let at = RunPoint {
                step: steps,
                total,
                epoch: epoch as u64,
            };
            let lr = plan.lr_at(steps);
            let saved: Vec<Vec<RunningStats>> = members.iter().map(|m| m.running_stats()).collect();
            let report = step(members, &batch, at, lr, &mut rng)?;
            if report.skipped {
                for (m, s) in members.iter_mut().zip(&saved) {
                    m.restore_stats(s);
                }
                bad_in_row += 1;
                crate::train::say(
                    &bar,
                    format!("warning: step {steps}: non-finite loss or gradient, update skipped"),
                );
                if bad_in_row >= MAX_BAD_STEPS {
                    bar.abandon();
                    return Err(Error::invalid(
                        "distill",
                        format!(
                            "stopped after {bad_in_row} non-finite steps in a row; {}",
                            members
                                .iter()
                                .map(|m| crate::train::last_good(&m.dir.join("last")))
                                .collect::<Vec<_>>()
                                .join("; ")
                        ),
                    ));
                }
                continue;
            }
            bad_in_row = 0;
            steps += 1;
            images += batch.len();
            if ema.len() != report.terms.len() {
                ema = report.terms.clone();
            } else {
                for ((_, e), (_, v)) in ema.iter_mut().zip(&report.terms) {
                    *e = 0.95 * *e + 0.05 * v;
                }
            }
            let terms: Vec<String> = ema.iter().map(|(n, v)| format!("{n} {v:.3}")).collect();
            bar.set_message(format!("{} lr {lr:.1e}", terms.join(" ")));
            bar.set_position(steps);
            if steps % cfg.log_every == 0 {
                let mut line = serde_json::Map::new();
                line.insert("step".into(), json!(steps));
                line.insert("epoch".into(), json!(epoch));
                line.insert("lr".into(), json!(lr));
                for (n, v) in &report.terms {
                    line.insert(n.clone(), json!(v));
                }
                log.push(serde_json::Value::Object(line))?;
                if let Some((_, total_loss)) = report.terms.first() {
                    loss_curve.push((steps, *total_loss));
                }
            }
            if steps % cfg.val_every == 0 || steps == total {
                for (i, m) in members.iter_mut().enumerate() {
                    let r = evaluate(&mut m.model, &data.charset, &data.val, 1, 0)?;
                    let (em, cer) = (r.metrics.exact_match(), r.metrics.cer());
                    last[i] = (em, cer);
                    if i == 0 {
                        val_curve.push((steps, em, cer));
                    }
                    log.push(json!({"step": steps, "model": m.name, "val_exact_match": em, "val_cer": cer}))?;
                    crate::train::say(
                        &bar,
                        format!(
                            "step {steps}: {} validation exact match {:.2}%, CER {:.2}%",
                            m.name,
                            100.0 * em,
                            100.0 * cer
                        ),
                    );
                    if em > best[i].0 || (em == best[i].0 && cer < best[i].1) {
                        best[i] = (em, cer);
                        checkpoint::save(&m.dir.join("best"), &m.model, data.charset.symbols())?;
                    }
                    checkpoint::save(&m.dir.join("last"), &m.model, data.charset.symbols())?;
                }
                write_training_plot(&log_dir.join("training.svg"), &loss_curve, &val_curve)?;
                let at = LoopProgress {
                    step: steps,
                    epoch,
                    batch: batch_index + 1,
                    best: best.clone(),
                    last: last.clone(),
                    rng: rng.state(),
                    loss_curve: loss_curve.clone(),
                    val_curve: val_curve.clone(),
                    log: log.text().to_string(),
                    optimizer_steps: Vec::new(),
                    images,
                    seconds: prior_seconds + started.elapsed().as_secs_f64(),
                    terms: ema.clone(),
                };
                save_loop(&resume_path, members, &at)?;
            }
            if steps >= total {
                break 'epochs;
            }
        }
        epoch += 1;
        start = 0;
    }
    bar.finish_and_clear();
    let seconds = prior_seconds + started.elapsed().as_secs_f64();
    Ok(LoopSummary {
        steps,
        seconds,
        images_per_s: images as f64 / seconds.max(1e-9),
        members: members
            .iter()
            .enumerate()
            .map(|(i, m)| MemberSummary {
                name: m.name.clone(),
                dir: m.dir.clone(),
                parameters: m.model.num_parameters(),
                best_exact_match: best[i].0.max(0.0),
                best_cer: if best[i].1 == f64::MAX {
                    1.0
                } else {
                    best[i].1
                },
                last_exact_match: last[i].0,
                last_cer: last[i].1,
            })
            .collect(),
        final_terms: ema,
    })
}
