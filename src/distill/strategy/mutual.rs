//! Deep mutual learning (Zhang, Xiang, Hospedales & Lu, CVPR 2018, eq. (3)–(4)
//! generalised to K networks, eq. (9)): every model trains from scratch on
//! `CTC + w · 1/(K−1) Σ_{j≠i} KL(p_j ‖ p_i)`, each peer's output detached.
//! All models are updated from one forward pass per step (as PaddleOCR's
//! DML does), not in the paper's alternating order. With a frozen `teacher`
//! every model also learns from it: PaddleOCR's teacher + two students.

use super::{probe_batch, report_member, teacher_report, DistillReport};
use crate::autograd::Tape;
use crate::distill::config::{DistillConfig, KdSpec, Strategy};
use crate::distill::objective::{kd_term, weighted_sum};
use crate::distill::schedule::RunPoint;
use crate::distill::session::{
    finish_step, load_run_charset, load_run_data, train_members, Member,
};
use crate::distill::teachers::{load_teacher, run_frozen, Teacher};
use crate::error::{Error, Result};
use crate::nn::CrnnOutput;
use crate::ops;
use crate::rng::Rng;
use crate::tensor::Tensor;
use crate::train::{build_model, ctc_objective};
use serde_json::json;

/// Runs mutual learning; model i's checkpoints go to `cfg.out/model-i/`.
pub fn run(cfg: &DistillConfig) -> Result<DistillReport> {
    let Strategy::Mutual {
        models,
        kd,
        ctc_weight,
        teacher,
        teacher_kd,
    } = &cfg.strategy
    else {
        return Err(Error::invalid("mutual", "not a mutual-learning config"));
    };
    let charset = load_run_charset(cfg)?;
    let device = cfg.device.resolve()?;
    let data = load_run_data(cfg, &charset, Vec::new(), cfg.augment)?;
    let mut rng = Rng::seed(cfg.seed);
    let mut members = models
        .iter()
        .enumerate()
        .map(|(i, source)| {
            let model = build_model(source, &charset, &mut rng.fork(10 + i as u64))?;
            let name = format!("model-{}", i + 1);
            Member::new(&name, cfg.out.join(&name), model, cfg)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut teacher: Option<Teacher> = teacher
        .as_ref()
        .map(|t| load_teacher(t, &charset, device))
        .transpose()?;
    let teacher_kd = teacher_kd.clone().unwrap_or_else(|| kd.clone());
    let teachers = match teacher.as_mut() {
        Some(t) => teacher_report(std::slice::from_mut(t), &data)?,
        None => Vec::new(),
    };

    let objective = |tape: &mut Tape,
                     outs: &[CrnnOutput],
                     teacher_out: Option<&CrnnOutput>,
                     targets: &[Vec<usize>],
                     at: RunPoint|
     -> Result<(Tensor, Vec<(String, f32)>)> {
        mutual_loss(
            tape,
            outs,
            teacher_out,
            targets,
            at,
            kd,
            &teacher_kd,
            ctc_weight.at(at),
        )
    };
    {
        let probe = probe_batch(&data)?;
        let mut tape = Tape::no_grad();
        let outs = members
            .iter_mut()
            .map(|m| run_frozen(&mut m.model, &probe))
            .collect::<Result<Vec<_>>>()?;
        let t = teacher
            .as_mut()
            .map(|t| run_frozen(&mut t.model, &probe))
            .transpose()?;
        let at = RunPoint {
            step: 0,
            total: data.total_steps,
            epoch: 0,
        };
        objective(&mut tape, &outs, t.as_ref(), &probe.targets, at)?;
    }
    let clip = cfg.clip_norm;
    let summary = train_members(
        cfg,
        &data,
        &mut members,
        &cfg.out,
        |members, batch, at, lr, rng| {
            let mut tape = Tape::new();
            let outs = members
                .iter_mut()
                .map(|m| {
                    m.model
                        .forward(&mut tape, &batch.images, &batch.widths, true, rng)
                })
                .collect::<Result<Vec<_>>>()?;
            let t = teacher
                .as_mut()
                .map(|t| run_frozen(&mut t.model, batch))
                .transpose()?;
            let (loss, terms) = objective(&mut tape, &outs, t.as_ref(), &batch.targets, at)?;
            finish_step(members, tape, &loss, terms, lr, clip)
        },
    )?;
    Ok(DistillReport {
        strategy: "mutual".into(),
        seconds: summary.seconds,
        images_per_s: summary.images_per_s,
        steps: summary.steps,
        students: summary.members.iter().map(report_member).collect(),
        teachers,
        details: json!({ "final_terms": summary.final_terms }),
    })
}

/// The summed objective of all models: for model i, `w_ctc·CTC_i + w·mean_j
/// KL(p_j ‖ p_i)` (+ the teacher's KD). Terms are named `ctc1`, `dml1`,
/// `teacher1`, `ctc2`, …
#[allow(clippy::too_many_arguments)]
fn mutual_loss(
    tape: &mut Tape,
    outs: &[CrnnOutput],
    teacher: Option<&CrnnOutput>,
    targets: &[Vec<usize>],
    at: RunPoint,
    kd: &KdSpec,
    teacher_kd: &KdSpec,
    ctc_w: f32,
) -> Result<(Tensor, Vec<(String, f32)>)> {
    let (w, temperature) = (kd.weight.at(at), kd.temperature.at(at));
    let peers: Vec<Tensor> = outs.iter().map(|o| o.logits.detach()).collect();
    let mut parts: Vec<(String, Tensor, f32)> = Vec::new();
    for (i, out) in outs.iter().enumerate() {
        parts.push((
            format!("ctc{}", i + 1),
            ctc_objective(tape, out, targets)?,
            ctc_w,
        ));
        if w > 0.0 {
            let mut sum: Option<Tensor> = None;
            for (j, peer) in peers.iter().enumerate().filter(|(j, _)| *j != i) {
                let term = kd_term(tape, kd, out, peer, &outs[j].lengths, temperature)?;
                sum = Some(match sum {
                    None => term,
                    Some(acc) => ops::add(tape, &acc, &term)?,
                });
            }
            let sum = sum.ok_or_else(|| Error::invalid("mutual", "needs two models at least"))?;
            let mean = ops::scale(tape, &sum, 1.0 / (outs.len() - 1) as f32)?;
            parts.push((format!("dml{}", i + 1), mean, w));
        }
        if let Some(t) = teacher {
            let tw = teacher_kd.weight.at(at);
            if tw > 0.0 {
                let tt = teacher_kd.temperature.at(at);
                let term = kd_term(tape, teacher_kd, out, &t.logits, &t.lengths, tt)?;
                parts.push((format!("teacher{}", i + 1), term, tw));
            }
        }
    }
    weighted_sum(tape, parts)
}
