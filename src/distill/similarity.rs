//! Similarity-preserving distillation (Tung & Mori, "Similarity-preserving
//! knowledge distillation", ICCV 2019, eq. (1)–(4)).

use super::{l2_normalize_rows, per_sample};
use crate::autograd::Tape;
use crate::error::{Error, Result};
use crate::ops;
use crate::tensor::Tensor;

/// The row-normalised batch similarity matrix (b, b) of eq. (1)–(2):
/// `G̃ = Q·Qᵀ` with Q the feature flattened to one row per sample (see the
/// module docs of [`crate::distill`]), then `G[i] = G̃[i] / ‖G̃[i]‖₂`.
pub fn similarity_matrix(tape: &mut Tape, feature: &Tensor) -> Result<Tensor> {
    let q = per_sample(tape, "similarity_matrix", feature)?;
    let qt = ops::permute(tape, &q, &[1, 0])?;
    let g = ops::matmul(tape, &q, &qt)?;
    l2_normalize_rows(tape, &g)
}

/// The similarity-preserving loss of eq. (3)–(4) for one layer pair:
/// `‖G_s − G_t‖²_F / b²`. Student and teacher must have the same batch size
/// b ≥ 1 (their widths, channels and spatial sizes may differ); otherwise an
/// error names both shapes.
pub fn similarity_preserving(
    tape: &mut Tape,
    student_feature: &Tensor,
    teacher_feature: &Tensor,
) -> Result<Tensor> {
    let gs = similarity_matrix(tape, student_feature)?;
    let gt = similarity_matrix(tape, teacher_feature)?;
    if gs.shape() != gt.shape() {
        return Err(Error::shape(
            "similarity_preserving",
            format!(
                "student feature {:?} and teacher feature {:?} have different batch sizes",
                student_feature.shape(),
                teacher_feature.shape()
            ),
        ));
    }
    let b = gs.dims()[0];
    let d = ops::sub(tape, &gs, &gt)?;
    let sq = ops::square(tape, &d)?;
    let total = ops::sum_all(tape, &sq)?;
    ops::scale(tape, &total, 1.0 / (b * b) as f32)
}
