//! The tolerant-teacher term (Yang, Xie, Qiao & Yuille, "Training deep
//! neural networks in generations: a more tolerant teacher educates better
//! students", AAAI 2019). A teacher trained only to fit one-hot targets is
//! strict: its distribution is so peaked that its secondary classes, the
//! visually similar ones a student learns most from, carry no signal. The
//! paper adds to the teacher's loss η times the top score difference (TSD),
//! the gap between the primary class's score and the mean score of the next
//! few classes; lowering it keeps those secondary classes alive.
//!
//! Here the scores are CTC logits, one distribution per frame: the gap is
//! taken per real frame and averaged, so a teacher's training loss becomes
//! `CTC + η · tolerant_gap(logits, lengths, k)`.

use super::nonempty;
use crate::autograd::Tape;
use crate::error::{Error, Result};
use crate::ops;
use crate::tensor::Tensor;
use std::cmp::Ordering;

/// The default number k of secondary classes. The paper keeps 5 secondary
/// classes among the 100 of CIFAR100; scaled to the 37 classes of the
/// reference models (36 symbols and the blank), 5 · 37 / 100 ≈ 2: a text
/// frame has about two look-alikes worth keeping (`o`/`0`, `l`/`1`/`i`).
pub const TOLERANT_DEFAULT_SECONDARY: usize = 2;

/// The top score difference of Yang et al. (AAAI 2019), averaged over the
/// real frames: for each frame (t, n) with `t < lengths[n]` of `logits`
/// (T, N, K),
///
/// `TSD = z₍₁₎ − (1/k) · Σ_{j=2..k+1} z₍ⱼ₎`,
///
/// where `z₍ⱼ₎` is the j-th largest logit of the frame and k = `secondary`;
/// the result is the mean of TSD over the real frames, a scalar. Add
/// `η · tolerant_gap(…)` to a teacher's task loss (η is the caller's weight).
///
/// The ranking is read from the values and held as a constant weight mask
/// (+1 on the top class, −1/k on each of the next k, 0 elsewhere and on
/// padded frames; ties go to the lowest class index), so the loss is
/// `Σ mask · logits / frames` built from [`crate::ops`], and its gradient is
/// exact wherever the ranking does not change under a small step (almost
/// everywhere). Padded frames contribute neither value nor gradient as long
/// as their logits are finite (a padded `±inf` would turn `0 · inf` into NaN).
///
/// Errors: `logits` not (T, N, K) or an empty batch, a length count other
/// than N, a length above T, no real frame at all, `secondary` outside
/// `1..K`, a NaN logit in a real frame (the ranking is undefined).
pub fn tolerant_gap(
    tape: &mut Tape,
    logits: &Tensor,
    lengths: &[usize],
    secondary: usize,
) -> Result<Tensor> {
    const OP: &str = "tolerant_gap";
    let &[t, n, k] = logits.dims() else {
        return Err(Error::shape(
            OP,
            format!("logits must be (T, N, K), got {:?}", logits.shape()),
        ));
    };
    nonempty(OP, logits, n)?;
    if lengths.len() != n {
        return Err(Error::shape(
            OP,
            format!(
                "{} lengths for a batch of {n} in {:?}",
                lengths.len(),
                logits.shape()
            ),
        ));
    }
    if let Some((i, &l)) = lengths.iter().enumerate().find(|(_, &l)| l > t) {
        return Err(Error::shape(
            OP,
            format!(
                "length {l} of sample {i} exceeds the {t} frames of {:?}",
                logits.shape()
            ),
        ));
    }
    if secondary == 0 || secondary >= k {
        return Err(Error::invalid(
            OP,
            format!(
                "secondary classes k = {secondary} must be in 1..{k} (at least one, and fewer \
                 than the {k} classes so that a primary class remains)"
            ),
        ));
    }
    let frames: usize = lengths.iter().sum();
    if frames == 0 {
        return Err(Error::invalid(OP, "every sequence has length 0"));
    }
    let values = logits.data();
    let scale = 1.0 / frames as f32;
    let others = -scale / secondary as f32;
    let mut mask = vec![0.0f32; t * n * k];
    let mut order: Vec<usize> = Vec::with_capacity(k);
    for ti in 0..t {
        for (ni, &l) in lengths.iter().enumerate() {
            if ti >= l {
                continue;
            }
            let at = (ti * n + ni) * k;
            let row = &values[at..at + k];
            if let Some(c) = row.iter().position(|v| v.is_nan()) {
                return Err(Error::invalid(
                    OP,
                    format!("logit {c} of sample {ni}, frame {ti} is NaN"),
                ));
            }
            order.clear();
            order.extend(0..k);
            // Largest first; equal values by lowest class index (a stable
            // sort; no NaN is left, and -0 equals +0).
            order.sort_by(|&a, &b| row[b].partial_cmp(&row[a]).unwrap_or(Ordering::Equal));
            mask[at + order[0]] = scale;
            for &c in &order[1..=secondary] {
                mask[at + c] = others;
            }
        }
    }
    let mask = Tensor::from_vec(mask, &[t, n, k])?.to_device(logits.device())?;
    let weighted = ops::mul_const(tape, logits, &mask)?;
    ops::sum_all(tape, &weighted)
}
