//! CTC loss on the GPU (`kernels/ctc.cu`), as `cpu::ctc` and `ops::ctc`:
//! log-space alpha and beta recursions in f64, one block per sample, the
//! derivative of each loss with respect to the log-probabilities, the
//! reduction of the losses and the scaled gradient of the result.

use super::device::CudaDevice;
use super::launch::{expect_len, for_elements, for_rows, int, launch};
use super::nvrtc::CTC;
use super::pool::DeviceBuffer;
use crate::cpu::ctc::extended_labels;
use crate::error::{Error, Result};

/// Per-sample losses and, when asked for, their gradients.
#[derive(Debug)]
pub struct GpuCtc {
    /// `-ln p(target | input)` per sample (N); `+inf` for an infeasible
    /// sample, or 0 with `zero_infinity`.
    pub losses: DeviceBuffer<f64>,
    /// `∂loss_n/∂lp[t, n, c]` (T, N, C): zero past each sample's frames and
    /// for samples whose loss is not finite.
    pub grad: Option<DeviceBuffer<f64>>,
}

/// The losses of a batch of log-probabilities `log_probs` (`dims` = [T, N, C])
/// against `targets` (labels in `0..C`, never `blank`), sample n over its
/// first `input_lengths[n]` frames, as `cpu::ctc::ctc_sample` per sample with
/// `ops::ctc`'s `zero_infinity`.
#[allow(clippy::too_many_arguments)]
pub fn ctc_loss(
    dev: &CudaDevice,
    log_probs: &DeviceBuffer<f32>,
    dims: [usize; 3],
    targets: &[Vec<usize>],
    input_lengths: &[usize],
    blank: usize,
    zero_infinity: bool,
    want_grad: bool,
) -> Result<GpuCtc> {
    const OP: &str = "cuda::ctc_loss";
    let [t_max, batch, classes] = dims;
    expect_len(OP, "log_probs", log_probs, t_max * batch * classes)?;
    if targets.len() != batch || input_lengths.len() != batch {
        return Err(Error::invalid(
            OP,
            format!(
                "{} targets and {} lengths for a batch of {batch}",
                targets.len(),
                input_lengths.len()
            ),
        ));
    }
    if blank >= classes {
        return Err(Error::invalid(
            OP,
            format!("blank {blank} is not a class of {classes}"),
        ));
    }
    if let Some(&len) = input_lengths.iter().find(|&&l| l > t_max) {
        return Err(Error::invalid(
            OP,
            format!("input length {len} exceeds T = {t_max}"),
        ));
    }
    if let Some(&bad) = targets
        .iter()
        .flatten()
        .find(|&&l| l >= classes || l == blank)
    {
        return Err(Error::invalid(
            OP,
            format!("target label {bad} is the blank or not a class of {classes}"),
        ));
    }
    let max_states = targets.iter().map(|t| 2 * t.len() + 1).max().unwrap_or(1);
    let mut ext = vec![0i64; batch * max_states];
    let mut ext_len = vec![0i64; batch];
    for (n, t) in targets.iter().enumerate() {
        let e = extended_labels(t, blank);
        ext_len[n] = int(e.len());
        for (slot, &l) in ext[n * max_states..].iter_mut().zip(&e) {
            *slot = int(l);
        }
    }
    let lens: Vec<i64> = input_lengths.iter().map(|&l| int(l)).collect();
    let mut losses = dev.alloc::<f64>(batch)?;
    let mut grad = if want_grad {
        Some(dev.alloc::<f64>(t_max * batch * classes)?)
    } else {
        None
    };
    if batch == 0 {
        return Ok(GpuCtc { losses, grad });
    }
    let (lens_d, ext_d, ext_len_d) = (dev.upload(&lens)?, dev.upload(&ext)?, dev.upload(&ext_len)?);
    let work = t_max.max(1) * max_states * batch;
    let (mut alpha, mut beta) = (dev.alloc::<f64>(work)?, dev.alloc::<f64>(work)?);
    let (lp, tt, nn, cc, il, ep, el, ms) = (
        log_probs.ptr(),
        int(t_max),
        int(batch),
        int(classes),
        lens_d.ptr(),
        ext_d.ptr(),
        ext_len_d.ptr(),
        int(max_states),
    );
    let (ap, bp, wg, zi, losses_p) = (
        alpha.ptr_mut(),
        beta.ptr_mut(),
        i32::from(want_grad),
        i32::from(zero_infinity),
        losses.ptr_mut(),
    );
    let gp = grad.as_mut().map_or(0u64, |g| g.ptr_mut());
    launch!(
        dev,
        CTC,
        "ctc_loss_grad",
        for_rows(batch, max_states),
        lp,
        tt,
        nn,
        cc,
        il,
        ep,
        el,
        ms,
        ap,
        bp,
        wg,
        zi,
        losses_p,
        gp
    )?;
    Ok(GpuCtc { losses, grad })
}

/// The loss as `ops::ctc_loss` returns it: per sample as f32 when
/// `per_sample` (no reduction), else one value, `Σ_n losses[n]·factors[n]`
/// (1 for a sum; 1 / (target length · N) for PyTorch's mean).
pub fn ctc_reduce(
    dev: &CudaDevice,
    losses: &DeviceBuffer<f64>,
    factors: &[f64],
    per_sample: bool,
) -> Result<DeviceBuffer<f32>> {
    let batch = losses.len();
    if factors.len() != batch {
        return Err(Error::invalid(
            "cuda::ctc_reduce",
            format!("{} factors for {batch} losses", factors.len()),
        ));
    }
    let mut out = dev.alloc(if per_sample { batch } else { 1 })?;
    let f = dev.upload(factors)?;
    let (lp, fp, nn, ps, op) = (
        losses.ptr(),
        f.ptr(),
        int(batch),
        i32::from(per_sample),
        out.ptr_mut(),
    );
    launch!(
        dev,
        CTC,
        "ctc_reduce",
        for_elements(batch),
        lp,
        fp,
        nn,
        ps,
        op
    )?;
    Ok(out)
}

/// The gradient of [`ctc_reduce`]'s result with respect to the
/// log-probabilities (T, N, C): `grad · upstream · factors[n]` over each
/// sample's frames and 0 after, with `upstream` = `g[n]` when `per_sample`,
/// else `g[0]`, as the backward of `ops::ctc_loss`.
pub fn ctc_backward(
    dev: &CudaDevice,
    grad: &DeviceBuffer<f64>,
    factors: &[f64],
    g: &DeviceBuffer<f32>,
    per_sample: bool,
    input_lengths: &[usize],
    dims: [usize; 3],
) -> Result<DeviceBuffer<f32>> {
    const OP: &str = "cuda::ctc_backward";
    let [t_max, batch, classes] = dims;
    expect_len(OP, "grad", grad, t_max * batch * classes)?;
    expect_len(OP, "g", g, if per_sample { batch } else { 1 })?;
    if factors.len() != batch || input_lengths.len() != batch {
        return Err(Error::invalid(
            OP,
            format!(
                "{} factors and {} lengths for a batch of {batch}",
                factors.len(),
                input_lengths.len()
            ),
        ));
    }
    let mut out = dev.alloc(grad.len())?;
    if grad.is_empty() {
        return Ok(out);
    }
    let lens: Vec<i64> = input_lengths.iter().map(|&l| int(l)).collect();
    let (f, l) = (dev.upload(factors)?, dev.upload(&lens)?);
    let (gr, fp, gp, ps, lp, tt, nn, cc, op) = (
        grad.ptr(),
        f.ptr(),
        g.ptr(),
        i32::from(per_sample),
        l.ptr(),
        int(t_max),
        int(batch),
        int(classes),
        out.ptr_mut(),
    );
    launch!(
        dev,
        CTC,
        "ctc_backward",
        for_elements(grad.len()),
        gr,
        fp,
        gp,
        ps,
        lp,
        tt,
        nn,
        cc,
        op
    )?;
    Ok(out)
}
