//! A student's objective at one step: CTC on the labels plus the weighted
//! distillation terms of an [`Objective`], built from the losses of this
//! module. Layer names and shapes are checked once, before training, on a
//! small probe batch, so that a wrong match fails at once with its index.

use super::config::{
    DomainLoss, KdLoss, KdSpec, LayerRef, MatchLoss, MatchSpec, Objective, TolerantSpec,
};
use super::schedule::RunPoint;
use super::teachers::{combined_logits, Teacher};
use super::{
    attention_transfer, coral, fsp_loss, hint_loss, mk_mmd, sequence_kd, similarity_preserving,
    soft_kd, tolerant_gap, Adaptor,
};
use crate::autograd::Tape;
use crate::error::{Error, Result};
use crate::nn::{Crnn, CrnnOutput};
use crate::ops;
use crate::rng::Rng;
use crate::tensor::Tensor;
use crate::train::ctc_objective;

/// Kernels of the multi-kernel MMD.
const MMD_KERNELS: usize = 5;

/// The named features a CRNN exposes: `b1` … `bk` and `rnn`.
pub fn layer_names(model: &Crnn) -> Vec<String> {
    let mut names: Vec<String> = (1..=model.blocks.len()).map(|i| format!("b{i}")).collect();
    names.push("rnn".into());
    names
}

fn feature<'a>(out: &'a CrnnOutput, name: &str, whose: &str) -> Result<&'a Tensor> {
    out.features.get(name).ok_or_else(|| {
        Error::invalid(
            "intermediate_matches",
            format!(
                "the {whose} has no layer `{name}`; its layers are {}",
                out.features.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        )
    })
}

/// The width of a named feature: channels of a block map, features of `rnn`.
fn feature_width(model: &Crnn, name: &str, whose: &str) -> Result<usize> {
    if name == "rnn" {
        return Ok(model.config.rnn_features());
    }
    name.strip_prefix('b')
        .and_then(|i| i.parse::<usize>().ok())
        .filter(|&i| i >= 1 && i <= model.config.blocks.len())
        .map(|i| model.config.blocks[i - 1].out_channels)
        .ok_or_else(|| {
            Error::invalid(
                "intermediate_matches",
                format!(
                    "the {whose} has no layer `{name}`; its layers are {}",
                    layer_names(model).join(", ")
                ),
            )
        })
}

/// The logit-level KD term between a student's logits and teacher logits.
pub fn kd_term(
    tape: &mut Tape,
    kd: &KdSpec,
    student: &CrnnOutput,
    teacher_logits: &Tensor,
    teacher_lengths: &[usize],
    temperature: f32,
) -> Result<Tensor> {
    match kd.loss {
        KdLoss::Soft => soft_kd(
            tape,
            &student.logits,
            teacher_logits,
            &student.lengths,
            temperature,
        ),
        KdLoss::Sequence => sequence_kd(
            tape,
            &student.logits,
            teacher_logits,
            &student.lengths,
            teacher_lengths,
            temperature,
        ),
    }
}

/// What the teachers said about a batch.
#[derive(Debug)]
pub struct TeacherView {
    /// Each teacher's logits (T, N, K).
    pub logits: Vec<Tensor>,
    /// Each teacher's real frames per sample.
    pub lengths: Vec<Vec<usize>>,
    /// Each teacher's full output, when features were needed.
    pub outputs: Option<Vec<CrnnOutput>>,
}

/// An [`Objective`] made ready for one student and its teachers: adaptors
/// built for the hint matches, layers checked.
#[derive(Debug)]
pub struct StudentObjective {
    spec: Objective,
    /// The tolerant-teacher term (η, secondary classes), when this student
    /// is to become a tolerant teacher.
    tolerant: Option<TolerantSpec>,
    /// The adaptors of each match, in order: one for a hint, one per layer
    /// for FSP between layers of different widths, none otherwise.
    adaptors: Vec<Vec<usize>>,
}

impl StudentObjective {
    /// Checks `spec` against `student` and `teachers` (layer names, widths)
    /// and creates an adaptor for each hint match, returned for the caller
    /// to train (their order is the match order of the hint matches).
    pub fn new(
        spec: &Objective,
        student: &Crnn,
        teachers: &[Teacher],
        rng: &mut Rng,
    ) -> Result<(StudentObjective, Vec<Adaptor>)> {
        let mut adaptors = Vec::new();
        let mut index = Vec::new();
        for (i, m) in spec.intermediate_matches.iter().enumerate() {
            let here = |e: Error| {
                Error::invalid(
                    "config",
                    format!("strategy.objective.intermediate_matches[{i}]: {e}"),
                )
            };
            let teacher = &teachers
                .get(m.teacher)
                .ok_or_else(|| here(Error::invalid("teacher", "no such teacher")))?
                .model;
            for name in m.teacher_layer.names() {
                feature_width(teacher, name, "teacher").map_err(here)?;
            }
            for name in m.student_layer.names() {
                feature_width(student, name, "student").map_err(here)?;
            }
            if matches!(m.loss, MatchLoss::Attention | MatchLoss::Fsp) {
                for name in m
                    .teacher_layer
                    .names()
                    .into_iter()
                    .chain(m.student_layer.names())
                {
                    if name == "rnn" {
                        return Err(here(Error::invalid(
                            "layer",
                            format!("{:?} needs conv feature maps (b1 … bk), not rnn", m.loss),
                        )));
                    }
                }
            }
            if m.loss == MatchLoss::Hint {
                let (LayerRef::One(s), LayerRef::One(t)) = (&m.student_layer, &m.teacher_layer)
                else {
                    return Err(here(Error::invalid("layer", "hint takes one layer each")));
                };
                if (s == "rnn") != (t == "rnn") {
                    return Err(here(Error::invalid(
                        "layer",
                        format!(
                            "hint between a map and a sequence (`{s}` and `{t}`) is not defined"
                        ),
                    )));
                }
                let sw = feature_width(student, s, "student").map_err(here)?;
                let tw = feature_width(teacher, t, "teacher").map_err(here)?;
                let adaptor = if s == "rnn" {
                    Adaptor::for_sequence(sw, tw, rng)?
                } else {
                    Adaptor::for_map(sw, tw, rng)?
                };
                index.push(vec![adaptors.len()]);
                adaptors.push(adaptor);
            } else if m.loss == MatchLoss::Fsp {
                // FSP matrices compare only between layers of equal widths
                // (Yim et al. distil between ResNets of the same widths); a
                // student of other widths reaches the teacher's through 1x1
                // adaptors, as FitNets' regressors.
                let widths = m
                    .student_layer
                    .names()
                    .into_iter()
                    .zip(m.teacher_layer.names())
                    .map(|(s, t)| {
                        Ok((
                            feature_width(student, s, "student")?,
                            feature_width(teacher, t, "teacher")?,
                        ))
                    })
                    .collect::<Result<Vec<_>>>()
                    .map_err(here)?;
                let mut own = Vec::new();
                if widths.iter().any(|(sw, tw)| sw != tw) {
                    for (sw, tw) in widths {
                        own.push(adaptors.len());
                        adaptors.push(Adaptor::for_map(sw, tw, rng)?);
                    }
                }
                index.push(own);
            } else {
                index.push(Vec::new());
            }
        }
        if let Some(d) = &spec.domain {
            feature_width(student, &d.layer, "student").map_err(|e| {
                Error::invalid("config", format!("strategy.objective.domain.layer: {e}"))
            })?;
        }
        Ok((
            StudentObjective {
                spec: spec.clone(),
                tolerant: None,
                adaptors: index,
            },
            adaptors,
        ))
    }

    /// Adds the tolerant-teacher term `η · tolerant_gap` (Yang et al., AAAI 2019).
    pub fn with_tolerant(mut self, tolerant: Option<TolerantSpec>) -> StudentObjective {
        self.tolerant = tolerant;
        self
    }

    /// The objective's specification.
    pub fn spec(&self) -> &Objective {
        &self.spec
    }

    /// Whether any term reads teacher features (not only logits).
    pub fn needs_teacher_features(&self) -> bool {
        !self.spec.intermediate_matches.is_empty()
    }

    /// Whether any term needs the teachers at `at` (KD or matches switched on).
    pub fn needs_teachers(&self, at: RunPoint) -> bool {
        self.spec
            .kd
            .as_ref()
            .is_some_and(|kd| !kd.weight.is_off_from(at))
            || self
                .spec
                .intermediate_matches
                .iter()
                .any(|m| !m.weight().is_off_from(at))
    }

    /// The total loss and the value of each term (unweighted, named `ctc`,
    /// `kd`, `hint0`, `attention1`, …, `domain`). `teachers` is `None` when
    /// the teacher terms are off (then they are left out); `hints_only`
    /// keeps only the hint terms (FitNets' first stage). `target` holds the
    /// student's output on unlabelled target images for the domain term.
    #[allow(clippy::too_many_arguments)]
    pub fn loss(
        &self,
        tape: &mut Tape,
        student: &CrnnOutput,
        targets: &[Vec<usize>],
        teachers: Option<(&TeacherView, &[Teacher])>,
        adaptors: &[Adaptor],
        target: Option<&CrnnOutput>,
        at: RunPoint,
        hints_only: bool,
    ) -> Result<(Tensor, Vec<(String, f32)>)> {
        let mut parts: Vec<(String, Tensor, f32)> = Vec::new();
        if !hints_only {
            let w = self.spec.ctc_weight.at(at);
            if w > 0.0 {
                parts.push(("ctc".into(), ctc_objective(tape, student, targets)?, w));
            }
        }
        if let (Some(t), false) = (&self.tolerant, hints_only) {
            let gap = tolerant_gap(tape, &student.logits, &student.lengths, t.secondary)?;
            parts.push(("tolerant".into(), gap, t.eta));
        }
        if let Some((view, list)) = teachers {
            if let (Some(kd), false) = (&self.spec.kd, hints_only) {
                let w = kd.weight.at(at);
                if w > 0.0 {
                    let temperature = kd.temperature.at(at);
                    let weighted: Vec<(&Tensor, f32)> = view
                        .logits
                        .iter()
                        .zip(list)
                        .map(|(z, t)| (z, t.weight))
                        .collect();
                    let target_logits = combined_logits(&weighted, temperature)?;
                    let term = kd_term(
                        tape,
                        kd,
                        student,
                        &target_logits,
                        &view.lengths[0],
                        temperature,
                    )
                    .map_err(|e| {
                        Error::invalid(
                            "kd",
                            format!(
                                "{e} (a teacher with other pooling needs \"loss\": \"sequence\")"
                            ),
                        )
                    })?;
                    parts.push(("kd".into(), term, w));
                }
            }
            for (i, m) in self.spec.intermediate_matches.iter().enumerate() {
                if hints_only && m.loss != MatchLoss::Hint {
                    continue;
                }
                let w = m.weight().at(at);
                if w <= 0.0 {
                    continue;
                }
                let outputs = view.outputs.as_ref().ok_or_else(|| {
                    Error::invalid("objective", "teacher features were not computed")
                })?;
                let term = self
                    .match_term(tape, i, m, student, &outputs[m.teacher], adaptors)
                    .map_err(|e| {
                        Error::invalid(
                            "config",
                            format!("strategy.objective.intermediate_matches[{i}]: {e}"),
                        )
                    })?;
                let name = match m.loss {
                    MatchLoss::Hint => "hint",
                    MatchLoss::Attention => "attention",
                    MatchLoss::Fsp => "fsp",
                    MatchLoss::Similarity => "similarity",
                };
                let name = if self.spec.intermediate_matches.len() > 1 {
                    format!("{name}{i}")
                } else {
                    name.to_string()
                };
                parts.push((name, term, w));
            }
        }
        if let (Some(d), Some(t), false) = (&self.spec.domain, target, hints_only) {
            let w = d.weight.at(at);
            if w > 0.0 {
                let s = feature(student, &d.layer, "student")?;
                let tf = feature(t, &d.layer, "student")?;
                let (s, tf) = (pooled_rows(tape, s)?, pooled_rows(tape, tf)?);
                let term = match d.loss {
                    DomainLoss::Mmd => mk_mmd(tape, &s, &tf, MMD_KERNELS)?,
                    DomainLoss::Coral => coral(tape, &s, &tf)?,
                };
                parts.push(("domain".into(), term, w));
            }
        }
        weighted_sum(tape, parts)
    }

    fn match_term(
        &self,
        tape: &mut Tape,
        i: usize,
        m: &MatchSpec,
        student: &CrnnOutput,
        teacher: &CrnnOutput,
        adaptors: &[Adaptor],
    ) -> Result<Tensor> {
        let one = |r: &LayerRef| -> Result<String> {
            match r {
                LayerRef::One(n) => Ok(n.clone()),
                LayerRef::Pair(_) => Err(Error::invalid("layer", "expected one layer")),
            }
        };
        match m.loss {
            MatchLoss::Hint => {
                let a = self.adaptors[i]
                    .first()
                    .and_then(|&k| adaptors.get(k))
                    .ok_or_else(|| Error::invalid("hint", "no adaptor for this match"))?;
                let s = feature(student, &one(&m.student_layer)?, "student")?;
                let t = feature(teacher, &one(&m.teacher_layer)?, "teacher")?;
                hint_loss(tape, a, s, &t.detach())
            }
            MatchLoss::Attention => {
                let s = feature(student, &one(&m.student_layer)?, "student")?;
                let t = feature(teacher, &one(&m.teacher_layer)?, "teacher")?;
                attention_transfer(tape, s, &t.detach(), 2.0)
            }
            MatchLoss::Similarity => {
                let s = feature(student, &one(&m.student_layer)?, "student")?;
                let t = feature(teacher, &one(&m.teacher_layer)?, "teacher")?;
                similarity_preserving(tape, s, &t.detach())
            }
            MatchLoss::Fsp => {
                let (LayerRef::Pair([s1, s2]), LayerRef::Pair([t1, t2])) =
                    (&m.student_layer, &m.teacher_layer)
                else {
                    return Err(Error::invalid("fsp", "fsp takes two layers each"));
                };
                let mut s = (
                    feature(student, s1, "student")?.clone(),
                    feature(student, s2, "student")?.clone(),
                );
                if let [a, b] = self.adaptors[i][..] {
                    s = (
                        adaptors[a].forward(tape, &s.0)?,
                        adaptors[b].forward(tape, &s.1)?,
                    );
                }
                let t = (
                    feature(teacher, t1, "teacher")?.detach(),
                    feature(teacher, t2, "teacher")?.detach(),
                );
                fsp_loss(tape, (&s.0, &s.1), (&t.0, &t.1))
            }
        }
    }
}

/// `Σ wᵢ·termᵢ` over named parts, and each term's value (unweighted) after
/// the total, named `loss`. An empty list is an error (nothing to learn from).
pub fn weighted_sum(
    tape: &mut Tape,
    parts: Vec<(String, Tensor, f32)>,
) -> Result<(Tensor, Vec<(String, f32)>)> {
    let mut values = Vec::with_capacity(parts.len() + 1);
    let mut total: Option<Tensor> = None;
    for (name, term, w) in parts {
        values.push((name, term.item()?));
        let weighted = ops::scale(tape, &term, w)?;
        total = Some(match total {
            None => weighted,
            Some(acc) => ops::add(tape, &acc, &weighted)?,
        });
    }
    let total = total.ok_or_else(|| {
        Error::invalid(
            "objective",
            "every loss weight is 0 at this step: nothing to learn from",
        )
    })?;
    values.insert(0, ("loss".into(), total.item()?));
    Ok((total, values))
}

/// One row per sample for the domain losses: a (T, N, F) sequence is
/// averaged over time, a (N, C, H, W) map over its positions, giving (N, F)
/// or (N, C), so that lines of different widths compare.
fn pooled_rows(tape: &mut Tape, x: &Tensor) -> Result<Tensor> {
    match x.rank() {
        3 => ops::mean(tape, x, &[0], false),
        4 => ops::mean(tape, x, &[2, 3], false),
        _ => Err(Error::shape(
            "domain",
            format!("cannot pool a feature of shape {:?}", x.shape()),
        )),
    }
}
