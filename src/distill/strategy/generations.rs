//! Training in generations. Born-again networks (Furlanello et al., ICML
//! 2018, §3): generation k+1, of the same architecture, learns from the
//! labels and from generation k's soft output; the generations' averaged
//! outputs form an ensemble (§3.2). With `tolerant`, every generation but
//! the last is trained as a tolerant teacher (Yang et al., AAAI 2019, §3.3),
//! its loss adding `η · top-score difference` so that secondary classes keep
//! some score for the next generation to learn from.

use super::teacher_student::{train_student, TeacherStudent};
use super::{teacher_report, DistillReport};
use crate::checkpoint;
use crate::data::charset::Charset;
use crate::data::loader::Loader;
use crate::decode::greedy;
use crate::distill::config::{DistillConfig, Objective, Strategy};
use crate::distill::session::{load_run_charset, load_run_data};
use crate::distill::teachers::{load_teacher, run_frozen, Teacher};
use crate::error::{Error, Result};
use crate::metrics::RecognitionMetrics;
use crate::nn::Crnn;
use crate::rng::Rng;
use crate::tensor::Tensor;
use crate::train::build_model;
use serde_json::json;

/// Runs the generations; generation g's checkpoints go to `cfg.out/gen-g/`.
pub fn run(cfg: &DistillConfig) -> Result<DistillReport> {
    let Strategy::Generations {
        model,
        generations,
        first,
        kd,
        ctc_weight,
        tolerant,
    } = &cfg.strategy
    else {
        return Err(Error::invalid("generations", "not a generations config"));
    };
    let charset = load_run_charset(cfg)?;
    let device = cfg.device.resolve()?;
    let data = load_run_data(cfg, &charset, Vec::new(), cfg.augment)?;
    let mut rng = Rng::seed(cfg.seed);
    let mut teacher: Option<Teacher> = first
        .as_ref()
        .map(|t| load_teacher(t, &charset, device))
        .transpose()?;
    let mut teachers_report = Vec::new();
    let mut ensemble: Vec<Crnn> = Vec::new();
    if let Some(t) = teacher.as_mut() {
        teachers_report = teacher_report(std::slice::from_mut(t), &data)?;
        ensemble.push(t.model.clone());
    }
    let start = usize::from(first.is_some());
    let mut students = Vec::new();
    let (mut seconds, mut images, mut steps) = (0.0, 0.0, 0);
    for g in start..start + generations {
        let last = g + 1 == start + generations;
        let objective = Objective {
            ctc_weight: ctc_weight.clone(),
            kd: teacher.as_ref().map(|_| kd.clone()),
            intermediate_matches: Vec::new(),
            domain: None,
        };
        let settings = TeacherStudent {
            teachers: &[],
            student: model,
            objective: &objective,
            hint_stage_steps: 0,
            kd_epochs: None,
            cache_teacher: true,
            tolerant: if last { None } else { tolerant.as_ref() },
        };
        let student = build_model(model, &charset, &mut rng.fork(100 + g as u64))?;
        let name = format!("gen-{g}");
        let dir = cfg.out.join(&name);
        let mut current: Vec<Teacher> = teacher.take().into_iter().collect();
        eprintln!(
            "generation {g}: {}",
            if current.is_empty() {
                "from the labels".to_string()
            } else {
                format!("learning from {}", current[0].name)
            }
        );
        let report = train_student(
            cfg,
            &data,
            &settings,
            &mut current,
            student,
            rng.fork(200 + g as u64),
            &name,
            &dir,
        )?;
        seconds += report.seconds;
        images += report.images_per_s * report.seconds;
        steps = report.steps;
        students.extend(report.students);
        let mut best = checkpoint::load(&dir.join("best"))?.model;
        best.to_device(device)?;
        ensemble.push(best.clone());
        teacher = Some(Teacher {
            name,
            model: best,
            weight: 1.0,
        });
    }
    let ens = evaluate_ensemble(&mut ensemble, &charset, &data.val)?;
    Ok(DistillReport {
        strategy: "generations".into(),
        seconds,
        images_per_s: images / seconds.max(1e-9),
        steps,
        students,
        teachers: teachers_report,
        details: json!({
            "ensemble": {
                "members": ensemble.len(),
                "exact_match": ens.exact_match(),
                "cer": ens.cer(),
            },
            "tolerant": tolerant,
        }),
    })
}

/// Recognition by the average of several models' output distributions
/// (per frame, greedy decoding of the averaged probabilities). The models
/// must give the same number of frames.
pub fn evaluate_ensemble(
    models: &mut [Crnn],
    charset: &Charset,
    loader: &Loader,
) -> Result<RecognitionMetrics> {
    let mut metrics = RecognitionMetrics::default();
    if models.is_empty() {
        return Err(Error::invalid("ensemble", "no model"));
    }
    for batch in loader.epoch(0) {
        let batch = batch?;
        let mut avg: Option<(Vec<f32>, Vec<usize>, Vec<usize>)> = None;
        for m in models.iter_mut() {
            let out = run_frozen(m, &batch)?;
            let dims = out.logits.dims().to_vec();
            let k = dims[2];
            let mut probs = out.logits.to_vec();
            for row in probs.chunks_exact_mut(k) {
                let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
                row.iter_mut().for_each(|v| *v = (*v - max).exp() / sum);
            }
            avg = Some(match avg {
                None => (probs, dims, out.lengths),
                Some((mut acc, d, lengths)) => {
                    if d != dims {
                        return Err(Error::shape(
                            "ensemble",
                            format!("models give outputs of shapes {d:?} and {dims:?}"),
                        ));
                    }
                    acc.iter_mut().zip(&probs).for_each(|(a, p)| *a += p);
                    (acc, d, lengths)
                }
            });
        }
        let (acc, dims, lengths) = avg.expect("one model at least");
        let n = models.len() as f32;
        let log_probs: Vec<f32> = acc.iter().map(|p| (p / n).max(1e-30).ln()).collect();
        let decoded = greedy(&Tensor::from_vec(log_probs, &dims)?, &lengths)?;
        for (d, label) in decoded.iter().zip(&batch.labels) {
            metrics.add(&charset.decode(&d.classes), label);
        }
    }
    Ok(metrics)
}
