//! The flow of solution procedure (Yim, Joo, Bae & Kim, "A gift from
//! knowledge distillation: fast optimization, network minimization and
//! transfer learning", CVPR 2017, eq. (1)–(2)).

use super::nonempty;
use crate::autograd::Tape;
use crate::error::{Error, Result};
use crate::ops;
use crate::tensor::Tensor;

/// The FSP matrix of eq. (1), `G_{i,j} = Σ_{s,t} F¹_{s,t,i} · F²_{s,t,j} / (h·w)`,
/// between two maps of equal batch and spatial size: `first` (N, c1, H, W)
/// and `second` (N, c2, H, W) → (N, c1, c2). Other shapes are errors.
pub fn fsp_matrix(tape: &mut Tape, first: &Tensor, second: &Tensor) -> Result<Tensor> {
    const OP: &str = "fsp_matrix";
    let (&[n, c1, h, w], &[n2, c2, h2, w2]) = (first.dims(), second.dims()) else {
        return Err(Error::shape(
            OP,
            format!(
                "needs two (N, C, H, W) maps, got {:?} and {:?}",
                first.shape(),
                second.shape()
            ),
        ));
    };
    if (n, h, w) != (n2, h2, w2) || h * w == 0 || c1 == 0 || c2 == 0 {
        return Err(Error::shape(
            OP,
            format!(
                "maps {:?} and {:?} must agree in batch and non-empty spatial size",
                first.shape(),
                second.shape()
            ),
        ));
    }
    nonempty(OP, first, n)?;
    let f1 = ops::reshape(tape, first, &[n, c1, h * w])?;
    let f2 = ops::reshape(tape, second, &[n, c2, h * w])?;
    let f2t = ops::permute(tape, &f2, &[0, 2, 1])?; // (N, HW, c2)
    let g = ops::matmul(tape, &f1, &f2t)?;
    ops::scale(tape, &g, 1.0 / (h * w) as f32)
}

/// The FSP loss of eq. (2) for one pair of layers (λ = 1):
/// `(1/N) Σ_x ‖G_teacher(x) − G_student(x)‖²_F`, with each G from
/// [`fsp_matrix`] on the pair (first, second). The student's and teacher's
/// channel counts must match pairwise (c1 with c1, c2 with c2) and their batch
/// sizes agree; their spatial sizes may differ. Otherwise an error.
pub fn fsp_loss(
    tape: &mut Tape,
    student_pair: (&Tensor, &Tensor),
    teacher_pair: (&Tensor, &Tensor),
) -> Result<Tensor> {
    let gs = fsp_matrix(tape, student_pair.0, student_pair.1)?;
    let gt = fsp_matrix(tape, teacher_pair.0, teacher_pair.1)?;
    if gs.shape() != gt.shape() {
        return Err(Error::shape(
            "fsp_loss",
            format!(
                "student FSP {:?} (from {:?}, {:?}) and teacher FSP {:?} (from {:?}, {:?}) differ: channels must match pairwise",
                gs.shape(),
                student_pair.0.shape(),
                student_pair.1.shape(),
                gt.shape(),
                teacher_pair.0.shape(),
                teacher_pair.1.shape()
            ),
        ));
    }
    let n = gs.dims()[0];
    let d = ops::sub(tape, &gs, &gt)?;
    let sq = ops::square(tape, &d)?;
    let total = ops::sum_all(tape, &sq)?;
    ops::scale(tape, &total, 1.0 / n as f32)
}
