//! CTC loss as `torch.nn.CTCLoss`: options, argument checks and the tape glue.
//! The recursions live in [`crate::cpu::ctc`].

use super::Reduction;
use crate::autograd::Tape;
use crate::cpu::ctc::{ctc_sample, CtcSample, SampleLogProbs};
use crate::error::{Error, Result};
use crate::tensor::{Shape, Tensor};
use rayon::prelude::*;

/// Options of [`ctc_loss`], as the arguments of `torch.nn.CTCLoss`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CtcOptions {
    /// The class index of the blank (PyTorch's `blank`, default 0).
    pub blank: usize,
    /// How per-sample losses become the result (default [`Reduction::Mean`]:
    /// each loss divided by its target length, then the mean over the batch).
    pub reduction: Reduction,
    /// Whether infinite losses (infeasible alignments) and their gradients
    /// are replaced by 0 (default false).
    pub zero_infinity: bool,
}

impl Default for CtcOptions {
    /// PyTorch's defaults: blank 0, `Reduction::Mean`, `zero_infinity = false`.
    fn default() -> Self {
        CtcOptions {
            blank: 0,
            reduction: Reduction::Mean,
            zero_infinity: false,
        }
    }
}

/// CTC loss as `torch.nn.CTCLoss`.
///
/// - `log_probs`: (T, N, C) log-probabilities (log-softmax outputs over C).
/// - `targets[n]`: the label sequence of sample `n`, classes in `0..C`, never
///   the blank; it may be empty (loss `-Σ_t lp[t, n, blank]`).
/// - `input_lengths[n] <= T`: frames of sample `n`; later frames are ignored
///   and get a zero gradient.
///
/// Result: `Reduction::None` gives shape (N); `Sum` the scalar sum; `Mean`
/// each loss divided by its target length (clamped to at least 1), then the
/// mean over the batch (PyTorch's `'mean'`, which counts zeroed samples).
///
/// Infeasible pairs (an input shorter than its target plus the blanks needed
/// between repeated labels, e.g. `[1, 1]` needs 3 frames) have loss `+inf`
/// and a zero gradient. With `zero_infinity` their loss and gradient are 0,
/// and the other samples are unaffected.
///
/// Gradient: the true derivative with respect to `log_probs`,
/// `∂loss_n/∂lp[t, n, c] = -exp(ln Σ_{s: l'(s) = c} α_t(s) β_t(s) − lp[t, n, c] + loss_n)`
/// for `t < input_lengths[n]` and 0 after, scaled by the reduction and the
/// incoming gradient. PyTorch's CTC backward instead returns
/// `exp(lp[t, n, c]) + ∂loss_n/∂lp[t, n, c]` (it assumes `lp` comes from
/// `log_softmax` and folds part of that backward in). The difference,
/// `exp(lp[t, n, ·])`, sums to 1 over the classes, and log-softmax's backward
/// (`g − softmax · Σ_c g_c`) maps it to 0, so gradients with respect to the
/// logits agree. Ours is also right when `log_probs` is not normalised, so a
/// finite-difference check against `log_probs` itself is valid.
///
/// Computed in f64 per sample, samples in parallel (deterministic).
///
/// Errors (never panics): `log_probs` not of rank 3, `targets` or
/// `input_lengths` not of length N, an input length above T, a target label
/// `>= C` or equal to the blank, a blank `>= C`, and `Reduction::Mean` over
/// an empty batch.
pub fn ctc_loss(
    tape: &mut Tape,
    log_probs: &Tensor,
    targets: &[Vec<usize>],
    input_lengths: &[usize],
    opts: CtcOptions,
) -> Result<Tensor> {
    const OP: &str = "ctc_loss";
    log_probs.expect_rank(OP, "log_probs (T, N, C)", 3)?;
    let dims = [
        log_probs.dims()[0],
        log_probs.dims()[1],
        log_probs.dims()[2],
    ];
    let [t_max, batch, classes] = dims;
    if targets.len() != batch {
        return Err(Error::invalid(
            OP,
            format!(
                "{} target sequences for a batch of {batch} (log_probs {:?})",
                targets.len(),
                log_probs.shape()
            ),
        ));
    }
    if input_lengths.len() != batch {
        return Err(Error::invalid(
            OP,
            format!(
                "{} input lengths for a batch of {batch} (log_probs {:?})",
                input_lengths.len(),
                log_probs.shape()
            ),
        ));
    }
    if opts.blank >= classes {
        return Err(Error::invalid(
            OP,
            format!("blank {} is not one of the {classes} classes", opts.blank),
        ));
    }
    if let Some((n, &len)) = input_lengths.iter().enumerate().find(|(_, &l)| l > t_max) {
        return Err(Error::invalid(
            OP,
            format!("input length {len} of sample {n} exceeds T = {t_max}"),
        ));
    }
    for (n, target) in targets.iter().enumerate() {
        if let Some((i, &l)) = target
            .iter()
            .enumerate()
            .find(|(_, &l)| l >= classes || l == opts.blank)
        {
            return Err(Error::invalid(
                OP,
                format!(
                    "target {n}, position {i}: label {l} is {} (C = {classes}, blank = {})",
                    if l == opts.blank {
                        "the blank"
                    } else {
                        "not a class"
                    },
                    opts.blank
                ),
            ));
        }
    }
    if batch == 0 && opts.reduction == Reduction::Mean {
        return Err(Error::invalid(OP, "mean reduction over an empty batch"));
    }

    #[cfg(feature = "cuda")]
    if let Some(dev) = crate::tensor::cuda_device_of(OP, &[log_probs])? {
        return gpu::ctc_loss(tape, &dev, log_probs, targets, input_lengths, opts);
    }
    let want_grad = tape.wants_grad(&[log_probs]);
    let data = log_probs.data();
    let samples: Vec<CtcSample> = (0..batch)
        .into_par_iter()
        .map(|n| {
            let lp = SampleLogProbs::new(data, dims, n, input_lengths[n])?;
            let mut sample = ctc_sample(&lp, &targets[n], opts.blank, want_grad)?;
            if opts.zero_infinity && sample.loss == f64::INFINITY {
                // Infeasible: loss 0 and (already) a zero gradient.
                sample.loss = 0.0;
            }
            Ok(sample)
        })
        .collect::<Result<_>>()?;

    // Per-sample factor of the reduction: loss_n enters the result times this.
    let factors = reduction_factors(targets, opts.reduction);
    let output = match opts.reduction {
        Reduction::None => Tensor::from_shape_vec(
            Shape::new(&[batch])?,
            samples.iter().map(|s| s.loss as f32).collect(),
        ),
        Reduction::Sum | Reduction::Mean => {
            let total: f64 = samples.iter().zip(&factors).map(|(s, f)| s.loss * f).sum();
            Tensor::scalar(total as f32)
        }
    };
    if !want_grad {
        return Ok(output);
    }

    let reduction = opts.reduction;
    let lp_shape = *log_probs.shape();
    let grads: Vec<Vec<f64>> = samples
        .into_iter()
        .map(|s| s.grad.unwrap_or_default())
        .collect();
    Ok(
        tape.record("ctc_loss", output, &[log_probs], move |g, needs| {
            if !needs[0] {
                return Ok(vec![None]);
            }
            let g = g.data();
            let mut out = vec![0.0f32; lp_shape.numel()];
            for (n, (grad, factor)) in grads.iter().zip(&factors).enumerate() {
                let upstream = match reduction {
                    Reduction::None => g[n] as f64,
                    Reduction::Sum | Reduction::Mean => g[0] as f64,
                };
                let scale = upstream * factor;
                // The sample's rows (its input length × C) go to column n of (T, N, C);
                // frames past its input length keep their zero gradient.
                for (t, row) in grad.chunks_exact(classes).enumerate() {
                    let start = (t * batch + n) * classes;
                    for (o, &v) in out[start..start + classes].iter_mut().zip(row) {
                        *o = (v * scale) as f32;
                    }
                }
            }
            Ok(vec![Some(Tensor::from_shape_vec(lp_shape, out))])
        }),
    )
}

/// Per-sample factor of the reduction: loss_n enters the result times this
/// (1, or 1 / (target length · N) for PyTorch's mean).
fn reduction_factors(targets: &[Vec<usize>], reduction: Reduction) -> Vec<f64> {
    let batch = targets.len();
    targets
        .iter()
        .map(|t| match reduction {
            Reduction::None | Reduction::Sum => 1.0,
            Reduction::Mean => 1.0 / (t.len().max(1) as f64 * batch as f64),
        })
        .collect()
}

#[cfg(feature = "cuda")]
mod gpu {
    use super::{reduction_factors, CtcOptions, Reduction};
    use crate::autograd::Tape;
    use crate::cuda::ctc::{ctc_backward, ctc_loss as losses_and_grads, ctc_reduce};
    use crate::cuda::CudaDevice;
    use crate::error::{Error, Result};
    use crate::tensor::{Shape, Tensor};
    use std::sync::Arc;

    /// `ctc_loss` on a GPU, its arguments already checked: the per-sample
    /// losses and gradients in f64 on the device, the reduction there, and
    /// the backward pass scaling the kept gradient by the incoming one.
    pub(super) fn ctc_loss(
        tape: &mut Tape,
        dev: &Arc<CudaDevice>,
        log_probs: &Tensor,
        targets: &[Vec<usize>],
        input_lengths: &[usize],
        opts: CtcOptions,
    ) -> Result<Tensor> {
        const OP: &str = "ctc_loss";
        let d = log_probs.dims();
        let dims = [d[0], d[1], d[2]];
        let batch = dims[1];
        let want_grad = tape.wants_grad(&[log_probs]);
        let sample = losses_and_grads(
            dev,
            log_probs.cuda_buffer(OP)?,
            dims,
            targets,
            input_lengths,
            opts.blank,
            opts.zero_infinity,
            want_grad,
        )?;
        let factors = reduction_factors(targets, opts.reduction);
        let per_sample = opts.reduction == Reduction::None;
        let value = ctc_reduce(dev, &sample.losses, &factors, per_sample)?;
        let shape = if per_sample {
            Shape::new(&[batch])?
        } else {
            Shape::scalar()
        };
        let output = Tensor::from_cuda(shape, dev, value);
        if !want_grad {
            return Ok(output);
        }
        let grad = sample
            .grad
            .ok_or_else(|| Error::Device(format!("{OP}: the GPU kernel kept no gradient")))?;
        let (lengths, lp_shape, dev) = (input_lengths.to_vec(), *log_probs.shape(), dev.clone());
        Ok(tape.record(OP, output, &[log_probs], move |g, needs| {
            if !needs[0] {
                return Ok(vec![None]);
            }
            let out = ctc_backward(
                &dev,
                &grad,
                &factors,
                g.cuda_buffer(OP)?,
                per_sample,
                &lengths,
                dims,
            )?;
            Ok(vec![Some(Tensor::from_cuda(lp_shape, &dev, out))])
        }))
    }
}
