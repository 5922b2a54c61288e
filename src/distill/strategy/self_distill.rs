//! Self-distillation through early exits (Phuong & Lampert, "Distillation-
//! based training for multi-exit architectures", ICCV 2019, eq. (3)): every
//! exit learns from the labels, and each early exit also from the final
//! exit's softened output (detached, times T²). Inference may stop at any
//! exit; the report gives accuracy and speed per exit.

use super::{probe_batch, rebuild, report_member, DistillReport};
use crate::autograd::Tape;
use crate::checkpoint;
use crate::distill::config::{DistillConfig, KdSpec, Strategy};
use crate::distill::objective::{kd_term, weighted_sum};
use crate::distill::schedule::RunPoint;
use crate::distill::session::{
    finish_step, load_run_charset, load_run_data, train_members, Member,
};
use crate::distill::teachers::run_frozen;
use crate::error::{Error, Result};
use crate::nn::CrnnOutput;
use crate::rng::Rng;
use crate::tensor::Tensor;
use crate::train::{build_model, ctc_objective, evaluate_at};
use serde_json::json;
use std::collections::BTreeMap;

/// Runs self-distillation; checkpoints (with their exits) in `cfg.out`.
pub fn run(cfg: &DistillConfig) -> Result<DistillReport> {
    let Strategy::SelfDistill {
        model,
        exits,
        kd,
        ctc_weight,
    } = &cfg.strategy
    else {
        return Err(Error::invalid(
            "self_distill",
            "not a self-distillation config",
        ));
    };
    let charset = load_run_charset(cfg)?;
    let data = load_run_data(cfg, &charset, Vec::new(), cfg.augment)?;
    let mut rng = Rng::seed(cfg.seed);
    let base = build_model(model, &charset, &mut rng.fork(1))?;
    let mut config = base.config.clone();
    config.exits = exits.clone();
    config
        .validate()
        .map_err(|e| Error::invalid("config", format!("strategy.exits: {e}")))?;
    let with_exits = rebuild(&base, config, &mut rng.fork(4))?;
    let mut members = vec![Member::new("model", cfg.out.clone(), with_exits, cfg)?];
    {
        let probe = probe_batch(&data)?;
        let out = run_frozen(&mut members[0].model, &probe)?;
        let at = RunPoint {
            step: 0,
            total: data.total_steps,
            epoch: 0,
        };
        self_loss(
            &mut Tape::no_grad(),
            &out,
            &probe.targets,
            at,
            kd,
            ctc_weight.at(at),
        )?;
    }
    let clip = cfg.clip_norm;
    let summary = train_members(
        cfg,
        &data,
        &mut members,
        &cfg.out,
        |members, batch, at, lr, rng| {
            let m = &mut members[0];
            let mut tape = Tape::new();
            let out = m
                .model
                .forward(&mut tape, &batch.images, &batch.widths, true, rng)?;
            let (loss, terms) =
                self_loss(&mut tape, &out, &batch.targets, at, kd, ctc_weight.at(at))?;
            finish_step(std::slice::from_mut(m), tape, &loss, terms, lr, clip)
        },
    )?;
    // Accuracy and speed of the best checkpoint at every exit.
    let mut best = checkpoint::load(&cfg.out.join("best"))?.model;
    let mut per_exit = Vec::new();
    let mut points: Vec<Option<String>> = exits.iter().cloned().map(Some).collect();
    points.push(None);
    for exit in points {
        let r = evaluate_at(&mut best, &data.charset, &data.val, 1, 0, exit.as_deref())?;
        per_exit.push(json!({
            "exit": exit.unwrap_or_else(|| "final".into()),
            "exact_match": r.metrics.exact_match(),
            "cer": r.metrics.cer(),
            "images_per_s": r.images_per_s,
        }));
    }
    Ok(DistillReport {
        strategy: "self_distill".into(),
        seconds: summary.seconds,
        images_per_s: summary.images_per_s,
        steps: summary.steps,
        students: summary.members.iter().map(report_member).collect(),
        teachers: Vec::new(),
        details: json!({ "exits": per_exit, "final_terms": summary.final_terms }),
    })
}

/// `w_ctc·(CTC_final + Σ_e CTC_e) + w·Σ_e KD(final → e)`; terms `ctc`,
/// `ctc_b3`, `kd_b3`, …
fn self_loss(
    tape: &mut Tape,
    out: &CrnnOutput,
    targets: &[Vec<usize>],
    at: RunPoint,
    kd: &KdSpec,
    ctc_w: f32,
) -> Result<(Tensor, Vec<(String, f32)>)> {
    let (w, temperature) = (kd.weight.at(at), kd.temperature.at(at));
    let teacher = out.logits.detach();
    let mut parts: Vec<(String, Tensor, f32)> =
        vec![("ctc".into(), ctc_objective(tape, out, targets)?, ctc_w)];
    for (name, logits) in &out.exits {
        let exit = CrnnOutput {
            logits: logits.clone(),
            lengths: out.lengths.clone(),
            features: BTreeMap::new(),
            exits: BTreeMap::new(),
        };
        parts.push((
            format!("ctc_{name}"),
            ctc_objective(tape, &exit, targets)?,
            ctc_w,
        ));
        if w > 0.0 {
            let term = kd_term(tape, kd, &exit, &teacher, &out.lengths, temperature)?;
            parts.push((format!("kd_{name}"), term, w));
        }
    }
    weighted_sum(tape, parts)
}
