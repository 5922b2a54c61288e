//! Noisy student (Xie, Luong, Hovy & Le, CVPR 2020, Algorithm 1): the
//! teacher, without noise, labels the unlabelled images; the lines it reads
//! confidently join the labelled data; a student trained from scratch under
//! noise (augmentation and dropout) learns from both; it then becomes the
//! teacher of the next round. Round r writes its pseudo-labels to
//! `cfg.out/round-r/pseudo/` and its student to `cfg.out/round-r/`.

use super::rebuild;
use super::teacher_student::{train_student, TeacherStudent};
use super::{teacher_report, DistillReport};
use crate::checkpoint;
use crate::data::labels::load_dataset;
use crate::distill::config::{DistillConfig, Objective, Strategy};
use crate::distill::session::{load_run_charset, load_run_data};
use crate::distill::teachers::{load_teacher, Teacher};
use crate::distill::{list_png_files, pseudo_label, write_pseudo_labels};
use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::train::build_model;
use serde_json::json;

/// Runs the rounds; the last round's student is the result.
pub fn run(cfg: &DistillConfig) -> Result<DistillReport> {
    let Strategy::NoisyStudent {
        teacher,
        student,
        unlabeled,
        threshold,
        rounds,
        noise,
        kd,
    } = &cfg.strategy
    else {
        return Err(Error::invalid(
            "noisy_student",
            "not a noisy-student config",
        ));
    };
    let charset = load_run_charset(cfg)?;
    let device = cfg.device.resolve()?;
    let mut images = Vec::new();
    for dir in unlabeled {
        images.extend(list_png_files(dir)?);
    }
    let mut teacher: Teacher = load_teacher(teacher, &charset, device)?;
    let mut rng = Rng::seed(cfg.seed);
    let objective = Objective {
        kd: kd.clone(),
        ..Objective::default()
    };
    let mut per_round = Vec::new();
    let mut students = Vec::new();
    let mut teachers_report = Vec::new();
    let (mut seconds, mut seen, mut steps) = (0.0, 0.0, 0);
    for round in 1..=*rounds {
        let dir = cfg.out.join(format!("round-{round}"));
        let labels = pseudo_label(
            &mut teacher.model,
            &charset,
            &images,
            *threshold,
            cfg.batch_size.max(32),
            cfg.width,
        )?;
        eprintln!(
            "round {round}: {} kept {} of {} unlabelled lines ({} below confidence {threshold}, {} read as empty)",
            teacher.name,
            labels.kept.len(),
            labels.total(),
            labels.below_threshold,
            labels.empty
        );
        let pseudo_dir = dir.join("pseudo");
        let extra = if labels.kept.is_empty() {
            Vec::new()
        } else {
            write_pseudo_labels(&pseudo_dir, &labels.kept)?;
            load_dataset(&pseudo_dir, &charset, false)?.samples
        };
        let data = load_run_data(cfg, &charset, extra, noise.augment)?;
        if round == 1 {
            teachers_report = teacher_report(std::slice::from_mut(&mut teacher), &data)?;
        }
        let base = build_model(student, &charset, &mut rng.fork(300 + round as u64))?;
        let mut config = base.config.clone();
        config.dropout = noise.dropout;
        let noisy = rebuild(&base, config, &mut rng.fork(400 + round as u64))?;
        if noisy.num_parameters() < teacher.model.num_parameters() {
            eprintln!(
                "note: the student ({} parameters) is smaller than its teacher ({}); the paper uses an equal-or-larger student",
                noisy.num_parameters(),
                teacher.model.num_parameters()
            );
        }
        let settings = TeacherStudent {
            teachers: &[],
            student,
            objective: &objective,
            hint_stage_steps: 0,
            kd_epochs: None,
            cache_teacher: false,
            tolerant: None,
        };
        let name = format!("round-{round}");
        let mut current = vec![teacher.clone()];
        let report = train_student(
            cfg,
            &data,
            &settings,
            &mut current,
            noisy,
            rng.fork(500 + round as u64),
            &name,
            &dir,
        )?;
        seconds += report.seconds;
        seen += report.images_per_s * report.seconds;
        steps = report.steps;
        let result = report.students[0].clone();
        per_round.push(json!({
            "round": round,
            "teacher": teacher.name,
            "pseudo_labels_kept": labels.kept.len(),
            "below_threshold": labels.below_threshold,
            "read_empty": labels.empty,
            "student_exact_match": result.exact_match,
            "student_cer": result.cer,
        }));
        students.push(result);
        let mut next = checkpoint::load(&dir.join("best"))?.model;
        next.config.dropout = 0.0;
        next.to_device(device)?;
        teacher = Teacher {
            name,
            model: next,
            weight: 1.0,
        };
    }
    // The final student first: it is the result of the run.
    students.reverse();
    Ok(DistillReport {
        strategy: "noisy_student".into(),
        seconds,
        images_per_s: seen / seconds.max(1e-9),
        steps,
        students,
        teachers: teachers_report,
        details: json!({ "rounds": per_round, "threshold": threshold, "noise": noise }),
    })
}
