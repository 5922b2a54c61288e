//! Attention transfer (Zagoruyko & Komodakis, "Paying more attention to
//! attention", ICLR 2017, eq. (2)), activation-based, as the authors' code
//! (`utils.at` and `utils.at_loss` in github.com/szagoruyko/attention-transfer).

use super::{l2_normalize_rows, nonempty};
use crate::autograd::Tape;
use crate::error::{Error, Result};
use crate::ops;
use crate::tensor::Tensor;

/// The weight β of the attention term in the authors' experiments (β = 10³).
/// The authors' code multiplies the sum of the per-layer losses by β/2; this
/// crate's convention is that the caller's loss weight multiplies
/// [`attention_transfer`] directly, with 1000 as its default.
pub const ATTENTION_DEFAULT_WEIGHT: f32 = 1000.0;

/// The attention map of a feature, `Q = vec(mean_c |f_c|^p) / ‖vec(mean_c |f_c|^p)‖₂`
/// (paper §3.1, F^p_mean, then the normalisation of eq. (2)), one row per
/// sample: (N, C, H, W) → (N, H·W); a sequence (T, N, F) is treated as a
/// 1-row map with F channels: → (N, T). The channel mean equals the
/// paper's channel sum up to a factor that the normalisation removes.
pub fn attention_map(tape: &mut Tape, feature: &Tensor, p: f32) -> Result<Tensor> {
    const OP: &str = "attention_map";
    if !(p > 0.0 && p.is_finite()) {
        return Err(Error::invalid(
            OP,
            format!("power p must be positive and finite, got {p}"),
        ));
    }
    let powered = if p == 2.0 {
        ops::square(tape, feature)?
    } else {
        let a = ops::abs(tape, feature)?;
        ops::pow(tape, &a, p)?
    };
    let flat = match *feature.dims() {
        [n, c, h, w] if c > 0 && h * w > 0 => {
            nonempty(OP, feature, n)?;
            let m = ops::mean(tape, &powered, &[1], false)?;
            ops::reshape(tape, &m, &[n, h * w])?
        }
        [t, n, f] if f > 0 && t > 0 => {
            nonempty(OP, feature, n)?;
            let m = ops::mean(tape, &powered, &[2], false)?; // (T, N)
            ops::permute(tape, &m, &[1, 0])?
        }
        _ => {
            return Err(Error::shape(
                OP,
                format!(
                    "expected a non-empty (N, C, H, W) map or (T, N, F) sequence, got {:?}",
                    feature.shape()
                ),
            ))
        }
    };
    l2_normalize_rows(tape, &flat)
}

/// Attention-transfer loss with p = `p` (the paper uses 2): the mean over
/// batch and positions of `(Q_s − Q_t)²`, where `Q` is [`attention_map`].
/// This is the authors' `at_loss`, `(at(x) − at(y)).pow(2).mean()`; the
/// paper's eq. (2) writes `β/2 · Σ_j ‖Q_s^j − Q_t^j‖_p` per layer pair, which
/// the code realises with the squared L2 distance averaged over the
/// positions and batch. Multiply by a weight ([`ATTENTION_DEFAULT_WEIGHT`]).
///
/// Channels may differ between student and teacher; batch and spatial size
/// (or length) must match, otherwise an error names both shapes.
pub fn attention_transfer(
    tape: &mut Tape,
    student_feature: &Tensor,
    teacher_feature: &Tensor,
    p: f32,
) -> Result<Tensor> {
    let qs = attention_map(tape, student_feature, p)?;
    let qt = attention_map(tape, teacher_feature, p)?;
    if qs.shape() != qt.shape() || student_feature.rank() != teacher_feature.rank() {
        return Err(Error::shape(
            "attention_transfer",
            format!(
                "student feature {:?} and teacher feature {:?} differ in batch or spatial size",
                student_feature.shape(),
                teacher_feature.shape()
            ),
        ));
    }
    let d = ops::sub(tape, &qs, &qt)?;
    let sq = ops::square(tape, &d)?;
    ops::mean_all(tape, &sq)
}
