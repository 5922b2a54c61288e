//! Soft-target distillation (Hinton, Vinyals & Dean 2015, "Distilling the
//! knowledge in a neural network", §2): the student matches the teacher's
//! softened distribution `softmax(z / T)`, and the loss is multiplied by T²
//! so that its gradients keep their size as T changes (end of §2).

use super::{check_temperature, nonempty};
use crate::autograd::Tape;
use crate::error::{Error, Result};
use crate::ops::{self, Reduction};
use crate::tensor::Tensor;

/// Checks that `x` is (T, N, K) with K > 0 and N = `lengths.len()` > 0, each
/// length at most T; returns (T, N, K).
fn check_logits(
    op: &'static str,
    what: &str,
    x: &Tensor,
    lengths: &[usize],
) -> Result<(usize, usize, usize)> {
    let &[t, n, k] = x.dims() else {
        return Err(Error::shape(
            op,
            format!("{what} logits must be (T, N, K), got {:?}", x.shape()),
        ));
    };
    nonempty(op, x, n)?;
    if k == 0 {
        return Err(Error::shape(
            op,
            format!("{what} logits {:?} have no classes", x.shape()),
        ));
    }
    if lengths.len() != n {
        return Err(Error::shape(
            op,
            format!(
                "{} {what} lengths for a batch of {n} in {:?}",
                lengths.len(),
                x.shape()
            ),
        ));
    }
    if let Some(&bad) = lengths.iter().find(|&&l| l > t) {
        return Err(Error::shape(
            op,
            format!(
                "{what} length {bad} exceeds the {t} frames of {:?}",
                x.shape()
            ),
        ));
    }
    Ok((t, n, k))
}

/// Frame-level soft-target KD: for each real frame (t, n) with
/// `t < lengths[n]`, `KL(softmax(z_t/T) ‖ softmax(z_s/T)) · T²` over the class
/// axis, averaged over the real frames (Hinton et al. 2015, §2: the soft-target
/// cross-entropy, less the teacher's constant entropy, times T²).
///
/// `student_logits` and `teacher_logits` are (T, N, K) of the same shape;
/// padded frames contribute nothing, neither value nor gradient. Errors: a
/// shape mismatch, a length above T, no real frame at all, an empty batch, a
/// temperature that is not positive and finite.
pub fn soft_kd(
    tape: &mut Tape,
    student_logits: &Tensor,
    teacher_logits: &Tensor,
    lengths: &[usize],
    temperature: f32,
) -> Result<Tensor> {
    const OP: &str = "soft_kd";
    check_temperature(OP, temperature)?;
    if student_logits.shape() != teacher_logits.shape() {
        return Err(Error::shape(
            OP,
            format!(
                "student logits {:?} and teacher logits {:?} differ (use sequence_kd for unaligned frames)",
                student_logits.shape(),
                teacher_logits.shape()
            ),
        ));
    }
    let (t, n, _) = check_logits(OP, "student", student_logits, lengths)?;
    let frames: usize = lengths.iter().sum();
    if frames == 0 {
        return Err(Error::invalid(OP, "every sequence has length 0"));
    }
    let log_q = ops::log_softmax(tape, student_logits, temperature)?;
    let log_p = ops::log_softmax(tape, teacher_logits, temperature)?;
    let per_frame = ops::kl_div(tape, &log_q, &log_p, Reduction::None)?; // (T, N)
    let mask: Vec<f32> = (0..t)
        .flat_map(|ti| lengths.iter().map(move |&l| if ti < l { 1.0 } else { 0.0 }))
        .collect();
    let mask = Tensor::from_vec(mask, &[t, n])?.to_device(per_frame.device())?;
    let masked = ops::mul_const(tape, &per_frame, &mask)?;
    let total = ops::sum_all(tape, &masked)?;
    ops::scale(tape, &total, temperature * temperature / frames as f32)
}

/// The time-averaged softened distribution of each sample: (T, N, K) logits →
/// (N, K), `p̄_n = (1/L_n) Σ_{t < L_n} softmax(z_{t,n}/T)`.
fn averaged_distribution(
    tape: &mut Tape,
    logits: &Tensor,
    lengths: &[usize],
    temperature: f32,
    (t, n, k): (usize, usize, usize),
) -> Result<Tensor> {
    let probs = ops::softmax(tape, logits, temperature)?;
    let mut weights = vec![0.0f32; t * n * k];
    for ti in 0..t {
        for (ni, &l) in lengths.iter().enumerate() {
            if ti < l {
                let w = 1.0 / l as f32;
                let at = (ti * n + ni) * k;
                weights[at..at + k].iter_mut().for_each(|v| *v = w);
            }
        }
    }
    let weights = Tensor::from_vec(weights, &[t, n, k])?.to_device(probs.device())?;
    let weighted = ops::mul_const(tape, &probs, &weights)?;
    ops::sum(tape, &weighted, &[0], false)
}

/// Sequence-level soft-target KD, which needs no alignment between teacher
/// and student frames: each model's softened distributions `softmax(z/T)` are
/// averaged over the sample's own real frames (the character distribution of
/// the line), then `KL(p̄_teacher ‖ p̄_student) · T²` (Hinton et al. 2015, §2,
/// applied to the averages), averaged over the batch.
///
/// Student logits (Ts, N, K) and teacher logits (Tt, N, K) may differ in
/// length; N and K must agree. Every sample needs at least one real frame in
/// both. The averages are logged without a floor: a class whose probability
/// underflows to 0 in the student while the teacher gives it mass makes the
/// loss infinite, as the KL divergence is.
pub fn sequence_kd(
    tape: &mut Tape,
    student_logits: &Tensor,
    teacher_logits: &Tensor,
    student_lengths: &[usize],
    teacher_lengths: &[usize],
    temperature: f32,
) -> Result<Tensor> {
    const OP: &str = "sequence_kd";
    check_temperature(OP, temperature)?;
    let s = check_logits(OP, "student", student_logits, student_lengths)?;
    let t = check_logits(OP, "teacher", teacher_logits, teacher_lengths)?;
    if s.1 != t.1 || s.2 != t.2 {
        return Err(Error::shape(
            OP,
            format!(
                "student logits {:?} and teacher logits {:?} must agree in batch and classes",
                student_logits.shape(),
                teacher_logits.shape()
            ),
        ));
    }
    if let Some(i) = (0..s.1).find(|&i| student_lengths[i] == 0 || teacher_lengths[i] == 0) {
        return Err(Error::invalid(
            OP,
            format!("sample {i} has no real frame to average over"),
        ));
    }
    let ps = averaged_distribution(tape, student_logits, student_lengths, temperature, s)?;
    let pt = averaged_distribution(tape, teacher_logits, teacher_lengths, temperature, t)?;
    let log_q = ops::log(tape, &ps)?;
    let log_p = ops::log(tape, &pt)?;
    let kl = ops::kl_div(tape, &log_q, &log_p, Reduction::Mean)?;
    ops::scale(tape, &kl, temperature * temperature)
}
