//! One training step: forward, CTC loss, backward, clipping, update.

use crate::autograd::{Gradients, Param, Tape};
use crate::data::batch::Batch;
use crate::error::Result;
use crate::nn::{Crnn, CrnnOutput};
use crate::ops::batchnorm2d::RunningStats;
use crate::ops::ctc::{ctc_loss, CtcOptions};
use crate::ops::{self, Reduction};
use crate::optim::{clip_grad_norm, grad_norm, Optimizer};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// What one step did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    /// The loss before the update.
    pub loss: f32,
    /// Global gradient norm before clipping.
    pub grad_norm: f32,
    /// Whether the update was skipped because the loss or gradient was not finite.
    pub skipped: bool,
}

/// The CTC loss of a model's output against the batch's targets: log-softmax
/// over classes, then CTC with PyTorch's 'mean' reduction. Samples whose
/// label cannot fit their width count zero (`zero_infinity`).
pub fn ctc_objective(tape: &mut Tape, out: &CrnnOutput, targets: &[Vec<usize>]) -> Result<Tensor> {
    let log_probs = ops::log_softmax(tape, &out.logits, 1.0)?;
    ctc_loss(
        tape,
        &log_probs,
        targets,
        &out.lengths,
        CtcOptions {
            blank: 0,
            reduction: Reduction::Mean,
            zero_infinity: true,
        },
    )
}

/// Clips (when `clip` is set) and applies `grads` to `params`; returns the
/// gradient norm before clipping, or `None` when it is not finite and the
/// update was skipped.
pub fn apply_gradients(
    params: &mut [&mut Param],
    optimizer: &mut Optimizer,
    grads: &mut Gradients,
    lr: f32,
    clip: Option<f32>,
) -> Result<Option<f32>> {
    let norm = {
        let views: Vec<&Param> = params.iter().map(|p| &**p).collect();
        match clip {
            Some(max) => clip_grad_norm(&views, grads, max),
            None => grad_norm(&views, grads),
        }
    };
    if !norm.is_finite() {
        return Ok(None);
    }
    optimizer.step(params, grads, lr)?;
    Ok(Some(norm))
}

/// Forward, CTC loss, backward and one optimiser update of `model` on `batch`.
/// A non-finite loss or gradient skips the update (reported in the result).
pub fn train_step(
    model: &mut Crnn,
    optimizer: &mut Optimizer,
    batch: &Batch,
    lr: f32,
    clip: Option<f32>,
    rng: &mut Rng,
) -> Result<StepStats> {
    // A skipped step must leave no trace, BatchNorm's running statistics included
    // (cloning shares their storage until the forward pass writes them).
    let stats_before: Vec<RunningStats> = model
        .blocks
        .iter()
        .map(|(_, bn)| bn.stats.clone())
        .collect();
    let restore_stats = |model: &mut Crnn| {
        for ((_, bn), saved) in model.blocks.iter_mut().zip(&stats_before) {
            bn.stats = saved.clone();
        }
    };
    let mut tape = Tape::new();
    let out = model.forward(&mut tape, &batch.images, &batch.widths, true, rng)?;
    let loss = ctc_objective(&mut tape, &out, &batch.targets)?;
    let loss_value = loss.item()?;
    if !loss_value.is_finite() {
        restore_stats(model);
        return Ok(StepStats {
            loss: loss_value,
            grad_norm: f32::NAN,
            skipped: true,
        });
    }
    let mut grads = tape.backward(&loss)?;
    drop(tape);
    let mut params: Vec<&mut Param> = model.params_mut().into_iter().map(|(_, p)| p).collect();
    let norm = apply_gradients(&mut params, optimizer, &mut grads, lr, clip)?;
    if norm.is_none() {
        restore_stats(model);
    }
    Ok(StepStats {
        loss: loss_value,
        grad_norm: norm.unwrap_or(f32::NAN),
        skipped: norm.is_none(),
    })
}
