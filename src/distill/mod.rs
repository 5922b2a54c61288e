//! Knowledge distillation: the losses, each a composition of differentiable
//! [`crate::ops`] so that its backward comes from the tape; the strategies
//! that compose them ([`strategy`], run by [`distill`] from a
//! [`DistillConfig`]); schedules of weights and temperatures ([`schedule`]);
//! frozen teachers ([`teachers`]); and the [`zoo`] that compares them all.
//!
//! | loss | paper | file |
//! | --- | --- | --- |
//! | [`soft_kd`], [`sequence_kd`] | Hinton et al. 2015 | `kd.rs` |
//! | [`hint_loss`] with an [`Adaptor`] | Romero et al. (FitNets), ICLR 2015 | `hint.rs` |
//! | [`attention_transfer`] | Zagoruyko & Komodakis, ICLR 2017 | `attention.rs` |
//! | [`fsp_matrix`], [`fsp_loss`] | Yim et al., CVPR 2017 | `fsp.rs` |
//! | [`similarity_preserving`] | Tung & Mori, ICCV 2019 | `similarity.rs` |
//! | [`mk_mmd`], [`coral`] | Long et al. (DAN), ICML 2015; Sun & Saenko, ECCV-W 2016 | `domain.rs` |
//! | [`tolerant_gap`] | Yang et al., AAAI 2019 | `tolerant.rs` |
//! | [`pseudo_label`] (not a loss: the teacher's labels) | Xie et al., CVPR 2020 | `pseudo_label.rs` |
//!
//! Layouts: logits and sequences are (T, N, F) as PyTorch's LSTM and CTC;
//! feature maps are (N, C, H, W). Where a loss needs one vector per sample,
//! a map is flattened to (N, C·H·W) and a sequence to (N, T·F) (time-major
//! within the sample, after moving the batch axis first); a (N, D) matrix is
//! taken as it is. Teachers are detached by the caller: every loss passes
//! gradients to whichever of its inputs are tracked.

mod attention;
pub mod config;
mod domain;
mod fsp;
mod hint;
mod kd;
pub mod objective;
mod pseudo_label;
pub mod schedule;
pub mod session;
mod similarity;
pub mod strategy;
pub mod teachers;
mod tolerant;
pub mod zoo;

pub use attention::{attention_map, attention_transfer, ATTENTION_DEFAULT_WEIGHT};
pub use config::{DistillConfig, Strategy};
pub use domain::{coral, mean_pairwise_sq_distance, mk_mmd, mk_mmd_with_bandwidth};
pub use fsp::{fsp_loss, fsp_matrix};
pub use hint::{hint_loss, Adaptor};
pub use kd::{sequence_kd, soft_kd};
pub use pseudo_label::{
    list_png_files, pseudo_label, write_pseudo_labels, PseudoLabel, PseudoLabels,
};
pub use similarity::{similarity_matrix, similarity_preserving};
pub use strategy::{distill, DistillReport, ModelReport};
pub use tolerant::{tolerant_gap, TOLERANT_DEFAULT_SECONDARY};

use crate::autograd::Tape;
use crate::error::{Error, Result};
use crate::ops;
use crate::tensor::Tensor;

/// Flattens a feature to one row per sample: (N, C, H, W) → (N, C·H·W),
/// (T, N, F) → (N, T·F) (batch axis moved first), (N, D) unchanged. Other
/// ranks and empty batches are errors.
pub(crate) fn per_sample(tape: &mut Tape, op: &'static str, x: &Tensor) -> Result<Tensor> {
    let d = x.dims();
    let flat = match *d {
        [n, _] => {
            nonempty(op, x, n)?;
            x.clone()
        }
        [t, n, f] => {
            nonempty(op, x, n)?;
            let batch_first = ops::permute(tape, x, &[1, 0, 2])?;
            ops::reshape(tape, &batch_first, &[n, t * f])?
        }
        [n, c, h, w] => {
            nonempty(op, x, n)?;
            ops::reshape(tape, x, &[n, c * h * w])?
        }
        _ => {
            return Err(Error::shape(
                op,
                format!(
                "expected a (N, D) matrix, a (T, N, F) sequence or a (N, C, H, W) map, got {:?}",
                x.shape()
            ),
            ))
        }
    };
    if flat.numel() == 0 {
        return Err(Error::shape(
            op,
            format!("feature {:?} has no elements", x.shape()),
        ));
    }
    Ok(flat)
}

/// An error when the batch size `n` of `x` is zero.
pub(crate) fn nonempty(op: &'static str, x: &Tensor, n: usize) -> Result<()> {
    if n == 0 {
        return Err(Error::shape(op, format!("empty batch in {:?}", x.shape())));
    }
    Ok(())
}

/// An error unless `temperature` is positive and finite.
pub(crate) fn check_temperature(op: &'static str, temperature: f32) -> Result<()> {
    if !(temperature > 0.0 && temperature.is_finite()) {
        return Err(Error::invalid(
            op,
            format!("temperature must be positive and finite, got {temperature}"),
        ));
    }
    Ok(())
}

/// Divides each row of `x` (R, D) by its L2 norm, `x / sqrt(Σ x² + ε²)` with
/// ε = 1e-12 (as `F.normalize`, smooth at a zero row).
pub(crate) fn l2_normalize_rows(tape: &mut Tape, x: &Tensor) -> Result<Tensor> {
    let sq = ops::square(tape, x)?;
    let sum = ops::sum(tape, &sq, &[1], true)?;
    let sum = ops::add_scalar(tape, &sum, 1e-24)?;
    let norm = ops::sqrt(tape, &sum)?;
    ops::div(tape, x, &norm)
}
