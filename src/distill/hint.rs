//! Hints (Romero et al., "FitNets: Hints for thin deep nets", ICLR 2015,
//! eq. (3)): `L_HT = ½‖u_h(x) − r(v_g(x))‖²`, the teacher's hint layer `u_h`
//! against a learned regressor `r` on the student's guided layer `v_g`.

use crate::autograd::{Param, Tape};
use crate::error::{Error, Result};
use crate::nn::{Conv2d, Linear};
use crate::ops::conv2d::Conv2dSpec;
use crate::ops::{self, Reduction};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// The regressor `r` of FitNets eq. (3), mapping a student feature to the
/// teacher's width: a 1×1 convolution for maps (N, Cs, H, W) → (N, Ct, H, W),
/// a linear layer for sequences (T, N, Fs) → (T, N, Ft). Both have a bias and
/// PyTorch's default initialisation.
#[derive(Clone, Debug)]
pub enum Adaptor {
    /// 1×1 convolution, stride 1, no padding (weight (Ct, Cs, 1, 1), bias (Ct)).
    Conv1x1(Conv2d),
    /// Linear map over the last axis (weight (Ft, Fs), bias (Ft)).
    Linear(Linear),
}

impl Adaptor {
    /// An adaptor for feature maps from `student_c` to `teacher_c` channels.
    pub fn for_map(student_c: usize, teacher_c: usize, rng: &mut Rng) -> Result<Adaptor> {
        Ok(Adaptor::Conv1x1(Conv2d::new(
            student_c,
            teacher_c,
            (1, 1),
            Conv2dSpec::default(),
            true,
            rng,
        )?))
    }

    /// An adaptor for sequences from `student_f` to `teacher_f` features.
    pub fn for_sequence(student_f: usize, teacher_f: usize, rng: &mut Rng) -> Result<Adaptor> {
        Ok(Adaptor::Linear(Linear::new(
            student_f, teacher_f, true, rng,
        )?))
    }

    /// (input width, output width).
    pub fn widths(&self) -> (usize, usize) {
        match self {
            Adaptor::Conv1x1(c) => (c.weight.dims()[1], c.weight.dims()[0]),
            Adaptor::Linear(l) => (l.weight.dims()[1], l.weight.dims()[0]),
        }
    }

    /// Maps a student feature to the teacher's width. A map adaptor needs a
    /// (N, Cs, H, W) input, a sequence adaptor a (T, N, Fs) one.
    pub fn forward(&self, tape: &mut Tape, x: &Tensor) -> Result<Tensor> {
        let (width, _) = self.widths();
        match self {
            Adaptor::Conv1x1(conv) => {
                if x.rank() != 4 || x.dims()[1] != width {
                    return Err(Error::shape(
                        "Adaptor::forward",
                        format!(
                            "a 1x1 map adaptor needs (N, {width}, H, W), got {:?}",
                            x.shape()
                        ),
                    ));
                }
                conv.forward(tape, x)
            }
            Adaptor::Linear(lin) => {
                if x.rank() != 3 || x.dims()[2] != width {
                    return Err(Error::shape(
                        "Adaptor::forward",
                        format!(
                            "a sequence adaptor needs (T, N, {width}), got {:?}",
                            x.shape()
                        ),
                    ));
                }
                lin.forward(tape, x)
            }
        }
    }

    /// The parameters under PyTorch names (`weight`, `bias`).
    pub fn params(&self) -> Vec<(String, &Param)> {
        match self {
            Adaptor::Conv1x1(c) => c.params(),
            Adaptor::Linear(l) => l.params(),
        }
    }

    /// The parameters, mutably, in the order of [`Adaptor::params`].
    pub fn params_mut(&mut self) -> Vec<(String, &mut Param)> {
        match self {
            Adaptor::Conv1x1(c) => c.params_mut(),
            Adaptor::Linear(l) => l.params_mut(),
        }
    }
}

/// The FitNets hint loss (Romero et al. 2015, eq. (3)):
/// `mean((r(student) − teacher)²)` over every element, with `r` the
/// [`Adaptor`]. The paper's ½ and sum are a constant factor that the loss
/// weight absorbs; the mean keeps the scale independent of the feature size,
/// as PyTorch's `MSELoss` used by common implementations.
///
/// The teacher feature is detached by the caller. The adapted student feature
/// must have the teacher's shape exactly (batch, spatial size or length, and
/// width); otherwise an error names both shapes.
pub fn hint_loss(
    tape: &mut Tape,
    adaptor: &Adaptor,
    student_feature: &Tensor,
    teacher_feature: &Tensor,
) -> Result<Tensor> {
    let adapted = adaptor.forward(tape, student_feature)?;
    if adapted.shape() != teacher_feature.shape() {
        return Err(Error::shape(
            "hint_loss",
            format!(
                "student feature {:?} adapts to {:?}, which does not match the teacher feature {:?}",
                student_feature.shape(),
                adapted.shape(),
                teacher_feature.shape()
            ),
        ));
    }
    if adapted.numel() == 0 {
        return Err(Error::shape(
            "hint_loss",
            format!("empty feature {:?}", adapted.shape()),
        ));
    }
    ops::mse_loss(tape, &adapted, teacher_feature, Reduction::Mean)
}
