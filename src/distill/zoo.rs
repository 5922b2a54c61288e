//! The zoo: the student alone and every distillation method on the same
//! data, steps and seed, in one table (`zoo.md`, `zoo.json`), so that each
//! method's gain over the student alone is measured, not assumed.

use super::config::{
    DistillConfig, DomainLoss, DomainSpec, KdLoss, KdSpec, LayerRef, MatchLoss, MatchSpec,
    Objective, Strategy, TeacherSpec, TolerantSpec,
};
use super::schedule::Schedule;
use super::strategy::{distill, DistillReport};
use crate::data::batch::WidthPolicy;
use crate::data::charset::Charset;
use crate::data::labels::load_datasets;
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::optim::{LrSchedule, OptimizerConfig};
use crate::train::{train, Budget, ModelSource};
use crate::DeviceChoice;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// What the zoo compares.
#[derive(Clone, Debug)]
pub struct ZooConfig {
    /// The trained teacher.
    pub teacher: TeacherSpec,
    /// Training data folders.
    pub train: Vec<PathBuf>,
    /// Validation data folders.
    pub val: Vec<PathBuf>,
    /// Output folder: one sub-folder per method, `zoo.md`, `zoo.json`.
    pub out: PathBuf,
    /// Steps of every trained model.
    pub steps: u64,
    /// The student architecture.
    pub student: ModelSource,
    /// Seed of every run.
    pub seed: u64,
    /// Images per batch.
    pub batch_size: usize,
    /// Peak learning rate of every run (cosine decay after a warm-up).
    pub lr: f32,
    /// Unlabelled images (noisy student, domain alignment); those methods
    /// are reported as skipped without them.
    pub unlabeled: Option<PathBuf>,
    /// Only these methods (all when `None`); `alone` always runs.
    pub only: Option<Vec<String>>,
    /// Show progress bars.
    pub progress: bool,
    /// Where every run computes.
    pub device: DeviceChoice,
}

/// One row of the zoo.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ZooRow {
    /// Method name.
    pub method: String,
    /// What it does.
    pub what: String,
    /// Validation exact match of its (best) student, or `None` when skipped.
    pub exact_match: Option<f64>,
    /// CER.
    pub cer: Option<f64>,
    /// Exact match minus the student alone's, in percentage points.
    pub gain_pp: Option<f64>,
    /// Wall time of the method, seconds.
    pub seconds: f64,
    /// Why it was skipped, or a note on how it was measured.
    pub note: String,
}

/// The methods of the zoo: (name, description).
pub const METHODS: &[(&str, &str)] = &[
    ("alone", "the student with CTC only"),
    ("kd", "soft-softmax KD per frame, T = 4 (Hinton 2015)"),
    ("kd-sequence", "KD on time-averaged distributions, T = 4"),
    ("kd+hint", "KD + FitNets hint at b4 through a 1x1 adaptor"),
    (
        "fitnets",
        "hint at b4 for the first 20% of steps, then KD (Romero 2015)",
    ),
    (
        "attention",
        "CTC + attention transfer at b2 and b4 (Zagoruyko 2017)",
    ),
    ("fsp", "CTC + FSP between b2 and b3 (Yim 2017)"),
    (
        "similarity",
        "CTC + similarity-preserving at rnn (Tung 2019)",
    ),
    ("eskd", "KD switched off after half the epochs (Cho 2019)"),
    ("dml", "two students learn from each other (Zhang 2018)"),
    ("dml+teacher", "two students and the teacher (PaddleOCR)"),
    (
        "self",
        "exits after b2 and b3 taught by the final exit (Phuong 2019)",
    ),
    (
        "born-again",
        "2 generations of the student (Furlanello 2018), the last reported",
    ),
    (
        "tolerant",
        "born-again with a tolerant first generation (Yang 2019)",
    ),
    (
        "noisy-student",
        "the teacher pseudo-labels --unlabeled, a noised student learns (Xie 2020)",
    ),
    ("domain", "KD + CORAL to --unlabeled at rnn (Sun 2016)"),
];

fn kd(loss: KdLoss) -> KdSpec {
    KdSpec {
        loss,
        weight: Schedule::Constant(1.0),
        temperature: Schedule::Constant(4.0),
    }
}

fn one_match(t: &str, s: &str, loss: MatchLoss) -> MatchSpec {
    MatchSpec {
        teacher_layer: LayerRef::One(t.into()),
        student_layer: LayerRef::One(s.into()),
        loss,
        weight: None,
        teacher: 0,
    }
}

impl ZooConfig {
    fn base(&self, out: &str, strategy: Strategy) -> DistillConfig {
        DistillConfig {
            train: self.train.clone(),
            val: self.val.clone(),
            out: self.out.join(out),
            charset: None,
            optimizer: OptimizerConfig::adam(),
            lr: self.lr,
            schedule: LrSchedule::Cosine { min_lr: 1e-5 },
            warmup_steps: 200.min(self.steps / 10),
            clip_norm: Some(5.0),
            batch_size: self.batch_size,
            budget: Budget::Steps(self.steps),
            seed: self.seed,
            val_every: (self.steps / 4).max(1),
            log_every: 25,
            width: WidthPolicy::Pad {
                max_width: 512,
                multiple: 4,
            },
            augment: 0.0,
            skip_bad: false,
            progress: self.progress,
            strategy,
            device: self.device,
            resume: false,
        }
    }

    fn teacher_student(&self, out: &str, objective: Objective) -> DistillConfig {
        self.base(
            out,
            Strategy::TeacherStudent {
                teachers: vec![self.teacher.clone()],
                student: self.student.clone(),
                objective,
                hint_stage_steps: 0,
                kd_epochs: None,
                cache_teacher: true,
            },
        )
    }

    /// The distillation config of `method`, or why it cannot run.
    fn method(&self, method: &str, epochs: u64) -> std::result::Result<DistillConfig, String> {
        let objective = |kd_spec: Option<KdSpec>, matches: Vec<MatchSpec>| Objective {
            ctc_weight: Schedule::Constant(1.0),
            kd: kd_spec,
            intermediate_matches: matches,
            domain: None,
        };
        let unlabeled = || {
            self.unlabeled
                .clone()
                .ok_or_else(|| "skipped: needs --unlabeled".to_string())
        };
        Ok(match method {
            "kd" => self.teacher_student(method, objective(Some(kd(KdLoss::Soft)), vec![])),
            "kd-sequence" => {
                self.teacher_student(method, objective(Some(kd(KdLoss::Sequence)), vec![]))
            }
            "kd+hint" => self.teacher_student(
                method,
                objective(
                    Some(kd(KdLoss::Soft)),
                    vec![one_match("b4", "b4", MatchLoss::Hint)],
                ),
            ),
            "fitnets" => {
                let mut c = self.teacher_student(
                    method,
                    objective(
                        Some(kd(KdLoss::Soft)),
                        vec![one_match("b4", "b4", MatchLoss::Hint)],
                    ),
                );
                if let Strategy::TeacherStudent {
                    hint_stage_steps, ..
                } = &mut c.strategy
                {
                    *hint_stage_steps = self.steps / 5;
                }
                c
            }
            "attention" => self.teacher_student(
                method,
                objective(
                    None,
                    vec![
                        one_match("b2", "b2", MatchLoss::Attention),
                        one_match("b4", "b4", MatchLoss::Attention),
                    ],
                ),
            ),
            "fsp" => self.teacher_student(
                method,
                objective(
                    None,
                    vec![MatchSpec {
                        teacher_layer: LayerRef::Pair(["b2".into(), "b3".into()]),
                        student_layer: LayerRef::Pair(["b2".into(), "b3".into()]),
                        loss: MatchLoss::Fsp,
                        weight: Some(Schedule::Constant(0.01)),
                        teacher: 0,
                    }],
                ),
            ),
            "similarity" => self.teacher_student(
                method,
                objective(None, vec![one_match("rnn", "rnn", MatchLoss::Similarity)]),
            ),
            "eskd" => {
                let mut c = self.teacher_student(method, objective(Some(kd(KdLoss::Soft)), vec![]));
                if let Strategy::TeacherStudent { kd_epochs, .. } = &mut c.strategy {
                    *kd_epochs = Some((epochs / 2).max(1));
                }
                c
            }
            "dml" | "dml+teacher" => self.base(
                method,
                Strategy::Mutual {
                    models: vec![self.student.clone(), self.student.clone()],
                    kd: KdSpec {
                        temperature: Schedule::Constant(1.0),
                        ..kd(KdLoss::Soft)
                    },
                    ctc_weight: Schedule::Constant(1.0),
                    teacher: (method == "dml+teacher").then(|| self.teacher.clone()),
                    teacher_kd: (method == "dml+teacher").then(|| kd(KdLoss::Soft)),
                },
            ),
            "self" => self.base(
                method,
                Strategy::SelfDistill {
                    model: self.student.clone(),
                    exits: vec!["b2".into(), "b3".into()],
                    kd: KdSpec {
                        temperature: Schedule::Constant(3.0),
                        ..kd(KdLoss::Soft)
                    },
                    ctc_weight: Schedule::Constant(1.0),
                },
            ),
            "born-again" | "tolerant" => self.base(
                method,
                Strategy::Generations {
                    model: self.student.clone(),
                    generations: 2,
                    first: None,
                    kd: kd(KdLoss::Soft),
                    ctc_weight: Schedule::Constant(1.0),
                    tolerant: (method == "tolerant").then_some(TolerantSpec {
                        eta: 0.5,
                        secondary: super::TOLERANT_DEFAULT_SECONDARY,
                    }),
                },
            ),
            "noisy-student" => self.base(
                method,
                Strategy::NoisyStudent {
                    teacher: self.teacher.clone(),
                    student: self.student.clone(),
                    unlabeled: vec![unlabeled()?],
                    threshold: 0.9,
                    rounds: 1,
                    noise: Default::default(),
                    kd: None,
                },
            ),
            "domain" => {
                let mut c = self.teacher_student(method, objective(Some(kd(KdLoss::Soft)), vec![]));
                if let Strategy::TeacherStudent { objective, .. } = &mut c.strategy {
                    objective.domain = Some(DomainSpec {
                        target: vec![unlabeled()?],
                        loss: DomainLoss::Coral,
                        layer: "rnn".into(),
                        weight: Schedule::Shaped(super::schedule::Shape::DanRamp {
                            max: 1.0,
                            gamma: 10.0,
                        }),
                    });
                }
                c
            }
            other => return Err(format!("unknown method {other}")),
        })
    }
}

fn markdown(cfg: &ZooConfig, rows: &[ZooRow]) -> String {
    let mut md = format!(
        "# retort zoo\n\nteacher `{}`, student `{}`, {} steps at batch {}, learning rate {}, seed {}, data {:?}, validation {:?}.\n\n",
        cfg.teacher.model,
        match &cfg.student {
            ModelSource::Preset(p) => p.clone(),
            ModelSource::Config(_) => "custom config".into(),
            ModelSource::Checkpoint(p) => p.display().to_string(),
        },
        cfg.steps,
        cfg.batch_size,
        cfg.lr,
        cfg.seed,
        cfg.train,
        cfg.val
    );
    md.push_str("| method | what | exact match | CER | gain over alone | wall time | note |\n");
    md.push_str("| --- | --- | ---: | ---: | ---: | ---: | --- |\n");
    for r in rows {
        let pct = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{:.2}%", 100.0 * v));
        let gain = r.gain_pp.map_or("–".to_string(), |g| format!("{g:+.2} pp"));
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.0} s | {} |\n",
            r.method,
            r.what,
            pct(r.exact_match),
            pct(r.cer),
            gain,
            r.seconds,
            r.note
        ));
    }
    md
}

fn save(cfg: &ZooConfig, rows: &[ZooRow]) -> Result<()> {
    let json = serde_json::to_vec_pretty(rows)
        .map_err(|e| Error::invalid("zoo", format!("cannot serialise the table: {e}")))?;
    write_atomic(&cfg.out.join("zoo.json"), &json)?;
    write_atomic(&cfg.out.join("zoo.md"), markdown(cfg, rows).as_bytes())
}

/// The result of a method's report: the student it is judged by.
fn judged(report: &DistillReport) -> (f64, f64, String) {
    let s = report
        .students
        .iter()
        .max_by(|a, b| a.exact_match.total_cmp(&b.exact_match));
    match (report.strategy.as_str(), report.students.as_slice()) {
        ("generations", list) if !list.is_empty() => {
            let last = &list[list.len() - 1];
            (
                last.exact_match,
                last.cer,
                format!("last of {} generations", list.len()),
            )
        }
        ("noisy_student", [first, ..]) => (first.exact_match, first.cer, String::new()),
        ("mutual", list) if list.len() > 1 => {
            let best = s.expect("two models");
            (
                best.exact_match,
                best.cer,
                format!("best of {} peers", list.len()),
            )
        }
        (_, [first, ..]) => (first.exact_match, first.cer, String::new()),
        _ => (0.0, 1.0, "no student".into()),
    }
}

/// Runs every method (or those of `cfg.only`), writing `zoo.md` and
/// `zoo.json` after each one so that a long zoo can be read while it runs.
pub fn run_zoo(cfg: &ZooConfig) -> Result<Vec<ZooRow>> {
    if let Some(only) = &cfg.only {
        if let Some(bad) = only.iter().find(|m| !METHODS.iter().any(|(n, _)| n == m)) {
            return Err(Error::invalid(
                "zoo",
                format!(
                    "unknown method `{bad}`; the methods are {}",
                    METHODS
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    if cfg.steps == 0 {
        return Err(Error::invalid("zoo", "--budget must be at least 1 step"));
    }
    std::fs::create_dir_all(&cfg.out).map_err(|e| Error::io(&cfg.out, e))?;
    let mut rows: Vec<ZooRow> = Vec::new();
    let started = Instant::now();
    let alone_cfg = cfg
        .teacher_student("alone", Objective::default())
        .as_train("", cfg.student.clone());
    eprintln!("zoo: alone");
    let alone = train(&alone_cfg)?;
    let lines = load_datasets(&cfg.train, &Charset::default_alnum(), true)?
        .samples
        .len()
        .max(1) as u64;
    let epochs = (cfg.steps * cfg.batch_size as u64).div_ceil(lines);
    rows.push(ZooRow {
        method: "alone".into(),
        what: METHODS[0].1.into(),
        exact_match: Some(alone.best_exact_match),
        cer: Some(alone.best_cer),
        gain_pp: Some(0.0),
        seconds: started.elapsed().as_secs_f64(),
        note: String::new(),
    });
    save(cfg, &rows)?;
    let mut teacher_row: Option<ZooRow> = None;
    for (name, what) in METHODS.iter().skip(1) {
        if cfg
            .only
            .as_ref()
            .is_some_and(|o| !o.iter().any(|m| m == name))
        {
            continue;
        }
        let t0 = Instant::now();
        let row = match cfg.method(name, epochs) {
            Err(why) => ZooRow {
                method: name.to_string(),
                what: what.to_string(),
                exact_match: None,
                cer: None,
                gain_pp: None,
                seconds: 0.0,
                note: why,
            },
            Ok(dcfg) => {
                eprintln!("zoo: {name}");
                let report = distill(&dcfg)?;
                if let Some(t) = report.teachers.first() {
                    teacher_row.get_or_insert(ZooRow {
                        method: "teacher".into(),
                        what: format!("the teacher, {} parameters", t.parameters),
                        exact_match: Some(t.exact_match),
                        cer: Some(t.cer),
                        gain_pp: Some(100.0 * (t.exact_match - alone.best_exact_match)),
                        seconds: 0.0,
                        note: String::new(),
                    });
                }
                let (em, cer, note) = judged(&report);
                ZooRow {
                    method: name.to_string(),
                    what: what.to_string(),
                    exact_match: Some(em),
                    cer: Some(cer),
                    gain_pp: Some(100.0 * (em - alone.best_exact_match)),
                    seconds: t0.elapsed().as_secs_f64(),
                    note,
                }
            }
        };
        rows.push(row);
        save(cfg, &rows)?;
        if let (Some(t), false) = (
            teacher_row.take(),
            rows.iter().any(|r| r.method == "teacher"),
        ) {
            rows.insert(0, t);
            save(cfg, &rows)?;
        }
    }
    Ok(rows)
}
