//! Teacher → student: frozen teachers (averaged soft targets), any set of
//! losses with weights and intermediate matches, FitNets' optional hint
//! stage, early-stopped KD, teacher logits cached when nothing changes them.

use super::{probe_batch, report_member, teacher_report, DistillReport, TargetBatches};
use crate::autograd::Tape;
use crate::distill::config::{DistillConfig, Objective, TeacherSpec, TolerantSpec};
use crate::distill::objective::{StudentObjective, TeacherView};
use crate::distill::schedule::RunPoint;
use crate::distill::session::{
    finish_step, load_run_charset, load_run_data, train_members, Member,
};
use crate::distill::teachers::{load_teacher, run_frozen, Teacher, TeacherCache};
use crate::error::Result;
use crate::nn::Crnn;
use crate::rng::Rng;
use crate::train::{build_model, ModelSource};
use serde_json::json;

/// The settings of a teacher → student run.
pub struct TeacherStudent<'a> {
    /// The teachers.
    pub teachers: &'a [TeacherSpec],
    /// The student.
    pub student: &'a ModelSource,
    /// Its losses.
    pub objective: &'a Objective,
    /// Steps of hint-only training first.
    pub hint_stage_steps: u64,
    /// Epochs with the teacher terms on.
    pub kd_epochs: Option<u64>,
    /// Whether teacher logits may be cached.
    pub cache_teacher: bool,
    /// Train the student as a tolerant teacher (generations).
    pub tolerant: Option<&'a TolerantSpec>,
}

/// Runs teacher → student as `cfg` says, the student's checkpoints in
/// `cfg.out/best` and `cfg.out/last`.
pub fn run(cfg: &DistillConfig, s: &TeacherStudent) -> Result<DistillReport> {
    let charset = load_run_charset(cfg)?;
    let device = cfg.device.resolve()?;
    let data = load_run_data(cfg, &charset, Vec::new(), cfg.augment)?;
    let mut teachers = s
        .teachers
        .iter()
        .map(|t| load_teacher(t, &charset, device))
        .collect::<Result<Vec<_>>>()?;
    let mut rng = Rng::seed(cfg.seed);
    let student = build_model(s.student, &charset, &mut rng.fork(1))?;
    let report = train_student(
        cfg,
        &data,
        s,
        &mut teachers,
        student,
        rng.fork(2),
        "student",
        &cfg.out,
    )?;
    Ok(report)
}

/// Trains `student` under `s` with `teachers` (shared by other strategies:
/// generations and noisy student call it for each of their students).
#[allow(clippy::too_many_arguments)]
pub(crate) fn train_student(
    cfg: &DistillConfig,
    data: &crate::distill::session::RunData,
    s: &TeacherStudent,
    teachers: &mut [Teacher],
    student: Crnn,
    mut rng: Rng,
    name: &str,
    dir: &std::path::Path,
) -> Result<DistillReport> {
    let (objective, adaptors) =
        StudentObjective::new(s.objective, &student, teachers, &mut rng.fork(3))?;
    let objective = objective.with_tolerant(s.tolerant.cloned());
    let mut targets = match &s.objective.domain {
        Some(d) => Some(TargetBatches::new(&d.target, cfg)?),
        None => None,
    };
    let mut member = Member::new(name, dir.to_path_buf(), student, cfg)?;
    member.adaptors = adaptors;
    // The adaptors were made on the host; they live where the model does.
    member.to_device(member.model.device())?;
    let probe = probe_batch(data)?;
    {
        // Every term once, without a tape, so that a wrong layer or shape
        // fails now rather than after the first epoch.
        let mut tape = Tape::no_grad();
        let out = member.model.forward(
            &mut tape,
            &probe.images,
            &probe.widths,
            false,
            &mut Rng::seed(0),
        )?;
        let outputs = teachers
            .iter_mut()
            .map(|t| run_frozen(&mut t.model, &probe))
            .collect::<Result<Vec<_>>>()?;
        let view = TeacherView {
            logits: outputs.iter().map(|o| o.logits.clone()).collect(),
            lengths: outputs.iter().map(|o| o.lengths.clone()).collect(),
            outputs: Some(outputs),
        };
        let target = targets.is_some().then(|| out.clone());
        let at = RunPoint {
            step: 0,
            total: data.total_steps,
            epoch: 0,
        };
        objective.loss(
            &mut tape,
            &out,
            &probe.targets,
            Some((&view, &*teachers)),
            &member.adaptors,
            target.as_ref(),
            at,
            false,
        )?;
    }
    let caching = s.cache_teacher && cfg.augment == 0.0 && !objective.needs_teacher_features();
    let mut cache = TeacherCache::new();
    let teacher_summaries = teacher_report(teachers, data)?;
    let clip = cfg.clip_norm;
    let summary = train_members(
        cfg,
        data,
        std::slice::from_mut(&mut member),
        dir,
        |members, batch, at, lr, rng| {
            let m = &mut members[0];
            let kd_on = s.kd_epochs.is_none_or(|e| at.epoch < e) && objective.needs_teachers(at);
            let hints_only = at.step < s.hint_stage_steps;
            let mut tape = Tape::new();
            let out = m
                .model
                .forward(&mut tape, &batch.images, &batch.widths, true, rng)?;
            let view = if !kd_on {
                None
            } else if caching {
                let t = out.logits.dims()[0];
                Some(TeacherView {
                    logits: cache.logits(teachers, batch, &out.lengths, t)?,
                    lengths: vec![out.lengths.clone(); teachers.len()],
                    outputs: None,
                })
            } else {
                let outputs = teachers
                    .iter_mut()
                    .map(|t| run_frozen(&mut t.model, batch))
                    .collect::<Result<Vec<_>>>()?;
                Some(TeacherView {
                    logits: outputs.iter().map(|o| o.logits.clone()).collect(),
                    lengths: outputs.iter().map(|o| o.lengths.clone()).collect(),
                    outputs: Some(outputs),
                })
            };
            let target_out = match targets.as_mut() {
                Some(tb) if !hints_only => {
                    let tbatch = tb.next()?;
                    Some(
                        m.model
                            .forward(&mut tape, &tbatch.images, &tbatch.widths, true, rng)?,
                    )
                }
                _ => None,
            };
            let (loss, terms) = objective.loss(
                &mut tape,
                &out,
                &batch.targets,
                view.as_ref().map(|v| (v, &*teachers)),
                &m.adaptors,
                target_out.as_ref(),
                at,
                hints_only,
            )?;
            finish_step(std::slice::from_mut(m), tape, &loss, terms, lr, clip)
        },
    )?;
    let (hits, misses) = cache.counts();
    Ok(DistillReport {
        strategy: "teacher_student".into(),
        seconds: summary.seconds,
        images_per_s: summary.images_per_s,
        steps: summary.steps,
        students: summary.members.iter().map(report_member).collect(),
        teachers: teacher_summaries,
        details: json!({
            "final_terms": summary.final_terms,
            "teacher_cache": {"enabled": caching, "batches_from_cache": hits, "batches_computed": misses},
            "hint_stage_steps": s.hint_stage_steps,
            "kd_epochs": s.kd_epochs,
        }),
    })
}
